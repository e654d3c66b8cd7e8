//! The sink trait and what it returns.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::{AuditError, AuditEvent, ChainHash};

/// How durable an acknowledged event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Written to a local file and fsynced (`fdatasync`) before the receipt.
    Fsynced,
    /// Written to a local file (in order, hash-chained) before the receipt,
    /// and fsynced by the sink's group commit within its bounded window
    /// (the JSON Lines sink's `flushed` level, [`crate::Commit::Flushed`]):
    /// a crash of the process loses nothing, a crash of the machine at most
    /// that window.
    Written,
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
/// [`AuditSink::submit`] and [`AuditSink::enqueue`] split a record in two:
/// handing the event over (ordered, non-blocking) and awaiting its
/// acknowledgement ([`Ack`]), so a caller waits only for what it needs.
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

    /// Hands `event` to the sink, ordered after every event handed to it
    /// before, and returns an [`Ack`] that resolves to the receipt
    /// [`AuditSink::record`] would have returned. It waits only while the
    /// sink's bounded queue is full (backpressure), never for the write.
    ///
    /// Await the [`Ack`] for a write-ahead record; drop it for a record that
    /// must be kept in order but must not hold up the caller (a result
    /// summary). A failure of a dropped [`Ack`]'s record is not lost: the
    /// sink reports itself unavailable and refuses later events, so the
    /// caller's next awaited record fails closed.
    ///
    /// The default records the event first (ordered, but waiting for the
    /// acknowledgement) and returns a resolved [`Ack`]; the JSON Lines sink
    /// queues it and returns at once.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis_audit::{AuditEvent, AuditSink, EventKind, JsonlOptions, JsonlSink};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let (sink, _) = JsonlSink::open(dir.path(), JsonlOptions::new("gw-1"))?;
    /// let command = AuditEvent::new(EventKind::GatewayError { message: "write-ahead".into() });
    /// let summary = AuditEvent::new(EventKind::GatewayError { message: "summary".into() });
    /// let receipt = sink.submit(&command).await?.await?; // forward only after this
    /// drop(sink.submit(&summary).await?); // in order, not waited for
    /// sink.flush().await?;
    /// assert_eq!(receipt.seq(), 1);
    /// # Ok(()) }
    /// ```
    async fn submit(&self, event: &AuditEvent) -> Result<Ack, AuditError> {
        self.record(event).await.map(Ack::ready)
    }

    /// Like [`AuditSink::submit`] but never waits, for callers that cannot
    /// (synchronous hooks): the event is queued in order at once, or
    /// refused with [`AuditError::Overloaded`] when the queue is far over
    /// its bound. Sinks without an ordered queue return
    /// [`AuditError::Unsupported`] (use [`AuditSink::submit`] for those).
    fn enqueue(&self, event: &AuditEvent) -> Result<Ack, AuditError> {
        let _ = event;
        Err(AuditError::Unsupported {
            sink: self.name().to_owned(),
            operation: "enqueue",
        })
    }
}

/// The pending acknowledgement of one submitted event: a future resolving
/// to the event's [`Receipt`] once it is as durable as the sink's level
/// promises, or to the error that means it is not recorded.
///
/// Dropping it does not withdraw the event.
#[derive(Debug)]
pub struct Ack(AckState);

#[derive(Debug)]
enum AckState {
    Ready(Option<Result<Receipt, AuditError>>),
    Waiting(oneshot::Receiver<Result<Receipt, AuditError>>),
}

impl Ack {
    /// An acknowledgement that has already arrived.
    pub fn ready(receipt: Receipt) -> Ack {
        Ack(AckState::Ready(Some(Ok(receipt))))
    }

    pub(crate) fn waiting(rx: oneshot::Receiver<Result<Receipt, AuditError>>) -> Ack {
        Ack(AckState::Waiting(rx))
    }
}

impl Future for Ack {
    type Output = Result<Receipt, AuditError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            AckState::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(AuditError::Closed))),
            // The writer drops a reply only when it stops without answering:
            // not recorded, as far as the caller can know.
            AckState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(AuditError::Closed))),
        }
    }
}
