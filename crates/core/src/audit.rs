//! The hash-chained audit log: every state change appends an entry whose hash
//! covers the previous entry's hash, in the same atomic write as the change.
//! Entries of a message are indexed so its trace can be read back.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    clock::UnixMillis,
    envelope::{MessageId, OrgCode},
    store::{self, Kv, StoreError, WriteSet, keys},
};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The gateway accepted, verified and queued a message: one entry
    /// naming the content digest, the verification outcome and the
    /// recipients (listed up to 100, by SHA-256 always).
    Accepted,
    /// The signatures were verified. Only in traces, expanded from Accepted.
    Verified,
    /// Queued for a recipient. Only in traces, expanded from Accepted.
    Queued,
    /// A delivery attempt began.
    Delivered,
    /// The recipient acknowledged.
    Acked,
    /// Given back or expired: it will be delivered again.
    Retried,
    /// Out of attempts.
    DeadLettered,
    /// A dead letter was put back.
    Replayed,
    /// A queue was purged.
    Purged,
    /// An administrative change (agencies, signers, policies, groups, keys, trust).
    Admin,
    /// A recipient reported a status (edXML number in `status`).
    Status,
    /// The message's content was released after its retention period.
    Released,
}

/// One state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What.
    pub kind: EventKind,
    /// The message's sender and id, when it concerns one.
    pub message: Option<(OrgCode, MessageId)>,
    /// The agency concerned (recipient, or the one changed).
    pub agency: Option<OrgCode>,
    /// Delivery attempt, where it applies.
    pub attempt: u32,
    /// edXML status code, for Status events; 0 otherwise.
    pub status: u8,
    /// Details in words.
    pub detail: String,
}

impl Event {
    /// An event about a message.
    pub fn message(
        kind: EventKind,
        sender: &OrgCode,
        id: &MessageId,
        agency: Option<&OrgCode>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            message: Some((sender.clone(), id.clone())),
            agency: agency.cloned(),
            attempt: 0,
            status: 0,
            detail: detail.into(),
        }
    }

    /// An administrative event.
    pub fn admin(agency: Option<&OrgCode>, detail: impl Into<String>) -> Self {
        Self {
            kind: EventKind::Admin,
            message: None,
            agency: agency.cloned(),
            attempt: 0,
            status: 0,
            detail: detail.into(),
        }
    }
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// The previous entry's hash (zeros for the first).
    pub prev: Hash,
    /// When.
    pub at: UnixMillis,
    /// What.
    pub event: Event,
    /// SHA-256 over `seq`, `prev`, `at` and `event`.
    pub hash: Hash,
}

fn entry_hash(seq: u64, prev: &Hash, at: UnixMillis, event: &Event) -> Result<Hash, StoreError> {
    let body = store::encode(&(seq, prev, at, event))?;
    Ok(Sha256::digest(body).into())
}

fn entry_key(seq: u64) -> Vec<u8> {
    let mut key = keys::AUDIT.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn trace_prefix(sender: &OrgCode, id: &MessageId) -> Vec<u8> {
    let mut key = keys::join(
        keys::TRACE,
        &[sender.as_str().as_bytes(), id.as_str().as_bytes()],
    );
    key.push(0);
    key
}

/// The chain head: the last entry's position and hash.
pub fn head(writes: &WriteSet<'_>) -> Result<(u64, Hash), StoreError> {
    match writes.get(keys::META_AUDIT_HEAD)? {
        Some(bytes) => store::decode(keys::META_AUDIT_HEAD, &bytes),
        None => Ok((0, [0u8; 32])),
    }
}

/// Appends `event` to the chain within the caller's write; returns the new head hash.
pub fn append(writes: &mut WriteSet<'_>, at: UnixMillis, event: Event) -> Result<Hash, StoreError> {
    let (last, prev) = head(writes)?;
    let seq = last + 1;
    let hash = entry_hash(seq, &prev, at, &event)?;
    if let Some((sender, id)) = &event.message {
        let mut index = trace_prefix(sender, id);
        index.extend_from_slice(&seq.to_be_bytes());
        writes.put(index, Vec::new());
    }
    let entry = Entry {
        seq,
        prev,
        at,
        event,
        hash,
    };
    writes.put(entry_key(seq), store::encode(&entry)?);
    writes.put(keys::META_AUDIT_HEAD.to_vec(), store::encode(&(seq, hash))?);
    Ok(hash)
}

/// The entries of one message, oldest first.
pub fn trace(kv: &dyn Kv, sender: &OrgCode, id: &MessageId) -> Result<Vec<Entry>, StoreError> {
    let prefix = trace_prefix(sender, id);
    let mut out = Vec::new();
    store::for_each_in_prefix(kv, &prefix, |key, _| {
        let seq = key
            .get(prefix.len()..)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_be_bytes);
        if let Some(seq) = seq
            && let Some(bytes) = kv.get(&entry_key(seq))?
        {
            out.push(store::decode(&entry_key(seq), &bytes)?);
        }
        Ok::<_, StoreError>(())
    })?;
    Ok(out)
}

/// The hash an entry's content should have (for tools and tests).
pub fn rehash(entry: &Entry) -> Result<Hash, StoreError> {
    entry_hash(entry.seq, &entry.prev, entry.at, &entry.event)
}

/// Why the chain does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// An entry's content does not match its hash.
    #[error("audit entry {0} was altered: its content does not match its hash")]
    Altered(u64),
    /// An entry does not point at the one before it.
    #[error("audit entry {0} does not follow entry {1}: an entry was altered or removed")]
    Broken(u64, u64),
    /// An entry is missing.
    #[error("audit entry {0} is missing: entries were removed")]
    Missing(u64),
    /// The head does not match the last entry.
    #[error(
        "the audit head names entry {0} but the chain ends at {1}: entries were removed or added"
    )]
    Head(u64, u64),
    /// The chain ends before the head the durability record names.
    #[error(
        "the durability record names audit entry {recorded} but the chain ends at {found}: \
         entries made durable were lost"
    )]
    BehindRecord {
        /// The entry the record names.
        recorded: u64,
        /// Where the chain ends.
        found: u64,
    },
    /// The entry the durability record names has another hash.
    #[error("audit entry {0} differs from the one the durability record names")]
    DiffersFromRecord(u64),
    /// Reading failed.
    #[error("reading the audit log: {0}")]
    Store(String),
}

impl From<StoreError> for ChainError {
    fn from(error: StoreError) -> Self {
        ChainError::Store(error.to_string())
    }
}

/// Walks the whole chain; returns the number of entries and the head hash.
pub fn verify(kv: &dyn Kv) -> Result<(u64, Hash), ChainError> {
    let (head_seq, head_hash): (u64, Hash) = match kv.get(keys::META_AUDIT_HEAD)? {
        Some(bytes) => store::decode(keys::META_AUDIT_HEAD, &bytes)?,
        None => (0, [0u8; 32]),
    };
    let mut expected_seq = 1u64;
    let mut prev = [0u8; 32];
    store::for_each_in_prefix(kv, keys::AUDIT, |key, value| {
        let entry: Entry =
            store::decode(key, value).map_err(|_| ChainError::Altered(expected_seq))?;
        if entry.seq != expected_seq {
            return Err(if entry.seq > expected_seq {
                ChainError::Missing(expected_seq)
            } else {
                ChainError::Broken(entry.seq, expected_seq.saturating_sub(1))
            });
        }
        let recomputed = entry_hash(entry.seq, &entry.prev, entry.at, &entry.event)?;
        if recomputed != entry.hash {
            return Err(ChainError::Altered(entry.seq));
        }
        if entry.prev != prev {
            return Err(ChainError::Broken(entry.seq, entry.seq - 1));
        }
        prev = entry.hash;
        expected_seq += 1;
        Ok(())
    })?;
    let last = expected_seq - 1;
    if last != head_seq || prev != head_hash {
        return Err(ChainError::Head(head_seq, last));
    }
    Ok((last, prev))
}

/// Checks a verified chain ending at `head` against the audit head that the
/// store's durability record names (its raw `meta\0audit-head` value): the
/// chain must reach that entry, with that hash. The record is outside the
/// database, so a database cut short cannot shorten it too.
pub fn check_recorded_head(
    kv: &dyn Kv,
    head: (u64, Hash),
    recorded: &[u8],
) -> Result<(), ChainError> {
    if recorded.is_empty() {
        return Ok(());
    }
    let (seq, hash): (u64, Hash) = store::decode(keys::META_AUDIT_HEAD, recorded)?;
    if head.0 < seq {
        return Err(ChainError::BehindRecord {
            recorded: seq,
            found: head.0,
        });
    }
    let entry: Entry = match kv.get(&entry_key(seq))? {
        Some(bytes) => store::decode(&entry_key(seq), &bytes)?,
        None => return Err(ChainError::Missing(seq)),
    };
    if entry.hash != hash {
        return Err(ChainError::DiffersFromRecord(seq));
    }
    Ok(())
}
