//! Errors of the store.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a file of the data directory.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file of the data directory is not what we wrote (corrupt manifest, bad segment).
    #[error("corrupt {what} {path}: {detail}")]
    Corrupt {
        /// Which kind of file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A WAL record or state file that does not decode (the message names the problem).
    #[error("undecodable record: {0}")]
    Record(#[from] crate::wire::WireError),
    /// The object store refused or failed an operation (the server's answer, no credentials).
    #[error("object store: {op} {what}: {detail}")]
    Remote {
        /// What we were doing.
        op: &'static str,
        /// The object or URL.
        what: String,
        /// What went wrong.
        detail: String,
    },
    /// Another process holds the data directory.
    #[error("data dir {0} is in use by another slo process (its LOCK file is held)")]
    Locked(PathBuf),
    /// Arrow could not build or convert a batch (a bug on our side).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet could not write or read a segment.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A statement the read-only query API does not run (the message names its kind).
    #[error("{0}")]
    Refused(String),
    /// A query asked for more than its limits allow (the message names the limit).
    #[error("{0}")]
    TooLarge(String),
    /// A file the manifest lists is not where it says (deleted outside slo, or lost): a
    /// query that needs it fails rather than answer without its rows.
    #[error(
        "segment {path} is listed in the manifest but missing from the store (deleted outside slo, or lost): \
         the query would miss its rows, so it fails; restore the file, or narrow the query's time range to leave \
         it out"
    )]
    Missing {
        /// The object's path (on the local disk, or in the object store).
        path: String,
    },
    /// The query engine rejected or failed a query; the message names the problem.
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// Whether the error is the user's (a bad SQL query) rather than ours.
    pub fn is_user_error(&self) -> bool {
        use datafusion::error::DataFusionError as E;
        match self {
            Error::Refused(_) | Error::TooLarge(_) => true,
            Error::Query(e) => {
                matches!(e.find_root(), E::SQL(..) | E::Plan(..) | E::SchemaError(..) | E::ResourcesExhausted(..))
            }
            _ => false,
        }
    }
}

/// Result with the store's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
