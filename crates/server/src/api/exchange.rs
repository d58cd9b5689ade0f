//! `lienthong.v1.Exchange`: thin handlers over the gateway core.

use std::{pin::Pin, sync::Arc};

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

use super::{ApiError, Authenticator, convert, reply};
use crate::{
    envelope::EnvelopeError,
    gateway::{Gateway, GatewayError, Outgoing},
    proto::{self, exchange_server::Exchange},
};

/// The Exchange service.
pub struct ExchangeService {
    gateway: Arc<Gateway>,
    auth: Authenticator,
    links: Arc<crate::link::GrpcPeerLink>,
}

impl ExchangeService {
    /// A service over the gateway; `links` complete the routes Trace shows.
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

type DeliveryStream = Pin<Box<dyn Stream<Item = Result<proto::Delivery, Status>> + Send>>;

#[tonic::async_trait]
impl Exchange for ExchangeService {
    #[instrument(skip_all, fields(agency))]
    async fn send(
        &self,
        request: Request<proto::SendRequest>,
    ) -> Result<Response<proto::SendResponse>, Status> {
        reply(async move {
            let caller = self.auth.agency(&request)?;
            tracing::Span::current().record("agency", caller.code.as_str());
            let envelope = request
                .into_inner()
                .envelope
                .ok_or_else(|| ApiError::missing("envelope"))?;
            let receipt = self
                .gateway
                .send(&caller, convert::raw_envelope(envelope))
                .await?;
            Ok(Response::new(proto::SendResponse {
                receipt: Some(convert::receipt(&receipt)),
            }))
        })
        .await
    }

    #[instrument(skip_all, fields(agency))]
    async fn send_stream(
        &self,
        request: Request<Streaming<proto::SendStreamRequest>>,
    ) -> Result<Response<proto::SendResponse>, Status> {
        reply(async move {
            let caller = self.auth.agency(&request)?;
            tracing::Span::current().record("agency", caller.code.as_str());
            let mut parts = request.into_inner();
            let envelope = stream_envelope(parts.message().await?)?;
            let sizes: Vec<u64> = envelope.attachments.iter().map(|a| a.size).collect();
            let chunks = parts.map(|part| match part {
                Ok(part) => stream_chunk(part),
                Err(status) => Err(GatewayError::StreamBroken(status.message().to_owned())),
            });
            let receipt = self
                .gateway
                .send_stream(&caller, convert::raw_envelope(envelope), sizes, chunks)
                .await?;
            Ok(Response::new(proto::SendResponse {
                receipt: Some(convert::receipt(&receipt)),
            }))
        })
        .await
    }

    type ReceiveStream = DeliveryStream;

    #[instrument(skip_all, fields(agency))]
    async fn receive(
        &self,
        request: Request<proto::ReceiveRequest>,
    ) -> Result<Response<DeliveryStream>, Status> {
        reply(async move {
            let caller = self.auth.agency(&request)?;
            tracing::Span::current().record("agency", caller.code.as_str());
            let options = request.into_inner();
            let deliveries = self.gateway.receive(
                caller,
                options.max_in_flight,
                options.drain,
                crate::gateway::ReceiveFormat::Envelope,
            );
            // The buffer room of each item is given back here, as the
            // transport takes it.
            let stream = ReceiverStream::new(deliveries).map(|buffered| match buffered.item {
                Ok(Outgoing::Delivery(delivery)) => Ok(convert::delivery(*delivery)),
                Ok(Outgoing::Chunk(chunk)) => Ok(convert::delivery_chunk(chunk)),
                Err(error) => Err(Status::from(ApiError::from(error))),
            });
            let stream: DeliveryStream = Box::pin(stream);
            Ok(Response::new(stream))
        })
        .await
    }

    #[instrument(skip_all, fields(agency))]
    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckResponse>, Status> {
        reply(async move {
            let caller = self.auth.agency(&request)?;
            tracing::Span::current().record("agency", caller.code.as_str());
            self.gateway
                .ack(&caller, &request.into_inner().delivery_id)
                .await?;
            Ok(Response::new(proto::AckResponse {}))
        })
        .await
    }

    #[instrument(skip_all, fields(agency))]
    async fn nack(
        &self,
        request: Request<proto::NackRequest>,
    ) -> Result<Response<proto::NackResponse>, Status> {
        reply(async move {
            let caller = self.auth.agency(&request)?;
            tracing::Span::current().record("agency", caller.code.as_str());
            let request = request.into_inner();
            let delay = std::time::Duration::from_secs(u64::from(request.delay_seconds));
            self.gateway
                .nack(&caller, &request.delivery_id, delay, &request.reason)
                .await?;
            Ok(Response::new(proto::NackResponse {}))
        })
        .await
    }

    #[instrument(skip_all, fields(agency))]
    async fn report_status(
        &self,
        request: Request<proto::ReportStatusRequest>,
    ) -> Result<Response<proto::ReportStatusResponse>, Status> {
        reply(async move {
            let caller = self.auth.agency(&request)?;
            tracing::Span::current().record("agency", caller.code.as_str());
            let status = request
                .into_inner()
                .status
                .ok_or_else(|| ApiError::missing("status"))?;
            let receipt = self
                .gateway
                .report_status(&caller, convert::raw_status(status))
                .await?;
            Ok(Response::new(proto::ReportStatusResponse {
                receipt: Some(convert::status_receipt(&receipt)),
            }))
        })
        .await
    }

    async fn trace(
        &self,
        request: Request<proto::TraceRequest>,
    ) -> Result<Response<proto::TraceResponse>, Status> {
        reply(async move {
            let caller = self.auth.agency(&request)?;
            let request = request.into_inner();
            let entries = self
                .gateway
                .trace(&caller, &request.sender, &request.message_id)?;
            let (sender, message_id, known) =
                self.gateway
                    .hops(&caller, &request.sender, &request.message_id)?;
            let depth = self
                .gateway
                .federation()
                .map_or(0, |f| u32::try_from(f.max_hops).unwrap_or(16));
            let hops = super::complete_hops(
                &self.gateway,
                &self.links,
                sender.as_str(),
                message_id.as_str(),
                known,
                depth,
            )
            .await;
            Ok(Response::new(proto::TraceResponse {
                events: entries.iter().map(convert::trace_event).collect(),
                hops: hops.iter().map(convert::hop_record).collect(),
            }))
        })
        .await
    }
}

/// The envelope a SendStream must open with, from its first message.
pub fn stream_envelope(
    first: Option<proto::SendStreamRequest>,
) -> Result<proto::Envelope, ApiError> {
    use proto::send_stream_request::Part;
    match first {
        Some(proto::SendStreamRequest {
            part: Some(Part::Envelope(envelope)),
        }) => Ok(envelope),
        Some(_) => Err(ApiError::invalid(
            "envelope",
            "the first message of SendStream must be the envelope",
        )),
        None => Err(ApiError::invalid("envelope", "the stream was empty")),
    }
}

/// A SendStream message after the envelope: only content chunks, as
/// (attachment name, bytes).
pub fn stream_chunk(part: proto::SendStreamRequest) -> Result<(String, Vec<u8>), GatewayError> {
    use proto::send_stream_request::Part;
    match part.part {
        Some(Part::Chunk(chunk)) => Ok((chunk.attachment, chunk.data)),
        _ => Err(
            EnvelopeError::invalid("chunk", "only content chunks may follow the envelope").into(),
        ),
    }
}
