//! How unqualified table names are resolved (issue 16, "Startup
//! parameters"), written down as tests:
//!
//! - Masking (the lineage walk) over-approximates: an unqualified name means
//!   every relation of that name the catalog holds, in any schema, so a
//!   masked `shop.users.api_key` stays masked whatever the search_path.
//! - Rules (`reads`, `writes`, `objects`, `columns`) resolve a name written
//!   without a schema with the request's [`SearchPath`]: as PostgreSQL does
//!   (the first schema of the path that holds it, `pg_catalog` first) when
//!   the path and the [`Relations`] are known; when they are not, every
//!   possible resolution is decided and the strictest decision is taken.
//! - Without a search path in the request, the policy's `default_schema`
//!   (`public`) qualifies them, as before: a rule on `shop.orders` does not
//!   match `DELETE FROM orders`. The gateway always gives the session's path.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use portcullis_policy::{
    Effect, LineageSchema, Policy, Principal, PrincipalKind, Relations, Request, Resource,
    ResourceKind, Risk, SearchPath, SearchPathChange, analyze, lineage,
};

#[test]
fn masking_matches_an_unqualified_name_in_every_schema() {
    let mut schema = LineageSchema::new();
    schema.add_table("shop", "users", [("id", false), ("api_key", true)]);
    schema.add_table("public", "users", [("id", false), ("note", false)]);
    schema.add_table("public", "plain", [("id", false)]);
    let schema = schema.finish();
    // Whichever `users` the search_path finds, the walk masks as if it
    // could be the one with the masked column.
    for sql in [
        "SELECT * FROM users",
        "SELECT id FROM users",
        "SELECT api_key FROM shop.users",
    ] {
        let l = lineage(sql, &schema);
        assert!(l[0].reads_masked, "{sql}");
    }
    // Qualified, and only the clean one: nothing masked.
    let l = lineage("SELECT * FROM public.users", &schema);
    assert!(!l[0].reads_masked);
    assert!(!l[0].output.any_masked());
    let l = lineage("SELECT * FROM plain", &schema);
    assert!(!l[0].output.any_masked());
}

fn decide(policy: &Policy, sql: &str) -> String {
    let p = Principal::new("agent", PrincipalKind::Agent);
    let db = Resource::new("shop", ResourceKind::Postgres);
    policy
        .evaluate(&Request::sql(&p, &db, sql))
        .effect
        .as_str()
        .to_owned()
}

#[test]
fn rules_qualify_an_unqualified_name_with_default_schema_only() {
    let rule = "default = \"allow\"\n[[rule]]\nid = \"orders\"\neffect = \"deny\"\n\
                when.sql.writes = [\"shop.orders\"]\n";
    let policy = Policy::from_toml_str(rule).unwrap();
    assert_eq!(decide(&policy, "DELETE FROM shop.orders"), "deny");
    // Without a search path in the request: `public.orders` (the gateway
    // always gives one; see below).
    assert_eq!(decide(&policy, "DELETE FROM orders"), "allow");
    // What an embedder without the session's path can do: default_schema
    // set to the role's first schema…
    let pinned = Policy::from_toml_str(&format!("default_schema = \"shop\"\n{rule}")).unwrap();
    assert_eq!(decide(&pinned, "DELETE FROM orders"), "deny");
    assert_eq!(decide(&pinned, "DELETE FROM shop.orders"), "deny");
    // …or a rule that ignores the schema.
    let any_schema = Policy::from_toml_str(&rule.replace("shop.orders", "*.orders")).unwrap();
    assert_eq!(decide(&any_schema, "DELETE FROM orders"), "deny");
    assert_eq!(decide(&any_schema, "DELETE FROM shop.orders"), "deny");
}

fn shop_relations() -> Relations {
    [
        ("shop", "orders"),
        ("public", "orders"),
        ("public", "users"),
        ("shop", "customers"),
        ("pg_catalog", "pg_class"),
    ]
    .into_iter()
    .collect()
}

fn path(list: &[&str]) -> SearchPath {
    SearchPath::Known(list.iter().map(|s| (*s).to_owned()).collect())
}

fn decide_in(policy: &Policy, sql: &str, path: &SearchPath, rel: Option<&Relations>) -> Effect {
    let p = Principal::new("agent", PrincipalKind::Agent);
    let db = Resource::new("shop", ResourceKind::Postgres);
    let mut req = Request::sql(&p, &db, sql).with_search_path(path);
    if let Some(r) = rel {
        req = req.with_relations(r);
    }
    policy.evaluate(&req).effect
}

const SHOP_DENY: &str = "default = \"allow\"\n[[rule]]\nid = \"orders\"\neffect = \"deny\"\n\
                         when.sql.writes = [\"shop.orders\"]\n";

#[test]
fn a_known_path_closes_the_bypass() {
    let policy = Policy::from_toml_str(SHOP_DENY).unwrap();
    let rel = shop_relations();
    let shop_first = path(&["shop", "public"]);
    assert!(decide_in(&policy, "DELETE FROM orders", &shop_first, Some(&rel)).is_deny());
    assert!(decide_in(&policy, "DELETE FROM \"orders\"", &shop_first, Some(&rel)).is_deny());
    assert!(
        decide_in(
            &policy,
            "DELETE FROM public.orders",
            &shop_first,
            Some(&rel)
        )
        .is_allow()
    );
    // With the path the other way round, `orders` is public's.
    let public_first = path(&["public", "shop"]);
    assert!(decide_in(&policy, "DELETE FROM orders", &public_first, Some(&rel)).is_allow());
    assert!(
        decide_in(
            &policy,
            "DELETE FROM shop.orders",
            &public_first,
            Some(&rel)
        )
        .is_deny()
    );
    // Without relations, a known path could mean any of its schemas.
    assert!(decide_in(&policy, "DELETE FROM orders", &public_first, None).is_deny());
    // The facts say where the name went.
    let p = Principal::new("agent", PrincipalKind::Agent);
    let db = Resource::new("shop", ResourceKind::Postgres);
    let d = policy.evaluate(
        &Request::sql(
            &p,
            &db,
            "UPDATE orders SET paid = true FROM users WHERE users.id = 1",
        )
        .with_search_path(&shop_first)
        .with_relations(&rel),
    );
    let portcullis_policy::CommandFacts::Sql { statements } = &d.facts else {
        panic!()
    };
    assert_eq!(statements[0].writes, ["shop.orders"]);
    assert_eq!(statements[0].reads, ["public.users"]);
    assert_eq!(statements[0].unqualified, ["orders", "users"]);
    assert_eq!(d.rule_id.as_deref(), Some("orders"));
}

#[test]
fn an_unknown_path_takes_the_strictest_resolution() {
    let policy = Policy::from_toml_str(SHOP_DENY).unwrap();
    let rel = shop_relations();
    let unknown = SearchPath::Unknown;
    assert!(decide_in(&policy, "DELETE FROM orders", &unknown, Some(&rel)).is_deny());
    // A name only public holds: public (the default) or nothing else.
    assert!(decide_in(&policy, "DELETE FROM users", &unknown, Some(&rel)).is_allow());
    // Unknown, and nothing known of the catalog: a name without a schema
    // cannot be resolved at all.
    let d = decide_in(&policy, "SELECT * FROM users", &unknown, None);
    assert!(d.is_deny());
    assert!(decide_in(&policy, "SELECT 1", &unknown, None).is_allow());
    assert!(decide_in(&policy, "SELECT * FROM public.users", &unknown, None).is_allow());
    // `$user` in a path: the policy cannot tell which schema it is.
    let user = path(&["$user", "public"]);
    assert!(decide_in(&policy, "DELETE FROM orders", &user, Some(&rel)).is_deny());
}

#[test]
fn an_allow_on_one_candidate_does_not_allow_the_others() {
    let policy = Policy::from_toml_str(
        "default = \"deny\"\n[[rule]]\nid = \"public-writes\"\neffect = \"allow\"\n\
         when.sql.writes = { all = [\"public.*\"] }\n\
         [[rule]]\nid = \"shop-review\"\neffect = \"review\"\n\
         when.sql.writes = [\"shop.*\"]\n",
    )
    .unwrap();
    let rel = shop_relations();
    let known = path(&["public", "shop"]);
    assert!(decide_in(&policy, "DELETE FROM orders", &known, Some(&rel)).is_allow());
    // Unknown: shop.orders is held for review, which is stricter.
    let e = decide_in(
        &policy,
        "DELETE FROM orders",
        &SearchPath::Unknown,
        Some(&rel),
    );
    assert_eq!(e.as_str(), "review");
    // A name only shop holds, with a path naming public first: shop's.
    let e = decide_in(&policy, "DELETE FROM customers", &known, Some(&rel));
    assert_eq!(e.as_str(), "review");
    // A new name: either schema of the path could get it (the first that
    // exists), so shop's review holds.
    let e = decide_in(&policy, "CREATE TABLE fresh (id int)", &known, Some(&rel));
    assert_eq!(e.as_str(), "review");
}

#[test]
fn catalog_relations_resolve_to_pg_catalog_first() {
    let policy = Policy::from_toml_str(
        "default = \"allow\"\n[[rule]]\nid = \"catalog\"\neffect = \"deny\"\n\
         when.sql.reads = [\"pg_catalog.*\"]\n",
    )
    .unwrap();
    let mut rel = shop_relations();
    rel.add("shop", "pg_class");
    assert!(
        decide_in(
            &policy,
            "SELECT * FROM pg_class",
            &path(&["shop"]),
            Some(&rel)
        )
        .is_deny()
    );
    // Listed after shop: shop's own pg_class comes first.
    let listed = path(&["shop", "pg_catalog"]);
    assert!(decide_in(&policy, "SELECT * FROM pg_class", &listed, Some(&rel)).is_allow());
}

#[test]
fn too_many_resolutions_are_denied() {
    let policy = Policy::from_toml_str("default = \"allow\"").unwrap();
    let wide = path(&["a", "b", "c"]);
    // 3 names x 3 schemas = 27 resolutions: decided.
    assert!(decide_in(&policy, "SELECT * FROM x, y, z", &wide, None).is_allow());
    // 4 names: 81 > 64, denied with the reason.
    let p = Principal::new("agent", PrincipalKind::Agent);
    let db = Resource::new("shop", ResourceKind::Postgres);
    let d =
        policy.evaluate(&Request::sql(&p, &db, "SELECT * FROM w, x, y, z").with_search_path(&wide));
    assert!(d.effect.is_deny());
    assert!(
        d.reason.contains("name them with their schema"),
        "{}",
        d.reason
    );
}

#[test]
fn statements_that_change_the_search_path_say_so() {
    let set = |list: &[&str]| {
        Some(SearchPathChange::Set(
            list.iter().map(|s| (*s).to_owned()).collect(),
        ))
    };
    for (sql, want) in [
        ("SET search_path = shop, public", set(&["shop", "public"])),
        (
            "set SESSION search_path TO Shop, \"Public\", 'x y'",
            set(&["shop", "Public", "x y"]),
        ),
        (
            "SET search_path = \"$user\", public",
            set(&["$user", "public"]),
        ),
        ("SET search_path = DEFAULT", Some(SearchPathChange::Reset)),
        ("RESET search_path", Some(SearchPathChange::Reset)),
        ("RESET ALL", Some(SearchPathChange::Reset)),
        ("DISCARD ALL", Some(SearchPathChange::Reset)),
        (
            "SET LOCAL search_path = shop",
            Some(SearchPathChange::Unknown),
        ),
        (
            "SET search_path = E'sh\\x6fp'",
            Some(SearchPathChange::Unknown),
        ),
        (
            "SELECT set_config('search_path', 'shop', false)",
            Some(SearchPathChange::Unknown),
        ),
        (
            "SELECT 1 WHERE pg_catalog.set_config('x', 'y', false) <> ''",
            Some(SearchPathChange::Unknown),
        ),
        ("SELECT my_function()", Some(SearchPathChange::Unknown)),
        ("CALL my_procedure()", Some(SearchPathChange::Unknown)),
        (
            "DO $$ BEGIN PERFORM 1; END $$",
            Some(SearchPathChange::Unknown),
        ),
        ("SET ROLE other", Some(SearchPathChange::Unknown)),
        ("RESET ROLE", Some(SearchPathChange::Unknown)),
        (
            "SET search_path FROM CURRENT",
            Some(SearchPathChange::Unknown),
        ),
        ("EXECUTE prepared_one", Some(SearchPathChange::Unknown)),
        ("SELECT lower(name), count(*) FROM users GROUP BY 1", None),
        ("DELETE FROM orders WHERE id = 1", None),
        ("SET statement_timeout = 5", None),
        ("DISCARD PLANS", None),
        ("BEGIN", None),
    ] {
        let facts = analyze(sql);
        assert_eq!(facts[0].search_path, want, "{sql}");
    }
    // Serialized for the audit trail only when there is a change.
    let json = serde_json::to_string(&analyze("RESET search_path")[0]).unwrap();
    assert!(json.contains("\"search_path\":\"reset\""), "{json}");
    let json = serde_json::to_string(&analyze("SELECT 1")[0]).unwrap();
    assert!(!json.contains("search_path"), "{json}");
}

#[test]
fn a_change_in_the_command_applies_to_its_next_statements() {
    let policy = Policy::from_toml_str(SHOP_DENY).unwrap();
    let rel = shop_relations();
    let shop_first = path(&["shop", "public"]);
    let e = |sql: &str| decide_in(&policy, sql, &shop_first, Some(&rel));
    assert!(e("SET search_path = public; DELETE FROM orders").is_allow());
    assert!(e("SET search_path = public, shop; DELETE FROM orders").is_allow());
    assert!(e("DELETE FROM orders; SET search_path = public").is_deny());
    assert!(e("SET search_path = public; SET search_path = shop; DELETE FROM orders").is_deny());
    // Unknown after these: both orders tables are candidates.
    for change in [
        "SELECT set_config('search_path', 'public', false)",
        "RESET search_path",
        "SET LOCAL search_path = public",
    ] {
        let start = path(&["public"]);
        let sql = format!("{change}; DELETE FROM orders");
        assert!(
            decide_in(&policy, &sql, &start, Some(&rel)).is_deny(),
            "{sql}"
        );
        assert!(decide_in(&policy, "DELETE FROM orders", &start, Some(&rel)).is_allow());
    }
}

#[test]
fn embedder_risks_apply_to_every_statement() {
    let policy = Policy::from_toml_str(
        "default = \"allow\"\n[[rule]]\nid = \"inference\"\neffect = \"deny\"\n\
         when.sql.risk = [\"masked_column_predicate\"]\n",
    )
    .unwrap();
    let p = Principal::new("agent", PrincipalKind::Agent);
    let db = Resource::new("shop", ResourceKind::Postgres);
    let risks = [Risk::MaskedColumnPredicate];
    let req = Request::sql(&p, &db, "SELECT 1; SELECT 2").with_risks(&risks);
    assert!(policy.evaluate(&req).effect.is_deny());
    let sp = path(&["public"]);
    assert!(
        policy
            .evaluate(&req.clone().with_search_path(&sp))
            .effect
            .is_deny()
    );
    assert!(
        policy
            .evaluate(&Request::sql(&p, &db, "SELECT 1"))
            .effect
            .is_allow()
    );
}

#[test]
fn a_creation_may_go_to_any_schema_of_the_path() {
    let policy = Policy::from_toml_str(
        "default = \"allow\"\n[[rule]]\nid = \"public\"\neffect = \"deny\"\n\
         when.sql.writes = [\"public.*\"]\n",
    )
    .unwrap();
    let rel = shop_relations();
    // `customers` is only shop's, but a new one goes to the first schema
    // of the path, whichever holds the name.
    for sql in [
        "SELECT * INTO customers FROM shop.orders",
        "CREATE TABLE customers (id int)",
        "CREATE TABLE fresh AS SELECT 1",
    ] {
        let e = decide_in(&policy, sql, &SearchPath::Unknown, Some(&rel));
        assert!(e.is_deny(), "{sql}");
        let e = decide_in(&policy, sql, &path(&["shop", "public"]), Some(&rel));
        assert!(e.is_deny(), "{sql}");
        assert!(
            decide_in(&policy, sql, &path(&["shop"]), Some(&rel)).is_allow(),
            "{sql}"
        );
    }
    // Not a creation: only the schemas holding it.
    let e = decide_in(
        &policy,
        "DELETE FROM customers",
        &SearchPath::Unknown,
        Some(&rel),
    );
    assert!(e.is_allow());
}
