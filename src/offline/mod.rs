//! The offline commands, on a stopped gateway's files or on a receipt:
//! `store check`, `store migrate`, `audit verify` and `receipt verify`. They use the core's own
//! checks, so they live in the binary; the gRPC clients are `lienthong-cli`.

mod audit;
mod migrate;
mod receipt;
mod store;

pub use self::audit::{AuditCommand, audit};
pub use self::receipt::{ReceiptCommand, receipt};
pub use self::store::{StoreCommand, store};
