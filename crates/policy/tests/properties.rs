//! Invariants: evaluation never panics, whatever the input; a denied

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]
//! statement stays denied whatever follows it.

use portcullis_policy::{
    K8sRequest, Policy, Principal, PrincipalKind, Request, Resource, ResourceKind, analyze,
};
use proptest::prelude::*;

const POLICY: &str = r#"
default = "deny"
on_unparsed = "review"

[[rule]]
id = "read"
effect = "allow"
when.sql.kind = { all = ["select"] }

[[rule]]
id = "writes"
effect = "deny"
when.sql.kind = ["delete", "update", "drop", "truncate", "insert"]

[[rule]]
id = "danger"
effect = "deny"
when.sql.risk = ["dangerous_function", "copy_program", "changes_role_or_privilege", "sets_unsafe_parameter"]

[[rule]]
id = "k8s-read"
effect = "allow"
when.k8s.verb = ["get", "list"]
"#;

const DENIED: &[&str] = &[
    "DELETE FROM users",
    "drop table users",
    "SELECT pg_read_file('/etc/passwd')",
    "COPY users TO PROGRAM 'sh'",
    "UPDATE users SET admin = true WHERE id = 1",
    "SET ROLE postgres",
    "SET standard_conforming_strings = off",
    "WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d",
    "TRUNCATE audit",
    "SELECT \"PG_READ_FILE\"('x')",
];

/// SQL-ish fragments, so that generated strings reach the parser and not
/// only the tokenizer's error paths.
fn sqlish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "SELECT",
        "FROM",
        "WHERE",
        "users",
        "(",
        ")",
        ",",
        ";",
        "'x'",
        "$$",
        "$$ a $$",
        "--",
        "/*",
        "*/",
        "\"Q\"",
        "U&",
        "1",
        "=",
        "AND",
        "OR",
        "*",
        "DELETE",
        "WITH",
        "AS",
        "INSERT",
        "INTO",
        "VALUES",
        "pg_read_file",
        "COPY",
        "PROGRAM",
        "E'\\''",
        "JOIN",
        "ON",
        "ORDER BY",
        "GROUP BY",
        "count",
        "::",
        "[",
        "]",
        "SET",
        "ROLE",
        "DO",
        "EXPLAIN",
        "ANALYZE",
    ]);
    prop::collection::vec(atoms, 0..24).prop_map(|v| v.join(" "))
}

fn ctx() -> &'static (Policy, Principal, Resource, Resource) {
    static CTX: std::sync::OnceLock<(Policy, Principal, Resource, Resource)> =
        std::sync::OnceLock::new();
    CTX.get_or_init(|| {
        let policy = Policy::from_toml_str(POLICY).unwrap();
        let p = Principal::new("agent", PrincipalKind::Agent);
        let db = Resource::new("db", ResourceKind::Postgres);
        let k8s = Resource::new("k8s", ResourceKind::Kubernetes);
        (policy, p, db, k8s)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn evaluate_never_panics_on_arbitrary_strings(s in any::<String>()) {
        let (policy, p, db, _) = ctx();
        let d = policy.evaluate(&Request::sql(p, db, &s));
        prop_assert!(!d.reason.is_empty());
        let _ = analyze(&s);
    }

    #[test]
    fn evaluate_never_panics_on_sqlish_strings(s in sqlish()) {
        let (policy, p, db, _) = ctx();
        let d = policy.evaluate(&Request::sql(p, db, &s));
        // Anything unparsed is never allowed.
        if d.facts.unparsed() {
            prop_assert!(!d.effect.is_allow(), "unparsed but allowed: {s:?}");
        }
    }

    #[test]
    fn denied_statement_then_anything_is_never_allowed(i in 0..DENIED.len(), rest in any::<String>(), rest2 in sqlish()) {
        let (policy, p, db, _) = ctx();
        let denied = DENIED[i];
        prop_assert!(policy.evaluate(&Request::sql(p, db, denied)).effect.is_deny());
        for tail in [&rest, &rest2] {
            let sql = format!("{denied};{tail}");
            let d = policy.evaluate(&Request::sql(p, db, &sql));
            prop_assert!(!d.effect.is_allow(), "allowed: {sql:?}");
        }
    }

    #[test]
    fn k8s_analysis_never_panics(method in "[A-Z]{0,7}", path in "(/[a-z0-9%.]{0,8}){0,8}", query in ".{0,40}", body in prop::option::of(any::<Vec<u8>>())) {
        let (policy, p, _, k8s) = ctx();
        let mut req = K8sRequest::new(method, path).with_query(query);
        req.body = body;
        let d = policy.evaluate(&Request::kubernetes(p, k8s, req));
        if d.facts.unparsed() {
            prop_assert!(!d.effect.is_allow());
        }
    }
}
