//! The policies the registry keeps, one per document type; what a policy
//! is and how it judges a document is `lienthong_domain::policy` (pure).

pub use lienthong_domain::policy::{DEFAULT_TYPE, InvalidPolicy, Policy, Refusal};

use super::{Registry, RegistryError};
use crate::store::{self, keys};

fn policy_key(document_type: &str) -> Vec<u8> {
    keys::join(keys::POLICY, &[document_type.as_bytes()])
}

impl Registry {
    /// Creates or replaces a policy, durably.
    pub async fn put_policy(&self, policy: Policy) -> Result<Policy, RegistryError> {
        policy
            .validate()
            .map_err(|InvalidPolicy(reason)| RegistryError::InvalidPolicy(reason))?;
        let stored = policy.clone();
        self.write_admin(
            format!("policy {} stored", policy.document_type),
            move |writes| {
                writes.put(policy_key(&stored.document_type), store::encode(&stored)?);
                Ok::<_, RegistryError>(())
            },
        )
        .await?;
        self.with_cache(|cache| {
            cache
                .policies
                .insert(policy.document_type.clone(), policy.clone());
        });
        tracing::info!(document_type = %policy.document_type, "policy stored");
        Ok(policy)
    }

    /// Every stored policy.
    pub fn policies(&self) -> Vec<Policy> {
        self.read().policies.values().cloned().collect()
    }

    /// The policy for a document type: its own, else `*`, else the built-in default.
    pub fn policy_for(&self, document_type: &str) -> Policy {
        let cache = self.read();
        cache
            .policies
            .get(document_type)
            .or_else(|| cache.policies.get(DEFAULT_TYPE))
            .cloned()
            .unwrap_or_else(Policy::builtin_default)
    }
}
