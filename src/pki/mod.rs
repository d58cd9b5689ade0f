//! Certificates and signatures. For now: reading certificates and their
//! SHA-256 fingerprints, which bind client certificates to agencies.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
}

/// SHA-256 of a certificate's DER.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
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
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_openssl() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/certs-test/agencies/department.crt"
        );
        let pem = std::fs::read(path).expect("certs-test present");
        let fingerprint = pem_fingerprint(&pem).expect("parses");
        let output = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", path])
            .output()
            .expect("openssl runs");
        let text = String::from_utf8_lossy(&output.stdout)
            .to_lowercase()
            .replace(':', "");
        assert!(
            text.contains(&fingerprint.to_hex()),
            "{text} vs {fingerprint}"
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(pem_fingerprint(b"hello"), Err(PkiError::NoCertificate));
        let bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            pem_fingerprint(bad),
            Err(PkiError::BadCertificate(_))
        ));
    }
}
