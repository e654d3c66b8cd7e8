//! Explaining one decision, and replaying recorded statements against a
//! candidate policy: what `portcullis policy explain` and
//! `portcullis policy test --trail` print.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::facts::{CommandFacts, StatementFacts};
use crate::policy::{Decision, Policy};
use crate::request::{Principal, Request, Resource};

/// A rule that matched a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    /// The rule's id.
    pub id: String,
    /// Its effect (`allow`, `deny`, `review`).
    pub effect: &'static str,
}

/// How one statement was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementExplanation {
    /// The statement's facts.
    pub facts: StatementFacts,
    /// Every rule that matched it, in file order.
    pub matched: Vec<RuleMatch>,
    /// Its effect (`allow`, `deny`, `review`).
    pub effect: &'static str,
    /// The rule that decided it, if a rule did.
    pub rule_id: Option<String>,
    /// Why.
    pub reason: String,
}

/// A decision with, per statement, its facts and every rule that matched.
/// `Display` prints it for people; it serializes to JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The decision on the whole command (what [`Policy::evaluate`] returns).
    pub decision: Decision,
    /// One entry per SQL statement, in order (empty for Kubernetes requests).
    pub statements: Vec<StatementExplanation>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.statements.iter().enumerate() {
            let st = &s.facts;
            writeln!(f, "statement {}: {}", i + 1, st.kind.as_str())?;
            if !st.nested_kinds.is_empty() {
                let k: Vec<&str> = st.nested_kinds.iter().map(|k| k.as_str()).collect();
                writeln!(f, "  nested kinds: {}", k.join(", "))?;
            }
            writeln!(f, "  read_only: {}", st.read_only)?;
            if st.unparsed {
                writeln!(
                    f,
                    "  unparsed: {}",
                    st.parse_error.as_deref().unwrap_or("yes")
                )?;
            }
            for (label, v) in [
                ("reads", &st.reads),
                ("writes", &st.writes),
                ("functions", &st.functions),
                ("parameters", &st.parameters),
            ] {
                if !v.is_empty() {
                    writeln!(f, "  {label}: {}", v.join(", "))?;
                }
            }
            if !st.risks.is_empty() {
                let r: Vec<&str> = st.risks.iter().map(|r| r.as_str()).collect();
                writeln!(f, "  risks: {}", r.join(", "))?;
            }
            if s.matched.is_empty() {
                writeln!(f, "  matching rules: none")?;
            } else {
                let m: Vec<String> = s
                    .matched
                    .iter()
                    .map(|m| format!("{} ({})", m.id, m.effect))
                    .collect();
                writeln!(f, "  matching rules: {}", m.join(", "))?;
            }
            writeln!(
                f,
                "  decision: {} by {}: {}",
                s.effect,
                s.rule_id.as_deref().unwrap_or("(default)"),
                s.reason
            )?;
        }
        write!(
            f,
            "decision: {} by {}: {}",
            self.decision.effect.as_str(),
            self.decision.rule_id.as_deref().unwrap_or("(default)"),
            self.decision.reason
        )
    }
}

/// One recorded statement to replay (from an audit trail).
#[derive(Debug, Clone)]
pub struct ReplayEntry {
    /// Who ran it.
    pub principal: Principal,
    /// Where.
    pub resource: Resource,
    /// The SQL text.
    pub sql: String,
    /// The effect recorded at the time (`allow`, `deny`, `review`), if the
    /// trail has it; used as "before" when no baseline policy is given.
    pub recorded_effect: Option<String>,
}

/// A statement whose decision changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayChange {
    /// Its position in the input, from 0.
    pub index: usize,
    /// The principal's id.
    pub principal: String,
    /// The resource's name.
    pub resource: String,
    /// The SQL text.
    pub sql: String,
    /// The effect before (`allow`, `deny`, `review`, or `unknown`).
    pub before: String,
    /// The effect under the candidate policy.
    pub after: &'static str,
    /// The candidate rule that decided (`None`: its default or `on_unparsed`).
    pub rule_id: Option<String>,
    /// The candidate's reason.
    pub reason: String,
}

/// What replaying recorded statements against a candidate policy found.
/// `Display` prints the summary, counts and the first changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Statements replayed.
    pub total: usize,
    /// Statements whose effect changes.
    pub changed: usize,
    /// Counts by `before -> after` effect (`allow -> deny`, …), changed or not.
    pub transitions: BTreeMap<String, usize>,
    /// How many statements each candidate rule decided (`(default)` for the
    /// policy's default and `on_unparsed`).
    pub per_rule: BTreeMap<String, usize>,
    /// The first [`ReplayReport::MAX_CHANGES`] changes, in input order.
    pub changes: Vec<ReplayChange>,
}

impl ReplayReport {
    /// How many changes the report keeps in full.
    pub const MAX_CHANGES: usize = 1000;
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replayed {} statements: {} would be decided differently",
            self.total, self.changed
        )?;
        for (t, n) in &self.transitions {
            writeln!(f, "  {t}: {n}")?;
        }
        writeln!(f, "decided by rule (candidate policy):")?;
        for (r, n) in &self.per_rule {
            writeln!(f, "  {r}: {n}")?;
        }
        if !self.changes.is_empty() {
            writeln!(f, "changes:")?;
        }
        for c in &self.changes {
            writeln!(
                f,
                "  #{} {}@{}: {} -> {} by {} ({}): {}",
                c.index,
                c.principal,
                c.resource,
                c.before,
                c.after,
                c.rule_id.as_deref().unwrap_or("(default)"),
                c.reason,
                c.sql
            )?;
        }
        Ok(())
    }
}

/// Replays recorded statements against `candidate`, comparing with
/// `baseline`'s decisions (or, without a baseline, with each entry's
/// recorded effect): what a policy change would change, before it is
/// enforced. Bypasses the decision caches.
///
/// # Example
/// ```
/// use portcullis_policy::{replay, Policy, Principal, PrincipalKind, ReplayEntry, Resource, ResourceKind};
/// let old = Policy::from_toml_str("default = \"allow\"")?;
/// let new = Policy::from_toml_str(r#"
///     [[rule]]
///     id = "read-only"
///     effect = "allow"
///     when.sql.read_only = true
/// "#)?;
/// let who = Principal::new("agent-7", PrincipalKind::Agent);
/// let db = Resource::new("orders", ResourceKind::Postgres);
/// let trail = ["SELECT 1", "DELETE FROM orders"].map(|sql| ReplayEntry {
///     principal: who.clone(),
///     resource: db.clone(),
///     sql: sql.into(),
///     recorded_effect: None,
/// });
/// let report = replay(&new, Some(&old), trail);
/// assert_eq!((report.total, report.changed), (2, 1));
/// assert_eq!(report.transitions["allow -> deny"], 1);
/// assert_eq!(report.per_rule["read-only"], 1);
/// # Ok::<(), portcullis_policy::PolicyError>(())
/// ```
pub fn replay<I>(candidate: &Policy, baseline: Option<&Policy>, entries: I) -> ReplayReport
where
    I: IntoIterator<Item = ReplayEntry>,
{
    let mut report = ReplayReport::default();
    for (index, e) in entries.into_iter().enumerate() {
        report.total += 1;
        let after = candidate.decide_uncached(&e.principal, &e.resource, &e.sql);
        let before = match baseline {
            Some(b) => b
                .decide_uncached(&e.principal, &e.resource, &e.sql)
                .effect
                .as_str()
                .to_owned(),
            None => e
                .recorded_effect
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
        };
        let after_name = after.effect.as_str();
        *report
            .transitions
            .entry(format!("{before} -> {after_name}"))
            .or_default() += 1;
        *report
            .per_rule
            .entry(
                after
                    .rule_id
                    .clone()
                    .unwrap_or_else(|| "(default)".to_owned()),
            )
            .or_default() += 1;
        if before != after_name {
            report.changed += 1;
            if report.changes.len() < ReplayReport::MAX_CHANGES {
                report.changes.push(ReplayChange {
                    index,
                    principal: e.principal.id.clone(),
                    resource: e.resource.name.clone(),
                    sql: e.sql.clone(),
                    before,
                    after: after_name,
                    rule_id: after.rule_id.clone(),
                    reason: after.reason.clone(),
                });
            }
        }
    }
    report
}

impl Policy {
    /// The decision on `sql` analysed afresh (no cache).
    pub(crate) fn decide_uncached(
        &self,
        principal: &Principal,
        resource: &Resource,
        sql: &str,
    ) -> Decision {
        self.explain(&Request::sql(principal, resource, sql))
            .decision
    }
}

pub(crate) fn sql_statements(facts: &CommandFacts) -> &[StatementFacts] {
    match facts {
        CommandFacts::Sql { statements } => statements,
        _ => &[],
    }
}
