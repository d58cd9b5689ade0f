//! A damaged store is never served: with the gateway stopped holding 220
//! unacknowledged messages, sled's files are damaged (bytes flipped at
//! several offsets, the log cut short, garbage in `conf` and in the log, the
//! log deleted). Each case must end in one of two ways: the store opens with
//! all 220 messages and an intact audit chain (the damage hit nothing live),
//! or it is refused with `StoreError::Damaged` naming what is missing.
//! Never an open store that silently lost messages, never a panic.
//!
//! The real binary is checked too: it refuses to start, exits non-zero
//! before opening its port, and `store check` and `audit verify` agree.

mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::*;
use lienthong::{
    audit,
    store::{self, Kv, Store, StoreError},
};

const MESSAGES: usize = 220;

/// A data directory with 220 unacknowledged messages for the district.
async fn pristine() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    for index in 0..MESSAGES {
        let id = format!("damaged-{index:03}");
        send(
            &mut department,
            envelope(&id, DEPARTMENT, &[DISTRICT], id.as_bytes()),
        )
        .await
        .expect("send");
    }
    server.stop().await;
    dir
}

fn queued_for_district(kv: &dyn Kv) -> usize {
    let mut prefix = b"queue\0".to_vec();
    prefix.extend_from_slice(DISTRICT.as_bytes());
    prefix.push(0);
    kv.scan_prefix(&prefix, None, usize::MAX)
        .expect("scan")
        .len()
}

#[derive(Debug)]
enum Outcome {
    Refused(String),
    Intact,
}

/// Opens the damaged store the way the gateway does, on another thread so
/// that a hang would fail the test instead of stalling it.
fn open_damaged(data_dir: &Path) -> Outcome {
    let dir = data_dir.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let outcome = match Store::open(&dir, 8) {
            Err(StoreError::Damaged(message)) => Outcome::Refused(message),
            Err(other) => panic!("expected a Damaged refusal, got {other:?}"),
            Ok(store) => {
                let queued = queued_for_district(store.kv());
                assert_eq!(
                    queued, MESSAGES,
                    "the store opened but holds {queued} of {MESSAGES} messages: silent loss"
                );
                audit::verify(store.kv()).expect("the audit chain of an opened store is intact");
                runtime.block_on(store.close()).expect("close");
                Outcome::Intact
            }
        };
        let _ = tx.send(outcome);
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("opening a damaged store finishes (no hang, no panic)")
}

fn flip(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).expect("read");
    file.write_all_at(&[byte[0] ^ 0x5a], offset).expect("write");
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    file.write_all_at(bytes, offset).expect("write");
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_stores_are_refused_or_intact_never_silently_short() {
    let original = pristine().await;
    let db_len = std::fs::metadata(original.path().join("sled/db"))
        .expect("db")
        .len();
    type Damage = Box<dyn Fn(&Path)>;
    let mut cases: Vec<(String, Damage)> = Vec::new();
    for back in [1u64, 17, 100, 1_000, 4_000, 10_000, 40_000] {
        if back < db_len {
            cases.push((
                format!("byte flipped {back} bytes before the end of db"),
                Box::new(move |dir: &Path| flip(&dir.join("sled/db"), db_len - back)),
            ));
        }
    }
    for fraction in [2u64, 3, 4] {
        cases.push((
            format!("byte flipped at db length / {fraction}"),
            Box::new(move |dir: &Path| flip(&dir.join("sled/db"), db_len / fraction)),
        ));
    }
    cases.push((
        "db cut to half".into(),
        Box::new(move |dir: &Path| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("sled/db"))
                .expect("open");
            file.set_len(db_len / 2).expect("truncate");
        }),
    ));
    cases.push((
        "db cut by 10 bytes".into(),
        Box::new(move |dir: &Path| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("sled/db"))
                .expect("open");
            file.set_len(db_len - 10).expect("truncate");
        }),
    ));
    cases.push((
        "4 KiB of garbage in the middle of db".into(),
        Box::new(move |dir: &Path| overwrite(&dir.join("sled/db"), db_len / 2, &[0xab; 4096])),
    ));
    cases.push((
        "garbage in conf".into(),
        Box::new(|dir: &Path| {
            let mut conf = std::fs::File::create(dir.join("sled/conf")).expect("conf");
            conf.write_all(b"\x00\xffnot a sled config\x13\x37")
                .expect("write");
        }),
    ));
    cases.push((
        "db deleted".into(),
        Box::new(|dir: &Path| std::fs::remove_file(dir.join("sled/db")).expect("rm")),
    ));
    let mut refused = 0;
    for (name, damage) in &cases {
        let case = tempfile::tempdir().expect("tempdir");
        store::copy_tree(original.path(), case.path()).expect("copy");
        damage(case.path());
        match open_damaged(case.path()) {
            Outcome::Refused(message) => {
                refused += 1;
                eprintln!("{name}: refused: {message}");
            }
            Outcome::Intact => eprintln!("{name}: opened with every message"),
        }
    }
    assert!(
        refused >= 3,
        "the truncations and the deleted log must be refused; only {refused} cases were"
    );
    // The undamaged copy opens with everything: the check has no false alarm.
    let clean = tempfile::tempdir().expect("tempdir");
    store::copy_tree(original.path(), clean.path()).expect("copy");
    assert!(matches!(open_damaged(clean.path()), Outcome::Intact));
}

fn run(args: &[&str], data_dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .current_dir(repo())
        .output()
        .expect("run lienthong")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_refuses_a_store_cut_short_before_opening_its_port() {
    let original = pristine().await;
    let case: PathBuf = original.path().to_path_buf();
    let db = case.join("sled/db");
    let len = std::fs::metadata(&db).expect("db").len();
    // Before the damage, store check passes.
    let output = run(&["store", "check"], &case);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("store check passed"), "{stdout}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");

    // Pick a free port; the refusing gateway must never listen on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let output = Command::new(BIN)
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(&case)
        .current_dir(repo())
        .output()
        .expect("serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a damaged store was served: {stderr}"
    );
    assert!(stderr.contains("store damaged"), "{stderr}");
    assert!(stderr.contains("are missing"), "{stderr}");
    assert!(
        !stderr.contains("listening"),
        "the port was opened: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let output = run(&["store", "check"], &case);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "store check passed a damaged store"
    );
    assert!(stdout.contains("FAIL  durability record"), "{stdout}");

    let output = run(&["audit", "verify"], &case);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "audit verify passed a store cut short"
    );
    assert!(
        stderr.contains("durability record names audit entry"),
        "{stderr}"
    );

    // The store is left as it was found: the refusal changed nothing.
    assert!(
        store::watermark::WatermarkFile::open(&case)
            .expect("record")
            .is_some()
    );
}
