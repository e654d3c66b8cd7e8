//! Throwaway local servers and real clients for Portcullis tests and demos.
//!
//! Portcullis is tested against real parts: a real PostgreSQL server and the
//! real `psql` and `pgbench` clients. This crate starts those servers in a
//! temporary directory and finds those clients, so that every test can have
//! its own server and run in parallel with the others.
//!
//! - [`PgCluster`] runs a throwaway PostgreSQL: `initdb` once into a shared
//!   template, then a copy of it per cluster, listening on `127.0.0.1` on a
//!   free port (SCRAM-SHA-256 required on TCP) and on a socket directory
//!   inside its temporary directory. It is stopped and removed on drop, also
//!   when a test panics.
//! - [`FakeKube`] runs a fake Kubernetes API server (hyper over rustls with a
//!   self-signed certificate): discovery, a few core resources in memory, and
//!   exec over WebSocket that runs a real local process.
//! - [`Client`] runs `psql` or `pgbench` against a DSN and returns the exit
//!   status, stdout and stderr ([`ClientOutput`]).
//!
//! When the process runs as root (as it does in CI), the PostgreSQL server
//! binaries, which refuse to run as root, are run as the unprivileged
//! `postgres` system user that Debian's package creates.
//!
//! # Example
//!
//! ```no_run
//! use portcullis_testkit::{Client, PgCluster};
//!
//! # fn main() -> Result<(), portcullis_testkit::Error> {
//! let cluster = PgCluster::builder()
//!     .password("correct horse")
//!     .setting("max_connections", "50")
//!     .start()?;
//! let out = Client::psql(&cluster.dsn())?
//!     .args(["-tAc", "select 1"])
//!     .run()?;
//! assert!(out.success());
//! assert_eq!(out.stdout.trim(), "1");
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod client;
mod error;
mod k8s;
mod pg;
mod system;

pub use client::{Client, ClientOutput};
pub use error::Error;
pub use k8s::{
    FAKE_SECRET_PASSWORD, FakeKube, FakeKubeBuilder, SelfSignedTls, find_kubectl, kubeconfig,
};
pub use pg::{PgCluster, PgClusterBuilder};
pub use system::{find_client_binary, pg_bindir};
