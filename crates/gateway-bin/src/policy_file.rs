//! Loading the policy file the gateway enforces, with its errors located as
//! `file:line:column`.

use std::path::Path;

use portcullis_policy::Policy;

use crate::config::policy_error;

/// Reads and validates `path` for serving.
pub(crate) fn load(path: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Policy::from_toml_str(&text).map_err(|e| policy_error(path, &e))
}
