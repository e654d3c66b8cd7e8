//! Runs every case in testdata/policy/*.toml: a policy, and requests with the
//! effect and rule id each must get.
//!
//! File format:
//! ```toml
//! policy = '''
//! [[rule]] ...
//! '''
//! [defaults]                      # optional: principal and resource of every case
//! principal = { id = "a", kind = "agent", groups = [] }
//! resource = { name = "db", kind = "postgres", labels = { env = "prod" } }
//! [[case]]
//! name = "..."
//! sql = "..."                     # or k8s = { method, path, query, headers = [["k", "v"]], body }
//! effect = "deny"                 # allow | deny | review
//! rule = "rule-id"                # omitted or "" when the default / on_unparsed decided
//! principal = ...                 # optional, overrides the default
//! ```
//! No case is skipped.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use portcullis_policy::{
    K8sRequest, Policy, Principal, PrincipalKind, Request, Resource, ResourceKind,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    policy: String,
    #[serde(default)]
    defaults: Defaults,
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Defaults {
    principal: Option<P>,
    resource: Option<R>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct P {
    id: String,
    kind: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct R {
    name: String,
    kind: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct K {
    method: String,
    path: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    body: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    sql: Option<String>,
    k8s: Option<K>,
    effect: String,
    #[serde(default)]
    rule: String,
    principal: Option<P>,
    resource: Option<R>,
    /// A fact the decision must carry, as `path=value` over the JSON facts
    /// (for example `statements.0.writes.0=public.users`).
    #[serde(default)]
    facts: Vec<String>,
}

fn principal(p: &P) -> Principal {
    let kind = match p.kind.as_str() {
        "human" => PrincipalKind::Human,
        "agent" => PrincipalKind::Agent,
        "service" => PrincipalKind::Service,
        other => panic!("unknown principal kind {other}"),
    };
    Principal::new(p.id.clone(), kind).with_groups(p.groups.clone())
}

fn resource(r: &R) -> Resource {
    let kind = match r.kind.as_str() {
        "postgres" => ResourceKind::Postgres,
        "kubernetes" => ResourceKind::Kubernetes,
        other => panic!("unknown resource kind {other}"),
    };
    let mut res = Resource::new(r.name.clone(), kind);
    res.labels = r.labels.clone();
    res
}

fn lookup<'v>(v: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    path.split('.')
        .try_fold(v, |v, part| match part.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(part),
        })
}

fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/policy")
}

#[test]
fn testdata_cases() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no testdata/policy/*.toml");
    let mut failures = Vec::new();
    let mut total = 0;
    let mut evasion_cases = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let file: File =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let policy = Policy::from_toml_str(&file.policy)
            .unwrap_or_else(|e| panic!("{}: policy: {e}", path.display()));
        let is_evasion = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("evasion"));
        for case in &file.cases {
            total += 1;
            let p = case
                .principal
                .as_ref()
                .or(file.defaults.principal.as_ref())
                .map(principal)
                .unwrap_or_else(|| {
                    Principal::new("agent-1", PrincipalKind::Agent).with_groups(["agents"])
                });
            let default_kind = if case.k8s.is_some() {
                "kubernetes"
            } else {
                "postgres"
            };
            let r = case
                .resource
                .as_ref()
                .or(file.defaults.resource.as_ref())
                .filter(|r| r.kind == default_kind)
                .map(resource)
                .unwrap_or_else(|| {
                    resource(&R {
                        name: "prod".into(),
                        kind: default_kind.into(),
                        labels: [("env".into(), "prod".into())].into(),
                    })
                });
            let req = match (&case.sql, &case.k8s) {
                (Some(sql), None) => Request::sql(&p, &r, sql),
                (None, Some(k)) => {
                    let mut kr = K8sRequest::new(k.method.clone(), k.path.clone())
                        .with_query(k.query.clone());
                    kr.headers = k.headers.clone();
                    kr.body = k.body.as_ref().map(|b| b.as_bytes().to_vec());
                    Request::kubernetes(&p, &r, kr)
                }
                _ => panic!(
                    "{}: case {:?} needs exactly one of sql and k8s",
                    path.display(),
                    case.name
                ),
            };
            let d = policy.evaluate(&req);
            let rule = d.rule_id.clone().unwrap_or_default();
            let facts = serde_json::to_value(&d.facts).unwrap();
            let mut problems = Vec::new();
            if d.effect.as_str() != case.effect {
                problems.push(format!(
                    "effect {} (want {})",
                    d.effect.as_str(),
                    case.effect
                ));
            }
            if rule != case.rule {
                problems.push(format!("rule {rule:?} (want {:?})", case.rule));
            }
            for f in &case.facts {
                let (k, want) = f.split_once('=').expect("facts entries are path=value");
                let got = lookup(&facts, k).map_or_else(
                    || "<missing>".to_owned(),
                    |v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                );
                if got != want {
                    problems.push(format!("fact {k} = {got:?} (want {want:?})"));
                }
            }
            if is_evasion {
                evasion_cases += 1;
                if d.effect.is_allow() || case.effect == "allow" {
                    problems.push("an evasion case must be denied or held for review".into());
                }
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{} / {}: {}\n    reason: {}\n    facts: {}",
                    path.file_name().unwrap().to_string_lossy(),
                    case.name,
                    problems.join("; "),
                    d.reason,
                    facts
                ));
            }
        }
    }
    assert!(
        evasion_cases >= 40,
        "the evasion suite has {evasion_cases} cases, fewer than 40"
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{total} testdata cases passed ({evasion_cases} evasion cases)");
}
