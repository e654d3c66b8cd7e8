//! `Policy::explain` and `replay`: the library side of
//! `portcullis policy explain` and `portcullis policy test --trail`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use portcullis_policy::{
    Policy, Principal, PrincipalKind, ReplayEntry, Request, Resource, ResourceKind, replay,
};

fn entry(sql: &str, recorded: &str) -> ReplayEntry {
    ReplayEntry {
        principal: Principal::new("agent-7", PrincipalKind::Agent),
        resource: Resource::new("orders", ResourceKind::Postgres),
        sql: sql.into(),
        recorded_effect: Some(recorded.into()),
    }
}

#[test]
fn replay_against_recorded_effects_counts_transitions_and_rules() {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/read-only-agent.toml"),
    )
    .unwrap();
    let candidate = Policy::from_toml_str(&example).unwrap();
    let trail = vec![
        entry("SELECT * FROM orders WHERE id = 1", "allow"),
        entry("SELECT * FROM orders FOR UPDATE", "allow"),
        entry("COMMIT; DROP TABLE orders", "allow"),
        entry("SHOW search_path", "deny"),
        entry("FETCH 10 FROM c", "review"),
    ];
    let r = replay(&candidate, None, trail);
    assert_eq!(r.total, 5);
    assert_eq!(r.changed, 4);
    assert_eq!(r.transitions["allow -> allow"], 1);
    assert_eq!(r.transitions["allow -> deny"], 2);
    assert_eq!(r.transitions["deny -> allow"], 1);
    assert_eq!(r.transitions["review -> allow"], 1);
    assert_eq!(r.per_rule["read-only"], 3);
    assert_eq!(r.per_rule["(default)"], 2);
    assert_eq!(r.changes[0].index, 1);
    assert_eq!(
        r.changes[1].reason,
        "statement 2: no rule matched; the policy default is deny"
    );
    let text = r.to_string();
    assert!(text.starts_with("replayed 5 statements: 4 would be decided differently\n"));
    assert!(text.contains("  allow -> deny: 2\n"));
}

#[test]
fn explain_lists_facts_rules_and_decision() {
    let policy = Policy::from_toml_str(
        r#"
        on_unparsed = "rules"
        [[rule]]
        id = "reads"
        effect = "allow"
        when.sql.read_only = true
        [[rule]]
        id = "no-locks"
        effect = "deny"
        when.sql.kind = "lock"
        "#,
    )
    .unwrap();
    let who = Principal::new("a", PrincipalKind::Agent);
    let db = Resource::new("db", ResourceKind::Postgres);
    let e = policy.explain(&Request::sql(&who, &db, "LOCK TABLE users; SHOW work_mem"));
    assert!(e.decision.effect.is_deny());
    assert_eq!(e.decision.rule_id.as_deref(), Some("no-locks"));
    assert_eq!(e.statements.len(), 2);
    assert_eq!(e.statements[0].matched[0].id, "no-locks");
    assert_eq!(e.statements[0].facts.writes, ["public.users"]);
    assert_eq!(e.statements[1].effect, "allow");
    let text = e.to_string();
    assert!(
        text.contains("statement 1: lock\n  read_only: false\n"),
        "{text}"
    );
    assert!(text.contains("  writes: public.users\n"), "{text}");
    assert!(
        text.contains("  matching rules: no-locks (deny)\n"),
        "{text}"
    );
    assert!(
        text.ends_with("decision: deny by no-locks: statement 1: denied by rule no-locks"),
        "{text}"
    );
    // The same decision as evaluate.
    let d = policy.evaluate(&Request::sql(&who, &db, "LOCK TABLE users; SHOW work_mem"));
    assert_eq!(d, e.decision);
}
