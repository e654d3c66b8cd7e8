//! `token keygen|issue|inspect|revoke|api-key`.

use std::io::Write as _;

use crate::cli::TokenCommand;
use crate::identity::{self, GatewayKey, TokenIssuer};
use crate::trust::{
    build_verifier, fetch_jwks_urls, jwks_urls, read_signing_key, write_new_private,
};

use super::{load, now};

pub(crate) fn run(cmd: TokenCommand) -> Result<(), String> {
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
