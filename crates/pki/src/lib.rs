//! Certificates and signatures: certificate facts and fingerprints, the
//! trust store (anchors, intermediates, CRLs), and CMS verification with an
//! ETSI-style report. The only module that touches OpenSSL.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod ffi;
mod keystore;
mod sign;
mod trust;
mod verify;

use std::sync::{Arc, RwLock};

use openssl::asn1::{Asn1Time, Asn1TimeRef};

pub use keystore::{
    KeyStore, Passphrase, SealedKey, SigningKey, SoftKeyStore, signing_key_from_pem,
};
pub use lienthong_domain::report::{
    Check, Fingerprint, Indication, Report, Role, SignerFacts, SubIndication,
};
pub use sign::{
    StreamSigner, begin_streaming, certificate_chain_der, co_sign, sign_detached, sign_plain,
    sign_xml, verify_plain, xml_signature_method,
};
pub use trust::{
    Certificate, Crl, CrlEntry, CrlFacts, TrustStore, certificate_from_der, certificates_from_pem,
    crl_facts, crl_from_bytes,
};
pub use verify::{
    Content, CryptoRules, SignerLookup, XmlSignature, XmlSignatureMethod, certificate_usable,
    format_failure, missing_attachment,
};

use lienthong_domain::{
    clock::{self, Clock, UnixMillis},
    envelope,
};

use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    /// The input held no PEM certificate.
    #[error("no PEM certificate found")]
    NoCertificate,
    /// The PEM text is malformed.
    #[error("malformed PEM: {0}")]
    BadPem(String),
    /// The DER does not parse as an X.509 certificate.
    #[error("not an X.509 certificate: {0}")]
    BadCertificate(String),
    /// The bytes are not a CRL.
    #[error("not a CRL (PEM or DER): {0}")]
    BadCrl(String),
    /// A private key that cannot be used.
    #[error("private key: {0}")]
    BadKey(String),
    /// The keystore cannot be opened or written.
    #[error("keystore: {0}")]
    Locked(String),
    /// Making a signature failed.
    #[error("signing: {0}")]
    Signing(String),
    /// A CRL not issued by a known CA, or not signed by its key.
    #[error("untrusted CRL: {0}")]
    UntrustedCrl(String),
    /// A CRL older than the one in force for its issuer.
    #[error("{0}")]
    OlderCrl(String),
}

/// Seconds since the Unix epoch of an ASN.1 time.
pub(crate) fn unix_seconds(time: &Asn1TimeRef) -> Option<i64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(time).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// Verifies signatures against a trust store that can be swapped whole.
pub struct Verifier {
    trust: RwLock<Arc<TrustStore>>,
    rules: CryptoRules,
    clock: Arc<dyn Clock>,
    /// TLS client certificates already checked against the trust store in
    /// force: fingerprint → why revoked (`None`: not revoked). Emptied when
    /// the trust store changes.
    clients: std::sync::Mutex<std::collections::HashMap<Fingerprint, Option<String>>>,
}

/// How many client certificates the revocation cache remembers.
const CLIENT_CACHE_MAX: usize = 16_384;

impl Verifier {
    /// A verifier over `trust`.
    pub fn new(trust: TrustStore, rules: CryptoRules, clock: Arc<dyn Clock>) -> Self {
        Self {
            trust: RwLock::new(Arc::new(trust)),
            rules,
            clock,
            clients: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The trust store in force.
    pub fn trust(&self) -> Arc<TrustStore> {
        self.trust.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the trust store; verifications under way keep the old one.
    pub fn replace_trust(&self, trust: TrustStore) {
        let mut slot = self.trust.write().unwrap_or_else(|p| p.into_inner());
        *slot = Arc::new(trust);
        // Under the trust lock, so no check against the old store lands after.
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Why a TLS client's certificate (DER, leaf first, as presented) is
    /// revoked under the CRLs in force, or `None`. Cached per certificate
    /// until the trust store changes, so a published CRL takes effect on
    /// the next call.
    pub fn client_revoked(&self, presented: &[&[u8]]) -> Option<String> {
        let leaf = Fingerprint::of_der(presented.first()?);
        let cached = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&leaf)
            .cloned();
        if let Some(known) = cached {
            return known;
        }
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        let verdict = verify::client_revocation(&trust, presented, self.clock.now_millis());
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= CLIENT_CACHE_MAX {
            clients.clear();
        }
        clients.insert(leaf, verdict.clone());
        verdict
    }

    /// Verifies a detached CMS signature over `content`: one report per
    /// signer. CPU-bound: call it off the async reactor.
    pub fn verify(
        &self,
        content: &[u8],
        cms_der: &[u8],
        attachment: &str,
        lookup: SignerLookup<'_>,
    ) -> Vec<Report> {
        self.verify_content(Content::Bytes(content), cms_der, attachment, lookup)
    }

    /// Like [`Verifier::verify`], over bytes or a file read in pieces.
    pub fn verify_content(
        &self,
        content: Content<'_>,
        cms_der: &[u8],
        attachment: &str,
        lookup: SignerLookup<'_>,
    ) -> Vec<Report> {
        let now: UnixMillis = self.clock.now_millis();
        verify::verify(
            &self.trust(),
            &self.rules,
            now,
            content,
            cms_der,
            attachment,
            lookup,
            None,
        )
    }

    /// Verifies a signature embedded in a document (PAdES): `parts` are the
    /// signed byte ranges; `claimed_time` (seconds) is the time the document
    /// claims, used when the CMS carries no signing-time attribute.
    pub fn verify_embedded(
        &self,
        parts: &[&[u8]],
        cms_der: &[u8],
        attachment: &str,
        lookup: SignerLookup<'_>,
        claimed_time: Option<i64>,
    ) -> Vec<Report> {
        verify::verify(
            &self.trust(),
            &self.rules,
            self.clock.now_millis(),
            Content::Parts(parts),
            cms_der,
            attachment,
            lookup,
            claimed_time,
        )
    }

    /// Verifies an XML signature (edXML) with the checks of a CMS one;
    /// `label` names what it covers in the report.
    pub fn verify_xml(
        &self,
        signature: &XmlSignature<'_>,
        label: &str,
        lookup: SignerLookup<'_>,
    ) -> Report {
        verify::verify_xml(
            &self.trust(),
            &self.rules,
            self.clock.now_millis(),
            signature,
            label,
            lookup,
        )
    }

    /// The time now, as the verifier sees it.
    pub fn now(&self) -> UnixMillis {
        self.clock.now_millis()
    }
}

/// The facts of a certificate people and policies need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// Subject, RFC 4514.
    pub subject: String,
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
    /// SHA-256 of the DER.
    pub fingerprint: Fingerprint,
}

/// Every certificate in a PEM text, as DER.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, PkiError> {
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| PkiError::BadPem(e.to_string()))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    Ok(out)
}

/// Reads the facts of one DER certificate.
pub fn certificate_facts(der: &[u8]) -> Result<CertificateFacts, PkiError> {
    let (_, certificate) =
        X509Certificate::from_der(der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    Ok(CertificateFacts {
        subject: certificate.subject().to_string(),
        issuer: certificate.issuer().to_string(),
        serial_hex: certificate.raw_serial_as_string().replace(':', ""),
        fingerprint: Fingerprint::of_der(der),
    })
}

/// The fingerprint of the first certificate of a PEM text, checked to parse.
pub fn pem_fingerprint(pem: &[u8]) -> Result<Fingerprint, PkiError> {
    let ders = pem_certificates(pem)?;
    let facts = certificate_facts(&ders[0])?;
    Ok(facts.fingerprint)
}

#[cfg(test)]
mod tests;
