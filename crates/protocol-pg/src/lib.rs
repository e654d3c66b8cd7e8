//! PostgreSQL wire proxy for Portcullis.
//!
//! This crate terminates a client's PostgreSQL connection, authenticates it
//! with a bearer token, opens its own connection to the real server with
//! credentials the client never sees, and passes every message through a
//! [`Hook`] that can deny, hold or transform it. It knows nothing of policy,
//! masking or audit: the gateway implements the hook.
//!
//! - [`Session`] is the sans-IO core: client bytes, backend bytes and hook
//!   answers go in; bytes for each side, [`HookRequest`]s, [`Event`]s and
//!   the next deadline come out. It reads no clock and opens no socket.
//! - [`Hook`] is the contract with the gateway: `authenticate` (token to a
//!   principal and a [`BackendTarget`]), `on_query`, `on_parse`,
//!   `on_execute` (forward, deny or hold), and the synchronous transforms
//!   `on_row_description`, `transform_field`, `transform_copy`,
//!   `transform_text`, plus `on_event`.
//! - [`Proxy`] (feature `tokio`) listens, runs one task per connection that
//!   pumps a session, handles TLS with rustls, cancel requests, timeouts and
//!   graceful shutdown.
//!
//! What a client sees: the token is asked for with
//! AuthenticationCleartextPassword, only over TLS or on a loopback listener;
//! a denied statement is an ErrorResponse with SQLSTATE 42501 (inside a
//! transaction block the transaction is failed, as a server error would);
//! a held statement gets a NoticeResponse at once and runs when approved;
//! BackendKeyData is issued by the gateway and CancelRequests are mapped to
//! the backend's own key.
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
//! Driving a [`Session`] by hand (what the driver does):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use portcullis_pg::{
//!     async_trait, Authenticated, BackendAddr, BackendTarget, BackendTls, CancelKey, Context,
//!     Hook, HookRequest, Output, Rejection, Session, SessionConfig, SessionId, StartupParams,
//!     Verdict,
//! };
//!
//! struct AllowAll;
//! #[async_trait]
//! impl Hook for AllowAll {
//!     type Principal = ();
//!     type Plan = ();
//!     type ColumnPlan = ();
//!     async fn authenticate(&self, _: SessionId, _: &StartupParams, _: &str)
//!         -> Result<Authenticated<()>, Rejection> { unreachable!() }
//!     async fn on_query(&self, _: &Context<'_, ()>, _: &str) -> Verdict<()> {
//!         Verdict::Forward(())
//!     }
//! }
//!
//! let now = Instant::now();
//! let config = SessionConfig { loopback: true, ..SessionConfig::default() };
//! let key = CancelKey { pid: 1, secret: 2 };
//! let mut s = Session::new(SessionId(1), config, Arc::new(AllowAll), key, now);
//! // StartupMessage for user "me", protocol 3.0.
//! let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
//! startup.extend_from_slice(b"user\0me\0\0");
//! let len = (startup.len() as u32).to_be_bytes();
//! startup[..4].copy_from_slice(&len);
//! s.handle_client_data(now, &startup);
//! // The token is asked for as a cleartext password ('R', code 3).
//! assert_eq!(s.poll_client_transmit().as_deref(), Some(&b"R\0\0\0\x08\0\0\0\x03"[..]));
//! s.handle_client_data(now, b"p\0\0\0\x0atoken\0");
//! let Some(Output::Request(HookRequest::Authenticate { credential, .. })) = s.poll() else {
//!     panic!("expected an authentication request");
//! };
//! assert_eq!(credential, "token");
//! s.handle_authenticated(now, Ok(Authenticated {
//!     principal: (),
//!     backend: BackendTarget {
//!         addr: BackendAddr::Tcp { host: "127.0.0.1".into(), port: 5432 },
//!         database: "app".into(),
//!         user: "app".into(),
//!         password: "injected".into(),
//!         tls: BackendTls::Disable,
//!         allow: Default::default(),
//!     },
//! }));
//! assert!(matches!(s.poll(), Some(Output::ConnectBackend(_))));
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
//! pgwire's decoders are not used on untrusted frames because they index
//! without checking the remaining length; bodies are read with a
//! bounds-checked reader and pgwire's types encode what the gateway sends to
//! the backend (StartupMessage, password and SASL messages).
#![deny(missing_docs)]

mod codec;
#[cfg(feature = "tokio")]
mod driver;
mod error;
mod hook;
mod session;
mod startup;
mod wire;

pub use async_trait::async_trait;
pub use codec::Limits;
#[cfg(feature = "tokio")]
pub use driver::{Proxy, ProxyConfig};
pub use error::{CodecError, SessionError};
pub use hook::{
    Allowances, Authenticated, BackendAddr, BackendTarget, BackendTls, Column, CommandId, Context, Decision,
    Event, Execution, FieldValue, Format, Hold, Hook, ParseVerdict, Rejection, SessionId,
    StartupParams, TextKind, Verdict,
};
pub use session::{CancelKey, DecisionFuture, HookRequest, Output, Session, SessionConfig};

/// Entry points for the fuzz targets; not part of the supported API.
#[doc(hidden)]
pub mod internal {
    use std::sync::Arc;
    use std::time::Instant;

    use crate::{
        Authenticated, BackendAddr, BackendTarget, BackendTls, CancelKey, Column, Context,
        FieldValue, Hook, Output, Rejection, Session, SessionConfig, SessionId, StartupParams,
        Verdict,
    };

    /// Runs the frame readers and every body reader on arbitrary bytes.
    pub fn fuzz_codec(data: &[u8]) {
        let limits = crate::Limits::default();
        let mut buf = bytes::BytesMut::from(data);
        while let Ok(Some(frame)) = crate::codec::read_frame(&mut buf, limits.max_client_frame) {
            crate::session::fuzz_bodies(frame.body());
        }
        let mut buf = bytes::BytesMut::from(data);
        let _ = crate::codec::read_startup(&mut buf, limits.max_startup);
    }

    struct FuzzHook;

    #[async_trait::async_trait]
    impl Hook for FuzzHook {
        type Principal = ();
        type Plan = ();
        type ColumnPlan = ();
        async fn authenticate(
            &self,
            _: SessionId,
            _: &StartupParams,
            _: &str,
        ) -> Result<Authenticated<()>, Rejection> {
            Err(Rejection::InvalidCredential(String::new()))
        }
        async fn on_query(&self, _: &Context<'_, ()>, _: &str) -> Verdict<()> {
            Verdict::Forward(())
        }
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
            let mut allow = crate::Allowances::default();
            allow.backend_trust = true;
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
                    let _ = s.handle_verdict(now, Verdict::Forward(()));
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
}
