//! `lienthong.v1.Admin`: agencies and queue statistics; the rest arrives with
//! later issues and answers UNIMPLEMENTED until then.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{Authenticator, convert};
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
}

impl AdminService {
    /// A service over the gateway.
    pub fn new(gateway: Arc<Gateway>, auth: Authenticator) -> Self {
        Self { gateway, auth }
    }
}

/// An org code from a request field where empty means "all".
fn optional_code(text: &str) -> Result<Option<OrgCode>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    OrgCode::parse(text, "agency")
        .map(Some)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Authenticates an admin, then answers UNIMPLEMENTED for a later capability.
/// Written in the form `#[async_trait]` expands to, which it cannot do for
/// methods made by a macro.
macro_rules! not_yet {
    ($name:ident, $request:ty, $response:ty, $what:literal) => {
        fn $name<'life0, 'async_trait>(
            &'life0 self,
            request: Request<$request>,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<Response<$response>, Status>>
                    + Send
                    + 'async_trait,
            >,
        >
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                self.auth.admin(&request)?;
                Err(Status::unimplemented(concat!(
                    $what,
                    " is not implemented yet"
                )))
            })
        }
    };
}

#[tonic::async_trait]
impl Admin for AdminService {
    #[instrument(skip_all)]
    async fn register_agency(
        &self,
        request: Request<proto::RegisterAgencyRequest>,
    ) -> Result<Response<proto::RegisterAgencyResponse>, Status> {
        self.auth.admin(&request)?;
        let request = request.into_inner();
        let agency = self
            .gateway
            .registry()
            .register(NewAgency {
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
    }

    async fn list_agencies(
        &self,
        request: Request<proto::ListAgenciesRequest>,
    ) -> Result<Response<proto::ListAgenciesResponse>, Status> {
        self.auth.admin(&request)?;
        let agencies = self
            .gateway
            .registry()
            .list()
            .iter()
            .map(convert::agency)
            .collect();
        Ok(Response::new(proto::ListAgenciesResponse { agencies }))
    }

    #[instrument(skip_all)]
    async fn disable_agency(
        &self,
        request: Request<proto::DisableAgencyRequest>,
    ) -> Result<Response<proto::DisableAgencyResponse>, Status> {
        self.auth.admin(&request)?;
        let agency = self
            .gateway
            .registry()
            .set_disabled(&request.into_inner().code, true)
            .await?;
        Ok(Response::new(proto::DisableAgencyResponse {
            agency: Some(convert::agency(&agency)),
        }))
    }

    #[instrument(skip_all)]
    async fn enable_agency(
        &self,
        request: Request<proto::EnableAgencyRequest>,
    ) -> Result<Response<proto::EnableAgencyResponse>, Status> {
        self.auth.admin(&request)?;
        let agency = self
            .gateway
            .registry()
            .set_disabled(&request.into_inner().code, false)
            .await?;
        Ok(Response::new(proto::EnableAgencyResponse {
            agency: Some(convert::agency(&agency)),
        }))
    }

    not_yet!(
        add_signer,
        proto::AddSignerRequest,
        proto::AddSignerResponse,
        "AddSigner"
    );
    not_yet!(
        list_signers,
        proto::ListSignersRequest,
        proto::ListSignersResponse,
        "ListSigners"
    );
    not_yet!(
        remove_signer,
        proto::RemoveSignerRequest,
        proto::RemoveSignerResponse,
        "RemoveSigner"
    );
    not_yet!(
        put_group,
        proto::PutGroupRequest,
        proto::PutGroupResponse,
        "PutGroup"
    );
    not_yet!(
        list_groups,
        proto::ListGroupsRequest,
        proto::ListGroupsResponse,
        "ListGroups"
    );
    not_yet!(
        delete_group,
        proto::DeleteGroupRequest,
        proto::DeleteGroupResponse,
        "DeleteGroup"
    );
    not_yet!(
        put_policy,
        proto::PutPolicyRequest,
        proto::PutPolicyResponse,
        "PutPolicy"
    );
    not_yet!(
        list_policies,
        proto::ListPoliciesRequest,
        proto::ListPoliciesResponse,
        "ListPolicies"
    );
    not_yet!(
        add_trust_anchor,
        proto::AddTrustAnchorRequest,
        proto::AddTrustAnchorResponse,
        "AddTrustAnchor"
    );
    not_yet!(
        list_trust,
        proto::ListTrustRequest,
        proto::ListTrustResponse,
        "ListTrust"
    );
    not_yet!(
        publish_crl,
        proto::PublishCrlRequest,
        proto::PublishCrlResponse,
        "PublishCrl"
    );
    not_yet!(
        import_key,
        proto::ImportKeyRequest,
        proto::ImportKeyResponse,
        "ImportKey"
    );
    not_yet!(
        list_keys,
        proto::ListKeysRequest,
        proto::ListKeysResponse,
        "ListKeys"
    );

    async fn queue_stats(
        &self,
        request: Request<proto::QueueStatsRequest>,
    ) -> Result<Response<proto::QueueStatsResponse>, Status> {
        self.auth.admin(&request)?;
        let codes: Vec<OrgCode> = match optional_code(&request.into_inner().agency)? {
            Some(code) => vec![code],
            None => self
                .gateway
                .registry()
                .list()
                .into_iter()
                .map(|a| a.code)
                .collect(),
        };
        let now = crate::clock::Clock::now_millis(&crate::clock::SystemClock);
        let mut agencies = Vec::with_capacity(codes.len());
        for code in codes {
            let depth = self.gateway.queue().depth(&code)?;
            agencies.push(convert::queue_stats(code.as_str(), &depth, now));
        }
        Ok(Response::new(proto::QueueStatsResponse { agencies }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<proto::ListDeadLettersRequest>,
    ) -> Result<Response<proto::ListDeadLettersResponse>, Status> {
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
    }

    #[instrument(skip_all)]
    async fn replay_dead_letter(
        &self,
        request: Request<proto::ReplayDeadLetterRequest>,
    ) -> Result<Response<proto::ReplayDeadLetterResponse>, Status> {
        self.auth.admin(&request)?;
        self.gateway
            .queue()
            .replay(&request.into_inner().dead_letter_id)
            .await?;
        Ok(Response::new(proto::ReplayDeadLetterResponse {}))
    }

    #[instrument(skip_all)]
    async fn purge_queue(
        &self,
        request: Request<proto::PurgeQueueRequest>,
    ) -> Result<Response<proto::PurgeQueueResponse>, Status> {
        self.auth.admin(&request)?;
        let request = request.into_inner();
        let agency = optional_code(&request.agency)?
            .ok_or_else(|| Status::invalid_argument("agency: is required"))?;
        let purged = self.gateway.queue().purge(&agency, request.confirm).await?;
        Ok(Response::new(proto::PurgeQueueResponse { purged }))
    }
}
