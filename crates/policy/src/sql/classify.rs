//! The keyword-level reader for statements the parser rejected.
//!
//! It works on the tokenizer's output (so comments, quoted identifiers,
//! strings and dollar-quoted bodies are already told apart) and knows the
//! head of every command in PostgreSQL's SQL Commands reference (15 and 16):
//! it gives the statement its kind, the objects it names (best effort: the
//! first name after the grammar's object keywords), the risks visible in its
//! tokens, and `read_only` only for the shapes it can prove harmless. It never
//! decides a statement is harmless by default: an unknown head is `other`
//! with [`Risk::OpaqueCode`]. The policy's `on_unparsed` then applies.

use std::collections::BTreeSet;

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::Analyzer;
use crate::facts::{Risk, StatementFacts, StatementKind};

/// Facts for a statement nothing could be read of.
pub(crate) fn unparsed(msg: String) -> StatementFacts {
    StatementFacts {
        kind: StatementKind::Other,
        nested_kinds: Vec::new(),
        unparsed: true,
        parse_error: Some(msg),
        reads: Vec::new(),
        writes: Vec::new(),
        columns: Vec::new(),
        functions: Vec::new(),
        risks: vec![Risk::OpaqueCode],
        parameters: Vec::new(),
        read_only: false,
        search_path: Some(crate::facts::SearchPathChange::Unknown),
        unqualified: Vec::new(),
    }
}

/// Classifies an unparsed statement from its tokens.
pub(crate) fn classify(
    analyzer: &Analyzer,
    tokens: &[TokenWithSpan],
    msg: String,
) -> StatementFacts {
    let sig: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let r = Reader::new(analyzer, &sig).read(0);
    let mut risks = r.risks;
    if r.kind == StatementKind::Other {
        risks.insert(Risk::OpaqueCode);
    }
    StatementFacts {
        kind: r.kind,
        nested_kinds: r.nested.into_iter().filter(|k| *k != r.kind).collect(),
        unparsed: true,
        parse_error: Some(msg),
        reads: r.reads.into_iter().collect(),
        writes: r.writes.into_iter().collect(),
        columns: Vec::new(),
        functions: r.functions.into_iter().collect(),
        read_only: r.read_only && risks.is_empty(),
        risks: risks.into_iter().collect(),
        parameters: r.parameters.into_iter().collect(),
        // Filled in by the analyzer, which knows what an unparsed
        // statement may do to the search_path.
        search_path: None,
        unqualified: Vec::new(),
    }
}

/// What the reader found in (a part of) a statement.
#[derive(Debug)]
struct Found {
    kind: StatementKind,
    nested: BTreeSet<StatementKind>,
    reads: BTreeSet<String>,
    writes: BTreeSet<String>,
    functions: BTreeSet<String>,
    risks: BTreeSet<Risk>,
    parameters: BTreeSet<String>,
    read_only: bool,
}

impl Found {
    fn new(kind: StatementKind) -> Self {
        Self {
            kind,
            nested: BTreeSet::new(),
            reads: BTreeSet::new(),
            writes: BTreeSet::new(),
            functions: BTreeSet::new(),
            risks: BTreeSet::new(),
            parameters: BTreeSet::new(),
            read_only: false,
        }
    }

    /// Takes in a nested statement's facts (its kind becomes a nested kind).
    fn absorb(&mut self, inner: Found) {
        self.nested.insert(inner.kind);
        self.nested.extend(inner.nested);
        self.reads.extend(inner.reads);
        self.writes.extend(inner.writes);
        self.functions.extend(inner.functions);
        self.risks.extend(inner.risks);
        self.parameters.extend(inner.parameters);
    }
}

/// How a name after an object keyword is reported.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NameKind {
    /// A table, view, index, sequence: schema-qualified with the default schema.
    Relation,
    /// Any other object: folded, as written.
    Plain,
    /// A role: not an object written.
    Role,
}

/// Object types of CREATE/ALTER/DROP/COMMENT ON, longest first.
const OBJECT_TYPES: &[(&[&str], NameKind)] = &[
    (&["TEXT", "SEARCH", "CONFIGURATION"], NameKind::Plain),
    (&["TEXT", "SEARCH", "DICTIONARY"], NameKind::Plain),
    (&["TEXT", "SEARCH", "PARSER"], NameKind::Plain),
    (&["TEXT", "SEARCH", "TEMPLATE"], NameKind::Plain),
    (&["FOREIGN", "DATA", "WRAPPER"], NameKind::Plain),
    (&["MATERIALIZED", "VIEW"], NameKind::Relation),
    (&["FOREIGN", "TABLE"], NameKind::Relation),
    (&["OPERATOR", "CLASS"], NameKind::Plain),
    (&["OPERATOR", "FAMILY"], NameKind::Plain),
    (&["EVENT", "TRIGGER"], NameKind::Plain),
    (&["ACCESS", "METHOD"], NameKind::Plain),
    (&["USER", "MAPPING"], NameKind::Plain),
    (&["LARGE", "OBJECT"], NameKind::Plain),
    (&["DEFAULT", "PRIVILEGES"], NameKind::Plain),
    (&["TABLE"], NameKind::Relation),
    (&["VIEW"], NameKind::Relation),
    (&["INDEX"], NameKind::Relation),
    (&["SEQUENCE"], NameKind::Relation),
    (&["ROLE"], NameKind::Role),
    (&["USER"], NameKind::Role),
    (&["GROUP"], NameKind::Role),
    (&["OWNED"], NameKind::Role),
    (&["AGGREGATE"], NameKind::Plain),
    (&["CAST"], NameKind::Plain),
    (&["COLLATION"], NameKind::Plain),
    (&["CONVERSION"], NameKind::Plain),
    (&["DATABASE"], NameKind::Plain),
    (&["DOMAIN"], NameKind::Plain),
    (&["EXTENSION"], NameKind::Plain),
    (&["FUNCTION"], NameKind::Plain),
    (&["LANGUAGE"], NameKind::Plain),
    (&["OPERATOR"], NameKind::Plain),
    (&["POLICY"], NameKind::Plain),
    (&["PROCEDURE"], NameKind::Plain),
    (&["PUBLICATION"], NameKind::Plain),
    (&["ROUTINE"], NameKind::Plain),
    (&["RULE"], NameKind::Plain),
    (&["SCHEMA"], NameKind::Plain),
    (&["SERVER"], NameKind::Plain),
    (&["STATISTICS"], NameKind::Plain),
    (&["SUBSCRIPTION"], NameKind::Plain),
    (&["SYSTEM"], NameKind::Plain),
    (&["TABLESPACE"], NameKind::Plain),
    (&["TRANSFORM"], NameKind::Plain),
    (&["TRIGGER"], NameKind::Plain),
    (&["TYPE"], NameKind::Plain),
    (&["COLUMN"], NameKind::Plain),
    (&["CONSTRAINT"], NameKind::Plain),
];

/// Object types whose definition or change runs code the statement does not show.
const CODE_OBJECTS: &[&str] = &[
    "FUNCTION",
    "PROCEDURE",
    "ROUTINE",
    "AGGREGATE",
    "LANGUAGE",
    "RULE",
    "TRIGGER",
    "EVENT",
    "EXTENSION",
    "CAST",
    "OPERATOR",
    "TRANSFORM",
    "ACCESS",
];

/// Words that may stand before `(` without being a function call.
const NOT_CALLS: &[&str] = &[
    "VALUES",
    "IN",
    "AS",
    "EXISTS",
    "ON",
    "USING",
    "INTO",
    "TABLE",
    "SELECT",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "ANY",
    "SOME",
    "ALL",
    "FROM",
    "OVER",
    "FILTER",
    "WITH",
    "RETURNS",
    "ARRAY",
    "ROW",
    "CAST",
    "EXTRACT",
    "SUBSTRING",
    "POSITION",
    "OVERLAY",
    "TRIM",
    "JOIN",
    "BY",
    "CUBE",
    "ROLLUP",
    "SETS",
    "THEN",
    "ELSE",
    "WHEN",
    "CASE",
    "IS",
    "BETWEEN",
    "MATERIALIZED",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "LIMIT",
    "OFFSET",
    "HAVING",
    "WITHIN",
    "LATERAL",
    "TABLESAMPLE",
    "BERNOULLI",
    "SYSTEM",
    "REPEATABLE",
    "DISTINCT",
    "WINDOW",
    "PARTITION",
    "GROUP",
    "ORDER",
    "LIKE",
    "ILIKE",
    "SIMILAR",
    "ESCAPE",
    "RETURNING",
    "EXPLAIN",
    "ANALYZE",
    "ANALYSE",
    "VERBOSE",
    "FOR",
    "LATERAL",
    "NULLIF",
    "COALESCE",
    "GREATEST",
    "LEAST",
    "GROUPING",
    "INTERVAL",
    "CHARACTER",
    "VARYING",
    "DOUBLE",
    "PRECISION",
    "ZONE",
    "NATURAL",
    "CROSS",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "OUTER",
    "NORMALIZE",
    "XMLELEMENT",
    "XMLFOREST",
    "XMLCONCAT",
    "XMLPARSE",
    "XMLSERIALIZE",
    "XMLEXISTS",
    "XMLTABLE",
    "JSON_TABLE",
    "COLUMNS",
    "PASSING",
    "DEFAULT",
    "SEARCH",
    "CYCLE",
    "UNNEST",
    "ROWS",
    "RANGE",
    "GROUPS",
    "PRECEDING",
    "FOLLOWING",
    "CURRENT",
];

/// Words that, anywhere in a query, mean it may write.
const WRITE_WORDS: &[&str] = &[
    "INTO", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "TRUNCATE", "DROP", "CREATE", "ALTER",
    "GRANT", "REVOKE", "EXECUTE", "CALL", "DO", "LOCK", "SHARE", "NOTIFY", "OPERATOR",
];

struct Reader<'a> {
    an: &'a Analyzer,
    sig: &'a [&'a Token],
    /// Upper-cased unquoted words ("" for anything else).
    words: Vec<String>,
}

impl<'a> Reader<'a> {
    fn new(an: &'a Analyzer, sig: &'a [&'a Token]) -> Self {
        let words = sig
            .iter()
            .map(|t| match t {
                Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
                _ => String::new(),
            })
            .collect();
        Self { an, sig, words }
    }

    fn w(&self, i: usize) -> &str {
        self.words.get(i).map(String::as_str).unwrap_or("")
    }

    fn tok(&self, i: usize) -> Option<&Token> {
        self.sig.get(i).copied()
    }

    /// Skips the given words from `i`.
    fn skip(&self, mut i: usize, words: &[&str]) -> usize {
        while words.contains(&self.w(i)) {
            i += 1;
        }
        i
    }

    /// The index of the first top-level (parenthesis depth 0) occurrence of
    /// `word` at or after `from`.
    fn find_top(&self, from: usize, word: &str) -> Option<usize> {
        let mut depth = 0usize;
        for i in from..self.sig.len() {
            match self.tok(i) {
                Some(Token::LParen) => depth += 1,
                Some(Token::RParen) => depth = depth.saturating_sub(1),
                _ if depth == 0 && self.w(i) == word => return Some(i),
                _ => {}
            }
        }
        None
    }

    /// The index just after the parenthesised group opening at `i`.
    fn after_group(&self, i: usize) -> usize {
        let mut depth = 0usize;
        for j in i..self.sig.len() {
            match self.tok(j) {
                Some(Token::LParen) => depth += 1,
                Some(Token::RParen) => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
        }
        self.sig.len()
    }

    /// A (possibly qualified) name at `i`: its folded parts and the index after it.
    fn name_at(&self, i: usize) -> Option<(Vec<String>, usize)> {
        let mut parts = Vec::new();
        let mut j = i;
        while let Some(Token::Word(w)) = self.tok(j) {
            parts.push(fold(&w.value, w.quote_style));
            if matches!(self.tok(j + 1), Some(Token::Period)) {
                j += 2;
            } else {
                j += 1;
                break;
            }
        }
        (!parts.is_empty()).then_some((parts, j))
    }

    fn qualify(&self, parts: &[String]) -> String {
        match parts {
            [one] => format!("{}.{one}", self.an.schema_of(one)),
            _ => parts.join("."),
        }
    }

    /// Records the name at `i` (after `IF [NOT] EXISTS`, `ONLY`, …) as
    /// written; returns the index after it.
    fn object(&self, i: usize, kind: NameKind, into: &mut BTreeSet<String>) -> usize {
        let i = self.skip(i, &["IF", "NOT", "EXISTS", "ONLY", "CONCURRENTLY"]);
        match self.name_at(i) {
            Some((parts, next)) => {
                match kind {
                    NameKind::Relation => {
                        into.insert(self.qualify(&parts));
                    }
                    NameKind::Plain => {
                        into.insert(parts.join("."));
                    }
                    NameKind::Role => {}
                }
                next
            }
            None => i,
        }
    }

    /// A comma-separated list of names from `i`.
    fn objects(&self, i: usize, kind: NameKind, into: &mut BTreeSet<String>) {
        let mut j = self.object(i, kind, into);
        loop {
            // Skip `*` after a table name (`TRUNCATE t *`) and a column list.
            if matches!(self.tok(j), Some(Token::Mul)) {
                j += 1;
            }
            if matches!(self.tok(j), Some(Token::LParen)) {
                j = self.after_group(j);
            }
            if matches!(self.tok(j), Some(Token::Comma)) {
                j = self.object(j + 1, kind, into);
            } else {
                break;
            }
        }
    }

    /// The object type at `i`: its words' length and how its name is reported.
    fn object_type(&self, i: usize) -> Option<(usize, NameKind, &'static str)> {
        OBJECT_TYPES.iter().find_map(|(ws, k)| {
            ws.iter()
                .enumerate()
                .all(|(n, w)| self.w(i + n) == *w)
                .then(|| (ws.len(), *k, ws.first().copied().unwrap_or("")))
        })
    }

    /// Reads the statement starting at `start`.
    fn read(&self, start: usize) -> Found {
        self.read_depth(start, 0)
    }

    fn read_depth(&self, start: usize, depth: usize) -> Found {
        use StatementKind as K;
        if depth > 4 {
            return Found::new(K::Other);
        }
        let s = start;
        let head = if matches!(self.tok(s), Some(Token::LParen)) {
            "SELECT"
        } else {
            self.w(s)
        };
        let mut f = match head {
            "SELECT" | "WITH" | "VALUES" | "TABLE" => self.query(s),
            "INSERT" => {
                let mut f = Found::new(K::Insert);
                if let Some(i) = self.find_top(s, "INTO") {
                    self.object(i + 1, NameKind::Relation, &mut f.writes);
                }
                self.query_parts(s, &mut f);
                f
            }
            "UPDATE" => {
                let mut f = Found::new(K::Update);
                self.object(s + 1, NameKind::Relation, &mut f.writes);
                self.where_risk(s, &mut f);
                self.query_parts(s, &mut f);
                f
            }
            "DELETE" => {
                let mut f = Found::new(K::Delete);
                self.object(s + 2, NameKind::Relation, &mut f.writes);
                self.where_risk(s, &mut f);
                self.query_parts(s, &mut f);
                f
            }
            "MERGE" => {
                let mut f = Found::new(K::Merge);
                self.object(s + 2, NameKind::Relation, &mut f.writes);
                self.query_parts(s, &mut f);
                f
            }
            "TRUNCATE" => {
                let mut f = Found::new(K::Truncate);
                let i = self.skip(s + 1, &["TABLE"]);
                self.objects(i, NameKind::Relation, &mut f.writes);
                f
            }
            "COPY" => self.copy(s, depth),
            "CREATE" => self.create(s, depth),
            "ALTER" => self.alter(s),
            "DROP" => {
                let mut f;
                match self.object_type(s + 1) {
                    Some((_, NameKind::Role, _)) => {
                        f = Found::new(K::RoleChange);
                        f.risks.insert(Risk::ChangesRoleOrPrivilege);
                    }
                    Some((n, kind, _)) => {
                        f = Found::new(K::Drop);
                        self.objects(s + 1 + n, kind, &mut f.writes);
                    }
                    None => f = Found::new(K::Drop),
                }
                f
            }
            "REASSIGN" => {
                let mut f = Found::new(K::RoleChange);
                f.risks.insert(Risk::ChangesRoleOrPrivilege);
                f
            }
            "GRANT" | "REVOKE" => {
                let mut f = Found::new(if head == "GRANT" { K::Grant } else { K::Revoke });
                f.risks.insert(Risk::ChangesRoleOrPrivilege);
                if let Some(on) = self.find_top(s, "ON") {
                    let mut i = on + 1;
                    let mut kind = NameKind::Relation;
                    if self.w(i) == "ALL" {
                        // ALL TABLES IN SCHEMA s
                        if let Some(sch) = self.find_top(i, "SCHEMA")
                            && let Some((p, _)) = self.name_at(sch + 1)
                        {
                            f.writes.insert(format!("{}.*", p.join(".")));
                        }
                    } else {
                        if let Some((n, k, _)) = self.object_type(i) {
                            i += n;
                            kind = if k == NameKind::Role {
                                NameKind::Plain
                            } else {
                                k
                            };
                        }
                        self.objects(i, kind, &mut f.writes);
                    }
                }
                f
            }
            "COMMENT" => {
                let mut f = Found::new(K::Alter);
                let i = s + 2;
                if let Some((n, kind, _)) = self.object_type(i) {
                    self.object(i + n, kind, &mut f.writes);
                }
                f
            }
            "SECURITY" => {
                let mut f = Found::new(K::Alter);
                if let Some(on) = self.find_top(s, "ON")
                    && let Some((n, kind, _)) = self.object_type(on + 1)
                {
                    self.object(on + 1 + n, kind, &mut f.writes);
                }
                f
            }
            "IMPORT" => {
                let mut f = Found::new(K::Create);
                if let Some(i) = self.find_top(s, "INTO") {
                    self.object(i + 1, NameKind::Plain, &mut f.writes);
                }
                f
            }
            "SET" | "RESET" => self.set(s, head),
            "BEGIN" | "START" | "END" | "ABORT" | "SAVEPOINT" | "RELEASE" => {
                let mut f = Found::new(K::Transaction);
                f.read_only = !self.read_write(s);
                f
            }
            "COMMIT" | "ROLLBACK" => {
                if self.w(s + 1) == "PREPARED" {
                    Found::new(K::TwoPhase)
                } else {
                    let mut f = Found::new(K::Transaction);
                    f.read_only = true;
                    f
                }
            }
            "PREPARE" if self.w(s + 1) == "TRANSACTION" => Found::new(K::TwoPhase),
            "PREPARE" => {
                let mut f = Found::new(K::Prepare);
                if let Some(as_) = self.find_top(s, "AS") {
                    let inner = self.read_depth(as_ + 1, depth + 1);
                    f.read_only = inner.read_only;
                    f.absorb(inner);
                }
                f
            }
            "EXECUTE" => {
                let mut f = Found::new(K::Execute);
                f.risks.insert(Risk::OpaqueCode);
                f
            }
            "DEALLOCATE" => {
                let mut f = Found::new(K::Deallocate);
                f.read_only = true;
                f
            }
            "EXPLAIN" => self.explain(s, depth),
            "DECLARE" => {
                let mut f = Found::new(K::Cursor);
                if let Some(i) = self.find_top(s, "FOR") {
                    let inner = self.read_depth(i + 1, depth + 1);
                    f.read_only = inner.read_only;
                    f.absorb(inner);
                }
                f
            }
            "FETCH" | "MOVE" | "CLOSE" => {
                let mut f = Found::new(K::Cursor);
                f.read_only = true;
                f
            }
            "SHOW" => {
                let mut f = Found::new(K::Show);
                f.read_only = true;
                f
            }
            "LISTEN" | "UNLISTEN" => {
                let mut f = Found::new(K::Listen);
                f.read_only = true;
                f
            }
            "NOTIFY" => Found::new(K::Notify),
            "LOCK" => {
                let mut f = Found::new(K::Lock);
                let i = self.skip(s + 1, &["TABLE"]);
                self.objects(i, NameKind::Relation, &mut f.writes);
                f
            }
            "VACUUM" | "ANALYZE" | "ANALYSE" | "CLUSTER" | "REINDEX" | "REFRESH" => {
                self.maintenance(s, head)
            }
            "CHECKPOINT" => Found::new(K::Checkpoint),
            "DISCARD" => {
                let mut f = Found::new(K::Discard);
                f.read_only = self.w(s + 1) == "PLANS";
                f
            }
            "LOAD" => {
                let mut f = Found::new(K::Load);
                f.risks.insert(Risk::OpaqueCode);
                f
            }
            "CALL" => {
                let mut f = Found::new(K::Call);
                if let Some((p, _)) = self.name_at(s + 1) {
                    let name = p.join(".");
                    if self.an.is_dangerous(&name) {
                        f.risks.insert(Risk::DangerousFunction);
                    }
                    f.functions.insert(name);
                }
                f
            }
            "DO" => {
                let mut f = Found::new(K::Do);
                f.risks.insert(Risk::OpaqueCode);
                f
            }
            _ => Found::new(K::Other),
        };
        self.token_risks(s, &mut f);
        f
    }

    /// SELECT / WITH / VALUES / TABLE.
    fn query(&self, s: usize) -> Found {
        let mut f = Found::new(StatementKind::Select);
        if self.w(s) == "TABLE"
            && let Some((p, _)) = self.name_at(s + 1)
        {
            f.reads.insert(self.qualify(&p));
        }
        self.query_parts(s, &mut f);
        // Data-modifying CTEs and SELECT … INTO.
        let mut i = s;
        while i < self.sig.len() {
            match self.w(i) {
                "INSERT" if self.w(i + 1) == "INTO" => {
                    f.nested.insert(StatementKind::Insert);
                    self.object(i + 2, NameKind::Relation, &mut f.writes);
                }
                "UPDATE"
                    if self.w(i.wrapping_sub(1)) != "FOR" && self.w(i.wrapping_sub(1)) != "NO" =>
                {
                    f.nested.insert(StatementKind::Update);
                    self.object(i + 1, NameKind::Relation, &mut f.writes);
                }
                "DELETE" if self.w(i + 1) == "FROM" => {
                    f.nested.insert(StatementKind::Delete);
                    self.object(i + 2, NameKind::Relation, &mut f.writes);
                }
                "MERGE" if self.w(i + 1) == "INTO" => {
                    f.nested.insert(StatementKind::Merge);
                    self.object(i + 2, NameKind::Relation, &mut f.writes);
                }
                "INTO" if !matches!(self.w(i.wrapping_sub(1)), "INSERT" | "MERGE") => {
                    f.nested.insert(StatementKind::Create);
                    self.object(i + 1, NameKind::Relation, &mut f.writes);
                }
                _ => {}
            }
            i += 1;
        }
        f.read_only = f.writes.is_empty() && f.nested.is_empty() && self.query_read_only(s);
        f
    }

    /// True when a query's tokens show nothing that can write: no writing
    /// keyword (`INTO`, `FOR UPDATE`/`SHARE`, DML, …), no custom operator,
    /// and every call is of a function known to be read-only.
    fn query_read_only(&self, s: usize) -> bool {
        for i in s..self.sig.len() {
            let w = self.w(i);
            if WRITE_WORDS.contains(&w) {
                return false;
            }
            match self.tok(i) {
                Some(Token::CustomBinaryOperator(_)) => return false,
                Some(Token::Word(word)) if matches!(self.tok(i + 1), Some(Token::LParen)) => {
                    if word.quote_style.is_none() && NOT_CALLS.contains(&w) {
                        continue;
                    }
                    // `name(cols) AS (` is a CTE's column list; `AS t(a, b)` an alias's.
                    let after = self.after_group(i + 1);
                    if self.w(after) == "AS" || self.w(i.wrapping_sub(1)) == "AS" {
                        continue;
                    }
                    let name = self.call_name(i);
                    if !self.an.is_read_only_function(&name) {
                        return false;
                    }
                }
                _ => {}
            }
        }
        true
    }

    /// The folded, possibly qualified name of the call whose last word is at `i`.
    fn call_name(&self, i: usize) -> String {
        let mut parts = Vec::new();
        let mut j = i;
        while let Some(Token::Word(w)) = self.tok(j) {
            parts.push(fold(&w.value, w.quote_style));
            if j >= 2 && matches!(self.tok(j - 1), Some(Token::Period)) {
                j -= 2;
            } else {
                break;
            }
        }
        parts.reverse();
        parts.join(".")
    }

    /// Tables after `FROM`/`JOIN`/`USING` and the functions called, anywhere from `s`.
    fn query_parts(&self, s: usize, f: &mut Found) {
        for i in s..self.sig.len() {
            let w = self.w(i);
            if matches!(w, "FROM" | "JOIN" | "USING")
                && !matches!(self.w(i.wrapping_sub(1)), "DELETE" | "DISTINCT" | "IS")
                && let Some((p, next)) = self.name_at(i + 1)
                && !matches!(self.tok(next), Some(Token::LParen))
                && !matches!(
                    p.first().map(|x| x.to_ascii_uppercase()).as_deref(),
                    Some("SELECT" | "LATERAL" | "ONLY" | "VALUES")
                )
            {
                f.reads.insert(self.qualify(&p));
            }
            if let Some(Token::Word(word)) = self.tok(i)
                && matches!(self.tok(i + 1), Some(Token::LParen))
                && (word.quote_style.is_some() || !NOT_CALLS.contains(&w))
                && !WRITE_WORDS.contains(&w)
            {
                f.functions.insert(self.call_name(i));
            }
        }
    }

    /// `no_where` for UPDATE/DELETE: no top-level WHERE.
    fn where_risk(&self, s: usize, f: &mut Found) {
        if self.find_top(s, "WHERE").is_none() {
            f.risks.insert(Risk::NoWhere);
        }
    }

    fn copy(&self, s: usize, depth: usize) -> Found {
        let mut f = Found::new(StatementKind::Copy);
        let to = self.find_top(s, "TO");
        let from = self.find_top(s, "FROM");
        if matches!(self.tok(s + 1), Some(Token::LParen)) {
            let inner = self.read_depth(s + 2, depth + 1);
            f.absorb(inner);
        } else if to.is_some() {
            self.object(s + 1, NameKind::Relation, &mut f.reads);
        } else {
            self.object(s + 1, NameKind::Relation, &mut f.writes);
        }
        if let Some(i) = to.or(from) {
            let j = self.skip(i + 1, &["PROGRAM"]);
            if self.w(i + 1) == "PROGRAM" {
                f.risks.insert(Risk::CopyProgram);
            } else if matches!(
                self.tok(j),
                Some(Token::SingleQuotedString(_) | Token::EscapedStringLiteral(_))
            ) {
                f.risks.insert(Risk::CopyFile);
            }
        }
        f
    }

    fn create(&self, s: usize, depth: usize) -> Found {
        use StatementKind as K;
        let i = self.skip(
            s + 1,
            &[
                "OR",
                "REPLACE",
                "TEMP",
                "TEMPORARY",
                "UNLOGGED",
                "GLOBAL",
                "LOCAL",
                "TRUSTED",
                "PROCEDURAL",
                "CONSTRAINT",
                "DEFAULT",
                "UNIQUE",
                "RECURSIVE",
            ],
        );
        let Some((n, kind, first)) = self.object_type(i) else {
            return Found::new(K::Create);
        };
        let mut f = match (first, kind) {
            ("FUNCTION" | "PROCEDURE" | "AGGREGATE", _) => Found::new(K::FunctionDefinition),
            (_, NameKind::Role) => {
                let mut f = Found::new(K::RoleChange);
                f.risks.insert(Risk::ChangesRoleOrPrivilege);
                return f;
            }
            _ => Found::new(K::Create),
        };
        if CODE_OBJECTS.contains(&first) {
            f.risks.insert(Risk::OpaqueCode);
        }
        match first {
            // Objects defined on a table: the table is written.
            "TRIGGER" | "INDEX" | "POLICY" | "RULE" | "STATISTICS" => {
                let on = if first == "RULE" {
                    self.find_top(i + n, "TO")
                } else if first == "STATISTICS" {
                    self.find_top(i + n, "FROM")
                } else {
                    self.find_top(i + n, "ON")
                };
                if let Some(on) = on {
                    self.object(on + 1, NameKind::Relation, &mut f.writes);
                }
                if first == "RULE" || first == "TRIGGER" {
                    f.risks.insert(Risk::OpaqueCode);
                }
            }
            _ => {
                let next = self.object(i + n, kind, &mut f.writes);
                // CREATE TABLE … AS query / CREATE VIEW … AS query.
                if matches!(first, "TABLE" | "VIEW" | "MATERIALIZED")
                    && let Some(as_) = self.find_top(next, "AS")
                    && matches!(
                        self.w(as_ + 1),
                        "SELECT" | "WITH" | "VALUES" | "TABLE" | "EXECUTE"
                    ) | matches!(self.tok(as_ + 1), Some(Token::LParen))
                {
                    let inner = self.read_depth(as_ + 1, depth + 1);
                    f.reads.extend(inner.reads.iter().cloned());
                    f.absorb(inner);
                }
            }
        }
        f
    }

    fn alter(&self, s: usize) -> Found {
        use StatementKind as K;
        let i = s + 1;
        match self.w(i) {
            "SYSTEM" => {
                let mut f = Found::new(K::Alter);
                f.risks.insert(Risk::SetsUnsafeParameter);
                if let Some(Token::Word(p)) = self.tok(i + 2) {
                    f.parameters.insert(fold(&p.value, p.quote_style));
                }
                return f;
            }
            "DEFAULT" => {
                let mut f = Found::new(K::Grant);
                f.risks.insert(Risk::ChangesRoleOrPrivilege);
                return f;
            }
            _ => {}
        }
        let Some((n, kind, first)) = self.object_type(i) else {
            return Found::new(K::Alter);
        };
        if kind == NameKind::Role {
            let mut f = Found::new(K::RoleChange);
            f.risks.insert(Risk::ChangesRoleOrPrivilege);
            return f;
        }
        let mut f = Found::new(K::Alter);
        if matches!(
            first,
            "FUNCTION" | "PROCEDURE" | "ROUTINE" | "EXTENSION" | "LANGUAGE"
        ) {
            f.risks.insert(Risk::OpaqueCode);
        }
        let j = self.object(i + n, kind, &mut f.writes);
        // `ALTER … OWNER TO` hands an object to another role.
        if self.find_top(j, "OWNER").is_some() {
            f.risks.insert(Risk::ChangesRoleOrPrivilege);
        }
        f
    }

    fn set(&self, s: usize, head: &str) -> Found {
        let mut f = Found::new(if head == "SET" {
            StatementKind::Set
        } else {
            StatementKind::Reset
        });
        let mut i = s + 1;
        while matches!(self.w(i), "SESSION" | "LOCAL") && !matches!(self.w(i + 1), "" | "TO" | "=")
        {
            i += 1;
        }
        let param = match (self.w(i), self.w(i + 1)) {
            ("SESSION", "AUTHORIZATION") => "session_authorization".to_owned(),
            ("TIME", "ZONE") => "timezone".to_owned(),
            ("NAMES", _) => "client_encoding".to_owned(),
            ("CHARACTERISTICS", _) | ("TRANSACTION", _) => "transaction".to_owned(),
            ("CONSTRAINTS", _) => "constraints".to_owned(),
            _ => match self.name_at(i) {
                Some((p, _)) => p.join("."),
                None => String::new(),
            },
        };
        if param == "role" || param == "session_authorization" {
            f.risks.insert(Risk::ChangesRoleOrPrivilege);
        }
        let last = param.rsplit('.').next().unwrap_or(&param);
        if self.an.is_unsafe_parameter(&param)
            || self.an.is_unsafe_parameter(last)
            || param == "all"
        {
            f.risks.insert(Risk::SetsUnsafeParameter);
        }
        if !param.is_empty() {
            f.parameters.insert(param);
        }
        // A custom parameter (`app.tenant_id`) may be what row-level security
        // policies read: changing it is not read-only.
        f.read_only = !self.read_write(s) && !f.parameters.iter().any(|p| p.contains('.'));
        f
    }

    /// `READ WRITE` anywhere in a transaction or SET statement.
    fn read_write(&self, s: usize) -> bool {
        (s..self.sig.len()).any(|i| self.w(i) == "READ" && self.w(i + 1) == "WRITE")
    }

    fn explain(&self, s: usize, depth: usize) -> Found {
        let mut f = Found::new(StatementKind::Explain);
        let mut i = s + 1;
        let mut analyze = false;
        if matches!(self.tok(i), Some(Token::LParen)) {
            let end = self.after_group(i);
            let mut j = i + 1;
            while j < end {
                if matches!(self.w(j), "ANALYZE" | "ANALYSE") {
                    let off = matches!(self.w(j + 1), "FALSE" | "OFF")
                        || matches!(self.tok(j + 1), Some(Token::Number(n, _)) if n == "0")
                        || matches!(self.tok(j + 1), Some(Token::SingleQuotedString(v)) if matches!(v.to_ascii_lowercase().as_str(), "false" | "off" | "0"));
                    analyze |= !off;
                }
                j += 1;
            }
            i = end;
        }
        while matches!(self.w(i), "ANALYZE" | "ANALYSE" | "VERBOSE") {
            analyze |= self.w(i) != "VERBOSE";
            i += 1;
        }
        let inner = self.read_depth(i, depth + 1);
        f.read_only = !analyze || (inner.read_only && inner.risks.is_empty());
        f.absorb(inner);
        f
    }

    fn maintenance(&self, s: usize, head: &str) -> Found {
        let mut f = Found::new(StatementKind::Maintenance);
        let mut i = s + 1;
        if matches!(self.tok(i), Some(Token::LParen)) {
            i = self.after_group(i);
        }
        i = self.skip(
            i,
            &[
                "FULL",
                "FREEZE",
                "VERBOSE",
                "ANALYZE",
                "ANALYSE",
                "MATERIALIZED",
                "VIEW",
                "CONCURRENTLY",
                "TABLE",
                "INDEX",
                "SCHEMA",
                "DATABASE",
                "SYSTEM",
            ],
        );
        if matches!(head, "ANALYZE" | "ANALYSE") {
            self.objects(i, NameKind::Relation, &mut f.reads);
        } else if !matches!(self.w(i), "" | "WITH") {
            self.objects(i, NameKind::Relation, &mut f.writes);
        }
        f
    }

    /// Risks visible anywhere in the tokens from `s`, whatever the kind.
    fn token_risks(&self, s: usize, f: &mut Found) {
        for i in s..self.sig.len() {
            let Some(t) = self.tok(i) else { break };
            match t {
                Token::Word(word) => {
                    let upper = self.w(i);
                    if matches!(self.tok(i + 1), Some(Token::LParen))
                        && (word.quote_style.is_some() || !NOT_CALLS.contains(&upper))
                    {
                        let name = self.call_name(i);
                        if self.an.is_dangerous(&name) {
                            f.risks.insert(Risk::DangerousFunction);
                        }
                    }
                    match upper {
                        "PROGRAM" if f.kind == StatementKind::Copy => {
                            f.risks.insert(Risk::CopyProgram);
                        }
                        "EXECUTE" if i > s && f.kind != StatementKind::Create => {
                            f.risks.insert(Risk::OpaqueCode);
                        }
                        "DO" if i > s
                            && matches!(self.tok(i + 1), Some(Token::DollarQuotedString(_))) =>
                        {
                            f.risks.insert(Risk::OpaqueCode);
                        }
                        _ => {}
                    }
                }
                Token::DollarQuotedString(_)
                | Token::SingleQuotedString(_)
                | Token::EscapedStringLiteral(_)
                    if matches!(
                        f.kind,
                        StatementKind::Do
                            | StatementKind::FunctionDefinition
                            | StatementKind::Create
                            | StatementKind::Alter
                    ) =>
                {
                    if matches!(t, Token::DollarQuotedString(_)) {
                        f.risks.insert(Risk::OpaqueCode);
                    }
                    let body = match t {
                        Token::DollarQuotedString(x) => x.value.as_str(),
                        Token::SingleQuotedString(x) | Token::EscapedStringLiteral(x) => x.as_str(),
                        _ => "",
                    };
                    if hidden_dangerous_call(self.an, body, 1) {
                        f.risks.insert(Risk::DangerousFunction);
                    }
                }
                _ => {}
            }
        }
    }
}

/// PostgreSQL identifier folding: unquoted names are lower-cased, quoted names kept.
pub(crate) fn fold(value: &str, quote_style: Option<char>) -> String {
    if quote_style.is_some() {
        value.to_owned()
    } else {
        value.to_ascii_lowercase()
    }
}

/// Scans code hidden in strings (a `DO` body, a function body, the string
/// of a dynamic `EXECUTE`) for calls of dangerous functions, up to a few
/// levels of strings within strings. Raises risk only; never lowers it.
pub(crate) fn hidden_dangerous_call(analyzer: &Analyzer, text: &str, depth: usize) -> bool {
    if depth > 3 {
        return false;
    }
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let mut tokens = Vec::new();
    // A body that does not tokenize is scanned as far as it went.
    let _ = sqlparser::tokenizer::Tokenizer::new(&dialect, text)
        .tokenize_with_location_into_buf(&mut tokens);
    let sig: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    for (i, t) in sig.iter().enumerate() {
        match t {
            Token::Word(w)
                if matches!(sig.get(i + 1), Some(Token::LParen))
                    && analyzer.is_dangerous(&fold(&w.value, w.quote_style)) =>
            {
                return true;
            }
            Token::DollarQuotedString(s)
                if hidden_dangerous_call(analyzer, &s.value, depth + 1) =>
            {
                return true;
            }
            Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s)
                if s.contains('(') && hidden_dangerous_call(analyzer, s, depth + 1) =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}
