//! Receive sessions: one task per stream that leases, loads and sends
//! deliveries, sleeping until woken by the store or a lease timer.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use super::{Delivery, Gateway, GatewayError};
use crate::{envelope::OrgCode, queue::LeaseBatch, registry::Agency, store::StoreError};

impl Gateway {
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
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}
