//! The demo's seed loads into a real PostgreSQL, and the role it creates for
//! the gateway is least-privilege: it reads the shop, not pg_authid.
#![allow(clippy::unwrap_used)]

use portcullis_testkit::{Client, PgCluster};

const SEED: &str = include_str!("../src/demo/seed.sql");

#[test]
fn the_demo_seed_loads_and_its_gateway_role_is_least_privilege() {
    let pg = PgCluster::start().unwrap();
    let out = Client::psql(&pg.dsn())
        .unwrap()
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "gateway_password=demo pw 1",
            "-q",
            "-f",
            "-",
        ])
        .stdin(SEED)
        .run()
        .unwrap();
    assert!(out.success(), "{}", out.stderr);

    let gw = pg.dsn_for("portcullis_gateway", "demo pw 1", "postgres");
    let out = Client::psql(&gw)
        .unwrap()
        .args(["-tAc", "select count(*) from customers"])
        .run()
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "5");

    let out = Client::psql(&gw)
        .unwrap()
        .args([
            "-v",
            "VERBOSITY=verbose",
            "-tAc",
            "select rolpassword from pg_authid",
        ])
        .run()
        .unwrap();
    assert!(!out.success());
    assert!(out.stderr.contains("42501"), "{}", out.stderr);

    let out = Client::psql(&gw)
        .unwrap()
        .args([
            "-tAc",
            "select rolsuper from pg_roles where rolname = current_user",
        ])
        .run()
        .unwrap();
    assert_eq!(out.stdout.trim(), "f");
}
