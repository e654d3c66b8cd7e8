//! Audit trail for Portcullis: who did what, when, with which data, and what
//! the gateway decided — kept so that nothing acknowledged is lost and any
//! tampering shows.
//!
//! - [`AuditEvent`]: the event model (serde). Text that may hold data
//!   (statements, exec command lines, backend error messages) is a
//!   [`MaskedText`]: this crate stores what it is given, so the gateway must
//!   mask such text **before** it builds the event.
//! - [`AuditSink`]: the sink trait, usable as `dyn AuditSink`, with a
//!   durability contract (a [`Receipt`] means durable as configured), `flush`
//!   and a [`Health`] query so the gateway can fail closed.
//! - [`JsonlSink`]: the embedded default, a hash-chained JSON Lines trail
//!   with two durability levels ([`Commit::Flushed`], [`Commit::Durable`])
//!   over a group commit that never waits for a timer, an ordered bounded
//!   queue ([`AuditSink::submit`], [`Ack`]), rotation by size, and torn-tail
//!   recovery; [`verify`] checks such a trail.
//! - [`PostgresSink`]: the same chain in an append-only PostgreSQL table, one
//!   chain per replica, batched transactions.
//! - [`FanoutSink`]: several sinks, all (or a quorum) must acknowledge.
//! - [`SyslogSink`]: RFC 5424 syslog over TCP with octet-counting framing
//!   (RFC 6587), for a SIEM.
//! - [`Recorder`]: terminal sessions as asciicast v2; [`session_timeline`]:
//!   a SQL session's statements, decisions and results read back from a
//!   trail ([`postgres_session_timeline`] from the PostgreSQL sink's table).
//!
//! # Example
//!
//! ```
//! use portcullis_audit::{AuditEvent, AuditSink, EventKind, JsonlOptions, JsonlSink, MaskedText, Effect};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let (sink, _) = JsonlSink::open(dir.path(), JsonlOptions::new("gw-1"))?;
//! let event = AuditEvent::new(EventKind::Command {
//!     command_id: 1,
//!     text: MaskedText::already_masked("select 1"),
//!     facts: Default::default(),
//!     effect: Effect::Allow,
//!     rule_id: None,
//!     reason: "allowed".into(),
//! })
//! .with_session("s-1");
//! let receipt = sink.record(&event).await?; // written (level `flushed`) once this returns
//! drop(sink);
//! let report = portcullis_audit::verify(&portcullis_audit::trail_files(dir.path(), "gw-1")?);
//! assert!(report.is_clean());
//! assert_eq!(report.head().map(|h| h.hash), receipt.hash());
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `postgres` (off by default): [`PostgresSink`], [`verify_postgres`] and
//!   [`postgres_session_timeline`]; pulls in tokio-postgres.
//! - `syslog` (off by default): [`SyslogSink`]; pulls in tokio's `net` and
//!   `io-util`.
//!
//! Without them the crate depends on tokio's `sync`, `rt` and `time` only
//! (the [`AuditSink`] trait is async; [`FanoutSink`] joins its members on the
//! caller's runtime); the JSON Lines sink writes from its own threads and
//! works under any runtime flavour. The `portcullis` binary enables both.
#![deny(missing_docs)]

mod chain;
mod error;
mod event;
mod fanout;
mod jsonl;
#[cfg(feature = "postgres")]
mod postgres;
mod recorder;
mod sink;
#[cfg(feature = "syslog")]
mod syslog;
mod timeline;
mod verify;

pub use chain::{ChainHash, ChainHead, ChainKey};
pub use error::{AuditError, PostgresError};
pub use event::{
    AuditEvent, Effect, EventKind, MaskedText, Principal, PrincipalKind, Protocol, Resource,
    SCHEMA_VERSION, Timestamp,
};
pub use fanout::{FanoutBuilder, FanoutSink};
pub use jsonl::{Commit, JsonlOptions, JsonlSink, JsonlStats, OpenReport, TornTail, trail_files};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresSink, postgres_session_timeline, verify_postgres};
pub use recorder::{AsciicastHeader, Recorder};
pub use sink::{Ack, AuditSink, Durability, Health, Receipt};
#[cfg(feature = "syslog")]
pub use syslog::{SyslogOptions, SyslogSink};
pub use timeline::{TimelineEntry, session_timeline, session_timeline_keyed};
/// Entry points for property tests and fuzz targets; not a stable API.
#[doc(hidden)]
pub mod internal {
    pub use crate::verify::verify_in_memory;
}

pub use verify::{Location, Problem, Start, VerifyOptions, VerifyReport, verify, verify_with};
