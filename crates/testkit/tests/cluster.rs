//! The testkit's own tests: real PostgreSQL clusters and the real psql.

use portcullis_testkit::{Client, PgCluster};

#[test]
fn two_clusters_in_parallel_require_scram_and_refuse_a_wrong_password() {
    let handles: Vec<_> = ["first pa$$ word", "second:p@ss/word"]
        .into_iter()
        .map(|password| {
            std::thread::spawn(move || {
                let pg = PgCluster::builder().password(password).start().unwrap();
                (pg, password)
            })
        })
        .collect();
    let clusters: Vec<(PgCluster, &str)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let (a, b) = (&clusters[0].0, &clusters[1].0);
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());

    for (pg, password) in &clusters {
        assert_eq!(pg.password(), *password);
        // The right password, over TCP, with SCRAM-SHA-256.
        let out = Client::psql(&pg.dsn())
            .unwrap()
            .args(["-tAc", "select current_user || ' ' || inet_server_port()"])
            .run()
            .unwrap();
        assert!(out.success(), "psql failed: {}", out.stderr);
        assert_eq!(out.stdout.trim(), format!("postgres {}", pg.port()));

        let stored = pg
            .execute("select rolpassword from pg_authid where rolname = 'postgres'")
            .unwrap();
        assert!(
            stored.starts_with("SCRAM-SHA-256$"),
            "stored verifier: {stored}"
        );
        let method = pg
            .execute("select auth_method from pg_hba_file_rules where type = 'host' limit 1")
            .unwrap();
        assert_eq!(method.trim(), "scram-sha-256");

        // A wrong password is refused, and the server says 28P01.
        let out = Client::psql(&pg.dsn_for("postgres", "not the password", "postgres"))
            .unwrap()
            .args(["-tAc", "select 1"])
            .run()
            .unwrap();
        assert!(!out.success());
        assert!(
            out.stderr.contains("password authentication failed"),
            "stderr: {}",
            out.stderr
        );
        let log = pg.log();
        assert!(
            log.lines()
                .any(|l| l.contains(" 28P01 ") && l.contains("password authentication failed")),
            "no 28P01 in the server log:\n{log}"
        );
    }
}

#[test]
fn settings_apply_restart_keeps_data_and_drop_removes_everything() {
    let mut pg = PgCluster::builder()
        .superuser("alice")
        .password("it's secret")
        .setting("max_connections", "42")
        .start()
        .unwrap();
    assert_eq!(pg.execute("show max_connections").unwrap().trim(), "42");
    let out = Client::psql(&pg.dsn())
        .unwrap()
        .args([
            "-tAc",
            "select rolsuper from pg_roles where rolname = current_user",
        ])
        .run()
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "t");

    pg.execute("create table kept(x int); insert into kept values (7)")
        .unwrap();
    let port = pg.port();
    pg.restart().unwrap();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.execute("select x from kept").unwrap().trim(), "7");

    pg.stop().unwrap();
    let out = Client::psql(&pg.dsn())
        .unwrap()
        .args(["-tAc", "select 1"])
        .run()
        .unwrap();
    assert!(!out.success(), "a stopped server answered");
    pg.start_again().unwrap();

    let dir = pg.data_dir();
    assert!(dir.exists());
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn pgbench_runs_against_a_cluster() {
    let pg = PgCluster::start().unwrap();
    let init = Client::pgbench(&pg.dsn())
        .unwrap()
        .args(["-i", "-q", "-s", "1"])
        .run()
        .unwrap();
    assert!(init.success(), "{}", init.stderr);
    let run = Client::pgbench(&pg.dsn())
        .unwrap()
        .args(["-t", "20", "-c", "2", "-S"])
        .run()
        .unwrap();
    assert!(run.success(), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("number of transactions actually processed: 40/40"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_panicking_test_still_stops_its_cluster() {
    let result = std::panic::catch_unwind(|| {
        let pg = PgCluster::start().unwrap();
        let dir = pg.data_dir();
        std::panic::panic_any(dir);
    });
    let payload = result.unwrap_err();
    let dir = payload.downcast_ref::<std::path::PathBuf>().unwrap();
    assert!(!dir.exists(), "{} left behind after a panic", dir.display());
}
