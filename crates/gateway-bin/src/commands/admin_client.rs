//! `approvals` and `sessions list|kill`: calls to a running gateway's admin API.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admin;
use crate::cli::ApprovalsCommand;

pub(crate) fn admin_get(
    admin: &str,
    token: Option<String>,
    ca: Option<&Path>,
    path: &str,
) -> Result<(), String> {
    admin_call(admin, token, ca, hyper::Method::GET, path)
}

pub(crate) fn approvals(
    cmd: ApprovalsCommand,
    admin: &str,
    token: Option<String>,
    ca: Option<&Path>,
) -> Result<(), String> {
    let body = |comment: &Option<String>| {
        comment
            .as_ref()
            .map(|c| serde_json::json!({ "comment": c }).to_string())
    };
    let (method, path, body) = match &cmd {
        ApprovalsCommand::List { history: false } => {
            (hyper::Method::GET, "/v1/approvals".to_owned(), None)
        }
        ApprovalsCommand::List { history: true } => {
            (hyper::Method::GET, "/v1/approvals?history".to_owned(), None)
        }
        ApprovalsCommand::Show { id } => (hyper::Method::GET, format!("/v1/approvals/{id}"), None),
        ApprovalsCommand::Approve { id, comment } => (
            hyper::Method::POST,
            format!("/v1/approvals/{id}/approve"),
            body(comment),
        ),
        ApprovalsCommand::Deny { id, comment } => (
            hyper::Method::POST,
            format!("/v1/approvals/{id}/deny"),
            body(comment),
        ),
    };
    admin_call_with(admin, token, ca, method, &path, body)
}

pub(crate) fn admin_call(
    admin: &str,
    token: Option<String>,
    ca: Option<&Path>,
    method: hyper::Method,
    path: &str,
) -> Result<(), String> {
    admin_call_with(admin, token, ca, method, path, None)
}

/// TLS for the admin API: only the CA certificates of `ca` (a PEM file,
/// else the `PORTCULLIS_ADMIN_CA` environment variable's), or, with
/// neither, the system's roots.
fn admin_tls(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let from_env = std::env::var_os("PORTCULLIS_ADMIN_CA")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let Some(file) = ca.or(from_env.as_deref()) else {
        return crate::serve::client_tls();
    };
    let shown = file.display();
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("the admin CA file {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "the admin CA file {shown} holds no PEM certificate"
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("the admin CA file {shown}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn admin_call_with(
    admin: &str,
    token: Option<String>,
    ca: Option<&Path>,
    method: hyper::Method,
    path: &str,
    json_body: Option<String>,
) -> Result<(), String> {
    let token = token
        .or_else(|| std::env::var("PORTCULLIS_TOKEN").ok())
        .ok_or("give --token or set PORTCULLIS_TOKEN: the admin API authenticates like clients")?;
    let tls = admin_tls(ca)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let (status, body) =
        rt.block_on(admin::call_tls(admin, method, path, &token, json_body, tls))?;
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
