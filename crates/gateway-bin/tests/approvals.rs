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
        self.gateway_with(replica, shared, None)
    }

    /// As [`Site::gateway`]; with `admin_tls` (certificate and key files)
    /// the admin API listens with TLS on every address (0.0.0.0), reached
    /// as https://127.0.0.1.
    fn gateway_with(
        &self,
        replica: &str,
        shared: bool,
        admin_tls: Option<(&str, &str)>,
    ) -> Gateway {
        let port = free_port();
        let admin_port = free_port();
        let (admin_section, admin_url) = match admin_tls {
            None => (
                format!("address = \"127.0.0.1:{admin_port}\""),
                format!("http://127.0.0.1:{admin_port}"),
            ),
            Some((cert, key)) => (
                format!(
                    "address = \"0.0.0.0:{admin_port}\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\""
                ),
                format!("https://127.0.0.1:{admin_port}"),
            ),
        };
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
{admin_section}

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
            admin: admin_url,
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

    /// psql running `sql` in the background; with the instant it ended.
    fn psql_bg_timed(
        &self,
        token: &str,
        sql: &str,
    ) -> std::thread::JoinHandle<(ClientOutput, Instant)> {
        let dsn = self.dsn(token);
        let sql = sql.to_owned();
        std::thread::spawn(move || {
            let out = Client::psql(&dsn)
                .unwrap()
                .args(["-v", "VERBOSITY=verbose", "-tA", "-c", &sql])
                .run()
                .unwrap();
            (out, Instant::now())
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

    // A person in the approver group never approves their own request; a
    // denial refuses the held statement.
    let carol = site.token("human:carol", "dba");
    let client = gw.psql_bg(&carol, "DELETE FROM orders WHERE id = 1");
    let pending = gw.wait_for_approval(&alice);
    let id = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["requester"], "human:carol");
    let (ok, _, err) = gw.cli(&carol, &["approvals", "approve", &id]);
    assert!(!ok);
    assert!(
        err.contains("made this request and cannot decide on it"),
        "{err}"
    );
    let (ok, out, err) = gw.cli(&alice, &["approvals", "deny", &id, "-m", "no"]);
    assert!(ok, "{err}");
    assert!(out.contains("denied"), "{out}");
    let out = client.join().unwrap();
    assert!(!out.success());
    assert!(
        out.stderr
            .contains(&format!("human:alice denied approval {id}")),
        "{}",
        out.stderr
    );
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

    // Four held statements, each released within a second of its approval
    // (LISTEN/NOTIFY wakes B; B's sweep every 3 s is only the fallback for a
    // lost notification: a release by the sweep comes at a uniform moment
    // of its 3 s period, so four releases all within 1 s without the
    // notification would be a 1-in-81 chance). Measured from the approving
    // call's return to the held statement's completion on B.
    for (n, order) in [100, 101, 102, 103].into_iter().enumerate() {
        let client = b.psql_bg_timed(&agent, &format!("DELETE FROM orders WHERE id = {order}"));
        let pending = a.wait_for_approval(&alice);
        let id = pending["id"].as_str().unwrap().to_owned();
        assert_eq!(pending["replica"], "b");
        let (ok, _, err) = a.cli(&alice, &["approvals", "approve", &id]);
        assert!(ok, "{err}");
        if n == 0 {
            std::thread::sleep(Duration::from_millis(300));
            assert!(!client.is_finished(), "released after one approval of two");
        }
        let (ok, out, err) = a.cli(&bob, &["approvals", "approve", &id]);
        let approved = Instant::now();
        assert!(ok, "{err}");
        assert!(out.contains("released"), "{out}");
        let (out, ended) = client.join().unwrap();
        assert!(out.success(), "{}", out.stderr);
        let release = ended.saturating_duration_since(approved);
        eprintln!("released on B {release:?} after the approval on A returned");
        assert!(
            release < Duration::from_secs(1),
            "released on B {release:?} after the approval on A returned (must be within 1 s)"
        );
    }
    assert_eq!(
        a.psql(&alice, "select count(*) from orders").stdout.trim(),
        "1"
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
        let killed = Instant::now();
        assert!(ok, "{out}{err}");
        // The client sends nothing more; the server ends the connection,
        // within a second of the kill (the issue's guarantee).
        let ended = tokio::time::timeout(Duration::from_secs(10), conn)
            .await
            .expect("the killed idle session was not ended");
        let took = killed.elapsed();
        eprintln!("the killed idle session ended {took:?} after the kill returned");
        assert!(
            took < Duration::from_secs(1),
            "the killed idle session ended {took:?} after the kill returned (must be within 1 s)"
        );
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

/// The approval request's id in a refusal's message.
fn request_id(stderr: &str) -> String {
    let at = stderr
        .find("apr-")
        .unwrap_or_else(|| panic!("no request id: {stderr}"));
    stderr[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// Ticket mode across two replicas sharing one store, with real psql: the
/// first attempt (on A) fails at once with the request id; a retry on B
/// before approval names the same pending request; after an approval
/// through A the retry on B runs once; a third attempt (on A) files a new
/// request. Then two attempts racing on A and B for one approval: exactly
/// one runs (one row deleted, one grant used), the other files a new
/// request.
#[test]
fn a_ticket_approved_on_one_replica_runs_once_on_another() {
    let site = Site::new();
    let policy = POLICY
        .replace("mode = \"hold\"", "mode = \"ticket\"")
        .replace("min_approvals = 2", "min_approvals = 1");
    std::fs::write(site.dir.path().join("policy.toml"), policy).unwrap();
    let a = site.gateway("a", true);
    let b = site.gateway("b", true);
    let agent = site.token("agent:ci-bot", "agents");
    let alice = site.token("human:alice", "dba");
    let orders = || -> u64 {
        a.psql(&alice, "select count(*) from orders")
            .stdout
            .trim()
            .parse()
            .unwrap()
    };
    // Each run deletes one order: a second run would show.
    let delete = "DELETE FROM orders WHERE id = (SELECT min(id) FROM orders)";
    assert_eq!(orders(), 5);

    let first = a.psql(&agent, delete);
    assert!(!first.success());
    assert!(first.stderr.contains("42501"), "{}", first.stderr);
    assert!(
        first.stderr.contains("approval required"),
        "{}",
        first.stderr
    );
    let id = request_id(&first.stderr);

    // The request is stored before the refusal names it: B sees it pending.
    let again = b.psql(&agent, delete);
    assert!(!again.success());
    assert!(again.stderr.contains("still pending"), "{}", again.stderr);
    assert_eq!(request_id(&again.stderr), id);
    assert_eq!(orders(), 5);

    let (ok, out, err) = a.cli(&alice, &["approvals", "approve", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("released"), "{out}");
    let run = b.psql(&agent, delete);
    assert!(run.success(), "{}", run.stderr);
    assert_eq!(orders(), 4);

    let third = a.psql(&agent, delete);
    assert!(!third.success());
    assert!(
        third.stderr.contains("approval required"),
        "{}",
        third.stderr
    );
    let second_id = request_id(&third.stderr);
    assert_ne!(second_id, id);
    assert_eq!(orders(), 4);
    // The use is recorded on the request: by B's session.
    let (ok, out, err) = a.cli(&alice, &["approvals", "show", &id]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        shown["ticket"]["used_by"]
            .as_str()
            .is_some_and(|u| u.starts_with("b/")),
        "{shown}"
    );

    // Two attempts race for one approval, one on each replica.
    let (ok, _, err) = b.cli(&alice, &["approvals", "approve", &second_id]);
    assert!(ok, "{err}");
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let racers: Vec<_> = [&a, &b]
        .into_iter()
        .map(|gw| {
            let dsn = gw.dsn(&agent);
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                Client::psql(&dsn)
                    .unwrap()
                    .args(["-v", "VERBOSITY=verbose", "-tA", "-c", delete])
                    .run()
                    .unwrap()
            })
        })
        .collect();
    let outs: Vec<ClientOutput> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let ran = outs.iter().filter(|o| o.success()).count();
    assert_eq!(ran, 1, "{outs:?}");
    let lost = outs.iter().find(|o| !o.success()).unwrap();
    assert!(lost.stderr.contains("approval required"), "{}", lost.stderr);
    assert_ne!(request_id(&lost.stderr), second_id);
    assert_eq!(orders(), 3);

    // Each use is in the trail of the replica that ran it: two in all.
    eventually(5, "the uses are not in the trails", || {
        let uses = a.trail_text().matches("ticket used by command").count()
            + b.trail_text().matches("ticket used by command").count();
        uses == 2
    });
}

/// A CA and a certificate it signed for 127.0.0.1 and localhost, as PEM
/// files in `dir`: (ca, cert, key).
fn admin_certificates(dir: &Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "portcullis test admin CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("admin-ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("admin.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("admin-key.pem"), key.serialize_pem()).unwrap();
    (
        "admin-ca.pem".to_owned(),
        "admin.pem".to_owned(),
        "admin-key.pem".to_owned(),
    )
}

/// The admin API on a non-loopback address: refused at startup without
/// TLS (by `check` and `serve`, naming the line); with TLS it serves the CLI
/// end to end, which trusts the admin CA given with `--admin-ca` (or
/// PORTCULLIS_ADMIN_CA) and refuses the certificate without it.
#[test]
fn the_admin_api_needs_tls_off_loopback_and_serves_the_cli_over_it() {
    let site = Site::new();
    let d = site.dir.path();
    let config = format!(
        "[[listener]]\naddress = \"127.0.0.1:{}\"\n\n[identity]\nsigning_key = \"gateway.pem\"\n\n\
         [admin]\naddress = \"0.0.0.0:{}\"\n",
        free_port(),
        free_port()
    );
    std::fs::write(d.join("open-admin.toml"), config).unwrap();
    let (ok, _, err) = portcullis(d, &["check", "--config", "open-admin.toml"]);
    assert!(!ok);
    assert!(err.contains("open-admin.toml:8:11: "), "{err}");
    assert!(err.contains("must be bound to loopback"), "{err}");
    let mut serve = Command::new(bin())
        .args(["serve", "--config", "open-admin.toml"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = serve.kill();
            panic!("the gateway started with an admin API open to the network without TLS");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("must be bound to loopback"), "{err}");
    assert!(err.contains("tls_cert and tls_key"), "{err}");

    // With TLS, on every address.
    let (ca, cert, key) = admin_certificates(d);
    let gw = site.gateway_with("tls", false, Some((&cert, &key)));
    assert!(gw.admin.starts_with("https://"), "{}", gw.admin);
    let agent = site.token("agent:ci-bot", "agents");
    let alice = site.token("human:alice", "dba,ops");
    let bob = site.token("human:bob", "dba");

    // The system's roots do not know the admin CA.
    let (ok, _, err) = gw.cli(&alice, &["sessions", "list"]);
    assert!(!ok);
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let client = gw.psql_bg(&agent, "DELETE FROM orders WHERE id = 100");
    let with_ca = |token: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--admin-ca", &ca]);
        gw.cli(token, &all)
    };
    let id = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (ok, out, err) = with_ca(&alice, &["approvals", "list"]);
            assert!(ok, "{err}");
            let list: serde_json::Value = serde_json::from_str(&out).unwrap();
            if let Some(id) = list[0]["id"].as_str() {
                break id.to_owned();
            }
            assert!(Instant::now() < deadline, "no approval request appeared");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (ok, out, err) = with_ca(&alice, &["sessions", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("agent:ci-bot"), "{out}");
    let (ok, out, err) = with_ca(&alice, &["approvals", "approve", &id, "-m", "over TLS"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"have\":1"), "{out}");
    // The CA from the environment.
    let out = Command::new(bin())
        .args([
            "approvals",
            "approve",
            &id,
            "--admin",
            &gw.admin,
            "--token",
            &bob,
        ])
        .env("PORTCULLIS_ADMIN_CA", d.join(&ca))
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("released"));
    let out = client.join().unwrap();
    assert!(out.success(), "{}", out.stderr);
    assert!(gw.trail_text().contains("over TLS"));

    // A CA file with no certificate is a clear error, not the system roots.
    std::fs::write(d.join("empty.pem"), "").unwrap();
    let (ok, _, err) = gw.cli(&alice, &["sessions", "list", "--admin-ca", "empty.pem"]);
    assert!(!ok);
    assert!(err.contains("holds no PEM certificate"), "{err}");
}
