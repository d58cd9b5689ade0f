//! The gRPC services: authenticate, convert, call the core, map errors.
//! Proto messages become domain types here (`convert`); the core never sees
//! prost (it does not depend on it), and every failure becomes a status in
//! `status` alone.

mod admin;
mod auth;
mod convert;
mod edxml;
mod exchange;
mod federation;
mod signing;
mod status;

pub use admin::AdminService;
pub use auth::Authenticator;
/// The proto envelope → domain conversion, public for the benchmarks.
pub use convert::raw_envelope;
pub(crate) use convert::{document, hop_record, signed_hops, status_report};
pub use edxml::EdxmlService;
pub use exchange::{ExchangeService, stream_chunk, stream_envelope};
pub use federation::{FederationService, complete_hops, forward_chunk, forward_header};
pub use signing::SigningService;
pub use status::ApiError;

/// Runs a handler's body and turns its failure into a gRPC status, through
/// the one mapping in `status.rs`.
async fn reply<T>(
    call: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, tonic::Status> {
    call.await.map_err(tonic::Status::from)
}
