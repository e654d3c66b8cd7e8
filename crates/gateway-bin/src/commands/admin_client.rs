//! `approvals` and `sessions list|kill`: calls to a running gateway's admin API.

use crate::admin;
use crate::cli::ApprovalsCommand;

pub(crate) fn admin_get(admin: &str, token: Option<String>, path: &str) -> Result<(), String> {
    admin_call(admin, token, hyper::Method::GET, path)
}

pub(crate) fn approvals(
    cmd: ApprovalsCommand,
    admin: &str,
    token: Option<String>,
) -> Result<(), String> {
    let (method, path) = match &cmd {
        ApprovalsCommand::List => (hyper::Method::GET, "/v1/approvals".to_owned()),
        ApprovalsCommand::Approve { id } => {
            (hyper::Method::POST, format!("/v1/approvals/{id}/approve"))
        }
        ApprovalsCommand::Deny { id } => (hyper::Method::POST, format!("/v1/approvals/{id}/deny")),
    };
    admin_call(admin, token, method, &path)
}

pub(crate) fn admin_call(
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
