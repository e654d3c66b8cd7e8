//! The result path: the hook's column plans for a result, and the row,
//! COPY, notice and notification transforms.

use super::*;

pub(super) struct ResultState<P, C> {
    pub(super) columns: Arc<Vec<Column>>,
    pub(super) chosen: Vec<(usize, C)>,
    pub(super) plan: Option<Arc<P>>,
    /// The statement's row cap, from [`Transform::row_limit`].
    pub(super) limit: Option<crate::hook::RowLimit>,
}

impl<H: Transform> Session<H> {
    pub(super) fn begin_result(
        &mut self,
        columns: Arc<Vec<Column>>,
        plan: Option<Arc<H::Plan>>,
        cmd: Option<CommandId>,
    ) {
        let chosen = match (&self.principal, &plan) {
            (Some(principal), Some(plan)) => {
                let cx = Context {
                    session: self.id,
                    command: cmd,
                    principal: principal.as_ref(),
                };
                let mut chosen = self.hook.on_row_description(&cx, plan, &columns);
                chosen.retain(|(i, _)| *i < columns.len());
                chosen.sort_by_key(|(i, _)| *i);
                chosen.dedup_by_key(|(i, _)| *i);
                chosen
            }
            _ => Vec::new(),
        };
        let limit = self.row_limit_of(plan.as_deref(), cmd);
        self.result = Some(ResultState {
            columns,
            chosen,
            plan,
            limit,
        });
    }

    /// The rows of an Execute: their columns come from the portal's
    /// description, which the backend sent before them.
    pub(super) fn begin_portal_result(&mut self) -> Result<(), SessionError> {
        let Some(Reply {
            kind: Kind::Execute { portal },
            cmd,
            plan,
            ..
        }) = self.head()
        else {
            return Err(SessionError::Violation(
                "DataRow with no result in progress".into(),
            ));
        };
        let (cmd, plan) = (*cmd, plan.clone());
        let columns = match self.portals.get(portal.as_str()).map(|p| &p.described) {
            Some(Described::Rows(columns)) => columns.clone(),
            _ => {
                return Err(SessionError::Violation(
                    "DataRow for a portal with no described columns".into(),
                ));
            }
        };
        self.begin_result(columns, plan, cmd);
        Ok(())
    }

    pub(super) fn transform_row(&mut self, frame: Frame) -> Result<Bytes, SessionError> {
        let Some(result) = &self.result else {
            return Err(SessionError::Violation(
                "DataRow with no result in progress".into(),
            ));
        };
        if result.chosen.is_empty() {
            // Nothing to transform: the frame goes out as it came.
            return Ok(frame.raw);
        }
        let body = frame.body();
        let fields = backend::split_data_row(body).map_err(SessionError::Backend)?;
        if fields.len() != result.columns.len() {
            return Err(SessionError::Violation(
                "DataRow with a different number of columns than its RowDescription".into(),
            ));
        }
        let (Some(principal), Some(plan)) = (self.principal.as_ref(), result.plan.as_ref()) else {
            return Ok(frame.raw);
        };
        let cmd = self.head().and_then(|r| r.cmd);
        let cx = Context {
            session: self.id,
            command: cmd,
            principal: principal.as_ref(),
        };
        let mut replaced: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
        for (i, column_plan) in &result.chosen {
            let (Some(Some(range)), Some(col)) = (fields.get(*i), result.columns.get(*i)) else {
                continue;
            };
            let Some(value) = body.get(range.clone()) else {
                continue;
            };
            match self
                .hook
                .transform_field(&cx, plan, col, column_plan, value)
            {
                FieldValue::Keep => {}
                FieldValue::Replace(v) => replaced.push((*i, Some(v))),
                FieldValue::Null => replaced.push((*i, None)),
            }
        }
        if replaced.is_empty() {
            return Ok(frame.raw);
        }
        let values: Vec<Option<&[u8]>> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| match replaced.iter().find(|(j, _)| *j == i) {
                Some((_, v)) => v.as_deref(),
                None => f.clone().and_then(|r| body.get(r)),
            })
            .collect();
        Ok(backend::build_data_row(values.into_iter()))
    }

    pub(super) fn transform_copy(
        &mut self,
        frame: Frame,
        cmd: Option<CommandId>,
        plan: Arc<H::Plan>,
    ) -> Bytes {
        let Some(principal) = self.principal.clone() else {
            return frame.raw;
        };
        let cx = Context {
            session: self.id,
            command: cmd,
            principal: principal.as_ref(),
        };
        match self.hook.transform_copy(&cx, &plan, frame.body()) {
            Some(data) => backend::copy_data(&data),
            None => frame.raw,
        }
    }

    pub(super) fn transform_error_like(
        &mut self,
        frame: &Frame,
        cmd: Option<CommandId>,
        plan: Option<Arc<H::Plan>>,
    ) -> Result<Bytes, SessionError> {
        let fields =
            backend::parse_fields(frame.tag, frame.body()).map_err(SessionError::Backend)?;
        let principal = self.principal.clone();
        let mut changed = false;
        let mut out: Vec<(u8, Vec<u8>)> = Vec::with_capacity(fields.len());
        for (code, value) in &fields {
            let mut v = value.to_vec();
            if let Some(p) = &principal
                && matches!(code, b'M' | b'D' | b'H' | b'W' | b'q')
            {
                let cx = Context {
                    session: self.id,
                    command: cmd,
                    principal: p.as_ref(),
                };
                let kind = if frame.tag == b'E' {
                    TextKind::ErrorField(*code)
                } else {
                    TextKind::NoticeField(*code)
                };
                if let Some(new) = self.hook.transform_text(
                    &cx,
                    plan.as_deref(),
                    kind,
                    &String::from_utf8_lossy(value),
                ) {
                    v = new.replace('\0', "").into_bytes();
                    changed = true;
                }
            }
            out.push((*code, v));
        }
        if frame.tag == b'E' {
            let get = |c: u8| {
                out.iter()
                    .find(|(k, _)| *k == c)
                    .map(|(_, v)| lossy(v))
                    .unwrap_or_default()
            };
            self.event_with(
                Event::Error {
                    session: self.id,
                    command: cmd,
                    code: get(b'C'),
                    message: get(b'M'),
                },
                plan,
            );
        }
        Ok(if changed {
            backend::build_fields(frame.tag, &out)
        } else {
            frame.raw.clone()
        })
    }

    pub(super) fn transform_notification(&mut self, frame: &Frame) -> Result<Bytes, SessionError> {
        let (pid, channel, payload) =
            backend::notification(frame.body()).map_err(SessionError::Backend)?;
        let Some(principal) = self.principal.clone() else {
            return Ok(frame.raw.clone());
        };
        let cx = Context {
            session: self.id,
            command: None,
            principal: principal.as_ref(),
        };
        match self.hook.transform_text(
            &cx,
            None,
            TextKind::Notification,
            &String::from_utf8_lossy(payload),
        ) {
            None => Ok(frame.raw.clone()),
            Some(new) => Ok(backend::build_notification(pid, channel, new.as_bytes())),
        }
    }
}

impl<H: Transform> Session<H> {
    /// A RowDescription as the client sees it: each field name through
    /// [`Transform::transform_text`] ([`TextKind::ColumnName`]), re-encoded with
    /// every other byte of its fields unchanged when a name changed. Once
    /// per result, never per row; the columns the session and the hook
    /// work with keep the backend's names.
    pub(super) fn transform_row_description(
        &self,
        frame: Frame,
        cmd: Option<CommandId>,
        plan: Option<&H::Plan>,
    ) -> Result<Bytes, SessionError> {
        let Some(principal) = self.principal.as_ref() else {
            return Ok(frame.raw);
        };
        let cx = Context {
            session: self.id,
            command: cmd,
            principal: principal.as_ref(),
        };
        let body = frame.body();
        let described = backend::row_fields(body).map_err(SessionError::Backend)?;
        let mut changed = false;
        let mut fields: Vec<(&[u8], Option<String>, &[u8])> = Vec::with_capacity(described.len());
        for (name, rest) in described {
            let new = self.hook.transform_text(
                &cx,
                plan,
                TextKind::ColumnName,
                &String::from_utf8_lossy(name),
            );
            changed |= new.is_some();
            fields.push((name, new, rest));
        }
        if !changed {
            return Ok(frame.raw);
        }
        Ok(backend::build_row_description(fields.iter().map(
            |(name, new, rest)| match new {
                Some(new) => (new.as_bytes(), *rest),
                None => (*name, *rest),
            },
        )))
    }

    /// A checked ParameterStatus as the client sees it: its value through
    /// [`Transform::transform_text`] ([`TextKind::ParameterStatus`]).
    pub(super) fn transform_parameter_status(
        &self,
        frame: Frame,
        name: &[u8],
        value: &[u8],
    ) -> Bytes {
        let Some(principal) = self.principal.as_ref() else {
            return frame.raw;
        };
        let cx = Context {
            session: self.id,
            command: None,
            principal: principal.as_ref(),
        };
        match self.hook.transform_text(
            &cx,
            None,
            TextKind::ParameterStatus(lossy(name)),
            &String::from_utf8_lossy(value),
        ) {
            None => frame.raw,
            Some(new) => backend::build_parameter_status(name, new.as_bytes()),
        }
    }
}
