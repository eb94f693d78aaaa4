//! The server's error type.

/// What stops the server from starting or serving.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The configuration file is missing, unreadable or invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// Storage failed to open or close.
    #[error(transparent)]
    Storage(#[from] isobar_storage::Error),
    /// The query engine failed to start.
    #[error(transparent)]
    Query(#[from] isobar_query::Error),
    /// A listener could not bind or accept.
    #[error("{what} {addr}: {source}")]
    Listen { what: &'static str, addr: std::net::SocketAddr, source: std::io::Error },
    /// Ingest failed to start.
    #[error(transparent)]
    Ingest(#[from] isobar_ingest::Error),
    /// The alerts' state could not be read or written.
    #[error("alerts: {0}")]
    Alerts(String),
    /// Setting up the Postgres catalog failed.
    #[error("postgres catalog: {0}")]
    Catalog(String),
}

/// The server's result type.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
