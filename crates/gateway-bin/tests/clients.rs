//! Transparency: real clients give the same results through the gateway as
//! directly. Each test starts a real PostgreSQL 15 and `portcullis serve` in
//! observe mode (`[policy] enforce = false`, an allow-all policy, no
//! masking), runs one client script once against PostgreSQL and once through
//! the gateway, and compares what the two runs printed, section by section.
//!
//! The clients are the real ones: psql and pgbench from the system, psycopg 3
//! and asyncpg from PyPI, node-postgres from npm. `scripts/install-clients.sh`
//! installs the libraries into `$PORTCULLIS_CLIENTS_DIR` (default
//! `$CARGO_TARGET_DIR/clients`, or `target/clients`); scripts/test.sh runs it
//! first. A missing client fails its test, saying how to install it; only
//! `PORTCULLIS_SKIP_CLIENTS=1` (never set in CI) turns that into a skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::{PgCluster, find_client_binary};

const APP_PASSWORD: &str = "app-Pa55word-transparent";
/// Everything the policy can read is allowed; what it cannot read is refused
/// by the policy but forwarded in observe mode.
const ALLOW_ALL: &str = "default = \"allow\"\n";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(name: &str) -> PathBuf {
    workspace().join("tests/clients").join(name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn portcullis(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "portcullis {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where scripts/install-clients.sh put the client libraries.
fn clients_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PORTCULLIS_CLIENTS_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || workspace().join("target"),
        |t| {
            let t = PathBuf::from(t);
            if t.is_absolute() {
                t
            } else {
                workspace().join(t)
            }
        },
    );
    target.join("clients")
}

/// The path of an installed client, or `None` when it is missing and
/// skipping is allowed; panics (with how to install it) otherwise.
fn require(what: &str, path: PathBuf) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let skip = std::env::var("PORTCULLIS_SKIP_CLIENTS").is_ok_and(|v| v == "1");
    if skip {
        eprintln!(
            "SKIPPED: {what}: not installed ({} is missing) and PORTCULLIS_SKIP_CLIENTS=1",
            path.display()
        );
        return None;
    }
    panic!(
        "{what}: not installed ({} is missing). Run scripts/install-clients.sh \
         (scripts/test.sh does), or set PORTCULLIS_SKIP_CLIENTS=1 to skip this test locally",
        path.display()
    );
}

fn python() -> Option<PathBuf> {
    require(
        "the Python clients (psycopg, asyncpg)",
        clients_dir().join("venv/bin/python"),
    )
}

fn node_modules() -> Option<PathBuf> {
    let dir = clients_dir().join("node/node_modules");
    require("node-postgres (npm pg)", dir.join("pg/package.json"))?;
    Some(dir)
}

/// A PostgreSQL with an `app` database owned by the `app` role, and the
/// gateway in front of it.
struct Stack {
    pg: PgCluster,
    gateway: Child,
    dir: tempfile::TempDir,
    port: u16,
    token: String,
    /// What `portcullis check` printed and what `serve` logged while starting.
    startup: String,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.gateway.kill();
        let _ = self.gateway.wait();
    }
}

/// Which side a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Direct,
    Gateway,
}

impl Stack {
    fn start(policy: &str, enforce: bool, masking: &str) -> Stack {
        let pg = PgCluster::start().unwrap();
        pg.execute(&format!(
            "create role app login password '{APP_PASSWORD}'; create database app owner app;"
        ))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        portcullis(d, &["token", "keygen", "--out", "gateway.pem"]);
        std::fs::write(d.join("policy.toml"), policy).unwrap();
        std::fs::write(d.join("backend.pw"), format!("{APP_PASSWORD}\n")).unwrap();
        let port = free_port();
        let admin_port = free_port();
        let config = format!(
            r#"
[[listener]]
address = "127.0.0.1:{port}"

[[connection]]
name = "app"
kind = "postgres"
host = "127.0.0.1"
port = {pg_port}
database = "app"
user = "app"
password_file = "backend.pw"

[identity]
signing_key = "gateway.pem"

[policy]
file = "policy.toml"
enforce = {enforce}

{masking}

[audit.jsonl]
dir = "audit"
chain = "clients"

[admin]
address = "127.0.0.1:{admin_port}"
"#,
            pg_port = pg.port()
        );
        std::fs::write(d.join("portcullis.toml"), config).unwrap();
        let mut seen = portcullis(d, &["check", "--config", "portcullis.toml"]);
        let token = portcullis(
            d,
            &[
                "token",
                "issue",
                "--principal",
                "agent:transparency",
                "--groups",
                "agents",
                "--ttl",
                "1h",
            ],
        )
        .trim()
        .to_owned();
        let mut gateway = Command::new(bin())
            .args(["serve", "--config", "portcullis.toml"])
            .current_dir(d)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(gateway.stderr.take().unwrap()).lines();
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
        std::thread::spawn(move || for _ in lines {});
        Stack {
            pg,
            gateway,
            dir,
            port,
            token,
            startup: seen,
        }
    }

    /// Allow-all observe mode without masking: the gateway should be
    /// invisible.
    fn transparent() -> Stack {
        Stack::start(ALLOW_ALL, false, "[masking]\ndefault_catalogue = false\n")
    }

    /// The libpq environment variables (psql, pgbench, psycopg, asyncpg and
    /// node-postgres all read them) for one side.
    fn env(&self, side: Side) -> Vec<(&'static str, String)> {
        let (port, user, password) = match side {
            Side::Direct => (self.pg.port(), "app".to_owned(), APP_PASSWORD.to_owned()),
            Side::Gateway => (self.port, "app".to_owned(), self.token.clone()),
        };
        vec![
            ("PGHOST", "127.0.0.1".to_owned()),
            ("PGPORT", port.to_string()),
            ("PGUSER", user),
            ("PGPASSWORD", password),
            ("PGDATABASE", "app".to_owned()),
            ("PGSSLMODE", "disable".to_owned()),
            ("PGAPPNAME", "transparency".to_owned()),
            ("PGCONNECT_TIMEOUT", "10".to_owned()),
        ]
    }

    fn trail(&self) -> String {
        portcullis_audit::trail_files(&self.dir.path().join("audit"), "clients")
            .unwrap()
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    }
}

/// What one run of a client printed.
#[derive(Debug)]
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion (at most `limit`), stdout and stderr captured.
fn run(mut cmd: Command, limit: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap();
    let mut stderr = err_reader.join().unwrap();
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {limit:?})"));
    }
    Run {
        ok: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}

/// Splits a script's output at its `== section` lines.
fn sections(out: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![("(start)".to_owned(), String::new())];
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            v.push((name.to_owned(), String::new()));
        } else if let Some((_, body)) = v.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    v
}

/// Both runs succeeded and printed the same, section by section (the first
/// difference is reported with its section's name).
fn assert_same(client: &str, direct: &Run, through: &Run) {
    assert!(
        direct.ok,
        "{client} failed against PostgreSQL directly:\n{}\n{}",
        direct.stdout, direct.stderr
    );
    assert!(
        through.ok,
        "{client} failed through the gateway:\n{}\n{}\n--- directly it printed:\n{}",
        through.stdout, through.stderr, direct.stdout
    );
    let (a, b) = (sections(&direct.stdout), sections(&through.stdout));
    for (i, (name, want)) in a.iter().enumerate() {
        let got = b.get(i);
        assert!(
            got.is_some_and(|(n, g)| n == name && g == want),
            "{client}: section {name:?} differs.\n--- directly:\n{want}--- through the gateway ({:?}):\n{}\n--- gateway stderr:\n{}",
            got.map(|g| &g.0),
            got.map_or("(missing)", |g| g.1.as_str()),
            through.stderr
        );
    }
    assert_eq!(
        a.len(),
        b.len(),
        "{client}: the gateway run printed more sections"
    );
    assert!(
        direct.stdout.contains("== done\n") || !direct.stdout.contains("== "),
        "{client} did not reach its end:\n{}",
        direct.stdout
    );
}

/// Runs `make(side)` once directly and once through the gateway and
/// compares.
fn compare(client: &str, make: impl Fn(Side) -> Command) -> (Run, Run) {
    let direct = run(make(Side::Direct), Duration::from_secs(300));
    let through = run(make(Side::Gateway), Duration::from_secs(300));
    assert_same(client, &direct, &through);
    eprintln!(
        "{client}: {} lines in {} sections the same directly and through the gateway",
        direct.stdout.lines().count(),
        sections(&direct.stdout).len()
    );
    if std::env::var_os("PORTCULLIS_SHOW_CLIENT_OUTPUT").is_some() {
        eprintln!("{}", direct.stdout);
    }
    (direct, through)
}

fn python_script(stack: &Stack, python: &Path, name: &str, side: Side) -> Command {
    let mut c = Command::new(python);
    c.arg(script(name)).envs(stack.env(side));
    c
}

#[test]
fn psycopg_gives_the_same_results_through_the_gateway() {
    let Some(python) = python() else { return };
    let stack = Stack::transparent();
    let (direct, _) = compare("psycopg", |side| {
        python_script(&stack, &python, "psycopg_client.py", side)
    });
    // The script ran what it says it ran, and the trail saw it.
    for needle in [
        "== pipeline mode",
        "== server-side cursors",
        "== COPY in and out",
        "== LISTEN / NOTIFY",
        "cancel_safe sleeper cancelled 57014",
        "cancel sleeper cancelled 57014",
        "pg_cancel_backend sleeper cancelled 57014",
        "backend pid agrees True",
        "libpq backend pid equals pg_backend_pid(): True",
    ] {
        assert!(
            direct.stdout.contains(needle),
            "{needle}:\n{}",
            direct.stdout
        );
    }
    let trail = stack.trail();
    assert!(trail.contains("psy_copy"), "{trail}");
}

#[test]
fn asyncpg_gives_the_same_results_through_the_gateway() {
    let Some(python) = python() else { return };
    let stack = Stack::transparent();
    let (direct, _) = compare("asyncpg", |side| {
        python_script(&stack, &python, "asyncpg_client.py", side)
    });
    for needle in [
        "== COPY",
        "== LISTEN / NOTIFY",
        "('apg_channel', 'from other', 'other')",
        "timed out; asyncpg cancels the statement",
        "pid agrees True",
    ] {
        assert!(
            direct.stdout.contains(needle),
            "{needle}:\n{}",
            direct.stdout
        );
    }
}

#[test]
fn node_postgres_gives_the_same_results_through_the_gateway() {
    let Some(modules) = node_modules() else {
        return;
    };
    let node = find_client_binary("node").unwrap_or_else(|_| PathBuf::from("node (not on PATH)"));
    let Some(node) = require("node (Node.js)", node) else {
        return;
    };
    let stack = Stack::transparent();
    let (direct, _) = compare("node-postgres", |side| {
        let mut c = Command::new(&node);
        c.arg(script("node_pg_client.js"))
            .env("NODE_PATH", &modules)
            .envs(stack.env(side));
        c
    });
    for needle in [
        "== named prepared statements",
        "[\"processID agrees with pg_backend_pid()\",true]",
        "\"other\"]",
        "57014",
    ] {
        assert!(
            direct.stdout.contains(needle),
            "{needle}:\n{}",
            direct.stdout
        );
    }
}

#[test]
fn psql_scripts_give_the_same_output_through_the_gateway() {
    let psql = find_client_binary("psql").expect("psql (postgresql-client) is not installed");
    let stack = Stack::transparent();
    let (direct, through) = compare("psql", |side| {
        let mut c = Command::new(&psql);
        c.args(["-X", "-a", "-v", "VERBOSITY=verbose", "-f"])
            .arg(script("psql_script.sql"))
            .envs(stack.env(side));
        c
    });
    // psql writes its errors to stderr: those are the same too.
    assert_eq!(direct.stderr, through.stderr);
    for needle in ["ERROR:  22012: division by zero", "COPY 3", "23505"] {
        assert!(
            direct.stdout.contains(needle) || direct.stderr.contains(needle),
            "{needle}:\n{}{}",
            direct.stdout,
            direct.stderr
        );
    }
}

#[test]
fn pgbench_simple_extended_and_prepared_give_the_same_results_through_the_gateway() {
    let pgbench =
        find_client_binary("pgbench").expect("pgbench (postgresql-client) is not installed");
    let stack = Stack::transparent();
    // The balances after a run with a fixed seed and one client are the same
    // whichever way the statements went; the summary is read directly.
    let checksum = "\\connect app\nselect sum(abalance), sum(abs(abalance)), \
        (select sum(bbalance) from pgbench_branches), \
        (select sum(tbalance) from pgbench_tellers), \
        (select count(*) from pgbench_history), (select sum(delta) from pgbench_history) \
        from pgbench_accounts";
    let mut outputs = Vec::new();
    for side in [Side::Direct, Side::Gateway] {
        let mut printed = String::new();
        let init = run(
            {
                let mut c = Command::new(&pgbench);
                c.args(["-i", "-s", "1", "-q"]).envs(stack.env(side));
                c
            },
            Duration::from_secs(300),
        );
        assert!(
            init.ok,
            "pgbench -i ({side:?}):\n{}{}",
            init.stdout, init.stderr
        );
        printed.push_str(&format!(
            "== init\n{}\n",
            stack.pg.execute(checksum).unwrap().trim()
        ));
        for mode in ["simple", "extended", "prepared"] {
            let out = run(
                {
                    let mut c = Command::new(&pgbench);
                    c.args([
                        "-n",
                        "-M",
                        mode,
                        "-c",
                        "1",
                        "-j",
                        "1",
                        "-t",
                        "150",
                        "--random-seed=20241130",
                    ])
                    .envs(stack.env(side));
                    c
                },
                Duration::from_secs(300),
            );
            assert!(
                out.ok,
                "pgbench -M {mode} ({side:?}):\n{}{}",
                out.stdout, out.stderr
            );
            printed.push_str(&format!("== {mode}\n"));
            for line in out.stdout.lines().filter(|l| {
                l.starts_with("query mode")
                    || l.starts_with("number of transactions actually processed")
                    || l.starts_with("number of failed transactions")
            }) {
                printed.push_str(line);
                printed.push('\n');
            }
            printed.push_str(stack.pg.execute(checksum).unwrap().trim());
            printed.push('\n');
        }
        printed.push_str("== done\n");
        outputs.push(Run {
            ok: true,
            stdout: printed,
            stderr: String::new(),
        });
    }
    assert_same("pgbench", &outputs[0], &outputs[1]);
    assert!(
        outputs[0].stdout.contains("query mode: prepared")
            && outputs[0]
                .stdout
                .contains("number of transactions actually processed: 150/150"),
        "{}",
        outputs[0].stdout
    );
    eprintln!("{}", outputs[1].stdout);
}

/// Every event object (one with a `"type"`) in a trail, in order.
fn events(trail: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    fn find(v: &serde_json::Value, out: &mut Vec<serde_json::Map<String, serde_json::Value>>) {
        match v {
            serde_json::Value::Object(m) if m.get("type").is_some_and(|t| t.is_string()) => {
                out.push(m.clone());
            }
            serde_json::Value::Object(m) => m.values().for_each(|v| find(v, out)),
            serde_json::Value::Array(a) => a.iter().for_each(|v| find(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for line in trail.lines().filter(|l| !l.trim().is_empty()) {
        find(&serde_json::from_str(line).unwrap(), &mut out);
    }
    out
}

fn str_of<'a>(m: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> &'a str {
    m.get(key).and_then(|v| v.as_str()).unwrap_or_default()
}

/// `[policy] enforce = false`: what the example policy denies or holds runs,
/// and the trail says what the policy would have done; masking stays.
#[test]
fn observe_mode_forwards_everything_and_records_what_the_policy_would_have_done() {
    let policy = include_str!("../../../examples/policy.toml");
    let stack = Stack::start(policy, false, "[[masking.field]]\nname = \"api_key\"\n");
    let psql = find_client_binary("psql").expect("psql (postgresql-client) is not installed");
    let pgbench = find_client_binary("pgbench").expect("pgbench is not installed");
    let setup = run(
        {
            let mut c = Command::new(&psql);
            c.args(["-X", "-v", "ON_ERROR_STOP=1", "-c"])
                .arg(
                    "create table customers (id int, api_key text, note text); \
                     insert into customers values (1, 'pk_live_0123456789abcdef', 'plain'), \
                     (2, 'pk_live_fedcba9876543210', 'plain'), (3, 'x', 'plain'); \
                     create table scratch (id int); insert into scratch values (1), (2); \
                     create table scratch2 (id int); insert into scratch2 values (1);",
                )
                .envs(stack.env(Side::Direct));
            c
        },
        Duration::from_secs(60),
    );
    assert!(setup.ok, "{}", setup.stderr);
    assert!(
        stack
            .startup
            .contains("ok (observe mode: the policy is not enforced)")
            && stack
                .startup
                .contains("portcullis: observe mode ([policy] enforce = false)"),
        "{}",
        stack.startup
    );
    let gw_psql = |sql: &str| {
        let mut c = Command::new(&psql);
        c.args(["-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .envs(stack.env(Side::Gateway));
        run(c, Duration::from_secs(60))
    };

    // Masking is as configured: a field rule masks api_key.
    let out = gw_psql("select id, api_key from customers order by id");
    assert!(out.ok, "{}", out.stderr);
    assert!(!out.stdout.contains("pk_live_"), "{}", out.stdout);
    assert!(out.stdout.contains("[MASKED:"), "{}", out.stdout);

    // A DELETE without WHERE (held for review when enforced) runs at once,
    // over the simple protocol and as a prepared statement (pgbench).
    let out = gw_psql("delete from customers");
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "DELETE 3");
    let script = stack.dir.path().join("delete.sql");
    std::fs::write(&script, "delete from scratch;\n").unwrap();
    let out = run(
        {
            let mut c = Command::new(&pgbench);
            c.args(["-n", "-M", "prepared", "-t", "1", "-f"])
                .arg(&script)
                .envs(stack.env(Side::Gateway));
            c
        },
        Duration::from_secs(60),
    );
    assert!(out.ok, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("number of transactions actually processed: 1/1"),
        "{}",
        out.stdout
    );
    // A TRUNCATE (denied when enforced) prepared and executed runs.
    std::fs::write(&script, "truncate scratch2;\n").unwrap();
    let out = run(
        {
            let mut c = Command::new(&pgbench);
            c.args(["-n", "-M", "prepared", "-t", "1", "-f"])
                .arg(&script)
                .envs(stack.env(Side::Gateway));
            c
        },
        Duration::from_secs(60),
    );
    assert!(out.ok, "{}{}", out.stdout, out.stderr);
    // A DROP (denied when enforced) runs.
    let out = gw_psql("drop table scratch");
    assert!(out.ok, "{}", out.stderr);
    let check = run(
        {
            let mut c = Command::new(&psql);
            c.args(["-X", "-tA", "-c", "select to_regclass('scratch') is null"])
                .envs(stack.env(Side::Direct));
            c
        },
        Duration::from_secs(60),
    );
    assert_eq!(check.stdout.trim(), "t", "{}", check.stderr);
    let check = run(
        {
            let mut c = Command::new(&psql);
            c.args(["-X", "-tA", "-c", "select count(*) from scratch2"])
                .envs(stack.env(Side::Direct));
            c
        },
        Duration::from_secs(60),
    );
    assert_eq!(check.stdout.trim(), "0", "{}", check.stderr);

    // The trail: each command with the decision it would have had, then
    // its forwarding; no approval was asked for.
    let all = events(&stack.trail());
    let forwarded: Vec<u64> = all
        .iter()
        .filter(|e| str_of(e, "type") == "command_forwarded")
        .filter_map(|e| e.get("command_id").and_then(serde_json::Value::as_u64))
        .collect();
    let command = |needle: &str, effect: &str| {
        let found: Vec<_> = all
            .iter()
            .filter(|e| str_of(e, "type") == "command")
            .filter(|e| {
                e.get("text")
                    .is_some_and(|t| t.to_string().to_lowercase().contains(needle))
            })
            .collect();
        assert!(
            !found.is_empty(),
            "no command record for {needle}: {all:#?}"
        );
        let mut ids = Vec::new();
        for e in &found {
            assert_eq!(str_of(e, "effect"), effect, "{e:?}");
            if effect != "allow" {
                assert!(
                    str_of(e, "reason").starts_with("observe mode ([policy] enforce = false)"),
                    "{e:?}"
                );
            }
            ids.extend(e.get("command_id").and_then(serde_json::Value::as_u64));
        }
        ids
    };
    command("select id, api_key", "allow");
    let delete = command("delete from customers", "hold");
    // The Parse and the Execute of pgbench's prepared DELETE.
    let prepared = command("delete from scratch", "hold");
    assert!(prepared.len() >= 2, "{all:#?}");
    let drop = command("drop table scratch", "deny");
    // The Parse and the Execute of the prepared TRUNCATE: both would deny.
    let truncate = command("truncate scratch2", "deny");
    assert!(truncate.len() >= 2, "{all:#?}");
    for id in delete
        .iter()
        .chain(&drop)
        .chain(prepared.last())
        .chain(truncate.last())
    {
        assert!(
            forwarded.contains(id),
            "command {id} was not recorded as forwarded: {all:#?}"
        );
    }
    assert!(
        !all.iter()
            .any(|e| str_of(e, "type").starts_with("approval_")),
        "no approval is asked for in observe mode: {all:#?}"
    );
}
