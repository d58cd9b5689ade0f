//! Queue semantics with a manual clock, on both engines (sled and memory).

use std::{sync::Arc, time::Duration};

use super::*;
use crate::{
    clock::ManualClock,
    envelope::DocumentInfo,
    messages::{StoredAttachment, SweepReport},
    store::{BlobStore, ContentHash, Kv, MemoryKv, SledKv},
};

struct Fixture {
    queue: Queue,
    store: Store,
    clock: ManualClock,
    engine: &'static str,
    _dir: tempfile::TempDir,
}

fn config() -> QueueConfig {
    QueueConfig {
        lease: Duration::from_secs(30),
        max_attempts: 3,
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(8),
        content_retention: Duration::from_secs(60),
        ..QueueConfig::default()
    }
}

/// One fixture per engine; every test runs against each.
fn fixtures() -> Vec<Fixture> {
    ["sled", "memory"]
        .into_iter()
        .map(|engine| {
            let dir = tempfile::tempdir().expect("tempdir");
            let kv: Arc<dyn Kv> = match engine {
                "sled" => Arc::new(SledKv::open(&dir.path().join("sled")).expect("sled")),
                _ => Arc::new(MemoryKv::new()),
            };
            let blobs = BlobStore::open(&dir.path().join("blobs")).expect("blobs");
            let store = Store::with_kv(kv, blobs, 32).expect("store");
            let clock = ManualClock::new(1_000_000);
            Fixture {
                queue: Queue::new(store.clone(), Arc::new(clock.clone()), config()),
                store,
                clock,
                engine,
                _dir: dir,
            }
        })
        .collect()
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
        to: vec![crate::envelope::Address::Agency(code(RECIPIENT))],
        document: DocumentInfo {
            subject: id.to_owned(),
            priority,
            ..Default::default()
        },
        attachments: Vec::new(),
        signatures: Vec::new(),
        recipients: vec![crate::routing::Recipient {
            code: code(RECIPIENT),
            via: RECIPIENT.to_owned(),
        }],
        reports: Vec::new(),
        content_digest: ContentHash::of(digest),
        accepted_at: 0,
        audit_head: [0; 32],
    }
}

impl Fixture {
    async fn send(&self, id: &str) {
        self.queue
            .enqueue(message(id, Priority::Normal, id.as_bytes()))
            .await
            .expect("enqueue");
    }

    async fn lease(&self, stream: StreamId, max: usize) -> LeaseBatch {
        self.queue
            .lease_next(&code(RECIPIENT), stream, max, false)
            .await
            .expect("lease")
    }

    async fn ack(&self, leased: &Leased) -> Result<(), QueueError> {
        self.queue
            .ack(&code(RECIPIENT), &leased.delivery_id.to_string())
            .await
    }
}

fn ids(batch: &LeaseBatch) -> Vec<String> {
    batch
        .leased
        .iter()
        .map(|l| l.message.message_id.to_string())
        .collect()
}

#[tokio::test]
async fn priority_first_then_arrival_order() {
    for f in fixtures() {
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
        let batch = f.lease(f.queue.open_stream(), 10).await;
        assert_eq!(
            ids(&batch),
            ["f1", "s1", "v1", "u1", "n1", "n2"],
            "{}",
            f.engine
        );
    }
}

#[tokio::test]
async fn same_content_is_a_duplicate_other_content_is_refused() {
    for f in fixtures() {
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
        assert!(again.duplicate, "{}", f.engine);
        assert_eq!(again.message.accepted_at, first.message.accepted_at);
        let other = f.queue.enqueue(message("m", Priority::Normal, b"b")).await;
        assert!(
            matches!(
                other,
                Err(QueueError::Message(MessageError::AlreadyExists { .. }))
            ),
            "{other:?}"
        );
        assert_eq!(
            f.queue.depth(&code(RECIPIENT)).expect("depth").by_rank[3],
            1
        );
    }
}

#[tokio::test]
async fn an_expired_lease_comes_back_after_backoff_and_its_old_id_is_stale() {
    for f in fixtures() {
        f.send("m").await;
        let (one, two) = (f.queue.open_stream(), f.queue.open_stream());
        let first = f.lease(one, 10).await;
        assert_eq!(first.leased[0].attempt, 1);
        let hidden = f.lease(two, 10).await;
        assert!(hidden.leased.is_empty(), "{}: leased twice", f.engine);
        assert_eq!(hidden.next_wake, Some(first.leased[0].lease_expires_at));

        f.clock.advance(30_000);
        let cooling = f.lease(two, 10).await;
        assert!(
            cooling.leased.is_empty(),
            "{}: no backoff after expiry",
            f.engine
        );
        assert_eq!(
            cooling.next_wake,
            Some(f.clock.now_millis() + 1_000),
            "backoff of 1 s after the first failure"
        );
        f.clock.advance(1_000);
        let second = f.lease(two, 10).await;
        assert_eq!(second.leased.len(), 1, "{}", f.engine);
        assert_eq!(second.leased[0].attempt, 2);

        let stale = f.ack(&first.leased[0]).await;
        assert!(matches!(stale, Err(QueueError::LeaseLost(_))), "{stale:?}");
        f.ack(&second.leased[0]).await.expect("current lease acks");
        assert_eq!(
            f.queue.depth(&code(RECIPIENT)).expect("depth"),
            QueueDepth::default()
        );
        let again = f.ack(&second.leased[0]).await;
        assert!(
            matches!(again, Err(QueueError::UnknownDelivery(_))),
            "{again:?}"
        );
    }
}

#[tokio::test]
async fn an_ack_after_expiry_but_before_redelivery_still_counts() {
    for f in fixtures() {
        f.send("m").await;
        let first = f.lease(f.queue.open_stream(), 1).await;
        f.clock.advance(31_000);
        f.ack(&first.leased[0])
            .await
            .expect("nobody else holds it yet");
        assert!(
            f.lease(f.queue.open_stream(), 1).await.leased.is_empty(),
            "{}",
            f.engine
        );
    }
}

#[tokio::test]
async fn nack_backs_off_exponentially_or_waits_the_delay_asked() {
    for f in fixtures() {
        f.send("m").await;
        let stream = f.queue.open_stream();
        let recipient = code(RECIPIENT);
        let mut waits = Vec::new();
        for attempt in 1..=2u32 {
            let batch = f.lease(stream, 1).await;
            assert_eq!(batch.leased[0].attempt, attempt, "{}", f.engine);
            let id = batch.leased[0].delivery_id.to_string();
            f.queue
                .nack(&recipient, &id, Duration::ZERO, "busy")
                .await
                .expect("nack");
            let held = f.lease(stream, 1).await;
            assert!(held.leased.is_empty());
            let wait = held.next_wake.expect("wake time") - f.clock.now_millis();
            waits.push(wait);
            f.clock.advance(wait);
        }
        assert_eq!(waits, [1_000, 2_000], "{}: backoff doubles", f.engine);

        let batch = f.lease(stream, 1).await;
        let id = batch.leased[0].delivery_id.to_string();
        f.queue
            .nack(&recipient, &id, Duration::from_secs(60), "call back later")
            .await
            .expect("nack with delay");
        assert_eq!(
            f.lease(stream, 1).await.next_wake,
            Some(f.clock.now_millis() + 60_000)
        );
        let twice = f.queue.nack(&recipient, &id, Duration::ZERO, "").await;
        assert!(matches!(twice, Err(QueueError::NotLeased(_))), "{twice:?}");
    }
}

#[tokio::test]
async fn past_max_attempts_a_delivery_becomes_a_dead_letter_and_replays() {
    for f in fixtures() {
        let recipient = code(RECIPIENT);
        f.send("poison").await;
        f.send("fine").await;
        let stream = f.queue.open_stream();
        for attempt in 1..=3 {
            let batch = f.lease(stream, 1).await;
            assert_eq!(ids(&batch), ["poison"], "{} attempt {attempt}", f.engine);
            let id = batch.leased[0].delivery_id.to_string();
            f.queue
                .nack(&recipient, &id, Duration::from_secs(1), "cannot parse")
                .await
                .expect("nack");
            f.clock.advance(1_000);
        }
        // Three deliveries made: the fourth moves it aside; the next message flows.
        let batch = f.lease(stream, 1).await;
        assert_eq!(ids(&batch), ["fine"], "{}", f.engine);
        let dead = f.queue.dead_letters(&recipient, 10).expect("dead");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message_id.as_str(), "poison");
        assert_eq!(dead[0].attempts, 3);
        assert!(
            dead[0].reason.contains("cannot parse"),
            "{}",
            dead[0].reason
        );
        let depth = f.queue.depth(&recipient).expect("depth");
        assert_eq!((depth.dead, depth.by_rank[3]), (1, 1));

        f.ack(&batch.leased[0]).await.expect("ack fine");
        f.queue
            .replay(&dead[0].id.to_string())
            .await
            .expect("replay");
        let replayed = f.lease(stream, 1).await;
        assert_eq!(ids(&replayed), ["poison"]);
        assert_eq!(replayed.leased[0].attempt, 1, "attempts reset on replay");
        assert!(
            f.queue
                .dead_letters(&recipient, 10)
                .expect("dead")
                .is_empty()
        );
        let missing = f.queue.replay(&dead[0].id.to_string()).await;
        assert!(
            matches!(missing, Err(QueueError::UnknownDeadLetter(_))),
            "{missing:?}"
        );
        let malformed = f.queue.replay("nonsense").await;
        assert!(
            matches!(malformed, Err(QueueError::MalformedDeadLetterId(_))),
            "{malformed:?}"
        );
    }
}

#[tokio::test]
async fn closing_a_stream_releases_its_leases_but_a_drain_stream_keeps_them() {
    for f in fixtures() {
        let recipient = code(RECIPIENT);
        f.send("a").await;
        f.send("b").await;
        let live = f.queue.open_stream();
        let drain = f.queue.open_stream();
        assert_eq!(ids(&f.lease(live, 1).await), ["a"]);
        let drained = f
            .queue
            .lease_next(&recipient, drain, 1, true)
            .await
            .expect("lease");
        assert_eq!(ids(&drained), ["b"]);
        f.queue.close_stream(&recipient, live);
        f.queue.close_stream(&recipient, drain);
        f.clock.advance(1_000);
        assert_eq!(
            ids(&f.lease(f.queue.open_stream(), 10).await),
            ["a"],
            "{}",
            f.engine
        );
        f.queue
            .ack(&recipient, &drained.leased[0].delivery_id.to_string())
            .await
            .expect("ack after drain");
    }
}

#[tokio::test]
async fn a_panicking_receive_session_still_releases_its_leases() {
    for f in fixtures() {
        let recipient = code(RECIPIENT);
        f.send("a").await;
        let Fixture {
            queue,
            clock,
            engine,
            ..
        } = f;
        let queue = Arc::new(queue);
        let stream = queue.open_stream();
        let session = {
            let (queue, recipient) = (queue.clone(), recipient.clone());
            async move {
                let batch = queue.lease_next(&recipient, stream, 10, false).await?;
                if batch.leased.len() == 1 {
                    panic!("injected fault in a receive session");
                }
                Ok(())
            }
        };
        let outcome =
            crate::gateway::contain_session(session, || queue.close_stream(&recipient, stream))
                .await;
        assert!(
            matches!(&outcome, Err(crate::gateway::GatewayError::Internal(text))
                if text.contains("injected fault")),
            "{engine}: {outcome:?}"
        );
        assert_eq!(queue.in_flight(&recipient, stream), 0, "{engine}");
        // Well before the 30 s lease would have run out, the delivery is
        // offered again (after the first attempt's 1 s backoff).
        clock.advance(1_000);
        let again = queue
            .lease_next(&recipient, queue.open_stream(), 10, false)
            .await
            .expect("lease");
        assert_eq!(ids(&again), ["a"], "{engine}");
        assert_eq!(again.leased[0].attempt, 2, "{engine}");
    }
}

#[tokio::test]
async fn concurrent_consumers_never_share_a_delivery() {
    for f in fixtures() {
        let f = Arc::new(f);
        for index in 0..60 {
            f.send(&format!("m{index}")).await;
        }
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let f = f.clone();
            tasks.push(tokio::spawn(async move {
                let stream = f.queue.open_stream();
                let mut mine = Vec::new();
                loop {
                    let batch = f.lease(stream, 5).await;
                    if batch.leased.is_empty() {
                        break;
                    }
                    for leased in &batch.leased {
                        mine.push(leased.message.message_id.to_string());
                        f.ack(leased).await.expect("ack");
                    }
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("join"));
        }
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(
            before,
            all.len(),
            "{}: a message went to two consumers",
            f.engine
        );
        assert_eq!(all.len(), 60, "{}", f.engine);
    }
}

#[tokio::test]
async fn purge_needs_confirmation_and_empties_the_queue() {
    for f in fixtures() {
        let recipient = code(RECIPIENT);
        for index in 0..5 {
            f.send(&format!("m{index}")).await;
        }
        let leased = f.lease(f.queue.open_stream(), 2).await;
        let refused = f.queue.purge(&recipient, false).await;
        assert!(
            matches!(refused, Err(QueueError::PurgeNotConfirmed(_))),
            "{refused:?}"
        );
        assert_eq!(
            f.queue.purge(&recipient, true).await.expect("purge"),
            5,
            "{}",
            f.engine
        );
        assert_eq!(
            f.queue.depth(&recipient).expect("depth"),
            QueueDepth::default()
        );
        assert!(matches!(
            f.ack(&leased.leased[0]).await,
            Err(QueueError::UnknownDelivery(_))
        ));
    }
}

#[tokio::test]
async fn attempts_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000_000);
    let recipient = code(RECIPIENT);
    let open = || {
        let store = Store::open(dir.path(), 8).expect("open");
        (
            Queue::new(store.clone(), Arc::new(clock.clone()), config()),
            store,
        )
    };
    {
        let (queue, store) = open();
        queue
            .enqueue(message("m", Priority::Normal, b"m"))
            .await
            .expect("enqueue");
        let batch = queue
            .lease_next(&recipient, 1, 1, false)
            .await
            .expect("lease");
        assert_eq!(batch.leased[0].attempt, 1);
        store.close().await.expect("close");
    }
    let (queue, store) = open();
    let batch = queue
        .lease_next(&recipient, 1, 1, false)
        .await
        .expect("lease");
    assert_eq!(
        batch.leased[0].attempt, 2,
        "the delivery before the restart counts"
    );
    store.close().await.expect("close");
}

#[tokio::test]
async fn wake_ups_follow_enqueue_and_ack() {
    for f in fixtures() {
        let recipient = code(RECIPIENT);
        let mut wake = f.queue.subscribe(&recipient);
        wake.borrow_and_update();
        f.send("m").await;
        assert!(
            wake.has_changed().expect("open"),
            "enqueue must wake the recipient"
        );
        wake.borrow_and_update();
        let batch = f.lease(f.queue.open_stream(), 1).await;
        f.ack(&batch.leased[0]).await.expect("ack");
        assert!(
            wake.has_changed().expect("open"),
            "ack frees a slot and must wake"
        );
    }
}

#[test]
fn ids_round_trip_and_malformed_ones_are_refused() {
    let id = DeliveryId {
        slot: Slot { rank: 3, seq: 42 },
        lease: 7,
    };
    assert_eq!(DeliveryId::parse(&id.to_string()).expect("parse"), id);
    for bad in [
        "",
        "xyz",
        "zz0000000000000001.0000000000000001",
        "03000000000000000001",
        "030000000000000001.+000000000000001",
    ] {
        assert!(
            matches!(
                DeliveryId::parse(bad),
                Err(QueueError::MalformedDeliveryId(_))
            ),
            "{bad}"
        );
    }
    let dead = DeadLetterId {
        recipient: code(RECIPIENT),
        slot: Slot { rank: 0, seq: 9 },
    };
    assert_eq!(DeadLetterId::parse(&dead.to_string()).expect("parse"), dead);
}

#[tokio::test]
async fn content_is_released_after_its_last_delivery_and_the_retention() {
    const OTHER: &str = "000.01.31.H56";
    for f in fixtures() {
        let blobs = f.queue.store.blobs().clone();
        let shared = blobs.put(b"shared plan").expect("put");
        let own = blobs.put(b"own annex").expect("put");
        let purged = blobs.put(b"purged letter").expect("put");
        let attachment = |name: &str, sha256| StoredAttachment {
            name: name.to_owned(),
            media_type: "application/pdf".to_owned(),
            sha256,
            size: 11,
        };
        let mut first = message("g1", Priority::Normal, b"g1");
        first.attachments = vec![attachment("plan.pdf", shared), attachment("annex.pdf", own)];
        first.recipients.push(crate::routing::Recipient {
            code: code(OTHER),
            via: OTHER.to_owned(),
        });
        let mut second = message("g2", Priority::Normal, b"g2");
        second.attachments = vec![attachment("plan.pdf", shared)];
        f.queue.enqueue(first).await.expect("enqueue g1");
        f.queue.enqueue(second).await.expect("enqueue g2");

        // RECIPIENT acks both; OTHER still holds g1.
        let batch = f.lease(f.queue.open_stream(), 10).await;
        assert_eq!(ids(&batch), ["g1", "g2"], "{}", f.engine);
        for leased in &batch.leased {
            f.ack(leased).await.expect("ack");
        }
        f.clock.advance(61_000);
        let report = messages::sweep(&f.store, f.clock.now_millis())
            .await
            .expect("sweep");
        assert_eq!(
            report,
            SweepReport {
                messages: 1,
                files: 0
            },
            "{}: g2 only",
            f.engine
        );
        assert!(
            blobs.contains(&shared) && blobs.contains(&own),
            "g1 still uses them"
        );

        // OTHER acks g1: its content is due in 60 s, not before.
        let other = f
            .queue
            .lease_next(&code(OTHER), f.queue.open_stream(), 10, false)
            .await
            .expect("lease");
        f.queue
            .ack(&code(OTHER), &other.leased[0].delivery_id.to_string())
            .await
            .expect("ack");
        f.clock.advance(59_000);
        assert_eq!(
            messages::sweep(&f.store, f.clock.now_millis())
                .await
                .expect("sweep"),
            SweepReport::default()
        );
        assert!(
            blobs.contains(&shared),
            "{}: kept during retention",
            f.engine
        );
        f.clock.advance(1_000);
        let report = messages::sweep(&f.store, f.clock.now_millis())
            .await
            .expect("sweep");
        assert_eq!(
            report,
            SweepReport {
                messages: 1,
                files: 2
            },
            "{}",
            f.engine
        );
        assert!(
            !blobs.contains(&shared) && !blobs.contains(&own),
            "{}",
            f.engine
        );
        let trace = crate::audit::trace(
            f.queue.store.kv(),
            &code(SENDER),
            &MessageId::parse("g1", "test").expect("id"),
        )
        .expect("trace");
        assert_eq!(
            trace.last().map(|e| e.event.kind),
            Some(EventKind::Released)
        );

        // A new message pointing at released content is refused, not stored.
        let mut late = message("g3", Priority::Normal, b"g3");
        late.attachments = vec![attachment("plan.pdf", shared)];
        let refused = f.queue.enqueue(late).await;
        assert!(
            matches!(refused, Err(QueueError::Message(MessageError::ContentReleased(h))) if h == shared),
            "{refused:?}"
        );
        assert!(
            messages::find(
                f.store.kv(),
                &code(SENDER),
                &MessageId::parse("g3", "test").expect("id")
            )
            .expect("read")
            .is_none()
        );

        // A purge ends deliveries too; a dead letter would not.
        let mut letter = message("g4", Priority::Normal, b"g4");
        letter.attachments = vec![attachment("letter.pdf", purged)];
        f.queue.enqueue(letter).await.expect("enqueue g4");
        f.queue.purge(&code(RECIPIENT), true).await.expect("purge");
        f.clock.advance(60_000);
        assert_eq!(
            messages::sweep(&f.store, f.clock.now_millis())
                .await
                .expect("sweep")
                .files,
            1,
            "{}",
            f.engine
        );
        assert!(!blobs.contains(&purged));
    }
}

/// A message record written before reports had `embedded` (record
/// version 1) still reads, its reports with no placement.
#[test]
fn a_message_stored_by_record_version_1_reads_back() {
    use crate::pki::{Check, Fingerprint, Indication, Report, SignerFacts, SubIndication};
    use serde::Serialize;

    #[derive(Serialize)]
    struct OldReport {
        attachment: String,
        indication: Indication,
        sub_indication: Option<SubIndication>,
        message: String,
        signer: Option<SignerFacts>,
        checks: Vec<Check>,
        verified_at: i64,
    }
    #[derive(Serialize)]
    struct OldRecord<'a> {
        message_id: &'a MessageId,
        sender: &'a OrgCode,
        to: &'a Vec<crate::envelope::Address>,
        document: &'a DocumentInfo,
        attachments: &'a Vec<StoredAttachment>,
        signatures: &'a Vec<crate::messages::StoredSignature>,
        recipients: &'a Vec<crate::routing::Recipient>,
        reports: Vec<OldReport>,
        content_digest: ContentHash,
        accepted_at: i64,
        audit_head: [u8; 32],
    }
    let report = Report {
        attachment: "cv.pdf".to_owned(),
        indication: Indication::TotalPassed,
        sub_indication: None,
        message: "valid".to_owned(),
        signer: Some(SignerFacts {
            subject: "CN=x".to_owned(),
            issuer: "CN=y".to_owned(),
            serial_hex: "01".to_owned(),
            fingerprint: Fingerprint([7; 32]),
            signing_time: Some(5),
            registered: Some((code(SENDER), crate::pki::Role::Head)),
        }),
        checks: vec![Check {
            name: "chain".to_owned(),
            passed: true,
            detail: "ok".to_owned(),
        }],
        verified_at: 9,
        embedded: None,
    };
    let record = message("M-1", Priority::Normal, b"x").verified(vec![report.clone()]);
    let old = OldRecord {
        message_id: &record.message_id,
        sender: &record.sender,
        to: &record.to,
        document: &record.document,
        attachments: &record.attachments,
        signatures: &record.signatures,
        recipients: &record.recipients,
        reports: vec![OldReport {
            attachment: report.attachment.clone(),
            indication: report.indication,
            sub_indication: report.sub_indication,
            message: report.message.clone(),
            signer: report.signer.clone(),
            checks: report.checks.clone(),
            verified_at: report.verified_at,
        }],
        content_digest: record.content_digest,
        accepted_at: record.accepted_at,
        audit_head: record.audit_head,
    };
    let mut bytes = crate::store::encode(&old).expect("encode");
    bytes[0] = 1;
    let back: MessageRecord = crate::store::decode(b"m", &bytes).expect("version 1 decodes");
    assert_eq!(back, record);
    let current = crate::store::encode(&record).expect("encode");
    assert_ne!(current[0], 1, "new records are written in the new layout");
    let again: MessageRecord = crate::store::decode(b"m", &current).expect("current decodes");
    assert_eq!(again, record);
}
