//! The sink trait and what it returns.

use crate::{AuditError, AuditEvent, ChainHash};

/// How durable an acknowledged event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Written to a local file and fsynced (`fdatasync`) before the receipt.
    Fsynced,
    /// Committed in a database transaction before the receipt.
    Committed,
    /// Handed to a network peer's TCP connection. This is **not** durable:
    /// TCP syslog has no application-level acknowledgement. Combine such a
    /// sink with a durable one in a [`crate::FanoutSink`].
    Transmitted,
    /// A fan-out's receipt: as durable as the weakest member that
    /// acknowledged (see [`Receipt::members`]).
    Combined,
}

/// Proof that a sink recorded an event, returned only once the event is
/// durable as the sink is configured (see [`Durability`]).
#[derive(Debug, Clone)]
pub struct Receipt {
    pub(crate) sink: String,
    pub(crate) seq: u64,
    pub(crate) hash: Option<ChainHash>,
    pub(crate) durability: Durability,
    pub(crate) members: Vec<(String, Result<Receipt, String>)>,
}

impl Receipt {
    /// The sink's name.
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// The event's sequence number in the sink's chain (for a network sink,
    /// its own message counter; for a fan-out, the first acknowledging
    /// member's).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record's hash in the chain, for sinks that keep one. Keep the
    /// latest one elsewhere as an anchor: it lets `verify` detect a trail cut
    /// short at a line boundary.
    pub fn hash(&self) -> Option<ChainHash> {
        self.hash
    }

    /// How durable the event is.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// For a fan-out: each member's outcome, by name. A failure is never
    /// dropped: it is here even when the quorum was met.
    pub fn members(&self) -> &[(String, Result<Receipt, String>)] {
        &self.members
    }

    /// For a fan-out: the members that failed, with their errors.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.iter().filter_map(|(name, r)| match r {
            Err(e) => Some((name.as_str(), e.as_str())),
            Ok(_) => None,
        })
    }
}

/// Whether a sink can make records durable right now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// It can.
    Ready,
    /// It cannot; the gateway should refuse commands (fail closed).
    Unavailable(String),
}

impl Health {
    /// `true` for [`Health::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready)
    }
}

/// A destination for audit events.
///
/// # Durability contract
///
/// [`AuditSink::record`] returns `Ok(Receipt)` only after the event is
/// durable as the sink is configured: fsynced to disk for [`crate::JsonlSink`],
/// committed for [`crate::PostgresSink`], transmitted for
/// [`crate::SyslogSink`] (see [`Durability`]). An `Err` means the event must
/// be treated as not recorded; the gateway then refuses the command (fail
/// closed). A sink may have stored an event whose call returned an error (the
/// connection broke after the commit): an error never hides a loss, but it may
/// hide a success, so a retry can store an event twice.
///
/// [`AuditSink::flush`] returns once everything acknowledged before it is
/// durable, and [`AuditSink::health`] says whether a record made now could
/// be made durable.
///
/// The trait is object safe with one error type, so sinks chosen at run time
/// can be combined as `Arc<dyn AuditSink>`.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use portcullis_audit::{AuditEvent, AuditSink, EventKind, JsonlSink, JsonlOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let (sink, _report) = JsonlSink::open(dir.path(), JsonlOptions::new("gw-1"))?;
/// let sink: Arc<dyn AuditSink> = Arc::new(sink);
/// let receipt = sink
///     .record(&AuditEvent::new(EventKind::GatewayError { message: "example".into() }))
///     .await?;
/// assert_eq!(receipt.seq(), 1);
/// assert!(sink.health().await.is_ready());
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records one event and returns once it is durable (see above).
    async fn record(&self, event: &AuditEvent) -> Result<Receipt, AuditError>;

    /// Returns once every event acknowledged before the call is durable.
    async fn flush(&self) -> Result<(), AuditError>;

    /// Whether the sink can make a record durable right now.
    async fn health(&self) -> Health;

    /// The sink's name, used in receipts and errors.
    fn name(&self) -> &str;
}
