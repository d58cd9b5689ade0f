//! The core the api calls: sending (with signature verification and policy),
//! receiving and acknowledging documents, and the trust material. Owns the
//! registry, the queues and the verifier; knows nothing of gRPC.

mod admin;
mod budget;
mod edxml;
mod federation;
mod pdf;
mod receive;
mod send;
mod signing;
mod status;
mod trust;

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

pub use self::edxml::{EdxmlAccepted, RenderedEdxml, SignedEdxml};
pub use self::federation::ForwardRequest;
pub use self::pdf::SignedPdf;
#[cfg(test)]
pub(crate) use self::receive::contain_session;
pub use self::signing::SignSession;
pub use self::status::{RawStatus, StatusReceipt};
pub use self::trust::TrustItem;
use crate::{
    clock::Clock,
    config::Config,
    envelope::{Attachment, EnvelopeError, OrgCode, Signature},
    messages::{self, MessageError, MessageRecord},
    pki::{self, Fingerprint, PkiError, Report, Verifier},
    queue::{DeadLetter, Leased, Queue, QueueError},
    registry::{Agency, NewAgency, Refusal, Registry, RegistryError},
    routing::RoutingError,
    store::{Store, StoreError},
};

/// Why a gateway operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The envelope is malformed or too large.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// `from` is not the caller's agency.
    #[error("envelope.from: {from} is not the calling agency {caller}")]
    NotSender {
        /// The caller's agency.
        caller: OrgCode,
        /// What the envelope claims.
        from: OrgCode,
    },
    /// A recipient could not be resolved.
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// A queue operation failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The message could not be accepted as it stands.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Certificates, CRLs or the trust store.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A trust file named by the config could not be read.
    #[error("reading {path}: {reason}")]
    TrustFile {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The document does not satisfy its type's policy.
    #[error("document refused under policy {}: {}", refusal.document_type, refusal.reasons.join("; "))]
    Refused {
        /// What is missing.
        refusal: Refusal,
        /// The verification reports, one per signature.
        reports: Vec<Report>,
    },
    /// A caller asked to use another agency's key.
    #[error("agency {caller} may not use the keys of {owner}")]
    NotKeyOwner {
        /// The caller.
        caller: OrgCode,
        /// The key's owner.
        owner: OrgCode,
    },
    /// No key is held for this agency and role.
    #[error("the gateway holds no key of {agency} as {}", role.name())]
    NoSuchKey {
        /// Agency.
        agency: OrgCode,
        /// Role.
        role: pki::Role,
    },
    /// SendStreams already stage as much as `flow.max_staged_bytes` allows.
    #[error(
        "the gateway cannot stage {declared} more bytes now (open streams already use most of the {limit}-byte bound); try again later"
    )]
    StagingFull {
        /// Bytes the stream declared.
        declared: u64,
        /// The bound.
        limit: u64,
    },
    /// A stream sent nothing for too long.
    #[error("the stream sent nothing for {0} s and was closed; its partial content was discarded")]
    StreamIdle(u64),
    /// No such message of that sender.
    #[error("no message {message_id} of {sender} is known")]
    NoSuchMessage {
        /// Sender.
        sender: OrgCode,
        /// Id.
        message_id: crate::envelope::MessageId,
    },
    /// The caller neither sent nor received the message.
    #[error("agency {caller} neither sent nor received message {message_id}")]
    NotInvolved {
        /// The caller.
        caller: OrgCode,
        /// Id.
        message_id: crate::envelope::MessageId,
    },
    /// The gateway is stopping.
    #[error("gateway is shutting down")]
    ShuttingDown,
    /// What the configuration seeds (agencies, signers, policies) could not
    /// be registered.
    #[error("registering the configured {what}: {source}")]
    Seed {
        /// What was being registered.
        what: String,
        /// Why it was refused.
        source: RegistryError,
    },
    /// A fault inside the gateway, not the caller's and not the store's: a
    /// blocking task that panicked or was lost, a signer thread that stopped.
    #[error("internal fault: {0}")]
    Internal(String),
    /// A forwarded document may not take this hop (a loop, too many hops).
    #[error(transparent)]
    Hop(#[from] crate::federation::HopError),
    /// No peer of this id is configured.
    #[error("no peer {0} is configured in [federation.peers]")]
    UnknownPeer(String),
    /// A peer forwarded to a gateway without `[federation]`.
    #[error(
        "this gateway forwards to no peers and takes no forwarded documents ([federation] is not configured)"
    )]
    NotFederated,
    /// The client's stream broke before the document was complete.
    #[error("the stream broke before the document was complete: {0}")]
    StreamBroken(String),
    /// A PDF that cannot be read, or signed as asked.
    #[error(transparent)]
    Pdf(lienthong_pdf::PdfError),
    /// An edXML package refused: malformed, in the wrong namespace, missing
    /// a field, over a bound, or not signable as asked.
    #[error(transparent)]
    Edxml(lienthong_edxml::EdxmlError),
}

/// A message handed to its recipient, with its bytes.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The lease.
    pub leased: Leased,
    /// Files with content, in envelope order.
    pub attachments: Vec<Attachment>,
    /// Signatures with their CMS bytes.
    pub signatures: Vec<Signature>,
    /// The attachments carry no content here: it follows in chunks
    /// (documents over `limits.max_message_bytes`).
    pub content_follows: bool,
    /// For an edXML receive stream: the size of the rendered package, whose
    /// bytes follow in chunks (attachment name [`EDXML_CHUNK`]).
    pub edxml_size: Option<u64>,
    /// For a document that came as edXML: the header the gateway keeps.
    pub edxml_header: Option<Vec<u8>>,
}

/// The attachment name of the chunks that carry a rendered edXML package.
pub const EDXML_CHUNK: &str = "edxml";

/// How a Receive stream hands deliveries over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReceiveFormat {
    /// The gRPC envelope, content inline or in chunks.
    #[default]
    Envelope,
    /// Each delivery rendered as an edXML package (documents and statuses),
    /// signed with the gateway's key when `sign`.
    Edxml {
        /// Sign each package with the gateway's key.
        sign: bool,
    },
}

/// A piece of a large document's content, sent right after its delivery.
#[derive(Debug, Clone)]
pub struct DeliveryChunk {
    /// The delivery it belongs to.
    pub delivery_id: String,
    /// The attachment.
    pub attachment: String,
    /// The bytes, in order.
    pub data: Vec<u8>,
}

/// What a Receive stream carries: deliveries, and the content chunks of
/// large documents right after their delivery.
#[derive(Debug)]
pub enum Outgoing {
    /// A delivery.
    Delivery(Box<Delivery>),
    /// Content of the delivery just sent.
    Chunk(DeliveryChunk),
}

/// An item of a Receive stream with its share of the receive buffer
/// (`flow.receive_buffer_bytes`), given back when the item is dropped: once
/// the transport has taken it.
pub struct Buffered {
    /// The item.
    pub item: Result<Outgoing, GatewayError>,
    pub(crate) _room: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The gateway core.
pub struct Gateway {
    config: Config,
    store: Store,
    registry: Registry,
    queue: Queue,
    verifier: Verifier,
    keys: pki::SoftKeyStore,
    receipts: Option<crate::receipt::ReceiptSigner>,
    /// The CAs whose client certificates TLS accepts: a certificate bound
    /// to an agency must chain to them.
    client_trust: pki::TrustStore,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
    /// Room left for SendStream staging files (`flow.max_staged_bytes`).
    staging_room: budget::ByteBudget,
    /// Room left in the Receive streams' buffers (`flow.receive_buffer_bytes`).
    receive_room: budget::ByteBudget,
    /// The peers' routes (federation); empty without peers.
    routes: Vec<(crate::federation::GatewayId, Vec<crate::federation::Route>)>,
    /// What hop records are signed with (federation): the receipt key and
    /// its certificate (PEM).
    hop_key: Option<(pki::SigningKey, Vec<u8>)>,
    /// What outgoing edXML is signed with on request: the receipt key.
    edxml_key: Option<pki::SigningKey>,
}

impl Gateway {
    /// Builds the core over an open store.
    pub fn new(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, GatewayError> {
        let registry = Registry::load(store.clone(), clock.clone())?;
        let queue = Queue::new(store.clone(), clock.clone(), config.queue);
        let trust = trust::build(&config, &registry)?;
        let verifier = Verifier::new(trust, config.pki.rules, clock.clone());
        let keys = signing::open_keystore(&config, &registry)?;
        let receipts = signing::receipt_signer(&config)?;
        let gateway_key = signing::gateway_key(&config)?;
        let hop_key = gateway_key.clone().filter(|_| config.federation.is_some());
        let edxml_key = gateway_key.map(|(key, _)| key);
        let client_cas = pki::certificates_from_pem(&[trust::read_file(&config.tls.client_ca)?])?;
        let client_trust = pki::TrustStore::build(client_cas, Vec::new(), Vec::new())?;
        let staging_room = budget::ByteBudget::new(config.flow.max_staged_bytes);
        let receive_room = budget::ByteBudget::new(config.flow.receive_buffer_bytes);
        let routes = config
            .federation
            .as_ref()
            .map(crate::federation::FederationConfig::routes)
            .unwrap_or_default();
        Ok(Self {
            hop_key,
            edxml_key,
            routes,
            config,
            store,
            registry,
            queue,
            verifier,
            keys,
            receipts,
            client_trust,
            clock,
            shutdown,
            staging_room,
            receive_room,
        })
    }

    /// Refuses a certificate (PEM) that could never be used: expired, not
    /// yet valid, or not issued by a CA of `trust`.
    fn check_usable(&self, trust: &pki::TrustStore, pem: &[u8]) -> Result<(), GatewayError> {
        for der in pki::pem_certificates(pem)? {
            pki::certificate_usable(trust, &der, self.clock.now_millis()).map_err(|reason| {
                RegistryError::Unusable {
                    fingerprint: Fingerprint::of_der(&der),
                    reason,
                }
            })?;
        }
        Ok(())
    }

    /// Registers an agency whose client certificates TLS would accept.
    pub async fn register_agency(&self, request: NewAgency) -> Result<Agency, GatewayError> {
        for pem in &request.certificates_pem {
            self.check_usable(&self.client_trust, pem)?;
        }
        Ok(self.registry.register(request).await?)
    }

    /// Binds one more client certificate to an agency (renewal).
    pub async fn add_agency_certificate(
        &self,
        code: &str,
        pem: &[u8],
    ) -> Result<Agency, GatewayError> {
        self.check_usable(&self.client_trust, pem)?;
        Ok(self.registry.add_certificate(code, pem).await?)
    }

    /// Binds a signer certificate whose signatures could verify.
    pub async fn add_signer(
        &self,
        agency: &str,
        role: pki::Role,
        pem: &[u8],
    ) -> Result<crate::registry::Signer, GatewayError> {
        self.check_usable(&self.verifier.trust(), pem)?;
        let remote = OrgCode::parse(agency, "agency").is_ok_and(|code| self.is_remote(&code));
        Ok(self
            .registry
            .add_signer_of(agency, role, pem, remote)
            .await?)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether a document of `total` attachment bytes reaches its receiver
    /// whole; larger ones follow their delivery in chunks, so that a slow
    /// reader holds at most a chunk or a small document at a time.
    fn delivered_whole(&self, total: u64) -> bool {
        total <= self.config.flow.delivery_inline_max_bytes
    }

    /// Why a TLS client's certificate chain (DER, leaf first) is revoked
    /// under the CRLs in force, or `None`.
    pub fn client_revoked(&self, presented: &[&[u8]]) -> Option<String> {
        self.verifier.client_revoked(presented)
    }

    /// Changes to `Some(cause)` when the store stops writing.
    pub fn store_failure(&self) -> watch::Receiver<Option<String>> {
        self.store.writer().failure()
    }

    /// The stored message, if `sender` used this id.
    fn message(
        &self,
        sender: &OrgCode,
        message_id: &crate::envelope::MessageId,
    ) -> Result<Option<MessageRecord>, GatewayError> {
        Ok(messages::find(self.store.kv(), sender, message_id)?)
    }

    /// The stored message, or `NoSuchMessage`.
    fn existing_message(
        &self,
        sender: &OrgCode,
        message_id: &crate::envelope::MessageId,
    ) -> Result<MessageRecord, GatewayError> {
        self.message(sender, message_id)?
            .ok_or_else(|| GatewayError::NoSuchMessage {
                sender: sender.clone(),
                message_id: message_id.clone(),
            })
    }

    fn load(&self, leased: Leased) -> Result<Delivery, GatewayError> {
        if leased.status.is_some() {
            // A status report carries no files.
            return Ok(Delivery {
                leased,
                attachments: Vec::new(),
                signatures: Vec::new(),
                content_follows: false,
                edxml_size: None,
                edxml_header: None,
            });
        }
        let blobs = self.store.blobs();
        let total: u64 = leased.message.attachments.iter().map(|a| a.size).sum();
        let content_follows = !self.delivered_whole(total);
        let attachments = leased
            .message
            .attachments
            .iter()
            .map(|a| {
                Ok(Attachment {
                    name: a.name.clone(),
                    media_type: a.media_type.clone(),
                    content: if content_follows {
                        Vec::new()
                    } else {
                        blobs.get(&a.sha256)?
                    },
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let signatures = leased
            .message
            .signatures
            .iter()
            .map(|s| {
                Ok(Signature {
                    attachment: s.attachment.clone(),
                    cms_der: blobs.get(&s.cms)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let edxml_header = self
            .queue
            .edxml_of(&leased.message.sender, &leased.message.message_id)?;
        Ok(Delivery {
            leased,
            attachments,
            signatures,
            content_follows,
            edxml_size: None,
            edxml_header,
        })
    }

    /// Runs the content sweeper until shutdown: every
    /// `queue.sweep_interval` it releases content whose retention passed.
    pub fn spawn_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut shutdown = this.shutdown.clone();
            let mut tick = tokio::time::interval(this.config.queue.sweep_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    return;
                }
                match messages::sweep(&this.store, this.clock.now_millis()).await {
                    Ok(report) if report.messages > 0 => tracing::info!(
                        messages = report.messages,
                        files = report.files,
                        "content released after its retention period"
                    ),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "content sweep failed; will retry"),
                }
            }
        })
    }

    /// Acknowledges a delivery of `caller`'s queue.
    pub async fn ack(&self, caller: &Agency, delivery_id: &str) -> Result<(), GatewayError> {
        self.queue.ack(&caller.code, delivery_id).await?;
        Ok(())
    }

    /// Gives a delivery of `caller`'s queue back for later.
    pub async fn nack(
        &self,
        caller: &Agency,
        delivery_id: &str,
        delay: Duration,
        reason: &str,
    ) -> Result<(), GatewayError> {
        self.queue
            .nack(&caller.code, delivery_id, delay, reason)
            .await?;
        Ok(())
    }

    /// Dead letters of one agency, or of every agency.
    pub fn dead_letters(
        &self,
        agency: Option<&OrgCode>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, GatewayError> {
        let codes = match agency {
            Some(code) => vec![code.clone()],
            None => self.registry.list().into_iter().map(|a| a.code).collect(),
        };
        let mut out = Vec::new();
        for code in codes {
            if out.len() >= limit {
                break;
            }
            out.extend(self.queue.dead_letters(&code, limit - out.len())?);
        }
        Ok(out)
    }
}

/// Runs blocking work (files, hashing, verification) off the reactor.
async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, GatewayError>
where
    T: Send + 'static,
    E: Into<GatewayError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| GatewayError::Internal(format!("a blocking task was lost: {e}")))?
        .map_err(Into::into)
}
