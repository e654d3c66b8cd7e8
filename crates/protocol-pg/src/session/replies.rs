//! The backend's replies, each matched to the request it answers: a message
//! the session cannot attribute to an expected reply ends the session.

use super::*;

/// Checks the body of a backend message the session forwards without
/// reading it otherwise: nothing goes to the client that is not exactly the
/// message its type byte names. (DataRows are read only when transformed:
/// the forward path stays byte for byte, without a pass over the row.)
fn check_body(frame: &Frame) -> Result<(), SessionError> {
    let checked = match frame.tag {
        b'1' => frame.decode::<backend::ParseComplete>().map(drop),
        b'2' => frame.decode::<backend::BindComplete>().map(drop),
        b'3' => frame.decode::<backend::CloseComplete>().map(drop),
        b'n' => frame.decode::<backend::NoData>().map(drop),
        b's' => frame.decode::<backend::PortalSuspended>().map(drop),
        b'I' => frame.decode::<backend::EmptyQueryResponse>().map(drop),
        b'c' => frame.decode::<frontend::CopyDone>().map(drop),
        b't' => frame.decode::<backend::ParameterDescription>().map(drop),
        b'G' => frame.decode::<backend::CopyInResponse>().map(drop),
        b'H' => frame.decode::<backend::CopyOutResponse>().map(drop),
        _ => Ok(()),
    };
    checked.map_err(SessionError::Backend)
}

impl<H: Transform> Session<H> {
    pub(super) fn head(&self) -> Option<&Reply<H::Plan>> {
        match self.expect.front() {
            Some(Expect::Backend(r)) => Some(r),
            _ => None,
        }
    }

    /// The reply at the head is complete.
    pub(super) fn pop(&mut self) {
        self.expect.pop_front();
        self.flush_synthetic();
    }

    pub(super) fn forward(&mut self, gateway: bool, b: Bytes) {
        if !gateway {
            self.to_client.push_back(b);
        }
    }

    /// A DataRow of the result in progress: cut at the row limit, else
    /// transformed (unless it answers the gateway's own request) and
    /// forwarded.
    fn data_row(&mut self, gateway: bool, frame: Frame) -> Result<(), SessionError> {
        let mut untouched = gateway;
        if let Some(result) = &self.result {
            if let Some(limit) = &result.limit
                && self.rows >= limit.max_rows
            {
                let limit = limit.clone();
                self.cut(limit);
                return Ok(());
            }
            // No column chosen: the frame goes out as it came.
            untouched |= result.chosen.is_empty();
        }
        let out = if untouched {
            frame.raw
        } else {
            self.transform_row(frame)?
        };
        self.rows += 1;
        self.bytes += out.len() as u64;
        self.forward(gateway, out);
        Ok(())
    }

    /// The RowDescription to forward: the gateway's own replies are not
    /// forwarded, so they are not transformed either.
    fn row_description_out(
        &self,
        gateway: bool,
        frame: Frame,
        cmd: Option<CommandId>,
        plan: Option<&H::Plan>,
    ) -> Result<Bytes, SessionError> {
        if gateway {
            return Ok(frame.raw);
        }
        self.transform_row_description(frame, cmd, plan)
    }

    pub(super) fn on_backend_message(&mut self, frame: Frame) -> Result<(), SessionError> {
        // The common case first, kept short: a DataRow of a result in
        // progress whose reply is not being cut. Nothing synthetic can wait
        // before it (its reply is at the head), so there is nothing to
        // flush; the checks are the ones the general path below makes.
        if frame.tag == b'D'
            && !self.copy_out
            && self.result.is_some()
            && let Some(Expect::Backend(r)) = self.expect.front()
            && matches!(r.cut, budget::Cut::None)
            && matches!(r.kind, Kind::Query | Kind::Execute { .. })
        {
            let gateway = r.gateway;
            return self.data_row(gateway, frame);
        }
        self.flush_synthetic();
        let Some(frame) = self.on_cut_message(frame)? else {
            return Ok(());
        };
        check_body(&frame)?;
        let violation = |what: &str| SessionError::Violation(what.to_owned());
        let (gateway, cmd, plan) = match self.head() {
            Some(r) => (r.gateway, r.cmd, r.plan.clone()),
            None => (false, None, None),
        };
        match frame.tag {
            // Asynchronous messages: valid at any time.
            b'N' => {
                let out = self.transform_error_like(&frame, cmd, plan)?;
                self.to_client.push_back(out);
            }
            b'A' => {
                let out = self.transform_notification(&frame)?;
                self.to_client.push_back(out);
            }
            b'S' => self.on_parameter_status(frame)?,
            b'E' => self.on_backend_error(frame)?,
            b'Z' => {
                match self.head().map(|r| &r.kind) {
                    Some(Kind::Sync | Kind::Query) => {}
                    _ => return Err(violation("ReadyForQuery with no Sync or Query in progress")),
                }
                if self.result.is_some() || self.copy_out {
                    return Err(violation("ReadyForQuery in the middle of a result"));
                }
                let ready = frame
                    .decode::<backend::ReadyForQuery>()
                    .map_err(SessionError::Backend)?;
                let status = ready.status as u8;
                self.tx_status = status;
                if status == b'I' {
                    // Outside a transaction no portal survives.
                    self.portals.clear();
                }
                self.expect.pop_front();
                // Every setting change before this point has been reported.
                self.unsettled = self.expect.iter().any(is_unsettling);
                self.to_client.push_back(frame.raw);
                self.flush_synthetic();
            }
            b'T' => {
                let columns = backend::columns(frame.body()).map_err(SessionError::Backend)?;
                let kind = self.head().map(|r| &r.kind);
                match kind {
                    Some(Kind::Query) if self.result.is_none() && !self.copy_out => {
                        let out = self.row_description_out(gateway, frame, cmd, plan.as_deref())?;
                        self.begin_result(Arc::new(columns), plan, cmd);
                        self.forward(gateway, out);
                    }
                    Some(Kind::DescribeStatement { params_seen: true }) => {
                        let out = self.row_description_out(gateway, frame, cmd, plan.as_deref())?;
                        self.forward(gateway, out);
                        self.pop();
                    }
                    Some(Kind::DescribePortal { portal }) => {
                        let portal = portal.clone();
                        if let Some(p) = self.portals.get_mut(&portal) {
                            p.described = Described::Rows(Arc::new(columns));
                        }
                        let out = self.row_description_out(gateway, frame, cmd, plan.as_deref())?;
                        self.forward(gateway, out);
                        self.pop();
                    }
                    _ => return Err(violation("RowDescription out of order")),
                }
            }
            b'n' => {
                match self.head().map(|r| &r.kind) {
                    Some(Kind::DescribeStatement { params_seen: true }) => {}
                    Some(Kind::DescribePortal { portal }) => {
                        let portal = portal.clone();
                        if let Some(p) = self.portals.get_mut(&portal) {
                            p.described = Described::NoData;
                        }
                    }
                    _ => return Err(violation("NoData with no Describe in progress")),
                }
                self.forward(gateway, frame.raw);
                self.pop();
            }
            b't' => {
                match self.expect.front_mut() {
                    Some(Expect::Backend(Reply {
                        kind: Kind::DescribeStatement { params_seen },
                        ..
                    })) if !*params_seen => *params_seen = true,
                    _ => {
                        return Err(violation(
                            "ParameterDescription with no Describe of a statement in progress",
                        ));
                    }
                }
                self.forward(gateway, frame.raw);
            }
            b'1' => {
                let Some(Expect::Backend(Reply {
                    kind: Kind::Parse { name, stmt },
                    ..
                })) = self.expect.front()
                else {
                    return Err(violation("ParseComplete with no Parse in progress"));
                };
                // The statement exists now, and only now.
                match stmt {
                    Some(stmt) => {
                        self.statements.insert(name.clone(), stmt.clone());
                    }
                    None => {
                        self.statements.remove(name.as_str());
                    }
                }
                self.forward(gateway, frame.raw);
                self.pop();
            }
            b'2' => {
                let Some(Expect::Backend(Reply {
                    kind: Kind::Bind { portal, new },
                    ..
                })) = self.expect.front()
                else {
                    return Err(violation("BindComplete with no Bind in progress"));
                };
                match new {
                    Some(info) => {
                        self.portals.insert(
                            portal.clone(),
                            PortalEntry {
                                info: info.clone(),
                                described: Described::Unknown,
                            },
                        );
                    }
                    None => {
                        self.portals.remove(portal.as_str());
                    }
                }
                self.forward(gateway, frame.raw);
                self.pop();
            }
            b'3' => {
                let Some(Expect::Backend(Reply {
                    kind: Kind::Close { statement, name },
                    ..
                })) = self.expect.front()
                else {
                    return Err(violation("CloseComplete with no Close in progress"));
                };
                if *statement {
                    self.statements.remove(name.as_str());
                } else {
                    self.portals.remove(name.as_str());
                }
                self.forward(gateway, frame.raw);
                self.pop();
            }
            b'D' => {
                if self.copy_out || !self.in_command() {
                    return Err(violation("DataRow with no result in progress"));
                }
                if self.result.is_none() {
                    self.begin_portal_result()?;
                }
                self.data_row(gateway, frame)?;
            }
            b'C' | b'I' => {
                if self.copy_out || !self.in_command() {
                    return Err(violation("CommandComplete with no command in progress"));
                }
                let tag = if frame.tag == b'C' {
                    frame
                        .decode::<backend::CommandComplete>()
                        .map_err(SessionError::Backend)?
                        .tag
                } else {
                    String::new()
                };
                self.after_tag(&tag);
                if let Some(command) = cmd {
                    self.event_with(
                        Event::CommandCompleted {
                            session: self.id,
                            command,
                            tag,
                            rows: self.rows,
                            bytes: self.bytes,
                        },
                        plan,
                    );
                }
                self.rows = 0;
                self.bytes = 0;
                self.result = None;
                self.forward(gateway, frame.raw);
                if matches!(self.head().map(|r| &r.kind), Some(Kind::Execute { .. })) {
                    self.pop();
                }
            }
            b's' => {
                if self.copy_out
                    || !matches!(self.head().map(|r| &r.kind), Some(Kind::Execute { .. }))
                {
                    return Err(violation("PortalSuspended with no Execute in progress"));
                }
                self.result = None;
                self.forward(gateway, frame.raw);
                self.pop();
            }
            b'H' => {
                if self.copy_out || !self.in_command() {
                    return Err(violation("CopyOutResponse with no command in progress"));
                }
                self.result = None;
                self.copy_out = true;
                self.copy_limit = self.row_limit_of(plan.as_deref(), cmd);
                self.forward(gateway, frame.raw);
            }
            b'G' => {
                if self.copy_out || !self.in_command() {
                    return Err(violation("CopyInResponse with no command in progress"));
                }
                self.result = None;
                self.forward(gateway, frame.raw);
            }
            b'd' => {
                if !self.copy_out {
                    return Err(violation("CopyData with no COPY TO STDOUT in progress"));
                }
                if let Some(limit) = &self.copy_limit
                    && self.rows >= limit.max_rows
                {
                    let limit = limit.clone();
                    self.cut(limit);
                    return Ok(());
                }
                let out = match (&plan, gateway) {
                    (Some(plan), false) => self.transform_copy(frame, cmd, plan.clone()),
                    _ => frame.raw,
                };
                self.rows += 1;
                self.bytes += out.len() as u64;
                self.forward(gateway, out);
            }
            b'c' => {
                if !self.copy_out {
                    return Err(violation("CopyDone with no COPY TO STDOUT in progress"));
                }
                self.copy_out = false;
                self.copy_limit = None;
                self.forward(gateway, frame.raw);
            }
            _ => return Err(violation("a message the protocol does not allow here")),
        }
        Ok(())
    }

    /// Whether the reply in progress is a Query's or an Execute's.
    pub(super) fn in_command(&self) -> bool {
        matches!(
            self.head().map(|r| &r.kind),
            Some(Kind::Query | Kind::Execute { .. })
        )
    }

    /// What a completed statement changes in what the session knows:
    /// `DEALLOCATE` and `DISCARD` may drop prepared statements that a later
    /// SQL `PREPARE` replaces, so none is trusted any more; a transaction's
    /// end or a cursor declared by SQL may drop or shadow portals.
    pub(super) fn after_tag(&mut self, tag: &str) {
        let word = tag.split(' ').next().unwrap_or("");
        match word {
            "DEALLOCATE" | "DISCARD" | "PREPARE" => {
                self.statements.clear();
                self.portals.clear();
            }
            "COMMIT" | "ROLLBACK" | "DECLARE" | "CLOSE" => self.portals.clear(),
            _ => {}
        }
    }

    pub(super) fn on_backend_error(&mut self, frame: Frame) -> Result<(), SessionError> {
        let (gateway, forward_errors, cmd, plan) = match self.head() {
            Some(r) => (r.gateway, r.forward_errors, r.cmd, r.plan.clone()),
            None => (false, true, None, None),
        };
        let out = self.transform_error_like(&frame, cmd, plan)?;
        if !gateway || forward_errors {
            self.to_client.push_back(out);
        }
        self.result = None;
        self.copy_out = false;
        self.copy_limit = None;
        self.rows = 0;
        self.bytes = 0;
        let extended = match self.head().map(|r| &r.kind) {
            None | Some(Kind::Query | Kind::Sync) => false,
            Some(Kind::Parse { name, .. }) => {
                if name.is_empty() {
                    // PostgreSQL dropped the unnamed statement before parsing.
                    self.statements.remove("");
                }
                true
            }
            Some(Kind::Bind { portal, .. }) => {
                if portal.is_empty() {
                    self.portals.remove("");
                }
                true
            }
            Some(_) => true,
        };
        if extended {
            // The backend now discards everything up to Sync: the replies
            // owed for those messages will never come.
            while let Some(front) = self.expect.front() {
                if let Expect::Backend(Reply {
                    kind: Kind::Sync, ..
                }) = front
                {
                    return Ok(());
                }
                if let Some(Expect::Backend(Reply {
                    cmd: Some(command),
                    gateway: false,
                    plan,
                    ..
                })) = self.expect.pop_front()
                {
                    self.event_with(
                        Event::CommandDiscarded {
                            session: self.id,
                            command,
                        },
                        plan,
                    );
                }
            }
            // No Sync is on its way: messages sent until the next one are
            // discarded by the backend, so the session sends none.
            self.backend_ignoring = true;
        }
        Ok(())
    }
}
