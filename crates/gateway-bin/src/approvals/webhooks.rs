//! Notifications: a JSON `POST` to each configured webhook when a request
//! is filed, decided or expires (`[approvals] webhooks = ["https://…"]`).
//!
//! The body is a Slack incoming-webhook message (`text`, and `blocks` with
//! the statement and a link to the approval page), with the request's
//! fields beside it for other receivers:
//!
//! ```json
//! {
//!   "event": "approval_requested",
//!   "id": "apr-1a2b3c4d5e6f",
//!   "state": "pending",
//!   "requester": "agent:ci-bot",
//!   "connection": "shop",
//!   "session": "s3",
//!   "rule": "hold-delete",
//!   "reason": "DELETE needs a DBA",
//!   "command": "DELETE FROM orders WHERE id = 7",
//!   "groups": ["dba"],
//!   "min_approvals": 1,
//!   "expires_at": 1767225600,
//!   "decision": null,
//!   "url": "https://gw.example:9090/ui#apr-1a2b3c4d5e6f",
//!   "text": "…",
//!   "blocks": [ … ]
//! }
//! ```
//!
//! `decision` is `{"approver", "approve", "comment"}` on `approval_decision`.
//! A delivery is tried four times (after 0.5 s, 1 s and 2 s); a webhook that
//! still fails is recorded in the audit trail as a gateway error. A
//! notification never holds up or changes a decision.

use std::sync::Arc;
use std::time::Duration;

use portcullis_audit::{AuditEvent, AuditSink, EventKind};
use serde_json::json;

use super::{Record, Vote};

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Happened {
    Requested,
    Decided,
    Expired,
}

impl Happened {
    fn as_str(self) -> &'static str {
        match self {
            Happened::Requested => "approval_requested",
            Happened::Decided => "approval_decision",
            Happened::Expired => "approval_expired",
        }
    }
}

/// The configured webhooks.
#[derive(Clone)]
pub(crate) struct Webhooks {
    urls: Vec<String>,
    /// The approval page's base URL, for links (`http://127.0.0.1:9090`).
    page: Option<String>,
    audit: Option<Arc<dyn AuditSink>>,
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Full<bytes::Bytes>,
    >,
    delays: Vec<Duration>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("urls", &self.urls.len())
            .finish_non_exhaustive()
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The body posted for `record`.
pub(crate) fn payload(
    happened: Happened,
    record: &Record,
    vote: Option<&Vote>,
    page: Option<&str>,
) -> serde_json::Value {
    let url = page.map(|p| format!("{}/ui#{}", p.trim_end_matches('/'), record.id));
    let headline = match (happened, vote) {
        (Happened::Decided, Some(v)) => format!(
            "{} {} approval {} ({} on {}){}",
            v.approver,
            if v.approve { "approved" } else { "denied" },
            record.id,
            record.requester,
            record.connection,
            v.comment
                .as_deref()
                .map(|c| format!(": \u{201c}{c}\u{201d}"))
                .unwrap_or_default()
        ),
        (Happened::Expired, _) => format!(
            "Approval {} expired undecided ({} on {})",
            record.id, record.requester, record.connection
        ),
        _ => format!(
            "{} asks to run a statement on {} (rule {}): approval {}",
            record.requester, record.connection, record.rule_id, record.id
        ),
    };
    let link = url
        .as_deref()
        .map(|u| format!(" <{u}|Open the approval page>"))
        .unwrap_or_default();
    let command = mrkdwn(&record.command).replace("```", "`\u{200b}``");
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("{}{link}", mrkdwn(&headline))}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{command}```")}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn(&format!(
            "{}; needs {} approval(s) from {}; state {}",
            record.reason, record.min_approvals.max(1), record.groups.join(", "), record.state.as_str()
        ))}]}),
    ];
    if let Some(p) = &record.preview {
        blocks
            .push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn(p)}]}));
    }
    json!({
        "event": happened.as_str(),
        "id": record.id,
        "state": record.state.as_str(),
        "requester": record.requester,
        "connection": record.connection,
        "session": record.session_id,
        "rule": record.rule_id,
        "reason": record.reason,
        "command": record.command,
        "groups": record.groups,
        "min_approvals": record.min_approvals,
        "expires_at": record.expires_at,
        "decision": vote.map(|v| json!({"approver": v.approver, "approve": v.approve, "comment": v.comment})),
        "url": url,
        "text": format!("Portcullis: {headline}{}", url.as_deref().map(|u| format!(" {u}")).unwrap_or_default()),
        "blocks": blocks,
    })
}

impl Webhooks {
    /// Webhooks posting to `urls`, linking to the page at `page`, recording
    /// failures in `audit`.
    pub(crate) fn new(
        urls: Vec<String>,
        page: Option<String>,
        audit: Option<Arc<dyn AuditSink>>,
    ) -> Result<Webhooks, String> {
        for u in &urls {
            let uri: hyper::Uri = u
                .parse()
                .map_err(|e| format!("approvals: webhook {u:?} is not a URL: {e}"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) {
                return Err(format!(
                    "approvals: webhook {u:?} must be http:// or https://"
                ));
            }
        }
        let tls = crate::serve::client_tls()?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Webhooks {
            urls,
            page,
            audit,
            client,
            delays: vec![
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(2),
            ],
        })
    }

    /// Posts the notification in the background.
    pub(crate) fn notify(&self, happened: Happened, record: &Record, vote: Option<&Vote>) {
        if self.urls.is_empty() {
            return;
        }
        let body = payload(happened, record, vote, self.page.as_deref()).to_string();
        for url in self.urls.clone() {
            let this = self.clone();
            let body = body.clone();
            let id = record.id.clone();
            tokio::spawn(async move {
                if let Err(e) = this.deliver(&url, &body).await {
                    tracing::warn!(%url, approval = %id, error = %e, "webhook failed");
                    if let Some(sink) = &this.audit {
                        let event = AuditEvent::new(EventKind::GatewayError {
                            message: format!("webhook {url} was not told of approval {id}: {e}"),
                        });
                        let _ = sink.record(&event).await;
                    }
                }
            });
        }
    }

    async fn deliver(&self, url: &str, body: &str) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..=self.delays.len() {
            if attempt > 0
                && let Some(d) = self.delays.get(attempt - 1)
            {
                tokio::time::sleep(*d).await;
            }
            match self.post(url, body).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(format!("{} attempts: {last}", self.delays.len() + 1))
    }

    async fn post(&self, url: &str, body: &str) -> Result<(), String> {
        let req = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_owned(),
            )))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", resp.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::{State, display};
    use std::sync::Mutex;

    fn record() -> Record {
        Record {
            id: "apr-0123456789ab".to_owned(),
            requester: "agent:ci-bot".to_owned(),
            session_id: "s3".to_owned(),
            connection: "shop".to_owned(),
            command: "DELETE FROM orders WHERE note <> '<x>' -- & ```".to_owned(),
            rule_id: "hold-deletes".to_owned(),
            reason: "deletes wait".to_owned(),
            groups: vec!["dba".to_owned()],
            min_approvals: 1,
            facts: Default::default(),
            justification: None,
            shown: display::Shown::default(),
            preview: Some("DELETE on orders: about 5 rows".to_owned()),
            created_at: 1,
            expires_at: 601,
            state: State::Pending,
            votes: Vec::new(),
            replica: "a".to_owned(),
            ticket_key: None,
            ticket: None,
        }
    }

    /// A local receiver that fails its first `fail` posts with 500.
    async fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(0usize));
        let g = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let g = g.clone();
                let seen = seen.clone();
                async move {
                    let n = {
                        let mut s = seen.lock().unwrap();
                        *s += 1;
                        *s
                    };
                    if n <= fail {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    g.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook"), got)
    }

    async fn wait_for<T>(f: impl Fn() -> Option<T>) -> T {
        for _ in 0..200 {
            if let Some(v) = f() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nothing arrived");
    }

    /// The example payload of docs/approvals.md (its `## Webhooks` JSON).
    fn documented_payload() -> serde_json::Value {
        let doc = include_str!("../../../../docs/approvals.md");
        let section = &doc[doc.find("## Webhooks").unwrap()..];
        let start = section.find("```json\n").unwrap() + "```json\n".len();
        let end = start + section[start..].find("\n```\n").unwrap();
        serde_json::from_str(&section[start..end]).unwrap()
    }

    #[tokio::test]
    async fn a_request_and_a_decision_arrive_in_the_documented_shape_after_a_retry() {
        let (url, got) = receiver(1).await;
        let mut hooks =
            Webhooks::new(vec![url], Some("http://127.0.0.1:9090".to_owned()), None).unwrap();
        hooks.delays = vec![Duration::from_millis(10); 3];
        let r = record();
        hooks.notify(Happened::Requested, &r, None);
        let first = wait_for(|| got.lock().unwrap().first().cloned()).await;
        // The shape documented in docs/approvals.md: the same fields, each
        // of the same JSON type, and the same kinds of blocks.
        let documented = documented_payload();
        let kind = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "bool",
            serde_json::Value::Number(_) => "number",
            serde_json::Value::String(_) => "string",
            serde_json::Value::Array(_) => "array",
            serde_json::Value::Object(_) => "object",
        };
        let fields = |v: &serde_json::Value| -> std::collections::BTreeMap<String, &'static str> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), kind(v)))
                .collect()
        };
        assert_eq!(fields(&first), fields(&documented));
        let block_types = |v: &serde_json::Value| -> Vec<String> {
            v["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["type"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(block_types(&first), block_types(&documented));
        assert_eq!(first["event"], "approval_requested");
        assert_eq!(first["id"], "apr-0123456789ab");
        assert_eq!(first["url"], "http://127.0.0.1:9090/ui#apr-0123456789ab");
        assert_eq!(first["command"], r.command);
        assert!(first["decision"].is_null());
        // Slack: text, and blocks of sections with mrkdwn.
        let text = first["text"].as_str().unwrap();
        assert!(
            text.contains("agent:ci-bot") && text.contains("/ui#apr-"),
            "{text}"
        );
        let blocks = first["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "section");
        assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
        assert!(
            blocks[0]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("<http://127.0.0.1:9090/ui#apr-0123456789ab|Open the approval page>")
        );
        let code = blocks[1]["text"]["text"].as_str().unwrap();
        assert!(code.starts_with("```") && code.ends_with("```"), "{code}");
        assert!(
            code.contains("&lt;x&gt;") && code.contains("&amp;"),
            "{code}"
        );
        assert_eq!(code.matches("```").count(), 2, "{code}");

        let vote = Vote {
            approver: "human:alice".to_owned(),
            approve: false,
            comment: Some("wrong table".to_owned()),
            at: 5,
        };
        let mut denied = r.clone();
        denied.state = State::Denied;
        hooks.notify(Happened::Decided, &denied, Some(&vote));
        let second = wait_for(|| got.lock().unwrap().get(1).cloned()).await;
        assert_eq!(second["event"], "approval_decision");
        assert_eq!(second["state"], "denied");
        assert_eq!(second["decision"]["approver"], "human:alice");
        assert_eq!(second["decision"]["approve"], false);
        assert_eq!(second["decision"]["comment"], "wrong table");
        assert!(second["text"].as_str().unwrap().contains("denied"));
    }

    #[tokio::test]
    async fn a_webhook_that_keeps_failing_is_recorded_in_the_trail() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(
            portcullis_audit::JsonlSink::open(
                dir.path(),
                portcullis_audit::JsonlOptions::new("hooks"),
            )
            .unwrap()
            .0,
        );
        let (url, got) = receiver(usize::MAX).await;
        let mut hooks = Webhooks::new(vec![url.clone()], None, Some(sink.clone())).unwrap();
        hooks.delays = vec![Duration::from_millis(10); 3];
        hooks.notify(Happened::Requested, &record(), None);
        let text = wait_for(|| {
            let text: String = portcullis_audit::trail_files(dir.path(), "hooks")
                .unwrap()
                .iter()
                .map(|f| std::fs::read_to_string(f).unwrap_or_default())
                .collect();
            text.contains("webhook").then_some(text)
        })
        .await;
        assert!(text.contains(&url) && text.contains("4 attempts"), "{text}");
        assert!(got.lock().unwrap().is_empty());
    }
}
