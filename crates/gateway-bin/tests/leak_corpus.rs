//! Field masking fails closed: the leak corpus (testdata/masking/
//! leak-corpus.toml) and random SELECTs run through the real gateway against
//! a real PostgreSQL, with a policy that allows everything so that masking
//! alone stands between a masked column's values and the client. Every byte
//! the client receives is captured and searched for the raw values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_testkit::{Client, PgCluster};

const SEED: &str = include_str!("../src/demo/seed.sql");
const CORPUS: &str = include_str!("../../../testdata/masking/leak-corpus.toml");
const BACKEND_PASSWORD: &str = "gw-backend-Pa55word-lineage";

/// The demo's api_key values: no detector knows them, only the field rule.
const KEYS: [&str; 5] = [
    "pk_demo_4f9a2c1e8b7d6a5f4e3d2c1b",
    "pk_demo_0a1b2c3d4e5f6a7b8c9d0e1f",
    "pk_demo_9e8d7c6b5a4f3e2d1c0b9a8f",
    "pk_demo_1f2e3d4c5b6a7f8e9d0c1b2a",
    "pk_demo_abcdef0123456789abcdef01",
];

const SETUP: &str = r#"
CREATE VIEW shop.v_keys AS SELECT id, api_key AS k FROM shop.customers;
CREATE VIEW shop.v_names AS SELECT id, name FROM shop.customers;
CREATE FUNCTION shop.key_of(int) RETURNS text LANGUAGE sql
    AS 'select api_key from shop.customers where id = $1';
CREATE FUNCTION shop.noisy() RETURNS int LANGUAGE plpgsql AS $f$
BEGIN
    RAISE NOTICE 'key %', (SELECT api_key FROM shop.customers LIMIT 1);
    RETURN 1;
END $f$;
GRANT SELECT ON shop.v_keys, shop.v_names TO portcullis_gateway;
CREATE TABLE shop.pt (id int PRIMARY KEY, name text, api_key text);
CREATE TABLE shop.pt2 (id int PRIMARY KEY, pt_id int, note text);
INSERT INTO shop.pt VALUES (1, 'one', 'MARKERzq1xkeyvalue'), (2, 'two', 'MARKERzq2xkeyvalue'),
    (3, 'three', 'MARKERzq3xkeyvalue');
INSERT INTO shop.pt2 VALUES (10, 1, 'n1'), (20, 2, 'n2'), (30, 3, 'n3');
GRANT SELECT, INSERT, UPDATE, DELETE ON shop.pt, shop.pt2 TO portcullis_gateway;
"#;

const POLICY: &str = r#"
default = "allow"
on_unparsed = "deny"
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

/// Turns TLS on in a running cluster with a fresh self-signed certificate
/// for 127.0.0.1 and localhost; returns the certificate (PEM).
fn enable_tls(pg: &PgCluster) -> String {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let dir = pg.data_dir();
    let owner = std::fs::metadata(&dir).unwrap();
    for (file, pem) in [
        ("server.crt", ck.cert.pem()),
        ("server.key", ck.signing_key.serialize_pem()),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, pem).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    pg.execute("ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf();")
        .unwrap();
    ck.cert.pem()
}

impl Gateway {
    /// The gateway in front of a fresh PostgreSQL; with `tls`, the backend
    /// connection (sessions and catalog) is TLS, checked against the
    /// cluster's certificate given to the gateway as its trusted roots.
    fn start(tls: bool) -> Gateway {
        Gateway::start_with(tls, POLICY)
    }

    fn start_with(tls: bool, policy: &str) -> Gateway {
        Gateway::start_config(tls, policy, "")
    }

    /// `masking` goes into the `[masking]` section.
    fn start_config(tls: bool, policy: &str, masking: &str) -> Gateway {
        let pg = PgCluster::start().unwrap();
        let ca = tls.then(|| enable_tls(&pg));
        let out = Client::psql(&pg.dsn())
            .unwrap()
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-f", "-"])
            .arg(format!("--variable=gateway_password={BACKEND_PASSWORD}"))
            .stdin(format!("{SEED}\n{SETUP}"))
            .run()
            .unwrap();
        assert!(out.success(), "{}", out.stderr);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ok, _, err) = portcullis(d, &["token", "keygen", "--out", "gateway.pem"]);
        assert!(ok, "{err}");
        std::fs::write(d.join("policy.toml"), policy).unwrap();
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
tls = "{backend_tls}"

[identity]
signing_key = "gateway.pem"

[policy]
file = "policy.toml"

[masking]
{masking}

[[masking.field]]
name = "api_key"

[audit.jsonl]
dir = "audit"
chain = "gw-lineage"

[admin]
address = "127.0.0.1:{admin_port}"
"#,
            pg_port = pg.port(),
            backend_tls = if tls { "verify-full" } else { "disable" },
        );
        std::fs::write(d.join("portcullis.toml"), config).unwrap();
        let mut command = Command::new(bin());
        if let Some(ca) = &ca {
            std::fs::write(d.join("backend-ca.pem"), ca).unwrap();
            command.env("SSL_CERT_FILE", d.join("backend-ca.pem"));
        }
        let mut child = command
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
            if line.contains("admin API on") {
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

    fn token(&self) -> String {
        let (ok, out, err) = portcullis(
            self.dir.path(),
            &[
                "token",
                "issue",
                "--principal",
                "agent:leaky",
                "--groups",
                "agents",
                "--ttl",
                "30m",
            ],
        );
        assert!(ok, "{err}");
        out.trim().to_owned()
    }

    fn trail_text(&self) -> String {
        portcullis_audit::trail_files(&self.dir.path().join("audit"), "gw-lineage")
            .unwrap()
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    }
}

/// A relay in front of the gateway that keeps every byte sent to the client.
fn capturing_relay(gateway_port: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let captured = Arc::new(Mutex::new(Vec::new()));
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
                    if n == 0 {
                        break;
                    }
                    // Kept before the client sees it, so that a client's
                    // reply means its bytes are here.
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, captured)
}

/// The forms of a secret that must not appear: as is, in upper case,
/// reversed, and hex-encoded.
fn needles(secret: &str) -> Vec<Vec<u8>> {
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        secret.as_bytes().to_vec(),
        secret.to_ascii_uppercase().into_bytes(),
        secret.chars().rev().collect::<String>().into_bytes(),
        hex.into_bytes(),
    ]
}

fn leaked<'a>(bytes: &[u8], secrets: &'a [&'a str]) -> Option<&'a str> {
    let lower = bytes.to_ascii_lowercase();
    secrets.iter().copied().find(|s| {
        needles(s).iter().any(|n| {
            let n = n.to_ascii_lowercase();
            lower.windows(n.len()).any(|w| w == n.as_slice())
        })
    })
}

#[derive(serde::Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    sql: String,
    mask: Option<Vec<usize>>,
    /// The field separator of the output (psql's `|`, or a COPY's).
    delimiter: Option<String>,
}

fn rows(out: &str, delimiter: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split(delimiter).map(str::to_owned).collect())
        .collect()
}

#[test]
fn no_statement_of_the_leak_corpus_reveals_an_api_key() {
    run_corpus(false);
}

#[test]
fn no_statement_of_the_leak_corpus_reveals_an_api_key_over_a_tls_backend() {
    run_corpus(true);
}

fn run_corpus(tls: bool) {
    let corpus: Corpus = toml::from_str(CORPUS).unwrap();
    assert!(corpus.case.len() >= 80, "{} cases", corpus.case.len());
    let gw = Gateway::start(tls);
    let token = gw.token();
    let (relay, captured) = capturing_relay(gw.port);
    let dsn = format!(
        "host=127.0.0.1 port={relay} user=shop dbname=postgres sslmode=disable password={token}"
    );
    let direct_dsn = gw
        .pg
        .dsn_for("portcullis_gateway", BACKEND_PASSWORD, "postgres");

    // Simple protocol: real psql, one session per statement.
    let mut compared = 0;
    for case in &corpus.case {
        captured.lock().unwrap().clear();
        let through = Client::psql(&dsn)
            .unwrap()
            .args(["-X", "-tA", "-v", "VERBOSITY=verbose", "-c", &case.sql])
            .run()
            .unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let bytes = captured.lock().unwrap().clone();
        assert!(!bytes.is_empty(), "nothing captured for {}", case.sql);
        if let Some(secret) = leaked(&bytes, &KEYS) {
            panic!(
                "{secret} reached the client for {:?}:\n{}{}",
                case.sql, through.stdout, through.stderr
            );
        }
        let Some(mask) = &case.mask else { continue };
        let direct = Client::psql(&direct_dsn)
            .unwrap()
            .args(["-X", "-tA", "-c", &case.sql])
            .run()
            .unwrap();
        assert!(
            through.success() && direct.success(),
            "{}: {}{}",
            case.sql,
            through.stderr,
            direct.stderr
        );
        let delimiter = case.delimiter.as_deref().unwrap_or("|");
        let (t, d) = (
            rows(&through.stdout, delimiter),
            rows(&direct.stdout, delimiter),
        );
        assert_eq!(t.len(), d.len(), "{}", case.sql);
        for (tr, dr) in t.iter().zip(&d) {
            assert_eq!(tr.len(), dr.len(), "{}: {tr:?} {dr:?}", case.sql);
            for (i, (tv, dv)) in tr.iter().zip(dr).enumerate() {
                if mask.contains(&i) {
                    assert!(
                        tv.starts_with("[MASKED") || tv.is_empty(),
                        "{}: column {i} not masked: {tv:?}",
                        case.sql
                    );
                } else {
                    assert_eq!(tv, dv, "{}: clean column {i} changed", case.sql);
                }
            }
        }
        compared += 1;
    }
    assert!(compared >= 40, "only {compared} cases compared");

    // Extended protocol: tokio-postgres prepares each statement and asks
    // for binary results; COPY goes through copy_out.
    captured.lock().unwrap().clear();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for case in &corpus.case {
            let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                .await
                .unwrap();
            let task = tokio::spawn(conn);
            if case.sql.starts_with("copy") {
                if let Ok(stream) = client.copy_out(case.sql.as_str()).await {
                    use futures_util::StreamExt;
                    let mut stream = std::pin::pin!(stream);
                    while let Some(chunk) = stream.next().await {
                        if chunk.is_err() {
                            break;
                        }
                    }
                }
            } else {
                let _ = client.query(case.sql.as_str(), &[]).await;
            }
            drop(client);
            let _ = task.await;
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let bytes = captured.lock().unwrap().clone();
    assert!(bytes.len() > 10_000, "captured only {} bytes", bytes.len());
    if let Some(secret) = leaked(&bytes, &KEYS) {
        let text = String::from_utf8_lossy(&bytes);
        let at = text.find(&secret[8..]).unwrap_or(0);
        panic!(
            "{secret} reached a client in extended protocol near: {}",
            text.get(at.saturating_sub(300)..at + 40)
                .unwrap_or_default()
        );
    }

    // The trail got the masked texts too.
    let trail = gw.trail_text();
    assert!(
        trail.contains("invalid input syntax for type integer"),
        "no error recorded"
    );
    for k in KEYS {
        for n in needles(k).iter().take(1) {
            let n = String::from_utf8_lossy(n);
            // The statement texts quote none of them; results and errors
            // recorded must not either.
            assert!(!trail.contains(n.as_ref()), "{k} reached the trail");
        }
    }
}

/// The planted values of shop.pt.api_key.
const MARKERS: [&str; 3] = [
    "MARKERzq1xkeyvalue",
    "MARKERzq2xkeyvalue",
    "MARKERzq3xkeyvalue",
];

mod sqlgen {
    use proptest::prelude::*;

    /// A value expression over the relation aliased `t` (columns id, name,
    /// api_key), nested up to `depth`.
    pub(super) fn expr(depth: u32) -> BoxedStrategy<String> {
        let leaf = prop_oneof![
            Just("t.id".to_owned()),
            Just("t.name".to_owned()),
            Just("t.api_key".to_owned()),
            Just("api_key".to_owned()),
            Just("t".to_owned()),
            Just("'lit'".to_owned()),
            Just("null".to_owned()),
            Just("42".to_owned()),
            Just("to_jsonb(t)->>'api_key'".to_owned()),
            Just("row_to_json(t)::text".to_owned()),
            Just("(select api_key from pt limit 1)".to_owned()),
            Just("(select p.api_key from pt p where p.id = t.id)".to_owned()),
            Just("(select max(note) from pt2 u where u.pt_id = t.id)".to_owned()),
        ];
        leaf.prop_recursive(depth, 24, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| format!("upper({e}::text)")),
                inner.clone().prop_map(|e| format!("({e})::text")),
                inner.clone().prop_map(|e| format!("reverse({e}::text)")),
                inner.clone().prop_map(|e| format!("md5({e}::text)")),
                inner.clone().prop_map(|e| format!("left({e}::text, 9)")),
                inner
                    .clone()
                    .prop_map(|e| format!("coalesce({e}::text, 'y')")),
                inner
                    .clone()
                    .prop_map(|e| format!("array[{e}::text]::text")),
                inner.clone().prop_map(|e| format!("format('%s', {e})")),
                inner.clone().prop_map(|e| format!("({e})::int")),
                inner
                    .clone()
                    .prop_map(|e| format!("encode(convert_to({e}::text, 'UTF8'), 'hex')")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("concat({a}, {b})")),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| format!("({a})::text || ({b})::text")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!(
                    "case when t.id > 1 then ({a})::text else ({b})::text end"
                )),
            ]
        })
        .boxed()
    }

    /// A FROM clause binding `t`.
    pub(super) fn from() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("pt t".to_owned()),
            Just("(select * from pt) t".to_owned()),
            Just("(select id, name, api_key from pt) t".to_owned()),
            Just("(select id, name, upper(api_key) as api_key from pt) t".to_owned()),
            Just("pt t join pt2 u on u.pt_id = t.id".to_owned()),
            Just("pt2 u left join pt t on t.id = u.pt_id".to_owned()),
            Just("pt t, lateral (select t.api_key as k) l".to_owned()),
        ]
    }

    /// A whole SELECT.
    pub(super) fn select() -> impl Strategy<Value = String> {
        let simple = (expr(3), expr(3), from())
            .prop_map(|(a, b, f)| format!("select {a} as a, {b} as b from {f}"));
        let star = from().prop_map(|f| format!("select * from {f}"));
        let cte = (expr(2), from()).prop_map(|(a, f)| {
            format!("with c as (select {a} as v from {f}) select v, upper(v::text) from c")
        });
        let setop = (
            expr(2),
            expr(2),
            from(),
            prop_oneof![
                Just("union all"),
                Just("union"),
                Just("except"),
                Just("intersect")
            ],
        )
            .prop_map(|(a, b, f, op)| {
                format!("select ({a})::text from {f} {op} select ({b})::text from {f}")
            });
        let agg = (expr(2), from())
            .prop_map(|(a, f)| format!("select string_agg(({a})::text, ',') from {f}"));
        prop_oneof![simple, star, cte, setop, agg]
    }
}

#[test]
fn random_selects_never_reveal_the_planted_marker() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let gw = Gateway::start(false);
    let token = gw.token();
    let (relay, captured) = capturing_relay(gw.port);
    let dsn = format!(
        "host=127.0.0.1 port={relay} user=shop dbname=postgres sslmode=disable password={token}"
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
    // The marker is really there: read directly, it is found.
    let direct = Client::psql(
        &gw.pg
            .dsn_for("portcullis_gateway", BACKEND_PASSWORD, "postgres"),
    )
    .unwrap()
    .args(["-X", "-tA", "-c", "select reverse(api_key) from pt"])
    .run()
    .unwrap();
    assert!(
        leaked(direct.stdout.as_bytes(), &MARKERS).is_some(),
        "{}",
        direct.stdout
    );

    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let ran = std::sync::atomic::AtomicUsize::new(0);
    let answered = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&sqlgen::select(), |sql| {
            captured.lock().unwrap().clear();
            // Simple protocol (text results), then extended (binary results).
            let simple = rt.block_on(client.simple_query(&sql));
            let extended = rt.block_on(client.query(sql.as_str(), &[]));
            let bytes = captured.lock().unwrap().clone();
            ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if simple.is_ok() {
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(m) = leaked(&bytes, &MARKERS) {
                return Err(TestCaseError::fail(format!(
                    "{m} revealed by {sql}: {:?} {:?}",
                    simple.map(|r| r.len()),
                    extended.map(|r| r.len())
                )));
            }
            Ok(())
        })
        .unwrap();
    assert!(ran.into_inner() >= 96);
    // Most statements run (the others fail on purpose: casts to int).
    let answered = answered.into_inner();
    assert!(answered >= 40, "only {answered} statements answered");
}

#[test]
fn catalog_views_that_show_values_are_masked_unless_configured_clear() {
    let sql = "select backend_type from pg_stat_activity \
               where backend_type = 'client backend' and pid = pg_backend_pid()";
    for (masking, clear) in [("", false), ("catalog_views = \"clear\"", true)] {
        let gw = Gateway::start_config(false, POLICY, masking);
        let dsn = format!(
            "host=127.0.0.1 port={} user=shop dbname=postgres sslmode=disable password={}",
            gw.port,
            gw.token()
        );
        let out = Client::psql(&dsn)
            .unwrap()
            .args(["-X", "-tA", "-c", sql])
            .run()
            .unwrap();
        assert!(out.success(), "{masking}: {}", out.stderr);
        let shown = out.stdout.trim();
        if clear {
            assert_eq!(shown, "client backend", "{masking}");
        } else {
            assert!(shown.starts_with("[MASKED"), "{masking}: {shown}");
        }
        // The policy sees the risk either way.
        assert!(gw.trail_text().contains("catalog_values"), "{masking}");
    }
}

#[test]
fn the_example_policy_refuses_inference_through_a_masked_column() {
    let gw = Gateway::start_with(false, include_str!("../../../examples/policy.toml"));
    let token = gw.token();
    let dsn = format!(
        "host=127.0.0.1 port={} user=shop dbname=postgres sslmode=disable password={token}",
        gw.port
    );
    let run = |sql: &str| {
        Client::psql(&dsn)
            .unwrap()
            .args(["-X", "-tA", "-c", sql])
            .run()
            .unwrap()
    };
    // By name (the policy's own analysis), and through a whole-row
    // reference or a view (the lineage's).
    for sql in [
        "select id from customers where api_key like 'pk_demo_4%'",
        "select id from customers order by api_key",
        "select count(*) from customers group by api_key",
        "select id from customers c where c::text like '%pk_demo_4%'",
        "select id from v_keys where k like 'pk_demo_4%'",
    ] {
        let out = run(sql);
        assert!(!out.success(), "{sql} ran: {}", out.stdout);
        assert!(
            out.stderr.contains("no-inference-through-masked-columns"),
            "{sql}: {}",
            out.stderr
        );
    }
    // A clean predicate runs.
    let out = run("select name from customers where id = 1");
    assert_eq!(out.stdout.trim(), "Ada Lovelace", "{}", out.stderr);
    let trail = gw.trail_text();
    assert!(
        trail.contains("masked_column_predicate"),
        "not in the trail"
    );
}

#[test]
fn discover_proposes_field_rules_for_the_columns_detectors_recognise() {
    let gw = Gateway::start(false);
    let (ok, out, err) = portcullis(
        gw.dir.path(),
        &[
            "discover",
            "--config",
            "portcullis.toml",
            "--connection",
            "shop",
            "--rows",
            "3",
        ],
    );
    assert!(ok, "{err}");
    // The proposals parse as the configuration's own field rules.
    #[derive(serde::Deserialize)]
    struct Proposed {
        masking: Masking,
    }
    #[derive(serde::Deserialize)]
    struct Masking {
        field: Vec<Field>,
    }
    #[derive(serde::Deserialize)]
    struct Field {
        name: String,
    }
    let parsed: Proposed = toml::from_str(&format!("[masking]\n{out}")).unwrap();
    let names: Vec<&str> = parsed
        .masking
        .field
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert!(names.contains(&"shop.customers.email"), "{out}");
    assert!(names.contains(&"shop.customers.card_number"), "{out}");
    // Already covered by the `api_key` rule; nothing recognisable in orders.
    assert!(!out.contains("api_key"), "{out}");
    assert!(!out.contains("shop.orders"), "{out}");
    assert!(out.contains("sampled values match email"), "{out}");
}

/// A secret a default detector (AWS access key id) recognises.
const AKID: &str = "AKIAZ7VRSQ5TJHCM3XPL";

#[test]
fn column_names_and_parameter_status_values_go_through_the_detectors() {
    let gw = Gateway::start(false);
    let token = gw.token();
    let (relay, captured) = capturing_relay(gw.port);
    let dsn = format!(
        "host=127.0.0.1 port={relay} user=shop dbname=postgres sslmode=disable password={token}"
    );
    let run = |dsn: &str, args: &[&str]| {
        captured.lock().unwrap().clear();
        let out = Client::psql(dsn).unwrap().args(args).run().unwrap();
        assert!(out.success(), "{args:?}: {}", out.stderr);
        std::thread::sleep(Duration::from_millis(30));
        (out.stdout, captured.lock().unwrap().clone())
    };

    // A column alias: the RowDescription's name is masked, the value not.
    let (stdout, bytes) = run(
        &dsn,
        &["-X", "-A", "-c", &format!("select 7 as \"{AKID}\"")],
    );
    let header = stdout.lines().next().unwrap_or_default();
    assert!(header.starts_with("[MASKED"), "{stdout}");
    assert_eq!(stdout.lines().nth(1), Some("7"), "{stdout}");
    assert_eq!(leaked(&bytes, &[AKID]), None, "{stdout}");

    // A SET of a reported setting: the backend's ParameterStatus carries
    // the value, and SHOW returns it as a row.
    let (stdout, bytes) = run(
        &dsn,
        &[
            "-X",
            "-tA",
            "-c",
            &format!("set application_name = '{AKID}'"),
            "-c",
            "show application_name",
        ],
    );
    assert!(stdout.contains("[MASKED"), "{stdout}");
    let reported = b"application_name\0[MASKED";
    assert!(
        bytes.windows(reported.len()).any(|w| w == reported),
        "no masked ParameterStatus for application_name in {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(leaked(&bytes, &[AKID]), None, "{stdout}");

    // The same setting from the startup packet, reported at startup.
    let (_, bytes) = run(
        &format!("{dsn} application_name={AKID}"),
        &["-X", "-tA", "-c", "select 1"],
    );
    assert!(
        bytes.windows(reported.len()).any(|w| w == reported),
        "no masked startup ParameterStatus in {:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(leaked(&bytes, &[AKID]), None);
}
