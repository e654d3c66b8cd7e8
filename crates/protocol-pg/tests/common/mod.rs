//! The test hook and a proxy running in the background.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use portcullis_pg::{
    Allowances, Authenticated, BackendAddr, BackendTarget, BackendTls, Column, Context, Decision,
    Event, Execution, FieldValue, Hold, Hook, ParseVerdict, Proxy, ProxyConfig, Rejection,
    SessionId, StartupParams, Transform, Verdict, async_trait,
};
use portcullis_testkit::PgCluster;

pub const TOKEN: &str = "agent-token-123";

/// What replaces every value of a statement whose text says `mask_all`.
pub const MASK_MARK: &str = "[MASKED:test]";

/// The test hook's plan: the statement's text, and whether every column of
/// its results is masked (its text contains `mask_all`).
#[derive(Debug, Clone)]
pub struct Plan {
    pub sql: String,
    pub mask_all: bool,
}

/// Allows everything but DROP, holds DELETE until released (at each
/// execution of a prepared DELETE), upper-cases values of columns named
/// `secret`, replaces every value of a `mask_all` statement with
/// [`MASK_MARK`], masks `s3cr3t` in COPY data.
pub struct TestHook {
    pub backend: BackendTarget,
    pub override_backend: Mutex<Option<BackendTarget>>,
    pub events: Mutex<Vec<Event>>,
    pub release: Arc<tokio::sync::Semaphore>,
    pub held: AtomicUsize,
    /// Keep events (off for load tests, where they would grow without bound).
    pub record_events: std::sync::atomic::AtomicBool,
    pub executed_params: Mutex<Vec<Vec<Option<bytes::Bytes>>>>,
    /// The statement text of every Execute the hook was asked about.
    pub executions: Mutex<Vec<String>>,
    /// Once set, the next Execute ends the session (a revoked token).
    pub revoked: std::sync::atomic::AtomicBool,
}

impl TestHook {
    pub fn new(backend: BackendTarget) -> Self {
        TestHook {
            backend,
            override_backend: Mutex::new(None),
            events: Mutex::new(Vec::new()),
            release: Arc::new(tokio::sync::Semaphore::new(0)),
            held: AtomicUsize::new(0),
            record_events: std::sync::atomic::AtomicBool::new(true),
            executed_params: Mutex::new(Vec::new()),
            executions: Mutex::new(Vec::new()),
            revoked: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Use this backend for the next sessions.
    pub fn set_backend(&self, backend: BackendTarget) {
        *self.override_backend.lock().unwrap() = Some(backend);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

/// Whether any statement of `sql` starts with the keyword `word`.
fn has_word(sql: &str, word: &str) -> bool {
    sql.split(';').any(|stmt| {
        stmt.trim_start()
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    })
}

impl Transform for TestHook {
    type Principal = String;
    type Plan = Plan;
    type ColumnPlan = ();

    fn on_row_description(
        &self,
        _cx: &Context<'_, String>,
        plan: &Plan,
        columns: &[Column],
    ) -> Vec<(usize, ())> {
        columns
            .iter()
            .filter(|c| plan.mask_all || c.name == "secret")
            .map(|c| (c.index, ()))
            .collect()
    }

    fn transform_field(
        &self,
        _cx: &Context<'_, String>,
        plan: &Plan,
        _column: &Column,
        _column_plan: &(),
        value: &[u8],
    ) -> FieldValue {
        if plan.mask_all {
            FieldValue::Replace(MASK_MARK.as_bytes().to_vec())
        } else {
            FieldValue::Replace(value.to_ascii_uppercase())
        }
    }

    fn transform_copy(
        &self,
        _cx: &Context<'_, String>,
        _plan: &Plan,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let text = String::from_utf8_lossy(data);
        text.contains("s3cr3t")
            .then(|| text.replace("s3cr3t", "[MASKED]").into_bytes())
    }

    fn on_event(&self, event: &Event, _plan: Option<&Plan>) {
        if self.record_events.load(Ordering::SeqCst) {
            self.events.lock().unwrap().push(event.clone());
        }
    }
}

#[async_trait]
impl Hook for TestHook {
    async fn authenticate(
        &self,
        _session: SessionId,
        startup: &StartupParams,
        credential: &str,
    ) -> Result<Authenticated<String>, Rejection> {
        if credential != TOKEN {
            return Err(Rejection::InvalidCredential("unknown token".into()));
        }
        if startup.user() == "mallory" {
            return Err(Rejection::NotAuthorized(
                "mallory may not use this gateway".into(),
            ));
        }
        let mut backend = self
            .override_backend
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| self.backend.clone());
        backend.database = startup.database().to_string();
        Ok(Authenticated {
            principal: startup.user().to_string(),
            backend,
        })
    }

    async fn on_query(&self, _cx: &Context<'_, String>, sql: &str) -> Verdict<Plan> {
        if has_word(sql, "DROP") {
            return Verdict::Deny("DROP is not allowed".into());
        }
        let plan = Plan {
            sql: sql.to_owned(),
            mask_all: sql.contains("mask_all"),
        };
        if has_word(sql, "DELETE") {
            let n = self.held.fetch_add(1, Ordering::SeqCst) + 1;
            let release = self.release.clone();
            return Verdict::Hold(
                Hold {
                    notice: format!("held for approval: {n}"),
                    decision: Box::pin(async move {
                        match release.acquire().await {
                            Ok(p) => {
                                p.forget();
                                Decision::Forward
                            }
                            Err(_) => Decision::Deny("approvals closed".into()),
                        }
                    }),
                },
                plan,
            );
        }
        Verdict::Forward(plan)
    }

    async fn on_parse(
        &self,
        _cx: &Context<'_, String>,
        _statement: &str,
        sql: &str,
    ) -> ParseVerdict<Plan> {
        if has_word(sql, "DROP") {
            ParseVerdict::Deny("DROP is not allowed".into())
        } else {
            ParseVerdict::Forward(Plan {
                sql: sql.to_owned(),
                mask_all: sql.contains("mask_all"),
            })
        }
    }

    /// Every execution: the statement's own plan decides (a DELETE is held
    /// each time); a revoked session ends here.
    async fn on_execute(
        &self,
        cx: &Context<'_, String>,
        execution: Execution<'_, Plan>,
    ) -> Verdict<Plan> {
        self.executed_params
            .lock()
            .unwrap()
            .push(execution.params.to_vec());
        self.executions.lock().unwrap().push(
            execution
                .plan
                .map_or_else(|| execution.sql.to_owned(), |p| p.sql.clone()),
        );
        if self.revoked.load(Ordering::SeqCst) {
            return Verdict::Terminate("the token was revoked".into());
        }
        let sql = execution.plan.map_or(execution.sql, |p| p.sql.as_str());
        self.on_query(cx, sql).await
    }
}

/// A proxy serving in a background thread until dropped.
pub struct Running {
    pub port: u16,
    pub hook: Arc<TestHook>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn start(cluster: &PgCluster) -> Running {
        Self::start_with(cluster, ProxyConfig::default())
    }

    pub fn start_with(cluster: &PgCluster, config: ProxyConfig) -> Running {
        let addr = BackendAddr::Tcp {
            host: cluster.host().to_string(),
            port: cluster.port(),
        };
        Self::start_at(cluster, addr, config)
    }

    /// Through the cluster's unix socket instead of TCP (where the
    /// testkit's pg_hba.conf trusts the cluster's owner).
    pub fn start_unix(cluster: &PgCluster) -> Running {
        let path = cluster
            .socket_dir()
            .join(format!(".s.PGSQL.{}", cluster.port()));
        let mut allow = Allowances::default();
        allow.backend_trust = true;
        Self::start_allowing(
            cluster,
            BackendAddr::Unix(path),
            ProxyConfig::default(),
            allow,
        )
    }

    pub fn start_at(cluster: &PgCluster, addr: BackendAddr, config: ProxyConfig) -> Running {
        Self::start_allowing(cluster, addr, config, Allowances::default())
    }

    /// With relaxations of the strict defaults for this backend.
    pub fn start_allowing(
        cluster: &PgCluster,
        addr: BackendAddr,
        config: ProxyConfig,
        allow: Allowances,
    ) -> Running {
        let backend = BackendTarget {
            addr,
            database: "postgres".into(),
            user: cluster.superuser().to_string(),
            password: cluster.password().to_string(),
            tls: BackendTls::Disable,
            allow,
        };
        let hook = Arc::new(TestHook::new(backend));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let h = hook.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let proxy = Proxy::new(h, config);
                proxy
                    .serve(listener, async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let port = port_rx.recv().unwrap();
        Running {
            port,
            hook,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn dsn(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=alice dbname={db} password={TOKEN} sslmode=disable",
            self.port
        )
    }
}

impl Running {
    /// Asks the proxy to shut down and waits until it has.
    pub fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
