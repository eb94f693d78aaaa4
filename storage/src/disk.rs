//! Refusing writes while the data directory's file system is nearly full.
//!
//! A WAL write that fails with ENOSPC leaves the engine refusing writes until a restart, since
//! RocksDB stops on it. So isobar stops taking writes a margin before that: while the free
//! space under the data directory is below `disk_free_min_bytes`, a write fails with
//! [`Error::DiskFull`] before anything is prepared or logged, `/health` says so, and writes
//! resume by themselves once space returns. Persists and expiry keep running meanwhile: they
//! are what frees space (a persist turns WAL records into much smaller chunks).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// How long a measurement of free space is trusted.
const RECHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Checks free space under one directory, at most every [`RECHECK_INTERVAL`].
#[derive(Debug)]
pub(crate) struct DiskGuard {
    dir: PathBuf,
    free_min_bytes: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskGuard {
    /// A guard of `dir` that refuses writes below `free_min_bytes` (0: never).
    pub(crate) fn new(dir: PathBuf, free_min_bytes: u64) -> Self {
        Self { dir, free_min_bytes, last: Mutex::new(None) }
    }

    /// `Ok` when a write may go ahead; [`Error::DiskFull`] with the figures when not.
    pub(crate) fn check(&self) -> Result<()> {
        if self.free_min_bytes == 0 {
            return Ok(());
        }
        let mut last = self.last.lock();
        let free_bytes = match *last {
            Some((at, free_bytes)) if at.elapsed() < RECHECK_INTERVAL => free_bytes,
            _ => {
                let stat = nix::sys::statvfs::statvfs(&self.dir).map_err(|e| Error::Io {
                    op: "check free space of",
                    path: self.dir.clone(),
                    source: e.into(),
                })?;
                let free_bytes = stat.blocks_available().saturating_mul(stat.fragment_size());
                *last = Some((Instant::now(), free_bytes));
                free_bytes
            }
        };
        if free_bytes < self.free_min_bytes {
            return Err(Error::DiskFull(format!(
                "{free_bytes} bytes free under {}, below storage.disk_free_min_bytes = {}; writes resume once space is freed",
                self.dir.display(),
                self.free_min_bytes
            )));
        }
        Ok(())
    }
}
