//! Sending: admission (caller, earlier message, recipients, the type's
//! policy), content staged from a stream, verification, storage and the
//! signed receipt.

use std::sync::Arc;

use tokio_stream::{Stream, StreamExt};

use super::{Gateway, GatewayError, blocking};
use crate::{
    chunks::ChunkSequence,
    envelope::{Envelope, EnvelopeError, RawEnvelope},
    messages::{self, MessageRecord, StoredAttachment, StoredSignature},
    pki::{self, Report},
    receipt::{Receipt, ReceiptError, SignedReceipt},
    registry::Agency,
    routing,
    store::{ContentHash, StagedBlob},
};

impl Gateway {
    /// Accepts a document from `caller`: answers once it is durably queued
    /// for every recipient.
    pub async fn send(
        self: &Arc<Self>,
        caller: &Agency,
        raw: RawEnvelope,
    ) -> Result<SignedReceipt, GatewayError> {
        let envelope = raw.validate(&self.config.limits)?;
        let (recipients, policy) = self.admit(caller, &envelope)?;
        self.accept(envelope, Vec::new(), recipients, policy, Annex::default())
            .await
    }

    /// Accepts a large document whose content arrives in `chunks` after the
    /// envelope (SendStream). Each attachment is written to a staging file
    /// as it arrives, so memory stays bounded by the chunk size; content is
    /// verified from those files and kept only if the document is accepted.
    pub async fn send_stream<S>(
        self: &Arc<Self>,
        caller: &Agency,
        raw: RawEnvelope,
        sizes: Vec<u64>,
        chunks: S,
    ) -> Result<SignedReceipt, GatewayError>
    where
        S: Stream<Item = Result<(String, Vec<u8>), GatewayError>> + Unpin + Send,
    {
        let envelope = raw.validate_streamed(&self.config.limits, &sizes)?;
        let (recipients, policy) = self.admit(caller, &envelope)?;
        let _room = self.staging_room_for(&sizes)?;
        let staged = self.stage_stream(&envelope, &sizes, chunks).await?;
        self.accept(envelope, staged, recipients, policy, Annex::default())
            .await
    }

    /// Stages the content of a streamed envelope as it arrives in `chunks`
    /// (one staging file per attachment), in the order [`ChunkSequence`]
    /// keeps; a stream that breaks the order, stops or idles leaves nothing
    /// behind.
    pub(super) async fn stage_stream<S>(
        &self,
        envelope: &Envelope,
        sizes: &[u64],
        mut chunks: S,
    ) -> Result<Vec<StagedBlob>, GatewayError>
    where
        S: Stream<Item = Result<(String, Vec<u8>), GatewayError>> + Unpin + Send,
    {
        let limits = self.config.limits;
        let idle = self.config.flow.stream_idle_timeout;
        let mut sequence = ChunkSequence::new(envelope, sizes, &limits);
        // One staging file per attachment, made when its first chunk comes;
        // `current` belongs to attachment `staged.len()`.
        let mut staged: Vec<StagedBlob> = Vec::with_capacity(sizes.len());
        let mut current: Option<StagedBlob> = None;
        while !sequence.is_complete() {
            let next = tokio::time::timeout(idle, chunks.next())
                .await
                .map_err(|_| GatewayError::StreamIdle(idle.as_secs()))?;
            let Some(next) = next else {
                return Err(sequence.ended_early().into());
            };
            let (name, data) = next?;
            let index = sequence.accept(&name, data.len() as u64)?;
            while staged.len() < index {
                let blob = match current.take() {
                    Some(blob) => blob,
                    None => self.stage().await?,
                };
                staged.push(blob);
            }
            let mut blob = match current.take() {
                Some(blob) => blob,
                None => self.stage().await?,
            };
            current = Some(blocking(move || blob.write(&data).map(|()| blob)).await?);
        }
        while staged.len() < sizes.len() {
            let blob = match current.take() {
                Some(blob) => blob,
                None => self.stage().await?,
            };
            staged.push(blob);
        }
        let end = tokio::time::timeout(idle, chunks.next())
            .await
            .map_err(|_| GatewayError::StreamIdle(idle.as_secs()))?;
        if let Some(extra) = end {
            extra?;
            return Err(ChunkSequence::beyond().into());
        }
        Ok(staged)
    }

    /// Room for a stream's declared sizes: on disk above the reserve, and in
    /// the staging bound (`flow.max_staged_bytes`), held until the permit
    /// is dropped.
    pub(super) fn staging_room_for(
        &self,
        sizes: &[u64],
    ) -> Result<tokio::sync::OwnedSemaphorePermit, GatewayError> {
        let declared: u64 = sizes.iter().sum();
        self.store.space().room_for(declared)?;
        self.staging_room
            .try_take(declared)
            .ok_or(GatewayError::StagingFull {
                declared,
                limit: self.config.flow.max_staged_bytes,
            })
    }

    /// A new staging file, on the blocking pool.
    async fn stage(&self) -> Result<StagedBlob, GatewayError> {
        let blobs = self.store.blobs().clone();
        blocking(move || blobs.stage()).await
    }

    /// The checks that need no content: the caller is the sender, an
    /// earlier message named by `refers_to` exists, the recipients resolve
    /// and the document type's policy allows them.
    pub(super) fn admit(
        &self,
        caller: &Agency,
        envelope: &Envelope,
    ) -> Result<(Vec<routing::Recipient>, crate::registry::Policy), GatewayError> {
        if envelope.from != caller.code {
            return Err(GatewayError::NotSender {
                caller: caller.code.clone(),
                from: envelope.from.clone(),
            });
        }
        if let Some(earlier) = &envelope.document.refers_to
            && self.message(&envelope.from, earlier)?.is_none()
        {
            return Err(EnvelopeError::invalid(
                "envelope.document.refers_to",
                format!("no earlier message {earlier} of {} is known", envelope.from),
            )
            .into());
        }
        self.route_under_policy(envelope, &envelope.to)
    }

    /// Resolves `to` and checks that the document type's policy lets the
    /// document go to every recipient; answers the recipients and the policy.
    pub(super) fn route_under_policy(
        &self,
        envelope: &Envelope,
        to: &[crate::envelope::Address],
    ) -> Result<(Vec<routing::Recipient>, crate::registry::Policy), GatewayError> {
        let recipients = self.resolve(to)?;
        let policy = self.registry.policy_for(&envelope.document.doc_type);
        policy
            .check_recipients(
                &recipients
                    .iter()
                    .map(|r| r.code.clone())
                    .collect::<Vec<_>>(),
            )
            .map_err(|refusal| GatewayError::Refused {
                refusal,
                reports: Vec::new(),
            })?;
        Ok((recipients, policy))
    }

    /// Verifies, stores and enqueues an admitted document, then signs its
    /// receipt. `staged` holds the content of a streamed document (one per
    /// attachment); it is empty when the envelope carries its content.
    pub(super) async fn accept(
        self: &Arc<Self>,
        envelope: Envelope,
        staged: Vec<StagedBlob>,
        recipients: Vec<routing::Recipient>,
        policy: crate::registry::Policy,
        annex: Annex,
    ) -> Result<SignedReceipt, GatewayError> {
        let Annex {
            route,
            hops,
            edxml,
            reports,
        } = annex;
        // A small document is hashed and verified right here: that is CPU
        // work of a few hundred µs, and handing it to the blocking pool and
        // back cost more (context switches) than it saved. Large or
        // streamed content is read from files, on the blocking pool.
        let inline_bytes: u64 = envelope
            .attachments
            .iter()
            .map(|a| a.content.len() as u64)
            .sum();
        let (stored, envelope, staged) = if staged.is_empty() && inline_bytes <= INLINE_CHECK_BYTES
        {
            let mut staged = staged;
            let stored =
                self.check_content(&envelope, &mut staged, recipients, &policy, reports)?;
            (stored, envelope, staged)
        } else {
            let this = self.clone();
            blocking(move || {
                let mut staged = staged;
                this.check_content(&envelope, &mut staged, recipients, &policy, reports)
                    .map(|stored| (stored, envelope, staged))
            })
            .await?
        };
        let record = match stored {
            Stored::New(record) => record,
            Stored::Duplicate(receipt) => return self.sign_receipt(receipt).await,
        };
        // A document sent again is answered whatever the disk; a new one
        // needs room above the reserve (a streamed one was checked before
        // its content was staged).
        if staged.is_empty() {
            self.store.space().room_for(inline_bytes)?;
        }
        // Files are written (fsync) on the blocking pool; content already
        // stored costs a stat here.
        if !staged.is_empty() || !messages::content_present(&self.store, &record) {
            let store = self.store.clone();
            blocking(move || messages::write_content(&store, &envelope, staged)).await?;
        }
        let receipt = self
            .queue
            .enqueue_routed(record, route, hops, edxml)
            .await?;
        tracing::info!(
            sender = %receipt.message.sender,
            message_id = %receipt.message.message_id,
            recipients = receipt.message.recipients.len(),
            bytes = receipt.message.attachments.iter().map(|a| a.size).sum::<u64>(),
            duplicate = receipt.duplicate,
            "message accepted"
        );
        self.sign_receipt(receipt).await
    }

    /// Adds the gateway's batch signature to a receipt, when configured.
    async fn sign_receipt(&self, receipt: Receipt) -> Result<SignedReceipt, GatewayError> {
        let canonical = crate::receipt::canonical(&receipt);
        let proof = match &self.receipts {
            Some(signer) => Some(signer.sign(&canonical).await.map_err(|error| match error {
                ReceiptError::SignerStopped => GatewayError::Internal(error.to_string()),
                other => pki::PkiError::Signing(other.to_string()).into(),
            })?),
            None => None,
        };
        Ok(SignedReceipt {
            receipt,
            canonical,
            proof,
        })
    }

    /// Hashes the content and answers a duplicate without writing; otherwise
    /// verifies every signature, applies the policy, writes the files
    /// durably and returns the record to enqueue.
    fn check_content(
        &self,
        envelope: &Envelope,
        staged: &mut [StagedBlob],
        recipients: Vec<routing::Recipient>,
        policy: &crate::registry::Policy,
        extra_reports: Vec<Report>,
    ) -> Result<Stored, GatewayError> {
        let mut attachments = Vec::with_capacity(envelope.attachments.len());
        for (index, a) in envelope.attachments.iter().enumerate() {
            let (sha256, size) = match staged.get_mut(index) {
                Some(blob) => (blob.seal()?, blob.size()),
                None => (ContentHash::of(&a.content), a.content.len() as u64),
            };
            attachments.push(StoredAttachment {
                name: a.name.clone(),
                media_type: a.media_type.clone(),
                sha256,
                size,
            });
        }
        let signatures: Vec<StoredSignature> = envelope
            .signatures
            .iter()
            .map(|s| StoredSignature {
                attachment: s.attachment.clone(),
                cms: ContentHash::of(&s.cms_der),
            })
            .collect();
        let record = MessageRecord::new(envelope, attachments, signatures, recipients)?;
        // A retry of an accepted message costs no writes; the writer checks
        // again, so a race here only costs redundant (idempotent) files.
        if let Some(first) = self.message(&record.sender, &record.message_id)? {
            return Ok(Stored::Duplicate(messages::repeat_of(first, &record)?));
        }
        let contents: Vec<pki::Content<'_>> = if staged.is_empty() {
            envelope
                .attachments
                .iter()
                .map(|a| pki::Content::Bytes(&a.content))
                .collect()
        } else {
            staged
                .iter()
                .map(|blob| pki::Content::File(blob.path()))
                .collect()
        };
        let mut reports = extra_reports;
        reports.extend(self.verify_envelope(envelope, &contents));
        drop(contents);
        policy
            .check_signatures(&envelope.from, &reports)
            .map_err(|refusal| GatewayError::Refused {
                refusal,
                reports: reports.clone(),
            })?;
        Ok(Stored::New(record.verified(reports)))
    }

    /// Verifies every signature of an envelope against its attachment's
    /// content (`contents`, in attachment order).
    fn verify_envelope(&self, envelope: &Envelope, contents: &[pki::Content<'_>]) -> Vec<Report> {
        let lookup = |fingerprint: &pki::Fingerprint| self.registry.signer_role(fingerprint);
        let mut reports = Vec::new();
        for signature in &envelope.signatures {
            match envelope
                .attachments
                .iter()
                .zip(contents)
                .find(|(a, _)| a.name == signature.attachment)
            {
                Some((_, content)) => reports.extend(self.verifier.verify_content(
                    *content,
                    &signature.cms_der,
                    &signature.attachment,
                    &lookup,
                )),
                None => reports.push(pki::missing_attachment(
                    &signature.attachment,
                    self.verifier.now(),
                )),
            }
        }
        // Signatures inside PDF attachments count like detached ones.
        for (attachment, content) in envelope.attachments.iter().zip(contents) {
            if lienthong_pdf::is_pdf_media_type(&attachment.media_type) {
                reports.extend(self.verify_pdf_attachment(&attachment.name, *content, &lookup));
            }
        }
        reports
    }
}

/// What is kept with a message beside its record, in the same write.
#[derive(Default)]
pub(super) struct Annex {
    /// For a document a peer forwarded: the gateways it went through.
    pub route: Vec<crate::federation::GatewayId>,
    /// For a document a peer forwarded: the signed hops.
    pub hops: Vec<crate::federation::SignedHop>,
    /// For a document that came as edXML: its header, kept whole.
    pub edxml: Option<Vec<u8>>,
    /// Reports of signatures verified before (an edXML header's), counted
    /// under the policy with the attachments' ones.
    pub reports: Vec<Report>,
}

/// Documents up to this size are hashed and verified on the async worker.
const INLINE_CHECK_BYTES: u64 = 256 * 1024;

enum Stored {
    New(MessageRecord),
    Duplicate(Receipt),
}
