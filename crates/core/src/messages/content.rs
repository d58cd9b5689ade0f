//! Content lifetime: attachment and signature files are stored once per
//! SHA-256 and counted by the messages that use them.
//!
//! - Enqueueing a message counts +1 on each distinct hash it uses
//!   (`blob-ref`) and records its number of deliveries (`pending`).
//! - Each delivery that ends for good (ack, purge) counts one off
//!   `pending`; at zero the message's content becomes due for release
//!   after the retention period (`expire`, ordered by due time).
//!   Dead letters keep their content: they can be replayed.
//! - The sweeper takes due messages, counts −1 on each of their hashes and
//!   deletes a file whose count reaches zero, inside the same write job: the
//!   writer runs jobs one at a time, so an enqueue that counts the same hash
//!   either ran before (the count stays above zero) or runs after and finds
//!   the file gone (it then fails with `ContentReleased`, never points at a
//!   missing file).

use super::{MessageError, MessageRecord};
use crate::{
    audit::{self, Event, EventKind},
    clock::UnixMillis,
    envelope::{MessageId, OrgCode},
    store::{self, BlobStore, ContentHash, Store, WriteSet, keys},
};

/// What one sweep released.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Messages whose content was released.
    pub messages: u64,
    /// Files deleted (content no other message uses).
    pub files: u64,
}

fn ref_key(hash: &ContentHash) -> Vec<u8> {
    keys::join(keys::BLOB_REF, &[&hash.0])
}

fn pending_key(sender: &OrgCode, id: &MessageId) -> Vec<u8> {
    keys::join(
        keys::PENDING,
        &[sender.as_str().as_bytes(), id.as_str().as_bytes()],
    )
}

fn expire_key(due: UnixMillis, sender: &OrgCode, id: &MessageId) -> Vec<u8> {
    let mut key = keys::EXPIRE.to_vec();
    key.extend_from_slice(&u64::try_from(due).unwrap_or(0).to_be_bytes());
    key.extend_from_slice(sender.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut be = [0u8; 8];
    let n = bytes.len().min(8);
    be[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(be)
}

/// For a new message: counts its files and its deliveries. Refuses if a
/// file it needs was released since it was written.
pub(super) fn hold(
    writes: &mut WriteSet<'_>,
    blobs: &BlobStore,
    message: &MessageRecord,
) -> Result<(), MessageError> {
    for hash in message.hashes() {
        let key = ref_key(&hash);
        let count = writes.get(&key)?.map_or(0, |b| read_u64(&b));
        if count == 0 && !blobs.contains(&hash) {
            return Err(MessageError::ContentReleased(hash));
        }
        writes.put(key, (count + 1).to_be_bytes().to_vec());
    }
    // One delivery per queue: an agency's own, or a peer's outbound queue
    // however many of its recipients the message has.
    let queues = crate::routing::mailboxes(&message.recipients).len();
    let deliveries = u32::try_from(queues).unwrap_or(u32::MAX);
    writes.put(
        pending_key(&message.sender, &message.message_id),
        deliveries.to_be_bytes().to_vec(),
    );
    Ok(())
}

/// One delivery of a message ended for good; the last one makes its
/// content due for release at `due`.
pub(crate) fn delivery_done(
    writes: &mut WriteSet<'_>,
    sender: &OrgCode,
    id: &MessageId,
    due: UnixMillis,
) -> Result<(), MessageError> {
    let key = pending_key(sender, id);
    // Messages stored before content counting have no pending count: their
    // content is kept.
    let Some(bytes) = writes.get(&key)? else {
        return Ok(());
    };
    let left = read_u64(&bytes).saturating_sub(1);
    if left == 0 {
        writes.delete(key);
        writes.put(expire_key(due, sender, id), Vec::new());
    } else {
        let left = u32::try_from(left).unwrap_or(u32::MAX);
        writes.put(key, left.to_be_bytes().to_vec());
    }
    Ok(())
}

/// Releases one due message's content; returns how many files went.
fn release(
    writes: &mut WriteSet<'_>,
    blobs: &BlobStore,
    expire: Vec<u8>,
    now: UnixMillis,
) -> Result<u64, MessageError> {
    if writes.get(&expire)?.is_none() {
        return Ok(0);
    }
    writes.delete(expire.clone());
    let rest = &expire[keys::EXPIRE.len() + 8..];
    let Some(split) = rest.iter().position(|b| *b == 0) else {
        return Ok(0);
    };
    let (sender, id) = (&rest[..split], &rest[split + 1..]);
    let key = keys::join(keys::MESSAGE, &[sender, id]);
    let Some(bytes) = writes.get(&key)? else {
        return Ok(0);
    };
    let message: MessageRecord = store::decode(&key, &bytes)?;
    let mut deleted = 0u64;
    let mut freed = 0u64;
    for hash in message.hashes() {
        let key = ref_key(&hash);
        let Some(count) = writes.get(&key)?.map(|b| read_u64(&b)) else {
            continue;
        };
        if count <= 1 {
            writes.delete(key);
            if blobs.remove(&hash)? {
                deleted += 1;
                freed += message
                    .attachments
                    .iter()
                    .find(|a| a.sha256 == hash)
                    .map_or(0, |a| a.size);
            }
        } else {
            writes.put(key, (count - 1).to_be_bytes().to_vec());
        }
    }
    audit::append(
        writes,
        now,
        Event::message(
            EventKind::Released,
            &message.sender,
            &message.message_id,
            None,
            format!("content released: {deleted} file(s), {freed} attachment bytes deleted"),
        ),
    )?;
    Ok(deleted)
}

/// Releases the content of messages due at `now`, a page at a time.
pub(super) async fn sweep(store: &Store, now: UnixMillis) -> Result<SweepReport, MessageError> {
    const PAGE: usize = 64;
    let mut report = SweepReport::default();
    loop {
        let page = store.kv().scan_prefix(keys::EXPIRE, None, PAGE)?;
        let due: Vec<Vec<u8>> = page
            .into_iter()
            .map(|(key, _)| key)
            .take_while(|key| {
                let at = key
                    .get(keys::EXPIRE.len()..keys::EXPIRE.len() + 8)
                    .map_or(u64::MAX, read_u64);
                at <= u64::try_from(now).unwrap_or(0)
            })
            .collect();
        if due.is_empty() {
            return Ok(report);
        }
        let count = due.len() as u64;
        let blobs = store.blobs().clone();
        let files = store
            .writer()
            .write(move |writes| {
                let mut files = 0;
                for key in due {
                    files += release(writes, &blobs, key, now)?;
                }
                Ok::<_, MessageError>(files)
            })
            .await?;
        report.messages += count;
        report.files += files;
        if count < PAGE as u64 {
            return Ok(report);
        }
    }
}
