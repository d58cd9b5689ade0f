//! `lienthong.v1.Signing`: Verify, Sign, SignStream and CoSign over the
//! gateway's held keys.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::{ApiError, Authenticator, convert, reply};
use crate::{
    gateway::Gateway,
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
        reply(async move {
            self.auth.agency_or_admin(&request)?;
            let request = request.into_inner();
            self.check_content(&request.content, &request.cms_der)?;
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
        })
        .await
    }

    async fn sign(
        &self,
        request: Request<proto::SignRequest>,
    ) -> Result<Response<proto::SignResponse>, Status> {
        reply(async move {
            let caller = self.auth.agency(&request)?;
            let request = request.into_inner();
            self.check_content(&request.content, &[])?;
            let key = request.key.ok_or_else(|| ApiError::missing("key"))?;
            let role = convert::role_from(key.role, "key.role")?;
            let (cms_der, facts) = self
                .gateway
                .sign(&caller, &key.agency, role, request.content)
                .await?;
            Ok(Response::new(proto::SignResponse {
                cms_der,
                signer: Some(convert::certificate_facts(&facts, &key.agency, role)),
            }))
        })
        .await
    }

    async fn sign_stream(
        &self,
        request: Request<Streaming<proto::SignStreamRequest>>,
    ) -> Result<Response<proto::SignResponse>, Status> {
        reply(async move {
            use proto::sign_stream_request::Part;
            let caller = self.auth.agency(&request)?;
            let mut stream = request.into_inner();
            let first = stream.message().await?.ok_or(ApiError::invalid(
                "key",
                "the stream is empty; send the key first",
            ))?;
            let Some(Part::Key(key)) = first.part else {
                return Err(ApiError::invalid(
                    "key",
                    "the first message must carry the key",
                ));
            };
            let role = convert::role_from(key.role, "key.role")?;
            let mut signer = self.gateway.begin_sign(&caller, &key.agency, role)?;
            let mut total: u64 = 0;
            while let Some(message) = stream.message().await? {
                match message.part {
                    Some(Part::Chunk(chunk)) => {
                        total += chunk.len() as u64;
                        if total > MAX_STREAMED_BYTES {
                            return Err(ApiError::too_large("content", total, MAX_STREAMED_BYTES));
                        }
                        signer.update(chunk).await?;
                    }
                    Some(Part::Key(_)) => {
                        return Err(ApiError::invalid("key", "the key was given twice"));
                    }
                    None => {}
                }
            }
            let (cms_der, facts) = signer.finish().await?;
            Ok(Response::new(proto::SignResponse {
                cms_der,
                signer: Some(convert::certificate_facts(&facts, &key.agency, role)),
            }))
        })
        .await
    }

    async fn co_sign(
        &self,
        request: Request<proto::CoSignRequest>,
    ) -> Result<Response<proto::CoSignResponse>, Status> {
        reply(async move {
            let caller = self.auth.agency(&request)?;
            let request = request.into_inner();
            self.check_content(&request.content, &request.cms_der)?;
            let key = request.key.ok_or_else(|| ApiError::missing("key"))?;
            let role = convert::role_from(key.role, "key.role")?;
            let (cms_der, existing) = self
                .gateway
                .co_sign(&caller, &key.agency, role, request.content, request.cms_der)
                .await?;
            Ok(Response::new(proto::CoSignResponse {
                cms_der,
                existing: existing.iter().map(convert::report).collect(),
            }))
        })
        .await
    }
}

impl SigningService {
    fn check_content(&self, content: &[u8], cms_der: &[u8]) -> Result<(), ApiError> {
        let limits = &self.gateway.config().limits;
        if content.len() as u64 > limits.max_message_bytes {
            return Err(ApiError::too_large(
                "content",
                content.len() as u64,
                limits.max_message_bytes,
            ));
        }
        if cms_der.len() as u64 > limits.max_signature_bytes {
            return Err(ApiError::too_large(
                "cms_der",
                cms_der.len() as u64,
                limits.max_signature_bytes,
            ));
        }
        Ok(())
    }
}
