//! The query pipeline: what the client sends once the session is ready, the
//! hook's verdicts on it, and the queue of replies the backend owes.
//!
//! Prepared statements and portals exist only once the backend confirms
//! them; after an error in an extended-protocol pipeline both sides ignore
//! messages up to Sync, as PostgreSQL does; statement text that a pending
//! setting change could make PostgreSQL read differently waits for the
//! report of that change.

use super::*;

pub(super) enum Pending<P> {
    Auth,
    Query {
        cmd: CommandId,
        frame: Bytes,
    },
    Parse {
        cmd: CommandId,
        frame: Bytes,
        statement: String,
        sql: Arc<str>,
    },
    Execute {
        cmd: CommandId,
        frame: Bytes,
        portal: String,
        described: bool,
    },
    HeldQuery {
        cmd: CommandId,
        frame: Bytes,
        plan: Arc<P>,
    },
    HeldExecute {
        cmd: CommandId,
        frame: Bytes,
        portal: String,
        described: bool,
        plan: Arc<P>,
    },
    /// A Bind or Execute that names a statement or portal whose creation in
    /// an earlier pipeline (before a Sync) the backend has not confirmed yet.
    Blocked(Frame),
}

/// A prepared statement the backend confirmed (or will, in this pipeline).
pub(super) struct Stmt<P> {
    pub(super) sql: Arc<str>,
    pub(super) plan: Arc<P>,
}

/// What a Bind created: the statement it was bound to, with its plan.
pub(super) struct PortalInfo<P> {
    pub(super) statement: String,
    /// `None`: a statement this session never saw parsed (SQL `PREPARE`).
    pub(super) stmt: Option<Arc<Stmt<P>>>,
    pub(super) params: Vec<Option<Bytes>>,
}

/// The backend's answer to a Describe of a portal.
#[derive(Clone)]
pub(super) enum Described {
    Unknown,
    NoData,
    Rows(Arc<Vec<Column>>),
}

pub(super) struct PortalEntry<P> {
    pub(super) info: Arc<PortalInfo<P>>,
    pub(super) described: Described,
}

/// What a message sent to the backend is, and what its reply changes.
pub(super) enum Kind<P> {
    Query,
    /// `stmt` is installed at ParseComplete; `None` (a gateway's own Parse)
    /// makes the name unknown.
    Parse {
        name: String,
        stmt: Option<Arc<Stmt<P>>>,
    },
    /// `new` is installed at BindComplete; `None` makes the portal unknown.
    Bind {
        portal: String,
        new: Option<Arc<PortalInfo<P>>>,
    },
    DescribeStatement {
        params_seen: bool,
    },
    DescribePortal {
        portal: String,
    },
    Execute {
        portal: String,
    },
    Close {
        statement: bool,
        name: String,
    },
    Sync,
}

impl<P> Kind<P> {
    fn creates(&self) -> bool {
        matches!(
            self,
            Kind::Parse { .. } | Kind::Bind { .. } | Kind::Close { .. }
        )
    }
}

/// A reply the backend owes.
pub(super) struct Reply<P> {
    pub(super) kind: Kind<P>,
    pub(super) cmd: Option<CommandId>,
    pub(super) plan: Option<Arc<P>>,
    /// Sent by the gateway: its responses are not for the client.
    pub(super) gateway: bool,
    /// Errors of a gateway message still reach the client.
    pub(super) forward_errors: bool,
    /// Where a result over its row limit is in being cut (see [`budget`]).
    pub(super) cut: Cut,
}

/// What the backend owes, one entry per message sent that gets a response,
/// and the gateway's own messages for the client, kept in order.
pub(super) enum Expect<P> {
    Synthetic(Bytes),
    Backend(Reply<P>),
}

/// What [`Session::settings_barrier`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Barrier {
    /// Send it now.
    Go,
    /// Hold it until the ReadyForQuery that is on its way has been read.
    Wait,
    /// No ReadyForQuery is on its way (an open extended-protocol pipeline):
    /// refuse it.
    Refuse,
}

/// A client statement that may change settings: a Query or an Execute.
pub(super) fn is_unsettling_reply<P>(r: &Reply<P>) -> bool {
    !r.gateway && matches!(r.kind, Kind::Query | Kind::Execute { .. })
}

pub(super) fn is_unsettling<P>(e: &Expect<P>) -> bool {
    matches!(e, Expect::Backend(r) if is_unsettling_reply(r))
}

pub(super) fn denial_message(code: &str, reason: &str) -> String {
    if code == "42501" {
        format!("permission denied by the gateway: {reason}")
    } else {
        reason.to_string()
    }
}

/// A Describe, Close or Parse of the gateway's own; names are `""` for
/// unnamed, as the session keeps them.
pub(super) fn describe_frame(kind: u8, name: &str) -> Bytes {
    encode(&frontend::Describe::new(kind, named(name)))
}

pub(super) fn close_frame(kind: u8, name: &str) -> Bytes {
    encode(&frontend::Close::new(kind, named(name)))
}

pub(super) fn parse_frame(name: &str, sql: &str) -> Bytes {
    encode(&frontend::Parse::new(named(name), sql.to_owned(), vec![]))
}

/// Unnamed portal, unnamed statement, no formats, no parameters, no result formats.
pub(super) fn bind_frame() -> Bytes {
    encode(&frontend::Bind::new(None, None, vec![], vec![], vec![]))
}

/// The unnamed portal, all rows.
pub(super) fn execute_frame() -> Bytes {
    encode(&frontend::Execute::new(None, 0))
}

/// pgwire's name for a session's name: `None` for the unnamed.
fn named(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_owned())
}

/// A session's name for pgwire's: `""` for the unnamed.
fn unnamed(name: Option<String>) -> String {
    name.unwrap_or_default()
}

/// The statement name (`None` for a Query) and the text of a Query or Parse.
pub(super) fn statement_text(frame: &Frame) -> Result<(Option<String>, String), SessionError> {
    if frame.tag == b'P' {
        let parse = frame
            .decode::<frontend::Parse>()
            .map_err(SessionError::Client)?;
        Ok((Some(unnamed(parse.name)), parse.query))
    } else {
        let query = frame
            .decode::<frontend::Query>()
            .map_err(SessionError::Client)?;
        Ok((None, query.query))
    }
}

impl<H: Transform> Session<H> {
    /// The hook's answer to [`HookRequest::Query`] or [`HookRequest::Execute`],
    /// with a hold's decision future taken out by the driver
    /// ([`Verdict::detach`]). For a hold, the notice goes to the client and
    /// the command waits for [`Session::handle_hold_resolved`] with the
    /// hold's id, or [`Session::handle_hold_abandoned`].
    pub fn handle_verdict(&mut self, now: Instant, verdict: Verdict<H::Plan, Held>) {
        match verdict {
            Verdict::Forward(plan) => {
                self.last_activity = now;
                match self.pending.take() {
                    Some(Pending::Query { cmd, frame }) => {
                        self.forward_query(cmd, frame, Arc::new(plan))
                    }
                    Some(Pending::Execute {
                        cmd,
                        frame,
                        portal,
                        described,
                    }) => self.forward_execute(cmd, frame, &portal, described, Arc::new(plan)),
                    other => self.pending = other,
                }
                self.process_client();
            }
            Verdict::Deny(reason) => {
                self.decide(now, Decision::Deny(reason));
            }
            Verdict::Exceeded(reason) => {
                self.last_activity = now;
                if let Some(cmd) = self.pending_command() {
                    self.event(Event::CommandDenied {
                        session: self.id,
                        command: cmd,
                        reason: reason.clone(),
                        by: RefusedBy::Hook,
                    });
                }
                self.refuse_pending("53400", reason);
                self.process_client();
            }
            Verdict::Terminate(reason) => {
                self.terminate(reason);
            }
            Verdict::Hold(hold, plan) => {
                let plan = Arc::new(plan);
                let (cmd, held) = match self.pending.take() {
                    Some(Pending::Query { cmd, frame }) => (
                        cmd,
                        Pending::HeldQuery {
                            cmd,
                            frame,
                            plan: plan.clone(),
                        },
                    ),
                    Some(Pending::Execute {
                        cmd,
                        frame,
                        portal,
                        described,
                    }) => (
                        cmd,
                        Pending::HeldExecute {
                            cmd,
                            frame,
                            portal,
                            described,
                            plan: plan.clone(),
                        },
                    ),
                    other => {
                        self.pending = other;
                        return;
                    }
                };
                self.pending = Some(held);
                self.hold = hold.id;
                // The notice is about this Execute (or query): it never
                // overtakes the replies owed for an earlier Sync or Query.
                self.synthetic_after_synced(backend::notice(&hold.notice));
                self.event_with(
                    Event::CommandHeld {
                        session: self.id,
                        command: cmd,
                        notice: hold.notice,
                    },
                    Some(plan),
                );
            }
        }
    }

    /// The decision on the hold `id`: its command is forwarded with the
    /// plan its hold carried, or refused. A decision on any other hold than
    /// the one in progress ([`Session::holding`]) is ignored: that hold was
    /// abandoned, or never existed.
    pub fn handle_hold_resolved(&mut self, now: Instant, id: HoldId, decision: Decision) {
        if self.holding() == Some(id) {
            self.decide(now, decision);
        }
    }

    /// The hold in progress ended without a decision (the driver dropped its
    /// future): `cancelled` when the client sent a CancelRequest (it gets
    /// SQLSTATE 57014, like a cancelled statement).
    pub fn handle_hold_abandoned(&mut self, now: Instant, cancelled: bool) {
        let cmd = match &self.pending {
            Some(Pending::HeldQuery { cmd, .. } | Pending::HeldExecute { cmd, .. }) => *cmd,
            _ => return,
        };
        self.event(Event::HoldAbandoned {
            session: self.id,
            command: cmd,
        });
        if cancelled {
            self.refuse_pending("57014", "canceling statement due to user request".into());
            self.last_activity = now;
            self.process_client();
        }
    }

    /// The hook's answer to [`HookRequest::Parse`].
    pub fn handle_parse_verdict(&mut self, now: Instant, verdict: ParseVerdict<H::Plan>) {
        let Some(Pending::Parse {
            cmd,
            frame,
            statement,
            sql,
        }) = self.pending.take()
        else {
            return;
        };
        self.last_activity = now;
        match verdict {
            ParseVerdict::Forward(plan) => {
                let plan = Arc::new(plan);
                let stmt = Arc::new(Stmt {
                    sql,
                    plan: plan.clone(),
                });
                let kind = Kind::Parse {
                    name: statement,
                    stmt: Some(stmt),
                };
                self.forward_command(frame, kind, cmd, plan);
            }
            ParseVerdict::Terminate(reason) => {
                self.pending = Some(Pending::Parse {
                    cmd,
                    frame,
                    statement,
                    sql,
                });
                self.terminate(reason);
                return;
            }
            ParseVerdict::Deny(reason) => {
                self.event(Event::CommandDenied {
                    session: self.id,
                    command: cmd,
                    reason: reason.clone(),
                    by: RefusedBy::Hook,
                });
                self.deny_extended("42501", &reason);
                if statement.is_empty() {
                    // PostgreSQL drops the unnamed statement before parsing a new one.
                    self.inject(
                        close_frame(b'S', ""),
                        Kind::Close {
                            statement: true,
                            name: String::new(),
                        },
                        false,
                    );
                }
            }
        }
        self.process_client();
    }

    pub(super) fn decide(&mut self, now: Instant, decision: Decision) {
        self.last_activity = now;
        match decision {
            Decision::Forward => match self.pending.take() {
                Some(Pending::HeldQuery { cmd, frame, plan }) => {
                    self.forward_query(cmd, frame, plan)
                }
                Some(Pending::HeldExecute {
                    cmd,
                    frame,
                    portal,
                    described,
                    plan,
                }) => self.forward_execute(cmd, frame, &portal, described, plan),
                Some(p @ (Pending::Query { .. } | Pending::Execute { .. })) => {
                    // A decision without a verdict carries no plan: refuse.
                    self.pending = Some(p);
                    self.refuse_pending(
                        "42501",
                        "the gateway has no plan for this statement".into(),
                    );
                }
                other => self.pending = other,
            },
            Decision::Deny(reason) => {
                if let Some(cmd) = self.pending_command() {
                    self.event(Event::CommandDenied {
                        session: self.id,
                        command: cmd,
                        reason: reason.clone(),
                        by: RefusedBy::Hook,
                    });
                }
                self.refuse_pending("42501", reason);
            }
        }
        self.process_client();
    }

    pub(super) fn pending_command(&self) -> Option<CommandId> {
        match &self.pending {
            Some(
                Pending::Query { cmd, .. }
                | Pending::HeldQuery { cmd, .. }
                | Pending::Execute { cmd, .. }
                | Pending::HeldExecute { cmd, .. }
                | Pending::Parse { cmd, .. },
            ) => Some(*cmd),
            _ => None,
        }
    }

    pub(super) fn refuse_pending(&mut self, code: &str, reason: String) {
        match self.pending.take() {
            Some(Pending::Query { .. } | Pending::HeldQuery { .. }) => {
                self.deny_simple(code, &reason)
            }
            Some(Pending::Execute { .. } | Pending::HeldExecute { .. }) => {
                self.deny_extended(code, &reason)
            }
            other => self.pending = other,
        }
    }

    /// A refused simple query: an error and ReadyForQuery; inside a
    /// transaction block, the backend's transaction is made to fail too.
    pub(super) fn deny_simple(&mut self, code: &str, reason: &str) {
        let message = denial_message(code, reason);
        if self.tx_status == b'T' {
            self.synthetic(backend::error(code, &message));
            self.inject(
                encode(&frontend::query(FAIL_TRANSACTION)),
                Kind::Query,
                false,
            );
        } else {
            self.synthetic(backend::error(code, &message));
            self.synthetic(backend::ready(self.tx_status));
        }
    }

    /// A refused extended-protocol message: an error, then everything up to
    /// Sync is discarded, and at Sync the backend's transaction is made to fail.
    pub(super) fn deny_extended(&mut self, code: &str, reason: &str) {
        self.synthetic(backend::error(code, &denial_message(code, reason)));
        self.client_skipping = true;
        self.fail_at_sync = true;
    }

    /// Sends a decided command with its plan; reports it forwarded, or
    /// discarded when the backend is ignoring messages until Sync.
    pub(super) fn forward_command(
        &mut self,
        frame: Bytes,
        kind: Kind<H::Plan>,
        cmd: CommandId,
        plan: Arc<H::Plan>,
    ) {
        let sent = self.send_backend(frame, kind, Some(cmd), Some(plan.clone()));
        let event = if sent {
            Event::CommandForwarded {
                session: self.id,
                command: cmd,
            }
        } else {
            Event::CommandDiscarded {
                session: self.id,
                command: cmd,
            }
        };
        self.event_with(event, Some(plan));
    }

    pub(super) fn forward_query(&mut self, cmd: CommandId, frame: Bytes, plan: Arc<H::Plan>) {
        self.forward_command(frame, Kind::Query, cmd, plan);
    }

    pub(super) fn forward_execute(
        &mut self,
        cmd: CommandId,
        frame: Bytes,
        portal: &str,
        described: bool,
        plan: Arc<H::Plan>,
    ) {
        if !described {
            // The hook must see the columns before the rows.
            self.inject(
                describe_frame(b'P', portal),
                Kind::DescribePortal {
                    portal: portal.to_owned(),
                },
                true,
            );
        }
        let kind = Kind::Execute {
            portal: portal.to_owned(),
        };
        self.forward_command(frame, kind, cmd, plan);
    }

    /// Sends a client message that gets a reply. Returns false, sending
    /// nothing, when the backend is ignoring messages until Sync (it would
    /// discard this one and answer nothing).
    pub(super) fn send_backend(
        &mut self,
        frame: Bytes,
        kind: Kind<H::Plan>,
        cmd: Option<CommandId>,
        plan: Option<Arc<H::Plan>>,
    ) -> bool {
        self.push_backend(frame, kind, cmd, plan, false, true)
    }

    pub(super) fn inject(&mut self, frame: Bytes, kind: Kind<H::Plan>, forward_errors: bool) {
        self.push_backend(frame, kind, None, None, true, forward_errors);
    }

    pub(super) fn push_backend(
        &mut self,
        frame: Bytes,
        kind: Kind<H::Plan>,
        cmd: Option<CommandId>,
        plan: Option<Arc<H::Plan>>,
        gateway: bool,
        forward_errors: bool,
    ) -> bool {
        if self.backend_ignoring {
            if !matches!(kind, Kind::Sync) {
                return false;
            }
            self.backend_ignoring = false;
        }
        self.to_backend.push_back(frame);
        let reply = Reply {
            kind,
            cmd,
            plan,
            gateway,
            forward_errors,
            cut: Cut::None,
        };
        self.unsettled |= is_unsettling_reply(&reply);
        self.expect.push_back(Expect::Backend(reply));
        true
    }

    /// Whether statement text may be sent now, given that the statements
    /// sent before it may have changed how PostgreSQL reads SQL (a SET of
    /// `standard_conforming_strings` or `client_encoding`, also through
    /// `set_config` or dynamic SQL) and the backend reports such a change
    /// only with the next ReadyForQuery.
    pub(super) fn settings_barrier(&self, sql: &[u8]) -> Barrier {
        if !self.unsettled || startup::is_setting_independent(sql) {
            return Barrier::Go;
        }
        // A ReadyForQuery will come without more client messages when a
        // Sync or a Query follows the last statement sent (a Query is
        // answered with one itself).
        let mut coming = false;
        for e in &self.expect {
            if let Expect::Backend(r) = e {
                if matches!(r.kind, Kind::Sync | Kind::Query) {
                    coming = true;
                } else if is_unsettling_reply(r) {
                    coming = false;
                }
            }
        }
        if coming {
            Barrier::Wait
        } else {
            Barrier::Refuse
        }
    }

    /// Whether a client message held back must still wait.
    pub(super) fn still_blocked(&self, frame: &Frame) -> bool {
        match frame.tag {
            // A frame that does not decode is not held back: it is refused.
            b'Q' | b'P' => statement_text(frame)
                .is_ok_and(|(_, sql)| self.settings_barrier(sql.as_bytes()) == Barrier::Wait),
            _ => self.must_wait(),
        }
    }

    pub(super) fn synthetic(&mut self, b: Bytes) {
        self.expect.push_back(Expect::Synthetic(b));
        self.flush_synthetic();
    }

    /// Queues a message of the gateway's own behind every reply the backend
    /// owes up to its last Sync or Query (which it sends without more
    /// input), but ahead of the replies of a pipeline not yet synced (which
    /// the backend keeps until a Sync or Flush: waiting for them could wait
    /// forever).
    pub(super) fn synthetic_after_synced(&mut self, b: Bytes) {
        let at = self
            .expect
            .iter()
            .rposition(
                |e| matches!(e, Expect::Backend(r) if matches!(r.kind, Kind::Sync | Kind::Query)),
            )
            .map_or(0, |i| i + 1);
        self.expect.insert(at, Expect::Synthetic(b));
        self.flush_synthetic();
    }

    pub(super) fn flush_synthetic(&mut self) {
        while let Some(Expect::Synthetic(_)) = self.expect.front() {
            if let Some(Expect::Synthetic(b)) = self.expect.pop_front() {
                self.to_client.push_back(b);
            }
        }
    }

    /// Whether a Bind or Execute must wait: a Parse, Bind or Close of an
    /// earlier pipeline (one a Sync follows) is not confirmed yet, so what a
    /// name will refer to when the backend reads this message is not known.
    /// Within the current pipeline the effects are predicted as successes:
    /// if one fails, the backend discards everything after it up to Sync,
    /// this message included.
    pub(super) fn must_wait(&self) -> bool {
        let mut creates = false;
        for e in &self.expect {
            if let Expect::Backend(r) = e {
                if r.kind.creates() {
                    creates = true;
                } else if matches!(r.kind, Kind::Sync) && creates {
                    return true;
                }
            }
        }
        false
    }

    /// The statement a name will refer to when the backend reads the next
    /// message: the current pipeline's Parse or Close of it, else the
    /// confirmed one. `None`: not prepared through this session.
    pub(super) fn predicted_statement(&self, name: &str) -> Option<Arc<Stmt<H::Plan>>> {
        for e in self.expect.iter().rev() {
            let Expect::Backend(r) = e else { continue };
            match &r.kind {
                Kind::Sync => break,
                Kind::Parse { name: n, stmt } if n == name => return stmt.clone(),
                Kind::Close {
                    statement: true,
                    name: n,
                } if n == name => return None,
                _ => {}
            }
        }
        self.statements.get(name).cloned()
    }

    /// The portal a name will refer to when the backend reads the next
    /// message, and whether its columns are known already.
    pub(super) fn predicted_portal(&self, name: &str) -> Option<(Arc<PortalInfo<H::Plan>>, bool)> {
        for e in self.expect.iter().rev() {
            let Expect::Backend(r) = e else { continue };
            match &r.kind {
                Kind::Sync => break,
                Kind::Bind { portal, new } if portal == name => {
                    return new.clone().map(|n| (n, false));
                }
                Kind::Close {
                    statement: false,
                    name: n,
                } if n == name => return None,
                _ => {}
            }
        }
        self.portals
            .get(name)
            .map(|p| (p.info.clone(), !matches!(p.described, Described::Unknown)))
    }

    pub(super) fn on_client_message(&mut self, frame: Frame) -> Result<(), SessionError> {
        let tag = frame.tag;
        // After an error in an extended-protocol pipeline PostgreSQL reads and
        // discards every message but Sync and Terminate.
        if (self.client_skipping || self.backend_ignoring) && !matches!(tag, b'S' | b'X') {
            self.last_describe_portal = None;
            return Ok(());
        }
        if matches!(tag, b'B' | b'E') && self.must_wait() {
            self.pending = Some(Pending::Blocked(frame));
            return Ok(());
        }
        if matches!(tag, b'Q' | b'P' | b'B' | b'D' | b'C' | b'E')
            && let Some(message) = frontend::invalid_statement_text(tag, frame.body())
        {
            self.refuse_invalid_text(tag, &message);
            return Ok(());
        }
        let mut text = None;
        if matches!(tag, b'Q' | b'P') {
            let (name, sql) = statement_text(&frame)?;
            match self.settings_barrier(sql.as_bytes()) {
                Barrier::Go => {}
                Barrier::Wait => {
                    self.pending = Some(Pending::Blocked(frame));
                    return Ok(());
                }
                Barrier::Refuse => {
                    let unnamed = name.as_deref().is_some_and(str::is_empty);
                    self.refuse_unsettled(tag, sql, unnamed);
                    return Ok(());
                }
            }
            text = Some((name, sql));
        }
        let described_portal = if tag == b'D' {
            None
        } else {
            self.last_describe_portal.take()
        };
        match tag {
            b'Q' => {
                let sql = text.map(|(_, sql)| sql).unwrap_or_default();
                let cmd = self.new_command();
                self.event(Event::CommandReceived {
                    session: self.id,
                    command: cmd,
                    sql: sql.clone(),
                });
                self.pending = Some(Pending::Query {
                    cmd,
                    frame: frame.raw,
                });
                self.outputs
                    .push_back(Output::Request(HookRequest::Query { command: cmd, sql }));
            }
            b'P' => {
                let (statement, sql) = text
                    .map(|(name, sql)| (name.unwrap_or_default(), sql))
                    .unwrap_or_default();
                let cmd = self.new_command();
                self.event(Event::CommandReceived {
                    session: self.id,
                    command: cmd,
                    sql: sql.clone(),
                });
                self.pending = Some(Pending::Parse {
                    cmd,
                    frame: frame.raw,
                    statement: statement.clone(),
                    sql: Arc::from(sql.as_str()),
                });
                self.outputs.push_back(Output::Request(HookRequest::Parse {
                    command: cmd,
                    statement,
                    sql,
                }));
            }
            b'B' => {
                let bind = frame
                    .decode::<frontend::Bind>()
                    .map_err(SessionError::Client)?;
                let (portal, statement, params) = (
                    unnamed(bind.portal_name),
                    unnamed(bind.statement_name),
                    bind.parameters,
                );
                let stmt = self.predicted_statement(&statement);
                let new = Arc::new(PortalInfo {
                    statement,
                    stmt,
                    params,
                });
                let kind = Kind::Bind {
                    portal,
                    new: Some(new),
                };
                self.send_backend(frame.raw, kind, None, None);
            }
            b'D' => {
                let describe = frame
                    .decode::<frontend::Describe>()
                    .map_err(SessionError::Client)?;
                let kind = if describe.target_type == frontend::TARGET_TYPE_BYTE_PORTAL {
                    let portal = unnamed(describe.name);
                    self.last_describe_portal = Some(portal.clone());
                    Kind::DescribePortal { portal }
                } else {
                    Kind::DescribeStatement { params_seen: false }
                };
                if !self.send_backend(frame.raw, kind, None, None) {
                    self.last_describe_portal = None;
                }
            }
            b'E' => {
                let execute = frame
                    .decode::<frontend::Execute>()
                    .map_err(SessionError::Client)?;
                let portal = unnamed(execute.name);
                let cmd = self.new_command();
                let Some((info, known_columns)) = self.predicted_portal(&portal) else {
                    // A portal no Bind of this session created (a SQL
                    // cursor, or none at all): nothing is known of what it runs.
                    self.event(Event::CommandReceived {
                        session: self.id,
                        command: cmd,
                        sql: String::new(),
                    });
                    let reason = format!(
                        "portal \"{portal}\" does not exist (the gateway executes only portals \
                         bound through it)"
                    );
                    self.event(Event::CommandDenied {
                        session: self.id,
                        command: cmd,
                        reason: reason.clone(),
                        by: RefusedBy::Session,
                    });
                    self.deny_extended("34000", &reason);
                    return Ok(());
                };
                let (sql, plan) = match &info.stmt {
                    Some(s) => (s.sql.to_string(), Some(s.plan.clone())),
                    // Not prepared through this session's Parse: an SQL-level
                    // PREPARE. The hook decides on it as on `EXECUTE name`.
                    None => (format!("EXECUTE {}", info.statement), None),
                };
                let described =
                    known_columns || described_portal.as_deref() == Some(portal.as_str());
                self.event(Event::CommandReceived {
                    session: self.id,
                    command: cmd,
                    sql: sql.clone(),
                });
                self.pending = Some(Pending::Execute {
                    cmd,
                    frame: frame.raw,
                    portal: portal.clone(),
                    described,
                });
                self.outputs
                    .push_back(Output::Request(HookRequest::Execute {
                        command: cmd,
                        portal,
                        statement: info.statement.clone(),
                        plan,
                        sql,
                        params: info.params.clone(),
                    }));
            }
            b'C' => {
                let close = frame
                    .decode::<frontend::Close>()
                    .map_err(SessionError::Client)?;
                let statement = close.target_type == frontend::TARGET_TYPE_BYTE_STATEMENT;
                let name = unnamed(close.name);
                self.send_backend(frame.raw, Kind::Close { statement, name }, None, None);
            }
            b'H' => {
                frame
                    .decode::<frontend::Flush>()
                    .map_err(SessionError::Client)?;
                if !self.backend_ignoring {
                    self.to_backend.push_back(frame.raw);
                }
            }
            b'S' => {
                frame
                    .decode::<frontend::Sync>()
                    .map_err(SessionError::Client)?;
                self.client_skipping = false;
                if self.fail_at_sync {
                    self.fail_at_sync = false;
                    self.inject(
                        parse_frame("", FAIL_TRANSACTION),
                        Kind::Parse {
                            name: String::new(),
                            stmt: None,
                        },
                        false,
                    );
                    self.inject(
                        bind_frame(),
                        Kind::Bind {
                            portal: String::new(),
                            new: None,
                        },
                        false,
                    );
                    self.inject(
                        execute_frame(),
                        Kind::Execute {
                            portal: String::new(),
                        },
                        false,
                    );
                }
                self.send_backend(frame.raw, Kind::Sync, None, None);
            }
            b'F' => {
                let cmd = self.new_command();
                let reason =
                    "the fast-path function call interface is not supported by the gateway";
                self.event(Event::CommandDenied {
                    session: self.id,
                    command: cmd,
                    reason: reason.into(),
                    by: RefusedBy::Session,
                });
                self.deny_simple("0A000", reason);
            }
            b'c' => {
                frame
                    .decode::<frontend::CopyDone>()
                    .map_err(SessionError::Client)?;
                self.to_backend.push_back(frame.raw);
            }
            b'd' | b'f' => self.to_backend.push_back(frame.raw),
            b'X' => {
                frame
                    .decode::<frontend::Terminate>()
                    .map_err(SessionError::Client)?;
                self.to_backend.push_back(frame.raw);
                self.closing = true;
                self.end(None);
            }
            _ => {
                return Err(SessionError::UnexpectedMessage {
                    tag,
                    from: "client",
                    state: self.phase.name(),
                });
            }
        }
        Ok(())
    }

    /// Refuses a message whose text or name is not valid UTF-8 as
    /// PostgreSQL does (error 22021, and the session goes on: after an
    /// extended-protocol message, messages are ignored up to Sync). Nothing of it reaches the backend or the
    /// hook; the events carry no lossy text, the reason names the bytes.
    /// PostgreSQL fails while reading the message, before it would drop the
    /// unnamed statement, so no Close is sent for it.
    pub(super) fn refuse_invalid_text(&mut self, tag: u8, message: &str) {
        let cmd = self.new_command();
        self.event(Event::CommandReceived {
            session: self.id,
            command: cmd,
            sql: String::new(),
        });
        self.event(Event::CommandDenied {
            session: self.id,
            command: cmd,
            reason: message.to_owned(),
            by: RefusedBy::Session,
        });
        if tag == b'Q' {
            self.deny_simple("22021", message);
        } else {
            self.deny_extended("22021", message);
        }
    }

    /// Refuses statement text that could be read differently after the
    /// statements still in the pipeline (see [`Session::settings_barrier`]).
    pub(super) fn refuse_unsettled(&mut self, tag: u8, sql: String, unnamed: bool) {
        let cmd = self.new_command();
        self.event(Event::CommandReceived {
            session: self.id,
            command: cmd,
            sql,
        });
        let reason = "statement text with a backslash or a non-ASCII character cannot follow an \
                      Execute in the same pipeline: the gateway reads it only once the backend \
                      has reported its settings (send Sync first)";
        self.event(Event::CommandDenied {
            session: self.id,
            command: cmd,
            reason: reason.into(),
            by: RefusedBy::Session,
        });
        if tag == b'Q' {
            self.deny_simple("0A000", reason);
            return;
        }
        self.deny_extended("0A000", reason);
        if unnamed {
            // PostgreSQL drops the unnamed statement before parsing a new one.
            self.inject(
                close_frame(b'S', ""),
                Kind::Close {
                    statement: true,
                    name: String::new(),
                },
                false,
            );
        }
    }

    /// A Bind or Execute waiting for earlier pipelines' confirmations goes
    /// on once they are in.
    pub(super) fn unblock(&mut self) {
        match &self.pending {
            Some(Pending::Blocked(frame)) if !self.still_blocked(frame) => {}
            _ => return,
        }
        if let Some(Pending::Blocked(frame)) = self.pending.take() {
            if let Err(e) = self.on_client_message(frame) {
                self.client_protocol_error(e);
            }
            self.process_client();
        }
    }
}
