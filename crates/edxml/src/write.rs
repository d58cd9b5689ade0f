//! Writing edXML the way the national hub reads it: every element with the
//! explicit `edXML:` prefix (its .NET reader rejects unprefixed children
//! even in the right namespace), dates `yyyy/MM/dd`, this gateway's hop at
//! the end of the trace, attachments base64 in 76-character lines streamed
//! from their files.

use std::io::{Read, Write};

use base64::Engine as _;
use lienthong_domain::{envelope::DocumentInfo, status::Staff};

use crate::{
    EdxmlError, NS_EDXML, time,
    tree::{Element, escape},
};

/// This gateway's entry in `TraceHeaderList`.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The code the gateway writes as `OrganId`.
    pub organ_id: String,
    /// When it handled the document, Unix milliseconds.
    pub at: i64,
}

/// Appends `hop` to the header's `TraceHeaderList` (made if missing), after
/// the hops already there and before `Bussiness`.
pub fn add_hop(header: &mut Element, hop: &Hop) {
    if header.child("TraceHeaderList").is_none() {
        header
            .children
            .push(Element::new("TraceHeaderList", Vec::new()));
    }
    let Some(list) = header.child_mut("TraceHeaderList") else {
        return;
    };
    let entry = Element::new(
        "TraceHeader",
        vec![
            Element::leaf("OrganId", hop.organ_id.clone()),
            Element::leaf("Timestamp", time::format_timestamp(hop.at)),
        ],
    );
    let at = list
        .children
        .iter()
        .rposition(|c| c.name == "TraceHeader")
        .map_or(0, |i| i + 1);
    list.children.insert(at, entry);
}

/// An organization as edXML names it.
#[derive(Debug, Clone, Default)]
pub struct Organization {
    /// `OrganId`.
    pub code: String,
    /// `OrganName`.
    pub name: String,
}

impl Organization {
    fn element(&self, name: &str) -> Element {
        let mut children = vec![Element::leaf("OrganId", self.code.clone())];
        if !self.name.is_empty() {
            children.push(Element::leaf("OrganName", self.name.clone()));
        }
        Element::new(name, children)
    }
}

/// The `DocumentId` edXML systems write: `OrganId,yyyy/MM/dd,Number/Notation`.
pub fn document_id(from: &str, date: &str, document: &DocumentInfo) -> String {
    let code = match (document.number.is_empty(), document.notation.is_empty()) {
        (false, false) => format!("{}/{}", document.number, document.notation),
        (false, true) => document.number.clone(),
        (true, _) => document.notation.clone(),
    };
    format!("{from},{},{code}", time::edxml_date(date))
}

/// What a header is made of for a document that came as a gRPC envelope.
pub struct DocumentView<'a> {
    /// The sender.
    pub from: Organization,
    /// The recipients.
    pub to: Vec<Organization>,
    /// The document's fields.
    pub document: &'a DocumentInfo,
    /// Its `DocumentId`.
    pub document_id: String,
    /// For revoke, update, replace: the earlier document's `DocumentId`.
    pub earlier_document_id: Option<String>,
    /// The gateway's message id, kept in `OtherInfo` for the way back.
    pub message_id: &'a str,
    /// When the sender's gateway accepted it (the first trace hop).
    pub accepted_at: i64,
}

/// The `edXMLHeader` for a document that came as a gRPC envelope.
pub fn header_from_envelope(view: &DocumentView<'_>) -> Element {
    let d = view.document;
    let mut message = vec![view.from.element("From")];
    message.extend(view.to.iter().map(|o| o.element("To")));
    message.push(Element::leaf("DocumentId", view.document_id.clone()));
    message.push(Element::new(
        "Code",
        vec![
            Element::leaf("CodeNumber", d.number.clone()),
            Element::leaf("CodeNotation", d.notation.clone()),
        ],
    ));
    message.push(Element::new(
        "PromulgationInfo",
        vec![
            Element::leaf("Place", d.promulgation_place.clone()),
            Element::leaf("PromulgationDate", time::edxml_date(&d.promulgation_date)),
        ],
    ));
    message.push(Element::new(
        "DocumentType",
        vec![
            Element::leaf("Type", d.doc_type.clone()),
            Element::leaf("TypeName", d.type_name.clone()),
        ],
    ));
    message.push(Element::leaf("Subject", d.subject.clone()));
    message.push(Element::new(
        "SignerInfo",
        vec![
            Element::leaf("Competence", d.signer_competence.clone()),
            Element::leaf("Position", d.signer_position.clone()),
            Element::leaf("FullName", d.signer_full_name.clone()),
        ],
    ));
    if !d.due_date.is_empty() {
        message.push(Element::leaf("DueDate", time::edxml_date(&d.due_date)));
    }
    message.push(Element::new(
        "OtherInfo",
        vec![Element::leaf("Priority", d.priority.edxml().to_string())],
    ));
    message.push(Element::leaf("SteeringType", d.steering_type.to_string()));
    let kind = match d.action {
        lienthong_domain::envelope::Action::New => 0,
        lienthong_domain::envelope::Action::Revoke => 1,
        lienthong_domain::envelope::Action::Update => 2,
        lienthong_domain::envelope::Action::Replace => 3,
    };
    let mut business = vec![Element::leaf("BussinessDocType", kind.to_string())];
    if let Some(earlier) = &view.earlier_document_id {
        business.push(Element::leaf("DocumentId", earlier.clone()));
    }
    let trace = Element::new(
        "TraceHeaderList",
        vec![
            Element::new(
                "TraceHeader",
                vec![
                    Element::leaf("OrganId", view.from.code.clone()),
                    Element::leaf("Timestamp", time::format_timestamp(view.accepted_at)),
                ],
            ),
            Element::new("Bussiness", business),
        ],
    );
    Element::new(
        "edXMLHeader",
        vec![Element::new("MessageHeader", message), trace],
    )
}

/// What a status message says.
pub struct StatusView {
    /// The original sender.
    pub sender: Organization,
    /// The original document's `Code` (number/notation).
    pub code: String,
    /// The original document's promulgation date, `yyyy/MM/dd`.
    pub promulgation_date: String,
    /// The original document's `DocumentId`.
    pub document_id: String,
    /// The reporting organization.
    pub reporter: Organization,
    /// The edXML status code.
    pub status: u8,
    /// Free text.
    pub description: String,
    /// When, Unix milliseconds.
    pub at: i64,
    /// Who handled it.
    pub staff: Staff,
}

/// The `edXMLHeader` of a status message.
pub fn status_header(view: &StatusView) -> Element {
    let status = Element::new(
        "Status",
        vec![
            Element::new(
                "ResponseFor",
                vec![
                    Element::leaf("OrganId", view.sender.code.clone()),
                    Element::leaf("Code", view.code.clone()),
                    Element::leaf("PromulgationDate", view.promulgation_date.clone()),
                    Element::leaf("DocumentId", view.document_id.clone()),
                ],
            ),
            view.reporter.element("From"),
            Element::leaf("StatusCode", format!("{:02}", view.status)),
            Element::leaf("Description", view.description.clone()),
            Element::leaf("Timestamp", time::format_timestamp(view.at)),
            Element::new(
                "StaffInfo",
                vec![
                    Element::leaf("Department", view.staff.department.clone()),
                    Element::leaf("Staff", view.staff.name.clone()),
                    Element::leaf("Mobile", view.staff.mobile.clone()),
                    Element::leaf("Email", view.staff.email.clone()),
                ],
            ),
        ],
    );
    Element::new("edXMLHeader", vec![status])
}

/// An attachment to write.
#[derive(Debug, Clone)]
pub struct OutAttachment {
    /// `ContentId`; `cid:N` when empty.
    pub content_id: String,
    /// `AttachmentName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `ContentType`.
    pub content_type: String,
}

/// Counts the bytes written.
struct Counting<'w> {
    inner: &'w mut dyn Write,
    written: u64,
}

impl Counting<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), EdxmlError> {
        self.written += bytes.len() as u64;
        self.inner
            .write_all(bytes)
            .map_err(|e| EdxmlError::Io(format!("writing edXML: {e}")))
    }
}

/// Bytes of content per base64 line.
const LINE: usize = 57;

/// Writes a package: `header` (an `edXMLHeader`), the manifest and the
/// attachments, whose content `open` gives by index. Answers the offset of
/// `</edXML:edXMLHeader>` (where a signature goes) and the bytes written.
pub fn write_package(
    out: &mut dyn Write,
    header: &Element,
    attachments: &[OutAttachment],
    open: &mut dyn FnMut(usize) -> std::io::Result<Box<dyn Read>>,
) -> Result<(u64, u64), EdxmlError> {
    let mut out = Counting {
        inner: out,
        written: 0,
    };
    out.put(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<edXML:edXMLEnvelope xmlns:edXML=\"{NS_EDXML}\">\n  <edXML:edXMLHeader>\n").as_bytes())?;
    let mut text = String::new();
    for child in &header.children {
        child.write_prefixed(&mut text, 2);
    }
    text.push_str("  ");
    out.put(text.as_bytes())?;
    let header_end = out.written;
    out.put(b"</edXML:edXMLHeader>\n")?;
    let cid = |index: usize, a: &OutAttachment| {
        if a.content_id.is_empty() {
            format!("cid:{}", index + 1)
        } else {
            a.content_id.clone()
        }
    };
    if attachments.is_empty() {
        out.put(b"  <edXML:edXMLBody/>\n")?;
    } else {
        let mut manifest =
            String::from("  <edXML:edXMLBody>\n    <edXML:edXMLManifest version=\"1.0\">\n");
        for (index, a) in attachments.iter().enumerate() {
            Element::new(
                "Reference",
                vec![
                    Element::leaf("ContentId", cid(index, a)),
                    Element::leaf("ContentType", a.content_type.clone()),
                    Element::leaf("Description", a.description.clone()),
                    Element::leaf("AttachmentName", a.name.clone()),
                ],
            )
            .write_prefixed(&mut manifest, 3);
        }
        manifest.push_str(
            "    </edXML:edXMLManifest>\n  </edXML:edXMLBody>\n  <edXML:AttachmentEncoded>\n",
        );
        out.put(manifest.as_bytes())?;
        for (index, a) in attachments.iter().enumerate() {
            let mut head = String::from("    <edXML:Attachment>\n");
            for (name, value) in [
                ("ContentId", cid(index, a)),
                ("AttachmentName", a.name.clone()),
                ("Description", a.description.clone()),
                ("ContentType", a.content_type.clone()),
            ] {
                head.push_str(&format!(
                    "      <edXML:{name}>{}</edXML:{name}>\n",
                    escape(&value, false)
                ));
            }
            head.push_str("      <edXML:ContentTransferEncoded>");
            out.put(head.as_bytes())?;
            let mut reader = open(index)
                .map_err(|e| EdxmlError::Io(format!("reading attachment {:?}: {e}", a.name)))?;
            let mut buffer = vec![0u8; LINE * 1024];
            let mut encoded = String::with_capacity(buffer.len() / 3 * 4 + 1100);
            loop {
                let filled = fill(&mut reader, &mut buffer)
                    .map_err(|e| EdxmlError::Io(format!("reading attachment {:?}: {e}", a.name)))?;
                if filled == 0 {
                    break;
                }
                encoded.clear();
                for line in buffer[..filled].chunks(LINE) {
                    encoded.push('\n');
                    base64::engine::general_purpose::STANDARD.encode_string(line, &mut encoded);
                }
                out.put(encoded.as_bytes())?;
                if filled < buffer.len() {
                    break;
                }
            }
            out.put(b"\n      </edXML:ContentTransferEncoded>\n    </edXML:Attachment>\n")?;
        }
        out.put(b"  </edXML:AttachmentEncoded>\n")?;
    }
    out.put(b"</edXML:edXMLEnvelope>\n")?;
    Ok((header_end, out.written))
}

fn fill(reader: &mut dyn Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
