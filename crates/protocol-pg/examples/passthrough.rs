//! A pass-through proxy with an allow-all hook.
//!
//! ```text
//! cargo run -p portcullis-pg --example passthrough -- \
//!     --listen 127.0.0.1:6543 \
//!     --backend postgres://USER:PASSWORD@HOST:PORT/DB \
//!     --client-password X
//! psql "host=127.0.0.1 port=6543 user=anyone dbname=DB password=X"
//! ```
//!
//! Clients authenticate with `--client-password`; the backend user and
//! password from `--backend` are injected and never reach the client.

use std::sync::Arc;

use portcullis_pg::{
    Authenticated, BackendAddr, BackendTarget, BackendTls, Context, Event, Hook, Proxy,
    ProxyConfig, Rejection, SessionId, StartupParams, Transform, Verdict, async_trait,
};

struct AllowAll {
    client_password: String,
    backend: BackendTarget,
}

impl Transform for AllowAll {
    type Principal = String;
    type Plan = ();
    type ColumnPlan = ();

    fn on_event(&self, event: &Event, _plan: Option<&()>) {
        eprintln!("{event:?}");
    }
}

#[async_trait]
impl Hook for AllowAll {
    async fn authenticate(
        &self,
        _session: SessionId,
        startup: &StartupParams,
        credential: &str,
    ) -> Result<Authenticated<String>, Rejection> {
        if credential != self.client_password {
            return Err(Rejection::InvalidCredential("wrong password".into()));
        }
        Ok(Authenticated {
            principal: startup.user().to_string(),
            backend: self.backend.clone(),
        })
    }

    async fn on_query(&self, _cx: &Context<'_, String>, _sql: &str) -> Verdict<()> {
        Verdict::Forward(())
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes.get(i), bytes.get(i + 1..i + 3)) {
            (Some(b'%'), Some(hex)) => {
                match u8::from_str_radix(&String::from_utf8_lossy(hex), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            (Some(b), _) => {
                out.push(*b);
                i += 1;
            }
            (None, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `postgres://USER:PASSWORD@HOST:PORT/DB`.
fn parse_url(url: &str) -> Result<BackendTarget, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or("the backend URL must start with postgres://")?;
    let (auth, rest) = rest
        .rsplit_once('@')
        .ok_or("the backend URL needs USER:PASSWORD@")?;
    let (user, password) = auth
        .split_once(':')
        .ok_or("the backend URL needs USER:PASSWORD")?;
    let (hostport, db) = rest.split_once('/').unwrap_or((rest, user));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|e| format!("bad port: {e}"))?),
        None => (hostport, 5432),
    };
    Ok(BackendTarget {
        addr: BackendAddr::Tcp {
            host: host.to_string(),
            port,
        },
        database: percent_decode(db),
        user: percent_decode(user),
        password: percent_decode(password),
        tls: BackendTls::Disable,
        allow: Default::default(),
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:6543".to_string();
    let mut backend = None;
    let mut client_password = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs a value")?,
            "--backend" => backend = Some(args.next().ok_or("--backend needs a value")?),
            "--client-password" => {
                client_password = Some(args.next().ok_or("--client-password needs a value")?)
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let backend = parse_url(&backend.ok_or("--backend is required")?)?;
    let client_password = client_password.ok_or("--client-password is required")?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("proxying {} to {:?}", listener.local_addr()?, backend.addr);
    let proxy = Proxy::new(
        Arc::new(AllowAll {
            client_password,
            backend,
        }),
        ProxyConfig::default(),
    );
    proxy
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
