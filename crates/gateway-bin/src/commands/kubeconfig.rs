//! `kubeconfig`: a kubeconfig for an agent, pointing at a Kubernetes
//! connection's listener, with a token the gateway accepts.

use crate::cli::KubeconfigArgs;
use crate::config::ConnectionKind;
use crate::identity::TokenIssuer;
use crate::trust::read_signing_key;

use super::{load, now};

pub(crate) fn run(args: KubeconfigArgs) -> Result<(), String> {
    let config = load(&args.config)?;
    let kube: Vec<_> = config
        .connections
        .iter()
        .filter(|c| c.kind == ConnectionKind::Kubernetes)
        .collect();
    let names = || {
        kube.iter()
            .map(|c| c.name.get_ref().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let conn = match &args.connection {
        Some(name) => kube
            .iter()
            .find(|c| c.name.get_ref() == name)
            .ok_or_else(|| {
                format!(
                    "no kubernetes connection named {name:?} in {} (there are: {})",
                    args.config.display(),
                    names()
                )
            })?,
        None => match kube.as_slice() {
            [one] => one,
            [] => {
                return Err(format!(
                    "{} has no kubernetes connection",
                    args.config.display()
                ));
            }
            _ => {
                return Err(format!(
                    "{} has several kubernetes connections; pick one with --connection ({})",
                    args.config.display(),
                    names()
                ));
            }
        },
    };
    let name = conn.name.get_ref();
    let k = conn
        .kubernetes
        .as_ref()
        .ok_or_else(|| format!("connection {name}: no [connection.kubernetes] table"))?;
    let cert = config.resolve(&k.tls_cert);
    let ca_pem = std::fs::read_to_string(&cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let token = match (&args.token, &args.principal) {
        (Some(t), _) => t.clone(),
        (None, Some(principal)) => {
            let key_path = config.identity.signing_key.as_ref().ok_or(
                "the configuration has no [identity] signing_key: the gateway cannot mint \
                 tokens (give one with --token)",
            )?;
            let key = read_signing_key(&config, key_path)?;
            let minted = TokenIssuer {
                key: &key,
                issuer: &config.identity.issuer,
                audience: &config.identity.audience,
            }
            .issue(principal, &args.groups, args.ttl.as_secs(), now())?;
            eprintln!(
                "token id {} for {principal}, expires at {} (unix seconds)",
                minted.id, minted.expires_at
            );
            minted.token
        }
        (None, None) => return Err("give --principal or --token".to_owned()),
    };
    println!(
        "{}",
        crate::k8s::kubeconfig(
            name,
            &crate::k8s::public_url(k),
            &ca_pem,
            &token,
            &args.namespace
        )
    );
    Ok(())
}
