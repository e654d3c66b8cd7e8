//! The bodies of the subcommands, one module per command family. Nothing here
//! is called by the serving path; the serving path never calls up into here.

pub(crate) mod admin_client;
pub(crate) mod audit;
pub(crate) mod check;
pub(crate) mod discover;
pub(crate) mod kubeconfig;
pub(crate) mod policy;
pub(crate) mod serve;
pub(crate) mod token;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;

/// Loads a configuration file; errors name FILE:LINE:COLUMN.
pub(crate) fn load(path: &Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
