//! Power-cut proof: the crash test's load against the real binary, its data
//! directory on a filesystem that forgets what was never made durable
//! (`lienthong-powercut`, FUSE). After each SIGKILL the power is cut (clean
//! and torn cuts alternate) and the gateway restarts on what survived.
//! Every Send that got OK must be delivered, nothing acknowledged delivered
//! again, and the store and audit chain must check offline. With an fsync
//! that lies, the same checker must report lost documents.
//!
//! LIENTHONG_POWERCUT_CYCLES sets the number of cycles (default 10).

mod common;

use common::{faults, *};
use lienthong_powercut::{Cut, Disk};

fn cut_after_kill(disk: &mut Disk, cycle: u32) {
    let cut = if cycle % 2 == 0 {
        Cut::Clean
    } else {
        Cut::Torn {
            seed: rand::random(),
        }
    };
    let report = disk.cut(cut).expect("cut the power");
    println!("cycle {cycle:>2}: power cut ({cut:?}): {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_across_power_cuts() {
    let cycles: u32 = std::env::var("LIENTHONG_POWERCUT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut disk) = Disk::mount_for_test(dir.path()) else {
        return;
    };
    let data = disk.path().join("data");
    let outcome =
        faults::kill_cycles(&data, cycles, |cycle| cut_after_kill(&mut disk, cycle)).await;
    outcome.report(&format!(
        "power-cut test: {cycles} SIGKILL + power-cut cycles"
    ));
    // The last state, after one more cut, checks offline.
    disk.cut(Cut::Clean).expect("final cut");
    let data_dir = data.to_str().expect("utf-8 path");
    for check in [
        &["store", "check", "--data-dir", data_dir][..],
        &["audit", "verify", "--data-dir", data_dir][..],
    ] {
        let output = run_cli(check, "admin", "127.0.0.1:1");
        stdout_of(&output, &check.join(" "));
    }
    outcome.assert_nothing_lost(20);
}

/// The checker can fail: on a disk whose fsync answers OK without
/// persisting, acknowledged documents are lost and the ledger says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_fsync_that_lies_the_checker_reports_lost_documents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut disk) = Disk::mount_for_test(dir.path()) else {
        return;
    };
    disk.model().set_fsync_lies(true);
    let data = disk.path().join("data");
    // Four cycles: enough traffic to lose even on a loaded machine (two
    // cycles once sent only 7 documents while a build ran beside them).
    let outcome = faults::kill_cycles(&data, 4, |cycle| cut_after_kill(&mut disk, cycle)).await;
    outcome.report("power-cut test with a lying fsync: 4 cycles");
    assert!(
        outcome.ledger.sent_ok.len() >= 5,
        "too little traffic: {}",
        outcome.ledger.sent_ok.len()
    );
    assert!(
        !outcome.lost.is_empty(),
        "a disk that persists nothing lost nothing: the checker cannot see losses"
    );
}
