//! Lienthong: a gRPC gateway that carries official electronic documents
//! between the agencies of a province, verifies their signatures and queues
//! every message durably until its recipient has it.
//!
//! See `ARCHITECTURE.md` for the map of modules.

#![warn(missing_docs)]
// Only src/pki/ffi.rs may use unsafe code; it allows it for itself.
#![deny(unsafe_code)]

pub mod api;
pub mod audit;
pub mod clock;
pub mod config;
pub mod envelope;
pub mod gateway;
pub mod pki;
pub mod proto;
pub mod queue;
pub mod receipt;
pub mod registry;
pub mod routing;
pub mod server;
pub mod status;
pub mod store;
