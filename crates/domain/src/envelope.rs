//! Domain types of a document message and their validation: org codes,
//! message ids, priorities, actions, and the envelope's bounds.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest attachment name, in characters: what edXML document systems
/// accept, and short enough for a receiver's file system.
pub const MAX_ATTACHMENT_NAME_CHARS: usize = 200;

/// Why an envelope was refused. `field` names the offending field the way a
/// caller wrote it, e.g. `envelope.to[2]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A field is missing or malformed.
    #[error("{field}: {reason}")]
    Invalid {
        /// Which field.
        field: String,
        /// What was wrong, with the value.
        reason: String,
    },
    /// A field is over its configured bound.
    #[error("{field}: {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Which field.
        field: String,
        /// Its size.
        size: u64,
        /// The bound.
        limit: u64,
    },
}

impl EnvelopeError {
    /// A field that breaks a rule, and the rule.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// An agency's org code (mã định danh, QĐ 20/2020): `ddd.dd.dd.Xdd`, e.g. `000.00.12.H56`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrgCode(String);

impl OrgCode {
    /// Parses an org code, naming `field` in the error.
    pub fn parse(text: &str, field: &str) -> Result<Self, EnvelopeError> {
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 13
            && bytes.iter().enumerate().all(|(index, byte)| match index {
                3 | 6 | 9 => *byte == b'.',
                10 => byte.is_ascii_uppercase(),
                _ => byte.is_ascii_digit(),
            });
        if shape_ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(EnvelopeError::invalid(
                field,
                format!("{text:?} is not an org code of the form 000.00.12.H56"),
            ))
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A queue name that is not an agency's: a peer gateway's outbound
    /// queue (see [`crate::federation::GatewayId::mailbox`]).
    pub(crate) fn mailbox(name: &str) -> Self {
        Self(name.to_owned())
    }

    /// Parses an org code or a peer's queue name (`peer:VN:GOV:HUB`), as
    /// dead-letter ids and Admin calls name queues.
    pub fn parse_queue(text: &str, field: &str) -> Result<Self, EnvelopeError> {
        match text.strip_prefix(crate::federation::PEER_MAILBOX) {
            Some(id) => crate::federation::GatewayId::parse(id, field).map(|id| id.mailbox()),
            None => Self::parse(text, field),
        }
    }
}

impl fmt::Display for OrgCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group's name: 1-64 characters of a-z 0-9 and dashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupName(String);

impl GroupName {
    /// Parses a group name, naming `field` in the error.
    pub fn parse(text: &str, field: &str) -> Result<Self, EnvelopeError> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(EnvelopeError::invalid(
                field,
                format!("{text:?} is not a group name (1-64 of a-z 0-9 -)"),
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a document is addressed: one agency, the children of one, or a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Address {
    /// `000.00.12.H56`
    Agency(OrgCode),
    /// `children:000.00.31.H56`: every agency whose parent is this one.
    Children(OrgCode),
    /// `group:so-nganh`: the members of a named group.
    Group(GroupName),
}

impl Address {
    /// Parses `CODE`, `children:CODE` or `group:NAME`.
    pub fn parse(text: &str, field: &str) -> Result<Self, EnvelopeError> {
        if let Some(code) = text.strip_prefix("children:") {
            return Ok(Self::Children(OrgCode::parse(code, field)?));
        }
        if let Some(name) = text.strip_prefix("group:") {
            return Ok(Self::Group(GroupName::parse(name, field)?));
        }
        OrgCode::parse(text, field).map(Self::Agency).map_err(|_| {
            EnvelopeError::invalid(
                field,
                format!("{text:?} is not an org code (000.00.12.H56), children:CODE or group:NAME"),
            )
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Agency(code) => write!(f, "{code}"),
            Address::Children(code) => write!(f, "children:{code}"),
            Address::Group(name) => write!(f, "group:{}", name.as_str()),
        }
    }
}

/// A sender-chosen message id: 1–128 characters of `A-Z a-z 0-9 . _ : -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(String);

impl MessageId {
    /// Longest accepted id.
    pub const MAX_LEN: usize = 128;

    /// Parses a message id, naming `field` in the error.
    pub fn parse(text: &str, field: &str) -> Result<Self, EnvelopeError> {
        if text.is_empty() {
            return Err(EnvelopeError::invalid(field, "is required"));
        }
        if text.len() > Self::MAX_LEN {
            return Err(EnvelopeError::invalid(
                field,
                format!(
                    "is {} characters; at most {} are allowed",
                    text.len(),
                    Self::MAX_LEN
                ),
            ));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            return Err(EnvelopeError::invalid(
                field,
                format!("contains {bad:?}; only A-Z a-z 0-9 . _ : - are allowed"),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Urgency (edXML priority 0–4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Priority {
    /// Thường (0).
    #[default]
    Normal,
    /// Khẩn (1).
    Urgent,
    /// Thượng khẩn (2).
    VeryUrgent,
    /// Hỏa tốc (3).
    Flash,
    /// Hỏa tốc hẹn giờ (4).
    FlashScheduled,
}

impl Priority {
    /// Every priority, in edXML order.
    pub const ALL: [Priority; 5] = [
        Priority::Normal,
        Priority::Urgent,
        Priority::VeryUrgent,
        Priority::Flash,
        Priority::FlashScheduled,
    ];

    /// The queue rank: lower is delivered first. Both flash kinds share the top rank.
    pub fn rank(self) -> u8 {
        match self {
            Priority::Flash | Priority::FlashScheduled => 0,
            Priority::VeryUrgent => 1,
            Priority::Urgent => 2,
            Priority::Normal => 3,
        }
    }

    /// From the edXML number.
    pub fn from_edxml(value: i32) -> Option<Self> {
        Self::ALL.get(usize::try_from(value).ok()?).copied()
    }

    /// The edXML number.
    pub fn edxml(self) -> i32 {
        match self {
            Priority::Normal => 0,
            Priority::Urgent => 1,
            Priority::VeryUrgent => 2,
            Priority::Flash => 3,
            Priority::FlashScheduled => 4,
        }
    }
}

/// What a message does to the document it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Action {
    /// A new document.
    #[default]
    New,
    /// Recall an earlier document.
    Revoke,
    /// Update an earlier document.
    Update,
    /// Replace an earlier document.
    Replace,
}

/// Document information, after edXML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DocumentInfo {
    /// Number, e.g. `101`.
    pub number: String,
    /// Notation, e.g. `KH-UBND`.
    pub notation: String,
    /// Machine type that selects the signature policy.
    pub doc_type: String,
    /// Human type name.
    pub type_name: String,
    /// Subject (trích yếu).
    pub subject: String,
    /// Promulgation place.
    pub promulgation_place: String,
    /// Promulgation date, `YYYY-MM-DD` or empty.
    pub promulgation_date: String,
    /// Signing competence.
    pub signer_competence: String,
    /// Signer's position.
    pub signer_position: String,
    /// Signer's full name.
    pub signer_full_name: String,
    /// Urgency.
    pub priority: Priority,
    /// Due date, `YYYY-MM-DD` or empty.
    pub due_date: String,
    /// edXML steering type.
    pub steering_type: u32,
    /// What this message does.
    pub action: Action,
    /// The earlier message it acts on.
    pub refers_to: Option<MessageId>,
}

/// One file of a document, with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Unique within the envelope.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// The bytes.
    pub content: Vec<u8>,
}

/// A detached CMS signature over one attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The attachment's name.
    pub attachment: String,
    /// CMS SignedData, DER.
    pub cms_der: Vec<u8>,
}

/// A validated document message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender's idempotency key.
    pub message_id: MessageId,
    /// The sending agency.
    pub from: OrgCode,
    /// Recipients as addressed.
    pub to: Vec<Address>,
    /// What the document is.
    pub document: DocumentInfo,
    /// Its files.
    pub attachments: Vec<Attachment>,
    /// Signatures over the files.
    pub signatures: Vec<Signature>,
}

/// An envelope as it arrived, fields unchecked. The api layer builds it from
/// the proto message; [`RawEnvelope::validate`] makes an [`Envelope`] of it.
#[derive(Debug, Clone, Default)]
pub struct RawEnvelope {
    /// Message id as sent.
    pub message_id: String,
    /// Sender as sent.
    pub from: String,
    /// Recipients as sent.
    pub to: Vec<String>,
    /// Document info with unchecked strings; `refers_to` is parsed here.
    pub document: DocumentInfo,
    /// `refers_to` as sent.
    pub refers_to: String,
    /// Priority as sent (edXML number).
    pub priority: i32,
    /// Action as sent (proto number).
    pub action: i32,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// Signatures.
    pub signatures: Vec<Signature>,
}

/// The bounds an envelope must keep; from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total attachment bytes of one message.
    pub max_message_bytes: u64,
    /// Attachments in one message.
    pub max_attachments: usize,
    /// Recipients in one message.
    pub max_recipients: usize,
    /// Signatures in one message.
    pub max_signatures: usize,
    /// Bytes of one CMS signature.
    pub max_signature_bytes: u64,
    /// Characters of one text field (subject, names...).
    pub max_text_chars: usize,
    /// Total attachment bytes of one message sent with SendStream.
    pub max_stream_bytes: u64,
    /// Largest content chunk accepted in SendStream.
    pub max_chunk_bytes: u64,
    /// Size of the content chunks the gateway sends to receivers.
    pub delivery_chunk_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024 * 1024,
            max_attachments: 32,
            max_recipients: 500,
            max_signatures: 16,
            max_signature_bytes: 64 * 1024,
            max_text_chars: 2000,
            max_stream_bytes: 4 * 1024 * 1024 * 1024,
            max_chunk_bytes: 4 * 1024 * 1024,
            delivery_chunk_bytes: 1024 * 1024,
        }
    }
}

impl RawEnvelope {
    /// Checks every field against its shape and `limits`.
    pub fn validate(self, limits: &Limits) -> Result<Envelope, EnvelopeError> {
        self.validate_as(limits, None)
    }

    /// Checks the envelope of a SendStream: attachments carry no content
    /// but a declared size each (`sizes`, in order), bounded by
    /// `limits.max_stream_bytes` in total.
    pub fn validate_streamed(
        self,
        limits: &Limits,
        sizes: &[u64],
    ) -> Result<Envelope, EnvelopeError> {
        self.validate_as(limits, Some(sizes))
    }

    fn validate_as(
        self,
        limits: &Limits,
        sizes: Option<&[u64]>,
    ) -> Result<Envelope, EnvelopeError> {
        let message_id = MessageId::parse(&self.message_id, "envelope.message_id")?;
        if self.from.is_empty() {
            return Err(EnvelopeError::invalid("envelope.from", "is required"));
        }
        let from = OrgCode::parse(&self.from, "envelope.from")?;
        if self.to.is_empty() {
            return Err(EnvelopeError::invalid(
                "envelope.to",
                "needs at least one recipient",
            ));
        }
        if self.to.len() > limits.max_recipients {
            return Err(EnvelopeError::invalid(
                "envelope.to",
                format!(
                    "{} recipients; at most {} are allowed",
                    self.to.len(),
                    limits.max_recipients
                ),
            ));
        }
        let mut to = Vec::with_capacity(self.to.len());
        for (index, text) in self.to.iter().enumerate() {
            let address = Address::parse(text, &format!("envelope.to[{index}]"))?;
            if !to.contains(&address) {
                to.push(address);
            }
        }
        let mut document = self.document;
        document.priority = Priority::from_edxml(self.priority).ok_or_else(|| {
            EnvelopeError::invalid(
                "envelope.document.priority",
                format!("{} is not a priority (0-4)", self.priority),
            )
        })?;
        document.action = match self.action {
            0 => Action::New,
            1 => Action::Revoke,
            2 => Action::Update,
            3 => Action::Replace,
            other => {
                return Err(EnvelopeError::invalid(
                    "envelope.document.action",
                    format!("{other} is not an action (0-3)"),
                ));
            }
        };
        document.refers_to = match (document.action, self.refers_to.is_empty()) {
            (Action::New, true) => None,
            (Action::New, false) => {
                return Err(EnvelopeError::invalid(
                    "envelope.document.refers_to",
                    "must be empty for a NEW document",
                ));
            }
            (_, true) => {
                return Err(EnvelopeError::invalid(
                    "envelope.document.refers_to",
                    "is required for REVOKE, UPDATE and REPLACE",
                ));
            }
            (_, false) => Some(MessageId::parse(
                &self.refers_to,
                "envelope.document.refers_to",
            )?),
        };
        check_document_text(&document, limits)?;
        check_attachments(&self.attachments, limits, sizes)?;
        check_signatures(&self.signatures, &self.attachments, limits)?;
        Ok(Envelope {
            message_id,
            from,
            to,
            document,
            attachments: self.attachments,
            signatures: self.signatures,
        })
    }
}

fn check_document_text(document: &DocumentInfo, limits: &Limits) -> Result<(), EnvelopeError> {
    let texts = [
        ("number", &document.number),
        ("notation", &document.notation),
        ("type", &document.doc_type),
        ("type_name", &document.type_name),
        ("subject", &document.subject),
        ("promulgation.place", &document.promulgation_place),
        ("signer.competence", &document.signer_competence),
        ("signer.position", &document.signer_position),
        ("signer.full_name", &document.signer_full_name),
    ];
    for (name, text) in texts {
        let chars = text.chars().count();
        if chars > limits.max_text_chars {
            return Err(EnvelopeError::invalid(
                format!("envelope.document.{name}"),
                format!(
                    "is {chars} characters; at most {} are allowed",
                    limits.max_text_chars
                ),
            ));
        }
    }
    if document.subject.trim().is_empty() {
        return Err(EnvelopeError::invalid(
            "envelope.document.subject",
            "is required",
        ));
    }
    for (name, date) in [
        ("promulgation.date", &document.promulgation_date),
        ("due_date", &document.due_date),
    ] {
        if !date.is_empty() && !is_iso_date(date) {
            return Err(EnvelopeError::invalid(
                format!("envelope.document.{name}"),
                format!("{date:?} is not a date of the form YYYY-MM-DD"),
            ));
        }
    }
    Ok(())
}

fn is_iso_date(text: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format).is_ok()
}

fn check_attachments(
    attachments: &[Attachment],
    limits: &Limits,
    sizes: Option<&[u64]>,
) -> Result<(), EnvelopeError> {
    if attachments.len() > limits.max_attachments {
        return Err(EnvelopeError::invalid(
            "envelope.attachments",
            format!(
                "{} attachments; at most {} are allowed",
                attachments.len(),
                limits.max_attachments
            ),
        ));
    }
    let (total, limit) = match sizes {
        None => (
            attachments.iter().map(|a| a.content.len() as u64).sum(),
            limits.max_message_bytes,
        ),
        Some(sizes) => {
            if sizes.len() != attachments.len() {
                return Err(EnvelopeError::invalid(
                    "envelope.attachments",
                    "every attachment needs its size",
                ));
            }
            if let Some(index) = attachments.iter().position(|a| !a.content.is_empty()) {
                return Err(EnvelopeError::invalid(
                    format!("envelope.attachments[{index}].content"),
                    "must be empty in SendStream: the content follows in chunks",
                ));
            }
            (
                sizes.iter().fold(0u64, |sum, s| sum.saturating_add(*s)),
                limits.max_stream_bytes,
            )
        }
    };
    if total > limit {
        return Err(EnvelopeError::TooLarge {
            field: "envelope.attachments".to_owned(),
            size: total,
            limit,
        });
    }
    for (index, attachment) in attachments.iter().enumerate() {
        let field = format!("envelope.attachments[{index}].name");
        if attachment.name.is_empty() {
            return Err(EnvelopeError::invalid(field, "is required"));
        }
        let chars = attachment.name.chars().count();
        if chars > MAX_ATTACHMENT_NAME_CHARS {
            return Err(EnvelopeError::invalid(
                field,
                format!(
                    "is {chars} characters long; at most {MAX_ATTACHMENT_NAME_CHARS} are allowed"
                ),
            ));
        }
        if attachment.name.contains(['/', '\\'])
            || attachment.name.chars().any(char::is_control)
            || attachment.name == "."
            || attachment.name == ".."
        {
            return Err(EnvelopeError::invalid(
                field,
                format!(
                    "{:?} must be a file name without / \\ or control characters",
                    attachment.name
                ),
            ));
        }
        if attachments[..index]
            .iter()
            .any(|a| a.name == attachment.name)
        {
            return Err(EnvelopeError::invalid(
                field,
                format!("{:?} appears twice", attachment.name),
            ));
        }
        if attachment.media_type.len() > 255 {
            return Err(EnvelopeError::invalid(
                format!("envelope.attachments[{index}].media_type"),
                "is longer than 255 bytes",
            ));
        }
    }
    Ok(())
}

fn check_signatures(
    signatures: &[Signature],
    attachments: &[Attachment],
    limits: &Limits,
) -> Result<(), EnvelopeError> {
    if signatures.len() > limits.max_signatures {
        return Err(EnvelopeError::invalid(
            "envelope.signatures",
            format!(
                "{} signatures; at most {} are allowed",
                signatures.len(),
                limits.max_signatures
            ),
        ));
    }
    for (index, signature) in signatures.iter().enumerate() {
        if !attachments.iter().any(|a| a.name == signature.attachment) {
            return Err(EnvelopeError::invalid(
                format!("envelope.signatures[{index}].attachment"),
                format!(
                    "names {:?}, which is not an attachment of this envelope",
                    signature.attachment
                ),
            ));
        }
        if signature.cms_der.is_empty() {
            return Err(EnvelopeError::invalid(
                format!("envelope.signatures[{index}].cms_der"),
                "is empty",
            ));
        }
        let size = signature.cms_der.len() as u64;
        if size > limits.max_signature_bytes {
            return Err(EnvelopeError::TooLarge {
                field: format!("envelope.signatures[{index}].cms_der"),
                size,
                limit: limits.max_signature_bytes,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawEnvelope {
        RawEnvelope {
            message_id: "m-1".into(),
            from: "000.00.12.H56".into(),
            to: vec!["000.00.31.H56".into()],
            document: DocumentInfo {
                subject: "Kế hoạch".into(),
                ..Default::default()
            },
            attachments: vec![Attachment {
                name: "a.pdf".into(),
                media_type: "application/pdf".into(),
                content: b"%PDF".to_vec(),
            }],
            ..Default::default()
        }
    }

    fn field_of(error: EnvelopeError) -> String {
        match error {
            EnvelopeError::Invalid { field, .. } | EnvelopeError::TooLarge { field, .. } => field,
        }
    }

    #[test]
    fn org_codes() {
        for good in ["000.00.12.H56", "123.45.67.G22"] {
            assert!(OrgCode::parse(good, "f").is_ok(), "{good}");
        }
        for bad in [
            "",
            "000.00.12.h56",
            "000.00.12H56",
            "000.00.12.H5",
            "0000.0.12.H56",
            "000.00.12.H566",
        ] {
            assert!(OrgCode::parse(bad, "f").is_err(), "{bad}");
        }
    }

    #[test]
    fn valid_envelope_passes_and_dedupes_recipients() {
        let mut raw = raw();
        raw.to.push("000.00.31.H56".into());
        let envelope = raw.validate(&Limits::default()).expect("valid");
        assert_eq!(envelope.to.len(), 1);
    }

    #[test]
    fn each_bad_field_is_named() {
        let limits = Limits::default();
        type Mutation = Box<dyn Fn(&mut RawEnvelope)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|r| r.message_id.clear()), "envelope.message_id"),
            (
                Box::new(|r| r.message_id = "a/b".into()),
                "envelope.message_id",
            ),
            (Box::new(|r| r.from = "x".into()), "envelope.from"),
            (Box::new(|r| r.to.clear()), "envelope.to"),
            (Box::new(|r| r.to.push("bad".into())), "envelope.to[1]"),
            (Box::new(|r| r.priority = 9), "envelope.document.priority"),
            (Box::new(|r| r.action = 1), "envelope.document.refers_to"),
            (
                Box::new(|r| r.document.subject.clear()),
                "envelope.document.subject",
            ),
            (
                Box::new(|r| r.document.due_date = "2026-13-01".into()),
                "envelope.document.due_date",
            ),
            (
                Box::new(|r| r.attachments.push(r.attachments[0].clone())),
                "envelope.attachments[1].name",
            ),
            (
                Box::new(|r| {
                    r.signatures.push(Signature {
                        attachment: "missing.pdf".into(),
                        cms_der: vec![1],
                    })
                }),
                "envelope.signatures[0].attachment",
            ),
        ];
        for (mutate, field) in cases {
            let mut raw = raw();
            mutate(&mut raw);
            let error = raw.validate(&limits).expect_err(field);
            assert_eq!(field_of(error), field);
        }
    }

    #[test]
    fn oversize_content_is_too_large() {
        let limits = Limits {
            max_message_bytes: 3,
            ..Limits::default()
        };
        let error = raw().validate(&limits).expect_err("too large");
        assert!(
            matches!(
                error,
                EnvelopeError::TooLarge {
                    size: 4,
                    limit: 3,
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn priority_ranks_put_flash_first() {
        let mut by_rank = Priority::ALL.to_vec();
        by_rank.sort_by_key(|p| p.rank());
        assert_eq!(by_rank[..2], [Priority::Flash, Priority::FlashScheduled]);
        assert_eq!(by_rank[4], Priority::Normal);
        assert_eq!(Priority::from_edxml(5), None);
    }
}
