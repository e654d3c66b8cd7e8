//! A SQL session's timeline, read back from a JSON Lines trail.

use std::fmt;
use std::path::Path;

use crate::chain::{ChainKey, parse_line};
use crate::verify::{Location, RawLine, for_each_line};
use crate::{AuditError, AuditEvent, EventKind};

/// One event of a session, with where it is in the trail.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    /// The record's sequence number.
    pub seq: u64,
    /// Where it is stored.
    pub at: Location,
    /// The event.
    pub event: AuditEvent,
}

impl fmt::Display for TimelineEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.event;
        write!(f, "{} #{} {}", e.time, self.seq, e.kind.name())?;
        match &e.kind {
            EventKind::Command {
                command_id,
                text,
                effect,
                rule_id,
                reason,
                ..
            } => write!(
                f,
                " [{command_id}] {effect:?} by {}: {} ({reason})",
                rule_id.as_deref().unwrap_or("-"),
                text.as_str()
            ),
            EventKind::CommandResult {
                command_id,
                rows,
                bytes,
                masked,
                duration_us,
                error_code,
                ..
            } => {
                write!(
                    f,
                    " [{command_id}] rows={rows} bytes={bytes} masked={} {duration_us}us",
                    masked.values().sum::<u64>()
                )?;
                if let Some(c) = error_code {
                    write!(f, " error={c}")?;
                }
                Ok(())
            }
            EventKind::CommandForwarded { command_id } => write!(f, " [{command_id}]"),
            EventKind::BudgetExceeded {
                command_id,
                budget,
                limit,
                observed,
            } => write!(
                f,
                " [{command_id}] {budget} limit={limit} observed={observed}"
            ),
            _ => Ok(()),
        }
    }
}

/// Reads the events of session `session` from a trail (`paths` in chain
/// order, see [`crate::trail_files`]): statements with their decisions,
/// forwards and result summaries, in sequence order.
///
/// Each record's own hash is checked as it is read; a damaged record is an
/// error (run [`crate::verify`] for the full picture). A torn tail is
/// skipped.
///
/// # Example
///
/// ```
/// use portcullis_audit::{AuditEvent, AuditSink, EventKind, JsonlOptions, JsonlSink};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let (sink, _) = JsonlSink::open(dir.path(), JsonlOptions::new("gw-1"))?;
/// sink.record(&AuditEvent::new(EventKind::CommandForwarded { command_id: 1 }).with_session("a")).await?;
/// sink.record(&AuditEvent::new(EventKind::CommandForwarded { command_id: 1 }).with_session("b")).await?;
/// let files = portcullis_audit::trail_files(dir.path(), "gw-1")?;
/// let timeline = portcullis_audit::session_timeline(&files, "b")?;
/// assert_eq!(timeline.len(), 1);
/// assert_eq!(timeline[0].seq, 2);
/// # Ok(()) }
/// ```
pub fn session_timeline<P: AsRef<Path>>(
    paths: &[P],
    session: &str,
) -> Result<Vec<TimelineEntry>, AuditError> {
    read_timeline(paths, session, None)
}

/// [`session_timeline`] for a keyed chain (see [`ChainKey`]).
pub fn session_timeline_keyed<P: AsRef<Path>>(
    paths: &[P],
    session: &str,
    key: &ChainKey,
) -> Result<Vec<TimelineEntry>, AuditError> {
    read_timeline(paths, session, Some(key))
}

fn read_timeline<P: AsRef<Path>>(
    paths: &[P],
    session: &str,
    key: Option<&ChainKey>,
) -> Result<Vec<TimelineEntry>, AuditError> {
    let mut entries = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let source = path.display().to_string();
        let mut failure = None;
        for_each_line(path, 4 << 20, |n, line| {
            if failure.is_some() {
                return;
            }
            let at = Location {
                source: source.clone(),
                line: n,
            };
            let line = match line {
                RawLine::Complete(l) => l,
                RawLine::Torn(_) => return,
                RawLine::TooLong => {
                    failure = Some(AuditError::Unreadable {
                        location: at.to_string(),
                        reason: "line too long".into(),
                    });
                    return;
                }
            };
            let parsed = parse_line(line, key)
                .map_err(|e| format!("{e:?}"))
                .and_then(|rec| {
                    serde_json::from_str::<AuditEvent>(rec.event)
                        .map(|ev| (rec.seq, ev))
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok((seq, event)) => {
                    if event.session.as_deref() == Some(session) {
                        entries.push(TimelineEntry { seq, at, event });
                    }
                }
                Err(reason) => {
                    failure = Some(AuditError::Unreadable {
                        location: at.to_string(),
                        reason,
                    })
                }
            }
        })
        .map_err(|e| AuditError::io("read", path, e))?;
        if let Some(e) = failure {
            return Err(e);
        }
    }
    entries.sort_by_key(|e| e.seq);
    Ok(entries)
}
