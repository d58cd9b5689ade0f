//! Wiring: opens the store, builds the core and services, serves them over
//! mTLS with health and reflection, and shuts down in order.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod api;
mod link;
mod standby;

use lienthong_core::{audit, config, federation, gateway, messages, queue, receipt, registry};
use lienthong_domain::{clock, envelope, routing, status};
use lienthong_pki as pki;
use lienthong_proto as proto;
use lienthong_store as store;

use std::{collections::HashSet, future::Future, net::SocketAddr, path::Path, sync::Arc};

use tokio::{net::TcpListener, sync::watch};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::{
    api::{
        AdminService, Authenticator, EdxmlService, ExchangeService, FederationService,
        SigningService,
    },
    clock::{Clock, SystemClock},
    config::Config,
    gateway::{Gateway, GatewayError},
    pki::{Fingerprint, PkiError},
    proto::{
        admin_server::AdminServer, edxml_server::EdxmlServer, exchange_server::ExchangeServer,
        federation_server::FederationServer, signing_server::SigningServer,
    },
    store::{Store, StoreError},
};

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A file named by the config could not be read.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// Path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A certificate file named by the config is not a certificate.
    #[error("certificate {path}: {source}")]
    Certificate {
        /// Path.
        path: String,
        /// Why.
        source: PkiError,
    },
    /// The TLS material for a peer link is unusable.
    #[error("federation TLS: {0}")]
    Tls(String),
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The core could not start.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The gRPC transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task ended abnormally.
    #[error("server task: {0}")]
    Task(String),
    /// The store stopped writing (disk full, I/O error); the gateway exits
    /// so that its service manager restarts it.
    #[error(
        "the store cannot write ({0}); exiting so that the service manager restarts the gateway"
    )]
    StoreFailed(String),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(String),
}

fn read(path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::ReadFile {
        path: path.display().to_string(),
        source,
    })
}

/// Opens and checks the store, then binds the configured address and serves
/// until SIGINT or SIGTERM. A damaged store is refused before the port opens.
pub async fn run(config: Config) -> Result<(), ServerError> {
    if config.store.engine == store::Engine::Postgres {
        let addr = config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        return standby::serve_shared(config, listener, Arc::new(SystemClock), shutdown_signal())
            .await;
    }
    let store = open_store(&config).await?;
    let addr = config.listen;
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(source) => {
            let _ = store.close().await;
            return Err(ServerError::Bind { addr, source });
        }
    };
    serve_opened(
        config,
        listener,
        store,
        Arc::new(SystemClock),
        shutdown_signal(),
    )
    .await
}

/// [`run`] on a multi-threaded runtime of its own, for the binary's `serve`.
///
/// The runtime is built and the server's future polled here, not in the
/// binary: an async function's body is compiled in the crate that polls it,
/// so polling it from `main` would compile the whole server again there
/// (about 35 s of every release rebuild).
pub fn run_blocking(config: Config) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| ServerError::Task(format!("starting the async runtime: {e}")))?;
    runtime.block_on(run(config))
}

/// Opens the store off the async workers (sled's recovery reads its log).
async fn open_store(config: &Config) -> Result<Store, ServerError> {
    let data_dir = config.data_dir.clone();
    let options = config.store.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_with(&data_dir, &options))
        .await
        .map_err(|e| ServerError::Task(format!("opening the store: {e}")))??;
    Ok(store)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the gateway");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves on `listener` until `shutdown` completes; then stops accepting,
/// ends receive streams, lets in-flight calls finish within the configured
/// grace, and makes the store durable before returning.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with_clock(config, listener, Arc::new(SystemClock), shutdown).await
}

/// Like [`serve`], with `clock` as the gateway's time for leases, backoff,
/// retention, the sweeper, validity and signing times: tests drive it with
/// a [`ManualClock`](crate::clock::ManualClock) instead of sleeping.
pub async fn serve_with_clock(
    config: Config,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if config.store.engine == store::Engine::Postgres {
        return standby::serve_shared(config, listener, clock, shutdown).await;
    }
    let store = open_store(&config).await?;
    serve_opened(config, listener, store, clock, shutdown).await
}

async fn serve_opened(
    config: Config,
    listener: TcpListener,
    store: Store,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(source) => {
            let _ = store.close().await;
            return Err(ServerError::Bind {
                addr: config.listen,
                source,
            });
        }
    };
    let result = serve_store(
        config,
        Arc::new(listener),
        local,
        store.clone(),
        clock,
        shutdown,
    )
    .await;
    let closed = store.close().await;
    result?;
    closed?;
    tracing::info!("gateway stopped; store is durable");
    Ok(())
}

async fn serve_store(
    config: Config,
    listener: Arc<TcpListener>,
    local: SocketAddr,
    store: Store,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let tls = tls_config(&config)?;
    let admins = admin_fingerprints(&config)?;
    let grace = config.shutdown_grace;
    let flow = config.flow;
    let frame_limit = transport_limit(&config);
    let (stop, stopped) = watch::channel(false);
    let gateway = Arc::new(Gateway::new(config, store, clock, stopped.clone())?);
    gateway.seed_from_config().await?;
    let sweeper = gateway.spawn_sweeper();

    let auth = Authenticator::new(gateway.clone(), admins);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ExchangeServer<ExchangeService>>()
        .await;
    health.set_serving::<SigningServer<SigningService>>().await;
    health.set_serving::<EdxmlServer<EdxmlService>>().await;
    health.set_serving::<AdminServer<AdminService>>().await;
    health
        .set_serving::<FederationServer<FederationService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;

    let links = Arc::new(link::GrpcPeerLink::new(gateway.config(), frame_limit)?);
    let exchange = ExchangeServer::new(ExchangeService::new(
        gateway.clone(),
        auth.clone(),
        links.clone(),
    ))
    .max_decoding_message_size(frame_limit)
    .max_encoding_message_size(frame_limit);
    let admin = AdminServer::new(AdminService::new(
        gateway.clone(),
        auth.clone(),
        links.clone(),
    ));
    let signing = SigningServer::new(SigningService::new(gateway.clone(), auth.clone()))
        .max_decoding_message_size(frame_limit)
        .max_encoding_message_size(frame_limit);
    let edxml = EdxmlServer::new(EdxmlService::new(gateway.clone(), auth.clone()))
        .max_decoding_message_size(frame_limit)
        .max_encoding_message_size(frame_limit);
    let federation =
        FederationServer::new(FederationService::new(gateway.clone(), auth, links.clone()))
            .max_decoding_message_size(frame_limit)
            .max_encoding_message_size(frame_limit);
    let forwarders = gateway.spawn_forwarders(links);

    let incoming = standby::incoming(listener);
    let mut server_stop = stopped.clone();
    let router = Server::builder()
        .http2_keepalive_interval(Some(flow.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(flow.http2_keepalive_timeout))
        .tcp_keepalive(Some(flow.http2_keepalive_interval))
        .tls_config(tls.timeout(flow.tls_handshake_timeout))?
        .add_service(health_service)
        .add_service(reflection)
        .add_service(exchange)
        .add_service(admin)
        .add_service(signing)
        .add_service(edxml)
        .add_service(federation);
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = server_stop.wait_for(|stop| *stop).await;
    }));
    tracing::info!(address = %local, "lienthong gateway listening (mTLS)");

    let mut failure = gateway.store_failure();
    let mut failed = None;
    let early = tokio::select! {
        () = shutdown => None,
        finished = &mut server => Some(finished),
        cause = wait_for_failure(&mut failure) => {
            failed = Some(cause);
            None
        }
    };
    if let Some(finished) = early {
        return finished
            .map_err(|e| ServerError::Task(e.to_string()))?
            .map_err(ServerError::from);
    }
    if let Some(cause) = &failed {
        // The store cannot write: nothing may claim to serve. Exit non-zero
        // so that the service manager restarts the gateway on a fresh store
        // handle (sled keeps an I/O error for good) once the cause is gone.
        tracing::error!(%cause, "the store cannot write; reporting NOT_SERVING and restarting");
        health
            .set_not_serving::<SigningServer<SigningService>>()
            .await;
        health.set_not_serving::<EdxmlServer<EdxmlService>>().await;
        health.set_not_serving::<AdminServer<AdminService>>().await;
    } else {
        tracing::info!(
            grace_seconds = grace.as_secs(),
            "shutting down: no new calls, finishing in-flight ones"
        );
    }
    health
        .set_not_serving::<ExchangeServer<ExchangeService>>()
        .await;
    let _ = stop.send(true);
    match tokio::time::timeout(grace, &mut server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(error)) => tracing::error!(%error, "server task failed"),
        Err(_) => {
            tracing::warn!("in-flight calls did not finish within the grace period; closing them");
            server.abort();
        }
    }
    let _ = sweeper.await;
    // Forwarders stop on the same signal; an unsettled forward is leased
    // again after a restart (the peer dedupes it).
    for forwarder in forwarders {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), forwarder).await;
    }
    match failed {
        Some(cause) => Err(ServerError::StoreFailed(cause)),
        None => Ok(()),
    }
}

/// Resolves with the cause once the store stops writing.
async fn wait_for_failure(failure: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(cause) = failure.borrow_and_update().clone() {
            return cause;
        }
        if failure.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The largest gRPC message either way: the content limit plus room for the
/// envelope and signatures, so the gateway (not the transport) judges size.
fn transport_limit(config: &Config) -> usize {
    let limits = &config.limits;
    let signatures = limits.max_signatures as u64 * limits.max_signature_bytes;
    let largest = limits.max_message_bytes.max(limits.max_chunk_bytes);
    usize::try_from(largest + signatures + 1024 * 1024).unwrap_or(usize::MAX)
}

fn tls_config(config: &Config) -> Result<ServerTlsConfig, ServerError> {
    let identity = Identity::from_pem(read(&config.tls.cert)?, read(&config.tls.key)?);
    let mut client_ca = read(&config.tls.client_ca)?;
    pki::pem_certificates(&client_ca).map_err(|source| ServerError::Certificate {
        path: config.tls.client_ca.display().to_string(),
        source,
    })?;
    // Peers present certificates of their own CAs; each is then held to
    // its pinned fingerprint by the Federation service.
    for peer in config.federation.iter().flat_map(|f| &f.peers) {
        let ca = read(&peer.ca)?;
        pki::pem_certificates(&ca).map_err(|source| ServerError::Certificate {
            path: peer.ca.display().to_string(),
            source,
        })?;
        client_ca.push(b'\n');
        client_ca.extend_from_slice(&ca);
    }
    // Optional at the TLS layer so that a call without a certificate gets a
    // clear UNAUTHENTICATED instead of a failed handshake; every service
    // checks the certificate itself. Health and reflection stay open.
    Ok(ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(Certificate::from_pem(client_ca))
        .client_auth_optional(true))
}

fn admin_fingerprints(config: &Config) -> Result<HashSet<Fingerprint>, ServerError> {
    config
        .admin_certificates
        .iter()
        .map(|path| {
            pki::pem_fingerprint(&read(path)?).map_err(|source| ServerError::Certificate {
                path: path.display().to_string(),
                source,
            })
        })
        .collect()
}
