//! Replays the committed seeds and crashers of the `pg_session` fuzz target
//! (testdata/fuzz/pg_session/, see testdata/fuzz/gen_pg_session_seeds.py).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

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

fn seeds() -> Vec<Vec<u8>> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fuzz/pg_session");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    v
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// The seeds with bytes overwritten at random places: the mutations a
    /// fuzzer starts from, run by every `cargo test`.
    #[test]
    fn mutated_seeds_replay(
        pick in 0usize..64,
        edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..16),
    ) {
        let all = seeds();
        let mut script = all[pick % all.len()].clone();
        for (at, byte) in edits {
            let len = script.len();
            if len > 0 {
                script[at % len] = byte;
            }
        }
        portcullis_pg::internal::fuzz_session_script(&script);
    }
}

/// The input of the `pg_codec` fuzz target (fuzz/fuzz_targets/pg_codec.rs;
/// keep the two in step).
#[derive(Debug, arbitrary::Arbitrary)]
struct CodecInput {
    client: Vec<u8>,
    backend: Vec<u8>,
    ready: bool,
}

/// The `pg_codec` target's body.
fn run_codec(input: &CodecInput) {
    if input.client.len() + input.backend.len() > 64 * 1024 {
        return;
    }
    portcullis_pg::internal::fuzz_codec(&input.client);
    portcullis_pg::internal::fuzz_codec(&input.backend);
    portcullis_pg::internal::fuzz_session(&input.client, &input.backend, input.ready);
}

fn decode_codec(bytes: &[u8]) -> Option<CodecInput> {
    <CodecInput as arbitrary::Arbitrary>::arbitrary_take_rest(arbitrary::Unstructured::new(bytes))
        .ok()
}

fn codec_inputs() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fuzz/pg_codec");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// The committed seeds and crashers of the `pg_codec` target
/// (testdata/fuzz/pg_codec/).
#[test]
fn pg_codec_seeds_and_crashers_replay() {
    let all = codec_inputs();
    assert!(all.len() >= 4, "only {} inputs", all.len());
    for (name, bytes) in &all {
        let input = decode_codec(bytes).unwrap_or_else(|| panic!("{name} does not decode"));
        run_codec(&input);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The `pg_codec` seeds with bytes overwritten at random places.
    #[test]
    fn mutated_codec_seeds_replay(
        pick in 0usize..64,
        edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..16),
    ) {
        let all = codec_inputs();
        let mut bytes = all[pick % all.len()].1.clone();
        for (at, byte) in edits {
            let len = bytes.len();
            if len > 0 {
                bytes[at % len] = byte;
            }
        }
        if let Some(input) = decode_codec(&bytes) {
            run_codec(&input);
        }
    }
}
