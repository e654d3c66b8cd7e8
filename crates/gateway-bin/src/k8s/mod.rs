//! The Kubernetes leg: portcullis-k8s's [`Hook`] implemented with the same
//! identity, policy, masking, approvals and audit trail as the PostgreSQL
//! leg.
//!
//! Every HTTP request kubectl sends is a call of its own: its bearer token
//! is verified (expiry and revocation included) as a PostgreSQL client's
//! password is; the policy decides on its Kubernetes facts (verb, resource,
//! namespace, name, exec argv); the request's masked text and the decision
//! are written to the trail and made durable before anything is forwarded
//! (fail closed); a `review` holds it for approval. Response bodies go
//! through a streaming masker (every Secret value is masked whole), exec
//! output through one streaming masker per channel; what each call had
//! masked, its status or exit code and its bytes end up in one
//! `command_result` record.

mod settings;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_audit::{
    self as audit, AsciicastHeader, AuditEvent, EventKind, MaskedText, Recorder,
};
use portcullis_k8s::channel::ExitStatus;
use portcullis_k8s::{
    Authenticated, BackendCredential, Event, Hook, K8sRequest, Proxy, ProxyConfig, Refusal,
    Release, ResponsePlan, StreamPlan, StreamTransform, Verdict, async_trait,
};
use portcullis_mask::{FieldPattern, Masker, StreamMasker};
use portcullis_policy::{self as policy, Effect};
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use settings::{KubeSettings, check_connection};

use crate::approvals::{ApprovalRequest, ApprovalStore, Outcome};
use crate::config::{Config, ConnectionKind};
use crate::gateway::Gateway;
use crate::identity::{self, PrincipalKind};

/// The detector id counted for a Secret value masked whole.
const SECRET_VALUE: &str = "k8s-secret";

/// The detector id counted for an environment value masked by its name.
const ENV_VALUE: &str = "k8s-env";

/// Environment variable names whose value is masked whole, whatever it
/// looks like (ASCII case-insensitive globs, as field rules are). A field
/// rule of the configuration that matches a variable name applies too.
const SECRET_ENV_NAMES: [&str; 14] = [
    "*password*",
    "*passwd*",
    "*_pwd",
    "*_pass",
    "*secret*",
    "*token*",
    "*api_key*",
    "*apikey*",
    "*private_key*",
    "*access_key*",
    "*credential*",
    "*_key",
    "*_dsn",
    "dsn",
];

/// The resources whose create or update the proxy forwards in a body it
/// cannot read (kubectl's typed creates send protobuf): the policy takes no
/// fact from their bodies (its body risks are pod specs and role
/// references). Every other write must be JSON.
const OPAQUE_BODY_RESOURCES: [&str; 4] = ["serviceaccounts", "namespaces", "configmaps", "secrets"];

/// Starts one listener per Kubernetes connection; returns (name, address).
pub(crate) async fn start(
    config: &Config,
    gateway: &Arc<crate::gateway::Gateway>,
    stop: &watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<Result<(), String>>,
) -> Result<Vec<(String, SocketAddr)>, String> {
    let kube: Vec<_> = config
        .connections
        .iter()
        .filter(|c| c.kind == ConnectionKind::Kubernetes)
        .collect();
    if kube.is_empty() {
        return Ok(Vec::new());
    }
    // Exec and response maskers borrow the gateway's masker for as long as
    // a stream lasts; the gateway lives as long as the process.
    let gateway: &'static Gateway = Box::leak(Box::new(gateway.clone()));
    let mut bound = Vec::new();
    for c in kube {
        let name = c.name.get_ref().clone();
        let k = c
            .kubernetes
            .as_ref()
            .ok_or_else(|| format!("connection {name}: no [connection.kubernetes] table"))?;
        let (upstream, backend) = settings::upstream(config, &name, k)?;
        let tls = settings::server_tls(config, k)?;
        let mut resource = policy::Resource::new(name.clone(), policy::ResourceKind::Kubernetes);
        for (key, value) in &c.labels {
            resource = resource.with_label(key.clone(), value.clone());
        }
        let recordings = match &k.recordings_dir {
            Some(dir) => {
                let dir = config.resolve(dir);
                std::fs::create_dir_all(&dir).map_err(|e| {
                    format!("connection {name}: recordings_dir {}: {e}", dir.display())
                })?;
                Some(dir)
            }
            None => None,
        };
        let hook = Arc::new(KubeGateway::new(
            gateway,
            name.clone(),
            resource,
            backend,
            recordings,
        ));
        let addr = k.listen.get_ref();
        let tcp = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| format!("connection {name}: listening on {addr}: {e}"))?;
        bound.push((name, tcp.local_addr().map_err(|e| e.to_string())?));
        let mut proxy_config = ProxyConfig::new(upstream);
        proxy_config.opaque_body_resources = OPAQUE_BODY_RESOURCES
            .iter()
            .map(|r| (*r).to_owned())
            .collect();
        let proxy = Proxy::new(hook, proxy_config);
        let mut rx = stop.clone();
        tasks.spawn(async move {
            tokio::select! {
                r = proxy.serve(tcp, tls) => r.map_err(|e| format!("kubernetes listener: {e}")),
                _ = rx.wait_for(|s| *s) => Ok(()),
            }
        });
    }
    Ok(bound)
}

/// What `portcullis check` finds wrong with the files and variables a
/// Kubernetes connection names (CA, token, client certificate, listener
/// certificate): the same loading as `serve` does.
pub(crate) fn check_files(config: &Config, c: &crate::config::Connection) -> Vec<String> {
    let Some(k) = &c.kubernetes else {
        return Vec::new();
    };
    let name = c.name.get_ref();
    let mut problems = Vec::new();
    if let Err(e) = settings::upstream(config, name, k) {
        problems.push(e);
    }
    if let Err(e) = settings::server_tls(config, k) {
        problems.push(format!("connection {name}: listener: {e}"));
    }
    problems
}

/// One audit record on its way to the trail; `done` is told once it is
/// written (or failed).
struct Job {
    event: AuditEvent,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Writes records in the order they are sent.
#[derive(Clone)]
struct Trail {
    tx: mpsc::UnboundedSender<Job>,
}

impl Trail {
    /// The writer task; each write's failure (or success) is what the
    /// gateway's `/healthz` reports, and a failure refuses new requests.
    fn spawn(gateway: &'static Gateway) -> Trail {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let sink = gateway.audit.clone();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let result = sink
                    .record(&job.event)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, "audit trail write failed (kubernetes)");
                }
                gateway.set_audit_failure(result.as_ref().err().cloned());
                if let Some(done) = job.done {
                    let _ = done.send(result);
                }
            }
        });
        Trail { tx }
    }

    fn record(&self, event: AuditEvent) {
        let _ = self.tx.send(Job { event, done: None });
    }

    async fn record_durably(&self, event: AuditEvent) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job {
                event,
                done: Some(tx),
            })
            .map_err(|_| "the audit writer has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the audit writer has stopped".to_owned())?
    }
}

/// The gateway's hook for one Kubernetes connection.
pub(crate) struct KubeGateway {
    gateway: &'static Gateway,
    connection: String,
    resource: policy::Resource,
    backend: BackendCredential,
    trail: Trail,
    /// Where exec/attach streams are recorded, if they are.
    recordings: Option<PathBuf>,
    next_call: AtomicU64,
    health: Mutex<Option<(Instant, Result<(), String>)>>,
    /// [`SECRET_ENV_NAMES`], compiled.
    env_names: Arc<Vec<FieldPattern>>,
}

impl std::fmt::Debug for KubeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeGateway")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

/// One authenticated request (or exec stream): who made it and what it
/// had masked. Nothing in it is shared with any other request.
#[derive(Debug)]
pub(crate) struct Call {
    /// The trail's session id of this call.
    id: String,
    principal: identity::Principal,
    policy_principal: policy::Principal,
    audit_principal: audit::Principal,
    connection: String,
    started: Instant,
    state: Mutex<CallState>,
}

#[derive(Debug, Default)]
struct CallState {
    namespace: Option<String>,
    masked: BTreeMap<String, u64>,
    bytes_out: u64,
    stdin_bytes: u64,
    resizes: u64,
    recording: Option<Recording>,
    /// Why the recording stopped early, if it did.
    recording_error: Option<String>,
}

/// One exec/attach stream's asciicast v2 recording: output as the client
/// got it (masked), stdin through its own streaming masker, resizes.
struct Recording {
    path: PathBuf,
    /// Set when the stream opens (a hold's wait is not recorded).
    started: Option<Instant>,
    rec: Recorder<BufWriter<File>>,
    stdin: Option<StreamMasker<'static>>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Recording {
    fn at(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |s| s.elapsed())
    }
}

impl Call {
    fn lock(&self) -> std::sync::MutexGuard<'_, CallState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, detector: &str, n: u64) {
        *self.lock().masked.entry(detector.to_owned()).or_insert(0) += n;
    }

    fn event(&self, kind: EventKind) -> AuditEvent {
        let scope = self.lock().namespace.clone();
        AuditEvent::new(kind)
            .with_session(self.id.clone())
            .with_principal(self.audit_principal.clone())
            .with_resource(audit::Resource {
                protocol: audit::Protocol::Kubernetes,
                target: self.connection.clone(),
                scope,
            })
    }

    fn duration_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Writes to the recording, if there is one; a write error ends the
    /// recording (and is reported in the stream's result).
    fn record(&self, write: impl FnOnce(&mut Recording) -> std::io::Result<()>) {
        let mut s = self.lock();
        let Some(rec) = s.recording.as_mut() else {
            return;
        };
        if let Err(e) = write(rec) {
            tracing::error!(call = %self.id, error = %e, "recording failed; stopped");
            s.recording = None;
            s.recording_error = Some(format!("recording failed: {e}"));
        }
    }

    /// Ends the recording: the rest of stdin's masker, flushed to disk.
    /// Returns a line for the stream's result.
    fn finish_recording(&self) -> Option<String> {
        let mut s = self.lock();
        if let Some(e) = s.recording_error.take() {
            return Some(e);
        }
        let mut r = s.recording.take()?;
        let at = r.at();
        let mut rest = Vec::new();
        if let Some(stdin) = r.stdin.take() {
            stdin.finish(&mut rest);
        }
        let path = r.path.display().to_string();
        let done = r
            .rec
            .input(at, &rest)
            .and_then(|()| r.rec.finish())
            .and_then(|mut w| w.flush());
        Some(match done {
            Ok(()) => format!("recording: {path}"),
            Err(e) => format!("recording {path} failed: {e}"),
        })
    }
}

/// The command id of a call's one command.
const COMMAND: u64 = 1;

impl KubeGateway {
    fn new(
        gateway: &'static Gateway,
        connection: String,
        resource: policy::Resource,
        backend: BackendCredential,
        recordings: Option<PathBuf>,
    ) -> KubeGateway {
        KubeGateway {
            gateway,
            connection,
            resource,
            backend,
            recordings,
            trail: Trail::spawn(gateway),
            next_call: AtomicU64::new(1),
            health: Mutex::new(None),
            env_names: Arc::new(
                SECRET_ENV_NAMES
                    .iter()
                    .map(|p| FieldPattern::new(p))
                    .collect(),
            ),
        }
    }

    /// Opens an exec/attach stream's recording file, if streams are
    /// recorded.
    fn open_recording(&self, call: &Call, text: &str) -> Result<(), String> {
        let Some(dir) = &self.recordings else {
            return Ok(());
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let path = dir.join(format!(
            "{}-{}-{}.cast",
            self.connection,
            now.as_micros(),
            call.id
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut header = AsciicastHeader::new(80, 24);
        header.timestamp = i64::try_from(now.as_secs()).ok();
        header.command = Some(text.to_owned());
        header.title = Some(format!(
            "{} on {} ({})",
            call.principal.id, self.connection, call.id
        ));
        let rec = Recorder::new(BufWriter::new(file), &header)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        call.lock().recording = Some(Recording {
            path,
            started: None,
            rec,
            stdin: Some(self.gateway.masker.stream()),
        });
        Ok(())
    }

    fn mask_text(&self, text: &str) -> String {
        String::from_utf8_lossy(self.gateway.masker.mask(text.as_bytes()).output()).into_owned()
    }

    /// The sink's own health, asked at most every 250 ms. (A failed write
    /// is reported by `/healthz` until a write succeeds; the request whose
    /// record failed was refused by that failure itself.)
    async fn audit_ready(&self) -> Result<(), String> {
        let cached = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some((at, result)) = cached
            && at.elapsed() < std::time::Duration::from_millis(250)
        {
            return result;
        }
        let result = match self.gateway.audit.health().await {
            audit::Health::Ready => Ok(()),
            other => Err(format!("{other:?}")),
        };
        *self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), result.clone()));
        result
    }

    /// Holds a reviewed request for approval.
    fn hold(&self, call: &Arc<Call>, text: &str, decision: &policy::Decision) -> Verdict {
        let Effect::Review {
            groups,
            min_approvals,
            timeout,
            ..
        } = &decision.effect
        else {
            return Verdict::Deny {
                reason: "portcullis: the gateway has no review to hold this request for".into(),
            };
        };
        let request = ApprovalRequest {
            requester: call.principal.id.clone(),
            session_id: call.id.clone(),
            connection: self.connection.clone(),
            command: text.to_owned(),
            rule_id: decision.rule_id.clone().unwrap_or_default(),
            reason: decision.reason.clone(),
            groups: groups.clone(),
            min_approvals: usize::try_from(*min_approvals).unwrap_or(usize::MAX),
            timeout: *timeout,
        };
        let ticket = match self.gateway.approvals.request(request) {
            Ok(t) => t,
            Err(e) => {
                return Verdict::Deny {
                    reason: format!("portcullis: cannot hold for approval: {e}"),
                };
            }
        };
        let id = ticket.id.clone();
        self.trail.record(call.event(EventKind::ApprovalRequested {
            request_id: id.clone(),
            command_id: COMMAND,
            approver: Some(groups.join(",")),
        }));
        let guard = Withdraw {
            store: self.gateway.approvals.clone(),
            id: Some(id.clone()),
        };
        let trail = self.trail.clone();
        let call = call.clone();
        let approval = id.clone();
        let release = async move {
            let mut guard = guard;
            let outcome = ticket.wait(&guard.store).await;
            guard.id = None;
            let (kind, release) = match outcome {
                Outcome::Approved { by } => (
                    EventKind::ApprovalGranted {
                        request_id: approval.clone(),
                        approver: by.join(","),
                    },
                    Release::Allow,
                ),
                Outcome::Denied { by } => (
                    EventKind::ApprovalDenied {
                        request_id: approval.clone(),
                        approver: by.clone(),
                        reason: None,
                    },
                    Release::Deny {
                        reason: format!("portcullis: {by} denied approval {approval}"),
                    },
                ),
                Outcome::Expired | Outcome::Abandoned => (
                    EventKind::ApprovalExpired {
                        request_id: approval.clone(),
                    },
                    Release::Deny {
                        reason: format!(
                            "portcullis: approval {approval} expired before anyone decided; \
                             the request was not forwarded"
                        ),
                    },
                ),
            };
            // The approval is durable before the request is forwarded.
            match trail.record_durably(call.event(kind)).await {
                Ok(()) => {
                    if release == Release::Allow {
                        trail.record(call.event(EventKind::CommandForwarded {
                            command_id: COMMAND,
                        }));
                    }
                    release
                }
                Err(e) => Release::Deny {
                    reason: format!(
                        "portcullis: the audit trail cannot record the approval, so the request \
                         was not forwarded (fail closed): {e}"
                    ),
                },
            }
        };
        Verdict::Hold {
            id,
            release: Box::pin(release),
        }
    }
}

/// Withdraws a pending approval when the client that waits for it goes
/// away (the hold's future is dropped before it resolved).
struct Withdraw {
    store: Arc<ApprovalStore>,
    id: Option<String>,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.store.withdraw(&id);
        }
    }
}

/// The request as the policy crate analyses it: with its body when the
/// proxy read one (a JSON create, update or patch). The proxy refuses to
/// forward impersonation headers; their names are passed so that rules on
/// the `impersonation` risk still see them.
fn policy_request(request: &K8sRequest) -> policy::K8sRequest {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target.as_str(), ""));
    let mut r = policy::K8sRequest::new(request.method.clone(), path).with_query(query);
    for name in &request.impersonation {
        r = r.with_header(name.clone(), "");
    }
    if let Some(body) = &request.body {
        r = r.with_body(body.clone());
    }
    r
}

/// The request as the trail and approvers see it (masked by the caller):
/// `GET /api/v1/...`, and for exec/attach the command line.
fn command_text(request: &K8sRequest) -> String {
    let path = request
        .target
        .split_once('?')
        .map_or(request.target.as_str(), |(p, _)| p);
    let mut text = format!("{} {path}", request.method);
    if let Some(s) = &request.stream {
        if let Some(c) = &s.container {
            text.push_str(&format!(" -c {c}"));
        }
        if !s.command.is_empty() {
            text.push_str(" --");
            for arg in &s.command {
                text.push(' ');
                text.push_str(&shell_quote(arg));
            }
        }
    }
    text
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn deny_message(decision: &policy::Decision) -> String {
    match &decision.rule_id {
        Some(rule) => format!("portcullis: {} (policy rule {rule})", decision.reason),
        None => format!("portcullis: {} (policy default)", decision.reason),
    }
}

/// Every string of a JSON value through the masker (the facts carry the
/// exec argv and names as sent).
fn mask_strings(v: &mut serde_json::Value, mask: &dyn Fn(&str) -> String) {
    match v {
        serde_json::Value::String(s) => *s = mask(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|v| mask_strings(v, mask)),
        serde_json::Value::Object(m) => m.values_mut().for_each(|v| mask_strings(v, mask)),
        _ => {}
    }
}

/// The facts as the trail keeps them: masked like the command's text.
fn facts_map(
    facts: &policy::CommandFacts,
    mask: &dyn Fn(&str) -> String,
) -> BTreeMap<String, serde_json::Value> {
    let facts = serde_json::to_value(facts).map(|mut v| {
        mask_strings(&mut v, mask);
        v
    });
    match facts {
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

/// A streaming masker as the proxy's transform, counting what it masked
/// into its call.
struct MaskTransform {
    masker: &'static Masker,
    stream: Option<StreamMasker<'static>>,
    call: Arc<Call>,
}

impl MaskTransform {
    fn boxed(masker: &'static Masker, call: &Arc<Call>) -> Box<MaskTransform> {
        Box::new(MaskTransform {
            masker,
            stream: Some(masker.stream()),
            call: call.clone(),
        })
    }

    fn count<'a>(&self, findings: impl IntoIterator<Item = &'a portcullis_mask::Finding<'a>>) {
        for f in findings {
            self.call.count(f.detector(), 1);
        }
    }
}

impl StreamTransform for MaskTransform {
    fn transform(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let stream = self.stream.get_or_insert_with(|| self.masker.stream());
        let found: Vec<String> = stream
            .push(chunk, out)
            .iter()
            .map(|f| f.detector().to_owned())
            .collect();
        for d in found {
            self.call.count(&d, 1);
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        // A boundary no match may span: end this stream, start a new one.
        if let Some(stream) = self.stream.take() {
            let found = stream.finish(out);
            self.count(found.iter());
        }
        self.stream = Some(self.masker.stream());
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(stream) = self.stream.take() {
            let found = stream.finish(out);
            self.count(found.iter());
        }
    }

    fn pending(&self) -> Option<usize> {
        // No stream (finished) holds nothing back.
        Some(self.stream.as_ref().map_or(0, StreamMasker::pending))
    }
}

#[async_trait]
impl Hook for KubeGateway {
    type Principal = Arc<Call>;

    async fn authenticate(&self, token: &str) -> Result<Authenticated<Arc<Call>>, Refusal> {
        let n = self.next_call.fetch_add(1, Ordering::Relaxed);
        let id = format!("k{n}");
        let principal = match self.gateway.identity.verify(token) {
            Ok(p) => p,
            Err(e) => {
                let reason = e.to_string();
                metrics::counter!("portcullis_auth_failures_total").increment(1);
                tracing::warn!(call = %id, connection = %self.connection, %reason, "kubernetes authentication refused");
                // Written before the refusal is answered, so the client's
                // error never comes before the trail's record of it.
                let written = self
                    .trail
                    .record_durably(
                        AuditEvent::new(EventKind::AuthFailed {
                            method: "token".to_owned(),
                            reason: reason.clone(),
                        })
                        .with_session(id),
                    )
                    .await;
                if let Err(e) = written {
                    tracing::error!(error = %e, "the refused authentication could not be recorded");
                }
                return Err(Refusal {
                    message: format!("portcullis: {reason}"),
                });
            }
        };
        let kind = match principal.kind {
            PrincipalKind::Human => (policy::PrincipalKind::Human, audit::PrincipalKind::Human),
            PrincipalKind::Agent => (policy::PrincipalKind::Agent, audit::PrincipalKind::Agent),
            PrincipalKind::Service => (
                policy::PrincipalKind::Service,
                audit::PrincipalKind::Service,
            ),
        };
        let call = Call {
            id,
            policy_principal: policy::Principal::new(principal.id.clone(), kind.0)
                .with_groups(principal.groups.iter().cloned()),
            audit_principal: audit::Principal {
                id: principal.id.clone(),
                kind: kind.1,
                groups: principal.groups.clone(),
                token_id: Some(principal.token_id.clone()),
            },
            principal,
            connection: self.connection.clone(),
            started: Instant::now(),
            state: Mutex::new(CallState::default()),
        };
        Ok(Authenticated {
            principal: Arc::new(call),
            backend: self.backend.clone(),
        })
    }

    async fn decide(&self, call: &Arc<Call>, request: &K8sRequest) -> Verdict {
        call.lock().namespace = request.namespace.clone();
        let text = self.mask_text(&command_text(request));
        let decision = self.gateway.policy.evaluate(&policy::Request::kubernetes(
            &call.policy_principal,
            &self.resource,
            policy_request(request),
        ));
        let effect = match decision.effect {
            Effect::Allow => audit::Effect::Allow,
            Effect::Deny => audit::Effect::Deny,
            Effect::Review { .. } => audit::Effect::Hold,
        };
        metrics::counter!("portcullis_commands_total", "effect" => decision.effect.as_str())
            .increment(1);
        tracing::info!(
            call = %call.id,
            connection = %self.connection,
            principal = %call.principal.id,
            effect = decision.effect.as_str(),
            rule = decision.rule_id.as_deref().unwrap_or("default"),
            "kubernetes request"
        );
        // Fail closed: no request without its durable record.
        if let Err(why) = self.audit_ready().await {
            return Verdict::Deny {
                reason: format!(
                    "portcullis: the audit trail cannot make records durable, so the request \
                     was not forwarded (fail closed): {why}"
                ),
            };
        }
        // Observe mode: the record keeps the decision the policy would have
        // taken; the request is forwarded whatever it is.
        let enforce = self.gateway.enforces();
        let written = self
            .trail
            .record_durably(call.event(EventKind::Command {
                command_id: COMMAND,
                text: MaskedText::already_masked(text.clone()),
                facts: facts_map(&decision.facts, &|t| self.mask_text(t)),
                effect,
                rule_id: decision.rule_id.clone(),
                reason: if enforce || decision.effect == Effect::Allow {
                    decision.reason.clone()
                } else {
                    crate::gateway::observed_reason(&decision)
                },
            }))
            .await;
        if let Err(e) = written {
            return Verdict::Deny {
                reason: format!(
                    "portcullis: the audit trail cannot record this request, so it was not \
                     forwarded (fail closed): {e}"
                ),
            };
        }
        if request.stream.is_some()
            && (!enforce || !matches!(decision.effect, Effect::Deny))
            && let Err(e) = self.open_recording(call, &text)
        {
            return Verdict::Deny {
                reason: format!(
                    "portcullis: the session cannot be recorded, so it was not opened (fail \
                     closed): {e}"
                ),
            };
        }
        match decision.effect {
            _ if !enforce => {
                self.trail.record(call.event(EventKind::CommandForwarded {
                    command_id: COMMAND,
                }));
                Verdict::Allow
            }
            Effect::Allow => {
                self.trail.record(call.event(EventKind::CommandForwarded {
                    command_id: COMMAND,
                }));
                Verdict::Allow
            }
            Effect::Deny => Verdict::Deny {
                reason: deny_message(&decision),
            },
            Effect::Review { .. } => self.hold(call, &text, &decision),
        }
    }

    fn response_plan(&self, call: &Arc<Call>, request: &K8sRequest) -> ResponsePlan {
        let counted = call.clone();
        // A Secret's values are masked whole (and re-encoded in base64);
        // the detectors would mask that base64 again and break it, so a
        // `secrets` body is not scanned further (its metadata included).
        let body: Box<dyn StreamTransform> =
            if request.resource.as_deref() == Some("secrets") && request.subresource.is_none() {
                Box::new(portcullis_k8s::Identity)
            } else {
                MaskTransform::boxed(&self.gateway.masker, call)
            };
        let env_call = call.clone();
        let masker: &'static Masker = &self.gateway.masker;
        let names = self.env_names.clone();
        ResponsePlan {
            body,
            secret_values: Arc::new(move |_value: &str| {
                counted.count(SECRET_VALUE, 1);
                format!("[MASKED:{SECRET_VALUE}]")
            }),
            env_values: Some(Arc::new(move |name: &str, value: &str| {
                if names.iter().any(|p| p.matches(name)) {
                    env_call.count(ENV_VALUE, 1);
                    return Some(format!("[MASKED:{ENV_VALUE}]"));
                }
                // The configuration's field rules, else the detectors (which
                // would find the same over the whole body afterwards).
                let m = masker.mask_field(name, value.as_bytes());
                if !m.is_masked() {
                    return None;
                }
                for f in m.findings() {
                    env_call.count(f.detector(), 1);
                }
                Some(String::from_utf8_lossy(m.output()).into_owned())
            })),
        }
    }

    fn stream_plan(&self, call: &Arc<Call>, _request: &K8sRequest) -> StreamPlan {
        if let Some(r) = call.lock().recording.as_mut() {
            r.started = Some(Instant::now());
        }
        StreamPlan {
            stdout: MaskTransform::boxed(&self.gateway.masker, call),
            stderr: MaskTransform::boxed(&self.gateway.masker, call),
        }
    }

    fn on_event(&self, call: &Arc<Call>, _request: &K8sRequest, event: &Event<'_>) {
        match event {
            Event::Output { data, .. } => {
                {
                    let mut s = call.lock();
                    s.bytes_out = s.bytes_out.saturating_add(data.len() as u64);
                }
                call.record(|r| r.rec.output(r.at(), data));
            }
            Event::Stdin(data) => {
                {
                    let mut s = call.lock();
                    s.stdin_bytes = s.stdin_bytes.saturating_add(data.len() as u64);
                }
                call.record(|r| {
                    let mut out = Vec::new();
                    if let Some(stdin) = r.stdin.as_mut() {
                        stdin.push(data, &mut out);
                    }
                    r.rec.input(r.at(), &out)
                });
            }
            Event::Resize(size) => {
                call.lock().resizes += 1;
                call.record(|r| r.rec.resize(r.at(), size.width, size.height));
            }
            Event::StreamEnded { exit, error } => {
                let (bytes, masked, stdin, resizes) = {
                    let mut s = call.lock();
                    (
                        s.bytes_out,
                        std::mem::take(&mut s.masked),
                        s.stdin_bytes,
                        s.resizes,
                    )
                };
                count_masked(&masked);
                let (code, mut message) = match exit {
                    Some(ExitStatus::Success) => (None, None),
                    Some(ExitStatus::Code(c)) => (Some(format!("exit {c}")), None),
                    Some(ExitStatus::Failure(m)) => (Some("failure".to_owned()), Some(m.clone())),
                    Some(_) => (Some("failure".to_owned()), None),
                    None => (Some("no exit status".to_owned()), None),
                };
                if let Some(e) = error {
                    message = Some(match message {
                        Some(m) => format!("{m}; {e}"),
                        None => (*e).to_owned(),
                    });
                }
                let mut summary = format!("stream: {stdin} bytes of stdin, {resizes} resizes");
                if let Some(line) = call.finish_recording() {
                    summary.push_str("; ");
                    summary.push_str(&line);
                }
                let message = match message {
                    Some(m) => format!("{m} ({summary})"),
                    None => summary,
                };
                self.trail.record(call.event(EventKind::CommandResult {
                    command_id: COMMAND,
                    rows: 0,
                    bytes,
                    masked,
                    duration_us: call.duration_us(),
                    error_code: code,
                    error_message: Some(MaskedText::already_masked(self.mask_text(&message))),
                }));
            }
            Event::ResponseEnded {
                status,
                bytes,
                error,
            } => {
                let masked = std::mem::take(&mut call.lock().masked);
                count_masked(&masked);
                self.trail.record(call.event(EventKind::CommandResult {
                    command_id: COMMAND,
                    rows: 0,
                    bytes: *bytes,
                    masked,
                    duration_us: call.duration_us(),
                    error_code: (*status >= 400 || error.is_some()).then(|| status.to_string()),
                    error_message: error.map(|e| MaskedText::already_masked(self.mask_text(e))),
                }));
            }
            _ => {}
        }
    }
}

fn count_masked(masked: &BTreeMap<String, u64>) {
    for (detector, n) in masked {
        metrics::counter!("portcullis_masked_values_total", "detector" => detector.clone())
            .increment(*n);
    }
}

/// A kubeconfig (JSON, which kubectl reads as it reads YAML) pointing at a
/// gateway listener with a token.
pub(crate) fn kubeconfig(
    connection: &str,
    server: &str,
    ca_pem: &str,
    token: &str,
    namespace: &str,
) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let name = format!("portcullis-{connection}");
    let v = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// The URL kubeconfigs name for a Kubernetes connection's listener.
pub(crate) fn public_url(k: &KubeSettings) -> String {
    match &k.public_url {
        Some(u) => u.clone(),
        None => {
            let listen = k.listen.get_ref();
            match listen.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_unspecified() => format!("https://127.0.0.1:{}", a.port()),
                _ => format!("https://{listen}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_text_shows_the_exec_command_line() {
        let r = portcullis_k8s::classify(
            "GET",
            "/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=echo%20it%27s&container=app&stdout=true",
            [("Upgrade", "websocket")],
        )
        .unwrap();
        assert_eq!(
            command_text(&r),
            r"GET /api/v1/namespaces/default/pods/web-0/exec -c app -- sh -c 'echo it'\''s'"
        );
        let p = policy_request(&r);
        assert_eq!(p.path, "/api/v1/namespaces/default/pods/web-0/exec");
        assert!(p.query.starts_with("command=sh&"));
    }

    #[test]
    fn the_example_policy_decides_kubernetes_requests() {
        let policy = policy::Policy::from_toml_str(include_str!("../demo/policy.toml")).unwrap();
        let agent = policy::Principal::new("agent:bot", policy::PrincipalKind::Agent);
        let cluster = policy::Resource::new("cluster", policy::ResourceKind::Kubernetes);
        let decide = |method: &str, target: &str, headers: &[(&str, &str)]| {
            let r = portcullis_k8s::classify(method, target, headers.iter().copied()).unwrap();
            let d = policy.evaluate(&policy::Request::kubernetes(
                &agent,
                &cluster,
                policy_request(&r),
            ));
            (d.effect.as_str(), d.rule_id.unwrap_or_default())
        };
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/default/pods",
                &[][..],
                "allow",
                "k8s-read",
            ),
            ("GET", "/version", &[], "allow", "k8s-read"),
            (
                "DELETE",
                "/api/v1/namespaces/prod",
                &[],
                "deny",
                "k8s-no-namespace-delete",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/default/pods/web-0",
                &[],
                "deny",
                "",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods/web-0/exec?command=id&stdout=true",
                &[("Upgrade", "websocket")],
                "allow",
                "k8s-exec",
            ),
            (
                "GET",
                "/api/v1/namespaces/kube-system/pods/dns/exec?command=id&stdout=true",
                &[("Upgrade", "websocket")],
                "review",
                "k8s-review-exec-kube-system",
            ),
            (
                "POST",
                "/api/v1/namespaces/default/serviceaccounts",
                &[],
                "review",
                "k8s-review-identities",
            ),
            (
                "GET",
                "/api/v1/namespaces/default/pods",
                &[("Impersonate-User", "admin")],
                "deny",
                "k8s-no-impersonation",
            ),
        ];
        for (method, target, headers, effect, rule) in cases {
            assert_eq!(
                decide(method, target, headers),
                (effect, rule.to_owned()),
                "{method} {target}"
            );
        }
    }

    #[test]
    fn kubeconfig_is_json_kubectl_reads() {
        let k = kubeconfig("prod", "https://127.0.0.1:8443", "PEM", "tok", "default");
        let v: serde_json::Value = serde_json::from_str(&k).unwrap();
        assert_eq!(v["users"][0]["user"]["token"], "tok");
        assert_eq!(v["current-context"], "portcullis-prod");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
    }
}
