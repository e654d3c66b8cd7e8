//! Explains what a policy decides for a SQL command.
//!
//! ```text
//! cargo run -p portcullis-policy --example explain -- POLICY.toml "SQL"
//! cargo run -p portcullis-policy --example explain -- POLICY.toml --batch < queries.jsonl
//! ```
//!
//! The first form prints the decision, the rule and the facts. With
//! `--batch`, each line of standard input is one JSON string (a statement, as
//! in a log of past queries) and each line of output is one JSON decision:
//! `{"sql", "effect", "review", "rule_id", "reason", "unparsed", "facts",
//! "mask"}`, so a policy can be dry-run against history. Optional
//! `--principal ID:KIND[:GROUP,…]` and `--resource NAME[:LABEL=VALUE,…]` set who
//! asks and where (default: `agent-1:agent` on `db:env=prod`).

use std::io::{BufRead, Write};
use std::process::ExitCode;

use portcullis_policy::{
    Decision, Effect, Policy, Principal, PrincipalKind, Request, Resource, ResourceKind,
};

fn usage() -> ExitCode {
    eprintln!(
        "usage: explain POLICY.toml [--principal ID:KIND[:GROUPS]] [--resource NAME[:K=V,...]] (SQL | --batch)"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(policy_path) = args.first() else {
        return usage();
    };
    let mut principal = Principal::new("agent-1", PrincipalKind::Agent);
    let mut resource = Resource::new("db", ResourceKind::Postgres).with_label("env", "prod");
    let mut batch = false;
    let mut sql = None;
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--batch" => batch = true,
            "--principal" => match rest.next().and_then(|s| parse_principal(s)) {
                Some(p) => principal = p,
                None => return usage(),
            },
            "--resource" => match rest.next() {
                Some(s) => resource = parse_resource(s),
                None => return usage(),
            },
            _ if sql.is_none() => sql = Some(a.clone()),
            _ => return usage(),
        }
    }
    let text = match std::fs::read_to_string(policy_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{policy_path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let policy = match Policy::from_toml_str(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{policy_path}: {e}");
            return ExitCode::FAILURE;
        }
    };

    if batch {
        let stdin = std::io::stdin();
        let mut out = std::io::stdout().lock();
        for (n, line) in stdin.lock().lines().enumerate() {
            let Ok(line) = line else {
                eprintln!("line {}: not UTF-8", n + 1);
                return ExitCode::FAILURE;
            };
            if line.trim().is_empty() {
                continue;
            }
            let sql: String = match serde_json::from_str(&line) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("line {}: expected a JSON string: {e}", n + 1);
                    return ExitCode::FAILURE;
                }
            };
            let d = policy.evaluate(&Request::sql(&principal, &resource, &sql));
            let json = decision_json(&sql, &d);
            if writeln!(out, "{json}").is_err() {
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }

    let Some(sql) = sql else { return usage() };
    let d = policy.evaluate(&Request::sql(&principal, &resource, &sql));
    println!("decision: {}", effect_text(&d.effect));
    println!(
        "rule:     {}",
        d.rule_id
            .as_deref()
            .unwrap_or("(none: policy default or on_unparsed)")
    );
    println!("reason:   {}", d.reason);
    if !d.mask.is_empty() {
        println!(
            "mask:     {}",
            serde_json::to_string(&d.mask).unwrap_or_default()
        );
    }
    println!("facts:");
    println!(
        "{}",
        serde_json::to_string_pretty(&d.facts).unwrap_or_default()
    );
    ExitCode::SUCCESS
}

fn effect_text(e: &Effect) -> String {
    match e {
        Effect::Review {
            groups,
            min_approvals,
            timeout,
            mode,
        } => format!(
            "review ({min_approvals} approval(s) from {}, {} s timeout, {})",
            if groups.is_empty() {
                "any approver".to_owned()
            } else {
                groups.join(", ")
            },
            timeout.as_secs(),
            mode.as_str()
        ),
        other => other.as_str().to_owned(),
    }
}

fn decision_json(sql: &str, d: &Decision) -> serde_json::Value {
    serde_json::json!({
        "sql": sql,
        "effect": d.effect.as_str(),
        "review": match &d.effect { Effect::Review { .. } => serde_json::to_value(&d.effect).ok(), _ => None },
        "rule_id": d.rule_id,
        "reason": d.reason,
        "unparsed": d.facts.unparsed(),
        "facts": d.facts,
        "mask": d.mask,
    })
}

fn parse_principal(s: &str) -> Option<Principal> {
    let mut parts = s.splitn(3, ':');
    let id = parts.next()?;
    let kind = match parts.next()? {
        "human" => PrincipalKind::Human,
        "agent" => PrincipalKind::Agent,
        "service" => PrincipalKind::Service,
        _ => return None,
    };
    let groups = parts
        .next()
        .map(|g| g.split(',').filter(|g| !g.is_empty()).collect::<Vec<_>>())
        .unwrap_or_default();
    Some(Principal::new(id, kind).with_groups(groups))
}

fn parse_resource(s: &str) -> Resource {
    let (name, labels) = s.split_once(':').unwrap_or((s, ""));
    let mut r = Resource::new(name, ResourceKind::Postgres);
    for kv in labels.split(',').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        r = r.with_label(k, v);
    }
    r
}
