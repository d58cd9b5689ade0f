//! The free-space reserve: new documents are refused while the data
//! directory's filesystem has less than `store.min_free_bytes` free, so that
//! the space left keeps deliveries, acknowledgements, statuses and the audit
//! chain writing. sled keeps a failed write for good (the gateway must then
//! restart), so the gateway stops taking documents well before the engine
//! can meet a full disk; acknowledged content is released by the sweeper
//! and sends are accepted again, without a restart.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use super::StoreError;

/// Checks the free space of one filesystem against a reserve.
#[derive(Debug, Clone)]
pub struct SpaceGuard {
    dir: PathBuf,
    reserve: u64,
    /// Whether the last check refused, so that entering and leaving the
    /// full state are logged once each.
    full: Arc<AtomicBool>,
}

impl SpaceGuard {
    /// A guard over the filesystem holding `dir`; a `reserve` of 0 turns it
    /// off.
    pub fn new(dir: &Path, reserve: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            reserve,
            full: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The bytes kept free.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes an unprivileged writer may still use on the filesystem.
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        let stat = rustix::fs::statvfs(&self.dir)
            .map_err(|errno| StoreError::io("statvfs", &self.dir, std::io::Error::from(errno)))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Refuses with [`StoreError::NoRoom`] when writing `incoming` more bytes
    /// would leave less than the reserve free.
    pub fn room_for(&self, incoming: u64) -> Result<(), StoreError> {
        if self.reserve == 0 {
            return Ok(());
        }
        let free = self.free_bytes()?;
        let room = free >= self.reserve.saturating_add(incoming);
        let was_full = self.full.swap(!room, Ordering::Relaxed);
        if room {
            if was_full {
                tracing::info!(
                    free,
                    reserve = self.reserve,
                    "disk space is back: accepting documents again"
                );
            }
            return Ok(());
        }
        if !was_full {
            tracing::warn!(
                free,
                incoming,
                reserve = self.reserve,
                dir = %self.dir.display(),
                "the disk is full: refusing new documents until acknowledged content is released or space is freed"
            );
        }
        Err(StoreError::NoRoom {
            free,
            incoming,
            reserve: self.reserve,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_reserve_never_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let guard = SpaceGuard::new(dir.path(), 0);
        guard.room_for(u64::MAX).expect("no reserve, no refusal");
    }

    #[test]
    fn a_reserve_above_the_free_space_refuses_and_says_the_disk_is_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = SpaceGuard::new(dir.path(), 1)
            .free_bytes()
            .expect("statvfs");
        assert!(free > 0, "the test machine's disk has room");
        let guard = SpaceGuard::new(dir.path(), free + (1 << 30));
        let error = guard.room_for(0).expect_err("more reserve than free space");
        assert!(matches!(error, StoreError::NoRoom { .. }), "{error:?}");
        assert!(error.to_string().contains("disk is full"), "{error}");
        // A document that would eat into the reserve is refused too.
        let guard = SpaceGuard::new(dir.path(), 1);
        guard.room_for(0).expect("room for nothing more");
        assert!(guard.room_for(free + (1 << 30)).is_err());
        // And the state clears once the check passes again.
        guard.room_for(0).expect("room again");
    }

    #[test]
    fn a_missing_directory_is_an_io_error_not_a_full_disk() {
        let guard = SpaceGuard::new(Path::new("/nonexistent/lienthong"), 1);
        let error = guard.room_for(0).expect_err("no such directory");
        assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    }
}
