//! The sans-IO session: one client connection and its backend connection.
//!
//! This file holds the session's state, its public surface and the loops
//! that read frames from either side; the rest is split along the path a
//! connection takes:
//!
//! - [`handshake`]: the client's startup, TLS and bearer token;
//! - [`backend_auth`]: the gateway's login to the backend and its startup;
//! - [`pipeline`]: client messages once ready, the hook's verdicts, prepared
//!   statements and portals, and the queue of replies the backend owes;
//! - [`replies`]: each backend reply matched to what it answers;
//! - [`result`]: column plans and the row, COPY and notice transforms;
//! - [`budget`]: cutting a result at its row limit.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use crate::error::{CodecError, SessionError};
use crate::hook::{
    Authenticated, BackendTarget, Column, CommandId, Context, Decision, Event, FieldValue, Held,
    HoldId, ParseVerdict, RefusedBy, Rejection, SessionId, StartupParams, TextKind, Transform,
    Verdict,
};
use crate::messages::{self, Frame, Limits, backend, encode, frontend, lossy};
use crate::startup;

mod backend_auth;
mod budget;
mod handshake;
mod pipeline;
mod replies;
mod result;

use backend_auth::BackendAuth;
use budget::Cut;
use pipeline::{Described, Expect, Kind, Pending, PortalEntry, Reply, Stmt, is_unsettling};
use result::ResultState;

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
        encode(&frontend::cancel_request(self.pid, self.secret))
    }
}

/// What a connection over the listener's session limit is told before it
/// is closed (FATAL 53300, naming the limit and its value). No session is
/// started for it.
pub(crate) fn over_session_limit(limit: usize) -> Bytes {
    backend::fatal(
        "53300",
        &format!(
            "sorry, too many clients already: the gateway's limit of {limit} sessions in total \
             on this listener (max_sessions) is reached"
        ),
    )
}

/// An asynchronous question for the decision side of the hook
/// ([`Hook`](crate::Hook)); answer it with the matching `handle_*` method of
/// [`Session`]. Its `Debug` output redacts the credential.
pub enum HookRequest<P> {
    /// Call [`Hook::authenticate`](crate::Hook::authenticate), then [`Session::handle_authenticated`].
    Authenticate {
        /// The client's startup parameters.
        startup: StartupParams,
        /// The password the client sent (its bearer token).
        credential: String,
    },
    /// Call [`Hook::on_query`](crate::Hook::on_query), then [`Session::handle_verdict`].
    Query {
        /// The command.
        command: CommandId,
        /// The query text.
        sql: String,
    },
    /// Call [`Hook::on_parse`](crate::Hook::on_parse), then [`Session::handle_parse_verdict`].
    Parse {
        /// The command.
        command: CommandId,
        /// Statement name (empty for the unnamed statement).
        statement: String,
        /// The statement text.
        sql: String,
    },
    /// Call [`Hook::on_execute`](crate::Hook::on_execute), then [`Session::handle_verdict`].
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
    /// Pass to [`Transform::on_event`], with the plan of the command it is about.
    Event(Event, Option<Arc<P>>),
    /// After writing the pending client bytes, run a TLS handshake with the
    /// client, then call [`Session::handle_client_tls`].
    StartClientTls,
    /// Connect to this backend (a plain connection: when its target asks
    /// for TLS, the session negotiates it), then call
    /// [`Session::handle_backend_connected`] (or
    /// [`Session::handle_backend_connect_failed`]).
    ConnectBackend(BackendTarget),
    /// The backend accepted the session's SSLRequest: after writing the
    /// pending backend bytes, run a TLS handshake with the backend, checking
    /// its certificate against `server_name`, then call
    /// [`Session::handle_backend_tls`] with the certificate (or
    /// [`Session::handle_backend_connect_failed`]).
    StartBackendTls {
        /// The name the backend's certificate must carry.
        server_name: String,
    },
    /// The client sent a CancelRequest with this gateway-issued key; the
    /// session is over. Find the session that issued it.
    Cancel(CancelKey),
    /// Send a CancelRequest with this session's backend key
    /// ([`Session::backend_key`]) to its backend, wait until the backend
    /// closes that connection (it has signalled the statement by then), and
    /// call [`Session::handle_backend_cancel_sent`]. Until then the session
    /// forwards no more client messages, so the cancel cannot reach a
    /// statement sent after it.
    CancelBackend,
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
            Output::StartBackendTls { server_name } => f
                .debug_struct("StartBackendTls")
                .field("server_name", server_name)
                .finish(),
            Output::Cancel(k) => f.debug_tuple("Cancel").field(k).finish(),
            Output::CancelBackend => f.write_str("CancelBackend"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Startup,
    TlsHandshake,
    Password,
    Authenticating,
    ConnectingBackend,
    /// The backend was sent an SSLRequest; its one-byte answer is awaited.
    BackendTlsRequest,
    /// The backend accepted TLS; the driver runs the handshake.
    BackendTlsHandshake,
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
            Phase::BackendTlsRequest | Phase::BackendTlsHandshake => "backend tls negotiation",
            Phase::BackendAuth => "backend authentication",
            Phase::BackendStartup => "backend startup",
            Phase::Ready => "query processing",
        }
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
/// use portcullis_pg::{CancelKey, Session, SessionConfig, SessionId, Transform};
///
/// /// The session needs only the synchronous side of a hook.
/// struct Nobody;
/// impl Transform for Nobody {
///     type Principal = ();
///     type Plan = ();
///     type ColumnPlan = ();
/// }
///
/// let config = SessionConfig { loopback: true, ..SessionConfig::default() };
/// let key = CancelKey { pid: 1, secret: 2 };
/// let mut session = Session::new(SessionId(1), config, Arc::new(Nobody), key, Instant::now());
/// // A GSSENCRequest is declined with a single 'N'.
/// session.handle_client_data(Instant::now(), &[0, 0, 0, 8, 4, 210, 22, 48]);
/// assert_eq!(session.poll_client_transmit().as_deref(), Some(&b"N"[..]));
/// ```
pub struct Session<H: Transform> {
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
    /// The id of the latest hold: the one in progress while `pending` is a
    /// held command. (Kept out of [`Pending`], whose layout the check of
    /// every backend message reads.)
    hold: HoldId,
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
    /// The row cap of the COPY TO STDOUT in progress.
    copy_limit: Option<crate::hook::RowLimit>,
    /// A CancelRequest for a cut result is on its way to the backend: no
    /// client message is forwarded until it has been delivered.
    cancel_wait: bool,
    rows: u64,
    bytes: u64,
    copy_out: bool,
    next_command: u64,
    handshake_deadline: Instant,
    last_activity: Instant,
    closing: bool,
    ended: bool,
}

impl<H: Transform> std::fmt::Debug for Session<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("phase", &self.phase)
            .field("tx_status", &(self.tx_status as char))
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl<H: Transform> Session<H> {
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
            hold: HoldId(0),
            expect: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            client_skipping: false,
            backend_ignoring: false,
            fail_at_sync: false,
            last_describe_portal: None,
            tx_status: b'I',
            result: None,
            copy_limit: None,
            cancel_wait: false,
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

    /// The hold in progress, if any: the driver awaits its decision and
    /// answers with [`Session::handle_hold_resolved`].
    pub fn holding(&self) -> Option<HoldId> {
        match self.pending {
            Some(Pending::HeldQuery { .. } | Pending::HeldExecute { .. }) => Some(self.hold),
            _ => None,
        }
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
            && !self.cancel_wait
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
                    Some(backend::fatal(
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
                    Some(backend::fatal(
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

    /// The client closed its connection. A logged-in backend connection is
    /// sent a Terminate: write the pending backend bytes before closing it.
    pub fn handle_client_closed(&mut self) {
        if !self.closing
            && matches!(
                self.phase,
                Phase::BackendAuth | Phase::BackendStartup | Phase::Ready
            )
        {
            self.to_backend
                .push_back(encode(&frontend::Terminate::new()));
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
                Some(backend::fatal("08006", "the backend closed the connection")),
                Some(SessionError::Refused(
                    "backend closed the connection".into(),
                )),
            );
        }
    }

    /// The gateway ended this session (see [`Hook::ended`](crate::Hook::ended)): the client is
    /// told why and both connections close, whatever was in flight.
    pub fn handle_ended(&mut self, reason: &str) {
        if !self.closing {
            self.to_backend
                .push_back(encode(&frontend::Terminate::new()));
            self.close(
                Some(backend::fatal("57P01", reason)),
                Some(SessionError::Refused(reason.to_owned())),
            );
        }
    }

    /// The driver asks the session to end at a safe point (graceful shutdown).
    pub fn handle_shutdown(&mut self) {
        if !self.closing {
            self.to_backend
                .push_back(encode(&frontend::Terminate::new()));
            self.close(
                Some(backend::fatal(
                    "57P01",
                    "terminating connection due to administrator command",
                )),
                None,
            );
        }
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
                by: RefusedBy::Hook,
            });
        }
        self.close(
            Some(backend::fatal("57P01", &reason)),
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

    fn process_client(&mut self) {
        while !self.closing && self.pending.is_none() && !self.cancel_wait {
            let frame = match self.phase {
                Phase::Startup => {
                    messages::read_startup(&mut self.client_in, self.cfg.limits.max_startup)
                }
                Phase::Password => {
                    messages::read_frame(&mut self.client_in, self.cfg.limits.max_auth)
                }
                Phase::Ready => {
                    messages::read_frame(&mut self.client_in, self.cfg.limits.max_client_frame)
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
        self.close(Some(backend::fatal("08P01", &msg)), Some(e));
    }

    fn process_backend(&mut self) {
        if self.phase == Phase::BackendTlsRequest {
            // One byte, before any frame: nothing else is read in this
            // phase (checked once per read, not per frame).
            self.on_backend_tls_answer();
            return;
        }
        while !self.closing {
            match self.phase {
                Phase::BackendAuth | Phase::BackendStartup | Phase::Ready => {}
                _ => return,
            }
            match messages::read_frame(&mut self.backend_in, self.cfg.limits.max_backend_frame) {
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

    /// The backend sent what the session cannot account for: nothing more
    /// is forwarded; the client gets a protocol error and the session ends.
    fn backend_protocol_error(&mut self, e: SessionError) {
        self.to_backend
            .push_back(encode(&frontend::Terminate::new()));
        self.event(Event::ProtocolViolation {
            session: self.id,
            message: e.to_string(),
        });
        self.close(
            Some(backend::fatal(
                "08P01",
                "protocol violation: the backend sent a message the gateway cannot account for",
            )),
            Some(e),
        );
    }
}
