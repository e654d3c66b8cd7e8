//! `portcullis demo`: a throwaway PostgreSQL with fake customers and a fake
//! Kubernetes API server behind a live gateway, until Ctrl-C.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_testkit::{Client, FakeKube, PgCluster, SelfSignedTls};

use crate::config::Config;
use crate::identity::{GatewayKey, TokenIssuer};

const SEED: &str = include_str!("seed.sql");
const POLICY: &str = include_str!("policy.toml");

/// Runs the demo; returns when Ctrl-C is pressed, having cleaned up.
pub(crate) fn run(listen: &str, admin: &str, kube_listen: &str) -> Result<(), String> {
    let pg = PgCluster::start().map_err(|e| format!("starting PostgreSQL: {e}"))?;
    let backend_password = random_hex(16)?;
    let out = Client::psql(&pg.dsn())
        .map_err(|e| e.to_string())?
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-f", "-"])
        .arg(format!("--variable=gateway_password={backend_password}"))
        .stdin(SEED)
        .run()
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!("seeding the demo schema: {}", out.stderr));
    }

    let dir = tempfile::Builder::new()
        .prefix("portcullis-demo-")
        .tempdir()
        .map_err(|e| format!("creating the demo's directory: {e}"))?;
    let d = dir.path();
    let key_pem = GatewayKey::generate_pem()?;
    crate::trust::write_new_private(&d.join("gateway.pem"), key_pem.as_bytes())?;
    crate::trust::write_new_private(&d.join("backend.pw"), backend_password.as_bytes())?;
    std::fs::write(d.join("policy.toml"), POLICY).map_err(|e| e.to_string())?;
    // The Kubernetes leg: a fake API server (a pod whose environment, and a
    // Secret, hold fake credentials; exec runs a real local shell) behind
    // the gateway's own TLS listener.
    let kube = FakeKube::builder()
        .start()
        .map_err(|e| format!("starting the fake Kubernetes API server: {e}"))?;
    let listener_tls = SelfSignedTls::generate().map_err(|e| e.to_string())?;
    std::fs::write(d.join("cluster-ca.pem"), &kube.tls().cert_pem).map_err(|e| e.to_string())?;
    crate::trust::write_new_private(&d.join("cluster.token"), kube.token().as_bytes())?;
    std::fs::write(d.join("gateway.crt"), &listener_tls.cert_pem).map_err(|e| e.to_string())?;
    crate::trust::write_new_private(&d.join("gateway.key"), listener_tls.key_pem.as_bytes())?;
    let config_text = format!(
        r#"# Written by `portcullis demo`.
[[listener]]
address = "{listen}"

[[connection]]
name = "shop"
kind = "postgres"
host = "127.0.0.1"
port = {pg_port}
database = "postgres"
user = "portcullis_gateway"
password_file = "backend.pw"
labels = {{ env = "demo" }}

[[connection]]
name = "cluster"
kind = "kubernetes"
labels = {{ env = "demo" }}

[connection.kubernetes]
server = "{kube_url}"
ca_file = "cluster-ca.pem"
token_file = "cluster.token"
listen = "{kube_listen}"
tls_cert = "gateway.crt"
tls_key = "gateway.key"
recordings_dir = "recordings"

[identity]
signing_key = "gateway.pem"
revocation_file = "revoked"

[policy]
file = "policy.toml"

[[masking.field]]
name = "api_key"

[audit.jsonl]
dir = "audit"
chain = "demo"

[admin]
address = "{admin}"
"#,
        pg_port = pg.port(),
        kube_url = kube.url(),
    );
    let config_path = d.join("portcullis.toml");
    std::fs::write(&config_path, config_text).map_err(|e| e.to_string())?;
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;

    let key = GatewayKey::from_pem(&key_pem)?;
    let issuer = TokenIssuer {
        key: &key,
        issuer: &config.identity.issuer,
        audience: &config.identity.audience,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let agent = issuer.issue("agent:demo-bot", &["agents".to_owned()], 3600, now)?;
    let approver = issuer.issue("human:alice", &["dba".to_owned()], 3600, now)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let running = crate::serve::start(&config).await.map_err(|e| {
            format!("{e}\n(another program may be using the port: try --listen 127.0.0.1:6543 --admin 127.0.0.1:9091 --kube-listen 127.0.0.1:8444)")
        })?;
        let kubeconfig = d.join("kubeconfig");
        if let Some((name, addr)) = running.kubernetes.first() {
            let text = crate::k8s::kubeconfig(
                name,
                &format!("https://{addr}"),
                &listener_tls.cert_pem,
                &agent.token,
                "default",
            );
            crate::trust::write_new_private(&kubeconfig, text.as_bytes())?;
        }
        let gw = running.listeners.first().copied();
        let admin_url = running.admin.map(|a| format!("http://{a}")).unwrap_or_default();
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "portcullis".to_owned());
        if let Some(gw) = gw {
            print_banner(&pg, gw, &admin_url, d, &exe, &agent.token, &approver.token);
            if let Some((_, addr)) = running.kubernetes.first() {
                print_kube_banner(&kube.url(), *addr, &kubeconfig);
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("\nportcullis demo: stopping; removing the database and {}", d.display());
        running.shutdown().await
    })?;
    drop(pg);
    drop(kube);
    Ok(())
}

fn print_kube_banner(cluster: &str, gw: std::net::SocketAddr, kubeconfig: &Path) {
    println!(
        "\
Kubernetes (fake cluster)  {cluster}   (pod web-0, Secret db-creds; exec runs a local shell)
  gateway                  https://{gw}   (kubectl connects here with the agent's token)

Use kubectl (1.30 or later) as the agent:

  export KUBECONFIG={kubeconfig}
  kubectl get pods
  kubectl get secret db-creds -o yaml                        # values masked
  kubectl exec web-0 -- sh -c 'echo postgres://app:s3cret@db/app'   # output masked
  kubectl delete namespace prod                              # denied by policy
  kubectl create serviceaccount robot                        # held for approval

Each exec is recorded (masked) in {recordings}/; replay one with
  asciinema play {recordings}/<file>.cast
",
        kubeconfig = kubeconfig.display(),
        recordings = kubeconfig.with_file_name("recordings").display(),
    );
}

fn print_banner(
    pg: &PgCluster,
    gw: std::net::SocketAddr,
    admin_url: &str,
    dir: &Path,
    exe: &str,
    agent: &str,
    approver: &str,
) {
    println!(
        "\
Portcullis demo is running (Ctrl-C stops it and removes everything).

  PostgreSQL (throwaway)   127.0.0.1:{pg_port}, schema `shop` with fake customers
  gateway                  {gw}   (the agent connects here; it never sees the backend password)
  admin API                {admin_url}
  audit trail              {dir}/audit/

Connect as the agent (a token for agent:demo-bot, valid one hour):

  psql \"host={host} port={port} user=shop dbname=postgres sslmode=disable password={agent}\"

Then try:

  select name, email, card_number, api_key, notes from customers;   -- masked
  drop table orders;                                                 -- denied by policy
  delete from orders;                                                -- held for approval

Approve a held statement as human:alice (group dba), from another terminal:

  export PORTCULLIS_TOKEN={approver}
  {exe} approvals list --admin {admin_url}
  {exe} approvals approve <id> --admin {admin_url}

Verify the trail afterwards:  {exe} audit verify {dir}/audit/*.jsonl
",
        pg_port = pg.port(),
        dir = dir.display(),
        host = gw.ip(),
        port = gw.port(),
    );
}

fn random_hex(bytes: usize) -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut raw = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| "no randomness".to_owned())?;
    Ok(hex::encode(raw))
}
