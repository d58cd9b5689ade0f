//! `lienthong.v1.Admin`: agencies, signers, groups, policies, trust, keys and
//! queues. Every call needs an admin certificate.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{ApiError, Authenticator, convert, reply};
use crate::{
    envelope::OrgCode,
    gateway::Gateway,
    proto::{self, admin_server::Admin},
    registry::NewAgency,
};

/// The Admin service.
pub struct AdminService {
    gateway: Arc<Gateway>,
    auth: Authenticator,
    links: Arc<crate::link::GrpcPeerLink>,
}

impl AdminService {
    /// A service over the gateway; `links` are the peer links ProbePeer
    /// checks.
    pub fn new(
        gateway: Arc<Gateway>,
        auth: Authenticator,
        links: Arc<crate::link::GrpcPeerLink>,
    ) -> Self {
        Self {
            gateway,
            auth,
            links,
        }
    }
}

/// An org code (or a peer's queue, `peer:VN:GOV:HUB`) from a request field
/// where empty means "all".
fn optional_code(text: &str) -> Result<Option<OrgCode>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    Ok(Some(OrgCode::parse_queue(text, "agency")?))
}

#[tonic::async_trait]
impl Admin for AdminService {
    #[instrument(skip_all)]
    async fn register_agency(
        &self,
        request: Request<proto::RegisterAgencyRequest>,
    ) -> Result<Response<proto::RegisterAgencyResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let request = request.into_inner();
            let agency = self
                .gateway
                .register_agency(NewAgency {
                    code: request.code,
                    name: request.name,
                    parent: request.parent,
                    certificates_pem: request
                        .certificate_pem
                        .into_iter()
                        .map(String::into_bytes)
                        .collect(),
                })
                .await?;
            Ok(Response::new(proto::RegisterAgencyResponse {
                agency: Some(convert::agency(&agency)),
            }))
        })
        .await
    }

    async fn list_agencies(
        &self,
        request: Request<proto::ListAgenciesRequest>,
    ) -> Result<Response<proto::ListAgenciesResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let agencies = self
                .gateway
                .agencies()
                .iter()
                .map(convert::agency)
                .collect();
            Ok(Response::new(proto::ListAgenciesResponse { agencies }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn disable_agency(
        &self,
        request: Request<proto::DisableAgencyRequest>,
    ) -> Result<Response<proto::DisableAgencyResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let agency = self
                .gateway
                .set_agency_disabled(&request.into_inner().code, true)
                .await?;
            Ok(Response::new(proto::DisableAgencyResponse {
                agency: Some(convert::agency(&agency)),
            }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn add_agency_certificate(
        &self,
        request: Request<proto::AddAgencyCertificateRequest>,
    ) -> Result<Response<proto::AddAgencyCertificateResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let request = request.into_inner();
            let agency = self
                .gateway
                .add_agency_certificate(&request.code, request.certificate_pem.as_bytes())
                .await?;
            Ok(Response::new(proto::AddAgencyCertificateResponse {
                agency: Some(convert::agency(&agency)),
            }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn remove_agency_certificate(
        &self,
        request: Request<proto::RemoveAgencyCertificateRequest>,
    ) -> Result<Response<proto::RemoveAgencyCertificateResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let request = request.into_inner();
            let agency = self
                .gateway
                .remove_agency_certificate(&request.code, &request.fingerprint)
                .await?;
            Ok(Response::new(proto::RemoveAgencyCertificateResponse {
                agency: Some(convert::agency(&agency)),
            }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn enable_agency(
        &self,
        request: Request<proto::EnableAgencyRequest>,
    ) -> Result<Response<proto::EnableAgencyResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let agency = self
                .gateway
                .set_agency_disabled(&request.into_inner().code, false)
                .await?;
            Ok(Response::new(proto::EnableAgencyResponse {
                agency: Some(convert::agency(&agency)),
            }))
        })
        .await
    }

    async fn queue_stats(
        &self,
        request: Request<proto::QueueStatsRequest>,
    ) -> Result<Response<proto::QueueStatsResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let (stats, now) = self
                .gateway
                .queue_stats(optional_code(&request.into_inner().agency)?)?;
            let agencies = stats
                .iter()
                .map(|(code, depth)| convert::queue_stats(code.as_str(), depth, now))
                .collect();
            Ok(Response::new(proto::QueueStatsResponse { agencies }))
        })
        .await
    }

    async fn probe_peer(
        &self,
        request: Request<proto::ProbePeerRequest>,
    ) -> Result<Response<proto::ProbePeerResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let peer = request.into_inner().peer;
            let id = crate::federation::GatewayId::parse(&peer, "peer")?;
            let Some((url, steps)) = self.links.probe(&id).await else {
                return Err(crate::gateway::GatewayError::UnknownPeer(peer).into());
            };
            let (stats, now) = self.gateway.queue_stats(Some(id.mailbox()))?;
            let ok = steps.iter().all(|step| step.ok) && steps.len() == 4;
            Ok(Response::new(proto::ProbePeerResponse {
                peer,
                url,
                ok,
                steps: steps
                    .into_iter()
                    .map(|step| proto::ProbeStep {
                        step: step.step.to_owned(),
                        ok: step.ok,
                        micros: u64::try_from(step.elapsed.as_micros()).unwrap_or(u64::MAX),
                        detail: step.detail,
                    })
                    .collect(),
                queue: stats
                    .first()
                    .map(|(code, depth)| convert::queue_stats(code.as_str(), depth, now)),
            }))
        })
        .await
    }

    async fn list_dead_letters(
        &self,
        request: Request<proto::ListDeadLettersRequest>,
    ) -> Result<Response<proto::ListDeadLettersResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let request = request.into_inner();
            let agency = optional_code(&request.agency)?;
            let limit = match request.limit {
                0 => 100,
                limit => limit.min(10_000) as usize,
            };
            let dead_letters = self
                .gateway
                .dead_letters(agency.as_ref(), limit)?
                .iter()
                .map(convert::dead_letter)
                .collect();
            Ok(Response::new(proto::ListDeadLettersResponse {
                dead_letters,
            }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn replay_dead_letter(
        &self,
        request: Request<proto::ReplayDeadLetterRequest>,
    ) -> Result<Response<proto::ReplayDeadLetterResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            self.gateway
                .replay_dead_letter(&request.into_inner().dead_letter_id)
                .await?;
            Ok(Response::new(proto::ReplayDeadLetterResponse {}))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn purge_queue(
        &self,
        request: Request<proto::PurgeQueueRequest>,
    ) -> Result<Response<proto::PurgeQueueResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let request = request.into_inner();
            let agency =
                optional_code(&request.agency)?.ok_or_else(|| ApiError::missing("agency"))?;
            let purged = self.gateway.purge_queue(&agency, request.confirm).await?;
            Ok(Response::new(proto::PurgeQueueResponse { purged }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn add_signer(
        &self,
        request: Request<proto::AddSignerRequest>,
    ) -> Result<Response<proto::AddSignerResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let request = request.into_inner();
            let role = convert::role_from(request.role, "role")?;
            let signer = self
                .gateway
                .add_signer(&request.agency, role, request.certificate_pem.as_bytes())
                .await?;
            Ok(Response::new(proto::AddSignerResponse {
                signer: Some(convert::signer(&signer)),
            }))
        })
        .await
    }

    async fn list_signers(
        &self,
        request: Request<proto::ListSignersRequest>,
    ) -> Result<Response<proto::ListSignersResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let agency = optional_code(&request.into_inner().agency)?;
            let signers = self
                .gateway
                .signers(agency.as_ref())
                .iter()
                .map(convert::signer)
                .collect();
            Ok(Response::new(proto::ListSignersResponse { signers }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn remove_signer(
        &self,
        request: Request<proto::RemoveSignerRequest>,
    ) -> Result<Response<proto::RemoveSignerResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            self.gateway
                .remove_signer(&request.into_inner().sha256_fingerprint)
                .await?;
            Ok(Response::new(proto::RemoveSignerResponse {}))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn put_policy(
        &self,
        request: Request<proto::PutPolicyRequest>,
    ) -> Result<Response<proto::PutPolicyResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let policy = request
                .into_inner()
                .policy
                .ok_or_else(|| ApiError::missing("policy"))?;
            let policy = self
                .gateway
                .put_policy(convert::policy_from(policy)?)
                .await?;
            Ok(Response::new(proto::PutPolicyResponse {
                policy: Some(convert::policy(&policy)),
            }))
        })
        .await
    }

    async fn list_policies(
        &self,
        request: Request<proto::ListPoliciesRequest>,
    ) -> Result<Response<proto::ListPoliciesResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let policies = self
                .gateway
                .policies()
                .iter()
                .map(convert::policy)
                .collect();
            Ok(Response::new(proto::ListPoliciesResponse { policies }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn add_trust_anchor(
        &self,
        request: Request<proto::AddTrustAnchorRequest>,
    ) -> Result<Response<proto::AddTrustAnchorResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let item = self
                .gateway
                .add_trust_anchor(request.into_inner().certificate_pem.as_bytes())
                .await?;
            Ok(Response::new(proto::AddTrustAnchorResponse {
                anchor: Some(convert::trust_item(&item, "admin")),
            }))
        })
        .await
    }

    async fn list_trust(
        &self,
        request: Request<proto::ListTrustRequest>,
    ) -> Result<Response<proto::ListTrustResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let (anchors, crls) = self.gateway.trust_items();
            Ok(Response::new(proto::ListTrustResponse {
                anchors: anchors.iter().map(|a| convert::trust_item(a, "")).collect(),
                crls: crls.iter().map(|c| convert::trust_item(c, "")).collect(),
            }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn publish_crl(
        &self,
        request: Request<proto::PublishCrlRequest>,
    ) -> Result<Response<proto::PublishCrlResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let item = self.gateway.publish_crl(&request.into_inner().crl).await?;
            Ok(Response::new(proto::PublishCrlResponse {
                crl: Some(convert::trust_item(&item, "admin")),
            }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn import_key(
        &self,
        request: Request<proto::ImportKeyRequest>,
    ) -> Result<Response<proto::ImportKeyResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let request = request.into_inner();
            let key = request.key.ok_or_else(|| ApiError::missing("key"))?;
            let role = convert::role_from(key.role, "key.role")?;
            let facts = self
                .gateway
                .import_key(
                    &key.agency,
                    role,
                    request.certificate_pem.as_bytes(),
                    request.private_key_pem.as_bytes(),
                )
                .await?;
            Ok(Response::new(proto::ImportKeyResponse {
                certificate: Some(convert::certificate_facts(&facts, &key.agency, role)),
            }))
        })
        .await
    }

    async fn list_keys(
        &self,
        request: Request<proto::ListKeysRequest>,
    ) -> Result<Response<proto::ListKeysResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let keys = self
                .gateway
                .held_keys()
                .iter()
                .map(|(agency, role, facts)| proto::HeldKey {
                    key: Some(proto::KeyRef {
                        agency: agency.to_string(),
                        role: convert::role(*role) as i32,
                    }),
                    certificate: Some(convert::certificate_facts(facts, agency.as_str(), *role)),
                })
                .collect();
            Ok(Response::new(proto::ListKeysResponse { keys }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn put_group(
        &self,
        request: Request<proto::PutGroupRequest>,
    ) -> Result<Response<proto::PutGroupResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let group = request
                .into_inner()
                .group
                .ok_or_else(|| ApiError::missing("group"))?;
            let group = self
                .gateway
                .put_group(&group.name, &group.description, &group.members)
                .await?;
            Ok(Response::new(proto::PutGroupResponse {
                group: Some(convert::group(&group)),
            }))
        })
        .await
    }

    async fn list_groups(
        &self,
        request: Request<proto::ListGroupsRequest>,
    ) -> Result<Response<proto::ListGroupsResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            let groups = self.gateway.groups().iter().map(convert::group).collect();
            Ok(Response::new(proto::ListGroupsResponse { groups }))
        })
        .await
    }

    #[instrument(skip_all)]
    async fn delete_group(
        &self,
        request: Request<proto::DeleteGroupRequest>,
    ) -> Result<Response<proto::DeleteGroupResponse>, Status> {
        reply(async move {
            self.auth.admin(&request)?;
            self.gateway
                .delete_group(&request.into_inner().name)
                .await?;
            Ok(Response::new(proto::DeleteGroupResponse {}))
        })
        .await
    }
}
