//! The compiled policy and its evaluation.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;
use serde::ser::SerializeMap;
use toml::Spanned;

use crate::cache::DecisionCache;
use crate::error::PolicyError;
use crate::explain::{Explanation, RuleMatch, StatementExplanation};
use crate::facts::{
    ColumnUse, CommandFacts, K8sFacts, K8sRisk, Risk, StatementFacts, StatementKind,
};
use crate::k8s::{DEFAULT_MAX_BODY, analyze_k8s_limited};
use crate::model::{DurationSpec, Patterns, PolicyDoc, ReviewSpec, RuleSpec};
use crate::request::{Command, Principal, Request, Resource};
use crate::search_path::resolutions;
use crate::sql::{Analyzer, Resolver, SqlOptions};

/// How a held command is approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewMode {
    /// The client's command waits until it is approved, denied or times out.
    Hold,
    /// The command is refused now with a ticket id; once approved, the client
    /// runs it again. This crate only reports the mode: carrying it out is the
    /// enforcer's job (the `portcullis` gateway runs an approved statement
    /// once, for the same principal, text and bound values).
    Ticket,
}

impl ReviewMode {
    /// `hold` or `ticket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Ticket => "ticket",
        }
    }
}

/// What to do with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Forward it.
    Allow,
    /// Refuse it.
    Deny,
    /// Hold it for people's approval.
    Review {
        /// Groups whose members may approve (empty: any approver the gateway accepts).
        groups: Vec<String>,
        /// How many distinct approvals release it.
        min_approvals: u32,
        /// How long to wait before it is denied.
        timeout: Duration,
        /// Hold the connection, or answer with a ticket.
        mode: ReviewMode,
    },
}

impl Effect {
    /// `allow`, `deny` or `review`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Review { .. } => "review",
        }
    }

    /// Strictness: deny > review > allow.
    fn rank(&self) -> u8 {
        match self {
            Self::Allow => 0,
            Self::Review { .. } => 1,
            Self::Deny => 2,
        }
    }

    /// True for [`Effect::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow)
    }

    /// True for [`Effect::Deny`].
    pub fn is_deny(&self) -> bool {
        matches!(self, Self::Deny)
    }
}

impl Serialize for Effect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Review {
                groups,
                min_approvals,
                timeout,
                mode,
            } => {
                let mut m = s.serialize_map(Some(5))?;
                m.serialize_entry("type", "review")?;
                m.serialize_entry("groups", groups)?;
                m.serialize_entry("min_approvals", min_approvals)?;
                m.serialize_entry("timeout_secs", &timeout.as_secs())?;
                m.serialize_entry("mode", mode)?;
                m.end()
            }
            other => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("type", other.as_str())?;
                m.end()
            }
        }
    }
}

/// A field rule carried to the masker: which field (a column glob such as
/// `public.users.email`) and what to do with it. The one action is
/// `redact`: the whole value is replaced (the gateway writes a marker naming
/// the rule); any other action is rejected when the policy loads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FieldRule {
    /// The field.
    pub field: String,
    /// The action.
    pub action: String,
}

/// The masking that applies to the response of a command: the union of the
/// `mask` tables of every rule that matched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MaskDirectives {
    /// Field rules, sorted, without duplicates.
    pub fields: Vec<FieldRule>,
}

impl MaskDirectives {
    /// True when there is nothing to mask beyond the gateway's defaults.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn merge(&mut self, other: &MaskDirectives) {
        if other.is_empty() {
            return;
        }
        for f in &other.fields {
            if let Err(i) = self.fields.binary_search(f) {
                self.fields.insert(i, f.clone());
            }
        }
    }
}

/// The policy's answer, with its explanation and the facts it was based on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What to do.
    pub effect: Effect,
    /// The rule that decided, or `None` when the policy's `default`, its
    /// `on_unparsed`, or an internal error did.
    pub rule_id: Option<String>,
    /// Why, in words fit for the client (a deny rule's `reason`).
    pub reason: String,
    /// The analysed command.
    pub facts: CommandFacts,
    /// The masking that applies to the response.
    pub mask: MaskDirectives,
}

impl Decision {
    pub(crate) fn refused(reason: String, facts: CommandFacts) -> Self {
        Self {
            effect: Effect::Deny,
            rule_id: None,
            reason,
            facts,
            mask: MaskDirectives::default(),
        }
    }
}

/// A compiled condition on a set of strings.
#[derive(Debug)]
struct Cond {
    any: Option<GlobSet>,
    all: Option<GlobSet>,
    none: Option<GlobSet>,
}

impl Cond {
    fn matches<S: AsRef<str>>(&self, values: &[S]) -> bool {
        if let Some(any) = &self.any
            && !values.iter().any(|v| any.is_match(v.as_ref()))
        {
            return false;
        }
        if let Some(all) = &self.all
            && !values.iter().all(|v| all.is_match(v.as_ref()))
        {
            return false;
        }
        if let Some(none) = &self.none
            && values.iter().any(|v| none.is_match(v.as_ref()))
        {
            return false;
        }
        true
    }

    fn matches_one(&self, value: &str) -> bool {
        self.matches(&[value])
    }

    fn matches_opt(&self, value: Option<&str>) -> bool {
        match value {
            Some(v) => self.matches(&[v]),
            None => self.matches::<&str>(&[]),
        }
    }
}

fn ok_cond(c: &Option<Cond>, f: impl FnOnce(&Cond) -> bool) -> bool {
    c.as_ref().is_none_or(f)
}

#[derive(Debug, Default)]
struct SqlCond {
    kind: Option<Cond>,
    reads: Option<Cond>,
    writes: Option<Cond>,
    objects: Option<Cond>,
    functions: Option<Cond>,
    columns: Option<Cond>,
    predicate_columns: Option<Cond>,
    computed_columns: Option<Cond>,
    risk: Option<Cond>,
    parameters: Option<Cond>,
    unparsed: Option<bool>,
    read_only: Option<bool>,
}

#[derive(Debug, Default)]
struct K8sCond {
    verb: Option<Cond>,
    group: Option<Cond>,
    resource: Option<Cond>,
    subresource: Option<Cond>,
    namespace: Option<Cond>,
    name: Option<Cond>,
    command: Option<Cond>,
    risk: Option<Cond>,
    impersonate_user: Option<Cond>,
    unparsed: Option<bool>,
}

#[derive(Debug, Default)]
struct When {
    principal_id: Option<Cond>,
    principal_kind: Option<Cond>,
    principal_groups: Option<Cond>,
    resource_name: Option<Cond>,
    resource_kind: Option<Cond>,
    labels: Vec<(String, Cond)>,
    sql: Option<SqlCond>,
    k8s: Option<K8sCond>,
}

#[derive(Debug)]
struct Rule {
    id: String,
    description: Option<String>,
    effect: Effect,
    reason: Option<String>,
    mask: MaskDirectives,
    when: When,
}

impl Rule {
    fn reason(&self) -> String {
        if let Some(r) = &self.reason {
            return r.clone();
        }
        match (&self.effect, &self.description) {
            (Effect::Allow, Some(d)) => d.clone(),
            (Effect::Allow, None) => format!("allowed by rule {}", self.id),
            (Effect::Deny, _) => format!("denied by rule {}", self.id),
            (Effect::Review { .. }, _) => format!("held for review by rule {}", self.id),
        }
    }
}

/// A statement's facts as strings, for matching.
struct SqlView<'a> {
    f: &'a StatementFacts,
    kinds: Vec<&'static str>,
    objects: Vec<&'a str>,
    columns: Vec<String>,
    predicate_columns: Vec<String>,
    computed_columns: Vec<String>,
    risks: Vec<&'static str>,
}

impl<'a> SqlView<'a> {
    fn new(f: &'a StatementFacts) -> Self {
        let mut kinds = vec![f.kind.as_str()];
        kinds.extend(f.nested_kinds.iter().map(|k| k.as_str()));
        let objects = f
            .reads
            .iter()
            .chain(f.writes.iter())
            .map(String::as_str)
            .collect();
        let mut columns = Vec::with_capacity(f.columns.len());
        let mut predicate_columns = Vec::new();
        let mut computed_columns = Vec::new();
        for c in &f.columns {
            let s = format!("{}.{}", c.table.as_deref().unwrap_or("?"), c.column);
            if c.uses.contains(&ColumnUse::Predicate) {
                predicate_columns.push(s.clone());
            }
            if c.uses
                .iter()
                .any(|u| matches!(u, ColumnUse::Expression | ColumnUse::Aggregate))
            {
                computed_columns.push(s.clone());
            }
            columns.push(s);
        }
        let risks = f.risks.iter().map(|r| r.as_str()).collect();
        Self {
            f,
            kinds,
            objects,
            columns,
            predicate_columns,
            computed_columns,
            risks,
        }
    }
}

enum View<'a> {
    Sql(&'a SqlView<'a>),
    K8s(&'a K8sFacts),
}

impl When {
    fn matches(&self, p: &Principal, r: &Resource, view: &View<'_>) -> bool {
        if !(ok_cond(&self.principal_id, |c| c.matches_one(&p.id))
            && ok_cond(&self.principal_kind, |c| c.matches_one(p.kind.as_str()))
            && ok_cond(&self.principal_groups, |c| c.matches(&p.groups))
            && ok_cond(&self.resource_name, |c| c.matches_one(&r.name))
            && ok_cond(&self.resource_kind, |c| c.matches_one(r.kind.as_str()))
            && self
                .labels
                .iter()
                .all(|(k, c)| c.matches_opt(r.labels.get(k).map(String::as_str))))
        {
            return false;
        }
        match view {
            View::Sql(v) => {
                if self.k8s.is_some() {
                    return false;
                }
                let Some(s) = &self.sql else { return true };
                let f = v.f;
                s.unparsed.is_none_or(|u| u == f.unparsed)
                    && s.read_only.is_none_or(|r| r == f.read_only)
                    && ok_cond(&s.kind, |c| c.matches(&v.kinds))
                    && ok_cond(&s.reads, |c| c.matches(&f.reads))
                    && ok_cond(&s.writes, |c| c.matches(&f.writes))
                    && ok_cond(&s.objects, |c| c.matches(&v.objects))
                    && ok_cond(&s.functions, |c| c.matches(&f.functions))
                    && ok_cond(&s.columns, |c| c.matches(&v.columns))
                    && ok_cond(&s.predicate_columns, |c| c.matches(&v.predicate_columns))
                    && ok_cond(&s.computed_columns, |c| c.matches(&v.computed_columns))
                    && ok_cond(&s.risk, |c| c.matches(&v.risks))
                    && ok_cond(&s.parameters, |c| c.matches(&f.parameters))
            }
            View::K8s(f) => {
                if self.sql.is_some() {
                    return false;
                }
                let Some(k) = &self.k8s else { return true };
                let risks: Vec<&str> = f.risks.iter().map(|r| r.as_str()).collect();
                k.unparsed.is_none_or(|u| u == f.unparsed)
                    && ok_cond(&k.verb, |c| c.matches_one(f.verb.as_str()))
                    && ok_cond(&k.group, |c| c.matches_one(&f.group))
                    && ok_cond(&k.resource, |c| c.matches_opt(f.resource.as_deref()))
                    && ok_cond(&k.subresource, |c| c.matches_opt(f.subresource.as_deref()))
                    && ok_cond(&k.namespace, |c| c.matches_opt(f.namespace.as_deref()))
                    && ok_cond(&k.name, |c| c.matches_opt(f.name.as_deref()))
                    && ok_cond(&k.command, |c| c.matches_one(&f.command.join(" ")))
                    && ok_cond(&k.risk, |c| c.matches(&risks))
                    && ok_cond(&k.impersonate_user, |c| {
                        c.matches_opt(f.impersonate_user.as_deref())
                    })
            }
        }
    }
}

/// A loaded, validated policy.
///
/// Build it with [`Policy::from_toml_str`]; ask it with [`Policy::evaluate`].
/// It is immutable and `Sync`: share one behind an `Arc` and swap it to reload.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    default: Effect,
    /// `None`: `on_unparsed = "rules"`.
    on_unparsed: Option<Effect>,
    analyzer: Analyzer,
    max_command_bytes: usize,
    cache: DecisionCache,
}

/// The vocabulary of a condition whose values are names, not free text.
#[derive(Clone, Copy)]
enum Vocab {
    Free,
    Names(&'static [&'static str]),
}

const PRINCIPAL_KINDS: &[&str] = &["human", "agent", "service"];
const RESOURCE_KINDS: &[&str] = &["postgres", "kubernetes"];
const STATEMENT_KINDS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "truncate",
    "copy",
    "create",
    "alter",
    "drop",
    "grant",
    "revoke",
    "role_change",
    "set",
    "reset",
    "transaction",
    "call",
    "do",
    "function_definition",
    "explain",
    "prepare",
    "execute",
    "maintenance",
    "show",
    "lock",
    "notify",
    "listen",
    "cursor",
    "two_phase",
    "checkpoint",
    "discard",
    "load",
    "deallocate",
    "other",
];
const SQL_RISKS: &[&str] = &[
    "no_where",
    "copy_program",
    "copy_file",
    "dangerous_function",
    "changes_role_or_privilege",
    "sets_unsafe_parameter",
    "opaque_code",
    "masked_column_predicate",
    "catalog_values",
];
const K8S_VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "exec",
    "attach",
    "portforward",
    "proxy",
    "other",
];
const K8S_RISKS: &[&str] = &[
    "privileged",
    "host_path",
    "host_pid",
    "host_network",
    "cluster_admin_binding",
    "impersonation",
];

struct Compiler<'s> {
    src: &'s str,
}

impl Compiler<'_> {
    fn err<T>(
        &self,
        span: Option<std::ops::Range<usize>>,
        msg: impl Into<String>,
    ) -> Result<T, PolicyError> {
        Err(PolicyError::at(self.src, span.map(|s| s.start), msg))
    }

    fn globset(
        &self,
        pats: &[String],
        ci: bool,
        vocab: Vocab,
        span: &std::ops::Range<usize>,
        field: &str,
    ) -> Result<GlobSet, PolicyError> {
        let mut b = GlobSetBuilder::new();
        for p in pats {
            if let Vocab::Names(names) = vocab
                && !p.contains(['*', '?', '[', '{'])
                && !names.contains(&p.as_str())
            {
                return self.err(
                    Some(span.clone()),
                    format!(
                        "{field}: unknown value {p:?} (expected one of {})",
                        names.join(", ")
                    ),
                );
            }
            let g = GlobBuilder::new(p)
                .case_insensitive(ci)
                .literal_separator(false)
                .build();
            match g {
                Ok(g) => {
                    b.add(g);
                }
                Err(e) => {
                    return self.err(
                        Some(span.clone()),
                        format!("{field}: invalid pattern {p:?}: {e}"),
                    );
                }
            }
        }
        b.build()
            .or_else(|e| self.err(Some(span.clone()), format!("{field}: {e}")))
    }

    fn cond(
        &self,
        p: &Option<Spanned<Patterns>>,
        ci: bool,
        vocab: Vocab,
        field: &str,
    ) -> Result<Option<Cond>, PolicyError> {
        let Some(sp) = p else { return Ok(None) };
        self.cond_spanned(sp, ci, vocab, field).map(Some)
    }

    fn cond_spanned(
        &self,
        sp: &Spanned<Patterns>,
        ci: bool,
        vocab: Vocab,
        field: &str,
    ) -> Result<Cond, PolicyError> {
        let span = sp.span();
        let pats = sp.get_ref();
        if pats.all_patterns().next().is_none() && pats.any.as_ref().is_some_and(Vec::is_empty) {
            return self.err(
                Some(span),
                format!("{field}: an empty list never matches; leave the condition out instead"),
            );
        }
        let mk = |v: &Option<Vec<String>>| -> Result<Option<GlobSet>, PolicyError> {
            match v {
                Some(list) => self.globset(list, ci, vocab, &span, field).map(Some),
                None => Ok(None),
            }
        };
        Ok(Cond {
            any: mk(&pats.any)?,
            all: mk(&pats.all)?,
            none: mk(&pats.none)?,
        })
    }

    fn duration(&self, d: &Spanned<DurationSpec>) -> Result<Duration, PolicyError> {
        match d.get_ref() {
            DurationSpec::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationSpec::Text(t) => match parse_duration(t) {
                Some(d) => Ok(d),
                None => self.err(
                    Some(d.span()),
                    format!("invalid duration {t:?} (use a number of seconds or 30s, 15m, 2h, 1d)"),
                ),
            },
        }
    }

    fn mode(&self, m: &Spanned<String>) -> Result<ReviewMode, PolicyError> {
        match m.get_ref().as_str() {
            "hold" => Ok(ReviewMode::Hold),
            "ticket" => Ok(ReviewMode::Ticket),
            other => self.err(
                Some(m.span()),
                format!("unknown review mode {other:?} (expected hold or ticket)"),
            ),
        }
    }

    fn review_defaults(&self, r: Option<&ReviewSpec>) -> Result<Effect, PolicyError> {
        let r_default = ReviewSpec::default();
        let r = r.unwrap_or(&r_default);
        Ok(Effect::Review {
            groups: r.groups.clone().unwrap_or_default(),
            min_approvals: r.min_approvals.unwrap_or(1),
            timeout: match &r.timeout {
                Some(t) => self.duration(t)?,
                None => Duration::from_secs(15 * 60),
            },
            mode: match &r.mode {
                Some(m) => self.mode(m)?,
                None => ReviewMode::Hold,
            },
        })
    }

    fn effect_name(
        &self,
        e: &Spanned<String>,
        review: &Effect,
        allow_allow: bool,
        field: &str,
    ) -> Result<Effect, PolicyError> {
        match e.get_ref().as_str() {
            "allow" if allow_allow => Ok(Effect::Allow),
            "deny" => Ok(Effect::Deny),
            "review" => Ok(review.clone()),
            other => {
                let expected = if allow_allow {
                    "allow, deny or review"
                } else {
                    "deny or review"
                };
                self.err(
                    Some(e.span()),
                    format!("{field}: unknown effect {other:?} (expected {expected})"),
                )
            }
        }
    }

    fn rule(&self, spanned: &Spanned<RuleSpec>, review: &Effect) -> Result<Rule, PolicyError> {
        let span = spanned.span();
        let r = spanned.get_ref();
        let id = r.id.get_ref().clone();
        if id.trim().is_empty() {
            return self.err(Some(r.id.span()), "a rule id must not be empty");
        }
        let has_review_fields = r.groups.is_some()
            || r.min_approvals.is_some()
            || r.timeout.is_some()
            || r.mode.is_some();
        let effect = match r.effect.get_ref().as_str() {
            "review" => {
                let Effect::Review {
                    groups,
                    min_approvals,
                    timeout,
                    mode,
                } = review.clone()
                else {
                    return self.err(Some(span), "internal: review defaults are not a review");
                };
                let min_approvals = r.min_approvals.unwrap_or(min_approvals);
                if min_approvals == 0 {
                    return self.err(
                        Some(span),
                        format!("rule {id}: min_approvals must be at least 1"),
                    );
                }
                Effect::Review {
                    groups: r.groups.clone().unwrap_or(groups),
                    min_approvals,
                    timeout: match &r.timeout {
                        Some(t) => self.duration(t)?,
                        None => timeout,
                    },
                    mode: match &r.mode {
                        Some(m) => self.mode(m)?,
                        None => mode,
                    },
                }
            }
            _ => {
                let e = self.effect_name(&r.effect, review, true, &format!("rule {id}"))?;
                if has_review_fields {
                    return self.err(Some(span), format!("rule {id}: groups, min_approvals, timeout and mode belong to review rules"));
                }
                e
            }
        };
        let w = &r.when;
        let mut when = When::default();
        if let Some(p) = &w.principal {
            when.principal_id = self.cond(&p.id, false, Vocab::Free, "principal.id")?;
            when.principal_kind = self.cond(
                &p.kind,
                false,
                Vocab::Names(PRINCIPAL_KINDS),
                "principal.kind",
            )?;
            when.principal_groups = self.cond(&p.groups, false, Vocab::Free, "principal.groups")?;
        }
        if let Some(res) = &w.resource {
            when.resource_name = self.cond(&res.name, false, Vocab::Free, "resource.name")?;
            when.resource_kind = self.cond(
                &res.kind,
                false,
                Vocab::Names(RESOURCE_KINDS),
                "resource.kind",
            )?;
            for (k, v) in &res.labels {
                when.labels.push((
                    k.clone(),
                    self.cond_spanned(v, false, Vocab::Free, &format!("resource.labels.{k}"))?,
                ));
            }
        }
        if let (Some(s), Some(k)) = (&w.sql, &w.k8s) {
            let at = s.span().start.max(k.span().start);
            return Err(PolicyError::at(
                self.src,
                Some(at),
                format!("rule {id}: a rule has sql or k8s conditions, not both"),
            ));
        }
        if let Some(s) = &w.sql {
            let s = s.get_ref();
            let free = Vocab::Free;
            when.sql = Some(SqlCond {
                kind: self.cond(&s.kind, true, Vocab::Names(STATEMENT_KINDS), "sql.kind")?,
                reads: self.cond(&s.reads, true, free, "sql.reads")?,
                writes: self.cond(&s.writes, true, free, "sql.writes")?,
                objects: self.cond(&s.objects, true, free, "sql.objects")?,
                functions: self.cond(&s.functions, true, free, "sql.functions")?,
                columns: self.cond(&s.columns, true, free, "sql.columns")?,
                predicate_columns: self.cond(
                    &s.predicate_columns,
                    true,
                    free,
                    "sql.predicate_columns",
                )?,
                computed_columns: self.cond(
                    &s.computed_columns,
                    true,
                    free,
                    "sql.computed_columns",
                )?,
                risk: self.cond(&s.risk, false, Vocab::Names(SQL_RISKS), "sql.risk")?,
                parameters: self.cond(&s.parameters, true, free, "sql.parameters")?,
                unparsed: s.unparsed,
                read_only: s.read_only,
            });
        }
        if let Some(k) = &w.k8s {
            let k = k.get_ref();
            let free = Vocab::Free;
            when.k8s = Some(K8sCond {
                verb: self.cond(&k.verb, false, Vocab::Names(K8S_VERBS), "k8s.verb")?,
                group: self.cond(&k.group, false, free, "k8s.group")?,
                resource: self.cond(&k.resource, false, free, "k8s.resource")?,
                subresource: self.cond(&k.subresource, false, free, "k8s.subresource")?,
                namespace: self.cond(&k.namespace, false, free, "k8s.namespace")?,
                name: self.cond(&k.name, false, free, "k8s.name")?,
                command: self.cond(&k.command, false, free, "k8s.command")?,
                risk: self.cond(&k.risk, false, Vocab::Names(K8S_RISKS), "k8s.risk")?,
                impersonate_user: self.cond(
                    &k.impersonate_user,
                    false,
                    free,
                    "k8s.impersonate_user",
                )?,
                unparsed: k.unparsed,
            });
        }
        let mut mask = MaskDirectives::default();
        if let Some(m) = &r.mask {
            if let Some(d) = &m.detectors {
                return self.err(
                    Some(d.span()),
                    format!(
                        "rule {id}: mask.detectors is not supported: the gateway runs every \
                         detector of its catalogue on every response (choose them in its \
                         [masking] configuration)"
                    ),
                );
            }
            let mut fields = Vec::with_capacity(m.fields.len());
            for f in &m.fields {
                let action = match &f.action {
                    None => "redact".to_owned(),
                    Some(a) if a.get_ref() == "redact" => a.get_ref().clone(),
                    Some(a) => {
                        return self.err(
                            Some(a.span()),
                            format!(
                                "rule {id}: unknown mask action {:?} (the one action is \
                                 \"redact\": the whole value is replaced)",
                                a.get_ref()
                            ),
                        );
                    }
                };
                fields.push(FieldRule {
                    field: f.field.clone(),
                    action,
                });
            }
            mask.merge(&MaskDirectives { fields });
        }
        Ok(Rule {
            id,
            description: r.description.clone(),
            effect,
            reason: r.reason.clone(),
            mask,
            when,
        })
    }
}

/// Parses `30`, `30s`, `15m`, `2h`, `1d`.
fn parse_duration(t: &str) -> Option<Duration> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult).map(Duration::from_secs)
}

impl Policy {
    /// Loads and validates a policy from TOML.
    ///
    /// Errors carry the line and column of the offending part: TOML syntax,
    /// unknown keys, unknown effects, kinds, verbs and risks, invalid globs,
    /// duplicate rule ids, a rule with both `sql` and `k8s` conditions.
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::Policy;
    /// let err = Policy::from_toml_str("[[rule]]\nid = \"x\"\neffect = \"alow\"\n").unwrap_err();
    /// assert_eq!(err.location(), Some((3, 10)));
    /// ```
    pub fn from_toml_str(src: &str) -> Result<Self, PolicyError> {
        let doc: PolicyDoc = toml::from_str(src).map_err(|e| {
            PolicyError::at(
                src,
                e.span().map(|s| s.start),
                e.message().trim_end().to_owned(),
            )
        })?;
        let c = Compiler { src };
        let review = c.review_defaults(doc.review.as_ref())?;
        if let Effect::Review {
            min_approvals: 0, ..
        } = review
        {
            return c.err(None, "review.min_approvals must be at least 1");
        }
        let default = match &doc.default {
            Some(d) => c.effect_name(d, &review, true, "default")?,
            None => Effect::Deny,
        };
        let on_unparsed = match &doc.on_unparsed {
            Some(d) if d.get_ref() == "rules" => None,
            Some(d) => Some(c.effect_name(d, &review, false, "on_unparsed")?),
            None => Some(review.clone()),
        };
        let mut rules = Vec::with_capacity(doc.rules.len());
        let mut ids = BTreeSet::new();
        for r in &doc.rules {
            let rule = c.rule(r, &review)?;
            if !ids.insert(rule.id.clone()) {
                return c.err(
                    Some(r.get_ref().id.span()),
                    format!("duplicate rule id {:?}", rule.id),
                );
            }
            rules.push(rule);
        }
        let mut options = SqlOptions::default();
        if let Some(list) = &doc.dangerous_functions {
            options.dangerous_functions = list.clone();
        }
        options
            .dangerous_functions
            .extend(doc.extra_dangerous_functions.iter().cloned());
        if let Some(list) = &doc.unsafe_parameters {
            options.unsafe_parameters = list.clone();
        }
        options
            .unsafe_parameters
            .extend(doc.extra_unsafe_parameters.iter().cloned());
        if let Some(s) = &doc.default_schema {
            options.default_schema = s.clone();
        }
        options.extra_read_only_functions = doc.extra_read_only_functions.clone();
        let analyzer = Analyzer::new(options).map_err(|m| PolicyError::at(src, None, m))?;
        Ok(Self {
            rules,
            default,
            on_unparsed,
            analyzer,
            max_command_bytes: doc.max_command_bytes.unwrap_or(1 << 20),
            cache: DecisionCache::new(
                doc.decision_cache_entries
                    .unwrap_or(DecisionCache::DEFAULT_ENTRIES),
            ),
        })
    }

    /// Decides on a request. Never fails and never panics to the caller: any
    /// internal error resolves to [`Effect::Deny`].
    ///
    /// Each SQL statement is decided on its own — the strictest effect of the
    /// rules that match it (deny > review > allow; the first such rule in file
    /// order names the decision), or the policy's `default` when none matches;
    /// an unparsed statement is decided at least as strictly as
    /// `on_unparsed` — and the command takes the strictest statement's decision.
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::{Policy, Principal, PrincipalKind, Request, Resource, ResourceKind};
    /// let policy = Policy::from_toml_str(r#"
    ///     [[rule]]
    ///     id = "reads"
    ///     effect = "allow"
    ///     when.sql.kind = "select"
    /// "#).unwrap();
    /// let who = Principal::new("agent-7", PrincipalKind::Agent);
    /// let db = Resource::new("app", ResourceKind::Postgres);
    /// assert!(policy.evaluate(&Request::sql(&who, &db, "SELECT 1")).effect.is_allow());
    /// let d = policy.evaluate(&Request::sql(&who, &db, "SELECT 1; DROP TABLE users"));
    /// assert!(d.effect.is_deny());
    /// assert_eq!(d.rule_id, None); // the default decided, for the DROP
    /// ```
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        match catch_unwind(AssertUnwindSafe(|| self.evaluate_inner(req))) {
            Ok(d) => d,
            Err(_) => Decision::refused(
                "internal error while evaluating the policy; denied".into(),
                CommandFacts::None,
            ),
        }
    }

    /// Decides on a request like [`Policy::evaluate`] (without the decision
    /// cache) and says how: per SQL statement, its facts, every rule that
    /// matched and the statement's own decision. What
    /// `portcullis policy explain` prints (its `Display`).
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::{Policy, Principal, PrincipalKind, Request, Resource, ResourceKind};
    /// let policy = Policy::from_toml_str(r#"
    ///     [[rule]]
    ///     id = "read-only"
    ///     effect = "allow"
    ///     when.sql.read_only = true
    /// "#)?;
    /// let who = Principal::new("agent-7", PrincipalKind::Agent);
    /// let db = Resource::new("orders", ResourceKind::Postgres);
    /// let e = policy.explain(&Request::sql(&who, &db, "SELECT 1; SELECT * FROM t FOR UPDATE"));
    /// assert!(e.decision.effect.is_deny());
    /// assert_eq!(e.statements[0].matched[0].id, "read-only");
    /// assert!(e.statements[1].matched.is_empty());
    /// assert!(e.to_string().contains("statement 2: select\n  read_only: false"));
    /// # Ok::<(), portcullis_policy::PolicyError>(())
    /// ```
    pub fn explain(&self, req: &Request<'_>) -> Explanation {
        match catch_unwind(AssertUnwindSafe(|| self.explain_inner(req))) {
            Ok(e) => e,
            Err(_) => Explanation {
                decision: Decision::refused(
                    "internal error while evaluating the policy; denied".into(),
                    CommandFacts::None,
                ),
                statements: Vec::new(),
            },
        }
    }

    fn explain_inner(&self, req: &Request<'_>) -> Explanation {
        let Command::Sql(sql) = &req.command else {
            return Explanation {
                decision: self.evaluate_inner(req),
                statements: Vec::new(),
            };
        };
        if sql.len() > self.max_command_bytes {
            return Explanation {
                decision: self.evaluate_inner(req),
                statements: Vec::new(),
            };
        }
        let facts = CommandFacts::Sql {
            statements: self.analyzer.analyze(sql),
        };
        let mut statements = Vec::new();
        for st in crate::explain::sql_statements(&facts) {
            let view = SqlView::new(st);
            let mut matched = Vec::new();
            let mut mask = MaskDirectives::default();
            let (effect, rule_id, reason) = self.decide(
                req.principal,
                req.resource,
                &View::Sql(&view),
                Unparsed::of_sql(st),
                &mut mask,
                &mut |r: &Rule| {
                    matched.push(RuleMatch {
                        id: r.id.clone(),
                        effect: r.effect.as_str(),
                    })
                },
            );
            statements.push(StatementExplanation {
                facts: st.clone(),
                matched,
                effect: effect.as_str(),
                rule_id,
                reason,
            });
        }
        Explanation {
            decision: self.decide_facts(req.principal, req.resource, facts),
            statements,
        }
    }

    /// Tells the analysis which columns field rules mask (globs on
    /// `column`, `table.column`, `schema.table.column`), so that a statement
    /// using one in a predicate carries `masked_column_predicate`.
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::{Policy, Risk};
    /// let policy = Policy::from_toml_str("default = \"allow\"")?
    ///     .with_masked_columns(vec!["api_key".into()])?;
    /// let facts = policy.analyze_sql("SELECT id FROM customers WHERE api_key LIKE 'pk_1%'");
    /// assert!(facts[0].has_risk(Risk::MaskedColumnPredicate));
    /// # Ok::<(), portcullis_policy::PolicyError>(())
    /// ```
    pub fn with_masked_columns(mut self, patterns: Vec<String>) -> Result<Self, PolicyError> {
        let mut options = self.analyzer.options().clone();
        options.masked_columns = patterns;
        self.analyzer = Analyzer::new(options).map_err(|m| PolicyError::at("", None, m))?;
        self.cache = DecisionCache::new(self.cache.capacity());
        Ok(self)
    }

    /// Like [`Policy::with_masked_columns`], with the embedder's own matcher:
    /// `is_masked` is asked for `column`, `table.column` and
    /// `schema.table.column` of each column used in a predicate. The gateway
    /// passes the matcher its masking uses (`portcullis_mask::FieldPattern`),
    /// so the fact and the masking read field patterns the same way.
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::{Policy, Risk};
    /// let policy = Policy::from_toml_str("default = \"allow\"")?
    ///     .with_masked_column_matcher(|name| name.ends_with("api_key"));
    /// let facts = policy.analyze_sql("SELECT id FROM customers ORDER BY api_key");
    /// assert!(facts[0].has_risk(Risk::MaskedColumnPredicate));
    /// # Ok::<(), portcullis_policy::PolicyError>(())
    /// ```
    pub fn with_masked_column_matcher(
        mut self,
        is_masked: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.analyzer = self
            .analyzer
            .with_masked_matcher(crate::sql::MaskedColumnMatcher(std::sync::Arc::new(
                is_masked,
            )));
        self.cache = DecisionCache::new(self.cache.capacity());
        self
    }

    /// Analyses SQL with this policy's analysis settings (dangerous
    /// functions, unsafe parameters, default schema).
    pub fn analyze_sql(&self, sql: &str) -> Vec<StatementFacts> {
        self.analyzer.analyze(sql)
    }

    /// The ids of the rules, in file order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// Decides on facts already extracted — the statements of a prepared
    /// statement analysed once at `Parse`, or a request analysed by
    /// [`analyze_k8s`](crate::analyze_k8s) — with the same semantics as
    /// [`Policy::evaluate`]. Facts from another policy's analysis settings
    /// give that policy's risks.
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::{CommandFacts, Policy, Principal, PrincipalKind, Resource, ResourceKind};
    /// let policy = Policy::from_toml_str("default = \"allow\"").unwrap();
    /// let statements = policy.analyze_sql("SELECT 1");
    /// let who = Principal::new("a", PrincipalKind::Human);
    /// let db = Resource::new("db", ResourceKind::Postgres);
    /// let d = policy.evaluate_facts(&who, &db, CommandFacts::Sql { statements });
    /// assert!(d.effect.is_allow());
    /// ```
    pub fn evaluate_facts(
        &self,
        principal: &Principal,
        resource: &Resource,
        facts: CommandFacts,
    ) -> Decision {
        match catch_unwind(AssertUnwindSafe(|| {
            self.decide_facts(principal, resource, facts)
        })) {
            Ok(d) => d,
            Err(_) => Decision::refused(
                "internal error while evaluating the policy; denied".into(),
                CommandFacts::None,
            ),
        }
    }

    fn evaluate_inner(&self, req: &Request<'_>) -> Decision {
        let facts = match &req.command {
            Command::Sql(sql) => {
                if sql.len() > self.max_command_bytes {
                    return Decision::refused(
                        format!(
                            "command of {} bytes is larger than the {} the policy analyses",
                            sql.len(),
                            self.max_command_bytes
                        ),
                        CommandFacts::None,
                    );
                }
                return self
                    .cache
                    .get_or_insert(sql, req, || self.decide_sql(req, sql));
            }
            Command::Kubernetes(k) => CommandFacts::Kubernetes(analyze_k8s_limited(
                k,
                DEFAULT_MAX_BODY.min(self.max_command_bytes.max(1)),
            )),
        };
        self.decide_facts(req.principal, req.resource, facts)
    }

    /// Decides on a SQL string: analysed with the policy's default schema
    /// when the request has no search path; else statement by statement,
    /// each bare relation name resolved with the path as it stands before
    /// the statement (a statement may change it for the next), every
    /// possible resolution decided and the strictest taken.
    fn decide_sql(&self, req: &Request<'_>, sql: &str) -> Decision {
        let (principal, resource) = (req.principal, req.resource);
        let Some(start) = req.search_path else {
            let mut statements = self.analyzer.analyze(sql);
            for st in &mut statements {
                add_risks(st, req.risks);
            }
            return self.decide_facts(principal, resource, CommandFacts::Sql { statements });
        };
        let default_schema = self.analyzer.default_schema().to_owned();
        let mut path = start.clone();
        let mut mask = MaskDirectives::default();
        let mut outcomes = Vec::new();
        let mut statements = Vec::new();
        for src in self.analyzer.sources(sql) {
            // First with the default schema, recording the bare names.
            let probe = self.analyzer.with_resolver(Arc::new(Resolver::default()));
            let mut facts = probe.analyze_source(&src);
            add_risks(&mut facts, req.risks);
            let next = path.after(facts.search_path.as_ref());
            let (outcome, facts) = if facts.unqualified.is_empty() {
                (
                    self.decide_statement(principal, resource, &facts, &mut mask),
                    facts,
                )
            } else {
                // `CREATE …`, and `SELECT … INTO` (a select that writes).
                let creates = std::iter::once(&facts.kind)
                    .chain(&facts.nested_kinds)
                    .any(|k| *k == StatementKind::Create)
                    || (facts.kind == StatementKind::Select && !facts.writes.is_empty());
                match resolutions(
                    &facts.unqualified,
                    &path,
                    req.relations,
                    &default_schema,
                    creates,
                ) {
                    Err(why) => ((Effect::Deny, None, why), facts),
                    Ok(maps) => {
                        let mut best: Option<(Outcome, StatementFacts)> = None;
                        for map in maps {
                            let f = if map.values().all(|s| *s == default_schema) {
                                facts.clone()
                            } else {
                                let resolver = Arc::new(Resolver::with_map(map));
                                let mut f =
                                    self.analyzer.with_resolver(resolver).analyze_source(&src);
                                add_risks(&mut f, req.risks);
                                f
                            };
                            let o = if f.unqualified == facts.unqualified {
                                self.decide_statement(principal, resource, &f, &mut mask)
                            } else {
                                (
                                    Effect::Deny,
                                    None,
                                    "the statement's relation names could not be resolved \
                                     consistently; denied"
                                        .to_owned(),
                                )
                            };
                            if best.as_ref().is_none_or(|(b, _)| o.0.rank() > b.0.rank()) {
                                best = Some((o, f));
                            }
                        }
                        best.unwrap_or_else(|| {
                            (
                                (
                                    Effect::Deny,
                                    None,
                                    "no resolution of the statement's relation names; denied"
                                        .to_owned(),
                                ),
                                facts,
                            )
                        })
                    }
                }
            };
            path = next;
            outcomes.push(outcome);
            statements.push(facts);
        }
        let (effect, rule_id, reason) = self.combine(outcomes);
        Decision {
            effect,
            rule_id,
            reason,
            facts: CommandFacts::Sql { statements },
            mask,
        }
    }

    /// One SQL statement's decision (its mask directives merged into `mask`).
    fn decide_statement(
        &self,
        principal: &Principal,
        resource: &Resource,
        st: &StatementFacts,
        mask: &mut MaskDirectives,
    ) -> Outcome {
        let view = SqlView::new(st);
        self.decide(
            principal,
            resource,
            &View::Sql(&view),
            Unparsed::of_sql(st),
            mask,
            &mut |_| {},
        )
    }

    /// The strictest of the statements' decisions (the first of equal
    /// strictness), its reason naming the statement when there are several;
    /// no statement: the policy's default.
    fn combine(&self, outcomes: Vec<Outcome>) -> Outcome {
        let many = outcomes.len() > 1;
        let mut best: Option<Outcome> = None;
        for (i, (effect, rule, mut reason)) in outcomes.into_iter().enumerate() {
            if many {
                reason = format!("statement {}: {reason}", i + 1);
            }
            if best
                .as_ref()
                .is_none_or(|(e, _, _)| effect.rank() > e.rank())
            {
                best = Some((effect, rule, reason));
            }
        }
        best.unwrap_or_else(|| {
            (
                self.default.clone(),
                None,
                format!(
                    "empty command; the policy default is {}",
                    self.default.as_str()
                ),
            )
        })
    }

    fn decide_facts(
        &self,
        principal: &Principal,
        resource: &Resource,
        facts: CommandFacts,
    ) -> Decision {
        let mut mask = MaskDirectives::default();
        let (effect, rule_id, reason) = match &facts {
            CommandFacts::Sql { statements } => {
                let outcomes = statements
                    .iter()
                    .map(|st| self.decide_statement(principal, resource, st, &mut mask))
                    .collect();
                self.combine(outcomes)
            }
            CommandFacts::Kubernetes(k) => self.decide(
                principal,
                resource,
                &View::K8s(k),
                Unparsed {
                    unparsed: k.unparsed,
                    classified: false,
                    error: k.parse_error.as_deref(),
                },
                &mut mask,
                &mut |_| {},
            ),
            CommandFacts::None => (
                Effect::Deny,
                None,
                "no facts to decide on; denied".to_owned(),
            ),
        };
        Decision {
            effect,
            rule_id,
            reason,
            facts,
            mask,
        }
    }

    fn decide(
        &self,
        principal: &Principal,
        resource: &Resource,
        view: &View<'_>,
        unparsed: Unparsed<'_>,
        mask: &mut MaskDirectives,
        matched: &mut dyn FnMut(&Rule),
    ) -> (Effect, Option<String>, String) {
        let mut chosen: Option<&Rule> = None;
        for r in &self.rules {
            if r.when.matches(principal, resource, view) {
                matched(r);
                mask.merge(&r.mask);
                if chosen.is_none_or(|c| r.effect.rank() > c.effect.rank()) {
                    chosen = Some(r);
                }
            }
        }
        let (mut effect, mut rule_id, mut reason) = match chosen {
            Some(r) => (r.effect.clone(), Some(r.id.clone()), r.reason()),
            None => (
                self.default.clone(),
                None,
                format!(
                    "no rule matched; the policy default is {}",
                    self.default.as_str()
                ),
            ),
        };
        if unparsed.unparsed {
            // `on_unparsed = "rules"` lets the rules decide on what the
            // keyword-level reader found, when it found the statement's
            // kind; anything else unparsed is denied.
            let floor = match &self.on_unparsed {
                Some(e) => Some(e.clone()),
                None if unparsed.classified => None,
                None => Some(Effect::Deny),
            };
            if let Some(floor) = floor
                && floor.rank() > effect.rank()
            {
                effect = floor;
                rule_id = None;
                reason = format!(
                    "the command could not be fully analysed ({}); on_unparsed is {}",
                    unparsed.error.unwrap_or("unparsed"),
                    effect.as_str()
                );
            }
        }
        (effect, rule_id, reason)
    }
}

/// A decision without its facts: the effect, the deciding rule, the reason.
type Outcome = (Effect, Option<String>, String);

/// Adds the embedder's risks to a statement's facts.
fn add_risks(st: &mut StatementFacts, risks: &[Risk]) {
    for r in risks {
        if !st.risks.contains(r) {
            st.risks.push(*r);
        }
    }
    if !risks.is_empty() {
        st.risks.sort();
    }
}

/// Whether (and how well) a statement or request was analysed.
#[derive(Clone, Copy)]
struct Unparsed<'a> {
    unparsed: bool,
    /// The keyword-level reader found the statement's kind.
    classified: bool,
    error: Option<&'a str>,
}

impl<'a> Unparsed<'a> {
    fn of_sql(st: &'a StatementFacts) -> Self {
        Self {
            unparsed: st.unparsed,
            classified: st.kind != StatementKind::Other,
            error: st.parse_error.as_deref(),
        }
    }
}

// Keep the vocabularies in step with the facts' names.
const _: () = {
    assert!(STATEMENT_KINDS.len() == StatementKind::ALL.len());
    assert!(SQL_RISKS.len() == Risk::ALL.len());
    assert!(K8S_RISKS.len() == K8sRisk::ALL.len());
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_match_the_facts() {
        for r in Risk::ALL {
            assert!(SQL_RISKS.contains(&r.as_str()));
        }
        for r in K8sRisk::ALL {
            assert!(K8S_RISKS.contains(&r.as_str()));
        }
        use crate::facts::K8sVerb;
        for k in StatementKind::ALL {
            assert!(STATEMENT_KINDS.contains(&k.as_str()), "{k:?}");
        }
        assert!(STATEMENT_KINDS.contains(&StatementKind::FunctionDefinition.as_str()));
        assert!(STATEMENT_KINDS.contains(&StatementKind::RoleChange.as_str()));
        assert!(K8S_VERBS.contains(&K8sVerb::Deletecollection.as_str()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("3w"), None);
        assert_eq!(parse_duration(""), None);
    }
}
