//! The admin HTTP API (a listener of its own) and its command-line client.
//!
//! - `GET /healthz`: 200 `ok`, or 503 with the reason the gateway cannot serve
//!   (e.g. the audit trail cannot write).
//! - `GET /v1/approvals`: pending approvals.
//! - `POST /v1/approvals/{id}/approve`, `POST /v1/approvals/{id}/deny`.
//! - `GET /v1/sessions`: live sessions.
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

use crate::approvals::{ApprovalStore, DecideError};
use crate::identity::{AuthError, Principal};

/// Checks a bearer credential.
pub(crate) type Authenticate = dyn Fn(&str) -> Result<Principal, AuthError> + Send + Sync;

/// Why the gateway cannot serve right now, if it cannot.
pub(crate) type Health = dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
    + Send
    + Sync;

/// Ends a session (by id, by whom); false if there is none.
pub(crate) type Kill = dyn Fn(&str, &str) -> bool + Send + Sync;

/// What the admin API serves.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) approvals: Arc<ApprovalStore>,
    pub(crate) authenticate: Arc<Authenticate>,
    pub(crate) health: Arc<Health>,
    /// Live sessions, as JSON.
    pub(crate) sessions: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// Ends a session (by id, by whom); false if there is none.
    pub(crate) kill: Arc<Kill>,
    /// Groups whose members may kill sessions.
    pub(crate) operator_groups: Vec<String>,
    /// The Prometheus text exposition.
    pub(crate) metrics: Arc<dyn Fn() -> String + Send + Sync>,
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
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
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

async fn sessions(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    match principal(&state, &headers) {
        Ok(_) => Json((state.sessions)()).into_response(),
        Err(e) => error(StatusCode::UNAUTHORIZED, e),
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
    if (state.kill)(&id, &who.id) {
        Json(json!({ "result": "killed", "session": id })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no live session {id}"))
    }
}

async fn list(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    match principal(&state, &headers) {
        Ok(_) => Json(state.approvals.list()).into_response(),
        Err(e) => error(StatusCode::UNAUTHORIZED, e),
    }
}

async fn approve(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    decide(&state, &id, &headers, true)
}

async fn deny(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    decide(&state, &id, &headers, false)
}

fn decide(state: &AdminState, id: &str, headers: &HeaderMap, approve: bool) -> Response {
    let who = match principal(state, headers) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e),
    };
    match state.approvals.decide(id, &who, approve) {
        Ok(d) => Json(d).into_response(),
        Err(e @ DecideError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ DecideError::AlreadyApproved(_)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error(StatusCode::FORBIDDEN, e.to_string()),
    }
}

/// The command-line side: one request to the admin API.
pub(crate) async fn call(
    base: &str,
    method: hyper::Method,
    path: &str,
    bearer: &str,
) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    let uri: hyper::Uri = format!("{}{}", base.trim_end_matches('/'), path)
        .parse()
        .map_err(|e| format!("{base}: not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{base}: only http:// admin URLs are supported (the admin listener is meant for loopback)"
        ));
    }
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {bearer}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("cannot reach the admin API at {base}: {e}"))?;
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
                _ => Err(AuthError::UnknownCredential),
            }),
            sessions: Arc::new(|| serde_json::json!([])),
            kill: Arc::new(|_, _| false),
            operator_groups: vec!["ops".to_owned()],
            metrics: Arc::new(|| "portcullis_sessions_active 0\n".to_owned()),
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

        // The requester cannot approve itself.
        let path = format!("/v1/approvals/{id}/approve");
        let (status, body) = call(&base, hyper::Method::POST, &path, "bot-token")
            .await
            .unwrap();
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("cannot decide"), "{body}");

        let (status, body) = call(&base, hyper::Method::POST, &path, "alice-token")
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
        assert_eq!(status, 404);
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
