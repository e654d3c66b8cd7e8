//! Masks stdin to stdout with the default catalogue.
//!
//! ```text
//! cargo run --release -p portcullis-mask --example mask [--stream N] [--findings] < input
//! ```
//!
//! * `--stream N`: feed the input to a `StreamMasker` in N-byte chunks
//!   (default: mask the whole input at once);
//! * `--findings`: write one JSON line per finding to stderr (detector id,
//!   category, byte span), never the value.

use std::io::{Read, Write};
use std::process::ExitCode;

use portcullis_mask::{Category, Finding, Masker};

fn usage() -> ExitCode {
    eprintln!("usage: mask [--stream N] [--findings] < input > output");
    ExitCode::from(2)
}

fn report(findings: &[Finding<'_>], err: &mut impl Write) -> std::io::Result<()> {
    for f in findings {
        let category = match f.category() {
            Category::Secret => "secret",
            Category::Pii => "pii",
            _ => "other",
        };
        let line = serde_json::json!({
            "detector": f.detector(),
            "category": category,
            "start": f.span().start,
            "end": f.span().end,
        });
        writeln!(err, "{line}")?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut chunk: Option<usize> = None;
    let mut findings = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stream" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => chunk = Some(n),
                _ => return usage(),
            },
            "--findings" => findings = true,
            _ => return usage(),
        }
    }
    let masker = match Masker::builder().build() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("mask: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&masker, chunk, findings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(masker: &Masker, chunk: Option<usize>, findings: bool) -> std::io::Result<()> {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    match chunk {
        None => {
            let mut input = Vec::new();
            stdin.read_to_end(&mut input)?;
            let masked = masker.mask(&input);
            stdout.write_all(masked.output())?;
            if findings {
                report(masked.findings(), &mut stderr)?;
            }
        }
        Some(n) => {
            let mut stream = masker.stream();
            let mut buf = vec![0u8; n];
            let mut out = Vec::new();
            loop {
                // Fill a whole chunk (or reach the end) so chunks are N bytes.
                let mut filled = 0;
                while let Some(rest) = buf.get_mut(filled..n).filter(|r| !r.is_empty()) {
                    match stdin.read(rest)? {
                        0 => break,
                        k => filled += k,
                    }
                }
                if filled == 0 {
                    break;
                }
                out.clear();
                let f = stream.push(buf.get(..filled).unwrap_or_default(), &mut out);
                if findings {
                    report(f, &mut stderr)?;
                }
                stdout.write_all(&out)?;
                if filled < n {
                    break;
                }
            }
            out.clear();
            let f = stream.finish(&mut out);
            if findings {
                report(&f, &mut stderr)?;
            }
            stdout.write_all(&out)?;
        }
    }
    stdout.flush()
}
