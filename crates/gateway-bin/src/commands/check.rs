//! `check`: validate a configuration and the files it names.

use std::path::Path;

use crate::trust::read_signing_key;

pub(crate) fn run(path: &Path) -> Result<(), String> {
    let config = super::load(path)?;
    let mut problems = Vec::new();
    if let Some(key) = &config.identity.signing_key
        && let Err(e) = read_signing_key(&config, key)
    {
        problems.push(e);
    }
    match &config.policy {
        Some(p) => {
            let f = config.resolve(&p.file);
            // The policy's own errors carry its line and column.
            if let Err(e) = crate::policy_file::load(&f) {
                problems.push(e);
            }
        }
        None => {
            problems.push("no [policy] file: the gateway does not serve without one".to_owned())
        }
    }
    for c in &config.connections {
        problems.extend(crate::k8s::check_files(&config, c));
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
        let observe = config.policy.as_ref().is_some_and(|p| !p.enforce);
        println!(
            "{}: ok{}",
            path.display(),
            if observe {
                " (observe mode: the policy is not enforced)"
            } else {
                ""
            }
        );
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
