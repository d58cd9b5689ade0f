//! Test harness: a real gateway on 127.0.0.1:0 with the shipped config, a
//! temp data dir, and mTLS clients holding certs-test identities.

#![allow(dead_code)]

pub mod edxml;
pub mod faults;
pub mod pdfs;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use lienthong::{
    config::{Config, Overrides},
    proto::{self, admin_client::AdminClient, exchange_client::ExchangeClient},
    store::{Kv, Pair, SledKv},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub const DEPARTMENT: &str = "000.00.12.H56";
pub const DISTRICT: &str = "000.00.31.H56";
pub const COMMUNE_A: &str = "000.01.31.H56";
pub const COMMUNE_B: &str = "000.02.31.H56";
pub const TREASURY: &str = "000.00.90.H56";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn certs() -> PathBuf {
    repo().join("certs-test")
}

/// A running gateway.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// The database, when the gateway's store is PostgreSQL.
    pub postgres: Option<lienthong::store::PgOptions>,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), lienthong::server::ServerError>>,
}

/// The shipped config for a test gateway in `data_dir`. With
/// `LIENTHONG_TEST_ENGINE=postgres` (scripts/test runs the core flows a
/// second time so), on a fresh database of the `LIENTHONG_PG` cluster.
pub fn config(data_dir: &Path) -> Config {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        data_dir: Some(data_dir.to_path_buf()),
        keystore_passphrase: None,
        postgres: test_postgres(data_dir),
    };
    Config::load(&repo().join("lienthong.toml"), &overrides).expect("shipped config loads")
}

/// Where an offline command (`audit verify`, `store check`) finds the
/// store of the test gateway in `data_dir`.
pub fn store_location(data_dir: &Path) -> Vec<std::ffi::OsString> {
    match test_postgres(data_dir) {
        Some(url) => vec!["--postgres".into(), url.into()],
        None => vec!["--data-dir".into(), data_dir.as_os_str().to_owned()],
    }
}

/// Whether the suite runs on PostgreSQL (`LIENTHONG_TEST_ENGINE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("LIENTHONG_TEST_ENGINE").as_deref() == Ok("postgres")
}

/// The database of the test gateway in `data_dir` when the suite runs on
/// PostgreSQL: a fresh one the first time, the same one when the gateway
/// is started again on that directory.
pub fn test_postgres(data_dir: &Path) -> Option<String> {
    static DATABASES: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    if !on_postgres() {
        return None;
    }
    let mut databases = DATABASES.lock().expect("lock");
    if let Some((_, url)) = databases.iter().find(|(dir, _)| dir == data_dir) {
        return Some(url.clone());
    }
    let admin = std::env::var("LIENTHONG_PG")
        .expect("LIENTHONG_TEST_ENGINE=postgres needs LIENTHONG_PG (scripts/test sets both)");
    let url = lienthong::store::pg::scratch_database(&admin)
        .expect("create a test database")
        .url;
    databases.push((data_dir.to_path_buf(), url.clone()));
    Some(url)
}

impl TestServer {
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(config(data_dir)).await
    }

    pub async fn start_with(config: Config) -> Self {
        Self::start_with_clock(config, std::sync::Arc::new(lienthong::clock::SystemClock)).await
    }

    /// A gateway whose time is `clock` (a `ManualClock` in the tests of
    /// leases, backoff and retention).
    pub async fn start_with_clock(
        config: Config,
        clock: std::sync::Arc<dyn lienthong::clock::Clock>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let data_dir = config.data_dir.clone();
        let postgres = (config.store.engine == lienthong::store::Engine::Postgres)
            .then(|| config.store.postgres.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(lienthong::server::serve_with_clock(
            config,
            listener,
            clock,
            async move {
                let _ = stopped.await;
            },
        ));
        let server = Self {
            addr,
            data_dir,
            postgres,
            stop: Some(stop),
            handle,
        };
        server.wait_ready().await
    }

    async fn wait_ready(mut self) -> Self {
        for _ in 0..100 {
            if self.handle.is_finished() {
                let outcome = (&mut self.handle).await;
                panic!("gateway stopped while starting: {outcome:?}");
            }
            if self.try_connect("department").await.is_ok() {
                return self;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not come up on {}", self.addr);
    }

    async fn try_connect(&self, who: &str) -> Result<Channel, tonic::transport::Error> {
        connect(self.addr, Some(who)).await
    }

    pub async fn channel(&self, who: &str) -> Channel {
        self.try_connect(who).await.expect("connect")
    }

    pub async fn exchange(&self, who: &str) -> ExchangeClient<Channel> {
        ExchangeClient::new(self.channel(who).await)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    pub async fn admin(&self, who: &str) -> AdminClient<Channel> {
        AdminClient::new(self.channel(who).await)
    }

    /// Whether content of `hash` is stored: its file, or its row in the
    /// gateway's database.
    pub fn content_stored(&self, hash: &lienthong::store::ContentHash) -> bool {
        match &self.postgres {
            Some(options) => lienthong::store::offline::OfflineStore::open_postgres(options)
                .expect("open the gateway's database")
                .blobs()
                .contains(hash),
            None => {
                let hex = hash.to_hex();
                self.data_dir
                    .join("blobs")
                    .join(&hex[..2])
                    .join(&hex)
                    .is_file()
            }
        }
    }

    /// Stops the gateway the way SIGTERM does and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.handle)
            .await
            .expect("gateway stops within 20 s")
            .expect("server task")
            .expect("gateway stops cleanly");
    }
}

/// The certificate and key files of a certs-test identity.
pub fn identity_files(who: &str) -> (PathBuf, PathBuf) {
    let base = match who {
        "admin" => certs().join("admin/admin"),
        "self-signed" => certs().join("bad/self-signed"),
        agency => certs().join("agencies").join(agency),
    };
    (base.with_extension("crt"), base.with_extension("key"))
}

/// A TLS channel to the gateway as `who` (None: no client certificate).
pub async fn connect(
    addr: SocketAddr,
    who: Option<&str>,
) -> Result<Channel, tonic::transport::Error> {
    let files = who.map(identity_files);
    connect_with_files(
        addr,
        files.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .await
}

/// A TLS channel to the gateway holding the certificate and key in these
/// files (None: no client certificate).
pub async fn connect_with_files(
    addr: SocketAddr,
    identity: Option<(&Path, &Path)>,
) -> Result<Channel, tonic::transport::Error> {
    connect_trusting(addr, identity, &certs().join("ca/root.crt")).await
}

/// Like [`connect_with_files`], trusting the server certificates of the CA
/// in `ca` (a federation gateway's own CA).
pub async fn connect_trusting(
    addr: SocketAddr,
    identity: Option<(&Path, &Path)>,
    ca: &Path,
) -> Result<Channel, tonic::transport::Error> {
    let ca = std::fs::read(ca).expect("CA file");
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).expect("cert"),
            std::fs::read(key).expect("key"),
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("url")
        .tls_config(tls)?
        .connect()
        .await
}

/// The certs-test signer file (without extension) of an agency's organization.
pub fn organization_signer(code: &str) -> Option<&'static str> {
    Some(match code {
        DEPARTMENT => "signers/department-organization",
        DISTRICT => "signers/district-organization",
        COMMUNE_A => "signers/commune-a-organization",
        COMMUNE_B => "signers/commune-b-organization",
        TREASURY => "signers/treasury-organization",
        "000.00.99.H56" => "signers/unregistered-organization",
        _ => return None,
    })
}

/// A detached CMS signature (SHA-256, signing time, chain embedded) by a
/// certs-test signer, made in-process.
pub fn sign(identity: &str, content: &[u8]) -> Vec<u8> {
    use openssl::{
        cms::{CMSOptions, CmsContentInfo},
        pkey::PKey,
        stack::Stack,
        x509::X509,
    };
    let base = certs().join(identity);
    let cert = X509::from_pem(&std::fs::read(base.with_extension("crt")).expect("signer cert"))
        .expect("cert");
    let key =
        PKey::private_key_from_pem(&std::fs::read(base.with_extension("key")).expect("signer key"))
            .expect("key");
    let mut chain = Stack::new().expect("stack");
    chain
        .push(
            X509::from_pem(&std::fs::read(certs().join("ca/agency-ca.crt")).expect("ca"))
                .expect("ca"),
        )
        .expect("push");
    CmsContentInfo::sign(
        Some(&cert),
        Some(&key),
        Some(&chain),
        Some(content),
        CMSOptions::BINARY | CMSOptions::DETACHED,
    )
    .expect("sign")
    .to_der()
    .expect("der")
}

/// A detached CAdES signature of the file `input` by a certs-test identity,
/// made by the `openssl cms` command (an independent party) into `output`.
pub fn openssl_sign_file(identity: &str, input: &Path, output: &Path) {
    let base = certs().join(identity);
    let status = Command::new("openssl")
        .args([
            "cms", "-sign", "-binary", "-cades", "-outform", "DER", "-in",
        ])
        .arg(input)
        .arg("-signer")
        .arg(base.with_extension("crt"))
        .arg("-inkey")
        .arg(base.with_extension("key"))
        .arg("-certfile")
        .arg(certs().join("ca/agency-ca.crt"))
        .arg("-out")
        .arg(output)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl cms -sign {identity}");
}

/// A small valid envelope from `from` to `to`, signed by the sender's
/// organization signer (the default policy wants one).
pub fn envelope(message_id: &str, from: &str, to: &[&str], content: &[u8]) -> proto::Envelope {
    let mut envelope = unsigned_envelope(message_id, from, to, content);
    if let Some(signer) = organization_signer(from) {
        envelope.signatures.push(proto::Signature {
            attachment: "ke-hoach.pdf".into(),
            cms_der: sign(signer, content),
        });
    }
    envelope
}

/// The same envelope without any signature.
pub fn unsigned_envelope(
    message_id: &str,
    from: &str,
    to: &[&str],
    content: &[u8],
) -> proto::Envelope {
    proto::Envelope {
        message_id: message_id.to_owned(),
        from: from.to_owned(),
        to: to.iter().map(|s| (*s).to_owned()).collect(),
        document: Some(proto::Document {
            code: Some(proto::DocumentCode {
                number: "101".into(),
                notation: "KH-UBND".into(),
            }),
            r#type: "official-letter".into(),
            subject: "Kế hoạch triển khai chuyển đổi số".into(),
            ..Default::default()
        }),
        attachments: vec![proto::Attachment {
            name: "ke-hoach.pdf".into(),
            media_type: "application/pdf".into(),
            content: content.to_vec(),
            ..Default::default()
        }],
        signatures: Vec::new(),
        edxml_header: Vec::new(),
    }
}

pub async fn send(
    client: &mut ExchangeClient<Channel>,
    envelope: proto::Envelope,
) -> Result<proto::Receipt, tonic::Status> {
    let response = client
        .send(proto::SendRequest {
            envelope: Some(envelope),
        })
        .await?;
    Ok(response.into_inner().receipt.expect("receipt"))
}

/// Opens a live (not draining) Receive stream holding at most `max_in_flight`.
pub async fn live_stream(
    client: &mut ExchangeClient<Channel>,
    max_in_flight: u32,
) -> tonic::Streaming<proto::Delivery> {
    client
        .receive(proto::ReceiveRequest {
            max_in_flight,
            drain: false,
        })
        .await
        .expect("receive")
        .into_inner()
}

/// The next delivery of a stream, within 10 s.
pub async fn next_delivery(stream: &mut tonic::Streaming<proto::Delivery>) -> proto::Delivery {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("delivered within 10 s")
        .expect("stream")
        .expect("a delivery, not the end of the stream")
}

/// Drains the caller's queue: every delivery now waiting.
pub async fn drain(client: &mut ExchangeClient<Channel>) -> Vec<proto::Delivery> {
    let mut stream = client
        .receive(proto::ReceiveRequest {
            max_in_flight: 1024,
            drain: true,
        })
        .await
        .expect("receive")
        .into_inner();
    let mut out = Vec::new();
    while let Some(delivery) = stream.message().await.expect("stream") {
        out.push(delivery);
    }
    out
}

pub async fn ack(client: &mut ExchangeClient<Channel>, delivery: &proto::Delivery) {
    client
        .ack(proto::AckRequest {
            delivery_id: delivery.delivery_id.clone(),
        })
        .await
        .expect("ack");
}

pub fn envelope_of(delivery: &proto::Delivery) -> &proto::Envelope {
    match &delivery.payload {
        Some(proto::delivery::Payload::Envelope(envelope)) => envelope,
        other => panic!("expected an envelope, got {other:?}"),
    }
}

/// Everything the gateway stored: every sled key and value, and every blob.
/// Read with the gateway stopped.
/// The staging files a gateway's data directory holds (`blobs/tmp`): a
/// refused or broken upload must leave none.
pub fn staging_files(data_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data_dir.join("blobs/tmp"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Every record and every stored content hash of the stopped gateway in
/// `data_dir`, whichever its engine.
pub fn snapshot(data_dir: &Path) -> (Vec<Pair>, Vec<String>) {
    if let Some(url) = test_postgres(data_dir) {
        let options = lienthong::store::PgOptions {
            url,
            ..Default::default()
        };
        let offline = lienthong::store::offline::OfflineStore::open_postgres(&options)
            .expect("open the gateway's database");
        let pairs = offline
            .kv()
            .scan_prefix(b"", None, usize::MAX)
            .expect("scan");
        let blobs = offline.blobs().list().expect("list");
        return (pairs, blobs.iter().map(|h| h.to_hex()).collect());
    }
    let kv = SledKv::open(&data_dir.join("sled")).expect("open sled offline");
    let pairs = kv.scan_prefix(b"", None, usize::MAX).expect("scan");
    let blobs = lienthong::store::BlobStore::open(&data_dir.join("blobs"))
        .expect("blobs")
        .list()
        .expect("list")
        .iter()
        .map(|h| h.to_hex())
        .collect();
    (pairs, blobs)
}

/// The `lienthong` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_lienthong");

/// A `lienthong serve` process; killed if the test ends without stopping it.
pub struct GatewayProcess(pub Child);

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `lienthong serve` with the shipped config on a free port.
pub fn spawn_gateway(data_dir: &Path) -> (GatewayProcess, SocketAddr) {
    spawn_gateway_with(data_dir, &[])
}

/// Like [`spawn_gateway`], with more `serve` arguments (e.g. `--config`).
pub fn spawn_gateway_with(
    data_dir: &Path,
    extra: &[&std::ffi::OsStr],
) -> (GatewayProcess, SocketAddr) {
    spawn_gateway_listening(data_dir, "127.0.0.1:0", extra)
}

/// Like [`spawn_gateway_with`], listening on `listen`.
pub fn spawn_gateway_listening(
    data_dir: &Path,
    listen: &str,
    extra: &[&std::ffi::OsStr],
) -> (GatewayProcess, SocketAddr) {
    spawn_gateway_env(data_dir, listen, extra, &[])
}

/// Like [`spawn_gateway_listening`], with more environment variables (a
/// test-only fault).
pub fn spawn_gateway_env(
    data_dir: &Path,
    listen: &str,
    extra: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> (GatewayProcess, SocketAddr) {
    let chosen = extra.iter().any(|arg| *arg == "--postgres");
    let postgres = test_postgres(data_dir)
        .filter(|_| !chosen)
        .map(|url| vec!["--postgres".to_owned(), url])
        .unwrap_or_default();
    let mut child = Command::new(BIN)
        .envs(env.iter().copied())
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(postgres)
        .args(extra)
        .current_dir(repo())
        .env("LIENTHONG_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lienthong serve");
    let stderr = child.stderr.take().expect("stderr");
    let child = GatewayProcess(child);
    let (found, address) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        // Keep reading so the server never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(addr) = line.split("address=").nth(1) {
                let _ = found.send(addr.trim().to_owned());
                sent = true;
            }
        }
    });
    let addr = address
        .recv_timeout(Duration::from_secs(60))
        .expect("gateway printed its listening address");
    (child, addr.parse().expect("socket address"))
}

/// Runs the `lienthong` binary as a client holding `identity`'s certificate.
pub fn run_cli(args: &[&str], identity: &str, addr: &str) -> Output {
    let (cert, key) = identity_files(identity);
    Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env(
            "LIENTHONG_SERVER",
            format!(
                "https://localhost:{}",
                addr.rsplit(':').next().expect("port")
            ),
        )
        .env("LIENTHONG_TLS_CERT", cert)
        .env("LIENTHONG_TLS_KEY", key)
        .env("LIENTHONG_TLS_CA", certs().join("ca/root.crt"))
        .output()
        .expect("run lienthong")
}

/// The stdout of a command that must have succeeded.
pub fn stdout_of(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
