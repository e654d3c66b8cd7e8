//! Byte-level hostile suite: raw frontend messages from a test client,
//! through the proxy, to a real PostgreSQL. Each case asserts what the
//! client receives, message by message, that no value the plan masks ever
//! appears in any byte the client receives, and that a held statement
//! never runs without approval.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{MASK_MARK, Running, TOKEN};
use portcullis_pg::Event;
use portcullis_pg::{Allowances, BackendAddr, ProxyConfig, SessionConfig};
use portcullis_testkit::{Client, PgCluster};

/// The raw secret values of the table; the test hook upper-cases `secret`
/// columns and replaces every value of a `mask_all` statement.
const SECRETS: [&str; 2] = ["hush-one", "hush-two"];
const KEYS: [&str; 2] = ["sk_live_aaa111", "sk_live_bbb222"];

fn setup() -> (PgCluster, Running) {
    let cluster = PgCluster::start().unwrap();
    cluster
        .execute(
            "CREATE TABLE cust (id int primary key, secret text, api_key text);
             INSERT INTO cust VALUES (1, 'hush-one', 'sk_live_aaa111'), (2, 'hush-two', 'sk_live_bbb222');",
        )
        .unwrap();
    let proxy = Running::start(&cluster);
    (cluster, proxy)
}

fn rows_left(cluster: &PgCluster) -> String {
    cluster
        .execute("SELECT count(*) FROM cust")
        .unwrap()
        .trim()
        .to_owned()
}

// ------------------------------------------------------------------ frames

fn m(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn q(sql: &str) -> Vec<u8> {
    m(b'Q', &cstr(sql))
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(sql));
    b.extend(0i16.to_be_bytes());
    m(b'P', &b)
}

fn bind(portal: &str, stmt: &str, params: &[&str]) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(cstr(stmt));
    b.extend(0i16.to_be_bytes());
    b.extend((params.len() as i16).to_be_bytes());
    for p in params {
        b.extend((p.len() as i32).to_be_bytes());
        b.extend(p.as_bytes());
    }
    b.extend(0i16.to_be_bytes());
    m(b'B', &b)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend(cstr(name));
    m(b'D', &b)
}

fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend(cstr(name));
    m(b'C', &b)
}

fn execute(portal: &str) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(0i32.to_be_bytes());
    m(b'E', &b)
}

fn sync() -> Vec<u8> {
    m(b'S', &[])
}

fn flush() -> Vec<u8> {
    m(b'H', &[])
}

// ------------------------------------------------------------------ client

/// A client speaking raw protocol messages; keeps every byte it received.
struct Raw<S = TcpStream> {
    s: S,
    buf: Vec<u8>,
    all: Vec<u8>,
    closed: bool,
}

#[derive(Debug, Clone)]
struct Msg {
    tag: u8,
    body: Vec<u8>,
}

impl Msg {
    fn sqlstate(&self) -> String {
        self.field(b'C')
    }

    /// A field of an error or notice.
    fn field(&self, want: u8) -> String {
        let mut rest = &self.body[..];
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap();
            if code == want {
                return String::from_utf8_lossy(&tail[..end]).into_owned();
            }
            rest = &tail[end + 1..];
        }
        String::new()
    }

    /// The whole body, decoded lossily (for an error's message).
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The values of a DataRow, as text.
    fn values(&self) -> Vec<Option<String>> {
        let n = i16::from_be_bytes([self.body[0], self.body[1]]) as usize;
        let mut at = 2;
        let mut out = Vec::new();
        for _ in 0..n {
            let len = i32::from_be_bytes(self.body[at..at + 4].try_into().unwrap());
            at += 4;
            if len < 0 {
                out.push(None);
            } else {
                let len = len as usize;
                out.push(Some(
                    String::from_utf8_lossy(&self.body[at..at + len]).into_owned(),
                ));
                at += len;
            }
        }
        out
    }
}

fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

impl Raw<TcpStream> {
    /// Startup with extra parameters and the token; returns the client and
    /// everything up to ReadyForQuery or the connection's end.
    fn login_with(proxy: &Running, params: &[(&str, &str)]) -> (Raw, Vec<Msg>) {
        let s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut raw = Raw {
            s,
            buf: Vec::new(),
            all: Vec::new(),
            closed: false,
        };
        let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
        for (k, v) in [("user", "alice"), ("database", "postgres")]
            .iter()
            .chain(params)
        {
            startup.extend(cstr(k));
            startup.extend(cstr(v));
        }
        startup.push(0);
        let len = (startup.len() as u32).to_be_bytes();
        startup[..4].copy_from_slice(&len);
        raw.send(&startup);
        let auth = raw.until(|m| m.tag == b'R');
        assert_eq!(tags(&auth), "R");
        raw.send(&m(b'p', &cstr(TOKEN)));
        let login = raw.until(|m| m.tag == b'Z' || m.tag == b'E');
        (raw, login)
    }

    fn connect(proxy: &Running) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut raw = Raw {
            s,
            buf: Vec::new(),
            all: Vec::new(),
            closed: false,
        };
        let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
        startup.extend(cstr("user"));
        startup.extend(cstr("alice"));
        startup.extend(cstr("database"));
        startup.extend(cstr("postgres"));
        startup.push(0);
        let len = (startup.len() as u32).to_be_bytes();
        startup[..4].copy_from_slice(&len);
        raw.send(&startup);
        let auth = raw.until(|m| m.tag == b'R');
        assert_eq!(tags(&auth), "R");
        raw.send(&m(b'p', &cstr(TOKEN)));
        let login = raw.until(|m| m.tag == b'Z');
        assert!(tags(&login).starts_with('R'), "{}", tags(&login));
        raw
    }
}

impl<S: Read + Write> Raw<S> {
    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Reads one message, or `None` when nothing arrives in 200 ms.
    fn next(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let frame: Vec<u8> = self.buf.drain(..=len).collect();
                    return Some(Msg {
                        tag: frame[0],
                        body: frame[5..].to_vec(),
                    });
                }
            }
            if self.closed {
                return None;
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.all.extend_from_slice(&chunk[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => self.closed = true,
            }
        }
    }

    /// Reads messages until `last` matches one (included); fails after 20 s.
    fn until(&mut self, last: impl Fn(&Msg) -> bool) -> Vec<Msg> {
        let mut out = Vec::new();
        for _ in 0..100 {
            while let Some(msg) = self.next() {
                let done = last(&msg);
                out.push(msg);
                if done {
                    return out;
                }
            }
            if self.closed {
                break;
            }
        }
        panic!("the expected message never came; got {}", tags(&out));
    }

    /// Reads until `n` ReadyForQuery messages arrived.
    fn ready(&mut self, n: usize) -> Vec<Msg> {
        let mut out = Vec::new();
        while out.iter().filter(|m: &&Msg| m.tag == b'Z').count() < n {
            let more = self.until(|m| m.tag == b'Z');
            out.extend(more);
        }
        out
    }

    /// Whatever arrives within about a second.
    fn quiet(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        for _ in 0..5 {
            while let Some(msg) = self.next() {
                out.push(msg);
            }
        }
        out
    }

    /// No raw secret value appears in any byte received so far.
    fn assert_nothing_leaked(&self) {
        let all = String::from_utf8_lossy(&self.all);
        for v in SECRETS {
            assert!(!all.contains(v), "{v} reached the client");
        }
    }

    /// Nor any api_key (for sessions that only ran `mask_all` statements
    /// on api_key).
    fn assert_no_keys(&self) {
        let all = String::from_utf8_lossy(&self.all);
        for v in KEYS {
            assert!(!all.contains(v), "{v} reached the client");
        }
    }
}

fn data_values(msgs: &[Msg]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(Msg::values)
        .collect()
}

// ------------------------------------------------------------ the attacks

/// Attack 1: Bind to a statement that does not exist + Flush; the backend
/// answers an error and ignores everything up to Sync. A simple Query and a
/// Describe sent in that window get no answer; results after the Sync are
/// still attributed to the right query and masked.
#[test]
fn a_desynchronised_pipeline_does_not_switch_masking_off() {
    let (_cluster, proxy) = setup();
    // Waiting for the error before going on, then all in one packet.
    for one_packet in [false, true] {
        let mut c = Raw::connect(&proxy);
        c.send(&[bind("", "nope", &[]), flush()].concat());
        if !one_packet {
            let err = c.until(|m| m.tag == b'E');
            assert_eq!(err.last().unwrap().sqlstate(), "26000");
        }
        c.send(&[q("SELECT 1"), describe(b'S', ""), sync()].concat());
        let got = c.ready(1);
        // The Query and the Describe were discarded, as PostgreSQL does.
        let expected = if one_packet { "EZ" } else { "Z" };
        assert_eq!(tags(&got), expected, "{got:?}");
        c.send(&q(
            "SELECT secret, api_key FROM cust ORDER BY id /* mask_all */",
        ));
        let got = c.ready(1);
        assert_eq!(tags(&got), "TDDCZ");
        for row in data_values(&got) {
            assert_eq!(
                row,
                vec![Some(MASK_MARK.to_owned()), Some(MASK_MARK.to_owned())]
            );
        }
        c.send(&q("SELECT secret FROM cust ORDER BY id"));
        let got = c.ready(1);
        assert_eq!(
            data_values(&got),
            vec![vec![Some("HUSH-ONE".into())], vec![Some("HUSH-TWO".into())]]
        );
        c.assert_nothing_leaked();
        c.assert_no_keys();
    }
}

/// Attack 2: a held statement's name re-Parsed is refused by the backend
/// (42P05) and keeps the OLD statement and its old plan: its execution is
/// still held, and never runs without approval.
#[test]
fn a_refused_reparse_keeps_the_held_statement_held() {
    let (cluster, proxy) = setup();
    for one_packet in [false, true] {
        let mut c = Raw::connect(&proxy);
        let held_before = proxy.hook.held.load(Ordering::SeqCst);
        let steps = [
            [parse("s1", "DELETE FROM cust"), sync()].concat(),
            [parse("s1", "SELECT 1"), sync()].concat(),
            [bind("", "s1", &[]), execute(""), sync()].concat(),
        ];
        let mut got = Vec::new();
        if one_packet {
            c.send(&steps.concat());
            got.extend(c.ready(2));
        } else {
            c.send(&steps[0]);
            got.extend(c.ready(1));
            c.send(&steps[1]);
            got.extend(c.ready(1));
            c.send(&steps[2]);
        }
        // The replies to the two Syncs come first, in order: the hold's
        // notice (about the Execute after them) never overtakes them.
        assert_eq!(tags(&got), "1ZEZ");
        assert_eq!(got[2].sqlstate(), "42P05");
        // The execution is held: a notice, and nothing else.
        let held = c.until(|m| m.tag == b'N');
        assert_eq!(tags(&held), "N");
        assert!(c.quiet().is_empty(), "nothing runs while held");
        assert_eq!(proxy.hook.held.load(Ordering::SeqCst), held_before + 1);
        assert_eq!(
            proxy.hook.executions.lock().unwrap().last().unwrap(),
            "DELETE FROM cust",
            "the hook saw the statement that would run"
        );
        assert_eq!(rows_left(&cluster), "2", "the DELETE did not run");
        drop(c);
    }
}

/// Attack 3: what to mask belongs to the statement. A statement prepared
/// with a masking plan keeps it when executed after other statements.
#[test]
fn masking_is_per_statement_not_per_session() {
    let (_cluster, proxy) = setup();
    let mut c = Raw::connect(&proxy);
    c.send(
        &[
            parse(
                "s1",
                "SELECT lower(api_key) AS k FROM cust ORDER BY id /* mask_all */",
            ),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&c.ready(1)), "1Z");
    c.send(&q("SELECT 1"));
    assert_eq!(tags(&c.ready(1)), "TDCZ");
    c.send(&[parse("s2", "SELECT 2"), sync()].concat());
    assert_eq!(tags(&c.ready(1)), "1Z");
    c.send(
        &[
            bind("p2", "s2", &[]),
            bind("p1", "s1", &[]),
            execute("p2"),
            execute("p1"),
            sync(),
        ]
        .concat(),
    );
    let got = c.ready(1);
    assert_eq!(tags(&got), "22DCDDCZ");
    let rows = data_values(&got);
    assert_eq!(rows[0], vec![Some("2".to_owned())], "s2 is not masked");
    assert_eq!(rows[1], vec![Some(MASK_MARK.to_owned())]);
    assert_eq!(rows[2], vec![Some(MASK_MARK.to_owned())]);
    c.assert_no_keys();
}

/// Attack 4: a client that only re-executes a prepared statement is
/// stopped at its next Execute once its token is revoked.
#[test]
fn revocation_stops_the_next_execute() {
    let (_cluster, proxy) = setup();
    let mut c = Raw::connect(&proxy);
    c.send(&[parse("s1", "SELECT secret FROM cust WHERE id = $1"), sync()].concat());
    assert_eq!(tags(&c.ready(1)), "1Z");
    c.send(&[bind("", "s1", &["1"]), execute(""), sync()].concat());
    let got = c.ready(1);
    assert_eq!(tags(&got), "2DCZ");
    assert_eq!(data_values(&got), vec![vec![Some("HUSH-ONE".into())]]);
    let before = proxy.hook.executions.lock().unwrap().len();
    proxy.hook.revoked.store(true, Ordering::SeqCst);
    c.send(&[bind("", "s1", &["2"]), execute(""), sync()].concat());
    let got = c.until(|m| m.tag == b'E');
    assert_eq!(got.last().unwrap().sqlstate(), "57P01");
    let rest = c.quiet();
    assert!(
        rest.iter().all(|m| m.tag != b'D'),
        "no row after revocation"
    );
    assert!(c.closed, "the session ended");
    assert_eq!(proxy.hook.executions.lock().unwrap().len(), before + 1);
    c.assert_nothing_leaked();
}

// ------------------------------------------------------- protocol shapes

#[test]
fn simple_and_extended_mixed_after_errors() {
    let (_cluster, proxy) = setup();
    let mut c = Raw::connect(&proxy);
    c.send(
        &[
            bind("", "missing", &[]),
            parse("", "SELECT secret FROM cust ORDER BY id /* mask_all */"),
            bind("", "", &[]),
            execute(""),
            q("SELECT secret FROM cust"),
            sync(),
            q("SELECT secret FROM cust ORDER BY id"),
            parse("", "SELECT secret FROM cust WHERE id = 2"),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]
        .concat(),
    );
    let got = c.ready(3);
    assert_eq!(tags(&got), "EZTDDCZ12DCZ");
    assert_eq!(got[0].sqlstate(), "26000");
    assert_eq!(
        data_values(&got),
        vec![
            vec![Some("HUSH-ONE".into())],
            vec![Some("HUSH-TWO".into())],
            vec![Some("HUSH-TWO".into())]
        ]
    );
    // A simple query's error does not make later messages ignored.
    c.send(
        &[
            q("SELECT * FROM no_such_table"),
            parse("", "SELECT secret FROM cust WHERE id = 1"),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]
        .concat(),
    );
    let got = c.ready(2);
    assert_eq!(tags(&got), "EZ12DCZ");
    c.assert_nothing_leaked();
}

#[test]
fn describe_statement_and_portal_before_and_after_bind() {
    let (_cluster, proxy) = setup();
    let mut c = Raw::connect(&proxy);
    c.send(
        &[
            parse("s", "SELECT secret, id FROM cust WHERE id = $1"),
            describe(b'S', "s"),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&c.ready(1)), "1tTZ");
    // The portal does not exist yet.
    c.send(&[describe(b'P', "p"), sync()].concat());
    let got = c.ready(1);
    assert_eq!(tags(&got), "EZ");
    assert_eq!(got[0].sqlstate(), "34000");
    c.send(
        &[
            bind("p", "s", &["2"]),
            describe(b'P', "p"),
            execute("p"),
            sync(),
        ]
        .concat(),
    );
    let got = c.ready(1);
    assert_eq!(tags(&got), "2TDCZ");
    assert_eq!(
        data_values(&got),
        vec![vec![Some("HUSH-TWO".into()), Some("2".into())]]
    );
    // Described once, executed twice in a transaction with a row limit.
    c.send(&q("BEGIN"));
    c.ready(1);
    let mut exec1 = cstr("p");
    exec1.extend(1i32.to_be_bytes());
    c.send(
        &[
            parse("all", "SELECT secret FROM cust ORDER BY id"),
            bind("p", "all", &[]),
            describe(b'P', "p"),
            m(b'E', &exec1),
            m(b'E', &exec1),
            sync(),
        ]
        .concat(),
    );
    let got = c.ready(1);
    assert_eq!(tags(&got), "12TDsDsZ");
    assert_eq!(
        data_values(&got),
        vec![vec![Some("HUSH-ONE".into())], vec![Some("HUSH-TWO".into())]]
    );
    c.send(&q("COMMIT"));
    c.ready(1);
    c.assert_nothing_leaked();
}

#[test]
fn close_forgets_the_statement_and_its_plan() {
    let (_cluster, proxy) = setup();
    let mut c = Raw::connect(&proxy);
    c.send(&[parse("s2", "SELECT secret FROM cust"), sync()].concat());
    assert_eq!(tags(&c.ready(1)), "1Z");
    c.send(&[close(b'S', "s2"), sync()].concat());
    assert_eq!(tags(&c.ready(1)), "3Z");
    c.send(&[bind("", "s2", &[]), execute(""), sync()].concat());
    let got = c.ready(1);
    assert_eq!(tags(&got), "EZ");
    assert_eq!(got[0].sqlstate(), "26000");
    assert_eq!(
        proxy.hook.executions.lock().unwrap().last().unwrap(),
        "EXECUTE s2",
        "an unknown statement is decided as such, never with a stale plan"
    );
}

#[test]
fn the_unnamed_statement_is_replaced_with_its_plan() {
    let (_cluster, proxy) = setup();
    let mut c = Raw::connect(&proxy);
    c.send(
        &[
            parse("", "SELECT api_key FROM cust ORDER BY id /* mask_all */"),
            bind("", "", &[]),
            execute(""),
            parse("", "SELECT secret FROM cust ORDER BY id"),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]
        .concat(),
    );
    let got = c.ready(1);
    assert_eq!(tags(&got), "12DDC12DDCZ");
    let rows = data_values(&got);
    assert_eq!(rows[0], vec![Some(MASK_MARK.to_owned())]);
    assert_eq!(rows[1], vec![Some(MASK_MARK.to_owned())]);
    assert_eq!(rows[2], vec![Some("HUSH-ONE".to_owned())]);
    // A failed unnamed Parse drops the unnamed statement: the next Bind to
    // it fails rather than running the previous one.
    c.send(&[parse("", "SELECT FROM WHERE"), sync()].concat());
    assert_eq!(tags(&c.ready(1)), "EZ");
    c.send(&[bind("", "", &[]), execute(""), sync()].concat());
    let got = c.ready(1);
    assert_eq!(tags(&got), "EZ");
    assert_eq!(got[0].sqlstate(), "26000");
    c.assert_nothing_leaked();
    c.assert_no_keys();
}

#[test]
fn flush_without_sync_answers_what_is_done() {
    let (_cluster, proxy) = setup();
    let mut c = Raw::connect(&proxy);
    c.send(
        &[
            parse("", "SELECT secret FROM cust ORDER BY id"),
            bind("", "", &[]),
            describe(b'P', ""),
            execute(""),
            flush(),
        ]
        .concat(),
    );
    let got = c.until(|m| m.tag == b'C');
    assert_eq!(tags(&got), "12TDDC");
    assert!(c.quiet().is_empty(), "no ReadyForQuery before Sync");
    c.send(&sync());
    assert_eq!(tags(&c.ready(1)), "Z");
    c.assert_nothing_leaked();
}

#[test]
fn a_thousand_messages_in_one_packet() {
    let (_cluster, proxy) = setup();
    let mut c = Raw::connect(&proxy);
    c.send(&[parse("s", "SELECT secret FROM cust WHERE id = $1"), sync()].concat());
    assert_eq!(tags(&c.ready(1)), "1Z");
    let mut packet = Vec::new();
    for i in 0..333 {
        let id = if i % 2 == 0 { "1" } else { "2" };
        packet.extend([bind("", "s", &[id]), execute(""), sync()].concat());
    }
    packet.extend(q("SELECT secret FROM cust ORDER BY id"));
    c.send(&packet);
    let got = c.ready(334);
    let expected = "2DCZ".repeat(333) + "TDDCZ";
    assert_eq!(tags(&got), expected);
    let rows = data_values(&got);
    assert_eq!(rows.len(), 335);
    assert!(
        rows.iter()
            .all(|r| r[0].as_deref().is_some_and(|v| v.starts_with("HUSH-")))
    );
    c.assert_nothing_leaked();
    assert_eq!(proxy.hook.executions.lock().unwrap().len(), 333);
}

#[test]
fn every_execute_is_a_command_with_its_own_id() {
    let (_cluster, proxy) = setup();
    let mut c = Raw::connect(&proxy);
    c.send(&[parse("s", "SELECT secret FROM cust WHERE id = $1"), sync()].concat());
    c.ready(1);
    c.send(
        &[
            bind("", "s", &["1"]),
            execute(""),
            bind("", "s", &["2"]),
            execute(""),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&c.ready(1)), "2DC2DCZ");
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let events = proxy.hook.events();
    let forwarded: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::CommandForwarded { command, .. } => Some(*command),
            _ => None,
        })
        .collect();
    let completed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::CommandCompleted { command, tag, .. } if tag == "SELECT 1" => Some(*command),
            _ => None,
        })
        .collect();
    // The Parse and two Executes, each forwarded under its own id; each
    // Execute's completion carries its id.
    assert_eq!(forwarded.len(), 3, "{events:?}");
    assert_eq!(completed, forwarded[1..].to_vec());
}

// ---------------------------------------------- startup parameters and settings

/// Two string literals with standard_conforming_strings on (what the
/// analysis reads); with it off PostgreSQL reads one literal, then a
/// TRUNCATE. The test hook allows TRUNCATE as a statement of its own, so
/// only the gateway's settings defences stand between this text and the table.
const SMUGGLED: &str = "SELECT '\\', ' ; TRUNCATE cust; --'";

fn tcp_backend(cluster: &PgCluster) -> BackendAddr {
    BackendAddr::Tcp {
        host: cluster.host().to_owned(),
        port: cluster.port(),
    }
}

/// The session ended with a FATAL of this SQLSTATE naming `what`.
fn assert_fatal(raw: &mut Raw, got: &[Msg], code: &str, what: &str) {
    let mut all = got.to_vec();
    all.extend(raw.quiet());
    let fatal = all
        .iter()
        .find(|m| m.tag == b'E' && m.sqlstate() == code)
        .unwrap_or_else(|| panic!("no {code} error in {}", tags(&all)));
    assert!(fatal.text().contains("FATAL"), "{}", fatal.text());
    assert!(fatal.text().contains(what), "{}", fatal.text());
    assert!(raw.closed, "the connection is closed");
}

#[test]
fn startup_parameters_outside_the_allow_list_never_reach_postgresql() {
    let (cluster, proxy) = setup();
    for (k, v) in [
        ("options", "-c standard_conforming_strings=off"),
        ("standard_conforming_strings", "off"),
        ("client_encoding", "SJIS"),
        ("client_encoding", "BIG5"),
        ("search_path", "pg_temp,public"),
        ("role", "pg_read_all_data"),
        ("default_transaction_read_only", "off"),
        ("statement_timeout", "0"),
    ] {
        let (mut raw, login) = Raw::login_with(&proxy, &[(k, v)]);
        assert_fatal(&mut raw, &login, "42501", k);
    }
    // Real psql, with PGOPTIONS and with options in the connection string.
    let dsn = proxy.dsn("postgres");
    let via_env = Client::psql(&dsn)
        .unwrap()
        .env("PGOPTIONS", "-c standard_conforming_strings=off")
        .args(["-tA", "-c", SMUGGLED])
        .run()
        .unwrap();
    let via_dsn = Client::psql(&format!(
        "{dsn} options='-c standard_conforming_strings=off'"
    ))
    .unwrap()
    .args(["-tA", "-c", SMUGGLED])
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
    assert_eq!(rows_left(&cluster), "2");
    // Allowed parameters pass, and the pinned settings hold.
    let (mut raw, login) = Raw::login_with(
        &proxy,
        &[("application_name", "hostile"), ("DateStyle", "German")],
    );
    assert_eq!(login.last().unwrap().tag, b'Z', "{}", tags(&login));
    raw.send(&q(
        "SELECT current_setting('application_name'), current_setting('DateStyle'), \
         current_setting('standard_conforming_strings'), current_setting('client_encoding')",
    ));
    let got = raw.ready(1);
    assert_eq!(
        data_values(&got),
        vec![vec![
            Some("hostile".to_owned()),
            Some("German, DMY".to_owned()),
            Some("on".to_owned()),
            Some("UTF8".to_owned()),
        ]]
    );
    // The smuggled text is what the analysis reads: two literals.
    raw.send(&q(SMUGGLED));
    let got = raw.ready(1);
    assert_eq!(
        data_values(&got),
        vec![vec![
            Some("\\".to_owned()),
            Some(" ; TRUNCATE cust; --".to_owned())
        ]]
    );
    assert_eq!(rows_left(&cluster), "2");
}

#[test]
fn a_connection_may_drop_unknown_startup_parameters_with_a_notice() {
    let cluster = PgCluster::start().unwrap();
    cluster
        .execute("CREATE TABLE cust (id int); INSERT INTO cust VALUES (1), (2);")
        .unwrap();
    let mut allow = Allowances::default();
    allow.drop_unknown_startup_params = true;
    let proxy = Running::start_allowing(
        &cluster,
        tcp_backend(&cluster),
        ProxyConfig::default(),
        allow,
    );
    let (mut raw, login) = Raw::login_with(
        &proxy,
        &[
            ("options", "-c standard_conforming_strings=off"),
            ("client_encoding", "SJIS"),
        ],
    );
    assert_eq!(login.last().unwrap().tag, b'Z', "{}", tags(&login));
    let notices: Vec<String> = login
        .iter()
        .filter(|m| m.tag == b'N')
        .map(Msg::text)
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices.iter().any(|n| n.contains("\"options\"")));
    raw.send(&q(SMUGGLED));
    raw.ready(1);
    raw.send(&q("SELECT current_setting('standard_conforming_strings')"));
    let got = raw.ready(1);
    assert_eq!(data_values(&got), vec![vec![Some("on".to_owned())]]);
    assert_eq!(rows_left(&cluster), "2");
}

#[test]
fn changing_how_postgresql_reads_sql_ends_the_session_before_the_next_statement() {
    let (cluster, proxy) = setup();
    for setter in [
        "SET standard_conforming_strings = off",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        // Dynamic SQL no text check could see.
        "DO $$BEGIN EXECUTE 'SET standard_' || 'conforming_strings = off'; END$$",
        "SET client_encoding = 'SJIS'",
        "SET NAMES 'GBK'",
    ] {
        // Pipelined: both Query messages in one packet.
        let mut raw = Raw::connect(&proxy);
        raw.send(&[q(setter), q(SMUGGLED)].concat());
        let got = raw.quiet();
        let what = if setter.contains("conforming") {
            "standard_conforming_strings"
        } else {
            "client_encoding"
        };
        assert_fatal(&mut raw, &got, "42501", what);
        assert_eq!(rows_left(&cluster), "2", "{setter}");
    }
    // The setter and the smuggled text in one Query: PostgreSQL parses the
    // whole string before running any of it, as the analysis does.
    let mut raw = Raw::connect(&proxy);
    raw.send(&q(&format!(
        "SELECT set_config('standard_conforming_strings', 'off', false); {SMUGGLED}"
    )));
    let got = raw.quiet();
    assert_fatal(&mut raw, &got, "42501", "standard_conforming_strings");
    assert_eq!(rows_left(&cluster), "2");
    // RESET ALL goes back to the pinned values, which are fine.
    let mut raw = Raw::connect(&proxy);
    raw.send(&q("RESET ALL"));
    raw.ready(1);
    raw.send(&q("SHOW standard_conforming_strings"));
    let got = raw.ready(1);
    assert_eq!(data_values(&got), vec![vec![Some("on".to_owned())]]);
}

#[test]
fn smuggled_text_after_an_execute_in_an_open_pipeline_is_refused() {
    let (cluster, proxy) = setup();
    let mut raw = Raw::connect(&proxy);
    raw.send(
        &[
            parse("", "SET standard_conforming_strings = off"),
            bind("", "", &[]),
            execute(""),
            parse("", SMUGGLED),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]
        .concat(),
    );
    let got = raw.quiet();
    assert!(
        got.iter().any(|m| m.tag == b'E' && m.sqlstate() == "0A000"),
        "{}",
        tags(&got)
    );
    assert_eq!(rows_left(&cluster), "2");
    // The pipeline's transaction failed, so its SET did not stick, and the
    // session goes on with the pinned setting.
    if !raw.closed {
        raw.send(&q("SHOW standard_conforming_strings"));
        let got = raw.ready(1);
        assert_eq!(data_values(&got), vec![vec![Some("on".to_owned())]]);
    }
}

// ------------------------------------------- text not in the client encoding

impl Raw<UnixStream> {
    /// A session straight to PostgreSQL on its socket (local trust), as the
    /// cluster's superuser: what PostgreSQL itself answers.
    fn direct(cluster: &PgCluster) -> Raw<UnixStream> {
        let path = cluster
            .socket_dir()
            .join(format!(".s.PGSQL.{}", cluster.port()));
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut raw = Raw {
            s,
            buf: Vec::new(),
            all: Vec::new(),
            closed: false,
        };
        let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
        for (k, v) in [
            ("user", cluster.superuser()),
            ("database", "postgres"),
            ("client_encoding", "UTF8"),
        ] {
            startup.extend(cstr(k));
            startup.extend(cstr(v));
        }
        startup.push(0);
        let len = (startup.len() as u32).to_be_bytes();
        startup[..4].copy_from_slice(&len);
        raw.send(&startup);
        let login = raw.until(|m| m.tag == b'Z');
        assert!(!tags(&login).contains('E'), "{}", tags(&login));
        raw
    }
}

/// Messages as both sides can be compared: the tag, an error's SQLSTATE
/// (and for 22021 its message), ReadyForQuery's status.
fn shape(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m.tag {
            b'E' if m.sqlstate() == "22021" => format!("E22021 {}", m.field(b'M')),
            b'E' => format!("E{}", m.sqlstate()),
            b'Z' => format!("Z{}", m.body[0] as char),
            t => (t as char).to_string(),
        })
        .collect()
}

/// Statement texts and names that are not UTF-8, simple and extended, in
/// and out of a transaction block, each exchange followed by a normal
/// statement; with the number of ReadyForQuery each one gets.
fn invalid_text_exchanges() -> Vec<(Vec<u8>, usize)> {
    let bad_parse = |name: &[u8], sql: &[u8]| m(b'P', &[name, b"\0", sql, b"\0\0\0"].concat());
    vec![
        (m(b'Q', b"SELECT '\xff' AS x\0"), 1),
        (q("SELECT 1"), 1),
        (m(b'Q', b"SELECT 'caf\xc3' AS x\0"), 1),
        (m(b'Q', b"SELECT 'a\xe2\x28\xa1b', '\xed\xa0\x80'\0"), 1),
        (q("BEGIN"), 1),
        (m(b'Q', b"SELECT '\xc0\xaf'\0"), 1),
        (q("SELECT 1"), 1),
        (q("ROLLBACK"), 1),
        (
            [
                parse("", "SELECT 2"),
                bind("", "", &[]),
                execute(""),
                sync(),
            ]
            .concat(),
            1,
        ),
        (
            [
                bad_parse(b"", b"SELECT '\xff'"),
                bind("", "", &[]),
                execute(""),
                q("SELECT 3"),
                sync(),
            ]
            .concat(),
            1,
        ),
        // The unnamed statement PostgreSQL had before the refused Parse
        // (index 10, see below).
        ([bind("", "", &[]), execute(""), sync()].concat(), 1),
        (
            [
                bad_parse(b"s\xff", b"SELECT 4"),
                describe(b'S', "s\u{ff}"),
                sync(),
            ]
            .concat(),
            1,
        ),
        (q("BEGIN"), 1),
        (
            [bad_parse(b"t", b"SELECT '\xf8\x88\x80\x80\x80'"), sync()].concat(),
            1,
        ),
        (q("SELECT 5"), 1),
        (q("ROLLBACK"), 1),
        (
            [
                parse("u", "SELECT 6"),
                bind("", "u", &[]),
                execute(""),
                sync(),
            ]
            .concat(),
            1,
        ),
        // Names that are not UTF-8 in Bind, Describe, Close and Execute:
        // PostgreSQL reads each name in the client encoding before acting.
        (
            [
                parse("v", "SELECT 7"),
                bad_bind(b"p\xff", b"v"),
                execute(""),
                sync(),
            ]
            .concat(),
            1,
        ),
        ([bad_bind(b"", b"v\xc3"), sync()].concat(), 1),
        ([m(b'D', b"Sv\xff\0"), sync()].concat(), 1),
        (q("BEGIN"), 1),
        ([m(b'C', b"P\xe2\x28\0"), sync()].concat(), 1),
        (q("SELECT 8"), 1),
        (q("ROLLBACK"), 1),
        ([m(b'E', b"\xc0\0\0\0\0\0"), sync()].concat(), 1),
        ([bind("", "v", &[]), execute(""), sync()].concat(), 1),
    ]
}

/// A Bind with no formats, parameters or result formats, its names as bytes.
fn bad_bind(portal: &[u8], statement: &[u8]) -> Vec<u8> {
    m(
        b'B',
        &[portal, b"\0", statement, b"\0\0\0\0\0\0\0"].concat(),
    )
}

/// Text that is not valid UTF-8 gets what PostgreSQL answers (22021, and
/// the session goes on, the extended protocol ignoring messages up to
/// Sync), without the gateway forwarding it; other sessions' data intact.
#[test]
fn text_not_in_the_client_encoding_gets_what_postgresql_answers() {
    let (cluster, proxy) = setup();
    let mut direct = Raw::direct(&cluster);
    let mut want = Vec::new();
    for (bytes, n) in invalid_text_exchanges() {
        direct.send(&bytes);
        want.push(shape(&direct.ready(n)));
    }
    assert_eq!(
        want[0],
        [
            "E22021 invalid byte sequence for encoding \"UTF8\": 0xff",
            "ZI"
        ]
    );
    let mut raw = Raw::connect(&proxy);
    let mut got = Vec::new();
    for (bytes, n) in invalid_text_exchanges() {
        raw.send(&bytes);
        got.push(shape(&raw.ready(n)));
    }
    // PostgreSQL fails the Parse while reading it and keeps its unnamed
    // statement. The gateway, as after any message it refuses in a
    // pipeline, makes the pipeline's transaction fail at Sync with a
    // statement of its own in the unnamed slot, so the unnamed statement
    // is gone (fail closed: it runs the gateway's failing statement).
    assert_eq!(want[10], ["2", "D", "C", "ZI"]);
    assert_eq!(got[10], ["2", "E42501", "ZI"]);
    want.remove(10);
    got.remove(10);
    assert_eq!(got, want);
    assert!(!raw.closed);
    let events = proxy.hook.events();
    let denied = events
        .iter()
        .filter(|e| {
            matches!(e, Event::CommandDenied { reason, .. }
                if reason.starts_with("invalid byte sequence for encoding \"UTF8\""))
        })
        .count();
    assert_eq!(denied, 12);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::CommandReceived { sql, .. }
            if sql.contains('\u{fffd}'))),
        "lossy text reached an event"
    );
    assert_eq!(rows_left(&cluster), "2");
}

// ------------------------------------------------------ backend authentication

#[test]
fn a_backend_asking_for_md5_cleartext_or_nothing_is_refused_unless_allowed() {
    let cluster = PgCluster::start().unwrap();
    cluster
        .execute(&format!(
            "SET password_encryption = 'md5'; ALTER ROLE {} PASSWORD '{}';",
            cluster.superuser(),
            cluster.password()
        ))
        .unwrap();
    for (method, what) in [
        ("md5", "MD5"),
        ("password", "cleartext"),
        ("trust", "trust"),
    ] {
        cluster.set_host_auth(method).unwrap();
        let strict = Running::start(&cluster);
        let out = Client::psql(&strict.dsn("postgres"))
            .unwrap()
            .args(["-tA", "-c", "select 1"])
            .run()
            .unwrap();
        assert!(!out.success(), "{method}: {out:?}");
        assert!(
            out.stderr.contains("could not log in to the backend"),
            "{}",
            out.stderr
        );
        let ended = strict.hook.events().into_iter().find_map(|e| match e {
            Event::SessionEnded { error, .. } => error,
            _ => None,
        });
        assert!(ended.as_deref().unwrap_or("").contains(what), "{ended:?}");

        let mut allow = Allowances::default();
        match method {
            "md5" => allow.backend_md5 = true,
            "password" => allow.backend_cleartext = true,
            _ => allow.backend_trust = true,
        }
        let lenient = Running::start_allowing(
            &cluster,
            tcp_backend(&cluster),
            ProxyConfig::default(),
            allow,
        );
        let out = Client::psql(&lenient.dsn("postgres"))
            .unwrap()
            .args(["-tA", "-c", "select 41 + 1"])
            .run()
            .unwrap();
        assert!(out.success(), "{method}: {out:?}");
        assert_eq!(out.stdout.trim(), "42");
    }
}

// ------------------------------------------------------------ resource bounds

#[test]
fn a_gigabyte_declared_length_is_refused_and_other_sessions_go_on() {
    let (_cluster, proxy) = setup();
    let mut other = Raw::connect(&proxy);
    let mut raw = Raw::connect(&proxy);
    let mut frame = vec![b'Q'];
    frame.extend((1u32 << 30).to_be_bytes());
    frame.extend(b"SELECT ");
    raw.send(&frame);
    let got = raw.quiet();
    assert_fatal(&mut raw, &got, "08P01", "exceeds the limit");
    other.send(&q("SELECT 1"));
    assert_eq!(
        data_values(&other.ready(1)),
        vec![vec![Some("1".to_owned())]]
    );
}

#[test]
fn a_client_sending_one_byte_a_second_is_timed_out_during_startup() {
    let cluster = PgCluster::start().unwrap();
    let config = ProxyConfig {
        session: SessionConfig {
            handshake_timeout: Duration::from_secs(2),
            ..SessionConfig::default()
        },
        ..ProxyConfig::default()
    };
    let proxy = Running::start_with(&cluster, config);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    startup.extend(cstr("user"));
    startup.extend(cstr("alice"));
    startup.push(0);
    let len = (startup.len() as u32).to_be_bytes();
    startup[..4].copy_from_slice(&len);
    let mut got = Vec::new();
    let mut sent = 0;
    for b in &startup {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(950));
        let mut chunk = [0u8; 512];
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        if !got.is_empty() {
            break;
        }
    }
    assert!(sent < startup.len(), "the startup was never cut short");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("08006") && text.contains("handshake"),
        "{text}"
    );
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_its_backend_freed() {
    let cluster = PgCluster::start().unwrap();
    let config = ProxyConfig {
        write_timeout: Duration::from_secs(1),
        ..ProxyConfig::default()
    };
    let proxy = Running::start_with(&cluster, config);
    let raw = Raw::connect(&proxy);
    raw.s.set_nonblocking(false).unwrap();
    let mut s = raw.s.try_clone().unwrap();
    s.write_all(&q(
        "SELECT repeat('x', 1000) /* stalled */ FROM generate_series(1, 10000000)",
    ))
    .unwrap();
    // Never read. The session ends at the write timeout.
    let mut ended = false;
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
        if proxy
            .hook
            .events()
            .iter()
            .any(|e| matches!(e, Event::SessionEnded { error: Some(_), .. }))
        {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stalled session never ended");
    let mut freed = false;
    for _ in 0..100 {
        let n = cluster
            .execute(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE query LIKE '%stalled%' AND pid <> pg_backend_pid()",
            )
            .unwrap();
        if n.trim() == "0" {
            freed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(freed, "the backend connection was not freed");
    drop(raw);
}

#[test]
fn sessions_over_the_limit_get_53300_and_a_freed_slot_is_reused() {
    let cluster = PgCluster::start().unwrap();
    let config = ProxyConfig {
        max_sessions: Some(2),
        ..ProxyConfig::default()
    };
    let proxy = Running::start_with(&cluster, config);
    let a = Raw::connect(&proxy);
    let _b = Raw::connect(&proxy);
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("53300")
            && text.contains("too many clients")
            && text.contains("limit of 2 sessions in total"),
        "{text}"
    );
    drop(a);
    let mut ok = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut probe = [0u8; 1];
        // A refused connection is answered at once; an accepted one waits
        // for a StartupMessage.
        if (&s).read(&mut probe).is_err() {
            ok = true;
            break;
        }
    }
    assert!(ok, "the freed slot was never reused");
}

#[test]
fn a_backend_killed_mid_result_gives_a_clean_error_and_spares_other_sessions() {
    let (cluster, proxy) = setup();
    let mut other = Raw::connect(&proxy);
    let mut victim = Raw::connect(&proxy);
    victim.send(&q(
        "SELECT g, pg_sleep(0.05) /* victim */ FROM generate_series(1, 400) g",
    ));
    std::thread::sleep(Duration::from_millis(500));
    cluster
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE '%victim%' AND pid <> pg_backend_pid()",
        )
        .unwrap();
    let got = victim.quiet();
    let mut all = got.clone();
    all.extend(victim.quiet());
    assert!(
        all.iter().any(|m| m.tag == b'E'),
        "the client is told: {}",
        tags(&all)
    );
    assert!(victim.closed);
    other.send(&q("SELECT count(*) FROM cust"));
    assert_eq!(
        data_values(&other.ready(1)),
        vec![vec![Some("2".to_owned())]]
    );
}

#[test]
fn postgresql_unreachable_at_connect_gives_08001_and_recovers() {
    let (mut cluster, proxy) = setup();
    cluster.stop().unwrap();
    let (mut raw, login) = Raw::login_with(&proxy, &[]);
    assert_fatal(
        &mut raw,
        &login,
        "08001",
        "could not connect to the backend",
    );
    cluster.start_again().unwrap();
    let mut raw = Raw::connect(&proxy);
    raw.send(&q("SELECT count(*) FROM cust"));
    assert_eq!(data_values(&raw.ready(1)), vec![vec![Some("2".to_owned())]]);
}
