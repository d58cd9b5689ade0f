//! A document's life: sent to the communes of a district, statuses reported
//! back to the sender, recalled, and every step in the trace and audit chain.

mod common;

use std::{process::Command, time::Duration};

use common::*;
use lienthong::proto;
use tonic::Code;

fn status(
    message_id: &str,
    sender: &str,
    code: proto::StatusCode,
    description: &str,
) -> proto::ReportStatusRequest {
    proto::ReportStatusRequest {
        status: Some(proto::StatusReport {
            message_id: message_id.into(),
            sender: sender.into(),
            code: code as i32,
            description: description.into(),
            staff: Some(proto::StaffInfo {
                department: "Văn phòng".into(),
                name: "Nguyễn Văn A".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The sender's trace of one of its messages.
async fn trace_of(
    client: &mut lienthong::proto::exchange_client::ExchangeClient<tonic::transport::Channel>,
    message_id: &str,
) -> Vec<proto::TraceEvent> {
    client
        .trace(proto::TraceRequest {
            message_id: message_id.into(),
            sender: String::new(),
        })
        .await
        .expect("trace")
        .into_inner()
        .events
}

/// The content files in the gateway's blob store, listed from the
/// directory (BlobStore::open would clear a running gateway's staging).
fn blob_files(data_dir: &std::path::Path) -> Vec<String> {
    if let Some(url) = test_postgres(data_dir) {
        let options = lienthong::store::PgOptions {
            url,
            ..Default::default()
        };
        let offline = lienthong::store::offline::OfflineStore::open_postgres(&options)
            .expect("open the gateway's database");
        let hashes = offline.blobs().list().expect("list");
        return hashes.iter().map(|h| h.to_hex()).collect();
    }
    let mut out = Vec::new();
    for shard in std::fs::read_dir(data_dir.join("blobs"))
        .expect("blobs")
        .flatten()
    {
        if shard.file_name() == "tmp" {
            continue;
        }
        for file in std::fs::read_dir(shard.path()).expect("shard").flatten() {
            out.push(file.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test]
async fn statuses_flow_back_and_a_recall_is_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    // Content goes as soon as its last delivery is acknowledged.
    config.queue.content_retention = Duration::ZERO;
    config.queue.sweep_interval = Duration::from_secs(1);
    let server = TestServer::start_with(config).await;
    let mut department = server.exchange("department").await;
    let mut plan = envelope(
        "kh-200",
        DEPARTMENT,
        &["children:000.00.31.H56"],
        b"ke hoach",
    );
    plan.document.as_mut().expect("document").priority = proto::Priority::Urgent as i32;
    let receipt = send(&mut department, plan).await.expect("send");
    assert_eq!(receipt.recipients.len(), 2);
    // Stored once for both communes: one file for the plan, one for its signature.
    let content = receipt.attachments[0].sha256.clone();
    let stored = blob_files(dir.path());
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored.contains(&content));

    use proto::StatusCode as S;
    for (who, path) in [
        ("commune-a", vec![S::Arrived, S::Accepted, S::Done]),
        (
            "commune-b",
            vec![S::Arrived, S::Accepted, S::Assigned, S::InProgress],
        ),
    ] {
        let mut commune = server.exchange(who).await;
        let deliveries = drain(&mut commune).await;
        assert_eq!(deliveries.len(), 1, "{who}");
        ack(&mut commune, &deliveries[0]).await;
        for code in path {
            let receipt = commune
                .report_status(status("kh-200", DEPARTMENT, code, "ok"))
                .await
                .expect("report")
                .into_inner()
                .receipt
                .expect("receipt");
            assert!(receipt.signature.is_some(), "status receipts are signed");
            assert!(
                String::from_utf8_lossy(&receipt.canonical)
                    .contains(&format!("STATUS_{:02}", code as i32))
            );
        }
    }

    // Impossible moves, outsiders and unknown codes are refused.
    let mut commune_b = server.exchange("commune-b").await;
    let backwards = commune_b
        .report_status(status("kh-200", DEPARTMENT, S::Arrived, ""))
        .await
        .expect_err("backwards");
    assert_eq!(backwards.code(), Code::FailedPrecondition);
    assert!(
        backwards
            .message()
            .contains("status 01 cannot follow status 05"),
        "{}",
        backwards.message()
    );
    let mut district = server.exchange("district").await;
    let outsider = district
        .report_status(status("kh-200", DEPARTMENT, S::Arrived, ""))
        .await
        .expect_err("not a recipient");
    assert_eq!(outsider.code(), Code::PermissionDenied);
    let mut bogus = status("kh-200", DEPARTMENT, S::Arrived, "");
    bogus.status.as_mut().expect("status").code = 7;
    let unknown = commune_b.report_status(bogus).await.expect_err("code 07");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let answer_to_new = commune_b
        .report_status(status("kh-200", DEPARTMENT, S::RecallAccepted, ""))
        .await
        .expect_err("15 answers a recall, not a new document");
    assert_eq!(answer_to_new.code(), Code::FailedPrecondition);

    // Every status reached the sender, in its own queue.
    let deliveries = drain(&mut department).await;
    let reported: Vec<(String, i32)> = deliveries
        .iter()
        .map(|d| match &d.payload {
            Some(proto::delivery::Payload::Status(s)) => (s.reporter.clone(), s.code),
            other => panic!("expected a status, got {other:?}"),
        })
        .collect();
    assert_eq!(reported.len(), 7);
    assert!(reported.contains(&(COMMUNE_A.to_owned(), S::Done as i32)));
    assert!(reported.contains(&(COMMUNE_B.to_owned(), S::InProgress as i32)));
    for delivery in &deliveries {
        ack(&mut department, delivery).await;
    }

    // The sender recalls the plan; each commune accepts the recall.
    let mut bad_recall = envelope(
        "kh-200-thu-hoi",
        DEPARTMENT,
        &["children:000.00.31.H56"],
        b"thu hoi",
    );
    bad_recall.document.as_mut().expect("document").action = proto::Action::Revoke as i32;
    bad_recall.document.as_mut().expect("document").refers_to = "kh-999".into();
    let refused = send(&mut department, bad_recall.clone())
        .await
        .expect_err("unknown refers_to");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("envelope.document.refers_to"),
        "{}",
        refused.message()
    );
    let mut recall = bad_recall;
    recall.document.as_mut().expect("document").refers_to = "kh-200".into();
    send(&mut department, recall).await.expect("recall");
    for who in ["commune-a", "commune-b"] {
        let mut commune = server.exchange(who).await;
        let deliveries = drain(&mut commune).await;
        let document = envelope_of(&deliveries[0])
            .document
            .clone()
            .expect("document");
        assert_eq!(
            (document.action, document.refers_to.as_str()),
            (proto::Action::Revoke as i32, "kh-200")
        );
        ack(&mut commune, &deliveries[0]).await;
        commune
            .report_status(status(
                "kh-200-thu-hoi",
                DEPARTMENT,
                S::RecallAccepted,
                "đã thu hồi",
            ))
            .await
            .expect("recall accepted");
    }

    let trace = trace_of(&mut department, "kh-200").await;
    let statuses: Vec<(String, i32)> = trace
        .iter()
        .filter(|e| e.kind == proto::TraceEventKind::Status as i32)
        .map(|e| (e.agency.clone(), e.status))
        .collect();
    assert_eq!(statuses.len(), 7);
    assert!(statuses.contains(&(COMMUNE_A.to_owned(), S::Done as i32)));
    let kinds: Vec<i32> = trace.iter().map(|e| e.kind).collect();
    for kind in [
        proto::TraceEventKind::Accepted,
        proto::TraceEventKind::Verified,
        proto::TraceEventKind::Queued,
        proto::TraceEventKind::Delivered,
        proto::TraceEventKind::Acked,
    ] {
        assert!(kinds.contains(&(kind as i32)), "{kind:?} in the trace");
    }

    // Every delivery of the plan is acknowledged: the sweeper deletes its
    // content (retention 0 here) and says so in the trace.
    let mut released = false;
    for _ in 0..100 {
        let trace = trace_of(&mut department, "kh-200").await;
        if trace
            .iter()
            .any(|e| e.kind == proto::TraceEventKind::ContentReleased as i32)
        {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        released,
        "the plan's content is released after its last ack"
    );
    assert!(
        !blob_files(dir.path()).contains(&content),
        "the file is gone"
    );
    drop((department, district, commune_b));
    server.stop().await;

    let verify = Command::new(BIN)
        .args(["audit", "verify"])
        .args(store_location(dir.path()))
        .output()
        .expect("audit verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
