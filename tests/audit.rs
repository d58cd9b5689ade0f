//! The audit chain and traces: every state change is chained; a message's
//! life is shown to its sender and recipients only; `lienthong audit verify`
//! catches an altered or removed entry.

mod common;

use std::process::Command;

use common::*;
use lienthong::{
    audit::Entry,
    proto,
    store::{self, Kv, PgKv, PgOptions, SledKv},
};
use tonic::Code;

/// `lienthong audit verify` on the stopped gateway's store.
fn audit_verify(data_dir: &std::path::Path, postgres: &Option<PgOptions>) -> (bool, String) {
    let mut command = Command::new(BIN);
    command.args(["audit", "verify"]);
    match postgres {
        Some(options) => command.args(["--postgres", &options.url]),
        None => command.arg("--data-dir").arg(data_dir),
    };
    let output = command.output().expect("lienthong audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn audit_key(seq: u64) -> Vec<u8> {
    let mut key = b"audit\0".to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

#[tokio::test]
async fn every_step_is_traced_and_the_chain_catches_tampering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    let receipt = send(
        &mut department,
        envelope("kh-77", DEPARTMENT, &[DISTRICT, COMMUNE_A], b"plan"),
    )
    .await
    .expect("send");
    assert_eq!(receipt.audit_head.len(), 64);
    assert!(
        String::from_utf8_lossy(&receipt.canonical)
            .contains(&format!("audit_head {}", receipt.audit_head))
    );

    let mut district = server.exchange("district").await;
    let deliveries = drain(&mut district).await;
    ack(&mut district, &deliveries[0]).await;
    let mut commune = server.exchange("commune-a").await;
    let deliveries = drain(&mut commune).await;
    commune
        .nack(proto::NackRequest {
            delivery_id: deliveries[0].delivery_id.clone(),
            delay_seconds: 0,
            reason: "đang bận".into(),
        })
        .await
        .expect("nack");

    let trace = |events: &[proto::TraceEvent]| -> Vec<(i32, String)> {
        events.iter().map(|e| (e.kind, e.agency.clone())).collect()
    };
    let sender_view = department
        .trace(proto::TraceRequest {
            message_id: "kh-77".into(),
            sender: String::new(),
        })
        .await
        .expect("trace by the sender")
        .into_inner()
        .events;
    use proto::TraceEventKind as K;
    assert_eq!(
        trace(&sender_view),
        [
            (K::Accepted as i32, String::new()),
            (K::Verified as i32, String::new()),
            (K::Queued as i32, DISTRICT.to_owned()),
            (K::Queued as i32, COMMUNE_A.to_owned()),
            (K::Delivered as i32, DISTRICT.to_owned()),
            (K::Acked as i32, DISTRICT.to_owned()),
            (K::Delivered as i32, COMMUNE_A.to_owned()),
            (K::Retried as i32, COMMUNE_A.to_owned()),
        ]
    );
    assert!(
        sender_view[1]
            .detail
            .contains("1 of 1 signature(s) TOTAL_PASSED"),
        "{}",
        sender_view[1].detail
    );
    assert!(sender_view[7].detail.contains("đang bận"));
    let recipient_view = district
        .trace(proto::TraceRequest {
            message_id: "kh-77".into(),
            sender: DEPARTMENT.into(),
        })
        .await
        .expect("trace by a recipient")
        .into_inner()
        .events;
    assert_eq!(recipient_view.len(), sender_view.len());
    let mut outsider = server.exchange("commune-b").await;
    let denied = outsider
        .trace(proto::TraceRequest {
            message_id: "kh-77".into(),
            sender: DEPARTMENT.into(),
        })
        .await
        .expect_err("not involved");
    // Answered as for an unknown id, so that ids cannot be probed.
    assert_eq!(denied.code(), Code::NotFound);
    assert_eq!(
        denied.message(),
        format!("no message kh-77 of {DEPARTMENT} is known")
    );
    let unknown = department
        .trace(proto::TraceRequest {
            message_id: "nope".into(),
            sender: String::new(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    drop((department, district, commune, outsider));
    let postgres = server.postgres.clone();
    server.stop().await;

    let (ok, text) = audit_verify(dir.path(), &postgres);
    assert!(ok, "{text}");
    assert!(text.contains("audit chain intact"), "{text}");

    // The stopped gateway's engine, whichever it is.
    let sled = dir.path().join("sled");
    let open = || -> Box<dyn Kv> {
        match &postgres {
            Some(options) => Box::new(PgKv::open(options, None).expect("open")),
            None => Box::new(SledKv::open(&sled).expect("open")),
        }
    };
    let entry_at = |kv: &dyn Kv, seq: u64| -> Entry {
        let bytes = kv.get(&audit_key(seq)).expect("get").expect("entry exists");
        store::decode(&audit_key(seq), &bytes).expect("decode")
    };
    // Altered in place: its content no longer matches its hash.
    let original = {
        let kv = open();
        let original = entry_at(&*kv, 10);
        let mut forged = original.clone();
        forged.event.detail.push_str(" (sửa)");
        kv.apply(vec![(
            audit_key(10),
            Some(store::encode(&forged).expect("encode")),
        )])
        .expect("tamper");
        kv.sync().expect("sync");
        original
    };
    let (ok, text) = audit_verify(dir.path(), &postgres);
    assert!(!ok && text.contains("audit entry 10 was altered"), "{text}");

    // Altered with its own hash recomputed: the next entry no longer follows it.
    {
        let kv = open();
        let mut forged = original.clone();
        forged.at += 1;
        forged.hash = lienthong::audit::rehash(&forged).expect("hash");
        kv.apply(vec![(
            audit_key(10),
            Some(store::encode(&forged).expect("encode")),
        )])
        .expect("tamper");
        kv.sync().expect("sync");
    }
    let (ok, text) = audit_verify(dir.path(), &postgres);
    assert!(!ok && text.contains("does not follow entry 10"), "{text}");

    // Removed: the gap is named.
    {
        let kv = open();
        kv.apply(vec![(
            audit_key(10),
            Some(store::encode(&original).expect("encode")),
        )])
        .expect("restore");
        kv.apply(vec![(audit_key(7), None)]).expect("remove");
        kv.sync().expect("sync");
    }
    let (ok, text) = audit_verify(dir.path(), &postgres);
    assert!(!ok && text.contains("audit entry 7 is missing"), "{text}");
}
