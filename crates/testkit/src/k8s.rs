//! A fake Kubernetes API server: hyper over rustls with a self-signed
//! certificate, a handful of core resources held in memory, and exec over
//! WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) that runs a real
//! local process as the "container".

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::Error;

/// A self-signed certificate for `localhost` and `127.0.0.1`, with rustls
/// configurations that serve it and trust it.
#[derive(Debug, Clone)]
pub struct SelfSignedTls {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl SelfSignedTls {
    /// Generates a new certificate and key.
    pub fn generate() -> Result<Self, Error> {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .map_err(|e| Error::Tls(e.to_string()))?;
        Ok(SelfSignedTls {
            cert_pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
            cert_der: ck.cert.der().clone(),
            key_der: ck.signing_key.serialize_der(),
        })
    }

    /// A server configuration presenting this certificate, ALPN `http/1.1`.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .map_err(|e| Error::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Like [`server_config`](Self::server_config), also asking clients for
    /// a certificate and accepting only `pinned` (clients without one still
    /// connect).
    fn server_config_with_client(
        &self,
        pinned: rustls::pki_types::CertificateDer<'static>,
    ) -> Result<Arc<rustls::ServerConfig>, Error> {
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_client_cert_verifier(Arc::new(PinnedClient {
                pinned,
                provider: provider(),
            }))
            .with_single_cert(vec![self.cert_der.clone()], key)
            .map_err(|e| Error::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// A client configuration that trusts only this certificate.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| Error::Tls(e.to_string()))?;
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(cfg))
    }
}

/// Accepts exactly one client certificate (its signatures checked as usual).
#[derive(Debug)]
struct PinnedClient {
    pinned: rustls::pki_types::CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::server::danger::ClientCertVerifier for PinnedClient {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_client_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(rustls::server::danger::ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::General("unknown client certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A kubeconfig for `server` (an `https://` URL) trusting `ca_pem`, with a
/// bearer token, context `portcullis`, namespace `default`.
pub fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: portcullis\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: agent\n  user:\n    token: {token}\ncontexts:\n- name: \
         portcullis\n  context:\n    cluster: portcullis\n    user: agent\n    namespace: default\n\
         current-context: portcullis\n"
    )
}

/// The fake API server's seed data: what a newcomer sees.
pub const FAKE_SECRET_PASSWORD: &str = "hunter2-fake-db-password";

/// Settings of a [`FakeKube`].
#[derive(Debug, Clone)]
pub struct FakeKubeBuilder {
    token: String,
    output_frame_limit: usize,
    client_cert: Option<rustls::pki_types::CertificateDer<'static>>,
}

impl FakeKubeBuilder {
    /// The bearer token the server requires (default `fake-cluster-token`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// Splits exec output into WebSocket messages of at most `n` bytes
    /// (default 32 KiB), to test consumers that must join them.
    pub fn output_frame_limit(mut self, n: usize) -> Self {
        self.output_frame_limit = n.max(1);
        self
    }

    /// Also accepts clients that present this certificate (PEM) in the TLS
    /// handshake, without a bearer token (a pinned certificate, as a test
    /// stands in for a cluster CA).
    pub fn client_certificate(mut self, cert_pem: &str) -> Result<Self, Error> {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| Error::Tls(e.to_string()))?;
        self.client_cert = Some(der);
        Ok(self)
    }

    /// Starts the server on `127.0.0.1` on a free port, on its own thread
    /// and runtime; it stops when the [`FakeKube`] is dropped.
    pub fn start(self) -> Result<FakeKube, Error> {
        let tls = SelfSignedTls::generate()?;
        let server_config = match &self.client_cert {
            None => tls.server_config()?,
            Some(pinned) => tls.server_config_with_client(pinned.clone())?,
        };
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::KubeStart)?;
        std_listener
            .set_nonblocking(true)
            .map_err(Error::KubeStart)?;
        let addr = std_listener.local_addr().map_err(Error::KubeStart)?;
        let state = Arc::new(State {
            token: self.token.clone(),
            frame_limit: self.output_frame_limit,
            objects: Mutex::new(seed()),
            log: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(Error::KubeStart)?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("fake-kube".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
                    let accept_loop = async {
                        loop {
                            let Ok((tcp, _)) = listener.accept().await else {
                                continue;
                            };
                            let acceptor = acceptor.clone();
                            let st = st.clone();
                            tokio::spawn(async move {
                                let Ok(tls) = acceptor.accept(tcp).await else {
                                    return;
                                };
                                // Only the pinned certificate passes the handshake.
                                let by_cert = tls.get_ref().1.peer_certificates().is_some();
                                let svc = hyper::service::service_fn(move |req| {
                                    let st = st.clone();
                                    async move {
                                        Ok::<_, Infallible>(route(st, req, by_cert).await)
                                    }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(tls), svc)
                                    .with_upgrades()
                                    .await;
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept_loop => {}
                        _ = stop_rx => {}
                    }
                });
            })
            .map_err(Error::KubeStart)?;
        Ok(FakeKube {
            addr,
            tls,
            token: self.token,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// A running fake Kubernetes API server.
///
/// Seeded with namespaces `default` and `prod`; pod `default/web-0`
/// (running, container `app`, environment with fake credentials); Secret
/// `default/db-creds` (`username`, `password`); ConfigMap
/// `default/app-config`; ServiceAccount `default/default`. Every request
/// must carry the server's bearer token. Exec runs the command argv as a
/// local process (no pseudo-terminal even with `tty=true`).
///
/// # Example
///
/// ```no_run
/// # fn main() -> Result<(), portcullis_testkit::Error> {
/// let kube = portcullis_testkit::FakeKube::builder().start()?;
/// let cfg = kube.kubeconfig();
/// assert!(cfg.contains(&kube.url()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FakeKube {
    addr: SocketAddr,
    tls: SelfSignedTls,
    token: String,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKube {
    /// A builder with the defaults.
    pub fn builder() -> FakeKubeBuilder {
        FakeKubeBuilder {
            token: "fake-cluster-token".into(),
            output_frame_limit: 32 * 1024,
            client_cert: None,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The bearer token it requires.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Its certificate and TLS configurations.
    pub fn tls(&self) -> &SelfSignedTls {
        &self.tls
    }

    /// A kubeconfig pointing straight at it, with its token.
    pub fn kubeconfig(&self) -> String {
        kubeconfig(&self.url(), &self.tls.cert_pem, &self.token)
    }

    /// Requests served so far, as `METHOD PATH?QUERY` lines.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Whether an object exists (`resource` plural, namespace `""` for
    /// cluster-scoped ones).
    pub fn has_object(&self, resource: &str, namespace: &str, name: &str) -> bool {
        self.state
            .objects
            .lock()
            .map(|o| o.contains_key(&(resource.to_owned(), namespace.to_owned(), name.to_owned())))
            .unwrap_or(false)
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Key = (String, String, String);

#[derive(Debug)]
struct State {
    token: String,
    frame_limit: usize,
    objects: Mutex<BTreeMap<Key, Value>>,
    log: Mutex<Vec<String>>,
}

const CREATED: &str = "2026-01-01T00:00:00Z";

/// Reads a JSON pointer, `null` when absent.
fn at<'v>(v: &'v Value, pointer: &str) -> &'v Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

/// Sets a key of an object (a no-op on anything else).
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

fn meta(name: &str, ns: &str) -> Value {
    let mut m = json!({"name": name, "uid": format!("uid-{ns}-{name}"), "resourceVersion": "1", "creationTimestamp": CREATED});
    if !ns.is_empty() {
        set(&mut m, "namespace", json!(ns));
    }
    m
}

fn seed() -> BTreeMap<Key, Value> {
    let mut m = BTreeMap::new();
    let mut put = |res: &str, ns: &str, name: &str, v: Value| {
        m.insert((res.to_owned(), ns.to_owned(), name.to_owned()), v);
    };
    for ns in ["default", "prod", "kube-system"] {
        put(
            "namespaces",
            "",
            ns,
            json!({"kind":"Namespace","apiVersion":"v1","metadata":meta(ns, ""),"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}),
        );
        put(
            "serviceaccounts",
            ns,
            "default",
            json!({"kind":"ServiceAccount","apiVersion":"v1","metadata":meta("default", ns)}),
        );
    }
    put(
        "pods",
        "default",
        "web-0",
        json!({
            "kind": "Pod", "apiVersion": "v1", "metadata": meta("web-0", "default"),
            "spec": {"containers": [{"name": "app", "image": "example/app:1",
                "env": [{"name": "DATABASE_URL", "value": format!("postgres://app:{FAKE_SECRET_PASSWORD}@db:5432/app")},
                        {"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "startTime": CREATED,
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "example/app:1",
                    "imageID": "", "started": true, "state": {"running": {"startedAt": CREATED}}}]}
        }),
    );
    put(
        "secrets",
        "default",
        "db-creds",
        json!({"kind":"Secret","apiVersion":"v1","metadata":meta("db-creds", "default"),"type":"Opaque",
            "data":{"username": STANDARD.encode("app"), "password": STANDARD.encode(FAKE_SECRET_PASSWORD)}}),
    );
    put(
        "configmaps",
        "default",
        "app-config",
        json!({"kind":"ConfigMap","apiVersion":"v1","metadata":meta("app-config", "default"),
            "data":{"greeting":"hello", "dsn": format!("postgres://app:{FAKE_SECRET_PASSWORD}@db/app")}}),
    );
    m
}

struct ResourceInfo {
    name: &'static str,
    short: &'static str,
    kind: &'static str,
    namespaced: bool,
}

const RESOURCES: [ResourceInfo; 5] = [
    ResourceInfo {
        name: "namespaces",
        short: "ns",
        kind: "Namespace",
        namespaced: false,
    },
    ResourceInfo {
        name: "pods",
        short: "po",
        kind: "Pod",
        namespaced: true,
    },
    ResourceInfo {
        name: "secrets",
        short: "",
        kind: "Secret",
        namespaced: true,
    },
    ResourceInfo {
        name: "configmaps",
        short: "cm",
        kind: "ConfigMap",
        namespaced: true,
    },
    ResourceInfo {
        name: "serviceaccounts",
        short: "sa",
        kind: "ServiceAccount",
        namespaced: true,
    },
];

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":message,"reason":reason,"code":code.as_u16()}),
    )
}

fn discovery_v1() -> Value {
    let mut resources: Vec<Value> = RESOURCES
        .iter()
        .map(|r| {
            let singular = r.kind.to_ascii_lowercase();
            json!({"name": r.name, "singularName": singular, "namespaced": r.namespaced, "kind": r.kind,
                "shortNames": if r.short.is_empty() { json!([]) } else { json!([r.short]) },
                "verbs": ["create","delete","get","list","patch","update","watch"]})
        })
        .collect();
    for sub in ["exec", "attach"] {
        resources.push(json!({"name": format!("pods/{sub}"), "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create","get"]}));
    }
    json!({"kind":"APIResourceList","groupVersion":"v1","resources":resources})
}

async fn route(st: Arc<State>, mut req: Request<Incoming>, by_cert: bool) -> Response<Body> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(mut log) = st.log.lock() {
        log.push(format!("{} {target}", req.method()));
    }
    let expected = format!("Bearer {}", st.token);
    if !by_cert
        && req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(expected.as_str())
    {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let req_table = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    match seg.as_slice() {
        ["version"] => json_response(
            StatusCode::OK,
            &json!({"major":"1","minor":"30","gitVersion":"v1.30.0-portcullis-fake","gitCommit":"0","gitTreeState":"clean",
                "buildDate":CREATED,"goVersion":"go1.22","compiler":"gc","platform":"linux/amd64"}),
        ),
        ["api"] => json_response(
            StatusCode::OK,
            &json!({"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}),
        ),
        ["apis"] => json_response(
            StatusCode::OK,
            &json!({"kind":"APIGroupList","apiVersion":"v1","groups":[]}),
        ),
        ["api", "v1"] => json_response(StatusCode::OK, &discovery_v1()),
        ["api", "v1", "namespaces", ns, "pods", pod, "exec"] => {
            exec(&st, &mut req, ns, pod, &query)
        }
        ["api", "v1", rest @ ..] => {
            let (ns, rest): (&str, &[&str]) = match rest {
                ["namespaces", ns, tail @ ..] if !tail.is_empty() => (ns, tail),
                _ => ("", rest),
            };
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = if method == Method::POST || method == Method::PUT {
                match req.into_body().collect().await {
                    Ok(b) => Some(b.to_bytes()),
                    Err(_) => {
                        return status(StatusCode::BAD_REQUEST, "BadRequest", "unreadable body");
                    }
                }
            } else {
                None
            };
            let watch = query
                .iter()
                .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
            if watch && method == Method::GET && rest.len() == 1 {
                return watch_response(&st, ns, rest.first().copied().unwrap_or(""));
            }
            let table = req_table;
            let resp = resource(&st, &method, ns, rest, body, &content_type);
            if table && method == Method::GET && resp.status() == StatusCode::OK {
                return to_table(resp).await;
            }
            resp
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

fn resource(
    st: &State,
    method: &Method,
    ns: &str,
    rest: &[&str],
    body: Option<Bytes>,
    content_type: &str,
) -> Response<Body> {
    let (res, name) = match rest {
        [res] => (*res, None),
        [res, name] => (*res, Some(*name)),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
    };
    let Some(info) = RESOURCES.iter().find(|r| r.name == res) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let ns = if info.namespaced { ns } else { "" };
    let Ok(mut objects) = st.objects.lock() else {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "state poisoned",
        );
    };
    let not_found = |name: &str| {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{res} \"{name}\" not found"),
        )
    };
    match (method, name) {
        (&Method::GET, None) => {
            let items: Vec<Value> = objects
                .iter()
                .filter(|((r, n, _), _)| r == res && (ns.is_empty() || n == ns))
                .map(|(_, v)| {
                    let mut v = v.clone();
                    if let Some(o) = v.as_object_mut() {
                        o.remove("kind");
                        o.remove("apiVersion");
                    }
                    v
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"kind": format!("{}List", info.kind), "apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":items}),
            )
        }
        (&Method::GET, Some(name)) => {
            match objects.get(&(res.to_owned(), ns.to_owned(), name.to_owned())) {
                Some(v) => json_response(StatusCode::OK, v),
                None => not_found(name),
            }
        }
        (&Method::DELETE, Some(name)) => {
            match objects.remove(&(res.to_owned(), ns.to_owned(), name.to_owned())) {
                Some(mut v) => {
                    if res == "namespaces"
                        && let Some(phase) = v.pointer_mut("/status/phase")
                    {
                        *phase = json!("Terminating");
                    }
                    json_response(StatusCode::OK, &v)
                }
                None => not_found(name),
            }
        }
        (&Method::POST, None) => {
            let parsed = body.and_then(|b| {
                if content_type.starts_with("application/vnd.kubernetes.protobuf") {
                    protobuf_name(&b).map(|name| json!({"metadata": {"name": name}}))
                } else {
                    serde_json::from_slice::<Value>(&b).ok()
                }
            });
            let Some(mut v) = parsed else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("body is not a JSON object ({content_type})"),
                );
            };
            let Some(name) = at(&v, "/metadata/name").as_str().map(str::to_owned) else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name is required",
                );
            };
            let key = (res.to_owned(), ns.to_owned(), name.clone());
            if objects.contains_key(&key) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("{res} \"{name}\" already exists"),
                );
            }
            set(&mut v, "metadata", meta(&name, ns));
            set(&mut v, "kind", json!(info.kind));
            set(&mut v, "apiVersion", json!("v1"));
            objects.insert(key, v.clone());
            json_response(StatusCode::CREATED, &v)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method",
        ),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    V4,
    V5,
}

fn exec(
    st: &Arc<State>,
    req: &mut Request<Incoming>,
    ns: &str,
    pod: &str,
    query: &[(String, String)],
) -> Response<Body> {
    let exists = st
        .objects
        .lock()
        .map(|o| o.contains_key(&("pods".into(), ns.to_owned(), pod.to_owned())))
        .unwrap_or(false);
    if !exists {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{pod}\" not found"),
        );
    }
    let argv: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if argv.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least 1 command",
        );
    }
    let flag = |k: &str| {
        query
            .iter()
            .any(|(q, v)| q == k && (v == "true" || v == "1"))
    };
    let stdin = flag("stdin");
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "this fake server speaks only WebSocket exec",
        );
    }
    let offers: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let proto = if offers.iter().any(|o| o == "v5.channel.k8s.io") {
        Proto::V5
    } else if offers.iter().any(|o| o == "v4.channel.k8s.io") {
        Proto::V4
    } else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "no supported channel protocol",
        );
    };
    let Some(accept) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "missing Sec-WebSocket-Key",
        );
    };
    let on_upgrade = hyper::upgrade::on(req);
    let frame_limit = st.frame_limit;
    tokio::spawn(async move {
        let Ok(up) = on_upgrade.await else { return };
        let cfg = WebSocketConfig::default()
            .max_frame_size(Some(1 << 20))
            .max_message_size(Some(1 << 20));
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, Some(cfg)).await;
        run_process(ws, proto, argv, stdin, frame_limit).await;
    });
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(if proto == Proto::V5 {
            "v5.channel.k8s.io"
        } else {
            "v4.channel.k8s.io"
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

fn exit_status(code: i32) -> Value {
    if code == 0 {
        json!({"metadata":{},"status":"Success"})
    } else {
        json!({"metadata":{},"status":"Failure","message":format!("command terminated with non-zero exit code: exit status {code}"),
            "reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":code.to_string()}]}})
    }
}

fn normal_close() -> Message {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    channel: u8,
    limit: usize,
    tx: mpsc::Sender<Message>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                for piece in buf.get(..n).unwrap_or_default().chunks(limit) {
                    if tx.send(frame(channel, piece)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn run_process<S>(
    ws: WebSocketStream<S>,
    proto: Proto,
    argv: Vec<String>,
    want_stdin: bool,
    limit: usize,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, mut rx) = ws.split();
    let Some((prog, args)) = argv.split_first() else {
        return;
    };
    let child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(if want_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let st = json!({"metadata":{},"status":"Failure","message":format!("exec failed: {e}"),"reason":"InternalError"});
            let _ = tx.send(frame(3, st.to_string().as_bytes())).await;
            let _ = tx.send(normal_close()).await;
            let _ = tx.close().await;
            return;
        }
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let mut stdin = child.stdin.take();
    let mut pumps = Vec::new();
    if let Some(o) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(o, 1, limit, out_tx.clone())));
    }
    if let Some(e) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(e, 2, limit, out_tx.clone())));
    }
    drop(out_tx);
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            let data = match &msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            match data.split_first() {
                Some((0, rest)) => {
                    if let Some(s) = stdin.as_mut()
                        && s.write_all(rest).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Some((255, [0])) if proto == Proto::V5 => stdin = None,
                Some((4, _)) => {} // resize: accepted, no terminal to resize
                _ => {}
            }
        }
    });
    while let Some(m) = out_rx.recv().await {
        if tx.send(m).await.is_err() {
            reader.abort();
            return;
        }
    }
    for p in pumps {
        let _ = p.await;
    }
    let code = match child.wait().await {
        Ok(s) => s.code().unwrap_or(128 + 9),
        Err(_) => 1,
    };
    let _ = tx
        .send(frame(3, exit_status(code).to_string().as_bytes()))
        .await;
    let _ = tx.send(normal_close()).await;
    let _ = tx.close().await;
    reader.abort();
}

/// Finds the versioned kubectl binary `kubectl.1.MINOR` (Debian's `kubectl`
/// package ships several), on `PATH` or in `/usr/lib/google-cloud-sdk/bin`.
pub fn find_kubectl(minor: u32) -> Option<std::path::PathBuf> {
    let name = format!("kubectl.1.{minor}");
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/lib/google-cloud-sdk/bin")])
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
}

/// Reads one protobuf field: (field number, wire type, value bytes or
/// varint) and the rest.
fn pb_field(b: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
        let mut v = 0u64;
        for (i, byte) in b.iter().enumerate().take(10) {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((v, b.get(i + 1..)?));
            }
        }
        None
    }
    let (key, rest) = varint(b)?;
    match key & 7 {
        0 => {
            let (_, after) = varint(rest)?;
            Some((key >> 3, &[], after))
        }
        2 => {
            let (len, rest) = varint(rest)?;
            let len = usize::try_from(len).ok()?;
            Some((key >> 3, rest.get(..len)?, rest.get(len..)?))
        }
        _ => None,
    }
}

fn pb_get(mut b: &[u8], field: u64) -> Option<&[u8]> {
    while !b.is_empty() {
        let (f, v, rest) = pb_field(b)?;
        if f == field {
            return Some(v);
        }
        b = rest;
    }
    None
}

/// The `metadata.name` of a Kubernetes protobuf envelope (`k8s\0`, then an
/// `Unknown` whose field 2 is the object, whose field 1 is ObjectMeta, whose
/// field 1 is the name): enough of protobuf for kubectl's typed creates.
fn protobuf_name(body: &[u8]) -> Option<String> {
    let unknown = body.strip_prefix(b"k8s\0")?;
    let raw = pb_get(unknown, 2)?;
    let meta = pb_get(raw, 1)?;
    let name = pb_get(meta, 1)?;
    String::from_utf8(name.to_vec()).ok()
}

fn age(_: &Value) -> Value {
    json!("1y")
}

fn table_row(obj: &Value) -> Value {
    let name = at(obj, "/metadata/name").clone();
    let cells = if at(obj, "/status/containerStatuses").is_array() {
        let statuses = at(obj, "/status/containerStatuses")
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ready = statuses
            .iter()
            .filter(|c| c["ready"] == json!(true))
            .count();
        json!([
            name,
            format!("{ready}/{}", statuses.len()),
            at(obj, "/status/phase").clone(),
            0,
            age(obj)
        ])
    } else {
        json!([name, age(obj)])
    };
    let object = json!({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":obj["metadata"].clone()});
    json!({"cells": cells, "object": object})
}

/// Turns a JSON object or list response into a `meta.k8s.io/v1` Table, as
/// the API server does for kubectl's default output.
async fn to_table(resp: Response<Body>) -> Response<Body> {
    let Ok(body) = resp.into_body().collect().await;
    let Ok(v) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "body");
    };
    let objects: Vec<Value> = match at(&v, "/items").as_array() {
        Some(items) => items.clone(),
        None => vec![v.clone()],
    };
    let pods = at(&v, "/kind") == "PodList" || at(&v, "/kind") == "Pod";
    let col = |n: &str, t: &str| json!({"name": n, "type": t, "format": if n == "Name" {"name"} else {""}, "description": "", "priority": 0});
    let columns = if pods {
        json!([
            col("Name", "string"),
            col("Ready", "string"),
            col("Status", "string"),
            col("Restarts", "integer"),
            col("Age", "string")
        ])
    } else {
        json!([col("Name", "string"), col("Age", "string")])
    };
    let rows: Vec<Value> = objects.iter().map(table_row).collect();
    json_response(
        StatusCode::OK,
        &json!({"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"1"},"columnDefinitions":columns,"rows":rows}),
    )
}

/// A watch: an `ADDED` event per existing object, one line each, then the
/// stream stays open (it never ends by itself, as a real watch).
fn watch_response(st: &State, ns: &str, res: &str) -> Response<Body> {
    let events: Vec<Bytes> = st
        .objects
        .lock()
        .map(|o| {
            o.iter()
                .filter(|((r, n, _), _)| r == res && (ns.is_empty() || n == ns))
                .map(|(_, v)| Bytes::from(format!("{}\n", json!({"type": "ADDED", "object": v}))))
                .collect()
        })
        .unwrap_or_default();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        for e in events {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        // Keep the watch open until the client goes away.
        tx.closed().await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(hyper::body::Frame::data(b)), rx))
    });
    let mut r = Response::new(BodyExt::boxed(http_body_util::StreamBody::new(stream)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;stream=watch"),
    );
    r
}
