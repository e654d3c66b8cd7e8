//! The `search_path` of one session, for the policy to resolve relation
//! names written without a schema as the backend will (issue 16).
//!
//! A session starts with the backend role's effective path, read over a
//! connection made as the sessions connect (`current_schemas(false)`, see
//! [`crate::catalog::read_search_path`]), together with which schemas hold
//! which relations. After that the gateway follows what its statements do
//! to the path, and where it cannot be sure, the path is **unknown** and
//! the policy takes the strictest decision over every possible resolution:
//!
//! - a plain `SET [SESSION] search_path = …` sent alone as a simple query
//!   and allowed: the new list (a `RESET`, `DISCARD ALL` or `= DEFAULT`:
//!   the role's path again);
//! - any other change (`SET LOCAL`, `set_config(…)`, a change inside a
//!   multi-statement query, one held for review, prepared, or run through
//!   the extended protocol, `SET ROLE`, a function call or code the
//!   analysis cannot see into): unknown;
//! - a transaction statement that can end a transaction or roll back to a
//!   savepoint (`COMMIT` of a failed transaction rolls back too; anything
//!   but `BEGIN`, `START`, `SAVEPOINT` and `RELEASE`) after a change:
//!   unknown, since a rolled-back transaction takes the change back;
//! - a statement that may change the schema: the relations are read again
//!   before the next statement.
//!
//! Each decision is stamped with the path's generation: an execution of a
//! prepared statement whose names were resolved with another path (or
//! other relations) than the session's now is refused, since PostgreSQL
//! plans it again with the new one.
//!
//! Known limits: another session's DDL between two reads of the relations,
//! the session's own temporary tables (`pg_temp`, searched first) and
//! triggers that change the path are not seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use portcullis_pg::BackendTarget;
use portcullis_policy::{CommandFacts, Relations, SearchPath, SearchPathChange, StatementKind};

/// The search_path state of one session.
#[derive(Debug, Default)]
pub(crate) struct SessionSearchPath {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// `None` until read at the session's first statement.
    path: Option<SearchPath>,
    /// The role's path, for `RESET` (`None` when it could not be read).
    default: Option<Vec<String>>,
    relations: Option<Arc<Relations>>,
    /// Read the relations again before the next statement.
    relations_stale: bool,
    /// Bumped whenever the path or the relations change.
    generation: u64,
    /// The path was changed since the last transaction statement.
    changed: bool,
}

/// The path and relations a statement is decided with.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) path: SearchPath,
    pub(crate) relations: Option<Arc<Relations>>,
    pub(crate) generation: u64,
}

/// What a decision says about a statement's search_path, kept with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The generation it was decided with.
    pub(crate) generation: u64,
    /// It names a relation without a schema.
    pub(crate) unqualified: bool,
    /// It changes (or may change) the path.
    pub(crate) changes: bool,
    /// It may change the schema (the relations are read again after it).
    pub(crate) changes_schema: bool,
}

/// How a decided statement reaches the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runs {
    /// Refused: nothing changes.
    Never,
    /// Now, alone in a simple query, and allowed.
    NowAlone,
    /// Some other way (several statements, held, prepared, extended
    /// protocol): it may run, and may fail and be rolled back.
    Maybe,
}

impl Runs {
    /// How a statement decided `effect` at a Parse (`parse`) or to run now
    /// (from a simple query when `simple`) reaches the backend.
    pub(crate) fn of(
        effect: &portcullis_policy::Effect,
        enforce: bool,
        parse: bool,
        simple: bool,
    ) -> Runs {
        use portcullis_policy::Effect;
        match effect {
            // Prepared: what it does is followed at each execution.
            _ if parse => Runs::Never,
            Effect::Deny if enforce => Runs::Never,
            Effect::Allow | Effect::Deny if simple => Runs::NowAlone,
            Effect::Allow | Effect::Deny => Runs::Maybe,
            // Held: it may run later, once approved.
            Effect::Review { .. } => Runs::Maybe,
        }
    }
}

impl SessionSearchPath {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The path and relations to decide the next statement with; read
    /// from the backend at the session's first statement, and the
    /// relations again after a change of schema. A failed read leaves the
    /// path unknown and the relations unknown (names without a schema are
    /// then refused), and is tried again at the next statement.
    pub(crate) async fn snapshot(&self, backend: &BackendTarget) -> Snapshot {
        let (need_path, need_relations) = {
            let s = self.lock();
            (s.path.is_none(), s.relations.is_none() || s.relations_stale)
        };
        if need_path || need_relations {
            let read = crate::catalog::read_search_path(backend).await;
            let mut s = self.lock();
            match read {
                Ok((path, relations)) => {
                    if s.path.is_none() {
                        s.path = Some(SearchPath::Known(path.clone()));
                        s.default = Some(path);
                    }
                    if s.relations.as_deref() != Some(&relations) {
                        s.relations = Some(shared(backend, relations));
                        s.generation += 1;
                    }
                    s.relations_stale = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the session's search_path is unknown");
                    if s.path.is_none() {
                        s.path = Some(SearchPath::Unknown);
                    }
                    if s.relations.take().is_some() {
                        s.generation += 1;
                    }
                }
            }
        }
        let s = self.lock();
        Snapshot {
            path: s.path.clone().unwrap_or(SearchPath::Unknown),
            relations: s.relations.clone(),
            generation: s.generation,
        }
    }

    /// The stamp of a decision taken with `snapshot` on `facts`.
    pub(crate) fn stamp(snapshot: &Snapshot, facts: &CommandFacts) -> Stamp {
        let statements = statements(facts);
        Stamp {
            generation: snapshot.generation,
            unqualified: statements.iter().any(|s| !s.unqualified.is_empty()),
            changes: statements.iter().any(|s| s.search_path.is_some()),
            changes_schema: false,
        }
    }

    /// The session's generation now.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Follows a decided statement: what it does to the path, to the
    /// relations, and what a transaction statement may take back.
    pub(crate) fn after(&self, sql: &str, facts: &CommandFacts, runs: Runs, changes_schema: bool) {
        if runs == Runs::Never {
            return;
        }
        let statements = statements(facts);
        let mut s = self.lock();
        if changes_schema {
            s.relations_stale = true;
        }
        let changes: Vec<&SearchPathChange> = statements
            .iter()
            .filter_map(|st| st.search_path.as_ref())
            .collect();
        if !changes.is_empty() {
            let next = match (runs, statements.len(), changes.as_slice()) {
                (Runs::NowAlone, 1, [SearchPathChange::Set(list)])
                    if !list.iter().any(|n| n == "$user") =>
                {
                    SearchPath::Known(list.clone())
                }
                (Runs::NowAlone, 1, [SearchPathChange::Reset]) => match &s.default {
                    Some(d) => SearchPath::Known(d.clone()),
                    None => SearchPath::Unknown,
                },
                _ => SearchPath::Unknown,
            };
            s.path = Some(next);
            s.changed = true;
            s.generation += 1;
            return;
        }
        let transaction = statements.iter().any(|st| {
            std::iter::once(&st.kind)
                .chain(&st.nested_kinds)
                .any(|k| matches!(k, StatementKind::Transaction | StatementKind::TwoPhase))
        });
        if transaction && s.changed && !(statements.len() == 1 && only_begins(sql)) {
            s.path = Some(SearchPath::Unknown);
            s.changed = false;
            s.generation += 1;
        }
    }

    /// Why an execution of a prepared statement stamped `stamp` is
    /// refused: its names were resolved with another path or other
    /// relations than the session has now (PostgreSQL plans it again with
    /// these).
    pub(crate) fn execution_refusal(&self, stamp: &Stamp) -> Option<String> {
        (stamp.unqualified && stamp.generation != self.generation()).then(|| {
            "the session's search_path or its tables changed since this statement was \
             prepared, so a table name without a schema in it may mean another table now: \
             prepare it again"
                .to_owned()
        })
    }

    /// An execution of a prepared statement stamped `stamp` goes to the
    /// backend: a change of the path it may make is not followed (unknown).
    pub(crate) fn executed(&self, stamp: &Stamp) {
        let mut s = self.lock();
        if stamp.changes_schema {
            s.relations_stale = true;
        }
        if stamp.changes {
            s.path = Some(SearchPath::Unknown);
            s.changed = true;
            s.generation += 1;
        }
    }
}

/// True when a (single) transaction statement can take nothing back: it
/// begins a transaction or sets or releases a savepoint. Read from its
/// first word; anything before it (a comment) and it may be anything.
fn only_begins(sql: &str) -> bool {
    let first: String = sql
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    ["begin", "start", "savepoint", "release"]
        .iter()
        .any(|w| first.eq_ignore_ascii_case(w))
}

/// The same relations for every session of a backend while they do not
/// change: the policy's decision cache is keyed by their identity, so
/// sessions share its decisions.
fn shared(backend: &BackendTarget, relations: Relations) -> Arc<Relations> {
    static SHARED: std::sync::OnceLock<Mutex<HashMap<String, Arc<Relations>>>> =
        std::sync::OnceLock::new();
    let key = format!(
        "{:?}\u{0}{}\u{0}{}",
        backend.addr, backend.database, backend.user
    );
    let mut map = SHARED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    match map.get(&key) {
        Some(known) if **known == relations => known.clone(),
        _ => {
            let new = Arc::new(relations);
            map.insert(key, new.clone());
            new
        }
    }
}

fn statements(facts: &CommandFacts) -> &[portcullis_policy::StatementFacts] {
    match facts {
        CommandFacts::Sql { statements } => statements,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The facts of a decision with a search path (which lists the names
    /// written without a schema).
    fn facts(sql: &str) -> CommandFacts {
        use portcullis_policy::{
            Policy, Principal, PrincipalKind, Request, Resource, ResourceKind,
        };
        let policy = Policy::from_toml_str("default = \"allow\"").unwrap();
        let who = Principal::new("a", PrincipalKind::Agent);
        let db = Resource::new("db", ResourceKind::Postgres);
        let path = SearchPath::Known(vec!["public".to_owned()]);
        policy
            .evaluate(&Request::sql(&who, &db, sql).with_search_path(&path))
            .facts
    }

    fn started(path: &[&str]) -> SessionSearchPath {
        let list: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        let sp = SessionSearchPath::default();
        {
            let mut s = sp.lock();
            s.path = Some(SearchPath::Known(list.clone()));
            s.default = Some(list);
            s.relations = Some(Arc::new(Relations::new()));
        }
        sp
    }

    fn path(sp: &SessionSearchPath) -> SearchPath {
        sp.lock().path.clone().unwrap()
    }

    fn known(list: &[&str]) -> SearchPath {
        SearchPath::Known(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn a_plain_set_alone_is_followed_and_anything_else_is_unknown() {
        let sp = started(&["shop", "public"]);
        sp.after(
            "SET search_path = public",
            &facts("SET search_path = public"),
            Runs::NowAlone,
            false,
        );
        assert_eq!(path(&sp), known(&["public"]));
        sp.after(
            "RESET search_path",
            &facts("RESET search_path"),
            Runs::NowAlone,
            false,
        );
        assert_eq!(path(&sp), known(&["shop", "public"]));
        // Refused: nothing changes.
        sp.after(
            "SET search_path = x",
            &facts("SET search_path = x"),
            Runs::Never,
            false,
        );
        assert_eq!(path(&sp), known(&["shop", "public"]));
        for (sql, runs) in [
            ("SET search_path = public", Runs::Maybe),
            ("SET search_path = public; SELECT 1", Runs::NowAlone),
            ("SELECT 1; SET search_path = public", Runs::NowAlone),
            (
                "SELECT set_config('search_path', 'public', false)",
                Runs::NowAlone,
            ),
            ("SET LOCAL search_path = public", Runs::NowAlone),
            ("SET search_path = \"$user\", public", Runs::NowAlone),
            ("SET ROLE other", Runs::NowAlone),
            ("SELECT my_function()", Runs::NowAlone),
        ] {
            let sp = started(&["shop", "public"]);
            let before = sp.generation();
            sp.after(sql, &facts(sql), runs, false);
            assert_eq!(path(&sp), SearchPath::Unknown, "{sql}");
            assert!(sp.generation() > before, "{sql}");
        }
    }

    #[test]
    fn a_transaction_statement_after_a_change_makes_it_unknown() {
        let sp = started(&["shop", "public"]);
        // No change yet: a transaction statement changes nothing.
        sp.after("ROLLBACK", &facts("ROLLBACK"), Runs::NowAlone, false);
        assert_eq!(path(&sp), known(&["shop", "public"]));
        sp.after(
            "SET search_path = public",
            &facts("SET search_path = public"),
            Runs::NowAlone,
            false,
        );
        sp.after("SELECT 1", &facts("SELECT 1"), Runs::NowAlone, false);
        // Beginning a transaction or a savepoint takes nothing back.
        for sql in ["BEGIN", "start transaction", "SAVEPOINT a", "RELEASE a"] {
            sp.after(sql, &facts(sql), Runs::NowAlone, false);
            assert_eq!(path(&sp), known(&["public"]), "{sql}");
        }
        sp.after("/* */ BEGIN", &facts("/* */ BEGIN"), Runs::NowAlone, false);
        assert_eq!(path(&sp), SearchPath::Unknown);
        sp.after(
            "SET search_path = public",
            &facts("SET search_path = public"),
            Runs::NowAlone,
            false,
        );
        sp.after("COMMIT", &facts("COMMIT"), Runs::NowAlone, false);
        assert_eq!(path(&sp), SearchPath::Unknown);
        sp.after(
            "SET search_path = public",
            &facts("SET search_path = public"),
            Runs::NowAlone,
            false,
        );
        sp.after(
            "ROLLBACK TO a",
            &facts("ROLLBACK TO a"),
            Runs::NowAlone,
            false,
        );
        assert_eq!(path(&sp), SearchPath::Unknown);
        sp.after(
            "SET search_path = public",
            &facts("SET search_path = public"),
            Runs::NowAlone,
            false,
        );
        assert_eq!(path(&sp), known(&["public"]));
        sp.after("ROLLBACK", &facts("ROLLBACK"), Runs::NowAlone, false);
        assert_eq!(path(&sp), SearchPath::Unknown);
        // A later plain SET is followed again.
        sp.after(
            "SET search_path = shop",
            &facts("SET search_path = shop"),
            Runs::NowAlone,
            false,
        );
        assert_eq!(path(&sp), known(&["shop"]));
    }

    #[test]
    fn sessions_of_a_backend_share_equal_relations() {
        let backend = BackendTarget {
            addr: portcullis_pg::BackendAddr::Tcp {
                host: "sharing.test".to_owned(),
                port: 1,
            },
            database: "db".to_owned(),
            user: "u".to_owned(),
            password: String::new(),
            tls: portcullis_pg::BackendTls::Disable,
            allow: Default::default(),
        };
        let rel = || -> Relations { [("shop", "orders")].into_iter().collect() };
        let a = shared(&backend, rel());
        let b = shared(&backend, rel());
        assert!(Arc::ptr_eq(&a, &b));
        let c = shared(&backend, [("shop", "other")].into_iter().collect());
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(Arc::ptr_eq(
            &c,
            &shared(&backend, [("shop", "other")].into_iter().collect())
        ));
    }

    #[test]
    fn stamps_and_schema_changes() {
        let sp = started(&["public"]);
        let snap = Snapshot {
            path: path(&sp),
            relations: None,
            generation: sp.generation(),
        };
        let st = SessionSearchPath::stamp(&snap, &facts("DELETE FROM orders"));
        assert!(st.unqualified && !st.changes);
        let st = SessionSearchPath::stamp(&snap, &facts("SET search_path = a"));
        assert!(!st.unqualified && st.changes);
        sp.after(
            "CREATE TABLE t (id int)",
            &facts("CREATE TABLE t (id int)"),
            Runs::NowAlone,
            true,
        );
        assert!(sp.lock().relations_stale);
        // An execution of a prepared SET: unknown; and one of a statement
        // resolved with the old path is refused.
        let prepared = SessionSearchPath::stamp(&snap, &facts("DELETE FROM orders"));
        assert!(sp.execution_refusal(&prepared).is_none());
        sp.executed(&SessionSearchPath::stamp(
            &snap,
            &facts("SET search_path = a"),
        ));
        assert_eq!(path(&sp), SearchPath::Unknown);
        assert_ne!(sp.generation(), snap.generation);
        assert!(sp.execution_refusal(&prepared).is_some());
        let qualified = SessionSearchPath::stamp(&snap, &facts("DELETE FROM public.orders"));
        assert!(sp.execution_refusal(&qualified).is_none());
    }
}
