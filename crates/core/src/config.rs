//! Configuration: `lienthong.toml` plus command-line overrides, validated
//! into typed values with defaults that run out of the box.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    envelope::{Limits, OrgCode},
    pki::{CryptoRules, Role},
    registry::Policy,
};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("parsing config {path}: {source}")]
    Parse {
        /// Path.
        path: String,
        /// Parser error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or malformed.
    #[error("config {field}: {reason}")]
    Invalid {
        /// The field, e.g. `queue.lease_seconds`.
        field: String,
        /// What was wrong.
        reason: String,
    },
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    server: RawServer,
    tls: RawTls,
    admin: RawAdmin,
    limits: RawLimits,
    queue: RawQueue,
    store: RawStore,
    pki: RawPki,
    keystore: RawKeystore,
    receipts: RawReceipts,
    flow: RawFlow,
    federation: crate::federation::config::RawFederation,
    pdf: RawPdf,
    edxml: RawEdxml,
    agencies: Vec<RawAgency>,
    signers: Vec<RawSigner>,
    policies: Vec<RawPolicy>,
}

/// `[edxml]`: edXML packages (QCVN 102:2016) sent and received natively.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawEdxml {
    accept_sha1: bool,
    max_header_bytes: usize,
    max_elements: usize,
    max_depth: usize,
    max_junk_bytes: usize,
    organ_id: String,
    document_types: std::collections::BTreeMap<String, String>,
}

impl Default for RawEdxml {
    fn default() -> Self {
        let limits = lienthong_edxml::Limits::default();
        Self {
            accept_sha1: false,
            max_header_bytes: limits.max_header_bytes,
            max_elements: limits.max_elements,
            max_depth: limits.max_depth,
            max_junk_bytes: limits.max_junk,
            organ_id: String::new(),
            document_types: std::collections::BTreeMap::new(),
        }
    }
}

impl RawEdxml {
    fn build(self, limits: &Limits) -> Result<EdxmlConfig, ConfigError> {
        for (field, value, min, max) in [
            (
                "edxml.max_header_bytes",
                self.max_header_bytes,
                4096,
                64 << 20,
            ),
            ("edxml.max_elements", self.max_elements, 16, 10_000_000),
            ("edxml.max_depth", self.max_depth, 8, 256),
            ("edxml.max_junk_bytes", self.max_junk_bytes, 0, 1 << 20),
        ] {
            if !(min..=max).contains(&value) {
                return Err(invalid(field, format!("must be between {min} and {max}")));
            }
        }
        for (code, doc_type) in &self.document_types {
            if doc_type.trim().is_empty() {
                return Err(invalid(
                    &format!("edxml.document_types.{code}"),
                    "names no document type",
                ));
            }
        }
        Ok(EdxmlConfig {
            limits: lienthong_edxml::Limits {
                max_header_bytes: self.max_header_bytes,
                max_elements: self.max_elements,
                max_depth: self.max_depth,
                max_attachments: limits.max_attachments,
                max_attachment_bytes: limits.max_stream_bytes,
                max_junk: self.max_junk_bytes,
            },
            accept_sha1: self.accept_sha1,
            organ_id: self.organ_id,
            document_types: self.document_types,
        })
    }
}

/// edXML settings (`[edxml]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EdxmlConfig {
    /// Bounds on a package.
    pub limits: lienthong_edxml::Limits,
    /// Accept XML signatures made with SHA-1 (reported as weak).
    pub accept_sha1: bool,
    /// What the gateway writes as `OrganId` in its trace hop; empty means
    /// the federation gateway id, or `lienthong`.
    pub organ_id: String,
    /// `DocumentType/Type` → the gateway's document type (its policy);
    /// unlisted types become `edxml-TYPE`.
    pub document_types: std::collections::BTreeMap<String, String>,
}

impl EdxmlConfig {
    /// The gateway's document type for an edXML `DocumentType/Type`.
    pub fn doc_type(&self, edxml_type: &str) -> String {
        match self.document_types.get(edxml_type) {
            Some(mapped) => mapped.clone(),
            None if edxml_type.is_empty() => "edxml".to_owned(),
            None => format!("edxml-{edxml_type}"),
        }
    }
}

/// `[pdf]`: bounds on what a PDF may make the gateway do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPdf {
    max_revisions: usize,
    max_fields: usize,
    signature_reserve_bytes: usize,
    max_image_bytes: u64,
}

impl Default for RawPdf {
    fn default() -> Self {
        let pdf = PdfConfig::default();
        Self {
            max_revisions: pdf.limits.max_revisions,
            max_fields: pdf.limits.max_fields,
            signature_reserve_bytes: pdf.limits.signature_reserve,
            max_image_bytes: pdf.max_image_bytes,
        }
    }
}

impl RawPdf {
    fn build(self) -> Result<PdfConfig, ConfigError> {
        if !(1..=10_000).contains(&self.max_revisions) {
            return Err(invalid("pdf.max_revisions", "must be between 1 and 10000"));
        }
        if !(1..=1_000_000).contains(&self.max_fields) {
            return Err(invalid("pdf.max_fields", "must be between 1 and 1000000"));
        }
        if !(4096..=1 << 20).contains(&self.signature_reserve_bytes) {
            return Err(invalid(
                "pdf.signature_reserve_bytes",
                "must be between 4096 and 1048576",
            ));
        }
        if !(1..=64 << 20).contains(&self.max_image_bytes) {
            return Err(invalid(
                "pdf.max_image_bytes",
                "must be between 1 byte and 64 MiB",
            ));
        }
        Ok(PdfConfig {
            limits: lienthong_pdf::Limits {
                max_revisions: self.max_revisions,
                max_fields: self.max_fields,
                signature_reserve: self.signature_reserve_bytes,
            },
            max_image_bytes: self.max_image_bytes,
        })
    }
}

/// Signatures inside PDFs: what a PDF may make the gateway do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdfConfig {
    /// Revisions, fields and the signature reserve.
    pub limits: lienthong_pdf::Limits,
    /// Largest signature image (PNG) SignPdf takes.
    pub max_image_bytes: u64,
}

impl Default for PdfConfig {
    fn default() -> Self {
        Self {
            limits: lienthong_pdf::Limits::default(),
            max_image_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFlow {
    tls_handshake_timeout_seconds: u64,
    http2_keepalive_interval_seconds: u64,
    http2_keepalive_timeout_seconds: u64,
    stream_idle_timeout_seconds: u64,
    max_staged_bytes: u64,
    delivery_inline_max_bytes: u64,
    receive_buffer_bytes: u64,
}

impl Default for RawFlow {
    fn default() -> Self {
        let flow = Flow::default();
        Self {
            tls_handshake_timeout_seconds: flow.tls_handshake_timeout.as_secs(),
            http2_keepalive_interval_seconds: flow.http2_keepalive_interval.as_secs(),
            http2_keepalive_timeout_seconds: flow.http2_keepalive_timeout.as_secs(),
            stream_idle_timeout_seconds: flow.stream_idle_timeout.as_secs(),
            max_staged_bytes: flow.max_staged_bytes,
            delivery_inline_max_bytes: flow.delivery_inline_max_bytes,
            receive_buffer_bytes: flow.receive_buffer_bytes,
        }
    }
}

impl RawFlow {
    fn build(&self, limits: &Limits) -> Result<Flow, ConfigError> {
        for (field, value, max) in [
            (
                "flow.tls_handshake_timeout_seconds",
                self.tls_handshake_timeout_seconds,
                600,
            ),
            (
                "flow.http2_keepalive_interval_seconds",
                self.http2_keepalive_interval_seconds,
                3600,
            ),
            (
                "flow.http2_keepalive_timeout_seconds",
                self.http2_keepalive_timeout_seconds,
                600,
            ),
            (
                "flow.stream_idle_timeout_seconds",
                self.stream_idle_timeout_seconds,
                3600,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return Err(invalid(field, format!("must be between 1 and {max}")));
            }
        }
        if self.max_staged_bytes < limits.max_message_bytes || self.max_staged_bytes > 1 << 42 {
            return Err(invalid(
                "flow.max_staged_bytes",
                "must be at least limits.max_message_bytes and at most 4 TiB",
            ));
        }
        if !(64 * 1024..=limits.max_message_bytes).contains(&self.delivery_inline_max_bytes) {
            return Err(invalid(
                "flow.delivery_inline_max_bytes",
                "must be between 64 KiB and limits.max_message_bytes",
            ));
        }
        let floor = self
            .delivery_inline_max_bytes
            .max(limits.delivery_chunk_bytes);
        if !(floor..=1 << 40).contains(&self.receive_buffer_bytes) {
            return Err(invalid(
                "flow.receive_buffer_bytes",
                "must be at least delivery_inline_max_bytes and limits.delivery_chunk_bytes",
            ));
        }
        Ok(Flow {
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_seconds),
            http2_keepalive_interval: Duration::from_secs(self.http2_keepalive_interval_seconds),
            http2_keepalive_timeout: Duration::from_secs(self.http2_keepalive_timeout_seconds),
            stream_idle_timeout: Duration::from_secs(self.stream_idle_timeout_seconds),
            max_staged_bytes: self.max_staged_bytes,
            delivery_inline_max_bytes: self.delivery_inline_max_bytes,
            receive_buffer_bytes: self.receive_buffer_bytes,
        })
    }
}

/// Timeouts and bounds on the bytes in flight: what keeps idle, slow or
/// hostile clients from holding connections, disk or memory.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    /// A TCP connection that has not finished its TLS handshake by then is closed.
    pub tls_handshake_timeout: Duration,
    /// HTTP/2 PING interval on idle connections...
    pub http2_keepalive_interval: Duration,
    /// ...and how long a PING may go unanswered before the connection is closed.
    pub http2_keepalive_timeout: Duration,
    /// A SendStream that sends nothing for this long is ended (its staging
    /// files deleted).
    pub stream_idle_timeout: Duration,
    /// Bytes that all open SendStreams may stage on disk together; a
    /// stream whose declared size does not fit is refused at its envelope.
    pub max_staged_bytes: u64,
    /// Documents larger than this reach receivers in chunks after their
    /// delivery (`content_follows`); smaller ones arrive whole.
    pub delivery_inline_max_bytes: u64,
    /// Bytes of loaded deliveries and chunks that all Receive streams may
    /// hold waiting for slow readers together.
    pub receive_buffer_bytes: u64,
}

impl Default for Flow {
    fn default() -> Self {
        Self {
            tls_handshake_timeout: Duration::from_secs(10),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(20),
            stream_idle_timeout: Duration::from_secs(60),
            max_staged_bytes: 8 << 30,
            delivery_inline_max_bytes: 1 << 20,
            receive_buffer_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPki {
    trust_anchors: Vec<PathBuf>,
    intermediates: Vec<PathBuf>,
    crls: Vec<PathBuf>,
    min_rsa_bits: u32,
    min_ec_bits: u32,
    signing_time_skew_seconds: u64,
}

impl Default for RawPki {
    fn default() -> Self {
        let rules = CryptoRules::default();
        Self {
            trust_anchors: Vec::new(),
            intermediates: Vec::new(),
            crls: Vec::new(),
            min_rsa_bits: rules.min_rsa_bits,
            min_ec_bits: rules.min_ec_bits,
            signing_time_skew_seconds: rules.signing_time_skew.as_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawReceipts {
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
    max_batch: usize,
}

impl Default for RawReceipts {
    fn default() -> Self {
        Self {
            certificate: None,
            key: None,
            max_batch: 1024,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawKeystore {
    passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigner {
    agency: String,
    role: String,
    certificate: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    document_type: String,
    #[serde(default)]
    required_roles: Vec<String>,
    #[serde(default)]
    any_of_roles: Vec<String>,
    #[serde(default)]
    allowed_recipients: Vec<String>,
    #[serde(default)]
    signing_order: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    /// Address to listen on.
    listen: String,
    /// Where sled and the blob files live.
    data_dir: PathBuf,
    /// Seconds to let in-flight calls finish on shutdown.
    shutdown_grace_seconds: u64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".to_owned(),
            data_dir: PathBuf::from("data"),
            shutdown_grace_seconds: 10,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    certificates: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_message_bytes: u64,
    max_attachments: usize,
    max_recipients: usize,
    max_signatures: usize,
    max_signature_bytes: u64,
    max_text_chars: usize,
    max_stream_bytes: u64,
    max_chunk_bytes: u64,
    delivery_chunk_bytes: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            max_message_bytes: limits.max_message_bytes,
            max_attachments: limits.max_attachments,
            max_recipients: limits.max_recipients,
            max_signatures: limits.max_signatures,
            max_signature_bytes: limits.max_signature_bytes,
            max_text_chars: limits.max_text_chars,
            max_stream_bytes: limits.max_stream_bytes,
            max_chunk_bytes: limits.max_chunk_bytes,
            delivery_chunk_bytes: limits.delivery_chunk_bytes,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawQueue {
    lease_seconds: u64,
    default_max_in_flight: u32,
    max_in_flight_cap: u32,
    max_attempts: u32,
    backoff_initial_millis: u64,
    backoff_max_seconds: u64,
    content_retention_seconds: u64,
    sweep_interval_seconds: u64,
}

impl Default for RawQueue {
    fn default() -> Self {
        let queue = QueueConfig::default();
        Self {
            lease_seconds: queue.lease.as_secs(),
            default_max_in_flight: queue.default_max_in_flight,
            max_in_flight_cap: queue.max_in_flight_cap,
            max_attempts: queue.max_attempts,
            backoff_initial_millis: u64::try_from(queue.backoff_initial.as_millis())
                .unwrap_or(u64::MAX),
            backoff_max_seconds: queue.backoff_max.as_secs(),
            content_retention_seconds: queue.content_retention.as_secs(),
            sweep_interval_seconds: queue.sweep_interval.as_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    engine: crate::store::Engine,
    commit_batch_max: usize,
    cache_capacity_bytes: u64,
    min_free_bytes: u64,
    postgres: RawPostgres,
}

impl Default for RawStore {
    fn default() -> Self {
        let defaults = crate::store::StoreOptions::default();
        Self {
            engine: defaults.engine,
            commit_batch_max: defaults.commit_batch_max,
            cache_capacity_bytes: defaults.cache_capacity_bytes,
            min_free_bytes: defaults.min_free_bytes,
            postgres: RawPostgres::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawPostgres {
    url: String,
    timeout_seconds: u64,
    lease_seconds: u64,
    chunk_bytes: usize,
    name: String,
    advertise: String,
}

impl Default for RawPostgres {
    fn default() -> Self {
        let defaults = crate::store::PgOptions::default();
        Self {
            url: String::new(),
            timeout_seconds: defaults.timeout.as_secs(),
            lease_seconds: defaults.lease.as_secs(),
            chunk_bytes: defaults.chunk_bytes,
            name: String::new(),
            advertise: String::new(),
        }
    }
}

impl RawPostgres {
    fn build(self, engine: crate::store::Engine) -> Result<crate::store::PgOptions, ConfigError> {
        if engine == crate::store::Engine::Postgres && self.url.trim().is_empty() {
            return Err(invalid(
                "store.postgres.url",
                "is required with engine = \"postgres\" (e.g. \"host=/run/postgresql user=lienthong dbname=lienthong\")",
            ));
        }
        if !(1..=300).contains(&self.timeout_seconds) {
            return Err(invalid(
                "store.postgres.timeout_seconds",
                "must be between 1 and 300",
            ));
        }
        if !(2..=300).contains(&self.lease_seconds) {
            return Err(invalid(
                "store.postgres.lease_seconds",
                "must be between 2 and 300",
            ));
        }
        if !(64 << 10..=16 << 20).contains(&self.chunk_bytes) {
            return Err(invalid(
                "store.postgres.chunk_bytes",
                "must be between 64 KiB and 16 MiB",
            ));
        }
        Ok(crate::store::PgOptions {
            url: self.url,
            timeout: Duration::from_secs(self.timeout_seconds),
            lease: Duration::from_secs(self.lease_seconds),
            chunk_bytes: self.chunk_bytes,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgency {
    code: String,
    name: String,
    #[serde(default)]
    parent: String,
    certificates: Vec<PathBuf>,
}

/// TLS material, as file paths.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key, PEM.
    pub key: PathBuf,
    /// CA certificates that issue client certificates, PEM bundle.
    pub client_ca: PathBuf,
}

/// Queue behaviour.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// How long a delivery is held for its receiver before it comes back.
    pub lease: Duration,
    /// Unacknowledged deliveries per Receive stream when the client asks for 0.
    pub default_max_in_flight: u32,
    /// The most a client may ask for.
    pub max_in_flight_cap: u32,
    /// Deliveries of one entry before it moves to dead letters.
    pub max_attempts: u32,
    /// Wait after the first failed delivery; doubles with each further one.
    pub backoff_initial: Duration,
    /// The longest wait between deliveries.
    pub backoff_max: Duration,
    /// How long a document's content is kept after its last delivery was
    /// acknowledged (or purged); then, if no other document uses it, deleted.
    pub content_retention: Duration,
    /// How often the content sweeper looks for content to delete.
    pub sweep_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            default_max_in_flight: 32,
            max_in_flight_cap: 1024,
            max_attempts: 10,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            content_retention: Duration::from_secs(30 * 86_400),
            sweep_interval: Duration::from_secs(600),
        }
    }
}

/// An agency registered at start if its code is not yet known.
#[derive(Debug, Clone)]
pub struct SeedAgency {
    /// Org code.
    pub code: OrgCode,
    /// Name.
    pub name: String,
    /// Parent org code.
    pub parent: Option<OrgCode>,
    /// Client certificate files.
    pub certificates: Vec<PathBuf>,
}

/// Trust material files and algorithm rules for signature verification.
#[derive(Debug, Clone)]
pub struct PkiConfig {
    /// Trust anchor certificates (PEM files).
    pub trust_anchors: Vec<PathBuf>,
    /// Intermediate CA certificates that help build chains (PEM files).
    pub intermediates: Vec<PathBuf>,
    /// CRLs (PEM or DER files).
    pub crls: Vec<PathBuf>,
    /// Algorithm and time rules.
    pub rules: CryptoRules,
}

/// A signer certificate bound at start if not yet bound.
#[derive(Debug, Clone)]
pub struct SeedSigner {
    /// Agency.
    pub agency: OrgCode,
    /// Role.
    pub role: Role,
    /// Certificate file (PEM).
    pub certificate: PathBuf,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Time in-flight calls get on shutdown.
    pub shutdown_grace: Duration,
    /// TLS files.
    pub tls: TlsConfig,
    /// Certificate files whose holders are administrators.
    pub admin_certificates: Vec<PathBuf>,
    /// Envelope bounds.
    pub limits: Limits,
    /// Queue behaviour.
    pub queue: QueueConfig,
    /// Timeouts and bytes in flight.
    pub flow: Flow,
    /// The store: engine, group commit, cache.
    pub store: crate::store::StoreOptions,
    /// How this gateway names itself when it shares a PostgreSQL store
    /// with others (`[store.postgres] name`, `advertise`).
    pub leadership: Leadership,
    /// Agencies to register at start when absent.
    pub agencies: Vec<SeedAgency>,
    /// Signature verification.
    pub pki: PkiConfig,
    /// Signers to bind at start when absent.
    pub signers: Vec<SeedSigner>,
    /// Policies to store at start when absent.
    pub policies: Vec<Policy>,
    /// Where the keystore passphrase comes from.
    pub keystore: KeystoreConfig,
    /// The gateway's receipt-signing identity; receipts are unsigned without it.
    pub receipts: Option<ReceiptsConfig>,
    /// Peer gateways; none when `[federation]` names no gateway id.
    pub federation: Option<crate::federation::FederationConfig>,
    /// Signatures inside PDFs.
    pub pdf: PdfConfig,
    /// edXML (`[edxml]`).
    pub edxml: EdxmlConfig,
}

/// The gateway's own signing certificate and key for receipts.
#[derive(Debug, Clone)]
pub struct ReceiptsConfig {
    /// Certificate (PEM).
    pub certificate: PathBuf,
    /// Private key (PEM; may be PKCS#8-encrypted under the keystore passphrase).
    pub key: PathBuf,
    /// Most receipts covered by one signature.
    pub max_batch: usize,
}

/// A gateway's name and address in the leadership lease of a shared
/// PostgreSQL store: a standby names the active one by them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// This gateway's name (default: its listen address).
    pub name: String,
    /// The address clients reach it on (default: its listen address).
    pub advertise: String,
}

/// How the keystore is unlocked.
#[derive(Clone, Default)]
pub struct KeystoreConfig {
    /// A file holding the passphrase (first line), if configured.
    pub passphrase_file: Option<PathBuf>,
    /// The passphrase given by environment (LIENTHONG_KEYSTORE_PASSPHRASE); wins over the file.
    pub passphrase: Option<crate::pki::Passphrase>,
}

impl std::fmt::Debug for KeystoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoreConfig")
            .field("passphrase_file", &self.passphrase_file)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Values given on the command line or in the environment; they win over the file.
#[derive(Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// LIENTHONG_KEYSTORE_PASSPHRASE.
    pub keystore_passphrase: Option<crate::pki::Passphrase>,
    /// `--postgres URL`: the PostgreSQL engine at URL, whatever `[store]`
    /// says.
    pub postgres: Option<String>,
}

impl Config {
    /// Reads and validates `path`; relative paths inside it are taken from
    /// the file's own directory.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_toml(&text, &base, overrides).map_err(|error| match error {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    /// Validates TOML text; relative paths are joined to `base`.
    pub fn from_toml(text: &str, base: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "<text>".to_owned(),
            source: Box::new(source),
        })?;
        raw.build(base, overrides)
    }
}

impl RawConfig {
    fn build(mut self, base: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let listen = match overrides.listen {
            Some(listen) => listen,
            None => self.server.listen.parse().map_err(|_| {
                invalid(
                    "server.listen",
                    format!(
                        "{:?} is not an address like 127.0.0.1:50051",
                        self.server.listen
                    ),
                )
            })?,
        };
        let data_dir = overrides
            .data_dir
            .clone()
            .unwrap_or_else(|| resolve(&self.server.data_dir));
        let required = |value: Option<PathBuf>, field: &str| {
            value
                .map(|p| resolve(&p))
                .ok_or_else(|| invalid(field, "is required: the gateway serves only over mTLS"))
        };
        let tls = TlsConfig {
            cert: required(self.tls.cert, "tls.cert")?,
            key: required(self.tls.key, "tls.key")?,
            client_ca: required(self.tls.client_ca, "tls.client_ca")?,
        };
        let limits = self.limits.build()?;
        let flow = self.flow.build(&limits)?;
        let queue = self.queue.build()?;
        if !(8 << 20..=64 << 30).contains(&self.store.cache_capacity_bytes) {
            return Err(invalid(
                "store.cache_capacity_bytes",
                "must be between 8 MiB and 64 GiB",
            ));
        }
        if !(1..=4096).contains(&self.store.commit_batch_max) {
            return Err(invalid(
                "store.commit_batch_max",
                "must be between 1 and 4096",
            ));
        }
        if let Some(url) = &overrides.postgres {
            self.store.engine = crate::store::Engine::Postgres;
            self.store.postgres.url = url.clone();
        }
        let postgres_name = std::mem::take(&mut self.store.postgres.name);
        let advertise = std::mem::take(&mut self.store.postgres.advertise);
        let postgres_options = std::mem::take(&mut self.store.postgres).build(self.store.engine)?;
        let agencies = self
            .agencies
            .into_iter()
            .enumerate()
            .map(|(index, agency)| {
                let field = format!("agencies[{index}]");
                let code = OrgCode::parse(&agency.code, &format!("{field}.code"))
                    .map_err(|e| invalid(&field, e.to_string()))?;
                let parent = if agency.parent.is_empty() {
                    None
                } else {
                    Some(
                        OrgCode::parse(&agency.parent, &format!("{field}.parent"))
                            .map_err(|e| invalid(&field, e.to_string()))?,
                    )
                };
                Ok(SeedAgency {
                    code,
                    name: agency.name,
                    parent,
                    certificates: agency.certificates.iter().map(|p| resolve(p)).collect(),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let pki = PkiConfig {
            trust_anchors: self.pki.trust_anchors.iter().map(|p| resolve(p)).collect(),
            intermediates: self.pki.intermediates.iter().map(|p| resolve(p)).collect(),
            crls: self.pki.crls.iter().map(|p| resolve(p)).collect(),
            rules: build_rules(&self.pki)?,
        };
        let signers = self
            .signers
            .iter()
            .enumerate()
            .map(|(index, signer)| {
                let field = format!("signers[{index}]");
                Ok(SeedSigner {
                    agency: OrgCode::parse(&signer.agency, &field)
                        .map_err(|e| invalid(&field, e.to_string()))?,
                    role: parse_role(&signer.role, &format!("{field}.role"))?,
                    certificate: resolve(&signer.certificate),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let policies = self
            .policies
            .iter()
            .enumerate()
            .map(|(index, policy)| build_policy(policy, &format!("policies[{index}]")))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let keystore = KeystoreConfig {
            passphrase_file: self.keystore.passphrase_file.as_deref().map(resolve),
            passphrase: overrides.keystore_passphrase.clone(),
        };
        let receipts = match (&self.receipts.certificate, &self.receipts.key) {
            (Some(certificate), Some(key)) => {
                if !(1..=65_536).contains(&self.receipts.max_batch) {
                    return Err(invalid("receipts.max_batch", "must be between 1 and 65536"));
                }
                Some(ReceiptsConfig {
                    certificate: resolve(certificate),
                    key: resolve(key),
                    max_batch: self.receipts.max_batch,
                })
            }
            (None, None) => None,
            _ => return Err(invalid("receipts", "certificate and key go together")),
        };
        let federation = self.federation.build(resolve)?;
        if federation.is_some() && receipts.is_none() {
            return Err(invalid(
                "federation",
                "forwarding needs [receipts]: custody receipts and hop records are signed with the receipt key",
            ));
        }
        Ok(Config {
            pdf: self.pdf.build()?,
            edxml: self.edxml.build(&limits)?,
            federation,
            receipts,
            keystore,
            pki,
            signers,
            policies,
            listen,
            data_dir,
            shutdown_grace: Duration::from_secs(self.server.shutdown_grace_seconds),
            tls,
            admin_certificates: self.admin.certificates.iter().map(|p| resolve(p)).collect(),
            limits,
            queue,
            flow,
            store: crate::store::StoreOptions {
                engine: self.store.engine,
                commit_batch_max: self.store.commit_batch_max,
                cache_capacity_bytes: self.store.cache_capacity_bytes,
                min_free_bytes: self.store.min_free_bytes,
                postgres: postgres_options,
            },
            leadership: Leadership {
                name: if postgres_name.is_empty() {
                    listen.to_string()
                } else {
                    postgres_name
                },
                advertise: if advertise.is_empty() {
                    listen.to_string()
                } else {
                    advertise
                },
            },
            agencies,
        })
    }
}

fn parse_role(text: &str, field: &str) -> Result<Role, ConfigError> {
    Role::parse(text).ok_or_else(|| {
        invalid(
            field,
            format!("{text:?} is not a role (organization, head, account-owner, chief-accountant, officer)"),
        )
    })
}

fn build_rules(raw: &RawPki) -> Result<CryptoRules, ConfigError> {
    if !(1024..=16384).contains(&raw.min_rsa_bits) {
        return Err(invalid(
            "pki.min_rsa_bits",
            "must be between 1024 and 16384",
        ));
    }
    if !(160..=521).contains(&raw.min_ec_bits) {
        return Err(invalid("pki.min_ec_bits", "must be between 160 and 521"));
    }
    if raw.signing_time_skew_seconds > 86_400 {
        return Err(invalid(
            "pki.signing_time_skew_seconds",
            "must be at most 86400",
        ));
    }
    Ok(CryptoRules {
        min_rsa_bits: raw.min_rsa_bits,
        min_ec_bits: raw.min_ec_bits,
        signing_time_skew: Duration::from_secs(raw.signing_time_skew_seconds),
    })
}

fn build_policy(raw: &RawPolicy, field: &str) -> Result<Policy, ConfigError> {
    let roles = |names: &[String], name: &str| {
        names
            .iter()
            .map(|role| parse_role(role, &format!("{field}.{name}")))
            .collect::<Result<Vec<_>, _>>()
    };
    let policy = Policy {
        document_type: raw.document_type.clone(),
        required_roles: roles(&raw.required_roles, "required_roles")?,
        any_of_roles: roles(&raw.any_of_roles, "any_of_roles")?,
        signing_order: roles(&raw.signing_order, "signing_order")?,
        allowed_recipients: raw
            .allowed_recipients
            .iter()
            .map(|code| OrgCode::parse(code, field).map_err(|e| invalid(field, e.to_string())))
            .collect::<Result<Vec<_>, _>>()?,
    };
    policy
        .validate()
        .map_err(|e| invalid(field, e.to_string()))?;
    Ok(policy)
}

impl RawLimits {
    fn build(self) -> Result<Limits, ConfigError> {
        const MAX_UNARY: u64 = 1024 * 1024 * 1024;
        if !(1..=MAX_UNARY).contains(&self.max_message_bytes) {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be between 1 byte and 1 GiB",
            ));
        }
        if self.max_attachments == 0 || self.max_recipients == 0 || self.max_text_chars == 0 {
            return Err(invalid(
                "limits",
                "max_attachments, max_recipients and max_text_chars must be at least 1",
            ));
        }
        // Signatures are stored as blobs, but their count and size bound the
        // message record, which must stay small (see store::MAX_VALUE_BYTES).
        if self.max_signatures > 64 || self.max_signature_bytes > 1024 * 1024 {
            return Err(invalid(
                "limits",
                "max_signatures is at most 64 and max_signature_bytes at most 1 MiB",
            ));
        }
        if self.max_recipients > 10_000
            || self.max_attachments > 1000
            || self.max_text_chars > 10_000
        {
            return Err(invalid(
                "limits",
                "max_recipients is at most 10000, max_attachments 1000, max_text_chars 10000",
            ));
        }
        if !(self.max_message_bytes..=1 << 40).contains(&self.max_stream_bytes) {
            return Err(invalid(
                "limits.max_stream_bytes",
                "must be at least max_message_bytes and at most 1 TiB",
            ));
        }
        const MIB: u64 = 1024 * 1024;
        if !(4096..=64 * MIB).contains(&self.max_chunk_bytes)
            || !(4096..=self.max_chunk_bytes.min(16 * MIB)).contains(&self.delivery_chunk_bytes)
        {
            return Err(invalid(
                "limits",
                "max_chunk_bytes must be between 4 KiB and 64 MiB, and delivery_chunk_bytes between 4 KiB and min(max_chunk_bytes, 16 MiB)",
            ));
        }
        Ok(Limits {
            max_stream_bytes: self.max_stream_bytes,
            max_chunk_bytes: self.max_chunk_bytes,
            delivery_chunk_bytes: self.delivery_chunk_bytes,
            max_message_bytes: self.max_message_bytes,
            max_attachments: self.max_attachments,
            max_recipients: self.max_recipients,
            max_signatures: self.max_signatures,
            max_signature_bytes: self.max_signature_bytes,
            max_text_chars: self.max_text_chars,
        })
    }
}

impl RawQueue {
    fn build(self) -> Result<QueueConfig, ConfigError> {
        if !(1..=86_400).contains(&self.lease_seconds) {
            return Err(invalid(
                "queue.lease_seconds",
                "must be between 1 and 86400",
            ));
        }
        if self.max_in_flight_cap == 0 || self.default_max_in_flight == 0 {
            return Err(invalid(
                "queue",
                "default_max_in_flight and max_in_flight_cap must be at least 1",
            ));
        }
        if self.default_max_in_flight > self.max_in_flight_cap {
            return Err(invalid(
                "queue.default_max_in_flight",
                "must not exceed queue.max_in_flight_cap",
            ));
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return Err(invalid("queue.max_attempts", "must be between 1 and 1000"));
        }
        if !(1..=3_600_000).contains(&self.backoff_initial_millis) {
            return Err(invalid(
                "queue.backoff_initial_millis",
                "must be between 1 and 3600000",
            ));
        }
        if !(1..=86_400).contains(&self.backoff_max_seconds) {
            return Err(invalid(
                "queue.backoff_max_seconds",
                "must be between 1 and 86400",
            ));
        }
        if self.content_retention_seconds > 10 * 365 * 86_400 {
            return Err(invalid(
                "queue.content_retention_seconds",
                "must be at most ten years",
            ));
        }
        if !(1..=86_400).contains(&self.sweep_interval_seconds) {
            return Err(invalid(
                "queue.sweep_interval_seconds",
                "must be between 1 and 86400",
            ));
        }
        Ok(QueueConfig {
            content_retention: Duration::from_secs(self.content_retention_seconds),
            sweep_interval: Duration::from_secs(self.sweep_interval_seconds),
            max_attempts: self.max_attempts,
            backoff_initial: Duration::from_millis(self.backoff_initial_millis),
            backoff_max: Duration::from_secs(self.backoff_max_seconds),
            lease: Duration::from_secs(self.lease_seconds),
            default_max_in_flight: self.default_max_in_flight,
            max_in_flight_cap: self.max_in_flight_cap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[tls]\ncert = \"s.crt\"\nkey = \"s.key\"\nclient_ca = \"ca.pem\"\n";

    #[test]
    fn minimal_config_gets_defaults_and_resolves_paths() {
        let config =
            Config::from_toml(MINIMAL, Path::new("/etc/lt"), &Overrides::default()).expect("valid");
        assert_eq!(config.listen, "127.0.0.1:50051".parse().expect("addr"));
        assert_eq!(config.data_dir, PathBuf::from("/etc/lt/data"));
        assert_eq!(config.tls.cert, PathBuf::from("/etc/lt/s.crt"));
        assert_eq!(config.queue.lease, Duration::from_secs(30));
    }

    #[test]
    fn overrides_win() {
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            data_dir: Some(PathBuf::from("/tmp/x")),
            keystore_passphrase: None,
            postgres: None,
        };
        let config = Config::from_toml(MINIMAL, Path::new("."), &overrides).expect("valid");
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn the_store_engine_is_chosen_by_name() {
        let sled = format!("{MINIMAL}[store]\nengine = \"sled\"\n");
        let config = Config::from_toml(&sled, Path::new("."), &Overrides::default()).expect("sled");
        assert_eq!(config.store.engine, crate::store::Engine::Sled);
        let unknown = format!("{MINIMAL}[store]\nengine = \"oracle\"\n");
        let error = Config::from_toml(&unknown, Path::new("."), &Overrides::default())
            .expect_err("unknown engine");
        assert!(
            error.to_string().contains("oracle") && error.to_string().contains("sled"),
            "{error}"
        );
    }

    #[test]
    fn the_postgres_engine_needs_its_url_and_sane_bounds() {
        let load = |text: String, overrides: &Overrides| {
            Config::from_toml(&text, Path::new("."), overrides)
        };
        let bare = format!("{MINIMAL}[store]\nengine = \"postgres\"\n");
        let error = load(bare.clone(), &Overrides::default()).expect_err("no url");
        assert!(error.to_string().contains("store.postgres.url"), "{error}");
        let given = format!(
            "{MINIMAL}[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"host=/run/postgresql\"\nname = \"gw-a\"\n"
        );
        let config = load(given, &Overrides::default()).expect("valid");
        assert_eq!(config.store.engine, crate::store::Engine::Postgres);
        assert_eq!(config.store.postgres.lease, Duration::from_secs(6));
        assert_eq!(config.leadership.name, "gw-a");
        assert_eq!(config.leadership.advertise, config.listen.to_string());
        // `serve --postgres URL` chooses the engine and the database.
        let overrides = Overrides {
            postgres: Some("host=/tmp user=lienthong".into()),
            ..Overrides::default()
        };
        let config = load(MINIMAL.to_owned(), &overrides).expect("override");
        assert_eq!(config.store.engine, crate::store::Engine::Postgres);
        assert_eq!(config.store.postgres.url, "host=/tmp user=lienthong");
        for (setting, field) in [
            ("lease_seconds = 1", "store.postgres.lease_seconds"),
            ("timeout_seconds = 0", "store.postgres.timeout_seconds"),
            ("chunk_bytes = 100", "store.postgres.chunk_bytes"),
            ("colour = \"blue\"", "colour"),
        ] {
            let text = format!("{MINIMAL}[store.postgres]\nurl = \"x\"\n{setting}\n");
            let error = load(text, &Overrides::default()).expect_err(setting);
            assert!(error.to_string().contains(field), "{setting}: {error}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let unknown = format!("{MINIMAL}[server]\nlisten_addr = \"x\"\n");
        assert!(matches!(
            Config::from_toml(&unknown, Path::new("."), &Overrides::default()),
            Err(ConfigError::Parse { .. })
        ));
        let lease = format!("{MINIMAL}[queue]\nlease_seconds = 0\n");
        let error =
            Config::from_toml(&lease, Path::new("."), &Overrides::default()).expect_err("bad");
        assert!(error.to_string().contains("queue.lease_seconds"), "{error}");
        let no_tls = "[server]\nlisten = \"127.0.0.1:1\"\n";
        let error =
            Config::from_toml(no_tls, Path::new("."), &Overrides::default()).expect_err("bad");
        assert!(error.to_string().contains("tls.cert"), "{error}");
    }

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lienthong.toml");
        let config = Config::load(&path, &Overrides::default()).expect("shipped config loads");
        assert!(config.tls.cert.is_file(), "{}", config.tls.cert.display());
        assert_eq!(config.agencies.len(), 6);
        assert!(!config.pki.trust_anchors.is_empty());
        assert!(
            config
                .policies
                .iter()
                .any(|p| p.document_type == "treasury.payment-order")
        );
        for signer in &config.signers {
            assert!(
                signer.certificate.is_file(),
                "{}",
                signer.certificate.display()
            );
        }
        for agency in &config.agencies {
            for cert in &agency.certificates {
                assert!(cert.is_file(), "{}", cert.display());
            }
        }
    }
}
