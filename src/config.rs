//! Configuration: `lienthong.toml` plus command-line overrides, validated
//! into typed values with defaults that run out of the box.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::envelope::{Limits, OrgCode};

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
    agencies: Vec<RawAgency>,
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
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    commit_batch_max: usize,
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            commit_batch_max: 256,
        }
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
    /// Most write jobs in one group commit.
    pub commit_batch_max: usize,
    /// Agencies to register at start when absent.
    pub agencies: Vec<SeedAgency>,
}

/// Values given on the command line; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
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
    fn build(self, base: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
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
        let queue = self.queue.build()?;
        if !(1..=4096).contains(&self.store.commit_batch_max) {
            return Err(invalid(
                "store.commit_batch_max",
                "must be between 1 and 4096",
            ));
        }
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
        Ok(Config {
            listen,
            data_dir,
            shutdown_grace: Duration::from_secs(self.server.shutdown_grace_seconds),
            tls,
            admin_certificates: self.admin.certificates.iter().map(|p| resolve(p)).collect(),
            limits,
            queue,
            commit_batch_max: self.store.commit_batch_max,
            agencies,
        })
    }
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
        Ok(Limits {
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
        Ok(QueueConfig {
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
        };
        let config = Config::from_toml(MINIMAL, Path::new("."), &overrides).expect("valid");
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
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
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("lienthong.toml");
        let config = Config::load(&path, &Overrides::default()).expect("shipped config loads");
        assert!(config.tls.cert.is_file(), "{}", config.tls.cert.display());
        assert_eq!(config.agencies.len(), 6);
        for agency in &config.agencies {
            for cert in &agency.certificates {
                assert!(cert.is_file(), "{}", cert.display());
            }
        }
    }
}
