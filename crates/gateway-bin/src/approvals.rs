//! Just-in-time approvals: a held command waits here for people to decide.
//!
//! A `review` decision creates a request with an id and a deadline; the
//! session that made it awaits its [`Ticket`]. Approvers decide through the
//! admin API. Only a principal in one of the rule's approver groups may
//! decide, never the requester itself; `min_approvals` distinct approvers
//! release the command; one denial, or the deadline, ends it. Whatever
//! happens, the ticket resolves exactly once and the request leaves the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::identity::Principal;

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
    /// The store dropped the request (the gateway is shutting down).
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
    #[error("no pending approval {0} (it may have been decided or have expired)")]
    NotFound(String),
    #[error("{approver} is not in any approver group of this request ({groups})")]
    NotAnApprover { approver: String, groups: String },
    #[error("{0} made this request and cannot decide on it")]
    OwnRequest(String),
    #[error("{0} has already approved this request")]
    AlreadyApproved(String),
}

/// A pending request as listed to approvers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PendingView {
    pub(crate) id: String,
    pub(crate) requester: String,
    pub(crate) session_id: String,
    pub(crate) connection: String,
    pub(crate) command: String,
    pub(crate) rule_id: String,
    pub(crate) reason: String,
    pub(crate) groups: Vec<String>,
    pub(crate) min_approvals: usize,
    pub(crate) approved_by: Vec<String>,
    /// Unix seconds.
    pub(crate) expires_at: u64,
}

#[derive(Debug)]
struct Pending {
    request: ApprovalRequest,
    approved_by: Vec<String>,
    expires_at: u64,
    tx: oneshot::Sender<Outcome>,
}

/// The in-process store of pending approvals.
#[derive(Debug, Default)]
pub(crate) struct ApprovalStore {
    pending: Mutex<HashMap<String, Pending>>,
}

/// The requester's side: resolves once, with the outcome.
#[derive(Debug)]
pub(crate) struct Ticket {
    pub(crate) id: String,
    rx: oneshot::Receiver<Outcome>,
    timeout: Duration,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ApprovalStore {
    /// Files a request; the caller awaits [`Ticket::wait`].
    pub(crate) fn request(&self, request: ApprovalRequest) -> Result<Ticket, String> {
        let mut raw = [0u8; 6];
        SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| "no randomness for an approval id".to_owned())?;
        let id = format!("apr-{}", hex::encode(raw));
        let (tx, rx) = oneshot::channel();
        let timeout = request.timeout;
        let pending = Pending {
            expires_at: unix_now().saturating_add(timeout.as_secs()),
            request,
            approved_by: Vec::new(),
            tx,
        };
        self.lock().insert(id.clone(), pending);
        Ok(Ticket { id, rx, timeout })
    }

    /// Every pending request.
    pub(crate) fn list(&self) -> Vec<PendingView> {
        let mut v: Vec<PendingView> = self
            .lock()
            .iter()
            .map(|(id, p)| PendingView {
                id: id.clone(),
                requester: p.request.requester.clone(),
                session_id: p.request.session_id.clone(),
                connection: p.request.connection.clone(),
                command: p.request.command.clone(),
                rule_id: p.request.rule_id.clone(),
                reason: p.request.reason.clone(),
                groups: p.request.groups.clone(),
                min_approvals: p.request.min_approvals,
                approved_by: p.approved_by.clone(),
                expires_at: p.expires_at,
            })
            .collect();
        v.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.id.cmp(&b.id)));
        v
    }

    /// An approver's decision.
    pub(crate) fn decide(
        &self,
        id: &str,
        approver: &Principal,
        approve: bool,
    ) -> Result<Decided, DecideError> {
        let mut map = self.lock();
        let p = map
            .get_mut(id)
            .ok_or_else(|| DecideError::NotFound(id.to_owned()))?;
        if approver.id == p.request.requester {
            return Err(DecideError::OwnRequest(approver.id.clone()));
        }
        if !approver.groups.iter().any(|g| p.request.groups.contains(g)) {
            return Err(DecideError::NotAnApprover {
                approver: approver.id.clone(),
                groups: p.request.groups.join(", "),
            });
        }
        if !approve {
            if let Some(p) = map.remove(id) {
                let _ = p.tx.send(Outcome::Denied {
                    by: approver.id.clone(),
                });
            }
            return Ok(Decided::Denied);
        }
        if p.approved_by.contains(&approver.id) {
            return Err(DecideError::AlreadyApproved(approver.id.clone()));
        }
        p.approved_by.push(approver.id.clone());
        let need = p.request.min_approvals.max(1);
        let have = p.approved_by.len();
        if have < need {
            return Ok(Decided::Recorded { have, need });
        }
        if let Some(p) = map.remove(id) {
            let _ = p.tx.send(Outcome::Approved { by: p.approved_by });
        }
        Ok(Decided::Released)
    }

    /// Removes a request that timed out, unless it was decided first.
    fn expire(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Withdraws a request whose requester went away (cancel, disconnect).
    pub(crate) fn withdraw(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (each operation is one insert or remove), so a poisoned lock is
        // still usable.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Ticket {
    /// Waits for the outcome: a decision, or expiry at the deadline.
    pub(crate) async fn wait(mut self, store: &ApprovalStore) -> Outcome {
        match tokio::time::timeout(self.timeout, &mut self.rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Abandoned,
            Err(_) => {
                if store.expire(&self.id) {
                    Outcome::Expired
                } else {
                    // Decided in the same instant: take the decision.
                    self.rx.try_recv().unwrap_or(Outcome::Expired)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::PrincipalKind;

    fn who(id: &str, groups: &[&str]) -> Principal {
        Principal {
            id: id.to_owned(),
            kind: PrincipalKind::Human,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            token_id: format!("t-{id}"),
            issuer: "test".to_owned(),
            expires_at: None,
        }
    }

    fn req(min: usize, timeout: Duration) -> ApprovalRequest {
        ApprovalRequest {
            requester: "agent:bot".to_owned(),
            session_id: "s1".to_owned(),
            connection: "prod".to_owned(),
            command: "DELETE FROM orders".to_owned(),
            rule_id: "hold-delete".to_owned(),
            reason: "DELETE without WHERE".to_owned(),
            groups: vec!["dba".to_owned()],
            min_approvals: min,
            timeout,
        }
    }

    #[tokio::test]
    async fn approval_by_an_approver_releases_the_ticket() {
        let store = ApprovalStore::default();
        let t = store.request(req(1, Duration::from_secs(60))).unwrap();
        assert_eq!(store.list().len(), 1);
        assert_eq!(store.list()[0].command, "DELETE FROM orders");
        assert_eq!(
            store.decide(&t.id, &who("alice", &["dba"]), true),
            Ok(Decided::Released)
        );
        assert_eq!(
            t.wait(&store).await,
            Outcome::Approved {
                by: vec!["alice".to_owned()]
            }
        );
        assert!(store.list().is_empty());
    }

    #[tokio::test]
    async fn only_approvers_other_than_the_requester_may_decide() {
        let store = ApprovalStore::default();
        let t = store.request(req(2, Duration::from_secs(60))).unwrap();
        assert_eq!(
            store.decide(&t.id, &who("agent:bot", &["dba"]), true),
            Err(DecideError::OwnRequest("agent:bot".to_owned()))
        );
        assert!(matches!(
            store.decide(&t.id, &who("mallory", &["dev"]), true),
            Err(DecideError::NotAnApprover { .. })
        ));
        assert_eq!(
            store.decide(&t.id, &who("alice", &["dba"]), true),
            Ok(Decided::Recorded { have: 1, need: 2 })
        );
        assert_eq!(
            store.decide(&t.id, &who("alice", &["dba"]), true),
            Err(DecideError::AlreadyApproved("alice".to_owned()))
        );
        assert_eq!(
            store.decide(&t.id, &who("bob", &["dba"]), false),
            Ok(Decided::Denied)
        );
        assert_eq!(
            t.wait(&store).await,
            Outcome::Denied {
                by: "bob".to_owned()
            }
        );
        assert_eq!(
            store.decide("apr-gone", &who("bob", &["dba"]), true),
            Err(DecideError::NotFound("apr-gone".to_owned()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_undecided_request_expires_and_leaves_the_store() {
        let store = ApprovalStore::default();
        let t = store.request(req(1, Duration::from_secs(30))).unwrap();
        let id = t.id.clone();
        assert_eq!(t.wait(&store).await, Outcome::Expired);
        assert!(store.list().is_empty());
        assert_eq!(
            store.decide(&id, &who("alice", &["dba"]), true),
            Err(DecideError::NotFound(id))
        );
    }

    #[tokio::test]
    async fn a_withdrawn_request_is_abandoned() {
        let store = ApprovalStore::default();
        let t = store.request(req(1, Duration::from_secs(30))).unwrap();
        store.withdraw(&t.id);
        assert!(store.list().is_empty());
        assert_eq!(t.wait(&store).await, Outcome::Abandoned);
    }
}
