//! Status reports and traces: a recipient says where a document stands (the
//! gateway checks the move, queues the report for the sender and answers
//! with a signed receipt); a message's life is read back from the audit log.

use super::{Gateway, GatewayError};
use crate::{
    envelope::{EnvelopeError, MessageId, OrgCode},
    receipt::{self, CanonicalParts, ReceiptProof},
    registry::Agency,
    status::{Staff, StatusCode, StatusReport},
};

/// A status report as it arrived, fields unchecked.
#[derive(Debug, Clone, Default)]
pub struct RawStatus {
    /// The original message id.
    pub message_id: String,
    /// The original sender.
    pub sender: String,
    /// The reporter as given (may be empty: the caller).
    pub reporter: String,
    /// edXML number.
    pub code: u8,
    /// Free text.
    pub description: String,
    /// Who handled it.
    pub staff: Staff,
    /// When reached at the recipient (0: now).
    pub at: i64,
}

/// The gateway's receipt for a status report.
#[derive(Debug, Clone)]
pub struct StatusReceipt {
    /// The report as accepted.
    pub report: StatusReport,
    /// When accepted.
    pub accepted_at: i64,
    /// The audit head after it, hex.
    pub audit_head: String,
    /// The signed text.
    pub canonical: Vec<u8>,
    /// The batch signature, when configured.
    pub proof: Option<ReceiptProof>,
}

impl Gateway {
    /// Accepts a status report from a recipient of the message.
    pub async fn report_status(
        &self,
        caller: &Agency,
        raw: RawStatus,
    ) -> Result<StatusReceipt, GatewayError> {
        if !raw.reporter.is_empty() && raw.reporter != caller.code.as_str() {
            let message_id = MessageId::parse(&raw.message_id, "status.message_id")?;
            return Err(GatewayError::NotInvolved {
                caller: caller.code.clone(),
                message_id,
            });
        }
        let report = self.status_from(raw, caller.code.clone())?;
        let message = self.existing_message(&report.sender, &report.message_id)?;
        if !message.recipients.iter().any(|r| r.code == caller.code) {
            return Err(GatewayError::NotInvolved {
                caller: caller.code.clone(),
                message_id: report.message_id,
            });
        }
        self.record_status(&message, report).await
    }

    /// Checks the fields of a status report by `reporter`.
    pub(super) fn status_from(
        &self,
        raw: RawStatus,
        reporter: OrgCode,
    ) -> Result<StatusReport, GatewayError> {
        let sender = OrgCode::parse(&raw.sender, "status.sender")?;
        let message_id = MessageId::parse(&raw.message_id, "status.message_id")?;
        let code = StatusCode::from_edxml(raw.code).ok_or_else(|| {
            EnvelopeError::invalid(
                "status.code",
                format!("{} is not an edXML status (01-06, 13, 15, 16)", raw.code),
            )
        })?;
        if raw.description.chars().count() > self.config.limits.max_text_chars {
            return Err(EnvelopeError::invalid("status.description", "is too long").into());
        }
        Ok(StatusReport {
            sender,
            message_id,
            reporter,
            code,
            description: raw.description,
            staff: raw.staff,
            at: if raw.at > 0 {
                raw.at
            } else {
                self.clock.now_millis()
            },
        })
    }

    /// Records a checked status on `message`, queues it toward the sender
    /// (its own queue, or the peer it is reached through) and signs the
    /// receipt.
    pub(super) async fn record_status(
        &self,
        message: &crate::messages::MessageRecord,
        report: StatusReport,
    ) -> Result<StatusReceipt, GatewayError> {
        let code = report.code;
        let mailbox = self.mailbox_of(&report.sender);
        let (accepted_at, head) = self
            .queue
            .report_status(message, report.clone(), mailbox)
            .await?;
        let audit_head = hex::encode(head);
        let status_label = format!("STATUS_{:02}", code.edxml());
        let canonical = receipt::canonical_text(&CanonicalParts {
            message_id: report.message_id.as_str(),
            from: report.reporter.as_str(),
            accepted_at,
            recipients: vec![(report.sender.to_string(), "status".to_owned())],
            attachments: Vec::new(),
            verification: &status_label,
            audit_head: &audit_head,
        });
        let proof = match &self.receipts {
            Some(signer) => Some(
                signer
                    .sign(&canonical)
                    .await
                    .map_err(|e| crate::pki::PkiError::Signing(e.to_string()))?,
            ),
            None => None,
        };
        tracing::info!(
            sender = %report.sender, message_id = %report.message_id,
            reporter = %report.reporter, status = code.edxml(), "status reported"
        );
        Ok(StatusReceipt {
            report,
            accepted_at,
            audit_head,
            canonical,
            proof,
        })
    }
}

impl Gateway {
    /// A message's life from the audit chain, for its sender and recipients only.
    pub fn trace(
        &self,
        caller: &crate::registry::Agency,
        sender: &str,
        message_id: &str,
    ) -> Result<Vec<crate::audit::Entry>, GatewayError> {
        let record = self.involved_message(caller, sender, message_id)?;
        let entries = crate::audit::trace(self.store.kv(), &record.sender, &record.message_id)?;
        Ok(expand_accepted(entries, &record))
    }

    /// The message `sender` (the caller when empty) sent as `message_id`,
    /// for its sender and recipients only: anyone else is told it does not
    /// exist, as for an unknown id (another answer would tell outsiders
    /// which ids are in use).
    pub(super) fn involved_message(
        &self,
        caller: &crate::registry::Agency,
        sender: &str,
        message_id: &str,
    ) -> Result<crate::messages::MessageRecord, GatewayError> {
        use crate::envelope::{MessageId, OrgCode};
        let sender = if sender.is_empty() {
            caller.code.clone()
        } else {
            OrgCode::parse(sender, "sender")?
        };
        let message_id = MessageId::parse(message_id, "message_id")?;
        let record = self.existing_message(&sender, &message_id)?;
        let involved =
            record.sender == caller.code || record.recipients.iter().any(|r| r.code == caller.code);
        if !involved {
            tracing::debug!(caller = %caller.code, %sender, %message_id, "trace by an agency not involved");
            return Err(GatewayError::NoSuchMessage { sender, message_id });
        }
        Ok(record)
    }
}

/// One audit entry records acceptance, verification and queueing; the trace
/// shows them as the events they are: ACCEPTED, VERIFIED, and QUEUED for
/// each recipient, from the message record.
fn expand_accepted(
    entries: Vec<crate::audit::Entry>,
    record: &crate::messages::MessageRecord,
) -> Vec<crate::audit::Entry> {
    use crate::audit::EventKind;
    let mut out = Vec::with_capacity(entries.len() + record.recipients.len() + 1);
    for entry in entries {
        if entry.event.kind != EventKind::Accepted {
            out.push(entry);
            continue;
        }
        let view = |kind, agency: Option<&OrgCode>, detail: String| {
            let mut copy = entry.clone();
            copy.event.kind = kind;
            copy.event.agency = agency.cloned();
            copy.event.detail = detail;
            copy
        };
        out.push(view(
            EventKind::Accepted,
            None,
            format!(
                "{} attachment(s), {} recipient(s)",
                record.attachments.len(),
                record.recipients.len()
            ),
        ));
        let passed = record.reports.iter().filter(|r| r.passed()).count();
        out.push(view(
            EventKind::Verified,
            None,
            format!(
                "{passed} of {} signature(s) TOTAL_PASSED",
                record.reports.len()
            ),
        ));
        for recipient in &record.recipients {
            out.push(view(
                EventKind::Queued,
                Some(&recipient.code),
                format!("via {}", recipient.via),
            ));
        }
    }
    out
}
