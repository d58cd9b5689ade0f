//! A filesystem for tests that forgets, on command, what was never made
//! durable: the way a power cut does and a killed process does not.
//!
//! [`model`] is the volatile layer over a backing directory: per file the
//! writes since its last fsync, per directory the entries created, renamed
//! or removed since its last fsync. [`mount::Disk`] mounts it with FUSE
//! (`fuser`, FUSE 3: `fusermount3` from Debian's `fuse3`) and cuts its
//! power on command.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod model;
pub mod mount;

pub use model::{Cut, CutReport, FsError, Ino, Kind, Model, ROOT};
pub use mount::Disk;
