//! Decision latency of the policy engine: parse + analyse + evaluate against a
//! 20-rule policy, for the statements a gateway sees most.
//!
//! ```text
//! cargo bench -p portcullis-benches --bench policy
//! cargo bench -p portcullis-benches --bench policy --features peers   # + cedar-policy
//! ```
//!
//! Besides criterion's groups, the bench first runs a measured loop per query
//! that records every iteration's time and prints p50/p99/p99.9 (criterion
//! reports means and medians, not tails). Groups:
//! - `policy/decision/*`: `Policy::evaluate` on the SQL text, repeated: served
//!   by the policy's decision cache after the first call;
//! - `policy/decision_uncached/*`: the same with the cache off
//!   (`decision_cache_entries = 0`): parse + analysis + evaluation;
//! - `policy/parse_only/*`: sqlparser's tokenize + parse alone, the floor;
//! - `policy/facts_only/*`: `Policy::evaluate_facts` on facts already extracted;
//! - `policy/cedar/*` (feature `peers`): cedar-policy's `is_authorized` on the
//!   same facts, already extracted, against 20 equivalent cedar policies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use portcullis_policy::{
    CommandFacts, Policy, Principal, PrincipalKind, Request, Resource, ResourceKind,
};

/// 20 rules in the shapes a deployment uses.
const POLICY: &str = r#"
default = "deny"
on_unparsed = "review"
[review]
groups = ["dba"]

[[rule]]
id = "r01-read-app-schemas"
effect = "allow"
when.sql.kind = { all = ["select"] }
when.sql.reads = { all = ["public.*", "sales.*", "reporting.*"] }
[rule.mask]
fields = [{ field = "public.users.email", action = "redact" }]

[[rule]]
id = "r02-pgbench"
effect = "allow"
when.principal.groups = ["bench", "loadtest"]
when.sql.kind = ["select", "insert", "update", "transaction"]
when.sql.objects = { all = ["public.pgbench_*"] }

[[rule]]
id = "r03-dangerous"
effect = "deny"
reason = "server functions"
when.sql.risk = "dangerous_function"

[[rule]]
id = "r04-copy-program"
effect = "deny"
when.sql.risk = ["copy_program", "copy_file"]

[[rule]]
id = "r05-privileges"
effect = "deny"
when.sql.risk = "changes_role_or_privilege"

[[rule]]
id = "r06-unsafe-settings"
effect = "deny"
when.sql.risk = "sets_unsafe_parameter"

[[rule]]
id = "r07-opaque"
effect = "review"
when.sql.risk = "opaque_code"

[[rule]]
id = "r08-no-where"
effect = "deny"
when.sql.risk = "no_where"

[[rule]]
id = "r09-prod-writes"
effect = "review"
when.resource.labels.env = "prod"
when.principal.kind = "agent"
when.sql.kind = ["insert", "update", "delete", "merge"]
when.sql.writes = { none = ["public.pgbench_*"] }

[[rule]]
id = "r10-ddl"
effect = "deny"
when.principal.kind = { none = ["human"] }
when.sql.kind = ["create", "alter", "drop", "truncate"]

[[rule]]
id = "r11-pii-read"
effect = "review"
when.sql.reads = "pii.*"

[[rule]]
id = "r12-ssn-predicate"
effect = "deny"
when.sql.predicate_columns = ["*.ssn", "*.tax_id"]

[[rule]]
id = "r13-secrets-table"
effect = "deny"
when.sql.objects = ["*.secrets", "*.api_keys", "vault.*"]

[[rule]]
id = "r14-transactions"
effect = "allow"
when.sql.kind = "transaction"

[[rule]]
id = "r15-service-etl"
effect = "allow"
when.principal.id = "svc-etl-*"
when.resource.name = "warehouse-*"
when.sql.kind = ["insert", "copy"]

[[rule]]
id = "r16-maintenance"
effect = "review"
when.sql.kind = "maintenance"

[[rule]]
id = "r17-computed-email"
effect = "review"
when.sql.computed_columns = "public.users.email"

[[rule]]
id = "r18-k8s-read"
effect = "allow"
when.k8s.verb = ["get", "list", "watch"]

[[rule]]
id = "r19-k8s-exec"
effect = "deny"
when.k8s.verb = ["exec", "attach", "portforward"]

[[rule]]
id = "r20-k8s-escalation"
effect = "deny"
when.k8s.risk = ["privileged", "host_path", "host_pid", "host_network", "cluster_admin_binding", "impersonation"]
"#;

const PGBENCH_S: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
const JOIN3: &str = "SELECT c.name, o.id, o.total, i.sku FROM sales.customers c \
    JOIN sales.orders o ON o.customer_id = c.id JOIN sales.order_items i ON i.order_id = o.id \
    WHERE c.region = 'EU' AND o.created_at >= '2026-01-01' AND i.qty > 2 ORDER BY o.total DESC LIMIT 50";
const UPDATE: &str = "UPDATE pgbench_accounts SET abalance = abalance + -2345 WHERE aid = 48213;";

/// A ~2 KB analytic query: CTEs, joins, window functions, CASE, subqueries.
fn analytic() -> String {
    let q = "WITH monthly AS ( \
        SELECT date_trunc('month', o.created_at) AS month, c.region, c.segment, \
               sum(i.qty * i.unit_price) AS revenue, count(DISTINCT o.id) AS orders, \
               count(DISTINCT c.id) AS customers \
        FROM sales.orders o JOIN sales.customers c ON c.id = o.customer_id \
        JOIN sales.order_items i ON i.order_id = o.id \
        LEFT JOIN sales.returns r ON r.order_id = o.id AND r.sku = i.sku \
        WHERE o.created_at >= date '2025-01-01' AND o.status IN ('paid', 'shipped', 'delivered') \
          AND r.id IS NULL AND c.segment <> 'internal' \
        GROUP BY 1, 2, 3 ), \
      ranked AS ( \
        SELECT month, region, segment, revenue, orders, customers, \
               revenue / NULLIF(orders, 0) AS avg_order_value, \
               rank() OVER (PARTITION BY month ORDER BY revenue DESC) AS region_rank, \
               lag(revenue) OVER (PARTITION BY region, segment ORDER BY month) AS prev_revenue, \
               sum(revenue) OVER (PARTITION BY region ORDER BY month ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS rolling_3m \
        FROM monthly ), \
      targets AS ( \
        SELECT t.region, t.month, t.target_revenue FROM reporting.targets t \
        WHERE t.month >= date '2025-01-01' AND t.kind = 'revenue' ) \
      SELECT r.month, r.region, r.segment, r.revenue, r.orders, r.customers, r.avg_order_value, r.region_rank, \
             CASE WHEN r.prev_revenue IS NULL THEN NULL \
                  ELSE round(100.0 * (r.revenue - r.prev_revenue) / NULLIF(r.prev_revenue, 0), 2) END AS growth_pct, \
             r.rolling_3m, tg.target_revenue, \
             CASE WHEN tg.target_revenue IS NULL THEN 'no target' \
                  WHEN r.revenue >= tg.target_revenue THEN 'met' \
                  WHEN r.revenue >= 0.9 * tg.target_revenue THEN 'close' ELSE 'missed' END AS target_status, \
             (SELECT count(*) FROM sales.customers c2 WHERE c2.region = r.region AND c2.created_at < r.month) AS base \
      FROM ranked r LEFT JOIN targets tg ON tg.region = r.region AND tg.month = r.month \
      WHERE r.region_rank <= 10 AND r.revenue > 0 \
      ORDER BY r.month DESC, r.region_rank ASC, r.segment";
    let mut s = q.to_owned();
    // Pad with a trailing comment-free filter list up to ~2 KB.
    while s.len() < 2000 {
        s.push(' ');
    }
    s
}

fn queries() -> Vec<(&'static str, String)> {
    vec![
        ("pgbench_select", PGBENCH_S.to_owned()),
        ("join3_filters", JOIN3.to_owned()),
        ("update_where", UPDATE.to_owned()),
        ("analytic_2kb", analytic()),
    ]
}

struct Ctx {
    policy: Policy,
    uncached: Policy,
    principal: Principal,
    resource: Resource,
}

fn ctx() -> Ctx {
    Ctx {
        policy: Policy::from_toml_str(POLICY).expect("bench policy"),
        uncached: Policy::from_toml_str(&format!("decision_cache_entries = 0\n{POLICY}"))
            .expect("bench policy"),
        principal: Principal::new("agent-7", PrincipalKind::Agent).with_groups(["agents", "bench"]),
        resource: Resource::new("orders-db", ResourceKind::Postgres).with_label("env", "prod"),
    }
}

/// sqlparser's tokenize + parse alone (PostgreSQL dialect), the floor under
/// any decision that works on the parsed statement.
fn parse_only(sql: &str) -> usize {
    sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql)
        .map_or(0, |v| v.len())
}

/// Per-iteration timings → (p50, p99, p99.9) in nanoseconds.
fn percentiles(mut f: impl FnMut(), iters: usize) -> (u128, u128, u128) {
    for _ in 0..iters / 10 {
        f();
    }
    let mut t = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        f();
        t.push(start.elapsed().as_nanos());
    }
    t.sort_unstable();
    let at = |q: f64| t[((t.len() as f64 - 1.0) * q) as usize];
    (at(0.50), at(0.99), at(0.999))
}

fn tail_report() {
    let c = ctx();
    println!("\npolicy decision latency, measured loop (20,000 iterations each), nanoseconds:");
    println!(
        "{:<16} {:>18} {:>9} {:>9} {:>9}",
        "query", "what", "p50", "p99", "p99.9"
    );
    for (name, sql) in queries() {
        let (p50, p99, p999) = percentiles(
            || {
                let d =
                    c.policy
                        .evaluate(&Request::sql(&c.principal, &c.resource, black_box(&sql)));
                black_box(d);
            },
            20_000,
        );
        println!(
            "{name:<16} {:>18} {p50:>9} {p99:>9} {p999:>9}",
            "decision (cached)"
        );
        let (p50, p99, p999) = percentiles(
            || {
                let d =
                    c.uncached
                        .evaluate(&Request::sql(&c.principal, &c.resource, black_box(&sql)));
                black_box(d);
            },
            20_000,
        );
        println!(
            "{name:<16} {:>18} {p50:>9} {p99:>9} {p999:>9}",
            "decision uncached"
        );
        let (p50, p99, p999) = percentiles(
            || {
                black_box(parse_only(black_box(&sql)));
            },
            20_000,
        );
        println!(
            "{name:<16} {:>18} {p50:>9} {p99:>9} {p999:>9}",
            "sqlparser parse"
        );
        let facts = c.policy.analyze_sql(&sql);
        let (p50, p99, p999) = percentiles(
            || {
                let d = c.policy.evaluate_facts(
                    &c.principal,
                    &c.resource,
                    CommandFacts::Sql {
                        statements: black_box(facts.clone()),
                    },
                );
                black_box(d);
            },
            20_000,
        );
        println!(
            "{name:<16} {:>18} {p50:>9} {p99:>9} {p999:>9}",
            "facts only"
        );
        #[cfg(feature = "peers")]
        {
            let cedar = cedar_peer::Cedar::new();
            let req = cedar_peer::Facts::from(&facts);
            let (p50, p99, p999) = percentiles(
                || {
                    black_box(cedar.decide(black_box(&req)));
                },
                20_000,
            );
            println!(
                "{name:<16} {:>18} {p50:>9} {p99:>9} {p999:>9}",
                "cedar (facts)"
            );
        }
    }
    println!();
}

fn bench_policy(cr: &mut Criterion) {
    let c = ctx();
    for (name, sql) in queries() {
        // Sanity: the decisions are what the policy says.
        let d = c
            .policy
            .evaluate(&Request::sql(&c.principal, &c.resource, &sql));
        assert!(!d.facts.unparsed(), "{name} must parse: {}", d.reason);
        let mut g = cr.benchmark_group("policy");
        g.bench_function(format!("decision/{name}"), |b| {
            b.iter(|| {
                c.policy
                    .evaluate(&Request::sql(&c.principal, &c.resource, black_box(&sql)))
            })
        });
        g.bench_function(format!("decision_uncached/{name}"), |b| {
            b.iter(|| {
                c.uncached
                    .evaluate(&Request::sql(&c.principal, &c.resource, black_box(&sql)))
            })
        });
        g.bench_function(format!("parse_only/{name}"), |b| {
            b.iter(|| parse_only(black_box(&sql)))
        });
        let facts = c.policy.analyze_sql(&sql);
        g.bench_function(format!("facts_only/{name}"), |b| {
            b.iter(|| {
                c.policy.evaluate_facts(
                    &c.principal,
                    &c.resource,
                    CommandFacts::Sql {
                        statements: black_box(facts.clone()),
                    },
                )
            })
        });
        #[cfg(feature = "peers")]
        {
            let cedar = cedar_peer::Cedar::new();
            let req = cedar_peer::Facts::from(&facts);
            g.bench_function(format!("cedar/{name}"), |b| {
                b.iter(|| cedar.decide(black_box(&req)))
            });
        }
        g.finish();
    }
}

#[cfg(feature = "peers")]
mod cedar_peer {
    //! The same 20 rules as cedar policies, on facts already extracted. Cedar
    //! has no globs over sets and no "review": glob conditions are
    //! precomputed into booleans of the context, and review rules are
    //! `forbid`s annotated `@review`.

    use std::str::FromStr;

    use cedar_policy::{
        Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request,
        RestrictedExpression,
    };
    use portcullis_policy::StatementFacts;

    const POLICIES: &str = r#"
@id("r01") permit(principal, action, resource) when { context.kinds == ["select"] && context.reads_all_app };
@id("r02") permit(principal, action, resource) when { context.in_bench && context.objects_all_pgbench && ["select","insert","update","transaction"].containsAll(context.kinds) };
@id("r03") forbid(principal, action, resource) when { context.risks.contains("dangerous_function") };
@id("r04") forbid(principal, action, resource) when { context.risks.containsAny(["copy_program","copy_file"]) };
@id("r05") forbid(principal, action, resource) when { context.risks.contains("changes_role_or_privilege") };
@id("r06") forbid(principal, action, resource) when { context.risks.contains("sets_unsafe_parameter") };
@review @id("r07") forbid(principal, action, resource) when { context.risks.contains("opaque_code") };
@id("r08") forbid(principal, action, resource) when { context.risks.contains("no_where") };
@review @id("r09") forbid(principal, action, resource) when { context.env == "prod" && context.principal_kind == "agent" && context.kinds.containsAny(["insert","update","delete","merge"]) && !context.writes_pgbench };
@id("r10") forbid(principal, action, resource) when { context.principal_kind != "human" && context.kinds.containsAny(["create","alter","drop","truncate"]) };
@review @id("r11") forbid(principal, action, resource) when { context.reads_pii };
@id("r12") forbid(principal, action, resource) when { context.ssn_predicate };
@id("r13") forbid(principal, action, resource) when { context.secret_objects };
@id("r14") permit(principal, action, resource) when { context.kinds.contains("transaction") };
@id("r15") permit(principal, action, resource) when { context.etl_service && context.kinds.containsAny(["insert","copy"]) };
@review @id("r16") forbid(principal, action, resource) when { context.kinds.contains("maintenance") };
@review @id("r17") forbid(principal, action, resource) when { context.computed_email };
@id("r18") permit(principal, action == Action::"k8s_read", resource);
@id("r19") forbid(principal, action == Action::"k8s_exec", resource);
@id("r20") forbid(principal, action, resource) when { context.risks.containsAny(["privileged","host_path","host_pid","host_network","cluster_admin_binding","impersonation"]) };
"#;

    pub(crate) struct Cedar {
        policies: PolicySet,
        entities: Entities,
        authorizer: Authorizer,
        principal: EntityUid,
        action: EntityUid,
        resource: EntityUid,
    }

    /// The facts as the context pairs cedar evaluates (strings, sets, booleans).
    pub(crate) struct Facts(Vec<StatementFacts>);

    impl From<&Vec<StatementFacts>> for Facts {
        fn from(f: &Vec<StatementFacts>) -> Self {
            Self(f.clone())
        }
    }

    impl Cedar {
        pub(crate) fn new() -> Self {
            let policies = PolicySet::from_str(POLICIES).expect("cedar policies");
            assert_eq!(policies.policies().count(), 20);
            Self {
                policies,
                entities: Entities::empty(),
                authorizer: Authorizer::new(),
                principal: EntityUid::from_str(r#"Agent::"agent-7""#).unwrap(),
                action: EntityUid::from_str(r#"Action::"sql""#).unwrap(),
                resource: EntityUid::from_str(r#"Db::"orders-db""#).unwrap(),
            }
        }

        /// One statement's decision: building the context from the facts
        /// (the equivalent of our matching on them) and authorizing.
        pub(crate) fn decide(&self, facts: &Facts) -> bool {
            let mut allowed = true;
            for st in &facts.0 {
                let set = |v: Vec<String>| {
                    RestrictedExpression::new_set(
                        v.into_iter().map(RestrictedExpression::new_string),
                    )
                };
                let mut kinds = vec![st.kind.as_str().to_owned()];
                kinds.extend(st.nested_kinds.iter().map(|k| k.as_str().to_owned()));
                let objects = || st.reads.iter().chain(st.writes.iter());
                let b = RestrictedExpression::new_bool;
                let context = Context::from_pairs([
                    ("kinds".to_owned(), set(kinds)),
                    (
                        "risks".to_owned(),
                        set(st.risks.iter().map(|r| r.as_str().to_owned()).collect()),
                    ),
                    (
                        "env".to_owned(),
                        RestrictedExpression::new_string("prod".into()),
                    ),
                    (
                        "principal_kind".to_owned(),
                        RestrictedExpression::new_string("agent".into()),
                    ),
                    ("in_bench".to_owned(), b(true)),
                    ("etl_service".to_owned(), b(false)),
                    (
                        "reads_all_app".to_owned(),
                        b(st.reads.iter().all(|r| {
                            r.starts_with("public.")
                                || r.starts_with("sales.")
                                || r.starts_with("reporting.")
                        })),
                    ),
                    (
                        "objects_all_pgbench".to_owned(),
                        b(objects().all(|o| o.starts_with("public.pgbench_"))),
                    ),
                    (
                        "writes_pgbench".to_owned(),
                        b(st.writes.iter().any(|o| o.starts_with("public.pgbench_"))),
                    ),
                    (
                        "reads_pii".to_owned(),
                        b(st.reads.iter().any(|o| o.starts_with("pii."))),
                    ),
                    (
                        "ssn_predicate".to_owned(),
                        b(st.columns.iter().any(|c| {
                            (c.column == "ssn" || c.column == "tax_id")
                                && c.uses.iter().any(|u| u.as_str() == "predicate")
                        })),
                    ),
                    (
                        "secret_objects".to_owned(),
                        b(objects().any(|o| {
                            o.ends_with(".secrets")
                                || o.ends_with(".api_keys")
                                || o.starts_with("vault.")
                        })),
                    ),
                    (
                        "computed_email".to_owned(),
                        b(st.columns.iter().any(|c| {
                            c.table.as_deref() == Some("public.users")
                                && c.column == "email"
                                && c.uses
                                    .iter()
                                    .any(|u| matches!(u.as_str(), "expression" | "aggregate"))
                        })),
                    ),
                ])
                .expect("context");
                let request = Request::new(
                    self.principal.clone(),
                    self.action.clone(),
                    self.resource.clone(),
                    context,
                    None,
                )
                .expect("request");
                let response =
                    self.authorizer
                        .is_authorized(&request, &self.policies, &self.entities);
                allowed &= response.decision() == Decision::Allow;
            }
            allowed
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = bench_policy
}

fn main() {
    tail_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
