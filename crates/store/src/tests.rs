//! One suite for every engine: the contract the queue relies on.

use std::sync::Arc;

use super::*;
use crate::pg::Leadership;

fn engines() -> Vec<(&'static str, Arc<dyn Kv>, tempfile::TempDir)> {
    let sled_dir = tempfile::tempdir().expect("tempdir");
    let sled: Arc<dyn Kv> =
        Arc::new(SledKv::open(&sled_dir.path().join("sled")).expect("sled opens"));
    let memory_dir = tempfile::tempdir().expect("tempdir");
    let mut engines = vec![
        ("sled", sled, sled_dir),
        (
            "memory",
            Arc::new(MemoryKv::new()) as Arc<dyn Kv>,
            memory_dir,
        ),
    ];
    if let Some(options) = postgres() {
        let kv: Arc<dyn Kv> = Arc::new(PgKv::open(&options, None).expect("postgres opens"));
        engines.push(("postgres", kv, tempfile::tempdir().expect("tempdir")));
    }
    engines
}

/// A fresh database on the test cluster, or `None` (SKIPPED) outside CI.
fn postgres() -> Option<PgOptions> {
    match pg::test_cluster() {
        Some(admin) => Some(pg::scratch_database(&admin).expect("create a test database")),
        None => {
            eprintln!("SKIPPED the PostgreSQL engine: LIENTHONG_PG is not set");
            None
        }
    }
}

fn put(key: &[u8], value: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    (key.to_vec(), Some(value.to_vec()))
}

#[test]
fn scan_is_ordered_bounded_and_resumable() {
    for (name, kv, _dir) in engines() {
        kv.apply(vec![
            put(b"a\0", b"outside"),
            put(b"q\0b", b"2"),
            put(b"q\0a", b"1"),
            put(b"q\0c", b"3"),
            put(b"r\0a", b"outside"),
        ])
        .expect("apply");
        let all = kv.scan_prefix(b"q\0", None, 10).expect("scan");
        let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![&b"q\0a"[..], b"q\0b", b"q\0c"], "{name}");
        let first = kv.scan_prefix(b"q\0", None, 2).expect("scan");
        assert_eq!(first.len(), 2, "{name}");
        let rest = kv.scan_prefix(b"q\0", Some(&first[1].0), 10).expect("scan");
        assert_eq!(rest, vec![(b"q\0c".to_vec(), b"3".to_vec())], "{name}");
        kv.apply(vec![(b"q\0b".to_vec(), None)]).expect("delete");
        assert_eq!(kv.get(b"q\0b").expect("get"), None, "{name}");
        assert_eq!(kv.get(b"q\0a").expect("get"), Some(b"1".to_vec()), "{name}");
    }
}

#[test]
fn an_oversized_value_fails_the_whole_batch() {
    for (name, kv, _dir) in engines() {
        let big = vec![7u8; MAX_VALUE_BYTES + 1];
        let error = kv
            .apply(vec![put(b"k1", b"small"), (b"k2".to_vec(), Some(big))])
            .expect_err("too large");
        assert!(
            matches!(error, StoreError::ValueTooLarge { .. }),
            "{name}: {error}"
        );
        assert_eq!(
            kv.get(b"k1").expect("get"),
            None,
            "{name}: batch must not half-apply"
        );
    }
}

#[tokio::test]
async fn writer_applies_ok_jobs_discards_failed_ones_and_numbers_in_order() {
    for (name, kv, dir) in engines() {
        let blobs = BlobStore::open(&dir.path().join("blobs")).expect("blobs");
        let store = Store::with_kv(kv, blobs, 16).expect("store");
        let first = store
            .writer()
            .write(|w| {
                w.put(b"x".to_vec(), b"1".to_vec());
                Ok::<_, StoreError>(w.next_seq())
            })
            .await
            .expect("write");
        let failed: Result<(), StoreError> = store
            .writer()
            .write(|w| {
                w.put(b"y".to_vec(), b"never".to_vec());
                Err(StoreError::Engine("refused on purpose".into()))
            })
            .await;
        assert!(failed.is_err(), "{name}");
        assert_eq!(
            store.kv().get(b"y").expect("get"),
            None,
            "{name}: failed job wrote"
        );
        let second = store
            .writer()
            .write(|w| {
                // Read-your-writes inside one job.
                w.put(b"z".to_vec(), b"2".to_vec());
                assert_eq!(w.get(b"z").expect("get"), Some(b"2".to_vec()));
                Ok::<_, StoreError>(w.next_seq())
            })
            .await
            .expect("write");
        assert!(second > first, "{name}");
        assert!(store.writer().durable_seq() >= second, "{name}");
        store.close().await.expect("close");
    }
}

#[tokio::test]
async fn a_panicking_job_fails_alone_and_the_writer_keeps_serving() {
    for (name, kv, dir) in engines() {
        let blobs = BlobStore::open(&dir.path().join("blobs")).expect("blobs");
        let store = Store::with_kv(kv, blobs, 64).expect("store");
        // Healthy jobs submitted together with the panicking one share its
        // group: they must still be applied and answered.
        let mut tasks = Vec::new();
        for index in 0..8u8 {
            let writer = store.writer().clone();
            tasks.push(tokio::spawn(async move {
                writer
                    .write(move |w| {
                        w.put(vec![b'k', index], vec![index]);
                        if index == 3 {
                            w.put(b"half-done".to_vec(), b"must not land".to_vec());
                            panic!("injected fault in write job {index}");
                        }
                        Ok::<_, StoreError>(())
                    })
                    .await
            }));
        }
        for (index, task) in tasks.into_iter().enumerate() {
            let outcome = task.await.expect("the caller's task itself does not panic");
            if index == 3 {
                let error = outcome.expect_err("the panicking job fails");
                assert!(
                    matches!(&error, StoreError::JobPanicked(text) if text.contains("injected fault")),
                    "{name}: {error}"
                );
                assert!(error.to_string().starts_with("internal fault"), "{error}");
            } else {
                outcome.unwrap_or_else(|e| panic!("{name}: job {index} failed: {e}"));
            }
        }
        assert_eq!(store.kv().get(b"half-done").expect("get"), None, "{name}");
        assert_eq!(store.kv().get(&[b'k', 3]).expect("get"), None, "{name}");
        for index in [0u8, 1, 2, 4, 5, 6, 7] {
            assert_eq!(
                store.kv().get(&[b'k', index]).expect("get"),
                Some(vec![index]),
                "{name}: job {index}"
            );
        }
        // And the writer still serves.
        store
            .writer()
            .write(|w| {
                w.put(b"after".to_vec(), b"ok".to_vec());
                Ok::<_, StoreError>(())
            })
            .await
            .expect("the writer survived the panic");
        assert!(!store.writer().is_failed(), "{name}");
        store.close().await.expect("close");
    }
}

#[tokio::test]
async fn concurrent_writes_all_become_durable_in_shared_flushes() {
    for (name, kv, dir) in engines() {
        let blobs = BlobStore::open(&dir.path().join("blobs")).expect("blobs");
        let store = Store::with_kv(kv, blobs, 64).expect("store");
        let mut tasks = Vec::new();
        for index in 0..200u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .writer()
                    .write(move |w| {
                        w.put(
                            format!("k{index:04}").into_bytes(),
                            index.to_be_bytes().to_vec(),
                        );
                        Ok::<_, StoreError>(())
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.expect("join").expect("write");
        }
        assert_eq!(
            store
                .kv()
                .scan_prefix(b"k", None, 1000)
                .expect("scan")
                .len(),
            200,
            "{name}"
        );
        store.close().await.expect("close");
    }
}

#[tokio::test]
async fn jobs_of_one_group_see_each_other_and_a_bad_one_fails_alone() {
    for (name, kv, dir) in engines() {
        let blobs = BlobStore::open(&dir.path().join("blobs")).expect("blobs");
        let store = Store::with_kv(kv, blobs, 256).expect("store");
        let mut tasks = Vec::new();
        for index in 0..200u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .writer()
                    .write(move |w| {
                        // Read-modify-write of one counter: each job must see
                        // the ones before it, in the same group or not.
                        let count = w
                            .get(b"counter")?
                            .map_or(0u32, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        w.put(b"counter".to_vec(), (count + 1).to_be_bytes().to_vec());
                        if index == 100 {
                            w.put(b"huge".to_vec(), vec![0; MAX_VALUE_BYTES + 1]);
                        }
                        Ok::<_, StoreError>(())
                    })
                    .await
            }));
        }
        let mut failures = 0;
        for task in tasks {
            if let Err(error) = task.await.expect("join") {
                assert!(
                    matches!(error, StoreError::ValueTooLarge { .. }),
                    "{name}: {error}"
                );
                failures += 1;
            }
        }
        assert_eq!(failures, 1, "{name}: only the oversized job fails");
        assert_eq!(
            store.kv().get(b"counter").expect("get"),
            Some(199u32.to_be_bytes().to_vec()),
            "{name}: 199 increments stood, the failed one left no trace"
        );
        assert_eq!(store.kv().get(b"huge").expect("get"), None, "{name}");
        store.close().await.expect("close");
    }
}

#[tokio::test]
async fn sled_keeps_data_and_sequence_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = {
        let store = Store::open(dir.path(), 8).expect("open");
        let seq = store
            .writer()
            .write(|w| {
                w.put(b"kept".to_vec(), b"yes".to_vec());
                Ok::<_, StoreError>(w.next_seq())
            })
            .await
            .expect("write");
        store.close().await.expect("close");
        seq
    };
    let store = Store::open(dir.path(), 8).expect("reopen");
    assert_eq!(store.kv().get(b"kept").expect("get"), Some(b"yes".to_vec()));
    assert_eq!(store.writer().durable_seq(), last);
    let next = store
        .writer()
        .write(|w| Ok::<_, StoreError>(w.next_seq()))
        .await
        .expect("write");
    assert!(
        next > last,
        "sequence numbers must never repeat after a restart"
    );
}

#[test]
fn blobs_are_content_addressed_and_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = BlobStore::open(dir.path()).expect("blobs");
    let hash = blobs.put(b"document").expect("put");
    assert_eq!(hash, ContentHash::of(b"document"));
    assert_eq!(blobs.put(b"document").expect("put again"), hash);
    assert_eq!(blobs.list().expect("list"), vec![hash]);
    assert_eq!(blobs.get(&hash).expect("get"), b"document");
    // A file altered on disk is caught on read, not delivered.
    let hex = hash.to_hex();
    std::fs::write(dir.path().join(&hex[..2]).join(&hex), b"tampered").expect("tamper");
    assert!(matches!(blobs.get(&hash), Err(StoreError::Corrupt { .. })));
}

#[test]
fn records_round_trip_and_reject_unknown_versions() {
    let bytes = encode(&("a".to_owned(), 7u32)).expect("encode");
    let back: (String, u32) = decode(b"k", &bytes).expect("decode");
    assert_eq!(back, ("a".to_owned(), 7));
    let mut future = bytes.clone();
    future[0] = 99;
    assert!(matches!(
        decode::<(String, u32)>(b"k", &future),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        decode::<(String, u32)>(b"k", &[]),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn an_older_record_version_decodes_and_says_which() {
    #[derive(serde::Deserialize)]
    struct Seen(#[serde(deserialize_with = "seen_version")] u8);
    fn seen_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
        let _: u8 = serde::Deserialize::deserialize(d)?;
        Ok(decoding_version())
    }
    let mut bytes = encode(&0u8).expect("encode");
    assert_eq!(bytes[0], RECORD_VERSION);
    assert_eq!(
        decode::<Seen>(b"k", &bytes).expect("current").0,
        RECORD_VERSION
    );
    bytes[0] = 1;
    assert_eq!(decode::<Seen>(b"k", &bytes).expect("version 1").0, 1);
    assert_eq!(
        decoding_version(),
        RECORD_VERSION,
        "restored after decoding"
    );
}

#[test]
fn a_lock_released_shortly_after_is_waited_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sled");
    let first = SledKv::open(&path).expect("first open");
    let holder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(first);
    });
    // The first handle still holds sled's file lock when this starts.
    let second = SledKv::open(&path);
    holder.join().expect("holder");
    assert!(second.is_ok(), "{:?}", second.err());
}

thread_local! {
    /// Paths fsynced by this thread, for the durability tests.
    static SYNCED: std::cell::RefCell<Vec<std::path::PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub(super) fn record_sync(path: &Path) {
    SYNCED.with(|synced| synced.borrow_mut().push(path.to_path_buf()));
}

fn take_synced() -> Vec<std::path::PathBuf> {
    SYNCED.with(|synced| std::mem::take(&mut *synced.borrow_mut()))
}

#[tokio::test]
async fn every_directory_the_store_creates_is_fsynced() {
    let root = tempfile::tempdir().expect("tempdir");
    // The data directory and its parent do not exist yet.
    let data = root.path().join("srv").join("data");
    take_synced();
    let store = Store::open(&data, 8).expect("open");
    let synced = take_synced();
    for needed in [
        root.path().to_path_buf(),
        root.path().join("srv"),
        data.clone(),
        data.join("sled"),
        data.join("sled").join("conf"),
        data.join("blobs"),
        data.join("blobs").join("tmp"),
    ] {
        assert!(
            synced.contains(&needed),
            "{} was not fsynced; fsynced: {synced:?}",
            needed.display()
        );
    }
    // A new shard directory is fsynced with its parent before content lands.
    store.blobs().put(b"content").expect("put");
    let hash = ContentHash::of(b"content").to_hex();
    let synced = take_synced();
    assert!(
        synced.contains(&data.join("blobs").join(&hash[..2])),
        "{synced:?}"
    );
    assert!(synced.contains(&data.join("blobs")), "{synced:?}");
    store.close().await.expect("close");
    // Clearing leftovers in blobs/tmp at start is made durable too.
    std::fs::write(data.join("blobs").join("tmp").join("leftover"), b"x").expect("write");
    take_synced();
    drop(store);
    let store = Store::open(&data, 8).expect("reopen");
    assert!(take_synced().contains(&data.join("blobs").join("tmp")));
    assert!(!data.join("blobs").join("tmp").join("leftover").exists());
    store.close().await.expect("close");
}

async fn write_one(store: &Store, key: &[u8]) {
    let key = key.to_vec();
    store
        .writer()
        .write(move |writes| {
            writes.next_seq();
            writes.put(key, b"v".to_vec());
            Ok::<_, StoreError>(())
        })
        .await
        .expect("write");
}

#[tokio::test]
async fn a_store_that_went_back_is_refused_with_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 8).expect("open");
    write_one(&store, b"k1").await;
    store.close().await.expect("close");
    drop(store);
    // A copy of the store as it was after one write...
    let saved = tempfile::tempdir().expect("tempdir");
    copy_tree(&dir.path().join("sled"), &saved.path().join("sled")).expect("copy");
    let store = Store::open(dir.path(), 8).expect("reopen");
    for key in [b"k2", b"k3", b"k4"] {
        write_one(&store, key).await;
    }
    store.close().await.expect("close");
    drop(store);
    // ...put back in place of the newer one: three groups are missing.
    std::fs::remove_dir_all(dir.path().join("sled")).expect("remove");
    copy_tree(&saved.path().join("sled"), &dir.path().join("sled")).expect("copy");
    let error = Store::open(dir.path(), 8).err().expect("refused");
    let message = error.to_string();
    assert!(matches!(error, StoreError::Damaged(_)), "{message}");
    assert!(message.contains("the last 3 are missing"), "{message}");
    // The engine's files gone altogether: refused too, not a fresh start.
    std::fs::remove_dir_all(dir.path().join("sled")).expect("remove");
    let error = Store::open(dir.path(), 8).err().expect("refused");
    assert!(
        error.to_string().contains("the last 4 are missing"),
        "{error}"
    );
}

#[tokio::test]
async fn a_store_without_its_record_is_refused_until_resealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), 8).expect("open");
    write_one(&store, b"k1").await;
    store.close().await.expect("close");
    drop(store);
    std::fs::remove_file(dir.path().join(watermark::FILE_NAME)).expect("remove");
    let error = Store::open(dir.path(), 8).err().expect("refused");
    assert!(
        error.to_string().contains("no durability record"),
        "{error}"
    );
    let kv = open_sled(&dir.path().join("sled"), SLED_DEFAULT_CACHE_BYTES).expect("sled");
    let sealed = reseal(dir.path(), &kv).expect("reseal");
    assert_eq!(sealed.generation, 1);
    drop(kv);
    let store = Store::open(dir.path(), 8).expect("opens after reseal");
    assert_eq!(store.kv().get(b"k1").expect("get"), Some(b"v".to_vec()));
    store.close().await.expect("close");
}

#[test]
fn postgres_orders_bytea_keys_bytewise() {
    let Some(options) = postgres() else { return };
    let kv = PgKv::open(&options, None).expect("postgres opens");
    // Keys that a collation, a signed byte or a text comparison would
    // order differently: NULs, 0x7f/0x80, 0xff, prefixes of each other.
    let mut keys: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0, 0xff],
        vec![1],
        b"A".to_vec(),
        b"a".to_vec(),
        b"a\0".to_vec(),
        b"a\0b".to_vec(),
        b"ab".to_vec(),
        vec![0x7f],
        vec![0x80],
        vec![0x80, 0],
        "é".as_bytes().to_vec(),
        vec![0xff],
        vec![0xff, 0xff],
        vec![0xff, 0xff, 0],
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let length = (state % 6) as usize;
        keys.push(state.to_be_bytes()[..length].to_vec());
    }
    keys.sort();
    keys.dedup();
    kv.apply(keys.iter().map(|k| (k.clone(), Some(k.clone()))).collect())
        .expect("apply");
    let all: Vec<Vec<u8>> = kv
        .scan_prefix(b"", None, usize::MAX)
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(all, keys, "PostgreSQL's bytea order is Rust's byte order");
    // Prefix scans end where the prefix does, also at 0xff.
    let under_ff: Vec<Vec<u8>> = keys
        .iter()
        .filter(|k| k.starts_with(&[0xff]))
        .cloned()
        .collect();
    let scanned: Vec<Vec<u8>> = kv
        .scan_prefix(&[0xff], None, 1000)
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(scanned, under_ff);
    // Resuming after a key goes on with the next one in that order.
    let middle = &keys[keys.len() / 2];
    let rest: Vec<Vec<u8>> = kv
        .scan_prefix(b"", Some(middle), 3)
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let position = keys.iter().position(|k| k == middle).expect("present");
    assert_eq!(
        rest,
        keys[position + 1..(position + 4).min(keys.len())].to_vec()
    );
}

#[tokio::test]
async fn postgres_keeps_data_sequence_and_content_across_reopen() {
    let Some(mut options) = postgres().map(|postgres| StoreOptions {
        engine: Engine::Postgres,
        postgres,
        ..StoreOptions::default()
    }) else {
        return;
    };
    // Small chunks so that a modest document spans several rows.
    options.postgres.chunk_bytes = 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let content: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let (last, hash, small) = {
        let store = Store::open_with(dir.path(), &options).expect("open");
        let seq = store
            .writer()
            .write(|w| {
                w.put(b"kept".to_vec(), b"yes".to_vec());
                Ok::<_, StoreError>(w.next_seq())
            })
            .await
            .expect("write");
        let mut staged = store.blobs().stage().expect("stage");
        for piece in content.chunks(777) {
            staged.write(piece).expect("write piece");
        }
        let hash = store.blobs().commit(staged).expect("commit");
        let small = store.blobs().put(b"a small document").expect("put");
        assert_eq!(
            store.blobs().put(b"a small document").expect("again"),
            small,
            "content is stored once"
        );
        store.close().await.expect("close");
        (seq, hash, small)
    };
    assert!(
        std::fs::read_dir(dir.path().join("blobs/tmp"))
            .expect("staging")
            .next()
            .is_none(),
        "nothing left in staging"
    );
    let store = Store::open_with(dir.path(), &options).expect("reopen");
    assert_eq!(store.kv().get(b"kept").expect("get"), Some(b"yes".to_vec()));
    assert_eq!(store.writer().durable_seq(), last);
    let next = store
        .writer()
        .write(|w| Ok::<_, StoreError>(w.next_seq()))
        .await
        .expect("write");
    assert!(next > last, "sequence numbers never repeat after a reopen");
    assert_eq!(store.blobs().get(&hash).expect("get"), content);
    let mut reader = store.blobs().open_reader(&hash).expect("reader");
    let (mut read, mut buffer) = (Vec::new(), [0u8; 500]);
    loop {
        match reader.read(&mut buffer).expect("read") {
            0 => break,
            n => read.extend_from_slice(&buffer[..n]),
        }
    }
    assert_eq!(read, content, "read back in pieces across chunk rows");
    let mut listed = vec![hash, small];
    listed.sort();
    assert_eq!(store.blobs().list().expect("list"), listed);
    assert!(store.blobs().contains(&small));
    assert!(store.blobs().remove(&small).expect("remove"));
    assert!(!store.blobs().contains(&small));
    assert!(!store.blobs().remove(&small).expect("remove again"));
    let missing = store
        .blobs()
        .open_reader(&small)
        .map(|_| ())
        .expect_err("gone");
    assert!(missing.to_string().contains("reading blob"), "{missing}");
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_deposed_leader_can_neither_write_nor_read() {
    let Some(postgres) = postgres() else { return };
    let postgres = PgOptions {
        lease: std::time::Duration::from_millis(1500),
        ..postgres
    };
    let options = StoreOptions {
        engine: Engine::Postgres,
        postgres: postgres.clone(),
        ..StoreOptions::default()
    };
    let mut first = Lease::new(&postgres, "first".into(), "127.0.0.1:1".into()).expect("lease");
    let mut second = Lease::new(&postgres, "second".into(), "127.0.0.1:2".into()).expect("lease");
    let Leadership::Acquired(fence) = first.try_acquire().await.expect("acquire") else {
        panic!("a free lease is taken")
    };
    match second.try_acquire().await.expect("try") {
        Leadership::HeldBy { holder, address } => {
            assert_eq!(
                (holder.as_str(), address.as_str()),
                ("first", "127.0.0.1:1")
            );
        }
        other => panic!("a held lease is not taken: {other:?}"),
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_postgres(dir.path(), &options, Some(fence.clone())).expect("open");
    store
        .writer()
        .write(|w| {
            w.put(b"by-first".to_vec(), b"1".to_vec());
            Ok::<_, StoreError>(())
        })
        .await
        .expect("the leader writes");
    assert!(
        first.renew(&fence).await.expect("renew"),
        "renewed while held"
    );
    // The first gateway stops renewing (hung); the lease runs out.
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    let Leadership::Acquired(taken) = second.try_acquire().await.expect("acquire") else {
        panic!("a lease that ran out is taken over")
    };
    assert_eq!(
        taken.epoch(),
        fence.epoch() + 1,
        "a takeover is a new epoch"
    );
    let refused = store.kv().get(b"by-first").expect_err("reads refused");
    assert!(matches!(refused, StoreError::NotLeader(_)), "{refused}");
    let refused: Result<(), StoreError> = store
        .writer()
        .write(|w| {
            w.put(b"late".to_vec(), b"x".to_vec());
            Ok(())
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotLeader(_))),
        "{refused:?}"
    );
    assert!(!first.renew(&fence).await.expect("renew"), "deposed");
    // Even with a lapsed deadline ignored, the epoch check in the
    // transaction refuses: a kv without the local deadline (a fence
    // renewed by mistake) still cannot commit.
    let kv = PgKv::open(
        &postgres,
        Some(Fence::new(
            fence.epoch(),
            std::time::Instant::now() + std::time::Duration::from_secs(60),
        )),
    )
    .expect("open");
    let refused = kv
        .apply(vec![put(b"late", b"x")])
        .expect_err("the epoch is checked in the transaction");
    assert!(matches!(refused, StoreError::NotLeader(_)), "{refused}");
    let winner = Store::open_postgres(dir.path(), &options, Some(taken)).expect("open");
    assert_eq!(
        winner.kv().get(b"by-first").expect("get"),
        Some(b"1".to_vec())
    );
    assert_eq!(
        winner.kv().get(b"late").expect("get"),
        None,
        "nothing of the deposed one"
    );
    winner.close().await.expect("close");
}
