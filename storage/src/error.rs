//! The storage error type.
//!
//! Errors are split by whose fault they are: the caller's input ([`Error::Rejected`] per row,
//! [`Error::InvalidRequest`]), the disk's contents ([`Error::Corrupt`]), the environment
//! ([`Error::Io`], [`Error::RocksDb`]), or a broken invariant inside isobar ([`Error::Internal`]).

use std::path::PathBuf;

/// Everything that can go wrong in `isobar-storage`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes read back from disk do not decode. Names where, so an operator can act on it.
    #[error("corrupt data in {file} at offset {offset}: {reason}")]
    Corrupt { file: PathBuf, offset: u64, reason: String },
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    /// The catalog or WAL store (RocksDB) failed.
    #[cfg(feature = "engine")]
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    /// The cold store (S3, or its local directory) failed or could not be reached.
    #[error("cold store: {0}")]
    ColdStore(String),
    /// A previous durable write failed (for example an fsync error); the engine accepts no more
    /// writes until it is reopened, so nothing is acknowledged that may not be on disk.
    #[error("storage stopped accepting writes after an earlier failure: {0}")]
    Poisoned(String),
    /// The request itself is invalid (unknown table, bad time range, bad configuration).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// `create_table` of a name that is taken.
    #[error("table {0} already exists")]
    TableExists(String),
    /// A table named to be dropped, emptied or changed does not exist.
    #[error("table {0} does not exist")]
    NoSuchTable(String),
    /// The data directory's file system has less free space than the configured minimum: the
    /// write was refused before it was logged, and writes resume once space is freed.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// A configured limit was hit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The engine is shutting down.
    #[error("storage is closed")]
    Closed,
    /// Building Arrow output failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A broken invariant: a bug in isobar.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A decoding failure before the file and offset are known; turned into [`Error::Corrupt`] by
/// whoever knows where the bytes came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {reason}")]
pub struct DecodeError {
    /// Offset within the decoded buffer.
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
}

impl DecodeError {
    pub(crate) fn new(offset: usize, reason: impl Into<String>) -> Self {
        Self { offset: offset as u64, reason: reason.into() }
    }

    /// The same error in a buffer that starts `by` bytes into the one it was found in.
    pub(crate) fn shifted(mut self, by: usize) -> Self {
        self.offset += by as u64;
        self
    }

    /// Places the error in a file, `base` being where the decoded buffer starts in it.
    pub(crate) fn in_file(self, file: impl Into<PathBuf>, base: u64) -> Error {
        Error::Corrupt { file: file.into(), offset: base + self.offset, reason: self.reason }
    }
}

pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
