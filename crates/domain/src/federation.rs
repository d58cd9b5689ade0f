//! Gateways among gateways: their ids, the routes to them, the mailbox a
//! peer's outbound queue lives under, and the hop rules (loops, the most
//! hops). Pure: the links themselves are the server's.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::envelope::{EnvelopeError, OrgCode};

/// A gateway's id among its peers: `VN:GOV:H56` (a province, by its
/// level-1 code), `VN:GOV:HUB` (the national hub). 3-64 characters of
/// `A-Z a-z 0-9 : . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GatewayId(String);

impl GatewayId {
    /// Parses a gateway id, naming `field` in the error.
    pub fn parse(text: &str, field: &str) -> Result<Self, EnvelopeError> {
        let ok = (3..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(EnvelopeError::invalid(
                field,
                format!(
                    "{text:?} is not a gateway id (3-64 of A-Z a-z 0-9 : . _ -, e.g. VN:GOV:H56)"
                ),
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The queue this gateway's outbound documents wait in at a peer that
    /// forwards to it: `peer:{id}`, beside the agencies' queues (same
    /// leases, backoff, dead letters and statistics).
    pub fn mailbox(&self) -> OrgCode {
        OrgCode::mailbox(&format!("{PEER_MAILBOX}{}", self.0))
    }

    /// The gateway whose outbound queue `mailbox` is, if it is one.
    pub fn of_mailbox(mailbox: &OrgCode) -> Option<Self> {
        mailbox
            .as_str()
            .strip_prefix(PEER_MAILBOX)
            .map(|id| Self(id.to_owned()))
    }
}

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The prefix of a peer's outbound queue name.
pub const PEER_MAILBOX: &str = "peer:";

/// Which org codes a peer serves: `*.H17` (every code whose level-1 part
/// is H17) or `*` (the default route: everything not routed elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `*.H17`.
    Level1(String),
    /// `*`.
    Default,
}

impl Route {
    /// Parses `*` or `*.X99`.
    pub fn parse(text: &str, field: &str) -> Result<Self, EnvelopeError> {
        if text == "*" {
            return Ok(Self::Default);
        }
        match text.strip_prefix("*.") {
            Some(level1) if is_level1(level1) => Ok(Self::Level1(level1.to_owned())),
            _ => Err(EnvelopeError::invalid(
                field,
                format!(
                    "{text:?} is not a route: \"*\" (the default) or \"*.H17\" (a level-1 code)"
                ),
            )),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Level1(level1) => write!(f, "*.{level1}"),
            Route::Default => f.write_str("*"),
        }
    }
}

fn is_level1(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 3 && bytes[0].is_ascii_uppercase() && bytes[1..].iter().all(u8::is_ascii_digit)
}

/// The level-1 part of an org code: the province or ministry
/// (`000.00.12.H17` → `H17`).
pub fn level1(code: &OrgCode) -> &str {
    let text = code.as_str();
    &text[text.len().saturating_sub(3)..]
}

/// The peer a code that is not registered here goes to: the peer with a
/// route for its level-1 part, else the one with the default route.
pub fn route<'a>(code: &OrgCode, peers: &'a [(GatewayId, Vec<Route>)]) -> Option<&'a GatewayId> {
    let wanted = level1(code);
    peers
        .iter()
        .find(|(_, routes)| {
            routes
                .iter()
                .any(|route| matches!(route, Route::Level1(l) if l == wanted))
        })
        .or_else(|| {
            peers
                .iter()
                .find(|(_, routes)| routes.contains(&Route::Default))
        })
        .map(|(id, _)| id)
}

/// Why a forwarded document may not take another hop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HopError {
    /// This gateway is already on the route: a routing loop.
    #[error("routing loop: {gateway} is already on the route {route}")]
    Loop {
        /// This gateway.
        gateway: GatewayId,
        /// The hops so far.
        route: String,
    },
    /// The document has made the most hops allowed.
    #[error("too many hops: {hops} made, federation.max_hops is {max} (route {route})")]
    TooMany {
        /// Hops made.
        hops: usize,
        /// The bound.
        max: usize,
        /// The hops so far.
        route: String,
    },
}

/// Checks that a document that went through the gateways `route` (origin
/// first) may be taken by `here`.
pub fn check_hops(route: &[GatewayId], here: &GatewayId, max_hops: usize) -> Result<(), HopError> {
    let text = || {
        route
            .iter()
            .map(GatewayId::as_str)
            .collect::<Vec<_>>()
            .join(" → ")
    };
    if route.contains(here) {
        return Err(HopError::Loop {
            gateway: here.clone(),
            route: text(),
        });
    }
    if route.len() >= max_hops {
        return Err(HopError::TooMany {
            hops: route.len(),
            max: max_hops,
            route: text(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> GatewayId {
        GatewayId::parse(text, "id").expect("gateway id")
    }

    fn code(text: &str) -> OrgCode {
        OrgCode::parse(text, "code").expect("org code")
    }

    #[test]
    fn ids_routes_and_level1_parse_strictly() {
        assert_eq!(id("VN:GOV:H56").as_str(), "VN:GOV:H56");
        assert!(GatewayId::parse("VN GOV", "id").is_err());
        assert!(GatewayId::parse("VN", "id").is_err());
        assert_eq!(Route::parse("*", "r").expect("r"), Route::Default);
        assert_eq!(
            Route::parse("*.H17", "r").expect("r"),
            Route::Level1("H17".into())
        );
        for bad in ["H17", "*.h17", "*.H1", "*.*", ""] {
            assert!(Route::parse(bad, "r").is_err(), "{bad}");
        }
        assert_eq!(level1(&code("000.00.12.H17")), "H17");
    }

    #[test]
    fn a_level1_route_wins_over_the_default_and_unrouted_codes_go_nowhere() {
        let peers = vec![
            (id("VN:GOV:HUB"), vec![Route::Default]),
            (id("VN:GOV:H17"), vec![Route::Level1("H17".into())]),
        ];
        assert_eq!(
            route(&code("000.00.12.H17"), &peers),
            Some(&id("VN:GOV:H17"))
        );
        assert_eq!(
            route(&code("000.00.12.G22"), &peers),
            Some(&id("VN:GOV:HUB"))
        );
        assert_eq!(route(&code("000.00.12.G22"), &peers[1..]), None);
    }

    #[test]
    fn mailboxes_name_their_gateway() {
        let hub = id("VN:GOV:HUB");
        let mailbox = hub.mailbox();
        assert_eq!(mailbox.as_str(), "peer:VN:GOV:HUB");
        assert_eq!(GatewayId::of_mailbox(&mailbox), Some(hub));
        assert_eq!(GatewayId::of_mailbox(&code("000.00.12.H17")), None);
    }

    #[test]
    fn loops_and_long_routes_are_refused() {
        let route = [id("VN:GOV:H56"), id("VN:GOV:HUB")];
        check_hops(&route, &id("VN:GOV:H17"), 4).expect("a third hop");
        let looped = check_hops(&route, &id("VN:GOV:H56"), 4).expect_err("loop");
        assert!(
            looped.to_string().contains("VN:GOV:H56 → VN:GOV:HUB"),
            "{looped}"
        );
        let long = check_hops(&route, &id("VN:GOV:H17"), 2).expect_err("too many");
        assert!(
            matches!(
                long,
                HopError::TooMany {
                    hops: 2,
                    max: 2,
                    ..
                }
            ),
            "{long}"
        );
    }
}
