//! Evaluates arbitrary SQL strings and Kubernetes requests: never panics, an
//! unparsed command is never allowed, and appending `;` and anything to a
//! denied statement never yields an allow.
//!
//! Seeds and crashers live in testdata/fuzz/policy/ and are replayed (with
//! mutations) by `cargo test -p portcullis-policy --test fuzz_replay`, which decodes
//! them into the same input structure; keep the two in step.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis_policy::{K8sRequest, Policy, Principal, PrincipalKind, Request, Resource, ResourceKind};

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
"#;

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

    let mut req = K8sRequest::new(case.method, case.path).with_query(case.query);
    req.headers = case.headers;
    req.body = case.body;
    let d = policy.evaluate(&Request::kubernetes(&p, &k8s, req));
    if d.facts.unparsed() {
        assert!(!d.effect.is_allow());
    }
});
