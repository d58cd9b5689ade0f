//! Messages: the one place that builds a message record, tells a retry from
//! a reuse of a message id, writes the files a record names and keeps them
//! (reference counts, release after retention: `content`), and writes the
//! acceptance into the audit chain. Queue entries, leases and wake-ups are
//! `queue`'s.

mod content;

use serde::{Deserialize, Serialize};

pub use self::content::SweepReport;
pub(crate) use self::content::delivery_done;
use crate::{
    audit::{self, Event, EventKind},
    clock::UnixMillis,
    envelope::{DocumentInfo, Envelope, MessageId, OrgCode},
    pki::Report,
    receipt::Receipt,
    routing::Recipient,
    store::{self, BlobStore, ContentHash, Kv, StagedBlob, Store, StoreError, WriteSet, keys},
};

/// Why a message could not be accepted as it stands.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The same sender used this message id for different content.
    #[error("message id {message_id} of {sender} was already used for different content")]
    AlreadyExists {
        /// Sender.
        sender: OrgCode,
        /// The reused id.
        message_id: MessageId,
    },
    /// A file the message needs was deleted by the content sweeper between
    /// being written and being enqueued (identical content had just expired).
    #[error("content {0} was being released as this document arrived; send it again")]
    ContentReleased(ContentHash),
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
    pub to: Vec<crate::envelope::Address>,
    /// Document info.
    pub document: DocumentInfo,
    /// Files.
    pub attachments: Vec<StoredAttachment>,
    /// Signatures.
    pub signatures: Vec<StoredSignature>,
    /// Every agency it is queued for, and the address that reached it.
    pub recipients: Vec<Recipient>,
    /// The verification report of each signature, kept with the message.
    #[serde(deserialize_with = "reports_of_any_version")]
    pub reports: Vec<Report>,
    /// Digest of the canonical content, to tell a retry from a reuse of the id.
    pub content_digest: ContentHash,
    /// When it was accepted; set when it is written.
    pub accepted_at: UnixMillis,
    /// The audit chain's head hash right after it was accepted; set when
    /// it is written.
    pub audit_head: [u8; 32],
}

/// Reports as the record version being decoded stored them: version 1
/// had no `embedded` placement.
fn reports_of_any_version<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Report>, D::Error> {
    if store::decoding_version() == 1 {
        let old: Vec<lienthong_domain::report::legacy::ReportV1> =
            Deserialize::deserialize(deserializer)?;
        Ok(old.into_iter().map(Report::from).collect())
    } else {
        Deserialize::deserialize(deserializer)
    }
}

impl MessageRecord {
    /// The record of an admitted document, not yet verified nor accepted:
    /// `attachments` and `signatures` name its files by hash; the reports
    /// come with [`MessageRecord::verified`].
    pub fn new(
        envelope: &Envelope,
        attachments: Vec<StoredAttachment>,
        signatures: Vec<StoredSignature>,
        recipients: Vec<Recipient>,
    ) -> Result<Self, MessageError> {
        Ok(Self {
            content_digest: content_digest(envelope, &attachments, &signatures)?,
            message_id: envelope.message_id.clone(),
            sender: envelope.from.clone(),
            to: envelope.to.clone(),
            document: envelope.document.clone(),
            attachments,
            signatures,
            recipients,
            reports: Vec::new(),
            accepted_at: 0,
            audit_head: [0; 32],
        })
    }

    /// The record with its signatures' verification reports.
    pub fn verified(self, reports: Vec<Report>) -> Self {
        Self { reports, ..self }
    }

    /// Every distinct file it names.
    pub(crate) fn hashes(&self) -> std::collections::BTreeSet<ContentHash> {
        self.attachments
            .iter()
            .map(|a| a.sha256)
            .chain(self.signatures.iter().map(|s| s.cms))
            .collect()
    }
}

/// SHA-256 over the canonical encoding of what the sender sent, files by
/// their hashes: equal for a retry, different for any change.
fn content_digest(
    envelope: &Envelope,
    attachments: &[StoredAttachment],
    signatures: &[StoredSignature],
) -> Result<ContentHash, StoreError> {
    store::canonical_digest(&(
        &envelope.message_id,
        &envelope.from,
        &envelope.to,
        &envelope.document,
        attachments,
        signatures,
    ))
}

/// The key of a message record.
pub(crate) fn message_key(sender: &OrgCode, message_id: &MessageId) -> Vec<u8> {
    keys::join(
        keys::MESSAGE,
        &[sender.as_str().as_bytes(), message_id.as_str().as_bytes()],
    )
}

/// The stored message, if the sender used this id.
pub fn find(
    kv: &dyn Kv,
    sender: &OrgCode,
    message_id: &MessageId,
) -> Result<Option<MessageRecord>, StoreError> {
    let key = message_key(sender, message_id);
    match kv.get(&key)? {
        Some(bytes) => Ok(Some(store::decode(&key, &bytes)?)),
        None => Ok(None),
    }
}

/// What a send of `record` is, given the record `first` already stored
/// under its sender and id: a retry (the first receipt again, marked
/// duplicate) or a reuse of the id for other content (refused).
pub fn repeat_of(first: MessageRecord, record: &MessageRecord) -> Result<Receipt, MessageError> {
    if first.content_digest != record.content_digest {
        return Err(MessageError::AlreadyExists {
            sender: record.sender.clone(),
            message_id: record.message_id.clone(),
        });
    }
    Ok(Receipt {
        message: first,
        duplicate: true,
    })
}

/// Inside a write job: accepts `message` at `now` (counts its files, writes
/// its record and its audit entry) or answers the receipt of the same
/// message accepted before. The caller queues a new message's deliveries
/// in the same job.
pub(crate) fn accept(
    writes: &mut WriteSet<'_>,
    blobs: &BlobStore,
    mut message: MessageRecord,
    now: UnixMillis,
) -> Result<Receipt, MessageError> {
    let key = message_key(&message.sender, &message.message_id);
    if let Some(bytes) = writes.get(&key)? {
        return repeat_of(store::decode(&key, &bytes)?, &message);
    }
    content::hold(writes, blobs, &message)?;
    message.accepted_at = now;
    message.audit_head = audit::append(writes, now, acceptance(&message))?;
    writes.put(key, store::encode(&message)?);
    Ok(Receipt {
        message,
        duplicate: false,
    })
}

/// One entry for acceptance, verification and queueing: it commits the
/// chain to the content digest and the recipient list (in full up to 100
/// recipients, by SHA-256 always). Trace expands it into ACCEPTED, VERIFIED
/// and one QUEUED per recipient from the message record.
fn acceptance(message: &MessageRecord) -> Event {
    let passed = message.reports.iter().filter(|r| r.passed()).count();
    let listed: Vec<String> = message
        .recipients
        .iter()
        .map(|r| format!("{} via {}", r.code, r.via))
        .collect();
    let list_hash = ContentHash::of(listed.join("\n").as_bytes());
    let mut detail = format!(
        "{} attachment(s), content digest {}; {passed} of {} signature(s) TOTAL_PASSED; queued for {} recipient(s), list sha256 {list_hash}",
        message.attachments.len(),
        message.content_digest,
        message.reports.len(),
        listed.len(),
    );
    if listed.len() <= 100 {
        detail.push_str(": ");
        detail.push_str(&listed.join(", "));
    }
    Event::message(
        EventKind::Accepted,
        &message.sender,
        &message.message_id,
        None,
        detail,
    )
}

/// Writes a checked document's files durably (file, rename, directory),
/// before the record that names them. Blocking. `staged` holds a streamed
/// document's content, one file per attachment; it is empty when the
/// envelope carries its content.
pub fn write_content(
    store: &Store,
    envelope: &Envelope,
    staged: Vec<StagedBlob>,
) -> Result<(), StoreError> {
    let blobs = store.blobs();
    if staged.is_empty() {
        for attachment in &envelope.attachments {
            blobs.put(&attachment.content)?;
        }
    } else {
        for blob in staged {
            blobs.commit(blob)?;
        }
    }
    for signature in &envelope.signatures {
        blobs.put(&signature.cms_der)?;
    }
    Ok(())
}

/// Whether every file `record` names is already stored (a retry, or
/// content another message shares): then nothing needs writing.
pub fn content_present(store: &Store, record: &MessageRecord) -> bool {
    let blobs = store.blobs();
    record.hashes().iter().all(|hash| blobs.contains(hash))
}

/// Releases the content of messages whose retention has passed, a few at a
/// time; returns what it did. Called by the gateway's sweeper.
pub async fn sweep(store: &Store, now: UnixMillis) -> Result<SweepReport, MessageError> {
    content::sweep(store, now).await
}
