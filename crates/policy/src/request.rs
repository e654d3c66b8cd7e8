//! What the gateway asks the policy about.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::facts::Risk;
use crate::search_path::{Relations, SearchPath};

/// What kind of principal is acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person.
    Human,
    /// An AI agent.
    Agent,
    /// A service or CI job.
    Service,
}

impl PrincipalKind {
    /// The name used in policies (`human`, `agent`, `service`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Agent => "agent",
            Self::Service => "service",
        }
    }
}

/// The authenticated identity a command is checked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Its identifier (an OIDC subject or e-mail, an API key's name).
    pub id: String,
    /// Human, agent or service.
    pub kind: PrincipalKind,
    /// The groups it belongs to.
    pub groups: Vec<String>,
}

impl Principal {
    /// A principal with no groups.
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::{Principal, PrincipalKind};
    /// let p = Principal::new("claude@ci", PrincipalKind::Agent).with_groups(["agents"]);
    /// assert_eq!(p.groups, ["agents"]);
    /// ```
    pub fn new(id: impl Into<String>, kind: PrincipalKind) -> Self {
        Self {
            id: id.into(),
            kind,
            groups: Vec::new(),
        }
    }

    /// This principal with `groups` added.
    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups.extend(groups.into_iter().map(Into::into));
        self
    }
}

/// What kind of system a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// A PostgreSQL server.
    Postgres,
    /// A Kubernetes API server.
    Kubernetes,
}

impl ResourceKind {
    /// The name used in policies (`postgres`, `kubernetes`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// The connection a command goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    /// The connection's name in the gateway's configuration.
    pub name: String,
    /// PostgreSQL or Kubernetes.
    pub kind: ResourceKind,
    /// Labels (`env = "prod"`, …).
    pub labels: BTreeMap<String, String>,
}

impl Resource {
    /// A resource with no labels.
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::{Resource, ResourceKind};
    /// let r = Resource::new("orders-db", ResourceKind::Postgres).with_label("env", "prod");
    /// assert_eq!(r.labels["env"], "prod");
    /// ```
    pub fn new(name: impl Into<String>, kind: ResourceKind) -> Self {
        Self {
            name: name.into(),
            kind,
            labels: BTreeMap::new(),
        }
    }

    /// This resource with the label `key = value`.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// A Kubernetes API request, as the gateway received it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct K8sRequest {
    /// The HTTP method (`GET`, `POST`, …).
    pub method: String,
    /// The URL path, still percent-encoded (`/api/v1/namespaces/default/pods`).
    pub path: String,
    /// The raw query string, without the `?` (`command=ls&command=-l&stdout=true`).
    pub query: String,
    /// The request headers (names in any case).
    pub headers: Vec<(String, String)>,
    /// The request body, when there is one (JSON for create, update and patch).
    pub body: Option<Vec<u8>>,
}

impl K8sRequest {
    /// A request with no query, headers or body.
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::K8sRequest;
    /// let r = K8sRequest::new("POST", "/api/v1/namespaces/default/pods/web/exec")
    ///     .with_query("command=sh&stdin=true")
    ///     .with_header("Impersonate-User", "admin");
    /// assert_eq!(r.headers.len(), 1);
    /// ```
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            ..Self::default()
        }
    }

    /// This request with the query string `query`.
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = query.into();
        self
    }

    /// This request with the header `name: value` added.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// This request with the body `body`.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
}

/// The command to decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// A SQL string (one or several statements, as in a simple query).
    Sql(&'a str),
    /// A Kubernetes API request.
    Kubernetes(K8sRequest),
}

/// One question to the policy: may this principal run this command on this resource?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Who is acting.
    pub principal: &'a Principal,
    /// Where the command goes.
    pub resource: &'a Resource,
    /// What it is.
    pub command: Command<'a>,
    /// The session's `search_path`, for SQL: how names written without a
    /// schema resolve. `None`: they take the policy's `default_schema`.
    pub search_path: Option<&'a SearchPath>,
    /// Which schemas hold which relations, to resolve names with
    /// `search_path`.
    pub relations: Option<&'a Relations>,
    /// Risks the embedder's own analysis found (the gateway's lineage finds
    /// masked columns used in predicates through views), added to every SQL
    /// statement's facts.
    pub risks: &'a [Risk],
}

impl<'a> Request<'a> {
    /// A request for a SQL command.
    pub fn sql(principal: &'a Principal, resource: &'a Resource, sql: &'a str) -> Self {
        Self {
            principal,
            resource,
            command: Command::Sql(sql),
            search_path: None,
            relations: None,
            risks: &[],
        }
    }

    /// A request for a Kubernetes API call.
    pub fn kubernetes(principal: &'a Principal, resource: &'a Resource, req: K8sRequest) -> Self {
        Self {
            principal,
            resource,
            command: Command::Kubernetes(req),
            search_path: None,
            relations: None,
            risks: &[],
        }
    }

    /// This request with the session's `search_path` (see [`SearchPath`]).
    pub fn with_search_path(mut self, search_path: &'a SearchPath) -> Self {
        self.search_path = Some(search_path);
        self
    }

    /// This request with what the catalog holds (see [`Relations`]).
    pub fn with_relations(mut self, relations: &'a Relations) -> Self {
        self.relations = Some(relations);
        self
    }

    /// This request with `risks` added to every SQL statement's facts.
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::{Policy, Principal, PrincipalKind, Request, Resource, ResourceKind, Risk};
    /// let policy = Policy::from_toml_str(r#"
    ///     default = "allow"
    ///     [[rule]]
    ///     id = "no-inference"
    ///     effect = "deny"
    ///     when.sql.risk = ["masked_column_predicate"]
    /// "#)?;
    /// let who = Principal::new("agent", PrincipalKind::Agent);
    /// let db = Resource::new("shop", ResourceKind::Postgres);
    /// let sql = "SELECT id FROM v WHERE k LIKE 'a%'";
    /// assert!(policy.evaluate(&Request::sql(&who, &db, sql)).effect.is_allow());
    /// let seen = [Risk::MaskedColumnPredicate];
    /// assert!(policy.evaluate(&Request::sql(&who, &db, sql).with_risks(&seen)).effect.is_deny());
    /// # Ok::<(), portcullis_policy::PolicyError>(())
    /// ```
    pub fn with_risks(mut self, risks: &'a [Risk]) -> Self {
        self.risks = risks;
        self
    }
}
