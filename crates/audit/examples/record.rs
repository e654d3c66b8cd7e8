//! Writes sample events to a JSON Lines trail, for trying `verify` on.
//!
//! ```text
//! cargo run -p portcullis-audit --example record -- DIR [COUNT]
//! cargo run -p portcullis-audit --example verify -- DIR
//! ```
//!
//! Prints the anchor (`SEQ:HASH` of the last receipt) to pass to
//! `verify --anchor`.

use std::process::ExitCode;
use std::time::Duration;

use portcullis_audit::{
    AuditEvent, AuditSink, Commit, Effect, EventKind, JsonlOptions, JsonlSink, MaskedText,
};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: record DIR [COUNT]");
        return ExitCode::from(2);
    };
    let count: u64 = match args.next().map(|c| c.parse()) {
        None => 10,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("bad COUNT: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let options = JsonlOptions::new("example").commit(Commit::Group(Duration::from_millis(5)));
    let result = runtime.block_on(async {
        let (sink, report) = JsonlSink::open(std::path::Path::new(&dir), options)?;
        if let Some(torn) = &report.torn_tail {
            println!(
                "recovered from a torn line at {}:{}",
                torn.path.display(),
                torn.line
            );
        }
        let mut last = None;
        for i in 0..count {
            let event = AuditEvent::new(EventKind::Command {
                command_id: i,
                text: MaskedText::already_masked(format!("select * from orders where id = {i}")),
                facts: Default::default(),
                effect: Effect::Allow,
                rule_id: Some("read-only".into()),
                reason: "reads are allowed".into(),
            })
            .with_session("example-session");
            last = Some(sink.record(&event).await?);
        }
        Ok::<_, portcullis_audit::AuditError>(last)
    });
    match result {
        Ok(Some(r)) => {
            let hash = r.hash().map(|h| h.to_hex()).unwrap_or_default();
            println!("recorded {count} events; anchor {}:{hash}", r.seq());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
