//! Errors of the collector, and how they map to OTLP answers.

/// What can go wrong between an export arriving and its acknowledgement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The payload is not a valid export request; the message names the problem.
    #[error("{0}")]
    InvalidPayload(String),
    /// The payload (or its decompressed form) exceeds a limit.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Which size: the body or the decompressed body.
        what: &'static str,
        /// The size seen (or a lower bound).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The content type is not one OTLP/HTTP defines.
    #[error("unsupported content type {0:?}: send application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    /// The content encoding is not gzip or identity.
    #[error("unsupported content encoding {0:?}: send gzip or identity")]
    UnsupportedEncoding(String),
    /// The ingest queue is full: retry later.
    #[error("ingest queue full ({queued_bytes} of {limit_bytes} bytes queued); retry after backoff")]
    Overloaded {
        /// Bytes queued now.
        queued_bytes: usize,
        /// The queue's capacity.
        limit_bytes: usize,
    },
    /// The collector is starting, shutting down, or its WAL cannot be written.
    #[error("collector is not accepting data ({0})")]
    Unavailable(String),
    /// The configuration is invalid; the message names the setting.
    #[error("configuration: {0}")]
    Config(String),
    /// The store failed (disk full, I/O error): the data was not acknowledged.
    #[error("storage failed: {0}")]
    Storage(String),
    /// A store error outside the ingest path.
    #[error(transparent)]
    Store(#[from] slo_store::Error),
    /// An input file could not be read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether a client may retry the same export later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Overloaded { .. } | Error::Unavailable(_) | Error::Storage(_))
    }

    /// A short label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Error::InvalidPayload(_) | Error::UnsupportedContentType(_) | Error::UnsupportedEncoding(_) => "invalid",
            Error::TooLarge { .. } => "too_large",
            Error::Overloaded { .. } => "overloaded",
            Error::Unavailable(_) => "unavailable",
            Error::Storage(_) | Error::Store(_) | Error::File { .. } | Error::Config(_) => "error",
        }
    }
}

/// Result with the collector's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
