//! Errors of the load generator: the user's mistakes (a bad scenario file, a
//! bad distribution, a bad flag) are kept apart from I/O and network failures
//! so the CLI can exit 2 for the first and 1 for the rest.

use std::path::PathBuf;

/// Everything that can go wrong in `slo loadgen`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: a flag, a distribution, a scenario field.
    #[error("{0}")]
    Invalid(String),
    /// A scenario file that cannot be read or does not validate.
    #[error("{path}: {message}")]
    Scenario { path: PathBuf, message: String },
    /// Reading or writing a file or socket.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Exporting telemetry (OTLP) or talking to an endpoint.
    #[error("{0}")]
    Network(String),
}

impl Error {
    /// True when the user gave bad input (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Invalid(_) | Error::Scenario { .. })
    }

    /// An I/O failure, with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
