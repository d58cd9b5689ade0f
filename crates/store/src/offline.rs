//! A stopped gateway's store opened by the offline tools (`store check`,
//! `audit verify`): read-only by default, on a scratch copy of the engine's
//! files, so that opening a damaged store never changes it (sled's recovery
//! rewrites a torn log when it opens).

use std::path::{Path, PathBuf};

use super::{
    BlobStore, Engine, Kv, PgKv, PgOptions, StoreError, copy_tree, open_sled,
    watermark::{Watermark, WatermarkFile},
};

/// sled's page cache for an offline open: a check reads everything once.
const OFFLINE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// A stopped gateway's store, opened for the offline tools.
pub struct OfflineStore {
    kv: Box<dyn Kv>,
    blobs: BlobStore,
    data_dir: PathBuf,
    _scratch: Option<tempfile::TempDir>,
}

impl OfflineStore {
    /// Opens `data_dir`'s store read-only: its engine files are copied to a
    /// scratch directory and opened there; the original is never written.
    pub fn open_read_only(data_dir: &Path, engine: Engine) -> Result<Self, StoreError> {
        Self::open(data_dir, engine, true)
    }

    /// Opens `data_dir`'s store in place, for [`OfflineStore::reseal`].
    pub fn open_for_reseal(data_dir: &Path, engine: Engine) -> Result<Self, StoreError> {
        Self::open(data_dir, engine, false)
    }

    /// Opens the PostgreSQL store of `options` for a tool: no fence, so no
    /// gateway may be serving it. Content being staged goes to a scratch
    /// directory; the store has no durability record (the database is
    /// durable itself).
    pub fn open_postgres(options: &PgOptions) -> Result<Self, StoreError> {
        let scratch = tempfile::tempdir().map_err(|e| {
            StoreError::io("creating a scratch directory in", &std::env::temp_dir(), e)
        })?;
        let kv = PgKv::open(options, None)?;
        let blobs = BlobStore::open_postgres(&scratch.path().join("blobs"), kv.shared())?;
        Ok(Self {
            kv: Box::new(kv),
            blobs,
            data_dir: scratch.path().to_owned(),
            _scratch: Some(scratch),
        })
    }

    fn open(data_dir: &Path, engine: Engine, copy: bool) -> Result<Self, StoreError> {
        if engine == Engine::Postgres {
            return Err(StoreError::Engine(
                "a PostgreSQL store is not in a data directory: open it with its URL".to_owned(),
            ));
        }
        let sled_dir = data_dir.join("sled");
        if !sled_dir.is_dir() {
            return Err(StoreError::Damaged(format!(
                "{} holds no gateway data (no sled directory)",
                data_dir.display()
            )));
        }
        let (path, scratch) = if copy {
            let scratch = tempfile::tempdir().map_err(|e| {
                StoreError::io("creating a scratch directory in", &std::env::temp_dir(), e)
            })?;
            let path = scratch.path().join("sled");
            copy_tree(&sled_dir, &path)
                .map_err(|e| StoreError::io("copying to check it", &sled_dir, e))?;
            (path, Some(scratch))
        } else {
            (sled_dir.clone(), None)
        };
        let kv = open_sled(&path, OFFLINE_CACHE_BYTES)?;
        Ok(Self {
            kv: Box::new(kv),
            blobs: BlobStore::at(&data_dir.join("blobs")),
            data_dir: data_dir.to_owned(),
            _scratch: scratch,
        })
    }

    /// The engine's records.
    pub fn kv(&self) -> &dyn Kv {
        &*self.kv
    }

    /// The content files (read where they are; never copied).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The durability record, if a readable one exists.
    pub fn durability_record(&self) -> Result<Option<Watermark>, StoreError> {
        Ok(WatermarkFile::open(&self.data_dir)?.map(|(_, mark)| mark))
    }

    /// Accepts the store as it is: a new durability record naming what the
    /// database holds now. Only for a store opened with
    /// [`OfflineStore::open_for_reseal`].
    pub fn reseal(&self) -> Result<Watermark, StoreError> {
        super::reseal(&self.data_dir, self.kv())
    }
}
