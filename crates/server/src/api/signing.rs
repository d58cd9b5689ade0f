//! `lienthong.v1.Signing`: Verify, Sign, SignStream and CoSign over the
//! gateway's held keys.

use std::{pin::Pin, sync::Arc};

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
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

/// The answer of a SignPdf call: the summary, then the signed PDF.
type SignPdfStream = Pin<Box<dyn Stream<Item = Result<proto::SignPdfResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Signing for SigningService {
    type SignPdfStream = SignPdfStream;

    async fn sign_pdf(
        &self,
        request: Request<Streaming<proto::SignPdfRequest>>,
    ) -> Result<Response<SignPdfStream>, Status> {
        reply(async move {
            use proto::sign_pdf_request::Part;
            let caller = self.auth.agency(&request)?;
            let mut stream = request.into_inner();
            let first = stream.message().await?.ok_or(ApiError::invalid(
                "options",
                "the stream is empty; send the options first",
            ))?;
            let Some(Part::Options(options)) = first.part else {
                return Err(ApiError::invalid(
                    "options",
                    "the first message must carry the options",
                ));
            };
            let key = options
                .key
                .ok_or_else(|| ApiError::missing("options.key"))?;
            let role = convert::role_from(key.role, "options.key.role")?;
            let appearance = match options.appearance {
                None => None,
                Some(appearance) => {
                    let rect: [f32; 4] = appearance.rect.as_slice().try_into().map_err(|_| {
                        ApiError::invalid(
                            "options.appearance.rect",
                            format!(
                                "needs 4 numbers x1, y1, x2, y2; got {}",
                                appearance.rect.len()
                            ),
                        )
                    })?;
                    if appearance.page == 0 {
                        return Err(ApiError::invalid(
                            "options.appearance.page",
                            "pages count from 1",
                        ));
                    }
                    if appearance.png.is_empty() {
                        return Err(ApiError::missing("options.appearance.png"));
                    }
                    Some(lienthong_pdf::Appearance {
                        png: appearance.png,
                        page: appearance.page,
                        rect,
                    })
                }
            };
            let sign_options = lienthong_pdf::SignOptions {
                field: (!options.field.is_empty()).then_some(options.field),
                reason: (!options.reason.is_empty()).then_some(options.reason),
                appearance,
                signing_time: 0,
            };
            let chunks = stream.map(|message| match message {
                Ok(proto::SignPdfRequest {
                    part: Some(Part::Chunk(chunk)),
                }) => Ok(chunk),
                Ok(proto::SignPdfRequest {
                    part: Some(Part::Options(_)),
                }) => Err(crate::envelope::EnvelopeError::invalid(
                    "options",
                    "the options were given twice",
                )
                .into()),
                Ok(proto::SignPdfRequest { part: None }) => {
                    Err(crate::envelope::EnvelopeError::invalid(
                        "part",
                        "a message with neither options nor a chunk",
                    )
                    .into())
                }
                Err(status) => Err(crate::gateway::GatewayError::StreamBroken(
                    status.message().to_owned(),
                )),
            });
            let signed = self
                .gateway
                .sign_pdf(
                    &caller,
                    &key.agency,
                    role,
                    options.size,
                    sign_options,
                    chunks,
                )
                .await?;
            let chunk = usize::try_from(self.gateway.config().limits.delivery_chunk_bytes)
                .unwrap_or(1 << 20)
                .max(1);
            Ok(Response::new(
                Box::pin(send_signed_pdf(signed, chunk, key.agency, role)) as SignPdfStream,
            ))
        })
        .await
    }

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
            let reports = if request.cms_der.is_empty() {
                self.gateway.verify_pdf(request.content, attachment).await?
            } else {
                self.gateway
                    .verify(request.content, request.cms_der, attachment)
                    .await?
            };
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

fn send_signed_pdf(
    signed: crate::gateway::SignedPdf,
    chunk: usize,
    agency: String,
    role: crate::pki::Role,
) -> impl Stream<Item = Result<proto::SignPdfResponse, Status>> + Send {
    use proto::sign_pdf_response::Part;
    let summary = proto::SignedPdf {
        field: signed.signed.field.clone(),
        revision: signed.signed.revision,
        size: signed.input.size() + signed.update.len() as u64,
        signer: Some(convert::certificate_facts(&signed.facts, &agency, role)),
    };
    let end = signed.input.size();
    let update = signed.update.clone();
    let pieces = stream_staged(signed, chunk, Some((end, update)));
    tokio_stream::once(Ok(proto::SignPdfResponse {
        part: Some(Part::Signed(summary)),
    }))
    .chain(pieces.map(|piece| {
        piece.map(|bytes| proto::SignPdfResponse {
            part: Some(Part::Chunk(bytes)),
        })
    }))
}

/// A signed document staged on disk, kept until it is streamed back.
pub(super) trait Staged: Send + 'static {
    /// The staged input's path.
    fn path(&self) -> &std::path::Path;
}

impl Staged for crate::gateway::SignedPdf {
    fn path(&self) -> &std::path::Path {
        self.input.path()
    }
}

impl Staged for crate::gateway::SignedEdxml {
    fn path(&self) -> &std::path::Path {
        self.input.path()
    }
}

/// Streams a staged input back in `chunk`-byte pieces with `insert`
/// (offset, bytes) spliced in, read on the blocking pool; the input is
/// held (and its staging room) until the last piece is taken.
pub(super) fn stream_staged<T: Staged>(
    staged: T,
    chunk: usize,
    insert: Option<(u64, Vec<u8>)>,
) -> ReceiverStream<Result<Vec<u8>, Status>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let send = |bytes: &[u8]| sender.blocking_send(Ok(bytes.to_vec())).is_ok();
        let fail = |error: std::io::Error| {
            tracing::error!(%error, "reading a staged document back");
            let _ = sender.blocking_send(Err(Status::internal(
                "an internal fault in the gateway; see its log",
            )));
        };
        let mut file = match std::fs::File::open(staged.path()) {
            Ok(file) => file,
            Err(error) => return fail(error),
        };
        let (at, inserted) = insert.unwrap_or((u64::MAX, Vec::new()));
        let mut position = 0u64;
        let mut pending_insert = true;
        let mut buffer = vec![0u8; chunk];
        loop {
            if pending_insert && position == at {
                for piece in inserted.chunks(chunk) {
                    if !send(piece) {
                        return;
                    }
                }
                pending_insert = false;
            }
            let room = if pending_insert {
                usize::try_from(at - position)
                    .unwrap_or(usize::MAX)
                    .min(chunk)
            } else {
                chunk
            };
            match file.read(&mut buffer[..room]) {
                Ok(0) => break,
                Ok(read) => {
                    position += read as u64;
                    if !send(&buffer[..read]) {
                        return;
                    }
                }
                Err(error) => return fail(error),
            }
        }
        if pending_insert && position <= at {
            for piece in inserted.chunks(chunk) {
                if !send(piece) {
                    return;
                }
            }
        }
        drop(staged);
    });
    ReceiverStream::new(receiver)
}
