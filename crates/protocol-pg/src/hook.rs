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
}

impl fmt::Debug for BackendTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendTarget")
            .field("addr", &self.addr)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("tls", &self.tls)
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
}

/// The final decision on a held command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send it to the backend.
    Forward,
    /// Refuse it with this reason (SQLSTATE 42501).
    Deny(String),
}

/// A command waiting for approval: a notice for the client now, and the
/// decision later. Dropping the future (on a cancel or a disconnect) abandons
/// the hold; the hook is told through [`Event::HoldAbandoned`].
pub struct Hold {
    /// Sent to the client at once as a NoticeResponse, e.g. "held for approval: 42".
    pub notice: String,
    /// Resolves to the decision.
    pub decision: Pin<Box<dyn Future<Output = Decision> + Send + 'static>>,
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold")
            .field("notice", &self.notice)
            .finish_non_exhaustive()
    }
}

/// The hook's answer to a command.
#[derive(Debug)]
pub enum Verdict {
    /// Send it to the backend.
    Forward,
    /// Refuse it with this reason: the client gets SQLSTATE 42501.
    Deny(String),
    /// Hold it until the decision resolves.
    Hold(Hold),
    /// End the session: the command never reaches the backend, the client
    /// gets a FATAL error (SQLSTATE 57P01) with this reason, and both
    /// connections close. For a session that may go on no longer (its token
    /// expired or was revoked, or an operator killed it).
    Terminate(String),
}

/// The hook's answer to an extended-protocol Parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseVerdict {
    /// Prepare it; executions run freely.
    Forward,
    /// Refuse it (SQLSTATE 42501); its Bind and Execute never reach the backend.
    Deny(String),
    /// Prepare it, but hold every execution: [`Hook::on_execute`] is asked at
    /// each Execute, with the bound parameter values.
    HoldEachExecution,
    /// End the session, as [`Verdict::Terminate`].
    Terminate(String),
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

/// Which text a [`Hook::transform_text`] call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// A field of an ErrorResponse, by its field code (`M`, `D`, `H`, `W`, `q`).
    ErrorField(u8),
    /// A field of a NoticeResponse, by its field code.
    NoticeField(u8),
    /// The payload of a NotificationResponse.
    Notification,
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
    /// The backend reported an error (after [`Hook::transform_text`]).
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
    /// The session ended.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// Why, when it was not a clean Terminate.
        error: Option<String>,
    },
}

/// The gateway's side of a proxied PostgreSQL session.
///
/// Decisions are async (they may consult a policy service or wait for an
/// audit write); transforms are synchronous because they run on every result
/// row and never wait. Every call carries the session id and, for commands,
/// the command id ([`Context`]).
///
/// # Example
///
/// ```
/// use portcullis_pg::{
///     async_trait, Authenticated, BackendAddr, BackendTarget, BackendTls, Context, Hook,
///     Rejection, SessionId, StartupParams, Verdict,
/// };
///
/// struct AllowAll;
///
/// #[async_trait]
/// impl Hook for AllowAll {
///     type Principal = String;
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
///             },
///         })
///     }
///     async fn on_query(&self, _cx: &Context<'_, String>, _sql: &str) -> Verdict {
///         Verdict::Forward
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Hook: Send + Sync + 'static {
    /// Who a client is, as the gateway understands it; this crate does not look inside.
    type Principal: Send + Sync + 'static;

    /// Checks the client's credential (the bearer token sent as its password)
    /// and chooses the backend.
    async fn authenticate(
        &self,
        session: SessionId,
        startup: &StartupParams,
        credential: &str,
    ) -> Result<Authenticated<Self::Principal>, Rejection>;

    /// Decides on a simple-protocol query (`Q`), which may hold several statements.
    async fn on_query(&self, cx: &Context<'_, Self::Principal>, sql: &str) -> Verdict;

    /// Decides on an extended-protocol Parse. The default asks
    /// [`Hook::on_query`] and holds each execution when it would hold (the
    /// hold it returned is dropped unused).
    async fn on_parse(
        &self,
        cx: &Context<'_, Self::Principal>,
        statement: &str,
        sql: &str,
    ) -> ParseVerdict {
        let _ = statement;
        match self.on_query(cx, sql).await {
            Verdict::Forward => ParseVerdict::Forward,
            Verdict::Deny(reason) => ParseVerdict::Deny(reason),
            Verdict::Hold(_) => ParseVerdict::HoldEachExecution,
            Verdict::Terminate(reason) => ParseVerdict::Terminate(reason),
        }
    }

    /// Decides on one execution of a statement that [`Hook::on_parse`] marked
    /// [`ParseVerdict::HoldEachExecution`], with the bound parameters (`None`
    /// is NULL; values in the client's chosen format). Also asked, with `sql`
    /// = `EXECUTE <name>`, for an Execute of a statement prepared with SQL
    /// `PREPARE` (which no Parse announced). The default asks [`Hook::on_query`].
    async fn on_execute(
        &self,
        cx: &Context<'_, Self::Principal>,
        sql: &str,
        params: &[Option<Bytes>],
    ) -> Verdict {
        let _ = params;
        self.on_query(cx, sql).await
    }

    /// Sees a result's columns once and returns the indexes of the columns
    /// whose values go through [`Hook::transform_field`]. Others cost nothing.
    fn on_row_description(
        &self,
        cx: &Context<'_, Self::Principal>,
        columns: &[Column],
    ) -> Vec<usize> {
        let _ = (cx, columns);
        Vec::new()
    }

    /// Transforms one value of a chosen column.
    fn transform_field(
        &self,
        cx: &Context<'_, Self::Principal>,
        column: &Column,
        value: &[u8],
    ) -> FieldValue {
        let _ = (cx, column, value);
        FieldValue::Keep
    }

    /// Transforms one CopyData message of a COPY TO STDOUT (one row in text
    /// and CSV formats). `None` keeps it.
    fn transform_copy(&self, cx: &Context<'_, Self::Principal>, data: &[u8]) -> Option<Vec<u8>> {
        let _ = (cx, data);
        None
    }

    /// Transforms a text sent by the backend: error and notice fields and
    /// notification payloads. `None` keeps it.
    fn transform_text(
        &self,
        cx: &Context<'_, Self::Principal>,
        kind: TextKind,
        text: &str,
    ) -> Option<String> {
        let _ = (cx, kind, text);
        None
    }

    /// Observes an event. Called in order, from the session's task.
    fn on_event(&self, event: &Event) {
        let _ = event;
    }
}
