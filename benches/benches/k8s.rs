//! Kubernetes exec throughput and keystroke latency, through the proxy and
//! direct to the testkit's fake API server, in the same run.
//!
//! - `exec_stdout`: one `kubectl exec`-like WebSocket (`v5.channel.k8s.io`)
//!   reading 200 MB of log-like text a real process (`head -c`) writes on
//!   the fake server's side; through `portcullis_k8s::Proxy` with the
//!   default detector catalogue masking stdout as a stream (as the gateway
//!   does), and direct.
//! - `keystroke_echo`: one byte written on stdin of a running `cat`, timed
//!   until its echo arrives on stdout; through the proxy (masked) and
//!   direct. The difference is what the proxy adds to a keystroke. The
//!   masker holds back a tail a secret could still extend, released after
//!   `output_flush_after` without more output (5 ms by default, and 0.5 ms
//!   in the third target), but an echo of the client's own stdin is
//!   released at once, so both proxy targets measure the echo path.
//!
//! `cargo bench -p portcullis-benches --bench k8s`. Figures are recorded in
//! BENCHMARKS.md.
// A bench harness: a broken setup should stop it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use portcullis_k8s::{
    Authenticated, BackendCredential, Hook, K8sRequest, Proxy, ProxyConfig, Refusal, StreamPlan,
    StreamTransform, Upstream, Verdict, async_trait,
};
use portcullis_mask::{Masker, StreamMasker};
use portcullis_testkit::{FakeKube, SelfSignedTls};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOTAL: u64 = 200_000_000;

/// The gateway's exec transform: a streaming masker per channel.
struct MaskTransform {
    masker: &'static Masker,
    stream: Option<StreamMasker<'static>>,
}

impl StreamTransform for MaskTransform {
    fn transform(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let m = self.masker;
        let _ = self
            .stream
            .get_or_insert_with(|| m.stream())
            .push(chunk, out);
    }
    fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some(s) = self.stream.take() {
            let _ = s.finish(out);
        }
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush(out);
    }
    fn pending(&self) -> Option<usize> {
        Some(self.stream.as_ref().map_or(0, StreamMasker::pending))
    }
}

struct Bench {
    token: String,
    masker: &'static Masker,
}

#[async_trait]
impl Hook for Bench {
    type Principal = ();
    async fn authenticate(&self, _: &str) -> Result<Authenticated<()>, Refusal> {
        Ok(Authenticated {
            principal: (),
            backend: BackendCredential::BearerToken(self.token.clone()),
        })
    }
    async fn decide(&self, _: &(), _: &K8sRequest) -> Verdict {
        Verdict::Allow
    }
    fn stream_plan(&self, _: &(), _: &K8sRequest) -> StreamPlan {
        StreamPlan {
            stdout: Box::new(MaskTransform {
                masker: self.masker,
                stream: None,
            }),
            stderr: Box::new(MaskTransform {
                masker: self.masker,
                stream: None,
            }),
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn open(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, token: &str, query: &str) -> Ws {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
        .unwrap()
        .to_owned();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let url = format!("wss://{addr}/api/v1/namespaces/default/pods/web-0/exec?{query}");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_frame_size(Some(1 << 20))
        .max_message_size(Some(1 << 20));
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(cfg))
        .await
        .unwrap();
    ws
}

/// Reads one exec to its end; returns the stdout bytes seen.
async fn drain(mut ws: Ws) -> u64 {
    let mut n = 0u64;
    while let Some(msg) = ws.next().await {
        match msg.unwrap() {
            Message::Binary(b) if b.first() == Some(&1) => n += b.len() as u64 - 1,
            Message::Binary(b) if b.first() == Some(&3) => break,
            Message::Close(_) => break,
            _ => {}
        }
    }
    n
}

struct Target {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    token: String,
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let kube = FakeKube::builder().start().unwrap();
    let masker: &'static Masker = Box::leak(Box::new(Masker::builder().build().unwrap()));
    let proxy_tls = SelfSignedTls::generate().unwrap();
    // Two proxies: the defaults (held-back output released after 5 ms
    // without more), and one releasing after 0.5 ms.
    let start_proxy = |flush_after: Option<Duration>| {
        rt.block_on(async {
            let upstream = Upstream {
                authority: kube.addr().to_string(),
                server_name: rustls::pki_types::ServerName::try_from("127.0.0.1")
                    .unwrap()
                    .to_owned(),
                tls: kube.tls().client_config().unwrap(),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let hook = Arc::new(Bench {
                token: kube.token().to_owned(),
                masker,
            });
            let mut config = ProxyConfig::new(upstream);
            if let Some(f) = flush_after {
                config.output_flush_after = f;
            }
            tokio::spawn(
                Proxy::new(hook, config).serve(listener, proxy_tls.server_config().unwrap()),
            );
            addr
        })
    };
    let proxy_addr = start_proxy(None);
    let fast_addr = start_proxy(Some(Duration::from_micros(500)));
    let targets = [
        (
            "direct",
            Target {
                addr: kube.addr(),
                tls: kube.tls().client_config().unwrap(),
                token: kube.token().to_owned(),
            },
        ),
        (
            "proxy_masked",
            Target {
                addr: proxy_addr,
                tls: proxy_tls.client_config().unwrap(),
                token: "any".to_owned(),
            },
        ),
        (
            "proxy_masked_flush_0.5ms",
            Target {
                addr: fast_addr,
                tls: proxy_tls.client_config().unwrap(),
                token: "any".to_owned(),
            },
        ),
    ];
    // Log-like text (no secrets in it): what a masker scans most of the time.
    let script = format!(
        "yes 'INFO 2026-01-01T00:00:00Z GET /api/v1/items?page=3 status=200 user=alice bytes=5120 took=3ms' | head -c {TOTAL}"
    );
    let query = format!(
        "command=sh&command=-c&command={}&stdout=true",
        script
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );

    let mut g = c.benchmark_group("k8s/exec_stdout_200MB");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Bytes(TOTAL));
    for (name, t) in targets.iter().take(2) {
        g.bench_function(*name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let ws = open(t.addr, t.tls.clone(), &t.token, &query).await;
                    let n = drain(ws).await;
                    assert_eq!(n, TOTAL);
                })
            });
        });
    }
    g.finish();

    let mut g = c.benchmark_group("k8s/keystroke_echo");
    for (name, t) in &targets {
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut ws = open(
                        t.addr,
                        t.tls.clone(),
                        &t.token,
                        "command=cat&stdin=true&stdout=true",
                    )
                    .await;
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        ws.send(Message::Binary(vec![0u8, b'x'].into()))
                            .await
                            .unwrap();
                        loop {
                            match ws.next().await.unwrap().unwrap() {
                                Message::Binary(b) if b.first() == Some(&1) => break,
                                _ => {}
                            }
                        }
                        spent += start.elapsed();
                    }
                    let _ = ws.send(Message::Binary(vec![255u8, 0].into())).await;
                    let _ = ws.close(None).await;
                    spent
                })
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
