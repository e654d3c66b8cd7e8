//! Deterministic instruction counts of the masker's hot paths (gungraun on
//! Valgrind's callgrind): whole-buffer masking of clean and dense text, and
//! streaming in 8 KiB chunks, each over 256 KiB of the bench corpora with the
//! full default catalogue. The masker is built and warmed (its lazy DFAs
//! filled) in the setup, which is not counted.
//!
//! Needs Valgrind and `gungraun-runner` of the same version as the `gungraun`
//! crate (`cargo install gungraun-runner --version 0.20.0 --locked`). Run
//! through `scripts/instructions.sh`, which compares the counts with the
//! committed baseline `benches/instructions.baseline` and fails on growth of
//! more than 3 %.
// A bench harness: a broken setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use gungraun::{library_benchmark, library_benchmark_group, main};
use portcullis_benches::corpus;
use portcullis_mask::Masker;

const LEN: usize = 256 << 10;
const CHUNK: usize = 8 << 10;

/// A warmed masker and the corpus.
fn setup(name: &str) -> (Masker, Vec<u8>) {
    let data = match name {
        "clean" => corpus::no_secrets(LEN, 1),
        "dense" => corpus::dense(LEN, 2),
        other => panic!("unknown corpus {other}"),
    };
    let masker = Masker::builder().build().unwrap();
    black_box(masker.mask(&data).findings().len());
    black_box(stream(&masker, &data));
    (masker, data)
}

fn stream(masker: &Masker, data: &[u8]) -> usize {
    let mut out = Vec::with_capacity(2 * CHUNK + masker.holdback());
    let mut s = masker.stream();
    let mut findings = 0;
    for chunk in data.chunks(CHUNK) {
        out.clear();
        findings += s.push(chunk, &mut out).len();
    }
    out.clear();
    findings + s.finish(&mut out).len()
}

#[library_benchmark]
#[bench::clean(args = ("clean"), setup = setup)]
#[bench::dense(args = ("dense"), setup = setup)]
fn whole((masker, data): (Masker, Vec<u8>)) -> usize {
    black_box(masker.mask(black_box(&data)).findings().len())
}

#[library_benchmark]
#[bench::clean(args = ("clean"), setup = setup)]
#[bench::dense(args = ("dense"), setup = setup)]
fn stream_8k((masker, data): (Masker, Vec<u8>)) -> usize {
    black_box(stream(&masker, black_box(&data)))
}

library_benchmark_group!(name = mask, benchmarks = [whole, stream_8k]);
main!(library_benchmark_groups = mask);
