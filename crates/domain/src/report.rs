//! The validation report of one signature, after ETSI EN 319 102-1: an
//! indication, a sub-indication, a sentence, the signer and every check.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{clock::UnixMillis, envelope::OrgCode};

/// The role a signer certificate is registered for within its agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The agency's organizational signature (NĐ 30/2020).
    Organization,
    /// The head of the agency.
    Head,
    /// Chủ tài khoản: the account owner, for Treasury documents.
    AccountOwner,
    /// Kế toán trưởng: the chief accountant, for Treasury documents.
    ChiefAccountant,
    /// Any other registered officer.
    Officer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Organization,
        Role::Head,
        Role::AccountOwner,
        Role::ChiefAccountant,
        Role::Officer,
    ];

    /// The name used on the command line and in config files.
    pub fn name(self) -> &'static str {
        match self {
            Role::Organization => "organization",
            Role::Head => "head",
            Role::AccountOwner => "account-owner",
            Role::ChiefAccountant => "chief-accountant",
            Role::Officer => "officer",
        }
    }

    /// Parses a name as [`Role::name`] writes it (or in upper snake case).
    pub fn parse(text: &str) -> Option<Self> {
        let normal = text.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL.into_iter().find(|role| role.name() == normal)
    }
}

/// Overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Indication {
    /// Every check passed.
    TotalPassed,
    /// Cannot be judged now or without more proof.
    Indeterminate,
    /// Failed for good.
    TotalFailed,
}

/// Why a signature did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubIndication {
    /// The CMS could not be read.
    FormatFailure,
    /// The content does not match the signed digest.
    HashFailure,
    /// The signature value does not verify.
    SigCryptoFailure,
    /// A certificate of the chain is revoked.
    RevokedNoPoe,
    /// No chain to a trust anchor.
    NoCertificateChainFound,
    /// Signed after the certificate expired.
    OutOfBoundsNoPoe,
    /// Signed before the certificate became valid.
    NotYetValid,
    /// Key usage or another certificate constraint forbids this use.
    ChainConstraintsFailure,
    /// An algorithm or key size below the configured minimum.
    CryptoConstraintsFailureNoPoe,
    /// A required signed attribute is missing, or the signing time is in the future.
    SigConstraintsFailure,
    /// The signed attachment is not in the document.
    SignedDataNotFound,
    /// Revocation status unknown for now: no CRL, or an expired one.
    TryLater,
}

impl SubIndication {
    /// The indication ETSI EN 319 102-1 pairs with this sub-indication.
    pub fn indication(self) -> Indication {
        match self {
            SubIndication::FormatFailure
            | SubIndication::HashFailure
            | SubIndication::SigCryptoFailure => Indication::TotalFailed,
            SubIndication::RevokedNoPoe
            | SubIndication::NoCertificateChainFound
            | SubIndication::OutOfBoundsNoPoe
            | SubIndication::NotYetValid
            | SubIndication::ChainConstraintsFailure
            | SubIndication::CryptoConstraintsFailureNoPoe
            | SubIndication::SigConstraintsFailure
            | SubIndication::SignedDataNotFound
            | SubIndication::TryLater => Indication::Indeterminate,
        }
    }

    /// The ETSI name.
    pub fn name(self) -> &'static str {
        match self {
            SubIndication::FormatFailure => "FORMAT_FAILURE",
            SubIndication::HashFailure => "HASH_FAILURE",
            SubIndication::SigCryptoFailure => "SIG_CRYPTO_FAILURE",
            SubIndication::RevokedNoPoe => "REVOKED_NO_POE",
            SubIndication::NoCertificateChainFound => "NO_CERTIFICATE_CHAIN_FOUND",
            SubIndication::OutOfBoundsNoPoe => "OUT_OF_BOUNDS_NO_POE",
            SubIndication::NotYetValid => "NOT_YET_VALID",
            SubIndication::ChainConstraintsFailure => "CHAIN_CONSTRAINTS_FAILURE",
            SubIndication::CryptoConstraintsFailureNoPoe => "CRYPTO_CONSTRAINTS_FAILURE_NO_POE",
            SubIndication::SigConstraintsFailure => "SIG_CONSTRAINTS_FAILURE",
            SubIndication::SignedDataNotFound => "SIGNED_DATA_NOT_FOUND",
            SubIndication::TryLater => "TRY_LATER",
        }
    }
}

/// One named check and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Short name: `format`, `signed_attributes`, `content_digest`, ...
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// Who signed, as far as the CMS and the registry tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerFacts {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, hex.
    pub serial_hex: String,
    /// SHA-256 of the certificate.
    pub fingerprint: Fingerprint,
    /// The signing-time attribute.
    pub signing_time: Option<UnixMillis>,
    /// The agency and role the certificate is registered to.
    pub registered: Option<(OrgCode, Role)>,
}

/// The report of one signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The attachment it covers.
    pub attachment: String,
    /// Overall result.
    pub indication: Indication,
    /// Why, unless it passed.
    pub sub_indication: Option<SubIndication>,
    /// One sentence a person can act on.
    pub message: String,
    /// The signer, when known.
    pub signer: Option<SignerFacts>,
    /// Every check that ran, in order.
    pub checks: Vec<Check>,
    /// When it was verified.
    pub verified_at: UnixMillis,
    /// Where the signature sits when it is embedded in the document (a PDF
    /// signature field); `None` for a detached CMS signature.
    pub embedded: Option<Embedded>,
}

/// Where an embedded signature sits in its document: the field that holds
/// it and the revision (incremental update) it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Embedded {
    /// The signature field's full name (`Sig1`, `form.Seal`).
    pub field: String,
    /// The revision the signature covers, 1 for the original document's.
    pub revision: u32,
    /// How many revisions the document has.
    pub revisions: u32,
    /// Whether the signature covers the whole file as received (nothing was
    /// appended after it).
    pub whole_document: bool,
}

/// The layouts records were stored in by earlier versions.
pub mod legacy {
    use super::*;

    /// A report as record version 1 stored it: without `embedded`.
    #[derive(Debug, Clone, Deserialize)]
    pub struct ReportV1 {
        attachment: String,
        indication: Indication,
        sub_indication: Option<SubIndication>,
        message: String,
        signer: Option<SignerFacts>,
        checks: Vec<Check>,
        verified_at: UnixMillis,
    }

    impl From<ReportV1> for Report {
        fn from(old: ReportV1) -> Self {
            Report {
                attachment: old.attachment,
                indication: old.indication,
                sub_indication: old.sub_indication,
                message: old.message,
                signer: old.signer,
                checks: old.checks,
                verified_at: old.verified_at,
                embedded: None,
            }
        }
    }
}

impl Report {
    /// True for TOTAL_PASSED.
    pub fn passed(&self) -> bool {
        self.indication == Indication::TotalPassed
    }
}

/// SHA-256 of a certificate's DER. Hex in human-readable formats (JSON),
/// raw bytes in compact ones.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
        } else {
            Ok(Self(<[u8; 32]>::deserialize(deserializer)?))
        }
    }
}

impl Fingerprint {
    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).ok()?;
        Some(Self(out))
    }

    /// The fingerprint of `der`.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}
