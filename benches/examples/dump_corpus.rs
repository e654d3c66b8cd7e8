//! Writes the 1 MiB bench corpora (`no-secrets`, `dense`, `base64`) to files
//! in the given directory, to feed the `mask` example or a profiler.
//!
//! `cargo run -p portcullis-benches --example dump_corpus -- DIR`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_benches::corpus;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    for (name, data) in [
        ("no-secrets", corpus::no_secrets(1 << 20, 1)),
        ("dense", corpus::dense(1 << 20, 2)),
        ("base64", corpus::base64_blobs(1 << 20, 3)),
    ] {
        std::fs::write(dir.join(format!("{name}.txt")), data).unwrap();
    }
}
