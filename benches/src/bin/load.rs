//! The side-by-side load harness: PostgreSQL directly, through PgBouncer
//! (session pooling) and through the Portcullis gateway, measured in one run,
//! targets interleaved: `pgbench -S` and pgbench's TPC-B-like script, a large
//! result read with psql (MB/s, and the gateway's peak RSS), and idle
//! sessions held open (the gateway's RSS per session).
//!
//! ```text
//! cargo run --release -p portcullis-benches --bin load            # full run
//! cargo run --release -p portcullis-benches --bin load -- --smoke # CI: ~10 s, fails only on errors
//! ```
//!
//! Options: `--seconds N` per pgbench run (default 8), `--clients 1,8,32,100`,
//! `--modes simple,extended,prepared`, `--workloads select,tpcb`,
//! `--big-mb 200,2000` (large results; 0 to skip), `--idle 1000` (idle
//! sessions; 0 to skip), `--repeat N` (default 1),
//! `--portcullis PATH` (default: `portcullis` beside this binary, built with
//! `cargo build --release -p portcullis` when missing), `--gateway-audit
//! TOML` (extra lines for the gateway's `[audit.jsonl]` section, e.g.
//! `durability = "fsync"`).
//!
//! It starts a PostgreSQL 15 cluster (the testkit's, `max_connections` 400),
//! `pgbench -i -s 10`, PgBouncer (installed with `apt-get` when missing; run
//! as the `postgres` user when we are root) and the gateway (a 20-rule
//! policy: the example policy, a rule for pgbench's tables and the kind of
//! rules a team adds; the default masking catalogue; a JSON Lines trail).
//! First the idle sessions and the large results (so that the gateway's peak
//! RSS is its own, before any pgbench run), then every (workload, mode,
//! clients) for each target in turn: TPS, average and p99 latency (from
//! pgbench's per-transaction log) and the ratios gateway/PgBouncer and
//! gateway/direct.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::{PgCluster, find_client_binary};

type Result<T> = std::result::Result<T, String>;

const POLICY: &str = include_str!("../../../examples/policy.toml");

/// With the example policy's five, the twenty rules of a team's policy: the
/// harness's own (pgbench's tables, psql's cursor for large results) and
/// the kind of rules teams add, evaluated on every statement.
const EXTRA_RULES: &str = r#"
[[rule]]
id = "pgbench"
description = "the load harness's tables"
effect = "allow"
when.sql.kind = ["select", "update", "insert", "transaction", "cursor"]

[[rule]]
id = "no-audit-schema"
effect = "deny"
reason = "the audit schema is not for agents"
when.sql.reads = ["audit.*"]

[[rule]]
id = "no-audit-writes"
effect = "deny"
reason = "the audit schema is append-only"
when.sql.writes = ["audit.*"]

[[rule]]
id = "no-pg-authid"
effect = "deny"
reason = "credentials are not readable"
when.sql.reads = ["pg_catalog.pg_authid", "pg_catalog.pg_shadow", "pg_catalog.pg_user_mapping"]

[[rule]]
id = "no-roles"
effect = "deny"
reason = "roles are managed by the platform team"
when.sql.kind = ["role_change", "grant", "revoke"]

[[rule]]
id = "no-extensions"
effect = "deny"
reason = "functions are installed by migrations"
when.sql.kind = ["function_definition", "do", "load"]

[[rule]]
id = "hold-prod-ddl"
effect = "review"
when.resource.labels.env = "prod"
when.sql.kind = ["create", "alter"]

[[rule]]
id = "hold-billing-writes"
effect = "review"
when.sql.writes = ["billing.*"]

[[rule]]
id = "deny-payroll"
effect = "deny"
reason = "payroll is not available to agents"
when.principal.kind = "agent"
when.sql.reads = ["payroll.*", "hr.salaries"]

[[rule]]
id = "deny-listen"
effect = "deny"
reason = "no LISTEN/NOTIFY through the gateway"
when.sql.kind = ["listen", "notify"]

[[rule]]
id = "deny-vacuum-full"
effect = "deny"
reason = "maintenance runs in the maintenance window"
when.sql.kind = ["maintenance", "checkpoint", "two_phase"]

[[rule]]
id = "deny-large-objects"
effect = "deny"
reason = "large objects are not used here"
when.sql.functions = ["lo_*"]

[[rule]]
id = "deny-dblink"
effect = "deny"
reason = "no connections out of the database"
when.sql.functions = ["dblink*", "postgres_fdw*"]

[[rule]]
id = "services-read"
effect = "allow"
when.principal.kind = "service"
when.sql.kind = "select"
"#;

#[derive(Debug)]
struct Args {
    smoke: bool,
    seconds: u64,
    clients: Vec<u32>,
    modes: Vec<String>,
    workloads: Vec<String>,
    big_mb: Vec<u64>,
    idle: u32,
    repeat: u32,
    portcullis: Option<PathBuf>,
    gateway_audit: String,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        smoke: false,
        seconds: 8,
        clients: vec![1, 8, 32, 100],
        modes: vec!["simple".into(), "extended".into(), "prepared".into()],
        workloads: vec!["select".into(), "tpcb".into()],
        big_mb: vec![200, 2000],
        idle: 1000,
        repeat: 1,
        portcullis: None,
        gateway_audit: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--smoke" => a.smoke = true,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--repeat" => a.repeat = value()?.parse().map_err(|e| format!("--repeat: {e}"))?,
            "--clients" => {
                a.clients = value()?
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|e| format!("--clients {c}: {e}")))
                    .collect::<Result<_>>()?;
            }
            "--modes" => a.modes = value()?.split(',').map(|m| m.trim().to_owned()).collect(),
            "--workloads" => {
                a.workloads = value()?.split(',').map(|m| m.trim().to_owned()).collect();
            }
            "--big-mb" => {
                a.big_mb = value()?
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|e| format!("--big-mb {c}: {e}")))
                    .collect::<Result<Vec<u64>>>()?
                    .into_iter()
                    .filter(|&m| m > 0)
                    .collect();
            }
            "--idle" => a.idle = value()?.parse().map_err(|e| format!("--idle: {e}"))?,
            "--portcullis" => a.portcullis = Some(PathBuf::from(value()?)),
            "--gateway-audit" => a.gateway_audit = value()?,
            "-h" | "--help" => {
                println!(
                    "usage: load [--smoke] [--seconds N] [--clients 1,8,32,100] \
                     [--modes simple,extended,prepared] [--workloads select,tpcb] \
                     [--big-mb 200,2000] [--idle 1000] [--repeat N] [--portcullis PATH] \
                     [--gateway-audit TOML]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    if a.smoke {
        a.seconds = 1;
        a.clients = vec![1, 8];
        a.modes = vec!["simple".into(), "extended".into()];
        a.workloads = vec!["select".into(), "tpcb".into()];
        a.big_mb = vec![8];
        a.idle = 20;
        a.repeat = 1;
    }
    for w in &a.workloads {
        if !["select", "tpcb"].contains(&w.as_str()) {
            return Err(format!("unknown workload {w} (select or tpcb)"));
        }
    }
    for m in &a.modes {
        if !["simple", "extended", "prepared"].contains(&m.as_str()) {
            return Err(format!("unknown pgbench mode {m}"));
        }
    }
    if a.seconds == 0 || a.repeat == 0 || a.clients.is_empty() || a.modes.is_empty() {
        return Err("nothing to run".into());
    }
    Ok(a)
}

fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited before listening: {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not listen on {port} within 30 s"))
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `Some((uid, gid))` of the `postgres` user when we are root (PgBouncer,
/// like PostgreSQL, refuses to run as root).
fn unprivileged_user() -> Result<Option<(u32, u32)>> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != "postgres" {
                return None;
            }
            let _ = f.next()?;
            Some(Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?)))
        })
        .ok_or_else(|| "running as root and there is no postgres user for PgBouncer".into())
}

fn pgbouncer_binary() -> Result<PathBuf> {
    let find = || {
        [
            "/usr/sbin/pgbouncer",
            "/usr/bin/pgbouncer",
            "/usr/local/bin/pgbouncer",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("load: PgBouncer is missing; installing the Debian package");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "pgbouncer"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("apt-get: {e}"))?
        .success();
    match find() {
        Some(p) if ok => Ok(p),
        _ => Err("PgBouncer is not installed and apt-get install pgbouncer failed".into()),
    }
}

fn start_pgbouncer(pg: &PgCluster, dir: &Path) -> Result<(Proc, u16)> {
    let bin = pgbouncer_binary()?;
    let port = free_port()?;
    let user = unprivileged_user()?;
    let ini = dir.join("pgbouncer.ini");
    std::fs::write(dir.join("userlist.txt"), "\"bench\" \"\"\n").map_err(|e| e.to_string())?;
    std::fs::write(
        &ini,
        format!(
            "[databases]\n\
             postgres = host=127.0.0.1 port={pg_port} dbname=postgres user={user} password={pw}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = session\n\
             max_client_conn = 400\n\
             default_pool_size = 120\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            pg_port = pg.port(),
            user = pg.superuser(),
            pw = pg.password(),
            dir = dir.display(),
        ),
    )
    .map_err(|e| format!("{}: {e}", ini.display()))?;
    let mut cmd = Command::new(&bin);
    cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null());
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        for f in ["", "pgbouncer.ini", "userlist.txt"] {
            std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        cmd.uid(uid).gid(gid);
    }
    let child = cmd.spawn().map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut proc = Proc(child);
    wait_for_port(port, "pgbouncer", &mut proc.0).map_err(|e| {
        let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
        format!("{e}\n{log}")
    })?;
    Ok((proc, port))
}

fn portcullis_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let beside = exe
        .parent()
        .map(|d| d.join("portcullis"))
        .ok_or("no directory for this binary")?;
    if !beside.exists() {
        let release = exe
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "release");
        eprintln!("load: building the gateway (cargo build --release -p portcullis)");
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(["build", "-q", "-p", "portcullis", "--bin", "portcullis"]);
        if release {
            cmd.arg("--release");
        }
        let ok = cmd.status().map_err(|e| format!("cargo: {e}"))?.success();
        if !ok || !beside.exists() {
            return Err(format!("could not build {}", beside.display()));
        }
    }
    Ok(beside)
}

fn run_portcullis(bin: &Path, dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "portcullis {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts the gateway in front of `pg`; returns it, its port and a token.
fn start_gateway(
    bin: &Path,
    pg: &PgCluster,
    dir: &Path,
    audit_extra: &str,
) -> Result<(Proc, u16, String)> {
    run_portcullis(bin, dir, &["token", "keygen", "--out", "gateway.pem"])?;
    let policy = format!("{POLICY}\n{EXTRA_RULES}");
    std::fs::write(dir.join("policy.toml"), policy).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("backend.pw"), format!("{}\n", pg.password()))
        .map_err(|e| e.to_string())?;
    let port = free_port()?;
    let admin = free_port()?;
    let config = format!(
        r#"
[[listener]]
address = "127.0.0.1:{port}"

[[connection]]
name = "bench"
kind = "postgres"
host = "127.0.0.1"
port = {pg_port}
database = "postgres"
user = "{user}"
password_file = "backend.pw"

[identity]
signing_key = "gateway.pem"

[policy]
file = "policy.toml"

[audit.jsonl]
dir = "audit"
chain = "load"
{audit_extra}

[admin]
address = "127.0.0.1:{admin}"

[limits]
max_sessions_per_principal = 1000
"#,
        pg_port = pg.port(),
        user = pg.superuser(),
    );
    std::fs::write(dir.join("portcullis.toml"), config).map_err(|e| e.to_string())?;
    run_portcullis(bin, dir, &["check", "--config", "portcullis.toml"])?;
    let mut child = Command::new(bin)
        .args(["serve", "--config", "portcullis.toml"])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    // Keep draining its log so it never blocks on a full pipe.
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    }
    let mut proc = Proc(child);
    wait_for_port(port, "the gateway", &mut proc.0)?;
    let token = run_portcullis(
        bin,
        dir,
        &[
            "token",
            "issue",
            "--principal",
            "agent:load",
            "--groups",
            "agents",
            "--ttl",
            "12h",
        ],
    )?
    .trim()
    .to_owned();
    Ok((proc, port, token))
}

#[derive(Debug, Clone)]
struct Target {
    name: &'static str,
    conninfo: String,
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    tps: f64,
    avg_ms: f64,
    p99_ms: f64,
}

/// One pgbench run (`select`: `-S`; `tpcb`: the built-in TPC-B-like
/// script); fails on any error or failed transaction.
fn pgbench(
    target: &Target,
    workload: &str,
    mode: &str,
    clients: u32,
    seconds: u64,
) -> Result<Figures> {
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bin = find_client_binary("pgbench").map_err(|e| e.to_string())?;
    let threads = clients.min(2);
    let script = if workload == "select" {
        "select-only"
    } else {
        "tpcb-like"
    };
    let out = Command::new(bin)
        .args(["-n", "-b", script, "-l", "--log-prefix", "tx", "-M", mode])
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &seconds.to_string()])
        .arg(&target.conninfo)
        .current_dir(work.path())
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!(
        "pgbench -b {script} -M {mode} -c {clients} against {}",
        target.name
    );
    if !out.status.success() {
        return Err(format!("{what} failed ({}):\n{stderr}", out.status));
    }
    let failed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    if failed > 0 {
        return Err(format!("{what}: {failed} failed transactions\n{stdout}"));
    }
    let tps = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| format!("{what}: no tps in its output:\n{stdout}"))?;
    // Per-transaction log lines: client, transaction, latency (µs), ...
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(work.path()).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        latencies.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()),
        );
    }
    if latencies.is_empty() {
        return Err(format!("{what}: no transactions logged"));
    }
    latencies.sort_unstable();
    let avg = latencies.iter().sum::<u64>() as f64 / latencies.len() as f64;
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len() - 1))
        .copied()
        .unwrap_or(0);
    Ok(Figures {
        tps,
        avg_ms: avg / 1000.0,
        p99_ms: p99 as f64 / 1000.0,
    })
}

/// The resident set (`VmRSS`) and its peak (`VmHWM`) of process `pid`, KiB.
fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("/proc/{pid}/status has no {name}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak RSS of `pid` to its current RSS (Linux `clear_refs` 5);
/// false when the kernel refuses, so the peak is the process's lifetime one.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Opens `n` sessions through each target, runs one statement on each and
/// holds them idle; prints the gateway's RSS per session.
fn idle_sessions(targets: &[Target], gateway_pid: u32, n: u32, errors: &mut Vec<String>) {
    let Some(gw) = targets.iter().find(|t| t.name == "gateway") else {
        return;
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errors.push(format!("idle sessions: runtime: {e}"));
            return;
        }
    };
    let before = rss_kib(gateway_pid);
    let opened: std::result::Result<Vec<tokio_postgres::Client>, String> = rt.block_on(async {
        let mut clients = Vec::with_capacity(n as usize);
        for i in 0..n {
            let (client, conn) = tokio_postgres::connect(&gw.conninfo, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("idle session {i}: connect: {e}"))?;
            tokio::spawn(conn);
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| format!("idle session {i}: SELECT 1: {e}"))?;
            clients.push(client);
        }
        // Let the gateway settle (write-ahead records, buffers) before reading.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(clients)
    });
    let after = rss_kib(gateway_pid);
    match (opened, before, after) {
        (Ok(clients), Ok((rss0, _)), Ok((rss1, _))) => {
            println!(
                "idle sessions: {} through the gateway; its RSS {:.1} MiB -> {:.1} MiB, \
                 {:.1} KiB per session",
                clients.len(),
                rss0 as f64 / 1024.0,
                rss1 as f64 / 1024.0,
                rss1.saturating_sub(rss0) as f64 / f64::from(n.max(1))
            );
            drop(clients);
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => errors.push(e),
    }
    // The connection tasks end with the runtime.
    drop(rt);
}

/// Reads a result of about `mb` MB (text rows of ~1 KB, masking on in the
/// gateway) with psql, fetching 10,000 rows at a time, through each target;
/// prints MB/s and, for the gateway, its peak RSS during the read.
fn large_results(targets: &[Target], gateway_pid: u32, sizes: &[u64], errors: &mut Vec<String>) {
    let psql = match find_client_binary("psql") {
        Ok(p) => p,
        Err(e) => {
            errors.push(format!("large results: {e}"));
            return;
        }
    };
    println!();
    println!(
        "{:<10} {:>9} {:>12} {:>10} {:>9} {:>15}",
        "result", "target", "bytes", "seconds", "MB/s", "gateway peak"
    );
    for &mb in sizes {
        // 32 hex digits repeated 30 times, an id and separators: ~1 KB/row.
        let rows = mb * 1_000_000 / 1_000;
        let sql = format!(
            "SELECT g, repeat(md5(g::text), 30) AS payload FROM generate_series(1, {rows}) g"
        );
        for t in targets {
            let peak_reset = t.name == "gateway" && reset_peak(gateway_pid);
            let started = Instant::now();
            let child = Command::new(&psql)
                .args([
                    "-X",
                    "-q",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-v",
                    "FETCH_COUNT=10000",
                ])
                .args(["-c", &sql])
                .arg(&t.conninfo)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("psql: {e}"));
                    continue;
                }
            };
            let bytes = child
                .stdout
                .take()
                .map(|mut out| std::io::copy(&mut out, &mut std::io::sink()).unwrap_or(0))
                .unwrap_or(0);
            let out = child.wait_with_output();
            let secs = started.elapsed().as_secs_f64();
            match out {
                Ok(o) if o.status.success() => {
                    let peak = if t.name == "gateway" {
                        match rss_kib(gateway_pid) {
                            Ok((_, hwm)) => format!(
                                "{:.1} MiB{}",
                                hwm as f64 / 1024.0,
                                if peak_reset { "" } else { " (lifetime)" }
                            ),
                            Err(e) => e,
                        }
                    } else {
                        String::new()
                    };
                    println!(
                        "{:<10} {:>9} {:>12} {:>10.2} {:>9.1} {:>15}",
                        format!("{mb} MB"),
                        t.name,
                        bytes,
                        secs,
                        bytes as f64 / 1e6 / secs.max(1e-9),
                        peak
                    );
                }
                Ok(o) => errors.push(format!(
                    "large result of {mb} MB through {}: psql failed: {}",
                    t.name,
                    String::from_utf8_lossy(&o.stderr)
                )),
                Err(e) => errors.push(format!("psql: {e}")),
            }
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let bin = portcullis_binary(args.portcullis.clone())?;
    let max_connections = (args.idle + 150).max(400).to_string();
    let pg = PgCluster::builder()
        .setting("max_connections", &max_connections)
        .start()
        .map_err(|e| format!("postgres: {e}"))?;
    let init = Command::new(find_client_binary("pgbench").map_err(|e| e.to_string())?)
        .args(["-i", "-q", "-s", if args.smoke { "1" } else { "10" }])
        .arg(pg.dsn())
        .output()
        .map_err(|e| format!("pgbench -i: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "pgbench -i: {}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let bouncer_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_bouncer, bouncer_port) = start_pgbouncer(&pg, bouncer_dir.path())?;
    let gw_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (mut gateway, gw_port, token) =
        start_gateway(&bin, &pg, gw_dir.path(), &args.gateway_audit)?;
    let targets = [
        Target {
            name: "direct",
            conninfo: format!(
                "host=127.0.0.1 port={} user={} password={} dbname=postgres sslmode=disable",
                pg.port(),
                pg.superuser(),
                pg.password()
            ),
        },
        Target {
            name: "pgbouncer",
            conninfo: format!(
                "host=127.0.0.1 port={bouncer_port} user=bench dbname=postgres sslmode=disable"
            ),
        },
        Target {
            name: "gateway",
            conninfo: format!(
                "host=127.0.0.1 port={gw_port} user=bench password={token} dbname=postgres \
                 sslmode=disable"
            ),
        },
    ];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "pgbench, {} s per run, {} repeat(s), targets interleaved; load average at start: {}",
        args.seconds,
        args.repeat,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut errors = Vec::new();
    if args.idle > 0 {
        idle_sessions(&targets, gateway.0.id(), args.idle, &mut errors);
    }
    if !args.big_mb.is_empty() {
        large_results(&targets, gateway.0.id(), &args.big_mb, &mut errors);
    }
    println!();
    println!(
        "{:<16} {:>7} {:<10} {:>10} {:>9} {:>9}",
        "workload/mode", "clients", "target", "TPS", "avg ms", "p99 ms"
    );
    let mut summary = Vec::new();
    for workload in &args.workloads {
        for mode in &args.modes {
            let label = format!("{workload}/{mode}");
            for &clients in &args.clients {
                let mut best: [Option<Figures>; 3] = [None; 3];
                for _ in 0..args.repeat {
                    for (i, t) in targets.iter().enumerate() {
                        if let Ok(Some(status)) = gateway.0.try_wait() {
                            return Err(format!("the gateway exited: {status}"));
                        }
                        match pgbench(t, workload, mode, clients, args.seconds) {
                            Ok(f) => {
                                println!(
                                    "{label:<16} {clients:>7} {:<10} {:>10.0} {:>9.3} {:>9.3}",
                                    t.name, f.tps, f.avg_ms, f.p99_ms
                                );
                                // Of repeats, keep the best TPS: the least
                                // disturbed by other load.
                                if let Some(slot) = best.get_mut(i)
                                    && slot.is_none_or(|b| b.tps < f.tps)
                                {
                                    *slot = Some(f);
                                }
                            }
                            Err(e) => {
                                println!("{label:<16} {clients:>7} {:<10} {:>10}", t.name, "ERROR");
                                errors.push(e);
                            }
                        }
                    }
                }
                summary.push((label.clone(), clients, best));
            }
        }
    }
    println!();
    println!(
        "{:<16} {:>7} {:>10} {:>10} {:>10} {:>13} {:>13}",
        "workload/mode", "clients", "direct", "pgbouncer", "gateway", "gw/pgbouncer", "gw/direct"
    );
    let ratio = |a: Option<Figures>, b: Option<Figures>| match (a, b) {
        (Some(a), Some(b)) if b.tps > 0.0 => format!("{:.3}", a.tps / b.tps),
        _ => "-".to_owned(),
    };
    let tps = |f: Option<Figures>| f.map_or("-".to_owned(), |f| format!("{:.0}", f.tps));
    for (mode, clients, [d, b, g]) in &summary {
        println!(
            "{mode:<16} {clients:>7} {:>10} {:>10} {:>10} {:>13} {:>13}",
            tps(*d),
            tps(*b),
            tps(*g),
            ratio(*g, *b),
            ratio(*g, *d)
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    drop(gateway);
    // The gateway's trail must verify after the run.
    let files = portcullis_audit::trail_files(&gw_dir.path().join("audit"), "load")
        .map_err(|e| e.to_string())?;
    let report = portcullis_audit::verify(&files);
    println!(
        "gateway trail: {} file(s), head seq {}, {}",
        files.len(),
        report.head().map_or(0, |h| h.seq),
        if report.is_intact() {
            "intact"
        } else {
            "NOT INTACT"
        }
    );
    if !report.is_intact() {
        errors.push(format!("the gateway's trail does not verify:\n{report}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} error(s):\n{}", errors.len(), errors.join("\n")))
    }
}
