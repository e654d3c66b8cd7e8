//! Prints the longest match of each pattern read from stdin (one per line),
//! in the catalogue's dialect (bytes, Unicode off), or `ERR <message>`.
//! `scripts/gen-mask-formats.py` uses it to fill in each generated
//! detector's `max_len` (the catalogue tests check the same figure).
//!
//! Run with: `cargo run -q -p portcullis-mask --example pattern_max_len < patterns.txt`

use std::io::{BufRead, Write};

use regex_automata::util::syntax;

fn main() -> std::io::Result<()> {
    let config = syntax::Config::new().unicode(false).utf8(false);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let pattern = line?;
        match syntax::parse_with(&pattern, &config) {
            Ok(hir) => match hir.properties().maximum_len() {
                Some(n) => writeln!(out, "{n}")?,
                None => writeln!(out, "ERR unbounded")?,
            },
            Err(e) => writeln!(out, "ERR {}", e.to_string().replace('\n', " "))?,
        }
    }
    Ok(())
}
