//! Starts the testkit's fake Kubernetes API server and the proxy in front of
//! it with an allow-all hook (Secret values masked, `delete namespace`
//! denied), writes two kubeconfigs and waits until killed:
//!
//! ```text
//! cargo run -p portcullis-k8s --example fake_cluster -- /tmp/kube
//! kubectl.1.33 --kubeconfig /tmp/kube/proxy get secret db-creds -o yaml   # masked
//! kubectl.1.33 --kubeconfig /tmp/kube/direct get secret db-creds -o yaml  # the fake cluster itself
//! ```
#![allow(clippy::expect_used)]

use std::sync::Arc;

use portcullis_k8s::{
    Authenticated, BackendCredential, Hook, K8sRequest, Proxy, ProxyConfig, Refusal, ResponsePlan,
    Upstream, Verb, Verdict, async_trait,
};
use portcullis_testkit::{FakeKube, SelfSignedTls, kubeconfig};

struct AllowAll {
    backend: String,
}

#[async_trait]
impl Hook for AllowAll {
    type Principal = ();

    async fn authenticate(&self, token: &str) -> Result<Authenticated<()>, Refusal> {
        if token != "agent-token" {
            return Err(Refusal {
                message: "unknown token".into(),
            });
        }
        Ok(Authenticated {
            principal: (),
            backend: BackendCredential::BearerToken(self.backend.clone()),
        })
    }

    async fn decide(&self, _: &(), r: &K8sRequest) -> Verdict {
        if r.verb == Verb::Delete && r.resource.as_deref() == Some("namespaces") {
            return Verdict::Deny {
                reason: "deleting a namespace is denied by policy".into(),
            };
        }
        Verdict::Allow
    }

    fn response_plan(&self, _: &(), _: &K8sRequest) -> ResponsePlan {
        ResponsePlan {
            secret_values: Arc::new(|_| "[MASKED]".to_owned()),
            ..ResponsePlan::default()
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/portcullis-kube".into());
    std::fs::create_dir_all(&dir).expect("create the kubeconfig directory");
    let kube = FakeKube::builder()
        .start()
        .expect("start the fake API server");
    let upstream = Upstream {
        authority: kube.addr().to_string(),
        server_name: rustls::pki_types::ServerName::try_from("127.0.0.1")
            .expect("ip")
            .to_owned(),
        tls: kube.tls().client_config().expect("client tls"),
    };
    let tls = SelfSignedTls::generate().expect("certificate");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let proxy_cfg = kubeconfig(&format!("https://{addr}"), &tls.cert_pem, "agent-token");
    std::fs::write(format!("{dir}/proxy"), proxy_cfg).expect("write kubeconfig");
    std::fs::write(format!("{dir}/direct"), kube.kubeconfig()).expect("write kubeconfig");
    println!("fake API server: {}   proxy: https://{addr}", kube.url());
    println!(
        "kubeconfigs: {dir}/proxy (through the proxy), {dir}/direct (straight to the fake server)"
    );
    let hook = Arc::new(AllowAll {
        backend: kube.token().to_owned(),
    });
    let result = Proxy::new(hook, ProxyConfig::new(upstream))
        .serve(listener, tls.server_config().expect("server tls"))
        .await;
    eprintln!("proxy stopped: {result:?}");
}
