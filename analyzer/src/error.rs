//! Errors of the analyzer.

use std::path::PathBuf;

/// What can go wrong while analyzing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] slo_store::Error),
    /// A query the analyzer runs failed.
    #[error("query failed: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// Arrow could not convert a column.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Data in the store is not what the analyzer expects.
    #[error("unexpected data: {0}")]
    Data(String),
    /// A spec file is invalid; the message names file, document and field.
    #[error("{path}: {msg}")]
    Spec {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        msg: String,
    },
    /// A bad argument (service unknown, window empty, ...).
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a file failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the error is the user's (exit code 2) rather than a runtime failure.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::Spec { .. } | Error::Usage(_))
    }
}

/// Result with the analyzer's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
