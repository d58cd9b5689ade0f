//! A bound on bytes held at once (SendStream staging files, Receive stream
//! buffers): a semaphore counted in KiB, so that a bound of terabytes fits
//! its `u32` requests.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Room for up to a configured number of bytes; each taken share is given
/// back when its permit is dropped.
pub(super) struct ByteBudget {
    room: Arc<Semaphore>,
    total_kib: u32,
}

impl ByteBudget {
    /// A budget of `bytes`.
    pub(super) fn new(bytes: u64) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        Self {
            room: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// `bytes` as permits: at least one, and never more than the whole
    /// budget, so that one request can always be met.
    fn permits(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib)
    }

    /// Room for `bytes` now, or `None` when the budget is spent.
    pub(super) fn try_take(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        self.room
            .clone()
            .try_acquire_many_owned(self.permits(bytes))
            .ok()
    }

    /// Room for `bytes`, waiting until it is given back.
    pub(super) async fn take(&self, bytes: u64) -> OwnedSemaphorePermit {
        match self
            .room
            .clone()
            .acquire_many_owned(self.permits(bytes))
            .await
        {
            Ok(permit) => permit,
            // Only a closed semaphore fails, and this one is private and
            // never closed.
            Err(_) => unreachable!("the byte budget's semaphore is never closed"),
        }
    }
}
