//! `portcullis serve` with a Kubernetes connection, end to end: the testkit's
//! fake API server behind the gateway as a real process, real kubectl
//! (1.30+) with the kubeconfig `portcullis kubeconfig` prints, and the CLI as
//! the approver.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use portcullis_testkit::{FAKE_SECRET_PASSWORD, FakeKube, SelfSignedTls, find_kubectl};

const POLICY: &str = r#"
default = "deny"
on_unparsed = "deny"

[review]
groups = ["ops"]
min_approvals = 1
timeout = "5m"

[[rule]]
id = "k8s-read"
effect = "allow"
when.k8s.verb = ["get", "list", "watch"]

[[rule]]
id = "k8s-exec-default"
effect = "allow"
when.k8s.verb = "exec"
when.k8s.namespace = "default"

[[rule]]
id = "no-namespace-delete"
effect = "deny"
reason = "deleting a namespace is not allowed through the gateway"
when.k8s.verb = "delete"
when.k8s.resource = "namespaces"

[[rule]]
id = "no-rm"
effect = "deny"
reason = "deleting files in a pod is not allowed"
when.k8s.verb = "exec"
when.k8s.command = ["rm *", "sh -c *rm *"]

[[rule]]
id = "no-privileged"
effect = "deny"
reason = "privileged containers are not allowed"
when.k8s.risk = "privileged"

[[rule]]
id = "review-serviceaccounts"
effect = "review"
when.k8s.verb = "create"
when.k8s.resource = "serviceaccounts"
"#;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn portcullis(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kubectl_bin(minor: u32) -> PathBuf {
    find_kubectl(minor)
        .unwrap_or_else(|| panic!("kubectl.1.{minor} not installed (apt-get install kubectl)"))
}

struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    admin: String,
    kube: FakeKube,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start() -> Gateway {
        Gateway::start_with(false)
    }

    /// `client_cert`: the gateway presents a client certificate to the
    /// cluster instead of a bearer token.
    fn start_with(client_cert: bool) -> Gateway {
        Gateway::start_full(client_cert, true)
    }

    /// `enforce = false`: observe mode.
    fn start_full(client_cert: bool, enforce: bool) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut builder = FakeKube::builder().output_frame_limit(7);
        let credential = if client_cert {
            let client = SelfSignedTls::generate().unwrap();
            std::fs::write(d.join("client.crt"), &client.cert_pem).unwrap();
            std::fs::write(d.join("client.key"), &client.key_pem).unwrap();
            builder = builder.client_certificate(&client.cert_pem).unwrap();
            "client_cert = \"client.crt\"\nclient_key = \"client.key\""
        } else {
            "token_file = \"cluster.token\""
        };
        let kube = builder.start().unwrap();
        let (ok, _, err) = portcullis(d, &["token", "keygen", "--out", "gateway.pem"]);
        assert!(ok, "{err}");
        std::fs::write(d.join("policy.toml"), POLICY).unwrap();
        std::fs::write(d.join("cluster-ca.pem"), &kube.tls().cert_pem).unwrap();
        std::fs::write(d.join("cluster.token"), format!("{}\n", kube.token())).unwrap();
        let listener_tls = SelfSignedTls::generate().unwrap();
        std::fs::write(d.join("gw.crt"), &listener_tls.cert_pem).unwrap();
        std::fs::write(d.join("gw.key"), &listener_tls.key_pem).unwrap();
        let port = free_port();
        let admin_port = free_port();
        let config = format!(
            r#"
[[connection]]
name = "cluster"
kind = "kubernetes"
labels = {{ env = "test" }}

[connection.kubernetes]
server = "{server}"
ca_file = "cluster-ca.pem"
{credential}
listen = "127.0.0.1:{port}"
tls_cert = "gw.crt"
tls_key = "gw.key"
recordings_dir = "recordings"

[identity]
signing_key = "gateway.pem"

[policy]
file = "policy.toml"
enforce = {enforce}

[audit.jsonl]
dir = "audit"
chain = "gw-test"

[admin]
address = "127.0.0.1:{admin_port}"
"#,
            server = kube.url()
        );
        std::fs::write(d.join("portcullis.toml"), config).unwrap();
        let (ok, out, err) = portcullis(d, &["check", "--config", "portcullis.toml"]);
        assert!(ok, "check failed: {out}{err}");

        let mut child = Command::new(bin())
            .args(["serve", "--config", "portcullis.toml"])
            .current_dir(d)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the gateway exited: {seen}"))
                .unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("admin API on") {
                break;
            }
        }
        assert!(
            seen.contains(&format!(
                "Kubernetes clients (connection cluster) on https://127.0.0.1:{port}"
            )),
            "{seen}"
        );
        std::thread::spawn(move || for _ in lines {});
        Gateway {
            child,
            dir,
            admin: format!("http://127.0.0.1:{admin_port}"),
            kube,
        }
    }

    fn token(&self, principal: &str, groups: &str) -> String {
        let (ok, out, err) = portcullis(
            self.dir.path(),
            &[
                "token",
                "issue",
                "--principal",
                principal,
                "--groups",
                groups,
            ],
        );
        assert!(ok, "{err}");
        out.trim().to_owned()
    }

    /// Writes the kubeconfig `portcullis kubeconfig` prints for `principal`.
    fn kubeconfig(&self, file: &str, principal: &str) -> PathBuf {
        let (ok, out, err) = portcullis(
            self.dir.path(),
            &[
                "kubeconfig",
                "--connection",
                "cluster",
                "--principal",
                principal,
                "--groups",
                "agents",
            ],
        );
        assert!(ok, "{err}");
        let path = self.dir.path().join(file);
        std::fs::write(&path, out).unwrap();
        path
    }

    fn kubectl(&self, minor: u32, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(kubectl_bin(minor))
            .arg("--kubeconfig")
            .arg(config)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            let mut s = child.stdin.take().unwrap();
            s.write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn trail(&self) -> Vec<PathBuf> {
        portcullis_audit::trail_files(&self.dir.path().join("audit"), "gw-test").unwrap()
    }

    fn records(&self) -> Vec<serde_json::Value> {
        self.trail()
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .collect::<Vec<_>>()
            })
            .map(|v| v.get("event").cloned().unwrap_or(v))
            .collect()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn kubectl_through_the_gateway_is_decided_masked_and_audited() {
    let gw = Gateway::start();
    let cfg = gw.kubeconfig("agent.kubeconfig", "agent:ci-bot");

    // Allowed reads, with every Secret value masked whole.
    let out = gw.kubectl(33, &cfg, &["get", "pods", "-o", "name"], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "pod/web-0");

    let out = gw.kubectl(
        33,
        &cfg,
        &[
            "get",
            "secret",
            "db-creds",
            "-o",
            "jsonpath={.data.password}",
        ],
        None,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        STANDARD.decode(stdout.trim()).unwrap(),
        b"[MASKED:k8s-secret]"
    );
    let out = gw.kubectl(31, &cfg, &["get", "secret", "db-creds", "-o", "yaml"], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("name: db-creds"), "{stdout}");
    assert!(
        !stdout.contains(&STANDARD.encode(FAKE_SECRET_PASSWORD)),
        "{stdout}"
    );

    // The pod's environment goes through the detectors.
    let out = gw.kubectl(32, &cfg, &["get", "pod", "web-0", "-o", "json"], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("DATABASE_URL"), "{stdout}");
    assert!(!stdout.contains(FAKE_SECRET_PASSWORD), "{stdout}");
    assert!(
        stdout.contains("[MASKED:postgres-uri-password]"),
        "{stdout}"
    );

    // A denied request shows the policy's reason, and never reaches the cluster.
    let out = gw.kubectl(33, &cfg, &["delete", "namespace", "prod"], None);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("deleting a namespace is not allowed through the gateway")
            && stderr.contains("no-namespace-delete"),
        "{stderr}"
    );
    assert!(gw.kube.has_object("namespaces", "", "prod"));

    // Exec: allowed, output masked (the fake server splits it into 7-byte
    // messages, so the secret crosses many frames), exit code propagated,
    // stdin relayed.
    let script = format!("echo url=postgres://app:{FAKE_SECRET_PASSWORD}@db:5432/app; exit 3");
    for minor in [30, 33] {
        let out = gw.kubectl(
            minor,
            &cfg,
            &["exec", "web-0", "--", "sh", "-c", &script],
            None,
        );
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(3), "1.{minor}: {stdout}{stderr}");
        assert!(stdout.starts_with("url=postgres://"), "1.{minor}: {stdout}");
        assert!(
            !stdout.contains(FAKE_SECRET_PASSWORD),
            "1.{minor}: {stdout}"
        );
        assert!(stdout.contains("[MASKED"), "1.{minor}: {stdout}");
    }
    let out = gw.kubectl(
        33,
        &cfg,
        &["exec", "-i", "web-0", "--", "cat"],
        Some("hello\n"),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "hello\n");

    // Each exec was recorded as asciicast v2, masked, which asciinema reads.
    let casts: Vec<PathBuf> = std::fs::read_dir(gw.dir.path().join("recordings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(casts.len(), 3, "{casts:?}");
    let mut shown = String::new();
    for cast in &casts {
        let raw = std::fs::read_to_string(cast).unwrap();
        assert!(!raw.contains(FAKE_SECRET_PASSWORD), "{raw}");
        assert!(raw.starts_with(r#"{"version":2,"#), "{raw}");
        // asciinema cat opens /dev/tty: give it one with `script`.
        let out = Command::new("script")
            .args([
                "-qec",
                &format!("asciinema cat '{}'", cast.display()),
                "/dev/null",
            ])
            .output()
            .expect("`script` (util-linux) and asciinema (apt-get install asciinema)");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        shown.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    assert!(
        shown.contains("url=postgres://app:[MASKED:postgres-uri-password]@db:5432/app"),
        "{shown}"
    );
    assert!(shown.contains("hello"), "{shown}");

    // A denied exec fails with the reason.
    let out = gw.kubectl(
        33,
        &cfg,
        &["exec", "web-0", "--", "rm", "-rf", "/data"],
        None,
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("deleting files in a pod is not allowed (policy rule no-rm)"),
        "{stderr}"
    );

    // A JSON create's body is analysed: a privileged pod is refused.
    let pod = gw.dir.path().join("pod.json");
    std::fs::write(
        &pod,
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"root-shell"},
            "spec":{"containers":[{"name":"c","image":"busybox",
            "securityContext":{"privileged":true}}]}}"#,
    )
    .unwrap();
    let out = gw.kubectl(
        33,
        &cfg,
        &["create", "--validate=false", "-f", pod.to_str().unwrap()],
        None,
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("privileged containers are not allowed (policy rule no-privileged)"),
        "{stderr}"
    );

    // A bad token is refused.
    let bad = gw.dir.path().join("bad.kubeconfig");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("\"token\": \"", "\"token\": \"x"),
    )
    .unwrap();
    let out = gw.kubectl(33, &bad, &["get", "pods"], None);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("neither a valid token nor a known API key"),
        "{stderr}"
    );

    // Every request the cluster served has its `command` record, allowed,
    // written before it was forwarded; the trail verifies.
    let records = gw.records();
    let commands: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["type"] == "command").collect();
    for served in gw.kube.requests() {
        let (method_path, _) = served.split_once('?').unwrap_or((&served, ""));
        assert!(
            commands.iter().any(|c| {
                c["effect"] == "allow"
                    && c["text"]
                        .as_str()
                        .is_some_and(|t| t.starts_with(method_path))
            }),
            "no allowed command record for {served}"
        );
    }
    assert!(
        commands
            .iter()
            .any(|c| c["effect"] == "deny" && c["rule_id"] == "no-namespace-delete"),
        "{commands:?}"
    );
    let trail_text: String = gw
        .trail()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(!trail_text.contains(FAKE_SECRET_PASSWORD));
    assert!(trail_text.contains("auth_failed"));
    assert!(
        records.iter().any(|r| r["type"] == "command_result"
            && r["masked"]["k8s-secret"].as_u64() == Some(2)),
        "no result with the two Secret values masked"
    );
    assert!(
        records.iter().any(|r| r["type"] == "command_result"
            && r["error_code"] == "exit 3"
            && r["error_message"]
                .as_str()
                .is_some_and(|m| m.contains("recording: "))),
        "no exec result with its exit code and recording"
    );
    let report = portcullis_audit::verify(&gw.trail());
    assert!(report.is_intact(), "{report:?}");
    let (ok, out, err) = portcullis(gw.dir.path(), &["audit", "verify", "audit"]);
    assert!(ok, "{out}{err}");
}

#[test]
fn a_held_create_runs_once_an_operator_approves() {
    let gw = Gateway::start();
    let cfg = gw.kubeconfig("agent.kubeconfig", "agent:ci-bot");
    let alice = gw.token("human:alice", "ops");
    // Sent as JSON (read whole by the gateway before the decision, then
    // forwarded as read).
    let sa = gw.dir.path().join("sa.json");
    std::fs::write(
        &sa,
        r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"robot"}}"#,
    )
    .unwrap();
    let held = {
        let cfg = cfg.clone();
        let sa = sa.clone();
        let bin = kubectl_bin(33);
        let home = gw.dir.path().to_owned();
        std::thread::spawn(move || {
            Command::new(bin)
                .arg("--kubeconfig")
                .arg(&cfg)
                .arg("--cache-dir")
                .arg(home.join("cache-held"))
                .args(["create", "--validate=false", "-f"])
                .arg(&sa)
                .env("HOME", &home)
                .env_remove("KUBECONFIG")
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let (ok, out, err) = portcullis(
            gw.dir.path(),
            &["approvals", "list", "--admin", &gw.admin, "--token", &alice],
        );
        assert!(ok, "{err}");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        if let Some(p) = list.as_array().and_then(|a| a.first()) {
            assert_eq!(p["connection"], "cluster");
            assert!(
                p["command"]
                    .as_str()
                    .unwrap()
                    .starts_with("POST /api/v1/namespaces/default/serviceaccounts"),
                "{p}"
            );
            break p["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no approval request appeared");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!gw.kube.has_object("serviceaccounts", "default", "robot"));
    let (ok, out, err) = portcullis(
        gw.dir.path(),
        &[
            "approvals",
            "approve",
            &id,
            "--admin",
            &gw.admin,
            "--token",
            &alice,
        ],
    );
    assert!(ok, "{out}{err}");
    let out = held.join().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(gw.kube.has_object("serviceaccounts", "default", "robot"));
    let records = gw.records();
    for kind in ["approval_requested", "approval_granted"] {
        assert!(
            records.iter().any(|r| r["type"] == kind),
            "no {kind} record"
        );
    }
    assert!(portcullis_audit::verify(&gw.trail()).is_intact());
}

#[test]
fn the_cluster_credential_can_be_a_client_certificate() {
    let gw = Gateway::start_with(true);
    let cfg = gw.kubeconfig("agent.kubeconfig", "agent:ci-bot");
    let out = gw.kubectl(33, &cfg, &["get", "pods", "-o", "name"], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "pod/web-0");
    let out = gw.kubectl(33, &cfg, &["exec", "web-0", "--", "echo", "hi"], None);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "hi\n");
    // The cluster saw the requests (authenticated by the certificate alone).
    assert!(
        gw.kube
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/namespaces/default/pods")),
        "{:?}",
        gw.kube.requests()
    );
}

/// Observe mode on the Kubernetes leg: a request the policy would deny is
/// forwarded, and its record keeps the decision the policy would have taken.
#[test]
fn observe_mode_forwards_what_it_would_deny_and_records_the_decision() {
    let gw = Gateway::start_full(false, false);
    let cfg = gw.kubeconfig("agent.kubeconfig", "agent:ci-bot");
    assert!(gw.kube.has_object("namespaces", "", "prod"));
    let out = gw.kubectl(33, &cfg, &["delete", "namespace", "prod"], None);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!gw.kube.has_object("namespaces", "", "prod"));
    let records = gw.records();
    let deny = records
        .iter()
        .find(|r| {
            r.get("type").and_then(|t| t.as_str()) == Some("command")
                && r.get("effect").and_then(|e| e.as_str()) == Some("deny")
        })
        .unwrap_or_else(|| panic!("no deny record: {records:?}"));
    let reason = deny.get("reason").and_then(|r| r.as_str()).unwrap();
    assert!(
        reason.starts_with("observe mode ([policy] enforce = false), forwarded")
            && reason.contains("deleting a namespace is not allowed"),
        "{reason}"
    );
}
