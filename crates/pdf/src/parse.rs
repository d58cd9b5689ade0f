//! Reading a PDF for signature work: its revisions (each incremental
//! update), each loaded as the document it was, and its signature fields.
//!
//! lopdf parses the objects; where a revision ends and what a byte range
//! covers are found here, on the bytes. Streams are replaced by the SHA-256
//! of their raw bytes as they load, so that comparing revisions costs no
//! memory for page content or images.

use lopdf::{Dictionary, Document, LoadOptions, Object, ObjectId};
use sha2::{Digest, Sha256};

use crate::{Limits, PdfError};

/// A key no PDF can carry (names cannot hold NUL): marks a stream whose
/// content was replaced by its digest.
const DIGESTED: &[u8] = b"\0sha256";

/// Replaces a stream's content by the SHA-256 of its raw bytes, except the
/// streams lopdf itself still needs (object and cross-reference streams)
/// and those whose length it fills in later (an indirect `/Length`).
fn digest_stream(id: ObjectId, object: &mut Object) -> Option<(ObjectId, Object)> {
    // lopdf keeps the object it passed for a top-level object and the one
    // returned for a member of an object stream (never a stream itself).
    match object {
        Object::Stream(stream) => {
            if !stream.dict.has_type(b"ObjStm")
                && !stream.dict.has_type(b"XRef")
                && !stream.content.is_empty()
            {
                stream.content = Sha256::digest(&stream.content).to_vec();
                stream.dict.set(DIGESTED, true);
            }
            Some((id, Object::Null))
        }
        other => Some((id, other.clone())),
    }
}

/// Loads the PDF `bytes` hold (one revision: the bytes up to its end),
/// every stream digested.
pub(crate) fn load(bytes: &[u8]) -> Result<Document, PdfError> {
    let options = LoadOptions {
        filter: Some(digest_stream),
        strict: true,
        ..LoadOptions::default()
    };
    let mut document = Document::load_mem_with_options(bytes, options)
        .map_err(|e| PdfError::Unreadable(e.to_string()))?;
    if document.is_encrypted() {
        return Err(PdfError::Unreadable(
            "the PDF is encrypted; signed official documents must not be".to_owned(),
        ));
    }
    // Streams whose length was resolved after loading: digest them now, so
    // that every stream compares by digest.
    for object in document.objects.values_mut() {
        if let Object::Stream(stream) = object
            && !stream.dict.has(DIGESTED)
            && !stream.dict.has_type(b"ObjStm")
            && !stream.dict.has_type(b"XRef")
        {
            stream.content = Sha256::digest(&stream.content).to_vec();
            stream.dict.set(DIGESTED, true);
        }
    }
    Ok(document)
}

/// One revision: the document as it was when this update was written.
pub(crate) struct Revision {
    /// Where it ends, after the `%%EOF` and its end of line.
    pub end: usize,
    /// Right after its `%%EOF`: a byte range may end here too (some
    /// writers sign without the end of line).
    pub bare_end: usize,
    /// The document as of this revision.
    pub document: Document,
}

/// Every revision of the PDF, oldest first: each `%%EOF` whose prefix loads
/// as a PDF ends one; the last one is the whole file.
pub(crate) fn revisions(bytes: &[u8], limits: &Limits) -> Result<Vec<Revision>, PdfError> {
    let mut ends: Vec<(usize, usize)> = Vec::new();
    let mut from = 0;
    while let Some(at) = find(&bytes[from..], b"%%EOF") {
        let bare = from + at + 5;
        let mut end = bare;
        if bytes.get(end) == Some(&b'\r') {
            end += 1;
        }
        if bytes.get(end) == Some(&b'\n') {
            end += 1;
        }
        // A revision ends with `startxref`, the offset, then `%%EOF`; a
        // `%%EOF` anywhere else (inside a stream) ends nothing.
        if ends_a_revision(&bytes[..bare - 5]) {
            ends.push((end, bare));
        }
        if ends.len() > limits.max_revisions {
            return Err(PdfError::TooManyRevisions(limits.max_revisions));
        }
        from = bare;
    }
    let Some(&(last_end, _)) = ends.last() else {
        return Err(PdfError::Unreadable(
            "no %%EOF: not a complete PDF".to_owned(),
        ));
    };
    let trailing_blank = bytes[last_end..]
        .iter()
        .all(|b| b.is_ascii_whitespace() || *b == 0);
    if !trailing_blank {
        // Bytes after the last %%EOF: the whole file is one more revision,
        // whatever it holds (it is what a reader may see).
        ends.push((bytes.len(), bytes.len()));
    } else if let Some(last) = ends.last_mut() {
        last.0 = bytes.len();
    }
    let mut out = Vec::new();
    for (end, bare_end) in ends {
        let whole = end == bytes.len();
        match load(&bytes[..end]) {
            Ok(document) => out.push(Revision {
                end,
                bare_end,
                document,
            }),
            // A %%EOF inside a stream or a linearized file's first section:
            // not a revision.
            Err(_) if !whole => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(out)
}

/// Whether `before` (the bytes before a `%%EOF`) ends with `startxref`,
/// white space and a number, as a revision's end does.
fn ends_a_revision(before: &[u8]) -> bool {
    let trimmed = before.trim_ascii_end();
    let digits = trimmed
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    digits > 0
        && trimmed[..trimmed.len() - digits]
            .trim_ascii_end()
            .ends_with(b"startxref")
}

/// The first position of `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A signature field and the signature value it holds.
pub(crate) struct SignatureField {
    /// Its full name, parts joined by dots.
    pub name: String,
    /// The signature dictionary `/V` names, when it is an indirect object.
    pub value: Option<ObjectId>,
    /// Whether `/V` is there but written inline (it cannot then be located
    /// in the file, so it cannot be checked).
    pub inline_value: bool,
}

/// Follows a reference (and chains of them, boundedly).
pub(crate) fn resolve<'a>(document: &'a Document, object: &'a Object) -> &'a Object {
    let mut object = object;
    for _ in 0..8 {
        match object {
            Object::Reference(id) => match document.objects.get(id) {
                Some(next) => object = next,
                None => return &Object::Null,
            },
            _ => return object,
        }
    }
    &Object::Null
}

/// The dictionary an object is or names (a stream's dictionary too).
pub(crate) fn dict<'a>(document: &'a Document, object: &'a Object) -> Option<&'a Dictionary> {
    match resolve(document, object) {
        Object::Dictionary(dict) => Some(dict),
        Object::Stream(stream) => Some(&stream.dict),
        _ => None,
    }
}

/// A name-valued entry, as text.
pub(crate) fn name<'a>(
    document: &'a Document,
    dict: &'a Dictionary,
    key: &[u8],
) -> Option<&'a [u8]> {
    dict.get(key)
        .ok()
        .map(|o| resolve(document, o))
        .and_then(|o| o.as_name().ok())
}

/// A text string entry (`/T`, `/Reason`), decoded.
pub(crate) fn text(document: &Document, dict: &Dictionary, key: &[u8]) -> Option<String> {
    match dict.get(key).ok().map(|o| resolve(document, o)) {
        Some(object @ Object::String(..)) => lopdf::decode_text_string(object).ok(),
        _ => None,
    }
}

/// The document catalog.
pub(crate) fn catalog(document: &Document) -> Option<(ObjectId, &Dictionary)> {
    let id = document.trailer.get(b"Root").ok()?.as_reference().ok()?;
    Some((id, document.objects.get(&id)?.as_dict().ok()?))
}

/// Every signature field of the document's form, with the value each holds.
pub(crate) fn signature_fields(
    document: &Document,
    limits: &Limits,
) -> Result<Vec<SignatureField>, PdfError> {
    let mut out = Vec::new();
    let Some((_, catalog)) = catalog(document) else {
        return Err(PdfError::Unreadable(
            "the trailer names no catalog".to_owned(),
        ));
    };
    let Some(form) = catalog
        .get(b"AcroForm")
        .ok()
        .and_then(|f| dict(document, f))
    else {
        return Ok(out);
    };
    let Some(Object::Array(fields)) = form.get(b"Fields").ok().map(|f| resolve(document, f)) else {
        return Ok(out);
    };
    // (field, its name so far, inherited /FT, depth)
    let mut stack: Vec<(&Object, String, Option<&[u8]>, usize)> = fields
        .iter()
        .rev()
        .map(|f| (f, String::new(), None, 0))
        .collect();
    let mut visited = 0usize;
    while let Some((field, parent_name, inherited, depth)) = stack.pop() {
        visited += 1;
        if visited > limits.max_fields || depth > 32 {
            return Err(PdfError::TooManyFields(limits.max_fields));
        }
        let Some(node) = dict(document, field) else {
            continue;
        };
        let own = text(document, node, b"T");
        let full = match (&own, parent_name.is_empty()) {
            (Some(own), true) => own.clone(),
            (Some(own), false) => format!("{parent_name}.{own}"),
            (None, _) => parent_name.clone(),
        };
        let kind = name(document, node, b"FT").or(inherited);
        if let Ok(Object::Array(kids)) = node.get(b"Kids").map(|k| resolve(document, k))
            && kids
                .iter()
                .any(|kid| dict(document, kid).is_some_and(|d| d.has(b"T") || d.has(b"FT")))
        {
            for kid in kids.iter().rev() {
                stack.push((kid, full.clone(), kind, depth + 1));
            }
            continue;
        }
        if kind != Some(b"Sig".as_slice()) {
            continue;
        }
        let (value, inline_value) = match node.get(b"V") {
            Ok(Object::Reference(id)) => (Some(*id), false),
            Ok(Object::Null) | Err(_) => (None, false),
            Ok(_) => (None, true),
        };
        out.push(SignatureField {
            name: full,
            value,
            inline_value,
        });
    }
    Ok(out)
}

/// How many bytes come before the `%PDF-` header (readers skip up to
/// 1 KiB of them, and lopdf counts offsets from the header).
pub(crate) fn header_offset(bytes: &[u8]) -> usize {
    find(&bytes[..bytes.len().min(1024 + 5)], b"%PDF-").unwrap_or(0)
}

/// Where an uncompressed object starts, counted from the `%PDF-` header,
/// per the newest cross-reference section.
pub(crate) fn offset_of(document: &Document, id: ObjectId) -> Option<usize> {
    match document.reference_table.get(id.0)? {
        lopdf::xref::XrefEntry::Normal { offset, generation } if *generation == id.1 => {
            usize::try_from(*offset).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_startxref_before_eof_ends_a_revision() {
        assert!(ends_a_revision(b"trailer\n<< >>\nstartxref\n1234\n"));
        assert!(ends_a_revision(b"startxref\r\n0\r\n"));
        assert!(!ends_a_revision(b"stream\nbinary bytes "));
        assert!(!ends_a_revision(b"startxref\n"));
        assert!(!ends_a_revision(b"xstartxref 12 junk"));
    }

    #[test]
    fn a_fake_eof_inside_a_stream_is_no_revision() {
        // Revision 1: a catalog and an empty page tree.
        let mut file = b"%PDF-1.7\n".to_vec();
        let mut offsets = Vec::new();
        for (number, body) in [
            (1, "<< /Type /Catalog /Pages 2 0 R >>"),
            (2, "<< /Type /Pages /Kids [] /Count 0 >>"),
        ] {
            offsets.push(file.len());
            file.extend_from_slice(format!("{number} 0 obj\n{body}\nendobj\n").as_bytes());
        }
        let first = file.len();
        file.extend_from_slice(
            format!(
                "xref\n0 3\n0000000000 65535 f\r\n{:010} 00000 n\r\n{:010} 00000 n\r\ntrailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n{first}\n%%EOF\n",
                offsets[0], offsets[1]
            )
            .as_bytes(),
        );
        // Revision 2: a stream whose bytes hold a %%EOF, which ends no
        // revision (no startxref before it).
        let stream = file.len();
        file.extend_from_slice(
            b"3 0 obj\n<< /Length 11 >>\nstream\n12\n%%EOF\nab\nendstream\nendobj\n",
        );
        let second = file.len();
        file.extend_from_slice(
            format!(
                "xref\n3 1\n{stream:010} 00000 n\r\ntrailer\n<< /Size 4 /Root 1 0 R /Prev {first} >>\nstartxref\n{second}\n%%EOF\n"
            )
            .as_bytes(),
        );
        let revisions = revisions(&file, &Limits::default()).expect("reads");
        let ends: Vec<usize> = revisions.iter().map(|r| r.end).collect();
        assert_eq!(
            ends,
            [stream, file.len()],
            "the %%EOF in the stream is no revision"
        );
    }
}
