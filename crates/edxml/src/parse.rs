//! Reading an edXML package in one pass over its (mapped) bytes: the header
//! and manifest into element trees, each attachment's base64 decoded in
//! pieces into a sink, the signature's position noted for verification.

use base64::Engine as _;
use quick_xml::events::Event;
use unicode_normalization::{UnicodeNormalization, is_nfc_quick};

use crate::{
    EdxmlError, Limits,
    tree::Element,
    xml::{self, NS_DSIG, NS_EDXML, Namespaces},
};

/// Where an attachment's decoded bytes go, by attachment index.
pub trait AttachmentSink {
    /// The next decoded bytes of attachment `index` (0-based, in document
    /// order); attachments come one after the other.
    fn write(&mut self, index: usize, bytes: &[u8]) -> Result<(), EdxmlError>;
}

/// A sink that drops the bytes (verification of a file already stored).
pub struct Discard;

impl AttachmentSink for Discard {
    fn write(&mut self, _index: usize, _bytes: &[u8]) -> Result<(), EdxmlError> {
        Ok(())
    }
}

/// Which namespace the enveloped signature was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureForm {
    /// `Signature` in the XML-DSig namespace.
    Dsig,
    /// `Signature` in the edXML default namespace, as the VPCP sample has it.
    EdxmlNamespace,
}

/// The enveloped signature as found: its tree and where it sits.
#[derive(Debug, Clone)]
pub struct FoundSignature {
    /// The `Signature` element.
    pub element: Element,
    /// Its namespace.
    pub form: SignatureForm,
    /// Byte offset of `<Signature` in the document.
    pub offset: u64,
    /// Byte offset of `<SignedInfo`.
    pub signed_info: Option<u64>,
}

/// What the package is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A document (`MessageHeader`).
    Document,
    /// A status message (`Status`).
    Status,
}

/// One attachment's description; its bytes went to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// `ContentId`, e.g. `cid:1`.
    pub content_id: String,
    /// `AttachmentName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `ContentType`.
    pub content_type: String,
    /// Decoded size.
    pub size: u64,
}

/// A package read.
#[derive(Debug, Clone)]
pub struct Package {
    /// Document or status.
    pub kind: Kind,
    /// `edXMLHeader` without its signature.
    pub header: Element,
    /// `edXMLManifest`, when the body has one.
    pub manifest: Option<Element>,
    /// The attachments, in order.
    pub attachments: Vec<AttachmentInfo>,
    /// The enveloped signature.
    pub signature: Option<FoundSignature>,
    /// How many bytes of junk preceded the XML.
    pub junk: usize,
    /// Whether every edXML element carried a prefix (as the hub requires).
    pub prefixed: bool,
    /// Byte offset (after the junk) of `</edXMLHeader>`: where a signature goes.
    pub header_end: u64,
}

/// The element path, for error messages: `edXMLHeader/MessageHeader/To[2]`.
fn path_of(stack: &[Element]) -> String {
    let mut parts = Vec::new();
    for (depth, element) in stack.iter().enumerate().skip(1) {
        let siblings = stack[depth - 1]
            .children
            .iter()
            .filter(|c| c.name == element.name)
            .count();
        if siblings > 0 {
            parts.push(format!("{}[{}]", element.name, siblings + 1));
        } else {
            parts.push(element.name.clone());
        }
    }
    if parts.is_empty() {
        stack
            .first()
            .map_or_else(|| "document".to_owned(), |e| e.name.clone())
    } else {
        parts.join("/")
    }
}

struct Base64Stream {
    pending: Vec<u8>,
    padded: bool,
    decoded: u64,
}

const BASE64_RUN: usize = 64 * 1024;

impl Base64Stream {
    fn new() -> Self {
        Self {
            pending: Vec::with_capacity(BASE64_RUN + 4),
            padded: false,
            decoded: 0,
        }
    }

    fn push(
        &mut self,
        text: &[u8],
        index: usize,
        sink: &mut dyn AttachmentSink,
        limit: u64,
        at: &str,
    ) -> Result<(), EdxmlError> {
        for &byte in text {
            match byte {
                b' ' | b'\t' | b'\r' | b'\n' => continue,
                b'=' => self.padded = true,
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' if !self.padded => {}
                _ => {
                    return Err(EdxmlError::invalid(
                        at,
                        format!(
                            "the base64 is broken: {} after {} decoded bytes",
                            if byte == b'=' || self.padded {
                                "data after the padding".to_owned()
                            } else {
                                format!("the byte {:?}", char::from(byte))
                            },
                            self.decoded
                        ),
                    ));
                }
            }
            self.pending.push(byte);
            if self.pending.len() >= BASE64_RUN && !self.padded {
                self.flush(false, index, sink, limit, at)?;
            }
        }
        Ok(())
    }

    fn flush(
        &mut self,
        last: bool,
        index: usize,
        sink: &mut dyn AttachmentSink,
        limit: u64,
        at: &str,
    ) -> Result<(), EdxmlError> {
        let whole = if last {
            self.pending.len()
        } else {
            self.pending.len() / 4 * 4
        };
        if last && whole % 4 != 0 {
            return Err(EdxmlError::invalid(
                at,
                format!(
                    "the base64 is broken: it ends in the middle of a group (after {} decoded bytes)",
                    self.decoded
                ),
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&self.pending[..whole])
            .map_err(|e| EdxmlError::invalid(at, format!("the base64 is broken: {e}")))?;
        self.decoded += decoded.len() as u64;
        if self.decoded > limit {
            return Err(EdxmlError::TooLarge {
                element: at.to_owned(),
                limit,
            });
        }
        sink.write(index, &decoded)?;
        self.pending.drain(..whole);
        Ok(())
    }
}

fn text_of(raw: &[u8], at: &str) -> Result<String, EdxmlError> {
    let text =
        std::str::from_utf8(raw).map_err(|_| EdxmlError::invalid(at, "its text is not UTF-8"))?;
    Ok(text.replace("\r\n", "\n").replace('\r', "\n"))
}

fn nfc(text: String) -> String {
    if is_nfc_quick(text.chars()) == unicode_normalization::IsNormalized::Yes {
        text
    } else {
        text.nfc().collect()
    }
}

/// Reads `bytes` (an edXML package, possibly with junk before it) within
/// `limits`; attachment content goes to `sink`.
pub fn parse(
    bytes: &[u8],
    limits: &Limits,
    sink: &mut dyn AttachmentSink,
) -> Result<Package, EdxmlError> {
    let junk = xml::document_start(bytes, limits.max_junk)?;
    let doc = &bytes[junk..];
    let mut reader = xml::reader(doc);
    let mut namespaces = Namespaces::default();
    // The open elements; the last is the innermost.
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut weight = 0usize;
    let mut elements = 0usize;
    let mut prefixed = true;
    let mut signature: Option<(SignatureForm, u64, Option<u64>, usize)> = None;
    let mut found_signature: Option<FoundSignature> = None;
    let mut attachments = 0usize;
    let mut encoded_seen = 0usize;
    let mut encoded_in_this = false;
    let mut base64: Option<Base64Stream> = None;
    let mut decoded_total = 0u64;
    let mut header_end = 0u64;
    loop {
        let offset = reader.buffer_position();
        let event = xml::next(&mut reader).map_err(|error| match error {
            // Name where the tokenizer stopped.
            EdxmlError::Invalid { element, reason }
                if element == "document" && !stack.is_empty() =>
            {
                EdxmlError::invalid(path_of(&stack), reason)
            }
            other => other,
        })?;
        match event {
            Event::Decl(declaration) => {
                if let Some(Ok(encoding)) = declaration.encoding()
                    && !encoding.eq_ignore_ascii_case(b"utf-8")
                {
                    return Err(EdxmlError::invalid(
                        "xml declaration",
                        format!(
                            "encoding {:?}: only UTF-8 edXML is accepted",
                            String::from_utf8_lossy(&encoding)
                        ),
                    ));
                }
            }
            Event::Start(start) => {
                let tag = xml::tag(&start)?;
                namespaces.push(&tag.declarations);
                if namespaces.depth() > limits.max_depth {
                    return Err(EdxmlError::invalid(
                        path_of(&stack),
                        format!("elements nest deeper than {}", limits.max_depth),
                    ));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(EdxmlError::invalid(
                        path_of(&stack),
                        format!("more than {} elements", limits.max_elements),
                    ));
                }
                let namespace = namespaces.element_namespace(&tag)?;
                let in_signature = signature.is_some();
                if !in_signature && tag.local == "Signature" && stack.len() >= 2 {
                    let form = match namespace.as_str() {
                        NS_DSIG => SignatureForm::Dsig,
                        NS_EDXML => SignatureForm::EdxmlNamespace,
                        other => {
                            return Err(EdxmlError::invalid(
                                format!("{}/Signature", path_of(&stack)),
                                format!(
                                    "is in the namespace {other:?}; XML-DSig's or edXML's is expected"
                                ),
                            ));
                        }
                    };
                    if found_signature.is_some() {
                        return Err(EdxmlError::invalid(
                            format!("{}/Signature", path_of(&stack)),
                            "a second enveloped signature (one is accepted)",
                        ));
                    }
                    signature = Some((form, offset, None, namespaces.depth()));
                } else if let Some((form, _, signed_info, _)) = &mut signature {
                    let expected = match form {
                        SignatureForm::Dsig => NS_DSIG,
                        SignatureForm::EdxmlNamespace => NS_EDXML,
                    };
                    // InclusiveNamespaces lives in the exc-c14n namespace.
                    if namespace != expected
                        && namespace != "http://www.w3.org/2001/10/xml-exc-c14n#"
                    {
                        return Err(EdxmlError::invalid(
                            format!("{}/{}", path_of(&stack), tag.local),
                            format!("is in the namespace {namespace:?}, not the signature's"),
                        ));
                    }
                    if tag.local == "SignedInfo" && signed_info.is_none() {
                        *signed_info = Some(offset);
                    }
                } else if namespace != NS_EDXML {
                    return Err(EdxmlError::invalid(
                        if stack.is_empty() {
                            tag.local.clone()
                        } else {
                            format!("{}/{}", path_of(&stack), tag.local)
                        },
                        format!(
                            "is in the namespace {namespace:?}; edXML's is {NS_EDXML:?} (QCVN 102:2016)"
                        ),
                    ));
                } else if tag.prefix.is_empty() {
                    prefixed = false;
                }
                // Attachments are only where the layouts put them; an
                // AttachmentEncoded elsewhere is plain (bounded) header text,
                // so decoded content and listed attachments always match.
                let names: Vec<&str> = stack.iter().map(|e| e.name.as_str()).collect();
                let container_at = |names: &[&str]| {
                    matches!(
                        names,
                        ["edXMLEnvelope"] | ["edXML"] | ["edXML", "edXMLEnvelope"]
                    )
                };
                if tag.local == "AttachmentEncoded" && container_at(&names) {
                    encoded_seen += 1;
                    if encoded_seen > 1 {
                        return Err(EdxmlError::invalid(
                            "AttachmentEncoded",
                            "appears twice; one AttachmentEncoded holds every attachment",
                        ));
                    }
                }
                let in_encoded = |names: &[&str]| {
                    names.split_last().is_some_and(|(last, before)| {
                        *last == "AttachmentEncoded" && container_at(before)
                    })
                };
                if tag.local == "Attachment" && in_encoded(&names) {
                    attachments += 1;
                    if attachments > limits.max_attachments {
                        return Err(EdxmlError::invalid(
                            "AttachmentEncoded",
                            format!("more than {} attachments", limits.max_attachments),
                        ));
                    }
                    encoded_in_this = false;
                }
                if tag.local == "ContentTransferEncoded"
                    && names
                        .split_last()
                        .is_some_and(|(last, before)| *last == "Attachment" && in_encoded(before))
                {
                    if encoded_in_this {
                        return Err(EdxmlError::invalid(
                            format!("{}/ContentTransferEncoded", path_of(&stack)),
                            "appears twice in one attachment",
                        ));
                    }
                    encoded_in_this = true;
                    base64 = Some(Base64Stream::new());
                }
                let mut element = Element::new(&tag.local, Vec::new());
                for (prefix, local, value) in tag.attributes {
                    if prefix.is_empty() {
                        weight += local.len() + value.len();
                        element.attributes.push((local, nfc(value)));
                    }
                }
                weight += element.name.len();
                stack.push(element);
            }
            Event::End(_) => {
                let depth = namespaces.depth();
                namespaces.pop();
                let at = path_of(&stack);
                if stack.last().is_some_and(|e| e.name == "edXMLHeader") && signature.is_none() {
                    header_end = offset;
                }
                let Some(mut element) = stack.pop() else {
                    return Err(EdxmlError::Internal("an end without a start".to_owned()));
                };
                if let Some(mut stream) =
                    base64.take_if(|_| element.name == "ContentTransferEncoded")
                {
                    let index = attachments - 1;
                    let limit = limits.max_attachment_bytes.saturating_sub(decoded_total);
                    stream.flush(true, index, sink, limit, &at)?;
                    decoded_total += stream.decoded;
                    element.text = stream.decoded.to_string();
                    element
                        .attributes
                        .push(("lienthong-size".to_owned(), element.text.clone()));
                    element.text.clear();
                } else if !element.children.is_empty() {
                    element.text.clear();
                } else {
                    element.text = nfc(std::mem::take(&mut element.text));
                }
                if let Some((form, offset, signed_info, at_depth)) = signature
                    && at_depth == depth
                {
                    signature = None;
                    found_signature = Some(FoundSignature {
                        element,
                        form,
                        offset,
                        signed_info,
                    });
                    continue;
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(text) => {
                if let Some(stream) = &mut base64 {
                    let at = path_of(&stack);
                    let limit = limits.max_attachment_bytes.saturating_sub(decoded_total);
                    stream.push(&text.into_inner(), attachments - 1, sink, limit, &at)?;
                } else if let Some(element) = stack.last_mut() {
                    let at = element.name.clone();
                    let text = text_of(&text.into_inner(), &at)?;
                    weight += text.len();
                    element.text.push_str(&text);
                } else if !text.iter().all(u8::is_ascii_whitespace) {
                    return Err(EdxmlError::invalid(
                        "document",
                        "text outside the root element",
                    ));
                }
            }
            Event::GeneralRef(name) => {
                let at = path_of(&stack);
                let ch = xml::reference(&name, &at)?;
                if base64.is_some() {
                    return Err(EdxmlError::invalid(
                        at,
                        "the base64 is broken: it holds a character reference",
                    ));
                }
                if let Some(element) = stack.last_mut() {
                    weight += ch.len_utf8();
                    element.text.push(ch);
                }
            }
            Event::CData(data) => {
                let at = path_of(&stack);
                if base64.is_some() {
                    return Err(EdxmlError::invalid(
                        at,
                        "base64 inside CDATA is not accepted",
                    ));
                }
                let text = text_of(&data.into_inner(), &at)?;
                weight += text.len();
                if let Some(element) = stack.last_mut() {
                    element.text.push_str(&text);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::PI(_) | Event::DocType(_) | Event::Empty(_) => {}
        }
        if weight > limits.max_header_bytes {
            return Err(EdxmlError::TooLarge {
                element: path_of(&stack),
                limit: limits.max_header_bytes as u64,
            });
        }
    }
    if !stack.is_empty() {
        return Err(EdxmlError::invalid(
            path_of(&stack),
            "the document ends before this element is closed",
        ));
    }
    let root = root.ok_or_else(|| EdxmlError::invalid("document", "has no root element"))?;
    interpret(root, found_signature, junk, prefixed, header_end)
}

/// Finds the envelope's parts in the tree.
fn interpret(
    root: Element,
    signature: Option<FoundSignature>,
    junk: usize,
    prefixed: bool,
    header_end: u64,
) -> Result<Package, EdxmlError> {
    // Two layouts are seen: the envelope as root with the attachments in
    // it, and an `edXML` root holding the envelope and the attachments.
    let (envelope, encoded) = match root.name.as_str() {
        "edXMLEnvelope" => {
            let encoded = root.child("AttachmentEncoded").cloned();
            (root, encoded)
        }
        "edXML" => {
            let envelope = root
                .child("edXMLEnvelope")
                .cloned()
                .ok_or_else(|| EdxmlError::invalid("edXML", "holds no edXMLEnvelope element"))?;
            let encoded = root
                .child("AttachmentEncoded")
                .or(envelope.child("AttachmentEncoded"))
                .cloned();
            (envelope, encoded)
        }
        other => {
            return Err(EdxmlError::invalid(
                other,
                "is not an edXML root: edXMLEnvelope (or edXML) is expected",
            ));
        }
    };
    let header = envelope
        .child("edXMLHeader")
        .cloned()
        .ok_or_else(|| EdxmlError::invalid("edXMLEnvelope/edXMLHeader", "is required"))?;
    let kind = if header.child("MessageHeader").is_some() {
        Kind::Document
    } else if header.child("Status").is_some() {
        Kind::Status
    } else {
        return Err(EdxmlError::invalid(
            "edXMLHeader/MessageHeader",
            "is required (or Status, for a status message)",
        ));
    };
    let manifest = envelope
        .child("edXMLBody")
        .and_then(|body| body.child("edXMLManifest"))
        .cloned();
    let mut attachments = Vec::new();
    for (index, attachment) in encoded.iter().flat_map(|e| e.all("Attachment")).enumerate() {
        let at = |field: &str| format!("AttachmentEncoded/Attachment[{}]/{field}", index + 1);
        let encoded = attachment
            .child("ContentTransferEncoded")
            .ok_or_else(|| EdxmlError::invalid(at("ContentTransferEncoded"), "is required"))?;
        let size = encoded
            .attribute("lienthong-size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let name = attachment.text_at("AttachmentName").to_owned();
        if name.is_empty() {
            return Err(EdxmlError::invalid(at("AttachmentName"), "is required"));
        }
        attachments.push(AttachmentInfo {
            content_id: attachment.text_at("ContentId").to_owned(),
            name,
            description: attachment.text_at("Description").to_owned(),
            content_type: attachment.text_at("ContentType").to_owned(),
            size,
        });
    }
    if let Some(manifest) = &manifest {
        for (index, reference) in manifest.all("Reference").enumerate() {
            let id = reference.text_at("ContentId");
            let name = reference.text_at("AttachmentName");
            let known = attachments.iter().any(|a| {
                (!id.is_empty() && a.content_id == id) || (id.is_empty() && a.name == name)
            });
            if !known {
                return Err(EdxmlError::invalid(
                    format!("edXMLManifest/Reference[{}]", index + 1),
                    format!(
                        "names the attachment {:?} ({}), which the package does not carry",
                        name,
                        if id.is_empty() { "no ContentId" } else { id }
                    ),
                ));
            }
        }
    }
    Ok(Package {
        kind,
        header,
        manifest,
        attachments,
        signature,
        junk,
        prefixed,
        header_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<Vec<u8>>);

    impl AttachmentSink for Collect {
        fn write(&mut self, index: usize, bytes: &[u8]) -> Result<(), EdxmlError> {
            while self.0.len() <= index {
                self.0.push(Vec::new());
            }
            self.0[index].extend_from_slice(bytes);
            Ok(())
        }
    }

    fn package(header_extra: &str, after: &str) -> String {
        format!(
            "<e:edXMLEnvelope xmlns:e=\"{NS_EDXML}\"><e:edXMLHeader><e:MessageHeader><e:Subject>s</e:Subject>{header_extra}</e:MessageHeader></e:edXMLHeader><e:AttachmentEncoded><e:Attachment><e:AttachmentName>real.txt</e:AttachmentName><e:ContentTransferEncoded>cmVhbA==</e:ContentTransferEncoded></e:Attachment></e:AttachmentEncoded>{after}</e:edXMLEnvelope>"
        )
    }

    #[test]
    fn attachments_count_only_where_the_layout_puts_them() {
        // A look-alike inside the header is header text: its base64 is not
        // decoded, so the real attachment's content is the first decoded.
        let decoy = "<e:AttachmentEncoded><e:Attachment><e:AttachmentName>decoy</e:AttachmentName><e:ContentTransferEncoded>ZGVjb3k=</e:ContentTransferEncoded></e:Attachment></e:AttachmentEncoded>";
        let mut sink = Collect(Vec::new());
        let read =
            parse(package(decoy, "").as_bytes(), &Limits::default(), &mut sink).expect("reads");
        assert_eq!(sink.0, vec![b"real".to_vec()]);
        assert_eq!(read.attachments.len(), 1);
        assert_eq!(read.attachments[0].name, "real.txt");
        assert_eq!(read.attachments[0].size, 4);
        // A second AttachmentEncoded beside the first is refused.
        let twice = parse(
            package("", "<e:AttachmentEncoded/>").as_bytes(),
            &Limits::default(),
            &mut Collect(Vec::new()),
        )
        .expect_err("two AttachmentEncoded");
        assert!(twice.to_string().contains("appears twice"), "{twice}");
    }

    #[test]
    fn decoding_stops_at_the_bound() {
        let limits = Limits {
            max_attachment_bytes: 3,
            ..Limits::default()
        };
        let error = parse(
            package("", "").as_bytes(),
            &limits,
            &mut Collect(Vec::new()),
        )
        .expect_err("4 bytes over a bound of 3");
        assert!(
            matches!(error, EdxmlError::TooLarge { ref element, .. } if element.ends_with("ContentTransferEncoded")),
            "{error}"
        );
    }
}
