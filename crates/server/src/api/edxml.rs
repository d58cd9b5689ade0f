//! `lienthong.v1.Edxml`: edXML packages in (Send), deliveries rendered as
//! edXML (Receive), packages signed with held keys (Sign).

use std::{pin::Pin, sync::Arc};

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

use super::{ApiError, Authenticator, convert, reply};
use crate::{
    envelope::EnvelopeError,
    gateway::{EdxmlAccepted, Gateway, GatewayError, Outgoing, ReceiveFormat},
    proto::{self, edxml_server::Edxml},
};

/// The Edxml service.
pub struct EdxmlService {
    gateway: Arc<Gateway>,
    auth: Authenticator,
}

impl EdxmlService {
    /// A service over the gateway.
    pub fn new(gateway: Arc<Gateway>, auth: Authenticator) -> Self {
        Self { gateway, auth }
    }
}

type DeliveryStream = Pin<Box<dyn Stream<Item = Result<proto::EdxmlDelivery, Status>> + Send>>;
type SignStream = Pin<Box<dyn Stream<Item = Result<proto::EdxmlSignResponse, Status>> + Send>>;

/// The bytes after the options message, as the core takes them.
fn byte_chunks<M>(
    stream: Streaming<M>,
    chunk_of: impl Fn(M) -> Option<Result<Vec<u8>, &'static str>> + Send + 'static,
) -> impl Stream<Item = Result<Vec<u8>, GatewayError>> + Unpin + Send
where
    M: Send + 'static,
{
    stream.map(move |message| match message {
        Ok(message) => match chunk_of(message) {
            Some(Ok(chunk)) => Ok(chunk),
            Some(Err(reason)) => Err(EnvelopeError::invalid("part", reason).into()),
            None => Err(EnvelopeError::invalid(
                "part",
                "a message with neither options nor a chunk",
            )
            .into()),
        },
        Err(status) => Err(GatewayError::StreamBroken(status.message().to_owned())),
    })
}

#[tonic::async_trait]
impl Edxml for EdxmlService {
    #[instrument(skip_all, fields(agency))]
    async fn send(
        &self,
        request: Request<Streaming<proto::EdxmlSendRequest>>,
    ) -> Result<Response<proto::EdxmlSendResponse>, Status> {
        reply(async move {
            use proto::edxml_send_request::Part;
            let caller = self.auth.agency(&request)?;
            tracing::Span::current().record("agency", caller.code.as_str());
            let mut stream = request.into_inner();
            let Some(proto::EdxmlSendRequest {
                part: Some(Part::Options(options)),
            }) = stream.message().await?
            else {
                return Err(ApiError::invalid(
                    "options",
                    "the first message must carry the options (the package's size)",
                ));
            };
            let chunks = byte_chunks(stream, |m: proto::EdxmlSendRequest| match m.part {
                Some(Part::Chunk(chunk)) => Some(Ok(chunk)),
                Some(Part::Options(_)) => Some(Err("the options were given twice")),
                None => None,
            });
            let accepted = self
                .gateway
                .edxml_send(&caller, options.size, chunks)
                .await?;
            Ok(Response::new(match accepted {
                EdxmlAccepted::Document(receipt) => proto::EdxmlSendResponse {
                    reports: receipt
                        .receipt
                        .message
                        .reports
                        .iter()
                        .map(convert::report)
                        .collect(),
                    receipt: Some(convert::receipt(&receipt)),
                    status: false,
                },
                EdxmlAccepted::Status(receipt) => proto::EdxmlSendResponse {
                    receipt: Some(convert::status_receipt(&receipt)),
                    status: true,
                    reports: Vec::new(),
                },
            }))
        })
        .await
    }

    type ReceiveStream = DeliveryStream;

    #[instrument(skip_all, fields(agency))]
    async fn receive(
        &self,
        request: Request<proto::EdxmlReceiveRequest>,
    ) -> Result<Response<DeliveryStream>, Status> {
        reply(async move {
            let caller = self.auth.agency(&request)?;
            tracing::Span::current().record("agency", caller.code.as_str());
            let options = request.into_inner();
            let deliveries = self.gateway.receive(
                caller,
                options.max_in_flight,
                options.drain,
                ReceiveFormat::Edxml { sign: options.sign },
            );
            let stream = ReceiverStream::new(deliveries).map(|buffered| match buffered.item {
                Ok(Outgoing::Delivery(delivery)) => Ok(convert::edxml_head(*delivery)),
                Ok(Outgoing::Chunk(chunk)) => Ok(proto::EdxmlDelivery {
                    delivery_id: chunk.delivery_id,
                    attempt: 0,
                    part: Some(proto::edxml_delivery::Part::Chunk(chunk.data)),
                }),
                Err(error) => Err(Status::from(ApiError::from(error))),
            });
            Ok(Response::new(Box::pin(stream) as DeliveryStream))
        })
        .await
    }

    type SignStream = SignStream;

    #[instrument(skip_all, fields(agency))]
    async fn sign(
        &self,
        request: Request<Streaming<proto::EdxmlSignRequest>>,
    ) -> Result<Response<SignStream>, Status> {
        reply(async move {
            use proto::edxml_sign_request::Part;
            let caller = self.auth.agency(&request)?;
            tracing::Span::current().record("agency", caller.code.as_str());
            let mut stream = request.into_inner();
            let Some(proto::EdxmlSignRequest {
                part: Some(Part::Options(options)),
            }) = stream.message().await?
            else {
                return Err(ApiError::invalid(
                    "options",
                    "the first message must carry the options (key and size)",
                ));
            };
            let key = options
                .key
                .ok_or_else(|| ApiError::missing("options.key"))?;
            let role = convert::role_from(key.role, "options.key.role")?;
            let chunks = byte_chunks(stream, |m: proto::EdxmlSignRequest| match m.part {
                Some(Part::Chunk(chunk)) => Some(Ok(chunk)),
                Some(Part::Options(_)) => Some(Err("the options were given twice")),
                None => None,
            });
            let signed = self
                .gateway
                .edxml_sign(&caller, &key.agency, role, options.size, chunks)
                .await?;
            let chunk = usize::try_from(self.gateway.config().limits.delivery_chunk_bytes)
                .unwrap_or(1 << 20)
                .max(1);
            let summary = proto::EdxmlSigned {
                size: signed.input.size() + signed.insertion.element.len() as u64,
                signer: Some(convert::certificate_facts(&signed.facts, &key.agency, role)),
            };
            let at = signed.insertion.at as u64;
            let element = signed.insertion.element.clone().into_bytes();
            let pieces = super::signing::stream_staged(signed, chunk, Some((at, element)));
            let stream = tokio_stream::once(Ok(proto::EdxmlSignResponse {
                part: Some(proto::edxml_sign_response::Part::Signed(summary)),
            }))
            .chain(pieces.map(|piece| {
                piece.map(|bytes| proto::EdxmlSignResponse {
                    part: Some(proto::edxml_sign_response::Part::Chunk(bytes)),
                })
            }));
            Ok(Response::new(Box::pin(stream) as SignStream))
        })
        .await
    }
}
