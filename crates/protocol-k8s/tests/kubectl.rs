//! Real kubectl binaries through the proxy to the testkit's fake API server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use portcullis_k8s::{
    Authenticated, BackendCredential, Event, Hook, K8sRequest, Proxy, ProxyConfig, Refusal,
    Release, ResponsePlan, StreamPlan, StreamTransform, Upstream, Verb, Verdict, async_trait,
};
use portcullis_testkit::{
    FAKE_ENV_PASSWORD, FAKE_SECRET_PASSWORD, FakeKube, SelfSignedTls, find_kubectl, kubeconfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AGENT: &str = "agent-token";
const RAW: &str = "raw-token";
const MASKED: &str = "[MASKED]";

/// Replaces every occurrence of a marker, holding back a possible prefix of
/// it between chunks (chunk-invariant).
struct Replace {
    marker: &'static [u8],
    pending: Vec<u8>,
}

impl Replace {
    fn new(marker: &'static str) -> Box<Self> {
        Box::new(Replace {
            marker: marker.as_bytes(),
            pending: Vec::new(),
        })
    }
}

impl StreamTransform for Replace {
    fn transform(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.pending.extend_from_slice(chunk);
        while let Some(pos) = self
            .pending
            .windows(self.marker.len())
            .position(|w| w == self.marker)
        {
            out.extend_from_slice(&self.pending[..pos]);
            out.extend_from_slice(MASKED.as_bytes());
            self.pending.drain(..pos + self.marker.len());
        }
        let keep = self.pending.len().min(self.marker.len() - 1);
        let release = self.pending.len() - keep;
        out.extend_from_slice(&self.pending[..release]);
        self.pending.drain(..release);
    }
    fn flush(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }
}

#[derive(Default)]
struct TestHook {
    backend_token: String,
    events: Mutex<Vec<String>>,
    /// Held requests so far.
    held: std::sync::atomic::AtomicUsize,
    /// The reviewer's answer: `Some(true)` approves every held request.
    approvals: tokio::sync::watch::Sender<Option<bool>>,
}

impl TestHook {
    fn hold(&self) -> Verdict {
        let n = self.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let mut rx = self.approvals.subscribe();
        let release = async move {
            loop {
                if let Some(ok) = *rx.borrow_and_update() {
                    return if ok {
                        Release::Allow
                    } else {
                        Release::Deny {
                            reason: "portcullis: refused by a reviewer".into(),
                        }
                    };
                }
                if rx.changed().await.is_err() {
                    return Release::Deny {
                        reason: "portcullis: approvals closed".into(),
                    };
                }
            }
        };
        Verdict::Hold {
            id: format!("approval-{n}"),
            release: Box::pin(release),
        }
    }

    async fn wait_held(&self, n: usize) {
        for _ in 0..600 {
            if self.held.load(std::sync::atomic::Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nothing was held");
    }
}

#[async_trait]
impl Hook for TestHook {
    type Principal = String;

    async fn authenticate(&self, token: &str) -> Result<Authenticated<String>, Refusal> {
        match token {
            AGENT | RAW => Ok(Authenticated {
                principal: token.to_owned(),
                backend: BackendCredential::BearerToken(self.backend_token.clone()),
            }),
            _ => Err(Refusal {
                message: "unknown token".into(),
            }),
        }
    }

    async fn decide(&self, _: &String, r: &K8sRequest) -> Verdict {
        if !r.impersonation.is_empty() {
            return Verdict::Deny {
                reason: "impersonation is not allowed through portcullis".into(),
            };
        }
        if r.verb == Verb::Delete && r.resource.as_deref() == Some("namespaces") {
            return Verdict::Deny {
                reason: "portcullis: deleting a namespace is denied by policy".into(),
            };
        }
        if r.verb == Verb::Create && r.resource.as_deref() == Some("serviceaccounts") {
            return self.hold();
        }
        if let Some(s) = &r.stream
            && s.command.iter().any(|a| a.contains("needs-approval"))
        {
            return self.hold();
        }
        if let Some(s) = &r.stream
            && s.command.iter().any(|a| a.contains("forbidden"))
        {
            return Verdict::Deny {
                reason: "portcullis: exec denied by policy (forbidden command)".into(),
            };
        }
        Verdict::Allow
    }

    fn response_plan(&self, principal: &String, _: &K8sRequest) -> ResponsePlan {
        if principal == RAW {
            return ResponsePlan::default();
        }
        ResponsePlan {
            body: Replace::new(FAKE_SECRET_PASSWORD),
            secret_values: Arc::new(|_| MASKED.to_owned()),
            env_values: Some(Arc::new(|name: &str, _: &str| {
                (name.ends_with("_PASSWORD") || name.contains("TOKEN")).then(|| MASKED.to_owned())
            })),
        }
    }

    fn stream_plan(&self, principal: &String, _: &K8sRequest) -> StreamPlan {
        if principal == RAW {
            return StreamPlan::default();
        }
        StreamPlan {
            stdout: Replace::new(FAKE_SECRET_PASSWORD),
            stderr: Replace::new(FAKE_SECRET_PASSWORD),
        }
    }

    fn on_event(&self, principal: &String, _: &K8sRequest, event: &Event<'_>) {
        let line = match event {
            Event::Output { channel, data } => {
                format!("{principal} output {channel} {}", data.len())
            }
            Event::Stdin(d) => format!("{principal} stdin {}", String::from_utf8_lossy(d)),
            Event::StreamEnded { exit, error } => format!("{principal} ended {exit:?} {error:?}"),
            Event::ResponseEnded { status, error, .. } => {
                format!("{principal} response {status} {error:?}")
            }
            other => format!("{principal} {other:?}"),
        };
        self.events.lock().unwrap().push(line);
    }
}

struct Env {
    kube: FakeKube,
    hook: Arc<TestHook>,
    addr: std::net::SocketAddr,
    proxy_tls: SelfSignedTls,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start(frame_limit: usize) -> Env {
        Env::start_with(frame_limit, |_| {}).await
    }

    async fn start_with(frame_limit: usize, adjust: impl FnOnce(&mut ProxyConfig)) -> Env {
        Env::start_full(FakeKube::builder(), frame_limit, adjust).await
    }

    async fn start_full(
        builder: portcullis_testkit::FakeKubeBuilder,
        frame_limit: usize,
        adjust: impl FnOnce(&mut ProxyConfig),
    ) -> Env {
        let kube = builder.output_frame_limit(frame_limit).start().unwrap();
        let hook = Arc::new(TestHook {
            backend_token: kube.token().to_owned(),
            ..TestHook::default()
        });
        let upstream = Upstream {
            authority: kube.addr().to_string(),
            server_name: rustls::pki_types::ServerName::try_from("127.0.0.1")
                .unwrap()
                .to_owned(),
            tls: kube.tls().client_config().unwrap(),
        };
        let proxy_tls = SelfSignedTls::generate().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = ProxyConfig::new(upstream);
        if frame_limit < 64 {
            // Tiny frames test masking across frames: make sure an idle
            // flush never cuts between them on a loaded machine.
            config.output_flush_after = Duration::from_secs(2);
        }
        adjust(&mut config);
        let proxy = Proxy::new(hook.clone(), config);
        tokio::spawn(proxy.serve(listener, proxy_tls.server_config().unwrap()));
        let dir = tempfile::tempdir().unwrap();
        for (name, token) in [("agent", AGENT), ("raw", RAW), ("stranger", "who-knows")] {
            let cfg = kubeconfig(&format!("https://{addr}"), &proxy_tls.cert_pem, token);
            std::fs::write(dir.path().join(name), cfg).unwrap();
        }
        Env {
            kube,
            hook,
            addr,
            proxy_tls,
            dir,
        }
    }

    fn config(&self, who: &str) -> PathBuf {
        self.dir.path().join(who)
    }

    async fn kubectl(&self, minor: u32, who: &str, args: &[&str], stdin: Option<&str>) -> Out {
        let bin = kubectl_bin(minor);
        run_kubectl(&bin, &self.config(who), self.dir.path(), args, stdin).await
    }
}

#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn kubectl_bin(minor: u32) -> PathBuf {
    find_kubectl(minor)
        .unwrap_or_else(|| panic!("kubectl.1.{minor} not installed (apt-get install kubectl)"))
}

async fn run_kubectl(
    bin: &Path,
    config: &Path,
    home: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Out {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--kubeconfig")
        .arg(config)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        let mut s = child.stdin.take().unwrap();
        s.write_all(input.as_bytes()).await.unwrap();
        drop(s);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl did not finish in 60 s")
        .unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const VERSIONS: [u32; 4] = [30, 31, 32, 33];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_and_masked_secrets_with_every_kubectl() {
    let env = Env::start(32 * 1024).await;
    for v in VERSIONS {
        let out = env.kubectl(v, "agent", &["get", "pods"], None).await;
        assert_eq!(out.code, Some(0), "1.{v}: {out:?}");
        assert!(
            out.stdout.contains("web-0") && out.stdout.contains("Running"),
            "1.{v}: {out:?}"
        );

        let out = env
            .kubectl(
                v,
                "agent",
                &["get", "secret", "db-creds", "-o", "yaml"],
                None,
            )
            .await;
        assert_eq!(out.code, Some(0), "1.{v}: {out:?}");
        assert!(
            out.stdout
                .contains(&format!("password: {}", STANDARD.encode(MASKED))),
            "1.{v}: {out:?}"
        );
        assert!(
            !out.stdout.contains(&STANDARD.encode(FAKE_SECRET_PASSWORD)),
            "1.{v}: {out:?}"
        );

        let out = env
            .kubectl(v, "agent", &["get", "secrets", "-o", "json"], None)
            .await;
        assert_eq!(out.code, Some(0), "1.{v}: {out:?}");
        let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            list["items"][0]["data"]["password"],
            STANDARD.encode(MASKED),
            "1.{v}"
        );
        assert_eq!(
            list["items"][0]["data"]["username"],
            STANDARD.encode(MASKED),
            "1.{v}"
        );

        // The response body transform: the password in a ConfigMap value.
        let out = env
            .kubectl(
                v,
                "agent",
                &["get", "configmap", "app-config", "-o", "yaml"],
                None,
            )
            .await;
        assert_eq!(out.code, Some(0), "1.{v}: {out:?}");
        assert!(
            out.stdout.contains(MASKED) && !out.stdout.contains(FAKE_SECRET_PASSWORD),
            "1.{v}: {out:?}"
        );
    }
    // The control: without masking, the secret is really there upstream.
    let out = env
        .kubectl(
            33,
            "raw",
            &["get", "configmap", "app-config", "-o", "yaml"],
            None,
        )
        .await;
    assert!(out.stdout.contains(FAKE_SECRET_PASSWORD), "{out:?}");
    // The fake server saw only the injected backend token (it answers 401 otherwise),
    // and JSON was asked for.
    assert!(
        env.kube
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/namespaces/default/secrets/db-creds"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_and_impersonating_clients_refused() {
    let env = Env::start(32 * 1024).await;
    let out = env.kubectl(33, "stranger", &["get", "pods"], None).await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("Unauthorized") || out.stderr.contains("logged in"),
        "{out:?}"
    );
    let out = env
        .kubectl(33, "agent", &["get", "pods", "--as", "system:admin"], None)
        .await;
    assert_ne!(out.code, Some(0), "{out:?}");
    // kubectl's discovery client does not print the Status message of a 403;
    // the denial is what matters.
    assert!(out.stderr.contains("Forbidden"), "{out:?}");
    let events = env.hook.events.lock().unwrap().clone();
    assert!(
        !events.iter().any(|e| e.contains("response 200")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_namespace_denied() {
    let env = Env::start(32 * 1024).await;
    let out = env
        .kubectl(33, "agent", &["delete", "ns", "prod"], None)
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("Forbidden") && out.stderr.contains("deleting a namespace is denied"),
        "{out:?}"
    );
    assert!(env.kube.has_object("namespaces", "", "prod"));
    assert!(!env.kube.requests().iter().any(|r| r.starts_with("DELETE")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_create_and_exec_run_after_approval() {
    // kubectl sends the ServiceAccount in protobuf, which this proxy is told
    // it may forward unread.
    let env = Env::start_with(32 * 1024, |c| {
        c.opaque_body_resources = vec!["serviceaccounts".into()];
    })
    .await;
    let create = env.kubectl(33, "agent", &["create", "serviceaccount", "ci-bot"], None);
    let approve = async {
        env.hook.wait_held(1).await;
        // Held: nothing reached the API server yet.
        assert!(!env.kube.requests().iter().any(|r| r.starts_with("POST")));
        env.hook.approvals.send_replace(Some(true));
    };
    let (out, ()) = tokio::join!(create, approve);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(env.kube.has_object("serviceaccounts", "default", "ci-bot"));

    env.hook.approvals.send_replace(None);
    let exec = env.kubectl(
        33,
        "agent",
        &["exec", "web-0", "--", "sh", "-c", "echo needs-approval ran"],
        None,
    );
    let approve = async {
        env.hook.wait_held(2).await;
        assert!(!env.kube.requests().iter().any(|r| r.contains("/exec")));
        env.hook.approvals.send_replace(Some(true));
    };
    let (out, ()) = tokio::join!(exec, approve);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .starts_with("portcullis: held for approval (id approval-2)"),
        "{out:?}"
    );
    assert!(out.stdout.ends_with("needs-approval ran\n"), "{out:?}");

    env.hook.approvals.send_replace(None);
    let exec = env.kubectl(
        33,
        "agent",
        &[
            "exec",
            "web-0",
            "--",
            "sh",
            "-c",
            "echo needs-approval again",
        ],
        None,
    );
    let refuse = async {
        env.hook.wait_held(3).await;
        env.hook.approvals.send_replace(Some(false));
    };
    let (out, ()) = tokio::join!(exec, refuse);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("refused by a reviewer"), "{out:?}");
    assert!(!out.stdout.contains("again"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stdin_exit_codes_and_denial_with_every_kubectl() {
    let env = Env::start(32 * 1024).await;
    for v in VERSIONS {
        let out = env
            .kubectl(
                v,
                "agent",
                &[
                    "exec",
                    "-i",
                    "web-0",
                    "--",
                    "sh",
                    "-c",
                    "tr a-z A-Z; echo done >&2",
                ],
                Some("hello kube\n"),
            )
            .await;
        assert_eq!(out.code, Some(0), "1.{v}: {out:?}");
        assert_eq!(out.stdout, "HELLO KUBE\n", "1.{v}: {out:?}");
        assert!(out.stderr.contains("done"), "1.{v}: {out:?}");

        let out = env
            .kubectl(
                v,
                "agent",
                &["exec", "web-0", "--", "sh", "-c", "echo bye; exit 7"],
                None,
            )
            .await;
        assert_eq!(out.code, Some(7), "1.{v}: {out:?}");
        assert_eq!(out.stdout, "bye\n", "1.{v}: {out:?}");

        let out = env
            .kubectl(
                v,
                "agent",
                &["exec", "web-0", "--", "sh", "-c", "echo forbidden"],
                None,
            )
            .await;
        assert_eq!(out.code, Some(1), "1.{v}: {out:?}");
        assert!(
            out.stderr.contains("exec denied by policy"),
            "1.{v}: {out:?}"
        );
        assert!(!out.stdout.contains("forbidden"), "1.{v}: {out:?}");
    }
    // A denied exec never reached the API server.
    assert!(!env.kube.requests().iter().any(|r| r.contains("forbidden")));
    // Stdin was observed, and the exit status captured.
    let events = env.hook.events.lock().unwrap().clone();
    assert!(
        events.iter().any(|e| e == "agent-token stdin hello kube\n"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.contains("ended Some(Code(7))")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_split_across_frames_is_masked() {
    // The fake server sends exec output in messages of at most 5 bytes.
    let env = Env::start(5).await;
    let script = format!("printf 'pw=%s\\n' {FAKE_SECRET_PASSWORD}");
    // Control: without a transform the output arrives in several messages.
    let out = env
        .kubectl(
            33,
            "raw",
            &["exec", "web-0", "--", "sh", "-c", &script],
            None,
        )
        .await;
    assert_eq!(
        out.stdout,
        format!("pw={FAKE_SECRET_PASSWORD}\n"),
        "{out:?}"
    );
    let raw_messages = env
        .hook
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.starts_with("raw-token output 1"))
        .count();
    assert!(
        raw_messages >= FAKE_SECRET_PASSWORD.len() / 5,
        "{raw_messages}"
    );

    let out = env
        .kubectl(
            33,
            "agent",
            &["exec", "web-0", "--", "sh", "-c", &script],
            None,
        )
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("pw={MASKED}\n"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_kubectl_told_to_upgrade() {
    let env = Env::start(32 * 1024).await;
    let out = env
        .kubectl(29, "agent", &["exec", "web-0", "--", "echo", "hi"], None)
        .await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("use kubectl >= 1.30"), "{out:?}");
    assert!(!env.kube.requests().iter().any(|r| r.contains("/exec")));
}

/// A client that declares a 1 GiB WebSocket frame: the proxy refuses it
/// from the header alone (a failure status and a close), and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_frame_refused() {
    let env = Env::start(32 * 1024).await;
    let connector = tokio_rustls::TlsConnector::from(env.proxy_tls.client_config().unwrap());
    let tcp = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
        .unwrap()
        .to_owned();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let req = format!(
        "GET /api/v1/namespaces/default/pods/web-0/exec?command=sleep&command=30&stdin=true&stdout=true HTTP/1.1\r\n\
         Host: {}\r\nAuthorization: Bearer {AGENT}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
        env.addr
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    // FIN + binary, masked, 64-bit length 2^30, mask key, then a few bytes.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 30).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(b"\x01\x02\x03");
    tls.write_all(&frame).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the proxy did not end the stream");
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("\"status\":\"Failure\""), "{text}");
    assert!(text.contains("portcullis"), "{text}");
    // Only that stream ended: the proxy still serves.
    let out = env.kubectl(33, "agent", &["get", "pods"], None).await;
    assert_eq!(out.code, Some(0), "{out:?}");
}

/// An exec whose client never reads: once the proxy has waited
/// `client_write_timeout` to hand it more output, that stream (and its
/// remote process) ends; the proxy goes on serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_client_that_never_reads_is_ended() {
    let env = Env::start_with(32 * 1024, |c| {
        c.client_write_timeout = Duration::from_secs(1);
    })
    .await;
    let connector = tokio_rustls::TlsConnector::from(env.proxy_tls.client_config().unwrap());
    let tcp = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
        .unwrap()
        .to_owned();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let req = format!(
        "GET /api/v1/namespaces/default/pods/web-0/exec?command=yes&stdout=true HTTP/1.1\r\n\
         Host: {}\r\nAuthorization: Bearer {AGENT}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
        env.addr
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    // Read nothing more (not even the 101): `yes` fills every buffer.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let ended = loop {
        let ended = env
            .hook
            .events
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.contains(" ended "))
            .cloned();
        if let Some(e) = ended {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stream was not ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(ended.contains("the client read nothing for 1 s"), "{ended}");
    let out = env.kubectl(33, "agent", &["get", "pods"], None).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    drop(tls);
}

/// A watch never ends; its events must reach the client one by one, masked,
/// while it is still open (nothing waits for the end of the body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_masked_events() {
    let env = Env::start(32 * 1024).await;
    let mut child = tokio::process::Command::new(kubectl_bin(33))
        .arg("--kubeconfig")
        .arg(env.config("agent"))
        .arg("--cache-dir")
        .arg(env.dir.path().join("cache"))
        .args(["get", "secrets", "--watch-only", "-o", "json"])
        .env("HOME", env.dir.path())
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        // Until one whole JSON document has arrived (a read may end just
        // after an inner object's closing brace).
        while serde_json::from_slice::<serde_json::Value>(&got).is_err() {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "kubectl ended: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    };
    if tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .is_err()
    {
        child.kill().await.unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        panic!(
            "no watch event arrived: {err} {:?} {:?}",
            env.kube.requests(),
            env.hook.events.lock().unwrap()
        );
    }
    // The watch is still open.
    assert!(child.try_wait().unwrap().is_none());
    let secret: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(secret["metadata"]["name"], "db-creds");
    assert_eq!(secret["data"]["password"], STANDARD.encode(MASKED));
    assert!(env.kube.requests().iter().any(|r| r.contains("watch=true")));
    child.kill().await.unwrap();
}

/// A client that offers only `v4.channel.k8s.io` (as older client libraries
/// do) and writes stdin as a text message: relayed, status on channel 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_client_with_text_frames() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let env = Env::start(32 * 1024).await;
    let connector = tokio_rustls::TlsConnector::from(env.proxy_tls.client_config().unwrap());
    let tcp = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
        .unwrap()
        .to_owned();
    let tls = connector.connect(name, tcp).await.unwrap();
    let url = format!(
        "wss://{}/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=head%20-c%205%3B%20exit%203&stdin=true&stdout=true&stderr=true",
        env.addr
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {AGENT}").parse().unwrap());
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "v4.channel.k8s.io"
    );
    ws.send(Message::Text("\u{0}hello".into())).await.unwrap();
    let mut stdout = Vec::new();
    let mut status = None;
    let read = async {
        while let Some(msg) = ws.next().await {
            match msg.unwrap() {
                Message::Binary(b) if b.first() == Some(&1) => stdout.extend_from_slice(&b[1..]),
                Message::Binary(b) if b.first() == Some(&3) => status = Some(b[1..].to_vec()),
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("exec did not end");
    assert_eq!(stdout, b"hello");
    let status: serde_json::Value = serde_json::from_slice(&status.expect("no status")).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
}

/// A TLS connection to the proxy, as a raw client.
async fn raw_tls(env: &Env) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(env.proxy_tls.client_config().unwrap());
    let tcp = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
        .unwrap()
        .to_owned();
    connector.connect(name, tcp).await.unwrap()
}

/// One HTTP/1.1 request over a fresh connection; the whole answer.
async fn raw_http(env: &Env, head: &str, body: &[u8]) -> String {
    let mut tls = raw_tls(env).await;
    let req = format!(
        "{head}\r\nHost: {}\r\nAuthorization: Bearer {AGENT}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        env.addr,
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut got))
        .await
        .expect("no answer")
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

/// The proxy asks the API server for JSON whatever the client accepts, and
/// a write whose body it cannot read (protobuf) is refused before it is
/// decided on, unless the resource is configured as one whose body does not
/// matter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_is_never_asked_for_and_protobuf_bodies_are_refused() {
    let env = Env::start(32 * 1024).await;
    let answer = raw_http(
        &env,
        "GET /api/v1/namespaces/default/pods/web-0 HTTP/1.1\r\nAccept: application/vnd.kubernetes.protobuf, */*",
        b"",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    assert!(answer.contains("\"kind\":\"Pod\""), "{answer}");
    let out = env
        .kubectl(33, "agent", &["get", "pods", "-o", "yaml"], None)
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let accepts = env.kube.accepts();
    assert!(!accepts.is_empty());
    for a in &accepts {
        assert!(
            !a.contains("protobuf") && a.contains("application/json"),
            "{accepts:?}"
        );
    }

    // kubectl's typed create sends protobuf: refused, with how to do it.
    let out = env
        .kubectl(33, "agent", &["create", "serviceaccount", "robot"], None)
        .await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("application/vnd.kubernetes.protobuf body cannot be read by the proxy")
            && out.stderr.contains("send the object as JSON"),
        "{out:?}"
    );
    // Raw: a 415 Status; a YAML body too; a JSON one goes on.
    let answer = raw_http(
        &env,
        "POST /api/v1/namespaces/default/pods HTTP/1.1\r\nContent-Type: application/vnd.kubernetes.protobuf",
        b"k8s\0\x0a\x0d\x0a\x02v1\x12\x03Pod",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    assert!(
        answer.contains("\"reason\":\"UnsupportedMediaType\""),
        "{answer}"
    );
    let answer = raw_http(
        &env,
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nContent-Type: application/yaml",
        b"metadata:\n  name: y\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    // Server-side apply declares YAML; JSON in it is read.
    let answer = raw_http(
        &env,
        "PATCH /api/v1/namespaces/default/configmaps/app-config HTTP/1.1\r\nContent-Type: application/apply-patch+yaml",
        b"metadata: {name: app-config}",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    assert!(
        !env.kube
            .requests()
            .iter()
            .any(|r| r.starts_with("POST") || r.starts_with("PATCH")),
        "{:?}",
        env.kube.requests()
    );
    let answer = raw_http(
        &env,
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nContent-Type: application/json",
        br#"{"metadata":{"name":"from-json"},"data":{"a":"b"}}"#,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(env.kube.has_object("configmaps", "default", "from-json"));
}

/// An API server that answers in protobuf although JSON was asked for: the
/// proxy cannot mask that body, so it refuses it (for any resource), and no
/// byte of it reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_response_is_refused_not_passed() {
    let env = Env::start_full(FakeKube::builder().protobuf_responses(), 32 * 1024, |_| {}).await;
    for target in [
        "/api/v1/namespaces/default/secrets/db-creds",
        "/api/v1/namespaces/default/pods/web-0",
        "/api/v1/namespaces/default/configmaps",
    ] {
        let answer = raw_http(&env, &format!("GET {target} HTTP/1.1"), b"").await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{target}: {answer}");
        assert!(
            answer.contains("refusing a response body in application/vnd.kubernetes.protobuf"),
            "{answer}"
        );
        assert!(!answer.contains(FAKE_SECRET_PASSWORD), "{answer}");
        assert!(!answer.contains(FAKE_ENV_PASSWORD), "{answer}");
        assert!(!answer.contains("k8s\0"), "{answer}");
    }
    let out = env
        .kubectl(33, "agent", &["get", "pod", "web-0", "-o", "json"], None)
        .await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(!out.stdout.contains(FAKE_ENV_PASSWORD), "{out:?}");
}

/// Environment values are masked by the variable's name whatever they look
/// like: a pod, a list of pods, a deployment (an API group), a watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_values_masked_by_name_in_pods_and_workloads() {
    let env = Env::start(32 * 1024).await;
    for args in [
        &["get", "pod", "web-0", "-o", "yaml"][..],
        &["get", "pods", "-o", "json"],
        &["get", "deployment", "api", "-o", "yaml"],
        &["get", "deployments.apps", "-o", "json"],
    ] {
        let out = env.kubectl(33, "agent", args, None).await;
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        assert!(
            !out.stdout.contains(FAKE_ENV_PASSWORD),
            "{args:?}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains("DB_PASSWORD"),
            "{args:?}: {}",
            out.stdout
        );
        assert!(out.stdout.contains(MASKED), "{args:?}: {}", out.stdout);
        // A name that is not secret-like keeps its value.
        assert!(out.stdout.contains("debug"), "{args:?}: {}", out.stdout);
    }
    let out = env
        .kubectl(33, "raw", &["get", "deployment", "api", "-o", "yaml"], None)
        .await;
    assert!(out.stdout.contains(FAKE_ENV_PASSWORD), "{out:?}");

    // A watch: the first event arrives masked while the watch stays open.
    let mut child = tokio::process::Command::new(kubectl_bin(33))
        .arg("--kubeconfig")
        .arg(env.config("agent"))
        .arg("--cache-dir")
        .arg(env.dir.path().join("cache"))
        .args(["get", "pods", "--watch-only", "-o", "json"])
        .env("HOME", env.dir.path())
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        // Until one whole JSON document has arrived: a read may end just
        // after an inner object's closing brace.
        while serde_json::from_slice::<serde_json::Value>(&got).is_err() {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "kubectl ended: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no watch event");
    let pod: serde_json::Value = serde_json::from_slice(&got).unwrap();
    let envs = &pod["spec"]["containers"][0]["env"];
    let value = |name: &str| {
        envs.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
            .unwrap()
    };
    assert_eq!(value("DB_PASSWORD"), MASKED);
    assert_eq!(value("LOG_LEVEL"), "debug");
    child.kill().await.unwrap();
}

/// While an exec is held, the client gets the banner and pings, and its own
/// pings are answered (client-go drops a WebSocket whose pings go
/// unanswered for a minute); what it sends meanwhile is relayed once the
/// stream opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_exec_is_kept_alive_with_pings() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let env = Env::start_with(32 * 1024, |c| {
        c.hold_ping_interval = Duration::from_millis(100);
    })
    .await;
    let tls = raw_tls(&env).await;
    let url = format!(
        "wss://{}/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=echo%20needs-approval%3B%20head%20-c%205&stdin=true&stdout=true&stderr=true",
        env.addr
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {AGENT}").parse().unwrap());
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    ws.send(Message::Ping(b"are-you-there".to_vec().into()))
        .await
        .unwrap();
    ws.send(Message::Binary(b"\x00hello".to_vec().into()))
        .await
        .unwrap();
    let mut stdout = Vec::new();
    let mut pings = 0;
    let mut pong = false;
    let mut status = None;
    let read = async {
        while let Some(msg) = ws.next().await {
            match msg.unwrap() {
                Message::Ping(_) => {
                    pings += 1;
                    if pings == 5 {
                        // Held for at least 4 intervals: approve.
                        assert!(!env.kube.requests().iter().any(|r| r.contains("/exec")));
                        env.hook.approvals.send_replace(Some(true));
                    }
                }
                Message::Pong(p) => pong |= &p[..] == b"are-you-there",
                Message::Binary(b) if b.first() == Some(&1) => stdout.extend_from_slice(&b[1..]),
                Message::Binary(b) if b.first() == Some(&3) => status = Some(b[1..].to_vec()),
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("exec did not end");
    assert!(pings >= 5, "{pings} pings");
    assert!(pong, "the client's ping was not answered while held");
    let stdout = String::from_utf8(stdout).unwrap();
    assert!(
        stdout.starts_with("portcullis: held for approval (id approval-1)"),
        "{stdout}"
    );
    assert!(stdout.ends_with("needs-approval\nhello"), "{stdout}");
    let status: serde_json::Value = serde_json::from_slice(&status.expect("no status")).unwrap();
    assert_eq!(status["status"], "Success");
}

/// Malformed WebSocket frames from a client (a reserved opcode, an
/// unmasked frame) end that stream only; the proxy goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_end_only_their_stream() {
    let env = Env::start(32 * 1024).await;
    // Reserved opcode 0x3; an unmasked binary frame (a client must mask);
    // a control frame longer than 125 bytes.
    let mut long_ping = vec![0x89, 0x80 | 126, 0, 200, 1, 2, 3, 4];
    long_ping.extend_from_slice(&[0u8; 200]);
    for bad in [
        vec![0x83, 0x81, 1, 2, 3, 4, 0x41],
        vec![0x82, 0x02, 0x00, 0x41],
        long_ping,
    ] {
        let mut tls = raw_tls(&env).await;
        let req = format!(
            "GET /api/v1/namespaces/default/pods/web-0/exec?command=sleep&command=30&stdin=true&stdout=true HTTP/1.1\r\n\
             Host: {}\r\nAuthorization: Bearer {AGENT}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
            env.addr
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        tls.write_all(&bad).await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut got)).await;
        assert!(
            read.is_ok(),
            "the proxy did not end the stream for {bad:02x?}"
        );
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 101"), "{text}");
        assert!(
            text.contains("\"status\":\"Failure\""),
            "{bad:02x?}: {text}"
        );
    }
    let out = env.kubectl(33, "agent", &["get", "pods"], None).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let ended = env
        .hook
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains(" ended "))
        .count();
    assert_eq!(ended, 3);
}

/// With the idle release set to an hour, output that echoes what the client
/// just wrote on stdin (a keystroke through `cat`) still comes back at once,
/// while a secret the remote process prints in two pieces (not an echo) is
/// held until it is whole and masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_released_at_once_and_split_secret_still_masked() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let env = Env::start_with(32 * 1024, |c| {
        c.output_flush_after = Duration::from_secs(3600);
    })
    .await;
    let (head, tail) = FAKE_SECRET_PASSWORD.split_at(FAKE_SECRET_PASSWORD.len() / 2);
    let script = format!(
        "read a; echo \"$a\"; read b; echo \"$b\"; read c; printf %s {head}; sleep 0.3; printf '%s\\n' {tail}"
    );
    let script: String = script.bytes().map(|b| format!("%{b:02X}")).collect();
    let tls = raw_tls(&env).await;
    let url = format!(
        "wss://{}/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command={script}&stdin=true&stdout=true",
        env.addr
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {AGENT}").parse().unwrap());
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    // Reads stdout until `want` has arrived (or the status, or the close).
    async fn read_until(
        ws: &mut (
                 impl futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
                 + Unpin
             ),
        want: &str,
    ) -> (String, Option<serde_json::Value>) {
        let mut stdout = Vec::new();
        while let Some(msg) = ws.next().await {
            match msg.unwrap() {
                Message::Binary(b) if b.first() == Some(&1) => {
                    stdout.extend_from_slice(&b[1..]);
                    if stdout.ends_with(want.as_bytes()) {
                        break;
                    }
                }
                Message::Binary(b) if b.first() == Some(&3) => {
                    let status = serde_json::from_slice(&b[1..]).unwrap();
                    return (String::from_utf8(stdout).unwrap(), Some(status));
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        (String::from_utf8(stdout).unwrap(), None)
    }
    let limit = Duration::from_secs(30);
    for line in ["x\n", "hello there\n"] {
        ws.send(Message::Binary(format!("\0{line}").into_bytes().into()))
            .await
            .unwrap();
        let (out, _) = tokio::time::timeout(limit, read_until(&mut ws, line))
            .await
            .expect("the echo was held back");
        assert_eq!(out, line);
    }
    ws.send(Message::Binary(b"\0go\n".to_vec().into()))
        .await
        .unwrap();
    let (out, status) = tokio::time::timeout(limit, read_until(&mut ws, "\u{0}"))
        .await
        .expect("exec did not end");
    assert_eq!(out, format!("{MASKED}\n"));
    assert_eq!(status.expect("no status")["status"], "Success");
}

/// `kubectl create deployment` sends protobuf, which the proxy cannot
/// read: it is refused with a way to do the same in JSON, and that way
/// (the generator's object as JSON, piped to `kubectl create -f -`) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_create_refused_with_a_json_way_that_works() {
    let env = Env::start(32 * 1024).await;
    let args = ["create", "deployment", "web", "--image=example/web:1"];
    let out = env.kubectl(33, "agent", &args, None).await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("--dry-run=client -o json | kubectl create -f -"),
        "{out:?}"
    );
    assert!(!env.kube.requests().iter().any(|r| r.starts_with("POST")));
    let mut json_args = args.to_vec();
    json_args.extend(["--dry-run=client", "-o", "json"]);
    let object = env.kubectl(33, "agent", &json_args, None).await;
    assert_eq!(object.code, Some(0), "{object:?}");
    // (`--validate=false`: the fake server serves no OpenAPI document.)
    let out = env
        .kubectl(
            33,
            "agent",
            &["create", "--validate=false", "-f", "-"],
            Some(&object.stdout),
        )
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("deployment.apps/web created"),
        "{out:?}"
    );
    let got = env
        .kubectl(
            33,
            "agent",
            &["get", "deployment", "web", "-o", "json"],
            None,
        )
        .await;
    assert_eq!(got.code, Some(0), "{got:?}");
    assert!(got.stdout.contains("example/web:1"), "{got:?}");
}
