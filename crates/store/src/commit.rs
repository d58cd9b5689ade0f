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

use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Batch, Kv, StoreError, keys,
    watermark::{Watermark, WatermarkFile},
};

/// Called once the job's group is durable (or failed to become so).
type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A job: reads and stages writes; says whether to apply them.
type Job = Box<dyn FnOnce(&mut WriteSet<'_>) -> (bool, Completion) + Send>;

enum Command {
    Job(Job),
    Close(oneshot::Sender<Result<(), StoreError>>),
}

/// The writes one job stages, with read-your-writes over the writes of the
/// earlier jobs of its group and the engine.
pub struct WriteSet<'a> {
    kv: &'a dyn Kv,
    /// What the earlier jobs of this group wrote (applied at the group's end).
    group: &'a BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    next_seq: &'a mut u64,
    seq_used: bool,
}

impl WriteSet<'_> {
    /// The value under `key`, as this job would leave it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.staged.get(key).or_else(|| self.group.get(key)) {
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

    /// The engine, for scans. They see neither this job's staged writes nor
    /// those of the earlier jobs of its group: read each key found again
    /// with [`WriteSet::get`] before acting on it.
    pub fn kv(&self) -> &dyn Kv {
        self.kv
    }

    /// A new sequence number: strictly increasing across restarts.
    pub fn next_seq(&mut self) -> u64 {
        *self.next_seq += 1;
        self.seq_used = true;
        *self.next_seq
    }

    /// Refuses a value the engine could not hold durably (see
    /// [`MAX_VALUE_BYTES`]), so that one bad job cannot fail its group.
    fn check_sizes(&self) -> Result<(), StoreError> {
        self.staged
            .iter()
            .try_for_each(|(key, value)| super::check_value_size(key, value.as_deref()))
    }
}

struct Shared {
    /// Every sequence number up to this one is durable.
    durable_seq: AtomicU64,
    failed: AtomicBool,
    /// Why the store stopped writing, once it has.
    failure: watch::Sender<Option<String>>,
}

impl Shared {
    fn fail(&self, error: &StoreError) {
        let cause = match error {
            StoreError::DiskFull { .. } => "the disk is full".to_owned(),
            other => other.to_string(),
        };
        self.failed.store(true, Ordering::SeqCst);
        self.failure.send_replace(Some(cause));
    }

    fn failed_error(&self) -> StoreError {
        let cause = self
            .failure
            .borrow()
            .clone()
            .unwrap_or_else(|| "an earlier write failed".to_owned());
        StoreError::Failed(cause)
    }
}

/// What the writer keeps of the durability record.
pub(super) struct Durability {
    pub(super) file: WatermarkFile,
    pub(super) mark: Watermark,
}

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Writer {
    pub(super) fn start(
        kv: Arc<dyn Kv>,
        max_batch: usize,
        durability: Option<Durability>,
    ) -> Result<Self, StoreError> {
        let last_seq = super::read_counter(&*kv, keys::META_SEQ)?;
        let shared = Arc::new(Shared {
            durable_seq: AtomicU64::new(last_seq),
            failed: AtomicBool::new(false),
            failure: watch::channel(None).0,
        });
        let (commands, receiver) = mpsc::channel(max_batch.max(1) * 4);
        let thread_shared = shared.clone();
        let max_batch = max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("lienthong-writer".to_owned())
            .spawn(move || run(kv, receiver, thread_shared, durability, last_seq, max_batch))
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
            return Err(self.shared.failed_error().into());
        }
        let (reply, answer) = oneshot::channel::<Result<R, E>>();
        let job: Job = Box::new(move |writes| {
            // A panicking job fails alone: its staged writes are discarded
            // and its caller gets an internal error; the writer goes on.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(writes)))
                .unwrap_or_else(|payload| {
                    let error = StoreError::JobPanicked(super::panic_message(&*payload));
                    tracing::error!(%error, "a write job panicked; its writes are discarded");
                    Err(E::from(error))
                });
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

    /// Changes to `Some(cause)` when the store stops writing (a failed
    /// flush: disk full, I/O error). The server watches it to report
    /// NOT_SERVING and restart.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.shared.failure.subscribe()
    }

    /// Stops writing for good, as a failed flush does: every later write is
    /// refused with `cause` and [`Writer::failure`] fires. For a gateway
    /// that lost the leadership of a shared database.
    pub fn stop_writing(&self, cause: &StoreError) {
        self.shared.fail(cause);
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
    mut durability: Option<Durability>,
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
        // Every job of the group reads what the earlier ones wrote; all
        // their writes go to the engine as one atomic batch, then one sync.
        let mut group: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut seq_used = false;
        let mut completions = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut writes = WriteSet {
                kv: &*kv,
                group: &group,
                staged: BTreeMap::new(),
                next_seq: &mut next_seq,
                seq_used: false,
            };
            let (apply, completion) = job(&mut writes);
            if shared.failed.load(Ordering::SeqCst) {
                completions.push((completion, Err(shared.failed_error())));
                continue;
            }
            let checked = if apply { writes.check_sizes() } else { Ok(()) };
            let (staged, used) = (std::mem::take(&mut writes.staged), writes.seq_used);
            drop(writes);
            if apply && checked.is_ok() {
                seq_used |= used;
                group.extend(staged);
            }
            completions.push((completion, checked));
        }
        if seq_used {
            group.insert(
                keys::META_SEQ.to_vec(),
                Some(next_seq.to_be_bytes().to_vec()),
            );
        }
        let wrote = !group.is_empty();
        // The group's number goes into the engine with its writes; the
        // durability record names it once the group is durable.
        let next_mark = durability.as_ref().filter(|_| wrote).map(|d| Watermark {
            generation: d.mark.generation + 1,
            seq: next_seq,
            audit_head: match group.get(keys::META_AUDIT_HEAD) {
                Some(Some(head)) => head.clone(),
                _ => d.mark.audit_head.clone(),
            },
        });
        if let Some(mark) = &next_mark {
            group.insert(
                keys::META_GENERATION.to_vec(),
                Some(mark.generation.to_be_bytes().to_vec()),
            );
        }
        let applied = if wrote {
            kv.apply(group.into_iter().collect::<Batch>())
        } else {
            Ok(())
        };
        if let Err(error) = &applied {
            // The engine refused a batch of checked values: it cannot write
            // any more (sled keeps an I/O error for good).
            tracing::error!(%error, "applying a write group failed; refusing further writes");
            shared.fail(error);
        }
        let applied = applied.map_err(|error| Refusal::of(&error));
        let completions: Vec<_> = completions
            .into_iter()
            .map(|(completion, checked)| {
                let result = match (checked, &applied) {
                    (Err(error), _) => Err(error),
                    (Ok(()), Ok(())) => Ok(()),
                    (Ok(()), Err(error)) => Err(error.to_error(&shared)),
                };
                (completion, result)
            })
            .collect();
        let synced = if (wrote && applied.is_ok()) || close_reply.is_some() {
            kv.sync()
                .and_then(|()| record(&mut durability, next_mark, &applied))
        } else {
            Ok(())
        };
        match &synced {
            Ok(()) => shared.durable_seq.store(next_seq, Ordering::SeqCst),
            Err(error) => {
                tracing::error!(%error, "durable flush failed; refusing further writes");
                shared.fail(error);
            }
        }
        for (completion, applied) in completions {
            let result = match (&synced, applied) {
                (_, Err(error)) => Err(error),
                (Ok(()), Ok(())) => Ok(()),
                (Err(_), Ok(())) => Err(shared.failed_error()),
            };
            // A caller's after-durable hook that panics must not stop the
            // writer: its own caller then sees the writer closed.
            if let Err(payload) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| completion(result)))
            {
                tracing::error!(
                    panic = %super::panic_message(&*payload),
                    "a write job's completion panicked"
                );
            }
        }
        if let Some(reply) = close_reply.take() {
            let _ = reply.send(synced.map_err(|_| shared.failed_error()));
            return;
        }
    }
}

/// Why the engine refused a group, for each of its jobs: the kinds a
/// caller acts on (a database away, a leadership lost) keep their kind;
/// any other refusal stopped the writer, and its jobs get the same answer
/// as every later one (`StoreError::Failed` with the cause: "the disk is
/// full", an I/O error), whether the engine failed in `apply` or in `sync`.
enum Refusal {
    Unavailable(String),
    NotLeader(String),
    Other,
}

impl Refusal {
    fn of(error: &StoreError) -> Self {
        match error {
            StoreError::Unavailable(why) => Self::Unavailable(why.clone()),
            StoreError::NotLeader(why) => Self::NotLeader(why.clone()),
            _ => Self::Other,
        }
    }

    fn to_error(&self, shared: &Shared) -> StoreError {
        match self {
            Self::Unavailable(why) => StoreError::Unavailable(why.clone()),
            Self::NotLeader(why) => StoreError::NotLeader(why.clone()),
            Self::Other => shared.failed_error(),
        }
    }
}

/// After the engine's sync: makes the durability record name the group.
fn record(
    durability: &mut Option<Durability>,
    next_mark: Option<Watermark>,
    applied: &Result<(), Refusal>,
) -> Result<(), StoreError> {
    let (Some(durability), Some(mark), Ok(())) = (durability.as_mut(), next_mark, applied) else {
        return Ok(());
    };
    durability.file.write(&mark)?;
    durability.mark = mark;
    Ok(())
}
