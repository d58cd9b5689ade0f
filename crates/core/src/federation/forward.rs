//! What the forwarder hands to a link, and what a link answers.

use std::{future::Future, pin::Pin};

use crate::{
    envelope::OrgCode,
    federation::{GatewayId, SignedHop},
    messages::MessageRecord,
    status::StatusReport,
    store::BlobStore,
};

/// A document leased from a peer's outbound queue, ready to go to it.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The peer.
    pub peer: GatewayId,
    /// The message; its files are read from `blobs` by hash.
    pub message: MessageRecord,
    /// The recipients this peer is to reach (the message's recipients
    /// routed to it).
    pub recipients: Vec<OrgCode>,
    /// The gateways the document went through, the origin first and this
    /// gateway last.
    pub route: Vec<GatewayId>,
    /// Where the files are.
    pub blobs: BlobStore,
    /// The signed hops so far, this gateway's hop to the peer last.
    pub hops: Vec<SignedHop>,
    /// For a document that came as edXML: the header the gateway keeps,
    /// carried to the peer so its fields are not lost on the way.
    pub edxml: Option<Vec<u8>>,
}

/// The peer took custody: its signed receipt, as it sent it.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The receipt's canonical text, signed by the peer.
    pub custody: Vec<u8>,
    /// True when the peer had the document already (a re-forward after a crash).
    pub duplicate: bool,
    /// The hops as the peer holds them now.
    pub hops: Vec<SignedHop>,
}

/// Why a forward did not end in custody.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    /// The peer could not be reached or failed for now: tried again after
    /// the backoff.
    #[error("peer unavailable: {0}")]
    Unavailable(String),
    /// The peer refused the document for good (a loop, too many hops, an
    /// unknown recipient, a policy, a bad signature): it goes to the dead
    /// letters with the peer's reason.
    #[error("refused by the peer: {0}")]
    Refused(String),
}

/// The future a [`PeerLink`] answers with.
pub type ForwardFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Forwarded, ForwardError>> + Send + 'a>>;

/// Carries documents to peer gateways (the server's gRPC client over pinned
/// mTLS; a fake in tests).
pub trait PeerLink: Send + Sync + 'static {
    /// Hands `outbound` to its peer; answers once the peer holds it durably.
    fn forward(&self, outbound: Outbound) -> ForwardFuture<'_>;
    /// Hands a status report on a forwarded document back toward its
    /// sender, through `peer`; answers once the peer holds it durably.
    fn forward_status(&self, peer: GatewayId, report: StatusReport) -> ForwardFuture<'_>;
}
