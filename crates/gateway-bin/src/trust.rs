//! What the gateway trusts, built from its configuration: the token verifier
//! (gateway key, OIDC issuers, API keys, revocations), and the key files it
//! reads and writes.

use std::io::Write as _;
use std::path::Path;

use crate::config::Config;
use crate::identity::{self, GatewayKey};
use crate::jwks;

/// Reads the gateway's Ed25519 signing key (PKCS#8 PEM) named in the configuration.
pub(crate) fn read_signing_key(config: &Config, key: &Path) -> Result<GatewayKey, String> {
    let path = config.resolve(key);
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| format!("signing key {}: {e}", path.display()))?;
    GatewayKey::from_pem(&pem).map_err(|e| format!("signing key {}: {e}", path.display()))
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
