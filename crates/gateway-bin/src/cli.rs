//! The command line: every subcommand and its flags (clap definitions only;
//! the bodies live in `commands/`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Portcullis: an identity-aware data-path gateway for AI coding agents.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Log format on stderr: pretty or json. The level comes from RUST_LOG
    /// (default: info).
    #[arg(long, global = true, default_value = "pretty", value_parser = ["pretty", "json"])]
    pub(crate) log_format: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gateway until Ctrl-C (or SIGTERM).
    Serve {
        #[arg(long, default_value = "portcullis.toml")]
        config: PathBuf,
    },
    /// Check a configuration file; errors name file:line:column.
    Check {
        #[arg(long, default_value = "portcullis.toml")]
        config: PathBuf,
    },
    /// Sample a connection's tables through the detectors and propose
    /// `[[masking.field]]` rules for the columns they recognise.
    Discover {
        #[arg(long, default_value = "portcullis.toml")]
        config: PathBuf,
        /// The connection to sample.
        #[arg(long)]
        connection: String,
        /// Rows read per table, at most.
        #[arg(long, default_value_t = 200)]
        rows: u32,
    },
    /// Mint, inspect and revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a kubeconfig that points kubectl at a Kubernetes connection of
    /// this gateway, with a freshly minted token (or the one given).
    Kubeconfig(KubeconfigArgs),
    /// List, approve and deny held commands through the admin API.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
        /// The admin API's base URL.
        #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// Your token or API key (default: the PORTCULLIS_TOKEN environment variable).
        #[arg(long, global = true)]
        token: Option<String>,
        /// Trust only the CA certificates in this PEM file for an https://
        /// admin API (default: the PORTCULLIS_ADMIN_CA environment variable,
        /// else the system's roots).
        #[arg(long, global = true, value_name = "FILE")]
        admin_ca: Option<PathBuf>,
    },
    /// Start a throwaway PostgreSQL with fake customers, and a fake Kubernetes
    /// cluster, behind a live gateway.
    #[cfg(feature = "demo")]
    Demo {
        /// Where the gateway listens for PostgreSQL clients.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: String,
        /// Where the admin API listens.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: String,
        /// Where the gateway listens for kubectl (the fake cluster's leg).
        #[arg(long, default_value = "127.0.0.1:8443")]
        kube_listen: String,
    },
    /// Read the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Try a policy before enforcing it: explain one statement, or replay a
    /// trail's statements against it.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Sessions recorded in the audit trail.
    #[command(subcommand)]
    Sessions(SessionsCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// One statement's facts, the rules that match it, and the decision.
    Explain {
        /// The policy file.
        policy: PathBuf,
        /// The SQL text.
        sql: String,
        /// Who runs it: ID:KIND[:GROUP,GROUP…] (kind: human, agent, service).
        #[arg(long, default_value = "agent:agent")]
        principal: String,
        /// The connection's name (as in the configuration).
        #[arg(long, default_value = "db")]
        resource: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replay the statements recorded in a trail against a policy and print
    /// what would change (e.g. allow -> deny), with counts per rule.
    Test {
        /// The candidate policy file.
        policy: PathBuf,
        /// The trail's files, in order (or a directory holding them).
        #[arg(long, required = true, num_args = 1..)]
        trail: Vec<PathBuf>,
        /// Compare with this policy instead of the decisions recorded at the time.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// Whether the command runs the serving path (and so logs with tracing).
    pub(crate) fn serves(&self) -> bool {
        match self {
            Command::Serve { .. } => true,
            #[cfg(feature = "demo")]
            Command::Demo { .. } => true,
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify a trail's hash chain; exit status 1 if anything was changed.
    Verify {
        /// The trail's files, in order (or a directory holding them).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the trail's records, one JSON object per line.
    Tail {
        /// The trail's files, in order (or a directory holding them).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only the last N records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing records as they are written (also into new files of
        /// a directory), until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// Live sessions, from the admin API.
    List {
        /// The admin API's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// Your token or API key (default: the PORTCULLIS_TOKEN environment variable).
        #[arg(long)]
        token: Option<String>,
        /// Trust only the CA certificates in this PEM file for an https://
        /// admin API (default: the PORTCULLIS_ADMIN_CA environment variable,
        /// else the system's roots).
        #[arg(long, value_name = "FILE")]
        admin_ca: Option<PathBuf>,
    },
    /// End a live session (operators only); it ends at its next command, and
    /// a statement it holds for approval is refused now.
    Kill {
        /// The session id (from `sessions list`).
        id: String,
        /// The admin API's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// Your token or API key (default: the PORTCULLIS_TOKEN environment variable).
        #[arg(long)]
        token: Option<String>,
        /// Trust only the CA certificates in this PEM file for an https://
        /// admin API (default: the PORTCULLIS_ADMIN_CA environment variable,
        /// else the system's roots).
        #[arg(long, value_name = "FILE")]
        admin_ca: Option<PathBuf>,
    },
    /// One session's timeline (commands, decisions, results) from the trail.
    Show {
        /// The session id (as in the trail, e.g. s3).
        id: String,
        /// The trail's files, in order (or a directory holding them).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// Pending approvals (with --history: recently finished ones).
    List {
        /// Recently finished requests instead of pending ones.
        #[arg(long)]
        history: bool,
    },
    /// One request, pending or finished, with its decisions.
    Show { id: String },
    /// Approve one.
    Approve {
        id: String,
        /// Why (recorded in the audit trail).
        #[arg(long, short = 'm')]
        comment: Option<String>,
    },
    /// Deny one.
    Deny {
        id: String,
        /// Why (recorded in the audit trail).
        #[arg(long, short = 'm')]
        comment: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct KubeconfigArgs {
    #[arg(long, default_value = "portcullis.toml")]
    pub(crate) config: PathBuf,
    /// The Kubernetes connection's name (default: the only one).
    #[arg(long)]
    pub(crate) connection: Option<String>,
    /// Who the token is for: kind:name, e.g. agent:ci-bot.
    #[arg(long, required_unless_present = "token")]
    pub(crate) principal: Option<String>,
    /// Groups, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) groups: Vec<String>,
    /// The token's lifetime, e.g. 15m, 1h.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub(crate) ttl: Duration,
    /// Use this token (an API key, an OIDC token) instead of minting one.
    #[arg(long, conflicts_with = "principal")]
    pub(crate) token: Option<String>,
    /// The context's default namespace.
    #[arg(long, default_value = "default")]
    pub(crate) namespace: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Write a new Ed25519 signing key (PKCS#8 PEM) for the gateway.
    Keygen {
        /// Where to write it (mode 0600); refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
    /// Mint a short-lived token for an agent, signed by the gateway's key.
    Issue {
        #[arg(long, default_value = "portcullis.toml")]
        config: PathBuf,
        /// kind:name, e.g. agent:ci-bot (kind: human, agent or service).
        #[arg(long)]
        principal: String,
        /// Groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime, e.g. 15m, 1h, 90s.
        #[arg(long, default_value = "15m", value_parser = parse_ttl)]
        ttl: Duration,
        /// The token becomes valid this long from now (e.g. 1h for a shift
        /// that starts later); its lifetime counts from then.
        #[arg(long, value_parser = parse_ttl)]
        start_in: Option<Duration>,
    },
    /// Print a token's header and claims, and whether this gateway accepts it.
    Inspect {
        token: String,
        /// Also verify it against this configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke a token by id (its `jti`); checked at connect and at every statement.
    Revoke {
        id: String,
        #[arg(long, default_value = "portcullis.toml")]
        config: PathBuf,
    },
    /// Make a new static API key; prints the key (give it to the client) and
    /// the sha256 line for the configuration (the gateway keeps only that).
    ApiKey,
}

pub(crate) fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: give a unit, e.g. 15m, 1h, 90s"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("a token lifetime must be more than zero".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parses_units_and_refuses_nonsense() {
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_ttl("15").is_err());
        assert!(parse_ttl("0m").is_err());
        assert!(parse_ttl("5y").is_err());
        assert!(parse_ttl("m").is_err());
    }
}
