//! Send → receive → ack against a real gateway over real mTLS, with real sled.

mod common;

use std::time::Duration;

use common::*;
use lienthong::proto;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn send_receive_ack_between_two_agencies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    let mut district = server.exchange("district").await;

    let content = b"%PDF-1.7 ke hoach".to_vec();
    let receipt = send(
        &mut department,
        envelope("kh-101", DEPARTMENT, &[DISTRICT], &content),
    )
    .await
    .expect("send");
    assert!(!receipt.duplicate);
    assert_eq!(receipt.message_id, "kh-101");
    assert_eq!(receipt.from, DEPARTMENT);
    assert_eq!(receipt.recipients.len(), 1);
    assert_eq!(receipt.recipients[0].code, DISTRICT);
    assert_eq!(
        receipt.attachments[0].sha256,
        hex::encode(Sha256::digest(&content))
    );
    assert!(receipt.accepted_at.is_some());
    assert_eq!(receipt.verification, proto::Indication::TotalPassed as i32);
    // Signed by the gateway: the canonical text and its batch proof.
    assert!(String::from_utf8_lossy(&receipt.canonical).contains("message_id kh-101"));
    let signature = receipt.signature.as_ref().expect("signed receipt");
    assert!(signature.tree_size >= 1 && !signature.signature.is_empty());

    let deliveries = drain(&mut district).await;
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!(delivery.attempt, 1);
    // The gateway's verification travels with the delivery.
    assert_eq!(delivery.reports.len(), 1);
    assert_eq!(
        delivery.reports[0].indication,
        proto::Indication::TotalPassed as i32
    );
    let signer = delivery.reports[0].signer.as_ref().expect("signer");
    assert_eq!(
        (signer.agency.as_str(), signer.role),
        (DEPARTMENT, proto::SignerRole::Organization as i32)
    );
    let received = envelope_of(delivery);
    assert_eq!(received.message_id, "kh-101");
    assert_eq!(received.from, DEPARTMENT);
    assert_eq!(received.attachments[0].content, content);
    assert_eq!(
        received.attachments[0].sha256,
        receipt.attachments[0].sha256
    );
    let document = received.document.as_ref().expect("document");
    assert_eq!(document.subject, "Kế hoạch triển khai chuyển đổi số");
    assert_eq!(document.code.as_ref().expect("code").notation, "KH-UBND");

    ack(&mut district, delivery).await;
    assert!(
        drain(&mut district).await.is_empty(),
        "acked message came back"
    );
    // The sender's own queue is untouched.
    assert!(drain(&mut department).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn one_document_to_three_recipients_is_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    let receipt = send(
        &mut department,
        envelope(
            "kh-3",
            DEPARTMENT,
            &[DISTRICT, COMMUNE_A, COMMUNE_B],
            b"one plan for three",
        ),
    )
    .await
    .expect("send");
    let codes: Vec<&str> = receipt.recipients.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, [DISTRICT, COMMUNE_A, COMMUNE_B]);
    for who in ["district", "commune-a", "commune-b"] {
        let mut client = server.exchange(who).await;
        let deliveries = drain(&mut client).await;
        assert_eq!(deliveries.len(), 1, "{who}");
        assert_eq!(
            envelope_of(&deliveries[0]).attachments[0].content,
            b"one plan for three"
        );
        ack(&mut client, &deliveries[0]).await;
    }
    server.stop().await;
    let (_, blobs) = snapshot(dir.path());
    // One file for the content and one for its signature, whatever the
    // number of recipients.
    assert_eq!(blobs.len(), 2, "content must be stored once: {blobs:?}");
}

#[tokio::test]
async fn an_unacked_message_survives_a_restart_and_an_acked_one_does_not_return() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    send(
        &mut department,
        envelope("keep", DEPARTMENT, &[COMMUNE_A], b"keep me"),
    )
    .await
    .expect("send");
    send(
        &mut department,
        envelope("done", DEPARTMENT, &[COMMUNE_A], b"acked"),
    )
    .await
    .expect("send");
    let mut commune = server.exchange("commune-a").await;
    let before = drain(&mut commune).await;
    assert_eq!(before.len(), 2);
    let done = before
        .iter()
        .find(|d| envelope_of(d).message_id == "done")
        .expect("done delivered");
    ack(&mut commune, done).await;
    drop((department, commune));
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let mut commune = server.exchange("commune-a").await;
    let after = drain(&mut commune).await;
    let ids: Vec<&str> = after
        .iter()
        .map(|d| envelope_of(d).message_id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["keep"],
        "only the unacked message comes back after restart"
    );
    assert_eq!(envelope_of(&after[0]).attachments[0].content, b"keep me");
    ack(&mut commune, &after[0]).await;
    server.stop().await;
}

#[tokio::test]
async fn a_repeated_send_returns_the_first_receipt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    // A retry resends the same bytes, signature included.
    let message = envelope("retry", DEPARTMENT, &[DISTRICT], b"same");
    let first = send(&mut department, message.clone()).await.expect("send");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = send(&mut department, message).await.expect("send again");
    assert!(second.duplicate);
    assert_eq!(second.accepted_at, first.accepted_at);
    assert_eq!(second.attachments, first.attachments);
    let mut district = server.exchange("district").await;
    assert_eq!(
        drain(&mut district).await.len(),
        1,
        "a retry must not deliver twice"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_open_stream_is_woken_by_new_arrivals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut district = server.exchange("district").await;
    let mut stream = district
        .receive(proto::ReceiveRequest {
            max_in_flight: 4,
            drain: false,
        })
        .await
        .expect("receive")
        .into_inner();
    let mut department = server.exchange("department").await;
    send(
        &mut department,
        envelope("live", DEPARTMENT, &[DISTRICT], b"now"),
    )
    .await
    .expect("send");
    let delivery = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("delivered while the stream was open")
        .expect("stream")
        .expect("a delivery");
    assert_eq!(envelope_of(&delivery).message_id, "live");
    ack(&mut district, &delivery).await;
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn a_delivery_not_acked_when_its_stream_ends_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    send(
        &mut department,
        envelope("again", DEPARTMENT, &[DISTRICT], b"x"),
    )
    .await
    .expect("send");
    let mut district = server.exchange("district").await;
    let mut stream = district
        .receive(proto::ReceiveRequest {
            max_in_flight: 1,
            drain: false,
        })
        .await
        .expect("receive")
        .into_inner();
    let first = stream.message().await.expect("stream").expect("delivery");
    assert_eq!(first.attempt, 1);
    drop(stream);
    // The stream's end releases the lease; a new stream gets it again.
    let mut redelivered = None;
    for _ in 0..50 {
        let deliveries = drain(&mut district).await;
        if let Some(delivery) = deliveries.into_iter().next() {
            redelivered = Some(delivery);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let redelivered = redelivered.expect("redelivered after the stream ended");
    assert_eq!(envelope_of(&redelivered).message_id, "again");
    assert_eq!(redelivered.attempt, 2);
    let stale = district
        .ack(proto::AckRequest {
            delivery_id: first.delivery_id.clone(),
        })
        .await
        .expect_err("the first lease is gone");
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition, "{stale:?}");
    ack(&mut district, &redelivered).await;
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    // Health needs no client certificate: load balancers probe it.
    let channel = connect(server.addr, None)
        .await
        .expect("connect without certificate");
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: "lienthong.v1.Exchange".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(status.status, ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("stream")
        .expect("response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "lienthong.v1.Exchange",
        "lienthong.v1.Signing",
        "lienthong.v1.Admin",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }
    server.stop().await;
}
