//! Audit sinks. The JSON Lines sink at its two durability levels
//! (`flushed`, `durable`) and its two earlier modes (5 ms group commit,
//! fsync per record), in one run: the latency of one record with one
//! recorder, and events per second with 8, 32 and 512 concurrent recorders;
//! then the PostgreSQL sink batched (a real PostgreSQL 15 from the testkit,
//! with `fsync`, `synchronous_commit` and `full_page_writes` on).
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

/// One recorder, one record at a time: the time from `record` to its
/// receipt, which is what a gateway statement waits for its write-ahead
/// record when the gateway is otherwise idle.
fn bench_latency(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, sink: &JsonlSink) {
    let mut group = c.benchmark_group("audit_latency");
    group.sample_size(10);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    sink.record(&event(i)).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// The durability levels and the earlier modes, in one run.
fn levels() -> [(&'static str, Commit); 4] {
    [
        ("flushed", Commit::Flushed),
        ("durable", Commit::Durable),
        ("group_commit_5ms", Commit::Group(Duration::from_millis(5))),
        ("fsync_per_record", Commit::PerRecord),
    ]
}

fn audit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();

    for (name, commit) in levels() {
        let (sink, _) = JsonlSink::open(
            &dir.path().join(name),
            JsonlOptions::new("bench").commit(commit),
        )
        .unwrap();
        bench_latency(c, &rt, &format!("jsonl_{name}/1_recorder"), &sink);
        let before = sink.stats();
        let sink = Arc::new(sink);
        for recorders in [8u64, 32, 512] {
            // The old modes are slow at many recorders: fewer events each,
            // so that one iteration stays under a few seconds.
            let per_recorder = match commit {
                Commit::PerRecord => 2,
                Commit::Group(_) => 8,
                _ => 32,
            };
            bench_sink(
                c,
                &rt,
                &format!("jsonl_{name}/{recorders}_recorders"),
                Arc::clone(&sink) as Arc<dyn AuditSink>,
                recorders * per_recorder,
                recorders,
            );
        }
        let after = sink.stats();
        println!(
            "jsonl_{name}: {} records in {} writes and {} fsyncs ({:.1} records per fsync)",
            after.records - before.records,
            after.writes - before.writes,
            after.fsyncs - before.fsyncs,
            (after.records - before.records) as f64 / (after.fsyncs - before.fsyncs).max(1) as f64
        );
    }

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
