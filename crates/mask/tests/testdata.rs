//! The shared testdata runner: every case of testdata/mask/*.toml, masked by
//! the default masker (built-in catalogue, redact style) whole-buffer and
//! streamed at every chunk size from 1 to 64; plus the catalogue's coverage
//! (at least 3 positive and 2 negative cases per built-in detector).
// Test code: a failed unwrap is a failed test (clippy.toml allows this in
// `#[test]` functions only, not in their helpers).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{Case, Kind, load_cases};
use portcullis_mask::{Masker, catalogue};

/// Cases that are not run, each with the reason (none at present).
const SKIP: &[(&str, &str)] = &[];

type Findings = Vec<(String, std::ops::Range<usize>)>;

fn whole(m: &Masker, input: &[u8]) -> (Vec<u8>, Findings) {
    let r = m.mask(input);
    let f = r
        .findings()
        .iter()
        .map(|f| (f.detector().to_string(), f.span()))
        .collect();
    (r.output().to_vec(), f)
}

fn streamed(m: &Masker, input: &[u8], chunk: usize) -> (Vec<u8>, Findings) {
    let mut s = m.stream();
    let mut out = Vec::new();
    let mut f = Vec::new();
    for c in input.chunks(chunk) {
        f.extend(
            s.push(c, &mut out)
                .iter()
                .map(|x| (x.detector().to_string(), x.span())),
        );
    }
    f.extend(
        s.finish(&mut out)
            .iter()
            .map(|x| (x.detector().to_string(), x.span())),
    );
    (out, f)
}

fn run_case(m: &Masker, case: &Case) -> Result<(), String> {
    let input = case.input.as_bytes();
    let expected_out = match (&case.output, case.kind) {
        (Some(o), _) => o.as_str(),
        (None, Kind::Negative) => case.input.as_str(),
        (None, Kind::Positive) => return Err("positive case without `output`".into()),
    };
    let (out, findings) = whole(m, input);
    let out_text = String::from_utf8_lossy(&out);
    if out_text != expected_out {
        return Err(format!(
            "output\n    got:      {out_text:?}\n    expected: {expected_out:?}"
        ));
    }
    let ids: Vec<&str> = findings.iter().map(|f| f.0.as_str()).collect();
    if ids != case.findings {
        return Err(format!(
            "findings: got {ids:?}, expected {:?}",
            case.findings
        ));
    }
    if case.kind == Kind::Negative && !findings.is_empty() {
        return Err(format!("negative case has findings {ids:?}"));
    }
    if case.kind == Kind::Positive && !ids.contains(&case.detector.as_str()) {
        return Err(format!("positive case not found by `{}`", case.detector));
    }
    for n in 1..=64 {
        let s = streamed(m, input, n);
        if s != (out.clone(), findings.clone()) {
            return Err(format!(
                "streamed at chunk size {n} differs: {:?} {:?}",
                String::from_utf8_lossy(&s.0),
                s.1
            ));
        }
    }
    Ok(())
}

#[test]
fn testdata_cases() {
    let masker = Masker::builder().build().unwrap();
    let cases = load_cases();
    let builtin: HashSet<&str> = catalogue().map(|d| d.id()).collect();
    let mut failures = Vec::new();
    let mut names = HashSet::new();
    let mut ran = 0;
    for case in &cases {
        if !names.insert(case.name.as_str()) {
            failures.push(format!("{}: duplicate case name {}", case.file, case.name));
        }
        if let Some((_, reason)) = SKIP.iter().find(|(n, _)| *n == case.name) {
            eprintln!("skipped {}: {reason}", case.name);
            continue;
        }
        if !builtin.contains(case.detector.as_str()) {
            failures.push(format!(
                "{} {}: detector `{}` is not in the catalogue",
                case.file, case.name, case.detector
            ));
            continue;
        }
        ran += 1;
        if let Err(e) = run_case(&masker, case) {
            failures.push(format!(
                "{} {}: {e}\n    input: {:?}",
                case.file, case.name, case.input
            ));
        }
    }
    eprintln!("{ran} testdata cases run, {} skipped", SKIP.len());
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_builtin_detector_has_cases() {
    let cases = load_cases();
    let mut counts: BTreeMap<&str, (usize, usize)> =
        catalogue().map(|d| (d.id(), (0, 0))).collect();
    for case in &cases {
        if let Some(c) = counts.get_mut(case.detector.as_str()) {
            match case.kind {
                Kind::Positive => c.0 += 1,
                Kind::Negative => c.1 += 1,
            }
        }
    }
    let missing: Vec<String> = counts
        .iter()
        .filter(|(_, (p, n))| *p < 3 || *n < 2)
        .map(|(id, (p, n))| format!("{id}: {p} positive, {n} negative"))
        .collect();
    assert!(
        missing.is_empty(),
        "{} built-in detectors lack cases (need 3 positive, 2 negative):\n{}",
        missing.len(),
        missing.join("\n")
    );
}
