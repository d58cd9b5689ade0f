//! edXML natively: packages sent through the Edxml service become messages
//! (documents) or status reports, their XML signature verified under the
//! same policies as CMS ones; deliveries are rendered back as edXML for
//! receivers that ask; packages are signed with held keys on request.

use std::{io::Write as _, sync::Arc};

use lienthong_edxml::{
    EdxmlError, Element, Insertion, Kind, Package,
    write::{self, DocumentView, Hop, Organization, OutAttachment, StatusView},
};
use tokio_stream::{Stream, StreamExt};

use super::{Gateway, GatewayError, blocking, send::Annex, status::RawStatus};
use crate::{
    envelope::{EnvelopeError, OrgCode},
    pki::{self, CertificateFacts, Role},
    queue::Leased,
    receipt::SignedReceipt,
    registry::Agency,
    store::{StagedBlob, StoreError},
};

/// Bounds for reading back what the gateway itself wrote (a kept header, a
/// rendered package): it was checked on the way in, under the bounds of
/// its day, so today's configuration must not make it unreadable.
const KEPT: lienthong_edxml::Limits = lienthong_edxml::Limits {
    max_header_bytes: usize::MAX,
    max_depth: usize::MAX,
    max_elements: usize::MAX,
    max_attachments: usize::MAX,
    max_attachment_bytes: u64::MAX,
    max_junk: 0,
};

/// What an edXML package sent became.
pub enum EdxmlAccepted {
    /// A document, queued for its recipients.
    Document(Box<SignedReceipt>),
    /// A status message, queued for the document's sender.
    Status(Box<super::status::StatusReceipt>),
}

/// A package signed for a caller: the input as staged and the signature to
/// insert into it.
pub struct SignedEdxml {
    /// The package as received.
    pub input: StagedBlob,
    /// The `ds:Signature` and where it goes.
    pub insertion: Insertion,
    /// The certificate that signed.
    pub facts: CertificateFacts,
    _room: tokio::sync::OwnedSemaphorePermit,
}

/// An edXML rendering of a delivery: in memory for a small document, in a
/// staging file (removed when dropped) for a large one.
pub enum RenderedEdxml {
    /// The package's bytes.
    Memory(Vec<u8>),
    /// The staged package.
    File(StagedBlob),
}

impl RenderedEdxml {
    /// The package's size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            RenderedEdxml::Memory(bytes) => bytes.len() as u64,
            RenderedEdxml::File(file) => file.size(),
        }
    }
}

/// Packages up to this size are read in memory (Edxml.Send) and rendered
/// in memory (deliveries): no staging file for a common 10 KB letter.
pub(super) const INLINE_PACKAGE_BYTES: u64 = 1 << 20;

/// Packages up to this size are read on the async worker.
const INLINE_READ_BYTES: u64 = 256 * 1024;

/// An upload as taken: in memory, or in a staging file.
enum Upload {
    Memory(Vec<u8>),
    Staged(StagedBlob),
}

/// Decoded attachments as they are held.
enum Content {
    Memory(Vec<Vec<u8>>),
    Staged(Vec<StagedBlob>),
}

/// Where the reader puts decoded attachments, and what they are then.
trait ContentSink: lienthong_edxml::AttachmentSink {
    fn as_sink(&mut self) -> &mut dyn lienthong_edxml::AttachmentSink;
    /// The content of `count` attachments (empty ones included).
    fn finish(
        self: Box<Self>,
        count: usize,
        blobs: &crate::store::BlobStore,
    ) -> Result<Content, GatewayError>;
}

/// Decoded attachments in memory (a small package).
struct MemorySink(Vec<Vec<u8>>);

impl lienthong_edxml::AttachmentSink for MemorySink {
    fn write(&mut self, index: usize, bytes: &[u8]) -> Result<(), EdxmlError> {
        while self.0.len() <= index {
            self.0.push(Vec::new());
        }
        self.0[index].extend_from_slice(bytes);
        Ok(())
    }
}

impl ContentSink for MemorySink {
    fn as_sink(&mut self) -> &mut dyn lienthong_edxml::AttachmentSink {
        self
    }

    fn finish(
        self: Box<Self>,
        count: usize,
        _blobs: &crate::store::BlobStore,
    ) -> Result<Content, GatewayError> {
        let mut contents = self.0;
        contents.resize(count, Vec::new());
        Ok(Content::Memory(contents))
    }
}

impl ContentSink for StagingSink {
    fn as_sink(&mut self) -> &mut dyn lienthong_edxml::AttachmentSink {
        self
    }

    fn finish(
        self: Box<Self>,
        count: usize,
        blobs: &crate::store::BlobStore,
    ) -> Result<Content, GatewayError> {
        let mut staged = self.staged;
        // Attachments with no content still need their (empty) file.
        while staged.len() < count {
            staged.push(blobs.stage()?);
        }
        Ok(Content::Staged(staged))
    }
}

/// Writes decoded attachments into one staging file each.
struct StagingSink {
    blobs: crate::store::BlobStore,
    staged: Vec<StagedBlob>,
}

impl lienthong_edxml::AttachmentSink for StagingSink {
    fn write(&mut self, index: usize, bytes: &[u8]) -> Result<(), EdxmlError> {
        while self.staged.len() <= index {
            let blob = self
                .blobs
                .stage()
                .map_err(|e| EdxmlError::Io(format!("staging an attachment: {e}")))?;
            self.staged.push(blob);
        }
        self.staged[index]
            .write(bytes)
            .map_err(|e| EdxmlError::Io(format!("staging an attachment: {e}")))
    }
}

impl From<EdxmlError> for GatewayError {
    fn from(error: EdxmlError) -> Self {
        match error {
            EdxmlError::Signing(error) => GatewayError::Pki(error),
            EdxmlError::Io(reason) | EdxmlError::Internal(reason) => GatewayError::Internal(reason),
            other => GatewayError::Edxml(other),
        }
    }
}

impl Gateway {
    /// Stages an upload of `size` bytes arriving in `chunks` (bounded by
    /// `limits.max_stream_bytes` and the staging room); `field` names the
    /// size in errors.
    pub(super) async fn stage_upload<S>(
        &self,
        size: u64,
        chunks: S,
        field: &str,
    ) -> Result<(StagedBlob, tokio::sync::OwnedSemaphorePermit), GatewayError>
    where
        S: Stream<Item = Result<Vec<u8>, GatewayError>> + Unpin + Send,
    {
        match self.upload(size, chunks, field, false).await? {
            (Upload::Staged(staged), room) => Ok((staged, room)),
            (Upload::Memory(_), _) => Err(GatewayError::Internal(
                "an upload meant for a file was held in memory".to_owned(),
            )),
        }
    }

    /// Takes an upload of `size` bytes from `chunks`, into memory or a
    /// staging file; its room in the staging bound (`flow.max_staged_bytes`)
    /// is held until the permit is dropped.
    async fn upload<S>(
        &self,
        size: u64,
        mut chunks: S,
        field: &str,
        in_memory: bool,
    ) -> Result<(Upload, tokio::sync::OwnedSemaphorePermit), GatewayError>
    where
        S: Stream<Item = Result<Vec<u8>, GatewayError>> + Unpin + Send,
    {
        let limit = self.config.limits.max_stream_bytes;
        if size == 0 {
            return Err(EnvelopeError::invalid(field, "declare the size in bytes").into());
        }
        if size > limit {
            return Err(EnvelopeError::TooLarge {
                field: field.to_owned(),
                size,
                limit,
            }
            .into());
        }
        let room = self.staging_room_for(&[size])?;
        let idle = self.config.flow.stream_idle_timeout;
        let mut target = if in_memory {
            Upload::Memory(Vec::with_capacity(usize::try_from(size).unwrap_or(0)))
        } else {
            let blobs = self.store.blobs().clone();
            Upload::Staged(blocking(move || blobs.stage()).await?)
        };
        let mut received = 0u64;
        loop {
            let next = tokio::time::timeout(idle, chunks.next())
                .await
                .map_err(|_| GatewayError::StreamIdle(idle.as_secs()))?;
            let Some(chunk) = next else { break };
            let chunk = chunk?;
            if chunk.is_empty() {
                return Err(EnvelopeError::invalid("chunk", "an empty chunk").into());
            }
            received += chunk.len() as u64;
            if received > size {
                return Err(EnvelopeError::invalid(
                    "chunk",
                    format!("more than the {size} bytes declared in {field}"),
                )
                .into());
            }
            target = match target {
                Upload::Memory(mut bytes) => {
                    bytes.extend_from_slice(&chunk);
                    Upload::Memory(bytes)
                }
                Upload::Staged(mut staged) => {
                    Upload::Staged(blocking(move || staged.write(&chunk).map(|()| staged)).await?)
                }
            };
        }
        if received != size {
            return Err(GatewayError::StreamBroken(format!(
                "{received} of the {size} declared bytes arrived"
            )));
        }
        Ok((target, room))
    }

    /// Accepts an edXML package the caller streams (`size` bytes): a
    /// document is verified (its XML signature beside any in PDF
    /// attachments), stored with its header kept whole and queued; a status
    /// message is reported to the document's sender. A package up to 1 MiB
    /// is read in memory; a larger one is staged on disk and read from a
    /// map, its attachments decoded into staging files.
    pub async fn edxml_send<S>(
        self: &Arc<Self>,
        caller: &Agency,
        size: u64,
        chunks: S,
    ) -> Result<EdxmlAccepted, GatewayError>
    where
        S: Stream<Item = Result<Vec<u8>, GatewayError>> + Unpin + Send,
    {
        // A small package is read in memory and its attachments go the
        // inline way of Send; a large one is staged, read from a map, and
        // its attachments decode into staging files.
        let in_memory = size <= INLINE_PACKAGE_BYTES.min(self.config.limits.max_message_bytes);
        let (upload, _room) = self.upload(size, chunks, "options.size", in_memory).await?;
        let this = self.clone();
        let read = move || {
            let mapped;
            let (bytes, mut sink): (&[u8], Box<dyn ContentSink>) = match &upload {
                Upload::Memory(bytes) => (bytes, Box::new(MemorySink(Vec::new()))),
                Upload::Staged(staged) => {
                    mapped = map_file(staged)?;
                    (
                        mapped.bytes(),
                        Box::new(StagingSink {
                            blobs: this.store.blobs().clone(),
                            staged: Vec::new(),
                        }),
                    )
                }
            };
            let limits = this.config.edxml.limits;
            let package = lienthong_edxml::read(bytes, &limits, sink.as_sink())?;
            let lookup = |fingerprint: &pki::Fingerprint| this.registry.signer_role(fingerprint);
            let report = lienthong_edxml::verify_signature(
                bytes,
                &package,
                &this.verifier,
                &lookup,
                this.config.edxml.accept_sha1,
            );
            let annex = annex_of(&package)?;
            let content = sink.finish(package.attachments.len(), this.store.blobs())?;
            Ok::<_, GatewayError>((package, content, report, annex))
        };
        // Reading, canonicalizing and verifying a small package costs less
        // than a trip through the blocking pool (as for Send).
        let (package, content, report, annex) = if size <= INLINE_READ_BYTES {
            read()?
        } else {
            blocking(read).await?
        };
        match package.kind {
            Kind::Document => {
                let (mut raw, sizes) =
                    lienthong_edxml::map::envelope(&package, &|t| self.config.edxml.doc_type(t))?;
                let (envelope, staged) = match content {
                    Content::Memory(contents) => {
                        for (attachment, bytes) in raw.attachments.iter_mut().zip(contents) {
                            attachment.content = bytes;
                        }
                        (raw.validate(&self.config.limits)?, Vec::new())
                    }
                    Content::Staged(staged) => {
                        (raw.validate_streamed(&self.config.limits, &sizes)?, staged)
                    }
                };
                let (recipients, policy) = self.admit(caller, &envelope)?;
                let receipt = self
                    .accept(
                        envelope,
                        staged,
                        recipients,
                        policy,
                        Annex {
                            edxml: Some(annex),
                            reports: report.into_iter().collect(),
                            ..Annex::default()
                        },
                    )
                    .await?;
                Ok(EdxmlAccepted::Document(Box::new(receipt)))
            }
            Kind::Status => {
                if let Some(report) = report.filter(|r| !r.passed()) {
                    return Err(GatewayError::Edxml(EdxmlError::invalid(
                        "edXMLHeader/Signature",
                        format!("the status message's signature fails: {}", report.message),
                    )));
                }
                let mut fields = lienthong_edxml::map::status(&package)?;
                // A status 15 or 16 answers a revoke, update or replace,
                // while edXML names only the document: the latest such
                // message for it is the one answered.
                if matches!(
                    fields.code,
                    crate::status::StatusCode::RecallAccepted
                        | crate::status::StatusCode::RecallRefused
                ) && let (Ok(sender), Ok(original)) = (
                    OrgCode::parse(&fields.sender, "edXMLHeader/Status/ResponseFor/OrganId"),
                    crate::envelope::MessageId::parse(&fields.message_id, "message id"),
                ) && let Some(answer) = self.queue.edxml_answer_of(&sender, &original)?
                {
                    fields.message_id = answer.to_string();
                }
                let receipt = self
                    .report_status(
                        caller,
                        RawStatus {
                            message_id: fields.message_id,
                            sender: fields.sender,
                            reporter: fields.reporter,
                            code: fields.code.edxml(),
                            description: fields.description,
                            staff: fields.staff,
                            at: fields.at,
                        },
                    )
                    .await?;
                Ok(EdxmlAccepted::Status(Box::new(receipt)))
            }
        }
    }

    /// Signs an edXML package the caller streams with the caller's key for
    /// `role`: an enveloped `ds:Signature` (exclusive C14N, SHA-256,
    /// `Reference URI=""`) at the end of its header.
    pub async fn edxml_sign<S>(
        self: &Arc<Self>,
        caller: &Agency,
        agency: &str,
        role: Role,
        size: u64,
        chunks: S,
    ) -> Result<SignedEdxml, GatewayError>
    where
        S: Stream<Item = Result<Vec<u8>, GatewayError>> + Unpin + Send,
    {
        let key = self.own_key(caller, agency, role)?;
        let facts = key.certificate_facts()?;
        let (staged, room) = self.stage_upload(size, chunks, "options.size").await?;
        let limits = self.config.edxml.limits;
        let (input, insertion) = blocking(move || {
            let insertion = {
                let mapped = map_file(&staged)?;
                let map = mapped.bytes();
                let package = lienthong_edxml::read(map, &limits, &mut lienthong_edxml::Discard)?;
                lienthong_edxml::sign(map, &package, &key)?
            };
            Ok::<_, GatewayError>((staged, insertion))
        })
        .await?;
        tracing::info!(agency = %caller.code, role = role.name(), "signed an edXML package");
        Ok(SignedEdxml {
            input,
            insertion,
            facts,
            _room: room,
        })
    }

    /// Renders a delivery as an edXML package in a staging file: a
    /// document from the header it came with (or made from its envelope),
    /// with this gateway's hop added to the trace, its attachments streamed
    /// from the store; a status as a status message. With `sign`, the
    /// gateway's key (the receipt key) signs it. Blocking.
    pub(super) fn render_edxml(
        &self,
        leased: &Leased,
        sign: bool,
    ) -> Result<RenderedEdxml, GatewayError> {
        let message = &leased.message;
        let blobs = self.store.blobs().clone();
        let (header, attachments): (Element, Vec<OutAttachment>) = match &leased.status {
            Some(status) => (self.status_header(message, status)?, Vec::new()),
            None => {
                let (mut header, described) =
                    match self.queue.edxml_of(&message.sender, &message.message_id)? {
                        Some(kept) => {
                            let package =
                                lienthong_edxml::read(&kept, &KEPT, &mut lienthong_edxml::Discard)
                                    .map_err(|e| {
                                        GatewayError::Internal(format!(
                                            "the kept edXML header does not read: {e}"
                                        ))
                                    })?;
                            (package.header, package.attachments)
                        }
                        None => (self.header_from_record(message), Vec::new()),
                    };
                write::add_hop(
                    &mut header,
                    &Hop {
                        organ_id: self.edxml_organ_id(),
                        at: self.clock.now_millis(),
                    },
                );
                let attachments = message
                    .attachments
                    .iter()
                    .enumerate()
                    .map(|(index, a)| {
                        let kept = described.get(index).filter(|d| d.name == a.name);
                        OutAttachment {
                            content_id: kept.map(|d| d.content_id.clone()).unwrap_or_default(),
                            name: a.name.clone(),
                            description: kept.map(|d| d.description.clone()).unwrap_or_default(),
                            content_type: a.media_type.clone(),
                        }
                    })
                    .collect();
                (header, attachments)
            }
        };
        let hashes: Vec<_> = message.attachments.iter().map(|a| a.sha256).collect();
        let mut open = |index: usize| {
            let hash = hashes
                .get(index)
                .copied()
                .ok_or_else(|| std::io::Error::other("an attachment without stored content"))?;
            blobs
                .open_reader(&hash)
                .map(|reader| Box::new(CheckedReader(reader)) as Box<dyn std::io::Read>)
                .map_err(std::io::Error::other)
        };
        let total: u64 = message.attachments.iter().map(|a| a.size).sum();
        let key = match (sign, &self.edxml_key) {
            (false, _) => None,
            (true, Some(key)) => Some(key),
            (true, None) => {
                return Err(GatewayError::Edxml(EdxmlError::invalid(
                    "sign",
                    "the gateway has no key of its own to sign with ([receipts] is not configured)",
                )));
            }
        };
        if total <= INLINE_PACKAGE_BYTES {
            let mut bytes = Vec::new();
            let (header_end, _) =
                write::write_package(&mut bytes, &header, &attachments, &mut open)?;
            let Some(key) = key else {
                return Ok(RenderedEdxml::Memory(bytes));
            };
            // Written here, unsigned, its header's end known: no reading back.
            let insertion = lienthong_edxml::sign_written(&bytes, header_end, key)?;
            return Ok(RenderedEdxml::Memory(insertion.apply(&bytes)));
        }
        let mut file = blobs.stage()?;
        let header_end = {
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, StagedWriter(&mut file));
            let (header_end, _) = write::write_package(&mut out, &header, &attachments, &mut open)?;
            out.flush()
                .map_err(|e| GatewayError::Internal(format!("writing edXML: {e}")))?;
            header_end
        };
        let Some(key) = key else {
            return Ok(RenderedEdxml::File(file));
        };
        let insertion = lienthong_edxml::sign_written(map_file(&file)?.bytes(), header_end, key)?;
        let mut signed = blobs.stage()?;
        splice(&file, &insertion, &mut signed)?;
        Ok(RenderedEdxml::File(signed))
    }

    fn edxml_organ_id(&self) -> String {
        if !self.config.edxml.organ_id.is_empty() {
            return self.config.edxml.organ_id.clone();
        }
        match self.federation() {
            Some(federation) => federation.gateway_id.to_string(),
            None => "lienthong".to_owned(),
        }
    }

    fn organization(&self, code: &OrgCode) -> Organization {
        Organization {
            code: code.to_string(),
            name: self.registry.get(code).map(|a| a.name).unwrap_or_default(),
        }
    }

    /// A header for a document that came as a gRPC envelope.
    fn header_from_record(&self, message: &crate::messages::MessageRecord) -> Element {
        let date = if message.document.promulgation_date.is_empty() {
            crate::clock::format_rfc3339(message.accepted_at)
                .get(..10)
                .unwrap_or_default()
                .to_owned()
        } else {
            message.document.promulgation_date.clone()
        };
        let sender = message.sender.to_string();
        let document_id = write::document_id(&sender, &date, &message.document);
        let earlier = message.document.refers_to.as_ref().map(|earlier| {
            self.message(&message.sender, earlier)
                .ok()
                .flatten()
                .map_or_else(|| earlier.to_string(), |m| self.document_id_of(&m))
        });
        write::header_from_envelope(&DocumentView {
            from: self.organization(&message.sender),
            to: message
                .recipients
                .iter()
                .map(|r| self.organization(&r.code))
                .collect(),
            document: &message.document,
            document_id,
            earlier_document_id: earlier,
            message_id: message.message_id.as_str(),
            accepted_at: message.accepted_at,
        })
    }

    /// The `DocumentId` edXML knows a message by: the one it came with, or
    /// the one made for it.
    fn document_id_of(&self, message: &crate::messages::MessageRecord) -> String {
        let kept = self
            .queue
            .edxml_of(&message.sender, &message.message_id)
            .ok()
            .flatten()
            .and_then(|kept| {
                lienthong_edxml::read(&kept, &KEPT, &mut lienthong_edxml::Discard).ok()
            })
            .map(|package| {
                package
                    .header
                    .text_at("MessageHeader/DocumentId")
                    .to_owned()
            });
        match kept {
            Some(id) if !id.is_empty() => id,
            _ => self
                .header_from_record(message)
                .text_at("MessageHeader/DocumentId")
                .to_owned(),
        }
    }

    fn status_header(
        &self,
        message: &crate::messages::MessageRecord,
        status: &crate::status::StatusReport,
    ) -> Result<Element, GatewayError> {
        let d = &message.document;
        let code = match (d.number.is_empty(), d.notation.is_empty()) {
            (false, false) => format!("{}/{}", d.number, d.notation),
            (false, true) => d.number.clone(),
            _ => d.notation.clone(),
        };
        Ok(write::status_header(&StatusView {
            sender: self.organization(&message.sender),
            code,
            promulgation_date: lienthong_edxml::time::edxml_date(&d.promulgation_date),
            document_id: self.document_id_of(message),
            reporter: self.organization(&status.reporter),
            status: status.code.edxml(),
            description: status.description.clone(),
            at: status.at,
            staff: status.staff.clone(),
        }))
    }
}

/// The header to keep for a document: the package as read, without the
/// base64 of its attachments (their names, types and descriptions kept).
fn annex_of(package: &Package) -> Result<Vec<u8>, GatewayError> {
    let attachments: Vec<OutAttachment> = package
        .attachments
        .iter()
        .map(|a| OutAttachment {
            content_id: a.content_id.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            content_type: a.content_type.clone(),
        })
        .collect();
    let mut out = Vec::new();
    write::write_package(&mut out, &package.header, &attachments, &mut |_| {
        Ok(Box::new(std::io::empty()) as Box<dyn std::io::Read>)
    })?;
    Ok(out)
}

/// A staged file mapped read-only.
fn map_file(staged: &StagedBlob) -> Result<lienthong_edxml::Mapped, GatewayError> {
    Ok(lienthong_edxml::Mapped::open(staged.path())?)
}

/// Writes `input` with `insertion` spliced in, into `out`.
fn splice(
    input: &StagedBlob,
    insertion: &Insertion,
    out: &mut StagedBlob,
) -> Result<(), GatewayError> {
    let mapped = map_file(input)?;
    let map = mapped.bytes();
    let at = insertion.at.min(map.len());
    out.write(&map[..at])?;
    out.write(insertion.element.as_bytes())?;
    out.write(&map[at..])?;
    Ok(())
}

/// Stored content as an `io::Read`, still checked against its hash.
struct CheckedReader(crate::store::BlobReader);

impl std::io::Read for CheckedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(std::io::Error::other)
    }
}

/// A staging file as an `io::Write`.
struct StagedWriter<'a>(&'a mut StagedBlob);

impl std::io::Write for StagedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .write(buf)
            .map(|()| buf.len())
            .map_err(|e: StoreError| std::io::Error::other(e.to_string()))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
