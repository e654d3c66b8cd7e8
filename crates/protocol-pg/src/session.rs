//! The sans-IO session: one client connection and its backend connection.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pgwire::messages::startup::{Password, SASLInitialResponse, SASLResponse, Startup};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use crate::codec::{self, Frame, Limits};
use crate::error::{CodecError, SessionError};
use crate::hook::{
    Authenticated, BackendTarget, Column, CommandId, Context, Decision, Event, FieldValue, Format,
    Hook, ParseVerdict, Rejection, SessionId, StartupParams, TextKind, Verdict,
};
use crate::startup;
use crate::wire::{self, Reader, lossy};

/// A statement the gateway sends to make the backend's transaction fail, so
/// that a denied statement leaves the client's transaction failed exactly
/// as a server error would.
const FAIL_TRANSACTION: &str = "DO $portcullis$BEGIN RAISE EXCEPTION 'statement denied by the gateway' USING ERRCODE = '42501'; END$portcullis$";

/// How a [`Session`] behaves; the listener's properties included.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Frame size limits.
    pub limits: Limits,
    /// The listener has a certificate: an SSLRequest is accepted.
    pub tls_available: bool,
    /// Plaintext sessions are refused.
    pub require_tls: bool,
    /// The listener is bound to a loopback address: the bearer token may be
    /// sent without TLS.
    pub loopback: bool,
    /// Time from connection to ready-for-query.
    pub handshake_timeout: Duration,
    /// Time a ready session may stay silent; `None` for no limit.
    pub idle_timeout: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            limits: Limits::default(),
            tls_available: false,
            require_tls: false,
            loopback: false,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: None,
        }
    }
}

/// A cancel key: the process id and secret of a BackendKeyData message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CancelKey {
    /// Process id.
    pub pid: i32,
    /// Secret.
    pub secret: i32,
}

impl CancelKey {
    /// The CancelRequest packet carrying this key, to send on a new
    /// connection to the backend.
    pub fn to_request(&self) -> Bytes {
        wire::cancel_request(self.pid, self.secret)
    }
}

/// An asynchronous question for the hook; answer it with the matching
/// `handle_*` method of [`Session`]. Its `Debug` output redacts the credential.
pub enum HookRequest<P> {
    /// Call [`Hook::authenticate`], then [`Session::handle_authenticated`].
    Authenticate {
        /// The client's startup parameters.
        startup: StartupParams,
        /// The password the client sent (its bearer token).
        credential: String,
    },
    /// Call [`Hook::on_query`], then [`Session::handle_verdict`].
    Query {
        /// The command.
        command: CommandId,
        /// The query text.
        sql: String,
    },
    /// Call [`Hook::on_parse`], then [`Session::handle_parse_verdict`].
    Parse {
        /// The command.
        command: CommandId,
        /// Statement name (empty for the unnamed statement).
        statement: String,
        /// The statement text.
        sql: String,
    },
    /// Call [`Hook::on_execute`], then [`Session::handle_verdict`].
    Execute {
        /// The command (this one execution).
        command: CommandId,
        /// The portal executed.
        portal: String,
        /// The statement the portal was bound to.
        statement: String,
        /// The statement's plan, `None` for a statement no Parse of this
        /// session prepared (SQL `PREPARE`).
        plan: Option<Arc<P>>,
        /// The statement text (`EXECUTE <name>` when the plan is `None`).
        sql: String,
        /// The bound parameter values.
        params: Vec<Option<Bytes>>,
    },
}

impl<P> std::fmt::Debug for HookRequest<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookRequest::Authenticate { startup, .. } => f
                .debug_struct("Authenticate")
                .field("startup", startup)
                .field("credential", &"<redacted>")
                .finish(),
            HookRequest::Query { command, sql } => f
                .debug_struct("Query")
                .field("command", command)
                .field("sql", sql)
                .finish(),
            HookRequest::Parse {
                command,
                statement,
                sql,
            } => f
                .debug_struct("Parse")
                .field("command", command)
                .field("statement", statement)
                .field("sql", sql)
                .finish(),
            HookRequest::Execute {
                command,
                portal,
                statement,
                plan,
                sql,
                params,
            } => f
                .debug_struct("Execute")
                .field("command", command)
                .field("portal", portal)
                .field("statement", statement)
                .field("planned", &plan.is_some())
                .field("sql", sql)
                .field("params", &params.len())
                .finish(),
        }
    }
}

impl<P> HookRequest<P> {
    /// The command this request is about, if any.
    pub fn command(&self) -> Option<CommandId> {
        match self {
            HookRequest::Authenticate { .. } => None,
            HookRequest::Query { command, .. }
            | HookRequest::Parse { command, .. }
            | HookRequest::Execute { command, .. } => Some(*command),
        }
    }
}

/// Something the driver must do, from [`Session::poll`].
pub enum Output<P> {
    /// Ask the hook; answer with the matching `handle_*` method.
    Request(HookRequest<P>),
    /// Pass to [`Hook::on_event`], with the plan of the command it is about.
    Event(Event, Option<Arc<P>>),
    /// After writing the pending client bytes, run a TLS handshake with the
    /// client, then call [`Session::handle_client_tls`].
    StartClientTls,
    /// Connect to this backend, then call [`Session::handle_backend_connected`]
    /// (or [`Session::handle_backend_connect_failed`]).
    ConnectBackend(BackendTarget),
    /// The client sent a CancelRequest with this gateway-issued key; the
    /// session is over. Find the session that issued it.
    Cancel(CancelKey),
}

impl<P> std::fmt::Debug for Output<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Request(r) => f.debug_tuple("Request").field(r).finish(),
            Output::Event(e, plan) => f
                .debug_tuple("Event")
                .field(e)
                .field(&plan.as_ref().map(|_| "plan"))
                .finish(),
            Output::StartClientTls => f.write_str("StartClientTls"),
            Output::ConnectBackend(t) => f.debug_tuple("ConnectBackend").field(t).finish(),
            Output::Cancel(k) => f.debug_tuple("Cancel").field(k).finish(),
        }
    }
}

/// A future resolving to the decision on a held command.
pub type DecisionFuture = Pin<Box<dyn Future<Output = Decision> + Send + 'static>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Startup,
    TlsHandshake,
    Password,
    Authenticating,
    ConnectingBackend,
    BackendAuth,
    BackendStartup,
    Ready,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Startup => "startup",
            Phase::TlsHandshake => "tls handshake",
            Phase::Password => "client authentication",
            Phase::Authenticating => "client authentication",
            Phase::ConnectingBackend => "backend connection",
            Phase::BackendAuth => "backend authentication",
            Phase::BackendStartup => "backend startup",
            Phase::Ready => "query processing",
        }
    }
}

enum Pending<P> {
    Auth,
    Query {
        cmd: CommandId,
        frame: Bytes,
    },
    Parse {
        cmd: CommandId,
        frame: Bytes,
        statement: String,
        sql: Arc<str>,
    },
    Execute {
        cmd: CommandId,
        frame: Bytes,
        portal: String,
        described: bool,
    },
    HeldQuery {
        cmd: CommandId,
        frame: Bytes,
        plan: Arc<P>,
    },
    HeldExecute {
        cmd: CommandId,
        frame: Bytes,
        portal: String,
        described: bool,
        plan: Arc<P>,
    },
    /// A Bind or Execute that names a statement or portal whose creation in
    /// an earlier pipeline (before a Sync) the backend has not confirmed yet.
    Blocked(Frame),
}

/// A prepared statement the backend confirmed (or will, in this pipeline).
struct Stmt<P> {
    sql: Arc<str>,
    plan: Arc<P>,
}

/// What a Bind created: the statement it was bound to, with its plan.
struct PortalInfo<P> {
    statement: String,
    /// `None`: a statement this session never saw parsed (SQL `PREPARE`).
    stmt: Option<Arc<Stmt<P>>>,
    params: Vec<Option<Bytes>>,
}

/// The backend's answer to a Describe of a portal.
#[derive(Clone)]
enum Described {
    Unknown,
    NoData,
    Rows(Arc<Vec<Column>>),
}

struct PortalEntry<P> {
    info: Arc<PortalInfo<P>>,
    described: Described,
}

/// What a message sent to the backend is, and what its reply changes.
enum Kind<P> {
    Query,
    /// `stmt` is installed at ParseComplete; `None` (a gateway's own Parse)
    /// makes the name unknown.
    Parse {
        name: String,
        stmt: Option<Arc<Stmt<P>>>,
    },
    /// `new` is installed at BindComplete; `None` makes the portal unknown.
    Bind {
        portal: String,
        new: Option<Arc<PortalInfo<P>>>,
    },
    DescribeStatement {
        params_seen: bool,
    },
    DescribePortal {
        portal: String,
    },
    Execute {
        portal: String,
    },
    Close {
        statement: bool,
        name: String,
    },
    Sync,
}

impl<P> Kind<P> {
    fn creates(&self) -> bool {
        matches!(
            self,
            Kind::Parse { .. } | Kind::Bind { .. } | Kind::Close { .. }
        )
    }
}

/// A reply the backend owes.
struct Reply<P> {
    kind: Kind<P>,
    cmd: Option<CommandId>,
    plan: Option<Arc<P>>,
    /// Sent by the gateway: its responses are not for the client.
    gateway: bool,
    /// Errors of a gateway message still reach the client.
    forward_errors: bool,
}

/// What the backend owes, one entry per message sent that gets a response,
/// and the gateway's own messages for the client, kept in order.
enum Expect<P> {
    Synthetic(Bytes),
    Backend(Reply<P>),
}

struct ResultState<P, C> {
    columns: Arc<Vec<Column>>,
    chosen: Vec<(usize, C)>,
    plan: Option<Arc<P>>,
}

enum BackendAuth {
    Start,
    Scram(Box<ScramSha256>),
    ScramFinal(Box<ScramSha256>),
    Done,
}

impl std::fmt::Debug for BackendAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendAuth::Start => "Start",
            BackendAuth::Scram(_) => "Scram",
            BackendAuth::ScramFinal(_) => "ScramFinal",
            BackendAuth::Done => "Done",
        })
    }
}

/// One proxied connection, as a state machine.
///
/// Feed it the client's bytes ([`Session::handle_client_data`]), the
/// backend's bytes ([`Session::handle_backend_data`]) and the hook's answers;
/// take out the bytes to write ([`Session::poll_client_transmit`],
/// [`Session::poll_backend_transmit`]), the requests and events
/// ([`Session::poll`]) and the next deadline ([`Session::poll_timeout`]).
/// It performs no IO and reads no clock: time is the `now` argument.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use std::time::Instant;
/// use portcullis_pg::{
///     async_trait, Authenticated, CancelKey, Context, Hook, Rejection, Session, SessionConfig,
///     SessionId, StartupParams, Verdict,
/// };
///
/// struct Nobody;
/// #[async_trait]
/// impl Hook for Nobody {
///     type Principal = ();
///     type Plan = ();
///     type ColumnPlan = ();
///     async fn authenticate(&self, _: SessionId, _: &StartupParams, _: &str)
///         -> Result<Authenticated<()>, Rejection> {
///         Err(Rejection::InvalidCredential("no one gets in".into()))
///     }
///     async fn on_query(&self, _: &Context<'_, ()>, _: &str) -> Verdict<()> {
///         Verdict::Forward(())
///     }
/// }
///
/// let config = SessionConfig { loopback: true, ..SessionConfig::default() };
/// let key = CancelKey { pid: 1, secret: 2 };
/// let mut session = Session::new(SessionId(1), config, Arc::new(Nobody), key, Instant::now());
/// // A GSSENCRequest is declined with a single 'N'.
/// session.handle_client_data(Instant::now(), &[0, 0, 0, 8, 4, 210, 22, 48]);
/// assert_eq!(session.poll_client_transmit().as_deref(), Some(&b"N"[..]));
/// ```
pub struct Session<H: Hook> {
    id: SessionId,
    cfg: SessionConfig,
    hook: Arc<H>,
    gateway_key: CancelKey,
    backend_key: Option<CancelKey>,
    phase: Phase,
    client_tls: bool,
    client_in: BytesMut,
    backend_in: BytesMut,
    to_client: VecDeque<Bytes>,
    to_backend: VecDeque<Bytes>,
    outputs: VecDeque<Output<H::Plan>>,
    startup: StartupParams,
    /// The startup parameters sent to the backend (allow-listed, pinned).
    backend_params: std::collections::BTreeMap<String, String>,
    /// Notices naming the startup parameters dropped, sent after login.
    startup_notices: Vec<Bytes>,
    /// A client statement was sent that may have changed a setting, and the
    /// ReadyForQuery reporting the change has not been read yet.
    unsettled: bool,
    /// `tls-server-end-point` data of the backend's TLS certificate.
    channel_binding: Option<Vec<u8>>,
    principal: Option<Arc<H::Principal>>,
    target: Option<BackendTarget>,
    backend_auth: BackendAuth,
    pending: Option<Pending<H::Plan>>,
    expect: VecDeque<Expect<H::Plan>>,
    /// Prepared statements the backend confirmed.
    statements: HashMap<String, Arc<Stmt<H::Plan>>>,
    /// Portals the backend confirmed.
    portals: HashMap<String, PortalEntry<H::Plan>>,
    /// The gateway refused an extended-protocol message: the client's
    /// messages are discarded up to Sync, as the backend would.
    client_skipping: bool,
    /// The backend failed an extended-protocol message and no Sync is on its
    /// way: it ignores everything up to the next Sync, so nothing is sent.
    backend_ignoring: bool,
    fail_at_sync: bool,
    last_describe_portal: Option<String>,
    tx_status: u8,
    result: Option<ResultState<H::Plan, H::ColumnPlan>>,
    rows: u64,
    bytes: u64,
    copy_out: bool,
    next_command: u64,
    handshake_deadline: Instant,
    last_activity: Instant,
    closing: bool,
    ended: bool,
}

impl<H: Hook> std::fmt::Debug for Session<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("phase", &self.phase)
            .field("tx_status", &(self.tx_status as char))
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl<H: Hook> Session<H> {
    /// A new session for a freshly accepted client connection.
    /// `gateway_key`'s secret is the cancel secret the client will be given;
    /// the process id it is given is the backend's real one (so that
    /// BackendKeyData, NotificationResponse and `pg_backend_pid()` agree),
    /// see [`Session::client_key`].
    pub fn new(
        id: SessionId,
        config: SessionConfig,
        hook: Arc<H>,
        gateway_key: CancelKey,
        now: Instant,
    ) -> Self {
        let handshake_deadline = now + config.handshake_timeout;
        Session {
            id,
            cfg: config,
            hook,
            gateway_key,
            backend_key: None,
            phase: Phase::Startup,
            client_tls: false,
            client_in: BytesMut::new(),
            backend_in: BytesMut::new(),
            to_client: VecDeque::new(),
            to_backend: VecDeque::new(),
            outputs: VecDeque::new(),
            startup: StartupParams::default(),
            backend_params: std::collections::BTreeMap::new(),
            startup_notices: Vec::new(),
            unsettled: false,
            channel_binding: None,
            principal: None,
            target: None,
            backend_auth: BackendAuth::Start,
            pending: None,
            expect: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            client_skipping: false,
            backend_ignoring: false,
            fail_at_sync: false,
            last_describe_portal: None,
            tx_status: b'I',
            result: None,
            rows: 0,
            bytes: 0,
            copy_out: false,
            next_command: 0,
            handshake_deadline,
            last_activity: now,
            closing: false,
            ended: false,
        }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The authenticated principal, once [`Session::handle_authenticated`] accepted one.
    pub fn principal(&self) -> Option<&Arc<H::Principal>> {
        self.principal.as_ref()
    }

    /// The backend's own cancel key, once the backend sent it.
    pub fn backend_key(&self) -> Option<CancelKey> {
        self.backend_key
    }

    /// The cancel key the client was given, once the backend sent its own:
    /// the backend's process id with the gateway's secret. A CancelRequest
    /// is honoured only for exactly this key.
    pub fn client_key(&self) -> Option<CancelKey> {
        self.backend_key.map(|b| CancelKey {
            pid: b.pid,
            secret: self.gateway_key.secret,
        })
    }

    /// Whether a hold is in progress (a decision future is being awaited).
    pub fn is_holding(&self) -> bool {
        matches!(
            self.pending,
            Some(Pending::HeldQuery { .. } | Pending::HeldExecute { .. })
        )
    }

    /// Whether the session is waiting for any hook answer.
    pub fn is_waiting_on_hook(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| !matches!(p, Pending::Blocked(_)))
    }

    /// Whether the session is ready and has nothing in flight (a safe point
    /// for a graceful shutdown).
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Ready
            && self.pending.is_none()
            && self.expect.is_empty()
            && self.client_in.is_empty()
    }

    /// The session is over: write what remains and close both connections.
    pub fn is_closed(&self) -> bool {
        self.closing
    }

    /// Whether the driver should read more client bytes now. False while
    /// the session holds unprocessed client messages beyond a small
    /// allowance (backpressure towards the client).
    pub fn wants_client_input(&self) -> bool {
        !self.closing
            && (self.client_in.len() < 64 * 1024
                || (self.pending.is_none() && self.phase == Phase::Ready))
    }

    /// Whether the driver should read more backend bytes now (false while
    /// bytes for the client are waiting to be written).
    pub fn wants_backend_input(&self) -> bool {
        !self.closing && self.to_client.is_empty()
    }

    /// Next bytes to write to the client.
    pub fn poll_client_transmit(&mut self) -> Option<Bytes> {
        self.to_client.pop_front()
    }

    /// Next bytes to write to the backend.
    pub fn poll_backend_transmit(&mut self) -> Option<Bytes> {
        self.to_backend.pop_front()
    }

    /// Next request, event or action for the driver.
    pub fn poll(&mut self) -> Option<Output<H::Plan>> {
        self.outputs.pop_front()
    }

    /// The next deadline; call [`Session::handle_timeout`] when it passes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closing {
            return None;
        }
        if self.phase != Phase::Ready {
            return Some(self.handshake_deadline);
        }
        self.cfg.idle_timeout.map(|d| self.last_activity + d)
    }

    /// Checks the deadlines against `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closing {
            return;
        }
        if self.phase != Phase::Ready {
            if now >= self.handshake_deadline {
                self.close(
                    Some(wire::fatal(
                        "08006",
                        "terminating connection: the handshake took too long",
                    )),
                    Some(SessionError::Timeout("handshake")),
                );
            }
        } else if let Some(idle) = self.cfg.idle_timeout {
            let busy = self.pending.is_some() || !self.expect.is_empty();
            if busy {
                self.last_activity = now;
            } else if now >= self.last_activity + idle {
                self.close(
                    Some(wire::fatal(
                        "57P05",
                        "terminating connection due to idle-session timeout",
                    )),
                    Some(SessionError::Timeout("idle")),
                );
            }
        }
    }

    /// Bytes received from the client.
    pub fn handle_client_data(&mut self, now: Instant, data: &[u8]) {
        if self.closing {
            return;
        }
        self.last_activity = now;
        self.client_in.extend_from_slice(data);
        self.process_client();
    }

    /// Bytes received from the backend.
    pub fn handle_backend_data(&mut self, now: Instant, data: &[u8]) {
        if self.closing {
            return;
        }
        self.last_activity = now;
        self.backend_in.extend_from_slice(data);
        self.process_backend();
    }

    /// The client closed its connection.
    pub fn handle_client_closed(&mut self) {
        if let Some(Pending::HeldQuery { cmd, .. } | Pending::HeldExecute { cmd, .. }) =
            self.pending
        {
            self.event(Event::HoldAbandoned {
                session: self.id,
                command: cmd,
            });
        }
        self.pending = None;
        let error = if self.closing {
            None
        } else {
            Some("client disconnected".to_string())
        };
        self.closing = true;
        self.end(error);
    }

    /// The backend closed its connection.
    pub fn handle_backend_closed(&mut self) {
        if !self.closing {
            self.close(
                Some(wire::fatal("08006", "the backend closed the connection")),
                Some(SessionError::Refused(
                    "backend closed the connection".into(),
                )),
            );
        }
    }

    /// The driver asks the session to end at a safe point (graceful shutdown).
    pub fn handle_shutdown(&mut self) {
        if !self.closing {
            self.to_backend.push_back(codec::build_frame(b'X', &[]));
            self.close(
                Some(wire::fatal(
                    "57P01",
                    "terminating connection due to administrator command",
                )),
                None,
            );
        }
    }

    /// The TLS handshake with the client completed.
    pub fn handle_client_tls(&mut self, _now: Instant) {
        if self.phase == Phase::TlsHandshake {
            self.client_tls = true;
            self.phase = Phase::Startup;
            self.process_client();
        }
    }

    /// The hook's answer to [`HookRequest::Authenticate`].
    pub fn handle_authenticated(
        &mut self,
        _now: Instant,
        result: Result<Authenticated<H::Principal>, Rejection>,
    ) {
        if !matches!(self.pending, Some(Pending::Auth)) || self.closing {
            return;
        }
        self.pending = None;
        match result {
            Ok(a) => {
                let filtered = match startup::filter(
                    &self.startup.params,
                    a.backend.allow.drop_unknown_startup_params,
                ) {
                    Ok(f) => f,
                    Err(refused) => {
                        let msg = format!("{}: connect without it", refused.reason);
                        self.close(
                            Some(wire::fatal("42501", &msg)),
                            Some(SessionError::Refused(format!(
                                "startup parameter \"{}\" refused",
                                refused.name
                            ))),
                        );
                        return;
                    }
                };
                self.backend_params = filtered.forward;
                self.startup_notices = filtered
                    .dropped
                    .iter()
                    .map(|name| {
                        wire::notice(&format!(
                            "the gateway dropped the startup parameter \"{name}\""
                        ))
                    })
                    .collect();
                self.principal = Some(Arc::new(a.principal));
                self.target = Some(a.backend.clone());
                self.phase = Phase::ConnectingBackend;
                self.outputs.push_back(Output::ConnectBackend(a.backend));
            }
            Err(Rejection::InvalidCredential(reason)) => {
                let msg = format!(
                    "password authentication failed for user \"{}\"",
                    self.startup.user()
                );
                self.close(
                    Some(wire::error_like(
                        b'E',
                        "FATAL",
                        "28P01",
                        &msg,
                        Some(&reason),
                    )),
                    Some(SessionError::Refused(reason)),
                );
            }
            Err(Rejection::NotAuthorized(reason)) => {
                self.close(
                    Some(wire::fatal("28000", &reason)),
                    Some(SessionError::Refused(reason)),
                );
            }
        }
    }

    /// The backend connection is open (TLS done if asked).
    pub fn handle_backend_connected(&mut self, _now: Instant) {
        if self.phase != Phase::ConnectingBackend || self.closing {
            return;
        }
        let Some(target) = &self.target else { return };
        let mut startup = Startup::new();
        startup.parameters = self.backend_params.clone();
        startup
            .parameters
            .insert("user".into(), target.user.clone());
        startup
            .parameters
            .insert("database".into(), target.database.clone());
        self.to_backend.push_back(codec::encode(&startup));
        self.phase = Phase::BackendAuth;
        self.process_backend();
    }

    /// The backend connection is TLS and this is the server's certificate
    /// (DER); call it before [`Session::handle_backend_connected`]. When the
    /// backend offers SCRAM-SHA-256-PLUS, the gateway binds its SCRAM
    /// exchange to this certificate (`tls-server-end-point`), so a man in
    /// the middle holding another certificate cannot relay the login.
    pub fn handle_backend_tls(&mut self, certificate: &[u8]) {
        self.channel_binding = crate::binding::server_end_point(certificate);
    }

    /// The backend could not be reached.
    pub fn handle_backend_connect_failed(&mut self, reason: &str) {
        self.close(
            Some(wire::fatal(
                "08001",
                "the gateway could not connect to the backend",
            )),
            Some(SessionError::Refused(format!(
                "backend connection failed: {reason}"
            ))),
        );
    }

    /// The hook's answer to [`HookRequest::Query`] or [`HookRequest::Execute`].
    /// For a hold, the notice goes to the client and the decision future is
    /// returned: await it and pass its output to [`Session::handle_decision`],
    /// or call [`Session::handle_hold_abandoned`] if it is dropped.
    pub fn handle_verdict(
        &mut self,
        now: Instant,
        verdict: Verdict<H::Plan>,
    ) -> Option<DecisionFuture> {
        match verdict {
            Verdict::Forward(plan) => {
                self.last_activity = now;
                match self.pending.take() {
                    Some(Pending::Query { cmd, frame }) => {
                        self.forward_query(cmd, frame, Arc::new(plan))
                    }
                    Some(Pending::Execute {
                        cmd,
                        frame,
                        portal,
                        described,
                    }) => self.forward_execute(cmd, frame, &portal, described, Arc::new(plan)),
                    other => self.pending = other,
                }
                self.process_client();
                None
            }
            Verdict::Deny(reason) => {
                self.decide(now, Decision::Deny(reason));
                None
            }
            Verdict::Terminate(reason) => {
                self.terminate(reason);
                None
            }
            Verdict::Hold(hold, plan) => {
                let plan = Arc::new(plan);
                let (cmd, held) = match self.pending.take() {
                    Some(Pending::Query { cmd, frame }) => (
                        cmd,
                        Pending::HeldQuery {
                            cmd,
                            frame,
                            plan: plan.clone(),
                        },
                    ),
                    Some(Pending::Execute {
                        cmd,
                        frame,
                        portal,
                        described,
                    }) => (
                        cmd,
                        Pending::HeldExecute {
                            cmd,
                            frame,
                            portal,
                            described,
                            plan: plan.clone(),
                        },
                    ),
                    other => {
                        self.pending = other;
                        return None;
                    }
                };
                self.pending = Some(held);
                // The notice is about this Execute (or query): it never
                // overtakes the replies owed for an earlier Sync or Query.
                self.synthetic_after_synced(wire::notice(&hold.notice));
                self.event_with(
                    Event::CommandHeld {
                        session: self.id,
                        command: cmd,
                        notice: hold.notice,
                    },
                    Some(plan),
                );
                Some(hold.decision)
            }
        }
    }

    /// The decision on a held command: forwarded with the plan its hold
    /// carried, or refused.
    pub fn handle_decision(&mut self, now: Instant, decision: Decision) {
        self.decide(now, decision);
    }

    /// A hold ended without a decision: `cancelled` when the client sent a
    /// CancelRequest (it gets SQLSTATE 57014, like a cancelled statement).
    pub fn handle_hold_abandoned(&mut self, now: Instant, cancelled: bool) {
        let cmd = match &self.pending {
            Some(Pending::HeldQuery { cmd, .. } | Pending::HeldExecute { cmd, .. }) => *cmd,
            _ => return,
        };
        self.event(Event::HoldAbandoned {
            session: self.id,
            command: cmd,
        });
        if cancelled {
            self.refuse_pending("57014", "canceling statement due to user request".into());
            self.last_activity = now;
            self.process_client();
        }
    }

    /// The hook's answer to [`HookRequest::Parse`].
    pub fn handle_parse_verdict(&mut self, now: Instant, verdict: ParseVerdict<H::Plan>) {
        let Some(Pending::Parse {
            cmd,
            frame,
            statement,
            sql,
        }) = self.pending.take()
        else {
            return;
        };
        self.last_activity = now;
        match verdict {
            ParseVerdict::Forward(plan) => {
                let plan = Arc::new(plan);
                let stmt = Arc::new(Stmt {
                    sql,
                    plan: plan.clone(),
                });
                let kind = Kind::Parse {
                    name: statement,
                    stmt: Some(stmt),
                };
                self.forward_command(frame, kind, cmd, plan);
            }
            ParseVerdict::Terminate(reason) => {
                self.pending = Some(Pending::Parse {
                    cmd,
                    frame,
                    statement,
                    sql,
                });
                self.terminate(reason);
                return;
            }
            ParseVerdict::Deny(reason) => {
                self.event(Event::CommandDenied {
                    session: self.id,
                    command: cmd,
                    reason: reason.clone(),
                });
                self.deny_extended("42501", &reason);
                if statement.is_empty() {
                    // PostgreSQL drops the unnamed statement before parsing a new one.
                    self.inject(
                        close_frame(b'S', ""),
                        Kind::Close {
                            statement: true,
                            name: String::new(),
                        },
                        false,
                    );
                }
            }
        }
        self.process_client();
    }

    fn decide(&mut self, now: Instant, decision: Decision) {
        self.last_activity = now;
        match decision {
            Decision::Forward => match self.pending.take() {
                Some(Pending::HeldQuery { cmd, frame, plan }) => {
                    self.forward_query(cmd, frame, plan)
                }
                Some(Pending::HeldExecute {
                    cmd,
                    frame,
                    portal,
                    described,
                    plan,
                }) => self.forward_execute(cmd, frame, &portal, described, plan),
                Some(p @ (Pending::Query { .. } | Pending::Execute { .. })) => {
                    // A decision without a verdict carries no plan: refuse.
                    self.pending = Some(p);
                    self.refuse_pending(
                        "42501",
                        "the gateway has no plan for this statement".into(),
                    );
                }
                other => self.pending = other,
            },
            Decision::Deny(reason) => {
                if let Some(cmd) = self.pending_command() {
                    self.event(Event::CommandDenied {
                        session: self.id,
                        command: cmd,
                        reason: reason.clone(),
                    });
                }
                self.refuse_pending("42501", reason);
            }
        }
        self.process_client();
    }

    fn pending_command(&self) -> Option<CommandId> {
        match &self.pending {
            Some(
                Pending::Query { cmd, .. }
                | Pending::HeldQuery { cmd, .. }
                | Pending::Execute { cmd, .. }
                | Pending::HeldExecute { cmd, .. }
                | Pending::Parse { cmd, .. },
            ) => Some(*cmd),
            _ => None,
        }
    }

    fn refuse_pending(&mut self, code: &str, reason: String) {
        match self.pending.take() {
            Some(Pending::Query { .. } | Pending::HeldQuery { .. }) => {
                self.deny_simple(code, &reason)
            }
            Some(Pending::Execute { .. } | Pending::HeldExecute { .. }) => {
                self.deny_extended(code, &reason)
            }
            other => self.pending = other,
        }
    }

    /// A refused simple query: an error and ReadyForQuery; inside a
    /// transaction block, the backend's transaction is made to fail too.
    fn deny_simple(&mut self, code: &str, reason: &str) {
        let message = denial_message(code, reason);
        if self.tx_status == b'T' {
            self.synthetic(wire::error(code, &message));
            self.inject(wire::query(FAIL_TRANSACTION), Kind::Query, false);
        } else {
            self.synthetic(wire::error(code, &message));
            self.synthetic(wire::ready(self.tx_status));
        }
    }

    /// A refused extended-protocol message: an error, then everything up to
    /// Sync is discarded, and at Sync the backend's transaction is made to fail.
    fn deny_extended(&mut self, code: &str, reason: &str) {
        self.synthetic(wire::error(code, &denial_message(code, reason)));
        self.client_skipping = true;
        self.fail_at_sync = true;
    }

    /// Sends a decided command with its plan; reports it forwarded, or
    /// discarded when the backend is ignoring messages until Sync.
    fn forward_command(
        &mut self,
        frame: Bytes,
        kind: Kind<H::Plan>,
        cmd: CommandId,
        plan: Arc<H::Plan>,
    ) {
        let sent = self.send_backend(frame, kind, Some(cmd), Some(plan.clone()));
        let event = if sent {
            Event::CommandForwarded {
                session: self.id,
                command: cmd,
            }
        } else {
            Event::CommandDiscarded {
                session: self.id,
                command: cmd,
            }
        };
        self.event_with(event, Some(plan));
    }

    fn forward_query(&mut self, cmd: CommandId, frame: Bytes, plan: Arc<H::Plan>) {
        self.forward_command(frame, Kind::Query, cmd, plan);
    }

    fn forward_execute(
        &mut self,
        cmd: CommandId,
        frame: Bytes,
        portal: &str,
        described: bool,
        plan: Arc<H::Plan>,
    ) {
        if !described {
            // The hook must see the columns before the rows.
            self.inject(
                describe_frame(b'P', portal),
                Kind::DescribePortal {
                    portal: portal.to_owned(),
                },
                true,
            );
        }
        let kind = Kind::Execute {
            portal: portal.to_owned(),
        };
        self.forward_command(frame, kind, cmd, plan);
    }

    fn new_command(&mut self) -> CommandId {
        self.next_command += 1;
        CommandId(self.next_command)
    }

    fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e, None));
    }

    fn event_with(&mut self, e: Event, plan: Option<Arc<H::Plan>>) {
        self.outputs.push_back(Output::Event(e, plan));
    }

    fn end(&mut self, error: Option<String>) {
        if !self.ended {
            self.ended = true;
            self.event(Event::SessionEnded {
                session: self.id,
                error,
            });
        }
    }

    /// Ends the session at the hook's word: the pending command is refused
    /// and never forwarded; the client gets FATAL 57P01.
    fn terminate(&mut self, reason: String) {
        if let Some(cmd) = self.pending_command() {
            self.event(Event::CommandDenied {
                session: self.id,
                command: cmd,
                reason: reason.clone(),
            });
        }
        self.close(
            Some(wire::fatal("57P01", &reason)),
            Some(SessionError::Terminated(reason)),
        );
    }

    fn close(&mut self, last: Option<Bytes>, error: Option<SessionError>) {
        if self.closing {
            return;
        }
        if let Some(b) = last {
            self.to_client.push_back(b);
        }
        if let Some(Pending::HeldQuery { cmd, .. } | Pending::HeldExecute { cmd, .. }) =
            self.pending
        {
            self.event(Event::HoldAbandoned {
                session: self.id,
                command: cmd,
            });
        }
        self.pending = None;
        self.closing = true;
        self.end(error.map(|e| e.to_string()));
    }

    /// Sends a client message that gets a reply. Returns false, sending
    /// nothing, when the backend is ignoring messages until Sync (it would
    /// discard this one and answer nothing).
    fn send_backend(
        &mut self,
        frame: Bytes,
        kind: Kind<H::Plan>,
        cmd: Option<CommandId>,
        plan: Option<Arc<H::Plan>>,
    ) -> bool {
        self.push_backend(frame, kind, cmd, plan, false, true)
    }

    fn inject(&mut self, frame: Bytes, kind: Kind<H::Plan>, forward_errors: bool) {
        self.push_backend(frame, kind, None, None, true, forward_errors);
    }

    fn push_backend(
        &mut self,
        frame: Bytes,
        kind: Kind<H::Plan>,
        cmd: Option<CommandId>,
        plan: Option<Arc<H::Plan>>,
        gateway: bool,
        forward_errors: bool,
    ) -> bool {
        if self.backend_ignoring {
            if !matches!(kind, Kind::Sync) {
                return false;
            }
            self.backend_ignoring = false;
        }
        self.to_backend.push_back(frame);
        let reply = Reply {
            kind,
            cmd,
            plan,
            gateway,
            forward_errors,
        };
        self.unsettled |= is_unsettling_reply(&reply);
        self.expect.push_back(Expect::Backend(reply));
        true
    }

    /// Whether statement text may be sent now, given that the statements
    /// sent before it may have changed how PostgreSQL reads SQL (a SET of
    /// `standard_conforming_strings` or `client_encoding`, also through
    /// `set_config` or dynamic SQL) and the backend reports such a change
    /// only with the next ReadyForQuery.
    fn settings_barrier(&self, sql: &[u8]) -> Barrier {
        if !self.unsettled || startup::is_setting_independent(sql) {
            return Barrier::Go;
        }
        // A ReadyForQuery will come without more client messages when a
        // Sync or a Query follows the last statement sent (a Query is
        // answered with one itself).
        let mut coming = false;
        for e in &self.expect {
            if let Expect::Backend(r) = e {
                if matches!(r.kind, Kind::Sync | Kind::Query) {
                    coming = true;
                } else if is_unsettling_reply(r) {
                    coming = false;
                }
            }
        }
        if coming {
            Barrier::Wait
        } else {
            Barrier::Refuse
        }
    }

    /// Whether a client message held back must still wait.
    fn still_blocked(&self, frame: &Frame) -> bool {
        match frame.tag {
            b'Q' | b'P' => {
                let mut r = Reader::new(frame.body());
                if frame.tag == b'P' {
                    let _ = r.cstr();
                }
                let sql = r.cstr().unwrap_or_default();
                self.settings_barrier(sql) == Barrier::Wait
            }
            _ => self.must_wait(),
        }
    }

    fn synthetic(&mut self, b: Bytes) {
        self.expect.push_back(Expect::Synthetic(b));
        self.flush_synthetic();
    }

    /// Queues a message of the gateway's own behind every reply the backend
    /// owes up to its last Sync or Query (which it sends without more
    /// input), but ahead of the replies of a pipeline not yet synced (which
    /// the backend keeps until a Sync or Flush: waiting for them could wait
    /// forever).
    fn synthetic_after_synced(&mut self, b: Bytes) {
        let at = self
            .expect
            .iter()
            .rposition(
                |e| matches!(e, Expect::Backend(r) if matches!(r.kind, Kind::Sync | Kind::Query)),
            )
            .map_or(0, |i| i + 1);
        self.expect.insert(at, Expect::Synthetic(b));
        self.flush_synthetic();
    }

    fn flush_synthetic(&mut self) {
        while let Some(Expect::Synthetic(_)) = self.expect.front() {
            if let Some(Expect::Synthetic(b)) = self.expect.pop_front() {
                self.to_client.push_back(b);
            }
        }
    }

    /// Whether a Bind or Execute must wait: a Parse, Bind or Close of an
    /// earlier pipeline (one a Sync follows) is not confirmed yet, so what a
    /// name will refer to when the backend reads this message is not known.
    /// Within the current pipeline the effects are predicted as successes:
    /// if one fails, the backend discards everything after it up to Sync,
    /// this message included.
    fn must_wait(&self) -> bool {
        let mut creates = false;
        for e in &self.expect {
            if let Expect::Backend(r) = e {
                if r.kind.creates() {
                    creates = true;
                } else if matches!(r.kind, Kind::Sync) && creates {
                    return true;
                }
            }
        }
        false
    }

    /// The statement a name will refer to when the backend reads the next
    /// message: the current pipeline's Parse or Close of it, else the
    /// confirmed one. `None`: not prepared through this session.
    fn predicted_statement(&self, name: &str) -> Option<Arc<Stmt<H::Plan>>> {
        for e in self.expect.iter().rev() {
            let Expect::Backend(r) = e else { continue };
            match &r.kind {
                Kind::Sync => break,
                Kind::Parse { name: n, stmt } if n == name => return stmt.clone(),
                Kind::Close {
                    statement: true,
                    name: n,
                } if n == name => return None,
                _ => {}
            }
        }
        self.statements.get(name).cloned()
    }

    /// The portal a name will refer to when the backend reads the next
    /// message, and whether its columns are known already.
    fn predicted_portal(&self, name: &str) -> Option<(Arc<PortalInfo<H::Plan>>, bool)> {
        for e in self.expect.iter().rev() {
            let Expect::Backend(r) = e else { continue };
            match &r.kind {
                Kind::Sync => break,
                Kind::Bind { portal, new } if portal == name => {
                    return new.clone().map(|n| (n, false));
                }
                Kind::Close {
                    statement: false,
                    name: n,
                } if n == name => return None,
                _ => {}
            }
        }
        self.portals
            .get(name)
            .map(|p| (p.info.clone(), !matches!(p.described, Described::Unknown)))
    }

    // ---------------------------------------------------------------- client

    fn process_client(&mut self) {
        while !self.closing && self.pending.is_none() {
            let frame = match self.phase {
                Phase::Startup => {
                    codec::read_startup(&mut self.client_in, self.cfg.limits.max_startup)
                }
                Phase::Password => codec::read_frame(&mut self.client_in, self.cfg.limits.max_auth),
                Phase::Ready => {
                    codec::read_frame(&mut self.client_in, self.cfg.limits.max_client_frame)
                }
                _ => return,
            };
            match frame {
                Ok(Some(frame)) => {
                    let result = if self.phase == Phase::Startup {
                        self.on_startup_packet(&frame)
                    } else if self.phase == Phase::Password {
                        self.on_password(&frame)
                    } else {
                        self.on_client_message(frame)
                    };
                    if let Err(e) = result {
                        self.client_protocol_error(e);
                    }
                }
                Ok(None) => return,
                Err(e) => self.client_protocol_error(SessionError::Client(e)),
            }
        }
    }

    fn client_protocol_error(&mut self, e: SessionError) {
        let msg = format!("invalid frontend message: {e}");
        self.close(Some(wire::fatal("08P01", &msg)), Some(e));
    }

    fn on_startup_packet(&mut self, frame: &Frame) -> Result<(), SessionError> {
        let code = codec::startup_code(frame);
        let malformed = |reason: &str| {
            SessionError::Client(CodecError::Malformed {
                tag: 0,
                reason: reason.into(),
            })
        };
        match code {
            codec::SSL_REQUEST => {
                if frame.raw.len() != 8 {
                    return Err(malformed("SSLRequest of the wrong length"));
                }
                if self.cfg.tls_available && !self.client_tls && !self.client_in.is_empty() {
                    // Bytes after an SSLRequest, before the handshake, are
                    // plaintext a man in the middle may have injected
                    // (CVE-2021-23214): they are never read.
                    let msg = "received unencrypted data after SSL request";
                    self.close(
                        Some(wire::fatal("08P01", msg)),
                        Some(SessionError::Client(CodecError::Malformed {
                            tag: 0,
                            reason: msg.into(),
                        })),
                    );
                } else if self.cfg.tls_available && !self.client_tls {
                    self.to_client.push_back(Bytes::from_static(b"S"));
                    self.phase = Phase::TlsHandshake;
                    self.outputs.push_back(Output::StartClientTls);
                } else {
                    self.to_client.push_back(Bytes::from_static(b"N"));
                }
            }
            codec::GSSENC_REQUEST => {
                if frame.raw.len() != 8 {
                    return Err(malformed("GSSENCRequest of the wrong length"));
                }
                self.to_client.push_back(Bytes::from_static(b"N"));
            }
            codec::CANCEL_REQUEST => {
                let mut r = Reader::new(frame.body());
                let (_, pid, secret) = (r.i32(), r.i32(), r.i32());
                match (pid, secret, r.done()) {
                    (Some(pid), Some(secret), true) => {
                        self.outputs
                            .push_back(Output::Cancel(CancelKey { pid, secret }));
                        self.closing = true;
                    }
                    _ => return Err(malformed("CancelRequest of the wrong length")),
                }
            }
            _ if code >> 16 == 3 => return self.on_startup_message(frame, code),
            _ => {
                let msg = format!(
                    "unsupported frontend protocol {}.{}",
                    code >> 16,
                    code & 0xffff
                );
                self.close(
                    Some(wire::fatal("0A000", &msg)),
                    Some(SessionError::Refused(msg.clone())),
                );
            }
        }
        Ok(())
    }

    fn on_startup_message(&mut self, frame: &Frame, code: i32) -> Result<(), SessionError> {
        let mut r = Reader::new(frame.body());
        let _ = r.i32();
        let mut params = std::collections::BTreeMap::new();
        let bad = || {
            SessionError::Client(CodecError::Malformed {
                tag: 0,
                reason: "startup parameters".into(),
            })
        };
        loop {
            let key = r.cstr().ok_or_else(bad)?;
            if key.is_empty() {
                break;
            }
            let value = r.cstr().ok_or_else(bad)?;
            params.insert(lossy(key), lossy(value));
        }
        if !r.done() {
            return Err(bad());
        }
        self.startup = StartupParams { params };
        if self.cfg.require_tls && !self.client_tls {
            let msg = "the gateway requires TLS: connect with sslmode=require";
            self.close(
                Some(wire::fatal("28000", msg)),
                Some(SessionError::Refused(msg.into())),
            );
            return Ok(());
        }
        if let Some(rep) = self.startup.get("replication")
            && !matches!(
                rep.to_ascii_lowercase().as_str(),
                "false" | "off" | "no" | "0"
            )
        {
            let msg = "replication connections are not supported by the gateway";
            self.close(
                Some(wire::fatal("0A000", msg)),
                Some(SessionError::Refused(msg.into())),
            );
            return Ok(());
        }
        if self.startup.user().is_empty() {
            let msg = "no PostgreSQL user name specified in startup packet";
            self.close(
                Some(wire::fatal("28000", msg)),
                Some(SessionError::Refused(msg.into())),
            );
            return Ok(());
        }
        if !self.client_tls && !self.cfg.loopback {
            let msg = "the gateway accepts a token only over TLS or on a loopback listener: connect with sslmode=require";
            self.close(
                Some(wire::fatal("28000", msg)),
                Some(SessionError::Refused(msg.into())),
            );
            return Ok(());
        }
        let minor = code & 0xffff;
        let unsupported: Vec<&String> = self
            .startup
            .params
            .keys()
            .filter(|k| k.starts_with("_pq_."))
            .collect();
        if minor > 0 || !unsupported.is_empty() {
            let mut body = Vec::new();
            body.extend_from_slice(&0i32.to_be_bytes());
            body.extend_from_slice(&i32::try_from(unsupported.len()).unwrap_or(0).to_be_bytes());
            for k in unsupported {
                body.extend_from_slice(k.as_bytes());
                body.push(0);
            }
            self.to_client.push_back(codec::build_frame(b'v', &body));
        }
        self.to_client.push_back(wire::auth_request(3));
        self.phase = Phase::Password;
        Ok(())
    }

    fn on_password(&mut self, frame: &Frame) -> Result<(), SessionError> {
        if frame.tag != b'p' {
            return Err(SessionError::UnexpectedMessage {
                tag: frame.tag,
                from: "client",
                state: self.phase.name(),
            });
        }
        let mut r = Reader::new(frame.body());
        let credential =
            r.cstr()
                .filter(|_| r.done())
                .ok_or(SessionError::Client(CodecError::Malformed {
                    tag: b'p',
                    reason: "password message".into(),
                }))?;
        let credential = lossy(credential);
        self.phase = Phase::Authenticating;
        self.pending = Some(Pending::Auth);
        self.outputs
            .push_back(Output::Request(HookRequest::Authenticate {
                startup: self.startup.clone(),
                credential,
            }));
        Ok(())
    }

    fn on_client_message(&mut self, frame: Frame) -> Result<(), SessionError> {
        let malformed = |tag: u8| {
            SessionError::Client(CodecError::Malformed {
                tag,
                reason: "message body".into(),
            })
        };
        let tag = frame.tag;
        // After an error in an extended-protocol pipeline PostgreSQL reads and
        // discards every message but Sync and Terminate.
        if (self.client_skipping || self.backend_ignoring) && !matches!(tag, b'S' | b'X') {
            self.last_describe_portal = None;
            return Ok(());
        }
        if matches!(tag, b'B' | b'E') && self.must_wait() {
            self.pending = Some(Pending::Blocked(frame));
            return Ok(());
        }
        if matches!(tag, b'Q' | b'P') {
            let mut r = Reader::new(frame.body());
            let name = if tag == b'P' { r.cstr() } else { None };
            let sql = r.cstr().unwrap_or_default();
            match self.settings_barrier(sql) {
                Barrier::Go => {}
                Barrier::Wait => {
                    self.pending = Some(Pending::Blocked(frame));
                    return Ok(());
                }
                Barrier::Refuse => {
                    let unnamed = name.is_some_and(<[u8]>::is_empty);
                    let sql = lossy(sql);
                    self.refuse_unsettled(tag, sql, unnamed);
                    return Ok(());
                }
            }
        }
        let described_portal = if tag == b'D' {
            None
        } else {
            self.last_describe_portal.take()
        };
        match tag {
            b'Q' => {
                let mut r = Reader::new(frame.body());
                let sql = r
                    .cstr()
                    .filter(|_| r.done())
                    .ok_or_else(|| malformed(tag))?;
                let sql = lossy(sql);
                let cmd = self.new_command();
                self.event(Event::CommandReceived {
                    session: self.id,
                    command: cmd,
                    sql: sql.clone(),
                });
                self.pending = Some(Pending::Query {
                    cmd,
                    frame: frame.raw,
                });
                self.outputs
                    .push_back(Output::Request(HookRequest::Query { command: cmd, sql }));
            }
            b'P' => {
                let mut r = Reader::new(frame.body());
                let name = r.cstr().ok_or_else(|| malformed(tag))?;
                let sql = r.cstr().ok_or_else(|| malformed(tag))?;
                let n = r
                    .i16()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| malformed(tag))?;
                if r.bytes(n.saturating_mul(4)).is_none() || !r.done() {
                    return Err(malformed(tag));
                }
                let (statement, sql) = (lossy(name), lossy(sql));
                let cmd = self.new_command();
                self.event(Event::CommandReceived {
                    session: self.id,
                    command: cmd,
                    sql: sql.clone(),
                });
                self.pending = Some(Pending::Parse {
                    cmd,
                    frame: frame.raw,
                    statement: statement.clone(),
                    sql: Arc::from(sql.as_str()),
                });
                self.outputs.push_back(Output::Request(HookRequest::Parse {
                    command: cmd,
                    statement,
                    sql,
                }));
            }
            b'B' => {
                let (portal, statement, params) =
                    parse_bind(frame.body()).ok_or_else(|| malformed(tag))?;
                let stmt = self.predicted_statement(&statement);
                let new = Arc::new(PortalInfo {
                    statement,
                    stmt,
                    params,
                });
                let kind = Kind::Bind {
                    portal,
                    new: Some(new),
                };
                self.send_backend(frame.raw, kind, None, None);
            }
            b'D' => {
                let mut r = Reader::new(frame.body());
                let kind = r.u8().ok_or_else(|| malformed(tag))?;
                let name = r
                    .cstr()
                    .filter(|_| r.done())
                    .ok_or_else(|| malformed(tag))?;
                let kind = match kind {
                    b'S' => Kind::DescribeStatement { params_seen: false },
                    b'P' => {
                        self.last_describe_portal = Some(lossy(name));
                        Kind::DescribePortal {
                            portal: lossy(name),
                        }
                    }
                    _ => return Err(malformed(tag)),
                };
                if !self.send_backend(frame.raw, kind, None, None) {
                    self.last_describe_portal = None;
                }
            }
            b'E' => {
                let mut r = Reader::new(frame.body());
                let portal = r.cstr().ok_or_else(|| malformed(tag))?;
                if r.i32().is_none() || !r.done() {
                    return Err(malformed(tag));
                }
                let portal = lossy(portal);
                let cmd = self.new_command();
                let Some((info, known_columns)) = self.predicted_portal(&portal) else {
                    // A portal no Bind of this session created (a SQL
                    // cursor, or none at all): nothing is known of what it runs.
                    self.event(Event::CommandReceived {
                        session: self.id,
                        command: cmd,
                        sql: String::new(),
                    });
                    let reason = format!(
                        "portal \"{portal}\" does not exist (the gateway executes only portals \
                         bound through it)"
                    );
                    self.event(Event::CommandDenied {
                        session: self.id,
                        command: cmd,
                        reason: reason.clone(),
                    });
                    self.deny_extended("34000", &reason);
                    return Ok(());
                };
                let (sql, plan) = match &info.stmt {
                    Some(s) => (s.sql.to_string(), Some(s.plan.clone())),
                    // Not prepared through this session's Parse: an SQL-level
                    // PREPARE. The hook decides on it as on `EXECUTE name`.
                    None => (format!("EXECUTE {}", info.statement), None),
                };
                let described =
                    known_columns || described_portal.as_deref() == Some(portal.as_str());
                self.event(Event::CommandReceived {
                    session: self.id,
                    command: cmd,
                    sql: sql.clone(),
                });
                self.pending = Some(Pending::Execute {
                    cmd,
                    frame: frame.raw,
                    portal: portal.clone(),
                    described,
                });
                self.outputs
                    .push_back(Output::Request(HookRequest::Execute {
                        command: cmd,
                        portal,
                        statement: info.statement.clone(),
                        plan,
                        sql,
                        params: info.params.clone(),
                    }));
            }
            b'C' => {
                let mut r = Reader::new(frame.body());
                let kind = r.u8().ok_or_else(|| malformed(tag))?;
                let name = lossy(
                    r.cstr()
                        .filter(|_| r.done())
                        .ok_or_else(|| malformed(tag))?,
                );
                let statement = match kind {
                    b'S' => true,
                    b'P' => false,
                    _ => return Err(malformed(tag)),
                };
                self.send_backend(frame.raw, Kind::Close { statement, name }, None, None);
            }
            b'H' => {
                if !self.backend_ignoring {
                    self.to_backend.push_back(frame.raw);
                }
            }
            b'S' => {
                self.client_skipping = false;
                if self.fail_at_sync {
                    self.fail_at_sync = false;
                    self.inject(
                        parse_frame("", FAIL_TRANSACTION),
                        Kind::Parse {
                            name: String::new(),
                            stmt: None,
                        },
                        false,
                    );
                    self.inject(
                        bind_frame(),
                        Kind::Bind {
                            portal: String::new(),
                            new: None,
                        },
                        false,
                    );
                    self.inject(
                        execute_frame(),
                        Kind::Execute {
                            portal: String::new(),
                        },
                        false,
                    );
                }
                self.send_backend(frame.raw, Kind::Sync, None, None);
            }
            b'F' => {
                let cmd = self.new_command();
                let reason =
                    "the fast-path function call interface is not supported by the gateway";
                self.event(Event::CommandDenied {
                    session: self.id,
                    command: cmd,
                    reason: reason.into(),
                });
                self.deny_simple("0A000", reason);
            }
            b'd' | b'c' | b'f' => self.to_backend.push_back(frame.raw),
            b'X' => {
                self.to_backend.push_back(frame.raw);
                self.closing = true;
                self.end(None);
            }
            _ => {
                return Err(SessionError::UnexpectedMessage {
                    tag,
                    from: "client",
                    state: self.phase.name(),
                });
            }
        }
        Ok(())
    }

    /// Refuses statement text that could be read differently after the
    /// statements still in the pipeline (see [`Session::settings_barrier`]).
    fn refuse_unsettled(&mut self, tag: u8, sql: String, unnamed: bool) {
        let cmd = self.new_command();
        self.event(Event::CommandReceived {
            session: self.id,
            command: cmd,
            sql,
        });
        let reason = "statement text with a backslash or a non-ASCII character cannot follow an \
                      Execute in the same pipeline: the gateway reads it only once the backend \
                      has reported its settings (send Sync first)";
        self.event(Event::CommandDenied {
            session: self.id,
            command: cmd,
            reason: reason.into(),
        });
        if tag == b'Q' {
            self.deny_simple("0A000", reason);
            return;
        }
        self.deny_extended("0A000", reason);
        if unnamed {
            // PostgreSQL drops the unnamed statement before parsing a new one.
            self.inject(
                close_frame(b'S', ""),
                Kind::Close {
                    statement: true,
                    name: String::new(),
                },
                false,
            );
        }
    }

    // --------------------------------------------------------------- backend

    fn process_backend(&mut self) {
        while !self.closing {
            match self.phase {
                Phase::BackendAuth | Phase::BackendStartup | Phase::Ready => {}
                _ => return,
            }
            match codec::read_frame(&mut self.backend_in, self.cfg.limits.max_backend_frame) {
                Ok(Some(frame)) => {
                    let result = match self.phase {
                        Phase::BackendAuth => self.on_backend_auth(&frame),
                        Phase::BackendStartup => self.on_backend_startup(frame),
                        _ => self.on_backend_message(frame),
                    };
                    if let Err(e) = result {
                        self.backend_protocol_error(e);
                    } else {
                        self.unblock();
                    }
                }
                Ok(None) => return,
                Err(e) => self.backend_protocol_error(SessionError::Backend(e)),
            }
        }
    }

    /// A Bind or Execute waiting for earlier pipelines' confirmations goes
    /// on once they are in.
    fn unblock(&mut self) {
        match &self.pending {
            Some(Pending::Blocked(frame)) if !self.still_blocked(frame) => {}
            _ => return,
        }
        if let Some(Pending::Blocked(frame)) = self.pending.take() {
            if let Err(e) = self.on_client_message(frame) {
                self.client_protocol_error(e);
            }
            self.process_client();
        }
    }

    /// The backend sent what the session cannot account for: nothing more
    /// is forwarded; the client gets a protocol error and the session ends.
    fn backend_protocol_error(&mut self, e: SessionError) {
        self.to_backend.push_back(codec::build_frame(b'X', &[]));
        self.event(Event::ProtocolViolation {
            session: self.id,
            message: e.to_string(),
        });
        self.close(
            Some(wire::fatal(
                "08P01",
                "protocol violation: the backend sent a message the gateway cannot account for",
            )),
            Some(e),
        );
    }

    fn backend_auth_failed(&mut self, reason: String) {
        self.close(
            Some(wire::fatal(
                "08001",
                "the gateway could not log in to the backend",
            )),
            Some(SessionError::BackendAuth(reason)),
        );
    }

    fn on_backend_auth(&mut self, frame: &Frame) -> Result<(), SessionError> {
        let malformed = |reason: &str| {
            SessionError::Backend(CodecError::Malformed {
                tag: b'R',
                reason: reason.into(),
            })
        };
        match frame.tag {
            b'R' => {}
            b'E' => {
                let detail = wire::parse_fields(frame.body())
                    .and_then(|f| {
                        f.into_iter()
                            .find(|(c, _)| *c == b'M')
                            .map(|(_, m)| lossy(m))
                    })
                    .unwrap_or_default();
                self.backend_auth_failed(detail);
                return Ok(());
            }
            b'v' => return Ok(()),
            tag => {
                return Err(SessionError::UnexpectedMessage {
                    tag,
                    from: "backend",
                    state: self.phase.name(),
                });
            }
        }
        let password = self
            .target
            .as_ref()
            .map(|t| (t.user.clone(), t.password.clone()))
            .unwrap_or_default();
        let allow = self
            .target
            .as_ref()
            .map(|t| t.allow.clone())
            .unwrap_or_default();
        let mut r = Reader::new(frame.body());
        let code = r.i32().ok_or_else(|| malformed("authentication code"))?;
        let state = std::mem::replace(&mut self.backend_auth, BackendAuth::Done);
        match (code, state) {
            (0, BackendAuth::Start) if !allow.backend_trust => {
                self.backend_auth_failed(
                    "the backend accepted the gateway without authentication (trust), which \
                     this connection does not allow"
                        .into(),
                );
            }
            (3, BackendAuth::Start) if !allow.backend_cleartext => {
                self.backend_auth_failed(
                    "the backend asked for a cleartext password, which this connection does not \
                     allow (SCRAM-SHA-256 only)"
                        .into(),
                );
            }
            (5, BackendAuth::Start) if !allow.backend_md5 => {
                self.backend_auth_failed(
                    "the backend asked for an MD5 password hash, which this connection does not \
                     allow (SCRAM-SHA-256 only)"
                        .into(),
                );
            }
            (0, BackendAuth::Start | BackendAuth::Done) => {
                self.to_client.push_back(wire::auth_request(0));
                self.to_client.extend(self.startup_notices.drain(..));
                self.phase = Phase::BackendStartup;
            }
            (3, BackendAuth::Start) => {
                self.to_backend
                    .push_back(codec::encode(&Password::new(password.1)));
            }
            (5, BackendAuth::Start) => {
                let salt = r
                    .bytes(4)
                    .filter(|_| r.done())
                    .ok_or_else(|| malformed("md5 salt"))?;
                let salt = [
                    salt.first().copied().unwrap_or(0),
                    salt.get(1).copied().unwrap_or(0),
                    salt.get(2).copied().unwrap_or(0),
                    salt.get(3).copied().unwrap_or(0),
                ];
                let hash = md5_hash(password.0.as_bytes(), password.1.as_bytes(), salt);
                self.to_backend
                    .push_back(codec::encode(&Password::new(hash)));
            }
            (10, BackendAuth::Start) => {
                let (mut offers_scram, mut offers_plus) = (false, false);
                while let Some(m) = r.cstr() {
                    if m.is_empty() {
                        break;
                    }
                    offers_scram |= m == b"SCRAM-SHA-256";
                    offers_plus |= m == b"SCRAM-SHA-256-PLUS";
                }
                let (mechanism, binding) = match (&self.channel_binding, offers_plus) {
                    (Some(data), true) => (
                        "SCRAM-SHA-256-PLUS",
                        ChannelBinding::tls_server_end_point(data.clone()),
                    ),
                    // Over TLS without PLUS on offer: say the gateway could
                    // bind, so a server that does support it detects that
                    // its offer was stripped.
                    (Some(_), false) => ("SCRAM-SHA-256", ChannelBinding::unrequested()),
                    (None, _) => ("SCRAM-SHA-256", ChannelBinding::unsupported()),
                };
                if !offers_scram && mechanism == "SCRAM-SHA-256" {
                    self.backend_auth_failed(
                        "the backend offers no supported SASL mechanism".into(),
                    );
                    return Ok(());
                }
                let scram = ScramSha256::new(password.1.as_bytes(), binding);
                // `message()` is valid right after `new()`.
                let first = Bytes::copy_from_slice(scram.message());
                let msg = SASLInitialResponse::new(mechanism.into(), Some(first));
                self.to_backend.push_back(codec::encode(&msg));
                self.backend_auth = BackendAuth::Scram(Box::new(scram));
            }
            (11, BackendAuth::Scram(mut scram)) => match scram.update(r.rest()) {
                Ok(()) => {
                    // `message()` is valid only after a successful `update`;
                    // a failed one leaves the state where it would panic.
                    let msg = SASLResponse::new(Bytes::copy_from_slice(scram.message()));
                    self.to_backend.push_back(codec::encode(&msg));
                    self.backend_auth = BackendAuth::ScramFinal(scram);
                }
                Err(e) => self.backend_auth_failed(format!("SCRAM exchange failed: {e}")),
            },
            (12, BackendAuth::ScramFinal(mut scram)) => match scram.finish(r.rest()) {
                Ok(()) => self.backend_auth = BackendAuth::Done,
                Err(e) => self.backend_auth_failed(format!("SCRAM server signature invalid: {e}")),
            },
            (code, _) => {
                self.backend_auth_failed(format!(
                    "unsupported or out-of-order authentication request {code}"
                ));
            }
        }
        Ok(())
    }

    fn on_backend_startup(&mut self, frame: Frame) -> Result<(), SessionError> {
        match frame.tag {
            b'S' => self.on_parameter_status(frame)?,
            b'K' => {
                let mut r = Reader::new(frame.body());
                match (r.i32(), r.i32(), r.done()) {
                    (Some(pid), Some(secret), true) => {
                        // The real process id (notifications carry it too),
                        // never the backend's secret.
                        self.backend_key = Some(CancelKey { pid, secret });
                        self.to_client
                            .push_back(wire::backend_key_data(pid, self.gateway_key.secret));
                    }
                    _ => {
                        return Err(SessionError::Backend(CodecError::Malformed {
                            tag: b'K',
                            reason: "backend key data".into(),
                        }));
                    }
                }
            }
            b'Z' => {
                self.tx_status = frame.body().first().copied().unwrap_or(b'I');
                self.to_client.push_back(frame.raw);
                self.phase = Phase::Ready;
                self.event(Event::SessionStarted {
                    session: self.id,
                    startup: self.startup.clone(),
                });
                self.process_client();
            }
            b'N' => {
                let out = self.transform_error_like(&frame, None, None)?;
                self.to_client.push_back(out);
            }
            b'E' => {
                let out = self.transform_error_like(&frame, None, None)?;
                self.close(
                    Some(out),
                    Some(SessionError::Refused(
                        "the backend refused the session".into(),
                    )),
                );
            }
            b'v' => {}
            tag => {
                return Err(SessionError::UnexpectedMessage {
                    tag,
                    from: "backend",
                    state: self.phase.name(),
                });
            }
        }
        Ok(())
    }

    /// A ParameterStatus: forwarded when the analysis handles the reported
    /// value; otherwise the session ends before anything more is forwarded.
    fn on_parameter_status(&mut self, frame: Frame) -> Result<(), SessionError> {
        let mut r = Reader::new(frame.body());
        let (Some(name), Some(value), true) = (r.cstr(), r.cstr(), r.done()) else {
            return Err(SessionError::Backend(CodecError::Malformed {
                tag: b'S',
                reason: "parameter status".into(),
            }));
        };
        if let Err(reason) = startup::check_reported(&lossy(name), &lossy(value)) {
            self.to_backend.push_back(codec::build_frame(b'X', &[]));
            self.event(Event::ProtocolViolation {
                session: self.id,
                message: reason.clone(),
            });
            self.close(
                Some(wire::fatal(
                    "42501",
                    &format!("terminating connection: {reason}"),
                )),
                Some(SessionError::Terminated(reason)),
            );
            return Ok(());
        }
        self.to_client.push_back(frame.raw);
        Ok(())
    }

    fn head(&self) -> Option<&Reply<H::Plan>> {
        match self.expect.front() {
            Some(Expect::Backend(r)) => Some(r),
            _ => None,
        }
    }

    /// The reply at the head is complete.
    fn pop(&mut self) {
        self.expect.pop_front();
        self.flush_synthetic();
    }

    fn forward(&mut self, gateway: bool, b: Bytes) {
        if !gateway {
            self.to_client.push_back(b);
        }
    }

    fn on_backend_message(&mut self, frame: Frame) -> Result<(), SessionError> {
        self.flush_synthetic();
        let violation = |what: &str| SessionError::Violation(what.to_owned());
        let (gateway, cmd, plan) = match self.head() {
            Some(r) => (r.gateway, r.cmd, r.plan.clone()),
            None => (false, None, None),
        };
        match frame.tag {
            // Asynchronous messages: valid at any time.
            b'N' => {
                let out = self.transform_error_like(&frame, cmd, plan)?;
                self.to_client.push_back(out);
            }
            b'A' => {
                let out = self.transform_notification(&frame)?;
                self.to_client.push_back(out);
            }
            b'S' => self.on_parameter_status(frame)?,
            b'E' => self.on_backend_error(frame)?,
            b'Z' => {
                match self.head().map(|r| &r.kind) {
                    Some(Kind::Sync | Kind::Query) => {}
                    _ => return Err(violation("ReadyForQuery with no Sync or Query in progress")),
                }
                if self.result.is_some() || self.copy_out {
                    return Err(violation("ReadyForQuery in the middle of a result"));
                }
                let status = frame.body().first().copied().unwrap_or(b'I');
                self.tx_status = status;
                if status == b'I' {
                    // Outside a transaction no portal survives.
                    self.portals.clear();
                }
                self.expect.pop_front();
                // Every setting change before this point has been reported.
                self.unsettled = self.expect.iter().any(is_unsettling);
                self.to_client.push_back(frame.raw);
                self.flush_synthetic();
            }
            b'T' => {
                let columns = parse_row_description(frame.body()).ok_or(SessionError::Backend(
                    CodecError::Malformed {
                        tag: b'T',
                        reason: "row description".into(),
                    },
                ))?;
                let kind = self.head().map(|r| &r.kind);
                match kind {
                    Some(Kind::Query) if self.result.is_none() && !self.copy_out => {
                        self.begin_result(Arc::new(columns), plan, cmd);
                        self.forward(gateway, frame.raw);
                    }
                    Some(Kind::DescribeStatement { params_seen: true }) => {
                        self.forward(gateway, frame.raw);
                        self.pop();
                    }
                    Some(Kind::DescribePortal { portal }) => {
                        let portal = portal.clone();
                        if let Some(p) = self.portals.get_mut(&portal) {
                            p.described = Described::Rows(Arc::new(columns));
                        }
                        self.forward(gateway, frame.raw);
                        self.pop();
                    }
                    _ => return Err(violation("RowDescription out of order")),
                }
            }
            b'n' => {
                match self.head().map(|r| &r.kind) {
                    Some(Kind::DescribeStatement { params_seen: true }) => {}
                    Some(Kind::DescribePortal { portal }) => {
                        let portal = portal.clone();
                        if let Some(p) = self.portals.get_mut(&portal) {
                            p.described = Described::NoData;
                        }
                    }
                    _ => return Err(violation("NoData with no Describe in progress")),
                }
                self.forward(gateway, frame.raw);
                self.pop();
            }
            b't' => {
                match self.expect.front_mut() {
                    Some(Expect::Backend(Reply {
                        kind: Kind::DescribeStatement { params_seen },
                        ..
                    })) if !*params_seen => *params_seen = true,
                    _ => {
                        return Err(violation(
                            "ParameterDescription with no Describe of a statement in progress",
                        ));
                    }
                }
                self.forward(gateway, frame.raw);
            }
            b'1' => {
                let Some(Expect::Backend(Reply {
                    kind: Kind::Parse { name, stmt },
                    ..
                })) = self.expect.front()
                else {
                    return Err(violation("ParseComplete with no Parse in progress"));
                };
                // The statement exists now, and only now.
                match stmt {
                    Some(stmt) => {
                        self.statements.insert(name.clone(), stmt.clone());
                    }
                    None => {
                        self.statements.remove(name.as_str());
                    }
                }
                self.forward(gateway, frame.raw);
                self.pop();
            }
            b'2' => {
                let Some(Expect::Backend(Reply {
                    kind: Kind::Bind { portal, new },
                    ..
                })) = self.expect.front()
                else {
                    return Err(violation("BindComplete with no Bind in progress"));
                };
                match new {
                    Some(info) => {
                        self.portals.insert(
                            portal.clone(),
                            PortalEntry {
                                info: info.clone(),
                                described: Described::Unknown,
                            },
                        );
                    }
                    None => {
                        self.portals.remove(portal.as_str());
                    }
                }
                self.forward(gateway, frame.raw);
                self.pop();
            }
            b'3' => {
                let Some(Expect::Backend(Reply {
                    kind: Kind::Close { statement, name },
                    ..
                })) = self.expect.front()
                else {
                    return Err(violation("CloseComplete with no Close in progress"));
                };
                if *statement {
                    self.statements.remove(name.as_str());
                } else {
                    self.portals.remove(name.as_str());
                }
                self.forward(gateway, frame.raw);
                self.pop();
            }
            b'D' => {
                if self.copy_out || !self.in_command() {
                    return Err(violation("DataRow with no result in progress"));
                }
                if self.result.is_none() {
                    self.begin_portal_result()?;
                }
                let out = if gateway {
                    frame.raw
                } else {
                    self.transform_row(frame)?
                };
                self.rows += 1;
                self.bytes += out.len() as u64;
                self.forward(gateway, out);
            }
            b'C' | b'I' => {
                if self.copy_out || !self.in_command() {
                    return Err(violation("CommandComplete with no command in progress"));
                }
                let tag = if frame.tag == b'C' {
                    lossy(frame.body().split_last().map_or(&[][..], |(_, t)| t))
                } else {
                    String::new()
                };
                self.after_tag(&tag);
                if let Some(command) = cmd {
                    self.event_with(
                        Event::CommandCompleted {
                            session: self.id,
                            command,
                            tag,
                            rows: self.rows,
                            bytes: self.bytes,
                        },
                        plan,
                    );
                }
                self.rows = 0;
                self.bytes = 0;
                self.result = None;
                self.forward(gateway, frame.raw);
                if matches!(self.head().map(|r| &r.kind), Some(Kind::Execute { .. })) {
                    self.pop();
                }
            }
            b's' => {
                if self.copy_out
                    || !matches!(self.head().map(|r| &r.kind), Some(Kind::Execute { .. }))
                {
                    return Err(violation("PortalSuspended with no Execute in progress"));
                }
                self.result = None;
                self.forward(gateway, frame.raw);
                self.pop();
            }
            b'H' => {
                if self.copy_out || !self.in_command() {
                    return Err(violation("CopyOutResponse with no command in progress"));
                }
                self.result = None;
                self.copy_out = true;
                self.forward(gateway, frame.raw);
            }
            b'G' => {
                if self.copy_out || !self.in_command() {
                    return Err(violation("CopyInResponse with no command in progress"));
                }
                self.result = None;
                self.forward(gateway, frame.raw);
            }
            b'd' => {
                if !self.copy_out {
                    return Err(violation("CopyData with no COPY TO STDOUT in progress"));
                }
                let out = match (&plan, gateway) {
                    (Some(plan), false) => self.transform_copy(frame, cmd, plan.clone()),
                    _ => frame.raw,
                };
                self.rows += 1;
                self.bytes += out.len() as u64;
                self.forward(gateway, out);
            }
            b'c' => {
                if !self.copy_out {
                    return Err(violation("CopyDone with no COPY TO STDOUT in progress"));
                }
                self.copy_out = false;
                self.forward(gateway, frame.raw);
            }
            _ => return Err(violation("a message the protocol does not allow here")),
        }
        Ok(())
    }

    /// Whether the reply in progress is a Query's or an Execute's.
    fn in_command(&self) -> bool {
        matches!(
            self.head().map(|r| &r.kind),
            Some(Kind::Query | Kind::Execute { .. })
        )
    }

    /// What a completed statement changes in what the session knows:
    /// `DEALLOCATE` and `DISCARD` may drop prepared statements that a later
    /// SQL `PREPARE` replaces, so none is trusted any more; a transaction's
    /// end or a cursor declared by SQL may drop or shadow portals.
    fn after_tag(&mut self, tag: &str) {
        let word = tag.split(' ').next().unwrap_or("");
        match word {
            "DEALLOCATE" | "DISCARD" | "PREPARE" => {
                self.statements.clear();
                self.portals.clear();
            }
            "COMMIT" | "ROLLBACK" | "DECLARE" | "CLOSE" => self.portals.clear(),
            _ => {}
        }
    }

    fn on_backend_error(&mut self, frame: Frame) -> Result<(), SessionError> {
        let (gateway, forward_errors, cmd, plan) = match self.head() {
            Some(r) => (r.gateway, r.forward_errors, r.cmd, r.plan.clone()),
            None => (false, true, None, None),
        };
        let out = self.transform_error_like(&frame, cmd, plan)?;
        if !gateway || forward_errors {
            self.to_client.push_back(out);
        }
        self.result = None;
        self.copy_out = false;
        self.rows = 0;
        self.bytes = 0;
        let extended = match self.head().map(|r| &r.kind) {
            None | Some(Kind::Query | Kind::Sync) => false,
            Some(Kind::Parse { name, .. }) => {
                if name.is_empty() {
                    // PostgreSQL dropped the unnamed statement before parsing.
                    self.statements.remove("");
                }
                true
            }
            Some(Kind::Bind { portal, .. }) => {
                if portal.is_empty() {
                    self.portals.remove("");
                }
                true
            }
            Some(_) => true,
        };
        if extended {
            // The backend now discards everything up to Sync: the replies
            // owed for those messages will never come.
            while let Some(front) = self.expect.front() {
                if let Expect::Backend(Reply {
                    kind: Kind::Sync, ..
                }) = front
                {
                    return Ok(());
                }
                if let Some(Expect::Backend(Reply {
                    cmd: Some(command),
                    gateway: false,
                    plan,
                    ..
                })) = self.expect.pop_front()
                {
                    self.event_with(
                        Event::CommandDiscarded {
                            session: self.id,
                            command,
                        },
                        plan,
                    );
                }
            }
            // No Sync is on its way: messages sent until the next one are
            // discarded by the backend, so the session sends none.
            self.backend_ignoring = true;
        }
        Ok(())
    }

    fn begin_result(
        &mut self,
        columns: Arc<Vec<Column>>,
        plan: Option<Arc<H::Plan>>,
        cmd: Option<CommandId>,
    ) {
        let chosen = match (&self.principal, &plan) {
            (Some(principal), Some(plan)) => {
                let cx = Context {
                    session: self.id,
                    command: cmd,
                    principal: principal.as_ref(),
                };
                let mut chosen = self.hook.on_row_description(&cx, plan, &columns);
                chosen.retain(|(i, _)| *i < columns.len());
                chosen.sort_by_key(|(i, _)| *i);
                chosen.dedup_by_key(|(i, _)| *i);
                chosen
            }
            _ => Vec::new(),
        };
        self.result = Some(ResultState {
            columns,
            chosen,
            plan,
        });
    }

    /// The rows of an Execute: their columns come from the portal's
    /// description, which the backend sent before them.
    fn begin_portal_result(&mut self) -> Result<(), SessionError> {
        let Some(Reply {
            kind: Kind::Execute { portal },
            cmd,
            plan,
            ..
        }) = self.head()
        else {
            return Err(SessionError::Violation(
                "DataRow with no result in progress".into(),
            ));
        };
        let (cmd, plan) = (*cmd, plan.clone());
        let columns = match self.portals.get(portal.as_str()).map(|p| &p.described) {
            Some(Described::Rows(columns)) => columns.clone(),
            _ => {
                return Err(SessionError::Violation(
                    "DataRow for a portal with no described columns".into(),
                ));
            }
        };
        self.begin_result(columns, plan, cmd);
        Ok(())
    }

    fn transform_row(&mut self, frame: Frame) -> Result<Bytes, SessionError> {
        let Some(result) = &self.result else {
            return Err(SessionError::Violation(
                "DataRow with no result in progress".into(),
            ));
        };
        if result.chosen.is_empty() {
            // Nothing to transform: the frame goes out as it came.
            return Ok(frame.raw);
        }
        let body = frame.body();
        let fields = codec::split_data_row(body).map_err(SessionError::Backend)?;
        if fields.len() != result.columns.len() {
            return Err(SessionError::Violation(
                "DataRow with a different number of columns than its RowDescription".into(),
            ));
        }
        let (Some(principal), Some(plan)) = (self.principal.as_ref(), result.plan.as_ref()) else {
            return Ok(frame.raw);
        };
        let cmd = self.head().and_then(|r| r.cmd);
        let cx = Context {
            session: self.id,
            command: cmd,
            principal: principal.as_ref(),
        };
        let mut replaced: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
        for (i, column_plan) in &result.chosen {
            let (Some(Some(range)), Some(col)) = (fields.get(*i), result.columns.get(*i)) else {
                continue;
            };
            let Some(value) = body.get(range.clone()) else {
                continue;
            };
            match self
                .hook
                .transform_field(&cx, plan, col, column_plan, value)
            {
                FieldValue::Keep => {}
                FieldValue::Replace(v) => replaced.push((*i, Some(v))),
                FieldValue::Null => replaced.push((*i, None)),
            }
        }
        if replaced.is_empty() {
            return Ok(frame.raw);
        }
        let values: Vec<Option<&[u8]>> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| match replaced.iter().find(|(j, _)| *j == i) {
                Some((_, v)) => v.as_deref(),
                None => f.clone().and_then(|r| body.get(r)),
            })
            .collect();
        Ok(codec::build_data_row(values.into_iter()))
    }

    fn transform_copy(
        &mut self,
        frame: Frame,
        cmd: Option<CommandId>,
        plan: Arc<H::Plan>,
    ) -> Bytes {
        let Some(principal) = self.principal.clone() else {
            return frame.raw;
        };
        let cx = Context {
            session: self.id,
            command: cmd,
            principal: principal.as_ref(),
        };
        match self.hook.transform_copy(&cx, &plan, frame.body()) {
            Some(data) => codec::build_frame(b'd', &data),
            None => frame.raw,
        }
    }

    fn transform_error_like(
        &mut self,
        frame: &Frame,
        cmd: Option<CommandId>,
        plan: Option<Arc<H::Plan>>,
    ) -> Result<Bytes, SessionError> {
        let fields = wire::parse_fields(frame.body()).ok_or(SessionError::Backend(
            CodecError::Malformed {
                tag: frame.tag,
                reason: "error fields".into(),
            },
        ))?;
        let principal = self.principal.clone();
        let mut changed = false;
        let mut out: Vec<(u8, Vec<u8>)> = Vec::with_capacity(fields.len());
        for (code, value) in &fields {
            let mut v = value.to_vec();
            if let Some(p) = &principal
                && matches!(code, b'M' | b'D' | b'H' | b'W' | b'q')
            {
                let cx = Context {
                    session: self.id,
                    command: cmd,
                    principal: p.as_ref(),
                };
                let kind = if frame.tag == b'E' {
                    TextKind::ErrorField(*code)
                } else {
                    TextKind::NoticeField(*code)
                };
                if let Some(new) = self.hook.transform_text(
                    &cx,
                    plan.as_deref(),
                    kind,
                    &String::from_utf8_lossy(value),
                ) {
                    v = new.replace('\0', "").into_bytes();
                    changed = true;
                }
            }
            out.push((*code, v));
        }
        if frame.tag == b'E' {
            let get = |c: u8| {
                out.iter()
                    .find(|(k, _)| *k == c)
                    .map(|(_, v)| lossy(v))
                    .unwrap_or_default()
            };
            self.event_with(
                Event::Error {
                    session: self.id,
                    command: cmd,
                    code: get(b'C'),
                    message: get(b'M'),
                },
                plan,
            );
        }
        Ok(if changed {
            wire::build_fields(frame.tag, &out)
        } else {
            frame.raw.clone()
        })
    }

    fn transform_notification(&mut self, frame: &Frame) -> Result<Bytes, SessionError> {
        let mut r = Reader::new(frame.body());
        let bad = || {
            SessionError::Backend(CodecError::Malformed {
                tag: b'A',
                reason: "notification".into(),
            })
        };
        let pid = r.i32().ok_or_else(bad)?;
        let channel = r.cstr().ok_or_else(bad)?;
        let payload = r.cstr().filter(|_| r.done()).ok_or_else(bad)?;
        let Some(principal) = self.principal.clone() else {
            return Ok(frame.raw.clone());
        };
        let cx = Context {
            session: self.id,
            command: None,
            principal: principal.as_ref(),
        };
        match self.hook.transform_text(
            &cx,
            None,
            TextKind::Notification,
            &String::from_utf8_lossy(payload),
        ) {
            None => Ok(frame.raw.clone()),
            Some(new) => {
                let mut body = Vec::new();
                body.extend_from_slice(&pid.to_be_bytes());
                body.extend_from_slice(channel);
                body.push(0);
                body.extend_from_slice(new.replace('\0', "").as_bytes());
                body.push(0);
                Ok(codec::build_frame(b'A', &body))
            }
        }
    }
}

/// What [`Session::settings_barrier`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Barrier {
    /// Send it now.
    Go,
    /// Hold it until the ReadyForQuery that is on its way has been read.
    Wait,
    /// No ReadyForQuery is on its way (an open extended-protocol pipeline):
    /// refuse it.
    Refuse,
}

/// A client statement that may change settings: a Query or an Execute.
fn is_unsettling_reply<P>(r: &Reply<P>) -> bool {
    !r.gateway && matches!(r.kind, Kind::Query | Kind::Execute { .. })
}

fn is_unsettling<P>(e: &Expect<P>) -> bool {
    matches!(e, Expect::Backend(r) if is_unsettling_reply(r))
}

fn denial_message(code: &str, reason: &str) -> String {
    if code == "42501" {
        format!("permission denied by the gateway: {reason}")
    } else {
        reason.to_string()
    }
}

fn describe_frame(kind: u8, name: &str) -> Bytes {
    let mut body = vec![kind];
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    codec::build_frame(b'D', &body)
}

fn close_frame(kind: u8, name: &str) -> Bytes {
    let mut body = vec![kind];
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    codec::build_frame(b'C', &body)
}

fn parse_frame(name: &str, sql: &str) -> Bytes {
    let mut body = Vec::new();
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    body.extend_from_slice(sql.as_bytes());
    body.push(0);
    body.extend_from_slice(&0i16.to_be_bytes());
    codec::build_frame(b'P', &body)
}

fn bind_frame() -> Bytes {
    // Unnamed portal, unnamed statement, no formats, no parameters, no result formats.
    codec::build_frame(b'B', &[0, 0, 0, 0, 0, 0, 0, 0])
}

fn execute_frame() -> Bytes {
    codec::build_frame(b'E', &[0, 0, 0, 0, 0])
}

/// Reads a Bind body: portal, statement and parameter values.
fn parse_bind(body: &[u8]) -> Option<(String, String, Vec<Option<Bytes>>)> {
    let mut r = Reader::new(body);
    let portal = lossy(r.cstr()?);
    let statement = lossy(r.cstr()?);
    let nfmt = usize::try_from(r.i16()?).ok()?;
    r.bytes(nfmt.checked_mul(2)?)?;
    let nparams = usize::try_from(r.i16()?).ok()?;
    if nparams.saturating_mul(4) > r.remaining() {
        return None;
    }
    let mut params = Vec::with_capacity(nparams);
    for _ in 0..nparams {
        let len = r.i32()?;
        if len == -1 {
            params.push(None);
        } else {
            let len = usize::try_from(len).ok()?;
            params.push(Some(Bytes::copy_from_slice(r.bytes(len)?)));
        }
    }
    let nres = usize::try_from(r.i16()?).ok()?;
    r.bytes(nres.checked_mul(2)?)?;
    r.done().then_some((portal, statement, params))
}

/// Reads a RowDescription body into columns.
fn parse_row_description(body: &[u8]) -> Option<Vec<Column>> {
    let mut r = Reader::new(body);
    let n = usize::try_from(r.i16()?).ok()?;
    if n.saturating_mul(19) > r.remaining() {
        return None;
    }
    let mut cols = Vec::with_capacity(n);
    for index in 0..n {
        let name = lossy(r.cstr()?);
        let table_oid = r.i32()? as u32;
        let attribute = r.i16()?;
        let type_oid = r.i32()? as u32;
        let _size = r.i16()?;
        let _modifier = r.i32()?;
        let format = if r.i16()? == 1 {
            Format::Binary
        } else {
            Format::Text
        };
        cols.push(Column {
            index,
            name,
            table_oid,
            attribute,
            type_oid,
            format,
        });
    }
    r.done().then_some(cols)
}

/// Runs every body reader on `body` (a fuzz entry point).
pub(crate) fn fuzz_bodies(body: &[u8]) {
    let _ = parse_bind(body);
    let _ = parse_row_description(body);
    let _ = wire::parse_fields(body);
    let _ = codec::split_data_row(body);
}
