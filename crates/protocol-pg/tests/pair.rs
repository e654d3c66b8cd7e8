//! In-memory pair tests: a scripted client and a scripted backend around one
//! `Session`, with virtual time. No sockets; every path of the state machine.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_pg::{
    Authenticated, BackendAddr, BackendTarget, BackendTls, CancelKey, Column, Context, Decision,
    Event, FieldValue, Held, HoldId, HookRequest, Output, ParseVerdict, RefusedBy, Rejection,
    RowLimit, Session, SessionConfig, SessionId, TextKind, Transform, Verdict,
};
use proptest::prelude::*;

const BACKEND_PASSWORD: &str = "backend-secret-pw";

/// An SSLRequest, as the session sends it to a backend that must use TLS.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 210, 22, 47];

struct PairHook;

thread_local! {
    /// The row limit the pair's hook sets (each test runs on its own
    /// thread, and the sans-IO session on the test's): `(rows, read_only)`.
    static ROW_LIMIT: std::cell::Cell<Option<(u64, bool)>> = const { std::cell::Cell::new(None) };
}

impl Transform for PairHook {
    type Principal = String;
    type Plan = ();
    type ColumnPlan = ();

    fn on_row_description(
        &self,
        _: &Context<'_, String>,
        _: &(),
        columns: &[Column],
    ) -> Vec<(usize, ())> {
        columns
            .iter()
            .filter(|c| c.name == "secret")
            .map(|c| (c.index, ()))
            .collect()
    }

    fn transform_field(
        &self,
        _: &Context<'_, String>,
        _: &(),
        _: &Column,
        _: &(),
        value: &[u8],
    ) -> FieldValue {
        if value == b"nullme" {
            FieldValue::Null
        } else {
            FieldValue::Replace(value.to_ascii_uppercase())
        }
    }

    fn transform_copy(&self, _: &Context<'_, String>, _: &(), data: &[u8]) -> Option<Vec<u8>> {
        Some(data.to_ascii_uppercase())
    }

    fn row_limit(&self, _: &Context<'_, String>, _: &()) -> Option<RowLimit> {
        ROW_LIMIT.get().map(|(n, ro)| {
            RowLimit::new(n, format!("row budget exceeded: add LIMIT {n}")).read_only(ro)
        })
    }

    fn transform_text(
        &self,
        _: &Context<'_, String>,
        _: Option<&()>,
        _: TextKind,
        text: &str,
    ) -> Option<String> {
        text.contains("hush").then(|| text.replace("hush", "****"))
    }
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

fn startup_with(version: i32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend(cstr(k));
        body.extend(cstr(v));
    }
    body.push(0);
    let mut out = (body.len() as i32 + 4).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    startup_with(196_608, params)
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

fn bind(portal: &str, stmt: &str, params: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(cstr(stmt));
    b.extend(0i16.to_be_bytes());
    b.extend((params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            None => b.extend((-1i32).to_be_bytes()),
            Some(v) => {
                b.extend((v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
        }
    }
    b.extend(0i16.to_be_bytes());
    m(b'B', &b)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    b.extend(cstr(name));
    m(b'D', &b)
}

fn execute(portal: &str) -> Vec<u8> {
    let mut b = cstr(portal);
    b.extend(0i32.to_be_bytes());
    m(b'E', &b)
}

fn sync() -> Vec<u8> {
    m(b'S', &[])
}

fn auth(code: i32, extra: &[u8]) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(extra);
    m(b'R', &b)
}

fn row_desc(cols: &[&str]) -> Vec<u8> {
    let mut b = (cols.len() as i16).to_be_bytes().to_vec();
    for c in cols {
        b.extend(cstr(c));
        b.extend(16384i32.to_be_bytes());
        b.extend(1i16.to_be_bytes());
        b.extend(25u32.to_be_bytes());
        b.extend((-1i16).to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.extend(0i16.to_be_bytes());
    }
    m(b'T', &b)
}

fn data_row(vals: &[Option<&str>]) -> Vec<u8> {
    let mut b = (vals.len() as i16).to_be_bytes().to_vec();
    for v in vals {
        match v {
            None => b.extend((-1i32).to_be_bytes()),
            Some(v) => {
                b.extend((v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
        }
    }
    m(b'D', &b)
}

fn complete(tag: &str) -> Vec<u8> {
    m(b'C', &cstr(tag))
}

fn ready(status: u8) -> Vec<u8> {
    m(b'Z', &[status])
}

fn be_error(code: &str, msg: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (f, v) in [(b'S', "ERROR"), (b'C', code), (b'M', msg)] {
        b.push(f);
        b.extend(cstr(v));
    }
    b.push(0);
    m(b'E', &b)
}

/// Splits a byte stream into (tag, body) frames.
fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes.len() - at == 1 {
            out.push((bytes[at], Vec::new()));
            break;
        }
        let len = i32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        out.push((bytes[at], bytes[at + 5..at + 1 + len].to_vec()));
        at += 1 + len;
    }
    out
}

fn tags(bytes: &[u8]) -> String {
    frames(bytes).iter().map(|(t, _)| *t as char).collect()
}

fn sqlstate(body: &[u8]) -> String {
    let mut at = 0;
    while at < body.len() && body[at] != 0 {
        let end = at + 1 + body[at + 1..].iter().position(|&b| b == 0).unwrap();
        if body[at] == b'C' {
            return String::from_utf8_lossy(&body[at + 1..end]).into_owned();
        }
        at = end + 1;
    }
    String::new()
}

fn codes(bytes: &[u8]) -> Vec<String> {
    frames(bytes)
        .iter()
        .filter(|(t, _)| *t == b'E')
        .map(|(_, b)| sqlstate(b))
        .collect()
}

// -------------------------------------------------------------------- pair

struct Pair {
    s: Session<PairHook>,
    now: Instant,
    outputs: Vec<Output<()>>,
}

const GATEWAY_KEY: CancelKey = CancelKey {
    pid: 4242,
    secret: 777,
};

impl Pair {
    fn new(config: SessionConfig) -> Pair {
        let now = Instant::now();
        Pair {
            s: Session::new(SessionId(7), config, Arc::new(PairHook), GATEWAY_KEY, now),
            now,
            outputs: Vec::new(),
        }
    }

    fn loopback() -> Pair {
        Pair::new(SessionConfig {
            loopback: true,
            ..SessionConfig::default()
        })
    }

    fn client(&mut self, bytes: &[u8]) {
        self.s.handle_client_data(self.now, bytes);
        self.collect();
    }

    fn backend(&mut self, bytes: &[u8]) {
        self.s.handle_backend_data(self.now, bytes);
        self.collect();
    }

    fn collect(&mut self) {
        while let Some(o) = self.s.poll() {
            self.outputs.push(o);
        }
    }

    fn client_out(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some(b) = self.s.poll_client_transmit() {
            v.extend_from_slice(&b);
        }
        v
    }

    fn backend_out(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some(b) = self.s.poll_backend_transmit() {
            v.extend_from_slice(&b);
        }
        v
    }

    fn take_request(&mut self) -> HookRequest<()> {
        self.collect();
        let at = self
            .outputs
            .iter()
            .position(|o| matches!(o, Output::Request(_)))
            .expect("a hook request");
        match self.outputs.remove(at) {
            Output::Request(r) => r,
            _ => unreachable!(),
        }
    }

    fn events(&mut self) -> Vec<Event> {
        self.collect();
        self.outputs
            .iter()
            .filter_map(|o| {
                if let Output::Event(e, _) = o {
                    Some(e.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    /// The scripted backends ask for a cleartext password, an MD5 hash or
    /// nothing: this target allows all three (the strict default is tested
    /// with [`Pair::target_allowing`]).
    fn target() -> BackendTarget {
        let mut allow = portcullis_pg::Allowances::default();
        allow.backend_cleartext = true;
        allow.backend_md5 = true;
        allow.backend_trust = true;
        Pair::target_allowing(allow)
    }

    fn target_allowing(allow: portcullis_pg::Allowances) -> BackendTarget {
        BackendTarget {
            addr: BackendAddr::Tcp {
                host: "db".into(),
                port: 5432,
            },
            database: "appdb".into(),
            user: "app".into(),
            password: BACKEND_PASSWORD.into(),
            tls: BackendTls::Disable,
            allow,
        }
    }

    /// Startup and client authentication up to the backend connection.
    fn authenticate(&mut self) {
        self.authenticate_to(Pair::target());
    }

    fn authenticate_to(&mut self, target: BackendTarget) {
        self.client(&startup(&[
            ("user", "alice"),
            ("database", "x"),
            ("application_name", "pair"),
        ]));
        assert_eq!(
            frames(&self.client_out()),
            vec![(b'R', 3i32.to_be_bytes().to_vec())]
        );
        self.client(&m(b'p', &cstr("token")));
        match self.take_request() {
            r @ HookRequest::Authenticate { .. } => {
                assert!(
                    !format!("{r:?}").contains("token"),
                    "Debug redacts the credential"
                );
                let HookRequest::Authenticate {
                    credential,
                    startup,
                } = r
                else {
                    unreachable!()
                };
                assert_eq!(credential, "token");
                assert_eq!(startup.user(), "alice");
            }
            other => panic!("{other:?}"),
        }
        self.s.handle_authenticated(
            self.now,
            Ok(Authenticated {
                principal: "alice".into(),
                backend: target,
            }),
        );
        self.collect();
        assert!(
            self.outputs
                .iter()
                .any(|o| matches!(o, Output::ConnectBackend(t) if t.user == "app"))
        );
        self.s.handle_backend_connected(self.now);
    }

    /// A whole login with a cleartext-password backend, ending ready.
    fn ready() -> Pair {
        let mut p = Pair::loopback();
        p.authenticate();
        let startup_msg = p.backend_out();
        let body = String::from_utf8_lossy(&startup_msg);
        assert!(
            body.contains("user\0app\0")
                && body.contains("database\0appdb\0")
                && body.contains("application_name\0pair")
        );
        p.backend(&auth(3, &[]));
        assert_eq!(p.backend_out(), m(b'p', &cstr(BACKEND_PASSWORD)));
        let mut kd = 99i32.to_be_bytes().to_vec();
        kd.extend(12345i32.to_be_bytes());
        let mut script = auth(0, &[]);
        script.extend(m(b'S', b"server_version\x0015.0\x00"));
        script.extend(m(b'K', &kd));
        script.extend(ready(b'I'));
        p.backend(&script);
        let out = p.client_out();
        assert_eq!(tags(&out), "RSKZ");
        let f = frames(&out);
        assert_eq!(
            f[2].1,
            [99i32.to_be_bytes(), 777i32.to_be_bytes()].concat(),
            "the backend's process id with the gateway's secret"
        );
        assert_eq!(
            p.s.client_key(),
            Some(CancelKey {
                pid: 99,
                secret: 777
            })
        );
        assert_eq!(
            p.s.backend_key(),
            Some(CancelKey {
                pid: 99,
                secret: 12345
            })
        );
        assert!(
            p.events()
                .iter()
                .any(|e| matches!(e, Event::SessionStarted { .. }))
        );
        p
    }

    fn answer_query(&mut self, verdict: Verdict<(), Held>) {
        self.s.handle_verdict(self.now, verdict);
        self.collect();
    }
}

// ----------------------------------------------------------------- startup

#[test]
fn ssl_and_gssenc_requests_are_declined_without_a_certificate() {
    let mut p = Pair::loopback();
    p.client(&[0, 0, 0, 8, 4, 210, 22, 47]);
    assert_eq!(p.client_out(), b"N");
    p.client(&[0, 0, 0, 8, 4, 210, 22, 48]);
    assert_eq!(p.client_out(), b"N");
    p.client(&startup(&[("user", "alice")]));
    assert_eq!(tags(&p.client_out()), "R");
}

#[test]
fn ssl_request_with_a_certificate_starts_tls() {
    let mut p = Pair::new(SessionConfig {
        tls_available: true,
        require_tls: true,
        ..SessionConfig::default()
    });
    p.client(&[0, 0, 0, 8, 4, 210, 22, 47]);
    assert_eq!(p.client_out(), b"S");
    assert!(
        p.outputs
            .iter()
            .any(|o| matches!(o, Output::StartClientTls))
    );
    p.s.handle_client_tls(p.now);
    // Over TLS a token may be sent even on a non-loopback listener.
    p.client(&startup(&[("user", "alice")]));
    assert_eq!(tags(&p.client_out()), "R");
}

#[test]
fn plaintext_is_refused_when_tls_is_required_or_not_on_loopback() {
    for cfg in [
        SessionConfig {
            tls_available: true,
            require_tls: true,
            ..SessionConfig::default()
        },
        SessionConfig::default(),
    ] {
        let mut p = Pair::new(cfg);
        p.client(&startup(&[("user", "alice")]));
        let out = p.client_out();
        assert_eq!(codes(&out), ["28000"]);
        assert!(String::from_utf8_lossy(&out).contains("TLS"));
        assert!(p.s.is_closed());
    }
}

#[test]
fn replication_missing_user_and_unknown_protocol_are_refused() {
    let mut p = Pair::loopback();
    p.client(&startup(&[("user", "alice"), ("replication", "database")]));
    assert_eq!(codes(&p.client_out()), ["0A000"]);
    let mut p = Pair::loopback();
    p.client(&startup(&[("database", "x")]));
    assert_eq!(codes(&p.client_out()), ["28000"]);
    let mut p = Pair::loopback();
    p.client(&startup_with(2 << 16, &[("user", "alice")]));
    assert_eq!(codes(&p.client_out()), ["0A000"]);
}

#[test]
fn newer_minor_protocol_is_negotiated_down() {
    let mut p = Pair::loopback();
    p.client(&startup_with(
        (3 << 16) | 2,
        &[("user", "alice"), ("_pq_.x", "1")],
    ));
    let out = p.client_out();
    assert_eq!(tags(&out), "vR");
    let f = frames(&out);
    assert_eq!(&f[0].1[..8], &[0, 0, 0, 0, 0, 0, 0, 1]);
}

#[test]
fn cancel_request_is_reported_with_its_key() {
    let mut p = Pair::loopback();
    let mut pkt = 16i32.to_be_bytes().to_vec();
    pkt.extend(80_877_102i32.to_be_bytes());
    pkt.extend(4242i32.to_be_bytes());
    pkt.extend(777i32.to_be_bytes());
    p.client(&pkt);
    assert!(
        p.outputs
            .iter()
            .any(|o| matches!(o, Output::Cancel(k) if *k == GATEWAY_KEY))
    );
    assert!(p.s.is_closed());
    assert_eq!(GATEWAY_KEY.to_request().to_vec(), pkt);
}

// -------------------------------------------------------------------- auth

#[test]
fn rejections_use_the_right_sqlstates() {
    for (rejection, code) in [
        (Rejection::InvalidCredential("expired".into()), "28P01"),
        (Rejection::NotAuthorized("not in group".into()), "28000"),
    ] {
        let mut p = Pair::loopback();
        p.client(&startup(&[("user", "alice")]));
        p.client_out();
        p.client(&m(b'p', &cstr("bad")));
        p.take_request();
        p.s.handle_authenticated(p.now, Err(rejection));
        let out = p.client_out();
        assert_eq!(codes(&out), [code]);
        if code == "28P01" {
            assert!(
                String::from_utf8_lossy(&out)
                    .contains("password authentication failed for user \"alice\"")
            );
        }
        assert!(p.s.is_closed());
    }
}

#[test]
fn md5_backend_gets_the_hashed_injected_password() {
    let mut p = Pair::loopback();
    p.authenticate();
    p.backend_out();
    p.backend(&auth(5, &[1, 2, 3, 4]));
    let expected = postgres_protocol::authentication::md5_hash(
        b"app",
        BACKEND_PASSWORD.as_bytes(),
        [1, 2, 3, 4],
    );
    assert_eq!(p.backend_out(), m(b'p', &cstr(&expected)));
    p.backend(&[auth(0, &[]), ready(b'I')].concat());
    assert_eq!(tags(&p.client_out()), "RZ");
}

#[test]
fn scram_failures_close_cleanly_without_panicking() {
    // A SASLContinue that does not parse: `update` fails, `message` must not be called.
    let mut p = Pair::loopback();
    p.authenticate();
    p.backend_out();
    p.backend(&auth(10, b"SCRAM-SHA-256\0\0"));
    let first = p.backend_out();
    assert!(String::from_utf8_lossy(&first).contains("SCRAM-SHA-256\0"));
    assert!(String::from_utf8_lossy(&first).contains("n,,n=,r="));
    p.backend(&auth(11, b"garbage"));
    assert_eq!(codes(&p.client_out()), ["08001"]);
    assert!(p.s.is_closed());
    // A final message before the challenge.
    let mut p = Pair::loopback();
    p.authenticate();
    p.backend(&auth(10, b"SCRAM-SHA-256\0\0"));
    p.backend(&auth(12, b"v=AAAA"));
    assert_eq!(codes(&p.client_out()), ["08001"]);
    // A mechanism we do not speak.
    let mut p = Pair::loopback();
    p.authenticate();
    p.backend(&auth(10, b"SCRAM-SHA-256-PLUS\0\0"));
    assert_eq!(codes(&p.client_out()), ["08001"]);
    // A backend error during authentication is not passed through.
    let mut p = Pair::loopback();
    p.authenticate();
    p.backend(&be_error(
        "28P01",
        "password authentication failed for user \"app\"",
    ));
    let out = p.client_out();
    assert_eq!(codes(&out), ["08001"]);
    assert!(!String::from_utf8_lossy(&out).contains("\"app\""));
}

#[test]
fn backend_password_never_reaches_the_client() {
    let mut p = Pair::ready();
    p.client(&q("select 1"));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    p.backend(
        &[
            row_desc(&["x"]),
            data_row(&[Some("1")]),
            complete("SELECT 1"),
            ready(b'I'),
        ]
        .concat(),
    );
    let out = p.client_out();
    assert!(!String::from_utf8_lossy(&out).contains(BACKEND_PASSWORD));
}

// ------------------------------------------------------------ simple query

#[test]
fn forwarded_query_is_byte_identical_and_rows_are_transformed() {
    let mut p = Pair::ready();
    let frame = q("select name, secret from t");
    p.client(&frame);
    assert!(
        p.backend_out().is_empty(),
        "nothing goes out before the verdict"
    );
    match p.take_request() {
        HookRequest::Query { sql, .. } => assert_eq!(sql, "select name, secret from t"),
        other => panic!("{other:?}"),
    }
    p.answer_query(Verdict::Forward(()));
    assert_eq!(p.backend_out(), frame);
    let plain = data_row(&[Some("bob"), None]);
    p.backend(
        &[
            row_desc(&["name", "secret"]),
            data_row(&[Some("alice"), Some("hush")]),
            plain.clone(),
            data_row(&[Some("x"), Some("nullme")]),
            complete("SELECT 3"),
            ready(b'I'),
        ]
        .concat(),
    );
    let out = p.client_out();
    let f = frames(&out);
    assert_eq!(tags(&out), "TDDDCZ");
    assert_eq!(m(b'D', &f[1].1), data_row(&[Some("alice"), Some("HUSH")]));
    assert_eq!(m(b'D', &f[2].1), plain);
    assert_eq!(m(b'D', &f[3].1), data_row(&[Some("x"), None]));
    assert!(
        p.events().iter().any(
            |e| matches!(e, Event::CommandCompleted { tag, rows: 3, .. } if tag == "SELECT 3")
        )
    );
}

#[test]
fn denied_query_outside_a_transaction_gets_an_error_and_ready() {
    let mut p = Pair::ready();
    p.client(&q("drop table t"));
    p.take_request();
    p.answer_query(Verdict::Deny("no drops".into()));
    assert!(p.backend_out().is_empty());
    let out = p.client_out();
    assert_eq!(tags(&out), "EZ");
    assert_eq!(codes(&out), ["42501"]);
    assert!(String::from_utf8_lossy(&out).contains("no drops"));
    assert_eq!(frames(&out)[1].1, b"I");
    // The connection stays usable.
    p.client(&q("select 1"));
    assert!(matches!(p.take_request(), HookRequest::Query { .. }));
}

#[test]
fn a_terminated_session_sends_fatal_and_closes_without_forwarding() {
    let mut p = Pair::ready();
    p.client(&q("select secret from t"));
    p.take_request();
    p.answer_query(Verdict::Terminate("token revoked".into()));
    assert!(
        p.backend_out().is_empty(),
        "the command reached the backend"
    );
    let out = p.client_out();
    assert_eq!(tags(&out), "E");
    assert_eq!(codes(&out), ["57P01"]);
    assert!(String::from_utf8_lossy(&out).contains("FATAL"));
    assert!(String::from_utf8_lossy(&out).contains("token revoked"));
    assert!(p.s.is_closed());
    assert!(
        p.events()
            .iter()
            .any(|e| matches!(e, Event::CommandDenied { .. }))
    );
    assert!(p.events().iter().any(|e| matches!(
        e,
        Event::SessionEnded { error: Some(why), .. } if why.contains("token revoked")
    )));
}

#[test]
fn a_parse_can_terminate_the_session_too() {
    let mut p = Pair::ready();
    p.client(&[parse("s1", "select 1"), sync()].concat());
    p.take_request();
    p.s.handle_parse_verdict(p.now, ParseVerdict::Terminate("killed".into()));
    assert!(p.backend_out().is_empty());
    assert_eq!(codes(&p.client_out()), ["57P01"]);
    assert!(p.s.is_closed());
}

#[test]
fn denied_query_inside_a_transaction_fails_the_backend_transaction() {
    let mut p = Pair::ready();
    p.client(&q("begin"));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    p.backend_out();
    p.backend(&[complete("BEGIN"), ready(b'T')].concat());
    p.client_out();
    p.client(&q("drop table t"));
    p.take_request();
    p.answer_query(Verdict::Deny("no drops".into()));
    let sent = p.backend_out();
    assert_eq!(tags(&sent), "Q");
    assert!(String::from_utf8_lossy(&sent).contains("RAISE EXCEPTION"));
    assert_eq!(codes(&p.client_out()), ["42501"]);
    p.backend(
        &[
            be_error("42501", "statement denied by the gateway"),
            ready(b'E'),
        ]
        .concat(),
    );
    let out = p.client_out();
    assert_eq!(
        tags(&out),
        "Z",
        "the backend's own error is not shown twice"
    );
    assert_eq!(frames(&out)[0].1, b"E");
}

#[test]
fn held_query_sends_the_notice_at_once_and_waits() {
    let mut p = Pair::ready();
    let frame = q("delete from t");
    p.client(&frame);
    p.take_request();
    p.answer_query(Verdict::Hold(
        Held {
            id: HoldId(9),
            notice: "held for approval: 9".into(),
        },
        (),
    ));
    assert_eq!(p.s.holding(), Some(HoldId(9)));
    let out = p.client_out();
    assert_eq!(tags(&out), "N");
    assert!(String::from_utf8_lossy(&out).contains("held for approval: 9"));
    assert!(p.backend_out().is_empty());
    // A decision on another hold (an abandoned one, a forged id) is ignored.
    p.s.handle_hold_resolved(p.now, HoldId(8), Decision::Forward);
    assert!(p.backend_out().is_empty());
    assert_eq!(p.s.holding(), Some(HoldId(9)));
    p.s.handle_hold_resolved(p.now, HoldId(9), Decision::Forward);
    assert_eq!(p.backend_out(), frame);
    assert_eq!(p.s.holding(), None);
}

#[test]
fn held_query_cancelled_gets_57014() {
    let mut p = Pair::ready();
    p.client(&q("delete from t"));
    p.take_request();
    p.answer_query(Verdict::Hold(
        Held {
            id: HoldId(1),
            notice: "held".into(),
        },
        (),
    ));
    p.client_out();
    p.s.handle_hold_abandoned(p.now, true);
    let out = p.client_out();
    assert_eq!(codes(&out), ["57014"]);
    assert_eq!(tags(&out), "EZ");
    assert!(
        p.events()
            .iter()
            .any(|e| matches!(e, Event::HoldAbandoned { .. }))
    );
    assert!(p.backend_out().is_empty());
}

#[test]
fn function_call_is_refused() {
    let mut p = Pair::ready();
    p.client(&m(b'F', &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
    let out = p.client_out();
    assert_eq!(codes(&out), ["0A000"]);
    assert_eq!(tags(&out), "EZ");
    assert!(p.backend_out().is_empty());
}

#[test]
fn copy_out_is_transformed_per_message_and_copy_in_passes() {
    let mut p = Pair::ready();
    p.client(&q("copy t to stdout"));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    p.backend_out();
    p.backend(
        &[
            m(b'H', &[0, 0, 1, 0, 0]),
            m(b'd', b"a\tb\n"),
            m(b'd', b"c\td\n"),
            m(b'c', &[]),
            complete("COPY 2"),
            ready(b'I'),
        ]
        .concat(),
    );
    let f = frames(&p.client_out());
    assert_eq!(f[1], (b'd', b"A\tB\n".to_vec()));
    assert_eq!(f[2], (b'd', b"C\tD\n".to_vec()));
    p.client(&q("copy t from stdin"));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    p.backend_out();
    p.backend(&m(b'G', &[0, 0, 1, 0, 0]));
    let data = [m(b'd', b"x\ty\n"), m(b'c', &[])].concat();
    p.client(&data);
    assert_eq!(p.backend_out(), data);
}

#[test]
fn error_notice_and_notification_texts_are_transformed() {
    let mut p = Pair::ready();
    let mut notif = 5i32.to_be_bytes().to_vec();
    notif.extend(cstr("ch"));
    notif.extend(cstr("hush payload"));
    p.backend(&m(b'A', &notif));
    let f = frames(&p.client_out());
    assert!(String::from_utf8_lossy(&f[0].1).contains("**** payload"));
    p.client(&q("select 1"));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    p.backend(&[be_error("23505", "key hush exists"), ready(b'I')].concat());
    let out = p.client_out();
    assert!(String::from_utf8_lossy(&out).contains("key **** exists"));
    assert!(
        p.events()
            .iter()
            .any(|e| matches!(e, Event::Error { code, .. } if code == "23505"))
    );
}

#[test]
fn column_names_and_parameter_status_values_are_transformed() {
    let mut p = Pair::ready();
    // A ParameterStatus after a SET: the value goes through the hook, the
    // name does not.
    p.backend(&m(b'S', b"application_name\x00hush app\x00"));
    assert_eq!(p.client_out(), m(b'S', b"application_name\x00**** app\x00"));
    // One the hook keeps is forwarded byte for byte.
    p.backend(&m(b'S', b"TimeZone\x00UTC\x00"));
    assert_eq!(p.client_out(), m(b'S', b"TimeZone\x00UTC\x00"));
    // A RowDescription: the renamed field keeps every other byte, and the
    // column plans are still chosen on the backend's names (`secret`'s
    // values are still transformed).
    p.client(&q("select id, x as hush, secret from t"));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    p.backend(
        &[
            row_desc(&["id", "hush", "secret"]),
            data_row(&[Some("1"), Some("hush"), Some("abc")]),
            complete("SELECT 1"),
            ready(b'I'),
        ]
        .concat(),
    );
    let out = p.client_out();
    assert_eq!(tags(&out), "TDCZ");
    let f = frames(&out);
    assert_eq!(m(b'T', &f[0].1), row_desc(&["id", "****", "secret"]));
    assert_eq!(
        m(b'D', &f[1].1),
        data_row(&[Some("1"), Some("hush"), Some("ABC")])
    );
    // Unchanged names: the RowDescription is forwarded as it came.
    p.client(&q("select secret from t"));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    p.backend(&[row_desc(&["secret"]), complete("SELECT 0"), ready(b'I')].concat());
    assert_eq!(
        p.client_out(),
        [row_desc(&["secret"]), complete("SELECT 0"), ready(b'I')].concat()
    );
}

#[test]
fn described_column_names_are_transformed_too() {
    let mut p = Pair::ready();
    p.client(
        &[
            parse("s1", "select 1 as hush"),
            describe(b'S', "s1"),
            sync(),
        ]
        .concat(),
    );
    p.take_request();
    p.s.handle_parse_verdict(p.now, ParseVerdict::Forward(()));
    assert_eq!(tags(&p.backend_out()), "PDS");
    p.backend(
        &[
            m(b'1', &[]),
            m(b't', &0i16.to_be_bytes()),
            row_desc(&["hush"]),
            ready(b'I'),
        ]
        .concat(),
    );
    let out = p.client_out();
    assert_eq!(tags(&out), "1tTZ");
    assert_eq!(m(b'T', &frames(&out)[2].1), row_desc(&["****"]));
}

// ---------------------------------------------------------- extended query

#[test]
fn extended_denied_parse_discards_until_sync_and_fails_at_sync() {
    let mut p = Pair::ready();
    p.client(
        &[
            parse("", "drop table t"),
            bind("", "", &[]),
            describe(b'P', ""),
            execute(""),
            sync(),
        ]
        .concat(),
    );
    match p.take_request() {
        HookRequest::Parse { statement, sql, .. } => {
            assert_eq!((statement.as_str(), sql.as_str()), ("", "drop table t"))
        }
        other => panic!("{other:?}"),
    }
    p.s.handle_parse_verdict(p.now, ParseVerdict::Deny("no drops".into()));
    let sent = p.backend_out();
    // Close of the unnamed statement, then the failing statement, then Sync; no Bind/Execute of the denied one.
    assert_eq!(tags(&sent), "CPBES");
    assert!(String::from_utf8_lossy(&sent).contains("RAISE EXCEPTION"));
    assert_eq!(codes(&p.client_out()), ["42501"]);
    p.backend(
        &[
            m(b'3', &[]),
            m(b'1', &[]),
            m(b'2', &[]),
            be_error("42501", "denied"),
            ready(b'I'),
        ]
        .concat(),
    );
    assert_eq!(tags(&p.client_out()), "Z");
}

/// A Query whose text is not UTF-8 gets PostgreSQL's 22021 and
/// ReadyForQuery; nothing reaches the backend or the hook, the session goes on.
#[test]
fn query_text_not_utf8_gets_22021_and_the_session_goes_on() {
    let mut p = Pair::ready();
    p.client(&m(b'Q', b"select 'caf\xc3'\0"));
    let out = p.client_out();
    assert_eq!(tags(&out), "EZ");
    assert_eq!(codes(&out), ["22021"]);
    assert!(
        String::from_utf8_lossy(&out)
            .contains("invalid byte sequence for encoding \"UTF8\": 0xc3 0x27")
    );
    assert!(p.backend_out().is_empty());
    assert!(!p.outputs.iter().any(|o| matches!(o, Output::Request(_))));
    assert!(p.events().iter().any(|e| matches!(e,
        Event::CommandDenied { reason, by: RefusedBy::Session, .. } if reason.contains("0xc3 0x27"))));
    p.client(&q("select 1"));
    assert!(matches!(p.take_request(), HookRequest::Query { sql, .. } if sql == "select 1"));
    assert!(!p.s.is_closed());
}

/// A Parse whose text is not UTF-8: PostgreSQL's 22021, every message up to
/// Sync ignored (a Query included), the pipeline's transaction failed at
/// Sync as for any refusal; then the session goes on normally.
#[test]
fn extended_parse_text_not_utf8_gets_22021_and_discards_until_sync() {
    let mut p = Pair::ready();
    p.client(
        &[
            m(b'P', b"\0select '\xff'\0\0\0"),
            bind("", "", &[]),
            describe(b'P', ""),
            execute(""),
            q("select 1"),
            sync(),
        ]
        .concat(),
    );
    assert!(!p.outputs.iter().any(|o| matches!(o, Output::Request(_))));
    let sent = p.backend_out();
    // Only the failing statement and the Sync: nothing of the client's pipeline.
    assert_eq!(tags(&sent), "PBES");
    assert!(String::from_utf8_lossy(&sent).contains("RAISE EXCEPTION"));
    assert!(!sent.contains(&0xff));
    let out = p.client_out();
    assert_eq!(codes(&out), ["22021"]);
    assert!(
        String::from_utf8_lossy(&out).contains("invalid byte sequence for encoding \"UTF8\": 0xff")
    );
    let events = p.events();
    assert!(events.iter().any(|e| matches!(e,
        Event::CommandDenied { reason, .. } if reason.ends_with("\"UTF8\": 0xff"))));
    assert!(!events.iter().any(|e| matches!(e,
        Event::CommandReceived { sql, .. } if sql.contains('\u{fffd}'))));
    p.backend(
        &[
            m(b'1', &[]),
            m(b'2', &[]),
            be_error("42501", "denied"),
            ready(b'I'),
        ]
        .concat(),
    );
    assert_eq!(tags(&p.client_out()), "Z");
    p.client(
        &[
            parse("", "select 2"),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]
        .concat(),
    );
    assert!(matches!(p.take_request(), HookRequest::Parse { sql, .. } if sql == "select 2"));
    p.s.handle_parse_verdict(p.now, ParseVerdict::Forward(()));
    assert_eq!(tags(&p.backend_out()), "PB");
    assert!(!p.s.is_closed());
}

#[test]
fn extended_forward_injects_describe_and_transforms_rows() {
    let mut p = Pair::ready();
    p.client(&[parse("s1", "select secret from t where id = $1"), sync()].concat());
    p.take_request();
    p.s.handle_parse_verdict(p.now, ParseVerdict::Forward(()));
    assert_eq!(tags(&p.backend_out()), "PS");
    p.backend(&[m(b'1', &[]), ready(b'I')].concat());
    assert_eq!(tags(&p.client_out()), "1Z");
    p.client(&[bind("", "s1", &[Some(b"1")]), execute(""), sync()].concat());
    assert_eq!(tags(&p.backend_out()), "B");
    // Every Execute is a command the hook decides on.
    assert!(matches!(p.take_request(), HookRequest::Execute { .. }));
    p.answer_query(Verdict::Forward(()));
    let sent = p.backend_out();
    assert_eq!(tags(&sent), "DES", "a Describe is injected before Execute");
    p.backend(
        &[
            m(b'2', &[]),
            row_desc(&["secret"]),
            data_row(&[Some("abc")]),
            complete("SELECT 1"),
            ready(b'I'),
        ]
        .concat(),
    );
    let out = p.client_out();
    assert_eq!(
        tags(&out),
        "2DCZ",
        "the injected Describe's answer is not shown"
    );
    assert_eq!(m(b'D', &frames(&out)[1].1), data_row(&[Some("ABC")]));
}

#[test]
fn extended_hold_at_execute_sees_parameters_and_releases_one_execution() {
    let mut p = Pair::ready();
    p.client(&[parse("d", "delete from t where id = $1"), sync()].concat());
    p.take_request();
    p.s.handle_parse_verdict(p.now, ParseVerdict::Forward(()));
    p.backend_out();
    p.backend(&[m(b'1', &[]), ready(b'I')].concat());
    p.client_out();
    for id in ["7", "8"] {
        p.client(&[bind("", "d", &[Some(id.as_bytes())]), execute(""), sync()].concat());
        assert_eq!(tags(&p.backend_out()), "B");
        match p.take_request() {
            HookRequest::Execute { sql, params, .. } => {
                assert_eq!(sql, "delete from t where id = $1");
                assert_eq!(
                    params,
                    vec![Some(bytes::Bytes::copy_from_slice(id.as_bytes()))]
                );
            }
            other => panic!("{other:?}"),
        }
        p.answer_query(Verdict::Hold(
            Held {
                id: HoldId(1),
                notice: "held".into(),
            },
            (),
        ));
        assert!(
            p.backend_out().is_empty(),
            "Sync waits behind the held Execute"
        );
        p.s.handle_hold_resolved(p.now, HoldId(1), Decision::Forward);
        assert_eq!(tags(&p.backend_out()), "DES");
        p.backend(
            &[
                m(b'2', &[]),
                m(b'n', &[]),
                complete("DELETE 1"),
                ready(b'I'),
            ]
            .concat(),
        );
        assert_eq!(tags(&p.client_out()), "N2CZ");
    }
}

/// A hold's notice is about its Execute: it never overtakes the replies the
/// backend owes for what came before (a simple query, an earlier Sync), and
/// it does not wait for the replies of its own unsynced pipeline (the
/// backend keeps those until the held Sync).
#[test]
fn a_hold_notice_follows_the_replies_owed_before_it() {
    let mut p = Pair::ready();
    p.client(&[parse("d", "delete from t"), sync()].concat());
    p.take_request();
    p.s.handle_parse_verdict(p.now, ParseVerdict::Forward(()));
    p.backend_out();
    p.backend(&[m(b'1', &[]), ready(b'I')].concat());
    p.client_out();
    // One packet: a query, then an execution of d in a new pipeline.
    p.client(&[q("select 1"), bind("", "d", &[]), execute(""), sync()].concat());
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    assert_eq!(tags(&p.backend_out()), "QB");
    p.take_request();
    p.answer_query(Verdict::Hold(
        Held {
            id: HoldId(1),
            notice: "held".into(),
        },
        (),
    ));
    assert!(
        p.client_out().is_empty(),
        "the notice waits for the query's reply"
    );
    p.backend(&[complete("SELECT 0"), ready(b'I')].concat());
    assert_eq!(tags(&p.client_out()), "CZN");
    p.s.handle_hold_resolved(p.now, HoldId(1), Decision::Forward);
    assert_eq!(tags(&p.backend_out()), "DES");
    p.backend(
        &[
            m(b'2', &[]),
            m(b'n', &[]),
            complete("DELETE 0"),
            ready(b'I'),
        ]
        .concat(),
    );
    assert_eq!(tags(&p.client_out()), "2CZ");
}

#[test]
fn execute_of_an_sql_prepared_statement_is_asked_as_execute_name() {
    let mut p = Pair::ready();
    p.client(&[bind("", "viaprepare", &[Some(b"3")]), execute(""), sync()].concat());
    assert_eq!(tags(&p.backend_out()), "B");
    match p.take_request() {
        HookRequest::Execute { sql, params, .. } => {
            assert_eq!(sql, "EXECUTE viaprepare");
            assert_eq!(params, vec![Some(bytes::Bytes::from_static(b"3"))]);
        }
        other => panic!("{other:?}"),
    }
    p.answer_query(Verdict::Deny("no".into()));
    // The error follows the Bind's answer, in order.
    p.backend(&m(b'2', &[]));
    assert_eq!(codes(&p.client_out()), ["42501"]);
    // Sync makes the backend's transaction fail, as the denial would.
    assert_eq!(tags(&p.backend_out()), "PBES");
}

#[test]
fn extended_backend_error_skips_to_sync() {
    let mut p = Pair::ready();
    p.client(
        &[
            bind("", "nope", &[]),
            describe(b'P', ""),
            execute(""),
            sync(),
        ]
        .concat(),
    );
    assert_eq!(tags(&p.backend_out()), "BD");
    assert!(matches!(p.take_request(), HookRequest::Execute { .. }));
    p.answer_query(Verdict::Forward(()));
    // The client described the portal itself, just before.
    assert_eq!(tags(&p.backend_out()), "ES");
    p.backend(
        &[
            be_error("26000", "prepared statement \"nope\" does not exist"),
            ready(b'I'),
        ]
        .concat(),
    );
    assert_eq!(tags(&p.client_out()), "EZ");
    assert!(p.s.is_idle());
}

// ------------------------------------------------------ malformed and state

#[test]
fn oversized_and_negative_lengths_close_with_08p01() {
    for bad in [
        vec![b'Q', 0x7f, 0xff, 0xff, 0xff],
        vec![b'Q', 0xff, 0xff, 0xff, 0xfe],
        vec![b'Q', 0, 0, 0, 3],
    ] {
        let mut p = Pair::ready();
        p.client(&bad);
        assert_eq!(codes(&p.client_out()), ["08P01"]);
        assert!(p.s.is_closed());
    }
    let mut p = Pair::loopback();
    p.client(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]);
    assert_eq!(codes(&p.client_out()), ["08P01"]);
    // Before authentication a password message is bounded tighter.
    let mut p = Pair::loopback();
    p.client(&startup(&[("user", "alice")]));
    p.client_out();
    p.client(&[b'p', 0, 1, 0, 1]);
    assert_eq!(codes(&p.client_out()), ["08P01"]);
}

#[test]
fn truncated_frames_wait_for_more() {
    let mut p = Pair::ready();
    let frame = q("select 1");
    p.client(&frame[..frame.len() - 1]);
    assert!(!p.s.is_closed());
    assert!(p.client_out().is_empty());
    p.client(&frame[frame.len() - 1..]);
    assert!(matches!(p.take_request(), HookRequest::Query { .. }));
}

#[test]
fn malformed_bodies_and_wrong_state_messages_are_refused() {
    let cases: Vec<Vec<u8>> = vec![
        m(b'Q', b"no terminator"),
        m(b'B', &[0, 0, 0, 5]),
        m(b'P', b"\0select\0\x7f\xff"),
        m(b'E', b"portal"),
        m(b'D', b"Xname\0"),
        m(b'p', &cstr("password again")),
        m(b'R', &[0, 0, 0, 0]),
        m(b'?', &[]),
    ];
    for bad in cases {
        let mut p = Pair::ready();
        p.client(&bad);
        assert_eq!(codes(&p.client_out()), ["08P01"], "{bad:?}");
        assert!(p.s.is_closed());
    }
    // A query before authentication.
    let mut p = Pair::loopback();
    p.client(&startup(&[("user", "alice")]));
    p.client_out();
    p.client(&q("select 1"));
    assert_eq!(codes(&p.client_out()), ["08P01"]);
}

#[test]
fn malformed_backend_messages_close_with_08p01() {
    let cases: Vec<Vec<u8>> = vec![
        m(b'D', &[0, 2, 0, 0, 0, 9, b'a']),
        m(b'T', &[0, 1, b'x']),
        m(b'E', b"Cno terminator"),
        m(b'K', &[]),
        vec![b'D', 0x7f, 0xff, 0xff, 0xff],
    ];
    for bad in cases {
        let mut p = Pair::ready();
        p.client(&q("select 1"));
        p.take_request();
        p.answer_query(Verdict::Forward(()));
        p.backend_out();
        p.backend(&[row_desc(&["secret"]), bad.clone()].concat());
        let out = p.client_out();
        assert_eq!(codes(&out), ["08P01"], "{bad:?}");
        assert!(p.s.is_closed());
        assert_eq!(tags(&p.backend_out()), "X");
    }
    // Query results during backend authentication.
    let mut p = Pair::loopback();
    p.authenticate();
    p.backend(&data_row(&[Some("x")]));
    assert_eq!(codes(&p.client_out()), ["08P01"]);
}

/// What the messages module refuses that the old readers let through: a
/// body that is not exactly its message (a body on a message that has none,
/// a status byte the protocol does not define; text or a name that is not
/// UTF-8 in a frame malformed otherwise, which in a well-formed frame would
/// get PostgreSQL's 22021).
/// Nothing of it reaches the other side.
#[test]
fn bodies_that_are_not_exactly_their_message_are_refused() {
    let client: Vec<Vec<u8>> = vec![
        m(b'Q', b"select '\xff'\0x"),
        m(b'Q', b"select '\xff'"),
        m(b'P', b"s\0select '\xfe'\0\0"),
        m(b'P', b"s\xff\0select\0\0\x01"),
        m(b'P', b"s\0select '\xfe'\0\0\0x"),
        [m(b'B', b"\xff\0\0\0\0\0\0\0"), sync()].concat(),
        [m(b'D', b"X\xff\0"), sync()].concat(),
        m(b'S', b"x"),
        m(b'H', b"x"),
        m(b'X', b"x"),
    ];
    for bad in client {
        let mut p = Pair::ready();
        p.client(&bad);
        assert_eq!(codes(&p.client_out()), ["08P01"], "{bad:?}");
        assert!(p.s.is_closed());
        assert!(!p.backend_out().contains(&b'\xff'), "{bad:?}");
    }
    let backend: Vec<Vec<u8>> = vec![
        ready(b'X'),
        m(b'C', b"SELECT 1\0x"),
        m(b'I', b"x"),
        m(b'n', b"x"),
    ];
    for bad in backend {
        let mut p = Pair::ready();
        p.client(&q("select 1"));
        p.take_request();
        p.answer_query(Verdict::Forward(()));
        p.backend_out();
        p.backend(&bad);
        let out = p.client_out();
        assert_eq!(codes(&out), ["08P01"], "{bad:?}");
        assert!(!tags(&out).contains('Z'), "{bad:?}");
        assert!(p.s.is_closed());
    }
}

#[test]
fn handshake_and_idle_timeouts() {
    let mut p = Pair::loopback();
    let deadline = p.s.poll_timeout().unwrap();
    p.s.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!p.s.is_closed());
    p.s.handle_timeout(deadline);
    assert_eq!(codes(&p.client_out()), ["08006"]);
    let mut p = Pair::new(SessionConfig {
        loopback: true,
        idle_timeout: Some(Duration::from_secs(5)),
        ..SessionConfig::default()
    });
    p.authenticate();
    p.backend(&[auth(0, &[]), ready(b'I')].concat());
    p.client_out();
    let deadline = p.s.poll_timeout().unwrap();
    assert_eq!(deadline, p.now + Duration::from_secs(5));
    p.s.handle_timeout(deadline);
    assert_eq!(codes(&p.client_out()), ["57P05"]);
}

#[test]
fn shutdown_and_disconnects_end_the_session() {
    let mut p = Pair::ready();
    assert!(p.s.is_idle());
    p.s.handle_shutdown();
    assert_eq!(codes(&p.client_out()), ["57P01"]);
    assert_eq!(tags(&p.backend_out()), "X");
    let mut p = Pair::ready();
    p.client(&q("delete from t"));
    p.take_request();
    p.answer_query(Verdict::Hold(
        Held {
            id: HoldId(1),
            notice: "held".into(),
        },
        (),
    ));
    p.s.handle_client_closed();
    let events = p.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::HoldAbandoned { .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::SessionEnded { error: Some(_), .. }))
    );
}

// ------------------------------------------------------- chunk invariance

/// Runs a fixed conversation with the client's and the backend's bytes cut
/// at the given points; returns everything sent to each side.
fn conversation(client_cuts: &[usize], backend_cuts: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let mut p = Pair::ready();
    let mut to_client = Vec::new();
    let mut to_backend = Vec::new();
    let client_bytes = [q("select name, secret from t")].concat();
    let mut last = 0;
    let mut cuts: Vec<usize> = client_cuts.iter().map(|c| c % client_bytes.len()).collect();
    cuts.sort_unstable();
    for c in cuts.into_iter().chain([client_bytes.len()]) {
        p.client(&client_bytes[last..c.max(last)]);
        last = c.max(last);
    }
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    to_backend.extend(p.backend_out());
    let backend_bytes = [
        row_desc(&["name", "secret"]),
        data_row(&[Some("alice"), Some("hush-one")]),
        data_row(&[Some("bob"), None]),
        m(b'N', b"SNOTICE\0Mhush\0\0"),
        complete("SELECT 2"),
        ready(b'I'),
    ]
    .concat();
    let mut last = 0;
    let mut cuts: Vec<usize> = backend_cuts
        .iter()
        .map(|c| c % backend_bytes.len())
        .collect();
    cuts.sort_unstable();
    for c in cuts.into_iter().chain([backend_bytes.len()]) {
        p.backend(&backend_bytes[last..c.max(last)]);
        last = c.max(last);
        to_client.extend(p.client_out());
    }
    (to_client, to_backend)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn output_does_not_depend_on_chunking(
        client_cuts in proptest::collection::vec(any::<usize>(), 0..8),
        backend_cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let whole = conversation(&[], &[]);
        prop_assert_eq!(conversation(&client_cuts, &backend_cuts), whole);
    }

    #[test]
    fn arbitrary_client_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut p = Pair::ready();
        p.client(&data);
        let _ = p.client_out();
        let mut p = Pair::loopback();
        p.client(&data);
        let _ = p.client_out();
    }

    #[test]
    fn arbitrary_backend_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut p = Pair::ready();
        p.client(&q("select 1"));
        p.take_request();
        p.answer_query(Verdict::Forward(()));
        p.backend(&data);
        let _ = p.client_out();
        let mut p = Pair::loopback();
        p.authenticate();
        p.backend(&data);
        let _ = p.client_out();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The fuzz target's entry point, replayed on random inputs.
    #[test]
    fn fuzz_entry_points_never_panic(
        client in proptest::collection::vec(any::<u8>(), 0..200),
        backend in proptest::collection::vec(any::<u8>(), 0..200),
        ready in any::<bool>(),
    ) {
        portcullis_pg::internal::fuzz_codec(&client);
        portcullis_pg::internal::fuzz_session(&client, &backend, ready);
        let mut framed = q("select 1");
        framed.extend_from_slice(&client);
        portcullis_pg::internal::fuzz_session(&framed, &backend, ready);
    }
}

// ------------------------------------------------- hostile startup and settings

/// Startup with these client parameters, authenticated to `target`; returns
/// what the client got so far.
fn login_with(p: &mut Pair, params: &[(&str, &str)], target: BackendTarget) -> Vec<u8> {
    p.client(&startup(params));
    assert_eq!(tags(&p.client_out()), "R");
    p.client(&m(b'p', &cstr("token")));
    p.take_request();
    p.s.handle_authenticated(
        p.now,
        Ok(Authenticated {
            principal: "alice".into(),
            backend: target,
        }),
    );
    p.collect();
    p.client_out()
}

fn connects(p: &Pair) -> bool {
    p.outputs
        .iter()
        .any(|o| matches!(o, Output::ConnectBackend(_)))
}

#[test]
fn startup_parameters_outside_the_allow_list_are_refused_by_name() {
    for (name, value) in [
        ("options", "-c standard_conforming_strings=off"),
        ("role", "postgres"),
        ("search_path", "evil,public"),
        ("default_transaction_read_only", "off"),
        ("statement_timeout", "0"),
        ("standard_conforming_strings", "off"),
        ("client_encoding", "SJIS"),
        ("client_encoding", "GB18030"),
    ] {
        let mut p = Pair::loopback();
        let out = login_with(&mut p, &[("user", "alice"), (name, value)], Pair::target());
        assert_eq!(codes(&out), ["42501"], "{name}");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(name) || text.contains(value), "{text}");
        assert!(text.contains("FATAL"));
        assert!(!connects(&p), "{name}: no backend connection is opened");
        assert!(p.s.is_closed());
    }
}

#[test]
fn allowed_parameters_are_forwarded_with_the_pinned_settings() {
    let mut p = Pair::loopback();
    let out = login_with(
        &mut p,
        &[
            ("user", "alice"),
            ("application_name", "psql"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("extra_float_digits", "3"),
            ("client_encoding", "UTF8"),
        ],
        Pair::target(),
    );
    assert!(out.is_empty());
    assert!(connects(&p));
    p.s.handle_backend_connected(p.now);
    let sent = String::from_utf8_lossy(&p.backend_out()).into_owned();
    for pair in [
        "application_name\0psql\0",
        "datestyle\0ISO, MDY\0",
        "timezone\0UTC\0",
        "extra_float_digits\x003\0",
        "client_encoding\0UTF8\0",
        "standard_conforming_strings\0on\0",
        "user\0app\0",
    ] {
        assert!(sent.contains(pair), "{pair:?} in {sent:?}");
    }
}

#[test]
fn dropping_unknown_parameters_is_a_per_connection_choice_with_notices() {
    let mut allow = portcullis_pg::Allowances::default();
    allow.drop_unknown_startup_params = true;
    allow.backend_trust = true;
    let mut p = Pair::loopback();
    let out = login_with(
        &mut p,
        &[
            ("user", "alice"),
            ("options", "-c standard_conforming_strings=off"),
            ("client_encoding", "SJIS"),
        ],
        Pair::target_allowing(allow),
    );
    assert!(out.is_empty());
    p.s.handle_backend_connected(p.now);
    let sent = String::from_utf8_lossy(&p.backend_out()).into_owned();
    assert!(!sent.contains("options"), "{sent:?}");
    assert!(!sent.contains("SJIS"), "{sent:?}");
    assert!(sent.contains("standard_conforming_strings\0on\0"));
    assert!(sent.contains("client_encoding\0UTF8\0"));
    p.backend(&[auth(0, &[]), ready(b'I')].concat());
    let out = p.client_out();
    assert_eq!(tags(&out), "RNNZ");
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("dropped the startup parameter \"options\""));
    assert!(text.contains("dropped the startup parameter \"client_encoding\""));
}

#[test]
fn backend_auth_is_scram_only_unless_the_connection_allows_more() {
    for (request, what) in [
        (auth(3, &[]), "cleartext"),
        (auth(5, &[1, 2, 3, 4]), "MD5"),
        (auth(0, &[]), "trust"),
    ] {
        let mut p = Pair::loopback();
        login_with(
            &mut p,
            &[("user", "alice")],
            Pair::target_allowing(Default::default()),
        );
        p.s.handle_backend_connected(p.now);
        p.backend_out();
        p.backend(&[request, ready(b'I')].concat());
        assert_eq!(codes(&p.client_out()), ["08001"], "{what}");
        assert!(p.s.is_closed());
        let sent = p.backend_out();
        assert!(
            !String::from_utf8_lossy(&sent).contains(BACKEND_PASSWORD),
            "{what}: no password is sent"
        );
        assert!(!tags(&sent).contains('p'), "{what}");
        let ended = p.events().into_iter().find_map(|e| match e {
            Event::SessionEnded { error, .. } => error,
            _ => None,
        });
        assert!(ended.unwrap().contains(what), "{what}");
    }
}

#[test]
fn an_authentication_ok_in_the_middle_of_scram_is_refused() {
    for allow_all in [false, true] {
        let target = if allow_all {
            Pair::target()
        } else {
            Pair::target_allowing(Default::default())
        };
        let mut p = Pair::loopback();
        login_with(&mut p, &[("user", "alice")], target);
        p.s.handle_backend_connected(p.now);
        p.backend_out();
        p.backend(&auth(10, b"SCRAM-SHA-256\0\0"));
        assert!(String::from_utf8_lossy(&p.backend_out()).contains("n,,n=,r="));
        p.backend(&[auth(0, &[]), ready(b'I')].concat());
        assert_eq!(codes(&p.client_out()), ["08001"]);
        assert!(p.s.is_closed());
    }
}

#[test]
fn a_reported_setting_the_analysis_cannot_follow_ends_the_session() {
    for (name, value) in [
        ("standard_conforming_strings", "off"),
        ("client_encoding", "SJIS"),
    ] {
        // During startup.
        let mut p = Pair::loopback();
        p.authenticate();
        p.backend_out();
        let mut status = cstr(name);
        status.extend(cstr(value));
        p.backend(&[auth(0, &[]), m(b'S', &status), ready(b'I')].concat());
        let out = p.client_out();
        assert_eq!(tags(&out), "RE");
        assert_eq!(codes(&out), ["42501"]);
        assert!(p.s.is_closed());
        // After a statement.
        let mut p = Pair::ready();
        p.client(&q("select set_config('x', 'y', false)"));
        p.take_request();
        p.answer_query(Verdict::Forward(()));
        assert_eq!(tags(&p.backend_out()), "Q");
        p.backend(&[complete("SELECT 1"), m(b'S', &status), ready(b'I')].concat());
        let out = p.client_out();
        assert_eq!(
            tags(&out),
            "CE",
            "the ParameterStatus and ReadyForQuery are not forwarded"
        );
        assert!(String::from_utf8_lossy(&out).contains(value));
        assert_eq!(tags(&p.backend_out()), "X");
        assert!(p.s.is_closed());
        assert!(
            p.events()
                .iter()
                .any(|e| matches!(e, Event::ProtocolViolation { .. }))
        );
    }
}

/// The confirmed attack, pipelined: a SET and the statement it would make
/// PostgreSQL read differently, in two Query messages sent at once.
#[test]
fn text_after_a_possible_setting_change_waits_for_the_report() {
    let mut p = Pair::ready();
    p.client(
        &[
            q("SET standard_conforming_strings = off"),
            q("SELECT '\\', ' ; DELETE FROM shop.orders; --'"),
        ]
        .concat(),
    );
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    assert_eq!(tags(&p.backend_out()), "Q");
    // The second query is not even shown to the hook before the first's
    // ReadyForQuery: what PostgreSQL will read is not known yet.
    assert!(!p.outputs.iter().any(|o| matches!(o, Output::Request(_))));
    let mut status = cstr("standard_conforming_strings");
    status.extend(cstr("off"));
    p.backend(&[complete("SET"), m(b'S', &status), ready(b'I')].concat());
    assert_eq!(codes(&p.client_out()), ["42501"]);
    assert_eq!(
        tags(&p.backend_out()),
        "X",
        "the DELETE never reaches the backend"
    );
    assert!(p.s.is_closed());

    // Text that reads the same under any setting is not held back.
    let mut p = Pair::ready();
    p.client(&[q("SET datestyle = 'German'"), q("SELECT 1")].concat());
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    assert_eq!(tags(&p.backend_out()), "QQ");

    // Held back text goes on once the report is read and is harmless.
    let mut p = Pair::ready();
    p.client(&[q("SET datestyle = 'German'"), q("SELECT 'a\\b'")].concat());
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    assert_eq!(tags(&p.backend_out()), "Q");
    let mut status = cstr("DateStyle");
    status.extend(cstr("German, DMY"));
    p.backend(&[complete("SET"), m(b'S', &status), ready(b'I')].concat());
    assert_eq!(tags(&p.client_out()), "CSZ");
    match p.take_request() {
        HookRequest::Query { sql, .. } => assert_eq!(sql, "SELECT 'a\\b'"),
        other => panic!("{other:?}"),
    }
    p.answer_query(Verdict::Forward(()));
    assert_eq!(tags(&p.backend_out()), "Q");
}

#[test]
fn text_after_an_execute_in_an_open_pipeline_is_refused() {
    let mut p = Pair::ready();
    p.client(
        &[
            parse("", "SET standard_conforming_strings = off"),
            bind("", "", &[]),
            execute(""),
            parse("", "SELECT '\\', ' ; DELETE FROM shop.orders; --'"),
            bind("", "", &[]),
            execute(""),
            sync(),
        ]
        .concat(),
    );
    p.take_request();
    p.s.handle_parse_verdict(p.now, ParseVerdict::Forward(()));
    p.collect();
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    let sent = String::from_utf8_lossy(&p.backend_out()).into_owned();
    assert!(!sent.contains("DELETE"), "{sent:?}");
    // The refusal comes in order, after the replies to what was sent.
    p.backend(&[m(b'1', &[]), m(b'2', &[]), m(b'n', &[]), complete("SET")].concat());
    assert_eq!(codes(&p.client_out()), ["0A000"]);
    assert!(
        p.events()
            .iter()
            .any(|e| matches!(e, Event::CommandDenied { reason, by: RefusedBy::Session, .. } if reason.contains("Sync")))
    );
}

#[test]
fn plaintext_pipelined_after_an_ssl_request_is_refused() {
    let mut p = Pair::new(SessionConfig {
        tls_available: true,
        ..SessionConfig::default()
    });
    let mut bytes = vec![0, 0, 0, 8, 4, 210, 22, 47];
    bytes.extend(startup(&[("user", "alice")]));
    p.client(&bytes);
    let out = p.client_out();
    assert_eq!(codes(&out), ["08P01"]);
    assert!(String::from_utf8_lossy(&out).contains("unencrypted data after SSL request"));
    assert!(
        !p.outputs
            .iter()
            .any(|o| matches!(o, Output::StartClientTls))
    );
    assert!(p.s.is_closed());
}

#[test]
fn over_tls_the_scram_exchange_is_bound_to_the_backend_certificate() {
    // A certificate with an ecdsa-with-SHA256 signature algorithm (the
    // outer structure is all the binding reads).
    let cert = [
        0x30, 0x13, 0x30, 0x03, 0x02, 0x01, 0x01, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x04, 0x03, 0x02, 0x03, 0x01, 0x00,
    ];
    for (offer, binding, mechanism, header) in [
        (
            &b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"[..],
            true,
            "SCRAM-SHA-256-PLUS",
            "p=tls-server-end-point,,",
        ),
        (&b"SCRAM-SHA-256\0\0"[..], true, "SCRAM-SHA-256", "y,,"),
        (
            &b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"[..],
            false,
            "SCRAM-SHA-256",
            "n,,",
        ),
    ] {
        let mut p = Pair::loopback();
        login_with(
            &mut p,
            &[("user", "alice")],
            Pair::target_allowing(Default::default()),
        );
        if binding {
            p.s.handle_backend_tls(&cert);
        }
        p.s.handle_backend_connected(p.now);
        p.backend_out();
        p.backend(&auth(10, offer));
        let sent = p.backend_out();
        let text = String::from_utf8_lossy(&sent);
        assert!(text.contains(&format!("{mechanism}\0")), "{text:?}");
        assert!(text.contains(header), "{mechanism}: {text:?}");
    }
}

#[test]
fn required_channel_binding_refuses_every_login_that_is_not_bound() {
    let cert = [
        0x30, 0x13, 0x30, 0x03, 0x02, 0x01, 0x01, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x04, 0x03, 0x02, 0x03, 0x01, 0x00,
    ];
    // Ed25519 (1.3.101.112): no hash, so no tls-server-end-point binding.
    let ed25519 = [
        0x30, 0x0f, 0x30, 0x03, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03,
        0x01, 0x00,
    ];
    let plus = &b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"[..];
    // (TLS, certificate, the backend's request, the refusal's words or None
    // when the login goes on bound)
    type Case<'a> = (bool, &'a [u8], Vec<u8>, Option<&'a str>);
    let cases: [Case<'_>; 7] = [
        (true, &cert, auth(10, plus), None),
        (
            true,
            &cert,
            auth(10, b"SCRAM-SHA-256\0\0"),
            Some("does not offer SCRAM-SHA-256-PLUS"),
        ),
        (false, &[], auth(10, plus), Some("does not use TLS")),
        (
            true,
            &ed25519,
            auth(10, plus),
            Some("allows no tls-server-end-point"),
        ),
        (
            true,
            &cert,
            auth(0, b""),
            Some("without authentication (trust)"),
        ),
        (true, &cert, auth(3, b""), Some("cleartext password")),
        (true, &cert, auth(5, b"salt"), Some("MD5 password hash")),
    ];
    for (tls, certificate, request, refusal) in cases {
        let mut allow = portcullis_pg::Allowances::default();
        allow.require_channel_binding = true;
        // Allowing the weaker methods does not let them in.
        allow.backend_cleartext = true;
        allow.backend_md5 = true;
        allow.backend_trust = true;
        let mut target = Pair::target_allowing(allow);
        if tls {
            target.tls = BackendTls::Require {
                server_name: "db".into(),
            };
        }
        let mut p = Pair::loopback();
        login_with(&mut p, &[("user", "alice")], target);
        p.s.handle_backend_connected(p.now);
        if tls {
            // The session negotiates TLS; the driver runs the handshake.
            assert_eq!(p.backend_out(), SSL_REQUEST);
            p.backend(b"S");
            assert!(p.outputs.iter().any(
                |o| matches!(o, Output::StartBackendTls { server_name } if server_name == "db")
            ));
            p.s.handle_backend_tls(certificate);
        }
        p.backend_out();
        p.backend(&request);
        let sent = p.backend_out();
        let text = String::from_utf8_lossy(&sent);
        match refusal {
            None => {
                assert!(text.contains("SCRAM-SHA-256-PLUS\0"), "{text:?}");
                assert!(text.contains("p=tls-server-end-point,,"), "{text:?}");
                assert!(!p.s.is_closed());
            }
            Some(what) => {
                assert_eq!(codes(&p.client_out()), ["08001"], "{what}");
                assert!(p.s.is_closed(), "{what}");
                assert!(!tags(&sent).contains('p'), "{what}: nothing sent");
                let ended = p.events().into_iter().find_map(|e| match e {
                    Event::SessionEnded { error, .. } => error,
                    _ => None,
                });
                let ended = ended.unwrap();
                assert!(
                    ended.contains("channel binding is required") && ended.contains(what),
                    "{ended}"
                );
            }
        }
    }
}

// ------------------------------------------------------------- row limits

/// A ready pair whose statements may return 2 rows, and a query of it
/// answered by the backend with a row description and `rows` rows.
fn limited(read_only: bool, rows: usize) -> Pair {
    ROW_LIMIT.set(Some((2, read_only)));
    let mut p = Pair::ready();
    p.client(&q("select n from t"));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    assert_eq!(tags(&p.backend_out()), "Q");
    let mut script = row_desc(&["n"]);
    for i in 0..rows {
        script.extend(data_row(&[Some(&i.to_string())]));
    }
    p.backend(&script);
    p
}

fn cancels(p: &mut Pair) -> usize {
    p.collect();
    p.outputs
        .iter()
        .filter(|o| matches!(o, Output::CancelBackend))
        .count()
}

#[test]
fn rows_past_the_limit_are_never_forwarded_and_the_cancelled_statement_is_53400() {
    let mut p = limited(false, 5);
    assert_eq!(tags(&p.client_out()), "TDD", "never row 3");
    assert_eq!(cancels(&mut p), 1, "one cancel, however many rows follow");
    assert!(
        p.events()
            .iter()
            .any(|e| matches!(e, Event::RowLimitExceeded { limit: 2, .. }))
    );
    // Until the cancel is delivered, nothing more reaches the backend.
    p.client(&q("select 2"));
    assert!(!p.outputs.iter().any(|o| matches!(o, Output::Request(_))));
    p.backend(
        &[
            data_row(&[Some("9")]),
            be_error("57014", "canceling statement due to user request"),
            ready(b'I'),
        ]
        .concat(),
    );
    let out = p.client_out();
    assert_eq!(tags(&out), "EZ");
    assert_eq!(codes(&out), ["53400"]);
    assert!(String::from_utf8_lossy(&out).contains("add LIMIT 2"));
    assert_eq!(frames(&out)[1].1, b"I");
    p.s.handle_backend_cancel_sent(p.now);
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    assert_eq!(tags(&p.backend_out()), "Q", "the session goes on");
}

#[test]
fn a_statement_completed_before_its_cancel_fails_the_transaction_block() {
    ROW_LIMIT.set(Some((2, true)));
    let mut p = Pair::ready();
    p.client(&q("begin"));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    p.backend_out();
    p.backend(&[complete("BEGIN"), ready(b'T')].concat());
    p.client_out();
    p.client(&q("select n from t"));
    p.take_request();
    p.answer_query(Verdict::Forward(()));
    p.backend_out();
    p.backend(
        &[
            row_desc(&["n"]),
            data_row(&[Some("1")]),
            data_row(&[Some("2")]),
            data_row(&[Some("3")]),
            complete("SELECT 3"),
            ready(b'T'),
        ]
        .concat(),
    );
    let out = p.client_out();
    assert_eq!(
        tags(&out),
        "TDDE",
        "the backend's ReadyForQuery is held back"
    );
    assert_eq!(codes(&out), ["53400"]);
    let sent = p.backend_out();
    assert_eq!(tags(&sent), "Q");
    assert!(String::from_utf8_lossy(&sent).contains("RAISE EXCEPTION"));
    p.backend(
        &[
            be_error("42501", "statement denied by the gateway"),
            ready(b'E'),
        ]
        .concat(),
    );
    let out = p.client_out();
    assert_eq!(tags(&out), "Z");
    assert_eq!(
        frames(&out)[0].1,
        b"E",
        "the client sees the failed transaction"
    );
}

#[test]
fn a_read_only_statement_completed_before_its_cancel_outside_a_transaction_goes_on() {
    let mut p = limited(true, 3);
    p.backend(&[complete("SELECT 3"), ready(b'I')].concat());
    let out = p.client_out();
    assert_eq!(tags(&out), "TDDEZ");
    assert_eq!(codes(&out), ["53400"]);
    assert!(!p.s.is_closed());
}

#[test]
fn a_write_completed_before_its_cancel_outside_a_transaction_ends_the_session() {
    let mut p = limited(false, 3);
    p.backend(&[complete("INSERT 0 3"), ready(b'I')].concat());
    let out = p.client_out();
    assert_eq!(tags(&out), "TDDEE", "the 53400 error, then FATAL");
    assert_eq!(codes(&out), ["53400", "53400"]);
    assert!(String::from_utf8_lossy(&out).contains("FATAL"));
    assert!(String::from_utf8_lossy(&out).contains("committed"));
    assert!(p.s.is_closed());
    assert_eq!(tags(&p.backend_out()), "X");
}

#[test]
fn more_statements_of_the_query_after_the_cut_one_end_the_session() {
    let mut p = limited(true, 3);
    p.backend(
        &[
            complete("SELECT 3"),
            row_desc(&["m"]),
            data_row(&[Some("x")]),
        ]
        .concat(),
    );
    let out = p.client_out();
    assert_eq!(tags(&out), "TDDEE");
    assert!(!String::from_utf8_lossy(&out).contains("\0x\0"));
    assert!(p.s.is_closed());
}

// ------------------------------------------------- bytes the session writes

/// The session, not the driver, negotiates TLS with the backend: an
/// SSLRequest, the one-byte answer, then the handshake the driver is asked
/// to run; the login starts only after it.
#[test]
fn backend_tls_is_negotiated_by_the_session() {
    let mut target = Pair::target();
    target.tls = BackendTls::Require {
        server_name: "db.internal".into(),
    };
    let mut p = Pair::loopback();
    login_with(&mut p, &[("user", "alice")], target);
    p.s.handle_backend_connected(p.now);
    assert_eq!(p.backend_out(), SSL_REQUEST);
    p.backend(b"S");
    assert!(p.outputs.iter().any(|o| matches!(o,
            Output::StartBackendTls { server_name } if server_name == "db.internal")));
    assert!(p.backend_out().is_empty(), "nothing before the handshake");
    p.s.handle_backend_tls(&[]);
    let sent = p.backend_out();
    let text = String::from_utf8_lossy(&sent);
    assert!(text.contains("user\0app\0"), "{text:?}");
    assert!(!p.s.is_closed());
}

/// A backend that refuses TLS, or that sends anything after its `S` (bytes
/// that would be read as if they had come over TLS), ends the session
/// before the login.
#[test]
fn a_backend_that_refuses_tls_or_sends_early_bytes_ends_the_session() {
    for answer in [&b"N"[..], &b"E"[..], &b"SR\0\0\0\x08\0\0\0\0"[..]] {
        let mut target = Pair::target();
        target.tls = BackendTls::Require {
            server_name: "db".into(),
        };
        let mut p = Pair::loopback();
        login_with(&mut p, &[("user", "alice")], target);
        p.s.handle_backend_connected(p.now);
        assert_eq!(p.backend_out(), SSL_REQUEST);
        p.backend(answer);
        assert_eq!(codes(&p.client_out()), ["08001"], "{answer:?}");
        assert!(p.s.is_closed());
        assert!(p.backend_out().is_empty(), "{answer:?}: no login");
        assert!(
            !p.outputs
                .iter()
                .any(|o| matches!(o, Output::StartBackendTls { .. }))
        );
    }
}

/// When the client goes away, the session says goodbye to its backend with
/// one Terminate; before the backend login there is nothing to say.
#[test]
fn the_session_terminates_the_backend_when_the_client_leaves() {
    let mut p = Pair::ready();
    p.s.handle_client_closed();
    assert_eq!(p.backend_out(), b"X\0\0\0\x04");
    p.s.handle_client_closed();
    assert!(p.backend_out().is_empty(), "once");

    let mut p = Pair::loopback();
    login_with(&mut p, &[("user", "alice")], Pair::target());
    p.s.handle_client_closed();
    assert!(p.backend_out().is_empty(), "no backend connection yet");
}
