//! Sealed signing keys: stored encrypted, one per agency and role.

use super::{Registry, RegistryError};
use crate::{
    pki::SealedKey,
    store::{self, keys},
};

fn sealed_key(key: &SealedKey) -> Vec<u8> {
    keys::join(
        keys::SIGNING_KEY,
        &[key.agency.as_str().as_bytes(), key.role.name().as_bytes()],
    )
}

impl Registry {
    /// Stores a sealed key durably, replacing the one of the same agency and role.
    pub async fn put_sealed_key(&self, key: SealedKey) -> Result<(), RegistryError> {
        self.write_admin(
            format!(
                "signing key of {} as {} stored",
                key.agency,
                key.role.name()
            ),
            move |writes| {
                writes.put(sealed_key(&key), store::encode(&key)?);
                Ok::<_, RegistryError>(())
            },
        )
        .await
    }

    /// Every sealed key.
    pub fn sealed_keys(&self) -> Result<Vec<SealedKey>, RegistryError> {
        let mut out = Vec::new();
        super::for_each(&self.store, keys::SIGNING_KEY, |key, value| {
            out.push(store::decode(key, value)?);
            Ok(())
        })?;
        Ok(out)
    }
}
