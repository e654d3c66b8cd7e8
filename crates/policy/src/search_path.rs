//! The session's `search_path`: how relation names written without a schema
//! are resolved when the policy matches `reads`, `writes` and `objects`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::facts::SearchPathChange;

/// The `search_path` of the session a SQL command runs in, given with
/// [`Request::with_search_path`](crate::Request::with_search_path).
///
/// Without one, a name written without a schema is qualified with the
/// policy's `default_schema` (`public`), whatever the session's real path:
/// embedders that do not know it keep today's behaviour. With one, a name
/// resolves as PostgreSQL resolves it (see [`Relations`] for what the policy
/// must know for that), and where the resolution is not certain, every
/// possible resolution is decided and the strictest decision is taken.
///
/// # Example
/// ```
/// use portcullis_policy::{Policy, Principal, PrincipalKind, Relations, Request, Resource, ResourceKind, SearchPath};
/// let policy = Policy::from_toml_str(r#"
///     default = "allow"
///     [[rule]]
///     id = "no-shop-deletes"
///     effect = "deny"
///     when.sql.writes = ["shop.orders"]
/// "#)?;
/// let who = Principal::new("agent", PrincipalKind::Agent);
/// let db = Resource::new("shop", ResourceKind::Postgres);
/// let relations: Relations = [("shop", "orders"), ("public", "orders")].into_iter().collect();
/// let path = SearchPath::Known(vec!["shop".into(), "public".into()]);
/// let ask = |path: &SearchPath| {
///     policy.evaluate(&Request::sql(&who, &db, "DELETE FROM orders")
///         .with_search_path(path)
///         .with_relations(&relations))
/// };
/// assert!(ask(&path).effect.is_deny());
/// assert!(ask(&SearchPath::Known(vec!["public".into()])).effect.is_allow());
/// // Unknown: either table could be the one; the strictest decision holds.
/// assert!(ask(&SearchPath::Unknown).effect.is_deny());
/// // Without a search path, `default_schema` (public) as before.
/// let d = policy.evaluate(&Request::sql(&who, &db, "DELETE FROM orders"));
/// assert!(d.effect.is_allow());
/// # Ok::<(), portcullis_policy::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchPath {
    /// The schemas, in order, as `SELECT current_schemas(false)` lists them
    /// (names as stored, not quoted). `pg_catalog` is searched first unless
    /// it is listed. A list naming `$user` is treated as unknown (the
    /// policy does not know which role it expands to).
    Known(Vec<String>),
    /// It could be anything: the strictest decision over every schema that
    /// holds the name is taken (over every schema known, `default_schema`
    /// included, when none holds it or the statement creates something:
    /// it goes to whichever comes first in the path). Without
    /// [`Relations`], a statement naming a relation without a schema is
    /// denied.
    Unknown,
}

impl SearchPath {
    /// The path after a statement changed it (`RESET` and unknown changes
    /// give an unknown path: the policy does not know the session's
    /// default).
    pub(crate) fn after(&self, change: Option<&SearchPathChange>) -> SearchPath {
        match change {
            None => self.clone(),
            Some(SearchPathChange::Set(list)) => SearchPath::Known(list.clone()),
            Some(SearchPathChange::Reset | SearchPathChange::Unknown) => SearchPath::Unknown,
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Which schemas hold a relation (table, view, sequence, …) of each name:
/// what the policy needs, besides the [`SearchPath`], to resolve a name as
/// PostgreSQL does (the first schema of the path that holds it). The
/// gateway reads it from the backend's `pg_class`, `pg_catalog` included.
///
/// Without it, a known path resolves a name to every schema of the path
/// (and the strictest decision is taken).
///
/// # Example
/// ```
/// use portcullis_policy::Relations;
/// let mut r = Relations::new();
/// r.add("shop", "orders");
/// r.add("public", "orders");
/// assert_eq!(r.schemas_holding("orders"), ["public", "shop"]);
/// assert!(r.schemas_holding("users").is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Relations {
    by_name: HashMap<String, Vec<String>>,
    /// Every schema holding a relation.
    schemas: BTreeSet<String>,
    /// Unique per content (a change gives a new id): part of the decision
    /// cache's key.
    id: u64,
}

impl PartialEq for Relations {
    fn eq(&self, other: &Self) -> bool {
        self.by_name == other.by_name
    }
}

impl Eq for Relations {}

impl Default for Relations {
    fn default() -> Self {
        Self::new()
    }
}

impl Relations {
    /// No relation known.
    pub fn new() -> Self {
        Self {
            by_name: HashMap::new(),
            schemas: BTreeSet::new(),
            id: next_id(),
        }
    }

    /// Records that `schema` holds a relation named `name` (both as stored).
    pub fn add(&mut self, schema: impl Into<String>, name: impl Into<String>) {
        let schemas = self.by_name.entry(name.into()).or_default();
        let schema = schema.into();
        if let Err(i) = schemas.binary_search(&schema) {
            self.schemas.insert(schema.clone());
            schemas.insert(i, schema);
        }
        self.id = next_id();
    }

    /// The schemas holding a relation named `name`, sorted.
    pub fn schemas_holding(&self, name: &str) -> &[String] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// How many names are known.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no relation is known.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn holds(&self, schema: &str, name: &str) -> bool {
        self.schemas_holding(name)
            .binary_search_by(|s| s.as_str().cmp(schema))
            .is_ok()
    }
}

impl<S: Into<String>, N: Into<String>> FromIterator<(S, N)> for Relations {
    fn from_iter<I: IntoIterator<Item = (S, N)>>(iter: I) -> Self {
        let mut r = Relations::new();
        for (s, n) in iter {
            r.add(s, n);
        }
        r
    }
}

/// The most resolutions of one statement's bare names that are decided;
/// a statement with more is denied (qualify its names).
pub(crate) const MAX_RESOLUTIONS: usize = 64;

/// The schemas a bare relation name may resolve to, first the most likely;
/// `Err` when they cannot be told at all. `creates`: the statement creates
/// something, which goes to the first schema of the path that exists
/// (whoever holds the name).
pub(crate) fn candidates(
    name: &str,
    path: &SearchPath,
    relations: Option<&Relations>,
    default_schema: &str,
    creates: bool,
) -> Result<Vec<String>, String> {
    let known = match path {
        SearchPath::Known(list) if !list.iter().any(|s| s == "$user") => Some(list),
        _ => None,
    };
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    match (known, relations) {
        (Some(list), _) if creates => {
            list.iter().for_each(|s| push(s));
            if list.is_empty() {
                push(default_schema);
            }
        }
        (Some(list), Some(rel)) => {
            let implicit_catalog = !list.iter().any(|s| s == "pg_catalog");
            let first = implicit_catalog
                .then_some("pg_catalog")
                .into_iter()
                .chain(list.iter().map(String::as_str))
                .find(|s| rel.holds(s, name));
            match first {
                Some(s) => push(s),
                // No schema of the path holds it: a new relation goes to the
                // first schema of the path that exists, which may be any.
                None if list.is_empty() => push(default_schema),
                None => list.iter().for_each(|s| push(s)),
            }
        }
        (Some(list), None) => {
            if !list.iter().any(|s| s == "pg_catalog") && name.starts_with("pg_") {
                push("pg_catalog");
            }
            list.iter().for_each(|s| push(s));
            if list.is_empty() {
                push(default_schema);
            }
        }
        (None, Some(rel)) => {
            let holders = rel.schemas_holding(name);
            if creates || holders.is_empty() {
                // Whichever schema comes first in the path.
                push(default_schema);
                holders.iter().for_each(|s| push(s));
                rel.schemas.iter().for_each(|s| push(s));
            } else {
                // Only a schema holding it resolves it (elsewhere it is an
                // error, which changes nothing).
                holders.iter().for_each(|s| push(s));
            }
        }
        (None, None) => {
            return Err(format!(
                "the session's search_path is unknown and so is which schemas hold \
                 a relation named {name:?}: name it with its schema"
            ));
        }
    }
    Ok(out)
}

/// Every combination of resolutions of `names` (each a map from bare name
/// to schema), at most [`MAX_RESOLUTIONS`]; `Err` with the reason beyond
/// that, or when a name cannot be resolved at all.
pub(crate) fn resolutions(
    names: &[String],
    path: &SearchPath,
    relations: Option<&Relations>,
    default_schema: &str,
    creates: bool,
) -> Result<Vec<BTreeMap<String, String>>, String> {
    let mut per_name = Vec::with_capacity(names.len());
    let mut total: usize = 1;
    for n in names {
        let c = candidates(n, path, relations, default_schema, creates)?;
        total = total.saturating_mul(c.len().max(1));
        if total > MAX_RESOLUTIONS {
            return Err(format!(
                "the statement names relations without a schema that the session's search_path \
                 could resolve in more than {MAX_RESOLUTIONS} ways: name them with their schema"
            ));
        }
        per_name.push((n, c));
    }
    let mut out = vec![BTreeMap::new()];
    for (n, c) in per_name {
        let mut next = Vec::with_capacity(out.len() * c.len());
        for m in &out {
            for s in &c {
                let mut m = m.clone();
                m.insert(n.clone(), s.clone());
                next.push(m);
            }
        }
        out = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn known(list: &[&str]) -> SearchPath {
        SearchPath::Known(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn first_schema_of_the_path_that_holds_the_name() {
        let rel: Relations = [
            ("shop", "orders"),
            ("public", "orders"),
            ("public", "users"),
            ("pg_catalog", "pg_class"),
            ("shop", "pg_class"),
        ]
        .into_iter()
        .collect();
        let p = known(&["shop", "public"]);
        let c = |n: &str, p: &SearchPath| candidates(n, p, Some(&rel), "public", false).unwrap();
        assert_eq!(c("orders", &p), ["shop"]);
        assert_eq!(c("users", &p), ["public"]);
        // pg_catalog first unless listed.
        assert_eq!(c("pg_class", &p), ["pg_catalog"]);
        assert_eq!(c("pg_class", &known(&["shop", "pg_catalog"])), ["shop"]);
        // Nobody holds it: any schema of the path could get a new one.
        assert_eq!(c("fresh", &p), ["shop", "public"]);
        assert_eq!(c("fresh", &known(&[])), ["public"]);
        // `$user` makes the path unknown: every holder.
        assert_eq!(
            c("orders", &known(&["$user", "public"])),
            ["public", "shop"]
        );
        assert_eq!(c("orders", &SearchPath::Unknown), ["public", "shop"]);
        // Nobody holds it and the path is unknown: any schema could be first.
        assert_eq!(
            c("fresh", &SearchPath::Unknown),
            ["public", "pg_catalog", "shop"]
        );
        // A creation goes to the first schema of the path, whoever holds the name.
        let create =
            |n: &str, p: &SearchPath| candidates(n, p, Some(&rel), "public", true).unwrap();
        assert_eq!(create("users", &p), ["shop", "public"]);
        assert_eq!(
            create("users", &SearchPath::Unknown),
            ["public", "pg_catalog", "shop"]
        );
    }

    #[test]
    fn without_relations() {
        let p = known(&["shop", "public"]);
        assert_eq!(
            candidates("orders", &p, None, "public", false).unwrap(),
            ["shop", "public"]
        );
        assert_eq!(
            candidates("pg_stat_activity", &p, None, "public", false).unwrap(),
            ["pg_catalog", "shop", "public"]
        );
        assert!(candidates("orders", &SearchPath::Unknown, None, "public", false).is_err());
    }

    #[test]
    fn combinations_are_bounded() {
        let p = known(&["a", "b", "c", "d"]);
        let names: Vec<String> = ["x", "y", "z"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            resolutions(&names, &p, None, "public", false)
                .unwrap()
                .len(),
            64
        );
        let four: Vec<String> = ["w", "x", "y", "z"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert!(resolutions(&four, &p, None, "public", false).is_err());
        assert_eq!(
            resolutions(&[], &p, None, "public", false).unwrap().len(),
            1
        );
    }

    #[test]
    fn relations_ids_change_with_content() {
        let mut r = Relations::new();
        let a = r.id();
        r.add("s", "t");
        assert_ne!(a, r.id());
        assert_eq!(r.clone().id(), r.id());
        assert_eq!(r.len(), 1);
    }
}
