//! Gateways among gateways: their ids, the routes to them, the mailbox a
//! peer's outbound queue lives under, and the hop rules (loops, the most
//! hops). Pure: the links themselves are the server's.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    clock::UnixMillis,
    envelope::{EnvelopeError, OrgCode},
};

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
    /// A recipient would go on to a gateway already on the route.
    #[error("routing loop: {code} would go on to {next}, already on the route {route}")]
    WouldLoop {
        /// The recipient.
        code: String,
        /// The gateway it is routed to.
        next: GatewayId,
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

/// One gateway's signed statement about a document it handled: it took
/// the document from `from` and passed it to `to` (the next gateway), or
/// delivered it there (`forwarded_at` 0, `to` the recipients). Each hop
/// names the hash of the one before, so the chain travels with the
/// document and anyone can check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// The gateway that signed it.
    pub gateway: GatewayId,
    /// The previous gateway, or the sending agency at the origin.
    pub from: String,
    /// The next gateway, or the recipients (comma-separated) where delivered.
    pub to: String,
    /// When this gateway accepted the document.
    pub received_at: UnixMillis,
    /// When it handed it on; 0 where it was delivered.
    pub forwarded_at: UnixMillis,
    /// SHA-256 over the attachments' SHA-256s, in order.
    pub content_sha256: [u8; 32],
    /// The message's canonical digest (envelope, files and signatures).
    pub envelope_sha256: [u8; 32],
    /// [`SignedHop::hash`] of the hop before; zeros for the first.
    pub previous_sha256: [u8; 32],
}

impl Hop {
    /// The signed text: one field per line.
    pub fn canonical(&self) -> Vec<u8> {
        format!(
            "lienthong-hop-v1\ngateway {}\nfrom {}\nto {}\nreceived_at {}\nforwarded_at {}\ncontent_sha256 {}\nenvelope_sha256 {}\nprevious_sha256 {}\n",
            self.gateway,
            self.from,
            self.to,
            self.received_at,
            self.forwarded_at,
            hex::encode(self.content_sha256),
            hex::encode(self.envelope_sha256),
            hex::encode(self.previous_sha256),
        )
        .into_bytes()
    }

    /// Where the document stopped: delivered at this gateway.
    pub fn is_final(&self) -> bool {
        self.forwarded_at == 0
    }
}

/// A hop with its gateway's signature (SHA-256, the gateway's receipt key)
/// and that key's certificate (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHop {
    /// The statement.
    pub hop: Hop,
    /// The signature over [`Hop::canonical`].
    pub signature: Vec<u8>,
    /// The signing certificate, PEM.
    pub certificate: Vec<u8>,
}

impl SignedHop {
    /// What the next hop names as `previous_sha256`: SHA-256 of the
    /// canonical text and the signature.
    pub fn hash(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(self.hop.canonical());
        digest.update(&self.signature);
        digest.finalize().into()
    }
}

/// The hash a new hop after `chain` names.
pub fn chain_tip(chain: &[SignedHop]) -> [u8; 32] {
    chain.last().map_or([0; 32], SignedHop::hash)
}

/// The part of `chain` that reached `here`: every hop before `here`'s own
/// first one. What `here` forwards builds on this part alone, whatever else
/// it has learned of the chain since (a custody answer extends the chain it
/// keeps with the hops of the branch that peer took; a document for
/// recipients behind two peers has two branches).
pub fn received_part<'a>(chain: &'a [SignedHop], here: &GatewayId) -> &'a [SignedHop] {
    let end = chain
        .iter()
        .position(|signed| &signed.hop.gateway == here)
        .unwrap_or(chain.len());
    &chain[..end]
}

/// Checks a chain: each hop names the hash of the one before, takes the
/// document from the gateway before and from where that one sent it, is
/// about the same document, and passes `verify` (its signature and
/// certificate). Answers, for the first hop that fails, its index and why.
pub fn check_chain(
    chain: &[SignedHop],
    verify: impl Fn(&SignedHop) -> Result<(), String>,
) -> Result<(), (usize, String)> {
    for (index, signed) in chain.iter().enumerate() {
        let hop = &signed.hop;
        let previous = index.checked_sub(1).map(|i| &chain[i]);
        if hop.previous_sha256 != chain_tip(&chain[..index]) {
            return Err((index, "does not name the hash of the hop before it".into()));
        }
        if let Some(before) = previous {
            if before.hop.to != hop.gateway.as_str() || hop.from != before.hop.gateway.as_str() {
                return Err((
                    index,
                    format!(
                        "does not follow the hop before: {} sent to {}, but {} took it from {}",
                        before.hop.gateway, before.hop.to, hop.gateway, hop.from
                    ),
                ));
            }
            if before.hop.is_final() {
                return Err((index, "follows a hop that delivered the document".into()));
            }
            if hop.envelope_sha256 != before.hop.envelope_sha256
                || hop.content_sha256 != before.hop.content_sha256
            {
                return Err((index, "is about another document (digests differ)".into()));
            }
        }
        verify(signed).map_err(|reason| (index, reason))?;
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

    fn hop(gateway: &str, from: &str, to: &str, previous: [u8; 32], forwarded: bool) -> SignedHop {
        let hop = Hop {
            gateway: id(gateway),
            from: from.into(),
            to: to.into(),
            received_at: 1,
            forwarded_at: if forwarded { 2 } else { 0 },
            content_sha256: [7; 32],
            envelope_sha256: [8; 32],
            previous_sha256: previous,
        };
        SignedHop {
            signature: hop.canonical(),
            certificate: gateway.as_bytes().to_vec(),
            hop,
        }
    }

    fn chain() -> Vec<SignedHop> {
        let a = hop("VN:GOV:H56", "000.00.12.H56", "VN:GOV:HUB", [0; 32], true);
        let hub = hop("VN:GOV:HUB", "VN:GOV:H56", "VN:GOV:H17", a.hash(), true);
        let b = hop(
            "VN:GOV:H17",
            "VN:GOV:HUB",
            "000.00.12.H17",
            hub.hash(),
            false,
        );
        vec![a, hub, b]
    }

    /// A stand-in signature check: the signature is the canonical text.
    fn fake_verify(signed: &SignedHop) -> Result<(), String> {
        if signed.signature == signed.hop.canonical() {
            Ok(())
        } else {
            Err("signature does not verify".into())
        }
    }

    #[test]
    fn a_whole_chain_checks_and_each_break_names_its_hop() {
        check_chain(&chain(), fake_verify).expect("a good chain");
        let mut altered = chain();
        altered[1].hop.to = "VN:GOV:H99".into();
        let (index, why) = check_chain(&altered, fake_verify).expect_err("altered");
        assert_eq!(index, 1, "{why}");
        let mut relinked = chain();
        relinked[1].hop.to = "VN:GOV:H99".into();
        relinked[1].signature = relinked[1].hop.canonical();
        let (index, why) = check_chain(&relinked, fake_verify).expect_err("re-signed");
        assert_eq!(index, 2, "the next hop no longer names it: {why}");
        let mut dropped = chain();
        dropped.remove(1);
        let (index, _) = check_chain(&dropped, fake_verify).expect_err("a hop missing");
        assert_eq!(index, 1);
        let mut other = chain();
        other[2].hop.content_sha256 = [9; 32];
        other[2].signature = other[2].hop.canonical();
        let (index, why) = check_chain(&other, fake_verify).expect_err("another document");
        assert_eq!((index, why.contains("another document")), (2, true));
    }

    #[test]
    fn a_gateway_forwards_on_what_reached_it_not_on_a_branch_it_learned_later() {
        let chain = chain();
        let hub = id("VN:GOV:HUB");
        // The hub keeps [H56, HUB, H17] after H17's custody answer; a
        // second forward (to another peer) builds on H56's hop alone.
        assert_eq!(received_part(&chain, &hub), &chain[..1]);
        assert!(received_part(&chain, &id("VN:GOV:H56")).is_empty());
        assert_eq!(received_part(&chain, &id("VN:GOV:H18")), &chain[..]);
    }
}
