//! The admin HTTP API (a listener of its own) and its command-line client.
//!
//! - `GET /healthz`: 200 `ok`, or 503 with the reason the gateway cannot serve
//!   (e.g. the audit trail cannot write).
//! - `GET /v1/approvals`: pending approvals (`?history` for recently
//!   finished ones).
//! - `GET /v1/approvals/{id}`: one request, pending or finished.
//! - `POST /v1/approvals/{id}/approve`, `POST /v1/approvals/{id}/deny`, with
//!   an optional JSON body `{"comment": "…"}`.
//! - `GET /v1/sessions`: live sessions (all of them to operators; anyone
//!   else sees only its own principal's).
//! - `POST /v1/sessions/{id}/kill`: end one (operators only: `[admin]
//!   operator_groups`).
//! - `GET /metrics`: Prometheus metrics (no authentication, like `/healthz`).
//!
//! Every `/v1` call carries `Authorization: Bearer <token>`: a token or API
//! key of the same identity system as clients. The approval store decides
//! who may decide what.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::approvals::{ApprovalStore, DecideError, Record};
use crate::identity::{AuthError, Principal};

/// Checks a bearer credential.
pub(crate) type Authenticate = dyn Fn(&str) -> Result<Principal, AuthError> + Send + Sync;

/// Why the gateway cannot serve right now, if it cannot.
pub(crate) type Health = dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
    + Send
    + Sync;

/// Ends a session (by id, by whom); false if there is none.
pub(crate) type Kill = dyn Fn(String, String) -> crate::approvals::replicas::BoxFuture<Result<bool, String>>
    + Send
    + Sync;

/// Live sessions, as JSON.
pub(crate) type Sessions = dyn Fn() -> crate::approvals::replicas::BoxFuture<Result<serde_json::Value, String>>
    + Send
    + Sync;

/// What the admin API serves.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) approvals: Arc<ApprovalStore>,
    pub(crate) authenticate: Arc<Authenticate>,
    pub(crate) health: Arc<Health>,
    /// Live sessions, as JSON.
    pub(crate) sessions: Arc<Sessions>,
    /// Ends a session (by id, by whom); false if there is none.
    pub(crate) kill: Arc<Kill>,
    /// Groups whose members may kill sessions.
    pub(crate) operator_groups: Vec<String>,
    /// The Prometheus text exposition.
    pub(crate) metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// The listener has TLS (the page's cookie is then `Secure`).
    pub(crate) tls: bool,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/sessions", get(sessions))
        .route("/v1/sessions/{id}/kill", post(kill))
        .route("/v1/approvals", get(list))
        .route("/v1/approvals/{id}", get(show))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
        .merge(crate::approvals::web::routes())
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn principal(state: &AdminState, headers: &HeaderMap) -> Result<Principal, String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("send Authorization: Bearer <token or API key>")?;
    (state.authenticate)(bearer).map_err(|e| e.to_string())
}

async fn healthz(State(state): State<AdminState>) -> Response {
    match (state.health)().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        (state.metrics)(),
    )
        .into_response()
}

/// Live sessions: every replica's to an operator (a human in an operator
/// group); anyone else sees only the sessions of its own principal.
async fn sessions(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let who = match principal(&state, &headers) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e),
    };
    let operator = who.kind == crate::identity::PrincipalKind::Human
        && who.groups.iter().any(|g| state.operator_groups.contains(g));
    match (state.sessions)().await {
        Ok(serde_json::Value::Array(list)) if !operator => Json(serde_json::Value::Array(
            list.into_iter()
                .filter(|s| s.get("principal").and_then(|p| p.as_str()) == Some(who.id.as_str()))
                .collect(),
        ))
        .into_response(),
        Ok(_) if !operator => Json(json!([])).into_response(),
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

async fn kill(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let who = match principal(&state, &headers) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e),
    };
    if !who.groups.iter().any(|g| state.operator_groups.contains(g)) {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not in an operator group ({})",
                who.id,
                state.operator_groups.join(", ")
            ),
        );
    }
    match (state.kill)(id.clone(), who.id.clone()).await {
        Ok(true) => Json(json!({ "result": "killed", "session": id })).into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no live session {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// Who may see a request: its requester; people in its approver groups
/// and operators. An agent or service sees only its own.
fn may_see(state: &AdminState, who: &Principal, r: &Record) -> bool {
    if who.kind != crate::identity::PrincipalKind::Human {
        return who.id == r.requester;
    }
    who.id == r.requester
        || who.groups.iter().any(|g| r.groups.contains(g))
        || who.groups.iter().any(|g| state.operator_groups.contains(g))
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    history: Option<String>,
}

async fn list(
    State(state): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let who = match principal(&state, &headers) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e),
    };
    let listed = if q.history.is_some() {
        state.approvals.history(50).await
    } else {
        state.approvals.list().await
    };
    match listed {
        Ok(v) => Json(
            v.into_iter()
                .filter(|r| may_see(&state, &who, r))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn show(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let who = match principal(&state, &headers) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e),
    };
    match state.approvals.get(&id).await {
        Ok(Some(r)) if may_see(&state, &who, &r) => Json(r).into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, format!("no approval {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The optional body of a decision.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct DecisionBody {
    #[serde(default)]
    pub(crate) comment: Option<String>,
}

fn decision_body(body: &[u8]) -> Result<DecisionBody, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecisionBody::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("the body must be JSON {{\"comment\": \"…\"}}: {e}"),
        ))
    })
}

async fn approve(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match decision_body(&body) {
        Ok(b) => decide(&state, &id, &headers, true, b.comment.as_deref()).await,
        Err(r) => *r,
    }
}

async fn deny(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match decision_body(&body) {
        Ok(b) => decide(&state, &id, &headers, false, b.comment.as_deref()).await,
        Err(r) => *r,
    }
}

/// A decision by the caller; the status says why one was refused.
pub(crate) async fn decide(
    state: &AdminState,
    id: &str,
    headers: &HeaderMap,
    approve: bool,
    comment: Option<&str>,
) -> Response {
    let who = match principal(state, headers) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e),
    };
    match state.approvals.decide(id, &who, approve, comment).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => error(decide_status(&e), e.to_string()),
    }
}

pub(crate) fn decide_status(e: &DecideError) -> StatusCode {
    match e {
        DecideError::NotFound(_) => StatusCode::NOT_FOUND,
        DecideError::AlreadyApproved(_) | DecideError::Closed { .. } => StatusCode::CONFLICT,
        DecideError::CommentTooLong => StatusCode::BAD_REQUEST,
        DecideError::Audit(_) | DecideError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    }
}

/// Serves the admin API over TLS until `shutdown` resolves.
pub(crate) async fn serve_tls(
    tcp: tokio::net::TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = tcp.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let accepted =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream))
                    .await;
            let Ok(Ok(tls)) = accepted else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(error = %e, "admin listener: connection ended");
            }
        });
    }
}

/// The command-line side: one request to the admin API.
#[cfg(test)]
pub(crate) async fn call(
    base: &str,
    method: hyper::Method,
    path: &str,
    bearer: &str,
) -> Result<(u16, String), String> {
    call_with(base, method, path, bearer, None).await
}

/// One request to the admin API with a JSON body (https trusting the
/// system's roots).
#[cfg(test)]
pub(crate) async fn call_with(
    base: &str,
    method: hyper::Method,
    path: &str,
    bearer: &str,
    json_body: Option<String>,
) -> Result<(u16, String), String> {
    let tls = crate::serve::client_tls()?;
    call_tls(base, method, path, bearer, json_body, tls).await
}

/// One request to the admin API with a JSON body, https trusting what
/// `tls` trusts.
pub(crate) async fn call_tls(
    base: &str,
    method: hyper::Method,
    path: &str,
    bearer: &str,
    json_body: Option<String>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let uri: hyper::Uri = format!("{}{}", base.trim_end_matches('/'), path)
        .parse()
        .map_err(|e| format!("{base}: not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("{base}: the admin URL must be http:// or https://"));
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(https);
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(json_body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| {
        // The cause (e.g. an unknown certificate issuer) is in the chain.
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        format!("cannot reach the admin API at {base}: {why}")
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the admin API's answer: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::{ApprovalRequest, Outcome};
    use crate::identity::PrincipalKind;
    use std::time::Duration;

    fn state(healthy: bool) -> AdminState {
        AdminState {
            approvals: Arc::new(ApprovalStore::default()),
            authenticate: Arc::new(|token: &str| match token {
                "alice-token" => Ok(Principal {
                    id: "human:alice".to_owned(),
                    kind: PrincipalKind::Human,
                    groups: vec!["dba".to_owned()],
                    token_id: "a".to_owned(),
                    issuer: "test".to_owned(),
                    expires_at: None,
                }),
                "bot-token" => Ok(Principal {
                    id: "agent:bot".to_owned(),
                    kind: PrincipalKind::Agent,
                    groups: vec!["dba".to_owned()],
                    token_id: "b".to_owned(),
                    issuer: "test".to_owned(),
                    expires_at: None,
                }),
                "ops-token" => Ok(Principal {
                    id: "human:olga".to_owned(),
                    kind: PrincipalKind::Human,
                    groups: vec!["ops".to_owned()],
                    token_id: "o".to_owned(),
                    issuer: "test".to_owned(),
                    expires_at: None,
                }),
                "other-bot-token" => Ok(Principal {
                    id: "agent:other".to_owned(),
                    kind: PrincipalKind::Agent,
                    groups: vec!["dba".to_owned()],
                    token_id: "c".to_owned(),
                    issuer: "test".to_owned(),
                    expires_at: None,
                }),
                _ => Err(AuthError::UnknownCredential),
            }),
            sessions: Arc::new(|| {
                Box::pin(async {
                    Ok(serde_json::json!([
                        {"session": "1", "principal": "agent:bot", "kind": "agent"},
                        {"session": "2", "principal": "human:alice", "kind": "human"},
                        {"session": "3", "principal": "agent:other", "kind": "agent"},
                    ]))
                })
            }),
            kill: Arc::new(|_, _| Box::pin(async { Ok(false) })),
            operator_groups: vec!["ops".to_owned()],
            metrics: Arc::new(|| "portcullis_sessions_active 0\n".to_owned()),
            tls: false,
            health: Arc::new(move || {
                Box::pin(async move {
                    if healthy {
                        Ok(())
                    } else {
                        Err("audit trail cannot write: disk full".to_owned())
                    }
                })
            }),
        }
    }

    async fn serve(state: AdminState) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn approve_over_http_releases_the_held_command() {
        let st = state(true);
        let store = st.approvals.clone();
        let base = serve(st).await;
        let ticket = store
            .request(ApprovalRequest {
                requester: "agent:bot".to_owned(),
                session_id: "s".to_owned(),
                connection: "prod".to_owned(),
                command: "DELETE FROM t".to_owned(),
                rule_id: "hold-delete".to_owned(),
                reason: "needs a human".to_owned(),
                groups: vec!["dba".to_owned()],
                min_approvals: 1,
                timeout: Duration::from_secs(60),
            })
            .unwrap();
        let id = ticket.id.clone();

        let (status, body) = call(&base, hyper::Method::GET, "/v1/approvals", "nope")
            .await
            .unwrap();
        assert_eq!(status, 401, "{body}");

        let (status, body) = call(&base, hyper::Method::GET, "/v1/approvals", "alice-token")
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert!(
            body.contains(&id) && body.contains("DELETE FROM t"),
            "{body}"
        );

        // An agent sees its own requests only, even in the approver group.
        let (_, body) = call(&base, hyper::Method::GET, "/v1/approvals", "bot-token")
            .await
            .unwrap();
        assert!(body.contains(&id), "{body}");
        let (_, body) = call(
            &base,
            hyper::Method::GET,
            "/v1/approvals",
            "other-bot-token",
        )
        .await
        .unwrap();
        assert_eq!(body, "[]");

        // The requester (an agent) cannot approve itself.
        let path = format!("/v1/approvals/{id}/approve");
        let (status, body) = call(&base, hyper::Method::POST, &path, "bot-token")
            .await
            .unwrap();
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("only people approve"), "{body}");
        // Nor can another agent whose token names the approver group.
        let (status, body) = call(&base, hyper::Method::POST, &path, "other-bot-token")
            .await
            .unwrap();
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("only people approve"), "{body}");

        let (status, body) = call_with(
            &base,
            hyper::Method::POST,
            &path,
            "alice-token",
            Some(r#"{"comment": "one row, fine"}"#.to_owned()),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            ticket.wait(&store).await,
            Outcome::Approved {
                by: vec!["human:alice".to_owned()]
            }
        );
        let (status, _) = call(&base, hyper::Method::POST, &path, "alice-token")
            .await
            .unwrap();
        assert_eq!(status, 409);
        let (status, body) = call(
            &base,
            hyper::Method::GET,
            &format!("/v1/approvals/{id}"),
            "alice-token",
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("one row, fine") && body.contains("\"approved\""),
            "{body}"
        );
    }

    #[tokio::test]
    async fn only_operators_list_other_principals_sessions() {
        let base = serve(state(true)).await;
        let list = |token: &'static str| {
            let base = base.clone();
            async move {
                let (status, body) = call(&base, hyper::Method::GET, "/v1/sessions", token)
                    .await
                    .unwrap();
                assert_eq!(status, 200, "{body}");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["session"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(list("ops-token").await, ["1", "2", "3"]);
        // An agent, even in an approver group, sees its own sessions only.
        assert_eq!(list("bot-token").await, ["1"]);
        assert_eq!(list("other-bot-token").await, ["3"]);
        // A person outside the operator groups too.
        assert_eq!(list("alice-token").await, ["2"]);
        let (status, _) = call(&base, hyper::Method::GET, "/v1/sessions", "nope")
            .await
            .unwrap();
        assert_eq!(status, 401);
    }

    #[tokio::test]
    async fn healthz_says_why_it_is_unhealthy() {
        let base = serve(state(false)).await;
        let (status, body) = call(&base, hyper::Method::GET, "/healthz", "")
            .await
            .unwrap();
        assert_eq!(status, 503);
        assert!(body.contains("audit trail cannot write"), "{body}");
        let base = serve(state(true)).await;
        let (status, _) = call(&base, hyper::Method::GET, "/healthz", "")
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
}
