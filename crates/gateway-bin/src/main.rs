//! `portcullis`, the reference gateway: one binary that serves the PostgreSQL
//! and Kubernetes data paths with policy, masking and audit, and the
//! commands an operator runs around it.
//!
//! Layout: `cli` holds the command-line definitions; `commands/` one module
//! per command family; everything else is the serving path (`serve`,
//! `gateway`, `approvals`, `admin`, …), which never calls up into here.

mod admin;
mod approvals;
mod budgets;
mod catalog;
mod catalog_tls;
mod cli;
mod commands;
mod config;
#[cfg(feature = "demo")]
mod demo;
mod gateway;
mod identity;
mod jwks;
mod k8s;
mod lineage;
mod metrics;
mod policy_file;
mod search_path;
mod serve;
mod tickets;
mod trust;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command, SessionsCommand};
use crate::commands::admin_client;

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("portcullis: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if cli.command.serves() {
        init_logging(&cli.log_format);
    }
    match cli.command {
        Command::Serve { config } => commands::serve::run(&config),
        #[cfg(feature = "demo")]
        Command::Demo {
            listen,
            admin,
            kube_listen,
        } => demo::run(&listen, &admin, &kube_listen),
        Command::Audit(a) => commands::audit::run(a),
        Command::Policy(p) => commands::policy::run(p),
        Command::Sessions(SessionsCommand::List {
            admin,
            token,
            admin_ca,
        }) => admin_client::admin_get(&admin, token, admin_ca.as_deref(), "/v1/sessions"),
        Command::Sessions(SessionsCommand::Kill {
            id,
            admin,
            token,
            admin_ca,
        }) => admin_client::admin_call(
            &admin,
            token,
            admin_ca.as_deref(),
            hyper::Method::POST,
            // `replica/session` ids: the slash is part of the id.
            &format!("/v1/sessions/{}/kill", id.replace('/', "%2F")),
        ),
        Command::Sessions(SessionsCommand::Show { id, files }) => {
            commands::audit::session_show(&id, &files)
        }
        Command::Check { config } => commands::check::run(&config),
        Command::Discover {
            config,
            connection,
            rows,
        } => commands::discover::run(&config, &connection, rows),
        Command::Token(t) => commands::token::run(t),
        Command::Kubeconfig(k) => commands::kubeconfig::run(k),
        Command::Approvals {
            command,
            admin,
            token,
            admin_ca,
        } => admin_client::approvals(command, &admin, token, admin_ca.as_deref()),
    }
}
