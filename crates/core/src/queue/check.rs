//! The offline consistency check behind `lienthong store check`: every
//! record decodes, every queue entry and dead letter names a stored message,
//! and every content file still counted by a message is present and intact.

use std::collections::BTreeSet;

use super::QueueEntry;
use crate::messages::{MessageRecord, message_key};
use crate::store::{self, BlobStore, ContentHash, Kv, StoreError, keys};

/// How many problems a check lists before it only counts them.
const MAX_LISTED: usize = 100;

/// What the check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Message records read.
    pub messages: u64,
    /// Queue entries read.
    pub queued: u64,
    /// Dead letters read.
    pub dead_letters: u64,
    /// Content files still in use, checked against their SHA-256.
    pub files: u64,
    /// Problems, the first [`MAX_LISTED`] of them.
    pub problems: Vec<String>,
    /// Problems in all.
    pub problem_count: u64,
}

impl CheckReport {
    fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(text);
        }
    }
}

/// Checks messages, queue entries, dead letters and content files.
pub fn check(kv: &dyn Kv, blobs: &BlobStore) -> Result<CheckReport, StoreError> {
    let mut report = CheckReport::default();
    store::for_each_in_prefix(kv, keys::MESSAGE, |key, value| {
        report.messages += 1;
        if let Err(error) = store::decode::<MessageRecord>(key, value) {
            report.problem(format!("unreadable message record: {error}"));
        }
        Ok::<_, StoreError>(())
    })?;
    for (prefix, dead) in [(keys::QUEUE, false), (keys::DEAD, true)] {
        store::for_each_in_prefix(kv, prefix, |key, value| {
            if dead {
                report.dead_letters += 1;
            } else {
                report.queued += 1;
            }
            match store::decode::<QueueEntry>(key, value) {
                Ok(entry) => {
                    let message = message_key(&entry.sender, &entry.message_id);
                    if kv.get(&message)?.is_none() {
                        report.problem(format!(
                            "{} {} names message {} of {}, which is not stored",
                            if dead { "dead letter" } else { "queue entry" },
                            store::printable_key(key),
                            entry.message_id,
                            entry.sender
                        ));
                    }
                }
                Err(error) => report.problem(format!("unreadable queue entry: {error}")),
            }
            Ok::<_, StoreError>(())
        })?;
    }
    let mut counted = BTreeSet::new();
    store::for_each_in_prefix(kv, keys::BLOB_REF, |key, value| {
        let hash = key
            .get(keys::BLOB_REF.len()..)
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(ContentHash);
        let count = value.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        match hash {
            Some(hash) if count > 0 => {
                counted.insert(hash);
            }
            Some(_) => {}
            None => report.problem(format!(
                "malformed content reference {}",
                store::printable_key(key)
            )),
        }
        Ok::<_, StoreError>(())
    })?;
    for hash in counted {
        report.files += 1;
        match blobs.open_reader(&hash) {
            Ok(mut reader) => {
                let mut buffer = vec![0u8; 256 * 1024];
                loop {
                    match reader.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(error) => {
                            report.problem(format!("content {hash}: {error}"));
                            break;
                        }
                    }
                }
            }
            Err(_) => report.problem(format!(
                "content {hash} is still used by a message but its file is missing"
            )),
        }
    }
    Ok(report)
}
