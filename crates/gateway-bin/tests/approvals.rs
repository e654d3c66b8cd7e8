//! Approvals end to end: real PostgreSQL 15 (the testkit's), gateways as
//! real processes, real psql as the agent, the CLI as approvers; two
//! replicas sharing one store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::{Client, ClientOutput, PgCluster};

const SEED: &str = include_str!("../src/demo/seed.sql");
const BACKEND_PASSWORD: &str = "gw-backend-Pa55word-xyzzy";

/// Deletes are held for two DBAs.
const POLICY: &str = r#"
default = "deny"

[review]
groups = ["dba"]
min_approvals = 2
timeout = "10m"
mode = "hold"

[[rule]]
id = "read"
effect = "allow"
when.sql.kind = ["select", "set", "reset", "transaction"]

[[rule]]
id = "hold-deletes"
effect = "review"
reason = "deletes wait for two DBAs"
when.sql.kind = ["delete"]
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

/// One PostgreSQL and a directory with the gateway's key and policy.
struct Site {
    pg: PgCluster,
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
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
        std::fs::write(d.join("policy.toml"), POLICY).unwrap();
        std::fs::write(d.join("backend.pw"), format!("{BACKEND_PASSWORD}\n")).unwrap();
        Site { pg, dir }
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

    /// The shared store's DSN.
    fn store_dsn(&self) -> String {
        format!("{}?sslmode=disable", self.pg.dsn())
    }

    /// Starts a gateway named `replica`; `shared` puts its approvals and
    /// sessions in the site's PostgreSQL.
    fn gateway(&self, replica: &str, shared: bool) -> Gateway {
        let port = free_port();
        let admin_port = free_port();
        let approvals = if shared {
            format!("[approvals]\npostgres_dsn_env = \"APPROVALS_DSN\"\nreplica = \"{replica}\"\n")
        } else {
            String::new()
        };
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
dir = "audit-{replica}"
chain = "gw-{replica}"

[admin]
address = "127.0.0.1:{admin_port}"

{approvals}
"#,
            pg_port = self.pg.port(),
        );
        let file = format!("portcullis-{replica}.toml");
        std::fs::write(self.dir.path().join(&file), &config).unwrap();
        // `token issue` reads portcullis.toml (for the signing key).
        let default = self.dir.path().join("portcullis.toml");
        if !default.exists() {
            std::fs::write(default, &config).unwrap();
        }
        let mut child = Command::new(bin())
            .args(["serve", "--config", &file])
            .env("APPROVALS_DSN", self.store_dsn())
            .current_dir(self.dir.path())
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
            if line.contains("admin API on") {
                break;
            }
        }
        let tag = replica.to_owned();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                if std::env::var_os("APPROVALS_TEST_LOG").is_some() {
                    eprintln!("[{tag}] {l}");
                }
            }
        });
        Gateway {
            child,
            port,
            admin: format!("http://127.0.0.1:{admin_port}"),
            dir: self.dir.path().to_owned(),
            replica: replica.to_owned(),
        }
    }
}

struct Gateway {
    child: Child,
    port: u16,
    admin: String,
    dir: std::path::PathBuf,
    replica: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
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

    /// psql running `sql` in the background.
    fn psql_bg(&self, token: &str, sql: &str) -> std::thread::JoinHandle<ClientOutput> {
        let dsn = self.dsn(token);
        let sql = sql.to_owned();
        std::thread::spawn(move || {
            Client::psql(&dsn)
                .unwrap()
                .args(["-v", "VERBOSITY=verbose", "-tA", "-c", &sql])
                .run()
                .unwrap()
        })
    }

    fn cli(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--admin", &self.admin, "--token", token]);
        portcullis(&self.dir, &all)
    }

    fn wait_for_approval(&self, approver: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (ok, out, err) = self.cli(approver, &["approvals", "list"]);
            assert!(ok, "{err}");
            let list: serde_json::Value = serde_json::from_str(&out).unwrap();
            if let Some(first) = list.as_array().and_then(|a| a.first()) {
                return first.clone();
            }
            assert!(Instant::now() < deadline, "no approval request appeared");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn trail_text(&self) -> String {
        let dir = self.dir.join(format!("audit-{}", self.replica));
        portcullis_audit::trail_files(&dir, &format!("gw-{}", self.replica))
            .unwrap()
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    }
}

/// Waits until `f` is true (or fails the test after `secs`).
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One gateway: an agent's held DELETE is shown with its literal masked
/// inside only, and a preview; agents (even in the approver group) and the
/// requester cannot approve; two DBAs are needed; each decision is in the
/// trail with its comment.
#[test]
fn two_people_release_a_held_delete_that_no_agent_can_approve() {
    let site = Site::new();
    let gw = site.gateway("solo", false);
    let agent = site.token("agent:ci-bot", "dba");
    let other_agent = site.token("agent:helper", "dba");
    let alice = site.token("human:alice", "dba");
    let bob = site.token("human:bob", "dba");

    let sql = "/* reason: clean up test orders */ DELETE FROM orders WHERE status <> 'password=hunter2' OR/**/true";
    let client = gw.psql_bg(&agent, sql);
    let pending = gw.wait_for_approval(&alice);
    let id = pending["id"].as_str().unwrap().to_owned();
    let command = pending["command"].as_str().unwrap();
    // The structure after the literal is SQL, shown as is.
    assert!(command.contains("' OR/**/true"), "{command}");
    assert!(command.starts_with("/* reason:"), "{command}");
    assert!(!command.contains("hunter2"), "{command}");
    let literal = pending["shown"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "literal")
        .unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(literal.starts_with("password="), "{literal}");
    assert_eq!(pending["justification"], "clean up test orders");
    assert_eq!(pending["rule_id"], "hold-deletes");

    // The preview (planner's estimate) arrives shortly after.
    eventually(10, "no preview", || {
        let (_, out, _) = gw.cli(&alice, &["approvals", "show", &id]);
        out.contains("DELETE on orders: about")
    });

    // Neither the requester nor another agent in the group may approve.
    let (ok, _, err) = gw.cli(&agent, &["approvals", "approve", &id]);
    assert!(!ok);
    assert!(err.contains("only people approve"), "{err}");
    let (ok, _, err) = gw.cli(&other_agent, &["approvals", "approve", &id]);
    assert!(!ok);
    assert!(err.contains("only people approve"), "{err}");

    let (ok, out, err) = gw.cli(
        &alice,
        &["approvals", "approve", &id, "-m", "checked the filter"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"have\":1"), "{out}");
    let (ok, _, err) = gw.cli(&alice, &["approvals", "approve", &id]);
    assert!(!ok);
    assert!(err.contains("already approved"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!client.is_finished(), "released after one approval of two");

    let (ok, out, err) = gw.cli(&bob, &["approvals", "approve", &id, "-m", "ok"]);
    assert!(ok, "{err}");
    assert!(out.contains("released"), "{out}");
    let out = client.join().unwrap();
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(
        gw.psql(&alice, "select count(*) from orders").stdout.trim(),
        "0"
    );

    let trail = gw.trail_text();
    let decisions: Vec<&str> = trail
        .lines()
        .filter(|l| l.contains("approval_decision"))
        .collect();
    assert_eq!(decisions.len(), 2, "{trail}");
    assert!(decisions[0].contains("checked the filter") && decisions[0].contains("human:alice"));
    assert!(decisions[1].contains("human:bob"));
    assert!(trail.contains("approval_granted"));

    let (ok, out, err) = gw.cli(&alice, &["approvals", "list", "--history"]);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("\"approved\""), "{out}");
}

/// Two replicas, one store: psql held on B is approved through A and runs
/// on B; A lists B's sessions and ends B's idle session at once.
#[test]
fn an_approval_on_replica_a_releases_a_statement_held_on_replica_b() {
    let site = Site::new();
    let a = site.gateway("a", true);
    let b = site.gateway("b", true);
    let agent = site.token("agent:ci-bot", "agents");
    let alice = site.token("human:alice", "dba,ops");
    let bob = site.token("human:bob", "dba");

    let client = b.psql_bg(&agent, "DELETE FROM orders WHERE id = 100");
    let pending = a.wait_for_approval(&alice);
    let id = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["replica"], "b");
    let (ok, _, err) = a.cli(&alice, &["approvals", "approve", &id]);
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!client.is_finished(), "released after one approval of two");
    let (ok, out, err) = a.cli(&bob, &["approvals", "approve", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("released"), "{out}");
    let approved = Instant::now();
    let out = client.join().unwrap();
    // For the record (not asserted: the sweep every 3 s is the fallback).
    eprintln!(
        "released on B {:?} after the approval on A",
        approved.elapsed()
    );
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(
        a.psql(&alice, "select count(*) from orders").stdout.trim(),
        "4"
    );
    // B recorded the grant in its own trail.
    eventually(5, "B's trail has no grant", || {
        b.trail_text().contains("approval_granted")
    });

    // An idle session on B, seen from A, ended from A at once.
    kill_idle_session(&b, &a, &agent, &alice, "b/");
}

/// Opens a session on `on`, runs one query, finds it in `admin`'s session
/// list (its id starting with `prefix`), kills it there, and checks that the
/// server ends the idle connection without the client sending anything.
fn kill_idle_session(on: &Gateway, admin: &Gateway, agent: &str, operator: &str, prefix: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listed = || -> Vec<String> {
        let (ok, out, err) = admin.cli(operator, &["sessions", "list"]);
        assert!(ok, "{err}");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .filter(|s| s["principal"] == "agent:ci-bot")
            .map(|s| s["session"].as_str().unwrap().to_owned())
            .filter(|s| s.starts_with(prefix))
            .collect()
    };
    // Sessions that ended a moment ago may still be listed for a second.
    let before = listed();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&on.dsn(agent), tokio_postgres::NoTls)
            .await
            .unwrap();
        let conn = tokio::spawn(connection);
        client.simple_query("select 1").await.unwrap();
        let mut id = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while id.is_empty() {
            if let Some(new) = listed().into_iter().find(|s| !before.contains(s)) {
                id = new;
            } else {
                assert!(Instant::now() < deadline, "the session is not listed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let (ok, out, err) = admin.cli(operator, &["sessions", "kill", &id]);
        assert!(ok, "{out}{err}");
        // The client sends nothing more; the server ends the connection.
        let ended = tokio::time::timeout(Duration::from_secs(10), conn)
            .await
            .expect("the killed idle session was not ended");
        let e = ended.unwrap().unwrap_err();
        let message = e.as_db_error().map(|d| d.message().to_owned());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.starts_with("this session was ended by human:")),
            "{e:?}"
        );
        assert!(client.is_closed());
    });
}

/// A session with nothing in flight ends when killed, without waiting for
/// its next statement.
#[test]
fn a_killed_idle_session_ends_at_once() {
    let site = Site::new();
    let gw = site.gateway("solo", false);
    let agent = site.token("agent:ci-bot", "agents");
    let alice = site.token("human:alice", "ops");
    kill_idle_session(&gw, &gw, &agent, &alice, "");
}

fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Where scripts/install-web-test.sh put playwright-core.
fn web_test_dir() -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("PORTCULLIS_WEB_TEST_DIR") {
        return std::path::PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || workspace().join("target"),
        |t| {
            let t = std::path::PathBuf::from(t);
            if t.is_absolute() {
                t
            } else {
                workspace().join(t)
            }
        },
    );
    target.join("web-test")
}

const BROWSER_SCRIPT: &str = r#"
const { chromium } = require(process.env.PW_DIR + '/node_modules/playwright-core');
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  // A phone's viewport.
  const page = await browser.newPage({ viewport: { width: 400, height: 860 } });
  await page.goto(process.env.PAGE);
  await page.fill('input[name=token]', process.env.TOKEN);
  await page.click('button[type=submit]');
  const card = '#' + process.env.ID;
  await page.waitForSelector(card);
  await page.waitForFunction(
    (c) => document.querySelector(c).innerText.includes('Preview'), card, { timeout: 10000 })
    .catch(() => {});
  const text = await page.innerText(card);
  const literal = await page.$eval(card + ' .lit', (e) => e.textContent);
  const injected = await page.$$eval(card + ' b.injected, ' + card + ' script', (s) => s.length);
  await page.screenshot({ path: process.env.SHOT, fullPage: true });
  await page.fill(card + ' textarea[name=comment]', 'approved from the browser');
  await page.click(card + ' button.ok');
  await page.waitForSelector('p.msg');
  const msg = await page.innerText('p.msg');
  console.log(JSON.stringify({ text, literal, injected, msg }));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// The approval page in headless Chromium (Debian's, driven by
/// playwright-core): sign in, the held statement is listed with its
/// literal shown as text (HTML-escaped, highlighted) and the SQL after it
/// as SQL, and clicking Approve releases the held psql session. A
/// screenshot is kept in `<target>/web-test/approval-page.png`.
#[test]
fn the_approval_page_in_a_browser_releases_a_held_statement() {
    let pw = web_test_dir();
    assert!(
        pw.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run scripts/install-web-test.sh",
        pw.display()
    );
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is not installed: apt-get install chromium (scripts/test.sh does)");

    let policy = POLICY.replace("min_approvals = 2", "min_approvals = 1");
    let site = Site::new();
    std::fs::write(site.dir.path().join("policy.toml"), policy).unwrap();
    let gw = site.gateway("web", false);
    let agent = site.token("agent:ci-bot", "agents");
    let alice = site.token("human:alice", "dba,ops");

    let client = gw.psql_bg(
        &agent,
        "DELETE FROM orders WHERE status <> '<b class=injected>x</b>' OR/**/true",
    );
    let pending = gw.wait_for_approval(&alice);
    let id = pending["id"].as_str().unwrap().to_owned();

    let shot = pw.join("approval-page.png");
    let _ = std::fs::remove_file(&shot);
    let script = site.dir.path().join("browser.js");
    std::fs::write(&script, BROWSER_SCRIPT).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .env("PW_DIR", &pw)
        .env("CHROMIUM", chromium)
        .env("PAGE", format!("{}/ui", gw.admin))
        .env("TOKEN", &alice)
        .env("ID", &id)
        .env("SHOT", &shot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let text = seen["text"].as_str().unwrap();
    // The literal is text on the page, not markup; the OR after it is SQL.
    assert_eq!(seen["literal"], "<b class=injected>x</b>");
    assert_eq!(seen["injected"], 0);
    assert!(text.contains("' OR/**/true"), "{text}");
    assert!(text.contains("hold-deletes"), "{text}");
    assert!(seen["msg"].as_str().unwrap().contains("approved"), "{seen}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);

    let out = client.join().unwrap();
    assert!(out.success(), "{}", out.stderr);
    assert!(gw.trail_text().contains("approved from the browser"));
}
