//! Queue semantics over gRPC: several consumers, Nack, dead letters and the
//! Admin calls that manage them.

mod common;

use std::{collections::HashSet, time::Duration};

use common::*;
use lienthong::proto;
use tonic::Code;

fn quick_retry_config(data_dir: &std::path::Path) -> lienthong::config::Config {
    let mut config = config(data_dir);
    config.queue.max_attempts = 2;
    config.queue.backoff_initial = Duration::from_millis(20);
    config.queue.backoff_max = Duration::from_millis(100);
    config
}

async fn stats(server: &TestServer, agency: &str) -> proto::AgencyQueueStats {
    let mut admin = server.admin("admin").await;
    let mut response = admin
        .queue_stats(proto::QueueStatsRequest {
            agency: agency.into(),
        })
        .await
        .expect("stats")
        .into_inner();
    response.agencies.pop().expect("one agency")
}

#[tokio::test]
async fn two_streams_of_one_agency_share_its_queue_within_max_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    for index in 0..6 {
        send(
            &mut department,
            envelope(&format!("s{index}"), DEPARTMENT, &[DISTRICT], b"x"),
        )
        .await
        .expect("send");
    }
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut client = server.exchange("district").await;
        let stream = client
            .receive(proto::ReceiveRequest {
                max_in_flight: 3,
                drain: false,
            })
            .await
            .expect("receive")
            .into_inner();
        streams.push((client, stream));
    }
    let mut seen = HashSet::new();
    let mut held = Vec::new();
    for (_, stream) in &mut streams {
        for _ in 0..3 {
            let delivery = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("delivered")
                .expect("stream")
                .expect("delivery");
            assert!(
                seen.insert(envelope_of(&delivery).message_id.clone()),
                "leased twice"
            );
            held.push(delivery);
        }
        // Holding max_in_flight unacknowledged: nothing more comes on this stream.
        let more = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
        assert!(more.is_err(), "stream exceeded max_in_flight: {more:?}");
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(stats(&server, DISTRICT).await.in_flight, 6);
    let (client, _) = &mut streams[0];
    for delivery in &held {
        ack(client, delivery).await;
    }
    assert_eq!(stats(&server, DISTRICT).await.in_flight, 0);
    drop(streams);
    server.stop().await;
}

#[tokio::test]
async fn nack_redelivers_then_dead_letters_and_admin_replays_and_purges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(quick_retry_config(dir.path())).await;
    let mut department = server.exchange("department").await;
    send(
        &mut department,
        envelope("poison", DEPARTMENT, &[DISTRICT], b"bad"),
    )
    .await
    .expect("send");
    let mut district = server.exchange("district").await;

    let mut attempts = Vec::new();
    for _ in 0..2 {
        let mut delivery = None;
        for _ in 0..50 {
            if let Some(d) = drain(&mut district).await.into_iter().next() {
                delivery = Some(d);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let delivery = delivery.expect("redelivered after backoff");
        attempts.push(delivery.attempt);
        district
            .nack(proto::NackRequest {
                delivery_id: delivery.delivery_id.clone(),
                delay_seconds: 0,
                reason: "schema mismatch".into(),
            })
            .await
            .expect("nack");
        let again = district
            .nack(proto::NackRequest {
                delivery_id: delivery.delivery_id.clone(),
                delay_seconds: 0,
                reason: String::new(),
            })
            .await
            .expect_err("a delivery given back is no longer held");
        assert_eq!(again.code(), Code::FailedPrecondition);
    }
    assert_eq!(attempts, [1, 2]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        drain(&mut district).await.is_empty(),
        "out of attempts: must not be delivered"
    );

    let mut admin = server.admin("admin").await;
    let dead = admin
        .list_dead_letters(proto::ListDeadLettersRequest {
            agency: DISTRICT.into(),
            limit: 0,
        })
        .await
        .expect("list")
        .into_inner()
        .dead_letters;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].message_id.as_str(), dead[0].sender.as_str()),
        ("poison", DEPARTMENT)
    );
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0].reason.contains("schema mismatch"),
        "{}",
        dead[0].reason
    );
    assert_eq!(stats(&server, DISTRICT).await.dead, 1);

    admin
        .replay_dead_letter(proto::ReplayDeadLetterRequest {
            dead_letter_id: dead[0].dead_letter_id.clone(),
        })
        .await
        .expect("replay");
    let replayed = drain(&mut district).await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].attempt, 1);
    let gone = admin
        .replay_dead_letter(proto::ReplayDeadLetterRequest {
            dead_letter_id: dead[0].dead_letter_id.clone(),
        })
        .await
        .expect_err("replayed already");
    assert_eq!(gone.code(), Code::NotFound);

    let unconfirmed = admin
        .purge_queue(proto::PurgeQueueRequest {
            agency: DISTRICT.into(),
            confirm: false,
        })
        .await
        .expect_err("needs confirm");
    assert_eq!(unconfirmed.code(), Code::InvalidArgument);
    let purged = admin
        .purge_queue(proto::PurgeQueueRequest {
            agency: DISTRICT.into(),
            confirm: true,
        })
        .await
        .expect("purge")
        .into_inner()
        .purged;
    assert_eq!(purged, 1);
    let stats = stats(&server, DISTRICT).await;
    assert_eq!(stats.depths.iter().map(|d| d.depth).sum::<u64>(), 0);
    assert_eq!(stats.in_flight, 0);

    let mut agency_as_admin = server.admin("district").await;
    let denied = agency_as_admin
        .purge_queue(proto::PurgeQueueRequest {
            agency: DISTRICT.into(),
            confirm: true,
        })
        .await
        .expect_err("not an admin");
    assert_eq!(denied.code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn flash_documents_overtake_normal_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    for (id, priority) in [
        ("normal", proto::Priority::Normal),
        ("urgent", proto::Priority::Urgent),
        ("flash", proto::Priority::Flash),
    ] {
        let mut e = envelope(id, DEPARTMENT, &[DISTRICT], id.as_bytes());
        e.document.as_mut().expect("document").priority = priority as i32;
        send(&mut department, e).await.expect("send");
    }
    let mut district = server.exchange("district").await;
    let order: Vec<String> = drain(&mut district)
        .await
        .iter()
        .map(|d| envelope_of(d).message_id.clone())
        .collect();
    assert_eq!(order, ["flash", "urgent", "normal"]);
    server.stop().await;
}
