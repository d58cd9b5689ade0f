//! Signature policies per document type: which roles of the sender must have
//! signed, and to whom the type may go. Evaluation is pure: the registry
//! keeps policies, the gateway applies them.

use serde::{Deserialize, Serialize};

use crate::{
    envelope::OrgCode,
    report::{Report, Role},
};

/// A policy that asks for something incoherent, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPolicy(pub String);

/// The document type of the default policy.
pub const DEFAULT_TYPE: &str = "*";

/// What a document type requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Document type, or `*` for the default.
    pub document_type: String,
    /// Roles of the sending agency that must each have a valid signature.
    pub required_roles: Vec<Role>,
    /// If not empty, a valid signature of at least one of these roles too.
    pub any_of_roles: Vec<Role>,
    /// If not empty, the only agencies this type may be sent to.
    pub allowed_recipients: Vec<OrgCode>,
    /// If not empty, roles whose valid signatures must be embedded in one
    /// PDF attachment in this order, each later one covering the revision
    /// the one before signed (NĐ 30/2020: the head, then the organization's
    /// seal over it).
    pub signing_order: Vec<Role>,
}

/// A policy as record version 1 stored it: without `signing_order`.
#[derive(Debug, Clone, Deserialize)]
pub struct PolicyV1 {
    document_type: String,
    required_roles: Vec<Role>,
    any_of_roles: Vec<Role>,
    allowed_recipients: Vec<OrgCode>,
}

impl From<PolicyV1> for Policy {
    fn from(old: PolicyV1) -> Self {
        Policy {
            document_type: old.document_type,
            required_roles: old.required_roles,
            any_of_roles: old.any_of_roles,
            allowed_recipients: old.allowed_recipients,
            signing_order: Vec::new(),
        }
    }
}

/// Why a document was refused under its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The policy's document type.
    pub document_type: String,
    /// Each unmet requirement, in words.
    pub reasons: Vec<String>,
}

fn role_list(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Policy {
    /// The policy when none is configured: one valid signature of the
    /// sender's ORGANIZATION or HEAD.
    pub fn builtin_default() -> Self {
        Self {
            document_type: DEFAULT_TYPE.to_owned(),
            required_roles: Vec::new(),
            any_of_roles: vec![Role::Organization, Role::Head],
            allowed_recipients: Vec::new(),
            signing_order: Vec::new(),
        }
    }

    /// Công văn (official dispatch), NĐ 30/2020: the head signs the PDF,
    /// then the organization's seal is applied over that signature.
    pub fn cong_van() -> Self {
        Self {
            document_type: "cong-van".to_owned(),
            required_roles: Vec::new(),
            any_of_roles: Vec::new(),
            allowed_recipients: Vec::new(),
            signing_order: vec![Role::Head, Role::Organization],
        }
    }

    /// Checks the document type's name and that the policy asks for something coherent.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        let name_ok = self.document_type == DEFAULT_TYPE
            || (!self.document_type.is_empty()
                && self.document_type.len() <= 100
                && self.document_type.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
                }));
        if !name_ok {
            return Err(InvalidPolicy(format!(
                "document type {:?} must be * or 1-100 characters of a-z 0-9 . - _",
                self.document_type
            )));
        }
        for (index, role) in self.signing_order.iter().enumerate() {
            if self.signing_order[..index].contains(role) {
                return Err(InvalidPolicy(format!(
                    "the signing order names {} twice",
                    role.name()
                )));
            }
        }
        Ok(())
    }

    /// Whether one PDF attachment carries valid embedded signatures of the
    /// sender's `signing_order` roles, each in a later revision than the one
    /// before; otherwise what was found, in words.
    fn check_order(&self, sender: &OrgCode, reports: &[Report]) -> Result<(), String> {
        let wanted = self
            .signing_order
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(", then ");
        let mut attachments: Vec<&str> = reports
            .iter()
            .filter(|r| r.embedded.is_some())
            .map(|r| r.attachment.as_str())
            .collect();
        attachments.sort_unstable();
        attachments.dedup();
        let mut found = Vec::new();
        for attachment in attachments {
            // (revision, role) of the sender's valid embedded signatures.
            let mut signed: Vec<(u32, Role)> = reports
                .iter()
                .filter(|r| r.attachment == attachment && r.passed())
                .filter_map(|r| {
                    let (agency, role) = r.signer.as_ref()?.registered.clone()?;
                    (agency == *sender).then_some((r.embedded.as_ref()?.revision, role))
                })
                .collect();
            signed.sort();
            let mut after = 0;
            let in_order = self.signing_order.iter().all(|role| {
                match signed.iter().find(|(rev, r)| r == role && *rev > after) {
                    Some((rev, _)) => {
                        after = *rev;
                        true
                    }
                    None => false,
                }
            });
            if in_order {
                return Ok(());
            }
            let seen = signed
                .iter()
                .map(|(rev, role)| format!("{} at revision {rev}", role.name()))
                .collect::<Vec<_>>()
                .join(", ");
            found.push(format!(
                "{attachment:?} has {}",
                if seen.is_empty() {
                    "none".to_owned()
                } else {
                    seen
                }
            ));
        }
        let found = if found.is_empty() {
            "no PDF attachment carries embedded signatures".to_owned()
        } else {
            found.join("; ")
        };
        Err(format!(
            "valid signatures of {sender}'s {wanted} are required, in that order, embedded in one PDF with each later one covering the one before: {found}"
        ))
    }

    /// No reasons: allowed; otherwise a refusal under this policy.
    fn verdict(&self, reasons: Vec<String>) -> Result<(), Refusal> {
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Refusal {
                document_type: self.document_type.clone(),
                reasons,
            })
        }
    }

    /// Refuses recipients the type may not go to.
    pub fn check_recipients(&self, recipients: &[OrgCode]) -> Result<(), Refusal> {
        if self.allowed_recipients.is_empty() {
            return Ok(());
        }
        let reasons: Vec<String> = recipients
            .iter()
            .filter(|code| !self.allowed_recipients.contains(code))
            .map(|code| {
                format!(
                    "documents of type {} may not be sent to {code}",
                    self.document_type
                )
            })
            .collect();
        self.verdict(reasons)
    }

    /// Checks that the valid signatures of `sender`'s registered signers
    /// cover the required roles.
    pub fn check_signatures(&self, sender: &OrgCode, reports: &[Report]) -> Result<(), Refusal> {
        let signed: Vec<Role> = reports
            .iter()
            .filter(|report| report.passed())
            .filter_map(|report| report.signer.as_ref()?.registered.clone())
            .filter(|(agency, _)| agency == sender)
            .map(|(_, role)| role)
            .collect();
        let mut reasons = Vec::new();
        for role in &self.required_roles {
            if !signed.contains(role) {
                reasons.push(format!(
                    "a valid signature of {sender}'s {} is required",
                    role.name()
                ));
            }
        }
        if !self.any_of_roles.is_empty()
            && !self.any_of_roles.iter().any(|role| signed.contains(role))
        {
            reasons.push(format!(
                "a valid signature of {sender}'s {} is required",
                role_list(&self.any_of_roles).replace(", ", " or ")
            ));
        }
        if !self.signing_order.is_empty()
            && let Err(reason) = self.check_order(sender, reports)
        {
            reasons.push(reason);
        }
        let failed = reports.iter().filter(|r| !r.passed()).count();
        if !reasons.is_empty() && failed > 0 {
            reasons.push(format!(
                "{failed} signature(s) did not pass verification; see the reports"
            ));
        }
        self.verdict(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Fingerprint, Indication, SignerFacts};

    fn code(text: &str) -> OrgCode {
        OrgCode::parse(text, "t").expect("code")
    }

    fn report(agency: &str, role: Role, passed: bool) -> Report {
        Report {
            attachment: "a.pdf".into(),
            indication: if passed {
                Indication::TotalPassed
            } else {
                Indication::TotalFailed
            },
            sub_indication: None,
            message: String::new(),
            signer: Some(SignerFacts {
                subject: String::new(),
                issuer: String::new(),
                serial_hex: String::new(),
                fingerprint: Fingerprint([0; 32]),
                signing_time: None,
                registered: Some((code(agency), role)),
            }),
            checks: Vec::new(),
            verified_at: 0,
            embedded: None,
        }
    }

    fn embedded(agency: &str, role: Role, revision: u32) -> Report {
        Report {
            embedded: Some(crate::report::Embedded {
                field: format!("Sig{revision}"),
                revision,
                revisions: 2,
                whole_document: revision == 2,
            }),
            ..report(agency, role, true)
        }
    }

    #[test]
    fn cong_van_wants_the_head_then_the_seal_over_it() {
        let policy = Policy::cong_van();
        let sender = code(COMMUNE);
        let good = [
            embedded(COMMUNE, Role::Head, 1),
            embedded(COMMUNE, Role::Organization, 2),
        ];
        assert_eq!(policy.check_signatures(&sender, &good), Ok(()));
        let reversed = [
            embedded(COMMUNE, Role::Organization, 1),
            embedded(COMMUNE, Role::Head, 2),
        ];
        let refusal = policy
            .check_signatures(&sender, &reversed)
            .expect_err("seal first");
        assert!(
            refusal.reasons[0].contains("head, then organization")
                && refusal.reasons[0].contains("organization at revision 1, head at revision 2"),
            "{refusal:?}"
        );
        let detached = [
            report(COMMUNE, Role::Head, true),
            report(COMMUNE, Role::Organization, true),
        ];
        let refusal = policy
            .check_signatures(&sender, &detached)
            .expect_err("detached signatures prove no order");
        assert!(
            refusal.reasons[0].contains("no PDF attachment"),
            "{refusal:?}"
        );
        let foreign = [
            embedded(COMMUNE, Role::Head, 1),
            embedded(OTHER, Role::Organization, 2),
        ];
        assert!(policy.check_signatures(&sender, &foreign).is_err());
    }

    fn treasury() -> Policy {
        Policy {
            document_type: "treasury.payment-order".into(),
            required_roles: vec![Role::AccountOwner, Role::ChiefAccountant],
            any_of_roles: Vec::new(),
            allowed_recipients: vec![code("000.00.90.H56")],
            signing_order: Vec::new(),
        }
    }

    const COMMUNE: &str = "000.01.31.H56";
    const OTHER: &str = "000.02.31.H56";

    #[test]
    fn treasury_needs_both_roles_of_the_sender() {
        let both = [
            report(COMMUNE, Role::AccountOwner, true),
            report(COMMUNE, Role::ChiefAccountant, true),
        ];
        assert_eq!(treasury().check_signatures(&code(COMMUNE), &both), Ok(()));
        let one = [report(COMMUNE, Role::AccountOwner, true)];
        let refusal = treasury()
            .check_signatures(&code(COMMUNE), &one)
            .expect_err("one role");
        assert!(
            refusal.reasons[0].contains("chief-accountant"),
            "{refusal:?}"
        );
        let foreign = [
            report(COMMUNE, Role::AccountOwner, true),
            report(OTHER, Role::ChiefAccountant, true),
        ];
        assert!(
            treasury()
                .check_signatures(&code(COMMUNE), &foreign)
                .is_err(),
            "another commune's accountant"
        );
        let invalid = [
            report(COMMUNE, Role::AccountOwner, true),
            report(COMMUNE, Role::ChiefAccountant, false),
        ];
        let refusal = treasury()
            .check_signatures(&code(COMMUNE), &invalid)
            .expect_err("invalid");
        assert!(
            refusal.reasons.iter().any(|r| r.contains("did not pass")),
            "{refusal:?}"
        );
    }

    #[test]
    fn the_default_wants_organization_or_head() {
        let policy = Policy::builtin_default();
        assert!(policy.check_signatures(&code(COMMUNE), &[]).is_err());
        assert!(
            policy
                .check_signatures(&code(COMMUNE), &[report(COMMUNE, Role::Head, true)])
                .is_ok()
        );
        assert!(
            policy
                .check_signatures(&code(COMMUNE), &[report(COMMUNE, Role::Officer, true)])
                .is_err()
        );
    }

    #[test]
    fn recipients_can_be_restricted() {
        assert!(
            treasury()
                .check_recipients(&[code("000.00.90.H56")])
                .is_ok()
        );
        let refusal = treasury()
            .check_recipients(&[code("000.00.91.H56")])
            .expect_err("bank");
        assert!(refusal.reasons[0].contains("000.00.91.H56"));
        assert!(
            Policy::builtin_default()
                .check_recipients(&[code("000.00.91.H56")])
                .is_ok()
        );
    }

    #[test]
    fn document_type_names_are_checked() {
        let mut policy = treasury();
        policy.document_type = "Bad Type".into();
        assert!(policy.validate().is_err());
    }
}
