//! Loading: validation errors carry the line and column of what is wrong.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use portcullis_policy::{
    Effect, Policy, Principal, PrincipalKind, Request, Resource, ResourceKind, ReviewMode,
};

fn location(src: &str) -> (usize, usize, String) {
    let e = Policy::from_toml_str(src).unwrap_err();
    let (l, c) = e.location().unwrap_or_else(|| panic!("no location in {e}"));
    (l, c, e.to_string())
}

#[test]
fn toml_syntax_error_is_located() {
    let (l, c, msg) = location("default = \"deny\"\n[[rule]\n");
    assert_eq!((l, c), (2, 8), "{msg}");
}

#[test]
fn unknown_key_is_located() {
    let (l, _, msg) =
        location("[[rule]]\nid = \"a\"\neffect = \"allow\"\nwhen.sql.knd = \"select\"\n");
    assert_eq!(l, 4, "{msg}");
    assert!(msg.contains("knd"), "{msg}");
}

#[test]
fn unknown_effect_kind_verb_and_risk_are_located() {
    let (l, c, msg) = location("[[rule]]\nid = \"a\"\neffect = \"permit\"\n");
    assert_eq!((l, c), (3, 10), "{msg}");
    let (l, _, msg) = location(
        "[[rule]]\nid = \"a\"\neffect = \"allow\"\nwhen.sql.kind = [\"select\", \"selct\"]\n",
    );
    assert_eq!(l, 4, "{msg}");
    assert!(msg.contains("selct"), "{msg}");
    let (l, _, msg) =
        location("[[rule]]\nid = \"a\"\neffect = \"deny\"\n\nwhen.k8s.verb = \"execute\"\n");
    assert_eq!(l, 5, "{msg}");
    let (l, _, msg) =
        location("[[rule]]\nid = \"a\"\neffect = \"deny\"\nwhen.sql.risk = \"no-where\"\n");
    assert_eq!(l, 4, "{msg}");
}

#[test]
fn bad_glob_duplicate_id_and_mixed_conditions_are_located() {
    let (l, _, msg) =
        location("[[rule]]\nid = \"a\"\neffect = \"deny\"\nwhen.sql.reads = \"public.[\"\n");
    assert_eq!(l, 4, "{msg}");
    let (l, c, msg) = location(
        "[[rule]]\nid = \"a\"\neffect = \"deny\"\n[[rule]]\nid = \"a\"\neffect = \"allow\"\n",
    );
    assert_eq!((l, c), (5, 6), "{msg}");
    let (_, _, msg) = location(
        "[[rule]]\nid = \"a\"\neffect = \"deny\"\nwhen.sql.kind = \"select\"\nwhen.k8s.verb = \"get\"\n",
    );
    assert!(msg.contains("not both"), "{msg}");
    let (l, _, msg) = location("[[rule]]\nid = \"a\"\neffect = \"deny\"\ngroups = [\"x\"]\n");
    assert_eq!(l, 1, "{msg}");
    let (l, _, msg) = location("on_unparsed = \"allow\"\n");
    assert_eq!(l, 1, "{msg}");
    let (l, _, msg) = location("[review]\ntimeout = \"ten minutes\"\n");
    assert_eq!(l, 2, "{msg}");
}

#[test]
fn review_defaults_and_overrides() {
    let policy = Policy::from_toml_str(
        r#"
        [review]
        groups = ["dba"]
        timeout = 600
        [[rule]]
        id = "r"
        effect = "review"
        min_approvals = 2
        mode = "ticket"
        when.sql.kind = "delete"
        "#,
    )
    .unwrap();
    let p = Principal::new("a", PrincipalKind::Human);
    let r = Resource::new("db", ResourceKind::Postgres);
    let d = policy.evaluate(&Request::sql(&p, &r, "DELETE FROM t WHERE id = 1"));
    assert_eq!(
        d.effect,
        Effect::Review {
            groups: vec!["dba".into()],
            min_approvals: 2,
            timeout: std::time::Duration::from_secs(600),
            mode: ReviewMode::Ticket
        }
    );
    assert_eq!(d.rule_id.as_deref(), Some("r"));
    assert_eq!(policy.rule_ids().collect::<Vec<_>>(), ["r"]);
}

#[test]
fn oversized_command_is_denied_without_analysis() {
    let policy = Policy::from_toml_str("default = \"allow\"\nmax_command_bytes = 16\n").unwrap();
    let p = Principal::new("a", PrincipalKind::Human);
    let r = Resource::new("db", ResourceKind::Postgres);
    assert!(
        policy
            .evaluate(&Request::sql(&p, &r, "SELECT 1"))
            .effect
            .is_allow()
    );
    let d = policy.evaluate(&Request::sql(&p, &r, "SELECT 1234567890123456789"));
    assert!(d.effect.is_deny());
    assert!(d.reason.contains("larger"), "{}", d.reason);
}

#[test]
fn long_operator_chain_is_unparsed_not_a_stack_overflow() {
    // A left-deep chain parses without recursion but walks deep; it must be
    // refused before it is walked. Run on a small stack to prove it.
    let sql = format!("SELECT {}", vec!["a"; 200_000].join(" + "));
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let policy =
                Policy::from_toml_str("default = \"allow\"\non_unparsed = \"deny\"\n").unwrap();
            let p = Principal::new("a", PrincipalKind::Human);
            let r = Resource::new("db", ResourceKind::Postgres);
            policy.evaluate(&Request::sql(&p, &r, &sql))
        })
        .unwrap();
    let d = handle.join().unwrap();
    assert!(d.effect.is_deny());
    assert!(d.facts.unparsed());
}

#[test]
fn operator_chain_at_the_limit_walks_on_a_test_stack() {
    // 500 operators is the default limit: it must analyse on a 2 MiB stack
    // (the test harness's) in a debug build.
    let sql = format!("SELECT {} FROM t", vec!["a"; 500].join(" + "));
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || portcullis_policy::analyze(&sql))
        .unwrap();
    let facts = handle.join().unwrap();
    assert!(!facts[0].unparsed, "{:?}", facts[0].parse_error);
}

/// The read-only agent example is the policy the read-only testdata files run.
#[test]
fn read_only_agent_example_is_the_tested_policy() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = std::fs::read_to_string(root.join("examples/read-only-agent.toml")).unwrap();
    portcullis_policy::Policy::from_toml_str(&example).unwrap();
    for f in ["read-only-agent.toml", "evasion-read-only.toml"] {
        let text = std::fs::read_to_string(root.join("testdata/policy").join(f)).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let policy = doc.get("policy").and_then(|p| p.as_str()).unwrap();
        assert_eq!(policy.trim(), example.trim(), "{f}");
    }
}

#[test]
fn mask_options_nothing_keeps_are_refused_with_their_location() {
    // `mask.detectors`: the gateway runs its whole catalogue on every
    // response, so a per-rule list would be a promise nothing keeps.
    let src = "[[rule]]\nid = \"r\"\neffect = \"allow\"\n[rule.mask]\ndetectors = [\"email\"]\n";
    let err = Policy::from_toml_str(src).unwrap_err();
    assert_eq!(err.location(), Some((5, 13)), "{err}");
    assert!(
        err.to_string().contains("mask.detectors is not supported"),
        "{err}"
    );

    // A field action other than `redact`.
    let src = "[[rule]]\nid = \"r\"\neffect = \"allow\"\n[rule.mask]\nfields = [{ field = \"users.email\", action = \"last4\" }]\n";
    let err = Policy::from_toml_str(src).unwrap_err();
    assert_eq!(err.location(), Some((5, 45)), "{err}");
    assert!(
        err.to_string().contains("unknown mask action \"last4\""),
        "{err}"
    );

    // `redact`, or no action at all, is the one action.
    for fields in [
        "fields = [{ field = \"users.email\", action = \"redact\" }]",
        "fields = [{ field = \"users.email\" }]",
    ] {
        let src = format!(
            "[[rule]]\nid = \"r\"\neffect = \"allow\"\nwhen.sql.kind = \"select\"\n[rule.mask]\n{fields}\n"
        );
        let policy = Policy::from_toml_str(&src).unwrap();
        let agent = Principal::new("a", PrincipalKind::Agent);
        let db = Resource::new("db", ResourceKind::Postgres);
        let d = policy.evaluate(&Request::sql(&agent, &db, "SELECT email FROM users"));
        assert_eq!(d.mask.fields.len(), 1);
        assert_eq!(d.mask.fields[0].field, "users.email");
        assert_eq!(d.mask.fields[0].action, "redact");
    }
}

#[test]
fn catalog_views_that_show_values_raise_a_risk_a_rule_can_refuse() {
    let policy = Policy::from_toml_str(
        r#"
        default = "allow"
        [[rule]]
        id = "no-other-sessions"
        effect = "deny"
        reason = "other sessions' statements and sampled values are off limits"
        when.sql.risk = "catalog_values"
        "#,
    )
    .unwrap();
    let p = Principal::new("a", PrincipalKind::Agent);
    let r = Resource::new("db", ResourceKind::Postgres);
    for sql in [
        "SELECT query FROM pg_stat_activity",
        "SELECT * FROM pg_catalog.pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid",
        "SELECT most_common_vals FROM \"pg_stats\" WHERE tablename = 't'",
        "SELECT name, statement FROM pg_prepared_statements",
        "SELECT query FROM pg_stat_statements ORDER BY calls DESC LIMIT 5",
        "SELECT * FROM pg_stat_get_activity(NULL)",
        "SELECT count(*) FROM (SELECT 1 FROM pg_cursors) c",
        "WITH a AS (SELECT query FROM pg_stat_activity) SELECT * FROM a",
    ] {
        let d = policy.evaluate(&Request::sql(&p, &r, sql));
        assert!(d.effect.is_deny(), "{sql}: {:?}", d.effect);
        assert_eq!(d.rule_id.as_deref(), Some("no-other-sessions"), "{sql}");
    }
    for sql in [
        "SELECT * FROM pg_locks",
        "SELECT relname FROM pg_class",
        "SELECT * FROM stats",
        "SELECT pg_backend_pid()",
    ] {
        let d = policy.evaluate(&Request::sql(&p, &r, sql));
        assert!(d.effect.is_allow(), "{sql}: {}", d.reason);
    }
}
