//! edXML (QCVN 102:2016 and its 2022 amendment), the message format every
//! Vietnamese document-management system speaks, for lienthong.
//!
//! - [`read`]: one pass over a package (mapped, so nothing big is copied):
//!   the header into an element tree kept whole (fields the gateway's
//!   envelope lacks are carried), attachments' base64 decoded in pieces to
//!   a sink, the enveloped signature located. No DTD is accepted, so entity
//!   expansion and external entities cannot happen.
//! - [`verify_signature`]: the header's XML signature (C14N 1.0 or
//!   exclusive, enveloped, `Reference URI=""` over the whole package) through
//!   the same ETSI-style checks as CMS signatures. Canonicalization is our
//!   own streaming one ([`c14n`]), so a 50 MB package is digested in
//!   constant memory.
//! - [`map`]: header ↔ envelope, status message ↔ status report.
//! - [`write`]: packages as the national hub reads them (`edXML:` on every
//!   element), and [`sign`] to add an enveloped signature to one.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod c14n;
mod dsig;
pub mod map;
mod parse;
pub mod time;
mod tree;
pub mod write;
mod xml;

use lienthong_pki::{Report, SignerLookup, Verifier};

pub use dsig::{Checked, Insertion};
pub use parse::{AttachmentInfo, AttachmentSink, Discard, Kind, Package, SignatureForm};
pub use tree::Element;
pub use xml::{NS_DSIG, NS_EDXML};

/// Why an edXML package was refused. `element` names where, as a path of
/// element names (`edXMLHeader/MessageHeader/To[2]/OrganId`).
#[derive(Debug, thiserror::Error)]
pub enum EdxmlError {
    /// Malformed, in the wrong namespace, missing a required field, or
    /// otherwise not an edXML package the gateway accepts.
    #[error("{element}: {reason}")]
    Invalid {
        /// Where.
        element: String,
        /// What is wrong.
        reason: String,
    },
    /// Over a configured bound.
    #[error("{element}: over the limit of {limit} bytes")]
    TooLarge {
        /// Where.
        element: String,
        /// The bound.
        limit: u64,
    },
    /// Reading or writing a file.
    #[error("{0}")]
    Io(String),
    /// A fault of ours, not of the package.
    #[error("internal: {0}")]
    Internal(String),
    /// Signing failed.
    #[error("signing: {0}")]
    Signing(#[from] lienthong_pki::PkiError),
}

impl EdxmlError {
    /// A refusal naming `element`.
    pub fn invalid(element: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            element: element.into(),
            reason: reason.into(),
        }
    }
}

/// Bounds on what a package may make the gateway do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of header text and names (everything but attachment content).
    pub max_header_bytes: usize,
    /// Element nesting.
    pub max_depth: usize,
    /// Elements in the whole package.
    pub max_elements: usize,
    /// Attachments in one package.
    pub max_attachments: usize,
    /// Decoded attachment bytes in one package.
    pub max_attachment_bytes: u64,
    /// Bytes of junk tolerated before the XML starts.
    pub max_junk: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 1024 * 1024,
            max_depth: 32,
            max_elements: 10_000,
            max_attachments: 32,
            max_attachment_bytes: 4 * 1024 * 1024 * 1024,
            max_junk: 1024,
        }
    }
}

/// Reads a package; attachment content goes to `sink`.
pub fn read(
    bytes: &[u8],
    limits: &Limits,
    sink: &mut dyn AttachmentSink,
) -> Result<Package, EdxmlError> {
    parse::parse(bytes, limits, sink)
}

/// What an edXML signature's report calls what it covers.
pub const SIGNATURE_LABEL: &str = "edXMLHeader/Signature";

/// Verifies the package's enveloped signature: `None` when it has none. A
/// signature that cannot be taken apart gets a FORMAT_FAILURE report naming
/// the element. CPU-bound (it canonicalizes the whole package).
pub fn verify_signature(
    bytes: &[u8],
    package: &Package,
    verifier: &Verifier,
    lookup: SignerLookup<'_>,
    allow_sha1: bool,
) -> Option<Report> {
    let found = package.signature.as_ref()?;
    let doc = &bytes[package.junk..];
    Some(match dsig::check(doc, found) {
        Ok(checked) => {
            verifier.verify_xml(&checked.as_pki(allow_sha1, None), SIGNATURE_LABEL, lookup)
        }
        Err(error) => lienthong_pki::format_failure(
            SIGNATURE_LABEL,
            format!("the XML signature cannot be read: {error}"),
            verifier.now(),
        ),
    })
}

/// Signs a package that has no signature yet with `key`: answers the
/// element to insert and where (byte offset in `bytes`).
pub fn sign(
    bytes: &[u8],
    package: &Package,
    key: &lienthong_pki::SigningKey,
) -> Result<Insertion, EdxmlError> {
    if package.signature.is_some() {
        return Err(EdxmlError::invalid(
            "edXMLHeader/Signature",
            "the package is signed already; its signature would no longer verify",
        ));
    }
    let mut insertion = sign_written(&bytes[package.junk..], package.header_end, key)?;
    insertion.at += package.junk;
    Ok(insertion)
}

/// Signs a package without a signature whose `</edXMLHeader>` starts at
/// `header_end` (what [`write::write_package`] answers for the package it
/// wrote), with no reading back: the element to insert and where.
pub fn sign_written(
    doc: &[u8],
    header_end: u64,
    key: &lienthong_pki::SigningKey,
) -> Result<Insertion, EdxmlError> {
    let certificates = lienthong_pki::certificate_chain_der(key)?;
    let method = lienthong_pki::xml_signature_method(key)?;
    dsig::sign(
        doc,
        usize::try_from(header_end).unwrap_or(usize::MAX),
        &certificates,
        method,
        &mut |signed_info| {
            lienthong_pki::sign_xml(key, signed_info)
                .map(|(_, value)| value)
                .map_err(EdxmlError::from)
        },
    )
}

/// A package file mapped read-only: read without copying it onto the heap
/// (the base64 of a 50 MB attachment stays in the page cache).
pub struct Mapped(memmap2::Mmap);

impl Mapped {
    /// Maps the file at `path`. The file must not change while mapped:
    /// staged uploads and the CLI's input never do.
    pub fn open(path: &std::path::Path) -> Result<Self, EdxmlError> {
        let file = std::fs::File::open(path)
            .map_err(|e| EdxmlError::Io(format!("opening {}: {e}", path.display())))?;
        if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            return Err(EdxmlError::invalid("document", "is empty"));
        }
        #[allow(unsafe_code)]
        // SAFETY: the map is read-only and the callers' files are never
        // written once complete (staged uploads, rendered deliveries, the
        // CLI's input); a concurrent truncation would be a bug there.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| EdxmlError::Io(format!("mapping {}: {e}", path.display())))?;
        Ok(Self(map))
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}
