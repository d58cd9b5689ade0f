//! Signing keys the gateway holds for agencies: encrypted at rest (PKCS#8
//! with PBES2, AES-256-CBC, under the keystore passphrase), decrypted only in
//! memory, never logged or returned. Behind a trait so that a PKCS#11 HSM
//! (an OpenSSL provider handing out key handles) can take its place.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use openssl::{
    pkey::{PKey, Private},
    symm::Cipher,
    x509::X509,
};

use super::{Certificate, PkiError, Role};
use crate::envelope::OrgCode;

/// A key ready to sign, with the certificate and chain to embed.
#[derive(Clone)]
pub struct SigningKey {
    /// The key's certificate.
    pub(crate) certificate: X509,
    /// Intermediates to embed in signatures.
    pub(crate) chain: Vec<X509>,
    /// The private key (or an HSM handle).
    pub(crate) key: PKey<Private>,
}

impl SigningKey {
    /// The facts of the key's certificate.
    pub fn certificate_facts(&self) -> Result<super::CertificateFacts, PkiError> {
        let der = self
            .certificate
            .to_der()
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        super::certificate_facts(&der)
    }

    /// Replaces the intermediates embedded in its signatures.
    pub fn set_chain(&mut self, chain: Vec<Certificate>) {
        self.chain = chain.into_iter().map(|c| c.0).collect();
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

/// Where signing keys come from.
pub trait KeyStore: Send + Sync {
    /// The key of `agency` for `role`, if held.
    fn signing_key(&self, agency: &OrgCode, role: Role) -> Option<SigningKey>;
    /// Every held key's owner, role and certificate.
    fn held(&self) -> Vec<(OrgCode, Role, Certificate)>;
}

/// The passphrase that unlocks the software keystore. Not Debug, not Display.
#[derive(Clone)]
pub struct Passphrase(Arc<Vec<u8>>);

impl Passphrase {
    /// Wraps the bytes; trailing newlines (from a file) are dropped.
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        let mut bytes = bytes;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        (!bytes.is_empty()).then(|| Self(Arc::new(bytes)))
    }
}

/// A key as stored: the certificate in clear, the key encrypted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedKey {
    /// Owner.
    pub agency: OrgCode,
    /// Role.
    pub role: Role,
    /// Certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Encrypted PKCS#8 PEM.
    pub encrypted_key_pem: Vec<u8>,
}

/// A signing identity from PEM files: the key in clear or PKCS#8-encrypted
/// under `passphrase`.
pub fn signing_key_from_pem(
    certificate_pem: &[u8],
    key_pem: &[u8],
    passphrase: Option<&Passphrase>,
) -> Result<SigningKey, PkiError> {
    let certificate =
        X509::from_pem(certificate_pem).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let key = PKey::private_key_from_pem(key_pem)
        .or_else(|_| match passphrase {
            Some(passphrase) => PKey::private_key_from_pem_passphrase(key_pem, &passphrase.0),
            None => Err(openssl::error::ErrorStack::get()),
        })
        .map_err(|_| {
            PkiError::BadKey(
                "cannot read the key (encrypted without the right passphrase?)".to_owned(),
            )
        })?;
    let public = certificate
        .public_key()
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    if !public.public_eq(&key) {
        return Err(PkiError::BadKey(
            "the private key does not belong to the certificate".to_owned(),
        ));
    }
    Ok(SigningKey {
        certificate,
        chain: Vec::new(),
        key,
    })
}

/// Keys decrypted into memory at start.
pub struct SoftKeyStore {
    passphrase: Option<Passphrase>,
    chain: Vec<X509>,
    keys: RwLock<BTreeMap<(OrgCode, Role), SigningKey>>,
}

impl SoftKeyStore {
    /// Unlocks every sealed key. Refuses to start with keys present and no
    /// passphrase, or with a passphrase that does not open them.
    pub fn unlock(
        sealed: &[SealedKey],
        passphrase: Option<Passphrase>,
        chain: Vec<Certificate>,
    ) -> Result<Self, PkiError> {
        let chain: Vec<X509> = chain.into_iter().map(|c| c.0).collect();
        let mut keys = BTreeMap::new();
        if !sealed.is_empty() && passphrase.is_none() {
            return Err(PkiError::Locked(format!(
                "{} signing key(s) are stored but no keystore passphrase was given; set \
                 LIENTHONG_KEYSTORE_PASSPHRASE or keystore.passphrase_file",
                sealed.len()
            )));
        }
        for key in sealed {
            let secret = passphrase
                .as_ref()
                .map(|p| p.0.as_slice())
                .unwrap_or_default();
            let private = PKey::private_key_from_pem_passphrase(&key.encrypted_key_pem, secret)
                .map_err(|_| {
                    PkiError::Locked(format!(
                        "the keystore passphrase does not unlock the key of {} as {}",
                        key.agency,
                        key.role.name()
                    ))
                })?;
            let certificate = X509::from_der(&key.certificate_der)
                .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
            keys.insert(
                (key.agency.clone(), key.role),
                SigningKey {
                    certificate,
                    chain: chain.clone(),
                    key: private,
                },
            );
        }
        Ok(Self {
            passphrase,
            chain,
            keys: RwLock::new(keys),
        })
    }

    /// Checks a key against its certificate and seals it for storage.
    pub fn seal(
        &self,
        agency: OrgCode,
        role: Role,
        certificate_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<SealedKey, PkiError> {
        let Some(passphrase) = &self.passphrase else {
            return Err(PkiError::Locked(
                "no keystore passphrase is configured, so keys cannot be stored encrypted; set \
                 LIENTHONG_KEYSTORE_PASSPHRASE or keystore.passphrase_file"
                    .to_owned(),
            ));
        };
        let certificate =
            X509::from_pem(certificate_pem).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        let private = PKey::private_key_from_pem(key_pem)
            .map_err(|_| PkiError::BadKey("not an unencrypted PEM private key".to_owned()))?;
        let public = certificate
            .public_key()
            .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
        if !public.public_eq(&private) {
            return Err(PkiError::BadKey(
                "the private key does not belong to the certificate".to_owned(),
            ));
        }
        let encrypted_key_pem = private
            .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), &passphrase.0)
            .map_err(|e| PkiError::BadKey(e.to_string()))?;
        Ok(SealedKey {
            agency,
            role,
            certificate_der: certificate
                .to_der()
                .map_err(|e| PkiError::BadCertificate(e.to_string()))?,
            encrypted_key_pem,
        })
    }

    /// Makes a sealed key usable (after it was stored).
    pub fn insert(&self, sealed: &SealedKey) -> Result<(), PkiError> {
        let unlocked = Self::unlock(
            std::slice::from_ref(sealed),
            self.passphrase.clone(),
            self.chain.iter().cloned().map(Certificate).collect(),
        )?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        for (slot, key) in unlocked
            .keys
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
        {
            keys.insert(slot, key);
        }
        Ok(())
    }
}

impl KeyStore for SoftKeyStore {
    fn signing_key(&self, agency: &OrgCode, role: Role) -> Option<SigningKey> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(agency.clone(), role))
            .cloned()
    }

    fn held(&self) -> Vec<(OrgCode, Role, Certificate)> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((agency, role), key)| {
                (agency.clone(), *role, Certificate(key.certificate.clone()))
            })
            .collect()
    }
}
