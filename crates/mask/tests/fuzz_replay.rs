//! Replays the committed seeds and crashers of the `mask` fuzz target
//! (testdata/fuzz/mask/) through the same checks as fuzz/fuzz_targets/mask.rs
//! (keep the two in step): masking arbitrary bytes never panics, and
//! streamed in arbitrary chunks gives the whole-buffer output and findings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use portcullis_mask::{FieldRule, Masker, Rule, Style};

#[derive(Debug, Arbitrary)]
struct Case {
    input: Vec<u8>,
    /// Chunk sizes, cycled (0 is read as 1).
    chunks: Vec<u8>,
    field: String,
}

fn masker() -> &'static Masker {
    static M: OnceLock<Masker> = OnceLock::new();
    M.get_or_init(|| {
        Masker::builder()
            .rule(
                Rule::regex("fz-blob", r"<<[\s\S]*?>>")
                    .keywords(["<<"])
                    .max_len(64),
            )
            .rule(Rule::regex("fz-num", r"\b\d{3}~\d{4}\b").max_len(8))
            .field_rule(FieldRule::new("*secret*").style(Style::partial(2)))
            .build()
            .expect("fuzz masker builds")
    })
}

/// The fuzz target's body.
fn run(case: &Case) {
    if case.input.len() > 64 << 10 {
        return;
    }
    let m = masker();
    let whole = m.mask(&case.input);
    let mut s = m.stream();
    let mut out = Vec::new();
    let mut spans = Vec::new();
    let mut rest = &case.input[..];
    let mut i = 0;
    while !rest.is_empty() {
        let n = case
            .chunks
            .get(i % case.chunks.len().max(1))
            .map_or(rest.len(), |&n| usize::from(n).max(1))
            .min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        spans.extend(
            s.push(chunk, &mut out)
                .iter()
                .map(|f| (f.detector().to_string(), f.span())),
        );
        rest = tail;
        i += 1;
    }
    spans.extend(
        s.finish(&mut out)
            .iter()
            .map(|f| (f.detector().to_string(), f.span())),
    );
    assert_eq!(out, whole.output(), "{case:?}");
    let want: Vec<_> = whole
        .findings()
        .iter()
        .map(|f| (f.detector().to_string(), f.span()))
        .collect();
    assert_eq!(spans, want, "{case:?}");
    let _ = m.mask_field(&case.field, &case.input);
}

fn decode(bytes: &[u8]) -> Option<Case> {
    Case::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

fn files() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fuzz/mask");
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

#[test]
fn mask_seeds_and_crashers_replay() {
    let all = files();
    assert!(all.len() >= 4, "only {} inputs", all.len());
    for (name, bytes) in &all {
        let case = decode(bytes).unwrap_or_else(|| panic!("{name} does not decode"));
        run(&case);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The seeds with bytes overwritten at random places.
    #[test]
    fn mutated_mask_seeds_replay(
        pick in 0usize..64,
        edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..16),
    ) {
        let all = files();
        let mut bytes = all[pick % all.len()].1.clone();
        for (at, byte) in edits {
            let len = bytes.len();
            if len > 0 {
                bytes[at % len] = byte;
            }
        }
        if let Some(case) = decode(&bytes) {
            run(&case);
        }
    }
}
