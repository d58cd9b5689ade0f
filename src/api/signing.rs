//! `lienthong.v1.Signing`: authenticated, not implemented yet.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{Authenticator, convert};
use crate::{
    gateway::Gateway,
    proto::{self, signing_server::Signing},
};

/// The Signing service.
pub struct SigningService {
    gateway: Arc<Gateway>,
    auth: Authenticator,
}

impl SigningService {
    /// A service over the gateway.
    pub fn new(gateway: Arc<Gateway>, auth: Authenticator) -> Self {
        Self { gateway, auth }
    }
}

#[tonic::async_trait]
impl Signing for SigningService {
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        self.auth.agency_or_admin(&request)?;
        let request = request.into_inner();
        let limits = &self.gateway.config().limits;
        if request.content.len() as u64 > limits.max_message_bytes {
            return Err(Status::resource_exhausted(format!(
                "content: {} bytes exceeds the limit of {}",
                request.content.len(),
                limits.max_message_bytes
            )));
        }
        if request.cms_der.len() as u64 > limits.max_signature_bytes {
            return Err(Status::resource_exhausted(format!(
                "cms_der: {} bytes exceeds the limit of {}",
                request.cms_der.len(),
                limits.max_signature_bytes
            )));
        }
        let attachment = if request.attachment.is_empty() {
            "content".to_owned()
        } else {
            request.attachment
        };
        let reports = self
            .gateway
            .verify(request.content, request.cms_der, attachment)
            .await?;
        Ok(Response::new(proto::VerifyResponse {
            reports: reports.iter().map(convert::report).collect(),
        }))
    }

    async fn sign(
        &self,
        request: Request<proto::SignRequest>,
    ) -> Result<Response<proto::SignResponse>, Status> {
        self.auth.agency(&request)?;
        Err(Status::unimplemented("Sign is not implemented yet"))
    }

    async fn co_sign(
        &self,
        request: Request<proto::CoSignRequest>,
    ) -> Result<Response<proto::CoSignResponse>, Status> {
        self.auth.agency(&request)?;
        Err(Status::unimplemented("CoSign is not implemented yet"))
    }
}
