//! `[federation]` of lienthong.toml: this gateway's id, its peers and the
//! bounds of forwarding.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::{
    config::ConfigError,
    federation::{GatewayId, Route},
    pki::Fingerprint,
};

/// Forwarding to and from peer gateways. Absent: the gateway serves its own
/// agencies only, and an org code not registered here is an error.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// This gateway's id (`VN:GOV:H56`).
    pub gateway_id: GatewayId,
    /// Most gateways a document may pass through, the origin included.
    pub max_hops: usize,
    /// The peers.
    pub peers: Vec<PeerConfig>,
    /// TCP connect plus TLS handshake to a peer.
    pub connect_timeout: Duration,
    /// One Forward call, from the first byte to the custody receipt.
    pub forward_timeout: Duration,
    /// Documents forwarded to one peer at a time.
    pub max_in_flight: usize,
}

/// One peer gateway.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Its id.
    pub id: GatewayId,
    /// Where it listens: `https://host:port`.
    pub url: String,
    /// The CA that issues its certificate (PEM): its own trust, not the
    /// agencies' CA.
    pub ca: PathBuf,
    /// SHA-256 of the certificate it presents, as server and as client;
    /// any other is refused.
    pub certificate_sha256: Fingerprint,
    /// The org codes it serves.
    pub routes: Vec<Route>,
}

impl FederationConfig {
    /// The peer with this id.
    pub fn peer(&self, id: &GatewayId) -> Option<&PeerConfig> {
        self.peers.iter().find(|peer| &peer.id == id)
    }

    /// The peer presenting the certificate with this fingerprint.
    pub fn peer_by_certificate(&self, fingerprint: &Fingerprint) -> Option<&PeerConfig> {
        self.peers
            .iter()
            .find(|peer| &peer.certificate_sha256 == fingerprint)
    }

    /// The peers and their routes, for [`crate::federation::route`].
    pub fn routes(&self) -> Vec<(GatewayId, Vec<Route>)> {
        self.peers
            .iter()
            .map(|peer| (peer.id.clone(), peer.routes.clone()))
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawFederation {
    gateway_id: Option<String>,
    max_hops: usize,
    connect_timeout_seconds: u64,
    forward_timeout_seconds: u64,
    max_in_flight: usize,
    peers: Vec<RawPeer>,
}

impl Default for RawFederation {
    fn default() -> Self {
        Self {
            gateway_id: None,
            max_hops: 4,
            connect_timeout_seconds: 10,
            forward_timeout_seconds: 300,
            max_in_flight: 8,
            peers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    id: String,
    url: String,
    ca: PathBuf,
    certificate_sha256: String,
    routes: Vec<String>,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl RawFederation {
    pub(crate) fn build(
        self,
        resolve: impl Fn(&std::path::Path) -> PathBuf,
    ) -> Result<Option<FederationConfig>, ConfigError> {
        let Some(gateway_id) = self.gateway_id else {
            if !self.peers.is_empty() {
                return Err(invalid(
                    "federation.gateway_id",
                    "peers are configured, so this gateway needs an id (e.g. \"VN:GOV:H56\")",
                ));
            }
            return Ok(None);
        };
        let gateway_id = GatewayId::parse(&gateway_id, "federation.gateway_id")
            .map_err(|e| invalid("federation.gateway_id", e.to_string()))?;
        if !(1..=16).contains(&self.max_hops) {
            return Err(invalid("federation.max_hops", "must be between 1 and 16"));
        }
        for (field, value, max) in [
            (
                "federation.connect_timeout_seconds",
                self.connect_timeout_seconds,
                600,
            ),
            (
                "federation.forward_timeout_seconds",
                self.forward_timeout_seconds,
                86_400,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return Err(invalid(field, format!("must be between 1 and {max}")));
            }
        }
        if !(1..=1024).contains(&self.max_in_flight) {
            return Err(invalid(
                "federation.max_in_flight",
                "must be between 1 and 1024",
            ));
        }
        let mut peers: Vec<PeerConfig> = Vec::with_capacity(self.peers.len());
        for (index, raw) in self.peers.into_iter().enumerate() {
            let field = |name: &str| format!("federation.peers[{index}].{name}");
            let id = GatewayId::parse(&raw.id, &field("id"))
                .map_err(|e| invalid(field("id"), e.to_string()))?;
            if id == gateway_id {
                return Err(invalid(field("id"), "a gateway is not its own peer"));
            }
            if peers.iter().any(|peer| peer.id == id) {
                return Err(invalid(field("id"), format!("{id} is listed twice")));
            }
            if !raw.url.starts_with("https://") {
                return Err(invalid(
                    field("url"),
                    format!("{:?} must start with https:// (peers speak mTLS)", raw.url),
                ));
            }
            let certificate_sha256 = Fingerprint::from_hex(&raw.certificate_sha256.replace(':', ""))
                .ok_or_else(|| {
                    invalid(
                        field("certificate_sha256"),
                        "must be the certificate's SHA-256 in hex (openssl x509 -noout -fingerprint -sha256)",
                    )
                })?;
            if peers
                .iter()
                .any(|peer| peer.certificate_sha256 == certificate_sha256)
            {
                return Err(invalid(
                    field("certificate_sha256"),
                    "two peers cannot present the same certificate",
                ));
            }
            if raw.routes.is_empty() {
                return Err(invalid(
                    field("routes"),
                    "name what it serves: \"*.H17\", or \"*\" for the default route",
                ));
            }
            let routes = raw
                .routes
                .iter()
                .enumerate()
                .map(|(r, text)| {
                    let field = format!("federation.peers[{index}].routes[{r}]");
                    Route::parse(text, &field).map_err(|e| invalid(field, e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            peers.push(PeerConfig {
                id,
                url: raw.url,
                ca: resolve(&raw.ca),
                certificate_sha256,
                routes,
            });
        }
        let defaults = peers
            .iter()
            .filter(|peer| peer.routes.contains(&Route::Default))
            .count();
        if defaults > 1 {
            return Err(invalid(
                "federation.peers",
                "only one peer may hold the default route \"*\"",
            ));
        }
        Ok(Some(FederationConfig {
            gateway_id,
            max_hops: self.max_hops,
            peers,
            connect_timeout: Duration::from_secs(self.connect_timeout_seconds),
            forward_timeout: Duration::from_secs(self.forward_timeout_seconds),
            max_in_flight: self.max_in_flight,
        }))
    }
}
