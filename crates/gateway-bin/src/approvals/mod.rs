//! Just-in-time approvals: a held command waits here for people to decide.
//!
//! A `review` decision files a request with an id and a deadline; the
//! session that made it awaits its [`Ticket`]. Approvers decide through the
//! admin API (the CLI, the web page). The rules, checked by the store on
//! every decision:
//!
//! - only a **human** principal decides: agents and services never do, even
//!   when their token names an approver group;
//! - only a principal in one of the rule's approver groups;
//! - never the requester itself;
//! - `min_approvals` **distinct** approvers release the command; one denial,
//!   or the deadline, ends it;
//! - every decision is written to the audit trail (approver and comment)
//!   before it counts: a decision the trail cannot record is refused.
//!
//! Whatever happens, the ticket resolves exactly once. Fail closed: a store
//! that cannot answer never releases a statement, and expiry denies.
//!
//! The requests themselves live in a [`Backend`]: in memory for one gateway
//! ([`Memory`]), or in PostgreSQL for several replicas ([`pg::Postgres`]),
//! where a decision taken on one replica wakes the replica holding the
//! session through `LISTEN`/`NOTIFY`.

pub(crate) mod display;
pub(crate) mod pg;
pub(crate) mod preview;
pub(crate) mod replicas;
pub(crate) mod web;
pub(crate) mod webhooks;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use portcullis_audit::{self as audit, AuditEvent, AuditSink, EventKind};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::identity::{Principal, PrincipalKind};
use crate::tickets::{Attempt, Fingerprint};

/// The longest comment an approver may leave, in bytes.
pub(crate) const MAX_COMMENT: usize = 2000;

/// What is asked for.
#[derive(Debug, Clone)]
pub(crate) struct ApprovalRequest {
    pub(crate) requester: String,
    pub(crate) session_id: String,
    pub(crate) connection: String,
    /// The command as an approver may see it: already masked.
    pub(crate) command: String,
    pub(crate) rule_id: String,
    pub(crate) reason: String,
    pub(crate) groups: Vec<String>,
    pub(crate) min_approvals: usize,
    pub(crate) timeout: Duration,
}

/// What else an approver is shown, when the caller knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Details {
    /// The policy's facts about the command.
    pub(crate) facts: BTreeMap<String, serde_json::Value>,
    /// Why the requester says it needs this (a leading `/* reason: … */`).
    pub(crate) justification: Option<String>,
    /// The command as shown, piece by piece (see [`display`]).
    pub(crate) shown: Option<display::Shown>,
    /// Ticket mode: the statement's fingerprint, under which a retry finds
    /// the request (see [`ApprovalStore::ticket_attempt`]).
    pub(crate) ticket: Option<Fingerprint>,
}

/// A held statement as its approvers will see it, with what its preview
/// needs.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    pieces: display::Shown,
    justification: Option<String>,
    /// The statement itself, when it can be previewed (no bound values).
    sql: Option<String>,
}

impl Shown {
    /// `sql` with its bound `params`; `mask` masks a literal's inside.
    pub(crate) fn of(
        sql: &str,
        params: Option<&[Option<bytes::Bytes>]>,
        mask: &dyn Fn(&str) -> String,
    ) -> Shown {
        Shown {
            pieces: display::show(sql, params, mask),
            justification: justification(sql).map(mask),
            sql: params
                .is_none_or(<[Option<bytes::Bytes>]>::is_empty)
                .then(|| sql.to_owned()),
        }
    }

    /// The whole text.
    pub(crate) fn text(&self) -> String {
        self.pieces.text()
    }

    /// The request's details.
    pub(crate) fn details(&self, facts: &BTreeMap<String, serde_json::Value>) -> Details {
        Details {
            facts: facts.clone(),
            justification: self.justification.clone(),
            shown: Some(self.pieces.clone()),
            ticket: None,
        }
    }

    /// Attaches the planner's estimate to request `id`, in the background,
    /// when the statement is a single write (see [`preview`]).
    pub(crate) fn preview(
        &self,
        store: &Arc<ApprovalStore>,
        id: &str,
        backend: &portcullis_pg::BackendTarget,
        facts: &BTreeMap<String, serde_json::Value>,
    ) {
        let Some(sql) = self.sql.clone().filter(|_| preview::previewable(facts)) else {
            return;
        };
        let (store, id, backend) = (store.clone(), id.to_owned(), backend.clone());
        tokio::spawn(async move {
            match preview::estimate(&backend, &sql).await {
                Ok(text) => {
                    if let Err(e) = store.set_preview(&id, &text).await {
                        tracing::warn!(approval = %id, error = %e, "preview not stored");
                    }
                }
                Err(e) => tracing::info!(approval = %id, error = %e, "no preview"),
            }
        });
    }
}

/// The requester's reason, from a leading `/* reason: … */` comment.
fn justification(sql: &str) -> Option<&str> {
    let rest = sql.trim_start().strip_prefix("/*")?;
    let end = rest.find("*/")?;
    let inner = rest.get(..end)?.trim();
    let reason = inner
        .strip_prefix("reason:")
        .or_else(|| inner.strip_prefix("Reason:"))?
        .trim();
    (!reason.is_empty()).then_some(reason)
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Approved {
        by: Vec<String>,
    },
    Denied {
        by: String,
    },
    Expired,
    /// The store dropped the request (the gateway is shutting down, the
    /// store failed, the session was killed).
    Abandoned,
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum Decided {
    /// Enough approvals: the command is released.
    Released,
    /// Recorded; more approvals are needed.
    Recorded { have: usize, need: usize },
    /// Denied: the command will not run.
    Denied,
}

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecideError {
    #[error("no approval {0}")]
    NotFound(String),
    #[error("approval {id} is no longer pending: it was {state}")]
    Closed { id: String, state: &'static str },
    #[error("{approver} is not in any approver group of this request ({groups})")]
    NotAnApprover { approver: String, groups: String },
    #[error("{approver} is not a person ({kind}): only people approve, never agents or services")]
    NotHuman {
        approver: String,
        kind: &'static str,
    },
    #[error("{0} made this request and cannot decide on it")]
    OwnRequest(String),
    #[error("{0} has already approved this request")]
    AlreadyApproved(String),
    #[error("the comment is longer than {MAX_COMMENT} bytes")]
    CommentTooLong,
    #[error("the audit trail cannot record the decision, so it was not counted (fail closed): {0}")]
    Audit(String),
    #[error("the approval store cannot answer, so nothing was decided (fail closed): {0}")]
    Store(String),
}

/// The approval store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("approval store: {0}")]
pub(crate) struct StoreError(pub(crate) String);

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Pending,
    Approved,
    Denied,
    Expired,
    /// Its requester went away (cancel, disconnect, kill).
    Withdrawn,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Withdrawn => "withdrawn",
        }
    }
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Vote {
    pub(crate) approver: String,
    pub(crate) approve: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) comment: Option<String>,
    /// Unix seconds.
    pub(crate) at: u64,
}

/// A request as stored, listed and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) requester: String,
    pub(crate) session_id: String,
    pub(crate) connection: String,
    pub(crate) command: String,
    pub(crate) rule_id: String,
    pub(crate) reason: String,
    pub(crate) groups: Vec<String>,
    pub(crate) min_approvals: usize,
    #[serde(default)]
    pub(crate) facts: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) justification: Option<String>,
    /// The command piece by piece: SQL structure, and masked insides of
    /// literals, comments and parameters (see [`display`]).
    #[serde(default)]
    pub(crate) shown: display::Shown,
    /// What the command would touch (the planner's estimate), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) preview: Option<String>,
    /// Unix seconds.
    pub(crate) created_at: u64,
    /// Unix seconds.
    pub(crate) expires_at: u64,
    pub(crate) state: State,
    #[serde(default)]
    pub(crate) votes: Vec<Vote>,
    /// Which gateway holds the session.
    #[serde(default)]
    pub(crate) replica: String,
    /// Ticket mode: the statement's fingerprint. Never serialized (a shared
    /// store keeps it in a column of its own), so never shown.
    #[serde(skip)]
    pub(crate) ticket_key: Option<Fingerprint>,
    /// Ticket mode: how long the approval stays usable, and its one use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ticket: Option<TicketUse>,
}

/// A ticket-mode request's approval: usable once, for `ttl` seconds after
/// the approval that released it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TicketUse {
    /// Seconds.
    pub(crate) ttl: u64,
    /// When and by what it was used (unix seconds; `<replica>/<session>
    /// command <n>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) used_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) used_by: Option<String>,
}

impl Record {
    /// The approvers so far.
    pub(crate) fn approved_by(&self) -> Vec<String> {
        self.votes
            .iter()
            .filter(|v| v.approve)
            .map(|v| v.approver.clone())
            .collect()
    }

    fn need(&self) -> usize {
        self.min_approvals.max(1)
    }

    /// Whether `approver` may decide on this request now.
    pub(crate) fn check(&self, approver: &Principal, now: u64) -> Result<(), DecideError> {
        if self.state != State::Pending {
            return Err(DecideError::Closed {
                id: self.id.clone(),
                state: self.state.as_str(),
            });
        }
        if now >= self.expires_at {
            return Err(DecideError::Closed {
                id: self.id.clone(),
                state: State::Expired.as_str(),
            });
        }
        if approver.kind != PrincipalKind::Human {
            return Err(DecideError::NotHuman {
                approver: approver.id.clone(),
                kind: approver.kind.as_str(),
            });
        }
        if approver.id == self.requester {
            return Err(DecideError::OwnRequest(approver.id.clone()));
        }
        if !approver.groups.iter().any(|g| self.groups.contains(g)) {
            return Err(DecideError::NotAnApprover {
                approver: approver.id.clone(),
                groups: self.groups.join(", "),
            });
        }
        if self.votes.iter().any(|v| v.approver == approver.id) {
            return Err(DecideError::AlreadyApproved(approver.id.clone()));
        }
        Ok(())
    }

    /// Applies a checked vote.
    fn apply(&mut self, vote: Vote) -> Decided {
        let approve = vote.approve;
        self.votes.push(vote);
        if !approve {
            self.state = State::Denied;
            return Decided::Denied;
        }
        let have = self.approved_by().len();
        let need = self.need();
        if have < need {
            return Decided::Recorded { have, need };
        }
        self.state = State::Approved;
        Decided::Released
    }

    /// Ticket mode: whether its approval can still be used at `now`: approved,
    /// not used, and within the TTL after the approval that released it.
    fn ticket_usable(&self, now: u64) -> bool {
        let Some(t) = &self.ticket else {
            return false;
        };
        let approved_at = self
            .votes
            .iter()
            .filter(|v| v.approve)
            .map(|v| v.at)
            .max()
            .unwrap_or(0);
        self.state == State::Approved
            && t.used_at.is_none()
            && now < approved_at.saturating_add(t.ttl)
    }

    /// The outcome a finished request gives its ticket.
    fn outcome(&self) -> Option<Outcome> {
        match self.state {
            State::Pending => None,
            State::Approved => Some(Outcome::Approved {
                by: self.approved_by(),
            }),
            State::Denied => Some(Outcome::Denied {
                by: self
                    .votes
                    .iter()
                    .find(|v| !v.approve)
                    .map_or_else(String::new, |v| v.approver.clone()),
            }),
            State::Expired => Some(Outcome::Expired),
            State::Withdrawn => Some(Outcome::Abandoned),
        }
    }
}

/// A change to one record, applied atomically by the backend: it returns
/// what happened, or an error and leaves the record as it was.
pub(crate) type Change<'a> = dyn Fn(&mut Record) -> Result<Decided, DecideError> + Send + Sync + 'a;

/// Where requests are kept.
#[async_trait]
pub(crate) trait Backend: Send + Sync + std::fmt::Debug {
    /// Stores a new request. The in-memory backend stores it before
    /// returning the future (so a listing right after sees it).
    fn insert(
        &self,
        record: Record,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>;

    /// One request.
    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError>;

    /// Pending requests (soonest deadline first), or the most recent
    /// finished ones (newest first).
    async fn list(&self, pending: bool, limit: usize) -> Result<Vec<Record>, StoreError>;

    /// Changes one request atomically (read, `change`, write); tells the
    /// replicas that a finished request's ticket can resolve.
    async fn update(&self, id: &str, change: &Change<'_>)
    -> Result<(Decided, Record), DecideError>;

    /// Sets the preview text of a pending request.
    async fn set_preview(&self, id: &str, preview: &str) -> Result<(), StoreError>;

    /// Ticket mode: the requests filed for statement `key` that may still
    /// count (pending, or approved and not used), newest first.
    async fn tickets(&self, key: &Fingerprint) -> Result<Vec<Record>, StoreError>;
}

/// Requests in this process's memory: one gateway.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    records: Mutex<HashMap<String, Record>>,
}

/// Finished requests kept for the history, in memory.
const HISTORY: usize = 200;

impl Memory {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        // Each operation is one insert, remove or field update: a poisoned
        // lock cannot leave a record half-changed.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn prune(map: &mut HashMap<String, Record>) {
        let mut finished: Vec<(u64, String)> = map
            .values()
            .filter(|r| r.state != State::Pending)
            .map(|r| (r.created_at, r.id.clone()))
            .collect();
        if finished.len() <= HISTORY {
            return;
        }
        finished.sort();
        let drop = finished.len() - HISTORY;
        for (_, id) in finished.into_iter().take(drop) {
            map.remove(&id);
        }
    }
}

#[async_trait]
impl Backend for Memory {
    fn insert(
        &self,
        record: Record,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>> {
        self.lock().insert(record.id.clone(), record);
        Box::pin(std::future::ready(Ok(())))
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.lock().get(id).cloned())
    }

    async fn list(&self, pending: bool, limit: usize) -> Result<Vec<Record>, StoreError> {
        let now = unix_now();
        let mut v: Vec<Record> = self
            .lock()
            .values()
            .filter(|r| (r.state == State::Pending) == pending)
            .filter(|r| !pending || r.expires_at > now)
            .cloned()
            .collect();
        if pending {
            v.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.id.cmp(&b.id)));
        } else {
            v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        }
        v.truncate(limit);
        Ok(v)
    }

    async fn update(
        &self,
        id: &str,
        change: &Change<'_>,
    ) -> Result<(Decided, Record), DecideError> {
        let mut map = self.lock();
        let record = map
            .get_mut(id)
            .ok_or_else(|| DecideError::NotFound(id.to_owned()))?;
        let mut changed = record.clone();
        let decided = change(&mut changed)?;
        *record = changed.clone();
        if changed.state != State::Pending {
            Memory::prune(&mut map);
        }
        Ok((decided, changed))
    }

    async fn set_preview(&self, id: &str, preview: &str) -> Result<(), StoreError> {
        if let Some(r) = self.lock().get_mut(id) {
            r.preview = Some(preview.to_owned());
        }
        Ok(())
    }

    async fn tickets(&self, key: &Fingerprint) -> Result<Vec<Record>, StoreError> {
        let mut v: Vec<Record> = self
            .lock()
            .values()
            .filter(|r| r.ticket_key.as_ref() == Some(key))
            .filter(|r| {
                r.state == State::Pending
                    || (r.state == State::Approved
                        && r.ticket.as_ref().is_some_and(|t| t.used_at.is_none()))
            })
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(v)
    }
}

/// The approval store: the backend where requests live, and the tickets
/// of the sessions this gateway holds.
pub(crate) struct ApprovalStore {
    backend: Arc<dyn Backend>,
    /// Tickets of commands held by this gateway's sessions.
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Outcome>>>>,
    /// Where each decision is recorded before it counts.
    audit: Option<Arc<dyn AuditSink>>,
    /// This gateway's name among replicas.
    replica: String,
    /// The shared database, when replicas share one.
    shared: Option<Arc<pg::Postgres>>,
    /// Its notices, until [`replicas::run`] takes them.
    notices: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<pg::Notice>>>,
    /// Told of each request, decision and expiry.
    webhooks: Option<webhooks::Webhooks>,
}

impl std::fmt::Debug for ApprovalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalStore")
            .field("backend", &self.backend)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl Default for ApprovalStore {
    fn default() -> Self {
        ApprovalStore::new(Arc::new(Memory::default()), None, "local")
    }
}

/// The requester's side: resolves once, with the outcome.
#[derive(Debug)]
pub(crate) struct Ticket {
    pub(crate) id: String,
    rx: oneshot::Receiver<Outcome>,
    timeout: Duration,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh request id.
fn new_id() -> Result<String, String> {
    let mut raw = [0u8; 6];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| "no randomness for an approval id".to_owned())?;
    Ok(format!("apr-{}", hex::encode(raw)))
}

impl ApprovalStore {
    /// A store over `backend`; decisions are recorded in `audit` (if given)
    /// before they count.
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        audit: Option<Arc<dyn AuditSink>>,
        replica: &str,
    ) -> ApprovalStore {
        ApprovalStore {
            backend,
            waiting: Arc::new(Mutex::new(HashMap::new())),
            audit,
            replica: replica.to_owned(),
            shared: None,
            notices: Mutex::new(None),
            webhooks: None,
        }
    }

    /// Tells `webhooks` of each request, decision and expiry.
    pub(crate) fn with_webhooks(mut self, webhooks: webhooks::Webhooks) -> ApprovalStore {
        self.webhooks = Some(webhooks);
        self
    }

    /// A store in PostgreSQL shared by replicas (`dsn`), this one named
    /// `replica`.
    pub(crate) async fn postgres(
        dsn: &str,
        replica: &str,
        audit: Option<Arc<dyn AuditSink>>,
    ) -> Result<ApprovalStore, String> {
        let (shared, notices) = pg::Postgres::start(dsn, replica).await?;
        let mut store = ApprovalStore::new(shared.clone(), audit, replica);
        store.shared = Some(shared);
        store.notices = Mutex::new(Some(notices));
        Ok(store)
    }

    /// This gateway's name among replicas.
    pub(crate) fn replica(&self) -> &str {
        &self.replica
    }

    /// The shared database, if replicas share one.
    pub(crate) fn shared(&self) -> Option<Arc<pg::Postgres>> {
        self.shared.clone()
    }

    fn take_notices(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<pg::Notice>> {
        self.notices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Another replica finished request `id`: resolve its ticket if held
    /// here. A store that cannot answer resolves nothing (the ticket waits
    /// for the next sweep or its deadline).
    pub(crate) async fn on_finished(&self, id: &str) {
        if !self.holds(id) {
            return;
        }
        match self.backend.get(id).await {
            Ok(Some(record)) => self.resolve(&record),
            Ok(None) => {}
            Err(e) => tracing::warn!(approval = %id, error = %e, "cannot read a finished request"),
        }
    }

    /// Looks at every ticket held here (after a lost notification).
    pub(crate) async fn sweep(&self) {
        let held: Vec<String> = self.waiting().keys().cloned().collect();
        for id in held {
            self.on_finished(&id).await;
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Outcome>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Files a request; the caller awaits [`Ticket::wait`].
    pub(crate) fn request(&self, request: ApprovalRequest) -> Result<Ticket, String> {
        self.request_with(request, Details::default())
    }

    /// Files a request with what else the approver should see.
    pub(crate) fn request_with(
        &self,
        request: ApprovalRequest,
        details: Details,
    ) -> Result<Ticket, String> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "approvals need the gateway's runtime".to_owned())?;
        let (ticket, record) = self.prepare(request, details)?;
        let id = ticket.id.clone();
        let filed = self.webhooks.clone().map(|w| (w, record.clone()));
        let stored = self.backend.insert(record);
        let waiting = self.waiting.clone();
        handle.spawn(async move {
            // A request the store could not keep is refused: fail closed.
            if let Err(e) = stored.await {
                tracing::error!(approval = %id, error = %e, "approval request not stored; refused");
                let tx = waiting
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(Outcome::Abandoned);
                }
            } else if let Some((w, record)) = filed {
                w.notify(webhooks::Happened::Requested, &record, None);
            }
        });
        Ok(ticket)
    }

    /// Files a request and returns once the store keeps it (so a retry on
    /// any replica finds it); an error if the store cannot.
    pub(crate) async fn request_stored(
        &self,
        request: ApprovalRequest,
        details: Details,
    ) -> Result<Ticket, String> {
        let (ticket, record) = self.prepare(request, details)?;
        let filed = self.webhooks.clone().map(|w| (w, record.clone()));
        if let Err(e) = self.backend.insert(record).await {
            self.waiting().remove(&ticket.id);
            return Err(e.to_string());
        }
        if let Some((w, record)) = filed {
            w.notify(webhooks::Happened::Requested, &record, None);
        }
        Ok(ticket)
    }

    /// A new request's record, and its ticket (registered as held here).
    fn prepare(
        &self,
        request: ApprovalRequest,
        details: Details,
    ) -> Result<(Ticket, Record), String> {
        let id = new_id()?;
        let (tx, rx) = oneshot::channel();
        let timeout = request.timeout;
        let now = unix_now();
        let shown = details.shown.unwrap_or_else(|| display::Shown {
            segments: vec![display::Segment {
                kind: display::Kind::Opaque,
                text: request.command.clone(),
            }],
        });
        let record = Record {
            id: id.clone(),
            requester: request.requester,
            session_id: request.session_id,
            connection: request.connection,
            command: request.command,
            rule_id: request.rule_id,
            reason: request.reason,
            groups: request.groups,
            min_approvals: request.min_approvals,
            facts: details.facts,
            justification: details.justification,
            shown,
            preview: None,
            created_at: now,
            expires_at: now.saturating_add(timeout.as_secs().max(1)),
            state: State::Pending,
            votes: Vec::new(),
            replica: self.replica.clone(),
            ticket_key: details.ticket,
            ticket: details.ticket.map(|_| TicketUse {
                ttl: timeout.as_secs().max(1),
                used_at: None,
                used_by: None,
            }),
        };
        self.waiting().insert(id.clone(), tx);
        Ok((Ticket { id, rx, timeout }, record))
    }

    /// Ticket mode: what this attempt of statement `key` gets. `Run` has
    /// used the approval up (`by` says what used it): the use is one atomic
    /// change of the stored request, so of attempts racing for one approval,
    /// on this replica or any other sharing the store, exactly one runs. A
    /// store that cannot answer is an error (the caller refuses: fail
    /// closed).
    pub(crate) async fn ticket_attempt(
        &self,
        key: &Fingerprint,
        by: &str,
    ) -> Result<Attempt, StoreError> {
        let now = unix_now();
        let filed = self.backend.tickets(key).await?;
        for r in filed.iter().filter(|r| r.ticket_usable(now)) {
            let used = self
                .backend
                .update(&r.id, &|r: &mut Record| {
                    let now = unix_now();
                    if !r.ticket_usable(now) {
                        return Err(DecideError::Closed {
                            id: r.id.clone(),
                            state: "used",
                        });
                    }
                    if let Some(t) = &mut r.ticket {
                        t.used_at = Some(now);
                        t.used_by = Some(by.to_owned());
                    }
                    Ok(Decided::Released)
                })
                .await;
            match used {
                Ok(_) => return Ok(Attempt::Run { id: r.id.clone() }),
                // Another attempt used it (or it just lapsed): look further.
                Err(DecideError::Closed { .. } | DecideError::NotFound(_)) => {}
                Err(e) => return Err(StoreError(e.to_string())),
            }
        }
        match filed
            .iter()
            .find(|r| r.state == State::Pending && r.expires_at > now)
        {
            Some(r) => Ok(Attempt::Waiting { id: r.id.clone() }),
            None => Ok(Attempt::File),
        }
    }

    /// Pending requests, soonest deadline first.
    pub(crate) async fn list(&self) -> Result<Vec<Record>, StoreError> {
        self.backend.list(true, 500).await
    }

    /// The most recent finished requests, newest first.
    pub(crate) async fn history(&self, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.backend.list(false, limit).await
    }

    /// One request.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        self.backend.get(id).await
    }

    /// Attaches a preview to a pending request.
    pub(crate) async fn set_preview(&self, id: &str, preview: &str) -> Result<(), StoreError> {
        self.backend.set_preview(id, preview).await
    }

    /// An approver's decision, with an optional comment: checked against
    /// the rules, recorded in the audit trail, then counted.
    pub(crate) async fn decide(
        &self,
        id: &str,
        approver: &Principal,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<Decided, DecideError> {
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        if comment.is_some_and(|c| c.len() > MAX_COMMENT) {
            return Err(DecideError::CommentTooLong);
        }
        let record = self
            .backend
            .get(id)
            .await
            .map_err(|e| DecideError::Store(e.0))?
            .ok_or_else(|| DecideError::NotFound(id.to_owned()))?;
        record.check(approver, unix_now())?;
        if let Some(sink) = &self.audit {
            let event = AuditEvent::new(EventKind::ApprovalDecision {
                request_id: id.to_owned(),
                approver: approver.id.clone(),
                approve,
                comment: comment.map(str::to_owned),
            })
            .with_session(record.session_id.clone())
            .with_principal(audit::Principal {
                id: approver.id.clone(),
                kind: match approver.kind {
                    PrincipalKind::Human => audit::PrincipalKind::Human,
                    PrincipalKind::Agent => audit::PrincipalKind::Agent,
                    PrincipalKind::Service => audit::PrincipalKind::Service,
                },
                groups: approver.groups.clone(),
                token_id: Some(approver.token_id.clone()),
            });
            sink.record(&event)
                .await
                .map_err(|e| DecideError::Audit(e.to_string()))?;
        }
        let vote = Vote {
            approver: approver.id.clone(),
            approve,
            comment: comment.map(str::to_owned),
            at: unix_now(),
        };
        let (decided, record) = self
            .backend
            .update(id, &|r: &mut Record| {
                r.check(approver, unix_now())?;
                Ok(r.apply(vote.clone()))
            })
            .await?;
        self.resolve(&record);
        if let Some(w) = &self.webhooks {
            w.notify(webhooks::Happened::Decided, &record, Some(&vote));
        }
        Ok(decided)
    }

    /// Resolves the ticket of a finished request, if this gateway holds it.
    pub(crate) fn resolve(&self, record: &Record) {
        if let Some(outcome) = record.outcome()
            && let Some(tx) = self.waiting().remove(&record.id)
        {
            let _ = tx.send(outcome);
        }
    }

    /// Whether this gateway holds the ticket of request `id`.
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.waiting().contains_key(id)
    }

    /// Ends a pending request as `state` (expiry, withdrawal); returns the
    /// record as it is now, or an error if the store cannot answer.
    async fn finish(&self, id: &str, state: State) -> Result<Record, DecideError> {
        self.backend
            .update(id, &|r: &mut Record| {
                if r.state != State::Pending {
                    return Err(DecideError::Closed {
                        id: r.id.clone(),
                        state: r.state.as_str(),
                    });
                }
                r.state = state;
                Ok(Decided::Denied)
            })
            .await
            .map(|(_, r)| r)
    }

    /// Withdraws a request whose requester went away (cancel, disconnect).
    pub(crate) fn withdraw(&self, id: &str) {
        let tx = self.waiting().remove(id);
        if let Some(tx) = tx {
            let _ = tx.send(Outcome::Abandoned);
        }
        let backend = self.backend.clone();
        let id = id.to_owned();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = backend
                    .update(&id, &|r: &mut Record| {
                        if r.state == State::Pending {
                            r.state = State::Withdrawn;
                        }
                        Ok(Decided::Denied)
                    })
                    .await;
            });
        }
    }
}

impl Ticket {
    /// Waits for the outcome: a decision, or expiry at the deadline. A
    /// store that cannot say whether the request was decided denies.
    pub(crate) async fn wait(mut self, store: &ApprovalStore) -> Outcome {
        match tokio::time::timeout(self.timeout, &mut self.rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Abandoned,
            Err(_) => {
                store.waiting().remove(&self.id);
                match store.finish(&self.id, State::Expired).await {
                    Ok(record) => {
                        if let Some(w) = &store.webhooks {
                            w.notify(webhooks::Happened::Expired, &record, None);
                        }
                        Outcome::Expired
                    }
                    // Decided in the same instant: take the decision.
                    Err(DecideError::Closed { .. }) => match self.rx.try_recv() {
                        Ok(outcome) => outcome,
                        Err(_) => match store.get(&self.id).await {
                            Ok(Some(r)) => r.outcome().unwrap_or(Outcome::Expired),
                            _ => Outcome::Expired,
                        },
                    },
                    Err(_) => Outcome::Expired,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
