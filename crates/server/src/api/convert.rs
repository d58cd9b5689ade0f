//! Proto messages to domain types and back. The core never sees prost types.

use super::ApiError;
use crate::{
    clock::UnixMillis,
    envelope::{Action, Attachment, DocumentInfo, OrgCode, Priority, RawEnvelope, Signature},
    gateway::{Delivery, DeliveryChunk, TrustItem},
    messages::MessageRecord,
    pki::{Indication, Report, Role, SubIndication},
    proto,
    queue::{DeadLetter, QueueDepth, rank_priority},
    receipt::SignedReceipt,
    registry::Agency,
    registry::{Policy, Signer},
};

pub fn timestamp(millis: UnixMillis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// The proto envelope as the core's unchecked [`RawEnvelope`].
pub fn raw_envelope(envelope: proto::Envelope) -> RawEnvelope {
    let document = envelope.document.unwrap_or_default();
    let code = document.code.unwrap_or_default();
    let promulgation = document.promulgation.unwrap_or_default();
    let signer = document.signer.unwrap_or_default();
    RawEnvelope {
        message_id: envelope.message_id,
        from: envelope.from,
        to: envelope.to,
        document: DocumentInfo {
            number: code.number,
            notation: code.notation,
            doc_type: document.r#type,
            type_name: document.type_name,
            subject: document.subject,
            promulgation_place: promulgation.place,
            promulgation_date: promulgation.date,
            signer_competence: signer.competence,
            signer_position: signer.position,
            signer_full_name: signer.full_name,
            priority: Priority::Normal,
            due_date: document.due_date,
            steering_type: document.steering_type,
            action: Action::New,
            refers_to: None,
        },
        refers_to: document.refers_to,
        priority: document.priority,
        action: document.action,
        attachments: envelope
            .attachments
            .into_iter()
            .map(|a| Attachment {
                name: a.name,
                media_type: a.media_type,
                content: a.content,
            })
            .collect(),
        signatures: envelope
            .signatures
            .into_iter()
            .map(|s| Signature {
                attachment: s.attachment,
                cms_der: s.cms_der,
            })
            .collect(),
    }
}

/// The document information as proto.
pub fn document(info: &DocumentInfo) -> proto::Document {
    proto::Document {
        code: Some(proto::DocumentCode {
            number: info.number.clone(),
            notation: info.notation.clone(),
        }),
        r#type: info.doc_type.clone(),
        type_name: info.type_name.clone(),
        subject: info.subject.clone(),
        promulgation: Some(proto::Promulgation {
            place: info.promulgation_place.clone(),
            date: info.promulgation_date.clone(),
        }),
        signer: Some(proto::SignerIdentity {
            competence: info.signer_competence.clone(),
            position: info.signer_position.clone(),
            full_name: info.signer_full_name.clone(),
        }),
        priority: info.priority.edxml(),
        due_date: info.due_date.clone(),
        steering_type: info.steering_type,
        action: match info.action {
            Action::New => proto::Action::New,
            Action::Revoke => proto::Action::Revoke,
            Action::Update => proto::Action::Update,
            Action::Replace => proto::Action::Replace,
        } as i32,
        refers_to: info
            .refers_to
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

pub fn receipt(signed: &SignedReceipt) -> proto::Receipt {
    let receipt = &signed.receipt;
    let message = &receipt.message;
    proto::Receipt {
        message_id: message.message_id.to_string(),
        from: message.sender.to_string(),
        accepted_at: Some(timestamp(message.accepted_at)),
        recipients: message
            .recipients
            .iter()
            .map(|recipient| proto::ResolvedRecipient {
                code: recipient.code.to_string(),
                via: recipient.via.clone(),
            })
            .collect(),
        attachments: message
            .attachments
            .iter()
            .map(|a| proto::AttachmentDigest {
                name: a.name.clone(),
                sha256: a.sha256.to_hex(),
                size: a.size,
            })
            .collect(),
        duplicate: receipt.duplicate,
        verification: overall(&message.reports) as i32,
        audit_head: hex::encode(message.audit_head),
        canonical: signed.canonical.clone(),
        signature: signed.proof.as_ref().map(|proof| proto::ReceiptSignature {
            leaf_index: proof.leaf_index,
            inclusion_proof: proof.path.iter().map(|h| h.to_vec()).collect(),
            merkle_root: proof.root.to_vec(),
            signature: proof.signature.clone(),
            tree_size: proof.tree_size,
        }),
    }
}

fn envelope(message: &MessageRecord, delivery: Delivery) -> proto::Envelope {
    proto::Envelope {
        message_id: message.message_id.to_string(),
        from: message.sender.to_string(),
        to: message.to.iter().map(ToString::to_string).collect(),
        document: Some(document(&message.document)),
        attachments: delivery
            .attachments
            .into_iter()
            .zip(&message.attachments)
            .map(|(attachment, stored)| proto::Attachment {
                name: attachment.name,
                media_type: attachment.media_type,
                content: attachment.content,
                size: stored.size,
                sha256: stored.sha256.to_hex(),
            })
            .collect(),
        signatures: delivery
            .signatures
            .into_iter()
            .map(|s| proto::Signature {
                attachment: s.attachment,
                cms_der: s.cms_der,
            })
            .collect(),
        edxml_header: delivery.edxml_header.unwrap_or_default(),
    }
}

pub fn delivery(delivery: Delivery) -> proto::Delivery {
    let leased = delivery.leased.clone();
    let content_follows = delivery.content_follows;
    proto::Delivery {
        content_follows,
        delivery_id: leased.delivery_id.to_string(),
        attempt: leased.attempt,
        payload: Some(match &leased.status {
            Some(report) => proto::delivery::Payload::Status(status_report(report)),
            None => proto::delivery::Payload::Envelope(envelope(&leased.message, delivery)),
        }),
        reports: leased.message.reports.iter().map(report).collect(),
        accepted_at: Some(timestamp(leased.message.accepted_at)),
        lease_expires_at: Some(timestamp(leased.lease_expires_at)),
    }
}

/// The head of an edXML delivery: what it is and the rendered size; the
/// package follows in chunks.
pub fn edxml_head(delivery: Delivery) -> proto::EdxmlDelivery {
    let leased = delivery.leased;
    proto::EdxmlDelivery {
        delivery_id: leased.delivery_id.to_string(),
        attempt: leased.attempt,
        part: Some(proto::edxml_delivery::Part::Head(proto::EdxmlHead {
            size: delivery.edxml_size.unwrap_or(0),
            status: leased.status.is_some(),
            sender: leased.message.sender.to_string(),
            message_id: leased.message.message_id.to_string(),
            reports: if leased.status.is_some() {
                Vec::new()
            } else {
                leased.message.reports.iter().map(report).collect()
            },
            accepted_at: Some(timestamp(leased.message.accepted_at)),
            lease_expires_at: Some(timestamp(leased.lease_expires_at)),
        })),
    }
}

/// One piece of a large document's content, after its delivery.
pub fn delivery_chunk(chunk: DeliveryChunk) -> proto::Delivery {
    proto::Delivery {
        delivery_id: chunk.delivery_id,
        payload: Some(proto::delivery::Payload::Chunk(proto::ContentChunk {
            attachment: chunk.attachment,
            data: chunk.data,
        })),
        ..proto::Delivery::default()
    }
}

pub fn agency(agency: &Agency) -> proto::Agency {
    proto::Agency {
        code: agency.code.to_string(),
        name: agency.name.clone(),
        parent: agency
            .parent
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        certificate_fingerprints: agency.fingerprints.iter().map(|f| f.to_hex()).collect(),
        disabled: agency.disabled,
        registered_at: Some(timestamp(agency.registered_at)),
    }
}

pub fn queue_stats(code: &str, depth: &QueueDepth, now: UnixMillis) -> proto::AgencyQueueStats {
    proto::AgencyQueueStats {
        agency: code.to_owned(),
        depths: depth
            .by_rank
            .iter()
            .enumerate()
            .map(|(rank, count)| proto::PriorityDepth {
                priority: rank_priority(rank).edxml(),
                depth: *count,
            })
            .collect(),
        in_flight: depth.in_flight,
        dead: depth.dead,
        oldest_age_seconds: depth.oldest_enqueued_at.map_or(0, |at| {
            u64::try_from(now.saturating_sub(at) / 1000).unwrap_or(0)
        }),
    }
}

pub fn dead_letter(dead: &DeadLetter) -> proto::DeadLetter {
    proto::DeadLetter {
        dead_letter_id: dead.id.to_string(),
        agency: dead.id.recipient_code().to_string(),
        sender: dead.sender.to_string(),
        message_id: dead.message_id.to_string(),
        attempts: dead.attempts,
        dead_at: Some(timestamp(dead.dead_at)),
        reason: dead.reason.clone(),
    }
}

pub fn role(role: Role) -> proto::SignerRole {
    match role {
        Role::Organization => proto::SignerRole::Organization,
        Role::Head => proto::SignerRole::Head,
        Role::AccountOwner => proto::SignerRole::AccountOwner,
        Role::ChiefAccountant => proto::SignerRole::ChiefAccountant,
        Role::Officer => proto::SignerRole::Officer,
    }
}

/// A role from the wire; UNSPECIFIED and unknown numbers are refused.
pub fn role_from(value: i32, field: &str) -> Result<Role, ApiError> {
    match proto::SignerRole::try_from(value) {
        Ok(proto::SignerRole::Organization) => Ok(Role::Organization),
        Ok(proto::SignerRole::Head) => Ok(Role::Head),
        Ok(proto::SignerRole::AccountOwner) => Ok(Role::AccountOwner),
        Ok(proto::SignerRole::ChiefAccountant) => Ok(Role::ChiefAccountant),
        Ok(proto::SignerRole::Officer) => Ok(Role::Officer),
        Ok(proto::SignerRole::Unspecified) | Err(_) => Err(ApiError::invalid(
            field,
            format!(
                "{value} is not a signer role (1 organization, 2 head, 3 account owner, 4 chief accountant, 5 officer)"
            ),
        )),
    }
}

fn indication(indication: Indication) -> proto::Indication {
    match indication {
        Indication::TotalPassed => proto::Indication::TotalPassed,
        Indication::Indeterminate => proto::Indication::Indeterminate,
        Indication::TotalFailed => proto::Indication::TotalFailed,
    }
}

fn sub_indication(sub: Option<SubIndication>) -> proto::SubIndication {
    match sub {
        None => proto::SubIndication::None,
        Some(SubIndication::FormatFailure) => proto::SubIndication::FormatFailure,
        Some(SubIndication::HashFailure) => proto::SubIndication::HashFailure,
        Some(SubIndication::SigCryptoFailure) => proto::SubIndication::SigCryptoFailure,
        Some(SubIndication::RevokedNoPoe) => proto::SubIndication::RevokedNoPoe,
        Some(SubIndication::NoCertificateChainFound) => {
            proto::SubIndication::NoCertificateChainFound
        }
        Some(SubIndication::OutOfBoundsNoPoe) => proto::SubIndication::OutOfBoundsNoPoe,
        Some(SubIndication::NotYetValid) => proto::SubIndication::NotYetValid,
        Some(SubIndication::ChainConstraintsFailure) => {
            proto::SubIndication::ChainConstraintsFailure
        }
        Some(SubIndication::CryptoConstraintsFailureNoPoe) => {
            proto::SubIndication::CryptoConstraintsFailureNoPoe
        }
        Some(SubIndication::SigConstraintsFailure) => proto::SubIndication::SigConstraintsFailure,
        Some(SubIndication::SignedDataNotFound) => proto::SubIndication::SignedDataNotFound,
        Some(SubIndication::TryLater) => proto::SubIndication::TryLater,
    }
}

pub fn report(report: &Report) -> proto::VerificationReport {
    proto::VerificationReport {
        attachment: report.attachment.clone(),
        indication: indication(report.indication) as i32,
        sub_indication: sub_indication(report.sub_indication) as i32,
        message: report.message.clone(),
        signer: report.signer.as_ref().map(|signer| proto::SignerInfo {
            subject: signer.subject.clone(),
            issuer: signer.issuer.clone(),
            serial_hex: signer.serial_hex.clone(),
            sha256_fingerprint: signer.fingerprint.to_hex(),
            signing_time: signer.signing_time.map(timestamp),
            agency: signer
                .registered
                .as_ref()
                .map(|(agency, _)| agency.to_string())
                .unwrap_or_default(),
            role: signer
                .registered
                .as_ref()
                .map_or(proto::SignerRole::Unspecified, |(_, r)| role(*r)) as i32,
        }),
        checks: report
            .checks
            .iter()
            .map(|check| proto::CheckResult {
                name: check.name.clone(),
                passed: check.passed,
                detail: check.detail.clone(),
            })
            .collect(),
        verified_at: Some(timestamp(report.verified_at)),
        embedded: report
            .embedded
            .as_ref()
            .map(|place| proto::EmbeddedSignature {
                field: place.field.clone(),
                revision: place.revision,
                revisions: place.revisions,
                whole_document: place.whole_document,
            }),
    }
}

/// The overall verification of a message: unspecified without signatures,
/// otherwise the worst of its reports.
pub fn overall(reports: &[Report]) -> proto::Indication {
    if reports.is_empty() {
        return proto::Indication::Unspecified;
    }
    if reports
        .iter()
        .any(|r| r.indication == Indication::TotalFailed)
    {
        proto::Indication::TotalFailed
    } else if reports
        .iter()
        .any(|r| r.indication == Indication::Indeterminate)
    {
        proto::Indication::Indeterminate
    } else {
        proto::Indication::TotalPassed
    }
}

pub fn signer(signer: &Signer) -> proto::Signer {
    proto::Signer {
        agency: signer.agency.to_string(),
        role: role(signer.role) as i32,
        certificate: Some(proto::SignerInfo {
            subject: signer.subject.clone(),
            issuer: signer.issuer.clone(),
            serial_hex: signer.serial_hex.clone(),
            sha256_fingerprint: signer.fingerprint.to_hex(),
            signing_time: None,
            agency: signer.agency.to_string(),
            role: role(signer.role) as i32,
        }),
    }
}

pub fn policy(policy: &Policy) -> proto::Policy {
    proto::Policy {
        document_type: policy.document_type.clone(),
        required_roles: policy
            .required_roles
            .iter()
            .map(|r| role(*r) as i32)
            .collect(),
        any_of_roles: policy
            .any_of_roles
            .iter()
            .map(|r| role(*r) as i32)
            .collect(),
        allowed_recipients: policy
            .allowed_recipients
            .iter()
            .map(ToString::to_string)
            .collect(),
        signing_order: policy
            .signing_order
            .iter()
            .map(|r| role(*r) as i32)
            .collect(),
    }
}

pub fn policy_from(policy: proto::Policy) -> Result<Policy, ApiError> {
    let roles = |values: &[i32], field: &str| {
        values
            .iter()
            .map(|v| role_from(*v, field))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(Policy {
        required_roles: roles(&policy.required_roles, "policy.required_roles")?,
        any_of_roles: roles(&policy.any_of_roles, "policy.any_of_roles")?,
        signing_order: roles(&policy.signing_order, "policy.signing_order")?,
        allowed_recipients: policy
            .allowed_recipients
            .iter()
            .enumerate()
            .map(|(index, code)| {
                OrgCode::parse(code, &format!("policy.allowed_recipients[{index}]"))
                    .map_err(ApiError::from)
            })
            .collect::<Result<Vec<_>, _>>()?,
        document_type: policy.document_type,
    })
}

pub fn trust_item(item: &TrustItem, source: &str) -> proto::TrustItem {
    proto::TrustItem {
        name: item.name.clone(),
        sha256_fingerprint: item.fingerprint.to_hex(),
        next_update: item.next_update.map(timestamp),
        source: source.to_owned(),
    }
}

pub fn certificate_facts(
    facts: &crate::pki::CertificateFacts,
    agency: &str,
    held_role: Role,
) -> proto::SignerInfo {
    proto::SignerInfo {
        subject: facts.subject.clone(),
        issuer: facts.issuer.clone(),
        serial_hex: facts.serial_hex.clone(),
        sha256_fingerprint: facts.fingerprint.to_hex(),
        signing_time: None,
        agency: agency.to_owned(),
        role: role(held_role) as i32,
    }
}

pub fn group(group: &crate::registry::Group) -> proto::Group {
    proto::Group {
        name: group.name.as_str().to_owned(),
        description: group.description.clone(),
        members: group.members.iter().map(ToString::to_string).collect(),
    }
}

pub fn trace_event(entry: &crate::audit::Entry) -> proto::TraceEvent {
    use crate::audit::EventKind;
    let kind = match entry.event.kind {
        EventKind::Accepted => proto::TraceEventKind::Accepted,
        EventKind::Verified => proto::TraceEventKind::Verified,
        EventKind::Queued => proto::TraceEventKind::Queued,
        EventKind::Delivered => proto::TraceEventKind::Delivered,
        EventKind::Acked => proto::TraceEventKind::Acked,
        EventKind::Retried | EventKind::Replayed => proto::TraceEventKind::Retried,
        EventKind::DeadLettered => proto::TraceEventKind::DeadLettered,
        EventKind::Status => proto::TraceEventKind::Status,
        EventKind::Released => proto::TraceEventKind::ContentReleased,
        EventKind::Purged | EventKind::Admin => proto::TraceEventKind::Unspecified,
    };
    proto::TraceEvent {
        at: Some(timestamp(entry.at)),
        kind: kind as i32,
        agency: entry
            .event
            .agency
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        attempt: entry.event.attempt,
        status: status_code(entry.event.status),
        detail: entry.event.detail.clone(),
    }
}

/// The proto enum number of an edXML status (0 unspecified).
fn status_code(edxml: u8) -> i32 {
    i32::from(edxml)
}

pub fn status_report(report: &crate::status::StatusReport) -> proto::StatusReport {
    proto::StatusReport {
        message_id: report.message_id.to_string(),
        sender: report.sender.to_string(),
        reporter: report.reporter.to_string(),
        code: status_code(report.code.edxml()),
        description: report.description.clone(),
        staff: Some(proto::StaffInfo {
            department: report.staff.department.clone(),
            name: report.staff.name.clone(),
            email: report.staff.email.clone(),
            mobile: report.staff.mobile.clone(),
        }),
        at: Some(timestamp(report.at)),
    }
}

pub fn raw_status(status: proto::StatusReport) -> crate::gateway::RawStatus {
    let staff = status.staff.unwrap_or_default();
    crate::gateway::RawStatus {
        message_id: status.message_id,
        sender: status.sender,
        reporter: status.reporter,
        code: u8::try_from(status.code).unwrap_or(0),
        description: status.description,
        staff: crate::status::Staff {
            department: staff.department,
            name: staff.name,
            email: staff.email,
            mobile: staff.mobile,
        },
        at: status.at.map_or(0, |t| {
            t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000)
        }),
    }
}

pub fn status_receipt(receipt: &crate::gateway::StatusReceipt) -> proto::Receipt {
    proto::Receipt {
        message_id: receipt.report.message_id.to_string(),
        from: receipt.report.reporter.to_string(),
        accepted_at: Some(timestamp(receipt.accepted_at)),
        recipients: vec![proto::ResolvedRecipient {
            code: receipt.report.sender.to_string(),
            via: "status".to_owned(),
        }],
        attachments: Vec::new(),
        duplicate: false,
        verification: proto::Indication::Unspecified as i32,
        audit_head: receipt.audit_head.clone(),
        canonical: receipt.canonical.clone(),
        signature: receipt.proof.as_ref().map(|proof| proto::ReceiptSignature {
            leaf_index: proof.leaf_index,
            inclusion_proof: proof.path.iter().map(|h| h.to_vec()).collect(),
            merkle_root: proof.root.to_vec(),
            signature: proof.signature.clone(),
            tree_size: proof.tree_size,
        }),
    }
}

/// A signed hop as proto.
pub fn hop_record(signed: &crate::federation::SignedHop) -> proto::HopRecord {
    let hop = &signed.hop;
    proto::HopRecord {
        gateway: hop.gateway.to_string(),
        from: hop.from.clone(),
        to: hop.to.clone(),
        received_at: hop.received_at,
        forwarded_at: hop.forwarded_at,
        content_sha256: hop.content_sha256.to_vec(),
        envelope_sha256: hop.envelope_sha256.to_vec(),
        previous_sha256: hop.previous_sha256.to_vec(),
        signature: signed.signature.clone(),
        certificate: signed.certificate.clone(),
    }
}

/// A hop from proto, its fields checked for shape (the chain is checked
/// by the core).
pub fn signed_hop(
    record: proto::HopRecord,
    index: usize,
) -> Result<crate::federation::SignedHop, ApiError> {
    let field = |name: &str| format!("hops[{index}].{name}");
    let digest = |bytes: Vec<u8>, name: &str| -> Result<[u8; 32], ApiError> {
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| ApiError::invalid(field(name), "must be 32 bytes (SHA-256)"))
    };
    Ok(crate::federation::SignedHop {
        hop: crate::federation::Hop {
            gateway: crate::federation::GatewayId::parse(&record.gateway, &field("gateway"))?,
            from: record.from,
            to: record.to,
            received_at: record.received_at,
            forwarded_at: record.forwarded_at,
            content_sha256: digest(record.content_sha256, "content_sha256")?,
            envelope_sha256: digest(record.envelope_sha256, "envelope_sha256")?,
            previous_sha256: digest(record.previous_sha256, "previous_sha256")?,
        },
        signature: record.signature,
        certificate: record.certificate,
    })
}

/// Hops from proto, in order.
pub fn signed_hops(
    records: Vec<proto::HopRecord>,
) -> Result<Vec<crate::federation::SignedHop>, ApiError> {
    records
        .into_iter()
        .enumerate()
        .map(|(index, record)| signed_hop(record, index))
        .collect()
}
