//! The fan-out sink.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::{AuditError, AuditEvent, AuditSink, Durability, Health, Receipt};

/// Builds a [`FanoutSink`].
#[derive(Debug, Default)]
pub struct FanoutBuilder {
    members: Vec<Arc<dyn AuditSink>>,
    quorum: Option<usize>,
    member_timeout: Option<Duration>,
}

impl FanoutBuilder {
    /// Adds a member.
    pub fn member(mut self, sink: Arc<dyn AuditSink>) -> FanoutBuilder {
        self.members.push(sink);
        self
    }

    /// How many members must acknowledge (default: all).
    pub fn quorum(mut self, quorum: usize) -> FanoutBuilder {
        self.quorum = Some(quorum);
        self
    }

    /// A member that has not answered within this time counts as failed
    /// for that event (default: wait as long as the member does).
    pub fn member_timeout(mut self, timeout: Duration) -> FanoutBuilder {
        self.member_timeout = Some(timeout);
        self
    }

    /// Checks the quorum (1 to the number of members) and builds the sink.
    pub fn build(self) -> Result<FanoutSink, AuditError> {
        let n = self.members.len();
        let quorum = self.quorum.unwrap_or(n);
        if n == 0 || quorum == 0 || quorum > n {
            return Err(AuditError::InvalidOption {
                option: "quorum",
                reason: format!("{quorum} of {n} members; need 1 <= quorum <= members"),
            });
        }
        let name = format!(
            "fanout({})",
            self.members
                .iter()
                .map(|m| m.name().to_owned())
                .collect::<Vec<_>>()
                .join(",")
        );
        Ok(FanoutSink {
            name,
            members: self.members,
            quorum,
            member_timeout: self.member_timeout,
        })
    }
}

/// Records each event in every member, concurrently.
///
/// The receipt is returned once every member has answered (or timed out),
/// if at least the quorum acknowledged (all members by default); otherwise
/// the call fails with [`AuditError::QuorumNotMet`]. A member's failure is
/// never dropped: with a quorum below all, it is listed in
/// [`Receipt::failures`], and [`AuditSink::health`] reports the fan-out
/// unavailable once fewer than the quorum are healthy.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use portcullis_audit::{AuditEvent, AuditSink, EventKind, FanoutSink, JsonlOptions, JsonlSink};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
/// let fanout = FanoutSink::builder()
///     .member(Arc::new(JsonlSink::open(a.path(), JsonlOptions::new("gw-1"))?.0))
///     .member(Arc::new(JsonlSink::open(b.path(), JsonlOptions::new("gw-1"))?.0))
///     .build()?;
/// let receipt = fanout
///     .record(&AuditEvent::new(EventKind::GatewayError { message: "x".into() }))
///     .await?;
/// assert_eq!(receipt.members().len(), 2);
/// assert_eq!(receipt.failures().count(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FanoutSink {
    name: String,
    members: Vec<Arc<dyn AuditSink>>,
    quorum: usize,
    member_timeout: Option<Duration>,
}

impl FanoutSink {
    /// A builder.
    pub fn builder() -> FanoutBuilder {
        FanoutBuilder::default()
    }
}

#[async_trait::async_trait]
impl AuditSink for FanoutSink {
    async fn record(&self, event: &AuditEvent) -> Result<Receipt, AuditError> {
        let mut set = JoinSet::new();
        let event = Arc::new(event.clone());
        for (i, m) in self.members.iter().enumerate() {
            let m = Arc::clone(m);
            let event = Arc::clone(&event);
            let timeout = self.member_timeout;
            set.spawn(async move {
                let r = match timeout {
                    None => m.record(&event).await,
                    Some(t) => match tokio::time::timeout(t, m.record(&event)).await {
                        Ok(r) => r,
                        Err(_) => Err(AuditError::Transport {
                            sink: m.name().to_owned(),
                            message: format!("no acknowledgement within {t:?}"),
                        }),
                    },
                };
                (i, r)
            });
        }
        let mut outcomes: Vec<Option<Result<Receipt, String>>> = vec![None; self.members.len()];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, r)) => {
                    if let Some(slot) = outcomes.get_mut(i) {
                        *slot = Some(r.map_err(|e| e.to_string()));
                    }
                }
                Err(e) => {
                    return Err(AuditError::Unavailable(format!(
                        "a fan-out member's task failed: {e}"
                    )));
                }
            }
        }
        let members: Vec<(String, Result<Receipt, String>)> = self
            .members
            .iter()
            .zip(outcomes)
            .map(|(m, o)| {
                (
                    m.name().to_owned(),
                    o.unwrap_or_else(|| Err("no outcome".to_owned())),
                )
            })
            .collect();
        let acknowledged = members.iter().filter(|(_, r)| r.is_ok()).count();
        if acknowledged < self.quorum {
            let failures = members
                .iter()
                .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(AuditError::QuorumNotMet {
                acknowledged,
                required: self.quorum,
                failures,
            });
        }
        let seq = members
            .iter()
            .find_map(|(_, r)| r.as_ref().ok().map(|r| r.seq))
            .unwrap_or(0);
        Ok(Receipt {
            sink: self.name.clone(),
            seq,
            hash: None,
            durability: Durability::Combined,
            members,
        })
    }

    async fn flush(&self) -> Result<(), AuditError> {
        let mut failures = Vec::new();
        for m in &self.members {
            if let Err(e) = m.flush().await {
                failures.push(format!("{}: {e}", m.name()));
            }
        }
        let ok = self.members.len() - failures.len();
        if ok < self.quorum {
            return Err(AuditError::QuorumNotMet {
                acknowledged: ok,
                required: self.quorum,
                failures: failures.join("; "),
            });
        }
        Ok(())
    }

    async fn health(&self) -> Health {
        let mut ready = 0;
        let mut reasons = Vec::new();
        for m in &self.members {
            match m.health().await {
                Health::Ready => ready += 1,
                Health::Unavailable(r) => reasons.push(format!("{}: {r}", m.name())),
            }
        }
        if ready >= self.quorum {
            Health::Ready
        } else {
            Health::Unavailable(format!(
                "{ready} of {} required members ready: {}",
                self.quorum,
                reasons.join("; ")
            ))
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}
