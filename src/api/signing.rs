//! `lienthong.v1.Signing`: authenticated, not implemented yet.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::{Authenticator, convert};
use crate::{
    gateway::{Gateway, GatewayError},
    proto::{self, signing_server::Signing},
};

/// The most a SignStream call may hash: large, but bounded.
const MAX_STREAMED_BYTES: u64 = 8 << 30;

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
        let caller = self.auth.agency(&request)?;
        let request = request.into_inner();
        self.check_content(&request.content, &[])?;
        let key = request
            .key
            .ok_or_else(|| Status::invalid_argument("key: is required"))?;
        let role = convert::role_from(key.role, "key.role")?;
        let (cms_der, facts) = self
            .gateway
            .sign(&caller, &key.agency, role, request.content)
            .await?;
        Ok(Response::new(proto::SignResponse {
            cms_der,
            signer: Some(convert::certificate_facts(&facts, &key.agency, role)),
        }))
    }

    async fn sign_stream(
        &self,
        request: Request<Streaming<proto::SignStreamRequest>>,
    ) -> Result<Response<proto::SignResponse>, Status> {
        use proto::sign_stream_request::Part;
        let caller = self.auth.agency(&request)?;
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the stream is empty; send the key first"))?;
        let Some(Part::Key(key)) = first.part else {
            return Err(Status::invalid_argument(
                "the first message must carry the key",
            ));
        };
        let role = convert::role_from(key.role, "key.role")?;
        let (mut signer, facts) = self.gateway.begin_sign(&caller, &key.agency, role)?;
        let mut total: u64 = 0;
        while let Some(message) = stream.message().await? {
            match message.part {
                Some(Part::Chunk(chunk)) => {
                    total += chunk.len() as u64;
                    if total > MAX_STREAMED_BYTES {
                        return Err(Status::resource_exhausted(format!(
                            "content: more than {MAX_STREAMED_BYTES} bytes streamed"
                        )));
                    }
                    // Hashing is CPU work: off the reactor.
                    signer =
                        tokio::task::spawn_blocking(move || signer.update(&chunk).map(|()| signer))
                            .await
                            .map_err(|e| Status::internal(format!("signing task failed: {e}")))?
                            .map_err(GatewayError::from)?;
                }
                Some(Part::Key(_)) => {
                    return Err(Status::invalid_argument("the key was given twice"));
                }
                None => {}
            }
        }
        let cms_der = tokio::task::spawn_blocking(move || signer.finish())
            .await
            .map_err(|e| Status::internal(format!("signing task failed: {e}")))?
            .map_err(GatewayError::from)?;
        Ok(Response::new(proto::SignResponse {
            cms_der,
            signer: Some(convert::certificate_facts(&facts, &key.agency, role)),
        }))
    }

    async fn co_sign(
        &self,
        request: Request<proto::CoSignRequest>,
    ) -> Result<Response<proto::CoSignResponse>, Status> {
        let caller = self.auth.agency(&request)?;
        let request = request.into_inner();
        self.check_content(&request.content, &request.cms_der)?;
        let key = request
            .key
            .ok_or_else(|| Status::invalid_argument("key: is required"))?;
        let role = convert::role_from(key.role, "key.role")?;
        let (cms_der, existing) = self
            .gateway
            .co_sign(&caller, &key.agency, role, request.content, request.cms_der)
            .await?;
        Ok(Response::new(proto::CoSignResponse {
            cms_der,
            existing: existing.iter().map(convert::report).collect(),
        }))
    }
}

impl SigningService {
    fn check_content(&self, content: &[u8], cms_der: &[u8]) -> Result<(), Status> {
        let limits = &self.gateway.config().limits;
        if content.len() as u64 > limits.max_message_bytes {
            return Err(Status::resource_exhausted(format!(
                "content: {} bytes exceeds the limit of {}",
                content.len(),
                limits.max_message_bytes
            )));
        }
        if cms_der.len() as u64 > limits.max_signature_bytes {
            return Err(Status::resource_exhausted(format!(
                "cms_der: {} bytes exceeds the limit of {}",
                cms_der.len(),
                limits.max_signature_bytes
            )));
        }
        Ok(())
    }
}
