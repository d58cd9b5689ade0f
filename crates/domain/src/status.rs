//! Status reports (edXML): what a recipient says of a document it received,
//! and which moves between statuses are possible. Pure.

use serde::{Deserialize, Serialize};

use crate::{
    clock::UnixMillis,
    envelope::{Action, MessageId, OrgCode},
};

/// edXML status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusCode {
    /// 01 arrived.
    Arrived,
    /// 02 refused.
    Refused,
    /// 03 accepted.
    Accepted,
    /// 04 assigned.
    Assigned,
    /// 05 in progress.
    InProgress,
    /// 06 done.
    Done,
    /// 13 recall requested.
    RecallRequested,
    /// 15 recall or update accepted.
    RecallAccepted,
    /// 16 recall or update refused.
    RecallRefused,
}

impl StatusCode {
    /// The edXML number.
    pub fn edxml(self) -> u8 {
        match self {
            StatusCode::Arrived => 1,
            StatusCode::Refused => 2,
            StatusCode::Accepted => 3,
            StatusCode::Assigned => 4,
            StatusCode::InProgress => 5,
            StatusCode::Done => 6,
            StatusCode::RecallRequested => 13,
            StatusCode::RecallAccepted => 15,
            StatusCode::RecallRefused => 16,
        }
    }

    /// From the edXML number.
    pub fn from_edxml(value: u8) -> Option<Self> {
        Some(match value {
            1 => StatusCode::Arrived,
            2 => StatusCode::Refused,
            3 => StatusCode::Accepted,
            4 => StatusCode::Assigned,
            5 => StatusCode::InProgress,
            6 => StatusCode::Done,
            13 => StatusCode::RecallRequested,
            15 => StatusCode::RecallAccepted,
            16 => StatusCode::RecallRefused,
            _ => return None,
        })
    }
}

/// Who handled the document at the recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staff {
    /// Department.
    pub department: String,
    /// Name.
    pub name: String,
    /// E-mail.
    pub email: String,
    /// Mobile.
    pub mobile: String,
}

/// A status report as stored and delivered to the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The original message's sender.
    pub sender: OrgCode,
    /// The original message id.
    pub message_id: MessageId,
    /// The reporting recipient.
    pub reporter: OrgCode,
    /// The status.
    pub code: StatusCode,
    /// Free text.
    pub description: String,
    /// Who handled it.
    pub staff: Staff,
    /// When the status was reached at the recipient.
    pub at: UnixMillis,
}

/// Why a status cannot follow the one before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status {to:02} cannot follow {}", from.map_or("no status".to_owned(), |f| format!("status {f:02}")))]
pub struct Impossible {
    /// The last status, as edXML number.
    pub from: Option<u8>,
    /// The reported one.
    pub to: u8,
}

/// Checks a move from `last` to `next` for a document with `action`.
pub fn transition(
    last: Option<StatusCode>,
    next: StatusCode,
    action: Action,
) -> Result<(), Impossible> {
    use StatusCode::*;
    let answers_action = matches!(action, Action::Revoke | Action::Update | Action::Replace);
    let allowed = match next {
        Arrived => last.is_none(),
        Refused | Accepted => matches!(last, None | Some(Arrived)),
        Assigned => matches!(last, Some(Accepted)),
        InProgress => matches!(last, Some(Accepted | Assigned)),
        Done => matches!(last, Some(Accepted | Assigned | InProgress)),
        RecallRequested => matches!(
            last,
            None | Some(Arrived | Accepted | Assigned | InProgress)
        ),
        RecallAccepted | RecallRefused => answers_action && matches!(last, None | Some(Arrived)),
    };
    if allowed {
        Ok(())
    } else {
        Err(Impossible {
            from: last.map(StatusCode::edxml),
            to: next.edxml(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{StatusCode::*, *};

    #[test]
    fn a_document_moves_forward_only() {
        let path = [Arrived, Accepted, Assigned, InProgress, Done];
        let mut last = None;
        for next in path {
            transition(last, next, Action::New).expect("forward");
            last = Some(next);
        }
        assert!(transition(Some(Done), InProgress, Action::New).is_err());
        assert!(transition(Some(Refused), Accepted, Action::New).is_err());
        assert!(transition(Some(Arrived), Arrived, Action::New).is_err());
        assert!(transition(None, Assigned, Action::New).is_err());
        let error = transition(Some(Done), Accepted, Action::New).expect_err("backwards");
        assert_eq!(error.to_string(), "status 03 cannot follow status 06");
    }

    #[test]
    fn recall_answers_only_answer_actions() {
        assert!(transition(None, RecallAccepted, Action::New).is_err());
        assert!(transition(None, RecallAccepted, Action::Revoke).is_ok());
        assert!(transition(Some(Arrived), RecallRefused, Action::Update).is_ok());
        assert!(transition(Some(RecallAccepted), RecallRefused, Action::Revoke).is_err());
    }

    #[test]
    fn edxml_numbers_round_trip() {
        for n in [1, 2, 3, 4, 5, 6, 13, 15, 16] {
            assert_eq!(StatusCode::from_edxml(n).map(StatusCode::edxml), Some(n));
        }
        assert_eq!(StatusCode::from_edxml(7), None);
    }
}
