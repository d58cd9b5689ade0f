//! The sled 0.34 engine, with the fsync that sled's own flush does not do.

use std::{fs::File, path::Path};

use super::{Batch, Kv, Pair, StoreError};

/// sled's default tree, plus the handle of its log file for fdatasync.
pub struct SledKv {
    db: sled::Db,
    tree: sled::Tree,
    log: File,
}

/// sled's page cache when the config does not say: 128 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 128 * 1024 * 1024;

impl SledKv {
    /// Opens or creates the database in `path`. sled releases its file lock
    /// from a background thread after the last handle is dropped, so a lock
    /// still held is waited for (up to 5 s) before giving up.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Like [`SledKv::open`], with sled's page cache bounded to about
    /// `cache_bytes` (sled's own default is 1 GiB, which a busy gateway's
    /// queue and audit trail grow into).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
        let started = std::time::Instant::now();
        let db = loop {
            let opened = sled::Config::new()
                .path(path)
                // sled's own background flusher stays on; our durability does not depend on it.
                .flush_every_ms(Some(500))
                .cache_capacity(cache_bytes)
                .open();
            match opened {
                Ok(db) => break db,
                // sled 0.34 reports a held lock as an Other-kind I/O error
                // with this message (config.rs), not as WouldBlock.
                Err(sled::Error::Io(error))
                    if is_lock_error(&error) && started.elapsed() < LOCK_WAIT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(sled::Error::Io(error)) if is_lock_error(&error) => {
                    return Err(StoreError::Engine(format!(
                        "the data directory {} is locked: is another lienthong process using it?",
                        path.display()
                    )));
                }
                Err(sled::Error::Io(error)) => {
                    return Err(StoreError::io("opening sled", path, error));
                }
                // Corruption, a bug report, or a `conf` it cannot read
                // ("Unsupported"): the files are not what sled wrote.
                Err(error) => {
                    return Err(StoreError::Damaged(format!(
                        "opening sled at {}: {error}",
                        path.display()
                    )));
                }
            }
        };
        let tree = db
            .open_tree("lienthong")
            .map_err(|e| StoreError::Engine(format!("opening tree: {e}")))?;
        // sled 0.34 keeps all segments in this one file; see DESIGN.md.
        let log_path = path.join("db");
        let log = File::options()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| StoreError::io("opening sled log for fsync", &log_path, e))?;
        Ok(Self { db, tree, log })
    }
}

fn is_lock_error(error: &std::io::Error) -> bool {
    error.to_string().contains("could not acquire lock")
}

fn engine(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Io(source) => StoreError::io("sled", Path::new("db"), source),
        other => StoreError::Engine(other.to_string()),
    }
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key).map_err(engine)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        let mut out = Vec::new();
        let iter = match after {
            Some(after) => {
                let mut start = after.to_vec();
                start.push(0);
                self.tree.range(start..)
            }
            None => self.tree.range(prefix.to_vec()..),
        };
        for item in iter {
            let (key, value) = item.map_err(engine)?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch {
            match value {
                Some(value) => {
                    super::check_value_size(&key, Some(&value))?;
                    sled_batch.insert(key, value);
                }
                None => sled_batch.remove(key),
            }
        }
        self.tree.apply_batch(sled_batch).map_err(engine)
    }

    fn sync(&self) -> Result<(), StoreError> {
        // flush() writes the buffers out with sync_file_range only (sled
        // issue 1452); fdatasync makes them survive power loss.
        self.db.flush().map_err(engine)?;
        self.log
            .sync_data()
            .map_err(|e| StoreError::io("fdatasync of sled log", Path::new("db"), e))
    }
}
