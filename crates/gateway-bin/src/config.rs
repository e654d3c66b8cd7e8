//! The gateway's configuration: one TOML file (see docs/configuration.md).
//!
//! Loading checks the syntax and the meaning (a listener without TLS must be
//! on loopback, a backend password comes from the environment or a file, ...)
//! and every error names the file, line and column it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    pub(crate) file: PathBuf,
    /// 1-based; 0 when the error is about the whole file.
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    #[serde(default, rename = "listener")]
    pub(crate) listeners: Vec<Listener>,
    #[serde(default, rename = "connection")]
    pub(crate) connections: Vec<Connection>,
    #[serde(default)]
    pub(crate) identity: Identity,
    pub(crate) policy: Option<PolicySection>,
    #[serde(default)]
    pub(crate) masking: Masking,
    #[serde(default)]
    pub(crate) audit: Audit,
    pub(crate) admin: Option<Admin>,
    /// Approvals: shared by replicas in PostgreSQL, webhooks, the page's
    /// address.
    pub(crate) approvals: Option<ApprovalsSection>,
    #[serde(default)]
    pub(crate) limits: Limits,
    /// Query budgets per principal or group (see [`crate::budgets`]).
    #[serde(default, rename = "budget")]
    pub(crate) budgets: Vec<Spanned<crate::budgets::BudgetSpec>>,
    /// The directory of the file: relative paths in it are relative to this.
    #[serde(skip)]
    pub(crate) base_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    pub(crate) address: Spanned<String>,
    #[serde(default)]
    pub(crate) tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub(crate) tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ConnectionKind {
    Postgres,
    /// A Kubernetes API server, with its own listener (`[connection.kubernetes]`).
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BackendTls {
    /// Plain TCP (or a unix socket).
    #[default]
    Disable,
    /// TLS, without checking the server's certificate.
    Require,
    /// TLS, checking the certificate against the system or given roots and the host name.
    VerifyFull,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Connection {
    pub(crate) name: Spanned<String>,
    pub(crate) kind: ConnectionKind,
    /// PostgreSQL only (as are port, database, user, password*, tls).
    #[serde(default)]
    pub(crate) host: String,
    #[serde(default = "default_pg_port")]
    pub(crate) port: u16,
    #[serde(default)]
    pub(crate) database: String,
    #[serde(default)]
    pub(crate) user: String,
    #[serde(default)]
    pub(crate) password_env: Option<String>,
    #[serde(default)]
    pub(crate) password_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) password: Option<Spanned<String>>,
    /// Must be set for an inline `password` to be accepted.
    #[serde(default)]
    pub(crate) allow_inline_password: bool,
    /// Unset: `verify-full`, or `disable` for a loopback host (see [`Connection::tls`]).
    #[serde(default, rename = "tls")]
    pub(crate) tls_setting: Option<BackendTls>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// Kubernetes only: the API server, its credential and the listener.
    #[serde(default)]
    pub(crate) kubernetes: Option<crate::k8s::KubeSettings>,
    /// What happens to a client's startup parameter outside the allow-list.
    #[serde(default)]
    pub(crate) startup_params: StartupParams,
    /// Backend authentication methods accepted besides SCRAM-SHA-256.
    #[serde(default)]
    pub(crate) allow_backend_auth: Vec<BackendAuthMethod>,
    /// SCRAM-SHA-256-PLUS channel binding to the backend's TLS certificate.
    #[serde(default, rename = "channel_binding")]
    pub(crate) channel_binding_setting: Option<Spanned<ChannelBinding>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ChannelBinding {
    /// Bind the login when the backend offers SCRAM-SHA-256-PLUS over TLS.
    #[default]
    Prefer,
    /// Only a login bound to the backend's certificate (SCRAM-SHA-256-PLUS
    /// over TLS); anything else ends the session (and the catalog load).
    Require,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum StartupParams {
    /// The session is refused with FATAL 42501 naming the parameter.
    #[default]
    Refuse,
    /// The parameter is dropped and the client gets a notice naming it.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BackendAuthMethod {
    /// AuthenticationMD5Password.
    Md5,
    /// AuthenticationCleartextPassword (pg_hba `password`).
    Password,
    /// No password asked at all (pg_hba `trust`).
    Trust,
}

/// Resource limits of the PostgreSQL listeners.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    /// Client connections served at once, per listener.
    #[serde(default = "default_max_sessions")]
    pub(crate) max_sessions: usize,
    /// Sessions one principal may hold open at once (all connections).
    #[serde(default = "default_max_sessions_per_principal")]
    pub(crate) max_sessions_per_principal: usize,
    /// Seconds from connection to ready-for-query.
    #[serde(default = "default_handshake_timeout_secs")]
    pub(crate) handshake_timeout_secs: u64,
    /// Seconds one write to a client (or backend) that stops reading may block.
    #[serde(default = "default_write_timeout_secs")]
    pub(crate) write_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: default_max_sessions(),
            max_sessions_per_principal: default_max_sessions_per_principal(),
            handshake_timeout_secs: default_handshake_timeout_secs(),
            write_timeout_secs: default_write_timeout_secs(),
        }
    }
}

fn default_max_sessions() -> usize {
    1000
}

fn default_max_sessions_per_principal() -> usize {
    128
}

fn default_handshake_timeout_secs() -> u64 {
    30
}

fn default_write_timeout_secs() -> u64 {
    60
}

impl Connection {
    /// Channel binding towards this backend: as configured, else `prefer`.
    pub(crate) fn channel_binding(&self) -> ChannelBinding {
        self.channel_binding_setting
            .as_ref()
            .map_or(ChannelBinding::Prefer, |c| *c.get_ref())
    }

    /// TLS towards this backend: as configured, else `verify-full` unless
    /// the host is a loopback address or `localhost`.
    pub(crate) fn tls(&self) -> BackendTls {
        self.tls_setting.unwrap_or_else(|| {
            let loopback = self.host.eq_ignore_ascii_case("localhost")
                || self
                    .host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                BackendTls::Disable
            } else {
                BackendTls::VerifyFull
            }
        })
    }
}

fn default_pg_port() -> u16 {
    5432
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Identity {
    /// The gateway's Ed25519 signing key (PKCS#8 PEM), for minted tokens.
    #[serde(default)]
    pub(crate) signing_key: Option<PathBuf>,
    #[serde(default = "default_issuer")]
    pub(crate) issuer: String,
    #[serde(default = "default_issuer")]
    pub(crate) audience: String,
    /// One revoked token id per line; `portcullis token revoke` appends to it.
    #[serde(default)]
    pub(crate) revocation_file: Option<PathBuf>,
    /// Allowed clock skew on `exp`/`nbf`, in seconds.
    #[serde(default)]
    pub(crate) leeway_secs: u64,
    /// End a session at its next command once its token has expired.
    #[serde(default = "yes")]
    pub(crate) end_session_on_expiry: bool,
    #[serde(default)]
    pub(crate) oidc: Vec<Oidc>,
    #[serde(default)]
    pub(crate) api_key: Vec<ApiKeyEntry>,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            signing_key: None,
            issuer: default_issuer(),
            audience: default_issuer(),
            revocation_file: None,
            leeway_secs: 0,
            end_session_on_expiry: true,
            oidc: Vec::new(),
            api_key: Vec::new(),
        }
    }
}

fn default_issuer() -> String {
    "portcullis".to_owned()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Oidc {
    pub(crate) issuer: Spanned<String>,
    pub(crate) audience: String,
    #[serde(default)]
    pub(crate) jwks_url: Option<String>,
    #[serde(default)]
    pub(crate) jwks_file: Option<PathBuf>,
    #[serde(default = "default_groups_claim")]
    pub(crate) groups_claim: String,
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyEntry {
    pub(crate) name: String,
    /// `kind:name`, e.g. `service:etl`.
    pub(crate) principal: Spanned<String>,
    #[serde(default)]
    pub(crate) groups: Vec<String>,
    /// Hex SHA-256 of the key (`portcullis token api-key` prints both).
    pub(crate) sha256: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicySection {
    pub(crate) file: PathBuf,
    /// `false`: observe mode. Every command is decided and recorded with
    /// the decision the policy would have taken, and forwarded anyway (no
    /// denials, no holds). Identity checks, masking and the write-ahead
    /// audit stay as they are.
    #[serde(default = "yes")]
    pub(crate) enforce: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Masking {
    #[serde(default = "yes")]
    pub(crate) default_catalogue: bool,
    #[serde(default)]
    pub(crate) hmac_key_env: Option<String>,
    #[serde(default)]
    pub(crate) hmac_key_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) rule: Vec<MaskRule>,
    #[serde(default)]
    pub(crate) field: Vec<FieldRule>,
    /// What field masking makes of the catalog views that show other
    /// sessions' statements or sampled values (`pg_stat_activity`,
    /// `pg_stats`, …): `"mask"` (default) masks every column of them,
    /// `"clear"` shows them (the detectors still scan them). A policy rule
    /// on the `catalog_values` risk refuses them outright.
    #[serde(default)]
    pub(crate) catalog_views: CatalogViews,
}

/// `[masking] catalog_views`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CatalogViews {
    #[default]
    Mask,
    Clear,
}

impl Default for Masking {
    fn default() -> Self {
        Masking {
            default_catalogue: true,
            hmac_key_env: None,
            hmac_key_file: None,
            rule: Vec::new(),
            field: Vec::new(),
            catalog_views: CatalogViews::Mask,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MaskRule {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) regex: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) literal: Option<String>,
    #[serde(default)]
    pub(crate) style: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldRule {
    /// A column name or glob (`password`, `*_token`), or `table.column`.
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) style: Option<Spanned<String>>,
}

/// How a rule masks, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MaskStyle {
    Redact,
    Partial(usize),
    SameLength,
    Hash,
}

impl MaskStyle {
    pub(crate) fn parse(s: &str) -> Option<MaskStyle> {
        match s {
            "redact" => Some(MaskStyle::Redact),
            "same-length" => Some(MaskStyle::SameLength),
            "hash" => Some(MaskStyle::Hash),
            _ => s
                .strip_prefix("partial:")
                .and_then(|n| n.parse().ok())
                .map(MaskStyle::Partial),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Audit {
    #[serde(default)]
    pub(crate) jsonl: Option<JsonlAudit>,
    #[serde(default)]
    pub(crate) postgres: Option<PostgresAudit>,
    /// How many sinks must acknowledge a record; default: all of them.
    #[serde(default)]
    pub(crate) quorum: Option<Spanned<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Durability {
    /// The record is written to the trail file (in order, hash-chained)
    /// before the command is forwarded, and fsynced within `sync_window_ms`
    /// by a group commit that never waits for a timer when idle: a crash of
    /// the gateway loses nothing, a crash of the machine at most that window.
    #[default]
    Flushed,
    /// The record is fsynced before the command is forwarded (one fsync
    /// shared by every record that arrives while the previous one runs).
    Durable,
    /// fsync after every record, one at a time (for comparison).
    Fsync,
    /// fsync every `group_commit_ms`, acknowledging the records it covers
    /// (the first wave's mode: every record waits for the next tick).
    GroupCommit,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JsonlAudit {
    /// The directory holding the trail's files (`<chain>-NNNNNN.jsonl`).
    pub(crate) dir: PathBuf,
    /// This gateway's chain name (one per replica).
    #[serde(default = "default_chain")]
    pub(crate) chain: String,
    #[serde(default)]
    pub(crate) durability: Durability,
    #[serde(default = "default_group_commit_ms")]
    pub(crate) group_commit_ms: u64,
    /// `flushed`: the longest a written record waits for its fsync.
    #[serde(default = "default_sync_window_ms")]
    pub(crate) sync_window_ms: u64,
    #[serde(default)]
    pub(crate) rotate_bytes: Option<u64>,
    /// Below this much free space the trail reports itself unable to make
    /// records durable, and statements are refused (default 16 MiB).
    #[serde(default)]
    pub(crate) min_free_bytes: Option<u64>,
}

fn default_chain() -> String {
    "gateway".to_owned()
}

fn default_group_commit_ms() -> u64 {
    5
}

fn default_sync_window_ms() -> u64 {
    10
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresAudit {
    pub(crate) dsn_env: String,
    /// This replica's chain name; several replicas may share one database.
    pub(crate) replica: String,
}

/// `[approvals]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalsSection {
    /// The environment variable holding the DSN of a PostgreSQL database
    /// the replicas share (approvals and live sessions); in memory without.
    #[serde(default)]
    pub(crate) postgres_dsn_env: Option<String>,
    /// This replica's name (unique among replicas; no `/` or spaces).
    #[serde(default)]
    pub(crate) replica: Option<String>,
    /// URLs told of each request, decision and expiry (JSON `POST`, Slack
    /// incoming-webhook compatible).
    #[serde(default)]
    pub(crate) webhooks: Vec<String>,
    /// The approval page's address as people reach it (for links), e.g.
    /// `https://gw.example:9090`.
    #[serde(default)]
    pub(crate) page_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Admin {
    pub(crate) address: Spanned<String>,
    /// TLS for the admin API and the approval page: required unless the
    /// address is a loopback one.
    #[serde(default)]
    pub(crate) tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub(crate) tls_key: Option<PathBuf>,
    /// Groups whose members may end sessions (`portcullis sessions kill`).
    #[serde(default = "default_operator_groups")]
    pub(crate) operator_groups: Vec<String>,
}

fn default_operator_groups() -> Vec<String> {
    vec!["ops".to_owned(), "dba".to_owned()]
}

impl Config {
    /// Reads and checks a configuration file.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        Config::parse(&text, path, &base)
    }

    /// Parses and checks configuration text; `file` only names it in errors.
    pub(crate) fn parse(text: &str, file: &Path, base_dir: &Path) -> Result<Config, ConfigError> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = span.map_or((0, 0), |s| line_col(text, s.start));
            ConfigError {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        let mut config: Config =
            toml::from_str(text).map_err(|e| at(e.span(), e.message().to_owned()))?;
        config.base_dir = base_dir.to_owned();
        config.check().map_err(|(span, msg)| at(Some(span), msg))?;
        Ok(config)
    }

    /// A path from the file, made relative to the file's directory.
    pub(crate) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    fn check(&self) -> Result<(), (std::ops::Range<usize>, String)> {
        for l in &self.listeners {
            let addr: SocketAddr = l.address.get_ref().parse().map_err(|_| {
                (
                    l.address.span(),
                    format!(
                        "{:?} is not an address like 127.0.0.1:6432",
                        l.address.get_ref()
                    ),
                )
            })?;
            match (&l.tls_cert, &l.tls_key) {
                (Some(_), Some(_)) => {}
                (None, None) if addr.ip().is_loopback() => {}
                (None, None) => {
                    return Err((
                        l.address.span(),
                        "a listener without TLS (tls_cert and tls_key) must be bound to \
                         loopback: clients send their tokens as passwords"
                            .to_owned(),
                    ));
                }
                _ => {
                    return Err((
                        l.address.span(),
                        "tls_cert and tls_key go together".to_owned(),
                    ));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.connections {
            if !names.insert(c.name.get_ref().as_str()) {
                return Err((
                    c.name.span(),
                    format!("connection {:?} is defined twice", c.name.get_ref()),
                ));
            }
            if c.name.get_ref().is_empty() || c.name.get_ref().contains('@') {
                return Err((
                    c.name.span(),
                    "a connection name is not empty and has no '@' (clients write \
                     principal@connection)"
                        .to_owned(),
                ));
            }
            if c.kind == ConnectionKind::Kubernetes || c.kubernetes.is_some() {
                crate::k8s::check_connection(c)?;
                continue;
            }
            if c.host.is_empty() || c.database.is_empty() || c.user.is_empty() {
                return Err((
                    c.name.span(),
                    "a postgres connection needs host, database and user".to_owned(),
                ));
            }
            let sources = usize::from(c.password_env.is_some())
                + usize::from(c.password_file.is_some())
                + usize::from(c.password.is_some());
            if sources != 1 {
                return Err((
                    c.name.span(),
                    "give the backend password in exactly one of password_env, password_file \
                     or password"
                        .to_owned(),
                ));
            }
            if let Some(cb) = &c.channel_binding_setting
                && *cb.get_ref() == ChannelBinding::Require
            {
                if c.tls() == BackendTls::Disable {
                    return Err((
                        cb.span(),
                        "channel_binding = \"require\" needs TLS to the backend (tls = \
                         \"require\" or \"verify-full\"): channel binding is bound to the \
                         server's certificate"
                            .to_owned(),
                    ));
                }
                if !c.allow_backend_auth.is_empty() {
                    return Err((
                        cb.span(),
                        "channel_binding = \"require\" allows SCRAM-SHA-256-PLUS only: remove \
                         allow_backend_auth"
                            .to_owned(),
                    ));
                }
            }
            if let Some(p) = &c.password
                && !c.allow_inline_password
            {
                return Err((
                    p.span(),
                    "an inline backend password is refused: use password_env or \
                     password_file, or set allow_inline_password = true"
                        .to_owned(),
                ));
            }
        }
        for o in &self.identity.oidc {
            if usize::from(o.jwks_url.is_some()) + usize::from(o.jwks_file.is_some()) != 1 {
                return Err((
                    o.issuer.span(),
                    "an OIDC issuer needs exactly one of jwks_url or jwks_file".to_owned(),
                ));
            }
        }
        for k in &self.identity.api_key {
            let h = k.sha256.get_ref();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err((
                    k.sha256.span(),
                    "sha256 is the 64 hex digits of the key's SHA-256 (not the key itself)"
                        .to_owned(),
                ));
            }
            if !k.principal.get_ref().contains(':') {
                return Err((
                    k.principal.span(),
                    "principal is written kind:name, e.g. service:etl".to_owned(),
                ));
            }
        }
        let styles = self
            .masking
            .rule
            .iter()
            .filter_map(|r| r.style.as_ref())
            .chain(self.masking.field.iter().filter_map(|f| f.style.as_ref()));
        for s in styles {
            if MaskStyle::parse(s.get_ref()).is_none() {
                return Err((
                    s.span(),
                    format!(
                        "unknown masking style {:?}; use redact, partial:N, same-length or hash",
                        s.get_ref()
                    ),
                ));
            }
        }
        for r in &self.masking.rule {
            if let Some(re) = &r.regex
                && r.literal.is_some()
            {
                return Err((
                    re.span(),
                    "a rule has a regex or a literal, not both".to_owned(),
                ));
            }
        }
        if let Some(q) = &self.audit.quorum {
            let sinks = usize::from(self.audit.jsonl.is_some())
                + usize::from(self.audit.postgres.is_some());
            if *q.get_ref() == 0 || *q.get_ref() > sinks {
                return Err((
                    q.span(),
                    format!("quorum must be between 1 and the number of sinks ({sinks})"),
                ));
            }
        }
        crate::budgets::Budgets::from_specs(&self.budgets)?;
        if let Some(a) = &self.admin {
            let addr = a.address.get_ref().parse::<SocketAddr>().map_err(|_| {
                (
                    a.address.span(),
                    format!(
                        "{:?} is not an address like 127.0.0.1:9090",
                        a.address.get_ref()
                    ),
                )
            })?;
            if a.tls_cert.is_none() && a.tls_key.is_none() && !addr.ip().is_loopback() {
                return Err((
                    a.address.span(),
                    "the admin listener without TLS (tls_cert and tls_key) must be bound to \
                     loopback: the admin API and the approval page carry tokens and decisions"
                        .to_owned(),
                ));
            }
            if a.tls_cert.is_some() != a.tls_key.is_some() {
                return Err((
                    a.address.span(),
                    "[admin] tls_cert and tls_key go together".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("gw.toml"), Path::new("/etc/portcullis"))
    }

    #[test]
    fn a_complete_file_loads() {
        let c = parse(
            r#"
[[listener]]
address = "127.0.0.1:6432"

[[connection]]
name = "prod"
kind = "postgres"
host = "db.internal"
database = "app"
user = "gateway"
password_env = "PROD_PG_PASSWORD"
tls = "verify-full"
labels = { env = "prod" }

[identity]
signing_key = "keys/gateway.pem"
revocation_file = "state/revoked"

[[identity.api_key]]
name = "etl"
principal = "service:etl"
groups = ["etl"]
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[policy]
file = "policy.toml"

[[masking.field]]
name = "*_token"
style = "partial:4"

[audit.jsonl]
dir = "audit"

[admin]
address = "127.0.0.1:9090"
"#,
        )
        .unwrap();
        assert_eq!(c.connections[0].port, 5432);
        assert!(
            c.policy.as_ref().is_some_and(|p| p.enforce),
            "enforcing by default"
        );
        assert_eq!(c.connections[0].tls(), BackendTls::VerifyFull);
        assert_eq!(c.audit.jsonl.as_ref().unwrap().group_commit_ms, 5);
        assert_eq!(
            c.resolve(Path::new("keys/gateway.pem")),
            Path::new("/etc/portcullis/keys/gateway.pem")
        );
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = parse("[[listener]]\naddress = \"0.0.0.0:6432\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 11), "{e}");
        assert!(e.message.contains("loopback"), "{e}");
        assert!(e.to_string().starts_with("gw.toml:2:11: "), "{e}");

        let e = parse("[identity]\nleeway_secs = \"soon\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");

        let e = parse("[[connection]]\nname = \"a\"\nkind = \"postgres\"\nhost = \"h\"\ndatabase = \"d\"\nuser = \"u\"\npassword = \"hunter2\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (7, 12), "{e}");
        assert!(e.message.contains("inline backend password"), "{e}");

        let e = parse("[masking]\nsurprise = 1\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("surprise"), "{e}");

        let e =
            parse("[[masking.rule]]\nid = \"x\"\nliteral = \"y\"\nstyle = \"blur\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (4, 9), "{e}");
    }

    #[test]
    fn channel_binding_is_prefer_by_default_and_require_needs_tls_and_scram() {
        let conn = "[[connection]]\nname = \"a\"\nkind = \"postgres\"\nhost = \"h\"\n\
                    database = \"d\"\nuser = \"u\"\npassword_env = \"P\"\n";
        let c = parse(conn).unwrap();
        assert_eq!(c.connections[0].channel_binding(), ChannelBinding::Prefer);
        let c = parse(&format!("{conn}channel_binding = \"require\"\n")).unwrap();
        assert_eq!(c.connections[0].channel_binding(), ChannelBinding::Require);
        let c = parse(&format!("{conn}channel_binding = \"prefer\"\n")).unwrap();
        assert_eq!(c.connections[0].channel_binding(), ChannelBinding::Prefer);
        // Without TLS (explicit, or a loopback host's default) there is
        // nothing to bind to.
        for plain in [
            format!("{conn}tls = \"disable\"\nchannel_binding = \"require\"\n"),
            format!("{conn}channel_binding = \"require\"\n").replace("\"h\"", "\"127.0.0.1\""),
        ] {
            let e = parse(&plain).unwrap_err();
            assert!(e.message.contains("needs TLS to the backend"), "{e}");
        }
        let e = parse(&format!(
            "{conn}channel_binding = \"require\"\nallow_backend_auth = [\"md5\"]\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("SCRAM-SHA-256-PLUS only"), "{e}");
        let e = parse(&format!("{conn}channel_binding = \"disable\"\n")).unwrap_err();
        assert_eq!(e.line, 8, "{e}");
    }

    #[test]
    fn startup_parameters_backend_auth_and_limits() {
        let conn = "[[connection]]\nname = \"a\"\nkind = \"postgres\"\nhost = \"h\"\n\
                    database = \"d\"\nuser = \"u\"\npassword_env = \"P\"\n";
        let c = parse(conn).unwrap();
        // A non-loopback host without `tls` gets verify-full.
        assert_eq!(c.connections[0].tls(), BackendTls::VerifyFull);
        let local = conn.replace("host = \"h\"", "host = \"127.0.0.1\"");
        assert_eq!(
            parse(&local).unwrap().connections[0].tls(),
            BackendTls::Disable
        );
        let plain = format!("{conn}tls = \"disable\"\n");
        assert_eq!(
            parse(&plain).unwrap().connections[0].tls(),
            BackendTls::Disable
        );
        assert_eq!(c.connections[0].startup_params, StartupParams::Refuse);
        assert!(c.connections[0].allow_backend_auth.is_empty());
        assert_eq!(c.limits.max_sessions, 1000);
        assert_eq!(c.limits.max_sessions_per_principal, 128);
        let c = parse(&format!(
            "{conn}startup_params = \"drop\"\nallow_backend_auth = [\"md5\", \"trust\"]\n\
             [limits]\nmax_sessions = 10\nmax_sessions_per_principal = 2\nwrite_timeout_secs = 5\n"
        ))
        .unwrap();
        assert_eq!(c.connections[0].startup_params, StartupParams::Drop);
        assert_eq!(
            c.connections[0].allow_backend_auth,
            [BackendAuthMethod::Md5, BackendAuthMethod::Trust]
        );
        assert_eq!(
            (c.limits.max_sessions, c.limits.max_sessions_per_principal),
            (10, 2)
        );
        assert_eq!(c.limits.write_timeout_secs, 5);
        let e = parse(&format!("{conn}allow_backend_auth = [\"kerberos\"]\n")).unwrap_err();
        assert_eq!(e.line, 8, "{e}");
        let e = parse(&format!("{conn}startup_params = \"ignore\"\n")).unwrap_err();
        assert_eq!(e.line, 8, "{e}");
    }

    #[test]
    fn the_shipped_example_loads() {
        let text = include_str!("../../../examples/portcullis.toml");
        let c = parse(text).unwrap();
        assert_eq!(
            c.connections[0].labels.get("env").map(String::as_str),
            Some("prod")
        );
        assert_eq!(c.audit.quorum.as_ref().map(|q| *q.get_ref()), Some(2));
    }

    #[test]
    fn observe_mode_is_enforce_false() {
        let c = parse("[policy]\nfile = \"p.toml\"\nenforce = false\n").unwrap();
        assert!(c.policy.as_ref().is_some_and(|p| !p.enforce));
        let e = parse("[policy]\nfile = \"p.toml\"\nenforce = \"no\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
