use std::path::PathBuf;

/// What can go wrong while starting a server or running a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`) were not found.
    #[error(
        "postgresql server binaries not found (looked at `pg_config --bindir` and \
         /usr/lib/postgresql/*/bin); install them with: apt-get install -y postgresql"
    )]
    ServerNotInstalled,
    /// A client program (`psql`, `pgbench`) was not found.
    #[error("{0} not found; install it with: apt-get install -y postgresql-client")]
    ClientNotInstalled(String),
    /// The process runs as root and there is no unprivileged user to run PostgreSQL as.
    #[error(
        "running as root, and postgresql refuses to run as root, but there is no `postgres` \
         system user to run it as; install the postgresql package (it creates that user)"
    )]
    NoUnprivilegedUser,
    /// A command ran but failed.
    #[error("{command} failed ({status}): {detail}")]
    CommandFailed {
        /// The command line, for the message.
        command: String,
        /// The exit status, as printed.
        status: String,
        /// What the command printed, or the server log's tail.
        detail: String,
    },
    /// The server did not start.
    #[error("postgresql did not start in {dir}: {detail}")]
    StartFailed {
        /// The cluster's directory.
        dir: PathBuf,
        /// The tail of the server log.
        detail: String,
    },
    /// A TLS certificate or configuration could not be made.
    #[error("tls setup failed: {0}")]
    Tls(String),
    /// The fake Kubernetes API server could not start.
    #[error("fake kubernetes api server did not start: {0}")]
    KubeStart(std::io::Error),
    /// An I/O error around a path.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
