//! edXML header ↔ the gateway's envelope and status report. The header
//! tree itself is kept beside the message, so what the envelope lacks is
//! carried; this maps what the gateway acts on: addresses, the document's
//! identity and type, priority (queue rank), business type (action), and
//! status codes.

use sha2::{Digest, Sha256};

use lienthong_domain::{
    envelope::{Action, Attachment, DocumentInfo, OrgCode, Priority, RawEnvelope},
    status::{Staff, StatusCode},
};

use crate::{EdxmlError, parse::Package, time, tree::Element};

/// The message id a document gets: `ed-` and 32 hex digits of SHA-256 over
/// its `DocumentId` (new documents), or over the id, business type, reason
/// and the first trace time (revoke, update, replace: each is a message of
/// its own about the same document).
pub fn message_id(document_id: &str, business: Option<(u8, &str, &str)>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(document_id.as_bytes());
    let prefix = match business {
        None | Some((0, _, _)) => "ed",
        Some((kind, reason, time)) => {
            hasher.update([0, kind]);
            hasher.update(reason.as_bytes());
            hasher.update([0]);
            hasher.update(time.as_bytes());
            match kind {
                1 => "ed-revoke",
                2 => "ed-update",
                _ => "ed-replace",
            }
        }
    };
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

fn required<'a>(element: &'a Element, path: &str, root: &str) -> Result<&'a str, EdxmlError> {
    let text = element.text_at(path);
    if text.is_empty() {
        Err(EdxmlError::invalid(format!("{root}/{path}"), "is required"))
    } else {
        Ok(text)
    }
}

fn org_code(text: &str, at: &str) -> Result<OrgCode, EdxmlError> {
    OrgCode::parse(text, at).map_err(|_| {
        EdxmlError::invalid(
            at,
            format!("{text:?} is not an organization code of the form 000.00.12.H56"),
        )
    })
}

/// `yyyy/MM/dd` (or already `yyyy-MM-dd`) → `yyyy-MM-dd`; empty stays empty.
fn date(text: &str, at: &str) -> Result<String, EdxmlError> {
    if text.is_empty() {
        return Ok(String::new());
    }
    let iso = text.get(..10).unwrap_or(text).replace('/', "-");
    if time::civil_days(&iso).is_some() {
        Ok(iso)
    } else {
        Err(EdxmlError::invalid(
            at,
            format!("{text:?} is not a date yyyy/MM/dd"),
        ))
    }
}

fn number<T: std::str::FromStr>(text: &str, at: &str, what: &str) -> Result<Option<T>, EdxmlError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| EdxmlError::invalid(at, format!("{text:?} is not {what}")))
}

/// The business type (`Bussiness/BussinessDocType`, 0–3) and its action.
pub fn action_of(header: &Element) -> Result<(u8, Action), EdxmlError> {
    let at = "edXMLHeader/TraceHeaderList/Bussiness/BussinessDocType";
    let kind: u8 = number(
        header.text_at("TraceHeaderList/Bussiness/BussinessDocType"),
        at,
        "a business type (0 new, 1 revoke, 2 update, 3 replace)",
    )?
    .unwrap_or(0);
    let action = match kind {
        0 => Action::New,
        1 => Action::Revoke,
        2 => Action::Update,
        3 => Action::Replace,
        other => {
            return Err(EdxmlError::invalid(
                at,
                format!("{other} is not a business type (0 new, 1 revoke, 2 update, 3 replace)"),
            ));
        }
    };
    Ok((kind, action))
}

/// The envelope of a document package; attachments carry no content (it
/// went to the sink) and `sizes` their decoded sizes. `doc_type` maps
/// `DocumentType/Type` to the gateway's document type (its policy).
pub fn envelope(
    package: &Package,
    doc_type: &dyn Fn(&str) -> String,
) -> Result<(RawEnvelope, Vec<u64>), EdxmlError> {
    let root = "edXMLHeader/MessageHeader";
    let header = package
        .header
        .child("MessageHeader")
        .ok_or_else(|| EdxmlError::invalid(root, "is required"))?;
    let from = required(header, "From/OrganId", root)?;
    org_code(from, &format!("{root}/From/OrganId"))?;
    let mut to = Vec::new();
    for (index, recipient) in header.all("To").enumerate() {
        let at = format!("{root}/To[{}]/OrganId", index + 1);
        let code = recipient.text_at("OrganId");
        if code.is_empty() {
            return Err(EdxmlError::invalid(at, "is required"));
        }
        org_code(code, &at)?;
        to.push(code.to_owned());
    }
    if to.is_empty() {
        return Err(EdxmlError::invalid(
            format!("{root}/To"),
            "is required (at least one)",
        ));
    }
    let document_id = required(header, "DocumentId", root)?;
    let subject = required(header, "Subject", root)?;
    let (kind, action) = action_of(&package.header)?;
    let business = package.header.at("TraceHeaderList/Bussiness");
    let first_trace = package
        .header
        .at("TraceHeaderList")
        .and_then(|list| list.child("TraceHeader"))
        .map_or("", |t| t.text_at("Timestamp"));
    let (message_id, refers_to) = if action == Action::New {
        (message_id(document_id, None), String::new())
    } else {
        let earlier = business
            .map(|b| b.text_at("DocumentId"))
            .filter(|id| !id.is_empty())
            .unwrap_or(document_id);
        (
            message_id(
                document_id,
                Some((
                    kind,
                    business.map_or("", |b| b.text_at("BussinessDocReason")),
                    first_trace,
                )),
            ),
            message_id(earlier, None),
        )
    };
    let priority: i32 = number(
        header.text_at("OtherInfo/Priority"),
        &format!("{root}/OtherInfo/Priority"),
        "a priority (0-4)",
    )?
    .unwrap_or(0);
    if Priority::from_edxml(priority).is_none() {
        return Err(EdxmlError::invalid(
            format!("{root}/OtherInfo/Priority"),
            format!("{priority} is not a priority (0 thường … 4 hỏa tốc hẹn giờ)"),
        ));
    }
    let steering_type: u32 = number(
        header.text_at("SteeringType"),
        &format!("{root}/SteeringType"),
        "a steering type",
    )?
    .unwrap_or(0);
    let document = DocumentInfo {
        number: header.text_at("Code/CodeNumber").to_owned(),
        notation: header.text_at("Code/CodeNotation").to_owned(),
        doc_type: doc_type(header.text_at("DocumentType/Type")),
        type_name: header.text_at("DocumentType/TypeName").to_owned(),
        subject: subject.to_owned(),
        promulgation_place: header.text_at("PromulgationInfo/Place").to_owned(),
        promulgation_date: date(
            header.text_at("PromulgationInfo/PromulgationDate"),
            &format!("{root}/PromulgationInfo/PromulgationDate"),
        )?,
        signer_competence: header.text_at("SignerInfo/Competence").to_owned(),
        signer_position: header.text_at("SignerInfo/Position").to_owned(),
        signer_full_name: header.text_at("SignerInfo/FullName").to_owned(),
        priority: Priority::Normal,
        due_date: date(header.text_at("DueDate"), &format!("{root}/DueDate"))?,
        steering_type,
        action,
        refers_to: None,
    };
    let attachments = package
        .attachments
        .iter()
        .map(|a| Attachment {
            name: a.name.clone(),
            media_type: if a.content_type.is_empty() {
                "application/octet-stream".to_owned()
            } else {
                a.content_type.clone()
            },
            content: Vec::new(),
        })
        .collect();
    let sizes = package.attachments.iter().map(|a| a.size).collect();
    Ok((
        RawEnvelope {
            message_id,
            from: from.to_owned(),
            to,
            document,
            refers_to,
            priority,
            action: kind.into(),
            attachments,
            signatures: Vec::new(),
        },
        sizes,
    ))
}

/// A status message's report, in the terms of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFields {
    /// The original document's sender (`ResponseFor/OrganId`).
    pub sender: String,
    /// The original document's message id (from `ResponseFor/DocumentId`).
    pub message_id: String,
    /// Who reports (`From/OrganId`).
    pub reporter: String,
    /// `StatusCode`.
    pub code: StatusCode,
    /// `Description`.
    pub description: String,
    /// `StaffInfo`.
    pub staff: Staff,
    /// `Timestamp`, Unix milliseconds.
    pub at: i64,
}

/// The report a status package makes.
pub fn status(package: &Package) -> Result<StatusFields, EdxmlError> {
    let root = "edXMLHeader/Status";
    let status = package
        .header
        .child("Status")
        .ok_or_else(|| EdxmlError::invalid(root, "is required"))?;
    let sender = required(status, "ResponseFor/OrganId", root)?;
    org_code(sender, &format!("{root}/ResponseFor/OrganId"))?;
    let document_id = required(status, "ResponseFor/DocumentId", root)?;
    let reporter = required(status, "From/OrganId", root)?;
    org_code(reporter, &format!("{root}/From/OrganId"))?;
    let code_text = required(status, "StatusCode", root)?;
    let code = code_text
        .parse::<u8>()
        .ok()
        .and_then(StatusCode::from_edxml)
        .ok_or_else(|| {
            EdxmlError::invalid(
                format!("{root}/StatusCode"),
                format!("{code_text:?} is not a status code (01-06, 13, 15, 16)"),
            )
        })?;
    let timestamp = required(status, "Timestamp", root)?;
    let at = time::parse_timestamp(timestamp).ok_or_else(|| {
        EdxmlError::invalid(
            format!("{root}/Timestamp"),
            format!("{timestamp:?} is not a time yyyy/MM/dd HH:mm:ss"),
        )
    })?;
    Ok(StatusFields {
        sender: sender.to_owned(),
        message_id: message_id(document_id, None),
        reporter: reporter.to_owned(),
        code,
        description: status.text_at("Description").to_owned(),
        staff: Staff {
            department: status.text_at("StaffInfo/Department").to_owned(),
            name: status.text_at("StaffInfo/Staff").to_owned(),
            email: status.text_at("StaffInfo/Email").to_owned(),
            mobile: status.text_at("StaffInfo/Mobile").to_owned(),
        },
        at,
    })
}
