//! The tokio driver: a listener and one task per connection pumping a [`Session`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::hook::{
    Authenticated, BackendAddr, BackendTls, Context, Decision, Execution, HoldId, Hook,
    ParseVerdict, Rejection, SessionId, Verdict,
};
use crate::session::{CancelKey, HookRequest, Output, Session, SessionConfig};

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
type BoxStream = Box<dyn Stream>;

/// How the proxy listens and connects.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Session behaviour (limits, timeouts, TLS requirement). `tls_available`
    /// and `loopback` are filled in from the listener.
    pub session: SessionConfig,
    /// TLS towards clients: with a certificate, SSLRequest is accepted.
    pub client_tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS towards backends whose target asks for it.
    pub backend_tls: Option<Arc<rustls::ClientConfig>>,
    /// Time to connect to a backend.
    pub connect_timeout: Duration,
    /// After shutdown is asked, how long sessions may take to reach a safe point.
    pub shutdown_grace: Duration,
    /// How long one write to a client or backend may block (a peer that
    /// stops reading); the session then ends and its backend connection
    /// is closed.
    pub write_timeout: Duration,
    /// The most client connections served at once, `None` for no limit.
    /// A connection over the limit gets FATAL 53300 and is closed.
    pub max_sessions: Option<usize>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            session: SessionConfig::default(),
            client_tls: None,
            backend_tls: None,
            connect_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            max_sessions: Some(1000),
        }
    }
}

/// The PostgreSQL proxy: accepts clients and runs one session task each.
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use portcullis_pg::{Hook, Proxy, ProxyConfig};
///
/// async fn run<H: Hook>(hook: H) -> std::io::Result<()> {
///     let listener = tokio::net::TcpListener::bind("127.0.0.1:6543").await?;
///     let proxy = Proxy::new(Arc::new(hook), ProxyConfig::default());
///     proxy.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
/// }
/// # fn main() {}
/// ```
pub struct Proxy<H: Hook> {
    inner: Arc<Inner<H>>,
}

impl<H: Hook> std::fmt::Debug for Proxy<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner<H: Hook> {
    hook: Arc<H>,
    config: ProxyConfig,
    next_id: AtomicU64,
    /// Live sessions by the cancel secret the gateway gave them (unique
    /// among live sessions), with the backend process id the client was
    /// told once the backend announced it.
    cancels: Mutex<HashMap<i32, CancelEntry>>,
}

/// Where a CancelRequest with one secret goes.
struct CancelEntry {
    /// The backend's process id, once known: until then no cancel matches.
    pid: Option<i32>,
    tx: mpsc::UnboundedSender<()>,
}

type HookFuture<P, Q> = Pin<Box<dyn Future<Output = Answer<P, Q>> + Send>>;

enum Answer<P, Q> {
    Auth(Result<Authenticated<P>, Rejection>),
    Verdict(Verdict<Q>),
    Parse(ParseVerdict<Q>),
    /// The decision on a hold, kept here (never in the session) under its id.
    Decision(HoldId, Decision),
    /// The hook could not be asked: refuse the command.
    Refuse(String),
}

impl<H: Hook> Proxy<H> {
    /// A proxy calling `hook`.
    pub fn new(hook: Arc<H>, config: ProxyConfig) -> Self {
        Proxy {
            inner: Arc::new(Inner {
                hook,
                config,
                next_id: AtomicU64::new(1),
                cancels: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Accepts clients on `listener` until `shutdown` resolves, then asks
    /// every session to end at its next safe point and waits for them (up
    /// to the grace period).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let loopback = listener.local_addr()?.ip().is_loopback();
        let slots = self
            .inner
            .config
            .max_sessions
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (tcp, _) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let permit = match &slots {
                        None => None,
                        Some(s) => match s.clone().try_acquire_owned() {
                            Ok(p) => Some(p),
                            Err(_) => {
                                let timeout = self.inner.config.write_timeout;
                                let limit = self.inner.config.max_sessions.unwrap_or(0);
                                tasks.spawn(refuse_over_limit(tcp, limit, timeout));
                                continue;
                            }
                        },
                    };
                    let inner = self.inner.clone();
                    let stop = stop_rx.clone();
                    tasks.spawn(async move {
                        inner.run(Box::new(tcp), loopback, stop).await;
                        drop(permit);
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let grace = self.inner.config.shutdown_grace;
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        tasks.abort_all();
        Ok(())
    }
}

/// Tells a client over the session limit so (which limit, and its value),
/// and closes its connection.
async fn refuse_over_limit(mut tcp: TcpStream, limit: usize, timeout: Duration) {
    let msg = crate::session::over_session_limit(limit);
    let _ = tokio::time::timeout(timeout, async {
        tcp.write_all(&msg).await?;
        tcp.shutdown().await
    })
    .await;
}

/// Writes with a deadline: a peer that stops reading ends the session.
async fn write_bounded(
    s: &mut BoxStream,
    timeout: Duration,
    next: impl FnMut() -> Option<bytes::Bytes>,
) -> io::Result<()> {
    tokio::time::timeout(timeout, write_out(s, next))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timeout"))?
}

fn random_secret() -> i32 {
    let mut b = [0u8; 8];
    let random = rustls::crypto::ring::default_provider().secure_random;
    if random.fill(&mut b).is_err() {
        // Fall back to a per-process keyed hash of the time.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        b = h.finish().to_be_bytes();
    }
    let [_, _, _, _, b0, b1, b2, b3] = b;
    i32::from_be_bytes([b0, b1, b2, b3])
}

async fn read_some(s: &mut Option<BoxStream>, buf: &mut [u8]) -> io::Result<usize> {
    match s {
        Some(s) => s.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn next_answer<P, Q>(f: &mut Option<HookFuture<P, Q>>) -> Answer<P, Q> {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn until_ended(f: &mut Option<Pin<Box<dyn Future<Output = String> + Send>>>) -> String {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn write_out(
    s: &mut BoxStream,
    mut next: impl FnMut() -> Option<bytes::Bytes>,
) -> io::Result<()> {
    let mut batch: Vec<u8> = Vec::new();
    while let Some(b) = next() {
        if b.len() >= 64 * 1024 {
            if !batch.is_empty() {
                s.write_all(&batch).await?;
                batch.clear();
            }
            s.write_all(&b).await?;
        } else {
            batch.extend_from_slice(&b);
            if batch.len() >= 64 * 1024 {
                s.write_all(&batch).await?;
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        s.write_all(&batch).await?;
    }
    s.flush().await
}

/// A plain connection to the backend; the session negotiates TLS on it
/// when its target asks ([`Output::StartBackendTls`]).
async fn connect_backend(addr: &BackendAddr) -> io::Result<BoxStream> {
    match addr {
        BackendAddr::Tcp { host, port } => {
            let tcp = TcpStream::connect((host.as_str(), *port)).await?;
            let _ = tcp.set_nodelay(true);
            Ok(Box::new(tcp))
        }
        #[cfg(unix)]
        BackendAddr::Unix(path) => Ok(Box::new(tokio::net::UnixStream::connect(path).await?)),
        #[cfg(not(unix))]
        BackendAddr::Unix(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "unix sockets are not available here",
        )),
    }
}

/// The TLS handshake with the backend, once it accepted the session's
/// SSLRequest: the stream, and the server's certificate (DER, empty when
/// it sent none).
async fn backend_tls(
    stream: BoxStream,
    server_name: String,
    config: Option<&Arc<rustls::ClientConfig>>,
) -> io::Result<(BoxStream, Vec<u8>)> {
    let Some(config) = config else {
        return Err(io::Error::other(
            "backend TLS is required but the proxy has no client TLS configuration",
        ));
    };
    let name = rustls::pki_types::ServerName::try_from(server_name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await?;
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    Ok((Box::new(tls), certificate))
}

async fn send_cancel(addr: BackendAddr, key: CancelKey) -> io::Result<()> {
    let mut s = connect_backend(&addr).await?;
    s.write_all(&key.to_request()).await?;
    s.flush().await?;
    // The server closes the connection once it has read the request.
    let mut sink = [0u8; 16];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut sink)).await;
    Ok(())
}

impl<H: Hook> Inner<H> {
    fn request_future(
        &self,
        session: &Session<H>,
        req: HookRequest<H::Plan>,
    ) -> HookFuture<H::Principal, H::Plan> {
        let hook = self.hook.clone();
        let id = session.id();
        let principal = session.principal().cloned();
        Box::pin(async move {
            let command = req.command();
            match req {
                HookRequest::Authenticate {
                    startup,
                    credential,
                } => Answer::Auth(hook.authenticate(id, &startup, &credential).await),
                other => {
                    let Some(p) = principal else {
                        return Answer::Refuse("no authenticated principal".into());
                    };
                    let cx = Context {
                        session: id,
                        command,
                        principal: p.as_ref(),
                    };
                    match other {
                        HookRequest::Query { sql, .. } => {
                            Answer::Verdict(hook.on_query(&cx, &sql).await)
                        }
                        HookRequest::Parse { statement, sql, .. } => {
                            Answer::Parse(hook.on_parse(&cx, &statement, &sql).await)
                        }
                        HookRequest::Execute {
                            portal,
                            statement,
                            plan,
                            sql,
                            params,
                            ..
                        } => {
                            let execution = Execution {
                                portal: &portal,
                                statement: &statement,
                                plan: plan.as_deref(),
                                sql: &sql,
                                params: &params,
                            };
                            Answer::Verdict(hook.on_execute(&cx, execution).await)
                        }
                        HookRequest::Authenticate { .. } => Answer::Refuse("unreachable".into()),
                    }
                }
            }
        })
    }

    async fn run(self: Arc<Self>, tcp: BoxStream, loopback: bool, mut stop: watch::Receiver<bool>) {
        let id = SessionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (cancel_tx, mut cancel_rx) = mpsc::unbounded_channel();
        let secret = {
            let mut map = self
                .cancels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut secret = random_secret();
            while map.contains_key(&secret) {
                secret = random_secret();
            }
            map.insert(
                secret,
                CancelEntry {
                    pid: None,
                    tx: cancel_tx,
                },
            );
            secret
        };
        // The process id is the backend's, filled in by the session.
        let key = CancelKey { pid: 0, secret };
        let mut cfg = self.config.session.clone();
        cfg.tls_available = self.config.client_tls.is_some();
        cfg.loopback = loopback;
        let mut session = Session::new(id, cfg, self.hook.clone(), key, Instant::now());
        let result = self
            .pump(&mut session, tcp, &mut cancel_rx, &mut stop)
            .await;
        if let Err(e) = result {
            tracing::debug!(session = %id, error = %e, "session io error");
        }
        session.handle_client_closed();
        while let Some(out) = session.poll() {
            if let Output::Event(e, plan) = out {
                self.hook.on_event(&e, plan.as_deref());
            }
        }
        self.cancels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&secret);
    }

    /// Makes a session cancellable with the key its client was given, once
    /// the backend's process id is known.
    fn register_client_key(&self, key: CancelKey) {
        if let Some(entry) = self
            .cancels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(&key.secret)
        {
            entry.pid = Some(key.pid);
        }
    }

    async fn pump(
        &self,
        session: &mut Session<H>,
        client: BoxStream,
        cancel_rx: &mut mpsc::UnboundedReceiver<()>,
        stop: &mut watch::Receiver<bool>,
    ) -> io::Result<()> {
        let mut client = Some(client);
        let mut backend: Option<BoxStream> = None;
        let mut backend_addr: Option<BackendAddr> = None;
        let mut hook_future: Option<HookFuture<H::Principal, H::Plan>> = None;
        let mut holds = 0u64;
        let mut cbuf = vec![0u8; 16 * 1024];
        let mut bbuf = vec![0u8; 64 * 1024];
        let mut stopping = false;
        let mut registered = false;
        let mut ended = None;
        loop {
            while let Some(out) = session.poll() {
                match out {
                    Output::Event(e, plan) => self.hook.on_event(&e, plan.as_deref()),
                    Output::Request(req) => hook_future = Some(self.request_future(session, req)),
                    Output::StartClientTls => {
                        let (Some(mut c), Some(tls)) =
                            (client.take(), self.config.client_tls.clone())
                        else {
                            return Ok(());
                        };
                        write_bounded(&mut c, self.config.write_timeout, || {
                            session.poll_client_transmit()
                        })
                        .await?;
                        let accept = tokio_rustls::TlsAcceptor::from(tls).accept(c);
                        let timeout = self.config.session.handshake_timeout;
                        let tls = tokio::time::timeout(timeout, accept).await.map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "tls handshake timeout")
                        })??;
                        client = Some(Box::new(tls));
                        session.handle_client_tls(Instant::now());
                    }
                    Output::ConnectBackend(target) => {
                        let wants_tls = matches!(target.tls, BackendTls::Require { .. });
                        if wants_tls && self.config.backend_tls.is_none() {
                            session.handle_backend_connect_failed(
                                "backend TLS is required but the proxy has no client TLS configuration",
                            );
                            continue;
                        }
                        let connect = connect_backend(&target.addr);
                        match tokio::time::timeout(self.config.connect_timeout, connect).await {
                            Ok(Ok(s)) => {
                                backend = Some(s);
                                backend_addr = Some(target.addr.clone());
                                session.handle_backend_connected(Instant::now());
                            }
                            Ok(Err(e)) => session.handle_backend_connect_failed(&e.to_string()),
                            Err(_) => session.handle_backend_connect_failed("connect timeout"),
                        }
                    }
                    Output::StartBackendTls { server_name } => {
                        let Some(mut b) = backend.take() else {
                            session.handle_backend_connect_failed("no backend connection");
                            continue;
                        };
                        write_bounded(&mut b, self.config.write_timeout, || {
                            session.poll_backend_transmit()
                        })
                        .await?;
                        let handshake =
                            backend_tls(b, server_name, self.config.backend_tls.as_ref());
                        match tokio::time::timeout(self.config.connect_timeout, handshake).await {
                            Ok(Ok((s, certificate))) => {
                                backend = Some(s);
                                session.handle_backend_tls(&certificate);
                            }
                            Ok(Err(e)) => session.handle_backend_connect_failed(&e.to_string()),
                            Err(_) => session
                                .handle_backend_connect_failed("backend tls handshake timeout"),
                        }
                    }
                    Output::CancelBackend => {
                        // Awaited here: no client message may reach the
                        // backend before its statement has been signalled.
                        if let (Some(key), Some(addr)) =
                            (session.backend_key(), backend_addr.clone())
                        {
                            let wait = self.config.connect_timeout + Duration::from_secs(5);
                            match tokio::time::timeout(wait, send_cancel(addr, key)).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "cancel request to the backend failed")
                                }
                                Err(_) => {
                                    tracing::debug!("cancel request to the backend timed out")
                                }
                            }
                        }
                        session.handle_backend_cancel_sent(Instant::now());
                    }
                    Output::Cancel(key) => {
                        // Only the exact pair a client was given: a known
                        // process id with any other secret matches nothing.
                        let target = self
                            .cancels
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get(&key.secret)
                            .filter(|e| e.pid == Some(key.pid))
                            .map(|e| e.tx.clone());
                        if let Some(tx) = target {
                            let _ = tx.send(());
                        }
                    }
                }
            }
            if ended.is_none()
                && let Some(p) = session.principal()
            {
                ended = Some(self.hook.ended(p));
            }
            // Before the client can have read its key.
            if !registered && let Some(key) = session.client_key() {
                self.register_client_key(key);
                registered = true;
            }
            let timeout = self.config.write_timeout;
            if let Some(b) = backend.as_mut() {
                write_bounded(b, timeout, || session.poll_backend_transmit()).await?;
            }
            if let Some(c) = client.as_mut() {
                write_bounded(c, timeout, || session.poll_client_transmit()).await?;
            }
            if session.is_closed() {
                if let Some(c) = client.as_mut() {
                    let _ = tokio::time::timeout(self.config.write_timeout, c.shutdown()).await;
                }
                return Ok(());
            }
            if stopping && session.is_idle() {
                session.handle_shutdown();
                continue;
            }
            let want_client = session.wants_client_input();
            let want_backend = session.wants_backend_input();
            let deadline = session.poll_timeout();
            tokio::select! {
                r = read_some(&mut client, &mut cbuf), if want_client => {
                    match r {
                        Ok(0) | Err(_) => {
                            // The session says goodbye to the backend.
                            session.handle_client_closed();
                            if let Some(b) = backend.as_mut() {
                                let _ = write_bounded(b, timeout, || session.poll_backend_transmit()).await;
                            }
                            return Ok(());
                        }
                        Ok(n) => session.handle_client_data(Instant::now(), cbuf.get(..n).unwrap_or_default()),
                    }
                }
                r = read_some(&mut backend, &mut bbuf), if want_backend => {
                    match r {
                        Ok(0) | Err(_) => session.handle_backend_closed(),
                        Ok(n) => session.handle_backend_data(Instant::now(), bbuf.get(..n).unwrap_or_default()),
                    }
                }
                answer = next_answer(&mut hook_future) => {
                    hook_future = None;
                    let now = Instant::now();
                    match answer {
                        Answer::Auth(r) => session.handle_authenticated(now, r),
                        Answer::Verdict(v) => {
                            holds += 1;
                            let id = HoldId(holds);
                            let (verdict, decision) = v.detach(id);
                            session.handle_verdict(now, verdict);
                            if let Some(decision) = decision {
                                hook_future = Some(Box::pin(async move { Answer::Decision(id, decision.await) }));
                            }
                        }
                        Answer::Parse(v) => session.handle_parse_verdict(now, v),
                        Answer::Decision(id, d) => session.handle_hold_resolved(now, id, d),
                        Answer::Refuse(reason) => session.handle_verdict(now, Verdict::Deny(reason)),
                    }
                }
                Some(()) = cancel_rx.recv() => {
                    if session.holding().is_some() {
                        hook_future = None;
                        session.handle_hold_abandoned(Instant::now(), true);
                    } else if let (Some(key), Some(addr)) = (session.backend_key(), backend_addr.clone()) {
                        tokio::spawn(async move {
                            if let Err(e) = send_cancel(addr, key).await {
                                tracing::debug!(error = %e, "cancel request to the backend failed");
                            }
                        });
                    }
                }
                reason = until_ended(&mut ended) => {
                    hook_future = None;
                    session.handle_ended(&reason);
                }
                () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
                r = stop.changed(), if !stopping => {
                    if r.is_err() || *stop.borrow() {
                        stopping = true;
                    }
                }
            }
        }
    }
}
