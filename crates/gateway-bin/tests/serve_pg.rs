//! `portcullis serve` end to end: a real PostgreSQL (the demo's schema), the
//! gateway as a real process, real psql as the agent, and the CLI as the
//! approver.
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
use std::time::{Duration, Instant};

use portcullis_testkit::{Client, ClientOutput, PgCluster};

const SEED: &str = include_str!("../src/demo/seed.sql");
const POLICY: &str = include_str!("../../../examples/policy.toml");
const BACKEND_PASSWORD: &str = "gw-backend-Pa55word-xyzzy";

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
    admin: String,
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
        Gateway::start_with("", POLICY)
    }

    fn start_with(audit_extra: &str, policy: &str) -> Gateway {
        Gateway::start_full(audit_extra, policy, "")
    }

    /// `audit_extra` goes into the `[audit.jsonl]` section, `tail` at the end.
    fn start_full(audit_extra: &str, policy: &str, tail: &str) -> Gateway {
        let pg = PgCluster::start().unwrap();
        let out = Client::psql(&pg.dsn())
            .unwrap()
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-f", "-"])
            .arg(format!("--variable=gateway_password={BACKEND_PASSWORD}"))
            .stdin(SEED)
            .run()
            .unwrap();
        assert!(out.success(), "{}", out.stderr);

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ok, _, err) = portcullis(d, &["token", "keygen", "--out", "gateway.pem"]);
        assert!(ok, "{err}");
        std::fs::write(d.join("policy.toml"), policy).unwrap();
        let (ok, key, err) = portcullis(d, &["token", "api-key"]);
        assert!(ok, "{err}");
        let api_key = key
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("key:")
            .trim()
            .to_owned();
        let api_key_hash = key.lines().nth(1).unwrap().to_owned();
        std::fs::write(d.join("api.key"), &api_key).unwrap();
        std::fs::write(d.join("backend.pw"), format!("{BACKEND_PASSWORD}\n")).unwrap();
        let port = free_port();
        let admin_port = free_port();
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
labels = {{ env = "prod" }}

[identity]
signing_key = "gateway.pem"
revocation_file = "revoked"

[[identity.api_key]]
name = "etl"
principal = "service:etl"
groups = ["etl"]
{api_key_hash}

[policy]
file = "policy.toml"

[[masking.field]]
name = "api_key"

[audit.jsonl]
dir = "audit"
chain = "gw-test"
{durability}
{audit_extra}

[admin]
address = "127.0.0.1:{admin_port}"

{tail}
"#,
            pg_port = pg.port(),
            durability = if audit_extra.contains("durability") {
                ""
            } else {
                "durability = \"flushed\""
            },
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
        // Wait for the admin line, which comes after the listeners are bound.
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
            if line.contains("admin API on") {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Gateway {
            child,
            dir,
            port,
            admin: format!("http://127.0.0.1:{admin_port}"),
            pg,
        }
    }

    fn token(&self, principal: &str, groups: &str, ttl: &str) -> String {
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
                ttl,
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

    fn psql(&self, token: &str, sql: &str) -> ClientOutput {
        Client::psql(&self.dsn(token))
            .unwrap()
            .args(["-v", "VERBOSITY=verbose", "-tA", "-c", sql])
            .run()
            .unwrap()
    }

    fn approvals(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["approvals"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--admin", &self.admin, "--token", token]);
        portcullis(self.dir.path(), &all)
    }

    fn trail(&self) -> Vec<PathBuf> {
        portcullis_audit::trail_files(&self.dir.path().join("audit"), "gw-test").unwrap()
    }

    fn trail_text(&self) -> String {
        self.trail()
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    }
}

#[test]
fn masked_select_denied_drop_and_held_delete_approved_through_the_cli() {
    let gw = Gateway::start();
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let alice = gw.token("human:alice", "dba", "15m");

    // A masked SELECT: emails, cards, secrets in notes and api_key are masked.
    let out = gw.psql(
        &agent,
        "select id, name, email, card_number, api_key, notes from customers order by id",
    );
    assert!(out.success(), "{}", out.stderr);
    let rows = out.stdout;
    for secret in [
        "ada@example.com",
        "4111111111111111",
        "pk_demo_4f9a2c1e8b7d6a5f4e3d2c1b",
        "AKIAZ7VRSQ5TJHCM3XPL",
        "Sup3rS3cretPw",
    ] {
        assert!(!rows.contains(secret), "{secret} leaked:\n{rows}");
    }
    assert!(rows.contains("Ada Lovelace"), "{rows}");
    assert!(rows.contains("[MASKED:"), "{rows}");
    assert_eq!(rows.lines().count(), 5, "{rows}");

    // Masked by source, whatever the output name; and computed from a
    // masked column, masked whole.
    let out = gw.psql(
        &agent,
        "select api_key as k, lower(api_key) from customers where id = 1",
    );
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "[MASKED:field]|[MASKED:derived]",
        "{}",
        out.stderr
    );

    // (Computed columns are masked whole only in statements that compute from
    // a masked column.)
    let out = gw.psql(&agent, "select length(name) from customers where id = 1");
    assert_eq!(out.stdout.trim(), "12", "{}", out.stderr);

    // Columns with nothing to mask are byte-identical to a direct query.
    let query = "select id, name, phone is null, created_at, (select sum(amount) from orders o where o.customer_id = c.id) from customers c order by id";
    let through = gw.psql(&agent, query);
    let direct = Client::psql(&gw.pg.dsn())
        .unwrap()
        .args([
            "-v",
            "VERBOSITY=verbose",
            "-tA",
            "-c",
            &query
                .replace("from customers", "from shop.customers")
                .replace("from orders", "from shop.orders"),
        ])
        .run()
        .unwrap();
    assert!(
        through.success() && direct.success(),
        "{}{}",
        through.stderr,
        direct.stderr
    );
    assert_eq!(through.stdout, direct.stdout);

    // The backend password never reaches the client.
    assert!(!rows.contains(BACKEND_PASSWORD) && !out.stderr.contains(BACKEND_PASSWORD));

    // DROP is denied with 42501 and the rule's id; the gateway goes on.
    let out = gw.psql(&agent, "DROP TABLE shop.orders");
    assert!(!out.success());
    assert!(out.stderr.contains("42501"), "{}", out.stderr);
    assert!(out.stderr.contains("no-drop-or-truncate"), "{}", out.stderr);
    let out = gw.psql(&agent, "select count(*) from orders");
    assert_eq!(out.stdout.trim(), "5", "{}", out.stderr);

    // DELETE without WHERE is held until a DBA approves it.
    let dsn = gw.dsn(&agent);
    let held = std::thread::spawn(move || {
        Client::psql(&dsn)
            .unwrap()
            .args(["-tA", "-c", "DELETE FROM orders"])
            .run()
            .unwrap()
    });
    let id = wait_for_approval(&gw, &alice);
    // The held session is live.
    let (ok, live, err) = portcullis(
        gw.dir.path(),
        &["sessions", "list", "--admin", &gw.admin, "--token", &alice],
    );
    assert!(ok, "{err}");
    assert!(
        live.contains("agent:ci-bot") && live.contains("\"connection\": \"shop\"")
            || live.contains("\"connection\":\"shop\""),
        "{live}"
    );
    // The requester, an agent, cannot approve its own statement.
    let (ok, _, err) = gw.approvals(&agent, &["approve", &id]);
    assert!(!ok);
    assert!(err.contains("only people approve"), "{err}");
    let (ok, out, err) = gw.approvals(&alice, &["approve", &id]);
    assert!(ok, "{out}{err}");
    let out = held.join().unwrap();
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("held for approval: {id}")),
        "{}",
        out.stderr
    );
    assert_eq!(
        gw.psql(&agent, "select count(*) from orders").stdout.trim(),
        "0"
    );

    // Another is denied through the CLI and fails.
    let dsn = gw.dsn(&agent);
    let held = std::thread::spawn(move || {
        Client::psql(&dsn)
            .unwrap()
            .args([
                "-v",
                "VERBOSITY=verbose",
                "-tA",
                "-c",
                "UPDATE customers SET notes = 'new key sk_live_51HqLyjKf93Jd8s2k3l4m5n6o7p8q9r0'",
            ])
            .run()
            .unwrap()
    });
    let id = wait_for_approval(&gw, &alice);
    // The approver sees the statement, masked.
    let (_, listed, _) = gw.approvals(&alice, &["list"]);
    assert!(listed.contains("UPDATE customers SET notes"), "{listed}");
    assert!(
        !listed.contains("sk_live_51HqLyjKf93Jd8s2k3l4m5n6o7p8q9r0"),
        "{listed}"
    );
    let (ok, out, err) = gw.approvals(&alice, &["deny", &id]);
    assert!(ok, "{out}{err}");
    let out = held.join().unwrap();
    assert!(!out.success());
    assert!(
        out.stderr.contains("42501") && out.stderr.contains("denied"),
        "{}",
        out.stderr
    );

    // Every step is in the trail, which verifies, and no secret from a
    // statement's text is in it.
    let out = gw.psql(
        &agent,
        "select name from customers where id = 3 or notes like '%AKIAZ7VRSQ5TJHCM3XPL%'",
    );
    assert!(out.success(), "{}", out.stderr);
    std::thread::sleep(Duration::from_millis(200));
    let trail = gw.trail_text();
    assert!(
        !trail.contains("AKIAZ7VRSQ5TJHCM3XPL"),
        "a secret reached the trail"
    );
    for kind in [
        "session_started",
        "\"command\"",
        "command_forwarded",
        "command_result",
        "approval_requested",
        "approval_granted",
        "approval_denied",
    ] {
        assert!(trail.contains(kind), "no {kind} in the trail:\n{trail}");
    }
    assert!(trail.contains("no-drop-or-truncate"));
    let report = portcullis_audit::verify(&gw.trail());
    assert!(report.is_intact(), "{report:?}");

    let metrics = http_get(gw.admin.trim_start_matches("http://"), "/metrics");
    assert!(
        metrics.contains("portcullis_commands_total{effect=\"deny\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_commands_total{effect=\"review\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_masked_values_total{detector=\"email\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_audit_write_seconds"),
        "{metrics}"
    );
    let health = http_get(gw.admin.trim_start_matches("http://"), "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

fn wait_for_approval(gw: &Gateway, approver: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = gw.approvals(approver, &["list"]);
        assert!(ok, "{err}");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        if let Some(id) = list
            .as_array()
            .and_then(|a| a.first())
            .and_then(|p| p["id"].as_str())
        {
            return id.to_owned();
        }
        assert!(Instant::now() < deadline, "no approval request appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bad_tokens_are_refused_and_revocation_ends_a_live_session() {
    let gw = Gateway::start();
    let good = gw.token("agent:ci-bot", "agents", "15m");
    let out = gw.psql(&good, "select 1");
    assert_eq!(out.stdout.trim(), "1", "{}", out.stderr);

    // Expired.
    let short = gw.token("agent:ci-bot", "agents", "1s");
    std::thread::sleep(Duration::from_millis(2100));
    let out = gw.psql(&short, "select 1");
    assert!(!out.success());
    assert!(out.stderr.contains("expired"), "{}", out.stderr);

    // Tampered: one character of the signature changed.
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let out = gw.psql(&tampered, "select 1");
    assert!(!out.success());
    assert!(
        out.stderr.contains("password authentication failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("signature") || out.stderr.contains("malformed"),
        "{}",
        out.stderr
    );

    // Revoked: at connect, and in a live session at its next statement.
    let (_, claims, _) = portcullis(gw.dir.path(), &["token", "inspect", &good]);
    let claims: serde_json::Value = serde_json::from_str(&claims).unwrap();
    let jti = claims["claims"]["jti"].as_str().unwrap().to_owned();
    // psql runs the revocation between two statements of one session.
    let script = format!(
        "select 'before';\n\\! cd '{}' && '{}' token revoke {jti}\nselect 'after';\n",
        gw.dir.path().display(),
        bin()
    );
    let out = Client::psql(&gw.dsn(&good))
        .unwrap()
        .args(["-tA", "-f", "-"])
        .stdin(script)
        .run()
        .unwrap();
    assert!(
        out.stdout.contains("before"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stdout.contains("after"), "{}", out.stdout);
    assert!(out.stderr.contains("revoked"), "{}", out.stderr);
    let out = gw.psql(&good, "select 1");
    assert!(!out.success());
    assert!(out.stderr.contains("revoked"), "{}", out.stderr);
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    answer
}

#[test]
fn a_trail_that_cannot_make_records_durable_stops_every_statement() {
    // The trail reports itself unable to write below this much free space.
    let gw = Gateway::start_with("min_free_bytes = 1000000000000000000", POLICY);
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let out = gw.psql(&agent, "select count(*) from customers");
    assert!(!out.success(), "{}", out.stdout);
    assert!(out.stderr.contains("fail closed"), "{}", out.stderr);
    assert!(!out.stdout.contains('5'));
    let health = http_get(gw.admin.trim_start_matches("http://"), "/healthz");
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains("bytes free"), "{health}");
}

#[test]
fn api_keys_connect_and_an_undecided_hold_expires() {
    let policy = POLICY.replace("timeout = \"10m\"", "timeout = \"2s\"");
    assert_ne!(policy, POLICY);
    let gw = Gateway::start_with("", &policy);
    let key = std::fs::read_to_string(gw.dir.path().join("api.key")).unwrap();
    let out = gw.psql(&key, "select current_user");
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "portcullis_gateway");
    let out = gw.psql("pcl_not-a-key", "select 1");
    assert!(!out.success());
    assert!(
        out.stderr.contains("password authentication failed"),
        "{}",
        out.stderr
    );

    let started = Instant::now();
    let out = gw.psql(&key, "DELETE FROM orders");
    assert!(!out.success());
    assert!(out.stderr.contains("expired"), "{}", out.stderr);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        gw.psql(&key, "select count(*) from orders").stdout.trim(),
        "5"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(gw.trail_text().contains("approval_expired"));
}

#[test]
fn extended_protocol_holds_each_execution_and_shows_the_approver_its_values() {
    let gw = Gateway::start();
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let alice = gw.token("human:alice", "dba", "15m");
    let dsn = format!(
        "host=127.0.0.1 port={} user=shop dbname=postgres password={agent}",
        gw.port
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    });
    // A prepared, allowed statement with parameters: masked results.
    let rows = rt
        .block_on(client.query("select email, name from customers where id = $1", &[&2i32]))
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "[MASKED:email]");
    assert_eq!(rows[0].get::<_, String>(1), "Alan Turing");
    // Denied at Parse.
    let err = rt
        .block_on(client.execute("TRUNCATE orders", &[]))
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");

    // Held at Execute, with the bound value (masked) shown to the approver.
    let stmt = rt
        .block_on(client.prepare("UPDATE customers SET notes = $1"))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let approver = std::thread::spawn({
        let admin = gw.admin.clone();
        let dir = gw.dir.path().to_owned();
        move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (ok, out, err) = portcullis(
                    &dir,
                    &["approvals", "list", "--admin", &admin, "--token", &alice],
                );
                assert!(ok, "{err}");
                let list: serde_json::Value = serde_json::from_str(&out).unwrap();
                if let Some(p) = list.as_array().and_then(|a| a.first()) {
                    let id = p["id"].as_str().unwrap().to_owned();
                    tx.send(p["command"].as_str().unwrap().to_owned()).unwrap();
                    let (ok, out, err) = portcullis(
                        &dir,
                        &[
                            "approvals",
                            "approve",
                            &id,
                            "--admin",
                            &admin,
                            "--token",
                            &alice,
                        ],
                    );
                    assert!(ok, "{out}{err}");
                    return;
                }
                assert!(Instant::now() < deadline, "no approval request");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let n = rt
        .block_on(client.execute(&stmt, &[&"token ghp_R4nd0mLook1ngDemoT0kenValue012345678"]))
        .unwrap();
    approver.join().unwrap();
    assert_eq!(n, 5);
    let shown = rx.recv().unwrap();
    assert!(shown.contains("$1 = '"), "{shown}");
    assert!(
        !shown.contains("ghp_R4nd0mLook1ngDemoT0kenValue012345678"),
        "{shown}"
    );
    assert!(shown.contains("[MASKED:github-pat]"), "{shown}");
}

#[test]
fn pgbench_prepared_through_the_gateway_has_no_errors() {
    let gw = Gateway::start();
    let agent = gw.token("agent:bench", "agents", "15m");
    let script = gw.dir.path().join("bench.sql");
    std::fs::write(
        &script,
        "\\set id random(1, 5)\nselect name, email, notes from customers where id = :id;\n",
    )
    .unwrap();
    let dsn = format!(
        "host=127.0.0.1 port={} user=shop dbname=postgres password={agent}",
        gw.port
    );
    for mode in ["simple", "extended", "prepared"] {
        let out = Client::pgbench(&dsn)
            .unwrap()
            .args(["-n", "-M", mode, "-c", "4", "-T", "3", "-f"])
            .arg(&script)
            .run()
            .unwrap();
        assert!(out.success(), "{mode}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("number of failed transactions: 0"),
            "{mode}: {}",
            out.stdout
        );
    }
}

#[test]
fn sessions_kill_refuses_the_held_statement_and_ends_the_session() {
    let gw = Gateway::start();
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let alice = gw.token("human:alice", "dba", "15m");
    let dsn = gw.dsn(&agent);
    let client = std::thread::spawn(move || {
        Client::psql(&dsn)
            .unwrap()
            .args(["-tA", "-f", "-"])
            .stdin("delete from orders;\nselect 'after';\n")
            .run()
            .unwrap()
    });
    wait_for_approval(&gw, &alice);
    let (ok, live, err) = portcullis(
        gw.dir.path(),
        &["sessions", "list", "--admin", &gw.admin, "--token", &alice],
    );
    assert!(ok, "{err}");
    let live: serde_json::Value = serde_json::from_str(&live).unwrap();
    let id = live[0]["session"].as_str().unwrap().to_owned();
    // An agent is not an operator.
    let (ok, _, err) = portcullis(
        gw.dir.path(),
        &[
            "sessions", "kill", &id, "--admin", &gw.admin, "--token", &agent,
        ],
    );
    assert!(!ok);
    assert!(err.contains("operator"), "{err}");
    let (ok, out, err) = portcullis(
        gw.dir.path(),
        &[
            "sessions", "kill", &id, "--admin", &gw.admin, "--token", &alice,
        ],
    );
    assert!(ok, "{out}{err}");
    let out = client.join().unwrap();
    assert!(!out.stdout.contains("after"), "{}", out.stdout);
    assert!(
        out.stderr.contains("ended by human:alice"),
        "{}",
        out.stderr
    );
    assert_eq!(
        gw.psql(&agent, "select count(*) from orders").stdout.trim(),
        "5"
    );
}

/// Connects with tokio-postgres and returns the server's SQLSTATE and message.
fn connect_error(gw: &Gateway, token: &str) -> (String, String) {
    let dsn = format!(
        "host=127.0.0.1 port={} user=shop dbname=postgres password={token}",
        gw.port
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(tokio_postgres::connect(&dsn, tokio_postgres::NoTls)) {
        Ok(_) => panic!("connected with a bad token"),
        Err(e) => {
            let db = e
                .as_db_error()
                .unwrap_or_else(|| panic!("not a server error: {e}"));
            (
                db.code().code().to_owned(),
                format!("{} / {}", db.message(), db.detail().unwrap_or("")),
            )
        }
    }
}

#[test]
fn every_kind_of_bad_token_is_refused_with_28p01() {
    let gw = Gateway::start();
    let d = gw.dir.path();
    // Same key, other issuer or audience: written as other configurations.
    std::fs::write(
        d.join("other-iss.toml"),
        "[identity]\nsigning_key = \"gateway.pem\"\nissuer = \"someone-else\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("other-aud.toml"),
        "[identity]\nsigning_key = \"gateway.pem\"\naudience = \"another-gateway\"\n",
    )
    .unwrap();
    let mint = |extra: &[&str]| {
        let mut args = vec![
            "token",
            "issue",
            "--principal",
            "agent:x",
            "--groups",
            "agents",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = portcullis(d, &args);
        assert!(ok, "{err}");
        out.trim().to_owned()
    };
    let good = mint(&[]);
    let mut tampered = good.clone();
    let mid = tampered.len() / 2;
    let flipped = if tampered.as_bytes()[mid] == b'A' {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(mid..=mid, flipped);
    let expired = mint(&["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let cases = [
        ("expired", expired, "expired"),
        (
            "not yet valid",
            mint(&["--start-in", "1h"]),
            "not valid before",
        ),
        (
            "wrong issuer",
            mint(&["--config", "other-iss.toml"]),
            "not trusted",
        ),
        (
            "wrong audience",
            mint(&["--config", "other-aud.toml"]),
            "audience",
        ),
        ("tampered", tampered, "token"),
    ];
    for (what, token, says) in cases {
        let (code, message) = connect_error(&gw, &token);
        assert_eq!(code, "28P01", "{what}: {message}");
        assert!(message.contains(says), "{what}: {message}");
        assert!(
            !message.contains(&token),
            "{what}: the message echoes the token"
        );
    }
    let out = gw.psql(&good, "select 1");
    assert_eq!(out.stdout.trim(), "1", "{}", out.stderr);
}

/// A TCP relay in front of the gateway that keeps every byte sent to the client.
fn capturing_relay(gateway_port: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = captured.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut server = std::net::TcpStream::connect(("127.0.0.1", gateway_port)).unwrap();
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 || client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, captured)
}

#[test]
fn no_byte_the_client_receives_holds_the_backend_credential() {
    let gw = Gateway::start();
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let (port, captured) = capturing_relay(gw.port);
    let dsn = format!(
        "host=127.0.0.1 port={port} user=shop dbname=postgres sslmode=disable password={agent}"
    );
    let out = Client::psql(&dsn)
        .unwrap()
        .args(["-f", "-"])
        .stdin(
            "select * from customers;\n\
             select current_setting('application_name'), current_user;\n\
             select * from pg_stat_activity;\n\
             drop table orders;\n\
             select 1/0;\n",
        )
        .run()
        .unwrap();
    assert!(
        out.stdout.contains("Ada Lovelace"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    std::thread::sleep(Duration::from_millis(200));
    let bytes = captured.lock().unwrap().clone();
    assert!(bytes.len() > 1000, "captured only {} bytes", bytes.len());
    let text = String::from_utf8_lossy(&bytes);
    for needle in [BACKEND_PASSWORD, "SCRAM-SHA-256", "backend.pw"] {
        assert!(!text.contains(needle), "{needle} reached the client");
    }
}

/// Serves one document over HTTP on loopback, to every request.
fn serve_http(body: String) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn an_oidc_token_verified_against_a_jwks_url_connects_with_its_groups() {
    use base64::Engine as _;
    // An identity provider: an Ed25519 key, its public half as a JWKS on a URL.
    let idp_dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = portcullis(idp_dir.path(), &["token", "keygen", "--out", "idp.pem"]);
    assert!(ok, "{err}");
    let pem = std::fs::read_to_string(idp_dir.path().join("idp.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(ring::signature::KeyPair::public_key(&pair).as_ref());
    let jwks = format!(
        r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"k1","alg":"EdDSA"}}]}}"#
    );
    let port = serve_http(jwks);
    let policy = format!(
        "{POLICY}\n[[rule]]\nid = \"dba-only-table\"\neffect = \"deny\"\nreason = \"only DBAs\"\nwhen.principal.groups = {{ none = [\"dba\"] }}\nwhen.sql.reads = [\"*.orders\"]\n"
    );
    let gw = Gateway::start_full(
        "",
        &policy,
        &format!(
            "[[identity.oidc]]\nissuer = \"https://idp.test\"\naudience = \"portcullis-test\"\njwks_url = \"http://127.0.0.1:{port}/jwks\"\ngroups_claim = \"roles\"\n"
        ),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k1".to_owned());
    let token = |roles: &[&str]| {
        let claims = serde_json::json!({
            "iss": "https://idp.test", "aud": "portcullis-test", "sub": "alice@example.com",
            "exp": now + 600, "iat": now, "roles": roles,
        });
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let out = gw.psql(&token(&["dba"]), "select count(*) from orders");
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "5");
    // The groups come from the configured claim: without dba, denied.
    let out = gw.psql(&token(&["dev"]), "select count(*) from orders");
    assert!(!out.success());
    assert!(out.stderr.contains("dba-only-table"), "{}", out.stderr);
}

/// The `command` records of a trail: (command id, text), in order.
fn command_records(trail: &str) -> Vec<(u64, String)> {
    fn find(v: &serde_json::Value, out: &mut Vec<(u64, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("type").and_then(|t| t.as_str()) == Some("command")
                    && let Some(id) = m.get("command_id").and_then(|i| i.as_u64())
                {
                    let text = m
                        .get("text")
                        .map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_owned))
                        .unwrap_or_default();
                    out.push((id, text));
                    return;
                }
                m.values().for_each(|v| find(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| find(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for line in trail.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            find(&v, &mut out);
        }
    }
    out
}

#[test]
fn every_execute_is_recorded_and_kill_and_revocation_stop_the_next_one() {
    let gw = Gateway::start();
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let alice = gw.token("human:alice", "dba", "15m");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect = |token: &str| {
        let dsn = format!(
            "host=127.0.0.1 port={} user=shop dbname=postgres password={token}",
            gw.port
        );
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
        })
    };
    let sql = "select name from customers where id = $1";
    let client = connect(&agent);
    let stmt = rt.block_on(client.prepare(sql)).unwrap();
    for id in [1i32, 2, 3] {
        let rows = rt.block_on(client.query(&stmt, &[&id])).unwrap();
        assert_eq!(rows.len(), 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    // One record for the Parse, then one per Execute, each under its own
    // command id and with its bound parameters.
    let records: Vec<_> = command_records(&gw.trail_text())
        .into_iter()
        .filter(|(_, text)| text.contains(sql))
        .collect();
    assert_eq!(records.len(), 4, "{records:?}");
    let mut ids: Vec<u64> = records.iter().map(|(id, _)| *id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{records:?}");
    assert!(!records[0].1.contains("-- parameters:"), "{records:?}");
    assert!(
        records[1..]
            .iter()
            .all(|(_, t)| t.contains("-- parameters: $1 = '")),
        "{records:?}"
    );

    // An operator kills the session: its next Execute of the prepared
    // statement is stopped.
    let (ok, live, err) = portcullis(
        gw.dir.path(),
        &["sessions", "list", "--admin", &gw.admin, "--token", &alice],
    );
    assert!(ok, "{err}");
    let live: serde_json::Value = serde_json::from_str(&live).unwrap();
    let id = live[0]["session"].as_str().unwrap().to_owned();
    let (ok, out, err) = portcullis(
        gw.dir.path(),
        &[
            "sessions", "kill", &id, "--admin", &gw.admin, "--token", &alice,
        ],
    );
    assert!(ok, "{out}{err}");
    let err = rt.block_on(client.query(&stmt, &[&1i32])).unwrap_err();
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_else(|| err.to_string());
    assert!(msg.contains("ended by human:alice"), "{msg}");

    // A revoked token: the next Execute of an allowed prepared statement.
    let second = gw.token("agent:ci-bot", "agents", "15m");
    let client = connect(&second);
    let stmt = rt.block_on(client.prepare(sql)).unwrap();
    assert_eq!(rt.block_on(client.query(&stmt, &[&2i32])).unwrap().len(), 1);
    let (_, claims, _) = portcullis(gw.dir.path(), &["token", "inspect", &second]);
    let claims: serde_json::Value = serde_json::from_str(&claims).unwrap();
    let jti = claims["claims"]["jti"].as_str().unwrap().to_owned();
    let (ok, out, err) = portcullis(gw.dir.path(), &["token", "revoke", &jti]);
    assert!(ok, "{out}{err}");
    let err = rt.block_on(client.query(&stmt, &[&2i32])).unwrap_err();
    let msg = err
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_else(|| err.to_string());
    assert!(msg.contains("revoked"), "{msg}");
}

/// SIGKILL of the gateway in the middle of a pgbench run, at both durability
/// levels: every INSERT the backend committed was forwarded, so each must
/// have its record in the trail, and the trail verifies (a torn last line is
/// allowed, a gap or a broken chain is not).
#[test]
fn sigkill_under_pgbench_loses_no_record_of_a_forwarded_command() {
    for durability in ["flushed", "durable"] {
        let mut gw = Gateway::start_with(
            &format!("durability = \"{durability}\""),
            "default = \"allow\"\n",
        );
        let setup = Client::psql(&gw.pg.dsn())
            .unwrap()
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(
                "CREATE TABLE public.crash_t (v text PRIMARY KEY); \
                 GRANT INSERT, SELECT ON public.crash_t TO portcullis_gateway;",
            )
            .run()
            .unwrap();
        assert!(setup.success(), "{}", setup.stderr);
        let agent = gw.token("agent:crash", "agents", "15m");
        let script = gw.dir.path().join("crash.sql");
        std::fs::write(
            &script,
            "\\set id random(1, 2000000000)\n\
             INSERT INTO public.crash_t (v) VALUES ('crash-:id') ON CONFLICT DO NOTHING;\n",
        )
        .unwrap();
        let dsn = format!(
            "host=127.0.0.1 port={} user=shop dbname=postgres password={agent}",
            gw.port
        );
        let bench = std::thread::spawn(move || {
            Client::pgbench(&dsn)
                .unwrap()
                .args(["-n", "-M", "simple", "-c", "4", "-T", "60", "-f"])
                .arg(&script)
                .run()
                .unwrap()
        });
        let count = |gw: &Gateway| -> usize {
            let out = Client::psql(&gw.pg.dsn())
                .unwrap()
                .args(["-tA", "-c", "SELECT count(*) FROM public.crash_t"])
                .run()
                .unwrap();
            out.stdout.trim().parse().unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(&gw) < 300 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        // SIGKILL: no shutdown path runs.
        gw.child.kill().unwrap();
        gw.child.wait().unwrap();
        let bench = bench.join().unwrap();
        assert!(
            !bench.success(),
            "pgbench did not notice the gateway die: {}{}",
            bench.stdout,
            bench.stderr
        );

        let report = portcullis_audit::verify(&gw.trail());
        assert!(report.is_intact(), "{durability}: {report}");
        let rows = Client::psql(&gw.pg.dsn())
            .unwrap()
            .args(["-tA", "-c", "SELECT v FROM public.crash_t"])
            .run()
            .unwrap();
        let rows: Vec<&str> = rows.stdout.lines().filter(|l| !l.is_empty()).collect();
        assert!(rows.len() >= 300, "{durability}: only {} rows", rows.len());
        let trail = gw.trail_text();
        let missing: Vec<&&str> = rows.iter().filter(|v| !trail.contains(*v)).collect();
        assert!(
            missing.is_empty(),
            "{durability}: {} of {} committed INSERTs have no record, e.g. {:?}",
            missing.len(),
            rows.len(),
            missing.first()
        );
    }
}

/// Ticket mode with real psql: the first attempt fails at once with the
/// request id; a retry before approval is refused with the same id; after
/// approval the same statement runs once; the next attempt files a new
/// request. A different statement never rides on the approval.
#[test]
fn ticket_mode_refuses_with_an_id_then_runs_the_approved_statement_once() {
    let policy = POLICY.replace(
        "id = \"hold-unbounded-writes\"\ndescription = \"UPDATE or DELETE without WHERE waits for a DBA\"\neffect = \"review\"\n",
        "id = \"hold-unbounded-writes\"\ndescription = \"UPDATE or DELETE without WHERE waits for a DBA\"\neffect = \"review\"\nmode = \"ticket\"\n",
    );
    assert!(policy.contains("mode = \"ticket\""));
    let gw = Gateway::start_with("", &policy);
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let alice = gw.token("human:alice", "dba", "15m");
    let delete = "DELETE FROM shop.orders";
    let orders = |gw: &Gateway| {
        Client::psql(&gw.pg.dsn())
            .unwrap()
            .args(["-tA", "-c", "SELECT count(*) FROM shop.orders"])
            .run()
            .unwrap()
            .stdout
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let before = orders(&gw);
    assert!(before > 0);
    let request_id = |stderr: &str| -> String {
        let at = stderr
            .find("apr-")
            .unwrap_or_else(|| panic!("no request id: {stderr}"));
        stderr[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect()
    };

    let first = gw.psql(&agent, delete);
    assert!(!first.success());
    assert!(first.stderr.contains("42501"), "{}", first.stderr);
    assert!(
        first.stderr.contains("approval required"),
        "{}",
        first.stderr
    );
    assert!(
        first
            .stderr
            .contains("retry the same statement after approval"),
        "{}",
        first.stderr
    );
    let id = request_id(&first.stderr);
    assert_eq!(orders(&gw), before);

    let again = gw.psql(&agent, delete);
    assert!(!again.success());
    assert!(again.stderr.contains("still pending"), "{}", again.stderr);
    assert_eq!(request_id(&again.stderr), id);

    let (ok, out, err) = gw.approvals(&alice, &["approve", &id]);
    assert!(ok, "{out}{err}");
    // The approval is recorded by a task; give it a moment.
    std::thread::sleep(Duration::from_millis(300));

    // Another statement does not ride on it.
    let other = gw.psql(&agent, "DELETE FROM shop.orders ");
    assert!(!other.success(), "{}", other.stdout);
    assert!(
        other.stderr.contains("approval required"),
        "{}",
        other.stderr
    );
    assert_ne!(request_id(&other.stderr), id);
    assert_eq!(orders(&gw), before);

    let run = gw.psql(&agent, delete);
    assert!(run.success(), "{}", run.stderr);
    assert_eq!(orders(&gw), 0);

    let third = gw.psql(&agent, delete);
    assert!(!third.success());
    assert!(
        third.stderr.contains("approval required"),
        "{}",
        third.stderr
    );
    let new_id = request_id(&third.stderr);
    assert_ne!(new_id, id);

    let trail = gw.trail_text();
    assert!(
        trail.contains(&format!("\"request_id\":\"{id}\"")),
        "{trail}"
    );
    assert!(trail.contains("ticket used by command"), "{trail}");
    assert!(portcullis_audit::verify(&gw.trail()).is_intact());
}

/// The confirmed attack (issue 16): with standard_conforming_strings off,
/// `SELECT '\', ' ; DELETE FROM shop.orders; --'` is a DELETE to PostgreSQL
/// and two string literals to the policy. Neither a startup option nor a
/// setting changed in the session lets it past the hold on unbounded DELETEs.
#[test]
fn standard_conforming_strings_tricks_never_smuggle_a_delete_past_the_policy() {
    let gw = Gateway::start();
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let attack = "SELECT '\\', ' ; DELETE FROM shop.orders; --'";
    let orders = || {
        Client::psql(&gw.pg.dsn())
            .unwrap()
            .args(["-tA", "-c", "select count(*) from shop.orders"])
            .run()
            .unwrap()
            .stdout
            .trim()
            .to_owned()
    };
    assert_eq!(orders(), "5");

    // Startup options: PGOPTIONS, and options= in the connection string.
    let via_env = Client::psql(&gw.dsn(&agent))
        .unwrap()
        .env("PGOPTIONS", "-c standard_conforming_strings=off")
        .args(["-tA", "-c", attack])
        .run()
        .unwrap();
    let via_dsn = Client::psql(&format!(
        "{} options='-c standard_conforming_strings=off'",
        gw.dsn(&agent)
    ))
    .unwrap()
    .args(["-tA", "-c", attack])
    .run()
    .unwrap();
    for out in [via_env, via_dsn] {
        assert!(!out.success(), "{out:?}");
        assert!(
            out.stderr
                .contains("does not forward the startup parameter \"options\""),
            "{}",
            out.stderr
        );
    }
    // A client encoding whose multibyte characters hide a backslash.
    let out = Client::psql(&gw.dsn(&agent))
        .unwrap()
        .env("PGCLIENTENCODING", "SJIS")
        .args(["-tA", "-c", "select 1"])
        .run()
        .unwrap();
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("client_encoding"), "{}", out.stderr);
    assert_eq!(orders(), "5");

    // In the session: the setting changed, then the attack. The policy
    // refuses the setters it recognises; the gateway ends the session on
    // any it does not (tested at the protocol level in portcullis-pg's
    // hostile suite with a hook that allows them).
    for setter in [
        "SET standard_conforming_strings = off",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "RESET ALL",
    ] {
        let out = Client::psql(&gw.dsn(&agent))
            .unwrap()
            .args(["-tA", "-c", setter, "-c", attack])
            .run()
            .unwrap();
        assert!(!out.stdout.contains("DELETE 5"), "{setter}: {}", out.stdout);
        assert_eq!(orders(), "5", "{setter}: {}", out.stderr);
    }
    // Through the gateway the text is what the policy read: two literals.
    let out = gw.psql(&agent, attack);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "\\| ; DELETE FROM shop.orders; --");
    assert_eq!(orders(), "5");
}

/// Opens a session and runs `select 1` on it; the error's SQLSTATE and
/// message when it is refused.
async fn open_session(
    gw: &Gateway,
    token: &str,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), (String, String)> {
    let dsn = format!(
        "host=127.0.0.1 port={} user=shop dbname=postgres password={token}",
        gw.port
    );
    let refused = |e: tokio_postgres::Error| {
        let db = e
            .as_db_error()
            .unwrap_or_else(|| panic!("not a server error: {e}"));
        (db.code().code().to_owned(), db.message().to_owned())
    };
    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .map_err(refused)?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    client.simple_query("select 1").await.map_err(refused)?;
    Ok((client, task))
}

#[test]
fn sessions_per_principal_are_capped_with_53300_naming_the_limit() {
    let gw = Gateway::start_full("", POLICY, "[limits]\nmax_sessions_per_principal = 1\n");
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let other = gw.token("agent:other", "agents", "15m");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // One session open (it answered a query) while a second one tries.
        let (first, task) = open_session(&gw, &agent).await.unwrap();
        let (code, message) = open_session(&gw, &agent).await.err().unwrap();
        assert_eq!(code, "53300", "{message}");
        assert!(
            message.contains("too many sessions for one principal")
                && message.contains("\"agent:ci-bot\" already has 1 open")
                && message.contains("max_sessions_per_principal")
                && message.contains("is 1"),
            "{message}"
        );
        // Another principal is not affected, and the first session still works.
        let (second, _) = open_session(&gw, &other).await.unwrap();
        second.simple_query("select 2").await.unwrap();
        first.simple_query("select 2").await.unwrap();
        // Once the first session ended, the principal may connect again.
        drop(first);
        task.await.unwrap();
        let mut again = None;
        for _ in 0..600 {
            match open_session(&gw, &agent).await {
                Ok(c) => {
                    again = Some(c);
                    break;
                }
                // The gateway notices the end of the first session a
                // moment after its socket closed.
                Err((code, _)) if code == "53300" => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(again.is_some(), "the principal's slot was never freed");
    });
}

#[test]
fn sessions_in_total_are_capped_with_53300_naming_the_limit() {
    let gw = Gateway::start_full("", POLICY, "[limits]\nmax_sessions = 1\n");
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let other = gw.token("agent:other", "agents", "15m");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (first, _task) = open_session(&gw, &agent).await.unwrap();
        // Any principal is refused while the listener is full.
        for token in [&agent, &other] {
            let (code, message) = open_session(&gw, token).await.err().unwrap();
            assert_eq!(code, "53300", "{message}");
            assert!(
                message.contains("too many clients already")
                    && message.contains("limit of 1 sessions in total on this listener")
                    && message.contains("max_sessions"),
                "{message}"
            );
        }
        first.simple_query("select 2").await.unwrap();
    });
}

/// A refusal by the protocol layer itself (here text that is not UTF-8,
/// which PostgreSQL answers with 22021) is in the trail once, and a
/// refusal by the policy is not written a second time.
#[test]
fn the_protocol_layers_own_refusals_are_in_the_trail() {
    let gw = Gateway::start();
    let agent = gw.token("agent:ci-bot", "agents", "15m");
    let out = Client::psql(&gw.dsn(&agent))
        .unwrap()
        .args(["-v", "VERBOSITY=verbose", "-tA"])
        .stdin(b"SELECT 'caf\xff';\nDROP TABLE shop.orders;\nSELECT 7;\n".to_vec())
        .run()
        .unwrap();
    assert!(out.stderr.contains("22021"), "{}", out.stderr);
    assert!(out.stderr.contains("42501"), "{}", out.stderr);
    // The session went on after both refusals.
    assert_eq!(out.stdout.trim(), "7", "{}", out.stderr);
    let trail = gw.trail_text();
    let own: Vec<&str> = trail
        .lines()
        .filter(|l| l.contains("protocol layer"))
        .collect();
    assert_eq!(own.len(), 1, "{trail}");
    assert!(own[0].contains("invalid byte sequence"), "{}", own[0]);
    assert!(own[0].contains("\"deny\""), "{}", own[0]);
    let report = portcullis_audit::verify(&gw.trail());
    assert!(report.is_intact(), "{report:?}");
}
