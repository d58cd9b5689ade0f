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
pub use exchange::ExchangeService;
pub use signing::SigningService;
