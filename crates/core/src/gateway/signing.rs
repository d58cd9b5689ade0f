//! Remote signing for agencies without their own device: keys the gateway
//! holds, Sign and CoSign, and importing keys.

use std::sync::Arc;

use super::{Gateway, GatewayError, blocking, trust::read_file};
use crate::{
    envelope::OrgCode,
    pki::{self, CertificateFacts, KeyStore, Passphrase, Report, Role, SigningKey, SoftKeyStore},
    registry::{Agency, Refusal, Registry, RegistryError},
};

fn keystore_passphrase(config: &crate::config::Config) -> Result<Option<Passphrase>, GatewayError> {
    Ok(
        match (
            &config.keystore.passphrase,
            &config.keystore.passphrase_file,
        ) {
            (Some(passphrase), _) => Some(passphrase.clone()),
            (None, Some(path)) => Passphrase::new(read_file(path)?),
            (None, None) => None,
        },
    )
}

/// Opens the keystore: the passphrase from the environment, else the file.
pub(super) fn open_keystore(
    config: &crate::config::Config,
    registry: &Registry,
) -> Result<SoftKeyStore, GatewayError> {
    let passphrase = keystore_passphrase(config)?;
    let files = config
        .pki
        .intermediates
        .iter()
        .map(|path| read_file(path))
        .collect::<Result<Vec<_>, _>>()?;
    let chain = pki::certificates_from_pem(&files)?;
    Ok(SoftKeyStore::unlock(
        &registry.sealed_keys()?,
        passphrase,
        chain,
    )?)
}

/// The receipt signer, when `[receipts]` is configured.
pub(super) fn receipt_signer(
    config: &crate::config::Config,
) -> Result<Option<crate::receipt::ReceiptSigner>, GatewayError> {
    let Some(receipts) = &config.receipts else {
        return Ok(None);
    };
    let passphrase = keystore_passphrase(config)?;
    let key = pki::signing_key_from_pem(
        &read_file(&receipts.certificate)?,
        &read_file(&receipts.key)?,
        passphrase.as_ref(),
    )?;
    let signer = crate::receipt::ReceiptSigner::start(key, receipts.max_batch)
        .map_err(|e| GatewayError::Internal(format!("starting the receipt signer: {e}")))?;
    Ok(Some(signer))
}

/// The gateway's own key and certificate (PEM): the receipt key. Hop
/// records (federation) and outgoing edXML on request are signed with it.
pub(super) fn gateway_key(
    config: &crate::config::Config,
) -> Result<Option<(pki::SigningKey, Vec<u8>)>, GatewayError> {
    let Some(receipts) = &config.receipts else {
        return Ok(None);
    };
    let passphrase = keystore_passphrase(config)?;
    let certificate = read_file(&receipts.certificate)?;
    let key = pki::signing_key_from_pem(
        &certificate,
        &read_file(&receipts.key)?,
        passphrase.as_ref(),
    )?;
    Ok(Some((key, certificate)))
}

impl Gateway {
    /// Imports a key with its certificate for an agency and role: checked,
    /// encrypted, stored durably, then usable.
    pub async fn import_key(
        &self,
        agency: &str,
        role: Role,
        certificate_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<CertificateFacts, GatewayError> {
        let agency = OrgCode::parse(agency, "key.agency")?;
        if self.registry.get(&agency).is_none() {
            return Err(RegistryError::UnknownAgency(agency).into());
        }
        let sealed = self.keys.seal(agency, role, certificate_pem, key_pem)?;
        let facts = pki::certificate_facts(&sealed.certificate_der)?;
        self.registry.put_sealed_key(sealed.clone()).await?;
        self.keys.insert(&sealed)?;
        tracing::info!(agency = %sealed.agency, role = role.name(), fingerprint = %facts.fingerprint, "signing key imported");
        Ok(facts)
    }

    /// Every held key's owner, role and certificate facts.
    pub fn held_keys(&self) -> Vec<(OrgCode, Role, CertificateFacts)> {
        self.keys
            .held()
            .into_iter()
            .filter_map(|(agency, role, certificate)| {
                let facts = pki::certificate_facts(&certificate.to_der().ok()?).ok()?;
                Some((agency, role, facts))
            })
            .collect()
    }

    /// The key `caller` may sign with: only its own agency's.
    pub(super) fn own_key(
        &self,
        caller: &Agency,
        agency: &str,
        role: Role,
    ) -> Result<SigningKey, GatewayError> {
        let agency = OrgCode::parse(agency, "key.agency")?;
        if agency != caller.code {
            return Err(GatewayError::NotKeyOwner {
                caller: caller.code.clone(),
                owner: agency,
            });
        }
        self.keys
            .signing_key(&agency, role)
            .ok_or(GatewayError::NoSuchKey { agency, role })
    }

    /// Signs `content` with the caller's key: a detached CAdES-BES
    /// signature, and the facts of the certificate that made it.
    pub async fn sign(
        self: &Arc<Self>,
        caller: &Agency,
        agency: &str,
        role: Role,
        content: Vec<u8>,
    ) -> Result<(Vec<u8>, CertificateFacts), GatewayError> {
        let key = self.own_key(caller, agency, role)?;
        let facts = key.certificate_facts()?;
        let signature = blocking(move || pki::sign_detached(&key, &content)).await?;
        tracing::info!(agency = %caller.code, role = role.name(), "signed for a signing station");
        Ok((signature, facts))
    }

    /// Begins a signature over content the caller streams in pieces.
    pub fn begin_sign(
        &self,
        caller: &Agency,
        agency: &str,
        role: Role,
    ) -> Result<SignSession, GatewayError> {
        let key = self.own_key(caller, agency, role)?;
        let facts = key.certificate_facts()?;
        Ok(SignSession {
            signer: Some(pki::begin_streaming(&key)?),
            facts,
        })
    }

    /// Verifies the signature there, then adds the caller's key as a second
    /// signer. Refused with the reports if what is there does not pass.
    pub async fn co_sign(
        self: &Arc<Self>,
        caller: &Agency,
        agency: &str,
        role: Role,
        content: Vec<u8>,
        cms_der: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<Report>), GatewayError> {
        let key = self.own_key(caller, agency, role)?;
        let this = self.clone();
        let (signature, existing) = blocking(move || {
            let lookup = |fingerprint: &pki::Fingerprint| this.registry.signer_role(fingerprint);
            let existing = this.verifier.verify(&content, &cms_der, "content", &lookup);
            if existing.is_empty() || !existing.iter().all(Report::passed) {
                return Err(GatewayError::Refused {
                    refusal: Refusal {
                        document_type: "co-sign".to_owned(),
                        reasons: vec![
                            "the signature to co-sign does not pass verification".to_owned(),
                        ],
                    },
                    reports: existing,
                });
            }
            Ok::<_, GatewayError>((pki::co_sign(&key, &cms_der)?, existing))
        })
        .await?;
        tracing::info!(agency = %caller.code, role = role.name(), "co-signed for a signing station");
        Ok((signature, existing))
    }
}

/// A signature being made over content that arrives in chunks (SignStream).
pub struct SignSession {
    /// Out while a chunk is hashed on the blocking pool.
    signer: Option<pki::StreamSigner>,
    facts: CertificateFacts,
}

impl SignSession {
    /// Hashes the next chunk, off the reactor.
    pub async fn update(&mut self, chunk: Vec<u8>) -> Result<(), GatewayError> {
        let mut signer = self.signer.take().ok_or_else(|| {
            GatewayError::Internal("a signing session was used after a failed chunk".to_owned())
        })?;
        self.signer = Some(blocking(move || signer.update(&chunk).map(|()| signer)).await?);
        Ok(())
    }

    /// The finished signature (CMS DER) and the facts of its certificate.
    pub async fn finish(self) -> Result<(Vec<u8>, CertificateFacts), GatewayError> {
        let signer = self.signer.ok_or_else(|| {
            GatewayError::Internal("a signing session was used after a failed chunk".to_owned())
        })?;
        let cms_der = blocking(move || signer.finish()).await?;
        Ok((cms_der, self.facts))
    }
}
