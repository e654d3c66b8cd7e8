//! How unqualified table names are resolved without the session's real
//! search_path (issue 16, "Startup parameters"), written down as tests:
//!
//! - Masking (the lineage walk) over-approximates: an unqualified name means
//!   every relation of that name the catalog holds, in any schema, so a
//!   masked `shop.users.api_key` stays masked whatever the search_path.
//! - Rules do not: `reads`, `writes` and `objects` qualify an unqualified
//!   name with the policy's `default_schema` (`public`) only. A rule on
//!   `shop.orders` does not match `DELETE FROM orders`, even where the
//!   backend role's search_path starts with `shop` (the demo's role has
//!   `search_path = shop, public`). Until the gateway reads the real
//!   search_path, `default_schema` must name the first schema of the
//!   backend role's search_path, or rules must name tables by a pattern that
//!   ignores the schema (`*.orders`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use portcullis_policy::{
    LineageSchema, Policy, Principal, PrincipalKind, Request, Resource, ResourceKind, lineage,
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
    // The known gap: with search_path = shop, public this deletes
    // shop.orders, but the rule reads `public.orders`.
    assert_eq!(decide(&policy, "DELETE FROM orders"), "allow");
    // What closes it today: default_schema set to the role's first schema…
    let pinned = Policy::from_toml_str(&format!("default_schema = \"shop\"\n{rule}")).unwrap();
    assert_eq!(decide(&pinned, "DELETE FROM orders"), "deny");
    assert_eq!(decide(&pinned, "DELETE FROM shop.orders"), "deny");
    // …or a rule that ignores the schema.
    let any_schema = Policy::from_toml_str(&rule.replace("shop.orders", "*.orders")).unwrap();
    assert_eq!(decide(&any_schema, "DELETE FROM orders"), "deny");
    assert_eq!(decide(&any_schema, "DELETE FROM shop.orders"), "deny");
}
