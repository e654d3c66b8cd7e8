//! Fail closed: when a write fails (here the file size limit, `ulimit -f`,
//! standing in for a full disk), the JSON Lines sink returns errors for the
//! failed and every later record, reports itself unavailable, and keeps
//! every record it acknowledged.
//!
//! The limit applies to a whole process, so the sink runs in a child: this
//! test binary re-run under `sh -c "trap '' XFSZ; ulimit -f N; exec …"`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::process::Command;

use portcullis_audit::{
    AuditEvent, AuditSink, Commit, EventKind, JsonlOptions, JsonlSink, session_timeline,
    trail_files, verify,
};

const DIR_VAR: &str = "PORTCULLIS_AUDIT_DISK_FULL_DIR";
const MODE_VAR: &str = "PORTCULLIS_AUDIT_DISK_FULL_MODE";

#[test]
#[ignore = "run by a_failed_write_fails_closed as its child"]
fn disk_full_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let commit = match std::env::var(MODE_VAR).as_deref() {
        Ok("durable") => Commit::Durable,
        Ok("record") => Commit::PerRecord,
        _ => Commit::Flushed,
    };
    let (sink, _) = JsonlSink::open(
        std::path::Path::new(&dir),
        JsonlOptions::new("full").commit(commit),
    )
    .unwrap();
    let mut out = std::io::stdout();
    rt.block_on(async {
        assert!(sink.health().await.is_ready());
        let mut failed = false;
        for i in 0..10_000 {
            let event = AuditEvent::new(EventKind::GatewayError {
                message: format!("event {i}"),
            })
            .with_session("full");
            match sink.record(&event).await {
                Ok(r) if !failed => writeln!(out, "ACK {} event {i}", r.seq()).unwrap(),
                Ok(r) => writeln!(out, "ACK-AFTER-FAILURE {}", r.seq()).unwrap(),
                Err(e) => {
                    if !failed {
                        writeln!(out, "FAILED {e}").unwrap();
                        writeln!(out, "HEALTH {:?}", sink.health().await).unwrap();
                    }
                    failed = true;
                    if i > 0 && i % 50 == 0 {
                        break;
                    }
                }
            }
        }
        writeln!(out, "FLUSH {:?}", sink.flush().await.is_ok()).unwrap();
    });
    out.flush().unwrap();
}

#[test]
fn a_failed_write_fails_closed_flushed() {
    failed_write_fails_closed("flushed");
}

#[test]
fn a_failed_write_fails_closed_durable() {
    failed_write_fails_closed("durable");
}

#[test]
fn a_failed_write_fails_closed_per_record() {
    failed_write_fails_closed("record");
}

fn failed_write_fails_closed(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // 16 blocks of 1 KiB (bash counts `ulimit -f` in 1024-byte units;
    // dash in 512-byte ones): room for a few dozen records either way.
    let script = format!(
        "trap '' XFSZ; ulimit -f 16 && exec '{}' --exact disk_full_child --ignored --nocapture --test-threads=1",
        exe.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env(DIR_VAR, dir.path())
        .env(MODE_VAR, mode)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    let acks: Vec<(u64, String)> = stdout
        .lines()
        .filter_map(|l| l.split_once("ACK ").map(|(_, r)| r))
        .map(|r| {
            let (seq, id) = r.split_once(' ').unwrap();
            (seq.parse().unwrap(), id.to_owned())
        })
        .collect();
    assert!(
        acks.len() > 5,
        "too few records before the limit:\n{stdout}"
    );
    assert!(
        stdout.contains("FAILED "),
        "the write never failed:\n{stdout}"
    );
    assert!(stdout.contains("HEALTH Unavailable("), "{stdout}");
    assert!(!stdout.contains("ACK-AFTER-FAILURE"), "{stdout}");
    assert!(stdout.contains("FLUSH false"), "{stdout}");

    // What was acknowledged is there and verifies; the partly written record
    // is a torn tail, never acknowledged.
    let files = trail_files(dir.path(), "full").unwrap();
    let report = verify(&files);
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.head().map(|h| h.seq), acks.last().map(|a| a.0));
    let stored = session_timeline(&files, "full").unwrap();
    for (seq, id) in &acks {
        let found = stored.iter().find(|e| e.seq == *seq).unwrap();
        assert!(
            matches!(&found.event.kind, EventKind::GatewayError { message } if message == id),
            "{found:?}"
        );
    }
}
