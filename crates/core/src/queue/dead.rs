//! Dead letters (deliveries out of attempts): listing, replay to their
//! old place in the queue, and purging a recipient's queue.

use super::{
    DeadLetter, DeadRecord, PURGE_CHUNK, Queue, QueueEntry, QueueError, millis,
    slot::{DeadLetterId, Slot, dead_prefix, queue_prefix},
};
use crate::{
    audit::{self, Event, EventKind},
    envelope::OrgCode,
    messages, store,
};

impl Queue {
    /// Moves a held delivery to the dead letters at once, with `reason`: it
    /// can never succeed (a peer refused it for good). Durable before it
    /// answers; replay puts it back where it was.
    pub async fn dead_letter(
        &self,
        recipient: &OrgCode,
        delivery_id: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        let id = super::DeliveryId::parse(delivery_id)?;
        let previous = self.block(recipient, id, true)?;
        let now = self.clock.now_millis();
        let reason: String = reason.chars().take(500).collect();
        let agency = recipient.clone();
        let moved = self
            .store
            .writer()
            .write(move |writes| {
                let key = id.slot.queue_key(&agency);
                let Some(bytes) = writes.get(&key)? else {
                    return Ok(false);
                };
                let entry: QueueEntry = store::decode(&key, &bytes)?;
                super::bury(writes, &agency, id.slot, entry, reason, now)?;
                Ok::<_, QueueError>(true)
            })
            .await;
        self.settle(recipient, id, previous, moved)
    }

    /// Dead letters of `recipient`, oldest position first.
    pub fn dead_letters(
        &self,
        recipient: &OrgCode,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let prefix = dead_prefix(recipient);
        let mut out = Vec::new();
        for (key, value) in self.store.kv().scan_prefix(&prefix, None, limit)? {
            let Some(slot) = Slot::from_key(prefix.len(), &key) else {
                continue;
            };
            let record: DeadRecord = store::decode(&key, &value)?;
            out.push(DeadLetter {
                id: DeadLetterId {
                    recipient: recipient.clone(),
                    slot,
                },
                sender: record.entry.sender,
                message_id: record.entry.message_id,
                attempts: record.entry.attempts,
                dead_at: record.dead_at,
                reason: record.reason,
            });
        }
        Ok(out)
    }

    /// Puts a dead letter back at its old position, with its attempts reset.
    pub async fn replay(&self, dead_letter_id: &str) -> Result<OrgCode, QueueError> {
        let id = DeadLetterId::parse(dead_letter_id)?;
        let recipient = id.recipient.clone();
        let job_id = id.clone();
        let now = self.clock.now_millis();
        self.store
            .writer()
            .write(move |writes| {
                let dead_key = job_id.slot.dead_key(&job_id.recipient);
                let bytes = writes
                    .get(&dead_key)?
                    .ok_or_else(|| QueueError::UnknownDeadLetter(job_id.to_string()))?;
                let record: DeadRecord = store::decode(&dead_key, &bytes)?;
                let entry = QueueEntry {
                    attempts: 0,
                    not_before: 0,
                    last_reason: String::new(),
                    ..record.entry
                };
                writes.delete(dead_key);
                audit::append(
                    writes,
                    now,
                    Event::message(
                        EventKind::Replayed,
                        &entry.sender,
                        &entry.message_id,
                        Some(&job_id.recipient),
                        "from dead letters",
                    ),
                )?;
                writes.put(
                    job_id.slot.queue_key(&job_id.recipient),
                    store::encode(&entry)?,
                );
                Ok::<_, QueueError>(())
            })
            .await?;
        if let Some(state) = self.state().get_mut(&recipient) {
            state.leases.remove(&id.slot);
        }
        self.wakers.wake(&recipient);
        tracing::info!(agency = %recipient, dead_letter = %id, "dead letter replayed");
        Ok(recipient)
    }

    /// Deletes every queue entry of `recipient`, leased ones included.
    pub async fn purge(&self, recipient: &OrgCode, confirm: bool) -> Result<u64, QueueError> {
        if !confirm {
            return Err(QueueError::PurgeNotConfirmed(recipient.clone()));
        }
        let mut purged = 0u64;
        loop {
            let prefix = queue_prefix(recipient);
            let agency = recipient.clone();
            let now = self.clock.now_millis();
            let due = now.saturating_add(millis(self.config.content_retention));
            let (scanned, deleted) = self
                .store
                .writer()
                .write(move |writes| {
                    // The scan reads the engine; an earlier job of the same
                    // group may have removed an entry since, so each is read
                    // again through the write set.
                    let page = writes.kv().scan_prefix(&prefix, None, PURGE_CHUNK)?;
                    let scanned = page.len();
                    let mut count = 0u64;
                    for (key, _) in page {
                        let Some(value) = writes.get(&key)? else {
                            continue;
                        };
                        let entry: QueueEntry = store::decode(&key, &value)?;
                        if entry.status.is_none() {
                            messages::delivery_done(writes, &entry.sender, &entry.message_id, due)?;
                        }
                        writes.delete(key);
                        count += 1;
                    }
                    if count > 0 {
                        let mut event = Event::admin(
                            Some(&agency),
                            format!("queue purged: {count} deliveries deleted"),
                        );
                        event.kind = EventKind::Purged;
                        audit::append(writes, now, event)?;
                    }
                    Ok::<_, QueueError>((scanned, count))
                })
                .await?;
            purged += deleted;
            if scanned < PURGE_CHUNK {
                break;
            }
        }
        self.state().remove(recipient);
        tracing::warn!(agency = %recipient, purged, "queue purged");
        Ok(purged)
    }
}
