//! SQL analysis: split, parse, and walk a SQL string into [`StatementFacts`].

mod catalog;
mod classify;
mod fold;
pub(crate) mod lineage;
mod walk;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};

use crate::facts::{SearchPathChange, StatementFacts, StatementKind};

/// Functions that read or write server files, reach other servers, change
/// server settings or stop other sessions: the default dangerous-function list.
pub const DEFAULT_DANGEROUS_FUNCTIONS: &[&str] = &[
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "lo_import",
    "lo_export",
    "lo_from_bytea",
    "dblink*",
    "set_config",
    "pg_reload_conf",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_rotate_logfile",
    "pg_promote",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "database_to_xml",
    "schema_to_xml",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_logdir_ls",
    "pg_execute_server_program",
    "pg_sleep*",
];

/// Run-time parameters whose change alters how later statements are read or
/// whose privileges they run with: the default unsafe-parameter list.
pub const DEFAULT_UNSAFE_PARAMETERS: &[&str] = &[
    "standard_conforming_strings",
    "client_encoding",
    "search_path",
    "role",
    "session_authorization",
    "backslash_quote",
    "escape_string_warning",
    "session_replication_role",
    "row_security",
    "default_transaction_read_only",
    "transaction_read_only",
    "local_preload_libraries",
    "session_preload_libraries",
];

/// Options of the SQL analysis. A [`Policy`](crate::Policy) builds its own
/// from the policy file; [`analyze`] uses the defaults.
///
/// # Example
/// ```
/// use portcullis_policy::{analyze_with, Risk, SqlOptions};
/// let mut options = SqlOptions::default();
/// options.dangerous_functions.push("my_admin_*".into());
/// let facts = analyze_with("SELECT my_admin_reset()", &options);
/// assert!(facts[0].has_risk(Risk::DangerousFunction));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqlOptions {
    /// Function names (globs, matched case-insensitively against the name
    /// without its schema) that raise [`Risk::DangerousFunction`](crate::Risk::DangerousFunction).
    pub dangerous_functions: Vec<String>,
    /// Parameter names (matched case-insensitively) that raise
    /// [`Risk::SetsUnsafeParameter`](crate::Risk::SetsUnsafeParameter).
    pub unsafe_parameters: Vec<String>,
    /// The schema given to unqualified table names (`public`).
    pub default_schema: String,
    /// Functions (folded names, optionally schema-qualified) known not to
    /// change anything, beyond the built-in list of PostgreSQL's
    /// `pg_catalog`: a statement calling a function on neither list is not
    /// `read_only`. A function on the dangerous list never is.
    pub extra_read_only_functions: Vec<String>,
    /// The parser's recursion limit; a statement nested deeper is unparsed.
    pub recursion_limit: usize,
    /// The most tokens one statement may have; a longer one is unparsed.
    pub max_statement_tokens: usize,
    /// The most operator tokens one statement may have (a long chain of binary
    /// operators parses into a deep tree); a statement with more is unparsed.
    pub max_statement_operators: usize,
    /// Columns that field rules mask (globs matched case-insensitively
    /// against `column`, `table.column` and `schema.table.column`): one used
    /// in a predicate raises
    /// [`Risk::MaskedColumnPredicate`](crate::Risk::MaskedColumnPredicate).
    pub masked_columns: Vec<String>,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            dangerous_functions: DEFAULT_DANGEROUS_FUNCTIONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            unsafe_parameters: DEFAULT_UNSAFE_PARAMETERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            default_schema: "public".to_owned(),
            extra_read_only_functions: Vec::new(),
            recursion_limit: 50,
            max_statement_tokens: 20_000,
            max_statement_operators: 500,
            masked_columns: Vec::new(),
        }
    }
}

/// Catalog relations and functions whose rows hold other sessions'
/// statements or sampled column values: reading one raises
/// [`Risk::CatalogValues`](crate::Risk::CatalogValues), and the lineage
/// masks every column of them (unless told otherwise).
pub(crate) const VALUE_EXPOSING: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_stat_activity",
    "pg_stat_statements",
    "pg_prepared_statements",
    "pg_cursors",
    "pg_stat_get_activity",
    "pg_stat_get_backend_activity",
    "pg_cursor",
    "pg_prepared_statement",
];

/// A matcher of masked column names (`column`, `table.column`,
/// `schema.table.column`), given by an embedder that already interprets
/// field patterns (the gateway: `portcullis_mask::FieldPattern`).
#[derive(Clone)]
pub(crate) struct MaskedColumnMatcher(
    pub(crate) std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>,
);

impl std::fmt::Debug for MaskedColumnMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskedColumnMatcher(..)")
    }
}

/// How one analysis qualifies relation names written without a schema:
/// the schema each bare name resolves to (the default schema for a name
/// not listed), and the bare names it was asked about.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    map: BTreeMap<String, String>,
    seen: Mutex<BTreeSet<String>>,
}

impl Resolver {
    /// A resolver giving `name` the schema `map[name]`.
    pub(crate) fn with_map(map: BTreeMap<String, String>) -> Self {
        Self {
            map,
            seen: Mutex::default(),
        }
    }

    /// The bare names asked about so far (and forgets them).
    pub(crate) fn take_seen(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The compiled form of [`SqlOptions`] used during analysis. Cheap to
/// clone (its compiled parts are shared).
#[derive(Debug, Clone)]
pub(crate) struct Analyzer {
    options: Arc<SqlOptions>,
    dangerous: Arc<globset::GlobSet>,
    masked: Arc<globset::GlobSet>,
    /// The embedder's own matcher for masked columns (the gateway's field
    /// patterns), used instead of `masked` when set.
    masked_matcher: Option<MaskedColumnMatcher>,
    /// How bare relation names are qualified (the default schema when
    /// `None`).
    resolver: Option<Arc<Resolver>>,
}

/// One statement's source, kept so it can be analysed again with another
/// resolution of its bare names.
#[derive(Debug)]
pub(crate) enum Source {
    /// A whole statement's tokens.
    Tokens(Vec<TokenWithSpan>),
    /// The tokens the tokenizer saw of a statement before it failed, and why.
    Partial(Vec<TokenWithSpan>, String),
}

impl Analyzer {
    /// Compiles `options`; a dangerous-function pattern that is not a valid
    /// glob is an error naming it.
    pub(crate) fn new(options: SqlOptions) -> Result<Self, String> {
        let mut b = globset::GlobSetBuilder::new();
        for f in &options.dangerous_functions {
            let g = globset::GlobBuilder::new(f)
                .case_insensitive(true)
                .build()
                .map_err(|e| format!("dangerous function pattern {f:?}: {e}"))?;
            b.add(g);
        }
        let dangerous = b.build().map_err(|e| e.to_string())?;
        let mut m = globset::GlobSetBuilder::new();
        for f in &options.masked_columns {
            let g = globset::GlobBuilder::new(f)
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .map_err(|e| format!("masked column pattern {f:?}: {e}"))?;
            m.add(g);
        }
        let masked = m.build().map_err(|e| e.to_string())?;
        Ok(Self {
            options: Arc::new(options),
            dangerous: Arc::new(dangerous),
            masked: Arc::new(masked),
            masked_matcher: None,
            resolver: None,
        })
    }

    /// This analyzer, qualifying bare relation names with `resolver`.
    pub(crate) fn with_resolver(&self, resolver: Arc<Resolver>) -> Self {
        Self {
            resolver: Some(resolver),
            ..self.clone()
        }
    }

    /// The schema a relation name written without one is qualified with.
    pub(crate) fn schema_of(&self, bare: &str) -> &str {
        match &self.resolver {
            Some(r) => {
                let mut seen = r.seen.lock().unwrap_or_else(PoisonError::into_inner);
                if !seen.contains(bare) {
                    seen.insert(bare.to_owned());
                }
                drop(seen);
                r.map
                    .get(bare)
                    .map_or(self.options.default_schema.as_str(), String::as_str)
            }
            None => &self.options.default_schema,
        }
    }

    /// Adds [`Risk::MaskedColumnPredicate`] when a masked column is used in
    /// a predicate.
    fn masked_predicate(&self, facts: &mut StatementFacts) {
        if (self.masked.is_empty() && self.masked_matcher.is_none())
            || facts.has_risk(crate::Risk::MaskedColumnPredicate)
        {
            return;
        }
        let hit = facts.columns.iter().any(|c| {
            c.uses.contains(&crate::ColumnUse::Predicate) && {
                let mut names = vec![c.column.clone()];
                if let Some(t) = &c.table {
                    names.push(format!("{t}.{}", c.column));
                    if let Some((_, bare)) = t.rsplit_once('.') {
                        names.push(format!("{bare}.{}", c.column));
                    }
                }
                match &self.masked_matcher {
                    Some(m) => names.iter().any(|n| (m.0)(n)),
                    None => names.iter().any(|n| self.masked.is_match(n)),
                }
            }
        });
        if hit {
            facts.risks.push(crate::Risk::MaskedColumnPredicate);
            facts.risks.sort();
        }
    }

    /// The same analyzer, telling masked columns with `matcher`.
    pub(crate) fn with_masked_matcher(mut self, matcher: MaskedColumnMatcher) -> Self {
        self.masked_matcher = Some(matcher);
        self
    }

    pub(crate) fn options(&self) -> &SqlOptions {
        &self.options
    }

    pub(crate) fn is_dangerous(&self, folded_name: &str) -> bool {
        let base = folded_name.rsplit('.').next().unwrap_or(folded_name);
        self.dangerous.is_match(base)
    }

    /// True when calling `folded_name` (as written, maybe schema-qualified)
    /// cannot change anything: a built-in of `pg_catalog` known to be
    /// read-only (unqualified or qualified with `pg_catalog`) or a name on
    /// the policy's extra list, and not a dangerous function.
    pub(crate) fn is_read_only_function(&self, folded_name: &str) -> bool {
        if self.is_dangerous(folded_name) {
            return false;
        }
        if self
            .options
            .extra_read_only_functions
            .iter()
            .any(|f| f.eq_ignore_ascii_case(folded_name))
        {
            return true;
        }
        let base = match folded_name.split_once('.') {
            None => folded_name,
            Some(("pg_catalog", rest)) if !rest.contains('.') => rest,
            Some(_) => return false,
        };
        catalog::READ_ONLY_FUNCTIONS.binary_search(&base).is_ok()
    }

    pub(crate) fn is_unsafe_parameter(&self, name: &str) -> bool {
        self.options
            .unsafe_parameters
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name))
    }

    pub(crate) fn default_schema(&self) -> &str {
        &self.options.default_schema
    }

    /// Analyses `sql` into one [`StatementFacts`] per statement.
    pub(crate) fn analyze(&self, sql: &str) -> Vec<StatementFacts> {
        self.sources(sql)
            .into_iter()
            .map(|src| self.analyze_owned(src))
            .collect()
    }

    /// Splits `sql` into its statements' sources.
    pub(crate) fn sources(&self, sql: &str) -> Vec<Source> {
        let dialect = PostgreSqlDialect {};
        let mut tokens = Vec::new();
        let tok_result = Tokenizer::new(&dialect, sql).tokenize_with_location_into_buf(&mut tokens);
        let mut pieces = split_statements(tokens);
        // When the tokenizer stopped early, the statement it stopped in was
        // never seen whole: classify what was seen of it (the last piece when
        // no `;` ended it, else nothing) as unparsed.
        let failed = match tok_result {
            Ok(()) => None,
            Err(e) => {
                let partial = match pieces.last() {
                    Some(p) if !p.terminated => pieces.pop().map(|p| p.tokens).unwrap_or_default(),
                    _ => Vec::new(),
                };
                Some(Source::Partial(
                    partial,
                    format!("could not tokenize: {}", e.message),
                ))
            }
        };
        let mut out: Vec<Source> = pieces
            .into_iter()
            .map(|p| Source::Tokens(p.tokens))
            .collect();
        out.extend(failed);
        out
    }

    /// Analyses one statement's source (kept for another analysis).
    pub(crate) fn analyze_source(&self, src: &Source) -> StatementFacts {
        match src {
            Source::Tokens(t) => self.analyze_owned(Source::Tokens(t.clone())),
            Source::Partial(t, msg) => self.analyze_owned(Source::Partial(t.clone(), msg.clone())),
        }
    }

    fn analyze_owned(&self, src: Source) -> StatementFacts {
        // With a resolver, the analysis records the bare names it qualified.
        if let Some(r) = &self.resolver {
            let _ = r.take_seen();
        }
        let facts = match src {
            Source::Tokens(t) => self.analyze_piece(t),
            Source::Partial(t, msg) => classify::classify(self, &t, msg),
        };
        let mut facts = self.finish(facts);
        if let Some(r) = &self.resolver {
            facts.unqualified = r.take_seen().into_iter().collect();
        }
        facts
    }

    /// The facts every statement gets after its walk.
    fn finish(&self, mut facts: StatementFacts) -> StatementFacts {
        self.masked_predicate(&mut facts);
        catalog_values(&mut facts);
        if facts.search_path.is_none() && self.may_change_search_path(&facts) {
            facts.search_path = Some(SearchPathChange::Unknown);
        }
        facts
    }

    /// True when a statement may change the session's search_path in a way
    /// its `SET`/`RESET`/`DISCARD` (already recorded) does not say: an
    /// unparsed `SET`/`RESET`/`DISCARD` or unknown statement, a change of
    /// role (`$user` may be in the path), opaque code, or a call of a
    /// function that is not a known read-only built-in (`set_config`, a
    /// user function that calls it).
    fn may_change_search_path(&self, facts: &StatementFacts) -> bool {
        let kinds = || std::iter::once(&facts.kind).chain(&facts.nested_kinds);
        (facts.unparsed
            && kinds().any(|k| {
                matches!(
                    k,
                    StatementKind::Set
                        | StatementKind::Reset
                        | StatementKind::Discard
                        | StatementKind::Other
                )
            }))
            || facts.parameters.iter().any(|p| {
                let last = p.rsplit('.').next().unwrap_or(p);
                matches!(
                    last,
                    "search_path" | "all" | "role" | "session_authorization" | "session_param"
                )
            })
            || facts.has_risk(crate::Risk::OpaqueCode)
            || facts
                .functions
                .iter()
                .any(|f| !self.is_read_only_function(f))
    }

    /// Parses each statement of `sql` on its own, with the same limits as
    /// [`Analyzer::analyze`]; `None` for one that cannot be parsed or is
    /// too long or too deep. A string that cannot be tokenised gives one
    /// `None`.
    pub(crate) fn parse_each(&self, sql: &str) -> Vec<Option<Statement>> {
        let dialect = PostgreSqlDialect {};
        let mut tokens = Vec::new();
        let tok_result = Tokenizer::new(&dialect, sql).tokenize_with_location_into_buf(&mut tokens);
        let pieces = split_statements(tokens);
        let mut out: Vec<Option<Statement>> = pieces
            .into_iter()
            .map(|p| self.parse_piece(p.tokens))
            .collect();
        if tok_result.is_err() {
            out.push(None);
        }
        out
    }

    fn parse_piece(&self, mut tokens: Vec<TokenWithSpan>) -> Option<Statement> {
        normalize_unicode_identifiers(&mut tokens).ok()?;
        let (significant, operators) = count_tokens(&tokens);
        if significant > self.options.max_statement_tokens
            || operators > self.options.max_statement_operators
        {
            return None;
        }
        let dialect = PostgreSqlDialect {};
        let mut parser = Parser::new(&dialect)
            .with_recursion_limit(self.options.recursion_limit)
            .with_tokens_with_locations(tokens);
        let stmt = parser.parse_statement().ok()?;
        (parser.peek_token_ref().token == Token::EOF).then_some(stmt)
    }

    fn analyze_piece(&self, mut tokens: Vec<TokenWithSpan>) -> StatementFacts {
        if let Err(msg) = normalize_unicode_identifiers(&mut tokens) {
            return classify::classify(self, &tokens, msg);
        }
        let (significant, operators) = count_tokens(&tokens);
        if significant > self.options.max_statement_tokens {
            let msg = format!(
                "statement has {significant} tokens, more than the {} analysed",
                self.options.max_statement_tokens
            );
            return classify::classify(self, &tokens, msg);
        }
        if operators > self.options.max_statement_operators {
            let msg = format!(
                "statement has {operators} operators, more than the {} analysed",
                self.options.max_statement_operators
            );
            return classify::classify(self, &tokens, msg);
        }
        let dialect = PostgreSqlDialect {};
        let mut parser = Parser::new(&dialect)
            .with_recursion_limit(self.options.recursion_limit)
            .with_tokens_with_locations(tokens);
        let parsed = parser.parse_statement().and_then(|stmt| {
            // The whole piece must be one statement.
            let next = parser.peek_token_ref();
            if next.token == Token::EOF {
                Ok(stmt)
            } else {
                Err(ParserError::ParserError(format!(
                    "unexpected {} after the statement",
                    next.token
                )))
            }
        });
        match parsed {
            Ok(stmt) => walk::walk_statement(self, &stmt),
            Err(ParserError::RecursionLimitExceeded) => classify::classify(
                self,
                &parser.into_tokens(),
                "statement nested deeper than the parser's recursion limit".into(),
            ),
            Err(e) => classify::classify(
                self,
                &parser.into_tokens(),
                format!("could not parse: {}", error_text(&e)),
            ),
        }
    }
}

fn error_text(e: &ParserError) -> String {
    match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "recursion limit exceeded".into(),
    }
}

/// One statement's tokens, and whether a `;` ended it.
struct Piece {
    tokens: Vec<TokenWithSpan>,
    terminated: bool,
}

/// Splits a token stream at top-level `;` into statements, dropping empty ones.
fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut cur: Vec<TokenWithSpan> = Vec::new();
    for t in tokens {
        match t.token {
            Token::SemiColon => {
                if has_significant(&cur) {
                    pieces.push(Piece {
                        tokens: std::mem::take(&mut cur),
                        terminated: true,
                    });
                } else {
                    cur.clear();
                }
            }
            Token::EOF => {}
            _ => cur.push(t),
        }
    }
    if has_significant(&cur) {
        pieces.push(Piece {
            tokens: cur,
            terminated: false,
        });
    }
    pieces
}

fn has_significant(tokens: &[TokenWithSpan]) -> bool {
    tokens
        .iter()
        .any(|t| !matches!(t.token, Token::Whitespace(_)))
}

/// Counts the non-whitespace tokens and the binary-operator tokens.
fn count_tokens(tokens: &[TokenWithSpan]) -> (usize, usize) {
    let mut significant = 0;
    let mut operators = 0;
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) => continue,
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::ShiftLeft
            | Token::ShiftRight
            | Token::CustomBinaryOperator(_) => operators += 1,
            Token::Word(w) if matches!(w.keyword, Keyword::AND | Keyword::OR) => operators += 1,
            _ => {}
        }
        significant += 1;
    }
    (significant, operators)
}

/// Rewrites PostgreSQL's `U&"…"` identifiers (which sqlparser reads as the
/// identifier `U`, `&`, and a quoted identifier holding the escapes) into one
/// quoted identifier with the escapes decoded, so that `U&"\0070g_read_file"`
/// is seen as `pg_read_file`. Handles `UESCAPE 'c'`.
fn normalize_unicode_identifiers(tokens: &mut Vec<TokenWithSpan>) -> Result<(), String> {
    let mut i = 0;
    while i + 2 < tokens.len() {
        let is_u = matches!(tokens.get(i).map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u"));
        let is_amp = matches!(tokens.get(i + 1).map(|t| &t.token), Some(Token::Ampersand));
        let quoted = match tokens.get(i + 2).map(|t| &t.token) {
            Some(Token::Word(w)) if w.quote_style == Some('"') => Some(w.value.clone()),
            _ => None,
        };
        if let (true, true, Some(raw)) = (is_u, is_amp, quoted) {
            // Look for `UESCAPE 'c'` after it.
            let mut escape = '\\';
            let mut end = i + 3;
            let mut j = end;
            while matches!(tokens.get(j).map(|t| &t.token), Some(Token::Whitespace(_))) {
                j += 1;
            }
            if matches!(tokens.get(j).map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("uescape"))
            {
                let mut k = j + 1;
                while matches!(tokens.get(k).map(|t| &t.token), Some(Token::Whitespace(_))) {
                    k += 1;
                }
                match tokens.get(k).map(|t| &t.token) {
                    Some(Token::SingleQuotedString(s)) if s.chars().count() == 1 => {
                        escape = s.chars().next().unwrap_or('\\');
                        end = k + 1;
                    }
                    _ => return Err("malformed UESCAPE clause".into()),
                }
            }
            let decoded = decode_unicode_escapes(&raw, escape)?;
            let span = tokens
                .get(i)
                .map(|t| t.span)
                .unwrap_or_else(sqlparser::tokenizer::Span::empty);
            let word = Token::Word(Word {
                value: decoded,
                quote_style: Some('"'),
                keyword: Keyword::NoKeyword,
            });
            tokens.splice(i..end, [TokenWithSpan::new(word, span)]);
        }
        i += 1;
    }
    Ok(())
}

/// Decodes `\XXXX`, `\+XXXXXX` and `\\` (with `escape` in place of `\`).
fn decode_unicode_escapes(raw: &str, escape: char) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != escape {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&escape) {
            chars.next();
            out.push(escape);
            continue;
        }
        let digits = if chars.peek() == Some(&'+') {
            chars.next();
            6
        } else {
            4
        };
        let mut value: u32 = 0;
        for _ in 0..digits {
            let d = chars
                .next()
                .and_then(|d| d.to_digit(16))
                .ok_or("invalid Unicode escape in a U& identifier")?;
            value = value * 16 + d;
        }
        out.push(char::from_u32(value).ok_or("invalid Unicode code point in a U& identifier")?);
    }
    Ok(out)
}

/// Analyses a SQL string with the default [`SqlOptions`]: one
/// [`StatementFacts`] per statement, in order.
///
/// The string is split into statements with the tokenizer first (so quotes,
/// dollar quotes and comments are respected), and each is parsed on its own,
/// so one statement the parser rejects is reported as `unparsed` without
/// hiding the others.
///
/// # Example
/// ```
/// use portcullis_policy::{analyze, Risk, StatementKind};
/// let facts = analyze("SELECT name FROM Users WHERE id = 1; DELETE FROM \"Audit\"");
/// assert_eq!(facts[0].kind, StatementKind::Select);
/// assert_eq!(facts[0].reads, ["public.users"]);
/// assert_eq!(facts[1].writes, ["public.Audit"]);
/// assert!(facts[1].has_risk(Risk::NoWhere));
/// ```
pub fn analyze(sql: &str) -> Vec<StatementFacts> {
    match DEFAULT.get_or_init(|| Analyzer::new(SqlOptions::default())) {
        Ok(a) => a.analyze(sql),
        Err(msg) => vec![classify::unparsed(msg.clone())],
    }
}

static DEFAULT: std::sync::OnceLock<Result<Analyzer, String>> = std::sync::OnceLock::new();

/// The analyzer with the default options.
pub(crate) fn default_analyzer() -> Option<&'static Analyzer> {
    DEFAULT
        .get_or_init(|| Analyzer::new(SqlOptions::default()))
        .as_ref()
        .ok()
}

/// Analyses a SQL string with the given options (see [`analyze`]).
///
/// An invalid dangerous-function pattern makes every statement unparsed.
pub fn analyze_with(sql: &str, options: &SqlOptions) -> Vec<StatementFacts> {
    match Analyzer::new(options.clone()) {
        Ok(a) => a.analyze(sql),
        Err(msg) => vec![classify::unparsed(msg)],
    }
}

/// Adds [`Risk::CatalogValues`](crate::Risk::CatalogValues) when a statement
/// reads a catalog relation or calls a catalog function that shows other
/// sessions' statements or sampled column values (by bare name: a schema
/// does not make `pg_stat_activity` safer).
fn catalog_values(facts: &mut StatementFacts) {
    if facts.has_risk(crate::Risk::CatalogValues) {
        return;
    }
    let hit = facts.reads.iter().chain(&facts.functions).any(|n| {
        let base = n.rsplit('.').next().unwrap_or(n);
        VALUE_EXPOSING.contains(&base)
    });
    if hit {
        facts.risks.push(crate::Risk::CatalogValues);
        facts.risks.sort();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn read_only_function_list_is_sorted_for_binary_search() {
        let list = super::catalog::READ_ONLY_FUNCTIONS;
        assert!(list.windows(2).all(|w| w[0] < w[1]));
        for f in [
            "lower",
            "count",
            "now",
            "coalesce",
            "row",
            "pg_relation_size",
        ] {
            assert!(list.binary_search(&f).is_ok(), "{f}");
        }
        for f in [
            "set_config",
            "nextval",
            "setval",
            "pg_terminate_backend",
            "lo_import",
            "pg_advisory_lock",
            "pg_read_file",
            "dblink",
            "query_to_xml",
            "txid_current",
        ] {
            assert!(list.binary_search(&f).is_err(), "{f}");
        }
    }
}
