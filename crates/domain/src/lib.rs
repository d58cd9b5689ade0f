//! Lienthong's domain: what a document message is (envelope, org codes,
//! message ids, priorities), where it goes (routing), what its recipients say
//! of it (statuses), what a signature check concludes (reports) and what a
//! document type requires of it (policies), and time
//! (the injectable clock). Pure: no I/O, no async.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod chunks;
pub mod clock;
pub mod envelope;
pub mod federation;
pub mod policy;
pub mod report;
pub mod routing;
pub mod status;
