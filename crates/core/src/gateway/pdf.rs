//! Signatures inside PDF attachments (PAdES): verified on Send like
//! detached ones (their reports count under the same policies), verified on
//! request, and made with keys the gateway holds (SignPdf).

use std::sync::Arc;

use lienthong_pdf::{MappedPdf, PdfError, SignOptions, Signed};

use tokio_stream::Stream;

use super::{Gateway, GatewayError, blocking};
use crate::{
    envelope::EnvelopeError,
    pki::{self, CertificateFacts, Report, Role},
    registry::Agency,
    store::StagedBlob,
};

/// A PDF signed for a caller: the document as it came, then the update to
/// append to it. Held staging room is released when it is dropped.
pub struct SignedPdf {
    /// The document as received, staged on disk.
    pub input: StagedBlob,
    /// The revision to append: the new field and its signature.
    pub update: Vec<u8>,
    /// The field and the revision signed.
    pub signed: Signed,
    /// The certificate that signed.
    pub facts: CertificateFacts,
    _room: tokio::sync::OwnedSemaphorePermit,
}

impl Gateway {
    /// The reports of the signatures embedded in a PDF attachment. A PDF
    /// that cannot be read gets one FORMAT_FAILURE report when it shows a
    /// signature (a `/ByteRange`) that therefore cannot be checked; content
    /// with no signature to speak of gets none, whatever its media type
    /// says. Blocking.
    pub(super) fn verify_pdf_attachment(
        &self,
        name: &str,
        content: pki::Content<'_>,
        lookup: pki::SignerLookup<'_>,
    ) -> Vec<Report> {
        let limits = &self.config.pdf.limits;
        let check = |bytes: &[u8]| {
            if !lienthong_pdf::looks_like_pdf(bytes) {
                return Vec::new();
            }
            match lienthong_pdf::verify(bytes, &self.verifier, name, lookup, limits) {
                Ok(reports) => reports,
                Err(error) if lienthong_pdf::shows_a_signature(bytes) => {
                    vec![lienthong_pdf::unreadable(name, &error, self.verifier.now())]
                }
                Err(error) => {
                    tracing::debug!(attachment = name, %error, "a PDF attachment without readable structure; no embedded signature to check");
                    Vec::new()
                }
            }
        };
        match content {
            pki::Content::Bytes(bytes) => check(bytes),
            pki::Content::File(path) => match MappedPdf::open(path) {
                Ok(pdf) => check(pdf.bytes()),
                // An empty file holds no signature.
                Err(lienthong_pdf::PdfError::Unreadable(_)) => Vec::new(),
                Err(error) => vec![lienthong_pdf::unreadable(name, &error, self.verifier.now())],
            },
            pki::Content::Parts(_) => Vec::new(),
        }
    }

    /// Verifies the signatures embedded in a PDF (Signing.Verify without a
    /// CMS): one report per signature field, oldest first.
    pub async fn verify_pdf(
        self: &Arc<Self>,
        content: Vec<u8>,
        attachment: String,
    ) -> Result<Vec<Report>, GatewayError> {
        let this = self.clone();
        blocking(move || {
            let lookup = |fingerprint: &pki::Fingerprint| this.registry.signer_role(fingerprint);
            let reports = lienthong_pdf::verify(
                &content,
                &this.verifier,
                &attachment,
                &lookup,
                &this.config.pdf.limits,
            )?;
            if reports.is_empty() {
                return Err(GatewayError::Envelope(EnvelopeError::invalid(
                    "content",
                    "the PDF carries no embedded signature and no cms_der was given: nothing to verify",
                )));
            }
            Ok(reports)
        })
        .await
    }

    /// Signs a PDF the caller streams (`size` bytes in `chunks`) with the
    /// caller's key for `role`: a new signature field in an incremental
    /// update. The document is staged on disk; memory holds one chunk and
    /// the update.
    pub async fn sign_pdf<S>(
        self: &Arc<Self>,
        caller: &Agency,
        agency: &str,
        role: Role,
        size: u64,
        mut options: SignOptions,
        chunks: S,
    ) -> Result<SignedPdf, GatewayError>
    where
        S: Stream<Item = Result<Vec<u8>, GatewayError>> + Unpin + Send,
    {
        let key = self.own_key(caller, agency, role)?;
        let facts = key.certificate_facts()?;
        if let Some(appearance) = &options.appearance
            && appearance.png.len() as u64 > self.config.pdf.max_image_bytes
        {
            return Err(EnvelopeError::TooLarge {
                field: "options.appearance.png".to_owned(),
                size: appearance.png.len() as u64,
                limit: self.config.pdf.max_image_bytes,
            }
            .into());
        }
        let (staged, room) = self.stage_upload(size, chunks, "options.size").await?;
        options.signing_time = self.verifier.now() / 1000;
        let limits = self.config.pdf.limits;
        let (staged, update, signed) = blocking(move || {
            let outcome = MappedPdf::open(staged.path())
                .and_then(|pdf| lienthong_pdf::sign(pdf.bytes(), &key, &options, &limits));
            outcome.map(|(update, signed)| (staged, update, signed))
        })
        .await?;
        tracing::info!(agency = %caller.code, role = role.name(), field = %signed.field, "signed a PDF for a signing station");
        Ok(SignedPdf {
            input: staged,
            update,
            signed,
            facts,
            _room: room,
        })
    }
}

impl From<PdfError> for GatewayError {
    fn from(error: PdfError) -> Self {
        match error {
            PdfError::Signing(error) => GatewayError::Pki(error),
            PdfError::Io(reason) => GatewayError::Internal(reason),
            other => GatewayError::Pdf(other),
        }
    }
}
