//! Durable per-recipient queues: message records (also the dedupe records),
//! queue entries ordered by priority then arrival, leases, acks, wake-ups.
//!
//! Key layout: `queue\0{recipient}\0{rank}{seq}` where rank 0 is the most
//! urgent and seq is the writer's strictly increasing sequence number, so a
//! prefix scan yields priority order, FIFO within a priority.
//!
//! Leases are held in memory: after a restart every unacknowledged entry is
//! deliverable again, which is the at-least-once promise.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    clock::{Clock, UnixMillis},
    config::QueueConfig,
    envelope::{DocumentInfo, MessageId, OrgCode, Priority},
    store::{self, ContentHash, Store, StoreError, WriteSet, keys},
};

/// Why a queue operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The same sender used this message id for different content.
    #[error("message id {message_id} of {sender} was already used for different content")]
    AlreadyExists {
        /// Sender.
        sender: OrgCode,
        /// The reused id.
        message_id: MessageId,
    },
    /// The delivery id is not one the gateway issues.
    #[error("delivery id {0:?} is malformed")]
    MalformedDeliveryId(String),
    /// No such delivery is waiting: acknowledged already, or never issued.
    #[error("delivery {0} is not in the queue: already acknowledged or never issued")]
    UnknownDelivery(String),
    /// The lease ended and the message went to another delivery.
    #[error(
        "delivery {0} lost its lease: the message was delivered again under a newer delivery id"
    )]
    LeaseLost(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An attachment as stored: its content lives in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAttachment {
    /// Name.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// SHA-256 of the content.
    pub sha256: ContentHash,
    /// Bytes.
    pub size: u64,
}

/// A signature as stored: its CMS lives in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSignature {
    /// The attachment it covers.
    pub attachment: String,
    /// SHA-256 of the CMS DER.
    pub cms: ContentHash,
}

/// An accepted message: everything but the bytes of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Sender's id.
    pub message_id: MessageId,
    /// Sender.
    pub sender: OrgCode,
    /// Recipients as addressed.
    pub to: Vec<OrgCode>,
    /// Document info.
    pub document: DocumentInfo,
    /// Files.
    pub attachments: Vec<StoredAttachment>,
    /// Signatures.
    pub signatures: Vec<StoredSignature>,
    /// Every agency it is queued for.
    pub recipients: Vec<OrgCode>,
    /// Digest of the canonical content, to tell a retry from a reuse of the id.
    pub content_digest: ContentHash,
    /// When it was accepted; set by the writer.
    pub accepted_at: UnixMillis,
}

/// The gateway's statement that it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The accepted message.
    pub message: MessageRecord,
    /// True when this answers a repeated send of the same content.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueueEntry {
    sender: OrgCode,
    message_id: MessageId,
    enqueued_at: UnixMillis,
}

/// Position of an entry within one recipient's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Slot {
    rank: u8,
    seq: u64,
}

impl Slot {
    fn key(&self, recipient: &OrgCode) -> Vec<u8> {
        let mut key = queue_prefix(recipient);
        key.push(self.rank);
        key.extend_from_slice(&self.seq.to_be_bytes());
        key
    }

    fn from_key(prefix_len: usize, key: &[u8]) -> Option<Self> {
        let rest = key.get(prefix_len..)?;
        let (&rank, seq) = rest.split_first()?;
        Some(Self {
            rank,
            seq: u64::from_be_bytes(seq.try_into().ok()?),
        })
    }
}

fn queue_prefix(recipient: &OrgCode) -> Vec<u8> {
    let mut key = keys::join(keys::QUEUE, &[recipient.as_str().as_bytes()]);
    key.push(0);
    key
}

fn message_key(sender: &OrgCode, message_id: &MessageId) -> Vec<u8> {
    keys::join(
        keys::MESSAGE,
        &[sender.as_str().as_bytes(), message_id.as_str().as_bytes()],
    )
}

/// Identifies one lease of one entry: `{rank:02x}{seq:016x}.{lease:016x}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryId {
    slot: Slot,
    lease: u64,
}

impl DeliveryId {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, QueueError> {
        let malformed = || QueueError::MalformedDeliveryId(text.chars().take(64).collect());
        let (slot, lease) = text.split_once('.').ok_or_else(malformed)?;
        if slot.len() != 18 || lease.len() != 16 {
            return Err(malformed());
        }
        let rank = u8::from_str_radix(&slot[..2], 16).map_err(|_| malformed())?;
        let seq = u64::from_str_radix(&slot[2..], 16).map_err(|_| malformed())?;
        let lease = u64::from_str_radix(lease, 16).map_err(|_| malformed())?;
        Ok(Self {
            slot: Slot { rank, seq },
            lease,
        })
    }
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02x}{:016x}.{:016x}",
            self.slot.rank, self.slot.seq, self.lease
        )
    }
}

/// A message leased to one Receive stream.
#[derive(Debug, Clone)]
pub struct Leased {
    /// Give it back in Ack.
    pub delivery_id: DeliveryId,
    /// 1 on the first delivery since the gateway started.
    pub attempt: u32,
    /// The message.
    pub message: MessageRecord,
    /// When the lease ends.
    pub lease_expires_at: UnixMillis,
}

/// Identifies one Receive stream.
pub type StreamId = u64;

#[derive(Debug, Clone, Copy)]
struct Lease {
    id: u64,
    stream: StreamId,
    expires_at: UnixMillis,
    /// Set while an ack of this lease is being made durable.
    acking: bool,
    /// Drain streams keep their leases after the stream ends.
    keep_after_stream: bool,
}

#[derive(Default)]
struct RecipientState {
    leases: HashMap<Slot, Lease>,
    attempts: HashMap<Slot, u32>,
}

/// Per-recipient wake-up channels: the version goes up after every durable
/// change that may make something deliverable.
#[derive(Default)]
struct Wakers {
    senders: Mutex<HashMap<OrgCode, watch::Sender<u64>>>,
}

impl Wakers {
    fn sender(&self, recipient: &OrgCode) -> watch::Sender<u64> {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders
            .entry(recipient.clone())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    fn wake(&self, recipient: &OrgCode) {
        self.sender(recipient)
            .send_modify(|version| *version = version.wrapping_add(1));
    }
}

/// Queue depth of one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting entries per priority rank (0 = flash ... 3 = normal), in flight included.
    pub by_rank: [u64; 4],
    /// Entries leased right now.
    pub in_flight: u64,
    /// Enqueue time of the oldest entry.
    pub oldest_enqueued_at: Option<UnixMillis>,
}

/// The queues.
pub struct Queue {
    store: Store,
    clock: Arc<dyn Clock>,
    config: QueueConfig,
    state: Mutex<HashMap<OrgCode, RecipientState>>,
    wakers: Arc<Wakers>,
    next_lease: AtomicU64,
    next_stream: AtomicU64,
}

const SCAN_PAGE: usize = 256;

impl Queue {
    /// Queues over `store`.
    pub fn new(store: Store, clock: Arc<dyn Clock>, config: QueueConfig) -> Self {
        // Lease ids start at a random point so ids from before a restart
        // never match a lease issued after it.
        let start = rand::random::<u64>() >> 1;
        Self {
            store,
            clock,
            config,
            state: Mutex::new(HashMap::new()),
            wakers: Arc::new(Wakers::default()),
            next_lease: AtomicU64::new(start),
            next_stream: AtomicU64::new(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<OrgCode, RecipientState>> {
        // Every critical section leaves the maps consistent; a poisoned lock is safe to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored message, if the sender used this id.
    pub fn message(
        &self,
        sender: &OrgCode,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, QueueError> {
        let key = message_key(sender, message_id);
        match self.store.kv().get(&key)? {
            Some(bytes) => Ok(Some(store::decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Stores the message and one queue entry per recipient in one atomic,
    /// durable write; answers once it is durable. A repeat of the same
    /// content answers the first receipt, marked duplicate.
    pub async fn enqueue(&self, message: MessageRecord) -> Result<Receipt, QueueError> {
        let clock = self.clock.clone();
        let wakers = self.wakers.clone();
        self.store
            .writer()
            .write_then(
                move |writes| enqueue_job(writes, message, clock.now_millis()),
                move |receipt: &Receipt| {
                    if !receipt.duplicate {
                        for recipient in &receipt.message.recipients {
                            wakers.wake(recipient);
                        }
                    }
                },
            )
            .await
    }

    /// A new stream id.
    pub fn open_stream(&self) -> StreamId {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// A channel whose value changes when `recipient` may have something new.
    pub fn subscribe(&self, recipient: &OrgCode) -> watch::Receiver<u64> {
        self.wakers.sender(recipient).subscribe()
    }

    /// Leases up to `max` deliverable entries of `recipient` to `stream`, in
    /// queue order. Only durable entries are offered.
    pub fn lease_next(
        &self,
        recipient: &OrgCode,
        stream: StreamId,
        max: usize,
        keep_after_stream: bool,
    ) -> Result<Vec<Leased>, QueueError> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let prefix = queue_prefix(recipient);
        let durable = self.store.writer().durable_seq();
        let now = self.clock.now_millis();
        let lease_millis = i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX);
        let mut states = self.state();
        let state = states.entry(recipient.clone()).or_default();
        let mut after: Option<Vec<u8>> = None;
        'pages: loop {
            let page = self
                .store
                .kv()
                .scan_prefix(&prefix, after.as_deref(), SCAN_PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in page {
                let Some(slot) = Slot::from_key(prefix.len(), &key) else {
                    tracing::error!(key = %store::printable_key(&key), "malformed queue key skipped");
                    continue;
                };
                if slot.seq > durable {
                    continue;
                }
                if let Some(lease) = state.leases.get(&slot)
                    && (lease.acking || lease.expires_at > now)
                {
                    continue;
                }
                let entry: QueueEntry = store::decode(&key, &value)?;
                let Some(message) = self.message(&entry.sender, &entry.message_id)? else {
                    tracing::error!(sender = %entry.sender, message_id = %entry.message_id,
                        "queue entry without its message record skipped");
                    continue;
                };
                let attempt = state.attempts.entry(slot).or_insert(0);
                *attempt += 1;
                let lease = Lease {
                    id: self.next_lease.fetch_add(1, Ordering::Relaxed),
                    stream,
                    expires_at: now.saturating_add(lease_millis),
                    acking: false,
                    keep_after_stream,
                };
                state.leases.insert(slot, lease);
                out.push(Leased {
                    delivery_id: DeliveryId {
                        slot,
                        lease: lease.id,
                    },
                    attempt: *attempt,
                    message,
                    lease_expires_at: lease.expires_at,
                });
                if out.len() >= max {
                    break 'pages;
                }
            }
        }
        Ok(out)
    }

    /// Unacknowledged leases `stream` holds right now.
    pub fn in_flight(&self, recipient: &OrgCode, stream: StreamId) -> usize {
        let now = self.clock.now_millis();
        self.state().get(recipient).map_or(0, |state| {
            state
                .leases
                .values()
                .filter(|lease| lease.stream == stream && (lease.acking || lease.expires_at > now))
                .count()
        })
    }

    /// When the earliest live lease of `recipient` ends.
    pub fn next_expiry(&self, recipient: &OrgCode) -> Option<UnixMillis> {
        let now = self.clock.now_millis();
        self.state().get(recipient).and_then(|state| {
            state
                .leases
                .values()
                .filter(|lease| !lease.acking && lease.expires_at > now)
                .map(|lease| lease.expires_at)
                .min()
        })
    }

    /// Ends a stream: its leases go back to the queue at once, except those
    /// of a drain stream, which stay until acked or expired.
    pub fn close_stream(&self, recipient: &OrgCode, stream: StreamId) {
        let released = {
            let mut states = self.state();
            let Some(state) = states.get_mut(recipient) else {
                return;
            };
            let before = state.leases.len();
            state.leases.retain(|_, lease| {
                lease.stream != stream || lease.acking || lease.keep_after_stream
            });
            before - state.leases.len()
        };
        if released > 0 {
            tracing::debug!(agency = %recipient, released, "stream ended; deliveries back in the queue");
            self.wakers.wake(recipient);
        }
    }

    /// Acknowledges a delivery: its queue entry is removed durably before
    /// this answers.
    pub async fn ack(&self, recipient: &OrgCode, delivery_id: &str) -> Result<(), QueueError> {
        let id = DeliveryId::parse(delivery_id)?;
        let previous = self.begin_ack(recipient, id)?;
        let key = id.slot.key(recipient);
        let result = self
            .store
            .writer()
            .write(move |writes| {
                if writes.get(&key)?.is_none() {
                    return Ok(false);
                }
                writes.delete(key);
                Ok::<_, QueueError>(true)
            })
            .await;
        let mut states = self.state();
        let state = states.entry(recipient.clone()).or_default();
        match result {
            Ok(true) => {
                state.leases.remove(&id.slot);
                state.attempts.remove(&id.slot);
                drop(states);
                self.wakers.wake(recipient);
                Ok(())
            }
            Ok(false) => {
                state.leases.remove(&id.slot);
                state.attempts.remove(&id.slot);
                Err(QueueError::UnknownDelivery(id.to_string()))
            }
            Err(error) => {
                match previous {
                    Some(lease) => state.leases.insert(id.slot, lease),
                    None => state.leases.remove(&id.slot),
                };
                Err(error)
            }
        }
    }

    /// Marks the lease as being acked so nobody else can lease the entry
    /// meanwhile; returns the lease as it was.
    fn begin_ack(&self, recipient: &OrgCode, id: DeliveryId) -> Result<Option<Lease>, QueueError> {
        let mut states = self.state();
        let state = states.entry(recipient.clone()).or_default();
        match state.leases.get_mut(&id.slot) {
            Some(lease) if lease.id == id.lease && !lease.acking => {
                let previous = *lease;
                lease.acking = true;
                Ok(Some(previous))
            }
            Some(_) => Err(QueueError::LeaseLost(id.to_string())),
            // Not leased (its stream ended, or the gateway restarted): nobody
            // else holds it, so the ack may stand.
            None => {
                state.leases.insert(
                    id.slot,
                    Lease {
                        id: id.lease,
                        stream: 0,
                        expires_at: UnixMillis::MAX,
                        acking: true,
                        keep_after_stream: true,
                    },
                );
                Ok(None)
            }
        }
    }

    /// Depth of `recipient`'s queue.
    pub fn depth(&self, recipient: &OrgCode) -> Result<QueueDepth, QueueError> {
        let prefix = queue_prefix(recipient);
        let mut depth = QueueDepth::default();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .kv()
                .scan_prefix(&prefix, after.as_deref(), SCAN_PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (key, value) in &page {
                if let Some(slot) = Slot::from_key(prefix.len(), key) {
                    let rank = usize::from(slot.rank.min(3));
                    depth.by_rank[rank] += 1;
                    let entry: QueueEntry = store::decode(key, value)?;
                    depth.oldest_enqueued_at = Some(
                        depth
                            .oldest_enqueued_at
                            .map_or(entry.enqueued_at, |oldest| oldest.min(entry.enqueued_at)),
                    );
                }
            }
        }
        let now = self.clock.now_millis();
        depth.in_flight = self.state().get(recipient).map_or(0, |state| {
            state
                .leases
                .values()
                .filter(|lease| lease.acking || lease.expires_at > now)
                .count() as u64
        });
        Ok(depth)
    }
}

fn enqueue_job(
    writes: &mut WriteSet<'_>,
    mut message: MessageRecord,
    now: UnixMillis,
) -> Result<Receipt, QueueError> {
    let key = message_key(&message.sender, &message.message_id);
    if let Some(bytes) = writes.get(&key)? {
        let first: MessageRecord = store::decode(&key, &bytes)?;
        if first.content_digest != message.content_digest {
            return Err(QueueError::AlreadyExists {
                sender: message.sender,
                message_id: message.message_id,
            });
        }
        return Ok(Receipt {
            message: first,
            duplicate: true,
        });
    }
    message.accepted_at = now;
    let rank = message.document.priority.rank();
    for recipient in &message.recipients {
        let slot = Slot {
            rank,
            seq: writes.next_seq(),
        };
        let entry = QueueEntry {
            sender: message.sender.clone(),
            message_id: message.message_id.clone(),
            enqueued_at: now,
        };
        writes.put(slot.key(recipient), store::encode(&entry)?);
    }
    writes.put(key, store::encode(&message)?);
    Ok(Receipt {
        message,
        duplicate: false,
    })
}

/// The priority a queue rank stands for, for statistics.
pub fn rank_priority(rank: usize) -> Priority {
    match rank {
        0 => Priority::Flash,
        1 => Priority::VeryUrgent,
        2 => Priority::Urgent,
        _ => Priority::Normal,
    }
}

#[cfg(test)]
mod tests;
