//! TLS for the catalog connection: tokio-postgres's TLS traits over
//! tokio-rustls, with the same client configuration as the sessions'
//! backend connections, so that the catalog is read exactly where and how
//! the sessions connect.
//!
//! Hand-written rather than taken from a crate: it is the few lines that
//! adapt one rustls stream to tokio-postgres's traits, with the gateway's
//! own `ClientConfig`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// Connects with TLS, checking the server's certificate against this
/// configuration and the name given.
#[derive(Clone)]
pub(crate) struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    server_name: String,
    /// The backend authentication accepted over the connection (any when
    /// `None`).
    allow: Option<portcullis_pg::Allowances>,
}

impl RustlsConnect {
    pub(crate) fn new(config: Arc<rustls::ClientConfig>, server_name: &str) -> RustlsConnect {
        RustlsConnect {
            config,
            server_name: server_name.to_owned(),
            allow: None,
        }
    }

    /// Holds the backend's authentication to `allow` (see [`AuthGuard`]).
    pub(crate) fn checking(mut self, allow: portcullis_pg::Allowances) -> RustlsConnect {
        self.allow = Some(allow);
        self
    }
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    /// The name to check is the configured one, not the host tokio-postgres
    /// dials (the same rule as the sessions' connections).
    fn make_tls_connect(&mut self, _domain: &str) -> Result<RustlsConnect, io::Error> {
        Ok(self.clone())
    }
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = rustls::pki_types::ServerName::try_from(self.server_name.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await?;
            // The binding data of the certificate the handshake verified,
            // as the sessions compute it.
            let end_point = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| portcullis_pg::tls_server_end_point(cert));
            let guard = match &self.allow {
                Some(allow) => AuthGuard::new(tls, allow),
                None => AuthGuard::passing(tls),
            };
            Ok(RustlsStream { guard, end_point })
        })
    }
}

/// A TLS stream to the backend, its authentication held to what the
/// connection allows.
pub(crate) struct RustlsStream<S> {
    guard: AuthGuard<tokio_rustls::client::TlsStream<S>>,
    /// The `tls-server-end-point` channel binding data of the server's
    /// certificate (`None` when its algorithm has no hash).
    end_point: Option<Vec<u8>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.guard).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.guard).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.guard).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.guard).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// The server certificate's binding, as the sessions' backend
    /// connections use it: SCRAM-SHA-256-PLUS when the backend offers it
    /// (and only that under `channel_binding = "require"`, which the
    /// catalog's connection configuration then says).
    fn channel_binding(&self) -> ChannelBinding {
        match &self.end_point {
            Some(data) => ChannelBinding::tls_server_end_point(data.clone()),
            None => ChannelBinding::none(),
        }
    }
}

/// Holds the gateway's own backend connections (catalog, `discover`) to the
/// authentication the sessions accept ([`portcullis_pg::Allowances`]):
/// SCRAM-SHA-256 unless the connection allows more. tokio-postgres answers
/// any method the server asks for, so this reads the backend's messages as
/// they pass, until authentication is over, and fails the read when the
/// server asks for a method that is not allowed (cleartext, MD5, Kerberos,
/// GSS, SSPI) or says AuthenticationOk without asking for a password
/// (trust).
///
/// Hand-written: tokio-postgres has no setting for it (its channel-binding
/// `Require` also refuses SCRAM without `-PLUS`, which the sessions accept
/// unless the connection says `channel_binding = "require"`; then the
/// catalog's connection sets it too).
pub(crate) struct AuthGuard<S> {
    inner: S,
    check: AuthCheck,
}

impl<S> AuthGuard<S> {
    /// Checks nothing.
    pub(crate) fn passing(inner: S) -> AuthGuard<S> {
        let mut guard = AuthGuard::new(inner, &portcullis_pg::Allowances::default());
        guard.check.done = true;
        guard
    }

    pub(crate) fn new(inner: S, allow: &portcullis_pg::Allowances) -> AuthGuard<S> {
        AuthGuard {
            inner,
            check: AuthCheck {
                cleartext: allow.backend_cleartext,
                md5: allow.backend_md5,
                trust: allow.backend_trust,
                asked: false,
                done: false,
                head: [0; 9],
                have: 0,
                skip: 0,
            },
        }
    }
}

/// The state of the check: the header of the backend message being read
/// (type, length and, for an authentication request, its code), or how
/// much of its body is left to pass.
struct AuthCheck {
    cleartext: bool,
    md5: bool,
    trust: bool,
    asked: bool,
    done: bool,
    head: [u8; 9],
    have: usize,
    skip: usize,
}

impl AuthCheck {
    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !self.done && !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                bytes = bytes.get(n..).unwrap_or_default();
                self.skip -= n;
                continue;
            }
            let want = if self.have > 0 && self.head[0] == b'R' {
                9
            } else {
                5
            };
            let n = (want - self.have).min(bytes.len());
            let (take, rest) = bytes.split_at(n);
            if let Some(dst) = self.head.get_mut(self.have..self.have + n) {
                dst.copy_from_slice(take);
            }
            self.have += n;
            bytes = rest;
            if self.have < want || (want == 5 && self.head[0] == b'R') {
                continue;
            }
            let [kind, a, b, c, d, ..] = self.head;
            let len = i32::from_be_bytes([a, b, c, d]);
            let header = if kind == b'R' { 8 } else { 4 };
            let body = usize::try_from(len)
                .ok()
                .and_then(|l| l.checked_sub(header))
                .ok_or_else(|| format!("the backend sent a malformed message (length {len})"))?;
            self.have = 0;
            self.skip = body;
            if kind != b'R' {
                // An error during authentication is for tokio-postgres to
                // report; anything else passes.
                continue;
            }
            let [.., e, f, g, h] = self.head;
            match i32::from_be_bytes([e, f, g, h]) {
                0 if self.asked || self.trust => self.done = true,
                0 => {
                    return Err(
                        "the backend accepted the connection without authentication \
                                (trust), which this connection does not allow \
                                (allow_backend_auth)"
                            .to_owned(),
                    );
                }
                3 if self.cleartext => self.asked = true,
                3 => {
                    return Err("the backend asked for a cleartext password, which this \
                                connection does not allow (allow_backend_auth)"
                        .to_owned());
                }
                5 if self.md5 => self.asked = true,
                5 => {
                    return Err("the backend asked for MD5 password authentication, which \
                                this connection does not allow (allow_backend_auth)"
                        .to_owned());
                }
                10 => self.asked = true,
                11 | 12 => {}
                code => {
                    return Err(format!(
                        "the backend asked for authentication method {code}, which the \
                         gateway does not use (SCRAM-SHA-256 only)"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = buf.filled().get(before..).unwrap_or_default();
                match this.check.feed(new) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::PermissionDenied, e))),
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn auth(code: i32, body: &[u8]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&(8 + body.len() as i32).to_be_bytes());
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn check(allow: &portcullis_pg::Allowances, bytes: &[u8], chunk: usize) -> Result<(), String> {
        let mut g = AuthGuard::new((), allow);
        for c in bytes.chunks(chunk) {
            g.check.feed(c)?;
        }
        Ok(())
    }

    #[test]
    fn the_guard_reads_split_messages_and_refuses_what_is_not_allowed() {
        let strict = portcullis_pg::Allowances::default();
        let mut scram = auth(10, b"SCRAM-SHA-256\0\0");
        scram.extend(auth(11, b"r=abc"));
        scram.extend(auth(12, b"v=xyz"));
        scram.extend(auth(0, b""));
        // After authentication anything passes, even what looks like a request.
        scram.extend(b"S\0\0\0\x19server_version\x0015.0\0");
        scram.extend(auth(3, b""));
        let cleartext = auth(3, b"");
        let mut md5 = auth(5, b"salt");
        md5.extend(auth(0, b""));
        let trust = auth(0, b"");
        let mut error = b"E\0\0\0\x0cSFATAL\0\0".to_vec();
        error.extend(auth(10, b"SCRAM-SHA-256\0\0"));
        for chunk in [1, 2, 3, 7, 1024] {
            check(&strict, &scram, chunk).unwrap();
            check(&strict, &error, chunk).unwrap();
            assert!(
                check(&strict, &cleartext, chunk)
                    .unwrap_err()
                    .contains("cleartext")
            );
            assert!(check(&strict, &md5, chunk).unwrap_err().contains("MD5"));
            assert!(check(&strict, &trust, chunk).unwrap_err().contains("trust"));
            assert!(
                check(&strict, &auth(7, b""), chunk)
                    .unwrap_err()
                    .contains("method 7")
            );
            assert!(
                check(&strict, b"R\xff\xff\xff\xff\0\0\0\0", chunk)
                    .unwrap_err()
                    .contains("malformed")
            );
        }
        let mut legacy = portcullis_pg::Allowances::default();
        legacy.backend_md5 = true;
        check(&legacy, &md5, 1).unwrap();
        legacy.backend_trust = true;
        check(&legacy, &trust, 1).unwrap();
    }
}
