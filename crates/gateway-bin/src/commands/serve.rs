//! `serve`: run the gateway until Ctrl-C or SIGTERM.

use std::path::Path;

use crate::serve;

pub(crate) fn run(path: &Path) -> Result<(), String> {
    let config = super::load(path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let running = serve::start(&config).await?;
        for addr in &running.listeners {
            eprintln!("portcullis: listening for PostgreSQL clients on {addr}");
        }
        for (name, addr) in &running.kubernetes {
            eprintln!(
                "portcullis: listening for Kubernetes clients (connection {name}) on https://{addr}"
            );
        }
        if config.policy.as_ref().is_some_and(|p| !p.enforce) {
            eprintln!(
                "portcullis: observe mode ([policy] enforce = false): every command is decided \
                 and recorded, none is refused or held"
            );
        }
        if let Some(addr) = running.admin {
            eprintln!("portcullis: admin API on http://{addr}");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("portcullis: shutting down");
        running.shutdown().await
    })
}
