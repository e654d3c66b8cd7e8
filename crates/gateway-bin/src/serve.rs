//! `portcullis serve`: a configuration turned into running listeners.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use portcullis_audit::{AuditSink, Commit, FanoutSink, JsonlOptions, JsonlSink, PostgresOptions};
use portcullis_mask::{FieldRule, Masker, Rule, Style};
use portcullis_pg::{Allowances, BackendAddr, BackendTarget, BackendTls, Proxy, ProxyConfig};
use portcullis_policy::{Resource, ResourceKind};
use tokio::sync::watch;

use crate::admin::{AdminState, router};
use crate::approvals::ApprovalStore;
use crate::config::{self, Config, MaskStyle};
use crate::gateway::{Connection, Gateway, GatewayParts, IdentityStore};

/// A gateway whose listeners are bound, ready to serve.
pub(crate) struct Running {
    pub(crate) gateway: Arc<Gateway>,
    /// The bound PostgreSQL listeners' addresses (port 0 resolved).
    pub(crate) listeners: Vec<SocketAddr>,
    /// The Kubernetes connections' listeners: (connection, address).
    pub(crate) kubernetes: Vec<(String, SocketAddr)>,
    pub(crate) admin: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<Result<(), String>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("listeners", &self.listeners)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Asks every listener to stop and waits for their sessions.
    pub(crate) async fn shutdown(mut self) -> Result<(), String> {
        let _ = self.stop.send(true);
        let mut first_err = None;
        while let Some(r) = self.tasks.join_next().await {
            match r {
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(e) => first_err = first_err.or(Some(e.to_string())),
                Ok(Ok(())) => {}
            }
        }
        self.gateway
            .audit
            .flush()
            .await
            .map_err(|e| e.to_string())?;
        first_err.map_or(Ok(()), Err)
    }
}

/// Builds everything the configuration describes and binds its listeners.
pub(crate) async fn start(config: &Config) -> Result<Running, String> {
    let gateway = Arc::new(build_gateway(config).await?);
    crate::approvals::replicas::run(&gateway);
    // OIDC key sets from URLs: fetched before the first client, then every
    // five minutes (a failed refresh keeps the keys it had, and says so).
    let urls = crate::trust::jwks_urls(config);
    for (issuer, set) in crate::trust::fetch_jwks_urls(&urls).await? {
        gateway.identity.set_jwks(&issuer, set);
    }
    if !urls.is_empty() {
        let g = gateway.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
            tick.tick().await;
            loop {
                tick.tick().await;
                match crate::trust::fetch_jwks_urls(&urls).await {
                    Ok(sets) => {
                        for (issuer, set) in sets {
                            g.identity.set_jwks(&issuer, set);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshing OIDC key sets failed; keeping the old ones")
                    }
                }
            }
        });
    }
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut listeners = Vec::new();
    let kubernetes = crate::k8s::start(config, &gateway, &stop_rx, &mut tasks).await?;
    if config.listeners.is_empty() && kubernetes.is_empty() {
        return Err("the configuration has no [[listener]]".to_owned());
    }
    for l in &config.listeners {
        let addr = l.address.get_ref();
        let tcp = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| format!("listening on {addr}: {e}"))?;
        listeners.push(tcp.local_addr().map_err(|e| e.to_string())?);
        let mut proxy_config = ProxyConfig {
            max_sessions: Some(config.limits.max_sessions),
            write_timeout: Duration::from_secs(config.limits.write_timeout_secs.max(1)),
            ..ProxyConfig::default()
        };
        proxy_config.session.handshake_timeout =
            Duration::from_secs(config.limits.handshake_timeout_secs.max(1));
        if let (Some(cert), Some(key)) = (&l.tls_cert, &l.tls_key) {
            proxy_config.client_tls =
                Some(server_tls(&config.resolve(cert), &config.resolve(key))?);
        }
        if config
            .connections
            .iter()
            .any(|c| c.tls() != config::BackendTls::Disable)
        {
            proxy_config.backend_tls = Some(client_tls()?);
        }
        let proxy = Proxy::new(gateway.clone(), proxy_config);
        let mut rx = stop_rx.clone();
        tasks.spawn(async move {
            proxy
                .serve(tcp, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
                .map_err(|e| format!("listener: {e}"))
        });
    }
    let mut admin = None;
    if let Some(a) = &config.admin {
        let addr = a.address.get_ref();
        let tcp = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| format!("admin listener on {addr}: {e}"))?;
        let admin_tls = match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => {
                Some(server_tls(&config.resolve(cert), &config.resolve(key))?)
            }
            (None, None) => None,
            _ => return Err("[admin] needs both tls_cert and tls_key, or neither".to_owned()),
        };
        let bound = tcp.local_addr().map_err(|e| e.to_string())?;
        if admin_tls.is_none() && !bound.ip().is_loopback() {
            return Err(format!(
                "[admin] address {addr} is not a loopback address: the admin API and the \
                 approval page carry tokens and decisions, so give it tls_cert and tls_key"
            ));
        }
        admin = Some(tcp.local_addr().map_err(|e| e.to_string())?);
        let g = gateway.clone();
        let h = gateway.clone();
        let l = gateway.clone();
        let k = gateway.clone();
        let prometheus = crate::metrics::install();
        let state = AdminState {
            approvals: gateway.approvals.clone(),
            authenticate: Arc::new(move |token: &str| g.identity.verify(token)),
            sessions: Arc::new(move || crate::approvals::replicas::sessions(l.clone())),
            kill: Arc::new(move |id, by| crate::approvals::replicas::kill(k.clone(), id, by)),
            operator_groups: a.operator_groups.clone(),
            tls: admin_tls.is_some(),
            metrics: Arc::new(move || prometheus.as_ref().map_or_else(String::new, |p| p.render())),
            health: Arc::new(move || {
                let h = h.clone();
                Box::pin(async move { h.health().await })
                    as Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
            }),
        };
        let mut rx = stop_rx.clone();
        match admin_tls {
            None => {
                tasks.spawn(async move {
                    axum::serve(tcp, router(state))
                        .with_graceful_shutdown(async move {
                            let _ = rx.wait_for(|s| *s).await;
                        })
                        .await
                        .map_err(|e| format!("admin listener: {e}"))
                });
            }
            Some(tls) => {
                tasks.spawn(crate::admin::serve_tls(
                    tcp,
                    router(state),
                    tls,
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                ));
            }
        }
    }
    Ok(Running {
        gateway,
        listeners,
        kubernetes,
        admin,
        stop,
        tasks,
    })
}

async fn build_gateway(config: &Config) -> Result<Gateway, String> {
    let verifier = crate::trust::build_verifier(config)?;
    let identity = IdentityStore::new(
        verifier,
        config
            .identity
            .revocation_file
            .as_ref()
            .map(|f| config.resolve(f)),
    );

    let catalog_values = match config.masking.catalog_views {
        config::CatalogViews::Mask => portcullis_policy::CatalogValues::Mask,
        config::CatalogViews::Clear => portcullis_policy::CatalogValues::Clear,
    };
    let mut connections = HashMap::new();
    for c in &config.connections {
        if c.kind != config::ConnectionKind::Postgres {
            continue; // served by crate::k8s
        }
        let name = c.name.get_ref().clone();
        let mut resource = Resource::new(name.clone(), ResourceKind::Postgres);
        for (k, v) in &c.labels {
            resource = resource.with_label(k.clone(), v.clone());
        }
        let backend = backend_target(config, c)?;
        connections.insert(
            name,
            Connection {
                backend,
                resource,
                masked: Arc::new(crate::catalog::MaskedColumns::new(catalog_values)),
            },
        );
    }

    let policy_section = config.policy.as_ref().ok_or(
        "the configuration has no [policy] file: without one every command would be refused",
    )?;
    let policy_path = config.resolve(&policy_section.file);
    let field_patterns: Vec<String> = config
        .masking
        .field
        .iter()
        .map(|f| f.name.clone())
        .collect();
    // The analysis knows the masked columns (`masked_column_predicate`),
    // read with the same matcher as the masking.
    let matchers: Vec<portcullis_mask::FieldPattern> = field_patterns
        .iter()
        .map(|p| portcullis_mask::FieldPattern::new(p))
        .collect();
    let policy = crate::policy_file::load(&policy_path)?
        .with_masked_column_matcher(move |name| matchers.iter().any(|m| m.matches(name)));

    if !policy_section.enforce {
        tracing::warn!(
            policy = %policy_path.display(),
            "observe mode ([policy] enforce = false): commands are decided and recorded but \
             never refused or held"
        );
    }
    let masker = build_masker(config)?;
    let audit = build_audit(config).await?;
    Ok(Gateway::new(GatewayParts {
        identity,
        connections,
        policy,
        masker,
        approvals: Arc::new(approval_store(config, &audit).await?),
        audit,
        end_session_on_expiry: config.identity.end_session_on_expiry,
        enforce: policy_section.enforce,
        max_sessions_per_principal: config.limits.max_sessions_per_principal,
        field_patterns,
        budgets: crate::budgets::Budgets::from_specs(&config.budgets)
            .map_err(|(_, message)| format!("[[budget]]: {message}"))?,
    }))
}

/// Approvals in memory, or in PostgreSQL shared by replicas
/// (`[approvals] postgres_dsn_env`); decisions are recorded in `audit`.
async fn approval_store(
    config: &Config,
    audit: &Arc<dyn AuditSink>,
) -> Result<ApprovalStore, String> {
    let section = config.approvals.as_ref();
    let replica = section
        .and_then(|a| a.replica.clone())
        .unwrap_or_else(|| "local".to_owned());
    let store = match section.and_then(|a| a.postgres_dsn_env.as_ref()) {
        None => ApprovalStore::new(
            Arc::new(crate::approvals::Memory::default()),
            Some(audit.clone()),
            &replica,
        ),
        Some(env) => {
            let dsn = std::env::var(env)
                .map_err(|_| format!("approvals: environment variable {env} is not set"))?;
            ApprovalStore::postgres(&dsn, &replica, Some(audit.clone())).await?
        }
    };
    let page = section.and_then(|a| a.page_url.clone()).or_else(|| {
        config
            .admin
            .as_ref()
            .map(|a| format!("http://{}", a.address.get_ref()))
    });
    let hooks = section.map(|a| a.webhooks.clone()).unwrap_or_default();
    if hooks.is_empty() {
        return Ok(store);
    }
    let webhooks = crate::approvals::webhooks::Webhooks::new(hooks, page, Some(audit.clone()))?;
    Ok(store.with_webhooks(webhooks))
}

/// The backend a PostgreSQL connection reaches, as the sessions and the
/// catalog reach it: address, injected credential, TLS and the backend
/// authentication it allows.
pub(crate) fn backend_target(
    config: &Config,
    c: &config::Connection,
) -> Result<BackendTarget, String> {
    let password = backend_password(config, c)?;
    let mut allow = Allowances::default();
    allow.drop_unknown_startup_params = c.startup_params == config::StartupParams::Drop;
    for m in &c.allow_backend_auth {
        match m {
            config::BackendAuthMethod::Md5 => allow.backend_md5 = true,
            config::BackendAuthMethod::Password => allow.backend_cleartext = true,
            config::BackendAuthMethod::Trust => allow.backend_trust = true,
        }
    }
    allow.require_channel_binding = c.channel_binding() == config::ChannelBinding::Require;
    Ok(BackendTarget {
        allow,
        addr: BackendAddr::Tcp {
            host: c.host.clone(),
            port: c.port,
        },
        database: c.database.clone(),
        user: c.user.clone(),
        password,
        tls: match c.tls() {
            config::BackendTls::Disable => BackendTls::Disable,
            config::BackendTls::Require | config::BackendTls::VerifyFull => BackendTls::Require {
                server_name: c.host.clone(),
            },
        },
    })
}

pub(crate) fn backend_password(config: &Config, c: &config::Connection) -> Result<String, String> {
    let name = c.name.get_ref();
    if let Some(var) = &c.password_env {
        return std::env::var(var)
            .map_err(|_| format!("connection {name}: environment variable {var} is not set"));
    }
    if let Some(f) = &c.password_file {
        let f = config.resolve(f);
        let text = std::fs::read_to_string(&f)
            .map_err(|e| format!("connection {name}: {}: {e}", f.display()))?;
        return Ok(text.trim_end_matches(['\r', '\n']).to_owned());
    }
    if let Some(p) = &c.password {
        return Ok(p.get_ref().clone());
    }
    Err(format!("connection {name}: no backend password"))
}

fn hmac_key(config: &Config) -> Result<Option<Vec<u8>>, String> {
    if let Some(var) = &config.masking.hmac_key_env {
        return std::env::var(var)
            .map(|k| Some(k.into_bytes()))
            .map_err(|_| format!("masking: environment variable {var} is not set"));
    }
    if let Some(f) = &config.masking.hmac_key_file {
        let f = config.resolve(f);
        return std::fs::read(&f)
            .map(Some)
            .map_err(|e| format!("masking: {}: {e}", f.display()));
    }
    Ok(None)
}

pub(crate) fn build_masker(config: &Config) -> Result<Masker, String> {
    let key = hmac_key(config)?;
    let style =
        |s: Option<&toml::Spanned<String>>| -> Result<Option<Style>, String> {
            let Some(s) = s else { return Ok(None) };
            Ok(Some(match MaskStyle::parse(s.get_ref()) {
                Some(MaskStyle::Redact) => Style::redact(),
                Some(MaskStyle::Partial(n)) => Style::partial(n),
                Some(MaskStyle::SameLength) => Style::same_length(),
                Some(MaskStyle::Hash) => Style::keyed_hash(key.as_deref().ok_or(
                    "masking style \"hash\" needs [masking] hmac_key_env or hmac_key_file",
                )?),
                None => return Err(format!("unknown masking style {:?}", s.get_ref())),
            }))
        };
    let mut b = Masker::builder().default_catalogue(config.masking.default_catalogue);
    for r in &config.masking.rule {
        let mut rule = match (&r.regex, &r.literal) {
            (Some(re), None) => Rule::regex(r.id.clone(), re.get_ref().clone()),
            (None, Some(lit)) => Rule::literal(r.id.clone(), lit),
            _ => return Err(format!("masking rule {}: give a regex or a literal", r.id)),
        };
        if let Some(s) = style(r.style.as_ref())? {
            rule = rule.style(s);
        }
        b = b.rule(rule);
    }
    for f in &config.masking.field {
        // `table.column` is matched on the column's name for now: masking
        // more than asked, never less, until result columns are resolved to
        // their source tables.
        let pattern = f.name.rsplit('.').next().unwrap_or(&f.name);
        let mut rule = FieldRule::new(pattern);
        if let Some(s) = style(f.style.as_ref())? {
            rule = rule.style(s);
        }
        b = b.field_rule(rule);
    }
    b.build().map_err(|e| format!("masking: {e}"))
}

async fn build_audit(config: &Config) -> Result<Arc<dyn AuditSink>, String> {
    let mut sinks: Vec<Arc<dyn AuditSink>> = Vec::new();
    if let Some(j) = &config.audit.jsonl {
        let dir = config.resolve(&j.dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("audit: {}: {e}", dir.display()))?;
        let mut options = JsonlOptions::new(j.chain.clone()).commit(match j.durability {
            config::Durability::Flushed => Commit::Flushed,
            config::Durability::Durable => Commit::Durable,
            config::Durability::Fsync => Commit::PerRecord,
            config::Durability::GroupCommit => {
                Commit::Group(Duration::from_millis(j.group_commit_ms))
            }
        });
        options = options.sync_window(Duration::from_millis(j.sync_window_ms.max(1)));
        if let Some(bytes) = j.rotate_bytes {
            options = options.max_file_bytes(bytes);
        }
        if let Some(bytes) = j.min_free_bytes {
            options = options.min_free_bytes(bytes);
        }
        let (sink, report) =
            JsonlSink::open(&dir, options).map_err(|e| format!("audit: {}: {e}", dir.display()))?;
        if let Some(torn) = &report.torn_tail {
            tracing::warn!(file = %torn.path.display(), line = torn.line, "audit trail had a torn last line; recovered");
        }
        sinks.push(Arc::new(sink));
    }
    if let Some(p) = &config.audit.postgres {
        let dsn = std::env::var(&p.dsn_env)
            .map_err(|_| format!("audit: environment variable {} is not set", p.dsn_env))?;
        let options = PostgresOptions::new(&dsn, p.replica.clone()).map_err(|e| e.to_string())?;
        let sink = portcullis_audit::PostgresSink::connect(options)
            .await
            .map_err(|e| format!("audit: postgres: {e}"))?;
        sinks.push(Arc::new(sink));
    }
    match sinks.len() {
        0 => Err(
            "the configuration has no audit sink ([audit.jsonl] or [audit.postgres]); \
             the gateway does not run without a trail"
                .to_owned(),
        ),
        1 => sinks.pop().ok_or_else(|| "no audit sink".to_owned()),
        n => {
            let mut b = FanoutSink::builder();
            for s in sinks {
                b = b.member(s);
            }
            let quorum = config.audit.quorum.as_ref().map_or(n, |q| *q.get_ref());
            let fan = b.quorum(quorum).build().map_err(|e| e.to_string())?;
            Ok(Arc::new(fan))
        }
    }
}

fn server_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(Arc::new(config))
}

pub(crate) fn client_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
