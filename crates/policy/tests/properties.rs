//! Invariants: the analysis never panics, whatever the input; an unparsed
//! statement is never allowed; a denied statement stays denied whatever
//! follows it.
//!
//! `Policy::evaluate` turns a panic below it into a Deny (fail closed), so a
//! panic would pass a test that only calls `evaluate`. The no-panic
//! properties therefore call the analysis functions themselves
//! ([`analyze`], [`analyze_with`], [`analyze_k8s`]), where a panic fails the
//! test.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use portcullis_policy::{
    K8sRequest, Policy, Principal, PrincipalKind, Request, Resource, ResourceKind, SqlOptions,
    analyze, analyze_k8s, analyze_with,
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

/// Options that reach the read-only analysis (function lists, extra names).
fn read_only_options() -> SqlOptions {
    let mut options = SqlOptions::default();
    options
        .extra_read_only_functions
        .push("my_schema.safe_report".into());
    options.default_schema = "shop".into();
    options
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
    fn analysis_never_panics_on_arbitrary_strings(s in any::<String>()) {
        // Not through `evaluate`, which would turn a panic into a Deny.
        let facts = analyze(&s);
        let read_only = analyze_with(&s, &read_only_options());
        prop_assert_eq!(facts.len(), read_only.len());
        let (policy, p, db, _) = ctx();
        let d = policy.evaluate(&Request::sql(p, db, &s));
        prop_assert!(!d.reason.is_empty());
        prop_assert!(!d.reason.contains("internal error"), "evaluate caught a panic: {s:?}");
    }

    #[test]
    fn analysis_never_panics_on_sqlish_strings(s in sqlish()) {
        let _ = analyze(&s);
        let _ = analyze_with(&s, &read_only_options());
        let (policy, p, db, _) = ctx();
        let d = policy.evaluate(&Request::sql(p, db, &s));
        prop_assert!(!d.reason.contains("internal error"), "evaluate caught a panic: {s:?}");
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
        // The analysis itself, where a panic fails the test.
        let _ = analyze_k8s(&req);
        let d = policy.evaluate(&Request::kubernetes(p, k8s, req));
        prop_assert!(!d.reason.contains("internal error"), "evaluate caught a panic");
        if d.facts.unparsed() {
            prop_assert!(!d.effect.is_allow());
        }
    }
}
