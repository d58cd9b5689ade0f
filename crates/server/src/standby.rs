//! A gateway on a shared PostgreSQL store: it serves only while it holds
//! the leadership lease. Until then (and again after losing it) it is a
//! standby: health says NOT_SERVING and every call is refused with
//! UNAVAILABLE naming the active gateway, while it keeps trying to take
//! the lease over. Losing the leadership or the database steps the gateway
//! down to standby without exiting; it takes over again by itself.

use std::{
    convert::Infallible,
    marker::PhantomData,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tonic::{Status, body::Body, codegen::http, server::NamedService, transport::Server};

use crate::{
    ServerError,
    api::{AdminService, EdxmlService, ExchangeService, FederationService, SigningService},
    clock::Clock,
    config::Config,
    proto::{
        admin_server::AdminServer, edxml_server::EdxmlServer, exchange_server::ExchangeServer,
        federation_server::FederationServer, signing_server::SigningServer,
    },
    store::{Fence, Leadership, Lease, Store, StoreError},
};

/// Accepted connections of a listener shared by the standby and active
/// servers in turn.
pub(crate) fn incoming(
    listener: Arc<TcpListener>,
) -> impl tokio_stream::Stream<Item = std::io::Result<TcpStream>> + Send + 'static {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            // Small gRPC frames must not wait for Nagle.
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    })
}

/// Answers every call of service `S` with UNAVAILABLE and why.
struct Refuse<S> {
    why: watch::Receiver<String>,
    service: PhantomData<fn() -> S>,
}

impl<S> Clone for Refuse<S> {
    fn clone(&self) -> Self {
        Self {
            why: self.why.clone(),
            service: PhantomData,
        }
    }
}

impl<S: NamedService> NamedService for Refuse<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Refuse<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        let why = self.why.borrow().clone();
        std::future::ready(Ok(Status::unavailable(why).into_http()))
    }
}

fn refuse<S>(why: &watch::Receiver<String>) -> Refuse<S> {
    Refuse {
        why: why.clone(),
        service: PhantomData,
    }
}

/// Serves the standby face on `listener` until `end` turns true.
async fn standby_server(
    config: &Config,
    listener: Arc<TcpListener>,
    why: watch::Receiver<String>,
    mut end: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let tls = crate::tls_config(config)?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<ExchangeServer<ExchangeService>>()
        .await;
    health
        .set_not_serving::<SigningServer<SigningService>>()
        .await;
    health.set_not_serving::<EdxmlServer<EdxmlService>>().await;
    health.set_not_serving::<AdminServer<AdminService>>().await;
    health
        .set_not_serving::<FederationServer<FederationService>>()
        .await;
    let flow = config.flow;
    Server::builder()
        .http2_keepalive_interval(Some(flow.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(flow.http2_keepalive_timeout))
        .tls_config(tls.timeout(flow.tls_handshake_timeout))?
        .add_service(health_service)
        .add_service(refuse::<ExchangeServer<ExchangeService>>(&why))
        .add_service(refuse::<SigningServer<SigningService>>(&why))
        .add_service(refuse::<EdxmlServer<EdxmlService>>(&why))
        .add_service(refuse::<AdminServer<AdminService>>(&why))
        .add_service(refuse::<FederationServer<FederationService>>(&why))
        .serve_with_incoming_shutdown(incoming(listener), async move {
            let _ = end.wait_for(|end| *end).await;
        })
        .await?;
    Ok(())
}

/// Waits as a standby until this gateway takes the lease (`Some`) or
/// `stop` turns true (`None`).
async fn wait_for_leadership(
    config: &Config,
    listener: &Arc<TcpListener>,
    lease: &mut Lease,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Arc<Fence>>, ServerError> {
    // A free lease is taken before any standby face is shown.
    let first = lease.try_acquire().await;
    if let Ok(Leadership::Acquired(fence)) = first {
        return Ok(Some(fence));
    }
    let (why, watching) = watch::channel("this gateway is starting; try again".to_owned());
    let (end, ended) = watch::channel(false);
    let server = {
        let (config, listener) = (config.clone(), listener.clone());
        tokio::spawn(async move { standby_server(&config, listener, watching, ended).await })
    };
    let poll = (lease.ttl() / 6).clamp(Duration::from_millis(200), Duration::from_secs(1));
    let outcome = loop {
        if *stop.borrow() {
            break None;
        }
        let state = match lease.try_acquire().await {
            Ok(Leadership::Acquired(fence)) => break Some(fence),
            Ok(Leadership::HeldBy { holder, address }) => {
                format!("this gateway is a standby; the active gateway is {holder} at {address}")
            }
            Err(error) => format!(
                "this gateway cannot reach its database ({error}); it serves again once the database is back"
            ),
        };
        if *why.borrow() != state {
            tracing::warn!(state = %state, "not serving");
            why.send_replace(state);
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    };
    let _ = end.send(true);
    match server.await {
        Ok(result) => result?,
        Err(error) => return Err(ServerError::Task(error.to_string())),
    }
    Ok(outcome)
}

/// Renews the lease of `fence` until `done`; once the leadership is gone
/// (taken over, or not renewed in time), stops the store writing, which
/// steps the active server down. Returns the lease.
async fn keep_leadership(
    mut lease: Lease,
    fence: Arc<Fence>,
    store: Store,
    mut done: watch::Receiver<bool>,
    unfenced: bool,
) -> Lease {
    let every = lease.ttl() / 3;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = done.wait_for(|done| *done) => return lease,
        }
        match lease.renew(&fence).await {
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "renewing the leadership lease failed"),
        }
        if let Some(why) = fence.lost().filter(|_| !unfenced) {
            tracing::error!(cause = %why, "this gateway lost the leadership; stepping down");
            store.writer().stop_writing(&StoreError::NotLeader(why));
            let _ = done.wait_for(|done| *done).await;
            return lease;
        }
    }
}

/// Serves a gateway whose store is PostgreSQL: standby until it leads,
/// active while it leads, standby again when it loses the leadership or
/// the database, until `shutdown`.
pub(crate) async fn serve_shared(
    config: Config,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let listener = Arc::new(listener);
    let (stopping, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let advertise = advertised(&config.leadership.advertise, local);
    // Unique to this process: a restarted gateway is a new holder.
    let holder = format!(
        "{}#{}-{:08x}",
        config.leadership.name,
        std::process::id(),
        rand_u32()
    );
    let mut lease = Lease::new(&config.store.postgres, holder.clone(), advertise.clone())?;
    // The address last: scripts and tests read it from the end of the line.
    tracing::info!(name = %holder, address = %local, "lienthong gateway listening (mTLS) on a shared PostgreSQL store");
    loop {
        let Some(fence) = wait_for_leadership(&config, &listener, &mut lease, &mut stop).await?
        else {
            return Ok(());
        };
        tracing::info!(epoch = fence.epoch(), "this gateway is now the active one");
        let unfenced = unfenced_for_a_test();
        let opened = {
            let (data_dir, options) = (config.data_dir.clone(), config.store.clone());
            let fence = (!unfenced).then(|| fence.clone());
            tokio::task::spawn_blocking(move || Store::open_postgres(&data_dir, &options, fence))
                .await
                .map_err(|e| ServerError::Task(format!("opening the store: {e}")))?
        };
        let store = match opened {
            Ok(store) => store,
            Err(error) => {
                tracing::error!(%error, "opening the store failed; standing by");
                let _ = lease.release(&fence).await;
                continue;
            }
        };
        let (done, watching) = watch::channel(false);
        let keeper = tokio::spawn(keep_leadership(
            lease,
            fence.clone(),
            store.clone(),
            watching,
            unfenced,
        ));
        let mut stopped = stop.clone();
        let served = crate::serve_store(
            config.clone(),
            listener.clone(),
            local,
            store.clone(),
            clock.clone(),
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            },
        )
        .await;
        let _ = done.send(true);
        let closed = store.close().await;
        lease = keeper
            .await
            .map_err(|e| ServerError::Task(format!("the lease keeper: {e}")))?;
        match served {
            Ok(()) => {
                if let Err(error) = lease.release(&fence).await {
                    tracing::warn!(%error, "releasing the leadership lease");
                }
                closed?;
                tracing::info!("gateway stopped; the leadership is released");
                return Ok(());
            }
            Err(ServerError::StoreFailed(cause)) => {
                tracing::error!(%cause, "stepping down to standby");
            }
            Err(other) => {
                let _ = lease.release(&fence).await;
                return Err(other);
            }
        }
    }
}

/// `LIENTHONG_FAULT_UNFENCED=1`, honoured only in debug builds: the
/// gateway keeps serving after losing the leadership and its store checks
/// no epoch, as a design without fencing would. The failover tests use it
/// to show that they catch a deposed leader that writes.
fn unfenced_for_a_test() -> bool {
    let asked = std::env::var_os("LIENTHONG_FAULT_UNFENCED").is_some_and(|v| v == "1");
    if asked && cfg!(debug_assertions) {
        tracing::error!(
            "LIENTHONG_FAULT_UNFENCED: this gateway does not fence its writes (a test fault)"
        );
        return true;
    }
    false
}

/// The address a standby names this gateway by: the configured one, or
/// the bound one when the configuration asked for any port.
fn advertised(configured: &str, local: SocketAddr) -> String {
    if configured.is_empty() || configured.ends_with(":0") {
        local.to_string()
    } else {
        configured.to_owned()
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() as u32
}
