//! A filesystem for tests that forgets, on command, what was never made
//! durable: the way a power cut does and a killed process does not.
//!
//! [`model`] is the volatile layer over a backing directory: per file the
//! writes since its last fsync, per directory the entries created, renamed
//! or removed since its last fsync. The FUSE front that mounts it for the
//! gateway's power-cut test builds on it.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod model;

pub use model::{Cut, CutReport, FsError, Ino, Kind, Model, ROOT};
