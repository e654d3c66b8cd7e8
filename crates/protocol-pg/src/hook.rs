//! The contract between the proxy and the gateway: the [`Hook`] trait and the
//! values that cross it.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;

/// Identifies one client connection for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// Identifies one command (a simple query, a Parse or an Execute) within a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// The parameters of the client's StartupMessage, as sent (user, database,
/// application_name, options, and any other).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupParams {
    /// Every parameter by name.
    pub params: BTreeMap<String, String>,
}

impl StartupParams {
    /// The `user` parameter.
    pub fn user(&self) -> &str {
        self.params.get("user").map_or("", String::as_str)
    }

    /// The `database` parameter, defaulting to the user name as PostgreSQL does.
    pub fn database(&self) -> &str {
        self.params
            .get("database")
            .map_or_else(|| self.user(), String::as_str)
    }

    /// Any other parameter by name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Where the backend server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendAddr {
    /// A TCP host and port.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A unix socket file (for example `/run/postgresql/.s.PGSQL.5432`).
    Unix(PathBuf),
}

/// TLS towards the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendTls {
    /// Plain connection.
    Disable,
    /// TLS required; the certificate is checked against this server name with
    /// the driver's client TLS configuration.
    Require {
        /// The name the server certificate must carry.
        server_name: String,
    },
}

/// The backend a session connects to and the credential the gateway injects.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendTarget {
    /// Where the server listens.
    pub addr: BackendAddr,
    /// The database to open.
    pub database: String,
    /// The role to log in as.
    pub user: String,
    /// The password (for SCRAM-SHA-256, md5 or cleartext); never sent to the client.
    pub password: String,
    /// TLS towards the backend.
    pub tls: BackendTls,
    /// What this connection accepts beyond the strict defaults.
    pub allow: Allowances,
}

/// Relaxations of a session's strict defaults, per backend connection.
/// The default allows none of them.
///
/// # Example
///
/// ```
/// let mut allow = portcullis_pg::Allowances::default();
/// assert!(!allow.backend_md5);
/// allow.backend_md5 = true; // a legacy server with md5 in pg_hba.conf
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Allowances {
    /// A client's startup parameter outside the allow-list is dropped with a
    /// notice instead of refusing the session.
    pub drop_unknown_startup_params: bool,
    /// The backend may ask for the password in cleartext
    /// (AuthenticationCleartextPassword).
    pub backend_cleartext: bool,
    /// The backend may ask for an MD5 password hash (AuthenticationMD5Password).
    pub backend_md5: bool,
    /// The backend may accept the gateway without asking for any password
    /// (an AuthenticationOk before any exchange: `trust`).
    pub backend_trust: bool,
    /// Not a relaxation but the reverse: the gateway's login to the backend
    /// must be SCRAM-SHA-256-PLUS, bound to the backend's TLS certificate
    /// (`tls-server-end-point`). A plain connection, a certificate that
    /// allows no binding, a backend that does not offer `-PLUS`, and any
    /// other method (even one allowed above) end the session. When false
    /// (the default) the binding is used whenever it is on offer over TLS.
    pub require_channel_binding: bool,
}

impl fmt::Debug for BackendTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendTarget")
            .field("addr", &self.addr)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("tls", &self.tls)
            .field("allow", &self.allow)
            .finish()
    }
}

/// A successful authentication: who the client is and where its session goes.
#[derive(Debug, Clone)]
pub struct Authenticated<P> {
    /// The principal, opaque to this crate; handed back on every later call.
    pub principal: P,
    /// The backend for this session.
    pub backend: BackendTarget,
}

/// Why a client was not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The credential is wrong, expired or unknown (SQLSTATE 28P01).
    InvalidCredential(String),
    /// The credential is valid but may not open this session (SQLSTATE 28000).
    NotAuthorized(String),
    /// A session limit is reached (SQLSTATE 53300, too_many_connections);
    /// the reason says which one.
    TooManySessions(String),
}

/// The final decision on a held command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send it to the backend.
    Forward,
    /// Refuse it with this reason (SQLSTATE 42501).
    Deny(String),
}

/// A future resolving to the decision on a held command.
pub type DecisionFuture = Pin<Box<dyn Future<Output = Decision> + Send + 'static>>;

/// A command waiting for approval: a notice for the client now, and the
/// decision later. The driver keeps the decision future (the session sees
/// the hold only as a [`Held`]); dropping it (on a cancel or a disconnect)
/// abandons the hold, and the hook is told through [`Event::HoldAbandoned`].
pub struct Hold {
    /// Sent to the client at once as a NoticeResponse, e.g. "held for approval: 42".
    pub notice: String,
    /// Resolves to the decision.
    pub decision: DecisionFuture,
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold")
            .field("notice", &self.notice)
            .finish_non_exhaustive()
    }
}

/// Names one hold of a session. The driver chooses it when it takes the
/// hold's decision future out of a verdict ([`Verdict::detach`]) and
/// passes it back with the decision
/// ([`Session::handle_hold_resolved`](crate::Session::handle_hold_resolved)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HoldId(pub u64);

impl fmt::Display for HoldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h{}", self.0)
    }
}

/// A hold as the session sees it: its id and the notice for the client; the
/// decision future stays with the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The hold's id.
    pub id: HoldId,
    /// Sent to the client at once as a NoticeResponse.
    pub notice: String,
}

/// The hook's answer to a command: what to do with it and, when it runs,
/// its plan.
///
/// The plan belongs to this one statement (a simple query, a prepared
/// statement, one execution): the session stores it with the prepared
/// statement, portal or expected reply it belongs to, hands it back to the
/// transforms of that statement's results ([`Transform::on_row_description`],
/// [`Transform::transform_field`], [`Transform::transform_copy`],
/// [`Transform::transform_text`]) and reports it with the events of that
/// statement ([`Transform::on_event`]). Nothing about "the current command" is
/// kept anywhere else.
///
/// The hook answers a `Verdict<P>`, whose hold carries its decision future
/// ([`Hold`]); the session is given a `Verdict<P, Held>`, the same verdict
/// with the future taken out by the driver ([`Verdict::detach`]).
#[derive(Debug)]
pub enum Verdict<P, H = Hold> {
    /// Send it to the backend, with its plan.
    Forward(P),
    /// Refuse it with this reason: the client gets SQLSTATE 42501.
    Deny(String),
    /// Refuse it because a budget of its principal is spent (statements per
    /// minute, ...): the client gets SQLSTATE 53400
    /// (configuration_limit_exceeded) with this reason, which should say
    /// which budget, its limit and what to do.
    Exceeded(String),
    /// Hold it until the decision resolves; if forwarded then, it runs with this plan.
    Hold(H, P),
    /// End the session: the command never reaches the backend, the client
    /// gets a FATAL error (SQLSTATE 57P01) with this reason, and both
    /// connections close. For a session that may go on no longer (its token
    /// expired or was revoked, or an operator killed it).
    Terminate(String),
}

impl<P> Verdict<P> {
    /// Takes a hold's decision future out, for the driver to await under
    /// `id`, and leaves the verdict the session is given. Any other verdict
    /// comes back unchanged, with no future.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis_pg::{Decision, Hold, HoldId, Verdict};
    ///
    /// let hold = Hold {
    ///     notice: "held for approval: 7".into(),
    ///     decision: Box::pin(async { Decision::Forward }),
    /// };
    /// let (verdict, decision) = Verdict::Hold(hold, ()).detach(HoldId(1));
    /// assert!(matches!(verdict, Verdict::Hold(held, ()) if held.id == HoldId(1)));
    /// assert!(decision.is_some());
    /// ```
    pub fn detach(self, id: HoldId) -> (Verdict<P, Held>, Option<DecisionFuture>) {
        match self {
            Verdict::Forward(plan) => (Verdict::Forward(plan), None),
            Verdict::Deny(reason) => (Verdict::Deny(reason), None),
            Verdict::Exceeded(reason) => (Verdict::Exceeded(reason), None),
            Verdict::Terminate(reason) => (Verdict::Terminate(reason), None),
            Verdict::Hold(hold, plan) => (
                Verdict::Hold(
                    Held {
                        id,
                        notice: hold.notice,
                    },
                    plan,
                ),
                Some(hold.decision),
            ),
        }
    }
}

/// The hook's answer to an extended-protocol Parse.
#[derive(Debug)]
pub enum ParseVerdict<P> {
    /// Prepare it with this plan. The plan is kept with the statement once
    /// the backend confirms it (ParseComplete) and is handed to
    /// [`Hook::on_execute`] at each of its executions, which the hook sees
    /// one by one (every Execute is a command).
    Forward(P),
    /// Refuse it (SQLSTATE 42501); its Bind and Execute never reach the backend.
    Deny(String),
    /// End the session, as [`Verdict::Terminate`].
    Terminate(String),
}

/// One execution of a portal: what [`Hook::on_execute`] decides on.
#[derive(Debug)]
pub struct Execution<'a, P> {
    /// The portal's name (empty for the unnamed portal).
    pub portal: &'a str,
    /// The prepared statement's name (empty for the unnamed statement).
    pub statement: &'a str,
    /// The plan the statement was prepared with ([`Hook::on_parse`]), or
    /// `None` for a statement this session never saw parsed (prepared with
    /// SQL `PREPARE`): then `sql` is `EXECUTE <name>` and nothing is known
    /// about it.
    pub plan: Option<&'a P>,
    /// The statement's text.
    pub sql: &'a str,
    /// The bound parameter values (`None` is NULL; in the client's format).
    pub params: &'a [Option<Bytes>],
}

/// One result column, as described by the backend's RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Position in the row, from 0.
    pub index: usize,
    /// Column name (lossily decoded).
    pub name: String,
    /// OID of the source table, or 0.
    pub table_oid: u32,
    /// Attribute number in the source table, or 0.
    pub attribute: i16,
    /// OID of the column's type.
    pub type_oid: u32,
    /// The wire format of its values.
    pub format: Format,
}

/// Wire format of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Text representation.
    Text,
    /// Binary representation.
    Binary,
}

/// The hook's replacement for one field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    /// Keep the value as it is.
    Keep,
    /// Replace it with these bytes (in the column's format).
    Replace(Vec<u8>),
    /// Replace it with SQL NULL (for typed or binary columns that cannot carry a marker text).
    Null,
}

/// A cap on the rows one statement may return to the client, from
/// [`Transform::row_limit`].
///
/// When a result reaches `max_rows` and another row arrives, that row and
/// every later one are dropped, the backend is asked to cancel the
/// statement (a CancelRequest with its key), and the client gets SQLSTATE
/// 53400 with `message` instead of the statement's end. What the client
/// sees stays what the backend did: the statement failed there too (its
/// cancel, or, when it had already completed, a transaction made to fail);
/// where that cannot be arranged (it completed outside a transaction and
/// `read_only` is false, or more statements of the same pipeline ran after
/// it) the session ends with FATAL 53400.
///
/// # Example
///
/// ```
/// let limit = portcullis_pg::RowLimit::new(100, "row budget exceeded: add LIMIT 100")
///     .read_only(true);
/// assert_eq!(limit.max_rows, 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowLimit {
    /// Rows the client may receive; the next one ends the statement.
    pub max_rows: u64,
    /// The error message the client gets (SQLSTATE 53400).
    pub message: String,
    /// The statement provably changes nothing: if it completes at the
    /// backend before the cancel reaches it, outside a transaction block,
    /// the session may go on.
    pub read_only: bool,
}

impl RowLimit {
    /// A limit of `max_rows` rows, refused with `message`.
    pub fn new(max_rows: u64, message: impl Into<String>) -> RowLimit {
        RowLimit {
            max_rows,
            message: message.into(),
            read_only: false,
        }
    }

    /// Whether the statement provably changes nothing.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> RowLimit {
        self.read_only = read_only;
        self
    }
}

/// Which text a [`Transform::transform_text`] call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextKind {
    /// A field of an ErrorResponse, by its field code (`M`, `D`, `H`, `W`, `q`).
    ErrorField(u8),
    /// A field of a NoticeResponse, by its field code.
    NoticeField(u8),
    /// The payload of a NotificationResponse.
    Notification,
    /// A column name in a RowDescription (the reply to a query, or to a
    /// Describe of a statement or portal). Only the text the client sees
    /// changes: the hook's column plans are chosen on the backend's names.
    ColumnName,
    /// The value of a ParameterStatus (at startup, or after a `SET` of a
    /// reported setting such as `application_name`), after the session has
    /// checked it; the setting's name is given and is never changed.
    ParameterStatus(String),
}

/// What a call is about: the session, the principal and, for commands, the command.
#[derive(Debug)]
pub struct Context<'a, P> {
    /// The session.
    pub session: SessionId,
    /// The command, for calls about one.
    pub command: Option<CommandId>,
    /// The authenticated principal.
    pub principal: &'a P,
}

/// Who refused a command ([`Event::CommandDenied`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBy {
    /// The hook: its verdict (deny, budget exceeded, terminate) or a held
    /// command's decision. The hook knows why, and has recorded it if it
    /// records.
    Hook,
    /// The session itself, without asking the hook: statement text not in
    /// the client encoding (22021), text the analysis cannot read until the
    /// backend reports its settings, the fast-path interface, a portal the
    /// gateway did not bind. Only this event tells of it.
    Session,
}

/// Something that happened in a session, for the gateway to record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The client was authenticated and its backend session is ready.
    SessionStarted {
        /// The session.
        session: SessionId,
        /// The startup parameters the client sent.
        startup: StartupParams,
    },
    /// A command arrived from the client.
    CommandReceived {
        /// The session.
        session: SessionId,
        /// The command.
        command: CommandId,
        /// Its SQL text (lossily decoded).
        sql: String,
    },
    /// A command was sent to the backend.
    CommandForwarded {
        /// The session.
        session: SessionId,
        /// The command.
        command: CommandId,
    },
    /// A command was refused.
    CommandDenied {
        /// The session.
        session: SessionId,
        /// The command.
        command: CommandId,
        /// The reason given to the client.
        reason: String,
        /// Who refused it: the hook's verdict, or the session itself.
        by: RefusedBy,
    },
    /// A command is held; the notice was sent to the client.
    CommandHeld {
        /// The session.
        session: SessionId,
        /// The command.
        command: CommandId,
        /// The notice sent.
        notice: String,
    },
    /// A hold ended without a decision (the client cancelled or disconnected).
    HoldAbandoned {
        /// The session.
        session: SessionId,
        /// The command.
        command: CommandId,
    },
    /// A command finished.
    CommandCompleted {
        /// The session.
        session: SessionId,
        /// The command.
        command: CommandId,
        /// The CommandComplete tag, e.g. `SELECT 3` (empty for an empty query).
        tag: String,
        /// Data rows or COPY data messages sent to the client.
        rows: u64,
        /// Bytes of those rows sent to the client.
        bytes: u64,
    },
    /// The backend reported an error (after [`Transform::transform_text`]).
    Error {
        /// The session.
        session: SessionId,
        /// The command it belongs to, when known.
        command: Option<CommandId>,
        /// SQLSTATE.
        code: String,
        /// Primary message.
        message: String,
    },
    /// The backend sent a message the session cannot attribute to any reply
    /// it expects (a DataRow with no result in progress, a RowDescription out
    /// of order, ...). Its bytes were not forwarded; the client got a
    /// protocol error (SQLSTATE 08P01) and the session ends.
    ProtocolViolation {
        /// The session.
        session: SessionId,
        /// What was wrong.
        message: String,
    },
    /// A command's reply will never come: the backend discards it, because an
    /// earlier extended-protocol message of its pipeline failed (PostgreSQL
    /// ignores every message up to Sync after an error).
    CommandDiscarded {
        /// The session.
        session: SessionId,
        /// The command.
        command: CommandId,
    },
    /// A result reached its [`RowLimit`]: no more of its rows were
    /// forwarded and the backend was asked to cancel the statement.
    RowLimitExceeded {
        /// The session.
        session: SessionId,
        /// The command.
        command: Option<CommandId>,
        /// The limit (rows forwarded to the client).
        limit: u64,
    },
    /// The session ended.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// Why, when it was not a clean Terminate.
        error: Option<String>,
    },
}

/// The synchronous side of the gateway's hook: what the session state
/// machine itself calls while it runs.
///
/// Transforms run on every result row and never wait, so they are plain
/// functions; the [`Session`](crate::Session) is generic over this trait
/// alone and needs no runtime. The decisions that may wait (authentication,
/// a verdict on a command, a hold) are the [`Hook`] trait's, which only the
/// driver awaits.
///
/// # Who calls what
///
/// - A result: [`Transform::on_row_description`] once per result with the
///   plan of the statement that produced it, then
///   [`Transform::transform_field`] per chosen value with the plan and the
///   column's [`Transform::ColumnPlan`]; [`Transform::row_limit`] once per
///   result.
/// - A COPY TO STDOUT: [`Transform::transform_copy`] per data message.
/// - Error and notice fields, notifications, column names and
///   ParameterStatus values: [`Transform::transform_text`].
/// - [`Transform::session_settings`] once, when the backend session is
///   opened; [`Transform::on_event`] with the plan of the command the event
///   is about.
///
/// # Example
///
/// ```
/// use portcullis_pg::{Column, Context, FieldValue, Transform};
///
/// /// Masks the columns named in each statement's plan.
/// struct MaskByName;
///
/// impl Transform for MaskByName {
///     type Principal = String;
///     /// Per statement: the column names to mask.
///     type Plan = Vec<String>;
///     type ColumnPlan = ();
///     fn on_row_description(
///         &self,
///         _cx: &Context<'_, String>,
///         plan: &Vec<String>,
///         columns: &[Column],
///     ) -> Vec<(usize, ())> {
///         columns.iter().filter(|c| plan.contains(&c.name)).map(|c| (c.index, ())).collect()
///     }
///     fn transform_field(
///         &self,
///         _cx: &Context<'_, String>,
///         _plan: &Vec<String>,
///         _column: &Column,
///         _column_plan: &(),
///         _value: &[u8],
///     ) -> FieldValue {
///         FieldValue::Replace(b"[MASKED]".to_vec())
///     }
/// }
/// ```
pub trait Transform: Send + Sync + 'static {
    /// Who a client is, as the gateway understands it; this crate does not look inside.
    type Principal: Send + Sync + 'static;

    /// What the hook decided for one statement (what to mask, its audit
    /// command id, ...); opaque to this crate, kept with the statement.
    type Plan: Send + Sync + 'static;

    /// What the hook decided for one column of one result, at its
    /// RowDescription; handed back with each of the column's values.
    type ColumnPlan: Send + Sync + 'static;

    /// Sees a result's columns once, with the plan of the statement that
    /// produced it, and returns the columns whose values go through
    /// [`Transform::transform_field`] (by index, with a per-column plan).
    /// Others cost nothing.
    fn on_row_description(
        &self,
        cx: &Context<'_, Self::Principal>,
        plan: &Self::Plan,
        columns: &[Column],
    ) -> Vec<(usize, Self::ColumnPlan)> {
        let _ = (cx, plan, columns);
        Vec::new()
    }

    /// Transforms one value of a chosen column.
    fn transform_field(
        &self,
        cx: &Context<'_, Self::Principal>,
        plan: &Self::Plan,
        column: &Column,
        column_plan: &Self::ColumnPlan,
        value: &[u8],
    ) -> FieldValue {
        let _ = (cx, plan, column, column_plan, value);
        FieldValue::Keep
    }

    /// Transforms one CopyData message of a COPY TO STDOUT (one row in text
    /// and CSV formats). `None` keeps it.
    fn transform_copy(
        &self,
        cx: &Context<'_, Self::Principal>,
        plan: &Self::Plan,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let _ = (cx, plan, data);
        None
    }

    /// Transforms a text sent by the backend: error and notice fields,
    /// notification payloads, column names of RowDescriptions and values of
    /// ParameterStatus messages ([`TextKind`]), with the plan of the command
    /// it belongs to when there is one. `None` keeps it (the message is
    /// forwarded byte for byte); NUL bytes of a replacement are dropped.
    fn transform_text(
        &self,
        cx: &Context<'_, Self::Principal>,
        plan: Option<&Self::Plan>,
        kind: TextKind,
        text: &str,
    ) -> Option<String> {
        let _ = (cx, plan, kind, text);
        None
    }

    /// Settings pinned for this principal's backend session, sent in the
    /// backend's StartupMessage (lower-case names, e.g.
    /// `("statement_timeout", "5000")`). A startup parameter outranks the
    /// database's and the role's defaults; the client cannot send these
    /// itself (the startup allow-list refuses them), and a later `SET` is
    /// for the hook's policy to refuse. The default pins nothing.
    fn session_settings(&self, principal: &Self::Principal) -> Vec<(String, String)> {
        let _ = principal;
        Vec::new()
    }

    /// The row cap of one statement's results ([`RowLimit`]), asked once per
    /// result (and per COPY TO STDOUT, whose data messages count as rows).
    /// The default sets none.
    fn row_limit(&self, cx: &Context<'_, Self::Principal>, plan: &Self::Plan) -> Option<RowLimit> {
        let _ = (cx, plan);
        None
    }

    /// Observes an event, with the plan of the command it is about (for
    /// [`Event::CommandForwarded`], [`Event::CommandHeld`],
    /// [`Event::CommandCompleted`] and a command's [`Event::Error`]).
    /// Called in order, from the session's task.
    fn on_event(&self, event: &Event, plan: Option<&Self::Plan>) {
        let _ = (event, plan);
    }
}

/// The asynchronous side of the gateway's hook: the decisions, which only
/// the driver ([`Proxy`](crate::Proxy)) awaits.
///
/// Decisions may consult a policy service, wait for an audit write or for
/// an approval. Every call carries the session id and, for commands, the
/// command id ([`Context`]). The synchronous side, which the session calls
/// itself, is the supertrait [`Transform`].
///
/// # Who calls what
///
/// - A simple Query: [`Hook::on_query`] → [`Verdict`] with a plan; its
///   results are transformed with that plan.
/// - A Parse: [`Hook::on_parse`] → [`ParseVerdict`] with a plan, stored with
///   the statement when the backend confirms it.
/// - Every Execute (a command of its own, with its own [`CommandId`]):
///   [`Hook::on_execute`] with the statement's plan and the bound
///   parameters → [`Verdict`] with the plan of this one execution, which its
///   rows are transformed with.
/// - A [`Verdict::Hold`]: the driver keeps its decision future and awaits
///   it; the session only knows the hold by its [`HoldId`].
///
/// # Example
///
/// ```
/// use portcullis_pg::{
///     async_trait, Authenticated, BackendAddr, BackendTarget, BackendTls, Context, Hook,
///     Rejection, SessionId, StartupParams, Transform, Verdict,
/// };
///
/// /// Lets in the holder of one token; forwards every statement unchanged.
/// struct Allow;
///
/// impl Transform for Allow {
///     type Principal = String;
///     type Plan = ();
///     type ColumnPlan = ();
/// }
///
/// #[async_trait]
/// impl Hook for Allow {
///     async fn authenticate(
///         &self,
///         _session: SessionId,
///         startup: &StartupParams,
///         credential: &str,
///     ) -> Result<Authenticated<String>, Rejection> {
///         if credential != "token" {
///             return Err(Rejection::InvalidCredential("bad token".into()));
///         }
///         Ok(Authenticated {
///             principal: startup.user().to_string(),
///             backend: BackendTarget {
///                 addr: BackendAddr::Tcp { host: "127.0.0.1".into(), port: 5432 },
///                 database: startup.database().to_string(),
///                 user: "app".into(),
///                 password: "secret".into(),
///                 tls: BackendTls::Disable,
///                 allow: Default::default(),
///             },
///         })
///     }
///     async fn on_query(&self, _cx: &Context<'_, String>, _sql: &str) -> Verdict<()> {
///         Verdict::Forward(())
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Hook: Transform {
    /// Checks the client's credential (the bearer token sent as its password)
    /// and chooses the backend.
    async fn authenticate(
        &self,
        session: SessionId,
        startup: &StartupParams,
        credential: &str,
    ) -> Result<Authenticated<Self::Principal>, Rejection>;

    /// Decides on a simple-protocol query (`Q`), which may hold several statements.
    async fn on_query(&self, cx: &Context<'_, Self::Principal>, sql: &str) -> Verdict<Self::Plan>;

    /// Decides on an extended-protocol Parse. The default asks
    /// [`Hook::on_query`] (a hold it returns is dropped unused: the default
    /// [`Hook::on_execute`] asks again at each execution).
    async fn on_parse(
        &self,
        cx: &Context<'_, Self::Principal>,
        statement: &str,
        sql: &str,
    ) -> ParseVerdict<Self::Plan> {
        let _ = statement;
        match self.on_query(cx, sql).await {
            Verdict::Forward(plan) | Verdict::Hold(_, plan) => ParseVerdict::Forward(plan),
            Verdict::Deny(reason) | Verdict::Exceeded(reason) => ParseVerdict::Deny(reason),
            Verdict::Terminate(reason) => ParseVerdict::Terminate(reason),
        }
    }

    /// Decides on one Execute: every execution of every statement is asked,
    /// before it is forwarded. The default asks [`Hook::on_query`] with the
    /// statement's text; a gateway reuses the decision in
    /// [`Execution::plan`] and checks only what may have changed since
    /// (the identity, the session).
    async fn on_execute(
        &self,
        cx: &Context<'_, Self::Principal>,
        execution: Execution<'_, Self::Plan>,
    ) -> Verdict<Self::Plan> {
        self.on_query(cx, execution.sql).await
    }

    /// Resolves, with the reason to tell the client, when the gateway wants
    /// this authenticated session ended now (an operator ended it): the
    /// driver ends it at once, idle or not. The default never resolves.
    fn ended(&self, principal: &Self::Principal) -> Pin<Box<dyn Future<Output = String> + Send>> {
        let _ = principal;
        Box::pin(std::future::pending())
    }
}
