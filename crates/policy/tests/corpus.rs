//! The classifier over the SQL corpus in testdata/policy/corpus: the share of
//! statements classified, that no statement that writes is `read_only`, and
//! (against a real PostgreSQL) that PostgreSQL runs every `read_only`
//! statement inside a `BEGIN READ ONLY` transaction without refusing it as a
//! write (SQLSTATE 25006).

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use portcullis_policy::{StatementFacts, StatementKind, analyze};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/policy/corpus")
}

/// The statements of a corpus file (blocks separated by `---` lines).
fn blocks(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(corpus_dir().join(name)).unwrap();
    text.split("\n---\n")
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
        .collect()
}

fn classified(f: &StatementFacts) -> bool {
    !f.unparsed || f.kind != StatementKind::Other
}

#[test]
fn corpus_is_classified_and_no_write_is_read_only() {
    let reads = blocks("reads.sql");
    let writes = blocks("writes.sql");
    assert!(
        reads.len() >= 200 && writes.len() >= 450,
        "corpus too small"
    );
    let mut total = 0usize;
    let mut parsed = 0usize;
    let mut ok = 0usize;
    let mut unclassified = Vec::new();
    let mut problems = Vec::new();
    let mut reads_read_only = 0usize;
    for (file, list) in [("reads.sql", &reads), ("writes.sql", &writes)] {
        for b in list.iter() {
            let facts = analyze(b);
            assert!(!facts.is_empty(), "{file}: no statement in {b:?}");
            for f in &facts {
                total += 1;
                parsed += usize::from(!f.unparsed);
                if classified(f) {
                    ok += 1;
                } else {
                    unclassified.push(format!("{file}: {b}  ({:?})", f.parse_error));
                }
            }
            let all_read_only = facts.iter().all(|f| f.read_only);
            if file == "writes.sql" && all_read_only {
                problems.push(format!("writes but classified read_only: {b}"));
            }
            if file == "reads.sql" && all_read_only {
                reads_read_only += 1;
            }
        }
    }
    let share = ok as f64 / total as f64;
    eprintln!(
        "corpus: {total} statements, {parsed} parsed by sqlparser, {ok} classified ({:.2} %), \
         {reads_read_only} of {} non-writing blocks read_only",
        share * 100.0,
        reads.len()
    );
    for u in &unclassified {
        eprintln!("unclassified: {u}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(share >= 0.995, "only {:.2} % classified", share * 100.0);
    // Not a safety property: the read-only mode is usable when ordinary
    // reads are recognised as such.
    assert!(
        reads_read_only * 100 >= reads.len() * 90,
        "only {reads_read_only} of {} reads are read_only",
        reads.len()
    );
}

/// Every statement of the corpus that the analysis calls `read_only` is run
/// by PostgreSQL 15 inside `BEGIN READ ONLY` (through a PL/pgSQL `EXECUTE`
/// in a subtransaction, so one error does not end the others); PostgreSQL
/// must never refuse one as a write (25006).
#[test]
fn postgres_agrees_read_only_statements_do_not_write() {
    let pg = portcullis_testkit::PgCluster::start().unwrap();
    let fixture = std::fs::read_to_string(corpus_dir().join("fixture.sql")).unwrap();
    pg.execute(&fixture).unwrap();
    pg.execute(
        "CREATE FUNCTION try_ro(q text) RETURNS text LANGUAGE plpgsql AS $f$
         BEGIN EXECUTE q; RETURN 'ok';
         EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ' ' || SQLERRM; END $f$",
    )
    .unwrap();
    let mut statements = Vec::new();
    for file in ["reads.sql", "writes.sql"] {
        for b in blocks(file) {
            let facts = analyze(&b);
            // One statement per block keeps the text PostgreSQL runs equal
            // to the text analysed.
            if facts.len() == 1
                && facts.iter().all(|f| f.read_only)
                && !b.contains("$pq$")
                && !b.trim_end().ends_with(';')
            {
                statements.push(b);
            }
        }
    }
    assert!(statements.len() >= 150, "{} statements", statements.len());
    let mut script = String::from("BEGIN READ ONLY;\n");
    for (i, s) in statements.iter().enumerate() {
        script.push_str(&format!("SELECT 'R|{i}|' || try_ro($pq${s}$pq$);\n"));
    }
    script.push_str("ROLLBACK;\n");
    let out = pg.execute(&script).unwrap();
    let mut ran = 0;
    let mut refused = Vec::new();
    let mut other_errors = 0;
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("R|") else {
            continue;
        };
        let (i, result) = rest.split_once('|').unwrap();
        let i: usize = i.parse().unwrap();
        if result == "ok" {
            ran += 1;
        } else if result.starts_with("25006") {
            refused.push(format!("{}  => {result}", statements[i]));
        } else {
            other_errors += 1;
        }
    }
    eprintln!(
        "{} read_only statements: {ran} ran in a read-only transaction, \
         {other_errors} failed for other reasons (parameters, cursors, transaction control), {} refused as writes",
        statements.len(),
        refused.len()
    );
    assert!(
        refused.is_empty(),
        "PostgreSQL refused as writes:\n{}",
        refused.join("\n")
    );
    assert!(
        ran * 10 >= statements.len() * 6,
        "too few statements ran ({ran} of {}) for the comparison to mean much",
        statements.len()
    );
}

/// Generated statements (proptest strategies, drawn deterministically) that
/// mix read-only and writing parts: every one the analysis calls
/// `read_only` must run in a PostgreSQL `READ ONLY` transaction without
/// 25006, and each writing shape must be seen as not read_only.
#[test]
fn postgres_agrees_on_generated_statements() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let calls = prop::sample::select(vec![
        ("lower(title)", false),
        ("now()", false),
        ("random()", false),
        ("coalesce(kind, 'x')", false),
        ("length(title)", false),
        ("pg_catalog.upper(title)", false),
        ("pg_relation_size('films')", false),
        ("nextval('serial')", true),
        ("setval('serial', 5)", true),
        ("set_config('work_mem', '8MB', false)", true),
        ("pg_advisory_xact_lock(1)", true),
        ("pg_catalog.set_config('application_name', 'x', true)", true),
        ("txid_current()", true),
        ("lo_creat(-1)", true),
        ("pg_notify('c', 'x')", true),
    ]);
    let tails = prop::sample::select(vec![
        ("", false),
        (" WHERE did IS NULL LIMIT 3", false),
        (" FOR UPDATE", true),
        (" FOR SHARE", true),
        (" FOR NO KEY UPDATE SKIP LOCKED", true),
        (" FOR KEY SHARE NOWAIT", true),
    ]);
    let wrappers = prop::sample::select(vec![
        ("{}", false),
        ("EXPLAIN {}", false),
        ("EXPLAIN ANALYZE {}", false),
        ("EXPLAIN (ANALYZE, COSTS OFF) {}", false),
        ("WITH x AS ({}) SELECT * FROM x", false),
        ("SELECT * FROM ({}) AS s", false),
        (
            "WITH d AS (DELETE FROM films WHERE false RETURNING id) {}",
            true,
        ),
        (
            "WITH i AS (INSERT INTO films (title) SELECT 'x' WHERE false RETURNING id) {}",
            true,
        ),
    ]);
    let strategy = (calls, tails, wrappers, any::<bool>());
    let mut runner = TestRunner::deterministic();
    let mut statements = Vec::new();
    for _ in 0..300 {
        let ((call, w1), (tail, w2), (wrap, w3), into) =
            strategy.new_tree(&mut runner).unwrap().current();
        let into_clause = if into { " INTO TEMP tmp_into" } else { "" };
        let select = format!("SELECT {call} AS v{into_clause} FROM films{tail}");
        // `WITH x AS (… FOR UPDATE)` inside a subquery stays a row lock;
        // EXPLAIN of a CTE-wrapped statement is fine.
        let sql = wrap.replace("{}", &select);
        let writes = w1 || w2 || w3 || into;
        let explained_only = wrap.starts_with("EXPLAIN {") || wrap.starts_with("EXPLAIN ({");
        let facts = analyze(&sql);
        assert_eq!(facts.len(), 1, "{sql}");
        let ro = facts.iter().all(|f| f.read_only);
        if writes && !explained_only {
            assert!(!ro, "writes but read_only: {sql}");
        }
        if ro {
            statements.push(sql);
        }
    }
    statements.sort();
    statements.dedup();
    assert!(
        statements.len() >= 20,
        "{} read_only statements",
        statements.len()
    );
    let pg = portcullis_testkit::PgCluster::start().unwrap();
    let fixture = std::fs::read_to_string(corpus_dir().join("fixture.sql")).unwrap();
    pg.execute(&fixture).unwrap();
    pg.execute("INSERT INTO films (title, kind) VALUES ('a', 'b'), ('c', NULL)")
        .unwrap();
    pg.execute(
        "CREATE FUNCTION try_ro(q text) RETURNS text LANGUAGE plpgsql AS $f$
         BEGIN EXECUTE q; RETURN 'ok';
         EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ' ' || SQLERRM; END $f$",
    )
    .unwrap();
    let mut script = String::from("BEGIN READ ONLY;\n");
    for (i, s) in statements.iter().enumerate() {
        script.push_str(&format!("SELECT 'R|{i}|' || try_ro($pq${s}$pq$);\n"));
    }
    script.push_str("ROLLBACK;\n");
    let out = pg.execute(&script).unwrap();
    let mut ran = 0;
    let mut refused = Vec::new();
    let mut failed = Vec::new();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("R|") else {
            continue;
        };
        let (i, result) = rest.split_once('|').unwrap();
        let i: usize = i.parse().unwrap();
        if result == "ok" {
            ran += 1;
        } else if result.starts_with("25006") {
            refused.push(format!("{}  => {result}", statements[i]));
        } else {
            failed.push(format!("{}  => {result}", statements[i]));
        }
    }
    eprintln!(
        "generated: {} read_only statements, {ran} ran in a read-only transaction, {} refused",
        statements.len(),
        refused.len()
    );
    assert!(
        refused.is_empty(),
        "PostgreSQL refused as writes:\n{}",
        refused.join("\n")
    );
    assert!(
        failed.is_empty(),
        "failed for other reasons:\n{}",
        failed.join("\n")
    );
    assert_eq!(ran, statements.len());
}
