//! Audit sinks: events per second for the JSON Lines sink with fsync per
//! record and with 5 ms group commit (many concurrent recorders), and for the
//! PostgreSQL sink batched (a real PostgreSQL 15 from the testkit, with
//! `fsync`, `synchronous_commit` and `full_page_writes` on).
//!
//! `cargo bench -p portcullis-benches --bench audit`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_audit::{
    AuditEvent, AuditSink, Commit, Effect, EventKind, JsonlOptions, JsonlSink, MaskedText,
    PostgresOptions, PostgresSink, Principal, PrincipalKind, Protocol, Resource,
};

fn event(i: u64) -> AuditEvent {
    AuditEvent::new(EventKind::Command {
        command_id: i,
        text: MaskedText::already_masked(
            "select id, email, created_at from customers where email = '[email]' limit 50",
        ),
        facts: [
            ("statement".to_owned(), serde_json::json!("select")),
            ("reads".to_owned(), serde_json::json!(["public.customers"])),
        ]
        .into_iter()
        .collect(),
        effect: Effect::Allow,
        rule_id: Some("read-only-customers".into()),
        reason: "reads of customers are allowed".into(),
    })
    .with_session("7f3c2a9e-bench")
    .with_principal(Principal {
        id: "agent-42@example.com".into(),
        kind: PrincipalKind::Agent,
        groups: vec!["developers".into()],
        token_id: Some("jti-0123456789".into()),
    })
    .with_resource(Resource {
        protocol: Protocol::Postgres,
        target: "prod-main".into(),
        scope: Some("shop".into()),
    })
}

/// Records `total` events from `recorders` concurrent tasks, each waiting
/// for its receipt before the next event (as a gateway session does).
async fn burst(sink: Arc<dyn AuditSink>, total: u64, recorders: u64) {
    let mut set = tokio::task::JoinSet::new();
    for r in 0..recorders {
        let sink = Arc::clone(&sink);
        set.spawn(async move {
            for i in 0..total / recorders {
                sink.record(&event(r * 1_000_000 + i)).await.unwrap();
            }
        });
    }
    while set.join_next().await.is_some() {}
}

fn bench_sink(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    sink: Arc<dyn AuditSink>,
    total: u64,
    recorders: u64,
) {
    let mut group = c.benchmark_group("audit");
    group.throughput(Throughput::Elements(total));
    group.sample_size(10);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(burst(Arc::clone(&sink), total, recorders));
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn audit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();

    let (per_record, _) = JsonlSink::open(
        &dir.path().join("per-record"),
        JsonlOptions::new("bench").commit(Commit::PerRecord),
    )
    .unwrap();
    bench_sink(
        c,
        &rt,
        "jsonl_fsync_per_record/16_recorders",
        Arc::new(per_record),
        256,
        16,
    );

    let (group, _) = JsonlSink::open(
        &dir.path().join("group"),
        JsonlOptions::new("bench").commit(Commit::Group(Duration::from_millis(5))),
    )
    .unwrap();
    bench_sink(
        c,
        &rt,
        "jsonl_group_commit_5ms/512_recorders",
        Arc::new(group),
        16_384,
        512,
    );

    // The testkit turns durability off for speed; a durable sink is measured
    // against a durable server.
    let pg = portcullis_testkit::PgCluster::builder()
        .setting("fsync", "on")
        .setting("synchronous_commit", "on")
        .setting("full_page_writes", "on")
        .start()
        .unwrap();
    let sink = rt
        .block_on(PostgresSink::connect(
            PostgresOptions::new(&pg.dsn(), "bench").unwrap(),
        ))
        .unwrap();
    bench_sink(
        c,
        &rt,
        "postgres_batched/512_recorders",
        Arc::new(sink),
        16_384,
        512,
    );
    drop(pg);
}

criterion_group!(benches, audit);
criterion_main!(benches);
