//! Trust anchors and CRLs added by Admin, kept as DER so that they survive
//! restarts; `pki` builds the verifying store from them.

use sha2::{Digest, Sha256};

use super::{Registry, RegistryError};
use crate::{pki::Fingerprint, store::keys};

/// Trust material added at run time, as DER.
pub struct StoredTrust {
    /// Trust anchor certificates.
    pub anchors: Vec<Vec<u8>>,
    /// CRLs, one per issuer.
    pub crls: Vec<Vec<u8>>,
}

impl Registry {
    /// Stores a trust anchor (DER) durably; returns its fingerprint.
    pub async fn add_trust_anchor(&self, der: Vec<u8>) -> Result<Fingerprint, RegistryError> {
        let fingerprint = Fingerprint::of_der(&der);
        let key = keys::join(keys::TRUST_ANCHOR, &[fingerprint.to_hex().as_bytes()]);
        self.write_admin(format!("trust anchor {fingerprint} added"), move |writes| {
            writes.put(key, der);
            Ok::<_, RegistryError>(())
        })
        .await?;
        Ok(fingerprint)
    }

    /// Stores a CRL (DER) durably, replacing the one from the same issuer.
    pub async fn put_crl(&self, der: Vec<u8>, issuer_der: &[u8]) -> Result<(), RegistryError> {
        let issuer = hex::encode(Sha256::digest(issuer_der));
        let key = keys::join(keys::TRUST_CRL, &[issuer.as_bytes()]);
        self.write_admin("CRL published".to_owned(), move |writes| {
            writes.put(key, der);
            Ok::<_, RegistryError>(())
        })
        .await?;
        Ok(())
    }

    /// The anchors and CRLs added by Admin, as DER.
    pub fn stored_trust(&self) -> Result<StoredTrust, RegistryError> {
        let read_all = |prefix: &[u8]| -> Result<Vec<Vec<u8>>, RegistryError> {
            let mut out = Vec::new();
            super::for_each(&self.store, prefix, |_, value| {
                out.push(value.to_vec());
                Ok(())
            })?;
            Ok(out)
        };
        Ok(StoredTrust {
            anchors: read_all(keys::TRUST_ANCHOR)?,
            crls: read_all(keys::TRUST_CRL)?,
        })
    }
}
