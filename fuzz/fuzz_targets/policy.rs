//! Evaluates arbitrary SQL strings and Kubernetes requests: never panics, an
//! unparsed command is never allowed, and appending `;` and anything to a
//! denied statement never yields an allow; with a search_path, the same, and
//! an unknown path is never less strict than a known one.
//!
//! Seeds and crashers live in testdata/fuzz/policy/ and are replayed (with
//! mutations) by `cargo test -p portcullis-policy --test fuzz_replay`, which decodes
//! them into the same input structure; keep the two in step.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis_policy::{
    Effect, K8sRequest, Policy, Principal, PrincipalKind, Relations, Request, Resource, ResourceKind,
    SearchPath,
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
        policy.evaluate(&Request::sql(p, db, text).with_search_path(path).with_relations(relations()))
    };
    let dk = ask(sql, known);
    let du = ask(sql, &unknown);
    if dk.facts.unparsed() {
        assert!(!dk.effect.is_allow(), "unparsed but allowed: {sql:?}");
    }
    assert!(rank(&du.effect) >= rank(&dk.effect), "unknown path less strict than {known:?}: {sql:?}");
    assert!(!ask(chained, known).effect.is_allow(), "{chained:?}");
}

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::from_toml_str(POLICY).expect("fuzz policy loads"))
}

fuzz_target!(|case: Case| {
    // Bounded input: the policy's own limits are larger, the fuzzer is faster small.
    if case.sql.len() > 8 << 10 || case.body.as_ref().is_some_and(|b| b.len() > 16 << 10) || case.headers.len() > 16 {
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
    assert!(!policy.evaluate(&Request::sql(&p, &db, &chained)).effect.is_allow(), "{chained:?}");
    check_search_path(policy, &p, &db, &case.sql, &chained);

    let mut req = K8sRequest::new(case.method, case.path).with_query(case.query);
    req.headers = case.headers;
    req.body = case.body;
    let d = policy.evaluate(&Request::kubernetes(&p, &k8s, req));
    if d.facts.unparsed() {
        assert!(!d.effect.is_allow());
    }
});
