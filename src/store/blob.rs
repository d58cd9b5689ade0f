//! Content-addressed files: each stored once under its SHA-256, made durable
//! (write to a temp file, fsync, rename, fsync the directory) before any
//! record points at it. sled never holds document content.

use std::{
    fmt,
    fs::{self, File},
    io::{Read, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use sha2::{Digest, Sha256};

use super::StoreError;

/// A SHA-256 content hash.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Files under `root/ab/abcdef…`, written durably and read back verified.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl BlobStore {
    /// Opens (or creates) the blob directory.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| StoreError::io("creating blob directory", &tmp, e))?;
        // Leftovers of writes interrupted by a crash; nothing points at them.
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn path_of(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(&hex)
    }

    /// True if the content is stored.
    pub fn contains(&self, hash: &ContentHash) -> bool {
        self.path_of(hash).is_file()
    }

    /// Stores `bytes` durably and returns their hash. Blocking: call it off
    /// the async reactor. Storing content that is already there costs a stat.
    pub fn put(&self, bytes: &[u8]) -> Result<ContentHash, StoreError> {
        let hash = ContentHash::of(bytes);
        let path = self.path_of(&hash);
        if path.is_file() {
            return Ok(hash);
        }
        let shard = path.parent().unwrap_or(&self.root).to_path_buf();
        if !shard.is_dir() {
            fs::create_dir_all(&shard)
                .map_err(|e| StoreError::io("creating blob shard", &shard, e))?;
            sync_dir(&self.root)?;
        }
        let temp = self.root.join("tmp").join(format!(
            "{}-{}-{}",
            hash.to_hex(),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file =
                File::create(&temp).map_err(|e| StoreError::io("creating blob", &temp, e))?;
            file.write_all(bytes)
                .map_err(|e| StoreError::io("writing blob", &temp, e))?;
            file.sync_all()
                .map_err(|e| StoreError::io("fsync of blob", &temp, e))?;
            fs::rename(&temp, &path).map_err(|e| StoreError::io("renaming blob", &path, e))?;
            sync_dir(&shard)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map(|()| hash)
    }

    /// Reads content back and checks it against its hash.
    pub fn get(&self, hash: &ContentHash) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(hash);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(|e| StoreError::io("reading blob", &path, e))?;
        if ContentHash::of(&bytes) != *hash {
            return Err(StoreError::Corrupt {
                key: path.display().to_string(),
                reason: "content does not match its SHA-256".to_owned(),
            });
        }
        Ok(bytes)
    }

    /// Every stored hash; for tests and maintenance.
    pub fn list(&self) -> Result<Vec<ContentHash>, StoreError> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(&self.root).map_err(|e| StoreError::io("listing blobs", &self.root, e))?;
        for shard in entries.flatten() {
            if shard.file_name() == "tmp" || !shard.path().is_dir() {
                continue;
            }
            let files = fs::read_dir(shard.path())
                .map_err(|e| StoreError::io("listing blobs", &shard.path(), e))?;
            for file in files.flatten() {
                if let Some(hash) = file.file_name().to_str().and_then(ContentHash::from_hex) {
                    out.push(hash);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync of directory", dir, e))
}
