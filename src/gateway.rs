//! The core the api calls: sending, receiving and acknowledging documents.
//! Owns the registry and queues; knows nothing of gRPC.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, watch};

use crate::{
    clock::Clock,
    config::Config,
    envelope::{Attachment, Envelope, EnvelopeError, OrgCode, RawEnvelope, Signature},
    queue::{
        DeadLetter, LeaseBatch, Leased, MessageRecord, Queue, QueueError, Receipt,
        StoredAttachment, StoredSignature,
    },
    registry::{Agency, Registry, RegistryError},
    routing::{self, Known, RoutingError},
    store::{ContentHash, Store, StoreError},
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
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gateway is stopping.
    #[error("gateway is shutting down")]
    ShuttingDown,
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
}

/// The gateway core.
pub struct Gateway {
    config: Config,
    store: Store,
    registry: Registry,
    queue: Queue,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
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
        Ok(Self {
            config,
            store,
            registry,
            queue,
            clock,
            shutdown,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The agency registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The queues.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Accepts a document from `caller`: answers once it is durably queued
    /// for every recipient.
    pub async fn send(
        self: &Arc<Self>,
        caller: &Agency,
        raw: RawEnvelope,
    ) -> Result<Receipt, GatewayError> {
        let envelope = raw.validate(&self.config.limits)?;
        if envelope.from != caller.code {
            return Err(GatewayError::NotSender {
                caller: caller.code.clone(),
                from: envelope.from,
            });
        }
        let recipients = routing::resolve(&envelope.to, |code| {
            self.registry.get(code).map(|agency| {
                if agency.disabled {
                    Known::Disabled
                } else {
                    Known::Enabled
                }
            })
        })?;
        let this = self.clone();
        // Hashing and fsyncing content is blocking work.
        let record = tokio::task::spawn_blocking(move || this.store_content(envelope, recipients))
            .await
            .map_err(|e| StoreError::Engine(format!("content task failed: {e}")))??;
        let record = match record {
            Stored::New(record) => record,
            Stored::Duplicate(receipt) => return Ok(receipt),
        };
        let receipt = self.queue.enqueue(record).await?;
        tracing::info!(
            sender = %receipt.message.sender,
            message_id = %receipt.message.message_id,
            recipients = receipt.message.recipients.len(),
            duplicate = receipt.duplicate,
            "message accepted"
        );
        Ok(receipt)
    }

    /// Hashes the content, answers a duplicate without writing, otherwise
    /// writes the files durably and returns the record to enqueue.
    fn store_content(
        &self,
        envelope: Envelope,
        recipients: Vec<OrgCode>,
    ) -> Result<Stored, GatewayError> {
        let attachments: Vec<(StoredAttachment, &[u8])> = envelope
            .attachments
            .iter()
            .map(|a| {
                let stored = StoredAttachment {
                    name: a.name.clone(),
                    media_type: a.media_type.clone(),
                    sha256: ContentHash::of(&a.content),
                    size: a.content.len() as u64,
                };
                (stored, a.content.as_slice())
            })
            .collect();
        let signatures: Vec<StoredSignature> = envelope
            .signatures
            .iter()
            .map(|s| StoredSignature {
                attachment: s.attachment.clone(),
                cms: ContentHash::of(&s.cms_der),
            })
            .collect();
        let stored_attachments: Vec<StoredAttachment> =
            attachments.iter().map(|(a, _)| a.clone()).collect();
        let record = MessageRecord {
            content_digest: content_digest(&envelope, &stored_attachments, &signatures)?,
            message_id: envelope.message_id.clone(),
            sender: envelope.from.clone(),
            to: envelope.to.clone(),
            document: envelope.document.clone(),
            attachments: stored_attachments,
            signatures,
            recipients,
            accepted_at: 0,
        };
        // A retry of an accepted message costs no writes; the writer checks
        // again, so a race here only costs redundant (idempotent) files.
        if let Some(first) = self.queue.message(&record.sender, &record.message_id)? {
            if first.content_digest == record.content_digest {
                return Ok(Stored::Duplicate(Receipt {
                    message: first,
                    duplicate: true,
                }));
            }
            return Err(QueueError::AlreadyExists {
                sender: record.sender,
                message_id: record.message_id,
            }
            .into());
        }
        for (_, content) in &attachments {
            self.store.blobs().put(content)?;
        }
        for signature in &envelope.signatures {
            self.store.blobs().put(&signature.cms_der)?;
        }
        Ok(Stored::New(record))
    }

    /// Streams `caller`'s queue. With `drain`, the stream ends once nothing
    /// more is deliverable, and its leases outlive it so acks can follow.
    pub fn receive(
        self: &Arc<Self>,
        caller: Agency,
        max_in_flight: u32,
        drain: bool,
    ) -> mpsc::Receiver<Result<Delivery, GatewayError>> {
        let limit = match max_in_flight {
            0 => self.config.queue.default_max_in_flight,
            asked => asked.min(self.config.queue.max_in_flight_cap),
        } as usize;
        let (sender, receiver) = mpsc::channel(2);
        let this = self.clone();
        tokio::spawn(async move {
            let stream = this.queue.open_stream();
            let code = caller.code.clone();
            let result = this
                .receive_loop(&code, stream, limit, drain, &sender)
                .await;
            this.queue.close_stream(&code, stream);
            if let Err(error) = result {
                let _ = sender.send(Err(error)).await;
            }
        });
        receiver
    }

    async fn receive_loop(
        self: &Arc<Self>,
        code: &OrgCode,
        stream: u64,
        limit: usize,
        drain: bool,
        sender: &mpsc::Sender<Result<Delivery, GatewayError>>,
    ) -> Result<(), GatewayError> {
        let mut wake = self.queue.subscribe(code);
        let mut shutdown = self.shutdown.clone();
        tracing::debug!(agency = %code, stream, limit, drain, "receive stream opened");
        loop {
            wake.borrow_and_update();
            if *shutdown.borrow_and_update() {
                return Err(GatewayError::ShuttingDown);
            }
            let room = limit.saturating_sub(self.queue.in_flight(code, stream));
            let batch = if room > 0 {
                self.queue.lease_next(code, stream, room, drain).await?
            } else {
                LeaseBatch::default()
            };
            let exhausted = batch.leased.len() < room;
            for leased in batch.leased {
                let this = self.clone();
                let delivery = tokio::task::spawn_blocking(move || this.load(leased))
                    .await
                    .map_err(|e| StoreError::Engine(format!("load task failed: {e}")))??;
                if sender.send(Ok(delivery)).await.is_err() {
                    return Ok(());
                }
            }
            if drain && exhausted {
                return Ok(());
            }
            let until_wake = batch.next_wake.map(|at| {
                let millis = at.saturating_sub(self.clock.now_millis());
                Duration::from_millis(u64::try_from(millis).unwrap_or(0))
            });
            tokio::select! {
                changed = wake.changed() => if changed.is_err() { return Ok(()) },
                _ = shutdown.changed() => {},
                () = sender.closed() => return Ok(()),
                () = sleep_or_forever(until_wake) => {},
            }
        }
    }

    fn load(&self, leased: Leased) -> Result<Delivery, GatewayError> {
        let blobs = self.store.blobs();
        let attachments = leased
            .message
            .attachments
            .iter()
            .map(|a| {
                Ok(Attachment {
                    name: a.name.clone(),
                    media_type: a.media_type.clone(),
                    content: blobs.get(&a.sha256)?,
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
        Ok(Delivery {
            leased,
            attachments,
            signatures,
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

enum Stored {
    New(MessageRecord),
    Duplicate(Receipt),
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

/// SHA-256 over the canonical encoding of what the sender sent, files by
/// their hashes: equal for a retry, different for any change.
fn content_digest(
    envelope: &Envelope,
    attachments: &[StoredAttachment],
    signatures: &[StoredSignature],
) -> Result<ContentHash, StoreError> {
    let canonical = crate::store::encode(&(
        &envelope.message_id,
        &envelope.from,
        &envelope.to,
        &envelope.document,
        attachments,
        signatures,
    ))?;
    Ok(ContentHash::of(&canonical))
}
