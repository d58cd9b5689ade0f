//! Content-addressed files: each stored once under its SHA-256, made durable
//! (write to a temp file, fsync, rename, fsync the directory) before any
//! record points at it. sled never holds document content.

use std::{
    fmt,
    fs::{self, File},
    io::{Read, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use sha2::{Digest, Sha256};

use super::{
    StoreError,
    pg::{PgShared, Source},
    sync_dir,
};

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

/// Files under `root/ab/abcdef…`, written durably and read back verified;
/// with the PostgreSQL engine, rows in the database instead (content staged
/// in pieces still goes through a file under `root/tmp` first).
#[derive(Clone)]
pub struct BlobStore {
    root: PathBuf,
    remote: Option<Arc<PgShared>>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("root", &self.root)
            .field("postgres", &self.remote.is_some())
            .finish()
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl BlobStore {
    /// Opens (or creates) the blob directory.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let tmp = root.join("tmp");
        super::create_dir_durably(&tmp)?;
        // Leftovers of writes interrupted by a crash; nothing points at them.
        let mut removed = false;
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                removed |= fs::remove_file(entry.path()).is_ok();
            }
        }
        if removed {
            sync_dir(&tmp)?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            remote: None,
        })
    }

    /// Content in PostgreSQL, staged under `root/tmp`.
    pub(crate) fn open_postgres(root: &Path, remote: Arc<PgShared>) -> Result<Self, StoreError> {
        Ok(Self {
            remote: Some(remote),
            ..Self::open(root)?
        })
    }

    /// The blob directory as it is, for offline reading: creates nothing.
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            remote: None,
        }
    }

    fn path_of(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(&hex)
    }

    /// Where content of `hash` goes and its shard directory (created and
    /// made durable if new); `None` when the content is already stored.
    fn target(&self, hash: &ContentHash) -> Result<Option<(PathBuf, PathBuf)>, StoreError> {
        let path = self.path_of(hash);
        if path.is_file() {
            return Ok(None);
        }
        let shard = path.parent().unwrap_or(&self.root).to_path_buf();
        if !shard.is_dir() {
            super::create_dir_durably(&shard)?;
        }
        Ok(Some((path, shard)))
    }

    /// The directory holding the files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether content of `hash` is stored (false also when the database
    /// cannot say).
    pub fn contains(&self, hash: &ContentHash) -> bool {
        match &self.remote {
            Some(remote) => matches!(remote.content_chunks(hash), Ok(Some(_))),
            None => self.path_of(hash).is_file(),
        }
    }

    /// Stores `bytes` durably and returns their hash (in PostgreSQL: durable
    /// once the record naming it is committed, which flushes the earlier
    /// WAL too). Blocking: call it off the async reactor. Storing content that is already there costs a stat.
    pub fn put(&self, bytes: &[u8]) -> Result<ContentHash, StoreError> {
        let hash = ContentHash::of(bytes);
        if let Some(remote) = &self.remote {
            remote.put_content(hash, bytes.len() as u64, Source::Memory(bytes.to_vec()))?;
            return Ok(hash);
        }
        let Some((path, shard)) = self.target(&hash)? else {
            return Ok(hash);
        };
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

    /// Starts writing content of unknown hash in pieces, into a temporary
    /// file: memory stays bounded by the pieces, whatever the size.
    pub fn stage(&self) -> Result<StagedBlob, StoreError> {
        let path = self.root.join("tmp").join(format!(
            "staged-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&path).map_err(|e| StoreError::io("creating blob", &path, e))?;
        Ok(StagedBlob {
            file: Some(file),
            path,
            hasher: Sha256::new(),
            size: 0,
            hash: None,
        })
    }

    /// Makes staged content durable under its hash (fsync, rename, fsync of
    /// the directory); content already stored costs nothing more. Blocking.
    pub fn commit(&self, mut staged: StagedBlob) -> Result<ContentHash, StoreError> {
        let hash = staged.seal()?;
        if let Some(remote) = &self.remote {
            // The staged file is deleted when `staged` drops.
            remote.put_content(hash, staged.size, Source::File(staged.path.clone()))?;
            return Ok(hash);
        }
        let Some((path, shard)) = self.target(&hash)? else {
            return Ok(hash);
        };
        fs::rename(&staged.path, &path).map_err(|e| StoreError::io("renaming blob", &path, e))?;
        sync_dir(&shard)?;
        Ok(hash)
    }

    /// Opens stored content for reading in pieces; the caller checks the
    /// hash as it reads (see [`BlobReader`]).
    pub fn open_reader(&self, hash: &ContentHash) -> Result<BlobReader, StoreError> {
        if let Some(remote) = &self.remote {
            let path = PathBuf::from(format!("postgres:lienthong_blob/{}", hash.to_hex()));
            let Some(chunks) = remote.content_chunks(hash)? else {
                let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
                return Err(StoreError::io("reading blob", &path, missing));
            };
            return Ok(BlobReader {
                source: ReadSource::Rows {
                    remote: remote.clone(),
                    chunks,
                    next: 0,
                    buffer: Vec::new(),
                    at: 0,
                },
                path,
                expected: *hash,
                hasher: Sha256::new(),
            });
        }
        let path = self.path_of(hash);
        let file = File::open(&path).map_err(|e| StoreError::io("reading blob", &path, e))?;
        Ok(BlobReader {
            source: ReadSource::File(file),
            path,
            expected: *hash,
            hasher: Sha256::new(),
        })
    }

    /// Deletes stored content. Only the content sweeper calls it, once no
    /// record points at the hash any more. Blocking.
    pub fn remove(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        if let Some(remote) = &self.remote {
            return remote.remove_content(hash);
        }
        let path = self.path_of(hash);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("deleting blob", &path, e)),
        }
    }

    /// Reads content back and checks it against its hash (through
    /// [`BlobStore::open_reader`], whichever the backend).
    pub fn get(&self, hash: &ContentHash) -> Result<Vec<u8>, StoreError> {
        let mut reader = self.open_reader(hash)?;
        let mut bytes = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buffer)? {
                0 => return Ok(bytes),
                read => bytes.extend_from_slice(&buffer[..read]),
            }
        }
    }

    /// Every stored hash; for tests and maintenance.
    pub fn list(&self) -> Result<Vec<ContentHash>, StoreError> {
        if let Some(remote) = &self.remote {
            return remote.list_content();
        }
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

/// Content being written in pieces; see [`BlobStore::stage`]. Dropped
/// without a commit, its temporary file is deleted.
pub struct StagedBlob {
    file: Option<File>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    hash: Option<ContentHash>,
}

impl StagedBlob {
    /// Appends a piece. Blocking.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let Some(file) = self.file.as_mut() else {
            return Err(StoreError::Engine("write after seal".to_owned()));
        };
        file.write_all(bytes)
            .map_err(|e| StoreError::io("writing blob", &self.path, e))?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Ends writing: fsyncs the file and returns the content's hash. Blocking.
    pub fn seal(&mut self) -> Result<ContentHash, StoreError> {
        if let Some(hash) = self.hash {
            return Ok(hash);
        }
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(|e| StoreError::io("fsync of blob", &self.path, e))?;
        }
        let hash = ContentHash(std::mem::take(&mut self.hasher).finalize().into());
        self.hash = Some(hash);
        Ok(hash)
    }

    /// Where the staged bytes are, to read them (for verification) before
    /// the commit.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        // After a commit the file was renamed away and this finds nothing.
        let _ = fs::remove_file(&self.path);
    }
}

/// Stored content read in pieces, checked against its hash at the end.
pub struct BlobReader {
    source: ReadSource,
    path: PathBuf,
    expected: ContentHash,
    hasher: Sha256,
}

enum ReadSource {
    File(File),
    /// Chunk rows, fetched one at a time.
    Rows {
        remote: Arc<PgShared>,
        chunks: i32,
        next: i32,
        buffer: Vec<u8>,
        at: usize,
    },
}

impl ReadSource {
    fn read(
        &mut self,
        hash: &ContentHash,
        path: &Path,
        out: &mut [u8],
    ) -> Result<usize, StoreError> {
        match self {
            Self::File(file) => file
                .read(out)
                .map_err(|e| StoreError::io("reading blob", path, e)),
            Self::Rows {
                remote,
                chunks,
                next,
                buffer,
                at,
            } => {
                while *at == buffer.len() {
                    if *next == *chunks {
                        return Ok(0);
                    }
                    *buffer = remote.content_chunk(hash, *next)?;
                    *next += 1;
                    *at = 0;
                }
                let read = out.len().min(buffer.len() - *at);
                out[..read].copy_from_slice(&buffer[*at..*at + read]);
                *at += read;
                Ok(read)
            }
        }
    }
}

impl BlobReader {
    /// Reads the next piece into `buffer`: `Ok(0)` at the end, once the
    /// whole content matched its hash. Blocking.
    pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize, StoreError> {
        let read = self.source.read(&self.expected, &self.path, buffer)?;
        if read == 0 {
            let actual = ContentHash(std::mem::take(&mut self.hasher).finalize().into());
            if actual != self.expected {
                return Err(StoreError::Corrupt {
                    key: self.path.display().to_string(),
                    reason: "content does not match its SHA-256".to_owned(),
                });
            }
        } else {
            self.hasher.update(&buffer[..read]);
        }
        Ok(read)
    }
}
