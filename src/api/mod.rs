//! The gRPC services: authenticate, convert, call the core, map errors.
//! Only this module (and the CLI client) touches prost types.

mod admin;
mod auth;
mod convert;
mod exchange;
mod signing;
mod status;

pub use admin::AdminService;
pub use auth::Authenticator;
/// The proto envelope → domain conversion, public for the benchmarks.
pub use convert::raw_envelope;
pub use exchange::ExchangeService;
pub use signing::SigningService;
