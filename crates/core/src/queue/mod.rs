//! Durable per-recipient queues: queue entries ordered by priority then
//! arrival, leases, acks, nacks with backoff, dead letters, and wake-ups.
//! The message records the entries point at are `messages`'.
//!
//! Key layout (see `slot`): `queue\0{recipient}\0{rank}{seq}`, so a prefix
//! scan yields priority order, FIFO within a priority. Dead letters keep the
//! same slot under `dead\0{recipient}\0`, so a replay restores the position.
//!
//! Leases are held in memory; the attempt count is persisted in the entry
//! before each delivery, so dead-lettering is exact across restarts. After a
//! restart every unacknowledged entry is deliverable again (at-least-once).

mod check;
mod dead;
mod lease;
mod slot;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use self::check::{CheckReport, check};
pub use self::slot::{DeadLetterId, DeliveryId};
use self::slot::{Slot, dead_prefix, queue_prefix};
use crate::{
    audit::{self, Event, EventKind},
    clock::{Clock, UnixMillis},
    config::QueueConfig,
    envelope::{MessageId, OrgCode, Priority},
    messages::{self, MessageError, MessageRecord},
    receipt::Receipt,
    store::{self, Store, StoreError, WriteSet, keys},
};

/// Why a queue operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The delivery id is not one the gateway issues.
    #[error("delivery id {0:?} is malformed")]
    MalformedDeliveryId(String),
    /// The dead-letter id is not one the gateway issues.
    #[error("dead letter id {0:?} is malformed")]
    MalformedDeadLetterId(String),
    /// No such delivery is waiting: acknowledged already, or never issued.
    #[error("delivery {0} is not in the queue: already acknowledged or never issued")]
    UnknownDelivery(String),
    /// The lease ended and the message went to another delivery.
    #[error(
        "delivery {0} lost its lease: the message was delivered again under a newer delivery id"
    )]
    LeaseLost(String),
    /// A nack for a delivery the caller does not hold.
    #[error("delivery {0} is not leased to you now; only a held delivery can be given back")]
    NotLeased(String),
    /// No such dead letter.
    #[error("dead letter {0} does not exist: replayed or purged already, or never dead")]
    UnknownDeadLetter(String),
    /// A status that cannot follow the last one reported.
    #[error(transparent)]
    ImpossibleStatus(#[from] crate::status::Impossible),
    /// A purge without its confirmation.
    #[error("purging deletes every waiting document of {0}; set confirm to do it")]
    PurgeNotConfirmed(OrgCode),
    /// The message itself could not be accepted.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueueEntry {
    sender: OrgCode,
    message_id: MessageId,
    enqueued_at: UnixMillis,
    /// Deliveries started so far.
    attempts: u32,
    /// Not deliverable before this time (a nack's delay).
    not_before: UnixMillis,
    /// Why it was last given back.
    last_reason: String,
    /// For a status report queued to the original sender: the report.
    status: Option<crate::status::StatusReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeadRecord {
    entry: QueueEntry,
    dead_at: UnixMillis,
    reason: String,
}

/// A delivery that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Replay it with this id.
    pub id: DeadLetterId,
    /// Sender.
    pub sender: OrgCode,
    /// The sender's id.
    pub message_id: MessageId,
    /// Deliveries made.
    pub attempts: u32,
    /// When it was moved.
    pub dead_at: UnixMillis,
    /// Why.
    pub reason: String,
}

/// A message leased to one Receive stream.
#[derive(Debug, Clone)]
pub struct Leased {
    /// Give it back in Ack or Nack.
    pub delivery_id: DeliveryId,
    /// 1 on the first delivery, +1 each time it comes back (kept across restarts).
    pub attempt: u32,
    /// The message (for a status delivery: the message the status is about).
    pub message: MessageRecord,
    /// A status report about `message`, delivered to its sender.
    pub status: Option<crate::status::StatusReport>,
    /// When the lease ends.
    pub lease_expires_at: UnixMillis,
}

/// What one lease call found.
#[derive(Debug, Default)]
pub struct LeaseBatch {
    /// Newly leased deliveries, in queue order.
    pub leased: Vec<Leased>,
    /// The earliest time something now held back (leased, backing off,
    /// delayed) may become deliverable.
    pub next_wake: Option<UnixMillis>,
}

/// Identifies one Receive stream.
pub type StreamId = u64;

#[derive(Debug, Clone, Copy)]
struct Lease {
    id: u64,
    stream: StreamId,
    expires_at: UnixMillis,
    /// The persisted attempt count this lease is.
    attempts: u32,
    /// Set while an ack, nack or dead-lettering of the entry is under way:
    /// nobody may lease it meanwhile.
    blocked: bool,
    /// Drain streams keep their leases after the stream ends.
    keep_after_stream: bool,
}

#[derive(Default)]
struct RecipientState {
    leases: HashMap<Slot, Lease>,
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
    /// Dead letters.
    pub dead: u64,
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
/// The longest delay a nack may ask for.
pub const MAX_NACK_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Most entries one purge job deletes; a purge loops over jobs.
const PURGE_CHUNK: usize = 10_000;

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

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

    /// How long a delivery waits after its `attempts`-th failed attempt.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.config
            .backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.config.backoff_max)
    }

    /// Stores the message and one queue entry per recipient in one atomic,
    /// durable write; answers once it is durable. A repeat of the same
    /// content answers the first receipt, marked duplicate.
    pub async fn enqueue(&self, message: MessageRecord) -> Result<Receipt, QueueError> {
        self.enqueue_routed(message, Vec::new(), Vec::new(), None)
            .await
    }

    /// Like [`Queue::enqueue`], for a message a peer forwarded: `route`
    /// names the gateways it went through before this one (origin first)
    /// and is kept with it, in the same write, as are `hops` and, for a
    /// document that came as edXML, its header (`edxml`).
    pub async fn enqueue_routed(
        &self,
        message: MessageRecord,
        route: Vec<crate::federation::GatewayId>,
        hops: Vec<crate::federation::SignedHop>,
        edxml: Option<Vec<u8>>,
    ) -> Result<Receipt, QueueError> {
        let clock = self.clock.clone();
        let wakers = self.wakers.clone();
        let blobs = self.store.blobs().clone();
        self.store
            .writer()
            .write_then(
                move |writes| {
                    enqueue_job(
                        writes,
                        &blobs,
                        message,
                        Annexed {
                            route: &route,
                            hops: &hops,
                            edxml: edxml.as_deref(),
                        },
                        clock.now_millis(),
                    )
                },
                move |receipt: &Receipt| {
                    if !receipt.duplicate {
                        for mailbox in crate::routing::mailboxes(&receipt.message.recipients) {
                            wakers.wake(&mailbox);
                        }
                    }
                },
            )
            .await
    }

    /// The signed hops of a forwarded message as this gateway knows them,
    /// origin first; empty for a message that never crossed gateways.
    pub fn hops_of(
        &self,
        sender: &OrgCode,
        message_id: &MessageId,
    ) -> Result<Vec<crate::federation::SignedHop>, QueueError> {
        self.list_under(&hops_key(sender, message_id))
    }

    /// The list stored under `key`; empty when there is none.
    fn list_under<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Vec<T>, QueueError> {
        match self.store.kv().get(key)? {
            Some(bytes) => Ok(store::decode(key, &bytes)?),
            None => Ok(Vec::new()),
        }
    }

    /// Keeps `hops` as the message's chain when it is longer than the one
    /// kept (a custody answer or a peer's longer view); durable before it
    /// answers.
    pub async fn extend_hops(
        &self,
        sender: &OrgCode,
        message_id: &MessageId,
        hops: Vec<crate::federation::SignedHop>,
    ) -> Result<(), QueueError> {
        let key = hops_key(sender, message_id);
        self.store
            .writer()
            .write(move |writes| {
                let kept: Vec<crate::federation::SignedHop> = match writes.get(&key)? {
                    Some(bytes) => store::decode(&key, &bytes)?,
                    None => Vec::new(),
                };
                if hops.len() > kept.len() {
                    writes.put(key, store::encode(&hops)?);
                }
                Ok::<_, QueueError>(())
            })
            .await
    }

    /// The edXML header a document came with, as the gateway keeps it
    /// (an edXML package without attachment content); `None` for a
    /// document that came as a gRPC envelope.
    pub fn edxml_of(
        &self,
        sender: &OrgCode,
        message_id: &MessageId,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(self.store.kv().get(&edxml_key(sender, message_id))?)
    }

    /// The latest revoke, update or replace that came as edXML for
    /// `earlier` (a message of `sender`), if any.
    pub fn edxml_answer_of(
        &self,
        sender: &OrgCode,
        earlier: &MessageId,
    ) -> Result<Option<MessageId>, QueueError> {
        let key = edxml_answer_key(sender, earlier);
        Ok(match self.store.kv().get(&key)? {
            Some(bytes) => Some(
                MessageId::parse(&String::from_utf8_lossy(&bytes), "edxml answer").map_err(
                    |e| store::StoreError::Corrupt {
                        key: String::from_utf8_lossy(&key).into_owned(),
                        reason: e.to_string(),
                    },
                )?,
            ),
            None => None,
        })
    }

    /// The gateways a forwarded message went through before this one,
    /// origin first; empty for a message sent here.
    pub fn route_of(
        &self,
        sender: &OrgCode,
        message_id: &MessageId,
    ) -> Result<Vec<crate::federation::GatewayId>, QueueError> {
        self.list_under(&route_key(sender, message_id))
    }

    /// A new stream id.
    pub fn open_stream(&self) -> StreamId {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// A channel whose value changes when `recipient` may have something new.
    pub fn subscribe(&self, recipient: &OrgCode) -> watch::Receiver<u64> {
        self.wakers.sender(recipient).subscribe()
    }

    /// Blocks the entry named by `id` for an ack or nack; returns the lease
    /// as it was. With `must_hold`, the caller must hold the current lease.
    fn block(
        &self,
        recipient: &OrgCode,
        id: DeliveryId,
        must_hold: bool,
    ) -> Result<Option<Lease>, QueueError> {
        let mut states = self.state();
        let state = states.entry(recipient.clone()).or_default();
        match state.leases.get_mut(&id.slot) {
            Some(lease) if lease.id == id.lease && !lease.blocked => {
                let previous = *lease;
                lease.blocked = true;
                Ok(Some(previous))
            }
            Some(_) => Err(QueueError::LeaseLost(id.to_string())),
            None if must_hold => Err(QueueError::NotLeased(id.to_string())),
            // Not leased (the gateway restarted since): nobody else holds
            // it, so the ack may stand.
            None => {
                state.leases.insert(
                    id.slot,
                    Lease {
                        id: id.lease,
                        stream: 0,
                        expires_at: UnixMillis::MAX,
                        attempts: 0,
                        blocked: true,
                        keep_after_stream: true,
                    },
                );
                Ok(None)
            }
        }
    }

    /// Puts the lease back as it was, or removes the placeholder.
    fn unblock(&self, recipient: &OrgCode, slot: Slot, previous: Option<Lease>) {
        let mut states = self.state();
        let state = states.entry(recipient.clone()).or_default();
        match previous {
            Some(lease) => state.leases.insert(slot, lease),
            None => state.leases.remove(&slot),
        };
    }

    fn finish(&self, recipient: &OrgCode, slot: Slot) {
        if let Some(state) = self.state().get_mut(recipient) {
            state.leases.remove(&slot);
        }
        self.wakers.wake(recipient);
    }

    /// Acknowledges a delivery: its queue entry is removed durably before
    /// this answers.
    pub async fn ack(&self, recipient: &OrgCode, delivery_id: &str) -> Result<(), QueueError> {
        let id = DeliveryId::parse(delivery_id)?;
        let previous = self.block(recipient, id, false)?;
        let key = id.slot.queue_key(recipient);
        let now = self.clock.now_millis();
        let due = now.saturating_add(millis(self.config.content_retention));
        let agency = recipient.clone();
        let removed = self
            .store
            .writer()
            .write(move |writes| {
                let Some(bytes) = writes.get(&key)? else {
                    return Ok(false);
                };
                let entry: QueueEntry = store::decode(&key, &bytes)?;
                writes.delete(key);
                if entry.status.is_none() {
                    messages::delivery_done(writes, &entry.sender, &entry.message_id, due)?;
                }
                let mut event = Event::message(
                    EventKind::Acked,
                    &entry.sender,
                    &entry.message_id,
                    Some(&agency),
                    "",
                );
                event.attempt = entry.attempts;
                audit::append(writes, now, event)?;
                Ok::<_, QueueError>(true)
            })
            .await;
        self.settle(recipient, id, previous, removed)
    }

    /// Gives a held delivery back: deliverable again after `delay`, or after
    /// the backoff for its attempt count when `delay` is zero. Durable
    /// before it answers.
    pub async fn nack(
        &self,
        recipient: &OrgCode,
        delivery_id: &str,
        delay: Duration,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.give_back(recipient, delivery_id, delay, reason, false)
            .await
    }

    /// Like [`Queue::nack`], for a delivery that never reached its
    /// recipient (a peer gateway that could not be reached): the attempt
    /// is not counted, so an outage of a peer never dead-letters what
    /// waits for it.
    pub async fn nack_unreached(
        &self,
        recipient: &OrgCode,
        delivery_id: &str,
        delay: Duration,
        reason: &str,
    ) -> Result<(), QueueError> {
        self.give_back(recipient, delivery_id, delay, reason, true)
            .await
    }

    async fn give_back(
        &self,
        recipient: &OrgCode,
        delivery_id: &str,
        delay: Duration,
        reason: &str,
        unreached: bool,
    ) -> Result<(), QueueError> {
        let id = DeliveryId::parse(delivery_id)?;
        let previous = self.block(recipient, id, true)?;
        let attempts = previous.map_or(0, |lease| lease.attempts);
        let wait = if delay.is_zero() {
            self.backoff(attempts)
        } else {
            delay.min(MAX_NACK_DELAY)
        };
        let now = self.clock.now_millis();
        let not_before = now.saturating_add(millis(wait));
        let key = id.slot.queue_key(recipient);
        let reason: String = reason.chars().take(500).collect();
        let agency = recipient.clone();
        let updated = self
            .store
            .writer()
            .write(move |writes| {
                let Some(bytes) = writes.get(&key)? else {
                    return Ok(false);
                };
                let mut entry: QueueEntry = store::decode(&key, &bytes)?;
                entry.not_before = not_before;
                entry.last_reason = reason;
                if unreached {
                    entry.attempts = entry.attempts.saturating_sub(1);
                }
                let mut event = Event::message(
                    EventKind::Retried,
                    &entry.sender,
                    &entry.message_id,
                    Some(&agency),
                    format!("given back: {}", entry.last_reason),
                );
                event.attempt = entry.attempts;
                audit::append(writes, now, event)?;
                writes.put(key, store::encode(&entry)?);
                Ok::<_, QueueError>(true)
            })
            .await;
        self.settle(recipient, id, previous, updated)
    }

    /// Ends an ack or nack: the lease goes once the write stood (or found
    /// the entry gone); on a failed write the lease is put back as it was.
    fn settle(
        &self,
        recipient: &OrgCode,
        id: DeliveryId,
        previous: Option<Lease>,
        written: Result<bool, QueueError>,
    ) -> Result<(), QueueError> {
        match written {
            Ok(found) => {
                self.finish(recipient, id.slot);
                if found {
                    Ok(())
                } else {
                    Err(QueueError::UnknownDelivery(id.to_string()))
                }
            }
            Err(error) => {
                self.unblock(recipient, id.slot, previous);
                Err(error)
            }
        }
    }

    /// Records a recipient's status report on `message` and queues it for
    /// the message's sender, durably; refuses impossible transitions.
    /// Returns when it was accepted and the audit head after it.
    ///
    /// The status waits in `mailbox`: the sender's own queue, or the
    /// outbound queue of the peer the sender is reached through.
    pub async fn report_status(
        &self,
        message: &MessageRecord,
        report: crate::status::StatusReport,
        mailbox: OrgCode,
    ) -> Result<(UnixMillis, [u8; 32]), QueueError> {
        let now = self.clock.now_millis();
        let rank = message.document.priority.rank();
        let action = message.document.action;
        let wakers = self.wakers.clone();
        let sender = mailbox.clone();
        self.store
            .writer()
            .write_then(
                move |writes| {
                    let state_key = keys::join(
                        keys::STATUS_STATE,
                        &[
                            report.sender.as_str().as_bytes(),
                            report.message_id.as_str().as_bytes(),
                            report.reporter.as_str().as_bytes(),
                        ],
                    );
                    let last = writes
                        .get(&state_key)?
                        .and_then(|bytes| bytes.first().copied())
                        .and_then(crate::status::StatusCode::from_edxml);
                    crate::status::transition(last, report.code, action)?;
                    writes.put(state_key, vec![report.code.edxml()]);
                    let mut event = Event::message(
                        EventKind::Status,
                        &report.sender,
                        &report.message_id,
                        Some(&report.reporter),
                        format!("status {:02}: {}", report.code.edxml(), report.description),
                    );
                    event.status = report.code.edxml();
                    let head = audit::append(writes, now, event)?;
                    let slot = Slot {
                        rank,
                        seq: writes.next_seq(),
                    };
                    let entry = QueueEntry {
                        sender: report.sender.clone(),
                        message_id: report.message_id.clone(),
                        enqueued_at: now,
                        attempts: 0,
                        not_before: 0,
                        last_reason: String::new(),
                        status: Some(report.clone()),
                    };
                    writes.put(slot.queue_key(&mailbox), store::encode(&entry)?);
                    Ok::<_, QueueError>((now, head))
                },
                move |_| wakers.wake(&sender),
            )
            .await
    }

    /// Depth of `recipient`'s queue.
    pub fn depth(&self, recipient: &OrgCode) -> Result<QueueDepth, QueueError> {
        let prefix = queue_prefix(recipient);
        let mut depth = QueueDepth::default();
        store::for_each_in_prefix(self.store.kv(), &prefix, |key, value| {
            if let Some(slot) = Slot::from_key(prefix.len(), key) {
                depth.by_rank[usize::from(slot.rank.min(3))] += 1;
                let entry: QueueEntry = store::decode(key, value)?;
                depth.oldest_enqueued_at = Some(
                    depth
                        .oldest_enqueued_at
                        .map_or(entry.enqueued_at, |o| o.min(entry.enqueued_at)),
                );
            }
            Ok::<_, QueueError>(())
        })?;
        store::for_each_in_prefix(self.store.kv(), &dead_prefix(recipient), |_, _| {
            depth.dead += 1;
            Ok::<_, QueueError>(())
        })?;
        let now = self.clock.now_millis();
        depth.in_flight = self.state().get(recipient).map_or(0, |state| {
            state
                .leases
                .values()
                .filter(|lease| lease.blocked || lease.expires_at > now)
                .count() as u64
        });
        Ok(depth)
    }
}

/// Moves `entry` from its queue slot to the dead letters with `reason`,
/// and says so in the audit chain.
fn bury(
    writes: &mut WriteSet<'_>,
    recipient: &OrgCode,
    slot: Slot,
    entry: QueueEntry,
    reason: String,
    now: UnixMillis,
) -> Result<(), QueueError> {
    writes.delete(slot.queue_key(recipient));
    audit::append(
        writes,
        now,
        Event::message(
            EventKind::DeadLettered,
            &entry.sender,
            &entry.message_id,
            Some(recipient),
            reason.clone(),
        ),
    )?;
    writes.put(
        slot.dead_key(recipient),
        store::encode(&DeadRecord {
            entry,
            dead_at: now,
            reason,
        })?,
    );
    Ok(())
}

fn route_key(sender: &OrgCode, message_id: &MessageId) -> Vec<u8> {
    keys::join(
        keys::ROUTE,
        &[sender.as_str().as_bytes(), message_id.as_str().as_bytes()],
    )
}

fn hops_key(sender: &OrgCode, message_id: &MessageId) -> Vec<u8> {
    keys::join(
        keys::HOPS,
        &[sender.as_str().as_bytes(), message_id.as_str().as_bytes()],
    )
}

fn edxml_key(sender: &OrgCode, message_id: &MessageId) -> Vec<u8> {
    keys::join(
        keys::EDXML,
        &[sender.as_str().as_bytes(), message_id.as_str().as_bytes()],
    )
}

fn edxml_answer_key(sender: &OrgCode, earlier: &MessageId) -> Vec<u8> {
    keys::join(
        keys::EDXML_ANSWER,
        &[sender.as_str().as_bytes(), earlier.as_str().as_bytes()],
    )
}

/// What is written with a message beside its record.
struct Annexed<'a> {
    route: &'a [crate::federation::GatewayId],
    hops: &'a [crate::federation::SignedHop],
    edxml: Option<&'a [u8]>,
}

fn enqueue_job(
    writes: &mut WriteSet<'_>,
    blobs: &store::BlobStore,
    message: MessageRecord,
    annexed: Annexed<'_>,
    now: UnixMillis,
) -> Result<Receipt, QueueError> {
    let Annexed { route, hops, edxml } = annexed;
    let receipt = messages::accept(writes, blobs, message, now)?;
    if receipt.duplicate {
        return Ok(receipt);
    }
    let message = &receipt.message;
    if !route.is_empty() {
        writes.put(
            route_key(&message.sender, &message.message_id),
            store::encode(&route)?,
        );
    }
    if !hops.is_empty() {
        writes.put(
            hops_key(&message.sender, &message.message_id),
            store::encode(&hops)?,
        );
    }
    if let Some(header) = edxml {
        writes.put(
            edxml_key(&message.sender, &message.message_id),
            header.to_vec(),
        );
        if let Some(earlier) = &message.document.refers_to {
            writes.put(
                edxml_answer_key(&message.sender, earlier),
                message.message_id.as_str().as_bytes().to_vec(),
            );
        }
    }
    let rank = message.document.priority.rank();
    // One entry per queue: a peer's outbound queue carries all of the
    // message's recipients routed to it in one forward.
    for recipient in &crate::routing::mailboxes(&message.recipients) {
        let slot = Slot {
            rank,
            seq: writes.next_seq(),
        };
        let entry = QueueEntry {
            sender: message.sender.clone(),
            message_id: message.message_id.clone(),
            enqueued_at: now,
            attempts: 0,
            not_before: 0,
            last_reason: String::new(),
            status: None,
        };
        writes.put(slot.queue_key(recipient), store::encode(&entry)?);
    }
    Ok(receipt)
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
