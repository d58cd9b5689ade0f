//! The forwarders' link to peer gateways: `Federation.Forward` over mTLS.
//! The gateway presents its own TLS certificate as client; the peer's
//! server certificate must chain to the peer's own CA (`ca`) and be exactly
//! the one `[federation.peers]` pins (`certificate_sha256`); its name is not
//! checked, the pin names the peer. Content streams from the blob files in
//! chunks, so memory stays bounded whatever the document's size.

use std::{collections::HashMap, sync::Arc, time::Duration};

use hyper_util::rt::TokioIo;
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{
    ServerError,
    config::Config,
    federation::{ForwardError, ForwardFuture, Forwarded, GatewayId, Outbound, PeerLink},
    pki::Fingerprint,
    proto::{self, federation_client::FederationClient, forward_request::Part},
    status::StatusReport,
    store::StoreError,
};

/// One peer: its lazily connected channel, and what a probe needs.
struct Peer {
    channel: Channel,
    tls: Arc<rustls::ClientConfig>,
    url: String,
    connect_timeout: Duration,
}

/// One step of [`GrpcPeerLink::probe`].
#[derive(Debug, Clone)]
pub struct ProbeStep {
    /// "tcp", "tls", "certificate" or "round trip".
    pub step: &'static str,
    /// It passed.
    pub ok: bool,
    /// How long it took.
    pub elapsed: Duration,
    /// What was found, or why it failed.
    pub detail: String,
}

/// One lazily connected channel per peer.
pub struct GrpcPeerLink {
    peers: HashMap<GatewayId, Peer>,
    chunk_bytes: usize,
    frame_limit: usize,
    /// Test-only fault: flip the first content byte of every forward
    /// (`LIENTHONG_FAULT_TAMPER_FORWARD=1`), to prove that the next gateway
    /// catches a hub that alters documents.
    tamper: bool,
}

/// The environment variable of the test-only tampering fault.
const TAMPER: &str = "LIENTHONG_FAULT_TAMPER_FORWARD";

fn tamper_fault() -> bool {
    let on = std::env::var_os(TAMPER).is_some_and(|v| v == "1");
    if on {
        tracing::error!(
            "{TAMPER}=1: this gateway ALTERS every document it forwards (a test-only fault); never set it in production"
        );
    }
    on
}

impl GrpcPeerLink {
    /// The links to every peer of `config`; none without `[federation]`.
    /// Reads the gateway's certificate and key and each peer's CA now, so
    /// that a bad file stops the start instead of the first forward.
    pub fn new(config: &Config, frame_limit: usize) -> Result<Self, ServerError> {
        let mut peers = HashMap::new();
        let Some(federation) = &config.federation else {
            return Ok(Self {
                peers,
                chunk_bytes: 1 << 20,
                frame_limit,
                tamper: false,
            });
        };
        let certificates = CertificateDer::pem_file_iter(&config.tls.cert)
            .and_then(|items| items.collect::<Result<Vec<_>, _>>())
            .map_err(|e| tls_file(&config.tls.cert, e))?;
        let key = PrivateKeyDer::from_pem_file(&config.tls.key)
            .map_err(|e| tls_file(&config.tls.key, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        for peer in &federation.peers {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(&peer.ca).map_err(|e| tls_file(&peer.ca, e))? {
                let ca = ca.map_err(|e| tls_file(&peer.ca, e))?;
                roots
                    .add(ca)
                    .map_err(|e| ServerError::Tls(format!("{}: {e}", peer.ca.display())))?;
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| ServerError::Tls(format!("peer {} CA: {e}", peer.id)))?;
            let verifier = Arc::new(PinnedPeer {
                peer: peer.id.clone(),
                pin: peer.certificate_sha256,
                webpki,
            });
            let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| ServerError::Tls(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_auth_cert(certificates.clone(), key.clone_key())
                .map_err(|e| ServerError::Tls(format!("the gateway's own certificate: {e}")))?;
            tls.alpn_protocols = vec![b"h2".to_vec()];
            let tls = Arc::new(tls);
            let authority = peer
                .url
                .strip_prefix("https://")
                .unwrap_or(&peer.url)
                .trim_end_matches('/')
                .to_owned();
            let endpoint = Endpoint::from_shared(format!("http://{authority}"))
                .map_err(|e| ServerError::Tls(format!("peer {} url {}: {e}", peer.id, peer.url)))?
                .connect_timeout(federation.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30));
            let connector = {
                let tls = tls.clone();
                tower::service_fn(move |uri: Uri| {
                    let tls = tls.clone();
                    async move { connect(uri, tls).await }
                })
            };
            peers.insert(
                peer.id.clone(),
                Peer {
                    channel: endpoint.connect_with_connector_lazy(connector),
                    tls,
                    url: peer.url.clone(),
                    connect_timeout: federation.connect_timeout,
                },
            );
        }
        Ok(Self {
            peers,
            chunk_bytes: usize::try_from(config.limits.max_chunk_bytes.min(1 << 20))
                .unwrap_or(1 << 20),
            frame_limit,
            tamper: tamper_fault(),
        })
    }
}

fn tls_file(path: &std::path::Path, error: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(format!("{}: {error}", path.display()))
}

async fn connect(
    uri: Uri,
    tls: Arc<rustls::ClientConfig>,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>, std::io::Error> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned());
    let host = uri
        .host()
        .ok_or_else(|| invalid("the peer url has no host"))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
        .map_err(|_| invalid("the peer url's host is not a valid server name"))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    Ok(TokioIo::new(stream))
}

/// Accepts exactly the pinned certificate, chained to the peer's own CA.
#[derive(Debug)]
struct PinnedPeer {
    peer: GatewayId,
    pin: Fingerprint,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for PinnedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_der(end_entity.as_ref());
        if presented != self.pin {
            let reason = format!(
                "peer {} presented certificate {presented}, not the pinned {}",
                self.peer, self.pin
            );
            tracing::warn!(peer = %self.peer, %reason, "peer refused");
            return Err(rustls::Error::General(reason));
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            // The pin names the peer; its certificate need not carry the
            // host name it is reached by.
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(error) => {
                tracing::warn!(peer = %self.peer, %error, "peer certificate refused");
                Err(error)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

impl PeerLink for GrpcPeerLink {
    fn forward_status(&self, peer: GatewayId, report: StatusReport) -> ForwardFuture<'_> {
        Box::pin(self.forward_status_to(peer, report))
    }

    fn forward(&self, outbound: Outbound) -> ForwardFuture<'_> {
        Box::pin(async move {
            let mut client = self
                .client(&outbound.peer)
                .map_err(ForwardError::Unavailable)?;
            let header = header(&outbound).await?;
            let (parts, stream) = mpsc::channel(4);
            let chunk_bytes = self.chunk_bytes;
            let mut tamper = self.tamper;
            // Content goes from the blob files, a chunk at a time; a read
            // that fails is this gateway's fault, not the peer's refusal.
            let producer = tokio::spawn(async move {
                if parts.send(header).await.is_err() {
                    return Ok(());
                }
                for attachment in &outbound.message.attachments {
                    let blobs = outbound.blobs.clone();
                    let hash = attachment.sha256;
                    let mut reader = blocking(move || blobs.open_reader(&hash)).await?;
                    loop {
                        let (read, data, back) = blocking(move || {
                            let mut data = vec![0u8; chunk_bytes];
                            let read = reader.read(&mut data)?;
                            data.truncate(read);
                            Ok((read, data, reader))
                        })
                        .await?;
                        reader = back;
                        if read == 0 {
                            break;
                        }
                        let mut data = data;
                        if tamper && let Some(first) = data.first_mut() {
                            *first ^= 1;
                            tamper = false;
                        }
                        let chunk = proto::ForwardRequest {
                            part: Some(Part::Chunk(proto::ContentChunk {
                                attachment: attachment.name.clone(),
                                data,
                            })),
                        };
                        if parts.send(chunk).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Ok::<(), String>(())
            });
            let answer = client.forward(ReceiverStream::new(stream)).await;
            match producer.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    return Err(ForwardError::Unavailable(format!(
                        "reading the content to forward: {error}"
                    )));
                }
                Err(error) => {
                    return Err(ForwardError::Unavailable(format!(
                        "the content reader stopped: {error}"
                    )));
                }
            }
            match answer {
                Ok(response) => {
                    let response = response.into_inner();
                    let response_hops = response.hops;
                    let custody = response.custody.ok_or_else(|| {
                        ForwardError::Unavailable(
                            "the peer answered without a custody receipt".into(),
                        )
                    })?;
                    // A custody answer whose hops do not parse still stands:
                    // custody is the receipt, the hops are for the trace.
                    let hops = crate::api::signed_hops(response_hops).unwrap_or_default();
                    Ok(Forwarded {
                        duplicate: custody.duplicate,
                        custody: custody.canonical,
                        hops,
                    })
                }
                Err(status) => Err(classify(&status)),
            }
        })
    }
}

impl GrpcPeerLink {
    /// A Federation client on `peer`'s channel, with the gateway's frame
    /// limit both ways.
    fn client(&self, peer: &GatewayId) -> Result<FederationClient<Channel>, String> {
        let link = self
            .peers
            .get(peer)
            .ok_or_else(|| format!("no link to {peer}"))?;
        Ok(FederationClient::new(link.channel.clone())
            .max_encoding_message_size(self.frame_limit)
            .max_decoding_message_size(self.frame_limit))
    }

    async fn forward_status_to(
        &self,
        peer: GatewayId,
        report: StatusReport,
    ) -> Result<Forwarded, ForwardError> {
        let mut client = self.client(&peer).map_err(ForwardError::Unavailable)?;
        let answer = client
            .forward_status(proto::ForwardStatusRequest {
                status: Some(crate::api::status_report(&report)),
            })
            .await
            .map_err(|status| classify(&status))?;
        let custody = answer.into_inner().custody.ok_or_else(|| {
            ForwardError::Unavailable("the peer answered without a receipt".into())
        })?;
        Ok(Forwarded {
            duplicate: custody.duplicate,
            custody: custody.canonical,
            hops: Vec::new(),
        })
    }

    /// The hops `peer` holds for a message (Federation.Hops).
    pub async fn hops(
        &self,
        peer: &GatewayId,
        sender: &str,
        message_id: &str,
        depth: u32,
    ) -> Result<Vec<proto::HopRecord>, String> {
        let answer = self
            .client(peer)?
            .hops(proto::HopsRequest {
                sender: sender.to_owned(),
                message_id: message_id.to_owned(),
                depth,
            })
            .await
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
        Ok(answer.into_inner().hops)
    }
}

/// A refusal for good, or a failure worth another try.
fn classify(status: &tonic::Status) -> ForwardError {
    use tonic::Code;
    let text = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::FailedPrecondition | Code::InvalidArgument | Code::AlreadyExists => {
            ForwardError::Refused(text)
        }
        _ => ForwardError::Unavailable(text),
    }
}

/// The header of `outbound`: the envelope as the sender made it (content by
/// size, signatures with their CMS), its recipients at the peer, the route.
async fn header(outbound: &Outbound) -> Result<proto::ForwardRequest, ForwardError> {
    let message = &outbound.message;
    let mut signatures = Vec::with_capacity(message.signatures.len());
    for signature in &message.signatures {
        let blobs = outbound.blobs.clone();
        let hash = signature.cms;
        let cms_der = blocking(move || blobs.get(&hash)).await.map_err(|e| {
            ForwardError::Unavailable(format!("reading a signature to forward: {e}"))
        })?;
        signatures.push(proto::Signature {
            attachment: signature.attachment.clone(),
            cms_der,
        });
    }
    let envelope = proto::Envelope {
        message_id: message.message_id.to_string(),
        from: message.sender.to_string(),
        to: message.to.iter().map(ToString::to_string).collect(),
        document: Some(crate::api::document(&message.document)),
        attachments: message
            .attachments
            .iter()
            .map(|stored| proto::Attachment {
                name: stored.name.clone(),
                media_type: stored.media_type.clone(),
                content: Vec::new(),
                size: stored.size,
                sha256: stored.sha256.to_hex(),
            })
            .collect(),
        signatures,
        edxml_header: outbound.edxml.clone().unwrap_or_default(),
    };
    Ok(proto::ForwardRequest {
        part: Some(Part::Header(proto::ForwardHeader {
            envelope: Some(envelope),
            recipients: outbound
                .recipients
                .iter()
                .map(ToString::to_string)
                .collect(),
            route: outbound.route.iter().map(ToString::to_string).collect(),
            hops: outbound.hops.iter().map(crate::api::hop_record).collect(),
        })),
    })
}

/// Runs a blob read on the blocking pool; its failure as text.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(error) => Err(format!("internal fault: a blocking read stopped ({error})")),
    }
}

impl GrpcPeerLink {
    /// Checks the way to `peer` step by step, stopping at the first step
    /// that fails: its URL and the steps; none for a peer not configured.
    pub async fn probe(&self, peer: &GatewayId) -> Option<(String, Vec<ProbeStep>)> {
        let link = self.peers.get(peer)?;
        let url = link.url.clone();
        Some((url, probe_steps(link).await))
    }
}

async fn probe_steps(link: &Peer) -> Vec<ProbeStep> {
    let mut steps = Vec::new();
    let limit = link.connect_timeout;
    let uri: Uri = match link.url.replacen("https://", "http://", 1).parse() {
        Ok(uri) => uri,
        Err(error) => {
            steps.push(step(
                "tcp",
                false,
                Duration::ZERO,
                format!("bad url {}: {error}", link.url),
            ));
            return steps;
        }
    };
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let late = |what: &str| {
        format!(
            "{what}: no answer within federation.connect_timeout_seconds ({} s)",
            limit.as_secs()
        )
    };

    let started = std::time::Instant::now();
    let tcp =
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect((host.as_str(), port)))
            .await
        {
            Ok(Ok(tcp)) => {
                let detail = tcp.peer_addr().map_or_else(
                    |_| format!("connected to {host}:{port}"),
                    |a| format!("connected to {a}"),
                );
                steps.push(step("tcp", true, started.elapsed(), detail));
                tcp
            }
            Ok(Err(error)) => {
                steps.push(step(
                    "tcp",
                    false,
                    started.elapsed(),
                    format!("{host}:{port}: {error}"),
                ));
                return steps;
            }
            Err(_) => {
                steps.push(step(
                    "tcp",
                    false,
                    started.elapsed(),
                    late(&format!("{host}:{port}")),
                ));
                return steps;
            }
        };

    let started = std::time::Instant::now();
    let Ok(name) = ServerName::try_from(host.clone()) else {
        steps.push(step(
            "tls",
            false,
            Duration::ZERO,
            format!("{host} is not a valid server name"),
        ));
        return steps;
    };
    let connector = tokio_rustls::TlsConnector::from(link.tls.clone());
    let tls = match tokio::time::timeout(limit, connector.connect(name, tcp)).await {
        Ok(Ok(tls)) => {
            let session = tls.get_ref().1;
            let alpn = session.alpn_protocol().map_or("none".to_owned(), |p| {
                String::from_utf8_lossy(p).into_owned()
            });
            let detail = format!("{:?}, ALPN {alpn}", session.protocol_version());
            steps.push(step("tls", true, started.elapsed(), detail));
            tls
        }
        Ok(Err(error)) => {
            steps.push(step("tls", false, started.elapsed(), error.to_string()));
            return steps;
        }
        Err(_) => {
            steps.push(step("tls", false, started.elapsed(), late("handshake")));
            return steps;
        }
    };
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certificates| certificates.first())
        .map(|leaf| Fingerprint::of_der(leaf.as_ref()));
    drop(tls);
    match presented {
        Some(fingerprint) => steps.push(step(
            "certificate",
            true,
            Duration::ZERO,
            format!("{fingerprint}: the pinned certificate, chained to the peer's CA"),
        )),
        None => {
            steps.push(step(
                "certificate",
                false,
                Duration::ZERO,
                "no certificate presented".into(),
            ));
            return steps;
        }
    }

    let started = std::time::Instant::now();
    let mut health = tonic_health::pb::health_client::HealthClient::new(link.channel.clone());
    let request = tonic_health::pb::HealthCheckRequest {
        service: "lienthong.v1.Federation".into(),
    };
    match tokio::time::timeout(limit, health.check(request)).await {
        Ok(Ok(answer)) => {
            use tonic_health::pb::health_check_response::ServingStatus;
            let serving = answer.into_inner().status == ServingStatus::Serving as i32;
            let detail = if serving {
                "health: Federation SERVING"
            } else {
                "health: Federation NOT_SERVING"
            };
            steps.push(step(
                "round trip",
                serving,
                started.elapsed(),
                detail.to_owned(),
            ));
        }
        Ok(Err(status)) => steps.push(step(
            "round trip",
            false,
            started.elapsed(),
            format!("{:?}: {}", status.code(), status.message()),
        )),
        Err(_) => steps.push(step(
            "round trip",
            false,
            started.elapsed(),
            late("health check"),
        )),
    }
    steps
}

fn step(step: &'static str, ok: bool, elapsed: Duration, detail: String) -> ProbeStep {
    ProbeStep {
        step,
        ok,
        elapsed,
        detail,
    }
}
