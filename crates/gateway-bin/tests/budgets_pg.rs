//! Query budgets end to end: the gateway as a real process in front of the
//! testkit's PostgreSQL, real psql and tokio-postgres (extended protocol) as
//! the agents, and the audit trail read back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use futures_util::{StreamExt, pin_mut};
use portcullis_testkit::{Client, ClientOutput, PgCluster};

const SEED: &str = include_str!("../src/demo/seed.sql");
const BACKEND_PASSWORD: &str = "gw-backend-Pa55word-budgets";
const POLICY: &str = "default = \"allow\"\non_unparsed = \"deny\"\n";
const BUDGETS: &str = r#"
[[budget]]
groups = ["agents"]
max_rows = 10
statement_timeout = "2s"

[[budget]]
principals = ["agent:rate"]
statements_per_minute = 5
"#;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn portcullis(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    pg: PgCluster,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start() -> Gateway {
        let pg = PgCluster::start().unwrap();
        let out = Client::psql(&pg.dsn())
            .unwrap()
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-f", "-"])
            .arg(format!("--variable=gateway_password={BACKEND_PASSWORD}"))
            .stdin(SEED)
            .run()
            .unwrap();
        assert!(out.success(), "{}", out.stderr);
        pg.execute(
            "CREATE TABLE shop.budget_log (n int); \
             GRANT SELECT, INSERT ON shop.budget_log TO portcullis_gateway;",
        )
        .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ok, _, err) = portcullis(d, &["token", "keygen", "--out", "gateway.pem"]);
        assert!(ok, "{err}");
        std::fs::write(d.join("policy.toml"), POLICY).unwrap();
        std::fs::write(d.join("backend.pw"), format!("{BACKEND_PASSWORD}\n")).unwrap();
        let port = free_port();
        let config = format!(
            r#"
[[listener]]
address = "127.0.0.1:{port}"

[[connection]]
name = "shop"
kind = "postgres"
host = "127.0.0.1"
port = {pg_port}
database = "postgres"
user = "portcullis_gateway"
password_file = "backend.pw"

[identity]
signing_key = "gateway.pem"

[policy]
file = "policy.toml"

[audit.jsonl]
dir = "audit"
chain = "gw-test"
durability = "flushed"
{BUDGETS}
"#,
            pg_port = pg.port(),
        );
        std::fs::write(d.join("portcullis.toml"), config).unwrap();
        let (ok, out, err) = portcullis(d, &["check", "--config", "portcullis.toml"]);
        assert!(ok, "check failed: {out}{err}");
        let mut child = Command::new(bin())
            .args(["serve", "--config", "portcullis.toml"])
            .current_dir(d)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the gateway exited: {seen}"))
                .unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("listening") || line.contains("serving") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Gateway {
            child,
            dir,
            port,
            pg,
        }
    }

    fn token(&self, principal: &str, groups: &str) -> String {
        let (ok, out, err) = portcullis(
            self.dir.path(),
            &[
                "token",
                "issue",
                "--principal",
                principal,
                "--groups",
                groups,
                "--ttl",
                "15m",
            ],
        );
        assert!(ok, "{err}");
        out.trim().to_owned()
    }

    fn dsn(&self, token: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=shop dbname=postgres sslmode=disable password={token}",
            self.port
        )
    }

    /// One psql session running `sql` (several statements, one per line,
    /// each its own simple query), errors not stopping it.
    fn psql(&self, token: &str, sql: &str) -> ClientOutput {
        Client::psql(&self.dsn(token))
            .unwrap()
            .args(["-v", "VERBOSITY=verbose", "-tA", "-f", "-"])
            .stdin(sql)
            .run()
            .unwrap()
    }

    fn trail_text(&self) -> String {
        let files: Vec<PathBuf> =
            portcullis_audit::trail_files(&self.dir.path().join("audit"), "gw-test").unwrap();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    }

    fn direct(&self, sql: &str) -> String {
        self.pg.execute(sql).unwrap().trim().to_owned()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(dsn: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Rows a simple query streamed before it ended, and its error's SQLSTATE.
async fn stream_simple(client: &tokio_postgres::Client, sql: &str) -> (usize, Option<String>) {
    let stream = client.simple_query_raw(sql).await;
    let stream = match stream {
        Ok(s) => s,
        Err(e) => return (0, e.code().map(|c| c.code().to_owned())),
    };
    pin_mut!(stream);
    let mut rows = 0;
    while let Some(m) = stream.next().await {
        match m {
            Ok(tokio_postgres::SimpleQueryMessage::Row(_)) => rows += 1,
            Ok(_) => {}
            Err(e) => return (rows, e.code().map(|c| c.code().to_owned())),
        }
    }
    (rows, None)
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

#[test]
fn row_budget_cuts_results_and_keeps_the_session_consistent() {
    let gw = Gateway::start();
    let agent = gw.token("agent:claude", "agents");

    // psql: over the limit is 53400 with a message the agent can act on;
    // the same session goes on; at the limit is fine.
    let out = gw.psql(
        &agent,
        "select g from generate_series(1, 5000) g;\n\
         select 'after-' || 1;\n\
         select count(*) from generate_series(1, 10) g, lateral (select g) x;\n\
         select g from generate_series(1, 10) g;\n",
    );
    assert!(out.stderr.contains("53400"), "{}", out.stderr);
    assert!(out.stderr.contains("add LIMIT 10"), "{}", out.stderr);
    assert!(
        out.stdout.contains("after-1"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    // The 10-row result at the limit comes whole.
    assert!(out.stdout.contains("\n10\n") || out.stdout.ends_with("10\n"));
    assert_eq!(out.stderr.matches("53400").count(), 1, "{}", out.stderr);

    // Inside a transaction block the cut statement fails the transaction, as
    // the backend sees it: the next statement is refused (25P02) until
    // ROLLBACK, and then the session works.
    let out = gw.psql(
        &agent,
        "begin;\n\
         select g from generate_series(1, 5000) g;\n\
         select 'in-failed-tx';\n\
         rollback;\n\
         select 'after-rollback';\n",
    );
    assert!(out.stderr.contains("53400"), "{}", out.stderr);
    assert!(out.stderr.contains("25P02"), "{}", out.stderr);
    assert!(!out.stdout.contains("in-failed-tx"), "{}", out.stdout);
    assert!(out.stdout.contains("after-rollback"), "{}", out.stderr);

    let rt = runtime();
    rt.block_on(async {
        let client = connect(&gw.dsn(&agent)).await;
        // The client never sees row 11: a fast result (it completes at the
        // backend before the cancel arrives) and a slow one (the cancel
        // stops it there: 57014 at the backend, 53400 to the client).
        for sql in [
            "select g from generate_series(1, 100000) g",
            "select repeat('x', 2000), pg_sleep(0.001) from generate_series(1, 100000) g",
        ] {
            let (rows, err) = stream_simple(&client, sql).await;
            assert!(rows <= 10, "{rows} rows of {sql}");
            assert_eq!(rows, 10, "{sql}");
            assert_eq!(err.as_deref(), Some("53400"), "{sql}");
            let r = client.simple_query("select 'next'").await.unwrap();
            let rows = r
                .iter()
                .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
                .count();
            assert_eq!(rows, 1, "{sql}");
        }

        // Extended protocol: the same, and inside a transaction.
        let e = client
            .query("select g from generate_series(1, $1::int) g", &[&5000i32])
            .await
            .unwrap_err();
        assert_eq!(code(&e), "53400", "{e}");
        let rows = client
            .query("select g from generate_series(1, $1::int) g", &[&10i32])
            .await
            .unwrap();
        assert_eq!(rows.len(), 10);
        client.batch_execute("begin").await.unwrap();
        let e = client
            .query(
                "select repeat('x', 2000), pg_sleep(0.001) from generate_series(1, $1::int) g",
                &[&100000i32],
            )
            .await
            .unwrap_err();
        assert_eq!(code(&e), "53400", "{e}");
        let e = client.query("select 1", &[]).await.unwrap_err();
        assert_eq!(code(&e), "25P02", "{e}");
        client.batch_execute("rollback").await.unwrap();
        let rows = client.query("select 2", &[]).await.unwrap();
        assert_eq!(rows.len(), 1);

        // A writing statement over the limit: either the cancel stopped it
        // (nothing written, the session goes on) or it had completed and
        // committed, which the gateway cannot hide: the session ends with
        // FATAL 53400. The client's view matches the table either way.
        let (_, err) = stream_simple(
            &client,
            "insert into budget_log select g from generate_series(1, 50) g returning n",
        )
        .await;
        assert_eq!(err.as_deref(), Some("53400"));
        let written = gw.direct("select count(*) from shop.budget_log");
        match client.simple_query("select 'alive'").await {
            Ok(_) => assert_eq!(written, "0", "the session went on after a committed write"),
            Err(e) => assert!(client.is_closed() || e.is_closed(), "{e}"),
        }
    });

    // The slow statements were stopped at the backend by the gateway's
    // cancel (simple protocol, and extended inside a transaction).
    let log = gw.pg.log();
    assert!(
        log.matches("canceling statement due to user request")
            .count()
            >= 2,
        "{log}"
    );

    // Each cut is in the audit trail with the budget and its figure.
    let trail = gw.trail_text();
    let cuts = trail
        .lines()
        .filter(|l| l.contains("\"budget_exceeded\"") && l.contains("\"max_rows\""))
        .count();
    assert!(cuts >= 7, "{cuts} cuts recorded:\n{trail}");
    assert!(trail.contains("\"limit\":10"), "{trail}");
}

#[test]
fn statement_timeout_is_pinned_and_statements_per_minute_refused_before_the_backend() {
    let gw = Gateway::start();
    let agent = gw.token("agent:claude", "agents");
    let other = gw.token("human:ana", "dba");

    // The timeout is set at the backend for this principal only.
    let out = gw.psql(&agent, "show statement_timeout;\n");
    assert_eq!(out.stdout.trim(), "2s", "{}", out.stderr);
    let out = gw.psql(&other, "show statement_timeout;\n");
    assert_eq!(out.stdout.trim(), "0", "{}", out.stderr);
    let out = gw.psql(&agent, "select pg_sleep(5);\nselect 'still-here';\n");
    assert!(out.stderr.contains("57014"), "{}", out.stderr);
    assert!(out.stderr.contains("statement timeout"), "{}", out.stderr);
    assert!(out.stdout.contains("still-here"), "{}", out.stderr);
    // Raising it is refused, in every spelling; the value stays.
    for attempt in [
        "set statement_timeout = 0",
        "SET LOCAL statement_timeout TO '1h'",
        "reset statement_timeout",
        "select set_config('statement_timeout', '0', false)",
        "do $$ begin perform set_config('statement_timeout', '0', false); end $$",
    ] {
        let out = gw.psql(&agent, &format!("{attempt};\nshow statement_timeout;\n"));
        assert!(out.stderr.contains("42501"), "{attempt}: {}", out.stderr);
        assert!(out.stderr.contains("pinned"), "{attempt}: {}", out.stderr);
        assert_eq!(out.stdout.trim(), "2s", "{attempt}: {}", out.stderr);
    }
    // The client cannot send it at startup either.
    let out = Client::psql(&format!(
        "{} options='-c statement_timeout=0'",
        gw.dsn(&agent)
    ))
    .unwrap()
    .args(["-tA", "-c", "show statement_timeout"])
    .run()
    .unwrap();
    assert!(!out.success());

    // Five statements a minute for agent:rate, across its sessions; the
    // sixth never reaches the backend.
    let rate = gw.token("agent:rate", "rate");
    let out = gw.psql(
        &rate,
        "insert into budget_log values (1);\n\
         insert into budget_log values (2);\n\
         insert into budget_log values (3);\n",
    );
    assert!(out.success(), "{}", out.stderr);
    let out = gw.psql(
        &rate,
        "insert into budget_log values (4);\n\
         insert into budget_log values (5);\n\
         insert into budget_log values (6);\n",
    );
    assert!(out.stderr.contains("53400"), "{}", out.stderr);
    assert!(
        out.stderr.contains("at most 5 statements per minute"),
        "{}",
        out.stderr
    );
    let rt = runtime();
    rt.block_on(async {
        let client = connect(&gw.dsn(&rate)).await;
        let e = client
            .execute("insert into budget_log values ($1)", &[&7i32])
            .await
            .unwrap_err();
        assert_eq!(code(&e), "53400", "{e}");
    });
    assert_eq!(
        gw.direct("select string_agg(n::text, ',' order by n) from shop.budget_log"),
        "1,2,3,4,5"
    );
    // Another principal is not affected.
    let out = gw.psql(&other, "select 'free';\n");
    assert!(out.stdout.contains("free"), "{}", out.stderr);

    let trail = gw.trail_text();
    let refusals: Vec<&str> = trail
        .lines()
        .filter(|l| l.contains("\"budget_exceeded\"") && l.contains("statements_per_minute"))
        .collect();
    assert_eq!(refusals.len(), 2, "{trail}");
    assert!(
        refusals
            .iter()
            .all(|l| l.contains("\"limit\":5") && l.contains("\"observed\":5"))
    );
}
