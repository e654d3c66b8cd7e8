//! What the fail-closed lineage costs per statement: `portcullis_policy::lineage`
//! against a schema with a masked column, which the gateway runs once per
//! simple Query and once per Parse (executions reuse it) when field rules
//! are configured. Rows are not involved: a result's columns are decided
//! once, at its RowDescription.
//!
//! ```text
//! cargo bench -p portcullis-benches --bench lineage
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_policy::{LineageSchema, lineage};

fn schema() -> LineageSchema {
    let mut s = LineageSchema::new();
    s.add_table(
        "shop",
        "customers",
        [
            ("id", false),
            ("name", false),
            ("email", false),
            ("api_key", true),
            ("notes", false),
        ],
    );
    s.add_table(
        "shop",
        "orders",
        [
            ("id", false),
            ("customer_id", false),
            ("amount", false),
            ("status", false),
        ],
    );
    s.add_table(
        "public",
        "pgbench_accounts",
        [
            ("aid", false),
            ("bid", false),
            ("abalance", false),
            ("filler", false),
        ],
    );
    s.add_view(
        "shop",
        "v_keys",
        [("id", false), ("k", false)],
        "SELECT id, api_key AS k FROM shop.customers",
    );
    s.finish()
}

fn bench(c: &mut Criterion) {
    let schema = schema();
    let mut g = c.benchmark_group("lineage");
    for (name, sql) in [
        (
            "pgbench_select",
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        ),
        (
            "masked_select",
            "SELECT id, name, api_key FROM customers WHERE id = $1",
        ),
        (
            "join_subquery",
            "SELECT o.id, o.amount, c.name, (SELECT count(*) FROM orders o2 \
             WHERE o2.customer_id = c.id) FROM orders o JOIN customers c \
             ON c.id = o.customer_id WHERE o.status = 'shipped' ORDER BY o.id",
        ),
        (
            "cte_union_view",
            "WITH k AS (SELECT id, upper(name) AS n FROM customers) \
             SELECT n FROM k UNION ALL SELECT k FROM v_keys",
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(lineage(black_box(sql), &schema)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
