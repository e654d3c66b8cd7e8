//! The audit event model.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// The schema version written into every event.
pub const SCHEMA_VERSION: u32 = 1;

const TIMESTAMP_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// A UTC instant with microsecond precision, written as RFC 3339 with exactly
/// six fractional digits: `2026-11-22T03:17:25.123456Z`.
///
/// Stored as microseconds since the Unix epoch; formatted and parsed with
/// the `time` crate and a fixed format description, so that the text is
/// always the same width and calendar arithmetic is not hand-written. The
/// same text is a valid RFC 5424 syslog TIMESTAMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time, truncated to microseconds.
    pub fn now() -> Timestamp {
        let now = OffsetDateTime::now_utc();
        Timestamp((now.unix_timestamp_nanos() / 1_000) as i64)
    }

    /// The instant `micros` microseconds after the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.0
    }

    fn to_datetime(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000).ok()
    }

    /// Parses the RFC 3339 form written by this crate (UTC, six fractional
    /// digits).
    pub fn parse(s: &str) -> Option<Timestamp> {
        let dt = time::PrimitiveDateTime::parse(s, TIMESTAMP_FORMAT).ok()?;
        let nanos = dt.assume_utc().unix_timestamp_nanos();
        i64::try_from(nanos / 1_000).ok().map(Timestamp)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self
            .to_datetime()
            .and_then(|d| d.format(TIMESTAMP_FORMAT).ok())
        {
            Some(s) => f.write_str(&s),
            None => Err(fmt::Error),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self
            .to_datetime()
            .and_then(|d| d.format(TIMESTAMP_FORMAT).ok())
            .ok_or_else(|| serde::ser::Error::custom("timestamp out of range"))?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| serde::de::Error::custom("invalid timestamp"))
    }
}

/// Text that has already been through the masker.
///
/// This crate stores exactly what the gateway gives it; it cannot tell a
/// secret from a table name. Statement text, exec command lines and backend
/// error messages must therefore be masked **before** they are wrapped in a
/// `MaskedText`: the constructor's name, [`MaskedText::already_masked`], is
/// the caller's statement that this was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaskedText(String);

impl MaskedText {
    /// Wraps text that the caller has already masked.
    pub fn already_masked(text: impl Into<String>) -> MaskedText {
        MaskedText(text.into())
    }

    /// The (masked) text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What kind of party a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PrincipalKind {
    /// A person.
    Human,
    /// An AI coding agent acting for someone.
    Agent,
    /// A workload: a CI job, a service.
    Service,
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable identifier (OIDC `sub`, API key owner).
    pub id: String,
    /// What kind of party.
    pub kind: PrincipalKind,
    /// Groups the identity provider asserted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The id of the token or key used (`jti`, key id), never the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// Which protocol a resource is reached by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Protocol {
    /// PostgreSQL wire protocol.
    Postgres,
    /// Kubernetes API.
    Kubernetes,
}

/// What was acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// The protocol.
    pub protocol: Protocol,
    /// The configured target's name (a database or cluster entry).
    pub target: String,
    /// A narrower scope: database name, namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A policy decision's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Effect {
    /// Forwarded.
    Allow,
    /// Refused.
    Deny,
    /// Held for a human's approval.
    Hold,
}

/// What happened. Serialized with a `"type"` tag in snake case
/// (`"session_started"`, `"command"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A client connected and authenticated.
    SessionStarted {
        /// The client's address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_addr: Option<String>,
        /// The client's application name, if it sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        application: Option<String>,
    },
    /// A session ended.
    SessionEnded {
        /// Bytes from the client.
        bytes_in: u64,
        /// Bytes to the client.
        bytes_out: u64,
        /// Rows returned in the whole session.
        rows: u64,
        /// How long the session lasted, in microseconds.
        duration_us: u64,
    },
    /// A command and the policy's decision on it. Written before the command
    /// is forwarded (write-ahead).
    Command {
        /// Numbers the commands of one session, to tie results to them.
        command_id: u64,
        /// The statement or request, already masked.
        text: MaskedText,
        /// The facts the policy derived (statement kind, objects, risks).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        facts: BTreeMap<String, serde_json::Value>,
        /// The decision.
        effect: Effect,
        /// The rule that decided, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule_id: Option<String>,
        /// The explanation shown to the client.
        reason: String,
    },
    /// A command was sent to the backend.
    CommandForwarded {
        /// The command's id in its session.
        command_id: u64,
    },
    /// The summary of a command's result.
    CommandResult {
        /// The command's id in its session.
        command_id: u64,
        /// Rows returned or affected.
        rows: u64,
        /// Bytes returned to the client.
        bytes: u64,
        /// How many values each detector masked, by detector id.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        masked: BTreeMap<String, u64>,
        /// How long the command took, in microseconds.
        duration_us: u64,
        /// The backend's error code (SQLSTATE, HTTP status), if it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
        /// The backend's error message, already masked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_message: Option<MaskedText>,
    },
    /// A command was held for approval.
    ApprovalRequested {
        /// The approval request's id.
        request_id: String,
        /// The command's id in its session.
        command_id: u64,
        /// Who may approve (a group or person), if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approver: Option<String>,
    },
    /// An approver released a held command.
    ApprovalGranted {
        /// The approval request's id.
        request_id: String,
        /// Who approved.
        approver: String,
    },
    /// An approver refused a held command.
    ApprovalDenied {
        /// The approval request's id.
        request_id: String,
        /// Who refused.
        approver: String,
        /// Why, if they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Nobody decided in time; the command was refused.
    ApprovalExpired {
        /// The approval request's id.
        request_id: String,
    },
    /// One approver's decision on a request (several are needed when the
    /// rule asks for more than one approval), with what they said.
    ApprovalDecision {
        /// The approval request's id.
        request_id: String,
        /// Who decided.
        approver: String,
        /// `true` to approve, `false` to deny.
        approve: bool,
        /// What the approver wrote, if anything.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// A client failed to authenticate.
    AuthFailed {
        /// The method tried (`oidc`, `api_key`, `password`).
        method: String,
        /// Why it failed (never the credential).
        reason: String,
    },
    /// A command ran into one of its principal's budgets (rows returned per
    /// statement, statements per minute): it was cut or refused with SQLSTATE
    /// 53400.
    BudgetExceeded {
        /// The command.
        command_id: u64,
        /// Which budget: `max_rows` or `statements_per_minute`.
        budget: String,
        /// The budget's limit.
        limit: u64,
        /// The figure that ran into it: rows forwarded before the cut, or
        /// statements already run in the last minute.
        observed: u64,
    },
    /// The policy could not decide (parse failure, bad rule); the command
    /// was refused.
    PolicyError {
        /// What failed, already masked: a parser's message may quote the
        /// statement.
        message: MaskedText,
    },
    /// The gateway failed internally.
    GatewayError {
        /// What failed. Never put statement text or result values here; they
        /// belong in a [`MaskedText`] field.
        message: String,
    },
    /// Written by the JSON Lines sink itself when it reopens a trail whose
    /// last line was torn by a crash: names the torn line, which was never
    /// acknowledged, so that `verify` accepts it.
    TrailRecovered {
        /// File name (without directory) holding the torn line.
        file: String,
        /// Its 1-based line number.
        line: u64,
        /// Its length in bytes.
        bytes: u64,
        /// SHA-256 of its bytes, hex.
        sha256: String,
    },
}

impl EventKind {
    /// The kind's name as written in the `"type"` tag.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::SessionStarted { .. } => "session_started",
            EventKind::SessionEnded { .. } => "session_ended",
            EventKind::Command { .. } => "command",
            EventKind::CommandForwarded { .. } => "command_forwarded",
            EventKind::CommandResult { .. } => "command_result",
            EventKind::ApprovalRequested { .. } => "approval_requested",
            EventKind::ApprovalGranted { .. } => "approval_granted",
            EventKind::ApprovalDenied { .. } => "approval_denied",
            EventKind::ApprovalExpired { .. } => "approval_expired",
            EventKind::ApprovalDecision { .. } => "approval_decision",
            EventKind::AuthFailed { .. } => "auth_failed",
            EventKind::BudgetExceeded { .. } => "budget_exceeded",
            EventKind::PolicyError { .. } => "policy_error",
            EventKind::GatewayError { .. } => "gateway_error",
            EventKind::TrailRecovered { .. } => "trail_recovered",
        }
    }
}

/// One audit event.
///
/// The sequence number and hash chain are not part of the event: each sink
/// assigns them when it records the event (see [`crate::Receipt::seq`]), so
/// the same event can go to several sinks, each with its own chain. The
/// stored record is `{"chain":…,"seq":…,"prev_hash":…,"event":{…},"hash":…}`.
///
/// # Example
///
/// ```
/// use portcullis_audit::{AuditEvent, EventKind, MaskedText, Effect};
///
/// let event = AuditEvent::new(EventKind::Command {
///     command_id: 1,
///     text: MaskedText::already_masked("select * from users where email = '[email]'"),
///     facts: Default::default(),
///     effect: Effect::Allow,
///     rule_id: Some("read-only".into()),
///     reason: "reads are allowed".into(),
/// })
/// .with_session("s-42");
/// let json = serde_json::to_string(&event).unwrap();
/// assert!(json.contains(r#""type":"command""#));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The schema version ([`SCHEMA_VERSION`] when written by this crate).
    pub v: u32,
    /// When it happened (UTC, microseconds).
    pub time: Timestamp,
    /// The gateway's session id, if the event belongs to a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Who acted, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// What was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl AuditEvent {
    /// An event of `kind` happening now, with no session, principal or
    /// resource yet.
    pub fn new(kind: EventKind) -> AuditEvent {
        AuditEvent {
            v: SCHEMA_VERSION,
            time: Timestamp::now(),
            session: None,
            principal: None,
            resource: None,
            kind,
        }
    }

    /// Sets the session id.
    pub fn with_session(mut self, session: impl Into<String>) -> AuditEvent {
        self.session = Some(session.into());
        self
    }

    /// Sets the principal.
    pub fn with_principal(mut self, principal: Principal) -> AuditEvent {
        self.principal = Some(principal);
        self
    }

    /// Sets the resource.
    pub fn with_resource(mut self, resource: Resource) -> AuditEvent {
        self.resource = Some(resource);
        self
    }

    /// Sets the time.
    pub fn at(mut self, time: Timestamp) -> AuditEvent {
        self.time = time;
        self
    }

    /// The canonical bytes of the event: compact JSON, fields in declaration
    /// order, maps in key order. These are the bytes hashed into the chain.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, crate::AuditError> {
        serde_json::to_vec(self).map_err(crate::AuditError::Encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trips_with_six_digits() {
        let t = Timestamp::from_unix_micros(1_795_000_000_123_456);
        let s = t.to_string();
        assert!(s.ends_with(".123456Z"), "{s}");
        assert_eq!(Timestamp::parse(&s), Some(t));
        let z = Timestamp::from_unix_micros(1_795_000_000_000_000).to_string();
        assert!(z.ends_with(".000000Z"), "{z}");
    }

    #[test]
    fn event_round_trips() {
        let e = AuditEvent::new(EventKind::CommandResult {
            command_id: 3,
            rows: 10,
            bytes: 400,
            masked: [("email".to_owned(), 2)].into_iter().collect(),
            duration_us: 1200,
            error_code: None,
            error_message: None,
        })
        .with_session("s1")
        .with_principal(Principal {
            id: "alice".into(),
            kind: PrincipalKind::Agent,
            groups: vec!["dev".into()],
            token_id: Some("jti-1".into()),
        });
        let bytes = e.canonical_bytes().unwrap();
        let back: AuditEvent = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.canonical_bytes().unwrap(), bytes);
    }
}
