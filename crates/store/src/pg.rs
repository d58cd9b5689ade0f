//! The PostgreSQL engine: the same [`Kv`] contract as sled, content in
//! chunked rows, and the leadership lease that lets several gateways share
//! one database with exactly one of them writing.
//!
//! [`Kv`] is synchronous and is called from async workers and from the
//! writer thread, so the engine runs `tokio-postgres` on a runtime of its
//! own (one thread, `lienthong-pg`) and callers wait for the answer on a
//! plain channel; they never start a runtime inside another one. Three
//! connections: reads (shared, so concurrent reads are pipelined on it),
//! the writer's transactions, and content uploads (long transactions that
//! must not hold up the writer's groups).
//!
//! Every write transaction checks the leadership epoch in the lease row last,
//! with `FOR SHARE`: a gateway that was deposed commits nothing more, and
//! the one taking over waits for a commit in flight before its own epoch
//! starts (see [`Lease`]).

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio_postgres::{Client, NoTls, types::Type};

use super::{Batch, ContentHash, Kv, Pair, StoreError};

/// Content rows hold this many bytes each unless configured.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;

/// How to reach and use PostgreSQL (`[store.postgres]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// libpq-style connection string or URL, e.g.
    /// `host=/run/postgresql user=lienthong dbname=lienthong`.
    pub url: String,
    /// Longest wait for one statement's answer (a content upload gets this
    /// per chunk).
    pub timeout: Duration,
    /// How long a leadership lease lasts unless renewed: the bound on how
    /// long a dead or hung active gateway keeps the others waiting.
    pub lease: Duration,
    /// Bytes per content row.
    pub chunk_bytes: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout: Duration::from_secs(5),
            lease: Duration::from_secs(6),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
        }
    }
}

impl PgOptions {
    fn config(&self) -> Result<tokio_postgres::Config, StoreError> {
        let mut config: tokio_postgres::Config = self.url.parse().map_err(|e| {
            StoreError::Engine(format!(
                "store.postgres.url is not a connection string: {e}"
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("lienthong");
        }
        config.connect_timeout(self.timeout);
        Ok(config)
    }
}

const SCHEMA: &str = "
SELECT pg_advisory_xact_lock(7163512017);
CREATE TABLE IF NOT EXISTS lienthong_kv (
    k bytea PRIMARY KEY,
    v bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS lienthong_blob (
    hash bytea PRIMARY KEY,
    size bigint NOT NULL,
    chunks integer NOT NULL
);
CREATE TABLE IF NOT EXISTS lienthong_blob_chunk (
    hash bytea NOT NULL,
    n integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (hash, n)
);
ALTER TABLE lienthong_blob_chunk ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS lienthong_lease (
    id integer PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL,
    address text NOT NULL,
    epoch bigint NOT NULL,
    expires timestamptz NOT NULL
);
INSERT INTO lienthong_lease VALUES (1, '', '', 0, '-infinity') ON CONFLICT DO NOTHING;
";

/// Creates the tables when absent; two gateways starting together take
/// turns on an advisory lock.
async fn ensure_schema(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("BEGIN; {SCHEMA} COMMIT;"))
        .await
}

/// A PostgreSQL error as a store error: a connection that is gone, or a
/// server shutting down or starting, is [`StoreError::Unavailable`].
fn pg_error(what: &str, error: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    match error.as_db_error() {
        Some(db) => {
            let code = db.code();
            let text = format!("{what}: {} ({})", db.message(), code.code());
            if [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                SqlState::QUERY_CANCELED,
                SqlState::LOCK_NOT_AVAILABLE,
            ]
            .contains(code)
            {
                StoreError::Unavailable(text)
            } else {
                StoreError::Engine(text)
            }
        }
        None => {
            let mut text = format!("{what}: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            StoreError::Unavailable(text)
        }
    }
}

/// The leadership a gateway holds: its epoch, and until when it may act
/// on it without hearing from the database again.
pub struct Fence {
    epoch: i64,
    state: Mutex<FenceState>,
}

struct FenceState {
    valid_until: Instant,
    lost: Option<String>,
}

impl Fence {
    pub(crate) fn new(epoch: i64, valid_until: Instant) -> Arc<Self> {
        Arc::new(Self {
            epoch,
            state: Mutex::new(FenceState {
                valid_until,
                lost: None,
            }),
        })
    }

    /// The leadership epoch: one more at every takeover.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    fn extend(&self, until: Instant) {
        if let Ok(mut state) = self.state.lock()
            && until > state.valid_until
        {
            state.valid_until = until;
        }
    }

    /// Gives the leadership up for good (deposed, or not renewed in time).
    pub fn lose(&self, why: String) {
        if let Ok(mut state) = self.state.lock()
            && state.lost.is_none()
        {
            state.lost = Some(why);
        }
    }

    /// Why the leadership is gone, once it is: lost, or its lease ran out
    /// before a renewal came back.
    pub fn lost(&self) -> Option<String> {
        let state = self.state.lock().ok()?;
        if let Some(why) = &state.lost {
            return Some(why.clone());
        }
        (Instant::now() > state.valid_until).then(|| {
            format!(
                "the leadership lease (epoch {}) ran out before it was renewed",
                self.epoch
            )
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        match self.lost() {
            Some(why) => Err(StoreError::NotLeader(why)),
            None => Ok(()),
        }
    }
}

/// A connection with its statements prepared once: each later call is one
/// bind-and-execute round trip, and the server neither parses nor plans it
/// again.
struct Conn {
    client: Client,
    prepared: Mutex<std::collections::HashMap<&'static str, tokio_postgres::Statement>>,
}

impl Conn {
    /// Runs `sql` (a constant) with typed parameters, preparing it on this
    /// connection the first time.
    async fn query_typed(
        &self,
        sql: &'static str,
        params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let known = self
            .prepared
            .lock()
            .ok()
            .and_then(|prepared| prepared.get(sql).cloned());
        let statement = match known {
            Some(statement) => statement,
            None => {
                let types: Vec<Type> = params.iter().map(|(_, kind)| kind.clone()).collect();
                let statement = self.client.prepare_typed(sql, &types).await?;
                if let Ok(mut prepared) = self.prepared.lock() {
                    prepared.insert(sql, statement.clone());
                }
                statement
            }
        };
        let values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params.iter().map(|(value, _)| *value).collect();
        self.client.query(&statement, &values).await
    }

    async fn batch_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(sql).await
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// A connection, made on first use and again after it broke.
struct Slot {
    config: tokio_postgres::Config,
    setup: String,
    client: tokio::sync::Mutex<Option<Arc<Conn>>>,
    /// Held for a whole transaction.
    transaction: tokio::sync::Mutex<()>,
    /// Set when a transaction was abandoned half-way (its caller timed
    /// out, or its ROLLBACK failed): the connection may still be inside
    /// it, so it is not used again; closing it makes the server roll the
    /// transaction back.
    abandoned: std::sync::atomic::AtomicBool,
}

/// Marks its slot abandoned unless disarmed: dropped with a transaction
/// still open (the future was cancelled by a timeout).
struct OpenTransaction<'a> {
    slot: &'a Slot,
    open: bool,
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if self.open {
            self.slot
                .abandoned
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Slot {
    fn new(config: tokio_postgres::Config, setup: String) -> Self {
        Self {
            config,
            setup,
            client: tokio::sync::Mutex::new(None),
            transaction: tokio::sync::Mutex::new(()),
            abandoned: std::sync::atomic::AtomicBool::new(false),
        }
    }

    async fn client(&self) -> Result<Arc<Conn>, StoreError> {
        let mut slot = self.client.lock().await;
        if self
            .abandoned
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            // Dropping it closes it (once its last user is done).
            *slot = None;
        }
        if let Some(client) = slot.as_ref().filter(|client| !client.is_closed()) {
            return Ok(client.clone());
        }
        *slot = None;
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error("connecting to PostgreSQL", e))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a PostgreSQL connection ended");
            }
        });
        client
            .batch_execute(&self.setup)
            .await
            .map_err(|e| pg_error("setting up a PostgreSQL session", e))?;
        let client = Arc::new(Conn {
            client,
            prepared: Mutex::new(std::collections::HashMap::new()),
        });
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// What the engine and its content store share: the runtime, the
/// connections and the fence.
pub(crate) struct PgShared {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    read: Slot,
    write: Slot,
    content: Slot,
    fence: Option<Arc<Fence>>,
    timeout: Duration,
    chunk_bytes: usize,
}

impl Drop for PgShared {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Also called from async code: do not wait for the tasks.
            runtime.shutdown_background();
        }
    }
}

impl PgShared {
    fn open(options: &PgOptions, fence: Option<Arc<Fence>>) -> Result<Arc<Self>, StoreError> {
        let config = options.config()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lienthong-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Engine(format!("starting the PostgreSQL runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let millis = options.timeout.as_millis();
        // A writer stopped inside a transaction (SIGSTOP, a hung host)
        // must not hold the lease row's lock for ever: the server ends
        // such a session after half a lease.
        let idle = (options.lease.as_millis() / 2).max(500);
        let session = |synchronous: &str, idle: Option<u128>| {
            let idle = idle.map_or_else(String::new, |idle| {
                format!(" SET idle_in_transaction_session_timeout = {idle};")
            });
            format!(
                "SET statement_timeout = {millis}; SET synchronous_commit = {synchronous};{idle}"
            )
        };
        let shared = Arc::new(Self {
            runtime: Some(runtime),
            handle,
            read: Slot::new(config.clone(), session("on", None)),
            write: Slot::new(config.clone(), session("on", Some(idle))),
            // Content commits without waiting for its WAL flush: no record
            // names it yet, and the record that will is committed later with
            // `synchronous_commit = on`, whose flush (and standby
            // acknowledgement) covers every earlier WAL record, this content
            // included. Content lost in a crash before that was never
            // acknowledged to anyone. One flush per write group instead of
            // one more per document (tests/failover.rs stops the database
            // with `-m immediate` under load and finds every acknowledged
            // document's content).
            content: Slot::new(config, session("off", Some(idle))),
            fence,
            timeout: options.timeout,
            chunk_bytes: options.chunk_bytes.max(1024),
        });
        let schema = shared.clone();
        shared.run("creating the tables", options.timeout * 2, async move {
            let client = schema.write.client().await?;
            ensure_schema(&client.client)
                .await
                .map_err(|e| pg_error("creating the tables", e))
        })?;
        Ok(shared)
    }

    /// Runs `work` on the engine's runtime and waits for it, at most
    /// `timeout`. Blocking; never called from the engine's own runtime.
    fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        timeout: Duration,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let result = match tokio::time::timeout(timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Unavailable(format!(
                    "{what}: PostgreSQL did not answer within {} ms",
                    timeout.as_millis()
                ))),
            };
            let _ = answer.send(result);
        });
        answered
            .recv()
            .map_err(|_| StoreError::Engine(format!("{what}: the PostgreSQL runtime stopped")))?
    }

    fn check_fence(&self) -> Result<(), StoreError> {
        self.fence.as_deref().map_or(Ok(()), Fence::check)
    }

    /// Runs `body` inside a transaction on `slot`, then checks the fence
    /// and commits. Any failure rolls back; a connection left in an
    /// unknown state is dropped.
    async fn transaction<T, F, Fut>(
        &self,
        slot: fn(&PgShared) -> &Slot,
        what: &'static str,
        body: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Conn>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let slot = slot(self);
        let _one = slot.transaction.lock().await;
        let client = slot.client().await?;
        let mut guard = OpenTransaction { slot, open: true };
        client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| pg_error(what, e))?;
        let result = async {
            let value = body(client.clone()).await?;
            self.fence_in_transaction(&client, what).await?;
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| pg_error(what, e))?;
            Ok(value)
        }
        .await;
        // A failed ROLLBACK leaves the connection in an unknown state: the
        // guard, left armed, retires it.
        guard.open = result.is_err() && client.batch_execute("ROLLBACK").await.is_err();
        result
    }

    /// Inside a write transaction, last: the lease row still names this
    /// gateway's epoch. `FOR SHARE` makes a takeover wait for this commit.
    async fn fence_in_transaction(&self, client: &Conn, what: &str) -> Result<(), StoreError> {
        let Some(fence) = &self.fence else {
            return Ok(());
        };
        fence.check()?;
        let row = client
            .query_typed(
                "SELECT epoch FROM lienthong_lease WHERE id = 1 FOR SHARE",
                &[],
            )
            .await
            .map_err(|e| pg_error(what, e))?;
        let epoch: Option<i64> = row.first().map(|row| row.get(0));
        if epoch != Some(fence.epoch) {
            let why = format!(
                "another gateway took over (leadership epoch {} is now {})",
                fence.epoch,
                epoch.map_or_else(|| "absent".to_owned(), |e| e.to_string())
            );
            fence.lose(why.clone());
            return Err(StoreError::NotLeader(why));
        }
        Ok(())
    }
}

/// Fills `buffer` from `file` (less only at its end); the bytes read.
fn read_full(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// The smallest key greater than every key starting with `prefix`, if any.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The engine: one table `lienthong_kv(k bytea primary key, v bytea)`;
/// `bytea` compares bytewise, so its order is the key order.
pub struct PgKv {
    shared: Arc<PgShared>,
}

impl PgKv {
    /// Connects (creating the tables when absent). With a `fence`, every
    /// read checks that the leadership has not lapsed and every write
    /// transaction that the epoch is still this gateway's.
    pub fn open(options: &PgOptions, fence: Option<Arc<Fence>>) -> Result<Self, StoreError> {
        Ok(Self {
            shared: PgShared::open(options, fence)?,
        })
    }

    pub(crate) fn shared(&self) -> Arc<PgShared> {
        self.shared.clone()
    }
}

impl Kv for PgKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.check_fence()?;
        let shared = self.shared.clone();
        let key = key.to_vec();
        self.shared
            .run("reading a key", self.shared.timeout, async move {
                let client = shared.read.client().await?;
                let rows = client
                    .query_typed(
                        "SELECT v FROM lienthong_kv WHERE k = $1",
                        &[(&key, Type::BYTEA)],
                    )
                    .await
                    .map_err(|e| pg_error("reading a key", e))?;
                Ok(rows.first().map(|row| row.get::<_, Vec<u8>>(0)))
            })
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        self.shared.check_fence()?;
        let lower = match after {
            // The next key after `after` in bytewise order.
            Some(after) if after >= prefix => [after, &[0]].concat(),
            _ => prefix.to_vec(),
        };
        let upper = successor(prefix);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let shared = self.shared.clone();
        self.shared
            .run("scanning keys", self.shared.timeout, async move {
                let client = shared.read.client().await?;
                let rows =
                    match &upper {
                        Some(upper) => {
                            client
                                .query_typed(
                                    "SELECT k, v FROM lienthong_kv WHERE k >= $1 AND k < $2 \
                             ORDER BY k LIMIT $3",
                                    &[
                                        (&lower, Type::BYTEA),
                                        (upper, Type::BYTEA),
                                        (&limit, Type::INT8),
                                    ],
                                )
                                .await
                        }
                        None => client
                            .query_typed(
                                "SELECT k, v FROM lienthong_kv WHERE k >= $1 ORDER BY k LIMIT $2",
                                &[(&lower, Type::BYTEA), (&limit, Type::INT8)],
                            )
                            .await,
                    }
                    .map_err(|e| pg_error("scanning keys", e))?;
                Ok(rows
                    .into_iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect())
            })
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.shared.check_fence()?;
        // Last write of a key wins, as in the other engines; one statement
        // cannot touch a row twice.
        let mut writes = BTreeMap::new();
        for (key, value) in batch {
            super::check_value_size(&key, value.as_deref())?;
            writes.insert(key, value);
        }
        let (mut deleted, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in writes {
            match value {
                Some(value) => {
                    keys.push(key);
                    values.push(value);
                }
                None => deleted.push(key),
            }
        }
        let shared = self.shared.clone();
        self.shared
            .run("writing a group", self.shared.timeout, async move {
                shared
                    .transaction(
                        |shared| &shared.write,
                        "writing a group",
                        |client| async move {
                            // Both statements go out together (pipelined).
                            let delete = async {
                                if deleted.is_empty() {
                                    return Ok(Vec::new());
                                }
                                client
                                    .query_typed(
                                        "DELETE FROM lienthong_kv WHERE k = ANY($1)",
                                        &[(&deleted, Type::BYTEA_ARRAY)],
                                    )
                                    .await
                            };
                            let upsert = async {
                                if keys.is_empty() {
                                    return Ok(Vec::new());
                                }
                                client
                                    .query_typed(
                                        "INSERT INTO lienthong_kv (k, v) \
                                     SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                                     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                                        &[(&keys, Type::BYTEA_ARRAY), (&values, Type::BYTEA_ARRAY)],
                                    )
                                    .await
                            };
                            let (deleted, upserted) = tokio::join!(delete, upsert);
                            deleted.map_err(|e| pg_error("deleting keys", e))?;
                            upserted.map_err(|e| pg_error("writing keys", e))?;
                            Ok(())
                        },
                    )
                    .await
            })
    }

    /// Every [`Kv::apply`] committed with `synchronous_commit = on`: it
    /// returned once the commit was flushed (and, on a cluster with
    /// synchronous standbys, acknowledged by them). Nothing is left to do.
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Where content to store comes from.
pub(crate) enum Source {
    Memory(Vec<u8>),
    File(std::path::PathBuf),
}

impl PgShared {
    /// Stores content under `hash` in chunk rows and its `lienthong_blob`
    /// row, in one transaction, durable with the next synchronous commit
    /// (the record that names it; see the content connection's setup);
    /// content already there costs one lookup. Memory stays within one
    /// chunk for a file.
    pub(crate) fn put_content(
        self: &Arc<Self>,
        hash: ContentHash,
        size: u64,
        source: Source,
    ) -> Result<(), StoreError> {
        self.check_fence()?;
        let chunk = self.chunk_bytes;
        let chunks = size.div_ceil(chunk as u64).max(1);
        let chunk_count = i32::try_from(chunks).map_err(|_| {
            StoreError::Engine(format!("content of {size} bytes has too many chunks"))
        })?;
        let timeout = self
            .timeout
            .saturating_mul(u32::try_from(chunks + 1).unwrap_or(u32::MAX));
        let shared = self.clone();
        self.run("storing content", timeout, async move {
            shared
                .transaction(
                    |shared| &shared.content,
                    "storing content",
                    |client| async move {
                        let id = hash.0.to_vec();
                        let found = client
                            .query_typed(
                                "SELECT 1 FROM lienthong_blob WHERE hash = $1",
                                &[(&id, Type::BYTEA)],
                            )
                            .await
                            .map_err(|e| pg_error("looking up content", e))?;
                        if !found.is_empty() {
                            return Ok(());
                        }
                        let mut file = match &source {
                            Source::File(path) => Some(std::fs::File::open(path).map_err(|e| {
                                StoreError::io("reading staged content", path.as_path(), e)
                            })?),
                            Source::Memory(_) => None,
                        };
                        // One buffer for every chunk, filled by a plain read
                        // on this runtime's thread: the staged file was just
                        // written and is in the page cache, so the wait is
                        // short, and no blocking thread with buffers of its
                        // own is involved.
                        let mut buffer = vec![0u8; chunk];
                        for n in 0..chunk_count {
                            let data: &[u8] = match (&source, file.as_mut()) {
                                (Source::Memory(bytes), _) => {
                                    let start = (n as usize * chunk).min(bytes.len());
                                    &bytes[start..(start + chunk).min(bytes.len())]
                                }
                                (Source::File(path), Some(file)) => {
                                    let filled = read_full(file, &mut buffer).map_err(|e| {
                                        StoreError::io("reading staged content", path.as_path(), e)
                                    })?;
                                    &buffer[..filled]
                                }
                                (Source::File(_), None) => &[],
                            };
                            client
                                .query_typed(
                                    "INSERT INTO lienthong_blob_chunk (hash, n, data) \
                                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                                    &[(&id, Type::BYTEA), (&n, Type::INT4), (&data, Type::BYTEA)],
                                )
                                .await
                                .map_err(|e| pg_error("storing a content chunk", e))?;
                        }
                        let size = i64::try_from(size).unwrap_or(i64::MAX);
                        client
                            .query_typed(
                                "INSERT INTO lienthong_blob (hash, size, chunks) \
                                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                                &[
                                    (&id, Type::BYTEA),
                                    (&size, Type::INT8),
                                    (&chunk_count, Type::INT4),
                                ],
                            )
                            .await
                            .map_err(|e| pg_error("storing content", e))?;
                        Ok(())
                    },
                )
                .await
        })
    }

    /// The number of chunk rows of stored content; `None` when absent.
    pub(crate) fn content_chunks(
        self: &Arc<Self>,
        hash: &ContentHash,
    ) -> Result<Option<i32>, StoreError> {
        self.check_fence()?;
        let shared = self.clone();
        let id = hash.0.to_vec();
        self.run("looking up content", self.timeout, async move {
            let client = shared.read.client().await?;
            let rows = client
                .query_typed(
                    "SELECT chunks FROM lienthong_blob WHERE hash = $1",
                    &[(&id, Type::BYTEA)],
                )
                .await
                .map_err(|e| pg_error("looking up content", e))?;
            Ok(rows.first().map(|row| row.get(0)))
        })
    }

    /// Chunk `n` of stored content.
    pub(crate) fn content_chunk(
        self: &Arc<Self>,
        hash: &ContentHash,
        n: i32,
    ) -> Result<Vec<u8>, StoreError> {
        self.check_fence()?;
        let shared = self.clone();
        let id = hash.0.to_vec();
        let hex = hash.to_hex();
        self.run("reading content", self.timeout, async move {
            let client = shared.read.client().await?;
            let rows = client
                .query_typed(
                    "SELECT data FROM lienthong_blob_chunk WHERE hash = $1 AND n = $2",
                    &[(&id, Type::BYTEA), (&n, Type::INT4)],
                )
                .await
                .map_err(|e| pg_error("reading content", e))?;
            rows.first()
                .map(|row| row.get(0))
                .ok_or_else(|| StoreError::Corrupt {
                    key: format!("postgres content {hex}"),
                    reason: format!("chunk {n} is missing"),
                })
        })
    }

    /// Deletes stored content; whether it was there.
    pub(crate) fn remove_content(self: &Arc<Self>, hash: &ContentHash) -> Result<bool, StoreError> {
        self.check_fence()?;
        let shared = self.clone();
        let id = hash.0.to_vec();
        self.run("deleting content", self.timeout, async move {
            shared
                .transaction(
                    |shared| &shared.content,
                    "deleting content",
                    |client| async move {
                        let rows = client
                            .query_typed(
                                "DELETE FROM lienthong_blob WHERE hash = $1 RETURNING 1",
                                &[(&id, Type::BYTEA)],
                            )
                            .await
                            .map_err(|e| pg_error("deleting content", e))?;
                        client
                            .query_typed(
                                "DELETE FROM lienthong_blob_chunk WHERE hash = $1",
                                &[(&id, Type::BYTEA)],
                            )
                            .await
                            .map_err(|e| pg_error("deleting content", e))?;
                        Ok(!rows.is_empty())
                    },
                )
                .await
        })
    }

    /// Every stored content hash, in order.
    pub(crate) fn list_content(self: &Arc<Self>) -> Result<Vec<ContentHash>, StoreError> {
        let shared = self.clone();
        self.run("listing content", self.timeout, async move {
            let client = shared.read.client().await?;
            let rows = client
                .query_typed("SELECT hash FROM lienthong_blob ORDER BY hash", &[])
                .await
                .map_err(|e| pg_error("listing content", e))?;
            rows.into_iter()
                .map(|row| {
                    let bytes: Vec<u8> = row.get(0);
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map(ContentHash)
                        .map_err(|_| StoreError::Corrupt {
                            key: "lienthong_blob".to_owned(),
                            reason: format!("a hash of {} bytes", bytes.len()),
                        })
                })
                .collect()
        })
    }
}

/// What [`Lease::try_acquire`] found.
#[derive(Debug)]
pub enum Leadership {
    /// This gateway now leads, under the fence's epoch.
    Acquired(Arc<Fence>),
    /// Another gateway holds a lease that has not run out.
    HeldBy {
        /// Its name.
        holder: String,
        /// The address it serves on.
        address: String,
    },
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence").field("epoch", &self.epoch).finish()
    }
}

/// The leadership lease, one row in `lienthong_lease`: its holder, the
/// address it serves on, an epoch that grows at every takeover, and an
/// expiry in the database's clock. The active gateway renews it; another
/// takes it once it has run out. A session advisory lock would not do: a
/// stopped process keeps its connection, and so its lock, open. Async, on
/// the caller's runtime, with a connection of its own.
pub struct Lease {
    config: tokio_postgres::Config,
    client: Option<Client>,
    holder: String,
    address: String,
    ttl: Duration,
    timeout: Duration,
}

impl Lease {
    /// A lease for the gateway named `holder` (unique to this process)
    /// serving on `address`.
    pub fn new(options: &PgOptions, holder: String, address: String) -> Result<Self, StoreError> {
        Ok(Self {
            config: options.config()?,
            client: None,
            holder,
            address,
            ttl: options.lease,
            timeout: options.timeout,
        })
    }

    async fn client(&mut self) -> Result<&Client, StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let (client, connection) =
                tokio::time::timeout(self.timeout, self.config.connect(NoTls))
                    .await
                    .map_err(|_| {
                        StoreError::Unavailable("connecting to PostgreSQL timed out".to_owned())
                    })?
                    .map_err(|e| pg_error("connecting to PostgreSQL", e))?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "the lease connection ended");
                }
            });
            // A takeover must not queue behind a lock for ever.
            let setup = format!(
                "SET lock_timeout = {}; SET statement_timeout = {};",
                self.timeout.as_millis(),
                self.timeout.as_millis()
            );
            client
                .batch_execute(&setup)
                .await
                .map_err(|e| pg_error("setting up the lease session", e))?;
            ensure_schema(&client)
                .await
                .map_err(|e| pg_error("creating the tables", e))?;
            self.client = Some(client);
        }
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Engine("lease connection".to_owned()))
    }

    async fn timed<T>(
        &mut self,
        what: &str,
        sql: &str,
        params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
        read: impl FnOnce(Vec<tokio_postgres::Row>) -> T,
    ) -> Result<T, StoreError> {
        let timeout = self.timeout;
        let client = self.client().await?;
        let result = tokio::time::timeout(timeout, client.query_typed(sql, params)).await;
        match result {
            Ok(Ok(rows)) => Ok(read(rows)),
            Ok(Err(error)) => {
                let error = pg_error(what, error);
                if matches!(error, StoreError::Unavailable(_)) {
                    self.client = None;
                }
                Err(error)
            }
            Err(_) => {
                self.client = None;
                Err(StoreError::Unavailable(format!(
                    "{what}: no answer from PostgreSQL"
                )))
            }
        }
    }

    /// Takes the lease when it is free, has run out, or was this process's
    /// own (a store that failed and is being opened again); otherwise says
    /// who holds it.
    pub async fn try_acquire(&mut self) -> Result<Leadership, StoreError> {
        let sent = Instant::now();
        let seconds = self.ttl.as_secs_f64();
        let (holder, address) = (self.holder.clone(), self.address.clone());
        let epoch = self
            .timed(
                "taking the leadership lease",
                "UPDATE lienthong_lease SET holder = $1, address = $2, epoch = epoch + 1, \
                 expires = clock_timestamp() + $3 * interval '1 second' \
                 WHERE id = 1 AND (expires < clock_timestamp() OR holder = $1) RETURNING epoch",
                &[
                    (&holder, Type::TEXT),
                    (&address, Type::TEXT),
                    (&seconds, Type::FLOAT8),
                ],
                |rows| rows.first().map(|row| row.get::<_, i64>(0)),
            )
            .await?;
        if let Some(epoch) = epoch {
            return Ok(Leadership::Acquired(Fence::new(epoch, sent + self.ttl)));
        }
        let held = self
            .timed(
                "reading the leadership lease",
                "SELECT holder, address FROM lienthong_lease WHERE id = 1",
                &[],
                |rows| {
                    rows.first()
                        .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
                },
            )
            .await?;
        let (holder, address) = held.unwrap_or_default();
        Ok(Leadership::HeldBy { holder, address })
    }

    /// Renews the lease of `fence`: false once another gateway has taken
    /// it (the fence is then lost).
    pub async fn renew(&mut self, fence: &Fence) -> Result<bool, StoreError> {
        let sent = Instant::now();
        let seconds = self.ttl.as_secs_f64();
        let (epoch, holder) = (fence.epoch, self.holder.clone());
        let renewed = self
            .timed(
                "renewing the leadership lease",
                "UPDATE lienthong_lease SET expires = clock_timestamp() + $1 * interval '1 second' \
                 WHERE id = 1 AND epoch = $2 AND holder = $3 RETURNING 1",
                &[
                    (&seconds, Type::FLOAT8),
                    (&epoch, Type::INT8),
                    (&holder, Type::TEXT),
                ],
                |rows| !rows.is_empty(),
            )
            .await?;
        if renewed {
            fence.extend(sent + self.ttl);
        } else {
            fence.lose(format!(
                "another gateway took the leadership over (this one's epoch was {epoch})"
            ));
        }
        Ok(renewed)
    }

    /// Ends the lease of `fence` at once (a clean stop), so a standby need
    /// not wait for it to run out.
    pub async fn release(&mut self, fence: &Fence) -> Result<(), StoreError> {
        let (epoch, holder) = (fence.epoch, self.holder.clone());
        fence.lose("the leadership was released".to_owned());
        self.timed(
            "releasing the leadership lease",
            "UPDATE lienthong_lease SET expires = '-infinity' WHERE id = 1 AND epoch = $1 AND holder = $2",
            &[(&epoch, Type::INT8), (&holder, Type::TEXT)],
            |_| (),
        )
        .await
    }

    /// How long the lease lasts unless renewed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// Creates database `name` through `admin_url` (tests, and the migration's
/// target when asked to); it must not exist. Blocking.
pub fn create_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Engine(format!(
            "not a plain database name: {name}"
        )));
    }
    let options = PgOptions {
        url: admin_url.to_owned(),
        ..PgOptions::default()
    };
    let config = options.config()?;
    let statement = format!("CREATE DATABASE {name}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Engine(format!("starting a runtime: {e}")))?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let (client, connection) = config
                .connect(NoTls)
                .await
                .map_err(|e| pg_error("connecting to PostgreSQL", e))?;
            tokio::spawn(connection);
            client
                .batch_execute(&statement)
                .await
                .map_err(|e| pg_error("creating a database", e))
        })
    })
    .join()
    .map_err(|_| StoreError::Engine("creating a database: the thread panicked".to_owned()))?
}

/// A new, empty database on the cluster `admin_url` reaches, with a name
/// of its own: one per test or bench run, so that runs never share state.
/// Blocking.
pub fn scratch_database(admin_url: &str) -> Result<PgOptions, StoreError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let name = format!(
        "lienthong_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    create_database(admin_url, &name)?;
    Ok(PgOptions {
        url: format!("{admin_url} dbname={name}"),
        ..PgOptions::default()
    })
}

/// The cluster the tests use: `LIENTHONG_PG` (set by `scripts/test`).
/// `None` when unset outside CI (the caller says SKIPPED); under `CI` a
/// missing database is a failure, never a skip.
pub fn test_cluster() -> Option<String> {
    match std::env::var("LIENTHONG_PG") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("LIENTHONG_PG is not set: scripts/test starts a PostgreSQL cluster and sets it")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::successor;

    #[test]
    fn the_successor_of_a_prefix_bounds_its_keys() {
        assert_eq!(successor(b"q\0"), Some(b"q\x01".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
        assert_eq!(successor(b""), None);
    }
}
