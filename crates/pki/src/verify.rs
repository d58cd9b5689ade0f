//! Verifies one detached CMS signature and explains the result: every check
//! runs in a fixed order and the first failure decides the sub-indication.

use std::time::Duration;

use openssl::{
    cms::CmsContentInfo,
    hash::{Hasher, MessageDigest, hash},
    nid::Nid,
    pkey::Id,
    stack::Stack,
    x509::{CrlStatus, X509, X509StoreContext},
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{
    Check, Fingerprint, Indication, Report, Role, SignerFacts, SubIndication, ffi,
    trust::{TrustStore, name_der, name_text},
    unix_seconds,
};
use crate::{
    clock::{UnixMillis, format_rfc3339},
    envelope::OrgCode,
};

/// The algorithm and time rules a signature must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoRules {
    /// Smallest RSA modulus, bits.
    pub min_rsa_bits: u32,
    /// Smallest EC key, bits.
    pub min_ec_bits: u32,
    /// How far in the future a signing time may be (clock skew).
    pub signing_time_skew: Duration,
}

impl Default for CryptoRules {
    fn default() -> Self {
        Self {
            min_rsa_bits: 2048,
            min_ec_bits: 256,
            signing_time_skew: Duration::from_secs(300),
        }
    }
}

/// Finds the agency and role a signer certificate is registered to.
pub type SignerLookup<'a> = &'a dyn Fn(&Fingerprint) -> Option<(OrgCode, Role)>;

/// Checks run in order; the first failure decides the outcome.
struct Checks {
    checks: Vec<Check>,
    failure: Option<(SubIndication, String)>,
}

impl Checks {
    fn new() -> Self {
        Self {
            checks: Vec::new(),
            failure: None,
        }
    }

    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_owned(),
            passed: true,
            detail: detail.into(),
        });
    }

    fn fail(&mut self, name: &str, sub: SubIndication, sentence: impl Into<String>) {
        let sentence = sentence.into();
        self.checks.push(Check {
            name: name.to_owned(),
            passed: false,
            detail: sentence.clone(),
        });
        if self.failure.is_none() {
            self.failure = Some((sub, sentence));
        }
    }

    fn record(&mut self, name: &str, result: Result<String, (SubIndication, String)>) {
        match result {
            Ok(detail) => self.pass(name, detail),
            Err((sub, sentence)) => self.fail(name, sub, sentence),
        }
    }

    fn report(self, attachment: &str, signer: Option<SignerFacts>, now: UnixMillis) -> Report {
        let (indication, sub_indication, message) = match self.failure {
            None => {
                let who = signer
                    .as_ref()
                    .map_or("the signer".to_owned(), |s| s.subject.clone());
                let when = signer
                    .as_ref()
                    .and_then(|s| s.signing_time)
                    .map_or(String::new(), |t| format!(" at {}", format_rfc3339(t)));
                (
                    Indication::TotalPassed,
                    None,
                    format!("valid signature by {who}{when}"),
                )
            }
            Some((sub, sentence)) => (sub.indication(), Some(sub), sentence),
        };
        Report {
            attachment: attachment.to_owned(),
            indication,
            sub_indication,
            message,
            signer,
            checks: self.checks,
            verified_at: now,
            embedded: None,
        }
    }
}

/// The report for an attachment the document does not carry.
pub fn missing_attachment(attachment: &str, now: UnixMillis) -> Report {
    let mut checks = Checks::new();
    checks.fail(
        "signed_data",
        SubIndication::SignedDataNotFound,
        format!("the signature names attachment {attachment:?}, which the document does not carry"),
    );
    checks.report(attachment, None, now)
}

/// The signed content: bytes in memory, or a file read in pieces so that a
/// document of any size is verified in bounded memory.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A file, hashed as it is read.
    File(&'a std::path::Path),
    /// Pieces hashed one after the other: the byte ranges a PDF signature
    /// covers.
    Parts(&'a [&'a [u8]]),
}

impl Content<'_> {
    /// The digest of the content and its length in bytes.
    fn digest(&self, algorithm: MessageDigest) -> Result<(Vec<u8>, u64), String> {
        match self {
            Content::Bytes(bytes) => hash(algorithm, bytes)
                .map(|d| (d.to_vec(), bytes.len() as u64))
                .map_err(|e| e.to_string()),
            Content::Parts(parts) => {
                let mut hasher = Hasher::new(algorithm).map_err(|e| e.to_string())?;
                let mut length = 0u64;
                for part in *parts {
                    hasher.update(part).map_err(|e| e.to_string())?;
                    length += part.len() as u64;
                }
                let digest = hasher.finish().map_err(|e| e.to_string())?;
                Ok((digest.to_vec(), length))
            }
            Content::File(path) => {
                use std::io::Read;
                let mut file = std::fs::File::open(path)
                    .map_err(|e| format!("opening {}: {e}", path.display()))?;
                let mut hasher = Hasher::new(algorithm).map_err(|e| e.to_string())?;
                let mut buffer = vec![0u8; 256 * 1024];
                let mut length = 0u64;
                loop {
                    let read = file
                        .read(&mut buffer)
                        .map_err(|e| format!("reading {}: {e}", path.display()))?;
                    if read == 0 {
                        break;
                    }
                    length += read as u64;
                    hasher.update(&buffer[..read]).map_err(|e| e.to_string())?;
                }
                let digest = hasher.finish().map_err(|e| e.to_string())?;
                Ok((digest.to_vec(), length))
            }
        }
    }
}

/// Verifies `cms_der` over `content`: one report per signer. A
/// `claimed_time` (seconds) stands in for a missing signing-time attribute:
/// the `/M` of a PAdES signature, which carries no such attribute.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    trust: &TrustStore,
    rules: &CryptoRules,
    now: UnixMillis,
    content: Content<'_>,
    cms_der: &[u8],
    attachment: &str,
    lookup: SignerLookup<'_>,
    claimed_time: Option<i64>,
) -> Vec<Report> {
    let format_failure = |sentence: String| {
        let mut checks = Checks::new();
        checks.fail("format", SubIndication::FormatFailure, sentence);
        vec![checks.report(attachment, None, now)]
    };
    let cms = match CmsContentInfo::from_der(cms_der) {
        Ok(cms) => cms,
        Err(error) => {
            return format_failure(format!("the signature is not a DER CMS structure: {error}"));
        }
    };
    let mut extra = match Stack::new() {
        Ok(stack) => stack,
        Err(error) => return format_failure(format!("internal: {error}")),
    };
    for certificate in &trust.intermediates {
        let _ = extra.push(certificate.clone());
    }
    let embedded = match ffi::attach_signer_certs(&cms, &extra) {
        Ok(embedded) => embedded,
        Err(error) => return format_failure(format!("internal: {error}")),
    };
    let infos = ffi::signer_infos(&cms);
    if infos.is_empty() {
        return format_failure("the CMS carries no signer (is it SignedData?)".to_owned());
    }
    let mut untrusted = Vec::new();
    untrusted.extend(embedded.iter().map(|c| c.to_owned()));
    untrusted.extend(trust.intermediates.iter().cloned());
    infos
        .iter()
        .map(|info| {
            verify_signer(
                trust,
                rules,
                now,
                content,
                info,
                &untrusted,
                attachment,
                lookup,
                claimed_time,
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn verify_signer(
    trust: &TrustStore,
    rules: &CryptoRules,
    now: UnixMillis,
    content: Content<'_>,
    info: &ffi::SignerInfo<'_>,
    untrusted: &[X509],
    attachment: &str,
    lookup: SignerLookup<'_>,
    claimed_time: Option<i64>,
) -> Report {
    let mut checks = Checks::new();
    checks.pass("format", "CMS SignedData parsed");
    let Some(certificate) = info.certificate() else {
        checks.fail(
            "signer_certificate",
            SubIndication::NoCertificateChainFound,
            "the signer's certificate is neither embedded in the signature nor known to the gateway",
        );
        return checks.report(attachment, None, now);
    };
    let der = certificate.to_der().unwrap_or_default();
    let attribute_time = info.signing_time();
    let signing_time = attribute_time.or(claimed_time);
    let signer = signer_facts(&certificate, &der, signing_time, lookup);
    let fingerprint = signer.fingerprint;
    checks.pass(
        "signer_certificate",
        format!("{} (sha256 {fingerprint})", signer.subject),
    );
    checks.record(
        "signed_attributes",
        signed_attributes(info, attribute_time, claimed_time),
    );
    checks.record("content_digest", content_digest(info, content, attachment));
    checks.record(
        "signature_value",
        if info.verify_signature() {
            Ok("the signature value verifies with the signer's public key".to_owned())
        } else {
            Err((
                SubIndication::SigCryptoFailure,
                "the signature value does not verify with the signer's public key".to_owned(),
            ))
        },
    );
    let parsed = X509Certificate::from_der(&der).map(|(_, c)| c);
    checks.record("algorithms", algorithms(rules, info, &certificate));
    checks.record("key_usage", key_usage(parsed.as_ref().ok()));
    let at = signing_time.unwrap_or(now / 1000);
    checks.record("validity", validity(parsed.as_ref().ok(), at, now, rules));
    chain_and_revocation(&mut checks, trust, &certificate, untrusted, at, now);
    checks.report(attachment, Some(signer), now)
}

/// The facts of the signer's certificate (`der` is its DER) a report names.
fn signer_facts(
    certificate: &X509,
    der: &[u8],
    signing_time: Option<i64>,
    lookup: SignerLookup<'_>,
) -> SignerFacts {
    let fingerprint = Fingerprint::of_der(der);
    SignerFacts {
        subject: name_text(certificate.subject_name()),
        issuer: name_text(certificate.issuer_name()),
        serial_hex: certificate
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_hex_str().map(|s| s.to_ascii_lowercase()))
            .unwrap_or_default(),
        fingerprint,
        signing_time: signing_time.map(|s| s.saturating_mul(1000)),
        registered: lookup(&fingerprint),
    }
}

/// The last two checks of any signature: a chain to a trust anchor at
/// `at`, then every certificate of it against fresh CRLs.
fn chain_and_revocation(
    checks: &mut Checks,
    trust: &TrustStore,
    certificate: &X509,
    untrusted: &[X509],
    at: i64,
    now: UnixMillis,
) {
    match chain(trust, certificate, untrusted, at) {
        Ok(chain) => {
            checks.pass(
                "chain",
                format!("{} certificates up to a trust anchor", chain.len()),
            );
            checks.record("revocation", revocation(trust, &chain, now));
        }
        Err(failure) => checks.record("chain", Err(failure)),
    }
}

type Outcome = Result<String, (SubIndication, String)>;

fn signed_attributes(
    info: &ffi::SignerInfo<'_>,
    signing_time: Option<i64>,
    claimed_time: Option<i64>,
) -> Outcome {
    let mut missing = Vec::new();
    if !info.has_signed_attribute(Nid::PKCS9_CONTENTTYPE) {
        missing.push("content type");
    }
    if info.message_digest().is_none() {
        missing.push("message digest");
    }
    if signing_time.is_none() && claimed_time.is_none() {
        missing.push("signing time");
    }
    if missing.is_empty() && signing_time.is_none() {
        Ok("content type and message digest are signed; the signing time is the one the document claims (/M)".to_owned())
    } else if missing.is_empty() {
        Ok("content type, message digest and signing time are signed".to_owned())
    } else {
        Err((
            SubIndication::SigConstraintsFailure,
            format!(
                "required signed attributes are missing: {}",
                missing.join(", ")
            ),
        ))
    }
}

fn content_digest(info: &ffi::SignerInfo<'_>, content: Content<'_>, attachment: &str) -> Outcome {
    let Some(digest) = info.digest() else {
        return Err((
            SubIndication::FormatFailure,
            format!(
                "unknown digest algorithm {:?}",
                info.digest_nid().short_name().unwrap_or("?")
            ),
        ));
    };
    let Some(signed) = info.message_digest() else {
        return Err((
            SubIndication::SigConstraintsFailure,
            "no message digest is signed".to_owned(),
        ));
    };
    match content.digest(digest) {
        Ok((actual, length)) if actual == signed => Ok(format!(
            "{length} bytes of {attachment:?} match the signed digest"
        )),
        Ok(_) => Err((
            SubIndication::HashFailure,
            format!(
                "the content of {attachment:?} differs from what was signed: it was changed after signing"
            ),
        )),
        Err(error) => Err((
            SubIndication::FormatFailure,
            format!("hashing the content: {error}"),
        )),
    }
}

fn weak_signature_algorithm(nid: Nid) -> bool {
    matches!(
        nid,
        Nid::MD5WITHRSAENCRYPTION
            | Nid::SHA1WITHRSAENCRYPTION
            | Nid::ECDSA_WITH_SHA1
            | Nid::DSAWITHSHA1
            | Nid::MD5
            | Nid::SHA1
    )
}

fn algorithms(rules: &CryptoRules, info: &ffi::SignerInfo<'_>, certificate: &X509) -> Outcome {
    let digest = info.digest_nid();
    let digest_name = digest.short_name().unwrap_or("?");
    if weak_signature_algorithm(digest) {
        return Err((
            SubIndication::CryptoConstraintsFailureNoPoe,
            format!(
                "the signature uses the digest {digest_name}, which is no longer accepted (use SHA-256 or stronger)"
            ),
        ));
    }
    let key = signer_key(rules, certificate, false)?;
    Ok(format!("{digest_name}, {key}"))
}

/// The signer's certificate algorithm (SHA-1 there only when `allow_sha1`)
/// and key (RSA or EC, at least the configured size): `RSA-2048`, `EC-256`.
fn signer_key(
    rules: &CryptoRules,
    certificate: &X509,
    allow_sha1: bool,
) -> Result<String, (SubIndication, String)> {
    let certificate_algorithm = certificate.signature_algorithm().object().nid();
    if weak_signature_algorithm(certificate_algorithm) && !allow_sha1 {
        return Err((
            SubIndication::CryptoConstraintsFailureNoPoe,
            format!(
                "the signer's certificate is signed with {}, which is no longer accepted",
                certificate_algorithm.short_name().unwrap_or("?")
            ),
        ));
    }
    let key = certificate.public_key().map_err(|e| {
        (
            SubIndication::FormatFailure,
            format!("reading the signer's public key: {e}"),
        )
    })?;
    let (kind, minimum) = match key.id() {
        Id::RSA => ("RSA", rules.min_rsa_bits),
        Id::EC => ("EC", rules.min_ec_bits),
        other => {
            return Err((
                SubIndication::CryptoConstraintsFailureNoPoe,
                format!("the signer's key type {other:?} is not accepted (RSA or EC only)"),
            ));
        }
    };
    if key.bits() < minimum {
        return Err((
            SubIndication::CryptoConstraintsFailureNoPoe,
            format!(
                "the signer's {kind} key has {} bits; at least {minimum} are required",
                key.bits()
            ),
        ));
    }
    Ok(format!("{kind}-{}", key.bits()))
}

fn key_usage(certificate: Option<&X509Certificate<'_>>) -> Outcome {
    let Some(certificate) = certificate else {
        return Err((
            SubIndication::FormatFailure,
            "the signer's certificate does not parse".to_owned(),
        ));
    };
    match certificate.key_usage() {
        Ok(Some(usage)) if usage.value.digital_signature() || usage.value.non_repudiation() => {
            Ok("key usage allows signing".to_owned())
        }
        Ok(Some(usage)) => Err((
            SubIndication::ChainConstraintsFailure,
            format!(
                "the signer's certificate may not sign documents: its key usage is {}",
                usage.value
            ),
        )),
        Ok(None) => Ok("no key usage restriction".to_owned()),
        Err(error) => Err((
            SubIndication::FormatFailure,
            format!("reading key usage: {error}"),
        )),
    }
}

fn validity(
    certificate: Option<&X509Certificate<'_>>,
    at: i64,
    now: UnixMillis,
    rules: &CryptoRules,
) -> Outcome {
    let Some(certificate) = certificate else {
        return Err((
            SubIndication::FormatFailure,
            "the signer's certificate does not parse".to_owned(),
        ));
    };
    let skew = i64::try_from(rules.signing_time_skew.as_secs()).unwrap_or(i64::MAX);
    let when = format_rfc3339(at.saturating_mul(1000));
    if at > now / 1000 + skew {
        return Err((
            SubIndication::SigConstraintsFailure,
            format!("the signing time {when} is in the future"),
        ));
    }
    let validity = certificate.validity();
    let (from, until) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if at < from {
        return Err((
            SubIndication::NotYetValid,
            format!(
                "signed at {when}, before the certificate became valid on {}",
                format_rfc3339(from * 1000)
            ),
        ));
    }
    if at > until {
        return Err((
            SubIndication::OutOfBoundsNoPoe,
            format!(
                "signed at {when}, after the certificate expired on {}",
                format_rfc3339(until * 1000)
            ),
        ));
    }
    Ok(format!(
        "signed at {when}, within the certificate's validity"
    ))
}

const X509_V_OK: i32 = 0;

fn chain(
    trust: &TrustStore,
    certificate: &X509,
    untrusted: &[X509],
    at: i64,
) -> Result<Vec<X509>, (SubIndication, String)> {
    let internal =
        |e: openssl::error::ErrorStack| (SubIndication::FormatFailure, format!("internal: {e}"));
    let mut stack = Stack::new().map_err(internal)?;
    for certificate in untrusted {
        stack.push(certificate.clone()).map_err(internal)?;
    }
    let mut context = X509StoreContext::new().map_err(internal)?;
    let (verified, code, message, built) = context
        .init(&trust.store, certificate, &stack, |context| {
            ffi::context_set_time_and_flags(context, at, 0);
            let verified = context.verify_cert()?;
            let error = context.error();
            let built: Vec<X509> = context
                .chain()
                .map(|chain| chain.iter().map(|c| c.to_owned()).collect())
                .unwrap_or_default();
            Ok((
                verified,
                error.as_raw(),
                error.error_string().to_owned(),
                built,
            ))
        })
        .map_err(internal)?;
    if verified && code == X509_V_OK {
        return Ok(built);
    }
    // X509_V_ERR_* codes from x509_vfy.h.
    let sub = match code {
        2 | 18 | 19 | 20 | 21 | 27 => SubIndication::NoCertificateChainFound,
        9 => SubIndication::NotYetValid,
        10 => SubIndication::OutOfBoundsNoPoe,
        _ => SubIndication::ChainConstraintsFailure,
    };
    Err((sub, format!("no valid chain to a trust anchor: {message}")))
}

fn revocation(trust: &TrustStore, chain: &[X509], now: UnixMillis) -> Outcome {
    let now_seconds = now / 1000;
    let mut checked = 0;
    for pair in chain.windows(2) {
        let (certificate, issuer) = (&pair[0], &pair[1]);
        if trust.is_anchor(certificate) {
            break;
        }
        let issuer_name = name_text(certificate.issuer_name());
        let Some(entry) = trust.crl_of(&name_der(certificate.issuer_name())) else {
            return Err((
                SubIndication::TryLater,
                format!(
                    "no CRL from {issuer_name} is known: revocation cannot be checked now; publish its CRL and try again"
                ),
            ));
        };
        match entry.next_update {
            Some(next) if next >= now_seconds => {}
            Some(next) => {
                return Err((
                    SubIndication::TryLater,
                    format!(
                        "the CRL of {issuer_name} expired on {}; publish a fresh one and try again",
                        format_rfc3339(next * 1000)
                    ),
                ));
            }
            None => {
                return Err((
                    SubIndication::TryLater,
                    format!("the CRL of {issuer_name} has no next update"),
                ));
            }
        }
        let authentic = issuer
            .public_key()
            .ok()
            .and_then(|key| entry.crl.verify(&key).ok())
            .unwrap_or(false);
        if !authentic {
            return Err((
                SubIndication::TryLater,
                format!("the CRL of {issuer_name} is not signed by its issuer's key"),
            ));
        }
        if let CrlStatus::Revoked(revoked) = entry.crl.get_by_cert(certificate) {
            let when = unix_seconds(revoked.revocation_date()).map_or_else(
                || "an unknown date".to_owned(),
                |t| format_rfc3339(t * 1000),
            );
            return Err((
                SubIndication::RevokedNoPoe,
                format!(
                    "the certificate {} was revoked on {when}",
                    name_text(certificate.subject_name())
                ),
            ));
        }
        checked += 1;
    }
    Ok(format!(
        "{checked} certificate(s) checked against fresh CRLs: none revoked"
    ))
}

/// Why a TLS client's certificate chain is revoked, if it is: the leaf (and
/// any CA above it) against the newest CRL of its issuer. A chain the trust
/// store cannot build, or a CRL that is missing or stale, is left to the TLS
/// layer's own chain check: only a listed serial refuses the client.
pub(super) fn client_revocation(
    trust: &TrustStore,
    presented: &[&[u8]],
    now: UnixMillis,
) -> Option<String> {
    let certificates: Vec<X509> = presented
        .iter()
        .filter_map(|der| X509::from_der(der).ok())
        .collect();
    let (leaf, presented_rest) = certificates.split_first()?;
    let untrusted: Vec<X509> = presented_rest
        .iter()
        .chain(&trust.intermediates)
        .cloned()
        .collect();
    let built = chain(trust, leaf, &untrusted, now / 1000).ok()?;
    match revocation(trust, &built, now) {
        Err((SubIndication::RevokedNoPoe, reason)) => Some(reason),
        _ => None,
    }
}

/// Whether a certificate being registered could ever be used: valid now
/// (the dates named when not) and issued, through `trust`'s anchors and
/// intermediates, by a trusted CA (the issuer named when not).
pub fn certificate_usable(trust: &TrustStore, der: &[u8], now: UnixMillis) -> Result<(), String> {
    let certificate = X509::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
    let now_seconds = now / 1000;
    let not_before = unix_seconds(certificate.not_before());
    let not_after = unix_seconds(certificate.not_after());
    if let Some(start) = not_before
        && start > now_seconds
    {
        return Err(format!("not valid before {}", format_rfc3339(start * 1000)));
    }
    if let Some(end) = not_after
        && end < now_seconds
    {
        return Err(format!("expired on {}", format_rfc3339(end * 1000)));
    }
    chain(trust, &certificate, &trust.intermediates, now_seconds)
        .map(|_| ())
        .map_err(|_| {
            format!(
                "not issued by a trusted CA (issuer: {})",
                name_text(certificate.issuer_name())
            )
        })
}

/// The signature algorithm of an XML signature (`SignatureMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlSignatureMethod {
    /// `rsa-sha1` (weak: accepted only where the caller allows it).
    RsaSha1,
    /// `rsa-sha256`.
    RsaSha256,
    /// `ecdsa-sha1` (weak).
    EcdsaSha1,
    /// `ecdsa-sha256`.
    EcdsaSha256,
}

impl XmlSignatureMethod {
    /// The method named by an algorithm URI.
    pub fn from_uri(uri: &str) -> Option<Self> {
        Some(match uri {
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1" => Self::RsaSha1,
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => Self::RsaSha256,
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1" => Self::EcdsaSha1,
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => Self::EcdsaSha256,
            _ => return None,
        })
    }

    /// The algorithm URI.
    pub fn uri(self) -> &'static str {
        match self {
            Self::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            Self::RsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            Self::EcdsaSha1 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
            Self::EcdsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        }
    }

    /// Whether it rests on SHA-1.
    pub fn weak(self) -> bool {
        matches!(self, Self::RsaSha1 | Self::EcdsaSha1)
    }

    fn digest(self) -> MessageDigest {
        if self.weak() {
            MessageDigest::sha1()
        } else {
            MessageDigest::sha256()
        }
    }

    fn key_id(self) -> Id {
        match self {
            Self::RsaSha1 | Self::RsaSha256 => Id::RSA,
            Self::EcdsaSha1 | Self::EcdsaSha256 => Id::EC,
        }
    }
}

/// An XML signature (XML-DSig) taken apart by the edXML reader: the
/// canonical `SignedInfo`, what its reference digest check found, and the
/// certificates of `KeyInfo`.
#[derive(Debug, Clone)]
pub struct XmlSignature<'a> {
    /// The canonicalized `SignedInfo` element: what the signature value signs.
    pub signed_info: &'a [u8],
    /// The decoded `SignatureValue` (RSA: the PKCS#1 block; ECDSA: r || s).
    pub value: &'a [u8],
    /// `SignatureMethod`.
    pub method: XmlSignatureMethod,
    /// The reference's digest check: `Ok(what matched)` or `Err(what differs)`.
    pub reference: Result<String, String>,
    /// Whether the reference's digest is SHA-1.
    pub reference_sha1: bool,
    /// `X509Certificate`s of `KeyInfo`, DER, the signer's first or among them.
    pub certificates: Vec<Vec<u8>>,
    /// SHA-1 (signature or digest) is accepted, flagged as weak.
    pub allow_sha1: bool,
    /// A sentence on the signature's form, for the format check.
    pub form: String,
    /// The time the document claims it was signed (seconds), if any.
    pub claimed_time: Option<i64>,
}

/// Verifies an XML signature with the same checks, in the same order, as a
/// CMS one: certificate, reference digest, signature value, algorithms,
/// key usage, validity at the claimed time, chain, revocation.
pub fn verify_xml(
    trust: &TrustStore,
    rules: &CryptoRules,
    now: UnixMillis,
    signature: &XmlSignature<'_>,
    label: &str,
    lookup: SignerLookup<'_>,
) -> Report {
    let mut checks = Checks::new();
    checks.pass("format", signature.form.clone());
    let parsed: Vec<X509> = signature
        .certificates
        .iter()
        .filter_map(|der| X509::from_der(der).ok())
        .collect();
    // The signer is the certificate whose key verifies the value; with one
    // certificate, that one (a wrong value then fails below).
    let verifies = |certificate: &X509| -> bool {
        certificate
            .public_key()
            .ok()
            .is_some_and(|key| xml_value_verifies(signature, &key))
    };
    let verifying = parsed.iter().find(|c| verifies(c));
    let value_verifies = verifying.is_some();
    let Some(certificate) = verifying.or(parsed.first()).cloned() else {
        checks.fail(
            "signer_certificate",
            SubIndication::NoCertificateChainFound,
            "KeyInfo carries no X509Certificate the gateway can read",
        );
        return checks.report(label, None, now);
    };
    let der = certificate.to_der().unwrap_or_default();
    let signer = signer_facts(&certificate, &der, signature.claimed_time, lookup);
    let fingerprint = signer.fingerprint;
    checks.pass(
        "signer_certificate",
        format!("{} (sha256 {fingerprint})", signer.subject),
    );
    checks.record(
        "reference_digest",
        signature
            .reference
            .clone()
            .map_err(|sentence| (SubIndication::HashFailure, sentence)),
    );
    checks.record(
        "signature_value",
        if value_verifies {
            Ok("the SignatureValue verifies over the canonical SignedInfo".to_owned())
        } else {
            Err((
                SubIndication::SigCryptoFailure,
                "the SignatureValue does not verify with the signer's public key over the canonical SignedInfo".to_owned(),
            ))
        },
    );
    checks.record("algorithms", xml_algorithms(rules, signature, &certificate));
    let parsed_cert = X509Certificate::from_der(&der).map(|(_, c)| c);
    checks.record("key_usage", key_usage(parsed_cert.as_ref().ok()));
    let at = signature.claimed_time.unwrap_or(now / 1000);
    let valid = validity(parsed_cert.as_ref().ok(), at, now, rules);
    checks.record(
        "validity",
        match (valid, signature.claimed_time) {
            // XML-DSig carries no signing time: say what was checked.
            (Ok(_), None) => Ok(format!(
                "the certificate is valid now ({}); an XML signature carries no signing time",
                format_rfc3339(now)
            )),
            (other, _) => other,
        },
    );
    let mut untrusted: Vec<X509> = parsed
        .iter()
        .filter(|c| **c != certificate)
        .cloned()
        .collect();
    untrusted.extend(trust.intermediates.iter().cloned());
    chain_and_revocation(&mut checks, trust, &certificate, &untrusted, at, now);
    let weak = signature.method.weak() || signature.reference_sha1;
    let mut report = checks.report(label, Some(signer), now);
    if weak && report.passed() {
        report
            .message
            .push_str(" (weak: SHA-1, accepted by configuration)");
    }
    report
}

fn xml_value_verifies(
    signature: &XmlSignature<'_>,
    key: &openssl::pkey::PKey<openssl::pkey::Public>,
) -> bool {
    if key.id() != signature.method.key_id() {
        return false;
    }
    let der;
    let value = if key.id() == Id::EC {
        // XML-DSig writes ECDSA as r || s, each as wide as the curve.
        let half = signature.value.len() / 2;
        if half == 0 || signature.value.len() % 2 != 0 {
            return false;
        }
        let (r, s) = signature.value.split_at(half);
        let pair = openssl::bn::BigNum::from_slice(r).and_then(|r| {
            openssl::bn::BigNum::from_slice(s)
                .and_then(|s| openssl::ecdsa::EcdsaSig::from_private_components(r, s))
        });
        match pair.and_then(|sig| sig.to_der()) {
            Ok(encoded) => der = encoded,
            Err(_) => return false,
        }
        der.as_slice()
    } else {
        signature.value
    };
    openssl::sign::Verifier::new(signature.method.digest(), key)
        .and_then(|mut verifier| {
            verifier.update(signature.signed_info)?;
            verifier.verify(value)
        })
        .unwrap_or(false)
}

fn xml_algorithms(
    rules: &CryptoRules,
    signature: &XmlSignature<'_>,
    certificate: &X509,
) -> Outcome {
    let weak = signature.method.weak() || signature.reference_sha1;
    if weak && !signature.allow_sha1 {
        return Err((
            SubIndication::CryptoConstraintsFailureNoPoe,
            "the signature uses SHA-1, which is accepted only where [edxml] accept_sha1 allows it (sign with SHA-256)".to_owned(),
        ));
    }
    let key = signer_key(rules, certificate, signature.allow_sha1)?;
    let digest = if weak { "SHA-1 (weak)" } else { "SHA-256" };
    Ok(format!("{digest}, {key}"))
}

/// The report of a signature that cannot be read at all.
pub fn format_failure(label: &str, sentence: impl Into<String>, now: UnixMillis) -> Report {
    let mut checks = Checks::new();
    checks.fail("format", SubIndication::FormatFailure, sentence);
    checks.report(label, None, now)
}
