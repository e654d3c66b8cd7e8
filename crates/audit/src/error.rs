//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in this crate.
///
/// Every sink returns this type, so sinks of different kinds can be combined
/// behind `dyn AuditSink` (see [`crate::AuditSink`]). An error from
/// [`crate::AuditSink::record`] means the event must be treated as **not**
/// recorded: the gateway fails closed on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading or writing a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"open"`, `"write"`, `"fsync"`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A network sink could not reach or write to its peer.
    #[error("{sink}: {message}")]
    Transport {
        /// The sink's name.
        sink: String,
        /// What failed.
        message: String,
    },
    /// The PostgreSQL sink's database returned an error or the connection
    /// broke; the events of the failed batch are not acknowledged.
    #[error("postgres: {0}")]
    Postgres(#[source] PostgresError),
    /// An event could not be encoded.
    #[error("cannot encode event: {0}")]
    Encode(#[source] serde_json::Error),
    /// An event is larger than the sink accepts.
    #[error("event of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An option given to a builder is invalid.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// An existing trail is damaged in a way that is not a torn last line,
    /// so the sink refuses to append to it. Run `verify` on it.
    #[error("trail {path} is damaged at line {line}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The sink failed earlier and no longer accepts events (for the JSON
    /// Lines sink: a write or fsync failed, after which the file's state is
    /// unknown).
    #[error("sink is unavailable: {0}")]
    Unavailable(String),
    /// The sink's queue is full and the caller cannot wait (see
    /// `AuditSink::enqueue`): the event is not recorded.
    #[error("audit queue is full ({capacity} events waiting)")]
    Overloaded {
        /// The events waiting when it was refused.
        capacity: usize,
    },
    /// The sink does not offer this operation.
    #[error("{sink} does not support {operation}")]
    Unsupported {
        /// The sink's name.
        sink: String,
        /// The operation.
        operation: &'static str,
    },
    /// The sink was shut down.
    #[error("sink is closed")]
    Closed,
    /// Fewer members of a fan-out acknowledged than its quorum requires.
    #[error("only {acknowledged} of {required} required sinks acknowledged: {failures}")]
    QuorumNotMet {
        /// How many acknowledged.
        acknowledged: usize,
        /// How many were required.
        required: usize,
        /// The members' failures, one per member, `name: error`.
        failures: String,
    },
    /// A stored record could not be read back.
    #[error("unreadable record at {location}: {reason}")]
    Unreadable {
        /// Where (`file:line`, or `table/replica:seq`).
        location: String,
        /// What is wrong.
        reason: String,
    },
}

impl AuditError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// An error from the PostgreSQL sink's database or connection.
///
/// Opaque on purpose: the client library behind the sink is not part of this
/// crate's API. [`PostgresError::code`] gives the SQLSTATE when the server
/// sent one; [`std::error::Error::source`] reaches the underlying error.
#[derive(Debug)]
pub struct PostgresError {
    message: String,
    code: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl PostgresError {
    /// The SQLSTATE the server returned, if the error came from the server.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn from_client(err: tokio_postgres::Error) -> Self {
        PostgresError {
            message: err.to_string(),
            code: err.code().map(|c| c.code().to_owned()),
            source: Some(Box::new(err)),
        }
    }
}

impl std::fmt::Display for PostgresError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PostgresError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(feature = "postgres")]
impl AuditError {
    pub(crate) fn postgres(err: tokio_postgres::Error) -> Self {
        AuditError::Postgres(PostgresError::from_client(err))
    }
}
