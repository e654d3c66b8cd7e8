//! Replays the committed seeds and crashers of the `pg_session` fuzz target
//! (testdata/fuzz/pg_session/, see testdata/fuzz/gen_pg_session_seeds.py).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn pg_session_seeds_and_crashers_replay() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fuzz/pg_session");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let script = std::fs::read(&path).unwrap();
        portcullis_pg::internal::fuzz_session_script(&script);
        n += 1;
    }
    assert!(n >= 10, "only {n} scripts in {}", dir.display());
}

/// Every prefix of every seed: a session cut off at any step.
#[test]
fn every_prefix_of_the_seeds_replays() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fuzz/pg_session");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let script = std::fs::read(entry.unwrap().path()).unwrap();
        for end in 0..script.len() {
            portcullis_pg::internal::fuzz_session_script(&script[..end]);
        }
    }
}
