//! Agencies and the client certificates bound to them, signer certificates
//! and their roles, signature policies, and the trust material added by
//! Admin. (Groups join with a later issue.)

mod groups;
mod policies;
mod sealed;
mod signers;
mod trust;

pub use groups::{Group, MAX_GROUP_MEMBERS};
pub use policies::{DEFAULT_TYPE, Policy, Refusal};
pub use signers::Signer;

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use serde::{Deserialize, Serialize};

use crate::{
    clock::{Clock, UnixMillis},
    envelope::{EnvelopeError, OrgCode},
    pki::{self, Fingerprint, PkiError, Role},
    store::{self, Store, StoreError, WriteSet, keys},
};

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A malformed org code.
    #[error(transparent)]
    InvalidCode(#[from] EnvelopeError),
    /// The name is empty or too long.
    #[error("agency name must be 1 to 200 characters, got {0}")]
    InvalidName(usize),
    /// The code is registered already.
    #[error("agency {0} is already registered")]
    AlreadyRegistered(OrgCode),
    /// No agency has this code.
    #[error("agency {0} is not registered")]
    UnknownAgency(OrgCode),
    /// The parent named is not registered.
    #[error("parent agency {0} is not registered")]
    UnknownParent(OrgCode),
    /// A registration without a certificate.
    #[error("an agency needs at least one client certificate")]
    NoCertificate,
    /// A certificate could not be read.
    #[error("certificate {index}: {source}")]
    BadCertificate {
        /// Which one.
        index: usize,
        /// Why.
        source: PkiError,
    },
    /// The certificate is bound to another agency.
    #[error("certificate {fingerprint} is already bound to agency {agency}")]
    CertificateInUse {
        /// Its fingerprint.
        fingerprint: Fingerprint,
        /// The agency holding it.
        agency: OrgCode,
    },
    /// Removing the agency's only certificate would lock it out.
    #[error(
        "certificate {fingerprint} is the only one of agency {agency}; add its successor first"
    )]
    LastCertificate {
        /// Its fingerprint.
        fingerprint: Fingerprint,
        /// The agency.
        agency: OrgCode,
    },
    /// The certificate is not bound to the agency.
    #[error("certificate {fingerprint} is not bound to agency {agency}")]
    NotBound {
        /// Its fingerprint.
        fingerprint: Fingerprint,
        /// The agency.
        agency: OrgCode,
    },
    /// A certificate that could never authenticate or sign: expired, not
    /// yet valid, or not issued by a trusted CA.
    #[error("certificate {fingerprint}: {reason}")]
    Unusable {
        /// Its fingerprint.
        fingerprint: Fingerprint,
        /// Why, naming the date or the issuer.
        reason: String,
    },
    /// The certificate is bound to a signer already.
    #[error("certificate {fingerprint} is already bound to {agency} as {}", role.name())]
    SignerExists {
        /// Its fingerprint.
        fingerprint: Fingerprint,
        /// The agency.
        agency: OrgCode,
        /// The role.
        role: Role,
    },
    /// No signer has this fingerprint.
    #[error("no signer certificate {0} is registered")]
    UnknownSigner(Fingerprint),
    /// Not 64 hex digits.
    #[error("{0:?} is not a SHA-256 fingerprint (64 hex digits)")]
    MalformedFingerprint(String),
    /// No group has this name.
    #[error("no group {0} exists")]
    UnknownGroup(String),
    /// A group that cannot be stored.
    #[error("group: {0}")]
    InvalidGroup(String),
    /// A policy that cannot be stored.
    #[error("policy: {0}")]
    InvalidPolicy(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A registered agency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agency {
    /// Org code.
    pub code: OrgCode,
    /// Name.
    pub name: String,
    /// Parent (a commune's district).
    pub parent: Option<OrgCode>,
    /// Bound client certificates.
    pub fingerprints: Vec<Fingerprint>,
    /// Disabled agencies can neither call nor be sent to.
    pub disabled: bool,
    /// When registered.
    pub registered_at: UnixMillis,
}

/// A registration request.
#[derive(Debug, Clone)]
pub struct NewAgency {
    /// Org code as given.
    pub code: String,
    /// Name.
    pub name: String,
    /// Parent org code as given; empty for none.
    pub parent: String,
    /// Client certificates, PEM.
    pub certificates_pem: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Cache {
    by_code: BTreeMap<OrgCode, Agency>,
    by_fingerprint: BTreeMap<Fingerprint, OrgCode>,
    signers: BTreeMap<Fingerprint, Signer>,
    policies: BTreeMap<String, Policy>,
    groups: BTreeMap<crate::envelope::GroupName, Group>,
}

impl Cache {
    fn put(&mut self, agency: Agency) {
        for fingerprint in &agency.fingerprints {
            self.by_fingerprint
                .insert(*fingerprint, agency.code.clone());
        }
        self.by_code.insert(agency.code.clone(), agency);
    }
}

/// Agencies, read from a cache kept in step with the store.
pub struct Registry {
    store: Store,
    clock: Arc<dyn Clock>,
    cache: RwLock<Cache>,
}

pub(super) fn agency_key(code: &OrgCode) -> Vec<u8> {
    keys::join(keys::AGENCY, &[code.as_str().as_bytes()])
}

fn certificate_key(fingerprint: &Fingerprint) -> Vec<u8> {
    keys::join(keys::AGENCY_CERT, &[fingerprint.to_hex().as_bytes()])
}

impl Registry {
    /// Loads every agency from the store.
    pub fn load(store: Store, clock: Arc<dyn Clock>) -> Result<Self, RegistryError> {
        let mut cache = Cache::default();
        for_each(&store, keys::AGENCY, |key, value| {
            cache.put(store::decode(key, value)?);
            Ok(())
        })?;
        for_each(&store, keys::SIGNER, |key, value| {
            let signer: Signer = store::decode(key, value)?;
            cache.signers.insert(signer.fingerprint, signer);
            Ok(())
        })?;
        for_each(&store, keys::GROUP, |key, value| {
            let group: Group = store::decode(key, value)?;
            cache.groups.insert(group.name.clone(), group);
            Ok(())
        })?;
        for_each(&store, keys::POLICY, |key, value| {
            // Record version 1 had no signing order.
            let policy: Policy = if value.first() == Some(&1) {
                store::decode::<lienthong_domain::policy::PolicyV1>(key, value)?.into()
            } else {
                store::decode(key, value)?
            };
            cache.policies.insert(policy.document_type.clone(), policy);
            Ok(())
        })?;
        Ok(Self {
            store,
            clock,
            cache: RwLock::new(cache),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        // A panic while holding the lock leaves a consistent map (writes are
        // single inserts), so a poisoned lock is still safe to read.
        self.cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, agency: Agency) {
        self.with_cache(|cache| cache.put(agency));
    }

    /// Runs a registry write and records it in the audit chain, atomically.
    async fn write_admin<R, F>(&self, detail: String, job: F) -> Result<R, RegistryError>
    where
        F: FnOnce(&mut WriteSet<'_>) -> Result<R, RegistryError> + Send + 'static,
        R: Send + 'static,
    {
        let now = self.clock.now_millis();
        self.store
            .writer()
            .write(move |writes| {
                let out = job(writes)?;
                crate::audit::append(writes, now, crate::audit::Event::admin(None, detail))?;
                Ok(out)
            })
            .await
    }

    fn with_cache(&self, change: impl FnOnce(&mut Cache)) {
        change(
            &mut self
                .cache
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
    }

    /// Registers a new agency durably.
    pub async fn register(&self, request: NewAgency) -> Result<Agency, RegistryError> {
        let code = OrgCode::parse(&request.code, "code")?;
        let name_chars = request.name.trim().chars().count();
        if !(1..=200).contains(&name_chars) {
            return Err(RegistryError::InvalidName(name_chars));
        }
        let parent = match request.parent.as_str() {
            "" => None,
            text => Some(OrgCode::parse(text, "parent")?),
        };
        if request.certificates_pem.is_empty() {
            return Err(RegistryError::NoCertificate);
        }
        let mut fingerprints = Vec::new();
        for (index, pem) in request.certificates_pem.iter().enumerate() {
            let fingerprint = pki::pem_fingerprint(pem)
                .map_err(|source| RegistryError::BadCertificate { index, source })?;
            if !fingerprints.contains(&fingerprint) {
                fingerprints.push(fingerprint);
            }
        }
        let agency = Agency {
            code,
            name: request.name.trim().to_owned(),
            parent,
            fingerprints,
            disabled: false,
            registered_at: self.clock.now_millis(),
        };
        let stored = agency.clone();
        let agency = self
            .write_admin(
                format!("agency {} registered", agency.code),
                move |writes| insert_new(writes, stored),
            )
            .await?;
        self.update(agency.clone());
        tracing::info!(agency = %agency.code, name = %agency.name, "agency registered");
        Ok(agency)
    }

    /// Disables or enables an agency durably.
    pub async fn set_disabled(&self, code: &str, disabled: bool) -> Result<Agency, RegistryError> {
        let code = OrgCode::parse(code, "code")?;
        let agency = self
            .write_admin(
                format!("agency {code} disabled: {disabled}"),
                move |writes| {
                    let mut agency = read_agency(writes, &code)?;
                    agency.disabled = disabled;
                    writes.put(agency_key(&code), store::encode(&agency)?);
                    Ok::<_, RegistryError>(agency)
                },
            )
            .await?;
        self.update(agency.clone());
        tracing::info!(agency = %agency.code, disabled, "agency state changed");
        Ok(agency)
    }

    /// Binds one more client certificate (PEM) to an agency durably.
    pub async fn add_certificate(&self, code: &str, pem: &[u8]) -> Result<Agency, RegistryError> {
        let code = OrgCode::parse(code, "code")?;
        let fingerprint = pki::pem_fingerprint(pem)
            .map_err(|source| RegistryError::BadCertificate { index: 0, source })?;
        let agency = self
            .write_admin(
                format!("agency {code} certificate {fingerprint} added"),
                move |writes| {
                    let key = agency_key(&code);
                    let mut agency = read_agency(writes, &code)?;
                    let cert_key = certificate_key(&fingerprint);
                    if let Some(holder) = writes.get(&cert_key)? {
                        return Err(RegistryError::CertificateInUse {
                            fingerprint,
                            agency: OrgCode::parse(&String::from_utf8_lossy(&holder), "holder")?,
                        });
                    }
                    writes.put(cert_key, agency.code.as_str().as_bytes().to_vec());
                    agency.fingerprints.push(fingerprint);
                    writes.put(key, store::encode(&agency)?);
                    Ok::<_, RegistryError>(agency)
                },
            )
            .await?;
        self.update(agency.clone());
        tracing::info!(agency = %agency.code, certificate = %fingerprint, "agency certificate added");
        Ok(agency)
    }

    /// Unbinds a client certificate from an agency durably; the agency's
    /// last certificate stays.
    pub async fn remove_certificate(
        &self,
        code: &str,
        fingerprint: &str,
    ) -> Result<Agency, RegistryError> {
        let code = OrgCode::parse(code, "code")?;
        let fingerprint = Fingerprint::from_hex(fingerprint)
            .ok_or_else(|| RegistryError::MalformedFingerprint(fingerprint.to_owned()))?;
        let agency = self
            .write_admin(
                format!("agency {code} certificate {fingerprint} removed"),
                move |writes| {
                    let key = agency_key(&code);
                    let mut agency = read_agency(writes, &code)?;
                    if !agency.fingerprints.contains(&fingerprint) {
                        return Err(RegistryError::NotBound {
                            fingerprint,
                            agency: code,
                        });
                    }
                    if agency.fingerprints.len() == 1 {
                        return Err(RegistryError::LastCertificate {
                            fingerprint,
                            agency: code,
                        });
                    }
                    agency.fingerprints.retain(|f| *f != fingerprint);
                    writes.delete(certificate_key(&fingerprint));
                    writes.put(key, store::encode(&agency)?);
                    Ok::<_, RegistryError>(agency)
                },
            )
            .await?;
        self.with_cache(|cache| {
            cache.by_fingerprint.remove(&fingerprint);
            cache.put(agency.clone());
        });
        tracing::info!(agency = %agency.code, certificate = %fingerprint, "agency certificate removed");
        Ok(agency)
    }

    /// Every agency, by code.
    pub fn list(&self) -> Vec<Agency> {
        self.read().by_code.values().cloned().collect()
    }

    /// The agency with this code.
    pub fn get(&self, code: &OrgCode) -> Option<Agency> {
        self.read().by_code.get(code).cloned()
    }

    /// The agency a client certificate is bound to.
    pub fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Option<Agency> {
        let cache = self.read();
        let code = cache.by_fingerprint.get(fingerprint)?;
        cache.by_code.get(code).cloned()
    }
}

fn for_each(
    store: &Store,
    prefix: &[u8],
    visit: impl FnMut(&[u8], &[u8]) -> Result<(), RegistryError>,
) -> Result<(), RegistryError> {
    store::for_each_in_prefix(store.kv(), prefix, visit)
}

/// The stored agency with this code, as the write would leave it.
fn read_agency(writes: &WriteSet<'_>, code: &OrgCode) -> Result<Agency, RegistryError> {
    let key = agency_key(code);
    let bytes = writes
        .get(&key)?
        .ok_or_else(|| RegistryError::UnknownAgency(code.clone()))?;
    Ok(store::decode(&key, &bytes)?)
}

fn insert_new(writes: &mut WriteSet<'_>, agency: Agency) -> Result<Agency, RegistryError> {
    let key = agency_key(&agency.code);
    if writes.get(&key)?.is_some() {
        return Err(RegistryError::AlreadyRegistered(agency.code));
    }
    if let Some(parent) = &agency.parent
        && writes.get(&agency_key(parent))?.is_none()
    {
        return Err(RegistryError::UnknownParent(parent.clone()));
    }
    for fingerprint in &agency.fingerprints {
        let cert_key = certificate_key(fingerprint);
        if let Some(holder) = writes.get(&cert_key)? {
            return Err(RegistryError::CertificateInUse {
                fingerprint: *fingerprint,
                agency: OrgCode::parse(&String::from_utf8_lossy(&holder), "holder")?,
            });
        }
        writes.put(cert_key, agency.code.as_str().as_bytes().to_vec());
    }
    writes.put(key, store::encode(&agency)?);
    Ok(agency)
}
