//! The JSON Lines sink and its verifier: tampering of every kind is found and
//! located, rotation carries the chain, a torn tail is recovered from.

// Helpers outside #[test] functions may unwrap too: a failing test is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portcullis_audit::{
    AuditEvent, AuditSink, ChainHead, Commit, Effect, EventKind, JsonlOptions, JsonlSink,
    MaskedText, Problem, VerifyOptions, VerifyReport, session_timeline, trail_files, verify,
    verify_with,
};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn event(i: u64) -> AuditEvent {
    AuditEvent::new(EventKind::Command {
        command_id: i,
        text: MaskedText::already_masked(format!("select {i} from t where email = '[email]'")),
        facts: Default::default(),
        effect: if i.is_multiple_of(3) {
            Effect::Deny
        } else {
            Effect::Allow
        },
        rule_id: Some("r1".into()),
        reason: "test".into(),
    })
    .with_session(format!("s{}", i % 2))
}

/// Writes `n` events through a sink rotating at `max_file_bytes`; returns
/// the files and the last receipt's head.
fn write_trail(
    dir: &Path,
    n: u64,
    max_file_bytes: u64,
    commit: Commit,
) -> (Vec<PathBuf>, ChainHead) {
    let rt = runtime();
    let options = JsonlOptions::new("gw-1")
        .commit(commit)
        .max_file_bytes(max_file_bytes);
    let (sink, report) = JsonlSink::open(dir, options).unwrap();
    assert!(report.torn_tail.is_none());
    let mut head = ChainHead::EMPTY;
    rt.block_on(async {
        for i in 0..n {
            let r = sink.record(&event(i)).await.unwrap();
            head = ChainHead {
                seq: r.seq(),
                hash: r.hash().unwrap(),
            };
        }
    });
    drop(sink);
    (trail_files(dir, "gw-1").unwrap(), head)
}

/// A trail of 12 records over 3+ files, held in memory, with its head.
type Files = Vec<(String, Vec<u8>)>;

fn sample() -> &'static (Files, ChainHead) {
    static SAMPLE: OnceLock<(Files, ChainHead)> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (files, head) = write_trail(
            dir.path(),
            12,
            1200,
            Commit::Group(Duration::from_millis(1)),
        );
        assert!(
            files.len() >= 3,
            "expected rotation, got {} files",
            files.len()
        );
        let files = files
            .iter()
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(p).unwrap(),
                )
            })
            .collect();
        (files, head)
    })
}

/// Writes `files` into `dir` (replacing what is there) and verifies them
/// against the anchor.
fn verify_files(dir: &Path, files: &[(String, Vec<u8>)], anchor: ChainHead) -> VerifyReport {
    for entry in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(name, bytes)| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        })
        .collect();
    verify_with(&paths, &VerifyOptions::new().anchor(anchor))
}

/// Verifies `files` in memory (the same checks, no file system) against the
/// anchor.
fn verify_mem(files: &[(String, Vec<u8>)], anchor: Option<ChainHead>) -> VerifyReport {
    let v: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let options = match anchor {
        Some(a) => VerifyOptions::new().anchor(a),
        None => VerifyOptions::new(),
    };
    portcullis_audit::internal::verify_in_memory(&v, &options)
}

/// Every "file:line" the report points at.
fn locations(report: &VerifyReport) -> Vec<String> {
    let mut out: Vec<String> = report
        .problems()
        .iter()
        .filter_map(|p| match p {
            Problem::Malformed { at, .. }
            | Problem::Modified { at, .. }
            | Problem::WrongChain { at, .. }
            | Problem::Missing { at, .. }
            | Problem::OutOfOrder { at, .. }
            | Problem::BrokenLink { at, .. }
            | Problem::BadStart { at, .. }
            | Problem::UnrecoveredTornLine { at }
            | Problem::TooLong { at } => Some(at.to_string()),
            _ => None,
        })
        .collect();
    if let Some(t) = report.torn_tail() {
        out.push(t.to_string());
    }
    out
}

fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn untouched_trail_is_clean_and_rotated() {
    let (files, head) = sample();
    let dir = tempfile::tempdir().unwrap();
    let report = verify_files(dir.path(), files, *head);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.records(), 12);
    assert_eq!(report.head(), Some(*head));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// Any single-byte change is found, at the line holding the byte
    /// (verified in memory; the same checks as on files).
    #[test]
    fn any_byte_change_is_found_where_it_is(file in any::<prop::sample::Index>(), pos in any::<prop::sample::Index>(), delta in 1u8..=255) {
        let (files, head) = sample();
        let mut files = files.clone();
        let f = file.index(files.len());
        let bytes = &mut files[f].1;
        let p = pos.index(bytes.len());
        bytes[p] = bytes[p].wrapping_add(delta);
        let line = bytes[..p].iter().filter(|&&b| b == b'\n').count() + 1;
        let report = verify_mem(&files, Some(*head));
        prop_assert!(!report.is_intact(), "{}", report);
        let want = format!("{}:{line}", files[f].0);
        let locs = locations(&report);
        prop_assert!(locs.contains(&want), "want {} in {:?}\n{}", want, locs, report);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// The same on real files.
    #[test]
    fn any_byte_change_in_a_file_is_found_where_it_is(file in any::<prop::sample::Index>(), pos in any::<prop::sample::Index>(), delta in 1u8..=255) {
        thread_local!(static DIR: tempfile::TempDir = tempfile::tempdir().unwrap());
        let (files, head) = sample();
        let mut files = files.clone();
        let f = file.index(files.len());
        let bytes = &mut files[f].1;
        let p = pos.index(bytes.len());
        bytes[p] = bytes[p].wrapping_add(delta);
        let line = bytes[..p].iter().filter(|&&b| b == b'\n').count() + 1;
        let name = files[f].0.clone();
        let report = DIR.with(|d| verify_files(d.path(), &files, *head));
        prop_assert!(!report.is_intact(), "{}", report);
        let want = format!("{}:{line}", DIR.with(|d| d.path().join(&name).display().to_string()));
        let locs = locations(&report);
        prop_assert!(locs.contains(&want), "want {} in {:?}\n{}", want, locs, report);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// Deleting any line is found.
    #[test]
    fn any_deleted_line_is_found(file in any::<prop::sample::Index>(), line in any::<prop::sample::Index>()) {
        let (files, head) = sample();
        let mut files = files.clone();
        let f = file.index(files.len());
        let mut lines = lines_of(&files[f].1);
        lines.remove(line.index(lines.len()));
        files[f].1 = lines.concat();
        let report = verify_mem(&files, Some(*head));
        prop_assert!(!report.is_intact(), "{}", report);
    }

    /// Inserting a line (a copy of any record, or garbage) anywhere is found.
    #[test]
    fn any_inserted_line_is_found(file in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), from_file in any::<prop::sample::Index>(), from_line in any::<prop::sample::Index>(), garbage in proptest::option::of("[ -~]{0,40}")) {
        let (files, head) = sample();
        let mut files = files.clone();
        let inserted = match garbage {
            Some(g) => format!("{g}\n").into_bytes(),
            None => {
                let src = lines_of(&files[from_file.index(files.len())].1);
                src[from_line.index(src.len())].clone()
            }
        };
        let f = file.index(files.len());
        let mut lines = lines_of(&files[f].1);
        let at = at.index(lines.len() + 1);
        lines.insert(at, inserted);
        files[f].1 = lines.concat();
        let report = verify_mem(&files, Some(*head));
        prop_assert!(!report.is_intact(), "{}", report);
    }

    /// Swapping any two different lines (in one file or across files) is found.
    #[test]
    fn any_swap_is_found(a in any::<(prop::sample::Index, prop::sample::Index)>(), b in any::<(prop::sample::Index, prop::sample::Index)>()) {
        let (files, head) = sample();
        let mut split: Vec<Vec<Vec<u8>>> = files.iter().map(|(_, b)| lines_of(b)).collect();
        let fa = a.0.index(split.len());
        let la = a.1.index(split[fa].len());
        let fb = b.0.index(split.len());
        let lb = b.1.index(split[fb].len());
        prop_assume!((fa, la) != (fb, lb));
        let x = split[fa][la].clone();
        let y = std::mem::replace(&mut split[fb][lb], x);
        split[fa][la] = y;
        let files: Vec<(String, Vec<u8>)> = files.iter().zip(split).map(|((n, _), l)| (n.clone(), l.concat())).collect();
        let report = verify_mem(&files, Some(*head));
        prop_assert!(!report.is_intact(), "{}", report);
    }

    /// Cutting the trail anywhere (mid-line or at a line boundary, dropping
    /// later files) is found against the anchor; without it, a cut mid-line
    /// still shows as a torn tail.
    #[test]
    fn any_truncation_is_found(file in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let (files, head) = sample();
        let mut files = files.clone();
        let f = file.index(files.len());
        files.truncate(f + 1);
        let len = files[f].1.len();
        let cut = cut.index(len); // keeps 0..len-1 bytes: at least one byte goes
        files[f].1.truncate(cut);
        let report = verify_mem(&files, Some(*head));
        prop_assert!(!report.is_intact(), "{}", report);
        let mid_line = cut > 0 && files[f].1[cut - 1] != b'\n';
        if mid_line {
            let plain = verify_mem(&files, None);
            prop_assert!(plain.torn_tail().is_some(), "{}", plain);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A chain rotated across several files verifies, whatever the sizes.
    #[test]
    fn rotated_chain_verifies(n in 1u64..60, max_file_bytes in 300u64..3000) {
        let dir = tempfile::tempdir().unwrap();
        let (files, head) = write_trail(dir.path(), n, max_file_bytes, Commit::Group(Duration::from_micros(200)));
        let report = verify_with(&files, &VerifyOptions::new().anchor(head));
        prop_assert!(report.is_clean(), "{}", report);
        prop_assert_eq!(report.records(), n);
        // Each record is about 400 bytes: a file holds at most a few.
        prop_assert!(files.len() as u64 >= n * 300 / max_file_bytes.max(1) / 2);
    }
}

#[test]
fn tampering_is_reported_at_the_right_place() {
    let (files, head) = sample();
    let dir = tempfile::tempdir().unwrap();
    let name = &files[0].0;
    let path = |n: &str| dir.path().join(n).display().to_string();

    // Deletion of line 2 of the first file: the gap is reported at the line
    // that now follows.
    let mut f = files.clone();
    let mut lines = lines_of(&f[0].1);
    lines.remove(1);
    f[0].1 = lines.concat();
    let r = verify_files(dir.path(), &f, *head);
    assert!(
        matches!(&r.problems()[0], Problem::Missing { at, from: 2, to: 2 } if at.to_string() == format!("{}:2", path(name))),
        "{r}"
    );

    // Swap of lines 1 and 2.
    let mut f = files.clone();
    let mut lines = lines_of(&f[0].1);
    lines.swap(0, 1);
    f[0].1 = lines.concat();
    let r = verify_files(dir.path(), &f, *head);
    assert!(
        matches!(&r.problems()[0], Problem::BadStart { seq: 2, .. }),
        "{r}"
    );
    assert!(
        r.problems().iter().any(|p| matches!(
            p,
            Problem::OutOfOrder {
                expected: 3,
                found: 1,
                ..
            }
        )),
        "{r}"
    );

    // A modified event with its hash left alone.
    let mut f = files.clone();
    let text = String::from_utf8(f[0].1.clone()).unwrap();
    f[0].1 = text
        .replacen("select 0 from", "select 9 from", 1)
        .into_bytes();
    let r = verify_files(dir.path(), &f, *head);
    assert!(
        matches!(&r.problems()[0], Problem::Modified { at, seq: 1 } if at.to_string() == format!("{}:1", path(name))),
        "{r}"
    );
    let shown = r.to_string();
    assert!(shown.contains("TAMPERED"), "{shown}");
    assert!(shown.contains(&format!("{}:1", path(name))), "{shown}");
}

#[test]
fn torn_tail_is_reported_on_open_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (files, head) = write_trail(dir.path(), 5, 1 << 20, Commit::PerRecord);
    assert_eq!(files.len(), 1);
    // A crash mid-write: half a record at the end.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let last = lines_of(&bytes).pop().unwrap();
    bytes.extend_from_slice(&last[..last.len() / 2]);
    std::fs::write(&files[0], &bytes).unwrap();

    let before = verify(&files);
    assert!(before.is_intact(), "{before}");
    assert_eq!(before.torn_tail().map(|t| t.line), Some(6));

    let rt = runtime();
    let (sink, report) = JsonlSink::open(dir.path(), JsonlOptions::new("gw-1")).unwrap();
    let torn = report.torn_tail.clone().expect("torn tail reported");
    assert_eq!((torn.path.clone(), torn.line), (files[0].clone(), 6));
    // The recovery record took seq 6.
    assert_eq!(report.head.seq, head.seq + 1);
    let r = rt.block_on(sink.record(&event(99))).unwrap();
    assert_eq!(r.seq(), 7);
    drop(sink);

    let files = trail_files(dir.path(), "gw-1").unwrap();
    assert_eq!(files.len(), 2);
    let after = verify(&files);
    assert!(after.is_clean(), "{after}");
    assert_eq!(after.recovered().len(), 1);
    assert_eq!(after.records(), 7);

    // A torn fragment in a file followed by one that does not start with a
    // recovery record naming it is a problem.
    let (sample_files, head) = sample();
    let mut f = sample_files.clone();
    f[0].1.extend_from_slice(b"{\"chain\":\"gw-1\",\"se");
    let other = tempfile::tempdir().unwrap();
    let r = verify_files(other.path(), &f, *head);
    assert!(
        matches!(&r.problems()[0], Problem::UnrecoveredTornLine { at } if at.line == lines_of(&f[0].1).len() as u64),
        "{r}"
    );
}

#[test]
fn concurrent_group_commit_keeps_every_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let options = JsonlOptions::new("gw-1")
        .commit(Commit::Group(Duration::from_millis(2)))
        .max_file_bytes(64 << 10);
    let (sink, _) = JsonlSink::open(dir.path(), options).unwrap();
    let sink = Arc::new(sink);
    let seqs = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in 0..16u64 {
            let sink = Arc::clone(&sink);
            set.spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    seqs.push(sink.record(&event(t * 1000 + i)).await.unwrap().seq());
                }
                sink.flush().await.unwrap();
                seqs
            });
        }
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.extend(r.unwrap());
        }
        all
    });
    assert!(rt.block_on(sink.health()).is_ready());
    drop(sink);
    let mut seqs = seqs;
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=800).collect::<Vec<u64>>());
    let files = trail_files(dir.path(), "gw-1").unwrap();
    assert!(files.len() > 1);
    let report = verify(&files);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.records(), 800);
}

#[test]
fn reopening_continues_the_chain_and_timeline_reads_a_session() {
    let dir = tempfile::tempdir().unwrap();
    write_trail(dir.path(), 4, 1 << 20, Commit::PerRecord);
    let (files, _) = write_trail(dir.path(), 4, 1 << 20, Commit::PerRecord);
    let report = verify(&files);
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.records(), 8);

    let timeline = session_timeline(&files, "s1").unwrap();
    let seqs: Vec<u64> = timeline.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![2, 4, 6, 8]);
    assert!(
        timeline
            .iter()
            .all(|e| e.event.session.as_deref() == Some("s1"))
    );
    let shown = timeline[0].to_string();
    assert!(shown.contains("select 1 from t"), "{shown}");
}

#[test]
fn unhealthy_when_disk_space_is_short_and_refuses_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let (sink, _) = JsonlSink::open(
        dir.path(),
        JsonlOptions::new("gw-1").min_free_bytes(u64::MAX),
    )
    .unwrap();
    assert!(!rt.block_on(sink.health()).is_ready());
    drop(sink);
    assert!(JsonlSink::open(dir.path(), JsonlOptions::new("../x")).is_err());
    assert!(
        JsonlSink::open(
            dir.path(),
            JsonlOptions::new("gw-1").commit(Commit::Group(Duration::ZERO))
        )
        .is_err()
    );
    let (sink, _) =
        JsonlSink::open(dir.path(), JsonlOptions::new("gw-1").max_event_bytes(10)).unwrap();
    assert!(rt.block_on(sink.record(&event(1))).is_err());
}

#[test]
fn a_corrupt_complete_last_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (files, _) = write_trail(dir.path(), 3, 1 << 20, Commit::PerRecord);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes.extend_from_slice(b"garbage\n");
    std::fs::write(&files[0], &bytes).unwrap();
    let err = JsonlSink::open(dir.path(), JsonlOptions::new("gw-1")).unwrap_err();
    assert!(err.to_string().contains("line 4"), "{err}");
}

#[test]
fn a_second_writer_on_the_same_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = JsonlSink::open(dir.path(), JsonlOptions::new("gw-1")).unwrap();
    let err = JsonlSink::open(dir.path(), JsonlOptions::new("gw-1")).unwrap_err();
    assert!(err.to_string().contains("another writer"), "{err}");
    // Another chain in the same directory is fine.
    let (_other, _) = JsonlSink::open(dir.path(), JsonlOptions::new("gw-2")).unwrap();
    drop(first);
    JsonlSink::open(dir.path(), JsonlOptions::new("gw-1")).unwrap();
}

#[test]
fn a_keyed_chain_verifies_only_with_its_key() {
    let key = portcullis_audit::ChainKey::new(*b"a 32-byte secret kept elsewhere!").unwrap();
    let rt = runtime();
    let keyed = tempfile::tempdir().unwrap();
    let (sink, _) =
        JsonlSink::open(keyed.path(), JsonlOptions::new("gw-1").key(key.clone())).unwrap();
    rt.block_on(async {
        for i in 0..5 {
            sink.record(&event(i)).await.unwrap();
        }
    });
    drop(sink);
    // Reopening with the key continues the chain.
    let (sink, report) =
        JsonlSink::open(keyed.path(), JsonlOptions::new("gw-1").key(key.clone())).unwrap();
    assert_eq!(report.head.seq, 5);
    rt.block_on(sink.record(&event(5))).unwrap();
    drop(sink);
    let files = trail_files(keyed.path(), "gw-1").unwrap();
    let with_key = verify_with(&files, &VerifyOptions::new().key(key.clone()));
    assert!(with_key.is_clean(), "{with_key}");
    assert_eq!(with_key.records(), 6);
    let without = verify(&files);
    assert!(
        matches!(without.problems()[0], Problem::Modified { seq: 1, .. }),
        "{without}"
    );
    let wrong = portcullis_audit::ChainKey::new(*b"another key, 32 bytes long......").unwrap();
    assert!(!verify_with(&files, &VerifyOptions::new().key(wrong)).is_intact());
    // Opening a keyed trail without the key is refused.
    assert!(JsonlSink::open(keyed.path(), JsonlOptions::new("gw-1")).is_err());
    // The timeline reads it with the key only.
    assert_eq!(
        portcullis_audit::session_timeline_keyed(&files, "s1", &key)
            .unwrap()
            .len(),
        3
    );
    assert!(session_timeline(&files, "s1").is_err());

    // A forger without the key can only write a plain chain (every hash
    // recomputed): it does not verify with the key.
    let forged = tempfile::tempdir().unwrap();
    let (files, _) = write_trail(forged.path(), 6, 1 << 20, Commit::PerRecord);
    let r = verify_with(&files, &VerifyOptions::new().key(key));
    assert!(
        matches!(r.problems()[0], Problem::Modified { seq: 1, .. }),
        "{r}"
    );
    assert!(portcullis_audit::ChainKey::new(*b"short").is_err());
}
