//! Policy engine for Portcullis: SQL- and Kubernetes-aware decisions that say why.
//!
//! For every command that crosses the gateway the policy decides **allow**,
//! **deny** (with a reason for the client) or **review** (hold it for people's
//! approval), and which masking applies to the response. It works on the
//! parsed command — SQL through [`sqlparser`] with PostgreSQL's dialect,
//! Kubernetes requests through their verb, resource and body — not on text
//! patterns, so a comment inside a statement, a change of case, a quoted
//! identifier or a second statement after a `;` does not change the answer.
//! It fails closed: what it cannot analyse is never allowed.
//!
//! The crate is synchronous and sans-IO: no async runtime, no files, no
//! environment. The caller reads the policy text and hands it to
//! [`Policy::from_toml_str`].
//!
//! # Example
//!
//! ```
//! use portcullis_policy::{Effect, Policy, Principal, PrincipalKind, Request, Resource, ResourceKind};
//!
//! let policy = Policy::from_toml_str(r#"
//!     default = "deny"          # no rule matched (this is also the default)
//!     on_unparsed = "review"    # a statement the parser rejects (deny or review)
//!
//!     [review]                  # defaults for every review
//!     groups = ["dba"]
//!     min_approvals = 1
//!     timeout = "15m"
//!     mode = "hold"             # or "ticket"
//!
//!     [[rule]]
//!     id = "agents-read-public"
//!     description = "agents may read the public schema"
//!     effect = "allow"
//!     when.principal.kind = "agent"
//!     when.resource.kind = "postgres"
//!     when.sql.kind = "select"
//!     when.sql.reads = { all = ["public.*"] }
//!     [rule.mask]
//!     fields = [{ field = "public.users.email", action = "redact" }]
//!
//!     [[rule]]
//!     id = "no-server-files"
//!     effect = "deny"
//!     reason = "reading server files is not allowed"
//!     when.sql.risk = ["dangerous_function", "copy_program"]
//!
//!     [[rule]]
//!     id = "prod-writes-need-approval"
//!     effect = "review"
//!     min_approvals = 2
//!     when.resource.labels.env = "prod"
//!     when.sql.kind = ["insert", "update", "delete", "merge"]
//!
//!     [[rule]]
//!     id = "no-exec-in-prod"
//!     effect = "deny"
//!     reason = "no shells in production pods"
//!     when.resource.labels.env = "prod"
//!     when.k8s.verb = ["exec", "attach"]
//! "#)?;
//!
//! let agent = Principal::new("claude@ci", PrincipalKind::Agent).with_groups(["agents"]);
//! let db = Resource::new("orders", ResourceKind::Postgres).with_label("env", "prod");
//!
//! let d = policy.evaluate(&Request::sql(&agent, &db, "SELECT id, email FROM users WHERE id = 7"));
//! assert_eq!(d.effect, Effect::Allow);
//! assert_eq!(d.rule_id.as_deref(), Some("agents-read-public"));
//! assert_eq!(d.mask.fields[0].field, "public.users.email");
//!
//! // A comment, odd case and a second statement change nothing.
//! let d = policy.evaluate(&Request::sql(&agent, &db, "select 1; SeLeCt /**/ PG_READ_FILE('/etc/passwd')"));
//! assert!(d.effect.is_deny());
//! assert_eq!(d.reason, "statement 2: reading server files is not allowed");
//!
//! let d = policy.evaluate(&Request::sql(&agent, &db, "UPDATE orders SET paid = true WHERE id = 7"));
//! assert!(matches!(d.effect, Effect::Review { min_approvals: 2, .. }));
//!
//! // The facts are there to audit (they serialize to JSON).
//! let json = serde_json::to_string(&d.facts).unwrap();
//! assert!(json.contains("\"writes\":[\"public.orders\"]"));
//! # Ok::<(), portcullis_policy::PolicyError>(())
//! ```
//!
//! # Semantics
//!
//! - **Rules** have an `id`, an optional `description`, an `effect` (`allow`,
//!   `deny` with an optional `reason`, `review` with optional `groups`,
//!   `min_approvals`, `timeout` and `mode` overriding the `[review]`
//!   defaults), conditions under `when`, and optional `mask` directives
//!   (field rules and detector ids, carried to the gateway as plain strings).
//! - A rule **matches** when all its conditions hold. A rule with `sql`
//!   conditions matches only SQL commands, one with `k8s` conditions only
//!   Kubernetes requests (a rule may not have both); a rule with neither
//!   matches any command.
//! - **Precedence**: deny overrides review overrides allow. Among the rules
//!   that match, the strictest effect wins, and the first rule in file order
//!   with that effect names the decision. No rule matched → the policy's
//!   `default` (itself `deny` unless set).
//! - **Multi-statement** SQL strings are decided statement by statement and
//!   take the strictest statement's decision; its reason is prefixed with
//!   `statement N:`.
//! - **Unparsed** statements (rejected by the parser, nested deeper than its
//!   recursion limit, or longer than the analysis bounds) keep the kind a
//!   keyword-level classifier gives them and every risk it sees; rules still
//!   apply, but the decision is at least as strict as `on_unparsed` (`review`
//!   by default, or `deny`). With `on_unparsed = "rules"` the rules decide on
//!   the reader's facts, and a statement it cannot classify (kind `other`)
//!   is denied. A Kubernetes request whose path is ambiguous
//!   (`..`, `//`, bad escapes) or whose body is not JSON is unparsed too.
//! - **Masking**: the decision carries the union of the `mask` tables of every
//!   rule that matched any statement.
//! - **Any internal error resolves to deny**, and so does a command larger
//!   than `max_command_bytes` (1 MiB unless set).
//!
//! # Conditions
//!
//! Each condition is a pattern, a list of patterns, or a table:
//! `"x"` and `["x", "y"]` mean *some value matches one of the patterns*;
//! `{ any = [...] }`, `{ all = [...] }` (every value matches: true when there
//! are no values) and `{ none = [...] }` (no value matches; `not` is a
//! synonym) can be combined in one table. Patterns are globs (`*`, `?`,
//! `[a-z]`, `{a,b}`). SQL names match case-insensitively; everything else
//! case-sensitively. Values unknown to a field with a fixed vocabulary
//! (kinds, verbs, risks) are load errors, so a typo cannot silently disable a
//! rule.
//!
//! | condition | values |
//! |---|---|
//! | `principal.id`, `principal.kind` (`human`, `agent`, `service`), `principal.groups` | the principal's |
//! | `resource.name`, `resource.kind` (`postgres`, `kubernetes`), `resource.labels.<key>` | the resource's (a missing label has no value) |
//! | `sql.kind` | the statement's [`StatementKind`] and the kinds nested in it (CTE DML, `EXPLAIN`, `PREPARE … AS`) |
//! | `sql.reads`, `sql.writes`, `sql.objects` | schema-qualified, folded object names (`public.users`; see *Names without a schema*) |
//! | `sql.functions` | folded function names as written (`pg_catalog.pg_read_file`) |
//! | `sql.columns`, `sql.predicate_columns`, `sql.computed_columns` | `schema.table.column` (`?.column` when the table is unknown); all, those used in `WHERE`/`JOIN`/`ORDER BY`/`GROUP BY`/`HAVING`, those inside an expression or aggregate |
//! | `sql.risk` | [`Risk`] names: `no_where`, `copy_program`, `copy_file`, `dangerous_function`, `changes_role_or_privilege`, `sets_unsafe_parameter`, `opaque_code`, `masked_column_predicate`, `catalog_values` |
//! | `sql.parameters` | run-time parameters set or reset |
//! | `sql.read_only` | `true` or `false`: true only when the statement provably changes nothing ([`StatementFacts::read_only`]) |
//! | `sql.unparsed`, `k8s.unparsed` | `true` or `false` |
//! | `k8s.verb` | [`K8sVerb`] names (`exec`, `attach`, `portforward` whether by GET or POST; `deletecollection`) |
//! | `k8s.group`, `k8s.resource`, `k8s.subresource`, `k8s.namespace`, `k8s.name` | from the path (`""` is the core group) |
//! | `k8s.command` | an exec's argv joined with spaces |
//! | `k8s.risk` | [`K8sRisk`] names: `privileged`, `host_path`, `host_pid`, `host_network`, `cluster_admin_binding`, `impersonation` |
//! | `k8s.impersonate_user` | the `Impersonate-User` header |
//!
//! Top-level settings: `default`, `on_unparsed`, `[review]`,
//! `dangerous_functions` (replaces [`DEFAULT_DANGEROUS_FUNCTIONS`]),
//! `extra_dangerous_functions`, `unsafe_parameters` (replaces
//! [`DEFAULT_UNSAFE_PARAMETERS`]), `extra_unsafe_parameters`,
//! `extra_read_only_functions`, `default_schema` (`public`),
//! `max_command_bytes` and `decision_cache_entries` (4096; decisions on SQL
//! strings up to 16 KiB are cached per loaded policy, keyed by the text, the
//! principal, the resource, the search path, the relations and the added
//! risks, so a repeated statement skips the parse).
//!
//! # Names without a schema
//!
//! A table written without a schema (`DELETE FROM orders`) is qualified
//! with the session's `search_path` when the request carries one
//! ([`Request::with_search_path`], with [`Relations`] saying which schemas
//! hold which relations): as PostgreSQL resolves it, the first schema of the
//! path that holds it (`pg_catalog` first unless listed). Where that is not
//! certain — an unknown path ([`SearchPath::Unknown`]), a name no schema of
//! the path holds, a statement that creates something, no relations given —
//! every possible resolution is decided and the strictest decision is
//! taken (more than 64 combinations in one statement: deny). A statement
//! that changes the path ([`StatementFacts::search_path`]) changes it for
//! the statements after it in the same command. **Without a search path**
//! in the request, the policy's `default_schema` (`public`) qualifies such
//! names, as in earlier versions; an embedder that knows the session's path
//! should give it, or a rule on `shop.orders` does not match
//! `DELETE FROM orders` run with `search_path = shop, public`.
//! [`Policy::explain`] and [`Policy::evaluate_facts`] use `default_schema`.
//!
//! [`Policy::explain`] says which rules matched each statement, and
//! [`replay`] runs recorded statements against a candidate policy and counts
//! what would change. Every kind, fact and risk is listed, with examples, in
//! `docs/policy.md`.
//!
//! # SQL analysis
//!
//! [`analyze`] splits a string into statements with sqlparser's tokenizer
//! (so quotes, dollar quotes and comments are respected), normalises
//! `U&"…"` identifiers, and parses each statement on its own, so one the
//! parser rejects is reported without hiding the others. The walk finds the
//! objects read and written (including those sqlparser's `visit_relations`
//! does not report: `DROP` of several tables, `COPY`, `SELECT … INTO`,
//! `CREATE TRIGGER … ON`, `VACUUM`/`ANALYZE`, `GRANT` objects, `TABLE x`),
//! treats table functions in `FROM` as functions, walks nested statements,
//! and resolves columns to tables through aliases and scopes. Known limits:
//! `EXPLAIN` without `ANALYZE` is judged like the statement it explains; a
//! `BEGIN ATOMIC` function body is split at its `;` (its pieces are
//! unparsed, so held); after `SET standard_conforming_strings = off` the
//! server reads backslashes in strings differently from this analysis —
//! which is why that setting is an unsafe parameter.
//!
//! # Features
//!
//! None. The crate depends on `sqlparser` (with `visitor`), `serde`,
//! `serde_json`, `toml` and `globset`.
#![deny(missing_docs)]

mod cache;
mod error;
mod explain;
mod facts;
mod k8s;
mod model;
mod policy;
mod request;
mod search_path;
mod sql;

pub use error::PolicyError;
pub use explain::{
    Explanation, ReplayChange, ReplayEntry, ReplayReport, RuleMatch, StatementExplanation, replay,
};
pub use facts::{
    ColumnAccess, ColumnUse, CommandFacts, K8sFacts, K8sRisk, K8sVerb, Risk, SearchPathChange,
    StatementFacts, StatementKind,
};
pub use k8s::analyze_k8s;
pub use policy::{Decision, Effect, FieldRule, MaskDirectives, Policy, ReviewMode};
pub use request::{Command, K8sRequest, Principal, PrincipalKind, Request, Resource, ResourceKind};
pub use search_path::{Relations, SearchPath};
pub use sql::lineage::{
    CatalogValues, CopyFormat, Lineage, LineageSchema, StatementLineage, lineage,
};
pub use sql::{
    DEFAULT_DANGEROUS_FUNCTIONS, DEFAULT_UNSAFE_PARAMETERS, SqlOptions, analyze, analyze_with,
};
