//! Leasing: picking what a stream may take (priority, then arrival; only
//! durable entries; not before its backoff), making each attempt durable
//! before delivering, and giving leases back when a stream ends.

use std::sync::atomic::Ordering;

use super::{
    Lease, LeaseBatch, Leased, Queue, QueueEntry, QueueError, SCAN_PAGE, StreamId, millis,
    slot::{DeliveryId, Slot, queue_prefix},
};
use crate::{
    audit::{self, Event, EventKind},
    clock::UnixMillis,
    envelope::OrgCode,
    messages,
    store::{self, WriteSet},
};

/// An entry picked by `select`, held by a provisional lease with this id.
struct Candidate {
    slot: Slot,
    id: u64,
    dead: bool,
}

enum Settled {
    Leased(Slot, u64, Box<QueueEntry>),
    Dead(Slot),
    Vanished(Slot, u64),
}

impl Queue {
    /// Leases up to `max` deliverable entries of `recipient` to `stream`, in
    /// queue order. Only durable entries are offered; each delivery's attempt
    /// count is made durable before it is returned; entries past the maximum
    /// attempts move to dead letters instead.
    pub async fn lease_next(
        &self,
        recipient: &OrgCode,
        stream: StreamId,
        max: usize,
        keep_after_stream: bool,
    ) -> Result<LeaseBatch, QueueError> {
        let (candidates, next_wake) = self.select(recipient, stream, max, keep_after_stream)?;
        if candidates.is_empty() {
            return Ok(LeaseBatch {
                leased: Vec::new(),
                next_wake,
            });
        }
        let provisional: Vec<(Slot, u64)> = candidates.iter().map(|c| (c.slot, c.id)).collect();
        let job_recipient = recipient.clone();
        let max_attempts = self.config.max_attempts;
        let now = self.clock.now_millis();
        let settled = self
            .store
            .writer()
            .write(move |writes| settle_job(writes, &job_recipient, candidates, max_attempts, now))
            .await;
        let settled = match settled {
            Ok(settled) => settled,
            Err(error) => {
                self.drop_provisional(recipient, &provisional);
                return Err(error);
            }
        };
        let lease_end = now.saturating_add(millis(self.config.lease));
        let mut leased = Vec::new();
        let mut dead = 0usize;
        {
            let mut states = self.state();
            let state = states.entry(recipient.clone()).or_default();
            for outcome in &settled {
                match outcome {
                    Settled::Leased(slot, id, entry) => {
                        if let Some(lease) = state.leases.get_mut(slot).filter(|l| l.id == *id) {
                            lease.attempts = entry.attempts;
                        }
                    }
                    Settled::Dead(slot) => {
                        dead += 1;
                        state.leases.remove(slot);
                    }
                    Settled::Vanished(slot, id) => {
                        if state.leases.get(slot).is_some_and(|l| l.id == *id) {
                            state.leases.remove(slot);
                        }
                    }
                }
            }
        }
        if dead > 0 {
            tracing::warn!(agency = %recipient, dead, "deliveries out of attempts moved to dead letters");
        }
        for outcome in settled {
            let Settled::Leased(slot, id, entry) = outcome else {
                continue;
            };
            let Some(message) = messages::find(self.store.kv(), &entry.sender, &entry.message_id)?
            else {
                tracing::error!(sender = %entry.sender, message_id = %entry.message_id,
                    "queue entry without its message record skipped");
                continue;
            };
            leased.push(Leased {
                delivery_id: DeliveryId { slot, lease: id },
                attempt: entry.attempts,
                message,
                status: entry.status,
                lease_expires_at: lease_end,
            });
        }
        Ok(LeaseBatch { leased, next_wake })
    }

    /// Picks what to lease or dead-letter and holds it with provisional leases.
    fn select(
        &self,
        recipient: &OrgCode,
        stream: StreamId,
        max: usize,
        keep_after_stream: bool,
    ) -> Result<(Vec<Candidate>, Option<UnixMillis>), QueueError> {
        let mut candidates = Vec::new();
        let mut next_wake: Option<UnixMillis> = None;
        let mut wake_at = |at: UnixMillis| next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
        let prefix = queue_prefix(recipient);
        let durable = self.store.writer().durable_seq();
        let now = self.clock.now_millis();
        let lease_end = now.saturating_add(millis(self.config.lease));
        let mut states = self.state();
        let state = states.entry(recipient.clone()).or_default();
        let mut leasing = 0usize;
        let mut after: Option<Vec<u8>> = None;
        'pages: while leasing < max {
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
                if let Some(lease) = state.leases.get(&slot) {
                    if lease.blocked {
                        continue;
                    }
                    if lease.expires_at > now {
                        wake_at(lease.expires_at);
                        continue;
                    }
                    let ready_at = lease
                        .expires_at
                        .saturating_add(millis(self.backoff(lease.attempts)));
                    if ready_at > now {
                        wake_at(ready_at);
                        continue;
                    }
                }
                let entry: QueueEntry = store::decode(&key, &value)?;
                if entry.not_before > now {
                    wake_at(entry.not_before);
                    continue;
                }
                let id = self.next_lease.fetch_add(1, Ordering::Relaxed);
                let dead = entry.attempts >= self.config.max_attempts;
                state.leases.insert(
                    slot,
                    Lease {
                        id,
                        stream,
                        expires_at: lease_end,
                        attempts: entry.attempts,
                        blocked: dead,
                        keep_after_stream,
                    },
                );
                candidates.push(Candidate { slot, id, dead });
                if !dead {
                    leasing += 1;
                    if leasing >= max {
                        break 'pages;
                    }
                }
            }
        }
        Ok((candidates, next_wake))
    }

    /// Undoes `select` after the settling write failed.
    fn drop_provisional(&self, recipient: &OrgCode, provisional: &[(Slot, u64)]) {
        if let Some(state) = self.state().get_mut(recipient) {
            for (slot, id) in provisional {
                if state.leases.get(slot).is_some_and(|lease| lease.id == *id) {
                    state.leases.remove(slot);
                }
            }
        }
    }

    /// Keeps a held lease for `extra` longer than now (a forward to a peer
    /// that outlasts the lease). In memory, like every lease: after a
    /// restart the entry is deliverable again.
    pub fn extend_lease(&self, recipient: &OrgCode, delivery_id: &str, extra: std::time::Duration) {
        let Ok(id) = super::DeliveryId::parse(delivery_id) else {
            return;
        };
        let until = self.clock.now_millis().saturating_add(millis(extra));
        let mut states = self.state();
        if let Some(lease) = states
            .get_mut(recipient)
            .and_then(|state| state.leases.get_mut(&id.slot))
            .filter(|lease| lease.id == id.lease)
        {
            lease.expires_at = lease.expires_at.max(until);
        }
    }

    /// Unacknowledged leases `stream` holds right now.
    pub fn in_flight(&self, recipient: &OrgCode, stream: StreamId) -> usize {
        let now = self.clock.now_millis();
        self.state().get(recipient).map_or(0, |state| {
            state
                .leases
                .values()
                .filter(|lease| lease.stream == stream && (lease.blocked || lease.expires_at > now))
                .count()
        })
    }

    /// Ends a stream: its leases go back to the queue at once, except those
    /// of a drain stream, which stay until acked or expired.
    pub fn close_stream(&self, recipient: &OrgCode, stream: StreamId) {
        let now = self.clock.now_millis();
        let released = {
            let mut states = self.state();
            let Some(state) = states.get_mut(recipient) else {
                return;
            };
            let mut released = 0;
            for lease in state.leases.values_mut() {
                if lease.stream == stream
                    && !lease.blocked
                    && !lease.keep_after_stream
                    && lease.expires_at > now
                {
                    // Ended now: it backs off like an expired lease would.
                    lease.expires_at = now;
                    released += 1;
                }
            }
            released
        };
        if released > 0 {
            tracing::debug!(agency = %recipient, released, "stream ended; deliveries back in the queue");
            self.wakers.wake(recipient);
        }
    }
}

fn settle_job(
    writes: &mut WriteSet<'_>,
    recipient: &OrgCode,
    candidates: Vec<Candidate>,
    max_attempts: u32,
    now: UnixMillis,
) -> Result<Vec<Settled>, QueueError> {
    let mut settled = Vec::with_capacity(candidates.len());
    for Candidate { slot, id, dead } in candidates {
        let key = slot.queue_key(recipient);
        // Acked or purged since it was picked: nothing to do.
        let Some(bytes) = writes.get(&key)? else {
            settled.push(Settled::Vanished(slot, id));
            continue;
        };
        let mut entry: QueueEntry = store::decode(&key, &bytes)?;
        match dead {
            false => {
                entry.attempts += 1;
                entry.not_before = 0;
                writes.put(key, store::encode(&entry)?);
                let mut event = Event::message(
                    EventKind::Delivered,
                    &entry.sender,
                    &entry.message_id,
                    Some(recipient),
                    format!("attempt {}", entry.attempts),
                );
                event.attempt = entry.attempts;
                audit::append(writes, now, event)?;
                settled.push(Settled::Leased(slot, id, Box::new(entry)));
            }
            true => {
                let reason = if entry.last_reason.is_empty() {
                    format!("not acknowledged after {max_attempts} deliveries")
                } else {
                    format!(
                        "not acknowledged after {max_attempts} deliveries; last reason: {}",
                        entry.last_reason
                    )
                };
                super::bury(writes, recipient, slot, entry, reason, now)?;
                settled.push(Settled::Dead(slot));
            }
        }
    }
    Ok(settled)
}
