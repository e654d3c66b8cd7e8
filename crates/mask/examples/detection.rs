//! Detection figures of the default catalogue on our own test data, per
//! detector family (one TOML file = one family):
//!
//! * `testdata/mask/*.toml`, the gated cases (every one must pass `cargo
//!   test`, so recall there is 1.0 by construction; listed as a check);
//! * `testdata/mask-eval/*.toml`, the evaluation set the tests do not gate:
//!   fresh values in other surroundings (docker `-e`, Kubernetes env lists,
//!   URL queries, JS objects, quoted exports) and other negatives (CI secret
//!   expressions, `***`, project ids, commit hashes, wrong-case prefixes),
//!   plus hand-built generic-assignment and PII cases (scripts/gen-mask-eval.py).
//!
//! For a positive, *recall* counts it when the secret no longer appears in the
//! masked output (whatever detector masked it); *own* counts it when the
//! detector the case names reported a finding. For a negative, *flagged*
//! counts it when anything was reported.
//!
//! Run with: `cargo run --release -p portcullis-mask --example detection [-- --misses]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis_mask::Masker;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    detector: String,
    kind: String,
    input: String,
    #[serde(default)]
    secret: Option<String>,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Default)]
struct Tally {
    pos: usize,
    masked: usize,
    own: usize,
    neg: usize,
    flagged: usize,
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn ratio(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        #[allow(clippy::cast_precision_loss)]
        let r = a as f64 / b as f64;
        format!("{r:.3}")
    }
}

fn main() -> ExitCode {
    let show_misses = std::env::args().any(|a| a == "--misses");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    let masker = match Masker::builder().build() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("cannot build the masker: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{:<6} {:<28} {:>5} {:>7} {:>7} {:>5} {:>8}",
        "set", "family", "pos", "recall", "own", "neg", "flagged"
    );
    for (set, dir) in [("gated", "mask"), ("eval", "mask-eval")] {
        let mut total = Tally::default();
        let mut pii_by_type: BTreeMap<String, Tally> = BTreeMap::new();
        for path in files(&root.join(dir)) {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            };
            let file: File = match toml::from_str(&text) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            };
            let family = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut t = Tally::default();
            for c in &file.case {
                let m = masker.mask(c.input.as_bytes());
                let out = String::from_utf8_lossy(m.output()).into_owned();
                let own = m.findings().iter().any(|f| f.detector() == c.detector);
                let per = pii_by_type.entry(c.detector.clone()).or_default();
                if c.kind == "positive" {
                    // Gated cases have no `secret`: there the own detector's
                    // finding is what the tests require.
                    let masked = match &c.secret {
                        Some(s) => !out.contains(s.as_str()),
                        None => own,
                    };
                    t.pos += 1;
                    t.masked += usize::from(masked);
                    t.own += usize::from(own);
                    per.pos += 1;
                    per.masked += usize::from(masked);
                    if show_misses && !masked {
                        println!("  miss {}: {:?} -> {:?}", c.name, c.input, out);
                    }
                } else {
                    let flagged = !m.findings().is_empty();
                    t.neg += 1;
                    t.flagged += usize::from(flagged);
                    per.neg += 1;
                    per.flagged += usize::from(flagged);
                    if show_misses && flagged {
                        println!("  false positive {}: {:?} -> {:?}", c.name, c.input, out);
                    }
                }
            }
            println!(
                "{:<6} {:<28} {:>5} {:>7} {:>7} {:>5} {:>8}",
                set,
                family,
                t.pos,
                ratio(t.masked, t.pos),
                ratio(t.own, t.pos),
                t.neg,
                ratio(t.flagged, t.neg)
            );
            total.pos += t.pos;
            total.masked += t.masked;
            total.own += t.own;
            total.neg += t.neg;
            total.flagged += t.flagged;
            if family != "pii" {
                for c in &file.case {
                    pii_by_type.remove(&c.detector);
                }
            }
        }
        println!(
            "{:<6} {:<28} {:>5} {:>7} {:>7} {:>5} {:>8}",
            set,
            "ALL",
            total.pos,
            ratio(total.masked, total.pos),
            ratio(total.own, total.pos),
            total.neg,
            ratio(total.flagged, total.neg)
        );
        for (ty, t) in &pii_by_type {
            println!(
                "{:<6} {:<28} {:>5} {:>7} {:>7} {:>5} {:>8}",
                set,
                format!("  pii:{ty}"),
                t.pos,
                ratio(t.masked, t.pos),
                "",
                t.neg,
                ratio(t.flagged, t.neg)
            );
        }
    }
    ExitCode::SUCCESS
}
