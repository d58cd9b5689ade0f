//! Federation: documents for agencies of other gateways wait in the
//! outbound queue of the peer they are routed to (`peer:VN:GOV:HUB`, with the
//! leases, backoff, dead letters and statistics of an agency's queue) until
//! that peer has taken custody of them; documents forwarded by a peer are
//! verified against this gateway's own trust and written durably before
//! custody is given. The routes, ids and hop rules are the domain's
//! (`lienthong_domain::federation`); the links (gRPC over pinned mTLS) are
//! the server's, behind [`PeerLink`].

pub mod config;
mod forward;

pub use self::config::{FederationConfig, PeerConfig};
pub use self::forward::{ForwardError, ForwardFuture, Forwarded, Outbound, PeerLink};
pub use lienthong_domain::federation::{
    GatewayId, Hop, HopError, PEER_MAILBOX, Route, SignedHop, chain_tip, check_chain, check_hops,
    level1, received_part, route,
};
