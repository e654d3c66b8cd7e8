//! `portcullis`, the reference gateway.
//!
//! The gateway is not built yet: this binary parses its command line and
//! says so plainly rather than pretending to serve.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Portcullis: an identity-aware data-path gateway for AI coding agents.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway with a configuration file (not built yet).
    Serve,
    /// Start a throwaway PostgreSQL and a gateway in front of it (not built yet).
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let what = match cli.command {
        Command::Serve => "serve",
        Command::Demo => "demo",
    };
    eprintln!(
        "portcullis {what}: not built yet. The gateway binary is the subject of a later \
         issue; today the workspace holds the crates it will be made of."
    );
    ExitCode::from(2)
}
