//! Signatures inside PDFs (PAdES, as NĐ 30/2020 uses them: the head signs,
//! then the organization's seal is applied over it, each an incremental
//! update).
//!
//! - [`verify`]: every signature field of a PDF, each with the ETSI-style
//!   report detached signatures get, plus its field, the revision it covers
//!   and what later revisions changed (only signatures, their appearances,
//!   DSS and document time-stamps may follow a signature).
//! - [`sign`]: appends a revision with a new signature field, an optional
//!   visible appearance from a PNG, and a CAdES detached CMS in `/Contents`.
//!
//! lopdf parses objects; byte ranges, revisions and the update written are
//! checked and produced here, on the bytes.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod changes;
mod parse;
mod sign;
mod verify;

use std::path::Path;

pub use sign::{Appearance, SignOptions, Signed, sign};
pub use verify::verify;

/// Bounds on what a PDF may make the gateway do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most revisions (incremental updates) a PDF may have.
    pub max_revisions: usize,
    /// Most form fields visited when looking for signature fields.
    pub max_fields: usize,
    /// Bytes reserved in `/Contents` for a signature made here.
    pub signature_reserve: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_revisions: 64,
            max_fields: 10_000,
            signature_reserve: 32 * 1024,
        }
    }
}

/// Why a PDF could not be read or signed.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// The bytes are not a PDF the gateway can read.
    #[error("not a readable PDF: {0}")]
    Unreadable(String),
    /// More incremental updates than allowed.
    #[error("the PDF has more than {0} revisions")]
    TooManyRevisions(usize),
    /// More form fields than allowed.
    #[error("the PDF's form has more than {0} fields (or nests them too deep)")]
    TooManyFields(usize),
    /// A request that cannot be carried out on this PDF.
    #[error("{0}")]
    Refused(String),
    /// The signature image.
    #[error("the signature image: {0}")]
    Image(String),
    /// Reading or writing a file.
    #[error("{0}")]
    Io(String),
    /// Making the signature.
    #[error("signing: {0}")]
    Signing(#[from] lienthong_pki::PkiError),
}

/// A PDF file mapped read-only: verified without copying it onto the heap.
pub struct MappedPdf(memmap2::Mmap);

impl MappedPdf {
    /// Maps the file at `path`. The file must not change while mapped:
    /// the gateway's content files never do (they are named by their hash).
    pub fn open(path: &Path) -> Result<Self, PdfError> {
        let file = std::fs::File::open(path)
            .map_err(|e| PdfError::Io(format!("opening {}: {e}", path.display())))?;
        // An empty file cannot be mapped; it is not a PDF either.
        if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            return Err(PdfError::Unreadable("the file is empty".to_owned()));
        }
        #[allow(unsafe_code)]
        // SAFETY: the map is read-only and the callers' files are never
        // written once complete (content-addressed blobs, staged uploads,
        // the CLI's input); a concurrent truncation would be a bug there.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| PdfError::Io(format!("mapping {}: {e}", path.display())))?;
        Ok(Self(map))
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Whether `bytes` start like a PDF (after at most 1 KiB of junk, as
/// readers allow).
pub fn looks_like_pdf(bytes: &[u8]) -> bool {
    parse::find(&bytes[..bytes.len().min(1024 + 5)], b"%PDF-").is_some()
}

/// The report for a PDF attachment whose signatures cannot be looked at:
/// FORMAT_FAILURE, naming why.
pub fn unreadable(
    attachment: &str,
    error: &PdfError,
    now: lienthong_domain::clock::UnixMillis,
) -> lienthong_domain::report::Report {
    use lienthong_domain::report::{Check, Report, SubIndication};
    let message = format!(
        "{attachment:?} is declared application/pdf, but its signatures cannot be checked: {error}"
    );
    Report {
        attachment: attachment.to_owned(),
        indication: SubIndication::FormatFailure.indication(),
        sub_indication: Some(SubIndication::FormatFailure),
        message: message.clone(),
        signer: None,
        checks: vec![Check {
            name: "format".to_owned(),
            passed: false,
            detail: message,
        }],
        verified_at: now,
        embedded: None,
    }
}

/// Whether the bytes show a signature dictionary (a `/ByteRange`), even
/// if the PDF cannot be read: then its signature cannot be checked, which
/// must be said rather than passed over.
pub fn shows_a_signature(bytes: &[u8]) -> bool {
    parse::find(bytes, b"/ByteRange").is_some()
}

/// Whether a media type is PDF's.
pub fn is_pdf_media_type(media_type: &str) -> bool {
    media_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/pdf"))
}
