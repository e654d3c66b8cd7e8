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
