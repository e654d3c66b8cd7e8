//! The classifier over the SQL corpus in testdata/policy/corpus: the share of
//! statements classified, that no statement that writes is `read_only`, and
//! (against a real PostgreSQL) that PostgreSQL runs every `read_only`
//! statement inside a `BEGIN READ ONLY` transaction without refusing it as a
//! write (SQLSTATE 25006).

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

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
