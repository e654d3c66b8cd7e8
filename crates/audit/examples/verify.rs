//! Verifies a JSON Lines audit trail and prints a report.
//!
//! ```text
//! cargo run -p portcullis-audit --example verify -- FILE…
//! cargo run -p portcullis-audit --example verify -- DIR            # every *.jsonl in it, by name
//! cargo run -p portcullis-audit --example verify -- --anchor SEQ:HASH FILE…
//! cargo run -p portcullis-audit --example verify -- --anywhere FILE… # trail starts mid-chain
//! cargo run -p portcullis-audit --example verify -- --key-file KEY FILE… # keyed (HMAC) chain
//! ```
//!
//! Exit status: 0 intact (a torn tail is reported but is not a failure),
//! 1 tampered or damaged, 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use portcullis_audit::{ChainHash, ChainHead, ChainKey, Start, VerifyOptions, verify_with};

fn usage(msg: &str) -> ExitCode {
    eprintln!("{msg}\nusage: verify [--anchor SEQ:HASH] [--anywhere] [--key-file KEY] FILE|DIR…");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut options = VerifyOptions::new();
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--anchor") => {
                let Some(value) = args.next() else {
                    return usage("--anchor needs SEQ:HASH");
                };
                let value = value.to_string_lossy().into_owned();
                let parsed = value.split_once(':').and_then(|(s, h)| {
                    Some(ChainHead {
                        seq: s.parse().ok()?,
                        hash: ChainHash::from_hex(h)?,
                    })
                });
                match parsed {
                    Some(head) => options = options.anchor(head),
                    None => return usage(&format!("bad anchor {value:?}")),
                }
            }
            Some("--anywhere") => options = options.start(Start::Anywhere),
            Some("--key-file") => {
                let Some(path) = args.next() else {
                    return usage("--key-file needs a file");
                };
                let mut bytes = match std::fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => return usage(&format!("{}: {e}", path.to_string_lossy())),
                };
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                match ChainKey::new(bytes) {
                    Ok(key) => options = options.key(key),
                    Err(e) => return usage(&e.to_string()),
                }
            }
            Some("-h" | "--help") => return usage("verifies a Portcullis audit trail"),
            _ => {
                let path = PathBuf::from(arg);
                if path.is_dir() {
                    let mut found: Vec<PathBuf> = match std::fs::read_dir(&path) {
                        Ok(entries) => entries
                            .filter_map(Result::ok)
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                            .collect(),
                        Err(e) => return usage(&format!("{}: {e}", path.display())),
                    };
                    found.sort();
                    paths.extend(found);
                } else {
                    paths.push(path);
                }
            }
        }
    }
    if paths.is_empty() {
        return usage("no files given");
    }
    let report = verify_with(&paths, &options);
    print!("{report}");
    if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
