//! Real psql through the real proxy to a real PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Running;
use portcullis_testkit::{Client, PgCluster};

fn direct_dsn(cluster: &PgCluster, db: &str) -> String {
    cluster.dsn_for(cluster.superuser(), cluster.password(), db)
}

/// Replaces the digits after "PID " (notifications name the server process).
fn normalize_pids(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("PID ") {
        out.push_str(&rest[..at + 4]);
        rest = rest[at + 4..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

const SCRIPT: &str = r#"\set VERBOSITY verbose
CREATE TABLE t (id int primary key, name text, secret text);
INSERT INTO t VALUES (1, 'alice', 'hush-one'), (2, 'bob', 'hush-two');
SELECT * FROM t ORDER BY id;
\d t
CREATE TABLE c (id int, note text);
COPY c FROM STDIN;
1	first
2	has s3cr3t inside
\.
COPY c TO STDOUT;
\copy (SELECT * FROM c ORDER BY id) TO STDOUT
BEGIN;
INSERT INTO c VALUES (3, 'in tx');
SELECT 1/0;
SELECT 1;
ROLLBACK;
SELECT count(*) FROM c;
PREPARE p(int) AS SELECT name, secret FROM t WHERE id = $1;
EXECUTE p(2);
LISTEN ch;
NOTIFY ch, 'hello';
SELECT 'after notify';
"#;

#[test]
fn scripted_session_matches_direct_except_transformed_column() {
    let cluster = PgCluster::start().unwrap();
    cluster.execute("CREATE DATABASE direct").unwrap();
    cluster.execute("CREATE DATABASE proxied").unwrap();
    let proxy = Running::start(&cluster);

    let direct = Client::psql(&direct_dsn(&cluster, "direct"))
        .unwrap()
        .stdin(SCRIPT)
        .run()
        .unwrap();
    let through = Client::psql(&proxy.dsn("proxied"))
        .unwrap()
        .stdin(SCRIPT)
        .run()
        .unwrap();
    assert!(
        direct.success() && through.success(),
        "{direct:?}\n{through:?}"
    );
    assert!(
        direct.stdout.contains("hush-one") && direct.stdout.contains("Asynchronous notification")
    );
    assert!(
        direct.stderr.contains("22012") && direct.stderr.contains("25P02"),
        "{}",
        direct.stderr
    );

    let expected = normalize_pids(&direct.stdout)
        .replace("hush-one", "HUSH-ONE")
        .replace("hush-two", "HUSH-TWO")
        .replace("s3cr3t", "[MASKED]");
    assert_eq!(normalize_pids(&through.stdout), expected);
    assert_eq!(through.stderr, direct.stderr);
}

#[test]
fn drop_is_denied_and_the_session_goes_on() {
    let cluster = PgCluster::start().unwrap();
    cluster.execute("CREATE TABLE keep (id int)").unwrap();
    let proxy = Running::start(&cluster);
    let out = Client::psql(&proxy.dsn("postgres"))
        .unwrap()
        .stdin("\\set VERBOSITY verbose\nDROP TABLE keep;\nSELECT 'still here';\n")
        .run()
        .unwrap();
    assert!(
        out.stderr
            .contains("ERROR:  42501: permission denied by the gateway: DROP is not allowed"),
        "{out:?}"
    );
    assert!(out.stdout.contains("still here"), "{out:?}");
    let direct = Client::psql(&direct_dsn(&cluster, "postgres"))
        .unwrap()
        .args(["-tAc", "SELECT count(*) FROM keep"])
        .run()
        .unwrap();
    assert_eq!(direct.stdout.trim(), "0", "{direct:?}");
}

#[test]
fn denied_statement_fails_the_transaction() {
    let cluster = PgCluster::start().unwrap();
    cluster.execute("CREATE TABLE tx (id int)").unwrap();
    let proxy = Running::start(&cluster);
    let out = Client::psql(&proxy.dsn("postgres"))
        .unwrap()
        .stdin("\\set VERBOSITY verbose\nBEGIN;\nINSERT INTO tx VALUES (1);\nDROP TABLE tx;\nSELECT 1;\nCOMMIT;\nSELECT count(*) AS n FROM tx;\n")
        .run()
        .unwrap();
    assert!(out.stderr.contains("42501"), "{out:?}");
    assert!(
        out.stderr.contains(
            "25P02: current transaction is aborted, commands ignored until end of transaction block"
        ),
        "{out:?}"
    );
    // COMMIT of a failed transaction is reported as ROLLBACK.
    assert!(out.stdout.contains("ROLLBACK"), "{out:?}");
    assert!(!out.stdout.contains("COMMIT"), "{out:?}");
    let direct = Client::psql(&direct_dsn(&cluster, "postgres"))
        .unwrap()
        .args(["-tAc", "SELECT count(*) FROM tx"])
        .run()
        .unwrap();
    assert_eq!(direct.stdout.trim(), "0");
}

#[test]
fn delete_waits_until_resumed() {
    let cluster = PgCluster::start().unwrap();
    cluster
        .execute("CREATE TABLE d (id int); INSERT INTO d VALUES (1), (2);")
        .unwrap();
    let proxy = Running::start(&cluster);
    let dsn = proxy.dsn("postgres");
    let psql = std::thread::spawn(move || {
        Client::psql(&dsn)
            .unwrap()
            .stdin("DELETE FROM d WHERE id = 1;\nSELECT count(*) AS left FROM d;\n")
            .run()
            .unwrap()
    });
    let count = || {
        Client::psql(&direct_dsn(&cluster, "postgres"))
            .unwrap()
            .args(["-tAc", "SELECT count(*) FROM d"])
            .run()
            .unwrap()
            .stdout
    };
    for _ in 0..100 {
        if proxy.hook.held.load(Ordering::SeqCst) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(proxy.hook.held.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !psql.is_finished(),
        "the held DELETE returned before it was released"
    );
    assert_eq!(count().trim(), "2");
    proxy.hook.release.add_permits(1);
    let out = psql.join().unwrap();
    assert!(out.success(), "{out:?}");
    assert!(
        out.stderr.contains("NOTICE:  held for approval: 1"),
        "{out:?}"
    );
    assert!(out.stdout.contains("DELETE 1"), "{out:?}");
    assert_eq!(count().trim(), "1");
}

#[test]
fn wrong_token_and_unauthorized_user_are_refused() {
    let cluster = PgCluster::start().unwrap();
    let proxy = Running::start(&cluster);
    let bad = format!(
        "host=127.0.0.1 port={} user=alice dbname=postgres password=nope sslmode=disable",
        proxy.port
    );
    let out = Client::psql(&bad)
        .unwrap()
        .args(["-c", "select 1"])
        .run()
        .unwrap();
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("password authentication failed for user \"alice\""),
        "{out:?}"
    );
    let mallory = format!(
        "host=127.0.0.1 port={} user=mallory dbname=postgres password={} sslmode=disable",
        proxy.port,
        common::TOKEN
    );
    let out = Client::psql(&mallory)
        .unwrap()
        .args(["-c", "select 1"])
        .run()
        .unwrap();
    assert!(!out.success());
    assert!(
        out.stderr.contains("mallory may not use this gateway"),
        "{out:?}"
    );
    let replication = format!("{} replication=database", proxy.dsn("postgres"));
    let out = Client::psql(&replication)
        .unwrap()
        .args(["-c", "select 1"])
        .run()
        .unwrap();
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("replication connections are not supported"),
        "{out:?}"
    );
}
