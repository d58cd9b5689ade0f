//! The one writer: runs write jobs in order on its own thread, applies each
//! job's batch atomically, then makes the whole group durable with one sync
//! before any job of the group is answered (group commit).
//!
//! One thread owns flushing because sled 0.34's concurrent `flush_async`
//! deadlocks (upstream issue 1308) and its `flush` alone is not an fsync.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use tokio::sync::{mpsc, oneshot};

use super::{Batch, Kv, StoreError, keys};

/// Called once the job's group is durable (or failed to become so).
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A job: reads and stages writes; says whether to apply them.
type Job = Box<dyn FnOnce(&mut WriteSet<'_>) -> (bool, Completion) + Send>;

enum Command {
    Job(Job),
    Close(oneshot::Sender<Result<(), StoreError>>),
}

/// The writes one job stages, with read-your-writes over the engine.
pub struct WriteSet<'a> {
    kv: &'a dyn Kv,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    next_seq: &'a mut u64,
    seq_used: bool,
}

impl WriteSet<'_> {
    /// The value under `key`, as this job would leave it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.staged.get(key) {
            Some(staged) => Ok(staged.clone()),
            None => self.kv.get(key),
        }
    }

    /// Stages `key` = `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.staged.insert(key, Some(value));
    }

    /// Stages the removal of `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.staged.insert(key, None);
    }

    /// The engine, for scans (they do not see this job's staged writes).
    pub fn kv(&self) -> &dyn Kv {
        self.kv
    }

    /// A new sequence number: strictly increasing across restarts.
    pub fn next_seq(&mut self) -> u64 {
        *self.next_seq += 1;
        self.seq_used = true;
        *self.next_seq
    }

    fn into_batch(mut self) -> Batch {
        if self.seq_used {
            self.staged.insert(
                keys::META_SEQ.to_vec(),
                Some(self.next_seq.to_be_bytes().to_vec()),
            );
        }
        self.staged.into_iter().collect()
    }
}

struct Shared {
    /// Every sequence number up to this one is durable.
    durable_seq: AtomicU64,
    failed: AtomicBool,
}

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Writer {
    pub(super) fn start(kv: Arc<dyn Kv>, max_batch: usize) -> Result<Self, StoreError> {
        let last_seq = match kv.get(keys::META_SEQ)? {
            Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
                StoreError::Corrupt {
                    key: "meta\\x00seq".to_owned(),
                    reason: format!("{} bytes, expected 8", bytes.len()),
                }
            })?),
            None => 0,
        };
        let shared = Arc::new(Shared {
            durable_seq: AtomicU64::new(last_seq),
            failed: AtomicBool::new(false),
        });
        let (commands, receiver) = mpsc::channel(max_batch.max(1) * 4);
        let thread_shared = shared.clone();
        let max_batch = max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("lienthong-writer".to_owned())
            .spawn(move || run(kv, receiver, thread_shared, last_seq, max_batch))
            .map_err(|e| StoreError::Engine(format!("starting writer thread: {e}")))?;
        Ok(Self {
            commands,
            shared,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Runs `job` on the writer thread. Its staged writes are applied
    /// atomically when it returns `Ok`, discarded when it returns `Err`.
    /// Resolves once those writes are durable.
    pub async fn write<R, E, F>(&self, job: F) -> Result<R, E>
    where
        F: FnOnce(&mut WriteSet<'_>) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.write_then(job, |_| ()).await
    }

    /// Like [`Writer::write`], and runs `after_durable` on the writer thread
    /// with the result once the writes are durable, before answering. Use it
    /// for wake-ups that must not fire before durability.
    pub async fn write_then<R, E, F, A>(&self, job: F, after_durable: A) -> Result<R, E>
    where
        F: FnOnce(&mut WriteSet<'_>) -> Result<R, E> + Send + 'static,
        A: FnOnce(&R) + Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(StoreError::Failed.into());
        }
        let (reply, answer) = oneshot::channel::<Result<R, E>>();
        let job: Job = Box::new(move |writes| {
            let outcome = job(writes);
            let apply = outcome.is_ok();
            let completion: Completion = Box::new(move |durable| {
                let result = match (outcome, durable) {
                    (Ok(value), Ok(())) => {
                        after_durable(&value);
                        Ok(value)
                    }
                    (Ok(_), Err(error)) => Err(E::from(error)),
                    (Err(error), _) => Err(error),
                };
                // The caller may have gone away; the write stands regardless.
                let _ = reply.send(result);
            });
            (apply, completion)
        });
        self.commands
            .send(Command::Job(job))
            .await
            .map_err(|_| E::from(StoreError::Closed))?;
        answer.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Every sequence number up to this one belongs to a durable write.
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable_seq.load(Ordering::SeqCst)
    }

    /// True once a sync has failed: nothing more will be written.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Finishes queued jobs, syncs, and stops the thread.
    pub async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Close(reply)).await.is_err() {
            return Ok(());
        }
        let result = answer.await.unwrap_or(Ok(()));
        let handle = self.thread.lock().ok().and_then(|mut slot| slot.take());
        if let Some(handle) = handle {
            // The thread has already answered Close, so this join is short.
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        result
    }
}

fn run(
    kv: Arc<dyn Kv>,
    mut commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    mut next_seq: u64,
    max_batch: usize,
) {
    let mut close_reply = None;
    while close_reply.is_none() {
        let Some(first) = commands.blocking_recv() else {
            break;
        };
        let mut jobs = Vec::with_capacity(max_batch);
        match first {
            Command::Job(job) => jobs.push(job),
            Command::Close(reply) => close_reply = Some(reply),
        }
        while close_reply.is_none() && jobs.len() < max_batch {
            match commands.try_recv() {
                Ok(Command::Job(job)) => jobs.push(job),
                Ok(Command::Close(reply)) => close_reply = Some(reply),
                Err(_) => break,
            }
        }
        let mut completions = Vec::with_capacity(jobs.len());
        let mut wrote = false;
        for job in jobs {
            let mut writes = WriteSet {
                kv: &*kv,
                staged: BTreeMap::new(),
                next_seq: &mut next_seq,
                seq_used: false,
            };
            let (apply, completion) = job(&mut writes);
            if shared.failed.load(Ordering::SeqCst) {
                completions.push((completion, Err(StoreError::Failed)));
                continue;
            }
            let applied = if apply && !writes.staged.is_empty() {
                let result = kv.apply(writes.into_batch());
                wrote |= result.is_ok();
                result
            } else {
                Ok(())
            };
            completions.push((completion, applied));
        }
        let synced = if wrote || close_reply.is_some() {
            kv.sync()
        } else {
            Ok(())
        };
        match &synced {
            Ok(()) => shared.durable_seq.store(next_seq, Ordering::SeqCst),
            Err(error) => {
                tracing::error!(%error, "durable flush failed; refusing further writes");
                shared.failed.store(true, Ordering::SeqCst);
            }
        }
        for (completion, applied) in completions {
            let result = match (&synced, applied) {
                (_, Err(error)) => Err(error),
                (Ok(()), Ok(())) => Ok(()),
                (Err(_), Ok(())) => Err(StoreError::Failed),
            };
            completion(result);
        }
        if let Some(reply) = close_reply.take() {
            let _ = reply.send(synced.map_err(|_| StoreError::Failed));
            return;
        }
    }
}
