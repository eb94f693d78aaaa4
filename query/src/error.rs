//! The query layer's error type.

use datafusion::error::DataFusionError;

/// What can go wrong between SQL text and Arrow batches.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage refused or failed the request.
    #[error(transparent)]
    Storage(#[from] isobar_storage::Error),
    /// Planning or execution failed in DataFusion (syntax, unknown column, resources).
    #[error(transparent)]
    DataFusion(DataFusionError),
    /// The statement is valid SQL that isobar refuses to run (it would reach the server's
    /// files or change engine settings).
    #[error("{0}")]
    Refused(String),
    /// The statement is valid SQL that isobar does not support yet, or not in this form.
    #[error("{0}")]
    Unsupported(String),
    /// Rows that cannot be stored, with the reason for the first ones.
    #[error("{0}")]
    InvalidRows(String),
    /// A write in a read-only session or transaction.
    #[error("{0}")]
    ReadOnly(String),
    /// A `SET` of a setting isobar knows, to a value it cannot take.
    #[error("{0}")]
    InvalidSetting(String),
    /// The query ran past its time limit.
    #[error("query cancelled after {0} ms: it exceeded the configured query timeout")]
    Timeout(u64),
}

/// The query layer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<DataFusionError> for Error {
    /// Unwraps isobar's own errors that travelled through DataFusion (from a table provider
    /// or sink), so they keep their kind.
    fn from(e: DataFusionError) -> Self {
        match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(own) => *own,
                Err(other) => match other.downcast::<isobar_storage::Error>() {
                    Ok(storage) => Error::Storage(*storage),
                    Err(other) => Error::DataFusion(DataFusionError::External(other)),
                },
            },
            DataFusionError::Context(context, inner) => match Error::from(*inner) {
                Error::DataFusion(inner) => Error::DataFusion(DataFusionError::Context(context, Box::new(inner))),
                own => own,
            },
            other => Error::DataFusion(other),
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
