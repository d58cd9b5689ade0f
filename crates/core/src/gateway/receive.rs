//! Receive sessions: one task per stream that leases, loads and sends
//! deliveries, sleeping until woken by the store or a lease timer.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::mpsc;

use super::{
    Buffered, Delivery, DeliveryChunk, EDXML_CHUNK, Gateway, GatewayError, Outgoing, ReceiveFormat,
    RenderedEdxml, blocking,
};
use crate::{envelope::OrgCode, queue::LeaseBatch, registry::Agency, store::StoreError};

/// Deliveries whose files total at most this are loaded on the async worker.
const INLINE_LOAD_BYTES: u64 = 256 * 1024;

type Sink = mpsc::Sender<Buffered>;

impl Gateway {
    /// Streams `caller`'s queue. With `drain`, the stream ends once nothing
    /// more is deliverable, and its leases outlive it so acks can follow.
    pub fn receive(
        self: &Arc<Self>,
        caller: Agency,
        max_in_flight: u32,
        drain: bool,
        format: ReceiveFormat,
    ) -> mpsc::Receiver<Buffered> {
        let limit = match max_in_flight {
            0 => self.config.queue.default_max_in_flight,
            asked => asked.min(self.config.queue.max_in_flight_cap),
        } as usize;
        let (sender, receiver) = mpsc::channel(2);
        let this = self.clone();
        tokio::spawn(async move {
            let stream = this.queue.open_stream();
            let code = caller.code;
            let session = {
                let (this, code, sender) = (this.clone(), code.clone(), sender.clone());
                async move {
                    this.receive_loop(&code, stream, limit, drain, format, &sender)
                        .await
                }
            };
            let result = contain_session(session, || this.queue.close_stream(&code, stream)).await;
            if let Err(error) = result {
                // Never waits: a receiver that stopped reading gets the
                // error only if there is room for it.
                let _ = sender.try_send(Buffered {
                    item: Err(error),
                    _room: None,
                });
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
        format: ReceiveFormat,
        sender: &Sink,
    ) -> Result<(), GatewayError> {
        if format == (ReceiveFormat::Edxml { sign: true }) && self.edxml_key.is_none() {
            return Err(GatewayError::Edxml(lienthong_edxml::EdxmlError::invalid(
                "sign",
                "the gateway has no key of its own to sign edXML with ([receipts] is not configured)",
            )));
        }
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
                if let ReceiveFormat::Edxml { sign } = format {
                    if !self.deliver_edxml(leased, sign, sender).await? {
                        return Ok(());
                    }
                    continue;
                }
                let total: u64 = leased.message.attachments.iter().map(|a| a.size).sum();
                // Room in the receive buffer before loading: a slow reader
                // holds at most what the bound lets all streams hold.
                let inline = if self.delivered_whole(total) {
                    total
                } else {
                    0
                };
                let room = self.receive_room.take(inline + 1024).await;
                // Small files come from the page cache faster than a trip
                // through the blocking pool; large ones go there.
                let small = total <= INLINE_LOAD_BYTES;
                let delivery = if small {
                    self.load(leased)?
                } else {
                    let this = self.clone();
                    blocking(move || this.load(leased)).await?
                };
                let follows = delivery.content_follows.then(|| {
                    (
                        delivery.leased.delivery_id.to_string(),
                        delivery.leased.message.attachments.clone(),
                    )
                });
                let item = Buffered {
                    item: Ok(Outgoing::Delivery(Box::new(delivery))),
                    _room: Some(room),
                };
                if !self.send_or_give_up(sender, item).await? {
                    return Ok(());
                }
                if let Some((delivery_id, attachments)) = follows
                    && !self
                        .send_content(&delivery_id, &attachments, sender)
                        .await?
                {
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
}

/// Runs a receive session on a task of its own, then releases its leases
/// however it ended: returned, failed or panicked. A panic becomes an
/// internal error for the receiver instead of a stream that just stops
/// with its deliveries still leased.
pub(crate) async fn contain_session<F>(
    session: F,
    release: impl FnOnce(),
) -> Result<(), GatewayError>
where
    F: Future<Output = Result<(), GatewayError>> + Send + 'static,
{
    let outcome = tokio::spawn(session).await;
    release();
    match outcome {
        Ok(result) => result,
        Err(error) if error.is_panic() => {
            let cause = crate::store::panic_message(&*error.into_panic());
            tracing::error!(%cause, "a receive session panicked; its leases are released");
            Err(GatewayError::Internal(format!(
                "the receive session panicked ({cause})"
            )))
        }
        Err(error) => Err(GatewayError::Internal(format!(
            "the receive session was lost: {error}"
        ))),
    }
}

impl Gateway {
    /// Streams a large document's content after its delivery, one chunk at
    /// a time: the channel holds two, so memory stays bounded by the chunk
    /// size. Each file is checked against its hash as it is read; a
    /// mismatch ends the stream with an error rather than a silent bad
    /// copy. False when the receiver went away.
    async fn send_content(
        &self,
        delivery_id: &str,
        attachments: &[crate::messages::StoredAttachment],
        sender: &Sink,
    ) -> Result<bool, GatewayError> {
        let chunk = usize::try_from(self.config.limits.delivery_chunk_bytes).unwrap_or(1 << 20);
        for attachment in attachments {
            let blobs = self.store.blobs().clone();
            let hash = attachment.sha256;
            let mut reader = blocking(move || blobs.open_reader(&hash)).await?;
            loop {
                let room = self.receive_room.take(chunk as u64).await;
                let (read, data, back) = blocking(move || {
                    let mut data = vec![0u8; chunk];
                    let read = reader.read(&mut data)?;
                    data.truncate(read);
                    Ok::<_, StoreError>((read, data, reader))
                })
                .await?;
                reader = back;
                if read == 0 {
                    break;
                }
                let piece = Outgoing::Chunk(DeliveryChunk {
                    delivery_id: delivery_id.to_owned(),
                    attachment: attachment.name.clone(),
                    data,
                });
                let piece = Buffered {
                    item: Ok(piece),
                    _room: Some(room),
                };
                if !self.send_or_give_up(sender, piece).await? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

impl Gateway {
    /// Renders a delivery as edXML in a staging file, hands over the
    /// delivery (its size set), then the file in chunks. False when the
    /// receiver went away.
    async fn deliver_edxml(
        self: &Arc<Self>,
        leased: crate::queue::Leased,
        sign: bool,
        sender: &Sink,
    ) -> Result<bool, GatewayError> {
        let chunk = usize::try_from(self.config.limits.delivery_chunk_bytes).unwrap_or(1 << 20);
        let total: u64 = leased.message.attachments.iter().map(|a| a.size).sum();
        // A package rendered in memory is charged to the receive buffer
        // whole (base64 and the header included) until its last chunk is
        // handed over; one rendered to a file is charged chunk by chunk.
        let whole = if total <= super::edxml::INLINE_PACKAGE_BYTES {
            Some(self.receive_room.take(total / 3 * 4 + 64 * 1024).await)
        } else {
            None
        };
        let room = self.receive_room.take(1024).await;
        // A small document renders faster here than through the blocking
        // pool; a large one reads its files there.
        let (leased, rendered) = if total <= INLINE_LOAD_BYTES {
            let rendered = self.render_edxml(&leased, sign)?;
            (leased, rendered)
        } else {
            let this = self.clone();
            blocking(move || {
                this.render_edxml(&leased, sign)
                    .map(|rendered| (leased, rendered))
            })
            .await?
        };
        let delivery_id = leased.delivery_id.to_string();
        let item = Buffered {
            item: Ok(Outgoing::Delivery(Box::new(Delivery {
                leased,
                attachments: Vec::new(),
                signatures: Vec::new(),
                content_follows: false,
                edxml_size: Some(rendered.size()),
                edxml_header: None,
            }))),
            _room: Some(room),
        };
        if !self.send_or_give_up(sender, item).await? {
            return Ok(false);
        }
        let piece = |data: Vec<u8>, room| Buffered {
            item: Ok(Outgoing::Chunk(DeliveryChunk {
                delivery_id: delivery_id.clone(),
                attachment: EDXML_CHUNK.to_owned(),
                data,
            })),
            _room: room,
        };
        let file = match &rendered {
            RenderedEdxml::Memory(bytes) => {
                // Covered by `whole`: taking more room here could wait on
                // streams that wait the same way.
                for data in bytes.chunks(chunk) {
                    if !self
                        .send_or_give_up(sender, piece(data.to_vec(), None))
                        .await?
                    {
                        return Ok(false);
                    }
                }
                drop(whole);
                return Ok(true);
            }
            RenderedEdxml::File(file) => file.path().to_owned(),
        };
        let mut file = blocking(move || {
            std::fs::File::open(&file).map_err(|e| {
                GatewayError::Internal(format!("reading a rendered edXML package: {e}"))
            })
        })
        .await?;
        loop {
            let room = self.receive_room.take(chunk as u64).await;
            let (data, back) = blocking(move || {
                use std::io::Read as _;
                let mut data = vec![0u8; chunk];
                let read = file.read(&mut data).map_err(|e| {
                    GatewayError::Internal(format!("reading a rendered edXML package: {e}"))
                })?;
                data.truncate(read);
                Ok::<_, GatewayError>((data, file))
            })
            .await?;
            file = back;
            if data.is_empty() {
                break;
            }
            if !self
                .send_or_give_up(sender, piece(data, Some(room)))
                .await?
            {
                return Ok(false);
            }
        }
        drop(rendered);
        Ok(true)
    }

    /// Hands `item` to the stream: false when the receiver went away. A
    /// receiver that takes nothing for `flow.stream_idle_timeout` is ended
    /// (its leases come back), so that readers that stopped reading cannot
    /// keep the shared receive buffer from the ones that read.
    async fn send_or_give_up(&self, sender: &Sink, item: Buffered) -> Result<bool, GatewayError> {
        let idle = self.config.flow.stream_idle_timeout;
        match tokio::time::timeout(idle, sender.send(item)).await {
            Ok(sent) => Ok(sent.is_ok()),
            Err(_) => Err(GatewayError::StreamIdle(idle.as_secs())),
        }
    }
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}
