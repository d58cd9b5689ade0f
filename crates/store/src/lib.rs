//! Storage: a small key-value trait (sled shipped, in-memory for tests), the
//! group-commit writer that alone makes writes durable, and the blob files.
//!
//! Everything the gateway keeps lives in one ordered key space, split by the
//! prefixes in [`keys`]. One key space means one write batch is atomic across
//! messages, queue entries and indexes without sled's optimistic multi-tree
//! transactions.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod blob;
mod commit;
mod memory;
pub mod offline;
pub mod pg;
mod sled_kv;
mod space;
#[cfg(test)]
mod tests;
pub mod watermark;

use std::{path::Path, sync::Arc};

pub use blob::{BlobReader, BlobStore, ContentHash, StagedBlob};
pub use commit::{WriteSet, Writer};
pub use memory::MemoryKv;
pub use pg::{Fence, Leadership, Lease, PgKv, PgOptions};
pub use sled_kv::{DEFAULT_CACHE_BYTES as SLED_DEFAULT_CACHE_BYTES, SledKv};
pub use space::SpaceGuard;

/// Largest value the store accepts. sled moves values over about 128 KiB into
/// blob files it never fsyncs, so anything near that size must go to
/// [`BlobStore`] instead; this bound makes a mistake fail loudly.
pub const MAX_VALUE_BYTES: usize = 96 * 1024;

/// What can go wrong below the domain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed.
    #[error("storage engine: {0}")]
    Engine(String),
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored record could not be decoded: the store is damaged or from a
    /// newer version.
    #[error("corrupt record under key {key}: {reason}")]
    Corrupt {
        /// The key, printable.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// A value over [`MAX_VALUE_BYTES`].
    #[error("value of {size} bytes under key {key} exceeds the {max}-byte limit")]
    ValueTooLarge {
        /// The key, printable.
        key: String,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An earlier durable flush failed; nothing more is written until the
    /// gateway restarts (it exits so that its service manager restarts it).
    #[error("the store cannot write ({0}); the gateway is restarting")]
    Failed(String),
    /// The disk (or the filesystem's quota) is full.
    #[error("the disk is full: {action} {path} failed (no space left on device)")]
    DiskFull {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: String,
    },
    /// Taking `incoming` more bytes would leave less free space than the
    /// reserve kept for deliveries and acknowledgements
    /// (`store.min_free_bytes`).
    #[error(
        "the disk is full: {} free, {} of it kept for deliveries and acknowledgements; {} more refused",
        mib(*free), mib(*reserve), mib(*incoming)
    )]
    NoRoom {
        /// Bytes free on the data directory's filesystem.
        free: u64,
        /// Bytes the refused write needed.
        incoming: u64,
        /// The reserve.
        reserve: u64,
    },
    /// The store lost durable state or cannot be opened safely; it is not
    /// served.
    #[error("store damaged: {0}")]
    Damaged(String),
    /// A write job panicked: a fault in the gateway's own code, not in the
    /// store. Its writes were discarded; the writer goes on.
    #[error("internal fault: a write job panicked ({0}); its writes were discarded")]
    JobPanicked(String),
    /// The writer has stopped (shutdown).
    #[error("store is shutting down")]
    Closed,
    /// The database cannot be reached, or did not answer in time
    /// (PostgreSQL engine). Nothing of the failed call was written.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// This gateway no longer holds the leadership of a shared database
    /// (PostgreSQL engine): another one took over, or its lease ran out.
    /// Nothing of the refused call was written.
    #[error("this gateway is no longer the active one: {0}")]
    NotLeader(String),
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        if is_disk_full(&source) {
            return Self::DiskFull {
                action,
                path: path.display().to_string(),
            };
        }
        Self::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}

/// Bytes as MiB with one decimal, for messages.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// True for ENOSPC and EDQUOT: the disk or the quota is full.
pub(crate) fn is_disk_full(error: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
        || error.kind() == std::io::ErrorKind::StorageFull
}

/// fsyncs a directory, so that the entries created in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(test)]
    tests::record_sync(dir);
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync of directory", dir, e))
}

/// fsyncs a file, by path.
pub(crate) fn sync_file(path: &Path) -> Result<(), StoreError> {
    #[cfg(test)]
    tests::record_sync(path);
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io("fsync of file", path, e))
}

/// Creates `dir` and any missing parents, then fsyncs each created directory
/// and the parent of the first one created: POSIX makes a new directory
/// entry durable only after an fsync of the directory holding it (ext4 and
/// XFS journals hide this; other filesystems do not).
pub(crate) fn create_dir_durably(dir: &Path) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.as_os_str().is_empty() || path.is_dir() {
            break;
        }
        missing.push(path.to_path_buf());
        cursor = path.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io("creating directory", dir, e))?;
    // Deepest first: a directory's own entries, then the entry naming it.
    for created in &missing {
        sync_dir(created)?;
    }
    if let Some(top) = missing.last() {
        let parent = match top.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

/// Keys and values as the engine sees them.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A set of writes applied atomically: `None` deletes the key.
pub type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// An ordered key-value engine. Implementations must apply a [`Batch`]
/// atomically (all or nothing, also across a crash) and make everything
/// applied so far durable in [`Kv::sync`].
pub trait Kv: Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` pairs whose key starts with `prefix`, in key order,
    /// starting after `after` when given.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError>;
    /// Applies `batch` atomically. Not durable until [`Kv::sync`].
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;
    /// Makes every applied batch durable (fsync).
    fn sync(&self) -> Result<(), StoreError>;
}

/// The key prefixes of the one key space. Each ends in a NUL so that no
/// prefix is a prefix of another.
pub mod keys {
    /// `agency\0{code}` → agency record.
    pub const AGENCY: &[u8] = b"agency\0";
    /// `agency-cert\0{sha256 hex}` → org code.
    pub const AGENCY_CERT: &[u8] = b"agency-cert\0";
    /// `msg\0{sender}\0{message id}` → message record; also the dedupe record.
    pub const MESSAGE: &[u8] = b"msg\0";
    /// `queue\0{recipient}\0{rank u8}{seq u64 BE}` → queue entry.
    pub const QUEUE: &[u8] = b"queue\0";
    /// `signer\0{sha256 hex}` → signer binding.
    pub const SIGNER: &[u8] = b"signer\0";
    /// `status-state\0{sender}\0{message id}\0{reporter}` → last edXML status (u8).
    pub const STATUS_STATE: &[u8] = b"status-state\0";
    /// `group\0{name}` → group.
    pub const GROUP: &[u8] = b"group\0";
    /// `policy\0{document type}` → policy.
    pub const POLICY: &[u8] = b"policy\0";
    /// `trust-anchor\0{sha256 hex}` → anchor certificate DER (added by Admin).
    pub const TRUST_ANCHOR: &[u8] = b"trust-anchor\0";
    /// `trust-crl\0{sha256 of issuer name, hex}` → CRL DER (published by Admin).
    pub const TRUST_CRL: &[u8] = b"trust-crl\0";
    /// `signing-key\0{agency}\0{role}` → sealed (encrypted) signing key.
    pub const SIGNING_KEY: &[u8] = b"signing-key\0";
    /// `dead\0{recipient}\0{rank u8}{seq u64 BE}` → dead letter.
    pub const DEAD: &[u8] = b"dead\0";
    /// `audit\0{seq u64 BE}` → audit entry.
    pub const AUDIT: &[u8] = b"audit\0";
    /// `trace\0{sender}\0{message id}\0{audit seq}` → empty: a message's audit entries.
    pub const TRACE: &[u8] = b"trace\0";
    /// `blob-ref\0{sha256}` → number of messages still using the content (u64 BE).
    pub const BLOB_REF: &[u8] = b"blob-ref\0";
    /// `pending\0{sender}\0{message id}` → deliveries of the message not yet
    /// acknowledged or purged (u32 BE).
    pub const PENDING: &[u8] = b"pending\0";
    /// `expire\0{due u64 BE}{sender}\0{message id}` → empty: the message's
    /// content may be released from `due` on.
    pub const EXPIRE: &[u8] = b"expire\0";
    /// `route\0{sender}\0{message id}` → the gateways a forwarded message
    /// went through before this one, origin first (federation).
    pub const ROUTE: &[u8] = b"route\0";
    /// `hops\0{sender}\0{message id}` → the signed hops of a forwarded
    /// message as this gateway knows them, origin first (federation).
    pub const HOPS: &[u8] = b"hops\0";
    /// `edxml\0{sender}\0{message id}` → the edXML header a document came
    /// with (an edXML package without attachment content, UTF-8).
    pub const EDXML: &[u8] = b"edxml\0";
    /// `edxml-answer\0{sender}\0{earlier message id}` → the id of the
    /// latest revoke, update or replace that came as edXML for it: where an
    /// edXML status 15 or 16 (which names only the document) belongs.
    pub const EDXML_ANSWER: &[u8] = b"edxml-answer\0";
    /// `meta\0audit-head` → (last audit seq, its hash).
    pub const META_AUDIT_HEAD: &[u8] = b"meta\0audit-head";
    /// `meta\0seq` → the last sequence number handed out (u64 BE).
    pub const META_SEQ: &[u8] = b"meta\0seq";
    /// `meta\0generation` → write groups made durable so far (u64 BE); the
    /// durability record outside the engine names the same number.
    pub const META_GENERATION: &[u8] = b"meta\0generation";

    /// Joins a prefix and parts with NUL separators.
    pub fn join(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut key = prefix.to_vec();
        for (index, part) in parts.iter().enumerate() {
            if index > 0 {
                key.push(0);
            }
            key.extend_from_slice(part);
        }
        key
    }
}

/// Refuses a value over [`MAX_VALUE_BYTES`]: sled would put it in a blob
/// file outside its log, which our fdatasync does not cover.
pub(crate) fn check_value_size(key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
    match value {
        Some(value) if value.len() > MAX_VALUE_BYTES => Err(StoreError::ValueTooLarge {
            key: printable_key(key),
            size: value.len(),
            max: MAX_VALUE_BYTES,
        }),
        _ => Ok(()),
    }
}

/// Calls `visit` for every pair under `prefix`, in key order, reading the
/// engine a page at a time so memory stays bounded however many there are.
pub fn for_each_in_prefix<E: From<StoreError>>(
    kv: &dyn Kv,
    prefix: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    const PAGE: usize = 512;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = kv.scan_prefix(prefix, after.as_deref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        for (key, value) in &page {
            visit(key, value)?;
        }
    }
}

/// Encodes a record with a leading format version byte.
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(value, vec![RECORD_VERSION])
        .map_err(|error| StoreError::Engine(format!("encoding a record: {error}")))
}

/// SHA-256 of `value`'s canonical encoding: version-1 postcard behind a
/// `1` byte. Frozen, whatever later record versions [`encode`] writes:
/// digests computed this way are kept in records (the dedupe digest of a
/// message) and must come out the same after an upgrade.
pub fn canonical_digest<T: serde::Serialize>(value: &T) -> Result<ContentHash, StoreError> {
    let bytes = postcard::to_extend(value, vec![1u8])
        .map_err(|error| StoreError::Engine(format!("encoding for a digest: {error}")))?;
    Ok(ContentHash::of(&bytes))
}

/// Decodes a record written by [`encode`], by this version or an earlier
/// one. While the record decodes, [`decoding_version`] tells a type whose
/// layout changed which layout the bytes are in.
pub fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: printable_key(key),
        reason,
    };
    match bytes.split_first() {
        Some((&version, rest)) if (1..=RECORD_VERSION).contains(&version) => {
            let previous = DECODING.replace(version);
            let decoded = postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()));
            DECODING.set(previous);
            decoded
        }
        Some((version, _)) => Err(corrupt(format!(
            "unknown record version {version}: the store was written by a newer version of lienthong"
        ))),
        None => Err(corrupt("empty record".to_owned())),
    }
}

/// The record version [`decode`] is reading on this thread; the current
/// one outside [`decode`]. Version 1 lacked `Report::embedded` and
/// `Policy::signing_order`; types that gained fields read it to choose
/// their legacy layout.
pub fn decoding_version() -> u8 {
    DECODING.get()
}

/// The version of every record [`encode`] writes.
pub const RECORD_VERSION: u8 = 2;

thread_local! {
    static DECODING: std::cell::Cell<u8> = const { std::cell::Cell::new(RECORD_VERSION) };
}

/// A key with NULs and other bytes escaped, for messages.
pub fn printable_key(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// The engine a gateway keeps its state in (`[store] engine`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// sled, embedded, under `{data_dir}/sled`; content in files.
    #[default]
    Sled,
    /// PostgreSQL (`[store.postgres]`): records and content in the
    /// database, which any number of gateways may share, one active.
    Postgres,
}

/// How to open a gateway's store (`[store]` of the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The engine.
    pub engine: Engine,
    /// Most write jobs made durable by one sync (group commit).
    pub commit_batch_max: usize,
    /// Bytes of the engine's page cache.
    pub cache_capacity_bytes: u64,
    /// New documents are refused while the data directory's filesystem has
    /// less than this free (0: never); see [`SpaceGuard`].
    pub min_free_bytes: u64,
    /// Where and how to reach PostgreSQL, for [`Engine::Postgres`].
    pub postgres: PgOptions,
}

/// The default free-space reserve: 256 MiB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 << 20;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            engine: Engine::Sled,
            commit_batch_max: 256,
            cache_capacity_bytes: SLED_DEFAULT_CACHE_BYTES,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            postgres: PgOptions::default(),
        }
    }
}

/// The gateway's storage: the engine, the single durable writer and the blobs.
#[derive(Clone)]
pub struct Store {
    kv: Arc<dyn Kv>,
    writer: Writer,
    blobs: BlobStore,
    space: SpaceGuard,
}

impl Store {
    /// Opens (or creates) the store under `data_dir` with the engine and
    /// bounds of `options`; see [`Store::open_with_cache`] for the checks.
    pub fn open_with(data_dir: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        match options.engine {
            Engine::Sled => Self::open_with_cache(
                data_dir,
                options.commit_batch_max,
                options.cache_capacity_bytes,
            )
            .map(|store| Self {
                space: SpaceGuard::new(data_dir, options.min_free_bytes),
                ..store
            }),
            Engine::Postgres => Self::open_postgres(data_dir, options, None),
        }
    }

    /// Opens the PostgreSQL store of `options` (creating its tables when
    /// absent); `data_dir` holds only content being staged. With a
    /// `fence`, the store reads and writes only while this gateway holds
    /// the leadership it names (see [`Lease`]); without, it is a tool's
    /// (migration, tests) and must be the only writer.
    pub fn open_postgres(
        data_dir: &Path,
        options: &StoreOptions,
        fence: Option<Arc<Fence>>,
    ) -> Result<Self, StoreError> {
        create_dir_durably(data_dir)?;
        let kv = PgKv::open(&options.postgres, fence)?;
        let blobs = BlobStore::open_postgres(&data_dir.join("blobs"), kv.shared())?;
        let kv: Arc<dyn Kv> = Arc::new(kv);
        let writer = Writer::start(kv.clone(), options.commit_batch_max, None)?;
        Ok(Self {
            kv,
            writer,
            blobs,
            space: SpaceGuard::new(data_dir, options.min_free_bytes),
        })
    }

    /// Opens (or creates) the sled store under `data_dir`.
    pub fn open(data_dir: &Path, max_batch: usize) -> Result<Self, StoreError> {
        Self::open_with_cache(data_dir, max_batch, SLED_DEFAULT_CACHE_BYTES)
    }

    /// Like [`Store::open`], with sled's page cache bounded to `cache_bytes`.
    ///
    /// Every directory and file the store creates is made durable before it
    /// is used, and the engine is checked against its durability record
    /// (see [`watermark`]): a store that lost durable state, or whose engine
    /// panics while opening, is refused with [`StoreError::Damaged`].
    pub fn open_with_cache(
        data_dir: &Path,
        max_batch: usize,
        cache_bytes: u64,
    ) -> Result<Self, StoreError> {
        create_dir_durably(data_dir)?;
        let kv = Arc::new(open_sled(&data_dir.join("sled"), cache_bytes)?);
        make_sled_durable(data_dir)?;
        let blobs = BlobStore::open(&data_dir.join("blobs"))?;
        let durability = check_durability(data_dir, &*kv)?;
        let kv: Arc<dyn Kv> = kv;
        let writer = Writer::start(kv.clone(), max_batch, Some(durability))?;
        let space = SpaceGuard::new(data_dir, 0);
        Ok(Self {
            kv,
            writer,
            blobs,
            space,
        })
    }

    /// A store over any engine, without a durability record; the in-memory
    /// engine in tests.
    pub fn with_kv(
        kv: Arc<dyn Kv>,
        blobs: BlobStore,
        max_batch: usize,
    ) -> Result<Self, StoreError> {
        let writer = Writer::start(kv.clone(), max_batch, None)?;
        let space = SpaceGuard::new(blobs.root(), 0);
        Ok(Self {
            kv,
            writer,
            blobs,
            space,
        })
    }

    /// Read access to the engine. Reads see every applied batch, durable or not.
    pub fn kv(&self) -> &dyn Kv {
        &*self.kv
    }

    /// The single durable writer.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The content-addressed files.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The free-space reserve of the data directory.
    pub fn space(&self) -> &SpaceGuard {
        &self.space
    }

    /// Stops the writer after it has made everything durable.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.writer.close().await
    }
}

/// Runs `open` and turns a panic inside the engine into
/// [`StoreError::Damaged`]: sled 0.34 panics on some damaged files instead
/// of returning an error.
pub fn contain_panic<T>(
    what: &str,
    open: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
        Ok(result) => result,
        Err(payload) => Err(StoreError::Damaged(format!(
            "{what}: the storage engine panicked ({}); its files are damaged",
            panic_message(&*payload)
        ))),
    }
}

/// The text a panic was raised with, when it has one.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// Copies a directory tree (a stopped store's files), so that a damaged
/// store can be opened and checked without sled's recovery touching the
/// original.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Opens sled in `sled_dir`, a panic contained.
pub fn open_sled(sled_dir: &Path, cache_bytes: u64) -> Result<SledKv, StoreError> {
    contain_panic(&format!("opening {}", sled_dir.display()), || {
        SledKv::open_with_cache(sled_dir, cache_bytes)
    })
}

/// sled creates its directory and `conf` and never fsyncs them.
fn make_sled_durable(data_dir: &Path) -> Result<(), StoreError> {
    let sled_dir = data_dir.join("sled");
    let conf = sled_dir.join("conf");
    if conf.is_file() {
        sync_file(&conf)?;
    }
    sync_dir(&sled_dir)?;
    sync_dir(data_dir)
}

/// A counter kept under `key` (u64 BE); 0 when absent.
pub(crate) fn read_counter(kv: &dyn Kv, key: &[u8]) -> Result<u64, StoreError> {
    match kv.get(key)? {
        Some(bytes) => Ok(u64::from_be_bytes(bytes.as_slice().try_into().map_err(
            |_| StoreError::Corrupt {
                key: printable_key(key),
                reason: format!("{} bytes, expected 8", bytes.len()),
            },
        )?)),
        None => Ok(0),
    }
}

/// The engine's state as its durability record names it.
pub fn engine_state(kv: &dyn Kv) -> Result<watermark::Watermark, StoreError> {
    contain_panic("reading the store's state", || {
        Ok(watermark::Watermark {
            generation: read_counter(kv, keys::META_GENERATION)?,
            seq: read_counter(kv, keys::META_SEQ)?,
            audit_head: kv.get(keys::META_AUDIT_HEAD)?.unwrap_or_default(),
        })
    })
}

/// Checks the engine against its durability record (creating the record
/// for a new store) and returns what the writer keeps of it.
fn check_durability(data_dir: &Path, kv: &dyn Kv) -> Result<commit::Durability, StoreError> {
    let found = engine_state(kv)?;
    match watermark::WatermarkFile::open(data_dir)? {
        Some((mut file, recorded)) => {
            if watermark::compare(&found, &recorded)? == watermark::Comparison::OneAhead {
                // Stopped between the engine's sync and the record's.
                file.write(&found)?;
            }
            Ok(commit::Durability { file, mark: found })
        }
        None if found == watermark::Watermark::default() => {
            let file = watermark::WatermarkFile::create(data_dir, &found)?;
            Ok(commit::Durability { file, mark: found })
        }
        None => Err(StoreError::Damaged(format!(
            "{} has data (write group {}, sequence number {}) but no durability record \
             ({}): it was deleted, or the store was written by an older version. \
             Check the store with `lienthong store check --data-dir {}`; if you accept it \
             as it is, `lienthong store check --data-dir {} --reseal` writes a new record",
            data_dir.display(),
            found.generation,
            found.seq,
            watermark::FILE_NAME,
            data_dir.display(),
            data_dir.display(),
        ))),
    }
}

/// Writes a new durability record for the store in `data_dir` as it is now
/// (after the operator checked it). The gateway must be stopped.
pub fn reseal(data_dir: &Path, kv: &dyn Kv) -> Result<watermark::Watermark, StoreError> {
    let found = engine_state(kv)?;
    match watermark::WatermarkFile::open(data_dir) {
        Ok(Some((mut file, _))) => file.write(&found)?,
        Ok(None) => {
            watermark::WatermarkFile::create(data_dir, &found)?;
        }
        Err(StoreError::Damaged(_)) => {
            let path = data_dir.join(watermark::FILE_NAME);
            std::fs::remove_file(&path)
                .map_err(|e| StoreError::io("removing unreadable durability record", &path, e))?;
            watermark::WatermarkFile::create(data_dir, &found)?;
        }
        Err(other) => return Err(other),
    }
    Ok(found)
}
