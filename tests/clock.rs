//! Leases, backoff, retention and the sweeper over gRPC on a manual clock:
//! the gateway's time is moved by the test, so minutes pass without sleeping.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use lienthong::{
    clock::{Clock, ManualClock, SystemClock},
    proto,
};
use tonic::Code;

/// A gateway on a manual clock that starts at the real time (the test
/// certificates must be valid at it).
async fn start(config: lienthong::config::Config) -> (TestServer, ManualClock) {
    let clock = ManualClock::new(SystemClock.now_millis());
    let server = TestServer::start_with_clock(config, Arc::new(clock.clone())).await;
    (server, clock)
}

#[tokio::test]
async fn an_unacknowledged_lease_runs_out_on_the_gateway_clock_and_the_old_id_goes_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let lease = config.queue.lease;
    let backoff = config.queue.backoff_initial;
    let (server, clock) = start(config).await;
    let mut department = server.exchange("department").await;
    send(
        &mut department,
        envelope("lease-1", DEPARTMENT, &[DISTRICT], b"x"),
    )
    .await
    .expect("send");

    // A live stream takes the delivery and holds it without acknowledging.
    let mut holder = server.exchange("district").await;
    let mut live = live_stream(&mut holder, 1).await;
    let first = next_delivery(&mut live).await;
    assert_eq!(first.attempt, 1);

    let mut district = server.exchange("district").await;
    assert!(
        drain(&mut district).await.is_empty(),
        "leased: not offered twice"
    );
    // Just before the lease and the first backoff have passed: still held.
    clock.advance(millis(lease + backoff) - 1);
    assert!(
        drain(&mut district).await.is_empty(),
        "offered before its time"
    );
    // Then it is offered again, with the attempt counted.
    clock.advance(1);
    let again = drain(&mut district).await;
    assert_eq!(again.len(), 1, "offered again once the lease ran out");
    assert_eq!(again[0].attempt, 2);
    assert_eq!(envelope_of(&again[0]).message_id, "lease-1");

    let stale = district
        .ack(proto::AckRequest {
            delivery_id: first.delivery_id.clone(),
        })
        .await
        .expect_err("the first delivery id lost its lease");
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    ack(&mut district, &again[0]).await;
    clock.advance(millis(lease) * 10);
    assert!(
        drain(&mut district).await.is_empty(),
        "acknowledged: never again"
    );
    drop(live);
    server.stop().await;
}

#[tokio::test]
async fn a_nack_waits_its_exponential_backoff_on_the_gateway_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let initial = millis(config.queue.backoff_initial);
    let (server, clock) = start(config).await;
    let mut department = server.exchange("department").await;
    send(
        &mut department,
        envelope("nack-1", DEPARTMENT, &[DISTRICT], b"x"),
    )
    .await
    .expect("send");
    let mut district = server.exchange("district").await;
    // The n-th nack waits initial × 2^(n-1).
    for (attempt, wait) in [(1, initial), (2, 2 * initial), (3, 4 * initial)] {
        let delivery = drain(&mut district).await.pop().expect("delivered");
        assert_eq!(delivery.attempt, attempt);
        district
            .nack(proto::NackRequest {
                delivery_id: delivery.delivery_id,
                delay_seconds: 0,
                reason: "busy".into(),
            })
            .await
            .expect("nack");
        clock.advance(wait - 1);
        assert!(
            drain(&mut district).await.is_empty(),
            "attempt {attempt}: back before its {wait} ms backoff"
        );
        clock.advance(1);
    }
    assert_eq!(drain(&mut district).await.pop().expect("fourth").attempt, 4);
    server.stop().await;
}

#[tokio::test]
async fn content_is_kept_for_its_retention_then_the_sweeper_releases_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.queue.sweep_interval = Duration::from_secs(1);
    let retention = millis(config.queue.content_retention);
    let (server, clock) = start(config).await;
    let mut department = server.exchange("department").await;
    let content = b"kept thirty days, then released".to_vec();
    let hash = lienthong::store::ContentHash::of(&content);
    send(
        &mut department,
        envelope("kept-1", DEPARTMENT, &[DISTRICT], &content),
    )
    .await
    .expect("send");
    let mut district = server.exchange("district").await;
    let delivery = drain(&mut district).await.pop().expect("delivered");
    ack(&mut district, &delivery).await;
    assert!(server.content_stored(&hash), "{hash} stored");

    // A day short of the retention: several sweeps pass, the file stays.
    clock.advance(retention - 86_400_000);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        server.content_stored(&hash),
        "released before its retention"
    );

    // Past it: the next sweep releases the file.
    clock.advance(86_400_000);
    let mut released = false;
    for _ in 0..100 {
        if !server.content_stored(&hash) {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(released, "{hash} kept past its retention");
    server.stop().await;
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).expect("fits")
}
