//! The timer-less group commit of the `flushed` and `durable` levels: one
//! fsync covers many concurrent records, an idle record is committed at
//! once, every recorder's events keep their order, and a full queue holds
//! callers back instead of growing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_audit::{
    AuditEvent, AuditSink, Commit, Durability, EventKind, JsonlOptions, JsonlSink,
    session_timeline, trail_files, verify,
};

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
    .with_session("s")
}

/// `tasks` recorders each write `per_task` records, awaiting each; returns
/// the sink's stats and checks the trail.
fn concurrent(commit: Commit, tasks: usize, per_task: usize) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (sink, _) = JsonlSink::open(dir.path(), JsonlOptions::new("gc").commit(commit)).unwrap();
    let sink = Arc::new(sink);
    let before = sink.stats();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..tasks {
            let sink = Arc::clone(&sink);
            set.spawn(async move {
                for i in 0..per_task {
                    let r = sink.record(&event(&format!("{t}/{i}"))).await.unwrap();
                    let want = if commit == Commit::Flushed {
                        Durability::Written
                    } else {
                        Durability::Fsynced
                    };
                    assert_eq!(r.durability(), want);
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        sink.flush().await.unwrap();
    });
    let stats = sink.stats();
    let records = stats.records - before.records;
    let fsyncs = stats.fsyncs - before.fsyncs;
    drop(sink);
    let report = verify(&trail_files(dir.path(), "gc").unwrap());
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.head().map(|h| h.seq),
        Some((tasks * per_task) as u64)
    );
    (records, fsyncs)
}

#[test]
fn durable_batches_concurrent_records_into_few_fsyncs() {
    let (records, fsyncs) = concurrent(Commit::Durable, 64, 40);
    println!("durable: {records} records, {fsyncs} fsyncs");
    assert_eq!(records, 64 * 40);
    // 64 recorders each waiting for its fsync: while one fsync runs the
    // others queue up and share the next one.
    assert!(
        fsyncs * 4 <= records,
        "{fsyncs} fsyncs for {records} records"
    );
}

#[test]
fn flushed_batches_concurrent_records_into_few_fsyncs() {
    let (records, fsyncs) = concurrent(Commit::Flushed, 64, 40);
    println!("flushed: {records} records, {fsyncs} fsyncs");
    assert_eq!(records, 64 * 40);
    assert!(
        fsyncs * 4 <= records,
        "{fsyncs} fsyncs for {records} records"
    );
}

#[test]
fn per_record_mode_fsyncs_every_record() {
    // The comparison that shows the counter counts: the old mode cannot
    // batch.
    let (records, fsyncs) = concurrent(Commit::PerRecord, 8, 20);
    assert_eq!(fsyncs, records);
}

#[test]
fn durable_idle_record_gets_its_own_fsync_at_once() {
    // One recorder, one record at a time: nothing to batch with, and no
    // timer to wait for. Each receipt is Fsynced, and the fsync count
    // follows the records one for one.
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (sink, _) =
        JsonlSink::open(dir.path(), JsonlOptions::new("gc").commit(Commit::Durable)).unwrap();
    rt.block_on(async {
        for i in 0..20 {
            let before = sink.stats().fsyncs;
            let r = sink.record(&event(&i.to_string())).await.unwrap();
            assert_eq!(r.durability(), Durability::Fsynced);
            assert_eq!(r.seq(), i + 1);
            assert!(
                sink.stats().fsyncs > before,
                "record {i} acknowledged unsynced"
            );
        }
    });
}

#[test]
fn flushed_receipt_means_written_and_the_syncer_follows() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (sink, _) = JsonlSink::open(dir.path(), JsonlOptions::new("gc")).unwrap();
    let files = trail_files(dir.path(), "gc").unwrap();
    rt.block_on(async {
        for i in 0..10u64 {
            let r = sink.record(&event(&i.to_string())).await.unwrap();
            assert_eq!(r.durability(), Durability::Written);
            // Written: another reader of the file sees it already.
            let report = verify(&files);
            assert_eq!(report.head().map(|h| h.seq), Some(r.seq()));
            assert_eq!(report.head().map(|h| h.hash), r.hash());
        }
        sink.flush().await.unwrap();
    });
    // The syncer fsynced without being asked record by record.
    assert!(sink.stats().fsyncs >= 1);
}

#[test]
fn submit_and_enqueue_keep_each_recorders_order() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (sink, _) = JsonlSink::open(dir.path(), JsonlOptions::new("gc").queue_capacity(8)).unwrap();
    let sink = Arc::new(sink);
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..16 {
            let sink = Arc::clone(&sink);
            set.spawn(async move {
                let mut last = 0;
                for i in 0..100 {
                    let e = event(&format!("{t}/{i}"));
                    match i % 3 {
                        // Write-ahead: wait for the acknowledgement.
                        0 => {
                            let r = sink.submit(&e).await.unwrap().await.unwrap();
                            assert!(r.seq() > last);
                            last = r.seq();
                        }
                        // Fire and forget, with room to wait for.
                        1 => drop(sink.submit(&e).await.unwrap()),
                        // Fire and forget from a caller that cannot wait:
                        // refused only far over the bound (8 × 2 here,
                        // 16 recorders), then retried after a write-ahead.
                        _ => match sink.enqueue(&e) {
                            Ok(ack) => drop(ack),
                            Err(portcullis_audit::AuditError::Overloaded { .. }) => {
                                drop(sink.submit(&e).await.unwrap());
                            }
                            Err(other) => panic!("{other}"),
                        },
                    }
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        sink.flush().await.unwrap();
    });
    let files = trail_files(dir.path(), "gc").unwrap();
    let report = verify(&files);
    assert!(report.is_clean(), "{report}");
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut n = 0;
    for e in session_timeline(&files, "s").unwrap() {
        let EventKind::GatewayError { message } = e.event.kind else {
            panic!("unexpected event");
        };
        let (t, i) = message.split_once('/').unwrap();
        let i: i64 = i.parse().unwrap();
        let prev = last.insert(t.to_owned(), i).unwrap_or(-1);
        assert_eq!(prev + 1, i, "recorder {t}: {i} after {prev}");
        n += 1;
    }
    assert_eq!(n, 16 * 100);
}

#[test]
fn dropping_the_sink_fsyncs_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (sink, _) = JsonlSink::open(dir.path(), JsonlOptions::new("gc")).unwrap();
    rt.block_on(async {
        for i in 0..50 {
            drop(sink.enqueue(&event(&i.to_string())).unwrap());
        }
    });
    drop(sink);
    let report = verify(&trail_files(dir.path(), "gc").unwrap());
    assert_eq!(report.head().map(|h| h.seq), Some(50));
}

#[test]
fn rotation_under_the_pipelined_levels_keeps_the_chain() {
    for commit in [Commit::Flushed, Commit::Durable] {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let (sink, _) = JsonlSink::open(
            dir.path(),
            JsonlOptions::new("gc").commit(commit).max_file_bytes(4096),
        )
        .unwrap();
        let sink = Arc::new(sink);
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for t in 0..8 {
                let sink = Arc::clone(&sink);
                set.spawn(async move {
                    for i in 0..50 {
                        sink.record(&event(&format!("{t}/{i}"))).await.unwrap();
                    }
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
            sink.flush().await.unwrap();
        });
        let files = trail_files(dir.path(), "gc").unwrap();
        assert!(files.len() > 5, "{commit:?}: {} files", files.len());
        let report = verify(&files);
        assert!(report.is_clean(), "{commit:?}: {report}");
        assert_eq!(report.head().map(|h| h.seq), Some(400));
    }
}

/// One recorder writing back to back (one client of the gateway): `flushed`
/// lets the records of half a sync window share an fsync instead of
/// fsyncing after every write.
#[test]
fn flushed_sequential_records_share_fsyncs() {
    let (records, fsyncs) = concurrent(Commit::Flushed, 1, 400);
    assert_eq!(records, 400);
    assert!(fsyncs >= 1);
    assert!(
        fsyncs * 4 <= records,
        "{fsyncs} fsyncs for {records} sequential records"
    );
}
