//! The verifier's trust material: built from the config's files and what
//! Admin added, rebuilt and swapped whole on every change; and Verify.

use std::sync::Arc;

use super::{Gateway, GatewayError, blocking};
use crate::{
    clock::UnixMillis,
    config::Config,
    pki::{self, Fingerprint, Report, TrustStore},
    registry::Registry,
};

/// A trust anchor or CRL as Admin lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustItem {
    /// Subject (anchors) or issuer (CRLs).
    pub name: String,
    /// SHA-256 of the DER.
    pub fingerprint: Fingerprint,
    /// For CRLs: when the next is due.
    pub next_update: Option<UnixMillis>,
}

/// Reads a file named by the config (trust material, keys, passphrase).
pub(super) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, GatewayError> {
    std::fs::read(path).map_err(|error| GatewayError::TrustFile {
        path: path.display().to_string(),
        reason: error.to_string(),
    })
}

/// Builds the trust store from the config's files and the stored additions.
pub(super) fn build(config: &Config, registry: &Registry) -> Result<TrustStore, GatewayError> {
    let files = |paths: &[std::path::PathBuf]| {
        paths
            .iter()
            .map(|p| read_file(p))
            .collect::<Result<Vec<_>, _>>()
    };
    let stored = registry.stored_trust()?;
    let (stored_anchors, stored_crls) = (stored.anchors, stored.crls);
    let mut anchors = pki::certificates_from_pem(&files(&config.pki.trust_anchors)?)?;
    for der in &stored_anchors {
        anchors.push(pki::certificate_from_der(der)?);
    }
    let intermediates = pki::certificates_from_pem(&files(&config.pki.intermediates)?)?;
    let mut crls = Vec::new();
    for bytes in files(&config.pki.crls)?.iter().chain(&stored_crls) {
        crls.push(pki::crl_from_bytes(bytes)?);
    }
    Ok(TrustStore::build(anchors, intermediates, crls)?)
}

impl Gateway {
    /// Verifies one detached signature (Signing.Verify).
    pub async fn verify(
        self: &Arc<Self>,
        content: Vec<u8>,
        cms_der: Vec<u8>,
        attachment: String,
    ) -> Result<Vec<Report>, GatewayError> {
        let this = self.clone();
        blocking(move || {
            let lookup = |fingerprint: &Fingerprint| this.registry.signer_role(fingerprint);
            Ok::<_, GatewayError>(
                this.verifier
                    .verify(&content, &cms_der, &attachment, &lookup),
            )
        })
        .await
    }

    fn rebuild_trust(&self) -> Result<(), GatewayError> {
        let trust = build(&self.config, &self.registry)?;
        self.verifier.replace_trust(trust);
        Ok(())
    }

    /// Adds a trust anchor (PEM) durably and swaps in the new store.
    pub async fn add_trust_anchor(&self, pem: &[u8]) -> Result<TrustItem, GatewayError> {
        let der = pki::pem_certificates(pem)?.remove(0);
        let facts = pki::certificate_facts(&der)?;
        self.registry.add_trust_anchor(der).await?;
        self.rebuild_trust()?;
        tracing::info!(anchor = %facts.subject, fingerprint = %facts.fingerprint, "trust anchor added");
        Ok(TrustItem {
            name: facts.subject,
            fingerprint: facts.fingerprint,
            next_update: None,
        })
    }

    /// Publishes a CRL (PEM or DER), replacing the stored one of its issuer.
    pub async fn publish_crl(&self, bytes: &[u8]) -> Result<TrustItem, GatewayError> {
        let crl = pki::crl_from_bytes(bytes)?;
        self.verifier.trust().check_publishable(&crl)?;
        let pki::CrlFacts {
            der,
            issuer_der,
            issuer,
            next_update,
        } = pki::crl_facts(&crl)?;
        let fingerprint = Fingerprint::of_der(&der);
        self.registry.put_crl(der, &issuer_der).await?;
        self.rebuild_trust()?;
        tracing::info!(issuer = %issuer, "CRL published");
        Ok(TrustItem {
            name: issuer,
            fingerprint,
            next_update: next_update.map(|s| s * 1000),
        })
    }

    /// The anchors and CRLs in force.
    pub fn trust_items(&self) -> (Vec<TrustItem>, Vec<TrustItem>) {
        let trust = self.verifier.trust();
        let anchors = trust
            .anchors()
            .iter()
            .filter_map(|anchor| {
                let facts = pki::certificate_facts(&anchor.to_der().ok()?).ok()?;
                Some(TrustItem {
                    name: facts.subject,
                    fingerprint: facts.fingerprint,
                    next_update: None,
                })
            })
            .collect();
        let crls = trust
            .crls()
            .iter()
            .map(|entry| TrustItem {
                name: entry.issuer.clone(),
                fingerprint: entry.fingerprint,
                next_update: entry.next_update.map(|s| s * 1000),
            })
            .collect();
        (anchors, crls)
    }
}
