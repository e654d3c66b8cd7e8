//! `portcullis`, the reference gateway.
//!
//! Built so far: the configuration file and its check, and the identity
//! commands (`token keygen|issue|inspect|revoke|api-key`). The serving path
//! (`serve`, `demo`) is not built yet and says so.

mod admin;
mod approvals;
mod catalog;
mod config;
mod demo;
mod gateway;
mod identity;
mod jwks;
mod metrics;
mod serve;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::identity::{GatewayKey, TokenIssuer};

/// Portcullis: an identity-aware data-path gateway for AI coding agents.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: pretty or json. The level comes from RUST_LOG
    /// (default: info).
    #[arg(long, global = true, default_value = "pretty", value_parser = ["pretty", "json"])]
    log_format: String,
}

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

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Mint, inspect and revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),
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
    },
    /// Start a throwaway PostgreSQL with fake customers behind a live gateway.
    Demo {
        /// Where the gateway listens for PostgreSQL clients.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: String,
        /// Where the admin API listens.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: String,
    },
    /// Read the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Sessions recorded in the audit trail.
    #[command(subcommand)]
    Sessions(SessionsCommand),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
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
enum SessionsCommand {
    /// Live sessions, from the admin API.
    List {
        /// The admin API's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// Your token or API key (default: the PORTCULLIS_TOKEN environment variable).
        #[arg(long)]
        token: Option<String>,
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
enum ApprovalsCommand {
    /// Pending approvals.
    List,
    /// Approve one.
    Approve { id: String },
    /// Deny one.
    Deny { id: String },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
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

fn parse_ttl(s: &str) -> Result<Duration, String> {
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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    if matches!(cli.command, Command::Serve { .. } | Command::Demo { .. }) {
        init_logging(&cli.log_format);
    }
    match cli.command {
        Command::Serve { config } => serve_command(&config),
        Command::Demo { listen, admin } => demo::run(&listen, &admin),
        Command::Audit(a) => audit_command(a),
        Command::Sessions(SessionsCommand::List { admin, token }) => {
            admin_get(&admin, token, "/v1/sessions")
        }
        Command::Sessions(SessionsCommand::Kill { id, admin, token }) => admin_call(
            &admin,
            token,
            hyper::Method::POST,
            &format!("/v1/sessions/{id}/kill"),
        ),
        Command::Sessions(SessionsCommand::Show { id, files }) => {
            let files = trail_paths(&files)?;
            let entries =
                portcullis_audit::session_timeline(&files, &id).map_err(|e| e.to_string())?;
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
        Command::Check { config } => check(&config),
        Command::Token(t) => token(t),
        Command::Approvals {
            command,
            admin,
            token,
        } => approvals(command, &admin, token),
    }
}

fn admin_get(admin: &str, token: Option<String>, path: &str) -> Result<(), String> {
    admin_call(admin, token, hyper::Method::GET, path)
}

fn approvals(cmd: ApprovalsCommand, admin: &str, token: Option<String>) -> Result<(), String> {
    let (method, path) = match &cmd {
        ApprovalsCommand::List => (hyper::Method::GET, "/v1/approvals".to_owned()),
        ApprovalsCommand::Approve { id } => {
            (hyper::Method::POST, format!("/v1/approvals/{id}/approve"))
        }
        ApprovalsCommand::Deny { id } => (hyper::Method::POST, format!("/v1/approvals/{id}/deny")),
    };
    admin_call(admin, token, method, &path)
}

fn admin_call(
    admin: &str,
    token: Option<String>,
    method: hyper::Method,
    path: &str,
) -> Result<(), String> {
    let token = token
        .or_else(|| std::env::var("PORTCULLIS_TOKEN").ok())
        .ok_or("give --token or set PORTCULLIS_TOKEN: the admin API authenticates like clients")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let (status, body) = rt.block_on(admin::call(admin, method, path, &token))?;
    if (200..300).contains(&status) {
        println!("{}", body.trim_end());
        Ok(())
    } else {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(body);
        Err(format!(
            "admin API answered {status}: {}",
            message.trim_end()
        ))
    }
}

/// Files as given, with each directory replaced by the `*.jsonl` files in it,
/// in name order (the order a trail's files are written in).
fn trail_paths(given: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
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

fn audit_command(cmd: AuditCommand) -> Result<(), String> {
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

fn serve_command(path: &Path) -> Result<(), String> {
    let config = load(path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let running = serve::start(&config).await?;
        for addr in &running.listeners {
            eprintln!("portcullis: listening for PostgreSQL clients on {addr}");
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

fn load(path: &Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

fn check(path: &Path) -> Result<(), String> {
    let config = load(path)?;
    let mut problems = Vec::new();
    if let Some(key) = &config.identity.signing_key
        && let Err(e) = read_signing_key(&config, key)
    {
        problems.push(e);
    }
    match &config.policy {
        Some(p) => {
            let f = config.resolve(&p.file);
            match std::fs::read_to_string(&f) {
                // The policy's own errors carry its line and column.
                Ok(text) => {
                    if let Err(e) = portcullis_policy::Policy::from_toml_str(&text) {
                        problems.push(policy_error(&f, &e));
                    }
                }
                Err(e) => problems.push(format!("policy file {}: {e}", f.display())),
            }
        }
        None => {
            problems.push("no [policy] file: the gateway does not serve without one".to_owned())
        }
    }
    for c in &config.connections {
        if let Some(f) = &c.password_file {
            let f = config.resolve(f);
            if !f.is_file() {
                problems.push(format!(
                    "connection {}: password_file {} does not exist",
                    c.name.get_ref(),
                    f.display()
                ));
            }
        }
        if let Some(var) = &c.password_env
            && std::env::var_os(var).is_none()
        {
            problems.push(format!(
                "connection {}: environment variable {var} is not set",
                c.name.get_ref()
            ));
        }
    }
    for o in &config.identity.oidc {
        if let Some(f) = &o.jwks_file {
            let f = config.resolve(f);
            match std::fs::read_to_string(&f) {
                Ok(text) => {
                    if let Err(e) = serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&text) {
                        problems.push(format!("{}: not a JWKS: {e}", f.display()));
                    }
                }
                Err(e) => problems.push(format!("{}: {e}", f.display())),
            }
        }
    }
    if problems.is_empty() {
        println!("{}: ok", path.display());
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// A policy error as `FILE:LINE:COLUMN: message`, like configuration errors.
pub(crate) fn policy_error(file: &Path, e: &portcullis_policy::PolicyError) -> String {
    match e {
        portcullis_policy::PolicyError::Invalid {
            message,
            line: Some(line),
            column: Some(column),
        } => format!("{}:{line}:{column}: {message}", file.display()),
        other => format!("{}: {other}", file.display()),
    }
}

fn read_signing_key(config: &Config, key: &Path) -> Result<GatewayKey, String> {
    let path = config.resolve(key);
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| format!("signing key {}: {e}", path.display()))?;
    GatewayKey::from_pem(&pem).map_err(|e| format!("signing key {}: {e}", path.display()))
}

fn token(cmd: TokenCommand) -> Result<(), String> {
    match cmd {
        TokenCommand::Keygen { out } => {
            let pem = GatewayKey::generate_pem()?;
            write_new_private(&out, pem.as_bytes())?;
            println!("wrote {}", out.display());
            Ok(())
        }
        TokenCommand::Issue {
            config,
            principal,
            groups,
            ttl,
            start_in,
        } => {
            let config = load(&config)?;
            let key_path = config.identity.signing_key.as_ref().ok_or(
                "the configuration has no [identity] signing_key: the gateway cannot mint tokens",
            )?;
            let key = read_signing_key(&config, key_path)?;
            let minted = TokenIssuer {
                key: &key,
                issuer: &config.identity.issuer,
                audience: &config.identity.audience,
            }
            .issue(
                &principal,
                &groups,
                ttl.as_secs(),
                now().saturating_add(start_in.map_or(0, |d| d.as_secs())),
            )?;
            eprintln!(
                "token id {} for {principal}, expires at {} (unix seconds)",
                minted.id, minted.expires_at
            );
            println!("{}", minted.token);
            Ok(())
        }
        TokenCommand::Inspect { token, config } => {
            let (header, claims) = identity::inspect(&token)?;
            let out = serde_json::json!({ "header": header, "claims": claims });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
            );
            if let Some(config) = config {
                let config = load(&config)?;
                let mut verifier = build_verifier(&config)?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("starting the runtime: {e}"))?;
                for (issuer, set) in rt.block_on(fetch_jwks_urls(&jwks_urls(&config)))? {
                    verifier.set_jwks(&issuer, set);
                }
                match verifier.verify(&token, now()) {
                    Ok(p) => println!("accepted: {} ({})", p.id, p.kind.as_str()),
                    Err(e) => println!("refused: {e}"),
                }
            }
            Ok(())
        }
        TokenCommand::Revoke { id, config } => {
            let config = load(&config)?;
            let file = config.identity.revocation_file.as_ref().ok_or(
                "the configuration has no [identity] revocation_file to record revocations in",
            )?;
            let file = config.resolve(file);
            if id.is_empty() || id.contains(['\n', '\r']) {
                return Err("a token id is one line of text".to_owned());
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            writeln!(f, "{id}")
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            println!("revoked {id}");
            Ok(())
        }
        TokenCommand::ApiKey => {
            let key = identity::generate_api_key()?;
            println!("key:    {key}");
            println!("sha256 = \"{}\"", identity::api_key_hash(&key));
            Ok(())
        }
    }
}

/// The verifier a configuration describes (gateway key, OIDC issuers with
/// JWKS files, API keys, revocations).
pub(crate) fn build_verifier(config: &Config) -> Result<identity::Verifier, String> {
    let mut v = identity::Verifier::new(config.identity.leeway_secs);
    if let Some(k) = &config.identity.signing_key {
        let key = read_signing_key(config, k)?;
        v.trust_gateway(&key, &config.identity.issuer, &config.identity.audience);
    }
    for o in &config.identity.oidc {
        let jwks = match (&o.jwks_file, &o.jwks_url) {
            (Some(f), _) => {
                let f = config.resolve(f);
                let text =
                    std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                serde_json::from_str(&text)
                    .map_err(|e| format!("{}: not a JWKS: {e}", f.display()))?
            }
            // Fetched by `fetch_jwks_urls`, which the caller runs (async).
            (None, Some(_)) => jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
            (None, None) => continue,
        };
        v.trust_oidc(identity::OidcIssuer {
            issuer: o.issuer.get_ref().clone(),
            audience: o.audience.clone(),
            groups_claim: o.groups_claim.clone(),
            jwks,
        });
    }
    for k in &config.identity.api_key {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(k.sha256.get_ref(), &mut sha256)
            .map_err(|e| format!("api key {}: {e}", k.name))?;
        let (kind, _) = k.principal.get_ref().split_once(':').unwrap_or(("", ""));
        let kind = match kind {
            "human" => identity::PrincipalKind::Human,
            "agent" => identity::PrincipalKind::Agent,
            _ => identity::PrincipalKind::Service,
        };
        v.add_api_key(identity::ApiKey {
            name: k.name.clone(),
            sha256,
            principal: k.principal.get_ref().clone(),
            kind,
            groups: k.groups.clone(),
        });
    }
    if let Some(f) = &config.identity.revocation_file {
        let f = config.resolve(f);
        match std::fs::read_to_string(&f) {
            Ok(text) => v.set_revoked(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", f.display())),
        }
    }
    Ok(v)
}

/// The OIDC issuers configured with a `jwks_url`: (issuer, url).
pub(crate) fn jwks_urls(config: &Config) -> Vec<(String, String)> {
    config
        .identity
        .oidc
        .iter()
        .filter(|o| o.jwks_file.is_none())
        .filter_map(|o| Some((o.issuer.get_ref().clone(), o.jwks_url.clone()?)))
        .collect()
}

/// Fetches the key sets of `jwks_urls`.
pub(crate) async fn fetch_jwks_urls(
    urls: &[(String, String)],
) -> Result<Vec<(String, jsonwebtoken::jwk::JwkSet)>, String> {
    let mut out = Vec::new();
    for (issuer, url) in urls {
        let set = jwks::fetch(url)
            .await
            .map_err(|e| format!("OIDC issuer {issuer}: {e}"))?;
        out.push((issuer.clone(), set));
    }
    Ok(out)
}

/// Creates a file that only its owner can read, refusing to overwrite one.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
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
