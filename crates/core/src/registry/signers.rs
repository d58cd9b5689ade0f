//! Signer certificates bound to an agency and a role.

use serde::{Deserialize, Serialize};

use super::{Registry, RegistryError, agency_key};
use crate::{
    clock::UnixMillis,
    envelope::OrgCode,
    pki::{self, Fingerprint, Role},
    store::{self, keys},
};

/// A signer certificate registered to an agency and role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    /// SHA-256 of the certificate.
    pub fingerprint: Fingerprint,
    /// The agency it signs for.
    pub agency: OrgCode,
    /// The role it signs as.
    pub role: Role,
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, hex.
    pub serial_hex: String,
    /// When it was bound.
    pub added_at: UnixMillis,
}

pub(super) fn signer_key(fingerprint: &Fingerprint) -> Vec<u8> {
    keys::join(keys::SIGNER, &[fingerprint.to_hex().as_bytes()])
}

impl Registry {
    /// Binds a signer certificate (PEM) to an agency and role, durably.
    pub async fn add_signer(
        &self,
        agency: &str,
        role: Role,
        certificate_pem: &[u8],
    ) -> Result<Signer, RegistryError> {
        self.add_signer_of(agency, role, certificate_pem, false)
            .await
    }

    /// Like [`Registry::add_signer`]; with `remote`, the agency may be one
    /// of another gateway (federation: a forwarded document's signers are
    /// judged by their roles like local ones).
    pub async fn add_signer_of(
        &self,
        agency: &str,
        role: Role,
        certificate_pem: &[u8],
        remote: bool,
    ) -> Result<Signer, RegistryError> {
        let agency = OrgCode::parse(agency, "agency")?;
        let der = pki::pem_certificates(certificate_pem)
            .map_err(|source| RegistryError::BadCertificate { index: 0, source })?
            .remove(0);
        let facts = pki::certificate_facts(&der)
            .map_err(|source| RegistryError::BadCertificate { index: 0, source })?;
        let signer = Signer {
            fingerprint: facts.fingerprint,
            agency,
            role,
            subject: facts.subject,
            issuer: facts.issuer,
            serial_hex: facts.serial_hex,
            added_at: self.clock.now_millis(),
        };
        let stored = signer.clone();
        self.write_admin(
            format!(
                "signer {} bound to {} as {}",
                signer.fingerprint,
                signer.agency,
                signer.role.name()
            ),
            move |writes| {
                if !remote && writes.get(&agency_key(&stored.agency))?.is_none() {
                    return Err(RegistryError::UnknownAgency(stored.agency));
                }
                let key = signer_key(&stored.fingerprint);
                if let Some(bytes) = writes.get(&key)? {
                    let existing: Signer = store::decode(&key, &bytes)?;
                    return Err(RegistryError::SignerExists {
                        fingerprint: existing.fingerprint,
                        agency: existing.agency,
                        role: existing.role,
                    });
                }
                writes.put(key, store::encode(&stored)?);
                Ok::<_, RegistryError>(())
            },
        )
        .await?;
        self.with_cache(|cache| {
            cache.signers.insert(signer.fingerprint, signer.clone());
        });
        tracing::info!(agency = %signer.agency, role = signer.role.name(), fingerprint = %signer.fingerprint, "signer bound");
        Ok(signer)
    }

    /// Removes a signer binding.
    pub async fn remove_signer(&self, fingerprint: &str) -> Result<(), RegistryError> {
        let fingerprint = Fingerprint::from_hex(fingerprint)
            .ok_or_else(|| RegistryError::MalformedFingerprint(fingerprint.to_owned()))?;
        self.write_admin(format!("signer {fingerprint} removed"), move |writes| {
            let key = signer_key(&fingerprint);
            if writes.get(&key)?.is_none() {
                return Err(RegistryError::UnknownSigner(fingerprint));
            }
            writes.delete(key);
            Ok::<_, RegistryError>(())
        })
        .await?;
        self.with_cache(|cache| {
            cache.signers.remove(&fingerprint);
        });
        Ok(())
    }

    /// Signers, of one agency or all.
    pub fn signers(&self, agency: Option<&OrgCode>) -> Vec<Signer> {
        self.read()
            .signers
            .values()
            .filter(|signer| agency.is_none_or(|code| &signer.agency == code))
            .cloned()
            .collect()
    }

    /// The agency and role a signer certificate is registered to.
    pub fn signer_role(&self, fingerprint: &Fingerprint) -> Option<(OrgCode, Role)> {
        self.read()
            .signers
            .get(fingerprint)
            .map(|signer| (signer.agency.clone(), signer.role))
    }
}
