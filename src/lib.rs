//! Lienthong: a gRPC gateway that carries official electronic documents
//! between the agencies of a province, verifies their signatures and queues
//! every message durably until its recipient has it.
//!
//! This crate is the `lienthong` binary (daemon and CLI). Its library is only
//! a map of the workspace's members under their historical module names, for
//! the integration tests and benches. See `ARCHITECTURE.md`.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub use lienthong_core::{audit, config, gateway, messages, queue, receipt, registry};
pub use lienthong_domain::{chunks, clock, envelope, routing, status};
pub use lienthong_edxml as edxml;
pub use lienthong_pdf as pdf;
pub use lienthong_pki as pki;
pub use lienthong_proto as proto;
pub use lienthong_server as server;
pub use lienthong_server::api;
pub use lienthong_store as store;
