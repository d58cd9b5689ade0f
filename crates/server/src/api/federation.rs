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
    links: Arc<crate::link::GrpcPeerLink>,
}

impl FederationService {
    /// A service over the gateway; `links` complete routes from further on.
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
    let envelope_edxml = envelope.edxml_header.clone();
    if header.hops.len() > 64 {
        return Err(ApiError::invalid("header.hops", "more than 64 hops"));
    }
    Ok(ForwardRequest {
        envelope: convert::raw_envelope(envelope),
        sizes,
        recipients: header.recipients,
        route: header.route,
        hops: convert::signed_hops(header.hops)?,
        edxml: (!envelope_edxml.is_empty()).then_some(envelope_edxml),
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
            let message = &receipt.receipt.message;
            let hops = self
                .gateway
                .hops_for_peer(message.sender.as_str(), message.message_id.as_str())?;
            Ok(Response::new(proto::ForwardResponse {
                custody: Some(convert::receipt(&receipt)),
                hops: hops.iter().map(convert::hop_record).collect(),
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
                hops: Vec::new(),
            }))
        })
        .await
    }

    #[instrument(skip_all, fields(peer))]
    async fn hops(
        &self,
        request: Request<proto::HopsRequest>,
    ) -> Result<Response<proto::HopsResponse>, Status> {
        reply(async move {
            let peer = self.auth.peer(&request)?;
            tracing::Span::current().record("peer", peer.as_str());
            let request = request.into_inner();
            let hops = complete_hops(
                &self.gateway,
                &self.links,
                &request.sender,
                &request.message_id,
                self.gateway
                    .hops_for_peer(&request.sender, &request.message_id)?,
                request.depth,
            )
            .await;
            Ok(Response::new(proto::HopsResponse {
                hops: hops.iter().map(convert::hop_record).collect(),
            }))
        })
        .await
    }
}

/// `hops`, completed from the gateway the last one forwarded to, when it
/// is a peer (at most `depth` calls onward); a longer chain is kept.
/// Failures leave the chain as it is: a trace shows what is known.
pub async fn complete_hops(
    gateway: &Gateway,
    links: &crate::link::GrpcPeerLink,
    sender: &str,
    message_id: &str,
    hops: Vec<crate::federation::SignedHop>,
    depth: u32,
) -> Vec<crate::federation::SignedHop> {
    let Some(last) = hops.last() else {
        return hops;
    };
    if last.hop.is_final() || depth == 0 {
        return hops;
    }
    let Ok(next) = crate::federation::GatewayId::parse(&last.hop.to, "to") else {
        return hops;
    };
    let longer = match links.hops(&next, sender, message_id, depth - 1).await {
        Ok(records) => match convert::signed_hops(records) {
            Ok(longer) if longer.len() > hops.len() && longer.starts_with(&hops) => longer,
            _ => return hops,
        },
        Err(error) => {
            tracing::debug!(peer = %next, %error, "asking a peer for the rest of a route failed");
            return hops;
        }
    };
    if let (Ok(sender), Ok(id)) = (
        crate::envelope::OrgCode::parse(sender, "sender"),
        crate::envelope::MessageId::parse(message_id, "message_id"),
    ) && let Err(error) = gateway.learn_hops(&sender, &id, longer.clone()).await
    {
        tracing::warn!(%error, "keeping a longer route failed");
    }
    longer
}
