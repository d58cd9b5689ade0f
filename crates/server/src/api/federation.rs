//! `lienthong.v1.Federation`: documents handed over by peer gateways.

use std::sync::Arc;

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

use super::{ApiError, Authenticator, convert, reply};
use crate::{
    envelope::EnvelopeError,
    gateway::{ForwardRequest, Gateway, GatewayError},
    proto::{self, federation_server::Federation, forward_request::Part},
};

/// The Federation service.
pub struct FederationService {
    gateway: Arc<Gateway>,
    auth: Authenticator,
}

impl FederationService {
    /// A service over the gateway.
    pub fn new(gateway: Arc<Gateway>, auth: Authenticator) -> Self {
        Self { gateway, auth }
    }
}

/// The header a Forward must open with, from its first message.
pub fn forward_header(first: Option<proto::ForwardRequest>) -> Result<ForwardRequest, ApiError> {
    let header = match first {
        Some(proto::ForwardRequest {
            part: Some(Part::Header(header)),
        }) => header,
        Some(_) => {
            return Err(ApiError::invalid(
                "header",
                "the first message of Forward must be the header",
            ));
        }
        None => return Err(ApiError::invalid("header", "the stream was empty")),
    };
    let envelope = header
        .envelope
        .ok_or_else(|| ApiError::missing("header.envelope"))?;
    let sizes = envelope.attachments.iter().map(|a| a.size).collect();
    Ok(ForwardRequest {
        envelope: convert::raw_envelope(envelope),
        sizes,
        recipients: header.recipients,
        route: header.route,
    })
}

/// A Forward message after the header: only content chunks.
pub fn forward_chunk(part: proto::ForwardRequest) -> Result<(String, Vec<u8>), GatewayError> {
    match part.part {
        Some(Part::Chunk(chunk)) => Ok((chunk.attachment, chunk.data)),
        _ => {
            Err(EnvelopeError::invalid("chunk", "only content chunks may follow the header").into())
        }
    }
}

#[tonic::async_trait]
impl Federation for FederationService {
    #[instrument(skip_all, fields(peer))]
    async fn forward(
        &self,
        request: Request<Streaming<proto::ForwardRequest>>,
    ) -> Result<Response<proto::ForwardResponse>, Status> {
        reply(async move {
            let peer = self.auth.peer(&request)?;
            tracing::Span::current().record("peer", peer.as_str());
            let mut parts = request.into_inner();
            let header = forward_header(parts.message().await?)?;
            let chunks = parts.map(|part| match part {
                Ok(part) => forward_chunk(part),
                Err(status) => Err(GatewayError::StreamBroken(status.message().to_owned())),
            });
            let receipt = self.gateway.accept_forwarded(&peer, header, chunks).await?;
            Ok(Response::new(proto::ForwardResponse {
                custody: Some(convert::receipt(&receipt)),
            }))
        })
        .await
    }

    #[instrument(skip_all, fields(peer))]
    async fn forward_status(
        &self,
        request: Request<proto::ForwardStatusRequest>,
    ) -> Result<Response<proto::ForwardResponse>, Status> {
        reply(async move {
            let peer = self.auth.peer(&request)?;
            tracing::Span::current().record("peer", peer.as_str());
            let status = request
                .into_inner()
                .status
                .ok_or_else(|| ApiError::missing("status"))?;
            let receipt = self
                .gateway
                .accept_forwarded_status(&peer, convert::raw_status(status))
                .await?;
            Ok(Response::new(proto::ForwardResponse {
                custody: Some(convert::status_receipt(&receipt)),
            }))
        })
        .await
    }
}
