//! The analysed facts of a command: what the policy matches and the gateway audits.

use serde::Serialize;

/// What kind of statement a SQL statement is.
///
/// `unparsed` statements get their kind from a keyword-level classifier, so the
/// kind of an unparsed statement is a best guess (see [`StatementFacts::unparsed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StatementKind {
    /// `SELECT`, `VALUES`, `TABLE`, `WITH … SELECT`.
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `MERGE`.
    Merge,
    /// `TRUNCATE`.
    Truncate,
    /// `COPY`.
    Copy,
    /// `CREATE` of a table, view, index, schema, extension, trigger, …
    Create,
    /// `ALTER` of an object (not of a role).
    Alter,
    /// `DROP` of an object (not of a role).
    Drop,
    /// `GRANT`, and `ALTER DEFAULT PRIVILEGES`.
    Grant,
    /// `REVOKE`.
    Revoke,
    /// `CREATE`/`ALTER`/`DROP` `ROLE`/`USER`/`GROUP`, `REASSIGN OWNED`.
    RoleChange,
    /// `SET` of a run-time parameter, a role or the session authorization.
    Set,
    /// `RESET`.
    Reset,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, savepoints.
    Transaction,
    /// `CALL` of a procedure.
    Call,
    /// An anonymous code block (`DO`).
    Do,
    /// `CREATE FUNCTION` or `CREATE PROCEDURE`.
    FunctionDefinition,
    /// `EXPLAIN` (the explained statement is walked as a nested statement).
    Explain,
    /// `PREPARE name AS …` (the prepared statement is walked as a nested statement).
    Prepare,
    /// `EXECUTE` of a prepared statement (what it runs is not visible here).
    Execute,
    /// `VACUUM`, `ANALYZE`, `CLUSTER`, `REINDEX`, `REFRESH MATERIALIZED VIEW`.
    Maintenance,
    /// `SHOW` of a run-time parameter.
    Show,
    /// `LOCK` of tables (the tables are in `writes`: other sessions are blocked).
    Lock,
    /// `NOTIFY` (a message to every session listening on the channel).
    Notify,
    /// `LISTEN` and `UNLISTEN`.
    Listen,
    /// Cursors: `DECLARE`, `FETCH`, `MOVE`, `CLOSE` (a `DECLARE`'s query is
    /// walked as a nested statement).
    Cursor,
    /// Two-phase commit: `PREPARE TRANSACTION`, `COMMIT PREPARED`, `ROLLBACK PREPARED`.
    TwoPhase,
    /// `CHECKPOINT` (a server-wide flush of dirty buffers).
    Checkpoint,
    /// `DISCARD` of session state (`ALL`, `PLANS`, `SEQUENCES`, `TEMP`).
    Discard,
    /// `LOAD` of a shared library into the server process.
    Load,
    /// `DEALLOCATE` of a prepared statement.
    Deallocate,
    /// A statement the analysis does not know. Never harmless: it carries
    /// [`Risk::OpaqueCode`] and is never `read_only`.
    Other,
}

impl StatementKind {
    /// The name used in policies and in the JSON facts (`select`, `role_change`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Merge => "merge",
            Self::Truncate => "truncate",
            Self::Copy => "copy",
            Self::Create => "create",
            Self::Alter => "alter",
            Self::Drop => "drop",
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::RoleChange => "role_change",
            Self::Set => "set",
            Self::Reset => "reset",
            Self::Transaction => "transaction",
            Self::Call => "call",
            Self::Do => "do",
            Self::FunctionDefinition => "function_definition",
            Self::Explain => "explain",
            Self::Prepare => "prepare",
            Self::Execute => "execute",
            Self::Maintenance => "maintenance",
            Self::Show => "show",
            Self::Lock => "lock",
            Self::Notify => "notify",
            Self::Listen => "listen",
            Self::Cursor => "cursor",
            Self::TwoPhase => "two_phase",
            Self::Checkpoint => "checkpoint",
            Self::Discard => "discard",
            Self::Load => "load",
            Self::Deallocate => "deallocate",
            Self::Other => "other",
        }
    }

    /// Every kind, for validating policy files.
    pub(crate) const ALL: [StatementKind; 34] = [
        Self::Select,
        Self::Insert,
        Self::Update,
        Self::Delete,
        Self::Merge,
        Self::Truncate,
        Self::Copy,
        Self::Create,
        Self::Alter,
        Self::Drop,
        Self::Grant,
        Self::Revoke,
        Self::RoleChange,
        Self::Set,
        Self::Reset,
        Self::Transaction,
        Self::Call,
        Self::Do,
        Self::FunctionDefinition,
        Self::Explain,
        Self::Prepare,
        Self::Execute,
        Self::Maintenance,
        Self::Show,
        Self::Lock,
        Self::Notify,
        Self::Listen,
        Self::Cursor,
        Self::TwoPhase,
        Self::Checkpoint,
        Self::Discard,
        Self::Load,
        Self::Deallocate,
        Self::Other,
    ];
}

/// A risk fact found in a SQL statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Risk {
    /// An `UPDATE` or `DELETE` without a `WHERE`, or whose `WHERE` refers to no
    /// column at all (`WHERE true`, `WHERE 1 = 1`) or is `… OR <constant>`.
    NoWhere,
    /// `COPY … TO/FROM PROGRAM`: runs a shell command on the database server.
    CopyProgram,
    /// `COPY … TO/FROM 'file'`: reads or writes a file on the database server.
    CopyFile,
    /// A call of a function on the policy's dangerous-function list.
    DangerousFunction,
    /// A change of roles or privileges: `GRANT`, `REVOKE`, role DDL,
    /// `SET ROLE`, `SET SESSION AUTHORIZATION`, `ALTER DEFAULT PRIVILEGES`.
    ChangesRoleOrPrivilege,
    /// `SET`/`RESET` of a parameter on the policy's unsafe-parameter list
    /// (`standard_conforming_strings`, `search_path`, …), or `ALTER SYSTEM`.
    SetsUnsafeParameter,
    /// Code whose effect is not visible in the statement: `DO` blocks, function
    /// and procedure bodies, `EXECUTE`, extensions, and unparsed statements of
    /// unknown kind.
    OpaqueCode,
    /// A column a field rule masks (see
    /// [`SqlOptions::masked_columns`](crate::SqlOptions::masked_columns)) is
    /// used in `WHERE`, `JOIN … ON`/`USING`, `GROUP BY`, `ORDER BY`, a
    /// window or `HAVING`: which rows come back says something about its
    /// values, so its value can be inferred without being shown.
    MaskedColumnPredicate,
    /// A read of a catalog relation or a call of a catalog function that
    /// shows other sessions' statements or sampled column values
    /// (`pg_stat_activity`, `pg_stat_statements`, `pg_stats`,
    /// `pg_prepared_statements`, `pg_cursors`, …): a way around masking
    /// that needs no masked column.
    CatalogValues,
}

impl Risk {
    /// The name used in policies and in the JSON facts (`no_where`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoWhere => "no_where",
            Self::CopyProgram => "copy_program",
            Self::CopyFile => "copy_file",
            Self::DangerousFunction => "dangerous_function",
            Self::ChangesRoleOrPrivilege => "changes_role_or_privilege",
            Self::SetsUnsafeParameter => "sets_unsafe_parameter",
            Self::OpaqueCode => "opaque_code",
            Self::MaskedColumnPredicate => "masked_column_predicate",
            Self::CatalogValues => "catalog_values",
        }
    }

    /// Every risk, for validating policy files.
    pub(crate) const ALL: [Risk; 9] = [
        Self::NoWhere,
        Self::CopyProgram,
        Self::CopyFile,
        Self::DangerousFunction,
        Self::ChangesRoleOrPrivilege,
        Self::SetsUnsafeParameter,
        Self::OpaqueCode,
        Self::MaskedColumnPredicate,
        Self::CatalogValues,
    ];
}

/// How a column is used by a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ColumnUse {
    /// A plain reference in the select list (or `RETURNING`): its value reaches
    /// the client as it is, so value masking applies.
    Plain,
    /// Used inside an expression whose result reaches the client
    /// (`upper(email)`, `a || b`, `SET x = expr`): masking by column name no
    /// longer sees it.
    Expression,
    /// Used in a `WHERE`, `JOIN … ON`/`USING`, `HAVING`, `GROUP BY` or
    /// `ORDER BY`: its value can be inferred from which rows come back.
    Predicate,
    /// Used inside an aggregate or window function (`count`, `sum`, `… OVER`).
    Aggregate,
}

impl ColumnUse {
    /// The name used in the JSON facts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Expression => "expression",
            Self::Predicate => "predicate",
            Self::Aggregate => "aggregate",
        }
    }
}

/// One column read by a statement, with every way the statement uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnAccess {
    /// The schema-qualified table the column belongs to, when the statement
    /// says which (`None` when no table is in scope). A column that could
    /// belong to any of several tables in scope is listed once for each.
    pub table: Option<String>,
    /// The column name, folded (`*` for a wildcard).
    pub column: String,
    /// How it is used, sorted.
    pub uses: Vec<ColumnUse>,
}

/// The facts of one SQL statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementFacts {
    /// What kind of statement this is.
    pub kind: StatementKind,
    /// Kinds of the statements nested in it: DML inside a `WITH`, the
    /// statement of `EXPLAIN` or `PREPARE … AS`. Policies match
    /// `sql.kind` against the kind and these.
    pub nested_kinds: Vec<StatementKind>,
    /// True when the parser rejected the statement (or it was too deep or too
    /// long to analyse); then the kind and risks come from a keyword-level
    /// classifier and the policy's `on_unparsed` applies.
    pub unparsed: bool,
    /// Why the statement is unparsed.
    pub parse_error: Option<String>,
    /// Tables and views read, schema-qualified, sorted.
    pub reads: Vec<String>,
    /// Objects written (inserted into, updated, deleted from, created,
    /// altered, dropped, truncated, granted on, …), schema-qualified, sorted.
    pub writes: Vec<String>,
    /// Columns read, sorted by table and column.
    pub columns: Vec<ColumnAccess>,
    /// Functions called (including table functions in `FROM`), folded, sorted.
    pub functions: Vec<String>,
    /// Risk facts, sorted.
    pub risks: Vec<Risk>,
    /// Run-time parameters set or reset, folded, sorted.
    pub parameters: Vec<String>,
    /// True only when the statement provably changes nothing: no data, schema,
    /// privileges, server files, server-wide state or other session (see
    /// the crate documentation for the exact rule). False whenever in doubt.
    pub read_only: bool,
    /// Whether the statement changes the session's `search_path`, and to
    /// what: a plain `SET search_path` list, back to the default (`RESET`,
    /// `DISCARD ALL`), or to something the analysis cannot tell
    /// (`set_config(…)`, `SET LOCAL`, `SET ROLE` (whose `$user` may be in
    /// the path), a call of a function that is not a known read-only
    /// built-in, opaque code, an unparsed `SET`). `None` when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_path: Option<SearchPathChange>,
    /// The relation names written without a schema (folded, sorted): the
    /// ones the session's `search_path` resolves (see
    /// [`SearchPath`](crate::SearchPath)). In `reads`, `writes` and
    /// `columns` they are qualified with the schema they resolved to.
    /// Listed in a decision on a request with a search path; empty
    /// otherwise (nothing was resolved with a path then). Not serialized.
    #[serde(skip)]
    pub unqualified: Vec<String>,
}

/// How a statement changes the session's `search_path`
/// ([`StatementFacts::search_path`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchPathChange {
    /// `SET [SESSION] search_path = a, "B", 'c'` (or `TO`): the new list, as
    /// PostgreSQL reads it (unquoted names folded to lower case, quoted
    /// names and strings as written).
    Set(Vec<String>),
    /// Back to the session's default: `RESET search_path`, `RESET ALL`,
    /// `SET search_path = DEFAULT`, `DISCARD ALL`.
    Reset,
    /// Changed, or may have changed, to something the analysis cannot tell.
    Unknown,
}

impl StatementFacts {
    /// True when the statement carries `risk`.
    pub fn has_risk(&self, risk: Risk) -> bool {
        self.risks.contains(&risk)
    }
}

/// The Kubernetes verb of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum K8sVerb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET with `watch`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    Deletecollection,
    /// The `exec` subresource of a pod, by GET or POST.
    Exec,
    /// The `attach` subresource of a pod, by GET or POST.
    Attach,
    /// The `portforward` subresource of a pod, by GET or POST.
    Portforward,
    /// The `proxy` subresource, any method.
    Proxy,
    /// Any other method (HEAD, OPTIONS, …).
    Other,
}

impl K8sVerb {
    /// The name used in policies and in the JSON facts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Deletecollection => "deletecollection",
            Self::Exec => "exec",
            Self::Attach => "attach",
            Self::Portforward => "portforward",
            Self::Proxy => "proxy",
            Self::Other => "other",
        }
    }
}

/// A risk fact found in a Kubernetes request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum K8sRisk {
    /// The body asks for a privileged container (`securityContext.privileged`,
    /// `allowPrivilegeEscalation`, or the `SYS_ADMIN`/`ALL` capability).
    Privileged,
    /// The body mounts a `hostPath` volume.
    HostPath,
    /// The body sets `hostPID` (or `hostIPC`).
    HostPid,
    /// The body sets `hostNetwork`.
    HostNetwork,
    /// The body binds a role to `cluster-admin` (`roleRef.name`).
    ClusterAdminBinding,
    /// The request carries `Impersonate-*` headers.
    Impersonation,
}

impl K8sRisk {
    /// The name used in policies and in the JSON facts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::HostPath => "host_path",
            Self::HostPid => "host_pid",
            Self::HostNetwork => "host_network",
            Self::ClusterAdminBinding => "cluster_admin_binding",
            Self::Impersonation => "impersonation",
        }
    }

    pub(crate) const ALL: [K8sRisk; 6] = [
        Self::Privileged,
        Self::HostPath,
        Self::HostPid,
        Self::HostNetwork,
        Self::ClusterAdminBinding,
        Self::Impersonation,
    ];
}

/// The facts of one Kubernetes API request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct K8sFacts {
    /// The verb.
    pub verb: K8sVerb,
    /// The API group (`""` for the core group, `apps`, `rbac.authorization.k8s.io`, …).
    pub group: String,
    /// The API version (`v1`, …).
    pub version: String,
    /// The resource (`pods`, `deployments`, …), `None` for a non-resource path.
    pub resource: Option<String>,
    /// The subresource (`exec`, `log`, `status`, …).
    pub subresource: Option<String>,
    /// The namespace, for namespaced requests.
    pub namespace: Option<String>,
    /// The object's name, for requests on one object.
    pub name: Option<String>,
    /// The path of a non-resource request (`/healthz`, `/version`, …).
    pub non_resource_path: Option<String>,
    /// The command of an `exec`, from the `command=` query parameters, in order.
    pub command: Vec<String>,
    /// The user named in `Impersonate-User`.
    pub impersonate_user: Option<String>,
    /// The groups named in `Impersonate-Group`.
    pub impersonate_groups: Vec<String>,
    /// Risk facts, sorted.
    pub risks: Vec<K8sRisk>,
    /// True when the path or the body could not be analysed (a path with
    /// `.`/`..`/empty segments or bad escapes, a body that is not JSON or is too
    /// large); the policy's `on_unparsed` applies.
    pub unparsed: bool,
    /// Why the request is unparsed.
    pub parse_error: Option<String>,
}

impl K8sFacts {
    /// True when the request carries `risk`.
    pub fn has_risk(&self, risk: K8sRisk) -> bool {
        self.risks.contains(&risk)
    }
}

/// The analysed facts of a command, as carried by a [`Decision`](crate::Decision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // one per decision, never in bulk
pub enum CommandFacts {
    /// A SQL string: one entry per statement, in order.
    Sql {
        /// The statements.
        statements: Vec<StatementFacts>,
    },
    /// A Kubernetes API request.
    Kubernetes(K8sFacts),
    /// The command was not analysed (it was refused before analysis, for
    /// example because it was too large).
    None,
}

impl CommandFacts {
    /// True when any part of the command is unparsed.
    pub fn unparsed(&self) -> bool {
        match self {
            Self::Sql { statements } => statements.iter().any(|s| s.unparsed),
            Self::Kubernetes(k) => k.unparsed,
            Self::None => false,
        }
    }
}

#[cfg(test)]
mod documented {
    //! docs/policy.md documents every kind, risk and SQL fact with an
    //! example: a row of its tables per name. These fail when the code has
    //! one the document lacks.

    use super::*;

    const DOC: &str = include_str!("../../../docs/policy.md");
    const MODEL: &str = include_str!("model.rs");

    /// The table row for `name`: `` | `name` | … | … | example | ``, with an
    /// example cell that is not empty.
    fn row(name: &str) -> Option<&'static str> {
        row_in(DOC, name)
    }

    /// The same, in the Kubernetes section.
    fn k8s_row(name: &str) -> Option<&'static str> {
        let start = DOC.find("## Facts of a Kubernetes request").unwrap();
        let section = &DOC[start..];
        let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
        row_in(&section[..end], name)
    }

    fn row_in(doc: &'static str, name: &str) -> Option<&'static str> {
        let head = format!("| `{name}` |");
        doc.lines().find(|l| l.starts_with(&head)).filter(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            // ["", name, ..., example, ""]
            cells.len() >= 4 && cells.iter().rev().nth(1).is_some_and(|c| !c.is_empty())
        })
    }

    #[test]
    fn every_kind_has_a_row_with_an_example() {
        for k in StatementKind::ALL {
            assert!(
                row(k.as_str()).is_some(),
                "kind {} is not in docs/policy.md",
                k.as_str()
            );
        }
    }

    #[test]
    fn every_risk_has_a_row_with_an_example() {
        for r in Risk::ALL {
            assert!(
                row(r.as_str()).is_some(),
                "risk {} is not in docs/policy.md",
                r.as_str()
            );
        }
    }

    #[test]
    fn every_k8s_risk_and_fact_has_a_row_with_an_example() {
        for r in K8sRisk::ALL {
            assert!(
                k8s_row(r.as_str()).is_some(),
                "k8s risk {} is not in docs/policy.md",
                r.as_str()
            );
        }
        for f in fields("K8sWhen") {
            assert!(
                k8s_row(f).is_some(),
                "k8s fact {f} is not in docs/policy.md"
            );
        }
    }

    /// The fields of a `when` struct of the policy format.
    fn fields(name: &str) -> Vec<&'static str> {
        let start = MODEL.find(&format!("struct {name} {{")).unwrap();
        let body = &MODEL[start..];
        let body = &body[..body.find('}').unwrap()];
        let out: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub(crate) "))
            .filter_map(|l| l.split(':').next())
            .collect();
        assert!(out.len() >= 8, "{name}: {out:?}");
        out
    }

    #[test]
    fn every_sql_fact_of_the_policy_format_has_a_row_with_an_example() {
        // The `when.sql` conditions, as the policy format declares them.
        assert!(fields("SqlWhen").contains(&"read_only"));
        let start = MODEL.find("struct SqlWhen {").unwrap();
        let body = &MODEL[start..];
        let body = &body[..body.find('}').unwrap()];
        let facts: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub(crate) "))
            .filter_map(|l| l.split(':').next())
            .collect();
        assert!(facts.len() >= 12, "{facts:?}");
        for f in facts {
            // `risk` is the condition; its table names each risk.
            assert!(row(f).is_some(), "fact {f} is not in docs/policy.md");
        }
    }
}
