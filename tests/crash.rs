//! Crash proof: concurrent senders and receivers run against the real
//! `lienthong` binary while it is killed with SIGKILL at random moments and
//! restarted on the same data dir. Afterwards every Send that got OK has been
//! delivered to every recipient, no message was delivered again after an ack
//! that got OK, and the store opens cleanly.
//!
//! LIENTHONG_CRASH_CYCLES sets the number of kills (default 20).

mod common;

use common::{faults, *};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_across_sigkill() {
    let cycles: u32 = std::env::var("LIENTHONG_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let outcome = faults::kill_cycles(&data, cycles, |_| {}).await;
    outcome.report(&format!("crash test: {cycles} SIGKILL cycles"));
    outcome.assert_nothing_lost(20);
    // The store opens cleanly offline too.
    let (pairs, _) = snapshot(&data);
    assert!(!pairs.is_empty());
}
