//! Cutting a result at its row limit ([`RowLimit`]) while keeping what the
//! client sees equal to what the backend did.
//!
//! At the row past the limit the session stops forwarding the statement's
//! rows, asks the driver to cancel the statement at the backend
//! ([`Output::CancelBackend`]) and forwards no client message until that
//! cancel has been delivered. Then, for the statement's reply:
//!
//! - an error (the cancel's 57014, or any other): the statement failed at
//!   the backend; the client gets 53400 with the limit's message in its
//!   place, and the ReadyForQuery that follows tells the real transaction
//!   status;
//! - a completion (the statement finished before the cancel reached it):
//!   the client gets the same 53400; inside a transaction block the
//!   backend's transaction is then made to fail, so nothing the statement
//!   did survives, and the client sees the failed status; outside one, the
//!   session goes on only for a read-only statement; and if more of the
//!   query string or pipeline ran after it, or it may have changed data that
//!   is now committed, the session ends with FATAL 53400 (fail closed).

use super::*;
use crate::hook::RowLimit;

/// Where a result over its row limit is in being cut; kept with the reply
/// it belongs to.
#[derive(Debug, Clone, Default)]
pub(super) enum Cut {
    /// Not cut.
    #[default]
    None,
    /// Rows are being dropped; the statement's end is awaited.
    Cutting(RowLimit),
    /// The statement completed at the backend after the cut: this reply's
    /// ReadyForQuery decides how the session goes on.
    Completed(RowLimit),
}

impl<H: Transform> Session<H> {
    /// The row cap of a statement's result, asked of the hook.
    pub(super) fn row_limit_of(
        &self,
        plan: Option<&H::Plan>,
        cmd: Option<CommandId>,
    ) -> Option<RowLimit> {
        let (Some(principal), Some(plan)) = (&self.principal, plan) else {
            return None;
        };
        let cx = Context {
            session: self.id,
            command: cmd,
            principal: principal.as_ref(),
        };
        self.hook.row_limit(&cx, plan)
    }

    /// A row past the limit arrived: it and the rest are dropped and the
    /// statement is cancelled at the backend.
    pub(super) fn cut(&mut self, limit: RowLimit) {
        let max_rows = limit.max_rows;
        let (cmd, plan) = match self.expect.front_mut() {
            Some(Expect::Backend(r)) => {
                r.cut = Cut::Cutting(limit.clone());
                (r.cmd, r.plan.clone())
            }
            _ => (None, None),
        };
        self.event_with(
            Event::RowLimitExceeded {
                session: self.id,
                command: cmd,
                limit: max_rows,
            },
            plan,
        );
        if self.backend_key.is_none() {
            self.cut_fatal(
                &limit,
                "the gateway has no cancel key for the backend to stop the statement with",
            );
            return;
        }
        self.cancel_wait = true;
        self.outputs.push_back(Output::CancelBackend);
    }

    /// The CancelRequest asked for with [`Output::CancelBackend`] has been
    /// delivered (or could not be): client messages flow again.
    pub fn handle_backend_cancel_sent(&mut self, now: Instant) {
        self.last_activity = now;
        if self.cancel_wait {
            self.cancel_wait = false;
            self.process_client();
        }
    }

    /// Sees each backend message first while the reply at the head is being
    /// cut: returns the message for the ordinary handling (possibly
    /// replaced), or `None` when it was consumed here.
    pub(super) fn on_cut_message(&mut self, frame: Frame) -> Result<Option<Frame>, SessionError> {
        if matches!(frame.tag, b'N' | b'A' | b'S') {
            return Ok(Some(frame));
        }
        let (cut, kind_is_query) = match self.expect.front_mut() {
            Some(Expect::Backend(r)) => (
                std::mem::take(&mut r.cut),
                matches!(r.kind, Kind::Query | Kind::Sync),
            ),
            _ => return Ok(Some(frame)),
        };
        match cut {
            Cut::None => Ok(Some(frame)),
            Cut::Cutting(limit) => match frame.tag {
                b'D' | b'd' | b'c' => {
                    if frame.tag == b'c' {
                        self.copy_out = false;
                        self.copy_limit = None;
                    }
                    self.set_head_cut(Cut::Cutting(limit));
                    Ok(None)
                }
                // The statement failed at the backend (its cancel, most
                // likely): the client is told why, in its place.
                b'E' => Ok(Some(limit_error(&limit))),
                // It completed before the cancel reached it.
                b'C' | b's' => {
                    self.copy_out = false;
                    self.copy_limit = None;
                    if kind_is_query {
                        self.set_head_cut(Cut::Completed(limit.clone()));
                    } else {
                        // An Execute: only its Sync may follow, or the
                        // backend runs what the client believes skipped.
                        match self.expect.get_mut(1) {
                            Some(Expect::Backend(r)) if matches!(r.kind, Kind::Sync) => {
                                r.cut = Cut::Completed(limit.clone());
                            }
                            _ => {
                                self.cut_fatal(
                                    &limit,
                                    "the statement completed at the backend before it could be \
                                     stopped, and the rest of its pipeline runs there",
                                );
                                return Ok(None);
                            }
                        }
                    }
                    Ok(Some(limit_error(&limit)))
                }
                _ => {
                    self.set_head_cut(Cut::Cutting(limit));
                    Ok(Some(frame))
                }
            },
            Cut::Completed(limit) => {
                if frame.tag != b'Z' {
                    self.cut_fatal(
                        &limit,
                        "more statements of the same query ran at the backend after the cut one",
                    );
                    return Ok(None);
                }
                let status = frame.body().first().copied().unwrap_or(b'I');
                match status {
                    b'E' => Ok(Some(frame)),
                    b'I' if limit.read_only => Ok(Some(frame)),
                    b'I' => {
                        self.cut_fatal(
                            &limit,
                            "the statement completed at the backend before it could be stopped \
                             and what it changed is committed",
                        );
                        Ok(None)
                    }
                    _ => {
                        // Inside a transaction block: make it fail, as the
                        // error the client was given would have.
                        if self.expect.len() > 1 {
                            self.cut_fatal(
                                &limit,
                                "more of the pipeline is in flight after the cut statement",
                            );
                            return Ok(None);
                        }
                        self.tx_status = status;
                        self.expect.pop_front();
                        self.unsettled = self.expect.iter().any(super::is_unsettling);
                        self.inject(
                            encode(&frontend::query(super::FAIL_TRANSACTION)),
                            Kind::Query,
                            false,
                        );
                        Ok(None)
                    }
                }
            }
        }
    }

    fn set_head_cut(&mut self, cut: Cut) {
        if let Some(Expect::Backend(r)) = self.expect.front_mut() {
            r.cut = cut;
        }
    }

    /// The cut cannot be kept consistent: the session ends (fail closed).
    fn cut_fatal(&mut self, limit: &RowLimit, why: &str) {
        self.to_backend
            .push_back(encode(&frontend::Terminate::new()));
        let message = format!("{}; {why}, so the session is closed", limit.message);
        self.close(
            Some(backend::fatal("53400", &message)),
            Some(SessionError::Terminated(message.clone())),
        );
    }
}

/// The client's error for a cut statement.
fn limit_error(limit: &RowLimit) -> Frame {
    Frame {
        tag: b'E',
        raw: backend::error("53400", &limit.message),
    }
}
