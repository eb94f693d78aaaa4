//! The errors of isobar's ingest layer.

/// What went wrong in ingest.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule that cannot be used; the reason names the rule and the problem.
    #[error("rule: {0}")]
    Rule(String),
    /// One message that no rule could turn into a row; its neighbours are unaffected.
    #[error("{0}")]
    Rejected(String),
    /// A setting that cannot be used, such as a TLS file that does not load.
    #[error("{0}")]
    Config(String),
    /// A source connection ended: a protocol violation, a timeout or an I/O error.
    #[error("connection: {0}")]
    Connection(String),
    /// The storage engine refused or failed a write.
    #[error(transparent)]
    Storage(#[from] isobar_storage::Error),
}

/// The result of ingest operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
