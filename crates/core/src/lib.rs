//! Lienthong's core: the use cases of the gateway (send, receive, statuses,
//! signing, trust changes), and what they keep: the registry, the queues,
//! the audit chain and the receipts. No gRPC, no SQL, no OpenSSL here: the
//! core speaks domain types to `lienthong-pki` and `lienthong-store`.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod audit;
pub mod config;
pub mod federation;
pub mod gateway;
pub mod messages;
pub mod queue;
pub mod receipt;
pub mod registry;

use lienthong_domain::{chunks, clock, envelope, routing, status};
use lienthong_pki as pki;
use lienthong_store as store;
