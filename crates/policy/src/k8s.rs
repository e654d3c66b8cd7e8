//! Kubernetes API request analysis.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::facts::{K8sFacts, K8sRisk, K8sVerb};
use crate::request::K8sRequest;

/// The largest body analysed; a larger one makes the request unparsed.
pub(crate) const DEFAULT_MAX_BODY: usize = 4 << 20;

/// Analyses a Kubernetes API request into facts.
///
/// # Example
/// ```
/// use portcullis_policy::{analyze_k8s, K8sRequest, K8sVerb};
/// let req = K8sRequest::new("GET", "/api/v1/namespaces/prod/pods/web-1/exec")
///     .with_query("command=sh&command=-c&command=id&stdin=true");
/// let f = analyze_k8s(&req);
/// assert_eq!(f.verb, K8sVerb::Exec);
/// assert_eq!(f.namespace.as_deref(), Some("prod"));
/// assert_eq!(f.command, ["sh", "-c", "id"]);
/// ```
pub fn analyze_k8s(req: &K8sRequest) -> K8sFacts {
    analyze_k8s_limited(req, DEFAULT_MAX_BODY)
}

pub(crate) fn analyze_k8s_limited(req: &K8sRequest, max_body: usize) -> K8sFacts {
    let mut f = K8sFacts {
        verb: K8sVerb::Other,
        group: String::new(),
        version: String::new(),
        resource: None,
        subresource: None,
        namespace: None,
        name: None,
        non_resource_path: None,
        command: Vec::new(),
        impersonate_user: None,
        impersonate_groups: Vec::new(),
        risks: Vec::new(),
        unparsed: false,
        parse_error: None,
    };
    let mut risks = BTreeSet::new();
    let mut errors: Vec<String> = Vec::new();

    // Impersonation headers.
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("impersonate-") {
            risks.insert(K8sRisk::Impersonation);
            match lower.as_str() {
                "impersonate-user" => f.impersonate_user = Some(value.clone()),
                "impersonate-group" => f.impersonate_groups.push(value.clone()),
                _ => {}
            }
        }
    }

    // Query parameters.
    let mut watch = false;
    for pair in req.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k, true), percent_decode(v, true)) else {
            errors.push("malformed percent-encoding in the query".into());
            continue;
        };
        match k.as_str() {
            "command" => f.command.push(v),
            "watch" => watch = matches!(v.as_str(), "true" | "1" | ""),
            _ => {}
        }
    }

    // Path.
    let raw_path = req.path.split('?').next().unwrap_or("");
    // One trailing slash is harmless; any other empty segment is not.
    let trimmed = if raw_path.len() > 1 {
        raw_path.strip_suffix('/').unwrap_or(raw_path)
    } else {
        raw_path
    };
    let mut segments = Vec::new();
    let mut bad_path = false;
    for (i, seg) in trimmed.split('/').enumerate() {
        if trimmed == "/" {
            break;
        }
        if i == 0 {
            if !seg.is_empty() {
                bad_path = true;
            }
            continue;
        }
        // Resolve `.` and `..` the way a URL normaliser would (so the facts
        // name what the server would serve), but flag the path as unparsed.
        match percent_decode(seg, false) {
            Some(s) if s.is_empty() || s == "." => bad_path = true,
            Some(s) if s == ".." => {
                bad_path = true;
                segments.pop();
            }
            Some(s) if s.contains('/') => {
                bad_path = true;
                segments.extend(s.split('/').filter(|p| !p.is_empty()).map(str::to_owned));
            }
            Some(s) => segments.push(s),
            None => {
                bad_path = true;
                segments.push(seg.to_owned());
            }
        }
    }
    if bad_path {
        errors.push(format!(
            "ambiguous path {raw_path:?} (empty, `.` or `..` segments, or bad escapes)"
        ));
    }

    let method = req.method.to_ascii_uppercase();
    let seg = |i: usize| segments.get(i).map(String::as_str);
    let rest: &[String] = match (seg(0), seg(1)) {
        (Some("api"), Some(v)) => {
            f.version = v.to_owned();
            segments.get(2..).unwrap_or(&[])
        }
        (Some("apis"), Some(g)) if segments.len() >= 3 => {
            f.group = g.to_owned();
            f.version = seg(2).unwrap_or("").to_owned();
            segments.get(3..).unwrap_or(&[])
        }
        _ => {
            f.non_resource_path = Some(raw_path.to_owned());
            &[]
        }
    };
    let mut parts = rest;
    if parts.first().map(String::as_str) == Some("watch") {
        watch = true;
        parts = parts.get(1..).unwrap_or(&[]);
    }
    if parts.first().map(String::as_str) == Some("namespaces") && parts.len() > 1 {
        f.namespace = parts.get(1).cloned();
        if parts.len() > 2 {
            parts = parts.get(2..).unwrap_or(&[]);
        }
    }
    if f.non_resource_path.is_none() {
        f.resource = parts.first().cloned();
        f.name = parts.get(1).cloned();
        f.subresource = parts.get(2).cloned();
        if parts.len() > 3 && f.subresource.as_deref() != Some("proxy") {
            errors.push("path has more segments than a resource request".into());
        }
        if f.resource.is_none() {
            // `/api/v1` or `/apis/apps/v1`: discovery.
            f.non_resource_path = Some(raw_path.to_owned());
        }
    }

    f.verb = match (f.subresource.as_deref(), method.as_str()) {
        (Some("exec"), _) => K8sVerb::Exec,
        (Some("attach"), _) => K8sVerb::Attach,
        (Some("portforward"), _) => K8sVerb::Portforward,
        (Some("proxy"), _) => K8sVerb::Proxy,
        (_, "GET" | "HEAD") if watch => K8sVerb::Watch,
        (_, "GET" | "HEAD") if f.name.is_some() || f.non_resource_path.is_some() => K8sVerb::Get,
        (_, "GET" | "HEAD") => K8sVerb::List,
        (_, "POST") => K8sVerb::Create,
        (_, "PUT") => K8sVerb::Update,
        (_, "PATCH") => K8sVerb::Patch,
        (_, "DELETE") if f.name.is_some() => K8sVerb::Delete,
        (_, "DELETE") => K8sVerb::Deletecollection,
        _ => K8sVerb::Other,
    };
    // The namespace object itself: `/api/v1/namespaces/x` names `x`.
    if f.resource.as_deref() == Some("namespaces")
        && f.name.is_none()
        && f.namespace.is_some()
        && rest.len() == 2
    {
        f.name = f.namespace.clone();
        f.verb = match f.verb {
            K8sVerb::List => K8sVerb::Get,
            K8sVerb::Deletecollection => K8sVerb::Delete,
            v => v,
        };
    }

    // Body.
    if let Some(body) = &req.body
        && !body.iter().all(u8::is_ascii_whitespace)
    {
        if body.len() > max_body {
            errors.push(format!(
                "body of {} bytes is larger than the {max_body} analysed",
                body.len()
            ));
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(v) => body_risks(&v, &mut risks),
                Err(e) => errors.push(format!("body is not JSON: {e}")),
            }
        }
    }

    f.risks = risks.into_iter().collect();
    if !errors.is_empty() {
        f.unparsed = true;
        f.parse_error = Some(errors.join("; "));
    }
    f
}

/// Walks a JSON body (an object, a merge patch, or a JSON patch) for the risky settings.
fn body_risks(v: &Value, risks: &mut BTreeSet<K8sRisk>) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                // A JSON patch operation: `{"op": "add", "path": "/spec/hostPID", "value": true}`.
                if let (Some(Value::String(path)), Some(value)) =
                    (map.get("path"), map.get("value"))
                {
                    if let Some(key) = path.rsplit('/').next() {
                        key_risk(key, value, risks);
                    }
                    if path.contains("hostPath") {
                        risks.insert(K8sRisk::HostPath);
                    }
                }
                for (k, val) in map {
                    key_risk(k, val, risks);
                    stack.push(val);
                }
            }
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
}

fn key_risk(key: &str, val: &Value, risks: &mut BTreeSet<K8sRisk>) {
    let truthy = matches!(val, Value::Bool(true)) || matches!(val, Value::String(s) if s == "true");
    match key {
        "privileged" | "allowPrivilegeEscalation" if truthy => {
            risks.insert(K8sRisk::Privileged);
        }
        "hostPID" | "hostIPC" if truthy => {
            risks.insert(K8sRisk::HostPid);
        }
        "hostNetwork" if truthy => {
            risks.insert(K8sRisk::HostNetwork);
        }
        "hostPath" if !val.is_null() => {
            risks.insert(K8sRisk::HostPath);
        }
        "add" => {
            // capabilities.add
            if let Value::Array(caps) = val
                && caps.iter().any(|c| matches!(c, Value::String(s) if matches!(s.to_ascii_uppercase().trim_start_matches("CAP_"), "SYS_ADMIN" | "ALL" | "SYS_PTRACE" | "SYS_MODULE")))
            {
                risks.insert(K8sRisk::Privileged);
            }
        }
        "roleRef" => {
            if let Value::Object(r) = val
                && matches!(r.get("name"), Some(Value::String(n)) if n == "cluster-admin")
            {
                risks.insert(K8sRisk::ClusterAdminBinding);
            }
        }
        _ => {}
    }
}

/// Percent-decodes `s` (and `+` as space in query components); `None` on a
/// malformed escape or invalid UTF-8.
fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
                let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
