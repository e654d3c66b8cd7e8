//! The glue: portcullis-pg's [`Hook`] implemented with identity, policy,
//! masking, approvals and the audit trail.
//!
//! Per statement: the client's token is checked again (expiry, revocation),
//! the policy decides, the statement's masked text and the decision are
//! written to the trail and made durable, and only then is the statement
//! forwarded, refused, or held for approval. The decision becomes the
//! statement's [`Plan`] (its command id, the policy's mask directives,
//! which result columns its lineage proves clean), which portcullis-pg
//! keeps with the prepared statement and hands back with its results.
//! Every Execute is a command of its own: the session is checked again, the
//! execution is written to the trail with its bound parameters (masked)
//! under its own command id, and the Parse's decision is reused. If the trail cannot make the
//! record durable the statement is refused (fail closed) and the gateway
//! reports itself unhealthy.
//!
//! Results: every value of every column goes through the masker. A column
//! whose name matches a field rule (the configuration's, or a matching policy
//! rule's `mask` directives, which only add) is masked whole, and so is one
//! the statement's lineage does not prove clean (see `lineage.rs` and
//! docs/masking.md); other text values are scanned by the detectors. A masked value of a non-text type
//! (an integer, a timestamp, jsonb in binary format) becomes NULL, since it
//! cannot carry a `[MASKED:…]` text; text types get the marker in either
//! format, their binary form being their text.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use portcullis_audit::{self as audit, AuditError, AuditEvent, AuditSink, EventKind, MaskedText};
use portcullis_mask::Masker;
use portcullis_pg::{
    Authenticated, BackendTarget, Column, CommandId, Context, Decision as PgDecision, Event,
    Execution, FieldValue, Format, Hold, Hook, ParseVerdict, RefusedBy, Rejection, RowLimit,
    SessionId, StartupParams, TextKind, Transform, Verdict, async_trait,
};
use portcullis_policy::{self as policy, Effect, Policy};

use crate::tickets::{Attempt, Fingerprint};
use tokio::sync::{mpsc, oneshot};

use bytes::Bytes;

use crate::approvals::{ApprovalRequest, ApprovalStore, Outcome};
use crate::catalog::MaskedColumns;
use crate::identity::{AuthError, Principal, PrincipalKind, Verifier};

/// A backend the gateway fronts.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) backend: BackendTarget,
    pub(crate) resource: policy::Resource,
    pub(crate) masked: Arc<MaskedColumns>,
}

/// Identity with a revocation list that is re-read when its file changes.
#[derive(Debug)]
pub(crate) struct IdentityStore {
    verifier: RwLock<Verifier>,
    revocation_file: Option<PathBuf>,
    revocation_seen: Mutex<Option<(FileStamp, std::time::Instant)>>,
}

/// What tells one version of the revocation file from another: the inode
/// and device (a file replaced by a rename), the size, and the change time
/// as well as the modification time, to the nanosecond (an editor or a
/// copy can set the modification time back; nothing but the kernel sets the
/// change time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(file: &std::path::Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(file).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// However still the file looks, it is read again after this long (a
/// change within the file system's timestamp granularity, on a file system
/// that keeps none).
const REVOCATION_REREAD: std::time::Duration = std::time::Duration::from_secs(1);

impl IdentityStore {
    pub(crate) fn new(verifier: Verifier, revocation_file: Option<PathBuf>) -> IdentityStore {
        let store = IdentityStore {
            verifier: RwLock::new(verifier),
            revocation_file,
            revocation_seen: Mutex::new(None),
        };
        store.reload_revocations();
        store
    }

    /// Re-reads the revocation file if anything about it changed since the
    /// last read, or that read is older than [`REVOCATION_REREAD`]. A file
    /// that cannot be read keeps the last list (a revocation is never
    /// undone by a missing file) and is tried again at the next look.
    fn reload_revocations(&self) {
        let Some(file) = &self.revocation_file else {
            return;
        };
        let Some(stamp) = FileStamp::of(file) else {
            return;
        };
        let mut seen = self
            .revocation_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((last, at)) = *seen
            && last == stamp
            && at.elapsed() < REVOCATION_REREAD
        {
            return;
        }
        if let Ok(text) = std::fs::read_to_string(file) {
            let revoked = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            self.verifier
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set_revoked(revoked);
            *seen = Some((stamp, std::time::Instant::now()));
        }
    }

    /// Replaces an OIDC issuer's key set.
    pub(crate) fn set_jwks(&self, issuer: &str, jwks: jsonwebtoken::jwk::JwkSet) {
        self.verifier
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set_jwks(issuer, jwks);
    }

    pub(crate) fn verify(&self, credential: &str) -> Result<Principal, AuthError> {
        self.reload_revocations();
        self.verifier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .verify(credential, unix_now())
    }

    fn recheck(&self, p: &Principal) -> Result<(), AuthError> {
        self.reload_revocations();
        self.verifier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recheck(p, unix_now())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One audit record on its way to the trail; `done` is told once it is
/// durable (or failed).
struct AuditJob {
    event: AuditEvent,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Everything the gateway knows about one live session.
#[derive(Debug)]
pub(crate) struct SessionState {
    pub(crate) session: SessionId,
    pub(crate) principal: Principal,
    pub(crate) connection: String,
    pub(crate) started: Instant,
    conn: Connection,
    policy_principal: policy::Principal,
    audit_principal: audit::Principal,
    audit_resource: audit::Resource,
    audit: SessionAudit,
    inner: Mutex<SessionInner>,
    /// Set by an operator: the session ends at once (see [`Hook::ended`]),
    /// or at its next command.
    killed: Mutex<Option<String>>,
    /// The principal's query budget.
    budget: crate::budgets::Budget,
    /// Wakes the session's driver when it is killed.
    ended: tokio::sync::Notify,
    /// The session's search_path, for the policy's names.
    search_path: crate::search_path::SessionSearchPath,
}

/// How one result column is masked, decided at its RowDescription.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ColumnPlan {
    /// A policy rule's `mask` directive names it: masked whole.
    directive: bool,
    /// Masked whole (under this id) if neither its name nor its value is:
    /// it comes from a masked table column, or is computed from one.
    fallback: Option<&'static str>,
}

/// What the policy decided for one statement, made once (at its Parse, or
/// its simple Query) and reused by each of its executions.
#[derive(Debug)]
pub(crate) struct Decided {
    facts: BTreeMap<String, serde_json::Value>,
    rule_id: Option<String>,
    reason: String,
    /// The policy reviews it: each execution is held for approval.
    review: Option<Review>,
    /// The policy denies it: executions exist only in observe mode, where
    /// each is recorded as denied and forwarded.
    denied: bool,
    /// Field patterns a policy rule asked to mask in its results.
    directive_fields: Vec<String>,
    /// Which result columns its lineage proves clean, and what its errors,
    /// notices and COPY data have masked.
    masking: crate::lineage::Masking,
    /// What the query budgets need of its facts.
    budget_facts: crate::budgets::StatementsFacts,
    /// The search_path it was decided with, and what it does to it.
    search_path: crate::search_path::Stamp,
}

#[derive(Debug, Clone)]
struct Review {
    groups: Vec<String>,
    min_approvals: u32,
    timeout: std::time::Duration,
    /// `mode = "ticket"`: refused at once with a request id, run once after
    /// approval (see [`crate::tickets`]), instead of held.
    ticket: bool,
}

/// The gateway's plan for one command (a simple query, a Parse, one
/// Execute): its audit command id, the statement's decision, and what its
/// results had masked.
#[derive(Debug)]
pub(crate) struct Plan {
    command_id: u64,
    started: Instant,
    decided: Arc<Decided>,
    /// Values masked in this command's results, per detector.
    masked: Mutex<BTreeMap<String, u64>>,
    /// Where its COPY data is.
    copy: Mutex<crate::lineage::CopyState>,
}

impl Plan {
    fn new(command_id: u64, decided: Arc<Decided>) -> Plan {
        Plan {
            command_id,
            started: Instant::now(),
            decided,
            masked: Mutex::new(BTreeMap::new()),
            copy: Mutex::new(crate::lineage::CopyState::default()),
        }
    }

    fn count(&self, detector: &str) {
        *self
            .masked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(detector.to_owned())
            .or_insert(0) += 1;
    }

    fn take_masked(&self) -> BTreeMap<String, u64> {
        std::mem::take(
            &mut *self
                .masked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn duration_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Session totals and the approvals a session is waiting on; nothing about
/// any one command.
#[derive(Debug, Default)]
struct SessionInner {
    /// Approval requests of held commands, to withdraw them if abandoned.
    approvals: HashMap<u64, String>,
    rows: u64,
    bytes_out: u64,
}

impl SessionState {
    fn killed(&self) -> Option<String> {
        self.killed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn event(&self, kind: EventKind) -> AuditEvent {
        AuditEvent::new(kind)
            .with_session(self.session.to_string())
            .with_principal(self.audit_principal.clone())
            .with_resource(self.audit_resource.clone())
    }

    /// Queues a record behind the session's earlier ones, without waiting.
    fn record(&self, kind: EventKind) {
        let event = self.event(kind);
        match self.audit.enqueue(&event) {
            // Not awaited: a later write failure makes the sink unavailable,
            // and the next command's write-ahead fails closed on it.
            Ok(_ack) => {}
            Err(AuditError::Unsupported { .. }) => self.audit.via_writer(event, None),
            Err(e) => self.audit.failed(e.to_string()),
        }
    }

    /// Queues a record behind the session's earlier ones and waits until it
    /// is as durable as the sink's level promises.
    async fn record_durably(&self, kind: EventKind) -> Result<(), String> {
        let event = self.event(kind);
        match self.audit.enqueue(&event) {
            Ok(ack) => {
                let result = ack.await.map(|_| ()).map_err(|e| e.to_string());
                set_failure(&self.audit.failure, result.as_ref().err().cloned());
                result
            }
            Err(AuditError::Unsupported { .. }) => {
                let (tx, rx) = oneshot::channel();
                self.audit.via_writer(event, Some(tx));
                rx.await
                    .map_err(|_| "the session's audit writer has stopped".to_owned())?
            }
            Err(e) => {
                let e = e.to_string();
                self.audit.failed(e.clone());
                Err(e)
            }
        }
    }
}

/// How one session's records reach the sink, in the order the session made
/// them. A sink with an ordered queue (the JSON Lines trail) takes each
/// record straight from the session's task ([`AuditSink::enqueue`]): no
/// task hop, and the session waits only for the acknowledgement a
/// write-ahead record needs. A sink without one gets a writer task per
/// session that records one event after the other, started the first time
/// the sink refuses `enqueue`.
struct SessionAudit {
    sink: Arc<dyn AuditSink>,
    failure: Arc<Mutex<Option<String>>>,
    writer: std::sync::OnceLock<mpsc::UnboundedSender<AuditJob>>,
}

impl std::fmt::Debug for SessionAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAudit")
            .field("sink", &self.sink.name())
            .field("writer", &self.writer.get().is_some())
            .finish()
    }
}

impl SessionAudit {
    fn new(sink: Arc<dyn AuditSink>, failure: Arc<Mutex<Option<String>>>) -> Self {
        Self {
            sink,
            failure,
            writer: std::sync::OnceLock::new(),
        }
    }

    /// The sink's ordered queue, unless this session already writes through
    /// its own writer task (then every record goes there, keeping order).
    fn enqueue(&self, event: &AuditEvent) -> Result<audit::Ack, AuditError> {
        if self.writer.get().is_some() {
            return Err(AuditError::Unsupported {
                sink: self.sink.name().to_owned(),
                operation: "enqueue",
            });
        }
        self.sink.enqueue(event)
    }

    fn failed(&self, why: String) {
        set_failure(&self.failure, Some(why));
    }

    fn via_writer(&self, event: AuditEvent, done: Option<oneshot::Sender<Result<(), String>>>) {
        let tx = self.writer.get_or_init(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<AuditJob>();
            let sink = self.sink.clone();
            let failure = self.failure.clone();
            tokio::spawn(async move {
                while let Some(job) = rx.recv().await {
                    let result = sink
                        .record(&job.event)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    set_failure(&failure, result.as_ref().err().cloned());
                    if let Some(done) = job.done {
                        let _ = done.send(result);
                    }
                }
            });
            tx
        });
        if let Err(mpsc::error::SendError(job)) = tx.send(AuditJob { event, done })
            && let Some(done) = job.done
        {
            let _ = done.send(Err("the session's audit writer has stopped".to_owned()));
        }
    }
}

/// What a [`Gateway`] is made of.
pub(crate) struct GatewayParts {
    pub(crate) identity: IdentityStore,
    pub(crate) connections: HashMap<String, Connection>,
    pub(crate) policy: Policy,
    pub(crate) masker: Masker,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) approvals: Arc<ApprovalStore>,
    pub(crate) end_session_on_expiry: bool,
    /// `false`: observe mode (`[policy] enforce = false`).
    pub(crate) enforce: bool,
    /// The configuration's field rules, as written (`api_key`, `customers.email`).
    pub(crate) field_patterns: Vec<String>,
    /// Sessions one principal may hold open at once.
    pub(crate) max_sessions_per_principal: usize,
    /// Query budgets per principal.
    pub(crate) budgets: crate::budgets::Budgets,
}

/// The reference gateway's hook.
pub(crate) struct Gateway {
    pub(crate) identity: IdentityStore,
    pub(crate) connections: HashMap<String, Connection>,
    pub(crate) policy: Policy,
    pub(crate) masker: Masker,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) approvals: Arc<ApprovalStore>,
    pub(crate) end_session_on_expiry: bool,
    /// `false`: observe mode. The policy decides and the trail records what
    /// it would have done, but nothing is refused or held for approval.
    /// Identity checks (expiry, revocation, `sessions kill`), masking and
    /// the write-ahead audit (fail closed) are the same in both modes.
    enforce: bool,
    /// The configuration's field rules, as written (`api_key`, `customers.email`).
    field_patterns: Vec<String>,
    max_sessions_per_principal: usize,
    budgets: crate::budgets::Budgets,
    /// Why the audit trail last failed, while it is failing.
    audit_failure: Arc<Mutex<Option<String>>>,
    health_cache: Mutex<Option<(Instant, Result<(), String>)>>,
    sessions: Mutex<HashMap<SessionId, Arc<SessionState>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("connections", &self.connections.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    pub(crate) fn new(parts: GatewayParts) -> Gateway {
        Gateway {
            identity: parts.identity,
            connections: parts.connections,
            policy: parts.policy,
            masker: parts.masker,
            audit: parts.audit,
            approvals: parts.approvals,
            end_session_on_expiry: parts.end_session_on_expiry,
            enforce: parts.enforce,
            field_patterns: parts.field_patterns,
            max_sessions_per_principal: parts.max_sessions_per_principal,
            budgets: parts.budgets,
            audit_failure: Arc::new(Mutex::new(None)),
            health_cache: Mutex::new(None),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// False in observe mode (`[policy] enforce = false`): every command is
    /// decided and recorded, and forwarded whatever the decision.
    pub(crate) fn enforces(&self) -> bool {
        self.enforce
    }

    /// Why the gateway cannot serve right now, if it cannot: the last audit
    /// write failed, or the sink says it cannot make records durable.
    pub(crate) async fn health(&self) -> Result<(), String> {
        if let Some(why) = self
            .audit_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Err(format!("audit trail failing: {why}"));
        }
        match self.audit.health().await {
            audit::Health::Ready => Ok(()),
            other => Err(format!("audit trail not ready: {other:?}")),
        }
    }

    /// Sets (or clears, on a successful write) what [`Self::health`] reports
    /// as the last audit write failure: the Kubernetes leg's writer reports
    /// here as the PostgreSQL sessions' writers do.
    pub(crate) fn set_audit_failure(&self, why: Option<String>) {
        set_failure(&self.audit_failure, why);
    }

    /// The sink's own health, asked at most every 250 ms (a statvfs or a
    /// round trip per statement would be waste).
    async fn audit_ready(&self) -> Result<(), String> {
        let cached = self
            .health_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some((at, result)) = cached
            && at.elapsed() < std::time::Duration::from_millis(250)
        {
            return result;
        }
        let result = match self.audit.health().await {
            audit::Health::Ready => Ok(()),
            other => Err(format!("{other:?}")),
        };
        *self
            .health_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), result.clone()));
        result
    }

    /// Ends a live session: a statement it is holding for approval is
    /// refused now, and the session ends at its next command. Returns false
    /// if there is no such session.
    pub(crate) fn kill(&self, session: &str, by: &str) -> bool {
        let Some(s) = self
            .sessions()
            .into_iter()
            .find(|s| s.session.to_string() == session)
        else {
            return false;
        };
        *s.killed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(format!("this session was ended by {by}"));
        s.ended.notify_one();
        let held: Vec<String> = s.lock().approvals.values().cloned().collect();
        for id in held {
            self.approvals.withdraw(&id);
        }
        s.record(EventKind::GatewayError {
            message: format!("session killed by {by}"),
        });
        tracing::info!(%session, by, "session killed");
        true
    }

    /// Live sessions, for the admin API.
    pub(crate) fn sessions(&self) -> Vec<Arc<SessionState>> {
        let mut v: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|s| s.session);
        v
    }

    /// A refusal of the protocol layer's own ([`RefusedBy::Session`]: text
    /// not in the client encoding (22021), a setting the analysis depends
    /// on, the fast-path interface, an unknown portal), written to the
    /// trail as a deny record. The gateway's own refusals were written when
    /// it decided them.
    fn refused_by_the_session(&self, s: &SessionState, command: CommandId, reason: &str) {
        metrics::counter!("portcullis_commands_total", "effect" => "deny").increment(1);
        s.record(EventKind::Command {
            command_id: command.0,
            text: MaskedText::already_masked(String::new()),
            facts: BTreeMap::new(),
            effect: audit::Effect::Deny,
            rule_id: None,
            reason: format!(
                "refused by the gateway's protocol layer: {}",
                self.mask_text(reason)
            ),
        });
    }

    fn mask_text(&self, text: &str) -> String {
        String::from_utf8_lossy(self.masker.mask(text.as_bytes()).output()).into_owned()
    }

    /// Records an event outside any session (auth failures).
    fn record_detached(&self, event: AuditEvent) {
        let sink = self.audit.clone();
        let failure = self.audit_failure.clone();
        tokio::spawn(async move {
            if let Err(e) = sink.record(&event).await {
                set_failure(&failure, Some(e.to_string()));
            }
        });
    }

    fn deny_message(decision: &policy::Decision) -> String {
        match &decision.rule_id {
            Some(rule) => format!("{} (policy rule {rule})", decision.reason),
            None => format!("{} (policy default)", decision.reason),
        }
    }
}

/// The reason recorded for a command observe mode forwarded although the
/// policy would have refused or held it.
pub(crate) fn observed_reason(decision: &policy::Decision) -> String {
    let would = match decision.effect {
        Effect::Deny => "deny",
        Effect::Review { .. } => "hold for review",
        Effect::Allow => "allow",
    };
    format!(
        "observe mode ([policy] enforce = false), forwarded; the policy would {would}: {}",
        Gateway::deny_message(decision)
    )
}

fn set_failure(failure: &Mutex<Option<String>>, value: Option<String>) {
    *failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
}

fn facts_map(facts: &policy::CommandFacts) -> BTreeMap<String, serde_json::Value> {
    match serde_json::to_value(facts) {
        Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
        Ok(other) => [("facts".to_owned(), other)].into_iter().collect(),
        Err(e) => [(
            "error".to_owned(),
            serde_json::Value::String(format!("facts not serialisable: {e}")),
        )]
        .into_iter()
        .collect(),
    }
}

/// PostgreSQL types whose text form can carry a `[MASKED:…]` marker.
fn is_text_type(oid: u32) -> bool {
    // char, name, text, json, xml, bpchar, varchar, unknown, jsonb, citext-like (0 = unknown).
    matches!(oid, 18 | 19 | 25 | 114 | 142 | 705 | 1042 | 1043 | 3802 | 0)
}

/// Whether a statement may change which columns exist.
fn changes_schema(facts: &policy::CommandFacts) -> bool {
    let policy::CommandFacts::Sql { statements } = facts else {
        return false;
    };
    statements.iter().any(|s| {
        s.unparsed
            || std::iter::once(&s.kind).chain(&s.nested_kinds).any(|k| {
                matches!(
                    k,
                    policy::StatementKind::Create
                        | policy::StatementKind::Alter
                        | policy::StatementKind::Drop
                        | policy::StatementKind::Do
                        | policy::StatementKind::Other
                )
            })
    })
}

/// Types whose binary form is their text bytes: name, text, json, bpchar,
/// varchar.
fn binary_is_text(oid: u32) -> bool {
    matches!(oid, 19 | 25 | 114 | 1042 | 1043)
}

/// Field patterns are matched by portcullis-mask's one matcher, as the
/// masker's own field rules are (no compilation: it lowercases the pattern).
fn glob_match(pattern: &str, name: &str) -> bool {
    portcullis_mask::FieldPattern::new(pattern).matches(name)
}

/// Where in the protocol a decision is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// A Parse: a reviewed statement is prepared (each of its executions is
    /// held later, where the approver sees the bound values), and no
    /// approval is requested yet.
    Parse,
    /// The statement runs now (simple query, or one execution).
    Run,
}

impl Gateway {
    /// The statement's text as audited and shown to approvers: masked, with
    /// the bound parameters (masked too) when there are any.
    fn command_text(&self, sql: &str, params: Option<&[Option<Bytes>]>) -> MaskedText {
        let mut text = sql.to_owned();
        if let Some(params) = params.filter(|p| !p.is_empty()) {
            text.push_str("\n-- parameters:");
            for (i, p) in params.iter().enumerate() {
                match p {
                    None => text.push_str(&format!(" ${} = NULL", i + 1)),
                    Some(v) => text.push_str(&format!(
                        " ${} = '{}'",
                        i + 1,
                        String::from_utf8_lossy(v).replace('\'', "''")
                    )),
                }
            }
        }
        MaskedText::already_masked(self.mask_text(&text))
    }

    /// The statement as an approver sees it: only the insides of literals,
    /// comments and bound values masked.
    fn shown(&self, sql: &str, params: Option<&[Option<Bytes>]>) -> crate::approvals::Shown {
        crate::approvals::Shown::of(sql, params, &|t: &str| self.mask_text(t))
    }

    /// The checks every command gets, also each execution of an allowed
    /// prepared statement: the token is checked again (expiry, revocation)
    /// and the session must not have been killed. A refusal is recorded
    /// durably under the command's id.
    async fn check_session(
        &self,
        s: &SessionState,
        command_id: u64,
        text: &MaskedText,
    ) -> Option<Verdict<Plan>> {
        let ended = match self.identity.recheck(&s.principal) {
            Err(e @ AuthError::Expired { .. }) if !self.end_session_on_expiry => {
                Some((e.to_string(), false))
            }
            Err(e) => Some((
                format!("{e}; this session has ended: reconnect with a valid token"),
                true,
            )),
            Ok(()) => s.killed().map(|why| (why, true)),
        };
        let (reason, terminate) = ended?;
        let _ = s
            .record_durably(EventKind::Command {
                command_id,
                text: text.clone(),
                facts: BTreeMap::new(),
                effect: audit::Effect::Deny,
                rule_id: None,
                reason: reason.clone(),
            })
            .await;
        Some(if terminate {
            Verdict::Terminate(reason)
        } else {
            Verdict::Deny(reason)
        })
    }

    /// Fail closed: a trail that says it cannot make records durable gets
    /// no statement. Then the command's record, durable before anything
    /// reaches the backend.
    async fn write_ahead(
        &self,
        s: &SessionState,
        command_id: u64,
        text: MaskedText,
        decided: &Decided,
        effect: audit::Effect,
    ) -> Result<(), String> {
        if let Err(why) = self.audit_ready().await {
            return Err(format!(
                "the audit trail cannot make records durable, so the statement was not run \
                 (fail closed): {why}"
            ));
        }
        let write_started = Instant::now();
        let written = s
            .record_durably(EventKind::Command {
                command_id,
                text,
                facts: decided.facts.clone(),
                effect,
                rule_id: decided.rule_id.clone(),
                reason: decided.reason.clone(),
            })
            .await;
        metrics::histogram!("portcullis_audit_write_seconds")
            .record(write_started.elapsed().as_secs_f64());
        written.map_err(|e| {
            format!(
                "the audit trail cannot record this statement, so it was not run (fail closed): {e}"
            )
        })
    }

    /// Decides on a statement with the policy: a simple query (`stage`
    /// Run), a Parse, or an execution of a statement no Parse announced.
    async fn decide(
        &self,
        cx: &Context<'_, Arc<SessionState>>,
        sql: &str,
        params: Option<&[Option<Bytes>]>,
        stage: Stage,
    ) -> Verdict<Plan> {
        let s = cx.principal;
        let command_id = cx.command.map_or(0, |c| c.0);
        let text = self.command_text(sql, params);
        if let Some(refused) = self.check_session(s, command_id, &text).await {
            return refused;
        }
        if let Err(e) = s
            .conn
            .masked
            .ensure(&s.conn.backend, &self.field_patterns)
            .await
        {
            return Verdict::Deny(format!(
                "the gateway cannot tell which columns to mask, so the statement was not run: {e}"
            ));
        }
        let resource = s.conn.resource.clone();
        let masking = s.conn.masked.masking(sql, !self.field_patterns.is_empty());
        // Names without a schema resolve with the session's search_path.
        let path = s.search_path.snapshot(&s.conn.backend).await;
        let mut request =
            policy::Request::sql(&s.policy_principal, &resource, sql).with_search_path(&path.path);
        if let Some(relations) = &path.relations {
            request = request.with_relations(relations);
        }
        let mut decision = self.policy.evaluate(&request);
        crate::lineage::apply(&self.policy, &request, &masking, &mut decision);
        let mut search_path = crate::search_path::SessionSearchPath::stamp(&path, &decision.facts);
        search_path.changes_schema = changes_schema(&decision.facts);
        let effect = match decision.effect {
            Effect::Allow => audit::Effect::Allow,
            Effect::Deny => audit::Effect::Deny,
            Effect::Review { .. } => audit::Effect::Hold,
        };
        let review = match &decision.effect {
            Effect::Review {
                groups,
                min_approvals,
                timeout,
                mode,
            } => Some(Review {
                groups: groups.clone(),
                min_approvals: *min_approvals,
                timeout: *timeout,
                ticket: *mode == policy::ReviewMode::Ticket,
            }),
            _ => None,
        };
        let decided = Arc::new(Decided {
            facts: facts_map(&decision.facts),
            rule_id: decision.rule_id.clone(),
            reason: if self.enforce || decision.effect == Effect::Allow {
                decision.reason.clone()
            } else {
                observed_reason(&decision)
            },
            review,
            denied: decision.effect == Effect::Deny,
            directive_fields: decision
                .mask
                .fields
                .iter()
                .map(|f| f.field.clone())
                .collect(),
            masking,
            budget_facts: crate::budgets::StatementsFacts::of(&decision.facts),
            search_path,
        });
        if let Some(refused) = self
            .check_budgets(s, command_id, &text, &decided, stage == Stage::Run)
            .await
        {
            return refused;
        }
        metrics::counter!("portcullis_commands_total", "effect" => decision.effect.as_str())
            .increment(1);
        tracing::info!(
            session = %s.session,
            command = command_id,
            principal = %s.principal.id,
            effect = decision.effect.as_str(),
            enforced = self.enforce,
            rule = decision.rule_id.as_deref().unwrap_or("default"),
            "command"
        );
        if let Err(e) = self
            .write_ahead(s, command_id, text.clone(), &decided, effect)
            .await
        {
            return Verdict::Deny(e);
        }
        if changes_schema(&decision.facts) {
            s.conn.masked.mark_stale();
        }
        s.search_path.after(
            sql,
            &decision.facts,
            crate::search_path::Runs::of(
                &decision.effect,
                self.enforce,
                stage == Stage::Parse,
                params.is_none(),
            ),
            search_path.changes_schema,
        );
        let plan = Plan::new(command_id, decided.clone());
        match decision.effect {
            Effect::Allow => Verdict::Forward(plan),
            // Observe mode: recorded with the decision it would have been.
            _ if !self.enforce => Verdict::Forward(plan),
            Effect::Deny => Verdict::Deny(Gateway::deny_message(&decision)),
            // Prepared; each execution is held, where the approver sees the
            // bound values.
            Effect::Review { .. } if stage == Stage::Parse => Verdict::Forward(plan),
            Effect::Review { .. } => {
                let key = Fingerprint::of(&s.principal.id, &s.connection, sql, params);
                let shown = self.shown(sql, params);
                self.hold(s, text, plan, key, shown).await
            }
        }
    }

    /// One execution of a statement prepared with `statement` as its plan:
    /// the policy's decision is reused (not re-parsed); the session is
    /// checked, and the execution is recorded durably, with its bound
    /// parameters, under its own command id before it is forwarded.
    async fn execute(
        &self,
        cx: &Context<'_, Arc<SessionState>>,
        statement: &Plan,
        sql: &str,
        params: &[Option<Bytes>],
    ) -> Verdict<Plan> {
        let s = cx.principal;
        let command_id = cx.command.map_or(0, |c| c.0);
        let text = self.command_text(sql, Some(params));
        if let Some(refused) = self.check_session(s, command_id, &text).await {
            return refused;
        }
        let decided = statement.decided.clone();
        if self.enforce
            && let Some(reason) = s.search_path.execution_refusal(&decided.search_path)
        {
            let _ = s
                .record_durably(EventKind::Command {
                    command_id,
                    text: text.clone(),
                    facts: decided.facts.clone(),
                    effect: audit::Effect::Deny,
                    rule_id: None,
                    reason: reason.clone(),
                })
                .await;
            return Verdict::Deny(reason);
        }
        if let Some(refused) = self
            .check_budgets(s, command_id, &text, &decided, true)
            .await
        {
            return refused;
        }
        if !decided.denied || !self.enforce {
            s.search_path.executed(&decided.search_path);
        }
        let effect = if decided.denied {
            audit::Effect::Deny
        } else if decided.review.is_some() {
            audit::Effect::Hold
        } else {
            audit::Effect::Allow
        };
        if let Err(e) = self
            .write_ahead(s, command_id, text.clone(), &decided, effect)
            .await
        {
            return Verdict::Deny(e);
        }
        let plan = Plan::new(command_id, decided);
        if plan.decided.review.is_some() && self.enforce {
            let key = Fingerprint::of(&s.principal.id, &s.connection, sql, Some(params));
            let shown = self.shown(sql, Some(params));
            self.hold(s, text, plan, key, shown).await
        } else {
            Verdict::Forward(plan)
        }
    }

    /// The principal's budgets before a statement goes on: one that could
    /// change the pinned statement timeout is refused; one that `runs` now
    /// (not a Parse) and would be forwarded takes its statements from the
    /// principal's minute, or is refused with SQLSTATE 53400. A refusal is
    /// recorded durably, with a `budget_exceeded` event for the minute.
    async fn check_budgets(
        &self,
        s: &SessionState,
        command_id: u64,
        text: &MaskedText,
        decided: &Decided,
        runs: bool,
    ) -> Option<Verdict<Plan>> {
        let refuse = |reason: String| EventKind::Command {
            command_id,
            text: text.clone(),
            facts: decided.facts.clone(),
            effect: audit::Effect::Deny,
            rule_id: None,
            reason,
        };
        if let Some(reason) = s.budget.timeout_refusal(&decided.budget_facts) {
            let _ = s.record_durably(refuse(reason.clone())).await;
            return Some(Verdict::Deny(reason));
        }
        let per_minute = s.budget.statements_per_minute?;
        if !runs || (decided.denied && self.enforce) {
            return None;
        }
        let n = decided.budget_facts.count;
        let exceeded = self
            .budgets
            .take(&s.principal.id, per_minute, n, Instant::now())
            .err()?;
        let reason = exceeded.message();
        metrics::counter!("portcullis_budget_exceeded_total", "budget" => "statements_per_minute")
            .increment(1);
        let _ = s.record_durably(refuse(reason.clone())).await;
        s.record(EventKind::BudgetExceeded {
            command_id,
            budget: "statements_per_minute".to_owned(),
            limit: u64::from(exceeded.limit),
            observed: exceeded.used,
        });
        Some(Verdict::Exceeded(reason))
    }

    /// Holds a reviewed command for approval (or, in ticket mode, answers
    /// its attempt: see [`Gateway::ticket`]).
    async fn hold(
        &self,
        s: &Arc<SessionState>,
        text: MaskedText,
        plan: Plan,
        key: Fingerprint,
        shown: crate::approvals::Shown,
    ) -> Verdict<Plan> {
        let command_id = plan.command_id;
        let decided = plan.decided.clone();
        let Some(review) = decided.review.clone() else {
            return Verdict::Deny("the gateway has no review to hold this statement for".into());
        };
        if review.ticket {
            return self.ticket(s, plan, key, &review, shown).await;
        }
        let _ = text;
        let request = ApprovalRequest {
            requester: s.principal.id.clone(),
            session_id: s.session.to_string(),
            connection: s.connection.clone(),
            command: shown.text(),
            rule_id: decided.rule_id.clone().unwrap_or_default(),
            reason: decided.reason.clone(),
            groups: review.groups.clone(),
            min_approvals: usize::try_from(review.min_approvals).unwrap_or(usize::MAX),
            timeout: review.timeout,
        };
        let ticket = match self
            .approvals
            .request_with(request, shown.details(&decided.facts))
        {
            Ok(t) => t,
            Err(e) => return Verdict::Deny(format!("cannot hold for approval: {e}")),
        };
        let id = ticket.id.clone();
        shown.preview(&self.approvals, &id, &s.conn.backend, &decided.facts);
        s.lock().approvals.insert(command_id, id.clone());
        s.record(EventKind::ApprovalRequested {
            request_id: id.clone(),
            command_id,
            approver: Some(review.groups.join(",")),
        });
        let store = self.approvals.clone();
        let state = s.clone();
        let notice = format!(
            "held for approval: {id} (rule {}); an approver in {} runs: \
             portcullis approvals approve {id}",
            decided.rule_id.as_deref().unwrap_or("default"),
            if review.groups.is_empty() {
                "any group".to_owned()
            } else {
                review.groups.join(", ")
            },
        );
        Verdict::Hold(
            Hold {
                notice,
                decision: Box::pin(async move {
                    let outcome = ticket.wait(&store).await;
                    state.lock().approvals.remove(&command_id);
                    let (kind, verdict) = match outcome {
                        Outcome::Approved { by } => (
                            EventKind::ApprovalGranted {
                                request_id: id.clone(),
                                approver: by.join(","),
                            },
                            PgDecision::Forward,
                        ),
                        Outcome::Denied { by } => (
                            EventKind::ApprovalDenied {
                                request_id: id.clone(),
                                approver: by.clone(),
                                reason: None,
                            },
                            PgDecision::Deny(format!("{by} denied approval {id}")),
                        ),
                        Outcome::Expired => (
                            EventKind::ApprovalExpired {
                                request_id: id.clone(),
                            },
                            PgDecision::Deny(format!(
                                "approval {id} expired before anyone decided; the \
                                 statement was not run"
                            )),
                        ),
                        Outcome::Abandoned => (
                            EventKind::ApprovalExpired {
                                request_id: id.clone(),
                            },
                            PgDecision::Deny(format!("approval {id} was abandoned")),
                        ),
                    };
                    // The approval is durable before the command runs.
                    match state.record_durably(kind).await {
                        Ok(()) => verdict,
                        Err(e) => PgDecision::Deny(format!(
                            "the audit trail cannot record the approval, so the \
                             statement was not run (fail closed): {e}"
                        )),
                    }
                }),
            },
            plan,
        )
    }

    /// Ticket mode: the first attempt files a request and is refused at once
    /// with its id; an attempt while it is pending is refused with the same
    /// id; the first attempt after approval runs (once, within the review's
    /// timeout), with the approval's use in the trail before it runs. The
    /// requests and their use live in the approval store, so the retry may
    /// come on any replica sharing it.
    async fn ticket(
        &self,
        s: &Arc<SessionState>,
        plan: Plan,
        key: Fingerprint,
        review: &Review,
        shown: crate::approvals::Shown,
    ) -> Verdict<Plan> {
        let decided = plan.decided.clone();
        let rule = decided
            .rule_id
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let approvers = if review.groups.is_empty() {
            "any group".to_owned()
        } else {
            review.groups.join(", ")
        };
        let command_id = plan.command_id;
        let used_by = format!(
            "{}/{} command {command_id}",
            self.approvals.replica(),
            s.session
        );
        let attempt = match self.approvals.ticket_attempt(&key, &used_by).await {
            Ok(a) => a,
            Err(e) => {
                return Verdict::Deny(format!(
                    "the approval store cannot say whether this statement was approved, so it \
                     was not run (fail closed): {e}"
                ));
            }
        };
        match attempt {
            Attempt::Run { id } => {
                let state = s.clone();
                Verdict::Hold(
                    Hold {
                        notice: format!(
                            "approval {id} (rule {rule}) was given for this statement; it runs \
                             now, once"
                        ),
                        decision: Box::pin(async move {
                            match state
                                .record_durably(EventKind::ApprovalGranted {
                                    request_id: id.clone(),
                                    approver: format!("ticket used by command {command_id}"),
                                })
                                .await
                            {
                                Ok(()) => PgDecision::Forward,
                                Err(e) => PgDecision::Deny(format!(
                                    "the audit trail cannot record the use of approval {id}, so \
                                     the statement was not run (fail closed): {e}"
                                )),
                            }
                        }),
                    },
                    plan,
                )
            }
            Attempt::Waiting { id } => Verdict::Deny(format!(
                "approval {id} for this statement is still pending (rule {rule}); retry the \
                 same statement after approval: an approver in {approvers} runs: portcullis \
                 approvals approve {id}"
            )),
            Attempt::File => {
                let request = ApprovalRequest {
                    requester: s.principal.id.clone(),
                    session_id: s.session.to_string(),
                    connection: s.connection.clone(),
                    command: shown.text(),
                    rule_id: rule.clone(),
                    reason: decided.reason.clone(),
                    groups: review.groups.clone(),
                    min_approvals: usize::try_from(review.min_approvals).unwrap_or(usize::MAX),
                    timeout: review.timeout,
                };
                let mut details = shown.details(&decided.facts);
                details.ticket = Some(key);
                // Stored before the refusal names it: the retry may come on
                // another replica at once.
                let ticket = match self.approvals.request_stored(request, details).await {
                    Ok(t) => t,
                    Err(e) => {
                        return Verdict::Deny(format!(
                            "cannot file an approval request, so this statement was not run \
                             (fail closed): {e}"
                        ));
                    }
                };
                let id = ticket.id.clone();
                shown.preview(&self.approvals, &id, &s.conn.backend, &decided.facts);
                s.record(EventKind::ApprovalRequested {
                    request_id: id.clone(),
                    command_id: plan.command_id,
                    approver: Some(review.groups.join(",")),
                });
                // The request outlives this attempt (and this session: the
                // agent may retry on a new connection, or another replica).
                // Its outcome is in the store; here it is only recorded.
                let store = self.approvals.clone();
                let state = s.clone();
                let request_id = id.clone();
                tokio::spawn(async move {
                    let id = request_id;
                    let kind = match ticket.wait(&store).await {
                        Outcome::Approved { by } => EventKind::ApprovalGranted {
                            request_id: id,
                            approver: by.join(","),
                        },
                        Outcome::Denied { by } => EventKind::ApprovalDenied {
                            request_id: id,
                            approver: by,
                            reason: None,
                        },
                        Outcome::Expired | Outcome::Abandoned => {
                            EventKind::ApprovalExpired { request_id: id }
                        }
                    };
                    state.record(kind);
                });
                Verdict::Deny(format!(
                    "approval required: request {id} was filed (rule {rule}) and this statement \
                     was not run; retry the same statement after approval: an approver in \
                     {approvers} runs: portcullis approvals approve {id}"
                ))
            }
        }
    }
}

#[async_trait]
impl Hook for Gateway {
    async fn authenticate(
        &self,
        session: SessionId,
        startup: &StartupParams,
        credential: &str,
    ) -> Result<Authenticated<Arc<SessionState>>, Rejection> {
        let user = startup.user();
        let (claimed, conn_name) = match user.rsplit_once('@') {
            Some((p, c)) => (Some(p), c),
            None => (None, user),
        };
        let failed = |reason: String| {
            metrics::counter!("portcullis_auth_failures_total").increment(1);
            tracing::warn!(%session, user, %reason, "authentication refused");
            let event = AuditEvent::new(EventKind::AuthFailed {
                method: "token".to_owned(),
                reason: reason.clone(),
            })
            .with_session(session.to_string());
            self.record_detached(event);
            reason
        };
        let Some(conn) = self.connections.get(conn_name) else {
            return Err(Rejection::NotAuthorized(failed(format!(
                "no connection named {conn_name:?} on this gateway; connect with user \
                 <connection> or <principal>@<connection>"
            ))));
        };
        let principal = self
            .identity
            .verify(credential)
            .map_err(|e| Rejection::InvalidCredential(failed(e.to_string())))?;
        // Without the catalog, `SELECT api_key AS k` could not be recognised:
        // refuse the session rather than risk it.
        conn.masked
            .ensure(&conn.backend, &self.field_patterns)
            .await
            .map_err(|e| Rejection::NotAuthorized(failed(e)))?;
        if let Some(claimed) = claimed
            && claimed != principal.id
        {
            return Err(Rejection::NotAuthorized(failed(format!(
                "the user name names {claimed:?} but the token is for {:?}",
                principal.id
            ))));
        }
        let kind = match principal.kind {
            PrincipalKind::Human => (policy::PrincipalKind::Human, audit::PrincipalKind::Human),
            PrincipalKind::Agent => (policy::PrincipalKind::Agent, audit::PrincipalKind::Agent),
            PrincipalKind::Service => (
                policy::PrincipalKind::Service,
                audit::PrincipalKind::Service,
            ),
        };
        let budget = self.budgets.for_principal(&principal.id, &principal.groups);
        let state = Arc::new(SessionState {
            session,
            connection: conn_name.to_owned(),
            started: Instant::now(),
            conn: conn.clone(),
            policy_principal: policy::Principal::new(principal.id.clone(), kind.0)
                .with_groups(principal.groups.iter().cloned()),
            audit_principal: audit::Principal {
                id: principal.id.clone(),
                kind: kind.1,
                groups: principal.groups.clone(),
                token_id: Some(principal.token_id.clone()),
            },
            audit_resource: audit::Resource {
                protocol: audit::Protocol::Postgres,
                target: conn_name.to_owned(),
                scope: Some(conn.backend.database.clone()),
            },
            audit: SessionAudit::new(self.audit.clone(), self.audit_failure.clone()),
            principal,
            inner: Mutex::new(SessionInner::default()),
            killed: Mutex::new(None),
            budget,
            ended: tokio::sync::Notify::new(),
            search_path: Default::default(),
        });
        {
            let mut sessions = self
                .sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let open = sessions
                .values()
                .filter(|s| s.principal.id == state.principal.id)
                .count();
            if open >= self.max_sessions_per_principal {
                drop(sessions);
                return Err(Rejection::TooManySessions(failed(format!(
                    "too many sessions for one principal: {:?} already has {open} open, the \
                     gateway's limit per principal (max_sessions_per_principal) is {}",
                    state.principal.id, self.max_sessions_per_principal
                ))));
            }
            sessions.insert(session, state.clone());
        }
        state.record(EventKind::SessionStarted {
            client_addr: None,
            application: startup.get("application_name").map(str::to_owned),
        });
        metrics::counter!("portcullis_sessions_total").increment(1);
        tracing::info!(%session, principal = %state.principal.id, connection = conn_name, "session started");
        metrics::gauge!("portcullis_sessions_active").increment(1.0);
        Ok(Authenticated {
            principal: state,
            backend: conn.backend.clone(),
        })
    }

    /// A killed session ends at once, idle or not.
    fn ended(&self, principal: &Arc<SessionState>) -> Pin<Box<dyn Future<Output = String> + Send>> {
        let s = principal.clone();
        Box::pin(async move {
            loop {
                if let Some(why) = s.killed() {
                    return why;
                }
                s.ended.notified().await;
            }
        })
    }

    async fn on_query(&self, cx: &Context<'_, Arc<SessionState>>, sql: &str) -> Verdict<Plan> {
        self.decide(cx, sql, None, Stage::Run).await
    }

    /// Extended protocol: decided when the statement is prepared. A statement
    /// to be reviewed is held at each execution instead, where the approver
    /// sees the bound values.
    async fn on_parse(
        &self,
        cx: &Context<'_, Arc<SessionState>>,
        _statement: &str,
        sql: &str,
    ) -> ParseVerdict<Plan> {
        match self.decide(cx, sql, None, Stage::Parse).await {
            Verdict::Forward(plan) | Verdict::Hold(_, plan) => ParseVerdict::Forward(plan),
            Verdict::Deny(reason) | Verdict::Exceeded(reason) => ParseVerdict::Deny(reason),
            Verdict::Terminate(reason) => ParseVerdict::Terminate(reason),
        }
    }

    /// Every Execute: the statement's decision is reused; the session is
    /// checked and the execution written to the trail with its parameters.
    /// A statement no Parse announced (SQL `PREPARE`) is decided as
    /// `EXECUTE name`.
    async fn on_execute(
        &self,
        cx: &Context<'_, Arc<SessionState>>,
        execution: Execution<'_, Plan>,
    ) -> Verdict<Plan> {
        match execution.plan {
            Some(statement) => {
                self.execute(cx, statement, execution.sql, execution.params)
                    .await
            }
            None => {
                self.decide(cx, execution.sql, Some(execution.params), Stage::Run)
                    .await
            }
        }
    }
}

impl Transform for Gateway {
    type Principal = Arc<SessionState>;
    type Plan = Plan;
    type ColumnPlan = ColumnPlan;

    fn session_settings(&self, principal: &Arc<SessionState>) -> Vec<(String, String)> {
        principal.budget.session_settings()
    }

    fn row_limit(&self, cx: &Context<'_, Arc<SessionState>>, plan: &Plan) -> Option<RowLimit> {
        let max_rows = cx.principal.budget.max_rows?;
        Some(
            RowLimit::new(max_rows, crate::budgets::Budget::rows_message(max_rows))
                .read_only(plan.decided.budget_facts.read_only),
        )
    }

    fn on_row_description(
        &self,
        cx: &Context<'_, Arc<SessionState>>,
        plan: &Plan,
        columns: &[Column],
    ) -> Vec<(usize, ColumnPlan)> {
        // Decided once per result, not per row, from this statement's own
        // plan: which columns are masked whole whatever their values. Every
        // column is chosen, since field rules match by name and detectors
        // scan every value.
        let s = cx.principal;
        let decided = &plan.decided;
        columns
            .iter()
            .map(|c| {
                // `schema.table.column` directives are matched on the column
                // part (masking more, never less).
                let directive = decided
                    .directive_fields
                    .iter()
                    .any(|f| glob_match(f.rsplit('.').next().unwrap_or(f), &c.name));
                // Masked whole unless the lineage proves it clean, or if
                // its source column (from the RowDescription) is masked.
                let fallback = if s.conn.masked.contains(c.table_oid, c.attribute) {
                    Some("field")
                } else if decided.masking.columns.is_masked(c.index, columns.len()) {
                    Some("derived")
                } else {
                    None
                };
                (
                    c.index,
                    ColumnPlan {
                        directive,
                        fallback,
                    },
                )
            })
            .collect()
    }

    fn transform_field(
        &self,
        _cx: &Context<'_, Arc<SessionState>>,
        plan: &Plan,
        column: &Column,
        column_plan: &ColumnPlan,
        value: &[u8],
    ) -> FieldValue {
        // Text types carry the same bytes in binary format, so a marker fits.
        let textual = match column.format {
            Format::Text => is_text_type(column.type_oid),
            Format::Binary => binary_is_text(column.type_oid),
        };
        let whole = |id: &str| {
            plan.count(id);
            if textual {
                FieldValue::Replace(format!("[MASKED:{id}]").into_bytes())
            } else {
                FieldValue::Null
            }
        };
        if column_plan.directive {
            return whole("policy-field");
        }
        let masked = self.masker.mask_field(&column.name, value);
        if let Some(id) = column_plan.fallback {
            // From a masked column, or not proven clean: masked whole,
            // unless a field rule (by the column's name, in its own style)
            // already covers the whole value; a detector is not enough.
            let covered = masked
                .findings()
                .iter()
                .any(|f| f.detector().starts_with("field:") && f.span() == (0..value.len()));
            if !covered {
                return whole(id);
            }
        }
        if !masked.is_masked() {
            return FieldValue::Keep;
        }
        for f in masked.findings() {
            plan.count(f.detector());
        }
        if textual {
            FieldValue::Replace(masked.output().to_vec())
        } else {
            FieldValue::Null
        }
    }

    fn transform_copy(
        &self,
        _cx: &Context<'_, Arc<SessionState>>,
        plan: &Plan,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        // Field rules per column first (by the lineage), then the detectors.
        let by_field = {
            let mut state = plan
                .copy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            crate::lineage::mask_copy(&plan.decided.masking, &mut state, data)
        };
        let data = match &by_field {
            Some((out, n)) => {
                for _ in 0..*n {
                    plan.count("lineage");
                }
                out.as_slice()
            }
            None => data,
        };
        let masked = self.masker.mask(data);
        if !masked.is_masked() {
            return by_field.map(|(out, _)| out);
        }
        for f in masked.findings() {
            plan.count(f.detector());
        }
        Some(masked.output().to_vec())
    }

    fn transform_text(
        &self,
        _cx: &Context<'_, Arc<SessionState>>,
        plan: Option<&Plan>,
        kind: TextKind,
        text: &str,
    ) -> Option<String> {
        // A statement that reads masked columns may have its values quoted
        // in its errors and notices; one without a plan is not known, so
        // it is treated the same.
        let (reads_masked, opaque) = match plan {
            Some(p) => (p.decided.masking.reads_masked, p.decided.masking.opaque),
            None => (!self.field_patterns.is_empty(), false),
        };
        let by_field = match kind {
            TextKind::ErrorField(code) | TextKind::NoticeField(code) if reads_masked => {
                crate::lineage::mask_error_field(code, text, opaque)
            }
            _ => None,
        };
        // Every kind, error and notice fields, notification payloads,
        // column names (`select 1 as "<secret>"`) and ParameterStatus values
        // (`set application_name = '<secret>'`), goes through the detectors.
        let text = by_field.as_deref().unwrap_or(text);
        let masked = self.masker.mask(text.as_bytes());
        if masked.is_masked() {
            Some(String::from_utf8_lossy(masked.output()).into_owned())
        } else {
            by_field
        }
    }

    fn on_event(&self, event: &Event, plan: Option<&Plan>) {
        let session = match event {
            Event::SessionStarted { session, .. }
            | Event::CommandReceived { session, .. }
            | Event::CommandForwarded { session, .. }
            | Event::CommandDenied { session, .. }
            | Event::CommandHeld { session, .. }
            | Event::HoldAbandoned { session, .. }
            | Event::CommandCompleted { session, .. }
            | Event::Error { session, .. }
            | Event::ProtocolViolation { session, .. }
            | Event::CommandDiscarded { session, .. }
            | Event::RowLimitExceeded { session, .. }
            | Event::SessionEnded { session, .. } => *session,
            _ => return,
        };
        let state = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&session)
            .cloned();
        let Some(s) = state else { return };
        match event {
            Event::CommandForwarded { command, .. } => {
                s.record(EventKind::CommandForwarded {
                    command_id: command.0,
                });
            }
            Event::CommandCompleted {
                command,
                tag,
                rows,
                bytes,
                ..
            } => {
                // Rows returned, or for INSERT/UPDATE/DELETE/… the count in
                // the tag (`DELETE 5`).
                let affected = tag
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                let rows = &(*rows).max(affected);
                {
                    let mut inner = s.lock();
                    inner.rows = inner.rows.saturating_add(*rows);
                    inner.bytes_out = inner.bytes_out.saturating_add(*bytes);
                }
                let masked = plan.map(Plan::take_masked).unwrap_or_default();
                for (detector, n) in &masked {
                    metrics::counter!("portcullis_masked_values_total", "detector" => detector.clone())
                        .increment(*n);
                }
                s.record(EventKind::CommandResult {
                    command_id: command.0,
                    rows: *rows,
                    bytes: *bytes,
                    masked,
                    duration_us: plan.map_or(0, Plan::duration_us),
                    error_code: None,
                    error_message: None,
                });
            }
            Event::Error {
                command: Some(command),
                code,
                message,
                ..
            } => {
                metrics::counter!("portcullis_backend_errors_total", "sqlstate" => code.clone())
                    .increment(1);
                s.record(EventKind::CommandResult {
                    command_id: command.0,
                    rows: 0,
                    bytes: 0,
                    masked: plan.map(Plan::take_masked).unwrap_or_default(),
                    duration_us: plan.map_or(0, Plan::duration_us),
                    error_code: Some(code.clone()),
                    error_message: Some(MaskedText::already_masked(self.mask_text(message))),
                });
            }
            Event::CommandDiscarded { command, .. } => {
                s.record(EventKind::CommandResult {
                    command_id: command.0,
                    rows: 0,
                    bytes: 0,
                    masked: BTreeMap::new(),
                    duration_us: plan.map_or(0, Plan::duration_us),
                    error_code: None,
                    error_message: Some(MaskedText::already_masked(
                        "not run: the backend discarded it after an earlier error in its \
                         pipeline"
                            .to_owned(),
                    )),
                });
            }
            Event::ProtocolViolation { message, .. } => {
                tracing::warn!(%session, %message, "backend protocol violation; session ended");
                s.record(EventKind::GatewayError {
                    message: format!("backend protocol violation, session ended: {message}"),
                });
            }
            Event::RowLimitExceeded { command, limit, .. } => {
                metrics::counter!("portcullis_budget_exceeded_total", "budget" => "max_rows")
                    .increment(1);
                s.record(EventKind::BudgetExceeded {
                    command_id: plan.map_or_else(|| command.map_or(0, |c| c.0), |p| p.command_id),
                    budget: "max_rows".to_owned(),
                    limit: *limit,
                    observed: *limit,
                });
            }
            Event::CommandDenied {
                command,
                reason,
                by: RefusedBy::Session,
                ..
            } => self.refused_by_the_session(&s, *command, reason),
            Event::HoldAbandoned { command, .. } => {
                if let Some(id) = s.lock().approvals.remove(&command.0) {
                    self.approvals.withdraw(&id);
                }
            }
            Event::SessionEnded { .. } => {
                let (rows, bytes_out) = {
                    let inner = s.lock();
                    (inner.rows, inner.bytes_out)
                };
                s.record(EventKind::SessionEnded {
                    bytes_in: 0,
                    bytes_out,
                    rows,
                    duration_us: u64::try_from(s.started.elapsed().as_micros()).unwrap_or(u64::MAX),
                });
                self.sessions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&session);
                metrics::gauge!("portcullis_sessions_active").decrement(1.0);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::identity::{GatewayKey, TokenIssuer};

    /// A revocation written so that the file keeps its size and its
    /// modification time (a copy that preserves times, an editor that sets
    /// it back) is still seen at the next check.
    #[test]
    fn a_revocation_is_seen_whatever_the_file_modification_time_says() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("revoked");
        let key = GatewayKey::from_pem(&GatewayKey::generate_pem().unwrap()).unwrap();
        let mut v = Verifier::new(0);
        v.trust_gateway(&key, "portcullis", "portcullis-gw");
        let issuer = TokenIssuer {
            key: &key,
            issuer: "portcullis",
            audience: "portcullis-gw",
        };
        let m = issuer.issue("agent:a", &[], 900, unix_now()).unwrap();
        // A placeholder line as long as the token id, so the revocation
        // below keeps the file's size.
        std::fs::write(&file, format!("{}\n", "x".repeat(m.id.len()))).unwrap();
        let store = IdentityStore::new(v, Some(file.clone()));
        let p = store.verify(&m.token).unwrap();
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::fs::write(&file, format!("{}\n", m.id)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), mtime);
        assert_eq!(store.recheck(&p), Err(AuthError::Revoked(m.id.clone())));
        assert_eq!(store.verify(&m.token), Err(AuthError::Revoked(m.id)));
    }
}
