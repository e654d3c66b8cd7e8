//! Query budgets per principal: rows returned per statement, statements per
//! minute, and a statement timeout pinned at the backend.
//!
//! Configured with `[[budget]]` tables (see docs/configuration.md); a
//! principal gets every budget whose `principals` names it (or `"*"`) or
//! whose `groups` holds one of its groups, and where several set the same
//! limit the strictest holds.
//!
//! - `max_rows`: the protocol cuts a result after that many rows (the client
//!   never gets the next one), cancels the statement at the backend and
//!   answers SQLSTATE 53400 (see `portcullis_pg::RowLimit`).
//! - `statements_per_minute`: decided here before anything is forwarded, per
//!   principal across all of its sessions, over a sliding minute; a refused
//!   statement never reaches the backend (SQLSTATE 53400).
//! - `statement_timeout`: sent as a startup parameter of the backend
//!   session, which outranks the role's and database's defaults; a client
//!   cannot send it itself, and statements that could change it (`SET` or
//!   `RESET statement_timeout`, `set_config`, `DO`) are refused.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portcullis_policy as policy;
use serde::Deserialize;
use toml::Spanned;

/// Statements per minute are capped so one principal's window stays small.
const MAX_PER_MINUTE: u32 = 100_000;

/// One `[[budget]]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetSpec {
    /// Principal ids (`agent:claude`), or `"*"` for everyone.
    #[serde(default)]
    principals: Vec<String>,
    /// Groups: a principal in any of them gets this budget.
    #[serde(default)]
    groups: Vec<String>,
    max_rows: Option<Spanned<u64>>,
    statements_per_minute: Option<Spanned<u32>>,
    /// `"30s"`, `"500ms"`, `"2min"`.
    statement_timeout: Option<Spanned<String>>,
}

/// The budget of one principal: each limit is the strictest of the tables
/// that apply to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) max_rows: Option<u64>,
    pub(crate) statements_per_minute: Option<u32>,
    pub(crate) statement_timeout: Option<Duration>,
}

impl Budget {
    fn tighten(&mut self, other: &Budget) {
        fn min<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        self.max_rows = min(self.max_rows, other.max_rows);
        self.statements_per_minute = min(self.statements_per_minute, other.statements_per_minute);
        self.statement_timeout = min(self.statement_timeout, other.statement_timeout);
    }

    /// The backend settings that carry this budget.
    pub(crate) fn session_settings(&self) -> Vec<(String, String)> {
        self.statement_timeout
            .map(|t| {
                (
                    "statement_timeout".to_owned(),
                    t.as_millis().max(1).to_string(),
                )
            })
            .into_iter()
            .collect()
    }

    /// The message a client gets when a result is cut at `max_rows`.
    pub(crate) fn rows_message(max_rows: u64) -> String {
        format!(
            "row budget exceeded: this principal may receive at most {max_rows} rows per \
             statement, so the result was cut and the statement cancelled; add LIMIT {max_rows} \
             (or narrow the WHERE clause, or aggregate) and run it again"
        )
    }

    /// Why a statement is refused because it could change the pinned
    /// statement timeout, if it could.
    pub(crate) fn timeout_refusal(&self, facts: &StatementsFacts) -> Option<String> {
        let t = self.statement_timeout?;
        facts.touches_timeout.then(|| {
            format!(
                "the statement timeout of this principal is pinned by the gateway at {} ms; a \
                 statement that could change it (SET or RESET statement_timeout, set_config, \
                 DO) is refused: run the statement without it",
                t.as_millis()
            )
        })
    }
}

/// What the budgets need to know of a statement's facts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StatementsFacts {
    /// Statements in the query string (at least 1).
    pub(crate) count: u32,
    /// Every statement is provably read-only.
    pub(crate) read_only: bool,
    /// A statement could change `statement_timeout`.
    pub(crate) touches_timeout: bool,
}

impl StatementsFacts {
    pub(crate) fn of(facts: &policy::CommandFacts) -> StatementsFacts {
        let policy::CommandFacts::Sql { statements } = facts else {
            return StatementsFacts {
                count: 1,
                read_only: false,
                touches_timeout: true,
            };
        };
        let touches = |s: &policy::StatementFacts| {
            let unknown_set = s.unparsed
                && matches!(
                    s.kind,
                    policy::StatementKind::Set
                        | policy::StatementKind::Reset
                        | policy::StatementKind::Other
                );
            unknown_set
                || s.parameters.iter().any(|p| p == "statement_timeout")
                || s.functions
                    .iter()
                    .any(|f| f.rsplit('.').next() == Some("set_config"))
                || std::iter::once(&s.kind)
                    .chain(&s.nested_kinds)
                    .any(|k| *k == policy::StatementKind::Do)
        };
        StatementsFacts {
            count: u32::try_from(statements.len()).unwrap_or(u32::MAX).max(1),
            read_only: !statements.is_empty() && statements.iter().all(|s| s.read_only),
            touches_timeout: statements.iter().any(touches),
        }
    }
}

/// A statement refused by the statements-per-minute budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateExceeded {
    pub(crate) limit: u32,
    /// Statements already run in the last minute.
    pub(crate) used: u64,
    /// When the next one would be allowed.
    pub(crate) retry_after: Duration,
}

impl RateExceeded {
    pub(crate) fn message(&self) -> String {
        format!(
            "statement budget exceeded: this principal may run at most {} statements per \
             minute and has run {} in the last minute; wait {} s before the next one, or \
             combine statements",
            self.limit,
            self.used,
            self.retry_after.as_secs().max(1)
        )
    }
}

struct Entry {
    principals: Vec<String>,
    groups: Vec<String>,
    budget: Budget,
}

/// Every configured budget, and each principal's statements of the last
/// minute.
pub(crate) struct Budgets {
    entries: Vec<Entry>,
    /// Start times of the statements of the last minute, per principal id.
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Budgets {
    /// No budget for anyone.
    #[cfg(test)]
    fn none() -> Budgets {
        Budgets {
            entries: Vec::new(),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the configured tables; an error carries the span it is about.
    pub(crate) fn from_specs(
        specs: &[Spanned<BudgetSpec>],
    ) -> Result<Budgets, (Range<usize>, String)> {
        let mut entries = Vec::new();
        for spec in specs {
            let b = spec.get_ref();
            if b.principals.is_empty() && b.groups.is_empty() {
                return Err((
                    spec.span(),
                    "a budget names the principals or groups it applies to (principals = \
                     [\"*\"] for everyone)"
                        .to_owned(),
                ));
            }
            if let Some(n) = &b.max_rows
                && *n.get_ref() == 0
            {
                return Err((n.span(), "max_rows is at least 1".to_owned()));
            }
            if let Some(n) = &b.statements_per_minute
                && !(1..=MAX_PER_MINUTE).contains(n.get_ref())
            {
                return Err((
                    n.span(),
                    format!("statements_per_minute is between 1 and {MAX_PER_MINUTE}"),
                ));
            }
            let statement_timeout = match &b.statement_timeout {
                None => None,
                Some(t) => Some(parse_duration(t.get_ref()).ok_or_else(|| {
                    (
                        t.span(),
                        format!(
                            "{:?} is not a timeout like \"30s\", \"500ms\" or \"2min\" (at \
                             least 1 ms, at most 24 h)",
                            t.get_ref()
                        ),
                    )
                })?),
            };
            if b.max_rows.is_none()
                && b.statements_per_minute.is_none()
                && statement_timeout.is_none()
            {
                return Err((
                    spec.span(),
                    "a budget sets max_rows, statements_per_minute or statement_timeout".to_owned(),
                ));
            }
            entries.push(Entry {
                principals: b.principals.clone(),
                groups: b.groups.clone(),
                budget: Budget {
                    max_rows: b.max_rows.as_ref().map(|n| *n.get_ref()),
                    statements_per_minute: b.statements_per_minute.as_ref().map(|n| *n.get_ref()),
                    statement_timeout,
                },
            });
        }
        Ok(Budgets {
            entries,
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// The budget of a principal: the strictest of every table naming it or
    /// one of its groups.
    pub(crate) fn for_principal(&self, id: &str, groups: &[String]) -> Budget {
        let mut out = Budget::default();
        for e in &self.entries {
            let named = e.principals.iter().any(|p| p == "*" || p == id)
                || e.groups.iter().any(|g| groups.contains(g));
            if named {
                out.tighten(&e.budget);
            }
        }
        out
    }

    /// Takes `n` statements from a principal's minute, or says why not
    /// (then nothing is taken).
    pub(crate) fn take(
        &self,
        id: &str,
        per_minute: u32,
        n: u32,
        now: Instant,
    ) -> Result<(), RateExceeded> {
        let minute = Duration::from_secs(60);
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget principals idle for a minute, so the map stays small.
        if windows.len() > 1024 {
            windows.retain(|_, w| w.back().is_some_and(|t| now.duration_since(*t) < minute));
        }
        let window = windows.entry(id.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= minute)
        {
            window.pop_front();
        }
        let used = window.len();
        let limit = usize::try_from(per_minute).unwrap_or(usize::MAX);
        let wanted = usize::try_from(n).unwrap_or(usize::MAX);
        if used.saturating_add(wanted) > limit {
            // The next slot frees when enough of the oldest leave the window.
            let frees = used.saturating_add(wanted).saturating_sub(limit);
            let retry_after = window
                .get(frees.saturating_sub(1))
                .map_or(minute, |t| minute.saturating_sub(now.duration_since(*t)));
            return Err(RateExceeded {
                limit: per_minute,
                used: used as u64,
                retry_after,
            });
        }
        window.extend(std::iter::repeat_n(now, wanted));
        Ok(())
    }
}

/// `"30s"`, `"500ms"`, `"2min"`, `"1h"`, between 1 ms and 24 h.
fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "min" | "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (Duration::from_millis(1)..=Duration::from_secs(86_400))
        .contains(&d)
        .then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(text: &str) -> Vec<Spanned<BudgetSpec>> {
        #[derive(Deserialize)]
        struct Doc {
            budget: Vec<Spanned<BudgetSpec>>,
        }
        toml::from_str::<Doc>(text).unwrap().budget
    }

    #[test]
    fn the_strictest_applicable_limit_holds() {
        let b = Budgets::from_specs(&specs(
            r#"
[[budget]]
principals = ["*"]
max_rows = 1000
statement_timeout = "30s"
[[budget]]
groups = ["agents"]
max_rows = 50
statements_per_minute = 10
[[budget]]
principals = ["agent:other"]
max_rows = 1
"#,
        ))
        .unwrap();
        let agent = b.for_principal("agent:claude", &["agents".to_owned()]);
        assert_eq!(agent.max_rows, Some(50));
        assert_eq!(agent.statements_per_minute, Some(10));
        assert_eq!(agent.statement_timeout, Some(Duration::from_secs(30)));
        let human = b.for_principal("human:ana", &[]);
        assert_eq!(human.max_rows, Some(1000));
        assert_eq!(human.statements_per_minute, None);
        assert_eq!(
            human.session_settings(),
            vec![("statement_timeout".to_owned(), "30000".to_owned())]
        );
    }

    #[test]
    fn bad_tables_are_refused_with_their_span() {
        for (text, needle) in [
            ("[[budget]]\nmax_rows = 5\n", "names the principals"),
            (
                "[[budget]]\nprincipals = [\"*\"]\nmax_rows = 0\n",
                "at least 1",
            ),
            (
                "[[budget]]\nprincipals = [\"*\"]\nstatement_timeout = \"soon\"\n",
                "not a timeout",
            ),
            (
                "[[budget]]\nprincipals = [\"*\"]\nstatements_per_minute = 0\n",
                "between 1",
            ),
            ("[[budget]]\nprincipals = [\"*\"]\n", "sets max_rows"),
        ] {
            let (span, message) = Budgets::from_specs(&specs(text)).unwrap_err();
            assert!(message.contains(needle), "{text}: {message}");
            assert!(span.start < text.len(), "{text}");
        }
    }

    #[test]
    fn config_file_errors_carry_line_and_column() {
        let text = "[[budget]]\nprincipals = [\"*\"]\nmax_rows = 0\n";
        let e = crate::config::Config::parse(
            text,
            std::path::Path::new("gw.toml"),
            std::path::Path::new("/etc/portcullis"),
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (3, 12), "{e}");
        assert!(e.to_string().starts_with("gw.toml:3:12: max_rows"), "{e}");
        let text = "[[budget]]\ngroups = [\"agents\"]\nstatement_timeout = \"forever\"\n";
        let e = crate::config::Config::parse(
            text,
            std::path::Path::new("gw.toml"),
            std::path::Path::new("/etc/portcullis"),
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (3, 21), "{e}");
    }

    #[test]
    fn a_sliding_minute_per_principal() {
        let b = Budgets::none();
        let t0 = Instant::now();
        assert!(b.take("a", 3, 2, t0).is_ok());
        assert!(b.take("a", 3, 1, t0 + Duration::from_secs(10)).is_ok());
        let e = b.take("a", 3, 1, t0 + Duration::from_secs(20)).unwrap_err();
        assert_eq!((e.limit, e.used), (3, 3));
        assert_eq!(e.retry_after, Duration::from_secs(40));
        assert!(e.message().contains("at most 3 statements per minute"));
        // Another principal has its own minute.
        assert!(b.take("b", 3, 3, t0 + Duration::from_secs(20)).is_ok());
        // A refused statement took nothing; the first two leave at 60 s.
        assert!(b.take("a", 3, 2, t0 + Duration::from_secs(60)).is_ok());
        assert!(b.take("a", 3, 1, t0 + Duration::from_secs(61)).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2min"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("25h"), None);
    }
}
