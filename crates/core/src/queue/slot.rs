//! Where an entry sits: its queue key, and the delivery and dead-letter ids
//! that name it on the wire.

use std::fmt;

use super::QueueError;
use crate::{envelope::OrgCode, store::keys};

/// Position of an entry within one recipient's queue: rank 0 is the most
/// urgent, seq is the writer's strictly increasing sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Slot {
    pub rank: u8,
    pub seq: u64,
}

impl Slot {
    pub fn queue_key(&self, recipient: &OrgCode) -> Vec<u8> {
        let mut key = queue_prefix(recipient);
        self.append(&mut key);
        key
    }

    pub fn dead_key(&self, recipient: &OrgCode) -> Vec<u8> {
        let mut key = dead_prefix(recipient);
        self.append(&mut key);
        key
    }

    fn append(&self, key: &mut Vec<u8>) {
        key.push(self.rank);
        key.extend_from_slice(&self.seq.to_be_bytes());
    }

    /// The slot at the end of a queue or dead-letter key.
    pub fn from_key(prefix_len: usize, key: &[u8]) -> Option<Self> {
        let rest = key.get(prefix_len..)?;
        let (&rank, seq) = rest.split_first()?;
        Some(Self {
            rank,
            seq: u64::from_be_bytes(seq.try_into().ok()?),
        })
    }

    fn to_hex(self) -> String {
        format!("{:02x}{:016x}", self.rank, self.seq)
    }

    fn parse_hex(text: &str) -> Option<Self> {
        if text.len() != 18 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            rank: u8::from_str_radix(&text[..2], 16).ok()?,
            seq: u64::from_str_radix(&text[2..], 16).ok()?,
        })
    }
}

fn prefixed(prefix: &[u8], recipient: &OrgCode) -> Vec<u8> {
    let mut key = keys::join(prefix, &[recipient.as_str().as_bytes()]);
    key.push(0);
    key
}

/// `queue\0{recipient}\0`
pub(crate) fn queue_prefix(recipient: &OrgCode) -> Vec<u8> {
    prefixed(keys::QUEUE, recipient)
}

/// `dead\0{recipient}\0`
pub(crate) fn dead_prefix(recipient: &OrgCode) -> Vec<u8> {
    prefixed(keys::DEAD, recipient)
}

/// Identifies one lease of one entry: `{rank:02x}{seq:016x}.{lease:016x}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryId {
    pub(crate) slot: Slot,
    pub(crate) lease: u64,
}

impl DeliveryId {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, QueueError> {
        let malformed = || QueueError::MalformedDeliveryId(text.chars().take(64).collect());
        let (slot, lease) = text.split_once('.').ok_or_else(malformed)?;
        if lease.len() != 16 || !lease.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        Ok(Self {
            slot: Slot::parse_hex(slot).ok_or_else(malformed)?,
            lease: u64::from_str_radix(lease, 16).map_err(|_| malformed())?,
        })
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:016x}", self.slot.to_hex(), self.lease)
    }
}

/// Names a dead letter across agencies: `{recipient}/{rank:02x}{seq:016x}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterId {
    pub(crate) recipient: OrgCode,
    pub(crate) slot: Slot,
}

impl DeadLetterId {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, QueueError> {
        let malformed = || QueueError::MalformedDeadLetterId(text.chars().take(64).collect());
        let (recipient, slot) = text.split_once('/').ok_or_else(malformed)?;
        Ok(Self {
            recipient: OrgCode::parse_queue(recipient, "dead_letter_id")
                .map_err(|_| malformed())?,
            slot: Slot::parse_hex(slot).ok_or_else(malformed)?,
        })
    }
}

impl DeadLetterId {
    /// The agency whose queue it belongs to.
    pub fn recipient_code(&self) -> &OrgCode {
        &self.recipient
    }
}

impl fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.recipient, self.slot.to_hex())
    }
}
