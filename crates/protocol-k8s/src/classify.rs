//! Request classification: an HTTP method, path and headers to the facts of
//! a Kubernetes API request (verb, group, version, resource, subresource,
//! namespace, name), following the API server's own request-info rules.

use percent_encoding::percent_decode_str;

/// Longest request target (path and query) that is classified at all.
pub const MAX_TARGET_LEN: usize = 16 * 1024;
/// Most `command` arguments an exec request may carry.
const MAX_ARGV: usize = 1024;

/// Why a request could not be classified. Such a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifyError {
    /// The request target is longer than [`MAX_TARGET_LEN`].
    #[error("request target is longer than {MAX_TARGET_LEN} bytes")]
    TooLong,
    /// The path does not start with `/`.
    #[error("request path does not start with '/'")]
    NotAbsolute,
    /// A path segment is empty, `.` or `..`, or decodes to something with a
    /// `/` or a control character in it.
    #[error("request path has an ambiguous segment at segment {index}")]
    AmbiguousSegment {
        /// Zero-based index of the segment.
        index: usize,
    },
    /// The path has more segments than any Kubernetes API path.
    #[error("request path has too many segments for a resource path")]
    TooManySegments,
    /// The HTTP method is not one the API server serves.
    #[error("unsupported http method {0:?}")]
    Method(String),
    /// The query string is malformed or too large.
    #[error("malformed query: {0}")]
    Query(&'static str),
}

/// The Kubernetes verb of a request, as RBAC names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verb {
    /// `GET` of one named object.
    Get,
    /// `GET` of a collection.
    List,
    /// `GET` with `watch=true` (or the legacy `/watch/` prefix).
    Watch,
    /// `POST`.
    Create,
    /// `PUT`.
    Update,
    /// `PATCH`.
    Patch,
    /// `DELETE` of one named object.
    Delete,
    /// `DELETE` of a collection.
    DeleteCollection,
}

impl Verb {
    /// The RBAC name of the verb (`get`, `list`, `deletecollection`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// Which streaming subresource of a pod a request opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamKind {
    /// `pods/exec`: run a command in a container.
    Exec,
    /// `pods/attach`: attach to a container's main process.
    Attach,
    /// `pods/portforward`: forward ports.
    PortForward,
}

/// How a streaming request asks to upgrade its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// `Upgrade: websocket` (kubectl ≥ 1.30, the Python client).
    WebSocket,
    /// `Upgrade: SPDY/3.1` (kubectl ≤ 1.29).
    Spdy,
    /// No upgrade header, or one this crate does not know.
    None,
}

/// The parameters of an exec/attach/portforward request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// Which subresource.
    pub kind: StreamKind,
    /// How the client asks to upgrade.
    pub transport: Transport,
    /// The command argv (`command` query parameters, in order); empty for
    /// attach and port-forward.
    pub command: Vec<String>,
    /// The `container` parameter, if given.
    pub container: Option<String>,
    /// `stdin=true`.
    pub stdin: bool,
    /// `stdout=true`.
    pub stdout: bool,
    /// `stderr=true`.
    pub stderr: bool,
    /// `tty=true`.
    pub tty: bool,
    /// The `ports` parameters of a port-forward.
    pub ports: Vec<String>,
}

/// The facts of one Kubernetes API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sRequest {
    /// The verb.
    pub verb: Verb,
    /// The API group (empty for the core group, also for non-resource paths).
    pub group: String,
    /// The API version (`v1`); empty for non-resource paths.
    pub version: String,
    /// The resource (`pods`); `None` for non-resource paths (`/version`,
    /// `/api`, `/apis/apps`, `/healthz`, ...).
    pub resource: Option<String>,
    /// The subresource (`exec`, `status`, `log`, ...).
    pub subresource: Option<String>,
    /// The namespace, for namespaced requests (and for a namespace object
    /// itself, as the API server does).
    pub namespace: Option<String>,
    /// The object's name, when the request names one.
    pub name: Option<String>,
    /// The request's path, decoded, for non-resource requests.
    pub path: String,
    /// Exec, attach or port-forward parameters.
    pub stream: Option<StreamRequest>,
    /// The impersonation headers the request carries (`Impersonate-User`,
    /// `Impersonate-Group`, `Impersonate-Uid`, `Impersonate-Extra-*`),
    /// lower-cased. A gateway normally refuses these.
    pub impersonation: Vec<String>,
    /// `dryRun=All` was asked.
    pub dry_run: bool,
    /// The HTTP method as sent (`GET`, `POST`, ...).
    pub method: String,
    /// The request target as sent: path and query, still percent-encoded
    /// (at most [`MAX_TARGET_LEN`] bytes).
    pub target: String,
    /// The body of a create, update or patch sent as JSON, read whole
    /// (bounded) before the decision; `None` for other requests and bodies
    /// (kubectl sends protobuf for its typed creates).
    pub body: Option<Vec<u8>>,
}

impl K8sRequest {
    /// Whether this is a resource request (and not `/version`, discovery, ...).
    pub fn is_resource(&self) -> bool {
        self.resource.is_some()
    }

    /// Whether this opens an exec, attach or port-forward stream.
    pub fn is_stream(&self) -> bool {
        self.stream.is_some()
    }
}

/// Namespace subresources: `/api/v1/namespaces/NAME/status` is the status
/// of namespace NAME, not a resource called `status` in it.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Classifies one request.
///
/// `target` is the request target as sent (path and optional query);
/// `headers` are its header names and values (names in any case).
///
/// # Example
///
/// ```
/// use portcullis_k8s::{classify, StreamKind, Verb};
///
/// let r = classify(
///     "GET",
///     "/api/v1/namespaces/prod/pods/web-0/exec?command=sh&command=-c&command=id&stdout=true",
///     [("Upgrade", "websocket"), ("Impersonate-User", "admin")],
/// )
/// .unwrap();
/// assert_eq!(r.verb, Verb::Get);
/// assert_eq!(r.resource.as_deref(), Some("pods"));
/// assert_eq!(r.subresource.as_deref(), Some("exec"));
/// assert_eq!(r.namespace.as_deref(), Some("prod"));
/// assert_eq!(r.name.as_deref(), Some("web-0"));
/// let s = r.stream.unwrap();
/// assert_eq!(s.kind, StreamKind::Exec);
/// assert_eq!(s.command, ["sh", "-c", "id"]);
/// assert_eq!(r.impersonation, ["impersonate-user"]);
/// ```
pub fn classify<'a, I>(method: &str, target: &str, headers: I) -> Result<K8sRequest, ClassifyError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    if target.len() > MAX_TARGET_LEN {
        return Err(ClassifyError::TooLong);
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let raw_path = raw_path
        .strip_prefix('/')
        .ok_or(ClassifyError::NotAbsolute)?;
    let segments = decode_segments(raw_path)?;
    let params = Params::parse(query)?;

    let mut impersonation = Vec::new();
    let mut upgrade = Transport::None;
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("impersonate-") {
            if !impersonation.contains(&lower) {
                impersonation.push(lower);
            }
        } else if lower == "upgrade" {
            let v = value.trim();
            if v.eq_ignore_ascii_case("websocket") {
                upgrade = Transport::WebSocket;
            } else if v.to_ascii_lowercase().starts_with("spdy/") {
                upgrade = Transport::Spdy;
            }
        }
    }

    let method_verb = match method {
        "GET" | "HEAD" => Verb::Get,
        "POST" => Verb::Create,
        "PUT" => Verb::Update,
        "PATCH" => Verb::Patch,
        "DELETE" => Verb::Delete,
        other => return Err(ClassifyError::Method(other.chars().take(32).collect())),
    };
    let path = format!("/{}", segments.join("/"));
    let mut req = K8sRequest {
        verb: method_verb,
        group: String::new(),
        version: String::new(),
        resource: None,
        subresource: None,
        namespace: None,
        name: None,
        path,
        stream: None,
        impersonation,
        dry_run: params.values("dryRun").any(|v| v == "All"),
        method: method.to_owned(),
        target: target.to_owned(),
        body: None,
    };

    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let rest: &[&str] = match seg.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => {
            req.version = (*version).to_owned();
            rest
        }
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            req.group = (*group).to_owned();
            req.version = (*version).to_owned();
            rest
        }
        _ => {
            // Non-resource request: discovery, /version, /healthz, /openapi.
            req.group.clear();
            req.version.clear();
            return Ok(req);
        }
    };

    let (watch_prefix, rest) = match rest {
        ["watch", tail @ ..] if !tail.is_empty() => (true, tail),
        _ => (false, rest),
    };
    let rest: &[&str] = match rest {
        ["namespaces", ns, tail @ ..] => {
            req.namespace = Some((*ns).to_owned());
            match tail {
                [] => rest,
                [sub] if NAMESPACE_SUBRESOURCES.contains(sub) => rest,
                _ => tail,
            }
        }
        _ => rest,
    };
    match rest {
        [resource] => req.resource = Some((*resource).to_owned()),
        [resource, name] => {
            req.resource = Some((*resource).to_owned());
            req.name = Some((*name).to_owned());
        }
        [resource, name, sub] => {
            req.resource = Some((*resource).to_owned());
            req.name = Some((*name).to_owned());
            req.subresource = Some((*sub).to_owned());
        }
        _ => return Err(ClassifyError::TooManySegments),
    }

    let watch = watch_prefix || params.values("watch").any(|v| v == "true" || v == "1");
    req.verb = match (method_verb, req.name.is_some()) {
        (Verb::Get, _) if watch => Verb::Watch,
        (Verb::Get, false) => Verb::List,
        (Verb::Delete, false) => Verb::DeleteCollection,
        (v, _) => v,
    };

    if req.resource.as_deref() == Some("pods") && req.name.is_some() {
        let kind = match req.subresource.as_deref() {
            Some("exec") => Some(StreamKind::Exec),
            Some("attach") => Some(StreamKind::Attach),
            Some("portforward") => Some(StreamKind::PortForward),
            _ => None,
        };
        if let Some(kind) = kind {
            let command: Vec<String> = params.values("command").map(str::to_owned).collect();
            if command.len() > MAX_ARGV {
                return Err(ClassifyError::Query("too many command arguments"));
            }
            let flag = |k: &str| params.values(k).any(|v| v == "true" || v == "1");
            req.stream = Some(StreamRequest {
                kind,
                transport: upgrade,
                command,
                container: params.values("container").next().map(str::to_owned),
                stdin: flag("stdin"),
                stdout: flag("stdout"),
                stderr: flag("stderr"),
                tty: flag("tty"),
                ports: params.values("ports").map(str::to_owned).collect(),
            });
        }
    }
    Ok(req)
}

fn decode_segments(raw: &str) -> Result<Vec<String>, ClassifyError> {
    let raw = raw.strip_suffix('/').unwrap_or(raw);
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (index, part) in raw.split('/').enumerate() {
        if out.len() >= 16 {
            return Err(ClassifyError::TooManySegments);
        }
        let decoded = percent_decode_str(part)
            .decode_utf8()
            .map_err(|_| ClassifyError::AmbiguousSegment { index })?;
        if decoded.is_empty()
            || decoded == "."
            || decoded == ".."
            || decoded.contains('/')
            || decoded.chars().any(char::is_control)
        {
            return Err(ClassifyError::AmbiguousSegment { index });
        }
        out.push(decoded.into_owned());
    }
    Ok(out)
}

struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(query: &str) -> Result<Self, ClassifyError> {
        let mut pairs = Vec::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if pairs.len() >= 4096 {
                return Err(ClassifyError::Query("too many parameters"));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params { pairs })
    }

    fn values<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> K8sRequest {
        classify("GET", target, []).unwrap()
    }

    #[test]
    fn core_and_group_resources() {
        let r = get("/api/v1/namespaces/default/pods");
        assert_eq!(
            (r.verb, r.group.as_str(), r.version.as_str()),
            (Verb::List, "", "v1")
        );
        assert_eq!(r.resource.as_deref(), Some("pods"));
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name, None);

        let r = get("/apis/apps/v1/namespaces/prod/deployments/web/scale");
        assert_eq!((r.group.as_str(), r.version.as_str()), ("apps", "v1"));
        assert_eq!(r.resource.as_deref(), Some("deployments"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        assert_eq!(r.verb, Verb::Get);

        let r = get("/apis/rbac.authorization.k8s.io/v1/clusterroles");
        assert_eq!(r.namespace, None);
        assert_eq!(r.resource.as_deref(), Some("clusterroles"));
    }

    #[test]
    fn namespaces_themselves() {
        let r = classify("DELETE", "/api/v1/namespaces/prod", []).unwrap();
        assert_eq!(r.verb, Verb::Delete);
        assert_eq!(r.resource.as_deref(), Some("namespaces"));
        assert_eq!(r.name.as_deref(), Some("prod"));
        assert_eq!(r.namespace.as_deref(), Some("prod"));

        let r = classify("PUT", "/api/v1/namespaces/prod/finalize", []).unwrap();
        assert_eq!(r.resource.as_deref(), Some("namespaces"));
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
        assert_eq!(r.verb, Verb::Update);

        let r = get("/api/v1/namespaces");
        assert_eq!(
            (r.verb, r.resource.as_deref(), r.namespace.as_deref()),
            (Verb::List, Some("namespaces"), None)
        );
    }

    #[test]
    fn verbs() {
        assert_eq!(get("/api/v1/pods?watch=true").verb, Verb::Watch);
        assert_eq!(get("/api/v1/watch/namespaces/a/pods").verb, Verb::Watch);
        assert_eq!(get("/api/v1/namespaces/a/pods/p?watch=1").verb, Verb::Watch);
        assert_eq!(
            classify("POST", "/api/v1/namespaces/a/serviceaccounts", [])
                .unwrap()
                .verb,
            Verb::Create
        );
        assert_eq!(
            classify("PATCH", "/api/v1/namespaces/a/pods/p", [])
                .unwrap()
                .verb,
            Verb::Patch
        );
        assert_eq!(
            classify("DELETE", "/api/v1/namespaces/a/pods", [])
                .unwrap()
                .verb,
            Verb::DeleteCollection
        );
        assert!(
            classify("POST", "/api/v1/namespaces/a/pods?dryRun=All", [])
                .unwrap()
                .dry_run
        );
        assert!(matches!(
            classify("TRACE", "/api", []),
            Err(ClassifyError::Method(_))
        ));
    }

    #[test]
    fn non_resource_paths() {
        for p in [
            "/version",
            "/api",
            "/apis",
            "/api/v1",
            "/apis/apps/v1",
            "/healthz",
            "/openapi/v3",
            "/",
        ] {
            let r = get(p);
            assert_eq!(r.resource, None, "{p}");
            assert!(!r.is_resource());
        }
        assert_eq!(get("/api/v1").path, "/api/v1");
        assert_eq!(get("/api/v1/").path, "/api/v1");
    }

    #[test]
    fn exec_attach_portforward() {
        let r = classify(
            "POST",
            "/api/v1/namespaces/kube-system/pods/etcd-0/exec?command=sh&command=-c&command=echo%20hi%3Bid&container=etcd&stdin=true&stdout=true&tty=true",
            [("upgrade", "SPDY/3.1")],
        )
        .unwrap();
        assert_eq!(r.verb, Verb::Create);
        let s = r.stream.unwrap();
        assert_eq!(s.kind, StreamKind::Exec);
        assert_eq!(s.transport, Transport::Spdy);
        assert_eq!(s.command, ["sh", "-c", "echo hi;id"]);
        assert_eq!(s.container.as_deref(), Some("etcd"));
        assert!(s.stdin && s.stdout && s.tty && !s.stderr);

        let r = classify(
            "GET",
            "/api/v1/namespaces/a/pods/p/attach?stdout=1",
            [("Upgrade", "websocket")],
        )
        .unwrap();
        let s = r.stream.unwrap();
        assert_eq!(
            (s.kind, s.transport),
            (StreamKind::Attach, Transport::WebSocket)
        );
        assert!(s.stdout && s.command.is_empty());

        let r = get("/api/v1/namespaces/a/pods/p/portforward?ports=5432&ports=80");
        assert_eq!(r.stream.unwrap().ports, ["5432", "80"]);

        // Not a stream: logs, and exec on something that is not a pod.
        assert!(get("/api/v1/namespaces/a/pods/p/log").stream.is_none());
        assert!(get("/api/v1/namespaces/a/services/p/exec").stream.is_none());
    }

    #[test]
    fn impersonation_flagged() {
        let r = classify(
            "GET",
            "/api/v1/pods",
            [
                ("Impersonate-User", "x"),
                ("impersonate-group", "a"),
                ("IMPERSONATE-GROUP", "b"),
                ("Impersonate-Extra-scopes", "c"),
            ],
        )
        .unwrap();
        assert_eq!(
            r.impersonation,
            [
                "impersonate-user",
                "impersonate-group",
                "impersonate-extra-scopes"
            ]
        );
    }

    #[test]
    fn ambiguous_paths_refused() {
        for p in [
            "/api/v1/namespaces/../pods",
            "/api/v1/namespaces/a%2Fb/pods",
            "/api/v1//pods",
            "/api/v1/namespaces/%2e%2e/pods",
            "/api/v1/namespaces/a%00/pods",
            "/api/v1/namespaces/a/pods/p/exec/extra",
            "api/v1/pods",
        ] {
            assert!(classify("GET", p, []).is_err(), "{p}");
        }
        let long = format!("/api/v1/pods?{}", "a".repeat(MAX_TARGET_LEN));
        assert_eq!(classify("GET", &long, []), Err(ClassifyError::TooLong));
    }

    #[test]
    fn percent_encoded_names() {
        let r = get("/api/v1/namespaces/a/configmaps/my%2Econfig");
        assert_eq!(r.name.as_deref(), Some("my.config"));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any target classifies or is refused, never panics; a resource
        /// request's facts come from its own segments.
        #[test]
        fn classify_never_panics(target in "[/a-z0-9%.?=&-]{0,80}", method in "(GET|POST|PUT|PATCH|DELETE|HEAD|TRACE)") {
            if let Ok(r) = classify(&method, &target, [])
                && let Some(res) = &r.resource
            {
                prop_assert!(target.contains(res.as_str()) || target.contains('%'));
            }
        }

        /// Every name round-trips through the path, percent-encoded or not.
        #[test]
        fn names_round_trip(ns in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", name in "[a-z0-9.]{1,20}") {
            prop_assume!(name != "." && name != "..");
            let r = classify("GET", &format!("/api/v1/namespaces/{ns}/pods/{name}"), []).unwrap();
            prop_assert_eq!(r.namespace.as_deref(), Some(ns.as_str()));
            prop_assert_eq!(r.name.as_deref(), Some(name.as_str()));
            prop_assert_eq!(r.verb, Verb::Get);
        }
    }
}
