use super::*;
use crate::identity::PrincipalKind;
use portcullis_audit::{JsonlOptions, JsonlSink};

fn who(id: &str, kind: PrincipalKind, groups: &[&str]) -> Principal {
    Principal {
        id: id.to_owned(),
        kind,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        token_id: format!("t-{id}"),
        issuer: "test".to_owned(),
        expires_at: None,
    }
}

fn human(id: &str, groups: &[&str]) -> Principal {
    who(id, PrincipalKind::Human, groups)
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
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].command, "DELETE FROM orders");
    assert_eq!(
        store
            .decide(&t.id, &human("alice", &["dba"]), true, Some("looks fine"))
            .await,
        Ok(Decided::Released)
    );
    assert_eq!(
        t.wait(&store).await,
        Outcome::Approved {
            by: vec!["alice".to_owned()]
        }
    );
    assert!(store.list().await.unwrap().is_empty());
    let history = store.history(10).await.unwrap();
    assert_eq!(history[0].state, State::Approved);
    assert_eq!(history[0].votes[0].comment.as_deref(), Some("looks fine"));
}

#[tokio::test]
async fn only_humans_in_the_group_other_than_the_requester_decide() {
    let store = ApprovalStore::default();
    let t = store.request(req(2, Duration::from_secs(60))).unwrap();
    // The requester itself, even as a human in the group.
    assert_eq!(
        store
            .decide(&t.id, &human("agent:bot", &["dba"]), true, None)
            .await,
        Err(DecideError::OwnRequest("agent:bot".to_owned()))
    );
    // Another agent's token that names the approver group.
    assert_eq!(
        store
            .decide(
                &t.id,
                &who("agent:other", PrincipalKind::Agent, &["dba"]),
                true,
                None
            )
            .await,
        Err(DecideError::NotHuman {
            approver: "agent:other".to_owned(),
            kind: "agent"
        })
    );
    assert!(matches!(
        store
            .decide(
                &t.id,
                &who("service:etl", PrincipalKind::Service, &["dba"]),
                false,
                None
            )
            .await,
        Err(DecideError::NotHuman { .. })
    ));
    assert!(matches!(
        store
            .decide(&t.id, &human("mallory", &["dev"]), true, None)
            .await,
        Err(DecideError::NotAnApprover { .. })
    ));
    // None of the refusals counted.
    assert!(store.list().await.unwrap()[0].votes.is_empty());
    assert_eq!(
        store
            .decide(&t.id, &human("alice", &["dba"]), true, None)
            .await,
        Ok(Decided::Recorded { have: 1, need: 2 })
    );
    assert_eq!(
        store
            .decide(&t.id, &human("alice", &["dba"]), true, None)
            .await,
        Err(DecideError::AlreadyApproved("alice".to_owned()))
    );
    assert_eq!(
        store
            .decide(&t.id, &human("bob", &["dba"]), false, Some("not today"))
            .await,
        Ok(Decided::Denied)
    );
    assert_eq!(
        t.wait(&store).await,
        Outcome::Denied {
            by: "bob".to_owned()
        }
    );
    assert_eq!(
        store
            .decide("apr-gone", &human("bob", &["dba"]), true, None)
            .await,
        Err(DecideError::NotFound("apr-gone".to_owned()))
    );
}

#[tokio::test]
async fn min_approvals_two_needs_two_distinct_people() {
    let store = ApprovalStore::default();
    let t = store.request(req(2, Duration::from_secs(60))).unwrap();
    assert_eq!(
        store
            .decide(&t.id, &human("alice", &["dba"]), true, None)
            .await,
        Ok(Decided::Recorded { have: 1, need: 2 })
    );
    let mut t = t;
    assert!(t.rx.try_recv().is_err(), "released after one approval");
    assert_eq!(
        store
            .decide(&t.id, &human("carol", &["dba"]), true, None)
            .await,
        Ok(Decided::Released)
    );
    assert_eq!(
        t.wait(&store).await,
        Outcome::Approved {
            by: vec!["alice".to_owned(), "carol".to_owned()]
        }
    );
}

#[tokio::test(start_paused = true)]
async fn an_undecided_request_expires_and_cannot_be_approved_after() {
    let store = ApprovalStore::default();
    let t = store.request(req(1, Duration::from_secs(30))).unwrap();
    let id = t.id.clone();
    assert_eq!(t.wait(&store).await, Outcome::Expired);
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(store.get(&id).await.unwrap().unwrap().state, State::Expired);
    assert_eq!(
        store
            .decide(&id, &human("alice", &["dba"]), true, None)
            .await,
        Err(DecideError::Closed {
            id,
            state: "expired"
        })
    );
}

#[tokio::test]
async fn a_withdrawn_request_is_abandoned() {
    let store = ApprovalStore::default();
    let t = store.request(req(1, Duration::from_secs(30))).unwrap();
    store.withdraw(&t.id);
    assert_eq!(t.wait(&store).await, Outcome::Abandoned);
    tokio::task::yield_now().await;
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn every_decision_is_in_the_trail_with_its_comment_and_fails_closed_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(
        JsonlSink::open(dir.path(), JsonlOptions::new("approvals-test"))
            .unwrap()
            .0,
    );
    let store = ApprovalStore::new(Arc::new(Memory::default()), Some(sink.clone()), "a");
    let t = store.request(req(2, Duration::from_secs(60))).unwrap();
    store
        .decide(
            &t.id,
            &human("alice", &["dba"]),
            true,
            Some("checked the WHERE"),
        )
        .await
        .unwrap();
    store
        .decide(&t.id, &human("bob", &["dba"]), false, Some("wrong table"))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let text: String = portcullis_audit::trail_files(dir.path(), "approvals-test")
        .unwrap()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let decisions: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.to_string().contains("approval_decision"))
        .collect();
    assert_eq!(decisions.len(), 2, "{text}");
    assert!(decisions[0].to_string().contains("checked the WHERE"));
    assert!(decisions[0].to_string().contains("\"alice\""));
    assert!(decisions[1].to_string().contains("wrong table"));
    assert!(decisions[1].to_string().contains("\"approve\":false"));
}

fn ticket_details(key: Fingerprint) -> Details {
    Details {
        ticket: Some(key),
        ..Details::default()
    }
}

fn delete_key(sql: &str) -> Fingerprint {
    Fingerprint::of("agent:bot", "prod", sql, None)
}

/// Moves every vote `secs` into the past (as if the approval was given
/// then).
async fn age_votes(store: &ApprovalStore, id: &str, secs: u64) {
    store
        .backend
        .update(id, &|r: &mut Record| {
            for v in &mut r.votes {
                v.at = v.at.saturating_sub(secs);
            }
            Ok(Decided::Released)
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_ticket_approval_runs_once_then_a_new_request_is_needed() {
    let store = ApprovalStore::default();
    let key = delete_key("DELETE FROM orders");
    assert_eq!(
        store.ticket_attempt(&key, "s1 command 1").await,
        Ok(Attempt::File)
    );
    let t = store
        .request_with(req(1, Duration::from_secs(60)), ticket_details(key))
        .unwrap();
    let id = t.id.clone();
    assert_eq!(
        store.ticket_attempt(&key, "s1 command 2").await,
        Ok(Attempt::Waiting { id: id.clone() })
    );
    store
        .decide(&id, &human("alice", &["dba"]), true, None)
        .await
        .unwrap();
    // Another statement never rides on the approval.
    assert_eq!(
        store
            .ticket_attempt(&delete_key("DELETE FROM orders "), "s1 command 3")
            .await,
        Ok(Attempt::File)
    );
    assert_eq!(
        store.ticket_attempt(&key, "a/s2 command 4").await,
        Ok(Attempt::Run { id: id.clone() })
    );
    assert_eq!(
        store.ticket_attempt(&key, "s1 command 5").await,
        Ok(Attempt::File)
    );
    // The request shows its use, never the statement's fingerprint.
    let record = store.get(&id).await.unwrap().unwrap();
    let use_ = record.ticket.clone().unwrap();
    assert_eq!(use_.used_by.as_deref(), Some("a/s2 command 4"));
    assert_eq!(use_.ttl, 60);
    assert!(use_.used_at.is_some());
    let json = serde_json::to_string(&record).unwrap();
    assert!(!json.contains(&key.hex()), "{json}");
    assert!(json.contains("\"used_by\""), "{json}");
}

#[tokio::test]
async fn a_ticket_approval_lapses_after_its_ttl_and_a_denial_ends_the_request() {
    let store = ApprovalStore::default();
    let key = delete_key("DELETE FROM orders");
    let t = store
        .request_with(req(1, Duration::from_secs(60)), ticket_details(key))
        .unwrap();
    store
        .decide(&t.id, &human("alice", &["dba"]), true, None)
        .await
        .unwrap();
    age_votes(&store, &t.id, 61).await;
    assert_eq!(store.ticket_attempt(&key, "s1").await, Ok(Attempt::File));
    // Approved 59 s ago: still usable.
    let t = store
        .request_with(req(1, Duration::from_secs(60)), ticket_details(key))
        .unwrap();
    store
        .decide(&t.id, &human("alice", &["dba"]), true, None)
        .await
        .unwrap();
    age_votes(&store, &t.id, 59).await;
    assert_eq!(
        store.ticket_attempt(&key, "s1").await,
        Ok(Attempt::Run { id: t.id.clone() })
    );

    let t = store
        .request_with(req(1, Duration::from_secs(60)), ticket_details(key))
        .unwrap();
    store
        .decide(&t.id, &human("bob", &["dba"]), false, None)
        .await
        .unwrap();
    assert_eq!(store.ticket_attempt(&key, "s1").await, Ok(Attempt::File));
}

#[tokio::test]
async fn min_approvals_two_holds_a_ticket_until_the_second_person() {
    let store = ApprovalStore::default();
    let key = delete_key("DELETE FROM orders");
    let t = store
        .request_with(req(2, Duration::from_secs(60)), ticket_details(key))
        .unwrap();
    store
        .decide(&t.id, &human("alice", &["dba"]), true, None)
        .await
        .unwrap();
    assert_eq!(
        store.ticket_attempt(&key, "s1").await,
        Ok(Attempt::Waiting { id: t.id.clone() })
    );
    store
        .decide(&t.id, &human("carol", &["dba"]), true, None)
        .await
        .unwrap();
    assert_eq!(
        store.ticket_attempt(&key, "s1").await,
        Ok(Attempt::Run { id: t.id.clone() })
    );
}

/// Attempts racing for one approval: exactly one runs.
async fn race(stores: &[Arc<ApprovalStore>], key: Fingerprint, per_store: usize) -> usize {
    let start = Arc::new(tokio::sync::Barrier::new(stores.len() * per_store));
    let mut tasks = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        for j in 0..per_store {
            let (store, start) = (store.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                store.ticket_attempt(&key, &format!("r{i} s{j}")).await
            }));
        }
    }
    let mut runs = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Attempt::Run { .. } => runs += 1,
            Attempt::File => {}
            other @ Attempt::Waiting { .. } => panic!("{other:?}"),
        }
    }
    runs
}

/// In one gateway's memory each attempt reads and uses under one lock; the
/// race between replicas, where the version check decides, is
/// [`replicas_share_ticket_approvals_and_race_for_them_in_postgres`].
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempts_for_one_ticket_approval_run_it_once() {
    let store = Arc::new(ApprovalStore::default());
    let key = delete_key("DELETE FROM orders");
    for _ in 0..20 {
        let t = store
            .request_with(req(1, Duration::from_secs(60)), ticket_details(key))
            .unwrap();
        store
            .decide(&t.id, &human("alice", &["dba"]), true, None)
            .await
            .unwrap();
        assert_eq!(race(std::slice::from_ref(&store), key, 16).await, 1);
    }
}

/// Two replicas sharing one PostgreSQL (the testkit's): a ticket filed on
/// one is pending on the other, approved through the other, and of 16
/// attempts racing on both replicas exactly one runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_ticket_approvals_and_race_for_them_in_postgres() {
    let pg = tokio::task::spawn_blocking(|| portcullis_testkit::PgCluster::start().unwrap())
        .await
        .unwrap();
    let dsn = format!("{}?sslmode=disable", pg.dsn());
    let a = Arc::new(ApprovalStore::postgres(&dsn, "a", None).await.unwrap());
    let b = Arc::new(ApprovalStore::postgres(&dsn, "b", None).await.unwrap());
    let key = delete_key("DELETE FROM orders");
    for round in 0..5 {
        let t = a
            .request_stored(req(1, Duration::from_secs(60)), ticket_details(key))
            .await
            .unwrap();
        let id = t.id.clone();
        assert_eq!(
            b.ticket_attempt(&key, "b/s1").await,
            Ok(Attempt::Waiting { id: id.clone() })
        );
        // A fingerprint stored as a column, not in what approvers see.
        let shown = serde_json::to_string(&b.get(&id).await.unwrap().unwrap()).unwrap();
        assert!(!shown.contains(&key.hex()), "{shown}");
        b.decide(&id, &human("alice", &["dba"]), true, None)
            .await
            .unwrap();
        assert_eq!(
            race(&[a.clone(), b.clone()], key, 8).await,
            1,
            "round {round}"
        );
        assert_eq!(a.ticket_attempt(&key, "a/s1").await, Ok(Attempt::File));
        assert!(
            b.get(&id)
                .await
                .unwrap()
                .unwrap()
                .ticket
                .unwrap()
                .used_at
                .is_some()
        );
    }
}
