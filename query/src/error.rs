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

impl Error {
    /// The SQLSTATE a client is told with this error, as PostgreSQL would report it.
    pub fn sqlstate(&self) -> &'static str {
        use isobar_storage::Error as S;
        match self {
            Error::Refused(_) => "42501",        // insufficient_privilege
            Error::ReadOnly(_) => "25006",       // read_only_sql_transaction
            Error::InvalidSetting(_) => "22023", // invalid_parameter_value
            Error::Unsupported(_) => "0A000",    // feature_not_supported
            Error::InvalidRows(_) => "22000",    // data_exception
            Error::Timeout(_) => "57014",        // query_canceled
            Error::DataFusion(e) => datafusion_sqlstate(e.find_root()),
            Error::Storage(S::TableExists(_)) => "42P07",             // duplicate_table
            Error::Storage(S::NoSuchTable(_)) => "42P01",             // undefined_table
            Error::Storage(S::InvalidRequest(_)) => "22023",          // invalid_parameter_value
            Error::Storage(S::LimitExceeded(_)) => "54000",           // program_limit_exceeded
            Error::Storage(S::DiskFull(_)) => "53100",                // disk_full
            Error::Storage(S::Poisoned(_) | S::Io { .. }) => "58030", // io_error
            Error::Storage(_) => "XX000",                             // internal_error
        }
    }
}

/// The SQLSTATE of a DataFusion error, as PostgreSQL reports the same mistake.
fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    use datafusion::arrow::error::ArrowError;
    use datafusion::common::SchemaError;
    match e {
        DataFusionError::ResourcesExhausted(_) => "53200", // out_of_memory
        DataFusionError::SQL(..) => "42601",               // syntax_error
        DataFusionError::Plan(message) if message.starts_with("table '") && message.ends_with("' not found") => "42P01", // undefined_table
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",      // undefined_column
            SchemaError::AmbiguousReference { .. } => "42702", // ambiguous_column
            SchemaError::DuplicateQualifiedField { .. } | SchemaError::DuplicateUnqualifiedField { .. } => "42701", // duplicate_column
        },
        DataFusionError::Plan(_) => "42000",           // syntax_error_or_access_rule_violation
        DataFusionError::NotImplemented(_) => "0A000", // feature_not_supported
        DataFusionError::ArrowError(e, _) => match e.as_ref() {
            ArrowError::DivideByZero => "22012",                             // division_by_zero
            ArrowError::ArithmeticOverflow(_) => "22003",                    // numeric_value_out_of_range
            ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02", // invalid_text_representation
            _ => "XX000",
        },
        _ => "XX000", // internal_error
    }
}
