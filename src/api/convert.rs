//! Proto messages to domain types and back. The core never sees prost types.

use crate::{
    clock::UnixMillis,
    envelope::{Action, Attachment, DocumentInfo, Priority, RawEnvelope, Signature},
    gateway::Delivery,
    proto,
    queue::{DeadLetter, MessageRecord, QueueDepth, Receipt, rank_priority},
    registry::Agency,
};

pub fn timestamp(millis: UnixMillis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

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

fn document(info: &DocumentInfo) -> proto::Document {
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

pub fn receipt(receipt: &Receipt) -> proto::Receipt {
    let message = &receipt.message;
    proto::Receipt {
        message_id: message.message_id.to_string(),
        from: message.sender.to_string(),
        accepted_at: Some(timestamp(message.accepted_at)),
        recipients: message
            .recipients
            .iter()
            .map(|code| proto::ResolvedRecipient {
                code: code.to_string(),
                via: code.to_string(),
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
        verification: proto::Indication::Unspecified as i32,
        audit_head: String::new(),
        canonical: Vec::new(),
        signature: None,
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
    }
}

pub fn delivery(delivery: Delivery) -> proto::Delivery {
    let leased = delivery.leased.clone();
    proto::Delivery {
        delivery_id: leased.delivery_id.to_string(),
        attempt: leased.attempt,
        payload: Some(proto::delivery::Payload::Envelope(envelope(
            &leased.message,
            delivery,
        ))),
        reports: Vec::new(),
        accepted_at: Some(timestamp(leased.message.accepted_at)),
        lease_expires_at: Some(timestamp(leased.lease_expires_at)),
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
