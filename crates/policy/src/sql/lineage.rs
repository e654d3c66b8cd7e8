//! Column lineage that fails closed: which result columns of a statement may
//! carry a value of a masked column.
//!
//! The question is turned around from "does this column come from a masked
//! column?" to "is this column proven clean?": a result column is clean only
//! when it is a constant, or an expression over columns the schema says are
//! unmasked, through functions known to compute their result from their
//! arguments alone. Whole-row references, unknown functions, unknown
//! statements and anything the walk does not follow count as masked.
//!
//! The walk needs the database's schema ([`LineageSchema`]): every table and
//! view with its columns in order, which columns are masked, and each view's
//! definition (whose own lineage decides which of its columns are masked).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    AlterTableOperation, AssignmentTarget, CopyLegacyCsvOption, CopyLegacyOption, CopyOption,
    CopySource, CopyTarget, Distinct, Expr, FromTable, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, Ident, JoinConstraint, JoinOperator, NamedWindowExpr,
    ObjectName, ObjectNamePart, OnConflictAction, OnInsert, OrderByKind, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableFactor, TableObject,
    TableWithJoins, UpdateTableFromKind, Visit, Visitor,
};

use super::Analyzer;
use super::classify::fold;

/// Built-in functions that run a query given as text, or return other
/// sessions' statements: never clean.
const OPAQUE_FUNCTIONS: &[&str] = &[
    "ts_stat",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "table_to_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
];

/// SQL's value keywords that parse as bare identifiers.
const VALUE_KEYWORDS: &[&str] = &[
    "current_user",
    "session_user",
    "current_role",
    "user",
    "current_catalog",
    "current_schema",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "true",
    "false",
    "null",
    "default",
];

/// How deep views may nest in one another before the walk gives up (and
/// masks).
const MAX_VIEW_DEPTH: usize = 16;

/// A view added but not yet resolved: schema, name, columns (with whether
/// a field rule masks each), definition.
type PendingView = (String, String, Vec<(String, bool)>, String);

/// One table or view, as the lineage walk sees it.
#[derive(Debug, Clone)]
struct Relation {
    schema: String,
    /// Columns in order, with whether each is masked.
    columns: Vec<(String, bool)>,
    /// Reading it can bring a masked value into the statement (errors,
    /// notices, predicates): it has a masked column, or it is a view over one.
    sensitive: bool,
}

/// The schema the lineage walk resolves names against: every table and view
/// of the database with its columns in order, which are masked, and the
/// definitions of views.
///
/// # Example
/// ```
/// use portcullis_policy::{lineage, Lineage, LineageSchema};
/// let mut schema = LineageSchema::new();
/// schema.add_table("shop", "customers", [("id", false), ("api_key", true)]);
/// schema.add_view("shop", "public_customers", [("id", false)], "SELECT id FROM shop.customers");
/// let schema = schema.finish();
/// let l = lineage("SELECT id, api_key AS k FROM customers", &schema);
/// assert_eq!(l[0].output, Lineage::Columns(vec![false, true]));
/// let l = lineage("SELECT * FROM public_customers", &schema);
/// assert_eq!(l[0].output, Lineage::Columns(vec![false]));
/// ```
#[derive(Debug, Clone, Default)]
pub struct LineageSchema {
    /// By folded bare name: every relation of that name, in any schema.
    relations: HashMap<String, Vec<Relation>>,
    /// Views still to resolve: (schema, name, columns, definition).
    views: Vec<PendingView>,
    has_masked: bool,
    catalog_values: CatalogValues,
}

/// What the lineage makes of the catalog relations and functions that show
/// other sessions' statements or sampled column values (`pg_stats`,
/// `pg_stat_activity`, `pg_stat_statements`, `pg_prepared_statements`,
/// `pg_cursors`, the functions behind them). A policy can also refuse them
/// outright: their reads carry [`Risk::CatalogValues`](crate::Risk::CatalogValues).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatalogValues {
    /// Every column of them is masked (when any column of the database is).
    #[default]
    Mask,
    /// They are treated as catalog relations without a masked column: for
    /// an operator who lets trusted principals read them (the detectors
    /// still scan their values).
    Clear,
}

impl LineageSchema {
    /// An empty schema: nothing is masked.
    pub fn new() -> LineageSchema {
        LineageSchema::default()
    }

    /// Adds a table (or any relation without a definition) with its columns
    /// in order and whether each is masked.
    pub fn add_table<N: AsRef<str>>(
        &mut self,
        schema: &str,
        name: &str,
        columns: impl IntoIterator<Item = (N, bool)>,
    ) {
        let columns: Vec<(String, bool)> = columns
            .into_iter()
            .map(|(n, m)| (n.as_ref().to_owned(), m))
            .collect();
        let sensitive = columns.iter().any(|c| c.1);
        self.has_masked |= sensitive;
        self.relations
            .entry(name.to_owned())
            .or_default()
            .push(Relation {
                schema: schema.to_owned(),
                columns,
                sensitive,
            });
    }

    /// Adds a view (or materialized view) with its columns in order, whether
    /// a field rule masks each by name, and its definition;
    /// [`LineageSchema::finish`] masks also the columns its definition
    /// computes from a masked column.
    pub fn add_view<N: AsRef<str>>(
        &mut self,
        schema: &str,
        name: &str,
        columns: impl IntoIterator<Item = (N, bool)>,
        definition: &str,
    ) {
        self.views.push((
            schema.to_owned(),
            name.to_owned(),
            columns
                .into_iter()
                .map(|(c, m)| (c.as_ref().to_owned(), m))
                .collect(),
            definition.to_owned(),
        ));
    }

    /// Resolves the views' lineage (a view over a view too) and returns the
    /// schema ready for [`lineage`].
    pub fn finish(mut self) -> LineageSchema {
        let views = std::mem::take(&mut self.views);
        let mut done: HashSet<usize> = HashSet::new();
        // Views may name views: resolve in rounds, each view once every
        // view it reads is resolved; what is left after the rounds (cycles,
        // too deep) is masked whole.
        for _ in 0..MAX_VIEW_DEPTH {
            let mut progressed = false;
            for (i, (schema, name, columns, definition)) in views.iter().enumerate() {
                if done.contains(&i) {
                    continue;
                }
                let pending: HashSet<&str> = views
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| !done.contains(j) && *j != i)
                    .map(|(_, v)| v.1.as_str())
                    .collect();
                if mentions_any(definition, &pending) {
                    continue;
                }
                let l = lineage_parsed(definition, &self);
                let derived: Vec<bool> = match (l.len(), l.first().map(|s| &s.output)) {
                    (1, Some(Lineage::Columns(v))) if v.len() == columns.len() => v.clone(),
                    (1, Some(Lineage::Uniform(false))) => vec![false; columns.len()],
                    _ => vec![true; columns.len()],
                };
                let masked: Vec<bool> =
                    columns.iter().zip(derived).map(|(c, d)| c.1 || d).collect();
                let sensitive = l.iter().any(|s| s.reads_masked) || masked.iter().any(|m| *m);
                self.has_masked |= sensitive;
                self.relations
                    .entry(name.clone())
                    .or_default()
                    .push(Relation {
                        schema: schema.clone(),
                        columns: columns.iter().map(|c| c.0.clone()).zip(masked).collect(),
                        sensitive,
                    });
                done.insert(i);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        for (i, (schema, name, columns, _)) in views.into_iter().enumerate() {
            if !done.contains(&i) {
                self.has_masked = true;
                self.relations.entry(name).or_default().push(Relation {
                    schema,
                    columns: columns.into_iter().map(|c| (c.0, true)).collect(),
                    sensitive: true,
                });
            }
        }
        self
    }

    /// Sets what the lineage makes of catalog relations that show values
    /// ([`CatalogValues::Mask`] unless set).
    ///
    /// # Example
    /// ```
    /// use portcullis_policy::{lineage, CatalogValues, LineageSchema};
    /// let mut schema = LineageSchema::new();
    /// schema.add_table("shop", "customers", [("id", false), ("api_key", true)]);
    /// let masked = schema.clone().finish();
    /// let sql = "SELECT query FROM pg_stat_activity";
    /// assert!(lineage(sql, &masked)[0].output.any_masked());
    /// schema.set_catalog_values(CatalogValues::Clear);
    /// let clear = schema.finish();
    /// assert!(!lineage(sql, &clear)[0].output.any_masked());
    /// ```
    pub fn set_catalog_values(&mut self, catalog_values: CatalogValues) {
        self.catalog_values = catalog_values;
    }

    /// Whether any column of the database is masked (if none, nothing is).
    pub fn has_masked(&self) -> bool {
        self.has_masked
    }
}

/// Whether `sql` mentions one of `names` as a word (a cheap, conservative
/// test of which views a view definition reads).
fn mentions_any(sql: &str, names: &HashSet<&str>) -> bool {
    if names.is_empty() {
        return false;
    }
    sql.to_ascii_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .any(|w| names.contains(w))
}

/// Which result columns of a statement may carry a masked value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lineage {
    /// One flag per result column, in order: `true` is masked.
    Columns(Vec<bool>),
    /// Every result column is masked (`true`) or every one is clean
    /// (`false`): the number of columns is not known (a wildcard over a
    /// relation of unknown shape), or the statement is not followed.
    Uniform(bool),
}

impl Lineage {
    /// Whether the result column at `index` of a result of `count` columns
    /// is masked. A count other than the one the walk found masks every
    /// column.
    pub fn is_masked(&self, index: usize, count: usize) -> bool {
        match self {
            Lineage::Uniform(m) => *m,
            Lineage::Columns(v) if v.len() == count => v.get(index).copied().unwrap_or(true),
            Lineage::Columns(_) => true,
        }
    }

    /// Whether any column is masked.
    pub fn any_masked(&self) -> bool {
        match self {
            Lineage::Uniform(m) => *m,
            Lineage::Columns(v) => v.iter().any(|m| *m),
        }
    }
}

/// The wire format of a `COPY … TO STDOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyFormat {
    /// Text: fields split by `delimiter`, backslash escapes.
    Text {
        /// The field delimiter (one byte).
        delimiter: u8,
    },
    /// CSV.
    Csv {
        /// The field delimiter.
        delimiter: u8,
        /// The quote character.
        quote: u8,
        /// The escape character inside quotes.
        escape: u8,
        /// The first row is a header.
        header: bool,
    },
    /// PostgreSQL's binary COPY format.
    Binary,
    /// Options the walk does not follow (non-ASCII characters, an encoding):
    /// rows cannot be split, so a row with any masked column is masked whole.
    Unknown,
}

/// The lineage facts of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatementLineage {
    /// Which of its result columns (or `RETURNING` columns, or `COPY TO`
    /// columns) may carry a masked value.
    pub output: Lineage,
    /// It reads a relation with a masked column (directly or through a
    /// view), calls a function whose reads are not visible, or is not
    /// followed: its errors and notices may quote a masked value.
    pub reads_masked: bool,
    /// It writes a value that may come from a masked column into a column
    /// that is not masked (`UPDATE … SET name = api_key`, `INSERT … SELECT`,
    /// `CREATE TABLE … AS`, `SELECT … INTO`), or hands one to a function that
    /// is not known to change nothing (`pg_notify`, a user function).
    pub moves_masked: bool,
    /// A masked value is used in `WHERE`, `JOIN … ON`, `GROUP BY`, `HAVING`,
    /// `ORDER BY`, `DISTINCT ON` or a window: the rows returned say something
    /// about it.
    pub masked_predicate: bool,
    /// For `COPY … TO STDOUT`: the format of its data.
    pub copy: Option<CopyFormat>,
    /// It runs code the walk cannot see into (a function that is not a
    /// known built-in, `DO`, `CALL`, a statement not followed): its errors
    /// and notices may say anything.
    pub opaque: bool,
}

impl StatementLineage {
    fn unknown(has_masked: bool) -> StatementLineage {
        StatementLineage {
            output: Lineage::Uniform(has_masked),
            reads_masked: has_masked,
            moves_masked: false,
            masked_predicate: false,
            copy: None,
            opaque: has_masked,
        }
    }

    fn clean() -> StatementLineage {
        StatementLineage {
            output: Lineage::Uniform(false),
            reads_masked: false,
            moves_masked: false,
            masked_predicate: false,
            copy: None,
            opaque: false,
        }
    }
}

/// The lineage of each statement of `sql`, against `schema`.
///
/// A statement the parser rejects, or whose results the walk does not
/// follow, has every column masked. When the schema has no masked column at
/// all, nothing is parsed and one clean entry stands for every statement.
///
/// # Example
/// ```
/// use portcullis_policy::{lineage, Lineage, LineageSchema};
/// let mut schema = LineageSchema::new();
/// schema.add_table("shop", "customers", [("id", false), ("name", false), ("api_key", true)]);
/// let schema = schema.finish();
/// for sql in [
///     "SELECT (SELECT api_key FROM customers LIMIT 1) AS x",
///     "SELECT c::text FROM customers c",
///     "SELECT to_jsonb(c)->>'api_key' FROM customers c",
///     "SELECT x FROM (SELECT id, api_key FROM customers) x",
///     "SELECT api_key AS k FROM customers UNION ALL SELECT NULL",
/// ] {
///     assert!(lineage(sql, &schema)[0].output.any_masked(), "{sql}");
/// }
/// let l = lineage("SELECT id, upper(name) FROM customers WHERE api_key = 'x'", &schema);
/// assert_eq!(l[0].output, Lineage::Columns(vec![false, false]));
/// assert!(l[0].masked_predicate);
/// assert!(lineage("UPDATE customers SET name = api_key", &schema)[0].moves_masked);
/// ```
pub fn lineage(sql: &str, schema: &LineageSchema) -> Vec<StatementLineage> {
    if !schema.has_masked {
        // Nothing is masked: every statement is clean, whatever it says
        // (one entry stands for them all; nothing is parsed).
        return vec![StatementLineage::clean()];
    }
    lineage_parsed(sql, schema)
}

fn lineage_parsed(sql: &str, schema: &LineageSchema) -> Vec<StatementLineage> {
    let Some(an) = super::default_analyzer() else {
        return vec![StatementLineage::unknown(true)];
    };
    let parsed = an.parse_each(sql);
    if parsed.is_empty() {
        return vec![StatementLineage::clean()];
    }
    parsed
        .into_iter()
        .map(|p| match p {
            Some(stmt) => {
                let mut w = Walk {
                    an,
                    schema,
                    reads_masked: false,
                    moves: false,
                    predicate: false,
                    touched: false,
                    opaque: false,
                };
                let (output, copy) = w.statement(&stmt);
                StatementLineage {
                    output,
                    reads_masked: w.reads_masked,
                    moves_masked: w.moves,
                    masked_predicate: w.predicate,
                    copy,
                    opaque: w.opaque,
                }
            }
            None => StatementLineage::unknown(schema.has_masked),
        })
        .collect()
}

/// The columns a relation in scope offers.
#[derive(Debug, Clone)]
enum Shape {
    /// Known columns, by name, with whether each is masked.
    Cols(Vec<(String, bool)>),
    /// Columns not known (a catalog relation, a table function): any name
    /// resolves, masked or not as said.
    Open(bool),
}

impl Shape {
    fn any(&self) -> bool {
        match self {
            Shape::Cols(c) => c.iter().any(|c| c.1),
            Shape::Open(m) => *m,
        }
    }

    fn column(&self, name: &str) -> Option<bool> {
        match self {
            Shape::Cols(c) => {
                let mut found = None;
                for (n, m) in c {
                    if n == name {
                        found = Some(found.unwrap_or(false) || *m);
                    }
                }
                found
            }
            Shape::Open(m) => Some(*m),
        }
    }

    /// Renamed by a table alias's column list.
    fn aliased(self, alias: Option<&TableAlias>) -> Shape {
        match (self, alias) {
            (Shape::Cols(mut cols), Some(a)) => {
                for (c, new) in cols.iter_mut().zip(&a.columns) {
                    c.0 = ident_fold(&new.name);
                }
                Shape::Cols(cols)
            }
            (s, _) => s,
        }
    }

    fn into_lineage(self) -> Lineage {
        match self {
            Shape::Cols(c) => Lineage::Columns(c.into_iter().map(|c| c.1).collect()),
            Shape::Open(m) => Lineage::Uniform(m),
        }
    }

    /// Combines two result shapes position by position (set operations).
    fn union(self, other: Shape) -> Shape {
        match (self, other) {
            (Shape::Cols(a), Shape::Cols(b)) if a.len() == b.len() => Shape::Cols(
                a.into_iter()
                    .zip(b)
                    .map(|(x, y)| (x.0, x.1 || y.1))
                    .collect(),
            ),
            (a, b) => Shape::Open(a.any() || b.any()),
        }
    }
}

/// One FROM entry visible to references.
#[derive(Debug, Clone)]
struct Rel {
    /// The name references use (alias, or the relation's own name).
    name: String,
    shape: Shape,
}

#[derive(Debug, Clone, Default)]
struct Scope {
    rels: Vec<Rel>,
    /// A join merged columns (`USING`, `NATURAL`): `*` has fewer columns than
    /// the relations, so its shape is not known.
    merged: bool,
}

type Ctes = Vec<(String, Shape)>;

struct Walk<'a> {
    an: &'a Analyzer,
    schema: &'a LineageSchema,
    reads_masked: bool,
    moves: bool,
    predicate: bool,
    /// A masked value was referenced since this was last reset (for
    /// subqueries in expressions: any masked value anywhere in them).
    touched: bool,
    opaque: bool,
}

fn ident_fold(i: &Ident) -> String {
    fold(&i.value, i.quote_style)
}

fn name_parts(n: &ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => ident_fold(i),
            ObjectNamePart::Function(f) => fold(&f.name.value, f.name.quote_style),
        })
        .collect()
}

fn with_scope(outer: &[Scope], scope: Scope) -> Vec<Scope> {
    let mut v = outer.to_vec();
    v.push(scope);
    v
}

fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::Semi(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::Anti(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c)
        | JoinOperator::StraightJoin(c)
        | JoinOperator::AsOf { constraint: c, .. } => Some(c),
        _ => None,
    }
}

/// The name PostgreSQL gives an unaliased result column (enough of it for
/// references to a derived table's columns; others are `?column?`).
fn output_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => ident_fold(i),
        Expr::CompoundIdentifier(v) => v.last().map(ident_fold).unwrap_or_default(),
        Expr::Function(f) => name_parts(&f.name).last().cloned().unwrap_or_default(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => output_name(expr),
        _ => "?column?".to_owned(),
    }
}

impl Walk<'_> {
    fn has_masked(&self) -> bool {
        self.schema.has_masked
    }

    /// The relation a FROM name means: by name across schemas (search_path
    /// is not known); several of that name combine, masking more.
    fn relation(&mut self, n: &ObjectName, ctes: &Ctes) -> Shape {
        let parts = name_parts(n);
        let (schema, bare) = match parts.as_slice() {
            [one] => (None, one.clone()),
            [.., s, t] => (Some(s.clone()), t.clone()),
            [] => return Shape::Open(true),
        };
        if schema.is_none()
            && let Some((_, shape)) = ctes.iter().rev().find(|(c, _)| *c == bare)
        {
            if shape.any() {
                self.touched = true;
            }
            return shape.clone();
        }
        if self.schema.catalog_values == CatalogValues::Mask
            && super::VALUE_EXPOSING.contains(&bare.as_str())
        {
            self.reads_masked = true;
            self.touched = true;
            return Shape::Open(true);
        }
        let found: Vec<&Relation> = self
            .schema
            .relations
            .get(&bare)
            .map(|v| {
                v.iter()
                    .filter(|r| schema.as_deref().is_none_or(|s| r.schema == s))
                    .collect()
            })
            .unwrap_or_default();
        match found.as_slice() {
            // A catalog relation: no masked column.
            [] if bare.starts_with("pg_")
                || matches!(schema.as_deref(), Some("pg_catalog" | "information_schema")) =>
            {
                Shape::Open(false)
            }
            // Not in the schema the gateway read (created since, by another
            // way, or not there at all): not proven clean.
            [] => {
                self.reads_masked = true;
                self.touched = true;
                Shape::Open(true)
            }
            [one] => {
                if one.sensitive {
                    self.reads_masked = true;
                }
                Shape::Cols(one.columns.clone())
            }
            many => {
                let sensitive = many.iter().any(|r| r.sensitive);
                self.reads_masked |= sensitive;
                Shape::Open(sensitive)
            }
        }
    }

    fn statement(&mut self, s: &Statement) -> (Lineage, Option<CopyFormat>) {
        let empty = Vec::new();
        match s {
            Statement::Query(q) => {
                let shape = self.query(q, &[], &empty);
                if let SetExpr::Select(sel) = q.body.as_ref()
                    && sel.into.is_some()
                {
                    // SELECT … INTO: a write of a new table.
                    self.moves |= shape.any();
                }
                (shape.into_lineage(), None)
            }
            Statement::Insert(ins) => {
                let target = match &ins.table {
                    TableObject::TableName(n) => self.relation(n, &empty),
                    _ => Shape::Open(false),
                };
                let target_cols: Option<Vec<bool>> = if ins.columns.is_empty() {
                    match &target {
                        Shape::Cols(c) => Some(c.iter().map(|c| c.1).collect()),
                        Shape::Open(_) => None,
                    }
                } else {
                    Some(
                        ins.columns
                            .iter()
                            .map(|c| {
                                let parts = name_parts(c);
                                let col = parts.last().cloned().unwrap_or_default();
                                target.column(&col).unwrap_or(false)
                            })
                            .collect(),
                    )
                };
                if let Some(src) = &ins.source {
                    let shape = self.query(src, &[], &empty);
                    match (&shape, &target_cols) {
                        (Shape::Cols(s), Some(t)) => {
                            for (i, (_, m)) in s.iter().enumerate() {
                                if *m && !t.get(i).copied().unwrap_or(false) {
                                    self.moves = true;
                                }
                            }
                        }
                        (s, _) => self.moves |= s.any(),
                    }
                }
                let name = match &ins.table {
                    TableObject::TableName(n) => name_parts(n).last().cloned().unwrap_or_default(),
                    _ => String::new(),
                };
                let target_rel = Rel {
                    name,
                    shape: target.clone(),
                };
                let mut conflict = Scope::default();
                conflict.rels.push(Rel {
                    name: "excluded".to_owned(),
                    shape: target.clone(),
                });
                conflict.rels.push(target_rel.clone());
                let conflict = vec![conflict];
                if let Some(OnInsert::OnConflict(oc)) = &ins.on
                    && let OnConflictAction::DoUpdate(du) = &oc.action
                {
                    for a in &du.assignments {
                        self.assignment(a, &target, &conflict, &empty);
                    }
                    if let Some(w) = &du.selection {
                        self.predicate(w, &conflict, &empty);
                    }
                }
                let scopes = vec![Scope {
                    rels: vec![target_rel],
                    merged: false,
                }];
                let out = match &ins.returning {
                    Some(ret) => self.projection(ret, &scopes, &empty),
                    None => Shape::Open(false),
                };
                (out.into_lineage(), None)
            }
            Statement::Update(u) => {
                let mut scope = Scope::default();
                self.bind_from(&u.table, &mut scope, &[], &empty);
                if let Some(UpdateTableFromKind::BeforeSet(f) | UpdateTableFromKind::AfterSet(f)) =
                    &u.from
                {
                    for twj in f {
                        self.bind_from(twj, &mut scope, &[], &empty);
                    }
                }
                let target = scope
                    .rels
                    .first()
                    .map(|r| r.shape.clone())
                    .unwrap_or(Shape::Open(true));
                let mut scopes = vec![scope];
                let mut newly_masked = Vec::new();
                for a in &u.assignments {
                    if self.assignment(a, &target, &scopes, &empty) {
                        newly_masked.extend(assignment_columns(&a.target));
                    }
                }
                if let Some(w) = &u.selection {
                    self.predicate(w, &scopes, &empty);
                }
                // RETURNING sees the new values.
                if let Some(Rel {
                    shape: Shape::Cols(cols),
                    ..
                }) = scopes.first_mut().and_then(|s| s.rels.first_mut())
                {
                    for c in cols.iter_mut() {
                        if newly_masked.contains(&c.0) {
                            c.1 = true;
                        }
                    }
                }
                let out = match &u.returning {
                    Some(ret) => self.projection(ret, &scopes, &empty),
                    None => Shape::Open(false),
                };
                (out.into_lineage(), None)
            }
            Statement::Delete(d) => {
                let mut scope = Scope::default();
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
                for twj in from {
                    self.bind_from(twj, &mut scope, &[], &empty);
                }
                if let Some(using) = &d.using {
                    for twj in using {
                        self.bind_from(twj, &mut scope, &[], &empty);
                    }
                }
                let scopes = vec![scope];
                if let Some(w) = &d.selection {
                    self.predicate(w, &scopes, &empty);
                }
                let out = match &d.returning {
                    Some(ret) => self.projection(ret, &scopes, &empty),
                    None => Shape::Open(false),
                };
                (out.into_lineage(), None)
            }
            Statement::CreateTable(ct) => {
                if let Some(q) = &ct.query {
                    let shape = self.query(q, &[], &empty);
                    self.moves |= shape.any();
                }
                (Lineage::Uniform(false), None)
            }
            // A view's lineage is found from its definition when it is read.
            Statement::CreateView(_) => (Lineage::Uniform(false), None),
            Statement::Copy {
                source,
                to: true,
                target: CopyTarget::Stdout,
                options,
                legacy_options,
                ..
            } => {
                let shape = match source {
                    CopySource::Query(q) => self.query(q, &[], &empty),
                    CopySource::Table {
                        table_name,
                        columns,
                    } => {
                        let rel = self.relation(table_name, &empty);
                        if columns.is_empty() {
                            rel
                        } else {
                            Shape::Cols(
                                columns
                                    .iter()
                                    .map(|c| {
                                        let n = ident_fold(c);
                                        let m = rel.column(&n).unwrap_or(true);
                                        (n, m)
                                    })
                                    .collect(),
                            )
                        }
                    }
                };
                (
                    shape.into_lineage(),
                    Some(copy_format(options, legacy_options)),
                )
            }
            Statement::Copy {
                source, to: true, ..
            } => {
                // COPY TO a server file or program: the data leaves by
                // another way.
                let shape = match source {
                    CopySource::Query(q) => self.query(q, &[], &empty),
                    CopySource::Table { table_name, .. } => self.relation(table_name, &empty),
                };
                self.moves |= shape.any();
                (Lineage::Uniform(false), None)
            }
            Statement::AlterTable(at) => {
                // Renaming a masked column, or the table or schema a field
                // rule names it by, would unmask it.
                let rel = self.relation(&at.name, &empty);
                for op in &at.operations {
                    match op {
                        AlterTableOperation::RenameColumn {
                            old_column_name, ..
                        } => {
                            self.moves |= rel.column(&ident_fold(old_column_name)).unwrap_or(true);
                        }
                        AlterTableOperation::RenameTable { .. } => self.moves |= rel.any(),
                        _ => {}
                    }
                }
                // Its errors may quote values (`ALTER COLUMN … TYPE … USING`).
                self.reads_masked = true;
                self.opaque = true;
                (Lineage::Uniform(false), None)
            }
            Statement::Explain { statement, .. } => {
                // The plan's text holds no row values; what the explained
                // statement moves or reads still counts.
                let _ = self.statement(statement);
                (Lineage::Uniform(false), None)
            }
            Statement::Prepare { statement, .. } => {
                let _ = self.statement(statement);
                (Lineage::Uniform(false), None)
            }
            Statement::Declare { stmts } => {
                for d in stmts {
                    // What a cursor returns is not followed to FETCH (which
                    // is masked whole); what its query reads still counts.
                    if let Some(q) = &d.for_query {
                        let _ = self.query(q, &[], &empty);
                    }
                }
                (Lineage::Uniform(false), None)
            }
            Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Deallocate { .. }
            | Statement::Discard { .. }
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::NOTIFY { .. } => (Lineage::Uniform(false), None),
            // FETCH, EXECUTE, CALL, and everything else: not followed.
            _ => {
                self.reads_masked = true;
                self.opaque = true;
                (Lineage::Uniform(self.has_masked()), None)
            }
        }
    }

    /// One `SET col = value`: whether it writes a masked value; a masked
    /// value into a column that is not masked moves it.
    fn assignment(
        &mut self,
        a: &sqlparser::ast::Assignment,
        target: &Shape,
        scopes: &[Scope],
        ctes: &Ctes,
    ) -> bool {
        let masked = self.expr(&a.value, scopes, ctes);
        if masked {
            let into_masked = assignment_columns(&a.target)
                .iter()
                .all(|c| target.column(c).unwrap_or(false));
            if !into_masked {
                self.moves = true;
            }
        }
        masked
    }

    fn query(&mut self, q: &Query, outer: &[Scope], ctes: &Ctes) -> Shape {
        let mut ctes = ctes.clone();
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = ident_fold(&cte.alias.name);
                let shape = if with.recursive {
                    self.recursive_cte(&name, &cte.query, &cte.alias, outer, &ctes)
                } else {
                    self.query(&cte.query, outer, &ctes)
                        .aliased(Some(&cte.alias))
                };
                ctes.push((name, shape));
            }
        }
        let (shape, scope) = self.set_expr(&q.body, outer, &ctes);
        if let Some(ob) = &q.order_by
            && let OrderByKind::Expressions(exprs) = &ob.kind
        {
            let scopes = with_scope(outer, scope.unwrap_or_default());
            for o in exprs {
                self.predicate(&o.expr, &scopes, &ctes);
            }
        }
        shape
    }

    /// A recursive CTE: its columns are masked once any round masks them.
    fn recursive_cte(
        &mut self,
        name: &str,
        q: &Query,
        alias: &TableAlias,
        outer: &[Scope],
        ctes: &Ctes,
    ) -> Shape {
        let mut current = Shape::Open(false);
        for _ in 0..8 {
            let mut inner = ctes.clone();
            inner.push((name.to_owned(), current.clone()));
            let next = self.query(q, outer, &inner).aliased(Some(alias));
            let stable = match (&current, &next) {
                (Shape::Cols(a), Shape::Cols(b)) => {
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.1 == y.1)
                }
                (Shape::Open(a), Shape::Open(b)) => a == b,
                _ => false,
            };
            let merged = match (&current, next.clone()) {
                (Shape::Cols(_), n) => current.clone().union(n),
                (Shape::Open(false), n) => n,
                (Shape::Open(true), _) => Shape::Open(true),
            };
            if stable {
                return merged;
            }
            current = merged;
        }
        Shape::Open(true)
    }

    fn set_expr(&mut self, s: &SetExpr, outer: &[Scope], ctes: &Ctes) -> (Shape, Option<Scope>) {
        match s {
            SetExpr::Select(sel) => {
                let (shape, scope) = self.select(sel, outer, ctes);
                (shape, Some(scope))
            }
            SetExpr::Query(q) => (self.query(q, outer, ctes), None),
            SetExpr::SetOperation { left, right, .. } => {
                let (l, _) = self.set_expr(left, outer, ctes);
                let (r, _) = self.set_expr(right, outer, ctes);
                (l.union(r), None)
            }
            SetExpr::Values(v) => {
                let mut cols: Vec<(String, bool)> = Vec::new();
                for row in &v.rows {
                    for (i, e) in row.content.iter().enumerate() {
                        let m = self.expr(e, outer, ctes);
                        match cols.get_mut(i) {
                            Some(c) => c.1 |= m,
                            None => cols.push((format!("column{}", i + 1), m)),
                        }
                    }
                }
                (Shape::Cols(cols), None)
            }
            SetExpr::Table(t) => {
                let shape = match &t.table_name {
                    Some(name) => {
                        let mut parts = Vec::new();
                        if let Some(s) = &t.schema_name {
                            parts.push(Ident::new(s.clone()));
                        }
                        parts.push(Ident::new(name.clone()));
                        self.relation(&ObjectName::from(parts), ctes)
                    }
                    None => Shape::Open(true),
                };
                (shape, None)
            }
            SetExpr::Insert(st) | SetExpr::Update(st) | SetExpr::Delete(st) => {
                let (l, _) = self.statement(st);
                let shape = match l {
                    Lineage::Columns(v) => Shape::Cols(
                        v.into_iter()
                            .enumerate()
                            .map(|(i, m)| (format!("?column{i}?"), m))
                            .collect(),
                    ),
                    Lineage::Uniform(m) => Shape::Open(m),
                };
                (shape, None)
            }
            _ => {
                self.reads_masked = true;
                self.opaque = true;
                (Shape::Open(self.has_masked()), None)
            }
        }
    }

    fn select(&mut self, sel: &Select, outer: &[Scope], ctes: &Ctes) -> (Shape, Scope) {
        let mut scope = Scope::default();
        for twj in &sel.from {
            self.bind_from(twj, &mut scope, outer, ctes);
        }
        let scopes = with_scope(outer, scope.clone());
        let shape = self.projection(&sel.projection, &scopes, ctes);
        for e in [&sel.selection, &sel.having, &sel.qualify, &sel.prewhere]
            .into_iter()
            .flatten()
        {
            self.predicate(e, &scopes, ctes);
        }
        if let GroupByExpr::Expressions(exprs, _) = &sel.group_by {
            for e in exprs {
                self.predicate(e, &scopes, ctes);
            }
        }
        for o in &sel.sort_by {
            self.predicate(&o.expr, &scopes, ctes);
        }
        if let Some(Distinct::On(exprs)) = &sel.distinct {
            for e in exprs {
                self.predicate(e, &scopes, ctes);
            }
        }
        for w in &sel.named_window {
            if let NamedWindowExpr::WindowSpec(spec) = &w.1 {
                for e in &spec.partition_by {
                    self.predicate(e, &scopes, ctes);
                }
                for o in &spec.order_by {
                    self.predicate(&o.expr, &scopes, ctes);
                }
            }
        }
        (shape, scope)
    }

    fn projection(&mut self, items: &[SelectItem], scopes: &[Scope], ctes: &Ctes) -> Shape {
        let scope = scopes.last().cloned().unwrap_or_default();
        let mut cols: Vec<(String, bool)> = Vec::new();
        let mut open: Option<bool> = None;
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let m = self.expr(e, scopes, ctes);
                    cols.push((output_name(e), m));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let m = self.expr(expr, scopes, ctes);
                    cols.push((ident_fold(alias), m));
                }
                SelectItem::ExprWithAliases { expr, .. } => {
                    let m = self.expr(expr, scopes, ctes);
                    open = Some(open.unwrap_or(false) || m);
                }
                SelectItem::Wildcard(_) => {
                    if scope.merged {
                        let m = scope.rels.iter().any(|r| r.shape.any());
                        self.touch(m);
                        open = Some(open.unwrap_or(false) || m);
                    }
                    for r in &scope.rels {
                        self.touch(r.shape.any());
                        match &r.shape {
                            Shape::Cols(c) => cols.extend(c.iter().cloned()),
                            Shape::Open(m) => open = Some(open.unwrap_or(false) || *m),
                        }
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(n) => {
                        let parts = name_parts(n);
                        match parts.last().and_then(|q| find_rel(scopes, q)) {
                            Some(Shape::Cols(c)) => {
                                self.touch(c.iter().any(|c| c.1));
                                cols.extend(c);
                            }
                            Some(Shape::Open(m)) => {
                                self.touch(m);
                                open = Some(open.unwrap_or(false) || m);
                            }
                            None => open = Some(self.has_masked()),
                        }
                    }
                    SelectItemQualifiedWildcardKind::Expr(e) => {
                        let m = self.expr(e, scopes, ctes);
                        open = Some(open.unwrap_or(false) || m);
                    }
                },
            }
        }
        match open {
            Some(m) => Shape::Open(m || cols.iter().any(|c| c.1)),
            None => Shape::Cols(cols),
        }
    }

    fn touch(&mut self, masked: bool) {
        if masked {
            self.touched = true;
        }
    }

    fn bind_from(&mut self, twj: &TableWithJoins, scope: &mut Scope, outer: &[Scope], ctes: &Ctes) {
        self.factor(&twj.relation, scope, outer, ctes);
        for j in &twj.joins {
            self.factor(&j.relation, scope, outer, ctes);
            match join_constraint(&j.join_operator) {
                Some(JoinConstraint::On(e)) => {
                    let scopes = with_scope(outer, scope.clone());
                    self.predicate(e, &scopes, ctes);
                }
                Some(JoinConstraint::Using(cols)) => {
                    scope.merged = true;
                    let scopes = with_scope(outer, scope.clone());
                    for c in cols {
                        let parts = name_parts(c);
                        if let Some(col) = parts.last() {
                            let e = Expr::Identifier(Ident::new(col.clone()));
                            self.predicate(&e, &scopes, ctes);
                        }
                    }
                }
                Some(JoinConstraint::Natural) => {
                    scope.merged = true;
                    // Which columns join is not visible here: any masked one may.
                    if scope.rels.iter().any(|r| r.shape.any()) {
                        self.predicate = true;
                    }
                }
                Some(JoinConstraint::None) | None => {}
            }
        }
    }

    fn factor(&mut self, tf: &TableFactor, scope: &mut Scope, outer: &[Scope], ctes: &Ctes) {
        let lateral_scopes = || with_scope(outer, scope.clone());
        match tf {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let shape = self.relation(name, ctes).aliased(alias.as_ref());
                let rel_name = match alias {
                    Some(a) => ident_fold(&a.name),
                    None => name_parts(name).last().cloned().unwrap_or_default(),
                };
                scope.rels.push(Rel {
                    name: rel_name,
                    shape,
                });
            }
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                ..
            } => {
                let scopes = lateral_scopes();
                let mut m = self.function_masked(name);
                for a in &args.args {
                    m |= self.function_arg(a, &scopes, ctes);
                }
                self.push_open(scope, name, alias.as_ref(), m);
            }
            TableFactor::Function {
                name, args, alias, ..
            } => {
                let scopes = lateral_scopes();
                let mut m = self.function_masked(name);
                for a in args {
                    m |= self.function_arg(a, &scopes, ctes);
                }
                self.push_open(scope, name, alias.as_ref(), m);
            }
            TableFactor::Derived {
                subquery,
                alias,
                lateral,
                ..
            } => {
                let shape = if *lateral {
                    self.query(subquery, &lateral_scopes(), ctes)
                } else {
                    self.query(subquery, outer, ctes)
                };
                scope.rels.push(Rel {
                    name: alias
                        .as_ref()
                        .map(|a| ident_fold(&a.name))
                        .unwrap_or_default(),
                    shape: shape.aliased(alias.as_ref()),
                });
            }
            TableFactor::TableFunction { expr, alias } => {
                let m = self.expr(expr, &lateral_scopes(), ctes);
                scope.rels.push(Rel {
                    name: alias
                        .as_ref()
                        .map(|a| ident_fold(&a.name))
                        .unwrap_or_default(),
                    shape: Shape::Open(m),
                });
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                let scopes = lateral_scopes();
                let mut m = false;
                for e in array_exprs {
                    m |= self.expr(e, &scopes, ctes);
                }
                scope.rels.push(Rel {
                    name: alias
                        .as_ref()
                        .map(|a| ident_fold(&a.name))
                        .unwrap_or_else(|| "unnest".to_owned()),
                    shape: Shape::Open(m),
                });
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let mut inner = Scope::default();
                self.bind_from(table_with_joins, &mut inner, outer, ctes);
                scope.merged |= inner.merged;
                match alias {
                    Some(a) => {
                        let m = inner.rels.iter().any(|r| r.shape.any());
                        scope.rels.push(Rel {
                            name: ident_fold(&a.name),
                            shape: Shape::Open(m),
                        });
                    }
                    None => scope.rels.extend(inner.rels),
                }
            }
            // Anything else: not followed.
            _ => {
                self.reads_masked = true;
                self.opaque = true;
                let m = self.has_masked();
                self.touch(m);
                scope.rels.push(Rel {
                    name: String::new(),
                    shape: Shape::Open(m),
                });
            }
        }
    }

    fn push_open(
        &mut self,
        scope: &mut Scope,
        name: &ObjectName,
        alias: Option<&TableAlias>,
        m: bool,
    ) {
        let fname = name_parts(name).last().cloned().unwrap_or_default();
        scope.rels.push(Rel {
            name: alias.map(|a| ident_fold(&a.name)).unwrap_or(fname),
            shape: Shape::Open(m),
        });
    }

    /// Whether a function's result is masked whatever its arguments: one
    /// not known to compute from its arguments alone (a user function may
    /// read any table), or one that runs a query or shows other sessions'.
    fn function_masked(&mut self, name: &ObjectName) -> bool {
        let folded = name_parts(name).join(".");
        let base = folded.rsplit('.').next().unwrap_or(&folded);
        let known = self.an.is_read_only_function(&folded)
            && !OPAQUE_FUNCTIONS.contains(&base)
            && !(self.schema.catalog_values == CatalogValues::Mask
                && super::VALUE_EXPOSING.contains(&base));
        if !known && self.has_masked() {
            self.reads_masked = true;
            self.opaque = true;
            self.touched = true;
            return true;
        }
        false
    }

    fn function_arg(&mut self, a: &FunctionArg, scopes: &[Scope], ctes: &Ctes) -> bool {
        let (FunctionArg::Named { arg, .. }
        | FunctionArg::ExprNamed { arg, .. }
        | FunctionArg::Unnamed(arg)) = a;
        match arg {
            FunctionArgExpr::Expr(e) => self.expr(e, scopes, ctes),
            FunctionArgExpr::QualifiedWildcard(n) => self.whole_row(&name_parts(n), scopes),
            FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => {
                let m = scopes
                    .last()
                    .is_some_and(|s| s.rels.iter().any(|r| r.shape.any()));
                self.touch(m);
                m
            }
        }
    }

    /// A whole-row reference `t.*` (or `t` as a value): masked if any column is.
    fn whole_row(&mut self, parts: &[String], scopes: &[Scope]) -> bool {
        let m = match parts.last().and_then(|q| find_rel(scopes, q)) {
            Some(shape) => shape.any(),
            None => self.has_masked(),
        };
        self.touch(m);
        m
    }

    /// An expression in a predicate position: it does not reach the output,
    /// but a masked value in it is the `masked_column_predicate` fact.
    fn predicate(&mut self, e: &Expr, scopes: &[Scope], ctes: &Ctes) {
        if self.expr(e, scopes, ctes) {
            self.predicate = true;
        }
    }

    /// Whether an expression's value may carry a masked value.
    fn expr(&mut self, e: &Expr, scopes: &[Scope], ctes: &Ctes) -> bool {
        let mut v = ExprTaint {
            walk: self,
            scopes,
            ctes,
            skip: 0,
            masked: false,
        };
        let _ = e.visit(&mut v);
        v.masked
    }

    /// Resolves a column reference (or a whole-row reference) against the
    /// scopes, innermost first.
    fn resolve(&mut self, parts: &[String], scopes: &[Scope]) -> bool {
        let m = match parts {
            [] => false,
            [one] => {
                let mut found: Option<bool> = None;
                for scope in scopes.iter().rev() {
                    for r in &scope.rels {
                        if let Some(m) = r.shape.column(one) {
                            found = Some(found.unwrap_or(false) || m);
                        }
                    }
                    if found.is_some() {
                        break;
                    }
                }
                // Also a whole-row reference, if a relation has that name.
                let whole = find_rel(scopes, one).map(|s| s.any());
                match (found, whole) {
                    (None, None) => !VALUE_KEYWORDS.contains(&one.as_str()) && self.has_masked(),
                    (a, b) => a.unwrap_or(false) || b.unwrap_or(false),
                }
            }
            [.., q, col] => {
                // `t.col` or `s.t.col`: the relation's column. Without such
                // a relation, `composite.field` (or `t.composite.field`):
                // the whole column or row it is taken from.
                if let Some(shape) = find_rel(scopes, q) {
                    shape.column(col).unwrap_or(self.schema.has_masked)
                } else {
                    let first = parts.first().cloned().unwrap_or_default();
                    let mut m = self.resolve(std::slice::from_ref(&first), scopes);
                    if let (Some(shape), Some(second)) = (find_rel(scopes, &first), parts.get(1)) {
                        m |= shape.column(second).unwrap_or(self.schema.has_masked);
                    }
                    m
                }
            }
        };
        self.touch(m);
        m
    }
}

/// The relation bound under `name`, innermost scope first.
fn find_rel(scopes: &[Scope], name: &str) -> Option<Shape> {
    scopes
        .iter()
        .rev()
        .find_map(|s| s.rels.iter().find(|r| r.name == name))
        .map(|r| r.shape.clone())
}

fn assignment_columns(t: &AssignmentTarget) -> Vec<String> {
    let last = |n: &ObjectName| name_parts(n).last().cloned().unwrap_or_default();
    match t {
        AssignmentTarget::ColumnName(n) => vec![last(n)],
        AssignmentTarget::Tuple(v) => v.iter().map(last).collect(),
    }
}

fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> CopyFormat {
    let mut format = "text".to_owned();
    let mut delimiter: Option<char> = None;
    let mut quote = '"';
    let mut escape: Option<char> = None;
    let mut header = false;
    let mut unknown = false;
    for o in options {
        match o {
            CopyOption::Format(f) => format = f.value.to_ascii_lowercase(),
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Quote(c) => quote = *c,
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Header(h) => header = *h,
            CopyOption::Null(_)
            | CopyOption::ForceQuote(_)
            | CopyOption::ForceNotNull(_)
            | CopyOption::ForceNull(_)
            | CopyOption::Freeze(_) => {}
            CopyOption::Encoding(_) => unknown = true,
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => format = "binary".to_owned(),
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Csv(opts) => {
                format = "csv".to_owned();
                for c in opts {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(q) => quote = *q,
                        CopyLegacyCsvOption::Escape(e) => escape = Some(*e),
                        CopyLegacyCsvOption::ForceQuote(_)
                        | CopyLegacyCsvOption::ForceNotNull(_) => {}
                    }
                }
            }
            CopyLegacyOption::Null(_) => {}
            _ => unknown = true,
        }
    }
    let byte = |c: char| u8::try_from(u32::from(c)).ok().filter(u8::is_ascii);
    if unknown {
        return CopyFormat::Unknown;
    }
    match format.as_str() {
        "text" => match byte(delimiter.unwrap_or('\t')) {
            Some(d) => CopyFormat::Text { delimiter: d },
            None => CopyFormat::Unknown,
        },
        "csv" => match (
            byte(delimiter.unwrap_or(',')),
            byte(quote),
            byte(escape.unwrap_or(quote)),
        ) {
            (Some(delimiter), Some(quote), Some(escape)) => CopyFormat::Csv {
                delimiter,
                quote,
                escape,
                header,
            },
            _ => CopyFormat::Unknown,
        },
        "binary" => CopyFormat::Binary,
        _ => CopyFormat::Unknown,
    }
}

/// Finds whether an expression carries a masked value.
struct ExprTaint<'w, 'a, 's> {
    walk: &'w mut Walk<'a>,
    scopes: &'s [Scope],
    ctes: &'s Ctes,
    /// Depth of subqueries around the current node (walked on their own).
    skip: usize,
    masked: bool,
}

impl Visitor for ExprTaint<'_, '_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.skip == 0 {
            // A subquery's value (scalar, EXISTS, IN, ARRAY) may depend on
            // any value it touches, its WHERE included.
            let before = std::mem::replace(&mut self.walk.touched, false);
            let predicate_before = self.walk.predicate;
            let shape = self.walk.query(q, self.scopes, self.ctes);
            self.masked |= shape.any() || self.walk.touched;
            self.walk.touched |= before;
            // Inside an expression a predicate's value reaches the output
            // (counted above), so it is not only a predicate.
            self.walk.predicate = predicate_before || self.walk.predicate;
        }
        self.skip += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.skip = self.skip.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.skip > 0 {
            return ControlFlow::Continue(());
        }
        match e {
            Expr::Identifier(i) => {
                self.masked |= self.walk.resolve(&[ident_fold(i)], self.scopes);
            }
            Expr::CompoundIdentifier(v) => {
                let parts: Vec<String> = v.iter().map(ident_fold).collect();
                self.masked |= self.walk.resolve(&parts, self.scopes);
            }
            Expr::Function(f) => self.function(f),
            Expr::Wildcard(_) => {
                let m = self
                    .scopes
                    .last()
                    .is_some_and(|s| s.rels.iter().any(|r| r.shape.any()));
                self.walk.touch(m);
                self.masked |= m;
            }
            Expr::QualifiedWildcard(n, _) => {
                self.masked |= self.walk.whole_row(&name_parts(n), self.scopes);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl ExprTaint<'_, '_, '_> {
    fn function(&mut self, f: &Function) {
        let m = self.walk.function_masked(&f.name);
        self.masked |= m;
        // Wildcard arguments are not expressions the visitor sees.
        let mut args_masked = false;
        if let FunctionArguments::List(list) = &f.args {
            let base = name_parts(&f.name).last().cloned().unwrap_or_default();
            for a in &list.args {
                let (FunctionArg::Named { arg, .. }
                | FunctionArg::ExprNamed { arg, .. }
                | FunctionArg::Unnamed(arg)) = a;
                match arg {
                    FunctionArgExpr::Wildcard if base == "count" => {}
                    FunctionArgExpr::Expr(e) => {
                        // Seen again by the visitor; here only to know
                        // whether a masked value goes into the function.
                        let before = self.walk.touched;
                        args_masked |= self.walk.expr(e, self.scopes, self.ctes);
                        self.walk.touched |= before;
                    }
                    _ => {
                        let m = self.walk.function_arg(a, self.scopes, self.ctes);
                        self.masked |= m;
                        args_masked |= m;
                    }
                }
            }
        }
        // A masked value handed to a function that may change something
        // (pg_notify, a user function) may leave by another way.
        let folded = name_parts(&f.name).join(".");
        if args_masked && !self.walk.an.is_read_only_function(&folded) {
            self.walk.moves = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> LineageSchema {
        let mut s = LineageSchema::new();
        s.add_table(
            "shop",
            "customers",
            [("id", false), ("name", false), ("api_key", true)],
        );
        s.add_table("shop", "orders", [("id", false), ("customer_id", false)]);
        s.add_view(
            "shop",
            "v_keys",
            [("id", false), ("k", false)],
            "SELECT id, api_key AS k FROM shop.customers",
        );
        s.add_view("shop", "v_v", [("k", false)], "SELECT k FROM v_keys");
        s.add_view(
            "shop",
            "v_names",
            [("id", false), ("name", false)],
            "SELECT id, name FROM customers",
        );
        s.finish()
    }

    fn out(sql: &str) -> Lineage {
        let l = lineage(sql, &schema());
        assert_eq!(l.len(), 1, "{sql}");
        l.into_iter().next().map(|s| s.output).unwrap()
    }

    #[test]
    fn only_what_is_proven_clean_is_clean() {
        use Lineage::{Columns, Uniform};
        let cases: &[(&str, Lineage)] = &[
            (
                "SELECT id, name FROM customers",
                Columns(vec![false, false]),
            ),
            (
                "SELECT id, api_key FROM customers",
                Columns(vec![false, true]),
            ),
            ("SELECT * FROM customers", Columns(vec![false, false, true])),
            (
                "SELECT c.* FROM customers c",
                Columns(vec![false, false, true]),
            ),
            (
                "SELECT o.*, c.name FROM orders o JOIN customers c ON c.id = o.customer_id",
                Columns(vec![false, false, false]),
            ),
            (
                "SELECT 1, 'x', NULL, $1",
                Columns(vec![false, false, false, false]),
            ),
            (
                "SELECT upper(name) || 'x', length(name) FROM customers",
                Columns(vec![false, false]),
            ),
            ("SELECT length(api_key) FROM customers", Columns(vec![true])),
            ("SELECT count(*) FROM customers", Columns(vec![false])),
            ("SELECT count(api_key) FROM customers", Columns(vec![true])),
            ("SELECT c FROM customers c", Columns(vec![true])),
            ("SELECT (c).name FROM customers c", Columns(vec![true])),
            (
                "SELECT name FROM (SELECT name, api_key FROM customers) s",
                Columns(vec![false]),
            ),
            (
                "SELECT s.k FROM (SELECT api_key AS k FROM customers) s",
                Columns(vec![true]),
            ),
            (
                "SELECT a FROM (SELECT api_key FROM customers) s(a)",
                Columns(vec![true]),
            ),
            (
                "WITH w AS (SELECT name FROM customers) SELECT * FROM w",
                Columns(vec![false]),
            ),
            (
                "WITH w(x) AS (SELECT api_key FROM customers) SELECT x FROM w",
                Columns(vec![true]),
            ),
            (
                "SELECT name FROM customers UNION SELECT api_key FROM customers",
                Columns(vec![true]),
            ),
            (
                "SELECT id FROM customers UNION SELECT id FROM orders",
                Columns(vec![false]),
            ),
            (
                "VALUES (1, (SELECT api_key FROM customers LIMIT 1))",
                Columns(vec![false, true]),
            ),
            ("SELECT * FROM v_keys", Columns(vec![false, true])),
            ("SELECT * FROM v_v", Columns(vec![true])),
            ("SELECT * FROM v_names", Columns(vec![false, false])),
            ("SELECT my_func(id) FROM customers", Columns(vec![true])),
            ("SELECT now()", Columns(vec![false])),
            ("SELECT * FROM pg_stat_activity", Uniform(true)),
            ("SELECT * FROM pg_class", Uniform(false)),
            ("SELECT * FROM not_in_the_schema", Uniform(true)),
            (
                "SELECT * FROM orders JOIN customers USING (id)",
                Uniform(true),
            ),
            ("SELECT * FROM generate_series(1, 3)", Uniform(false)),
            (
                "SELECT g FROM customers c, generate_series(1, length(c.api_key)) g",
                Columns(vec![true]),
            ),
            ("FETCH ALL FROM c", Uniform(true)),
            ("EXECUTE p", Uniform(true)),
            ("SHOW search_path", Uniform(false)),
            (
                "UPDATE customers SET name = 'x' RETURNING id, name, api_key",
                Columns(vec![false, false, true]),
            ),
            (
                "UPDATE customers SET name = api_key RETURNING name",
                Columns(vec![true]),
            ),
            (
                "DELETE FROM customers WHERE id = 1 RETURNING *",
                Columns(vec![false, false, true]),
            ),
            (
                "INSERT INTO orders VALUES (1, 2) RETURNING *",
                Columns(vec![false, false]),
            ),
            (
                "COPY customers (id, api_key) TO STDOUT",
                Columns(vec![false, true]),
            ),
            (
                "COPY (SELECT name FROM customers) TO STDOUT",
                Columns(vec![false]),
            ),
            ("this is not sql", Uniform(true)),
        ];
        for (sql, want) in cases {
            assert_eq!(&out(sql), want, "{sql}");
        }
    }

    #[test]
    fn writes_that_move_masked_values_and_predicates_are_reported() {
        let s = schema();
        let one = |sql: &str| lineage(sql, &s).into_iter().next().unwrap();
        for sql in [
            "UPDATE customers SET name = api_key",
            "INSERT INTO orders (id, customer_id) SELECT id, length(api_key) FROM customers",
            "CREATE TABLE t AS SELECT api_key FROM customers",
            "SELECT api_key INTO t FROM customers",
            "SELECT pg_notify('c', api_key) FROM customers",
            "PREPARE p AS UPDATE customers SET name = api_key",
            "ALTER TABLE customers RENAME COLUMN api_key TO k",
            "ALTER TABLE customers RENAME TO c2",
            "COPY (SELECT api_key FROM customers) TO '/tmp/x'",
        ] {
            assert!(one(sql).moves_masked, "{sql}");
        }
        for sql in [
            "UPDATE customers SET api_key = upper(api_key)",
            "INSERT INTO orders SELECT id, id FROM customers",
            "CREATE TABLE t AS SELECT name FROM customers",
            "ALTER TABLE customers RENAME COLUMN name TO n",
            "ALTER TABLE orders RENAME TO o2",
        ] {
            assert!(!one(sql).moves_masked, "{sql}");
        }
        for sql in [
            "SELECT id FROM customers WHERE api_key LIKE 'pk%'",
            "SELECT id FROM customers c WHERE c::text LIKE '%pk%'",
            "SELECT id FROM v_keys ORDER BY k",
            "SELECT count(*) FROM customers GROUP BY api_key",
            "SELECT o.id FROM orders o JOIN customers c ON c.api_key = 'x'",
        ] {
            assert!(one(sql).masked_predicate, "{sql}");
        }
        assert!(!one("SELECT id FROM customers WHERE name = 'x'").masked_predicate);
        assert!(one("SELECT api_key::int FROM customers").reads_masked);
        assert!(one("SELECT id FROM v_names").reads_masked);
        assert!(!one("SELECT id FROM orders").reads_masked);
        assert!(one("SELECT my_func()").opaque);
        assert!(!one("SELECT upper(name) FROM customers").opaque);
    }

    #[test]
    fn copy_formats_follow_the_options() {
        let s = schema();
        let copy = |sql: &str| lineage(sql, &s).into_iter().next().and_then(|l| l.copy);
        assert_eq!(
            copy("COPY customers TO STDOUT"),
            Some(CopyFormat::Text { delimiter: b'\t' })
        );
        assert_eq!(
            copy("COPY customers TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';')"),
            Some(CopyFormat::Csv {
                delimiter: b';',
                quote: b'"',
                escape: b'"',
                header: true
            })
        );
        assert_eq!(
            copy("COPY customers TO STDOUT WITH (FORMAT binary)"),
            Some(CopyFormat::Binary)
        );
        assert_eq!(
            copy("COPY customers TO STDOUT WITH (FORMAT csv, ENCODING 'LATIN1')"),
            Some(CopyFormat::Unknown)
        );
    }

    #[test]
    fn nothing_is_masked_without_a_masked_column() {
        let mut s = LineageSchema::new();
        s.add_table("shop", "orders", [("id", false)]);
        let s = s.finish();
        let l = lineage("SELECT my_func(), * FROM whatever; FETCH ALL FROM c", &s);
        assert_eq!(l.len(), 1);
        assert!(l.iter().all(|l| !l.output.any_masked() && !l.reads_masked));
    }
}
