//! The durability record: a small file beside the engine, fsynced after
//! every write group, naming the last group the engine made durable. A store
//! that opens behind its record lost durable state (a damaged or truncated
//! file, a restored old copy) and is refused instead of served.
//!
//! The record lives outside the engine's files on purpose: damage that rolls
//! the engine back cannot roll the record back with it.
//!
//! Layout: two 512-byte slots at offsets 0 and 4096, written alternately
//! (generation even → slot 0), each with its own checksum, so a write torn
//! by a power cut leaves the other slot readable. The file's size never
//! changes after creation, so each update is one `pwrite` and one
//! `fdatasync` with no metadata to journal.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::StoreError;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "durable-watermark";

const MAGIC: &[u8; 4] = b"LTWM";
const VERSION: u8 = 1;
const SLOT_BYTES: usize = 512;
const SLOT_STRIDE: u64 = 4096;
/// Largest audit head the record holds (the head is ~40 bytes today).
const MAX_HEAD_BYTES: usize = 256;
const CHECKSUM_BYTES: usize = 16;

/// What the engine had made durable when the record was last written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermark {
    /// Write groups made durable since the store was created.
    pub generation: u64,
    /// The last sequence number handed out.
    pub seq: u64,
    /// The raw value of `meta\0audit-head` (empty before the first entry).
    pub audit_head: Vec<u8>,
}

impl Watermark {
    fn encode(&self) -> Result<[u8; SLOT_BYTES], StoreError> {
        if self.audit_head.len() > MAX_HEAD_BYTES {
            return Err(StoreError::Engine(format!(
                "audit head of {} bytes does not fit the durability record",
                self.audit_head.len()
            )));
        }
        let mut slot = [0u8; SLOT_BYTES];
        let mut body = Vec::with_capacity(SLOT_BYTES);
        body.extend_from_slice(MAGIC);
        body.push(VERSION);
        body.extend_from_slice(&self.generation.to_be_bytes());
        body.extend_from_slice(&self.seq.to_be_bytes());
        body.extend_from_slice(&(self.audit_head.len() as u16).to_be_bytes());
        body.extend_from_slice(&self.audit_head);
        let checksum = Sha256::digest(&body);
        body.extend_from_slice(&checksum[..CHECKSUM_BYTES]);
        slot[..body.len()].copy_from_slice(&body);
        Ok(slot)
    }

    /// `None` when the slot is blank, torn or not a record.
    fn decode(slot: &[u8]) -> Option<Self> {
        let header = 4 + 1 + 8 + 8 + 2;
        if slot.len() < header + CHECKSUM_BYTES || &slot[..4] != MAGIC || slot[4] != VERSION {
            return None;
        }
        let generation = u64::from_be_bytes(slot[5..13].try_into().ok()?);
        let seq = u64::from_be_bytes(slot[13..21].try_into().ok()?);
        let head_len = usize::from(u16::from_be_bytes(slot[21..23].try_into().ok()?));
        if head_len > MAX_HEAD_BYTES {
            return None;
        }
        let body_end = header + head_len;
        let checksum = slot.get(body_end..body_end + CHECKSUM_BYTES)?;
        if Sha256::digest(&slot[..body_end])[..CHECKSUM_BYTES] != *checksum {
            return None;
        }
        Some(Self {
            generation,
            seq,
            audit_head: slot[header..body_end].to_vec(),
        })
    }
}

/// The open record file.
pub struct WatermarkFile {
    file: File,
    path: PathBuf,
}

impl WatermarkFile {
    /// Creates the record for a new store, durably (file and directory).
    pub fn create(data_dir: &Path, initial: &Watermark) -> Result<Self, StoreError> {
        let path = data_dir.join(FILE_NAME);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io("creating durability record", &path, e))?;
        let mut record = Self { file, path };
        // Both slots, so that the file has its final size from the start.
        record.write_slot(0, initial)?;
        record.write_slot(1, initial)?;
        record
            .file
            .sync_all()
            .map_err(|e| StoreError::io("fsync of durability record", &record.path, e))?;
        super::sync_dir(data_dir)?;
        Ok(record)
    }

    /// Opens the record: `Ok(None)` when there is none, an error when the
    /// file exists but neither slot is readable.
    pub fn open(data_dir: &Path) -> Result<Option<(Self, Watermark)>, StoreError> {
        let path = data_dir.join(FILE_NAME);
        let file = match File::options().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("opening durability record", &path, e)),
        };
        let mut best: Option<Watermark> = None;
        for index in 0..2u64 {
            let mut slot = [0u8; SLOT_BYTES];
            let read = read_at_most(&file, &mut slot, index * SLOT_STRIDE)
                .map_err(|e| StoreError::io("reading durability record", &path, e))?;
            if let Some(record) = Watermark::decode(&slot[..read])
                && best
                    .as_ref()
                    .is_none_or(|b| record.generation > b.generation)
            {
                best = Some(record);
            }
        }
        let Some(best) = best else {
            return Err(StoreError::Damaged(format!(
                "the durability record {} is unreadable (both copies fail their checksum)",
                path.display()
            )));
        };
        Ok(Some((Self { file, path }, best)))
    }

    /// Records `watermark` durably (one write, one fdatasync).
    pub fn write(&mut self, watermark: &Watermark) -> Result<(), StoreError> {
        self.write_slot(watermark.generation % 2, watermark)?;
        self.file
            .sync_data()
            .map_err(|e| StoreError::io("fdatasync of durability record", &self.path, e))
    }

    fn write_slot(&mut self, index: u64, watermark: &Watermark) -> Result<(), StoreError> {
        let slot = watermark.encode()?;
        self.file
            .write_all_at(&slot, index * SLOT_STRIDE)
            .map_err(|e| StoreError::io("writing durability record", &self.path, e))
    }
}

fn read_at_most(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64)? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// How the engine's state compares with its durability record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The engine holds exactly what the record names.
    Same,
    /// The engine holds one more group than the record: the gateway stopped
    /// between the engine's sync and the record's (the record is rewritten).
    OneAhead,
}

/// Compares the engine's `found` state with the `recorded` one; an error
/// names what is missing.
pub fn compare(found: &Watermark, recorded: &Watermark) -> Result<Comparison, StoreError> {
    let gone = |what: String| {
        StoreError::Damaged(format!(
            "{what}; the store lost durable state (a damaged, truncated or replaced database \
             file) and will not be served. Run `lienthong store check --data-dir DIR` for \
             details; restore the data directory from a backup"
        ))
    };
    if found.generation < recorded.generation {
        return Err(gone(format!(
            "the database holds {} write groups but {} were made durable: the last {} are \
             missing (the record names sequence number {} and audit head {}; the database \
             has sequence number {} and audit head {})",
            found.generation,
            recorded.generation,
            recorded.generation - found.generation,
            recorded.seq,
            hex::encode(&recorded.audit_head),
            found.seq,
            hex::encode(&found.audit_head),
        )));
    }
    if found.generation == recorded.generation {
        if found.seq != recorded.seq || found.audit_head != recorded.audit_head {
            return Err(gone(format!(
                "the database is at write group {} like its record, but its sequence number \
                 ({}) or audit head ({}) differ from the record's ({}, {})",
                found.generation,
                found.seq,
                hex::encode(&found.audit_head),
                recorded.seq,
                hex::encode(&recorded.audit_head),
            )));
        }
        return Ok(Comparison::Same);
    }
    if found.generation == recorded.generation + 1 && found.seq >= recorded.seq {
        return Ok(Comparison::OneAhead);
    }
    Err(gone(format!(
        "the database is at write group {} (sequence number {}) but its record names group {} \
         (sequence number {}): the record is older than the database, as after restoring only \
         part of a data directory",
        found.generation, found.seq, recorded.generation, recorded.seq
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(generation: u64, seq: u64, head: &[u8]) -> Watermark {
        Watermark {
            generation,
            seq,
            audit_head: head.to_vec(),
        }
    }

    #[test]
    fn round_trip_and_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = WatermarkFile::create(dir.path(), &mark(0, 0, b"")).unwrap();
        for generation in 1..=5 {
            file.write(&mark(generation, generation * 10, b"head"))
                .unwrap();
        }
        let (_, read) = WatermarkFile::open(dir.path()).unwrap().unwrap();
        assert_eq!(read, mark(5, 50, b"head"));
        // Tear the newest slot (5 → slot 1): the older one is still read.
        let path = dir.path().join(FILE_NAME);
        let raw = File::options().write(true).open(&path).unwrap();
        raw.write_all_at(&[0xff; 8], SLOT_STRIDE + 7).unwrap();
        let (_, read) = WatermarkFile::open(dir.path()).unwrap().unwrap();
        assert_eq!(read, mark(4, 40, b"head"));
        // Both torn: a clear refusal, not a fresh start.
        raw.write_all_at(&[0xff; 8], 7).unwrap();
        let error = WatermarkFile::open(dir.path()).err().unwrap();
        assert!(error.to_string().contains("unreadable"), "{error}");
    }

    #[test]
    fn missing_record_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(WatermarkFile::open(dir.path()).unwrap().is_none());
    }

    #[test]
    fn comparisons() {
        let recorded = mark(10, 100, b"h10");
        assert_eq!(compare(&recorded, &recorded).unwrap(), Comparison::Same);
        assert_eq!(
            compare(&mark(11, 101, b"h11"), &recorded).unwrap(),
            Comparison::OneAhead
        );
        let behind = compare(&mark(8, 90, b"h8"), &recorded).unwrap_err();
        assert!(
            behind.to_string().contains("the last 2 are missing"),
            "{behind}"
        );
        assert!(compare(&mark(10, 100, b"other"), &recorded).is_err());
        assert!(compare(&mark(13, 130, b"h13"), &recorded).is_err());
    }
}
