//! The administrator's use cases: agencies, signers, policies, groups and
//! queues, and the registrations the configuration file seeds at start. The
//! api calls these; it never reaches the registry or the queues itself.

use super::{Gateway, GatewayError, trust::read_file};
use crate::{
    clock::UnixMillis,
    envelope::OrgCode,
    pki::{self, Fingerprint},
    queue::QueueDepth,
    registry::{Agency, Group, NewAgency, Policy, Signer},
};

impl Gateway {
    /// The agency a client certificate is bound to, if any.
    pub fn agency_by_certificate(&self, fingerprint: &Fingerprint) -> Option<Agency> {
        self.registry.by_fingerprint(fingerprint)
    }

    /// Every registered agency.
    pub fn agencies(&self) -> Vec<Agency> {
        self.registry.list()
    }

    /// Disables (or enables again) an agency: a disabled one may not call
    /// and is not a recipient.
    pub async fn set_agency_disabled(
        &self,
        code: &str,
        disabled: bool,
    ) -> Result<Agency, GatewayError> {
        Ok(self.registry.set_disabled(code, disabled).await?)
    }

    /// Unbinds a client certificate from an agency (never its last one).
    pub async fn remove_agency_certificate(
        &self,
        code: &str,
        fingerprint: &str,
    ) -> Result<Agency, GatewayError> {
        Ok(self.registry.remove_certificate(code, fingerprint).await?)
    }

    /// The queue depth of one agency, or of every agency, and the time the
    /// figures were taken.
    pub fn queue_stats(
        &self,
        agency: Option<OrgCode>,
    ) -> Result<(Vec<(OrgCode, QueueDepth)>, UnixMillis), GatewayError> {
        let codes = match agency {
            Some(code) => vec![code],
            None => {
                self.registry
                    .list()
                    .into_iter()
                    .map(|a| a.code)
                    // Peers' outbound queues, beside the agencies'.
                    .chain(self.config.federation.iter().flat_map(|federation| {
                        federation.peers.iter().map(|peer| peer.id.mailbox())
                    }))
                    .collect()
            }
        };
        let now = self.clock.now_millis();
        let mut stats = Vec::with_capacity(codes.len());
        for code in codes {
            let depth = self.queue.depth(&code)?;
            stats.push((code, depth));
        }
        Ok((stats, now))
    }

    /// Puts a dead letter back at its place in its queue.
    pub async fn replay_dead_letter(&self, dead_letter_id: &str) -> Result<OrgCode, GatewayError> {
        Ok(self.queue.replay(dead_letter_id).await?)
    }

    /// Deletes every waiting delivery of an agency (with `confirm` only).
    pub async fn purge_queue(&self, agency: &OrgCode, confirm: bool) -> Result<u64, GatewayError> {
        Ok(self.queue.purge(agency, confirm).await?)
    }

    /// The signers of one agency, or of every agency.
    pub fn signers(&self, agency: Option<&OrgCode>) -> Vec<Signer> {
        self.registry.signers(agency)
    }

    /// Unbinds a signer certificate (by its SHA-256, hex).
    pub async fn remove_signer(&self, fingerprint: &str) -> Result<(), GatewayError> {
        Ok(self.registry.remove_signer(fingerprint).await?)
    }

    /// Creates or replaces the policy of a document type.
    pub async fn put_policy(&self, policy: Policy) -> Result<Policy, GatewayError> {
        Ok(self.registry.put_policy(policy).await?)
    }

    /// Every stored policy.
    pub fn policies(&self) -> Vec<Policy> {
        self.registry.policies()
    }

    /// Creates or replaces a group of agencies.
    pub async fn put_group(
        &self,
        name: &str,
        description: &str,
        members: &[String],
    ) -> Result<Group, GatewayError> {
        Ok(self.registry.put_group(name, description, members).await?)
    }

    /// Every group.
    pub fn groups(&self) -> Vec<Group> {
        self.registry.groups()
    }

    /// Deletes a group.
    pub async fn delete_group(&self, name: &str) -> Result<(), GatewayError> {
        Ok(self.registry.delete_group(name).await?)
    }

    /// Registers what `[[agencies]]`, `[[signers]]` and `[[policies]]` of
    /// the configuration name and the store does not hold yet. What is
    /// stored wins: an administrator's later change is never undone.
    pub async fn seed_from_config(&self) -> Result<(), GatewayError> {
        for seed in &self.config.agencies {
            if self.registry.get(&seed.code).is_some() {
                continue;
            }
            let certificates_pem = seed
                .certificates
                .iter()
                .map(|path| read_file(path))
                .collect::<Result<Vec<_>, _>>()?;
            let request = NewAgency {
                code: seed.code.to_string(),
                name: seed.name.clone(),
                parent: seed
                    .parent
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                certificates_pem,
            };
            self.registry
                .register(request)
                .await
                .map_err(|source| GatewayError::Seed {
                    what: format!("agency {}", seed.code),
                    source,
                })?;
        }
        for seed in &self.config.signers {
            let pem = read_file(&seed.certificate)?;
            let fingerprint =
                pki::pem_fingerprint(&pem).map_err(|error| GatewayError::TrustFile {
                    path: seed.certificate.display().to_string(),
                    reason: error.to_string(),
                })?;
            if self.registry.signer_role(&fingerprint).is_some() {
                continue;
            }
            let remote = self.is_remote(&seed.agency);
            self.registry
                .add_signer_of(seed.agency.as_str(), seed.role, &pem, remote)
                .await
                .map_err(|source| GatewayError::Seed {
                    what: format!("signer of agency {}", seed.agency),
                    source,
                })?;
        }
        let stored: Vec<String> = self
            .registry
            .policies()
            .into_iter()
            .map(|p| p.document_type)
            .collect();
        for policy in &self.config.policies {
            if stored.contains(&policy.document_type) {
                continue;
            }
            self.registry
                .put_policy(policy.clone())
                .await
                .map_err(|source| GatewayError::Seed {
                    what: format!("policy {}", policy.document_type),
                    source,
                })?;
        }
        Ok(())
    }
}
