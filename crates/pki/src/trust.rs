//! Trust anchors, intermediates and CRLs, built into one OpenSSL store that
//! is replaced whole when any of them changes.

use openssl::x509::{X509, X509Crl, X509NameRef, store::X509Store, store::X509StoreBuilder};

use x509_parser::prelude::FromDer;

use super::{Fingerprint, PkiError, ffi, unix_seconds};

/// A certificate, parsed. Its OpenSSL form stays inside this crate: others
/// see its DER and its facts.
#[derive(Clone)]
pub struct Certificate(pub(crate) X509);

impl Certificate {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        certificate_from_der(der)
    }

    /// The DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, PkiError> {
        self.0.to_der().map_err(|e| bad("certificate", e))
    }

    /// Subject, issuer, serial and fingerprint.
    pub fn facts(&self) -> Result<super::CertificateFacts, PkiError> {
        super::certificate_facts(&self.to_der()?)
    }

    /// Whether subject and issuer are the same name (a root, for people).
    pub fn is_self_issued(&self) -> bool {
        name_der(self.0.subject_name()) == name_der(self.0.issuer_name())
    }
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Certificate({})", name_text(self.0.subject_name()))
    }
}

/// A certificate revocation list, parsed (OpenSSL's form stays inside).
pub struct Crl(pub(crate) X509Crl);

impl Crl {
    /// Reads a CRL in PEM or DER.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PkiError> {
        crl_from_bytes(bytes)
    }

    /// What storing and listing it needs.
    pub fn facts(&self) -> Result<CrlFacts, PkiError> {
        crl_facts(self)
    }
}

/// A CRL and the facts the verifier needs.
pub struct CrlEntry {
    /// The CRL.
    pub(crate) crl: X509Crl,
    /// Its issuer's name, DER.
    pub issuer_der: Vec<u8>,
    /// Its issuer's name, for people.
    pub issuer: String,
    /// When the next CRL is due (Unix seconds); none means never fresh.
    pub next_update: Option<i64>,
    /// SHA-256 of the CRL's DER.
    pub fingerprint: Fingerprint,
    /// Its CRL number (big-endian, no leading zeros), when it has one.
    pub number: Option<Vec<u8>>,
    /// When it was issued (Unix seconds).
    pub this_update: i64,
}

/// Orders CRLs of one issuer: the higher CRL number is newer (RFC 5280
/// 5.2.3), then the later thisUpdate. A CRL without a number sorts below
/// any numbered one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CrlAge {
    number: Option<(usize, Vec<u8>)>,
    this_update: i64,
}

impl std::fmt::Display for CrlAge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.number {
            Some((_, number)) => write!(f, "number {}", hex::encode(number))?,
            None => f.write_str("no number")?,
        }
        write!(
            f,
            ", issued {}",
            crate::clock::format_rfc3339(self.this_update * 1000)
        )
    }
}

impl CrlEntry {
    /// How new the CRL is, against others of its issuer.
    pub fn age(&self) -> CrlAge {
        CrlAge {
            number: self.number.as_ref().map(|n| (n.len(), n.clone())),
            this_update: self.this_update,
        }
    }

    fn new(crl: X509Crl) -> Result<Self, PkiError> {
        let der = crl.to_der().map_err(|e| PkiError::BadCrl(e.to_string()))?;
        let parsed = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
            .map_err(|e| PkiError::BadCrl(e.to_string()))?
            .1;
        let number = parsed.crl_number().map(|n| {
            let bytes = n.to_bytes_be();
            let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
            bytes[start..].to_vec()
        });
        Ok(Self {
            issuer_der: name_der(crl.issuer_name()),
            issuer: name_text(crl.issuer_name()),
            next_update: crl.next_update().and_then(unix_seconds),
            fingerprint: Fingerprint::of_der(&der),
            number,
            this_update: parsed.last_update().timestamp(),
            crl,
        })
    }
}

/// What the verifier trusts, built once.
pub struct TrustStore {
    pub(super) store: X509Store,
    pub(super) anchors: Vec<X509>,
    pub(super) intermediates: Vec<X509>,
    pub(super) crls: Vec<CrlEntry>,
}

pub(super) fn name_der(name: &X509NameRef) -> Vec<u8> {
    name.to_der().unwrap_or_default()
}

pub(super) fn name_text(name: &X509NameRef) -> String {
    name.entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn bad(what: &str, error: impl std::fmt::Display) -> PkiError {
    PkiError::BadCertificate(format!("{what}: {error}"))
}

/// Reads every certificate of PEM texts.
pub fn certificates_from_pem(pems: &[Vec<u8>]) -> Result<Vec<Certificate>, PkiError> {
    let mut out = Vec::new();
    for pem in pems {
        for der in super::pem_certificates(pem)? {
            out.push(certificate_from_der(&der)?);
        }
    }
    Ok(out)
}

/// Reads one DER certificate.
pub fn certificate_from_der(der: &[u8]) -> Result<Certificate, PkiError> {
    X509::from_der(der)
        .map(Certificate)
        .map_err(|e| bad("certificate", e))
}

/// What storing and listing a CRL needs to know of it.
pub struct CrlFacts {
    /// The CRL, DER.
    pub der: Vec<u8>,
    /// Its issuer's name, DER.
    pub issuer_der: Vec<u8>,
    /// Its issuer's name, for people.
    pub issuer: String,
    /// When the next is due, Unix seconds.
    pub next_update: Option<i64>,
}

/// The facts of a CRL.
pub fn crl_facts(crl: &Crl) -> Result<CrlFacts, PkiError> {
    let crl = &crl.0;
    Ok(CrlFacts {
        der: crl.to_der().map_err(|e| PkiError::BadCrl(e.to_string()))?,
        issuer_der: name_der(crl.issuer_name()),
        issuer: name_text(crl.issuer_name()),
        next_update: crl.next_update().and_then(unix_seconds),
    })
}

/// Reads a CRL in PEM or DER.
pub fn crl_from_bytes(bytes: &[u8]) -> Result<Crl, PkiError> {
    X509Crl::from_pem(bytes)
        .or_else(|_| X509Crl::from_der(bytes))
        .map(Crl)
        .map_err(|e| PkiError::BadCrl(e.to_string()))
}

impl TrustStore {
    /// Builds the store: anchors are trusted, intermediates only help build
    /// chains, CRLs are checked when the verifier asks for revocation.
    pub fn build(
        anchors: Vec<Certificate>,
        intermediates: Vec<Certificate>,
        crls: Vec<Crl>,
    ) -> Result<Self, PkiError> {
        let anchors: Vec<X509> = anchors.into_iter().map(|c| c.0).collect();
        let intermediates: Vec<X509> = intermediates.into_iter().map(|c| c.0).collect();
        let mut builder = X509StoreBuilder::new().map_err(|e| bad("store", e))?;
        for anchor in &anchors {
            builder
                .add_cert(anchor.clone())
                .map_err(|e| bad("trust anchor", e))?;
        }
        let mut entries = Vec::with_capacity(crls.len());
        for Crl(crl) in crls {
            ffi::store_add_crl(&mut builder, &crl).map_err(|e| PkiError::BadCrl(e.to_string()))?;
            entries.push(CrlEntry::new(crl)?);
        }
        Ok(Self {
            store: builder.build(),
            anchors,
            intermediates,
            crls: entries,
        })
    }

    /// The anchors.
    pub fn anchors(&self) -> Vec<Certificate> {
        self.anchors.iter().cloned().map(Certificate).collect()
    }

    /// The CRLs.
    pub fn crls(&self) -> &[CrlEntry] {
        &self.crls
    }

    /// The newest CRL issued by `issuer` (DER name): highest CRL number,
    /// then latest thisUpdate. Not the one that expires last: a CA may
    /// shorten the validity of the CRL that revokes a key.
    pub(super) fn crl_of(&self, issuer: &[u8]) -> Option<&CrlEntry> {
        self.crls
            .iter()
            .filter(|entry| entry.issuer_der == issuer)
            .max_by_key(|entry| entry.age())
    }

    /// Whether `crl` may be published: its issuer is a known CA whose key
    /// signed it, and it is not older than the CRL of that issuer in force.
    pub fn check_publishable(&self, crl: &Crl) -> Result<(), PkiError> {
        let crl = &crl.0;
        let der = crl.to_der().map_err(|e| PkiError::BadCrl(e.to_string()))?;
        let entry =
            CrlEntry::new(X509Crl::from_der(&der).map_err(|e| PkiError::BadCrl(e.to_string()))?)?;
        let signed_by_known_ca = self
            .anchors
            .iter()
            .chain(&self.intermediates)
            .filter(|ca| name_der(ca.subject_name()) == entry.issuer_der)
            .any(|ca| {
                ca.public_key()
                    .ok()
                    .and_then(|key| crl.verify(&key).ok())
                    .unwrap_or(false)
            });
        if !signed_by_known_ca {
            return Err(PkiError::UntrustedCrl(format!(
                "the CRL of {} is not signed by a trust anchor or intermediate of that name",
                entry.issuer
            )));
        }
        if let Some(current) = self.crl_of(&entry.issuer_der)
            && current.age() > entry.age()
        {
            return Err(PkiError::OlderCrl(format!(
                "the CRL of {} ({}) is older than the one in force ({}); a CRL never replaces a newer one",
                entry.issuer,
                entry.age(),
                current.age()
            )));
        }
        Ok(())
    }

    /// Whether a certificate is one of the anchors.
    pub(super) fn is_anchor(&self, certificate: &X509) -> bool {
        let der = certificate.to_der().unwrap_or_default();
        self.anchors
            .iter()
            .any(|anchor| anchor.to_der().is_ok_and(|a| a == der))
    }
}
