//! Queue semantics with the in-memory engine and a manual clock.

use std::{sync::Arc, time::Duration};

use super::*;
use crate::{
    clock::ManualClock,
    store::{BlobStore, MemoryKv},
};

struct Fixture {
    queue: Queue,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = BlobStore::open(dir.path()).expect("blobs");
    let store = Store::with_kv(Arc::new(MemoryKv::new()), blobs, 32).expect("store");
    let clock = ManualClock::new(1_000_000);
    let config = QueueConfig {
        lease: Duration::from_secs(30),
        ..QueueConfig::default()
    };
    Fixture {
        queue: Queue::new(store, Arc::new(clock.clone()), config),
        clock,
        _dir: dir,
    }
}

fn code(text: &str) -> OrgCode {
    OrgCode::parse(text, "test").expect("code")
}

const SENDER: &str = "000.00.12.H56";
const RECIPIENT: &str = "000.00.31.H56";

fn message(id: &str, priority: Priority, digest: &[u8]) -> MessageRecord {
    MessageRecord {
        message_id: MessageId::parse(id, "test").expect("id"),
        sender: code(SENDER),
        to: vec![code(RECIPIENT)],
        document: DocumentInfo {
            subject: id.to_owned(),
            priority,
            ..Default::default()
        },
        attachments: Vec::new(),
        signatures: Vec::new(),
        recipients: vec![code(RECIPIENT)],
        content_digest: ContentHash::of(digest),
        accepted_at: 0,
    }
}

fn ids(leased: &[Leased]) -> Vec<String> {
    leased
        .iter()
        .map(|l| l.message.message_id.to_string())
        .collect()
}

#[tokio::test]
async fn priority_first_then_arrival_order() {
    let f = fixture();
    for (id, priority) in [
        ("n1", Priority::Normal),
        ("u1", Priority::Urgent),
        ("f1", Priority::Flash),
        ("n2", Priority::Normal),
        ("s1", Priority::FlashScheduled),
        ("v1", Priority::VeryUrgent),
    ] {
        f.queue
            .enqueue(message(id, priority, id.as_bytes()))
            .await
            .expect("enqueue");
    }
    let stream = f.queue.open_stream();
    let leased = f
        .queue
        .lease_next(&code(RECIPIENT), stream, 10, false)
        .expect("lease");
    assert_eq!(ids(&leased), ["f1", "s1", "v1", "u1", "n1", "n2"]);
}

#[tokio::test]
async fn same_content_is_a_duplicate_other_content_is_refused() {
    let f = fixture();
    let first = f
        .queue
        .enqueue(message("m", Priority::Normal, b"a"))
        .await
        .expect("first");
    assert!(!first.duplicate);
    let again = f
        .queue
        .enqueue(message("m", Priority::Normal, b"a"))
        .await
        .expect("again");
    assert!(again.duplicate);
    assert_eq!(again.message.accepted_at, first.message.accepted_at);
    let other = f.queue.enqueue(message("m", Priority::Normal, b"b")).await;
    assert!(
        matches!(other, Err(QueueError::AlreadyExists { .. })),
        "{other:?}"
    );
    assert_eq!(
        f.queue.depth(&code(RECIPIENT)).expect("depth").by_rank[3],
        1
    );
}

#[tokio::test]
async fn a_lease_hides_the_entry_until_it_expires_then_the_old_id_is_stale() {
    let f = fixture();
    let recipient = code(RECIPIENT);
    f.queue
        .enqueue(message("m", Priority::Normal, b"a"))
        .await
        .expect("enqueue");
    let one = f.queue.open_stream();
    let two = f.queue.open_stream();
    let first = f
        .queue
        .lease_next(&recipient, one, 10, false)
        .expect("lease");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt, 1);
    assert!(
        f.queue
            .lease_next(&recipient, two, 10, false)
            .expect("lease")
            .is_empty()
    );
    assert_eq!(f.queue.in_flight(&recipient, one), 1);

    f.clock.advance(30_001);
    let second = f
        .queue
        .lease_next(&recipient, two, 10, false)
        .expect("lease");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt, 2);
    let stale = f
        .queue
        .ack(&recipient, &first[0].delivery_id.to_string())
        .await;
    assert!(matches!(stale, Err(QueueError::LeaseLost(_))), "{stale:?}");
    f.queue
        .ack(&recipient, &second[0].delivery_id.to_string())
        .await
        .expect("current lease acks");
    assert_eq!(
        f.queue.depth(&recipient).expect("depth"),
        QueueDepth::default()
    );
    let again = f
        .queue
        .ack(&recipient, &second[0].delivery_id.to_string())
        .await;
    assert!(
        matches!(again, Err(QueueError::UnknownDelivery(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn closing_a_stream_releases_its_leases_but_a_drain_stream_keeps_them() {
    let f = fixture();
    let recipient = code(RECIPIENT);
    f.queue
        .enqueue(message("a", Priority::Normal, b"a"))
        .await
        .expect("enqueue");
    f.queue
        .enqueue(message("b", Priority::Normal, b"b"))
        .await
        .expect("enqueue");
    let live = f.queue.open_stream();
    let drain = f.queue.open_stream();
    assert_eq!(
        ids(&f
            .queue
            .lease_next(&recipient, live, 1, false)
            .expect("lease")),
        ["a"]
    );
    let drained = f
        .queue
        .lease_next(&recipient, drain, 1, true)
        .expect("lease");
    assert_eq!(ids(&drained), ["b"]);
    f.queue.close_stream(&recipient, live);
    f.queue.close_stream(&recipient, drain);
    let next = f.queue.open_stream();
    assert_eq!(
        ids(&f
            .queue
            .lease_next(&recipient, next, 10, false)
            .expect("lease")),
        ["a"]
    );
    // The drained delivery is still held and can be acked after its stream ended.
    f.queue
        .ack(&recipient, &drained[0].delivery_id.to_string())
        .await
        .expect("ack after drain");
}

#[tokio::test]
async fn max_bounds_a_lease_call_and_malformed_ids_are_refused() {
    let f = fixture();
    let recipient = code(RECIPIENT);
    for index in 0..5 {
        let id = format!("m{index}");
        f.queue
            .enqueue(message(&id, Priority::Normal, id.as_bytes()))
            .await
            .expect("enqueue");
    }
    let stream = f.queue.open_stream();
    assert_eq!(
        f.queue
            .lease_next(&recipient, stream, 2, false)
            .expect("lease")
            .len(),
        2
    );
    assert_eq!(
        f.queue
            .lease_next(&recipient, stream, 0, false)
            .expect("lease")
            .len(),
        0
    );
    for bad in [
        "",
        "xyz",
        "zz0000000000000001.0000000000000001",
        "03000000000000000001",
    ] {
        let result = f.queue.ack(&recipient, bad).await;
        assert!(
            matches!(result, Err(QueueError::MalformedDeliveryId(_))),
            "{bad}: {result:?}"
        );
    }
}

#[tokio::test]
async fn wake_ups_follow_enqueue_and_ack() {
    let f = fixture();
    let recipient = code(RECIPIENT);
    let mut wake = f.queue.subscribe(&recipient);
    wake.borrow_and_update();
    f.queue
        .enqueue(message("m", Priority::Normal, b"m"))
        .await
        .expect("enqueue");
    assert!(
        wake.has_changed().expect("open"),
        "enqueue must wake the recipient"
    );
    wake.borrow_and_update();
    let stream = f.queue.open_stream();
    let leased = f
        .queue
        .lease_next(&recipient, stream, 1, false)
        .expect("lease");
    f.queue
        .ack(&recipient, &leased[0].delivery_id.to_string())
        .await
        .expect("ack");
    assert!(
        wake.has_changed().expect("open"),
        "ack frees a slot and must wake"
    );
}

#[test]
fn delivery_ids_round_trip() {
    let id = DeliveryId {
        slot: Slot { rank: 3, seq: 42 },
        lease: 7,
    };
    assert_eq!(DeliveryId::parse(&id.to_string()).expect("parse"), id);
}
