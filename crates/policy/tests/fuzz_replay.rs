//! Replays the committed seeds and crashers of the `policy` fuzz target
//! (testdata/fuzz/policy/) through the same checks as
//! fuzz/fuzz_targets/policy.rs (keep the two in step): evaluating any SQL
//! or Kubernetes request never panics, an unparsed command is never
//! allowed, and a denied statement followed by `;` and anything is never
//! allowed; with a search_path the same, and an unknown path is never
//! less strict than a known one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use portcullis_policy::{
    Effect, K8sRequest, Policy, Principal, PrincipalKind, Relations, Request, Resource,
    ResourceKind, SearchPath,
};

#[derive(Debug, Arbitrary)]
struct Case {
    sql: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

const POLICY: &str = r#"
default = "allow"
on_unparsed = "review"
[[rule]]
id = "writes"
effect = "deny"
when.sql.kind = ["delete", "update", "drop", "truncate"]
[[rule]]
id = "danger"
effect = "deny"
when.sql.risk = ["dangerous_function", "copy_program", "changes_role_or_privilege"]
[[rule]]
id = "exec"
effect = "deny"
when.k8s.verb = ["exec", "attach", "portforward"]
[[rule]]
id = "shop"
effect = "review"
when.sql.objects = ["shop.*"]
"#;

/// What the catalog holds, for resolving names with a search_path: every
/// schema is on (or implicit in) the known paths below.
fn relations() -> &'static Relations {
    static R: OnceLock<Relations> = OnceLock::new();
    R.get_or_init(|| {
        [
            ("shop", "orders"),
            ("shop", "users"),
            ("shop", "customers"),
            ("public", "orders"),
            ("public", "users"),
            ("public", "notes"),
            ("pg_catalog", "pg_class"),
            ("pg_catalog", "pg_stat_activity"),
        ]
        .into_iter()
        .collect()
    })
}

fn rank(e: &Effect) -> u8 {
    match e {
        Effect::Allow => 0,
        Effect::Review { .. } => 1,
        Effect::Deny => 2,
    }
}

/// The session's search_path (issue 16), picked by the SQL's length so the
/// input format stays the same: the invariants hold with it, and an unknown
/// path is at least as strict as a known one over the same schemas.
fn check_search_path(policy: &Policy, p: &Principal, db: &Resource, sql: &str, chained: &str) {
    let paths = [
        SearchPath::Known(vec!["shop".into(), "public".into()]),
        SearchPath::Known(vec!["public".into()]),
        SearchPath::Known(vec!["public".into(), "pg_catalog".into(), "shop".into()]),
    ];
    let known = &paths[sql.len() % paths.len()];
    let unknown = SearchPath::Unknown;
    let ask = |text: &str, path: &SearchPath| {
        policy.evaluate(
            &Request::sql(p, db, text)
                .with_search_path(path)
                .with_relations(relations()),
        )
    };
    let dk = ask(sql, known);
    let du = ask(sql, &unknown);
    if dk.facts.unparsed() {
        assert!(!dk.effect.is_allow(), "unparsed but allowed: {sql:?}");
    }
    assert!(
        rank(&du.effect) >= rank(&dk.effect),
        "unknown path less strict than {known:?}: {sql:?}"
    );
    assert!(!ask(chained, known).effect.is_allow(), "{chained:?}");
}

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::from_toml_str(POLICY).expect("fuzz policy loads"))
}

/// The fuzz target's body.
fn run(case: Case) {
    if case.sql.len() > 8 << 10
        || case.body.as_ref().is_some_and(|b| b.len() > 16 << 10)
        || case.headers.len() > 16
    {
        return;
    }
    let p = Principal::new("fuzz", PrincipalKind::Agent);
    let db = Resource::new("db", ResourceKind::Postgres);
    let k8s = Resource::new("k8s", ResourceKind::Kubernetes);
    let policy = policy();

    let d = policy.evaluate(&Request::sql(&p, &db, &case.sql));
    if d.facts.unparsed() {
        assert!(!d.effect.is_allow(), "unparsed but allowed: {:?}", case.sql);
    }
    let chained = format!("DELETE FROM users;{}", case.sql);
    assert!(
        !policy
            .evaluate(&Request::sql(&p, &db, &chained))
            .effect
            .is_allow(),
        "{chained:?}"
    );
    check_search_path(policy, &p, &db, &case.sql, &chained);

    let mut req = K8sRequest::new(case.method, case.path).with_query(case.query);
    req.headers = case.headers;
    req.body = case.body;
    let d = policy.evaluate(&Request::kubernetes(&p, &k8s, req));
    if d.facts.unparsed() {
        assert!(!d.effect.is_allow());
    }
}

fn decode(bytes: &[u8]) -> Option<Case> {
    Case::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

fn files() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fuzz/policy");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn policy_seeds_and_crashers_replay() {
    let all = files();
    assert!(all.len() >= 4, "only {} inputs", all.len());
    for (name, bytes) in &all {
        let case = decode(bytes).unwrap_or_else(|| panic!("{name} does not decode"));
        run(case);
    }
}

/// Inputs a hostile agent would write, through the same checks.
#[test]
fn hostile_cases_hold_the_invariants() {
    let sql = [
        "SELECT '\\', ' ; DELETE FROM shop.orders; --'",
        "SELECT $$;DELETE FROM t;$$",
        "SELECT $a$ $b$ ; DROP TABLE t; $a$",
        "/* unterminated",
        "SELECT E'\\'' ; DELETE FROM t; --'",
        "COPY t TO PROGRAM 'id'",
        "SELECT pg_read_file('/etc/passwd')",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "SET standard_conforming_strings = off",
        "SELECT 1; SELECT 2",
        "SELECT * FROM orders",
        "DELETE FROM orders WHERE id = 1",
        "SET search_path = shop; SELECT * FROM orders",
        "SELECT set_config('search_path', 'shop', false); SELECT * FROM orders",
        "CREATE TABLE fresh AS SELECT * FROM orders, users, notes",
        "SELECT * FROM pg_class, pg_stat_activity, users, orders, notes, customers",
        "RESET ALL; TABLE users",
        "\u{0}",
        "",
    ];
    for sql in sql {
        run(Case {
            sql: sql.to_owned(),
            method: "POST".into(),
            path: "/api/v1/namespaces/default/pods/web-0/exec".into(),
            query: "command=sh&stdin=true".into(),
            headers: vec![("Upgrade".into(), "websocket".into())],
            body: Some(b"{\"kind\":\"Pod\"}".to_vec()),
        });
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The seeds with bytes overwritten at random places.
    #[test]
    fn mutated_policy_seeds_replay(
        pick in 0usize..64,
        edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..16),
    ) {
        let all = files();
        let mut bytes = all[pick % all.len()].1.clone();
        for (at, byte) in edits {
            let len = bytes.len();
            if len > 0 {
                bytes[at % len] = byte;
            }
        }
        if let Some(case) = decode(&bytes) {
            run(case);
        }
    }
}
