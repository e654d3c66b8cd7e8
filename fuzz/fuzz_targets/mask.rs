//! Masks arbitrary bytes whole and streamed in arbitrary chunks: never
//! panics, and the streamed output and findings equal the whole-buffer ones.
//!
//! Seeds and crashers live in testdata/fuzz/mask/ and are replayed (with
//! mutations) by `cargo test -p portcullis-mask --test fuzz_replay`, which decodes
//! them into the same input structure; keep the two in step.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
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
            .rule(Rule::regex("fz-blob", r"<<[\s\S]*?>>").keywords(["<<"]).max_len(64))
            .rule(Rule::regex("fz-num", r"\b\d{3}~\d{4}\b").max_len(8))
            .field_rule(FieldRule::new("*secret*").style(Style::partial(2)))
            .build()
            .expect("fuzz masker builds")
    })
}

fuzz_target!(|case: Case| {
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
        spans.extend(s.push(chunk, &mut out).iter().map(|f| (f.detector().to_string(), f.span())));
        rest = tail;
        i += 1;
    }
    spans.extend(s.finish(&mut out).iter().map(|f| (f.detector().to_string(), f.span())));
    assert_eq!(out, whole.output());
    let want: Vec<_> = whole.findings().iter().map(|f| (f.detector().to_string(), f.span())).collect();
    assert_eq!(spans, want);
    let _ = m.mask_field(&case.field, &case.input);
});
