//! The PostgreSQL sink against a real PostgreSQL 15 from the testkit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use portcullis_audit::{
    AuditEvent, AuditSink, EventKind, PostgresOptions, PostgresSink, VerifyOptions,
    postgres_session_timeline, verify_postgres,
};
use portcullis_testkit::PgCluster;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn event(id: &str) -> AuditEvent {
    AuditEvent::new(EventKind::GatewayError {
        message: id.to_owned(),
    })
    .with_session("pg-test")
}

#[test]
fn ten_thousand_events_from_four_concurrent_writers_all_present_and_verifying() {
    let pg = PgCluster::start().unwrap();
    let dsn = pg.dsn();
    let rt = runtime();
    let receipts = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        // Four writers, each a gateway replica with its own chain, sharing
        // one table; each keeps 25 events in flight.
        for w in 0..4 {
            let dsn = dsn.clone();
            set.spawn(async move {
                let options = PostgresOptions::new(&dsn, format!("replica-{w}")).unwrap();
                let sink = Arc::new(PostgresSink::connect(options).await.unwrap());
                let mut inner = tokio::task::JoinSet::new();
                let next = Arc::new(AtomicU64::new(0));
                for _ in 0..25 {
                    let sink = Arc::clone(&sink);
                    let next = Arc::clone(&next);
                    inner.spawn(async move {
                        let mut seqs = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= 2500 {
                                break seqs;
                            }
                            let r = sink.record(&event(&format!("{w}/{i}"))).await.unwrap();
                            seqs.push(r.seq());
                        }
                    });
                }
                let mut seqs = Vec::new();
                while let Some(r) = inner.join_next().await {
                    seqs.extend(r.unwrap());
                }
                sink.flush().await.unwrap();
                let report = sink.verify().await.unwrap();
                (w, seqs, report)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    assert_eq!(receipts.len(), 4);
    for (w, mut seqs, report) in receipts {
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=2500).collect::<Vec<u64>>(), "writer {w}");
        assert!(report.is_clean(), "writer {w}: {report}");
        assert_eq!(report.records(), 2500, "writer {w}");
    }
    let count = pg
        .execute("select count(*), count(distinct event) from portcullis_audit")
        .unwrap();
    assert_eq!(count.trim(), "10000|10000");
    // Every event is there, by its id.
    let ids = pg
        .execute("select event::json->>'message' from portcullis_audit")
        .unwrap();
    let ids: HashSet<&str> = ids.lines().collect();
    for w in 0..4 {
        for i in 0..2500 {
            assert!(ids.contains(format!("{w}/{i}").as_str()), "{w}/{i} missing");
        }
    }
    // Append-only: updates and deletes are refused.
    assert!(
        pg.execute("update portcullis_audit set kind = 'x'")
            .is_err()
    );
    assert!(pg.execute("delete from portcullis_audit").is_err());
    assert!(pg.execute("truncate portcullis_audit").is_err());
}

#[test]
fn a_server_restart_surfaces_as_errors_and_the_sink_recovers() {
    let mut pg = PgCluster::start().unwrap();
    let dsn = pg.dsn();
    let rt = runtime();
    let options = PostgresOptions::new(&dsn, "gw-restart").unwrap();
    let sink = Arc::new(rt.block_on(PostgresSink::connect(options.clone())).unwrap());

    // A writer records continuously and keeps every outcome.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_after_restart = Arc::new(AtomicU64::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let writer = {
        let sink = Arc::clone(&sink);
        let stop = Arc::clone(&stop);
        let acked_after_restart = Arc::clone(&acked_after_restart);
        let restarted = Arc::clone(&restarted);
        rt.spawn(async move {
            let mut acked = Vec::new();
            let mut errors = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("e{i}");
                match sink.record(&event(&id)).await {
                    Ok(r) => {
                        acked.push((r.seq(), id));
                        if restarted.load(Ordering::Relaxed) && !errors.is_empty() {
                            acked_after_restart.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        errors.push((id, e.to_string()));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                i += 1;
            }
            (acked, errors)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    pg.stop().unwrap();
    // While the server is down the sink says so (the gateway fails closed).
    let health = rt.block_on(sink.health());
    assert!(!health.is_ready(), "{health:?}");
    std::thread::sleep(Duration::from_millis(300));
    pg.start_again().unwrap();
    restarted.store(true, Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acked_after_restart.load(Ordering::Relaxed) < 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sink did not recover"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And a restart in one go (fast shutdown, then start) mid-stream.
    pg.restart().unwrap();
    let before = acked_after_restart.load(Ordering::Relaxed);
    while acked_after_restart.load(Ordering::Relaxed) < before + 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sink did not recover"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (acked, errors) = rt.block_on(writer).unwrap();
    assert!(!errors.is_empty(), "the restart surfaced no error");
    println!(
        "{} acknowledged, {} errors, e.g. {:?}",
        acked.len(),
        errors.len(),
        errors.first()
    );
    assert!(rt.block_on(sink.health()).is_ready());

    // No silent loss: every acknowledged event is in the table under its
    // sequence number, and the chain verifies across the restarts.
    let rows = pg
        .execute("select seq, event::json->>'message' from portcullis_audit where replica = 'gw-restart'")
        .unwrap();
    let stored: HashSet<(u64, String)> = rows
        .lines()
        .map(|l| {
            let (s, m) = l.split_once('|').unwrap();
            (s.parse().unwrap(), m.to_owned())
        })
        .collect();
    for a in &acked {
        assert!(stored.contains(a), "acknowledged {a:?} is missing");
    }
    let report = rt
        .block_on(verify_postgres(&options, &VerifyOptions::new()))
        .unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(report.records() >= acked.len() as u64);
}

#[test]
fn tampering_in_the_table_is_found() {
    let pg = PgCluster::start().unwrap();
    let rt = runtime();
    let options = PostgresOptions::new(&pg.dsn(), "gw-t").unwrap();
    let sink = rt.block_on(PostgresSink::connect(options.clone())).unwrap();
    rt.block_on(async {
        for i in 0..10 {
            sink.record(&event(&format!("t{i}"))).await.unwrap();
        }
    });
    assert!(rt.block_on(sink.verify()).unwrap().is_clean());
    // A superuser can get around the triggers; the chain still shows it.
    pg.execute(
        "alter table portcullis_audit disable trigger user;
         update portcullis_audit set event = replace(event, 't4', 't9') where seq = 5;
         delete from portcullis_audit where seq = 8;",
    )
    .unwrap();
    let report = rt.block_on(sink.verify()).unwrap();
    let shown = report.to_string();
    assert!(!report.is_intact(), "{shown}");
    assert!(
        shown.contains("portcullis_audit/gw-t:5: record 5 was modified"),
        "{shown}"
    );
    assert!(shown.contains("records 8..=8 are missing"), "{shown}");
}

#[test]
fn a_session_timeline_reads_back_across_replicas() {
    let pg = PgCluster::start().unwrap();
    let rt = runtime();
    let a = PostgresOptions::new(&pg.dsn(), "gw-a").unwrap();
    let b = PostgresOptions::new(&pg.dsn(), "gw-b").unwrap();
    rt.block_on(async {
        let sa = PostgresSink::connect(a.clone()).await.unwrap();
        let sb = PostgresSink::connect(b).await.unwrap();
        let mk = |session: &str, id: u64| {
            AuditEvent::new(EventKind::CommandForwarded { command_id: id }).with_session(session)
        };
        sa.record(&mk("x", 1)).await.unwrap();
        sa.record(&mk("y", 1)).await.unwrap();
        sb.record(&mk("x", 2)).await.unwrap();
        sa.record(&mk("x", 3)).await.unwrap();
        let t = postgres_session_timeline(&a, "x").await.unwrap();
        let got: Vec<(String, u64)> = t
            .iter()
            .map(|e| match e.event.kind {
                EventKind::CommandForwarded { command_id } => (e.at.source.clone(), command_id),
                ref other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("portcullis_audit/gw-a".to_owned(), 1),
                ("portcullis_audit/gw-b".to_owned(), 2),
                ("portcullis_audit/gw-a".to_owned(), 3)
            ]
        );
    });
    // A record edited in the table is refused, with where it is.
    pg.execute(
        "alter table portcullis_audit disable trigger user;
         update portcullis_audit set event = replace(event, ':2', ':7') where replica = 'gw-b';",
    )
    .unwrap();
    let err = rt.block_on(postgres_session_timeline(&a, "x")).unwrap_err();
    assert!(err.to_string().contains("portcullis_audit/gw-b:1"), "{err}");
}

#[test]
fn a_keyed_chain_in_the_table_verifies_only_with_its_key() {
    let pg = PgCluster::start().unwrap();
    let rt = runtime();
    let key = portcullis_audit::ChainKey::new(*b"0123456789abcdef0123456789abcdef").unwrap();
    let plain = PostgresOptions::new(&pg.dsn(), "gw-k").unwrap();
    let keyed = plain.clone().key(key);
    rt.block_on(async {
        let sink = PostgresSink::connect(keyed.clone()).await.unwrap();
        for i in 0..5 {
            sink.record(&event(&format!("k{i}"))).await.unwrap();
        }
        let report = sink.verify().await.unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.records(), 5);
        let unkeyed = verify_postgres(&plain, &VerifyOptions::new())
            .await
            .unwrap();
        assert!(!unkeyed.is_intact(), "{unkeyed}");
        assert_eq!(
            postgres_session_timeline(&keyed, "pg-test")
                .await
                .unwrap()
                .len(),
            5
        );
        assert!(postgres_session_timeline(&plain, "pg-test").await.is_err());
    });
}
