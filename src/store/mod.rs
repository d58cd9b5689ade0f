//! Storage: a small key-value trait (sled shipped, in-memory for tests), the
//! group-commit writer that alone makes writes durable, and the blob files.
//!
//! Everything the gateway keeps lives in one ordered key space, split by the
//! prefixes in [`keys`]. One key space means one write batch is atomic across
//! messages, queue entries and indexes without sled's optimistic multi-tree
//! transactions.

mod blob;
mod commit;
mod memory;
mod sled_kv;
#[cfg(test)]
mod tests;

use std::{path::Path, sync::Arc};

pub use blob::{BlobReader, BlobStore, ContentHash, StagedBlob};
pub use commit::{WriteSet, Writer};
pub use memory::MemoryKv;
pub use sled_kv::{DEFAULT_CACHE_BYTES as SLED_DEFAULT_CACHE_BYTES, SledKv};

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
    /// An earlier durable flush failed; nothing more is written until restart.
    #[error("store is failed after an earlier flush error; restart the gateway")]
    Failed,
    /// The writer has stopped (shutdown).
    #[error("store is shutting down")]
    Closed,
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
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
    /// `meta\0audit-head` → (last audit seq, its hash).
    pub const META_AUDIT_HEAD: &[u8] = b"meta\0audit-head";
    /// `meta\0seq` → the last sequence number handed out (u64 BE).
    pub const META_SEQ: &[u8] = b"meta\0seq";

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

/// Decodes a record written by [`encode`].
pub fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: printable_key(key),
        reason,
    };
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))
        }
        Some((version, _)) => Err(corrupt(format!("unknown record version {version}"))),
        None => Err(corrupt("empty record".to_owned())),
    }
}

const RECORD_VERSION: u8 = 1;

/// A key with NULs and other bytes escaped, for messages.
pub fn printable_key(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// The gateway's storage: the engine, the single durable writer and the blobs.
#[derive(Clone)]
pub struct Store {
    kv: Arc<dyn Kv>,
    writer: Writer,
    blobs: BlobStore,
}

impl Store {
    /// Opens (or creates) the sled store under `data_dir`.
    pub fn open(data_dir: &Path, max_batch: usize) -> Result<Self, StoreError> {
        Self::open_with_cache(data_dir, max_batch, SLED_DEFAULT_CACHE_BYTES)
    }

    /// Like [`Store::open`], with sled's page cache bounded to `cache_bytes`.
    pub fn open_with_cache(
        data_dir: &Path,
        max_batch: usize,
        cache_bytes: u64,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::io("creating data directory", data_dir, e))?;
        let kv: Arc<dyn Kv> = Arc::new(SledKv::open_with_cache(
            &data_dir.join("sled"),
            cache_bytes,
        )?);
        let blobs = BlobStore::open(&data_dir.join("blobs"))?;
        Self::with_kv(kv, blobs, max_batch)
    }

    /// A store over any engine; the in-memory one in tests.
    pub fn with_kv(
        kv: Arc<dyn Kv>,
        blobs: BlobStore,
        max_batch: usize,
    ) -> Result<Self, StoreError> {
        let writer = Writer::start(kv.clone(), max_batch)?;
        Ok(Self { kv, writer, blobs })
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

    /// Stops the writer after it has made everything durable.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.writer.close().await
    }
}
