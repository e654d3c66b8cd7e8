//! Walks a parsed statement into [`StatementFacts`].
//!
//! Two passes over the tree:
//! - a generic pass with sqlparser's `Visitor` that sees every statement
//!   (nested ones included), every table factor and every function call,
//!   wherever they are; it finds the objects written, the objects read, the
//!   functions and the risks;
//! - a scoped pass over queries that resolves column references to tables
//!   and records how each column is used.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, CopyTarget, Expr, FromTable, Function, FunctionArg, FunctionArgExpr, GrantObjects,
    GroupByExpr, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, ObjectType,
    OrderByKind, Query, Reset, Select, SelectItem, SelectItemQualifiedWildcardKind, Set, SetExpr,
    Statement, TableFactor, TableObject, TableWithJoins, UpdateTableFromKind, Visit, Visitor,
};

use super::Analyzer;
use super::classify::fold;
use crate::facts::{
    ColumnAccess, ColumnUse, Risk, SearchPathChange, StatementFacts, StatementKind,
};

/// Analyses one parsed statement.
pub(crate) fn walk_statement(analyzer: &Analyzer, stmt: &Statement) -> StatementFacts {
    let mut g = Generic {
        an: analyzer,
        depth: 0,
        kind: StatementKind::Other,
        nested: BTreeSet::new(),
        relations: BTreeMap::new(),
        targets: BTreeMap::new(),
        writes: BTreeSet::new(),
        functions: BTreeSet::new(),
        risks: BTreeSet::new(),
        parameters: BTreeSet::new(),
        ctes: Vec::new(),
        not_read_only: false,
        explain_analyze: false,
        harmless_session_op: false,
        search_path: None,
    };
    let _ = stmt.visit(&mut g);
    if g.kind == StatementKind::Other {
        // A statement the taxonomy does not know is never harmless.
        g.risks.insert(Risk::OpaqueCode);
    }
    let read_only = g.read_only();
    let mut c = Columns {
        an: analyzer,
        columns: BTreeMap::new(),
        extra_reads: BTreeSet::new(),
    };
    c.statement(stmt, &[]);

    let mut reads: BTreeSet<String> = g
        .relations
        .iter()
        .filter(|(name, n)| **n > g.targets.get(*name).copied().unwrap_or(0))
        .map(|(k, _)| k.clone())
        .collect();
    reads.extend(c.extra_reads);
    StatementFacts {
        kind: g.kind,
        nested_kinds: g.nested.into_iter().collect(),
        unparsed: false,
        parse_error: None,
        reads: reads.into_iter().collect(),
        writes: g.writes.into_iter().collect(),
        columns: c
            .columns
            .into_iter()
            .map(|((table, column), uses)| ColumnAccess {
                table,
                column,
                uses: uses.into_iter().collect(),
            })
            .collect(),
        functions: g.functions.into_iter().collect(),
        risks: g.risks.into_iter().collect(),
        parameters: g.parameters.into_iter().collect(),
        read_only,
        search_path: g.search_path,
        unqualified: Vec::new(),
    }
}

fn ident_fold(i: &Ident) -> String {
    fold(&i.value, i.quote_style)
}

/// The folded parts of an object name.
fn name_parts(n: &ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => ident_fold(i),
            ObjectNamePart::Function(f) => fold(&f.name.value, f.name.quote_style),
        })
        .collect()
}

/// A folded name, as written (functions keep no default schema).
fn plain_name(n: &ObjectName) -> String {
    name_parts(n).join(".")
}

/// A folded, schema-qualified relation name (unqualified names get the
/// schema the analyzer resolves them to, the default schema unless a
/// search_path says otherwise; `db.schema.table` keeps all three parts).
fn qualified(an: &Analyzer, parts: &[String]) -> String {
    match parts {
        [one] => format!("{}.{one}", an.schema_of(one)),
        _ => parts.join("."),
    }
}

fn qualified_name(an: &Analyzer, n: &ObjectName) -> String {
    qualified(an, &name_parts(n))
}

/// True when a `SET`/`RESET` names `search_path` (as its last part: a
/// qualified name is not the real parameter, but is not trusted either).
fn names_search_path(n: &ObjectName) -> bool {
    name_parts(n)
        .last()
        .is_some_and(|p| p.eq_ignore_ascii_case("search_path"))
}

/// The list a `SET search_path = …` sets, as PostgreSQL reads it: unquoted
/// names folded, quoted names and plain strings as written; `DEFAULT`
/// alone resets. Anything else (escapes, numbers, expressions) is unknown.
fn search_path_values(values: &[Expr]) -> SearchPathChange {
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        match v {
            Expr::Identifier(i)
                if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") =>
            {
                if values.len() != 1 {
                    return SearchPathChange::Unknown;
                }
                return SearchPathChange::Reset;
            }
            Expr::Identifier(i) if matches!(i.quote_style, None | Some('"')) => {
                out.push(ident_fold(i));
            }
            Expr::Value(v) => match &v.value {
                sqlparser::ast::Value::SingleQuotedString(s) => out.push(s.clone()),
                _ => return SearchPathChange::Unknown,
            },
            _ => return SearchPathChange::Unknown,
        }
    }
    if out.is_empty() || out.iter().any(String::is_empty) {
        return SearchPathChange::Unknown;
    }
    SearchPathChange::Set(out)
}

fn statement_kind(s: &Statement) -> StatementKind {
    use StatementKind as K;
    match s {
        Statement::Query(_) => K::Select,
        Statement::Insert(_) => K::Insert,
        Statement::Update(_) => K::Update,
        Statement::Delete(_) => K::Delete,
        Statement::Merge(_) => K::Merge,
        Statement::Truncate(_) => K::Truncate,
        Statement::Copy { .. } => K::Copy,
        Statement::CreateFunction(_) | Statement::CreateProcedure { .. } => K::FunctionDefinition,
        Statement::CreateRole(_)
        | Statement::AlterRole { .. }
        | Statement::CreateUser(_)
        | Statement::AlterUser(_) => K::RoleChange,
        Statement::Drop {
            object_type: ObjectType::Role | ObjectType::User,
            ..
        } => K::RoleChange,
        Statement::CreateView(_)
        | Statement::CreateTable(_)
        | Statement::CreateVirtualTable { .. }
        | Statement::CreateIndex(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateTrigger(_)
        | Statement::CreateExtension(_)
        | Statement::CreateSequence { .. }
        | Statement::CreateType { .. }
        | Statement::CreateDomain(_)
        | Statement::CreatePolicy(_)
        | Statement::CreateServer(_)
        | Statement::CreateOperator(_)
        | Statement::CreateCollation(_) => K::Create,
        Statement::AlterTable(_)
        | Statement::AlterSchema(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView { .. }
        | Statement::AlterFunction(_)
        | Statement::AlterType(_)
        | Statement::AlterPolicy(_)
        | Statement::AlterOperator(_)
        | Statement::AlterCollation(_)
        | Statement::Comment { .. }
        | Statement::RenameTable(_) => K::Alter,
        Statement::Drop { .. }
        | Statement::DropFunction(_)
        | Statement::DropDomain(_)
        | Statement::DropProcedure { .. }
        | Statement::DropPolicy(_)
        | Statement::DropTrigger(_)
        | Statement::DropExtension(_)
        | Statement::DropOperator(_) => K::Drop,
        Statement::Grant(_) => K::Grant,
        Statement::Revoke(_) => K::Revoke,
        Statement::Set(_) => K::Set,
        Statement::Reset(_) => K::Reset,
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => K::Transaction,
        Statement::Call(_) => K::Call,
        Statement::Explain { .. } | Statement::ExplainTable { .. } => K::Explain,
        Statement::Prepare { .. } => K::Prepare,
        Statement::Execute { .. } => K::Execute,
        Statement::Vacuum(_) | Statement::Analyze(_) => K::Maintenance,
        Statement::ShowVariable { .. } | Statement::ShowVariables { .. } => K::Show,
        Statement::Lock(_) | Statement::LockTables { .. } => K::Lock,
        Statement::NOTIFY { .. } => K::Notify,
        Statement::LISTEN { .. } | Statement::UNLISTEN { .. } => K::Listen,
        Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } => K::Cursor,
        Statement::Discard { .. } => K::Discard,
        Statement::Load { .. } => K::Load,
        Statement::Deallocate { .. } => K::Deallocate,
        Statement::CreateTextSearch(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::CreateOperatorClass(_) => K::Create,
        Statement::AlterTextSearch(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_) => K::Alter,
        Statement::DropOperatorFamily(_) | Statement::DropOperatorClass(_) => K::Drop,
        _ => K::Other,
    }
}

/// The generic pass.
struct Generic<'a> {
    an: &'a Analyzer,
    depth: usize,
    kind: StatementKind,
    nested: BTreeSet<StatementKind>,
    /// Every relation in a table factor, with how often it occurs.
    relations: BTreeMap<String, usize>,
    /// How often each relation occurs as the target of a write.
    targets: BTreeMap<String, usize>,
    writes: BTreeSet<String>,
    functions: BTreeSet<String>,
    risks: BTreeSet<Risk>,
    parameters: BTreeSet<String>,
    /// CTE names in scope, one frame per query.
    ctes: Vec<Vec<String>>,
    /// Something seen that can change state: a row lock, `SELECT … INTO`,
    /// a function not known to be read-only, a custom operator, `READ WRITE`.
    not_read_only: bool,
    /// `EXPLAIN ANALYZE` (the explained statement runs).
    explain_analyze: bool,
    /// A cursor `FETCH`/`MOVE`/`CLOSE`, `DISCARD PLANS`, `COPY … TO STDOUT`:
    /// touches only the session's own state or its output.
    harmless_session_op: bool,
    /// What the statement does to the session's search_path, as far as
    /// `SET`, `RESET` and `DISCARD` say.
    search_path: Option<SearchPathChange>,
}

impl Generic<'_> {
    fn function(&mut self, name: &ObjectName) {
        let n = plain_name(name);
        if self.an.is_dangerous(&n) {
            self.risks.insert(Risk::DangerousFunction);
        }
        if !self.an.is_read_only_function(&n) {
            self.not_read_only = true;
        }
        self.functions.insert(n);
    }

    /// The body of a query-like statement changes nothing: no object
    /// written, no risk, nothing but `SELECT`s nested, every function known
    /// to be read-only, no row lock or `INTO`.
    fn body_read_only(&self) -> bool {
        self.writes.is_empty()
            && self.risks.is_empty()
            && !self.not_read_only
            && self.nested.iter().all(|k| *k == StatementKind::Select)
    }

    fn read_only(&self) -> bool {
        use StatementKind as K;
        match self.kind {
            K::Select | K::Prepare => self.body_read_only(),
            K::Explain if self.explain_analyze => self.body_read_only(),
            // Without ANALYZE the explained statement is only planned.
            K::Explain => true,
            K::Cursor => self.harmless_session_op || self.body_read_only(),
            K::Show | K::Listen | K::Deallocate => true,
            K::Discard => self.harmless_session_op,
            // COPY … TO STDOUT of a table or of a read-only query.
            K::Copy => self.harmless_session_op && self.body_read_only(),
            K::Transaction | K::Set | K::Reset => !self.not_read_only && self.risks.is_empty(),
            _ => false,
        }
    }

    fn is_cte(&self, n: &ObjectName) -> bool {
        match name_parts(n).as_slice() {
            [one] => self.ctes.iter().any(|f| f.iter().any(|c| c == one)),
            _ => false,
        }
    }

    fn write(&mut self, n: &ObjectName) {
        let q = qualified_name(self.an, n);
        self.writes.insert(q);
    }

    /// A write target that also appears as a table factor (UPDATE, DELETE, MERGE).
    fn target_factor(&mut self, tf: &TableFactor) {
        if let TableFactor::Table {
            name, args: None, ..
        } = tf
        {
            if self.is_cte(name) {
                return;
            }
            let q = qualified_name(self.an, name);
            *self.targets.entry(q.clone()).or_default() += 1;
            self.writes.insert(q);
        }
    }

    fn read(&mut self, n: &ObjectName) {
        let q = qualified_name(self.an, n);
        *self.relations.entry(q).or_default() += 1;
    }

    /// Records a change of the search_path; two in one statement (or a
    /// nested one) make it unknown.
    fn note_search_path(&mut self, change: SearchPathChange) {
        self.search_path = Some(match self.search_path.take() {
            None => change,
            Some(_) => SearchPathChange::Unknown,
        });
    }

    fn set_param(&mut self, name: &str) {
        let lower = name.to_ascii_lowercase();
        if self.an.is_unsafe_parameter(&lower) {
            self.risks.insert(Risk::SetsUnsafeParameter);
        }
        if lower == "role" || lower == "session_authorization" {
            self.risks.insert(Risk::ChangesRoleOrPrivilege);
        }
        self.parameters.insert(lower);
    }

    fn set_param_name(&mut self, n: &ObjectName) {
        let parts = name_parts(n);
        if let Some(last) = parts.last() {
            // `SET x.y = …` is a custom parameter; check both the full and last part.
            let full = parts.join(".");
            if parts.len() > 1 && self.an.is_unsafe_parameter(last) {
                self.risks.insert(Risk::SetsUnsafeParameter);
            }
            if parts.len() > 1 {
                // A custom parameter (`app.tenant_id`) may be what row-level
                // security policies read: changing it is not read-only.
                self.not_read_only = true;
            }
            self.set_param(&full);
        }
    }

    /// `READ WRITE` undoes a read-only transaction a deployment may rely on.
    fn transaction_modes(&mut self, modes: &[sqlparser::ast::TransactionMode]) {
        if modes.iter().any(|m| {
            matches!(
                m,
                sqlparser::ast::TransactionMode::AccessMode(
                    sqlparser::ast::TransactionAccessMode::ReadWrite
                )
            )
        }) {
            self.not_read_only = true;
        }
    }

    fn grant_objects(&mut self, objects: &GrantObjects) {
        match objects {
            GrantObjects::Tables(v) | GrantObjects::Views(v) | GrantObjects::Sequences(v) => {
                for n in v {
                    self.write(n);
                }
            }
            GrantObjects::Schemas(v) | GrantObjects::Databases(v) => {
                for n in v {
                    self.writes.insert(plain_name(n));
                }
            }
            GrantObjects::AllTablesInSchema { schemas }
            | GrantObjects::AllSequencesInSchema { schemas }
            | GrantObjects::AllViewsInSchema { schemas }
            | GrantObjects::AllFunctionsInSchema { schemas } => {
                for n in schemas {
                    self.writes.insert(format!("{}.*", plain_name(n)));
                }
            }
            GrantObjects::Function { name, .. } | GrantObjects::Procedure { name, .. } => {
                self.writes.insert(plain_name(name));
            }
            _ => {}
        }
    }

    fn statement_facts(&mut self, s: &Statement) {
        match s {
            Statement::Insert(ins) => match &ins.table {
                TableObject::TableName(n) => self.write(n),
                TableObject::TableFunction(f) => self.function(&f.name),
                TableObject::TableQuery(_) => {}
            },
            Statement::Update(u) => {
                self.target_factor(&u.table.relation);
                if is_no_where(u.selection.as_ref()) {
                    self.risks.insert(Risk::NoWhere);
                }
            }
            Statement::Delete(d) => {
                for n in &d.tables {
                    self.write(n);
                }
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
                for twj in from {
                    self.target_factor(&twj.relation);
                }
                if is_no_where(d.selection.as_ref()) {
                    self.risks.insert(Risk::NoWhere);
                }
            }
            Statement::Merge(m) => self.target_factor(&m.table),
            Statement::Truncate(t) => {
                for n in &t.table_names {
                    self.write(&n.name);
                }
            }
            Statement::Copy {
                source, to, target, ..
            } => {
                if let CopySource::Table { table_name, .. } = source {
                    if *to {
                        self.read(table_name)
                    } else {
                        self.write(table_name)
                    }
                }
                if *to && matches!(target, CopyTarget::Stdout) {
                    self.harmless_session_op = true;
                }
                match target {
                    CopyTarget::Program { .. } => {
                        self.risks.insert(Risk::CopyProgram);
                    }
                    CopyTarget::File { .. } => {
                        self.risks.insert(Risk::CopyFile);
                    }
                    CopyTarget::Stdin | CopyTarget::Stdout => {}
                }
            }
            Statement::Drop {
                object_type,
                names,
                table,
                ..
            } => {
                if matches!(object_type, ObjectType::Role | ObjectType::User) {
                    self.risks.insert(Risk::ChangesRoleOrPrivilege);
                } else if matches!(object_type, ObjectType::Schema | ObjectType::Database) {
                    for n in names {
                        self.writes.insert(plain_name(n));
                    }
                } else {
                    for n in names {
                        self.write(n);
                    }
                }
                if let Some(t) = table {
                    self.write(t);
                }
            }
            Statement::DropFunction(df) => {
                for f in &df.func_desc {
                    self.writes.insert(plain_name(&f.name));
                }
            }
            Statement::DropProcedure { proc_desc, .. } => {
                for f in proc_desc {
                    self.writes.insert(plain_name(&f.name));
                }
            }
            Statement::DropTrigger(dt) => {
                if let Some(t) = &dt.table_name {
                    self.write(t);
                }
            }
            Statement::DropPolicy(dp) => self.write(&dp.table_name),
            Statement::CreateTable(ct) => self.write(&ct.name),
            Statement::CreateView(cv) => self.write(&cv.name),
            Statement::CreateIndex(ci) => self.write(&ci.table_name),
            Statement::CreateTrigger(ct) => {
                self.write(&ct.table_name);
                if let Some(body) = &ct.exec_body {
                    self.function(&body.func_desc.name);
                }
            }
            Statement::CreatePolicy(cp) => self.write(&cp.table_name),
            Statement::CreateTextSearch(c) => {
                self.writes.insert(plain_name(&c.name));
            }
            Statement::AlterTextSearch(a) => {
                self.writes.insert(plain_name(&a.name));
            }
            Statement::AlterTable(at) => self.write(&at.name),
            Statement::AlterIndex { name, .. } | Statement::AlterView { name, .. } => {
                self.write(name)
            }
            Statement::Comment { object_name, .. } => self.write(object_name),
            Statement::RenameTable(v) => {
                for r in v {
                    self.write(&r.old_name);
                    self.write(&r.new_name);
                }
            }
            Statement::CreateFunction(_)
            | Statement::CreateProcedure { .. }
            | Statement::CreateExtension(_) => {
                self.risks.insert(Risk::OpaqueCode);
            }
            Statement::AlterFunction(_) => {
                self.risks.insert(Risk::OpaqueCode);
            }
            Statement::Load { .. } | Statement::Install { .. } => {
                self.risks.insert(Risk::OpaqueCode);
            }
            Statement::Execute { .. } => {
                // In PostgreSQL the name of a prepared statement: what it runs
                // was decided at PREPARE and is not visible here.
                self.risks.insert(Risk::OpaqueCode);
            }
            Statement::CreateRole(_)
            | Statement::AlterRole { .. }
            | Statement::CreateUser(_)
            | Statement::AlterUser(_) => {
                self.risks.insert(Risk::ChangesRoleOrPrivilege);
            }
            Statement::Grant(g) => {
                self.risks.insert(Risk::ChangesRoleOrPrivilege);
                if let Some(o) = &g.objects {
                    self.grant_objects(o);
                }
            }
            Statement::Revoke(r) => {
                self.risks.insert(Risk::ChangesRoleOrPrivilege);
                if let Some(o) = &r.objects {
                    self.grant_objects(o);
                }
            }
            Statement::Set(set) => match set {
                Set::SingleAssignment {
                    scope,
                    hivevar,
                    variable,
                    values,
                } => {
                    self.set_param_name(variable);
                    if names_search_path(variable) {
                        let change = if *hivevar
                            || matches!(scope, Some(sqlparser::ast::ContextModifier::Local))
                            || variable.0.len() != 1
                        {
                            // `SET LOCAL` lasts until the transaction ends.
                            SearchPathChange::Unknown
                        } else {
                            search_path_values(values)
                        };
                        self.note_search_path(change);
                    }
                }
                Set::ParenthesizedAssignments { variables, .. } => {
                    for v in variables {
                        self.set_param_name(v);
                        if names_search_path(v) {
                            self.note_search_path(SearchPathChange::Unknown);
                        }
                    }
                }
                Set::MultipleAssignments { assignments } => {
                    for a in assignments {
                        self.set_param_name(&a.name);
                        if names_search_path(&a.name) {
                            self.note_search_path(SearchPathChange::Unknown);
                        }
                    }
                }
                Set::SetSessionAuthorization(_) => self.set_param("session_authorization"),
                Set::SetSessionParam(_) => self.set_param("session_param"),
                Set::SetRole { .. } => self.set_param("role"),
                Set::SetTimeZone { .. } => self.set_param("timezone"),
                Set::SetNames { .. } | Set::SetNamesDefault {} => self.set_param("client_encoding"),
                Set::SetTransaction { modes, .. } => {
                    self.transaction_modes(modes);
                    self.set_param("transaction")
                }
            },
            Statement::Reset(r) => match &r.reset {
                Reset::ALL => {
                    self.risks.insert(Risk::SetsUnsafeParameter);
                    self.parameters.insert("all".into());
                    self.note_search_path(SearchPathChange::Reset);
                }
                Reset::SessionAuthorization => self.set_param("session_authorization"),
                Reset::ConfigurationParameter(n) => {
                    self.set_param_name(n);
                    if names_search_path(n) {
                        self.note_search_path(if n.0.len() == 1 {
                            SearchPathChange::Reset
                        } else {
                            SearchPathChange::Unknown
                        });
                    }
                }
            },
            Statement::Call(f) => self.function(&f.name),
            Statement::Vacuum(v) => {
                if let Some(t) = &v.table_name {
                    self.write(t);
                }
            }
            Statement::Analyze(a) => {
                if let Some(t) = &a.table_name {
                    self.read(t);
                }
            }
            Statement::ExplainTable { table_name, .. } => self.read(table_name),
            Statement::Explain {
                analyze, options, ..
            } => {
                let in_options = options.iter().flatten().any(|o| {
                    let name = o.name.value.to_ascii_lowercase();
                    (name == "analyze" || name == "analyse")
                        && !o.arg.as_ref().is_some_and(|a| {
                            let t = a.to_string().to_ascii_lowercase();
                            matches!(t.as_str(), "false" | "off" | "0" | "'false'" | "'off'")
                        })
                });
                if *analyze || in_options {
                    self.explain_analyze = true;
                }
            }
            Statement::Fetch { .. } | Statement::Close { .. } => {
                self.harmless_session_op = true;
            }
            Statement::Discard { object_type } => match object_type {
                sqlparser::ast::DiscardObject::PLANS => self.harmless_session_op = true,
                sqlparser::ast::DiscardObject::ALL => {
                    self.note_search_path(SearchPathChange::Reset);
                }
                _ => {}
            },
            Statement::StartTransaction { modes, .. } => self.transaction_modes(modes),
            Statement::Lock(l) => {
                for t in &l.tables {
                    self.write(&t.name);
                }
            }
            _ => {}
        }
    }
}

/// True when a WHERE clause is missing or cannot restrict rows: it names no
/// column, or it is `… OR <expression naming no column>`.
fn is_no_where(selection: Option<&Expr>) -> bool {
    match selection {
        None => true,
        Some(e) => names_no_column(e) || or_constant(e) || super::fold::is_tautology(e),
    }
}

fn or_constant(e: &Expr) -> bool {
    match e {
        Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::Or,
            right,
        } => {
            names_no_column(left)
                || names_no_column(right)
                || or_constant(left)
                || or_constant(right)
        }
        Expr::Nested(inner) => or_constant(inner),
        _ => false,
    }
}

fn names_no_column(e: &Expr) -> bool {
    let found = sqlparser::ast::visit_expressions(e, |x| match x {
        Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::Subquery(_)
        | Expr::Exists { .. }
        | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    found.is_continue()
}

impl Visitor for Generic<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        let kind = statement_kind(s);
        if self.depth == 0 {
            self.kind = kind;
        } else {
            self.nested.insert(kind);
        }
        self.depth += 1;
        self.statement_facts(s);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _s: &Statement) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let names = q
            .with
            .as_ref()
            .map(|w| {
                w.cte_tables
                    .iter()
                    .map(|c| ident_fold(&c.alias.name))
                    .collect()
            })
            .unwrap_or_default();
        self.ctes.push(names);
        if !q.locks.is_empty() {
            // FOR UPDATE / FOR SHARE: row locks are writes.
            self.not_read_only = true;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.ctes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if let Some(into) = &s.into {
            // SELECT … INTO new_table creates and fills a table.
            for t in &into.targets {
                if let Some(parts) = expr_name_parts(t) {
                    let q = qualified(self.an, &parts);
                    self.writes.insert(q);
                }
            }
            self.nested.insert(StatementKind::Create);
            self.not_read_only = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.function(name),
            TableFactor::Table {
                name, args: None, ..
            } if !self.is_cte(name) => self.read(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => self.function(&f.name),
            Expr::BinaryOp {
                op: sqlparser::ast::BinaryOperator::PGCustomBinaryOperator(parts),
                ..
            } if parts.first().map(String::as_str) == Some("pg_catalog") && parts.len() == 2 => {
                // `OPERATOR(pg_catalog.~)`: a built-in operator, as psql writes them.
            }
            Expr::BinaryOp {
                op:
                    sqlparser::ast::BinaryOperator::Custom(_)
                    | sqlparser::ast::BinaryOperator::PGCustomBinaryOperator(_),
                ..
            } => {
                // A user-defined operator runs a function we cannot see.
                self.not_read_only = true;
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn expr_name_parts(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Identifier(i) => Some(vec![ident_fold(i)]),
        Expr::CompoundIdentifier(v) => Some(v.iter().map(ident_fold).collect()),
        _ => None,
    }
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "xmlagg",
    "any_value",
    "range_agg",
    "range_intersect_agg",
];

fn is_aggregate(f: &Function) -> bool {
    if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
        return true;
    }
    let name = plain_name(&f.name);
    let base = name.rsplit('.').next().unwrap_or(&name);
    AGGREGATES.contains(&base)
}

/// One FROM-clause entry visible to column references.
#[derive(Debug, Clone)]
struct Binding {
    /// The name references use (alias, or the table's own name).
    name: String,
    /// The schema-qualified table, when the entry is a base table.
    table: Option<String>,
    /// The table's unqualified name, also usable as a qualifier when unaliased.
    bare: Option<String>,
}

type Scope = Vec<Binding>;

/// The scoped column pass.
struct Columns<'a> {
    an: &'a Analyzer,
    columns: BTreeMap<(Option<String>, String), BTreeSet<ColumnUse>>,
    extra_reads: BTreeSet<String>,
}

impl Columns<'_> {
    fn record(&mut self, table: Option<String>, column: String, uses: &[ColumnUse]) {
        let set = self.columns.entry((table, column)).or_default();
        set.extend(uses.iter().copied());
    }

    /// Resolves a column reference against the scopes (innermost last).
    fn resolve(&mut self, parts: &[String], scopes: &[Scope], uses: &[ColumnUse]) {
        match parts {
            [] => {}
            [col] => {
                // Innermost scope with tables decides; ambiguous → every table.
                for scope in scopes.iter().rev() {
                    let tables: Vec<Option<String>> =
                        scope.iter().map(|b| b.table.clone()).collect();
                    if tables.is_empty() {
                        continue;
                    }
                    if tables.iter().all(Option::is_none) {
                        self.record(None, col.clone(), uses);
                    } else {
                        for t in tables.into_iter().flatten() {
                            self.record(Some(t), col.clone(), uses);
                        }
                    }
                    return;
                }
                self.record(None, col.clone(), uses);
            }
            [qual @ .., col] => {
                if let [q] = qual {
                    for scope in scopes.iter().rev() {
                        if let Some(b) = scope.iter().find(|b| {
                            &b.name == q || (b.name == *q) || b.bare.as_deref() == Some(q.as_str())
                        }) {
                            let t = b.table.clone();
                            self.record(t, col.clone(), uses);
                            return;
                        }
                    }
                }
                let t = qualified(self.an, qual);
                self.record(Some(t), col.clone(), uses);
            }
        }
    }

    fn statement(&mut self, s: &Statement, outer: &[Scope]) {
        match s {
            Statement::Query(q) => self.query(q, outer),
            Statement::Insert(ins) => {
                if let Some(src) = &ins.source {
                    self.query(src, outer);
                }
                if let Some(ret) = &ins.returning {
                    let scope = match &ins.table {
                        TableObject::TableName(n) => vec![self.table_binding(n, None)],
                        _ => Vec::new(),
                    };
                    self.projection(ret, &scope, outer);
                }
            }
            Statement::Update(u) => {
                let mut scope = Vec::new();
                self.bind_from(&u.table, &mut scope, outer);
                if let Some(UpdateTableFromKind::BeforeSet(f) | UpdateTableFromKind::AfterSet(f)) =
                    &u.from
                {
                    for twj in f {
                        self.bind_from(twj, &mut scope, outer);
                    }
                }
                let scopes = with_scope(outer, scope);
                for a in &u.assignments {
                    self.expr(&a.value, &scopes, ColumnUse::Expression);
                }
                if let Some(w) = &u.selection {
                    self.expr(w, &scopes, ColumnUse::Predicate);
                }
                if let (Some(ret), Some(last)) = (&u.returning, scopes.last()) {
                    self.projection(ret, last, outer);
                }
            }
            Statement::Delete(d) => {
                let mut scope = Vec::new();
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
                for twj in from {
                    self.bind_from(twj, &mut scope, outer);
                }
                if let Some(using) = &d.using {
                    for twj in using {
                        self.bind_from(twj, &mut scope, outer);
                    }
                }
                let scopes = with_scope(outer, scope);
                if let Some(w) = &d.selection {
                    self.expr(w, &scopes, ColumnUse::Predicate);
                }
                if let (Some(ret), Some(last)) = (&d.returning, scopes.last()) {
                    self.projection(ret, last, outer);
                }
            }
            Statement::Merge(m) => {
                let mut scope = Vec::new();
                self.factor(&m.table, &mut scope, outer);
                self.factor(&m.source, &mut scope, outer);
                let scopes = with_scope(outer, scope);
                self.expr(&m.on, &scopes, ColumnUse::Predicate);
            }
            Statement::Explain { statement, .. } | Statement::Prepare { statement, .. } => {
                self.statement(statement, outer)
            }
            Statement::CreateTable(ct) => {
                if let Some(q) = &ct.query {
                    self.query(q, outer);
                }
            }
            Statement::CreateView(cv) => self.query(&cv.query, outer),
            Statement::Copy {
                source: CopySource::Query(q),
                ..
            } => self.query(q, outer),
            Statement::Copy {
                source:
                    CopySource::Table {
                        table_name,
                        columns,
                    },
                to: true,
                ..
            } => {
                let t = qualified_name(self.an, table_name);
                if columns.is_empty() {
                    self.record(Some(t), "*".into(), &[ColumnUse::Plain]);
                } else {
                    for c in columns {
                        self.record(Some(t.clone()), ident_fold(c), &[ColumnUse::Plain]);
                    }
                }
            }
            _ => {}
        }
    }

    fn table_binding(&self, n: &ObjectName, alias: Option<&Ident>) -> Binding {
        let parts = name_parts(n);
        let bare = parts.last().cloned();
        let table = qualified(self.an, &parts);
        match alias {
            Some(a) => Binding {
                name: ident_fold(a),
                table: Some(table),
                bare: None,
            },
            None => Binding {
                name: bare.clone().unwrap_or_default(),
                table: Some(table),
                bare,
            },
        }
    }

    fn query(&mut self, q: &Query, outer: &[Scope]) {
        let mut cte_names = Vec::new();
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.query(&cte.query, outer);
                cte_names.push(ident_fold(&cte.alias.name));
            }
        }
        let ctx = Ctx { ctes: cte_names };
        let scope = self.set_expr(&q.body, outer, &ctx);
        if let Some(ob) = &q.order_by
            && let OrderByKind::Expressions(exprs) = &ob.kind
        {
            let scopes = with_scope(outer, scope.unwrap_or_default());
            for o in exprs {
                self.expr(&o.expr, &scopes, ColumnUse::Predicate);
            }
        }
    }

    fn set_expr(&mut self, s: &SetExpr, outer: &[Scope], ctx: &Ctx) -> Option<Scope> {
        match s {
            SetExpr::Select(sel) => Some(self.select(sel, outer, ctx)),
            SetExpr::Query(q) => {
                self.query(q, outer);
                None
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left, outer, ctx);
                self.set_expr(right, outer, ctx);
                None
            }
            SetExpr::Values(v) => {
                for row in &v.rows {
                    for e in &row.content {
                        self.expr(e, outer, ColumnUse::Expression);
                    }
                }
                None
            }
            SetExpr::Insert(st)
            | SetExpr::Update(st)
            | SetExpr::Delete(st)
            | SetExpr::Merge(st) => {
                self.statement(st, outer);
                None
            }
            SetExpr::Table(t) => {
                // `TABLE name` reads every column of the table.
                if let Some(name) = &t.table_name {
                    let mut parts = Vec::new();
                    if let Some(s) = &t.schema_name {
                        parts.push(s.to_ascii_lowercase());
                    }
                    parts.push(name.to_ascii_lowercase());
                    if parts.len() == 1 && ctx.ctes.iter().any(|c| Some(c) == parts.first()) {
                        return None;
                    }
                    let q = qualified(self.an, &parts);
                    self.extra_reads.insert(q.clone());
                    self.record(Some(q), "*".into(), &[ColumnUse::Plain]);
                }
                None
            }
        }
    }

    fn select(&mut self, sel: &Select, outer: &[Scope], ctx: &Ctx) -> Scope {
        let mut scope = Vec::new();
        for twj in &sel.from {
            self.bind_from_ctx(twj, &mut scope, outer, ctx);
        }
        let scopes = with_scope(outer, scope.clone());
        self.projection(&sel.projection, &scope, outer);
        for e in [&sel.selection, &sel.having, &sel.qualify, &sel.prewhere]
            .into_iter()
            .flatten()
        {
            self.expr(e, &scopes, ColumnUse::Predicate);
        }
        if let GroupByExpr::Expressions(exprs, _) = &sel.group_by {
            for e in exprs {
                self.expr(e, &scopes, ColumnUse::Predicate);
            }
        }
        for o in &sel.sort_by {
            self.expr(&o.expr, &scopes, ColumnUse::Predicate);
        }
        scope
    }

    fn projection(&mut self, items: &[SelectItem], scope: &Scope, outer: &[Scope]) {
        let scopes = with_scope(outer, scope.clone());
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e)
                | SelectItem::ExprWithAlias { expr: e, .. }
                | SelectItem::ExprWithAliases { expr: e, .. } => match e {
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                        self.expr(e, &scopes, ColumnUse::Plain)
                    }
                    Expr::Nested(inner)
                        if matches!(**inner, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) =>
                    {
                        self.expr(e, &scopes, ColumnUse::Plain)
                    }
                    _ => self.expr(e, &scopes, ColumnUse::Expression),
                },
                SelectItem::Wildcard(_) => {
                    if scope.is_empty() {
                        self.record(None, "*".into(), &[ColumnUse::Plain]);
                    }
                    for b in scope {
                        let t = b.table.clone();
                        self.record(t, "*".into(), &[ColumnUse::Plain]);
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(n) => {
                        let mut parts = name_parts(n);
                        parts.push("*".into());
                        self.resolve(&parts, &scopes, &[ColumnUse::Plain]);
                    }
                    SelectItemQualifiedWildcardKind::Expr(e) => {
                        self.expr(e, &scopes, ColumnUse::Expression)
                    }
                },
            }
        }
    }

    fn bind_from(&mut self, twj: &TableWithJoins, scope: &mut Scope, outer: &[Scope]) {
        self.bind_from_ctx(twj, scope, outer, &Ctx { ctes: Vec::new() });
    }

    fn bind_from_ctx(
        &mut self,
        twj: &TableWithJoins,
        scope: &mut Scope,
        outer: &[Scope],
        ctx: &Ctx,
    ) {
        self.factor_ctx(&twj.relation, scope, outer, ctx);
        for j in &twj.joins {
            self.factor_ctx(&j.relation, scope, outer, ctx);
            if let Some(c) = join_constraint(&j.join_operator) {
                match c {
                    JoinConstraint::On(e) => {
                        let scopes = with_scope(outer, scope.clone());
                        self.expr(e, &scopes, ColumnUse::Predicate);
                    }
                    JoinConstraint::Using(cols) => {
                        let scopes = with_scope(outer, scope.clone());
                        for c in cols {
                            self.resolve(&name_parts(c), &scopes, &[ColumnUse::Predicate]);
                        }
                    }
                    JoinConstraint::Natural | JoinConstraint::None => {}
                }
            }
        }
    }

    fn factor(&mut self, tf: &TableFactor, scope: &mut Scope, outer: &[Scope]) {
        self.factor_ctx(tf, scope, outer, &Ctx { ctes: Vec::new() });
    }

    fn factor_ctx(&mut self, tf: &TableFactor, scope: &mut Scope, outer: &[Scope], ctx: &Ctx) {
        match tf {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let parts = name_parts(name);
                if let [one] = parts.as_slice()
                    && ctx.ctes.contains(one)
                {
                    let n = alias
                        .as_ref()
                        .map(|a| ident_fold(&a.name))
                        .unwrap_or_else(|| one.clone());
                    scope.push(Binding {
                        name: n,
                        table: None,
                        bare: None,
                    });
                    return;
                }
                scope.push(self.table_binding(name, alias.as_ref().map(|a| &a.name)));
            }
            TableFactor::Table {
                alias,
                args: Some(args),
                ..
            } => {
                for a in &args.args {
                    self.function_arg(a, outer);
                }
                push_alias(scope, alias.as_ref().map(|a| &a.name));
            }
            TableFactor::Function { args, alias, .. } => {
                for a in args {
                    self.function_arg(a, outer);
                }
                push_alias(scope, alias.as_ref().map(|a| &a.name));
            }
            TableFactor::Derived {
                subquery,
                alias,
                lateral,
                ..
            } => {
                if *lateral {
                    let scopes = with_scope(outer, scope.clone());
                    self.query(subquery, &scopes);
                } else {
                    self.query(subquery, outer);
                }
                push_alias(scope, alias.as_ref().map(|a| &a.name));
            }
            TableFactor::TableFunction { expr, alias } => {
                self.expr(expr, outer, ColumnUse::Expression);
                push_alias(scope, alias.as_ref().map(|a| &a.name));
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                for e in array_exprs {
                    self.expr(e, outer, ColumnUse::Expression);
                }
                push_alias(scope, alias.as_ref().map(|a| &a.name));
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.bind_from_ctx(table_with_joins, scope, outer, ctx),
            _ => {}
        }
    }

    fn function_arg(&mut self, a: &FunctionArg, outer: &[Scope]) {
        let (FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg)) = a;
        if let FunctionArgExpr::Expr(e) = arg {
            self.expr(e, outer, ColumnUse::Expression);
        }
    }

    fn expr(&mut self, e: &Expr, scopes: &[Scope], base: ColumnUse) {
        let mut v = ExprCols {
            cols: self,
            scopes,
            base,
            agg: 0,
            skip: 0,
        };
        let _ = e.visit(&mut v);
    }
}

struct Ctx {
    ctes: Vec<String>,
}

fn push_alias(scope: &mut Scope, alias: Option<&Ident>) {
    if let Some(a) = alias {
        scope.push(Binding {
            name: ident_fold(a),
            table: None,
            bare: None,
        });
    }
}

fn with_scope(outer: &[Scope], scope: Scope) -> Vec<Scope> {
    let mut v = outer.to_vec();
    v.push(scope);
    v
}

fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::Semi(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::Anti(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c)
        | JoinOperator::StraightJoin(c)
        | JoinOperator::AsOf { constraint: c, .. } => Some(c),
        _ => None,
    }
}

/// Finds the column references in one expression, with their use.
struct ExprCols<'c, 'a, 's> {
    cols: &'c mut Columns<'a>,
    scopes: &'s [Scope],
    base: ColumnUse,
    /// Depth of aggregate calls around the current node.
    agg: usize,
    /// Depth of subqueries around the current node (walked on their own).
    skip: usize,
}

impl Visitor for ExprCols<'_, '_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.skip == 0 {
            // A subquery: its own scope, with ours as the outer scopes.
            let scopes = self.scopes.to_vec();
            self.cols.query(q, &scopes);
        }
        self.skip += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.skip = self.skip.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.skip > 0 {
            return ControlFlow::Continue(());
        }
        match e {
            Expr::Function(f) if is_aggregate(f) => self.agg += 1,
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                if let Some(parts) = expr_name_parts(e) {
                    let uses: &[ColumnUse] = match (self.base, self.agg > 0) {
                        (ColumnUse::Predicate, true) => {
                            &[ColumnUse::Predicate, ColumnUse::Aggregate]
                        }
                        (ColumnUse::Predicate, false) => &[ColumnUse::Predicate],
                        (_, true) => &[ColumnUse::Aggregate],
                        (b, false) => match b {
                            ColumnUse::Plain => &[ColumnUse::Plain],
                            _ => &[ColumnUse::Expression],
                        },
                    };
                    self.cols.resolve(&parts, self.scopes, uses);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.skip == 0
            && let Expr::Function(f) = e
            && is_aggregate(f)
        {
            self.agg = self.agg.saturating_sub(1);
        }
        ControlFlow::Continue(())
    }
}
