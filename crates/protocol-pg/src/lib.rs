//! PostgreSQL wire proxy for Portcullis.
//!
//! This crate terminates a client's PostgreSQL connection, authenticates it
//! with a bearer token, opens its own connection to the real server with
//! credentials the client never sees, and passes every message through a
//! [`Hook`] that can deny, hold or transform it. It knows nothing of policy,
//! masking or audit: the gateway implements the hook.
//!
//! - [`Session`] is the sans-IO core: client bytes, backend bytes and hook
//!   answers go in; bytes for each side (every protocol byte is written
//!   here), [`HookRequest`]s, [`Event`]s and the next deadline come out. It
//!   reads no clock, opens no socket and awaits nothing: a held command is
//!   known to it by a [`HoldId`], its decision future stays with the driver.
//! - The contract with the gateway has two sides. [`Transform`] is the
//!   synchronous one the session calls itself: `on_row_description`,
//!   `transform_field`, `transform_copy`, `transform_text`, `row_limit`,
//!   `session_settings` and `on_event`. [`Hook`] (a [`Transform`]) is the
//!   asynchronous one only the driver awaits: `authenticate` (token to a
//!   principal and a [`BackendTarget`]), `on_query`, `on_parse`,
//!   `on_execute` (forward, deny or hold) and `ended`.
//! - [`Proxy`] (feature `tokio`) listens, runs one task per connection that
//!   pumps a session, handles TLS with rustls, cancel requests, timeouts and
//!   graceful shutdown.
//!
//! What a client sees: the token is asked for with
//! AuthenticationCleartextPassword, only over TLS or on a loopback listener;
//! a denied statement is an ErrorResponse with SQLSTATE 42501 (inside a
//! transaction block the transaction is failed, as a server error would);
//! a held statement gets a NoticeResponse at once and runs when approved;
//! BackendKeyData carries the backend's real process id (as notifications and
//! `pg_backend_pid()` do) with a secret the gateway chose, and a
//! CancelRequest is honoured only with exactly that pair, then sent on with
//! the backend's own key.
//!
//! What the backend sees: only allow-listed startup parameters
//! (`application_name`, `client_encoding` UTF8/SQL_ASCII, `DateStyle`,
//! `TimeZone`, `IntervalStyle`, `extra_float_digits`; anything else, such as
//! `options`, ends the session with FATAL 42501 or, per [`Allowances`], is
//! dropped with a notice), with `standard_conforming_strings = on` and the
//! client encoding pinned. A ParameterStatus reporting a value the analysis
//! does not read correctly ends the session, and statement text that a
//! pending setting change could make PostgreSQL read differently waits for
//! that report. The gateway logs in with SCRAM-SHA-256 only, unless the
//! target's [`Allowances`] accept MD5, cleartext or trust; over TLS it binds
//! the exchange to the server's certificate when SCRAM-SHA-256-PLUS is offered.
//!
//! # Example
//!
//! Run a pass-through proxy with an allow-all hook (`examples/passthrough.rs`):
//!
//! ```text
//! cargo run -p portcullis-pg --example passthrough -- --listen 127.0.0.1:6543 \
//!     --backend postgres://USER:PASSWORD@HOST:PORT/DB --client-password X
//! psql "host=127.0.0.1 port=6543 user=me dbname=DB password=X"
//! ```
//!
//! A hook in 40 lines: a token check, a plan per statement (here: whether
//! its results are masked), column plans chosen once per result, and the
//! [`Proxy`] driving it. [`Session`]'s documentation drives a session by hand.
//!
//! ```no_run
//! use std::sync::Arc;
//! use portcullis_pg::{async_trait, Authenticated, BackendAddr, BackendTarget, BackendTls,
//!     Column, Context, FieldValue, Hook, Proxy, ProxyConfig, Rejection, SessionId,
//!     StartupParams, Transform, Verdict};
//!
//! /// Refuses DROP; every value of a statement that mentions `ssn` becomes NULL.
//! struct Guard { backend: BackendTarget }
//!
//! impl Transform for Guard { // the session calls these, synchronously
//!     type Principal = String; // the connected user
//!     type Plan = bool; // per statement (kept with its prepared statement): mask it?
//!     type ColumnPlan = ();
//!     fn on_row_description(&self, _: &Context<'_, String>, mask: &bool, columns: &[Column])
//!         -> Vec<(usize, ())> {
//!         columns.iter().filter(|_| *mask).map(|c| (c.index, ())).collect()
//!     }
//!     fn transform_field(&self, _: &Context<'_, String>, _: &bool, _: &Column, _: &(), _: &[u8])
//!         -> FieldValue { FieldValue::Null }
//! }
//!
//! #[async_trait]
//! impl Hook for Guard { // the driver awaits these
//!     async fn authenticate(&self, _: SessionId, startup: &StartupParams, token: &str)
//!         -> Result<Authenticated<String>, Rejection> {
//!         if token != "let-me-in" { return Err(Rejection::InvalidCredential("bad token".into())) }
//!         Ok(Authenticated { principal: startup.user().into(), backend: self.backend.clone() })
//!     }
//!     async fn on_query(&self, _: &Context<'_, String>, sql: &str) -> Verdict<bool> {
//!         let sql = sql.to_lowercase();
//!         if sql.contains("drop ") { return Verdict::Deny("no DROP through this proxy".into()) }
//!         Verdict::Forward(sql.contains("ssn"))
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let addr = BackendAddr::Tcp { host: "127.0.0.1".into(), port: 5432 };
//!     let backend = BackendTarget { addr, database: "app".into(), user: "app".into(),
//!         password: "from-vault".into(), tls: BackendTls::Disable, allow: Default::default() };
//!     let proxy = Proxy::new(Arc::new(Guard { backend }), ProxyConfig::default());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:6543").await?;
//!     proxy.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
//! }
//! ```
//!
//! # Features
//!
//! - `tokio` (default): the [`Proxy`] driver (tokio, tokio-rustls). Without
//!   it the crate is the sans-IO core only.
//!
//! # Limits
//!
//! Frame sizes are checked against [`Limits`] before anything is allocated.
//! Every frontend and backend message is read and written by one module on
//! pgwire's message types: bodies are decoded into them with one
//! bounds-checked reader (pgwire's own decoders panic on a short body,
//! accept trailing bytes and read text lossily, so they never see untrusted
//! bytes) and encoded by pgwire. A body that is not exactly one well-formed
//! message is an error, never a panic; text and names that are not UTF-8
//! are refused: in an otherwise well-formed Query, Parse, Bind, Describe,
//! Close or Execute with PostgreSQL's own answer (22021, the session goes
//! on), any other frame with 08P01 (the session ends). Frames forwarded unchanged go out byte for
//! byte.
#![deny(missing_docs)]

mod binding;
#[cfg(feature = "tokio")]
mod driver;
mod error;
mod hook;
mod messages;
mod session;
mod startup;

pub use async_trait::async_trait;
#[cfg(feature = "tokio")]
pub use driver::{Proxy, ProxyConfig};
pub use error::{CodecError, SessionError};
pub use hook::{
    Allowances, Authenticated, BackendAddr, BackendTarget, BackendTls, Column, CommandId, Context,
    Decision, DecisionFuture, Event, Execution, FieldValue, Format, Held, Hold, HoldId, Hook,
    ParseVerdict, RefusedBy, Rejection, RowLimit, SessionId, StartupParams, TextKind, Transform,
    Verdict,
};
pub use messages::Limits;
pub use session::{CancelKey, HookRequest, Output, Session, SessionConfig};

/// The `tls-server-end-point` channel binding data (RFC 5929) of a DER
/// server certificate, as the sessions bind SCRAM-SHA-256-PLUS to it: the
/// certificate's hash with the hash of its signature algorithm (SHA-256 for
/// MD5 and SHA-1). `None` when the certificate does not parse or its
/// algorithm has no hash (Ed25519, RSASSA-PSS).
pub fn tls_server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    binding::server_end_point(certificate)
}

/// Entry points for the fuzz targets; not part of the supported API.
#[doc(hidden)]
pub mod internal {
    use std::sync::Arc;
    use std::time::Instant;

    use crate::{
        Authenticated, BackendAddr, BackendTarget, BackendTls, CancelKey, Column, Context,
        FieldValue, Output, Rejection, Session, SessionConfig, SessionId, Transform, Verdict,
    };

    /// Runs the frame readers and every body reader on arbitrary bytes.
    pub fn fuzz_codec(data: &[u8]) {
        let limits = crate::Limits::default();
        let mut buf = bytes::BytesMut::from(data);
        while let Ok(Some(frame)) = crate::messages::read_frame(&mut buf, limits.max_client_frame) {
            decode_all(frame.body());
        }
        let mut buf = bytes::BytesMut::from(data);
        if let Ok(Some(frame)) = crate::messages::read_startup(&mut buf, limits.max_startup) {
            decode_all(frame.body());
        }
    }

    /// Runs every message decoder on one body.
    pub fn decode_all(body: &[u8]) {
        use crate::messages::backend::*;
        use crate::messages::decode;
        use crate::messages::frontend::*;
        let _ = decode::<SslRequest>(body);
        let _ = decode::<GssEncRequest>(body);
        let _ = decode::<CancelRequest>(body);
        let _ = decode::<Startup>(body);
        let _ = decode::<Password>(body);
        let _ = decode::<SASLInitialResponse>(body);
        let _ = decode::<SASLResponse>(body);
        let _ = decode::<Query>(body);
        let _ = decode::<Parse>(body);
        let _ = decode::<Bind>(body);
        let _ = decode::<Describe>(body);
        let _ = decode::<Close>(body);
        let _ = decode::<Execute>(body);
        let _ = decode::<CopyData>(body);
        let _ = decode::<CopyFail>(body);
        let _ = decode::<Sync>(body);
        let _ = decode::<Authentication>(body);
        let _ = decode::<BackendKeyData>(body);
        let _ = decode::<ParameterStatus>(body);
        let _ = decode::<ReadyForQuery>(body);
        let _ = decode::<RowDescription>(body);
        let _ = decode::<DataRow>(body);
        let _ = decode::<CommandComplete>(body);
        let _ = decode::<ErrorResponse>(body);
        let _ = decode::<NoticeResponse>(body);
        let _ = decode::<NotificationResponse>(body);
        let _ = decode::<ParameterDescription>(body);
        let _ = decode::<CopyInResponse>(body);
        let _ = decode::<CopyBothResponse>(body);
        let _ = decode::<NegotiateProtocolVersion>(body);
        let _ = decode::<ParseComplete>(body);
        let _ = columns(body);
        let _ = split_data_row(body);
        let _ = parse_fields(b'E', body);
        let _ = parameter_status(body);
        let _ = notification(body);
    }

    struct FuzzHook;

    impl Transform for FuzzHook {
        type Principal = ();
        type Plan = ();
        type ColumnPlan = ();
        fn on_row_description(
            &self,
            _: &Context<'_, ()>,
            _: &(),
            columns: &[Column],
        ) -> Vec<(usize, ())> {
            (0..columns.len()).map(|i| (i, ())).collect()
        }
        fn transform_field(
            &self,
            _: &Context<'_, ()>,
            _: &(),
            _: &Column,
            _: &(),
            value: &[u8],
        ) -> FieldValue {
            FieldValue::Replace(value.to_ascii_uppercase())
        }
    }

    /// Drives a session with arbitrary client and backend bytes. With
    /// `ready`, the session is first logged in (cleartext backend) and every
    /// client command is forwarded.
    pub fn fuzz_session(client: &[u8], backend: &[u8], ready: bool) {
        let now = Instant::now();
        let config = SessionConfig {
            loopback: true,
            ..SessionConfig::default()
        };
        let key = CancelKey { pid: 1, secret: 1 };
        let mut s = Session::new(SessionId(1), config, Arc::new(FuzzHook), key, now);
        if ready {
            s.handle_client_data(now, b"\0\0\0\x10\0\x03\0\0user\0u\0\0");
            s.handle_client_data(now, b"p\0\0\0\x06t\0");
            let allow = crate::Allowances {
                backend_trust: true,
                ..Default::default()
            };
            let target = BackendTarget {
                addr: BackendAddr::Tcp {
                    host: String::new(),
                    port: 0,
                },
                database: "d".into(),
                user: "u".into(),
                password: "p".into(),
                tls: BackendTls::Disable,
                allow,
            };
            s.handle_authenticated(
                now,
                Ok(Authenticated {
                    principal: (),
                    backend: target,
                }),
            );
            s.handle_backend_connected(now);
            s.handle_backend_data(now, b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I");
        }
        s.handle_client_data(now, client);
        for _ in 0..64 {
            let mut answered = false;
            while let Some(out) = s.poll() {
                if let Output::Request(_) = out {
                    answered = true;
                    s.handle_verdict(now, Verdict::Forward(()));
                    s.handle_parse_verdict(now, crate::ParseVerdict::Forward(()));
                }
            }
            if !answered {
                break;
            }
        }
        s.handle_backend_data(now, backend);
        while s.poll_client_transmit().is_some() {}
        while s.poll_backend_transmit().is_some() {}
        while s.poll().is_some() {}
    }

    /// Drives a session with a script: any interleaving of client bytes,
    /// backend bytes, hook answers, time, closes and the driver's
    /// callbacks. The script is a sequence of `[op, len_hi, len_lo,
    /// payload...]` steps; `op % 8` picks the step:
    ///
    /// | op | step |
    /// |---|---|
    /// | 0 | client bytes |
    /// | 1 | backend bytes |
    /// | 2 | answer every pending hook request (`payload[0]` picks allow, deny, hold then allow, hold then deny, terminate; its bit 3 picks the backend allowances, its bit 5 backend TLS; its bit 7 first resolves a hold id that is not the session's) |
    /// | 3 | advance time by `payload[0]` seconds and check deadlines |
    /// | 4 | the client closes |
    /// | 5 | the backend closes |
    /// | 6 | the client TLS handshake completed |
    /// | 7 | the backend connection opened (with `payload[0]` bit 6: its TLS handshake completed, the rest of the payload standing for its certificate) |
    ///
    /// It checks that nothing panics, that a Query or Parse reaches the
    /// backend only with a text the hook allowed (or the gateway's own), and
    /// that once the session is closed nothing but a Terminate is sent to
    /// the backend.
    pub fn fuzz_session_script(script: &[u8]) {
        use crate::hook::{Decision, Hold, HoldId};
        let mut now = Instant::now();
        let config = SessionConfig {
            loopback: true,
            tls_available: true,
            ..SessionConfig::default()
        };
        let key = CancelKey { pid: 1, secret: 1 };
        let mut s = Session::new(SessionId(1), config, Arc::new(FuzzHook), key, now);
        let mut requests = Vec::new();
        let mut allowed: Vec<String> = Vec::new();
        let mut holds = 0u64;
        let mut rest = script;
        let mut steps = 0;
        while let [op, hi, lo, tail @ ..] = rest {
            steps += 1;
            if steps > 512 {
                break;
            }
            let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
            let Some((payload, next)) = tail.split_at_checked(len) else {
                break;
            };
            rest = next;
            let choice = payload.first().copied().unwrap_or(0);
            let was_closed = s.is_closed();
            match op % 8 {
                0 => s.handle_client_data(now, payload),
                1 => s.handle_backend_data(now, payload),
                2 => {
                    for req in std::mem::take(&mut requests) {
                        match req {
                            crate::HookRequest::Authenticate { .. } => {
                                let lenient = choice & 8 != 0;
                                let allow = crate::Allowances {
                                    backend_trust: lenient,
                                    backend_md5: lenient,
                                    backend_cleartext: lenient,
                                    drop_unknown_startup_params: lenient,
                                    require_channel_binding: choice & 16 != 0,
                                };
                                let tls = if choice & 32 != 0 {
                                    BackendTls::Require {
                                        server_name: "db".into(),
                                    }
                                } else {
                                    BackendTls::Disable
                                };
                                let backend = BackendTarget {
                                    addr: BackendAddr::Tcp {
                                        host: String::new(),
                                        port: 0,
                                    },
                                    database: "d".into(),
                                    user: "u".into(),
                                    password: "p".into(),
                                    tls,
                                    allow,
                                };
                                let result = if choice % 5 == 1 {
                                    Err(Rejection::InvalidCredential(String::new()))
                                } else if choice == 0xfe {
                                    Err(Rejection::TooManySessions(String::new()))
                                } else {
                                    Ok(Authenticated {
                                        principal: (),
                                        backend,
                                    })
                                };
                                s.handle_authenticated(now, result);
                            }
                            crate::HookRequest::Parse { sql, .. } => {
                                let verdict = match choice % 5 {
                                    1 => crate::ParseVerdict::Deny("no".into()),
                                    4 => crate::ParseVerdict::Terminate("bye".into()),
                                    _ => {
                                        allowed.push(sql);
                                        crate::ParseVerdict::Forward(())
                                    }
                                };
                                s.handle_parse_verdict(now, verdict);
                            }
                            other => {
                                if let crate::HookRequest::Query { sql, .. } = other
                                    && matches!(choice % 5, 0 | 2)
                                {
                                    allowed.push(sql);
                                }
                                holds += 1;
                                let id = HoldId(holds);
                                let verdict = match choice % 5 {
                                    0 => Verdict::Forward(()),
                                    1 => Verdict::Deny("no".into()),
                                    4 => Verdict::Terminate("bye".into()),
                                    _ => Verdict::Hold(
                                        Hold {
                                            notice: "held".into(),
                                            decision: Box::pin(async { Decision::Forward }),
                                        },
                                        (),
                                    ),
                                };
                                let (verdict, decision) = verdict.detach(id);
                                s.handle_verdict(now, verdict);
                                if decision.is_some() {
                                    if choice & 0x80 != 0 {
                                        // A stale or foreign hold id is ignored.
                                        s.handle_hold_resolved(
                                            now,
                                            HoldId(holds + 1),
                                            Decision::Forward,
                                        );
                                    }
                                    let decision = if choice % 5 == 2 {
                                        Decision::Forward
                                    } else {
                                        Decision::Deny("no".into())
                                    };
                                    s.handle_hold_resolved(now, id, decision);
                                }
                            }
                        }
                    }
                }
                3 => {
                    now += std::time::Duration::from_secs(u64::from(choice));
                    s.handle_timeout(now);
                }
                4 => s.handle_client_closed(),
                5 => s.handle_backend_closed(),
                6 => s.handle_client_tls(now),
                _ => {
                    // The payload after a choice with bit 6 set stands for
                    // the backend's TLS certificate.
                    if choice & 0x40 != 0 {
                        s.handle_backend_tls(payload.get(1..).unwrap_or_default());
                    }
                    s.handle_backend_connected(now)
                }
            }
            while s.poll_client_transmit().is_some() {}
            while let Some(b) = s.poll_backend_transmit() {
                assert!(
                    !was_closed || b.first() == Some(&b'X'),
                    "bytes sent to the backend after the session closed"
                );
                let text = match b.first() {
                    Some(b'Q') => b.get(5..).and_then(|t| t.split(|&c| c == 0).next()),
                    Some(b'P') => b.get(5..).and_then(|t| t.split(|&c| c == 0).nth(1)),
                    _ => None,
                };
                if let Some(text) = text {
                    let text = String::from_utf8_lossy(text);
                    assert!(
                        text.contains("$portcullis$") || allowed.iter().any(|a| *a == text),
                        "a statement the hook never allowed reached the backend: {text}"
                    );
                }
            }
            while let Some(out) = s.poll() {
                if let Output::Request(r) = out {
                    requests.push(r);
                }
            }
        }
    }
}
