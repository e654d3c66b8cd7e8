//! The tokio/hyper driver: a TLS listener, the HTTP reverse proxy with
//! streamed response transforms, and the exec/attach WebSocket relay.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use crate::channel::{self, ExitStatus, Protocol};
use crate::classify::{K8sRequest, StreamKind, Transport, Verb, classify};
use crate::hook::{BackendCredential, Event, Hook, Release, Verdict};
use crate::secret::{EnvStream, SecretBody, SecretStream};

type Body = BoxBody<Bytes, io::Error>;

/// Where the real API server is and how to reach it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` to dial, also sent as the `Host` header.
    pub authority: String,
    /// The name the server's certificate must carry.
    pub server_name: ServerName<'static>,
    /// TLS settings for the upstream connection (roots, ALPN left empty or
    /// `http/1.1`).
    pub tls: Arc<rustls::ClientConfig>,
}

/// Settings of a [`Proxy`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// The API server requests are forwarded to.
    pub upstream: Upstream,
    /// Largest single object held while Secret values are masked (a list
    /// item, a watch event, a whole Secret).
    pub max_object_bytes: usize,
    /// Largest WebSocket frame and message accepted from either side; a
    /// larger declared length ends the stream before anything is allocated.
    pub max_message_bytes: usize,
    /// How long exec output may sit in a transform's held-back tail while
    /// the server sends nothing more, before it is released (a prompt must
    /// show). A secret printed in pieces further apart than this is masked
    /// only as far as the transform can see. An output chunk that is
    /// exactly the echo of what the client wrote on stdin since the last
    /// output (a keystroke echoed by a terminal or by `cat`) is not held:
    /// when its channel's transform held nothing before it, the transform
    /// sees the chunk whole and releases it at once.
    pub output_flush_after: std::time::Duration,
    /// How long a write to a client may wait for the client to read (exec
    /// output, a response body, a watch event) before the proxy ends that
    /// stream: a client that stops reading holds no upstream stream open.
    pub client_write_timeout: std::time::Duration,
    /// While an exec/attach is held for approval, a WebSocket ping is sent
    /// this often (and the client's own pings are answered), so neither the
    /// client nor a load balancer between takes the wait for a dead stream.
    pub hold_ping_interval: std::time::Duration,
    /// Core-group resources (`serviceaccounts`, ...) whose create or update
    /// may be sent in a body the proxy cannot read (protobuf): the hook
    /// never sees such a body, so list only resources whose decision does
    /// not depend on it. Any other write whose body is not JSON is refused
    /// with `415` before the hook is asked. Empty by default.
    pub opaque_body_resources: Vec<String>,
}

impl ProxyConfig {
    /// Defaults: 8 MiB objects, 1 MiB WebSocket messages, exec output
    /// released after 5 ms without more, 60 s for a client to read, a ping
    /// every 10 s while an exec is held, every non-JSON request body refused.
    pub fn new(upstream: Upstream) -> Self {
        ProxyConfig {
            upstream,
            max_object_bytes: 8 << 20,
            max_message_bytes: 1 << 20,
            output_flush_after: std::time::Duration::from_millis(5),
            client_write_timeout: std::time::Duration::from_secs(60),
            hold_ping_interval: std::time::Duration::from_secs(10),
            opaque_body_resources: Vec::new(),
        }
    }
}

/// The Kubernetes API proxy (feature `tokio`).
///
/// # Example
///
/// ```no_run
/// # use std::sync::Arc;
/// # async fn run<H: portcullis_k8s::Hook>(hook: Arc<H>, server_tls: Arc<rustls::ServerConfig>, upstream: portcullis_k8s::Upstream) -> std::io::Result<()> {
/// use portcullis_k8s::{Proxy, ProxyConfig};
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// Proxy::new(hook, ProxyConfig::new(upstream)).serve(listener, server_tls).await
/// # }
/// ```
pub struct Proxy<H> {
    inner: Arc<Inner<H>>,
}

impl<H> std::fmt::Debug for Proxy<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.inner.config.upstream.authority)
            .finish_non_exhaustive()
    }
}

struct Inner<H> {
    hook: Arc<H>,
    config: ProxyConfig,
    connector: TlsConnector,
}

impl<H: Hook> Proxy<H> {
    /// A proxy calling `hook`.
    pub fn new(hook: Arc<H>, config: ProxyConfig) -> Self {
        let connector = TlsConnector::from(config.upstream.tls.clone());
        Proxy {
            inner: Arc::new(Inner {
                hook,
                config,
                connector,
            }),
        }
    }

    /// Accepts TLS connections on `listener` until it fails, one task per
    /// connection. `tls` should offer ALPN `http/1.1` only.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<()> {
        let acceptor = TlsAcceptor::from(tls);
        loop {
            let (tcp, _peer) = listener.accept().await?;
            let acceptor = acceptor.clone();
            let inner = self.inner.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let inner = inner.clone();
                    async move { Ok::<_, Infallible>(handle(inner, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "kubernetes client connection ended");
                }
            });
        }
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn status_response(code: StatusCode, message: &str, reason: &str) -> Response<Body> {
    let mut resp = Response::new(full(channel::http_status(code.as_u16(), message, reason)));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle<H: Hook>(inner: Arc<Inner<H>>, req: Request<Incoming>) -> Response<Body> {
    let token = header_str(req.headers(), header::AUTHORIZATION)
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(token) = token else {
        return status_response(
            StatusCode::UNAUTHORIZED,
            "portcullis: a bearer token is required",
            "Unauthorized",
        );
    };
    let auth = match inner.hook.authenticate(&token).await {
        Ok(a) => a,
        Err(refusal) => {
            return status_response(StatusCode::UNAUTHORIZED, &refusal.message, "Unauthorized");
        }
    };
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("")));
    let mut request = match classify(req.method().as_str(), &target, headers) {
        Ok(r) => r,
        Err(e) => {
            return status_response(
                StatusCode::BAD_REQUEST,
                &format!("portcullis: {e}"),
                "BadRequest",
            );
        }
    };
    // A JSON body of a write is read (bounded) before the decision, so the
    // hook can see what is created or changed. A body the proxy cannot read
    // (protobuf, YAML, CBOR) is refused unless the resource is one whose
    // decision does not depend on its body; any other body streams on.
    let (parts, body) = req.into_parts();
    let write = request.stream.is_none()
        && matches!(request.method.as_str(), "POST" | "PUT" | "PATCH")
        && !hyper::body::Body::is_end_stream(&body);
    let content_type = header_str(&parts.headers, header::CONTENT_TYPE).unwrap_or("");
    let readable = is_json_type(content_type) || is_apply_yaml(content_type);
    if write && !readable && !opaque_allowed(&inner.config, &request) {
        return unreadable_body(content_type);
    }
    let body: Body = if write && readable {
        match http_body_util::Limited::new(body, inner.config.max_object_bytes)
            .collect()
            .await
        {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                // Server-side apply declares YAML; kubectl sends JSON in it.
                if !is_json_type(content_type)
                    && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err()
                {
                    return unreadable_body(content_type);
                }
                request.body = Some(bytes.to_vec());
                full(bytes)
            }
            Err(_) => {
                return status_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "portcullis: a request body of more than {} bytes, or one that could not be read",
                        inner.config.max_object_bytes
                    ),
                    "RequestEntityTooLarge",
                );
            }
        }
    } else {
        body.map_err(io::Error::other).boxed()
    };
    let mut req = Request::from_parts(parts, body);
    let principal = Arc::new(auth.principal);
    let request = Arc::new(request);

    if let Some(stream) = &request.stream {
        match stream.transport {
            Transport::WebSocket => {}
            Transport::Spdy => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "portcullis: exec/attach over SPDY is not supported; use kubectl >= 1.30, which uses WebSocket",
                    "BadRequest",
                );
            }
            _ => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "portcullis: streaming request without an upgrade",
                    "BadRequest",
                );
            }
        }
        if stream.kind == StreamKind::PortForward {
            return status_response(
                StatusCode::NOT_IMPLEMENTED,
                "portcullis: port-forward is not implemented by this proxy yet",
                "NotImplemented",
            );
        }
        let offers: Vec<&str> = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let Some(protocol) = Protocol::negotiate(&offers.join(",")) else {
            return status_response(
                StatusCode::BAD_REQUEST,
                "portcullis: no supported stream protocol offered (v5.channel.k8s.io or v4.channel.k8s.io)",
                "BadRequest",
            );
        };
        let Some(key) = req
            .headers()
            .get(header::SEC_WEBSOCKET_KEY)
            .map(|k| derive_accept_key(k.as_bytes()))
        else {
            return status_response(
                StatusCode::BAD_REQUEST,
                "portcullis: missing Sec-WebSocket-Key",
                "BadRequest",
            );
        };
        let verdict = inner.hook.decide(&principal, &request).await;
        let on_upgrade = hyper::upgrade::on(&mut req);
        let backend = auth.backend;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let cfg = ws_config(inner.config.max_message_bytes);
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(cfg))
                    .await;
            run_stream(
                inner, principal, request, protocol, verdict, ws, target, backend,
            )
            .await;
        });
        let mut resp = Response::new(full(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol.name()),
        );
        if let Ok(v) = HeaderValue::from_str(&key) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        return resp;
    }

    match inner.hook.decide(&principal, &request).await {
        Verdict::Allow => {}
        Verdict::Deny { reason } => {
            return status_response(StatusCode::FORBIDDEN, &reason, "Forbidden");
        }
        Verdict::Hold { release, .. } => match release.await {
            Release::Allow => {}
            Release::Deny { reason } => {
                return status_response(StatusCode::FORBIDDEN, &reason, "Forbidden");
            }
        },
    }
    match forward(&inner, principal, request, req, &target, &auth.backend).await {
        Ok(resp) => resp,
        Err(e) => status_response(
            StatusCode::BAD_GATEWAY,
            &format!("portcullis: upstream: {e}"),
            "ServiceUnavailable",
        ),
    }
}

fn ws_config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_frame_size(Some(max))
        .max_message_size(Some(max))
}

async fn connect_upstream<H>(
    inner: &Inner<H>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let up = &inner.config.upstream;
    let tcp = TcpStream::connect(&up.authority).await?;
    tcp.set_nodelay(true)?;
    inner.connector.connect(up.server_name.clone(), tcp).await
}

fn bearer(backend: &BackendCredential) -> Option<HeaderValue> {
    match backend {
        BackendCredential::BearerToken(t) => HeaderValue::from_str(&format!("Bearer {t}")).ok(),
        BackendCredential::ClientCertificate => None,
    }
}

/// Request headers never forwarded: hop-by-hop, the client's credential,
/// impersonation (the backend credential must not be lent out), and those
/// the proxy sets itself.
fn forwardable(name: &HeaderName) -> bool {
    let n = name.as_str();
    !(matches!(
        n,
        "connection"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
            | "authorization"
            | "host"
            | "accept"
            | "accept-encoding"
    ) || n.starts_with("impersonate-"))
}

fn secret_body(request: &K8sRequest) -> Option<SecretBody> {
    if request.resource.as_deref() != Some("secrets") || request.subresource.is_some() {
        return None;
    }
    Some(match request.verb {
        Verb::Watch => SecretBody::Watch,
        Verb::List | Verb::DeleteCollection => SecretBody::List,
        _ => SecretBody::Object,
    })
}

/// The resources whose objects hold pod specs (and so `env` arrays).
const WORKLOADS: [&str; 9] = [
    "pods",
    "podtemplates",
    "replicationcontrollers",
    "deployments",
    "statefulsets",
    "daemonsets",
    "replicasets",
    "jobs",
    "cronjobs",
];

fn workload_body(request: &K8sRequest) -> Option<SecretBody> {
    let resource = request.resource.as_deref()?;
    if !WORKLOADS.contains(&resource)
        || !matches!(
            request.subresource.as_deref(),
            None | Some("status" | "ephemeralcontainers")
        )
    {
        return None;
    }
    Some(match request.verb {
        Verb::Watch => SecretBody::Watch,
        Verb::List | Verb::DeleteCollection => SecretBody::List,
        _ => SecretBody::Object,
    })
}

/// What rewrites the objects of one response body before its transform.
enum Rewriter {
    Secret(SecretStream),
    Env(EnvStream),
}

impl Rewriter {
    fn feed(
        &mut self,
        chunk: &[u8],
        plan: &crate::hook::ResponsePlan,
        out: &mut Vec<u8>,
    ) -> Result<(), crate::secret::SecretMaskError> {
        match self {
            Rewriter::Secret(s) => s.feed(chunk, &*plan.secret_values, out),
            Rewriter::Env(e) => match &plan.env_values {
                Some(m) => e.feed(chunk, &**m, out),
                None => e.feed(chunk, &|_: &str, _: &str| None, out),
            },
        }
    }

    fn finish(&mut self) -> Result<(), crate::secret::SecretMaskError> {
        match self {
            Rewriter::Secret(s) => s.finish(),
            Rewriter::Env(e) => e.finish(),
        }
    }
}

async fn forward<H: Hook>(
    inner: &Arc<Inner<H>>,
    principal: Arc<H::Principal>,
    request: Arc<K8sRequest>,
    req: Request<Body>,
    target: &str,
    backend: &BackendCredential,
) -> Result<Response<Body>, String> {
    let tls = connect_upstream(inner).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (parts, body) = req.into_parts();
    let mut up = Request::builder().method(parts.method).uri(target);
    let Some(h) = up.headers_mut() else {
        return Err("invalid request".into());
    };
    for (k, v) in parts.headers.iter().filter(|(k, _)| forwardable(k)) {
        h.append(k.clone(), v.clone());
    }
    let host =
        HeaderValue::from_str(&inner.config.upstream.authority).map_err(|e| e.to_string())?;
    h.insert(header::HOST, host);
    h.insert(
        header::ACCEPT,
        json_accept(header_str(&parts.headers, header::ACCEPT)),
    );
    h.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if let Some(b) = bearer(backend) {
        h.insert(header::AUTHORIZATION, b);
    }
    let up = up.body(body).map_err(|e| e.to_string())?;
    let resp = sender.send_request(up).await.map_err(|e| e.to_string())?;
    let (mut parts, mut body) = resp.into_parts();

    // Only a body the proxy can read goes on: JSON (which every rewriter
    // needs), or text for what has no rewriter (logs). Protobuf, YAML or
    // anything else is refused, whatever the client asked for (fail closed).
    let content_type = header_str(&parts.headers, header::CONTENT_TYPE).unwrap_or("");
    let json = is_json_type(content_type);
    let text = content_type
        .trim_start()
        .get(..5)
        .is_some_and(|t| t.eq_ignore_ascii_case("text/"));
    let mut plan = inner.hook.response_plan(&principal, &request);
    let mut rewriter = match (
        secret_body(&request),
        workload_body(&request),
        &plan.env_values,
    ) {
        (Some(mode), _, _) => Some(Rewriter::Secret(SecretStream::new(
            mode,
            inner.config.max_object_bytes,
        ))),
        (None, Some(mode), Some(_)) => Some(Rewriter::Env(EnvStream::new(
            mode,
            inner.config.max_object_bytes,
        ))),
        _ => None,
    };
    if !hyper::body::Body::is_end_stream(&body)
        && body_may_exist(&parts.headers)
        && !(json || (text && rewriter.is_none()))
    {
        let shown = if content_type.is_empty() {
            "no content type"
        } else {
            content_type
        };
        return Err(format!(
            "refusing a response body in {shown}, which the proxy cannot mask"
        ));
    }
    if header_str(&parts.headers, header::CONTENT_ENCODING)
        .is_some_and(|e| !e.eq_ignore_ascii_case("identity"))
    {
        return Err("refusing an encoded response body".into());
    }
    for name in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
    ] {
        parts.headers.remove(name);
    }
    let status = parts.status.as_u16();
    let watch = request.verb == Verb::Watch;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(4);
    let hook = inner.hook.clone();
    let write_timeout = inner.config.client_write_timeout;
    tokio::spawn(async move {
        let mut sent = 0u64;
        let mut error: Option<String> = None;
        let mut stage = Vec::new();
        let mut out = Vec::new();
        loop {
            stage.clear();
            out.clear();
            let data = match body.frame().await {
                None => {
                    if let Some(Err(e)) = rewriter.as_mut().map(Rewriter::finish) {
                        error = Some(format!("masking: {e}"));
                        break;
                    }
                    plan.body.finish(&mut out);
                    if !out.is_empty() {
                        sent += out.len() as u64;
                        let _ = tx
                            .send(Ok(Frame::data(Bytes::from(std::mem::take(&mut out)))))
                            .await;
                    }
                    break;
                }
                Some(Err(e)) => {
                    error = Some(format!("upstream body: {e}"));
                    break;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
            };
            let chunk: &[u8] = match rewriter.as_mut() {
                Some(r) => {
                    if let Err(e) = r.feed(&data, &plan, &mut stage) {
                        error = Some(format!("masking: {e}"));
                        break;
                    }
                    &stage
                }
                None => &data,
            };
            if watch {
                // Each watch event is released whole as soon as it ends.
                for seg in chunk.split_inclusive(|b| *b == b'\n') {
                    plan.body.transform(seg, &mut out);
                    if seg.ends_with(b"\n") {
                        plan.body.flush(&mut out);
                    }
                }
            } else {
                plan.body.transform(chunk, &mut out);
            }
            if out.is_empty() {
                continue;
            }
            sent += out.len() as u64;
            let frame = Ok(Frame::data(Bytes::from(std::mem::take(&mut out))));
            match tokio::time::timeout(write_timeout, tx.send(frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    error = Some("client went away".into());
                    break;
                }
                Err(_) => {
                    error = Some(format!(
                        "the client read nothing for {} s",
                        write_timeout.as_secs_f32()
                    ));
                    break;
                }
            }
        }
        if let Some(e) = &error {
            let _ = tx.send(Err(io::Error::other(e.clone()))).await;
        }
        hook.on_event(
            &principal,
            &request,
            &Event::ResponseEnded {
                status,
                bytes: sent,
                error: error.as_deref(),
            },
        );
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Response::from_parts(
        parts,
        BodyExt::boxed(StreamBody::new(stream)),
    ))
}

/// Whether `request` may carry a body the proxy cannot read.
fn opaque_allowed(config: &ProxyConfig, request: &K8sRequest) -> bool {
    request.group.is_empty()
        && request.subresource.is_none()
        && request
            .resource
            .as_ref()
            .is_some_and(|r| config.opaque_body_resources.iter().any(|o| o == r))
}

/// The `415` for a write whose body the proxy cannot read.
fn unreadable_body(content_type: &str) -> Response<Body> {
    let declared = if content_type.is_empty() {
        "body (no content type)".to_owned()
    } else {
        format!("{content_type} body")
    };
    status_response(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &format!(
            "portcullis: the request's {declared} cannot be read by the proxy, so it was not \
             forwarded; send the object as JSON (kubectl create -f FILE, kubectl apply -f FILE; \
             for a generator such as `kubectl create deployment NAME --image=IMAGE`, add \
             `--dry-run=client -o json | kubectl create -f -`)"
        ),
        "UnsupportedMediaType",
    )
}

/// Server-side apply's `application/apply-patch+yaml`.
fn is_apply_yaml(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/apply-patch+yaml")
}

/// `application/json` and its patch variants (`merge-patch+json`,
/// `strategic-merge-patch+json`, `json-patch+json`), any parameters aside.
fn is_json_type(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
}

/// The client's `Accept` with every media type but JSON removed (Table and
/// discovery variants of JSON stay), and plain JSON always acceptable: the
/// proxy must be able to read every response it masks.
fn json_accept(client: Option<&str>) -> HeaderValue {
    let kept: Vec<&str> = client
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| {
            m.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        })
        .filter(|m| m.is_ascii() && !m.eq_ignore_ascii_case("application/json"))
        .collect();
    let mut value = kept.join(",");
    if !value.is_empty() {
        value.push(',');
    }
    value.push_str("application/json");
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/json"))
}

fn body_may_exist(headers: &HeaderMap) -> bool {
    header_str(headers, header::CONTENT_LENGTH) != Some("0")
}

type ClientWs = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn normal_close() -> Option<CloseFrame> {
    Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    })
}

/// How long a last status message and close may wait for the client: a
/// client that stops reading must not keep its stream's task alive.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn close_with(ws: &mut ClientWs, channel_no: u8, data: &[u8]) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let _ = ws
            .send(Message::Binary(Bytes::from(channel::encode(
                channel_no, data,
            ))))
            .await;
        let _ = ws.close(normal_close()).await;
    })
    .await;
}

async fn close_normally(ws: &mut ClientWs) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(normal_close())).await;
}

#[allow(clippy::too_many_arguments)]
async fn run_stream<H: Hook>(
    inner: Arc<Inner<H>>,
    principal: Arc<H::Principal>,
    request: Arc<K8sRequest>,
    protocol: Protocol,
    verdict: Verdict,
    mut client: ClientWs,
    target: String,
    backend: BackendCredential,
) {
    let hook = &inner.hook;
    let end = |error: &str| {
        hook.on_event(
            &principal,
            &request,
            &Event::StreamEnded {
                exit: None,
                error: Some(error),
            },
        );
    };
    let mut pending = Vec::new();
    match verdict {
        Verdict::Allow => {}
        Verdict::Deny { reason } => {
            close_with(
                &mut client,
                channel::ERROR,
                &channel::failure_status(&reason, "Forbidden"),
            )
            .await;
            return end(&reason);
        }
        Verdict::Hold { id, release } => match hold(&inner, &mut client, &id, release).await {
            Ok(held) => pending = held,
            Err(HoldEnd::Refused(reason)) => {
                close_with(
                    &mut client,
                    channel::ERROR,
                    &channel::failure_status(&reason, "Forbidden"),
                )
                .await;
                return end(&reason);
            }
            Err(HoldEnd::Gone) => {
                close_normally(&mut client).await;
                return end("the client went away while the stream was held");
            }
        },
    }
    let upstream = match dial_ws(&inner, &target, &backend, protocol).await {
        Ok(ws) => ws,
        Err(e) => {
            let msg = format!("portcullis: upstream: {e}");
            close_with(
                &mut client,
                channel::ERROR,
                &channel::failure_status(&msg, "InternalError"),
            )
            .await;
            return end(&msg);
        }
    };
    let plan = hook.stream_plan(&principal, &request);
    let (exit, error) = relay(
        hook.as_ref(),
        &principal,
        &request,
        protocol,
        plan,
        (&mut client, pending),
        upstream,
        (
            inner.config.output_flush_after,
            inner.config.client_write_timeout,
        ),
    )
    .await;
    if let Some(e) = &error {
        tracing::debug!(error = %e, "exec stream ended by the proxy");
        if exit.is_none() {
            let msg = format!("portcullis: {e}");
            close_with(
                &mut client,
                channel::ERROR,
                &channel::failure_status(&msg, "InternalError"),
            )
            .await;
        } else {
            close_normally(&mut client).await;
        }
    } else {
        close_normally(&mut client).await;
    }
    hook.on_event(
        &principal,
        &request,
        &Event::StreamEnded {
            exit: exit.as_ref(),
            error: error.as_deref(),
        },
    );
}

/// Waits for a held stream's release, keeping the stream alive: the banner
/// first, then a ping every `hold_ping_interval`, the client's own pings
/// answered, and what the client sends meanwhile (stdin, resizes) kept, up
/// to one message's bound, to be relayed once the stream opens. `Ok` with
/// those messages when approved. When the client goes away the release is
/// dropped (so its approval is withdrawn).
async fn hold<H>(
    inner: &Inner<H>,
    client: &mut ClientWs,
    id: &str,
    mut release: crate::hook::ReleaseFuture,
) -> Result<Vec<Message>, HoldEnd> {
    let limit = inner.config.client_write_timeout;
    let banner = format!("portcullis: held for approval (id {id}); waiting...\r\n");
    let banner = Message::Binary(Bytes::from(channel::encode(
        channel::STDOUT,
        banner.as_bytes(),
    )));
    if send_within(client, banner, limit).await.is_err() {
        return Err(HoldEnd::Gone);
    }
    let mut pending = Vec::new();
    let mut pending_bytes = 0usize;
    let mut ping = tokio::time::interval(inner.config.hold_ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            outcome = &mut release => {
                return match outcome {
                    Release::Allow => Ok(pending),
                    Release::Deny { reason } => Err(HoldEnd::Refused(reason)),
                };
            }
            _ = ping.tick() => {
                if send_within(client, Message::Ping(Bytes::new()), limit).await.is_err() {
                    return Err(HoldEnd::Gone);
                }
            }
            msg = client.next() => match msg {
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => {
                    pending_bytes = pending_bytes.saturating_add(m.len());
                    if pending_bytes > inner.config.max_message_bytes {
                        return Err(HoldEnd::Refused(format!(
                            "portcullis: the client sent more than {} bytes while the stream was held",
                            inner.config.max_message_bytes
                        )));
                    }
                    pending.push(m);
                }
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(HoldEnd::Gone),
            }
        }
    }
}

/// How a hold ended without the stream opening.
enum HoldEnd {
    /// Refused, with the reason the client sees.
    Refused(String),
    /// The client went away.
    Gone,
}

async fn dial_ws<H>(
    inner: &Inner<H>,
    target: &str,
    backend: &BackendCredential,
    protocol: Protocol,
) -> Result<WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>, String> {
    let tls = connect_upstream(inner).await.map_err(|e| e.to_string())?;
    let url = format!("wss://{}{}", inner.config.upstream.authority, target);
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let h = request.headers_mut();
    if let Some(b) = bearer(backend) {
        h.insert(header::AUTHORIZATION, b);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol.name()),
    );
    let cfg = ws_config(inner.config.max_message_bytes);
    let (ws, resp) = tokio_tungstenite::client_async_with_config(request, tls, Some(cfg))
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(r) => format!(
                "the API server refused the stream with status {}",
                r.status()
            ),
            other => other.to_string(),
        })?;
    if header_str(resp.headers(), header::SEC_WEBSOCKET_PROTOCOL) != Some(protocol.name()) {
        return Err("the API server did not agree on the stream protocol".into());
    }
    Ok(ws)
}

fn payload(msg: &Message) -> Option<&[u8]> {
    match msg {
        Message::Binary(b) => Some(b),
        Message::Text(t) => Some(t.as_bytes()),
        _ => None,
    }
}

/// Sends one message to the client, waiting at most `limit` for it to read.
async fn send_within<S>(
    client: &mut S,
    msg: Message,
    limit: std::time::Duration,
) -> Result<(), String>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    match tokio::time::timeout(limit, client.send(msg)).await {
        Ok(r) => r.map_err(|e| format!("client stream: {e}")),
        Err(_) => Err(format!(
            "the client read nothing for {} s",
            limit.as_secs_f32()
        )),
    }
}

/// Writes one message into the client's send buffer, waiting at most
/// `limit` for room (the client reading). The relay flushes the buffer
/// before it waits for more from upstream, so a burst of output goes out in
/// few writes and a lone chunk goes out at once.
async fn feed_within<S>(
    client: &mut S,
    msg: Message,
    limit: std::time::Duration,
) -> Result<(), String>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    match tokio::time::timeout(limit, client.feed(msg)).await {
        Ok(r) => r.map_err(|e| format!("client stream: {e}")),
        Err(_) => Err(format!(
            "the client read nothing for {} s",
            limit.as_secs_f32()
        )),
    }
}

/// Flushes the client's send buffer, waiting at most `limit`.
async fn flush_within<S>(client: &mut S, limit: std::time::Duration) -> Result<(), String>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    match tokio::time::timeout(limit, client.flush()).await {
        Ok(r) => r.map_err(|e| format!("client stream: {e}")),
        Err(_) => Err(format!(
            "the client read nothing for {} s",
            limit.as_secs_f32()
        )),
    }
}

/// Reports one output frame (the channel byte, then the transformed bytes)
/// to the hook and writes it into the client's send buffer; nothing when
/// the transform held everything back. `Ok(true)` when a frame was written.
async fn emit_frame<H: Hook, S>(
    hook: &H,
    principal: &H::Principal,
    request: &K8sRequest,
    client: &mut S,
    frame: Vec<u8>,
    limit: std::time::Duration,
) -> Result<bool, String>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let Some((&ch, data)) = frame.split_first() else {
        return Ok(false);
    };
    if data.is_empty() {
        return Ok(false);
    }
    hook.on_event(principal, request, &Event::Output { channel: ch, data });
    // The frame was built with its channel byte first: handed over without
    // another copy.
    feed_within(client, Message::Binary(Bytes::from(frame)), limit).await?;
    Ok(true)
}

/// What a transform is asked to do with one channel's output.
#[derive(Clone, Copy)]
enum Step<'a> {
    /// Transform a chunk the server sent.
    Chunk(&'a [u8]),
    /// Transform a chunk and release everything held back (an echo).
    ChunkThenFlush(&'a [u8]),
    /// Release everything held back, and go on.
    Flush,
    /// The stream ended.
    Finish,
}

/// Runs one step of a channel's transform into a new frame that starts
/// with the channel byte, sized for the chunk so the transform's output is
/// not reallocated.
fn output_frame(ch: u8, t: &mut dyn crate::secret::StreamTransform, step: Step<'_>) -> Vec<u8> {
    let len = match step {
        Step::Chunk(c) | Step::ChunkThenFlush(c) => c.len(),
        Step::Flush | Step::Finish => 0,
    };
    let mut frame = Vec::with_capacity(len.saturating_add(256));
    frame.push(ch);
    match step {
        Step::Chunk(c) => t.transform(c, &mut frame),
        Step::ChunkThenFlush(c) => {
            t.transform(c, &mut frame);
            t.flush(&mut frame);
        }
        Step::Flush => t.flush(&mut frame),
        Step::Finish => t.finish(&mut frame),
    }
    frame
}

/// Most stdin bytes kept to recognise their echo.
const ECHO_MAX: usize = 4096;

/// What the client wrote on stdin since the server last sent output, as
/// the remote's echo of it reads (a terminal echoes `\r` as `\r\n`): an
/// output chunk that is exactly this echo carries nothing the client does
/// not already know, so it need not wait in a transform's held-back tail
/// for more output (see [`relay`]).
#[derive(Debug, Default)]
struct Echo {
    tty: bool,
    /// `None` after more than [`ECHO_MAX`] bytes: no echo recognised until
    /// the next output chunk.
    pending: Option<Vec<u8>>,
}

impl Echo {
    fn new(tty: bool) -> Echo {
        Echo {
            tty,
            pending: Some(Vec::new()),
        }
    }

    /// The client wrote `data` on stdin.
    fn wrote(&mut self, data: &[u8]) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        for &b in data {
            if self.tty && b == b'\r' {
                p.extend_from_slice(b"\r\n");
            } else {
                p.push(b);
            }
        }
        if p.len() > ECHO_MAX {
            self.pending = None;
        }
    }

    /// The server sent output `chunk`: whether it is exactly the echo of
    /// everything pending. Either way nothing is pending afterwards.
    fn take(&mut self, chunk: &[u8]) -> bool {
        let echoed = matches!(&self.pending, Some(p) if !p.is_empty() && p.as_slice() == chunk);
        self.pending = Some(Vec::new());
        echoed
    }
}

/// Relays one exec/attach stream until the server ends it or either side
/// fails. Returns the exit status seen and the reason the proxy ended it.
///
/// Output goes through the plan's transforms, which may hold back a tail a
/// secret could still extend; that tail is released when the server has
/// sent nothing for `flush_after`, or at once when the chunk that left it
/// is the echo of what the client just wrote on stdin (a keystroke) and
/// the channel's transform held nothing before it: then the transform
/// still sees the echo whole, but no later output is joined to it.
#[allow(clippy::too_many_arguments)]
async fn relay<H: Hook, U>(
    hook: &H,
    principal: &H::Principal,
    request: &K8sRequest,
    protocol: Protocol,
    mut plan: crate::hook::StreamPlan,
    (client, pending): (&mut ClientWs, Vec<Message>),
    upstream: WebSocketStream<U>,
    (flush_after, limit): (std::time::Duration, std::time::Duration),
) -> (Option<ExitStatus>, Option<String>)
where
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::FutureExt;

    let (mut up_tx, mut up_rx) = upstream.split();
    let (mut c_tx, mut c_rx) = client.split();
    let mut exit: Option<ExitStatus> = None;
    let tty = request.stream.as_ref().is_some_and(|s| s.tty);
    let echo = std::sync::Mutex::new(Echo::new(tty));
    let echo_lock = || {
        echo.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };

    let downstream = async {
        let mut finished = false;
        // Per output channel (stdout, stderr): its transform may hold
        // output back, so the idle timer runs.
        let mut holding = [false; 2];
        // Frames written into the client's send buffer, not yet flushed.
        let mut unflushed = false;
        loop {
            // Take what upstream already has without waiting; before
            // waiting, flush what was written to the client.
            let next = match up_rx.next().now_or_never() {
                Some(next) => next,
                None => {
                    if unflushed {
                        flush_within(&mut c_tx, limit).await?;
                        unflushed = false;
                    }
                    if holding.contains(&true) {
                        match tokio::time::timeout(flush_after, up_rx.next()).await {
                            Ok(next) => next,
                            Err(_) => {
                                for ((ch, t), held) in [
                                    (channel::STDOUT, &mut plan.stdout),
                                    (channel::STDERR, &mut plan.stderr),
                                ]
                                .into_iter()
                                .zip(&mut holding)
                                {
                                    if !std::mem::take(held) {
                                        continue;
                                    }
                                    let frame = output_frame(ch, t.as_mut(), Step::Flush);
                                    unflushed |= emit_frame(
                                        hook, principal, request, &mut c_tx, frame, limit,
                                    )
                                    .await?;
                                }
                                continue;
                            }
                        }
                    } else {
                        up_rx.next().await
                    }
                }
            };
            let Some(msg) = next else { break };
            let msg = msg.map_err(|e| format!("upstream stream: {e}"))?;
            if let Message::Close(_) = msg {
                break;
            }
            let Some(bytes) = payload(&msg) else { continue };
            let Some(m) =
                channel::decode(protocol, bytes).map_err(|e| format!("upstream stream: {e}"))?
            else {
                continue;
            };
            match m.channel {
                channel::STDOUT | channel::STDERR => {
                    if finished {
                        return Err("upstream sent output after the status".to_owned());
                    }
                    let [stdout_held, stderr_held] = &mut holding;
                    let (t, held) = if m.channel == channel::STDOUT {
                        (&mut plan.stdout, stdout_held)
                    } else {
                        (&mut plan.stderr, stderr_held)
                    };
                    let echoed = echo_lock().take(m.data);
                    let step = if echoed && !*held {
                        Step::ChunkThenFlush(m.data)
                    } else {
                        Step::Chunk(m.data)
                    };
                    let frame = output_frame(m.channel, t.as_mut(), step);
                    // What the transform holds back now waits for the idle
                    // timer (unknown counts as some).
                    *held = matches!(step, Step::Chunk(_)) && t.pending() != Some(0);
                    unflushed |=
                        emit_frame(hook, principal, request, &mut c_tx, frame, limit).await?;
                }
                channel::ERROR => {
                    if !finished {
                        finished = true;
                        holding = [false; 2];
                        for (ch, t) in [
                            (channel::STDOUT, &mut plan.stdout),
                            (channel::STDERR, &mut plan.stderr),
                        ] {
                            let frame = output_frame(ch, t.as_mut(), Step::Finish);
                            // The status below is written (and flushed) after.
                            emit_frame(hook, principal, request, &mut c_tx, frame, limit).await?;
                        }
                    }
                    exit = Some(
                        channel::parse_status(m.data)
                            .map_err(|e| format!("upstream stream: {e}"))?,
                    );
                    feed_within(&mut c_tx, msg.clone(), limit).await?;
                    unflushed = true;
                }
                other => {
                    return Err(format!(
                        "upstream sent channel {other}, which only a client may send"
                    ));
                }
            }
        }
        if !finished {
            for (ch, t) in [
                (channel::STDOUT, &mut plan.stdout),
                (channel::STDERR, &mut plan.stderr),
            ] {
                let frame = output_frame(ch, t.as_mut(), Step::Finish);
                unflushed |= emit_frame(hook, principal, request, &mut c_tx, frame, limit).await?;
            }
        }
        if unflushed {
            flush_within(&mut c_tx, limit).await?;
        }
        Ok::<(), String>(())
    };

    let upstream_bound = async {
        let mut pending = pending.into_iter();
        loop {
            let msg = match pending.next() {
                Some(m) => m,
                None => match c_rx.next().await {
                    Some(m) => m.map_err(|e| format!("client stream: {e}"))?,
                    None => break,
                },
            };
            if let Message::Close(_) = msg {
                return Ok(());
            }
            let Some(bytes) = payload(&msg) else { continue };
            let Some(m) =
                channel::decode(protocol, bytes).map_err(|e| format!("client stream: {e}"))?
            else {
                continue;
            };
            match m.channel {
                channel::STDIN => {
                    hook.on_event(principal, request, &Event::Stdin(m.data));
                    // Before it is sent: its echo cannot come back sooner.
                    echo_lock().wrote(m.data);
                }
                channel::RESIZE => {
                    let size =
                        channel::parse_resize(m.data).map_err(|e| format!("client stream: {e}"))?;
                    hook.on_event(principal, request, &Event::Resize(size));
                }
                channel::CLOSE => {}
                other => {
                    return Err(format!(
                        "client sent channel {other}, which only the server may send"
                    ));
                }
            }
            up_tx
                .send(msg)
                .await
                .map_err(|e| format!("upstream stream: {e}"))?;
        }
        Ok::<(), String>(())
    };

    let result = tokio::select! {
        r = downstream => r,
        r = upstream_bound => r.and(Err("the client closed the stream".to_owned())),
    };
    let _ = up_tx.close().await;
    let error = match result {
        Ok(()) => None,
        Err(e) if exit.is_some() && e == "the client closed the stream" => None,
        Err(e) => Some(e),
    };
    (exit, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_is_everything_written_since_the_last_output() {
        let mut e = Echo::new(false);
        assert!(!e.take(b""), "no stdin: nothing is an echo");
        e.wrote(b"x");
        assert!(e.take(b"x"));
        assert!(!e.take(b"x"), "one echo per write");
        e.wrote(b"ab");
        assert!(!e.take(b"a"), "a part of it is not the echo");
        assert!(!e.take(b"b"), "and the rest no longer counts");
        e.wrote(b"a");
        e.wrote(b"b\r");
        assert!(e.take(b"ab\r"));
        e.wrote(&[b'z'; ECHO_MAX + 1]);
        assert!(!e.take(&[b'z'; ECHO_MAX + 1]), "beyond the bound");
        e.wrote(b"y");
        assert!(e.take(b"y"), "recognised again after an output");
    }

    #[test]
    fn a_terminal_echoes_return_as_return_newline() {
        let mut e = Echo::new(true);
        e.wrote(b"ls\r");
        assert!(!e.take(b"ls\r"));
        e.wrote(b"ls\r");
        assert!(e.take(b"ls\r\n"));
    }
}
