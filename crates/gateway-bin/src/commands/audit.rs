//! `audit verify|tail` and `sessions show`: reading a trail's files.

use std::path::PathBuf;

use crate::cli::AuditCommand;

/// `sessions show ID FILES…`: one session's timeline from the trail.
pub(crate) fn session_show(id: &str, files: &[PathBuf]) -> Result<(), String> {
    let files = trail_paths(files)?;
    let entries = portcullis_audit::session_timeline(&files, id).map_err(|e| e.to_string())?;
    if entries.is_empty() {
        return Err(format!("no records of session {id} in the trail"));
    }
    for e in entries {
        println!(
            "{}",
            serde_json::to_string(&e.event).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}

/// Files as given, with each directory replaced by the `*.jsonl` files in it,
/// in name order (the order a trail's files are written in).
pub(crate) fn trail_paths(given: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in given {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub(crate) fn run(cmd: AuditCommand) -> Result<(), String> {
    match cmd {
        AuditCommand::Verify { files } => {
            let files = trail_paths(&files)?;
            let report = portcullis_audit::verify(&files);
            println!("{report}");
            if report.is_intact() {
                Ok(())
            } else {
                Err("the trail does not verify".to_owned())
            }
        }
        AuditCommand::Tail {
            files: given,
            lines,
            follow,
        } => {
            let files = trail_paths(&given)?;
            let mut last = std::collections::VecDeque::with_capacity(lines.min(10_000));
            // Where each file's complete lines end: following resumes there.
            let mut offsets = std::collections::HashMap::new();
            for f in &files {
                let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
                let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                offsets.insert(f.clone(), complete as u64);
                let text = String::from_utf8_lossy(bytes.get(..complete).unwrap_or_default());
                for line in text.lines() {
                    if last.len() == lines {
                        last.pop_front();
                    }
                    if lines > 0 {
                        last.push_back(line.to_owned());
                    }
                }
            }
            for l in last {
                println!("{l}");
            }
            if follow {
                follow_trail(&given, offsets)?;
            }
            Ok(())
        }
    }
}

/// Prints complete lines appended to the trail from now on.
fn follow_trail(
    given: &[PathBuf],
    mut offsets: std::collections::HashMap<PathBuf, u64>,
) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let stdout = std::io::stdout();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        for f in trail_paths(given)? {
            let offset = offsets.entry(f.clone()).or_insert(0);
            let Ok(mut file) = std::fs::File::open(&f) else {
                continue;
            };
            if file.seek(SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            let mut new = Vec::new();
            if file.read_to_end(&mut new).is_err() {
                continue;
            }
            // Only complete lines: a line being written is printed next time.
            let complete = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if complete > 0 {
                let mut out = stdout.lock();
                out.write_all(new.get(..complete).unwrap_or_default())
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("writing: {e}"))?;
                *offset += complete as u64;
            }
        }
    }
}
