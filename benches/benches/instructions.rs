//! Deterministic instruction counts of the hot paths (gungraun on Valgrind's
//! callgrind), the figures CI guards:
//!
//! - `mask`: the masker with the full default catalogue over 256 KiB of the
//!   bench corpora, whole-buffer and streamed in 8 KiB chunks, clean and dense;
//! - `policy`: `Policy::evaluate` against the 20-rule policy of
//!   `benches/policy.rs` for the pgbench select and the 3-table join, with the
//!   decision cache off (parse + analysis + evaluation) and on (a cache hit);
//! - `pg`: a ready `portcullis_pg::Session` fed a 10,000-row result in 64 KiB
//!   reads, every row forwarded untouched and with one column transformed
//!   (`benches/pg.rs` forward-untouched and transform-one-column).
//!
//! Setup (building the masker and warming its lazy DFAs, parsing the policy,
//! logging the session in, generating the input) and teardown (dropping all
//! of it) run outside the counted region. Needs Valgrind and `gungraun-runner` of the same version as the
//! `gungraun` crate; run it through `scripts/instructions.sh`, which installs
//! the runner, compares the counts with the committed baseline
//! `benches/instructions.baseline` and fails on growth of more than 3 %.
// A bench harness: a broken setup should stop it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use gungraun::{library_benchmark, library_benchmark_group, main};
use portcullis_benches::corpus;
use portcullis_mask::Masker;
use portcullis_pg::{
    Authenticated, BackendAddr, BackendTarget, BackendTls, CancelKey, Column, Context, FieldValue,
    Session, SessionConfig, SessionId, Transform, Verdict,
};
use portcullis_policy::{
    Decision, Policy, Principal, PrincipalKind, Request, Resource, ResourceKind,
};

// --- The masker ---------------------------------------------------------------

const LEN: usize = 256 << 10;
const CHUNK: usize = 8 << 10;

/// A warmed masker and the corpus.
fn mask_setup(name: &str) -> (Masker, Vec<u8>) {
    let data = match name {
        "clean" => corpus::no_secrets(LEN, 1),
        "dense" => corpus::dense(LEN, 2),
        other => panic!("unknown corpus {other}"),
    };
    let masker = Masker::builder().build().unwrap();
    black_box(masker.mask(&data).findings().len());
    black_box(stream(&masker, &data));
    (masker, data)
}

fn stream(masker: &Masker, data: &[u8]) -> usize {
    let mut out = Vec::with_capacity(2 * CHUNK + masker.holdback());
    let mut s = masker.stream();
    let mut findings = 0;
    for chunk in data.chunks(CHUNK) {
        out.clear();
        findings += s.push(chunk, &mut out).len();
    }
    out.clear();
    findings + s.finish(&mut out).len()
}

// Each benchmark returns its inputs, which `drop_after` drops outside the
// counted region (dropping a masker's DFAs would otherwise dominate).
#[library_benchmark]
#[bench::clean(args = ("clean"), setup = mask_setup, teardown = drop_after)]
#[bench::dense(args = ("dense"), setup = mask_setup, teardown = drop_after)]
fn whole((masker, data): (Masker, Vec<u8>)) -> (Masker, Vec<u8>) {
    black_box(masker.mask(black_box(&data)).findings().len());
    (masker, data)
}

#[library_benchmark]
#[bench::clean(args = ("clean"), setup = mask_setup, teardown = drop_after)]
#[bench::dense(args = ("dense"), setup = mask_setup, teardown = drop_after)]
fn stream_8k((masker, data): (Masker, Vec<u8>)) -> (Masker, Vec<u8>) {
    black_box(stream(&masker, black_box(&data)));
    (masker, data)
}

/// The teardown of every benchmark: drops what it returned, uncounted.
fn drop_after<T>(value: T) {
    drop(black_box(value));
}

library_benchmark_group!(name = mask, benchmarks = [whole, stream_8k]);

// --- The policy decision --------------------------------------------------------

// The same policy as benches/policy.rs.
/// 20 rules in the shapes a deployment uses.
const POLICY: &str = r#"
default = "deny"
on_unparsed = "review"
[review]
groups = ["dba"]

[[rule]]
id = "r01-read-app-schemas"
effect = "allow"
when.sql.kind = { all = ["select"] }
when.sql.reads = { all = ["public.*", "sales.*", "reporting.*"] }
[rule.mask]
fields = [{ field = "public.users.email", action = "redact" }]

[[rule]]
id = "r02-pgbench"
effect = "allow"
when.principal.groups = ["bench", "loadtest"]
when.sql.kind = ["select", "insert", "update", "transaction"]
when.sql.objects = { all = ["public.pgbench_*"] }

[[rule]]
id = "r03-dangerous"
effect = "deny"
reason = "server functions"
when.sql.risk = "dangerous_function"

[[rule]]
id = "r04-copy-program"
effect = "deny"
when.sql.risk = ["copy_program", "copy_file"]

[[rule]]
id = "r05-privileges"
effect = "deny"
when.sql.risk = "changes_role_or_privilege"

[[rule]]
id = "r06-unsafe-settings"
effect = "deny"
when.sql.risk = "sets_unsafe_parameter"

[[rule]]
id = "r07-opaque"
effect = "review"
when.sql.risk = "opaque_code"

[[rule]]
id = "r08-no-where"
effect = "deny"
when.sql.risk = "no_where"

[[rule]]
id = "r09-prod-writes"
effect = "review"
when.resource.labels.env = "prod"
when.principal.kind = "agent"
when.sql.kind = ["insert", "update", "delete", "merge"]
when.sql.writes = { none = ["public.pgbench_*"] }

[[rule]]
id = "r10-ddl"
effect = "deny"
when.principal.kind = { none = ["human"] }
when.sql.kind = ["create", "alter", "drop", "truncate"]

[[rule]]
id = "r11-pii-read"
effect = "review"
when.sql.reads = "pii.*"

[[rule]]
id = "r12-ssn-predicate"
effect = "deny"
when.sql.predicate_columns = ["*.ssn", "*.tax_id"]

[[rule]]
id = "r13-secrets-table"
effect = "deny"
when.sql.objects = ["*.secrets", "*.api_keys", "vault.*"]

[[rule]]
id = "r14-transactions"
effect = "allow"
when.sql.kind = "transaction"

[[rule]]
id = "r15-service-etl"
effect = "allow"
when.principal.id = "svc-etl-*"
when.resource.name = "warehouse-*"
when.sql.kind = ["insert", "copy"]

[[rule]]
id = "r16-maintenance"
effect = "review"
when.sql.kind = "maintenance"

[[rule]]
id = "r17-computed-email"
effect = "review"
when.sql.computed_columns = "public.users.email"

[[rule]]
id = "r18-k8s-read"
effect = "allow"
when.k8s.verb = ["get", "list", "watch"]

[[rule]]
id = "r19-k8s-exec"
effect = "deny"
when.k8s.verb = ["exec", "attach", "portforward"]

[[rule]]
id = "r20-k8s-escalation"
effect = "deny"
when.k8s.risk = ["privileged", "host_path", "host_pid", "host_network", "cluster_admin_binding", "impersonation"]
"#;

const PGBENCH_S: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
const JOIN3: &str = "SELECT c.name, o.id, o.total, i.sku FROM sales.customers c \
    JOIN sales.orders o ON o.customer_id = c.id JOIN sales.order_items i ON i.order_id = o.id \
    WHERE c.region = 'EU' AND o.created_at >= '2026-01-01' AND i.qty > 2 ORDER BY o.total DESC LIMIT 50";

/// The policy (decision cache on or off), the request's parties and the SQL.
fn policy_setup(cached: bool, sql: &'static str) -> (Policy, Principal, Resource, &'static str) {
    let text = if cached {
        POLICY.to_owned()
    } else {
        format!("decision_cache_entries = 0\n{POLICY}")
    };
    let policy = Policy::from_toml_str(&text).expect("bench policy");
    let principal =
        Principal::new("agent-7", PrincipalKind::Agent).with_groups(["agents", "bench"]);
    let resource = Resource::new("orders-db", ResourceKind::Postgres).with_label("env", "prod");
    // Warm: fills the cache when it is on.
    black_box(policy.evaluate(&Request::sql(&principal, &resource, sql)));
    (policy, principal, resource, sql)
}

#[library_benchmark]
#[bench::pgbench_select(args = (false, PGBENCH_S), setup = policy_setup, teardown = drop_after)]
#[bench::join3(args = (false, JOIN3), setup = policy_setup, teardown = drop_after)]
#[bench::pgbench_select_cached(args = (true, PGBENCH_S), setup = policy_setup, teardown = drop_after)]
fn decision(
    (policy, principal, resource, sql): (Policy, Principal, Resource, &'static str),
) -> (Decision, Policy, Principal, Resource) {
    let d = policy.evaluate(&Request::sql(&principal, &resource, black_box(sql)));
    (black_box(d), policy, principal, resource)
}

library_benchmark_group!(name = policy, benchmarks = [decision]);

// --- The DataRow transform ------------------------------------------------------

// The same hook, session and result as benches/pg.rs.
struct Bench {
    transform: bool,
}

impl Transform for Bench {
    type Principal = ();
    type Plan = ();
    type ColumnPlan = ();

    fn on_row_description(
        &self,
        _: &Context<'_, ()>,
        _: &(),
        columns: &[Column],
    ) -> Vec<(usize, ())> {
        if self.transform {
            columns
                .iter()
                .filter(|c| c.name == "secret")
                .map(|c| (c.index, ()))
                .collect()
        } else {
            Vec::new()
        }
    }

    fn transform_field(
        &self,
        _: &Context<'_, ()>,
        _: &(),
        _: &Column,
        _: &(),
        value: &[u8],
    ) -> FieldValue {
        FieldValue::Replace(value.to_ascii_uppercase())
    }
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn row_description(names: &[&str]) -> Vec<u8> {
    let mut b = (names.len() as i16).to_be_bytes().to_vec();
    for n in names {
        b.extend_from_slice(n.as_bytes());
        b.push(0);
        b.extend_from_slice(&[
            0, 0, 64, 0, 0, 1, 0, 0, 0, 25, 255, 255, 255, 255, 255, 255, 0, 0,
        ]);
    }
    frame(b'T', &b)
}

fn data_row(i: usize) -> Vec<u8> {
    let values = [
        i.to_string(),
        format!("user{i}@example.com"),
        format!("s3cr3t-{i:08}"),
        "2026-01-01".to_string(),
    ];
    let mut b = 4i16.to_be_bytes().to_vec();
    for v in &values {
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    frame(b'D', &b)
}

/// A session logged in and waiting for the result of one forwarded query.
fn ready_session(transform: bool) -> Session<Bench> {
    let now = Instant::now();
    let config = SessionConfig {
        loopback: true,
        ..SessionConfig::default()
    };
    let mut s = Session::new(
        SessionId(1),
        config,
        Arc::new(Bench { transform }),
        CancelKey { pid: 1, secret: 1 },
        now,
    );
    s.handle_client_data(now, b"\0\0\0\x10\0\x03\0\0user\0u\0\0");
    s.handle_client_data(now, b"p\0\0\0\x06t\0");
    let backend = BackendTarget {
        addr: BackendAddr::Tcp {
            host: String::new(),
            port: 0,
        },
        database: "d".into(),
        user: "u".into(),
        password: "p".into(),
        tls: BackendTls::Disable,
        // The scripted backend below answers AuthenticationOk at once.
        allow: {
            let mut allow = portcullis_pg::Allowances::default();
            allow.backend_trust = true;
            allow
        },
    };
    s.handle_authenticated(
        now,
        Ok(Authenticated {
            principal: (),
            backend,
        }),
    );
    s.handle_backend_connected(now);
    s.handle_backend_data(now, b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I");
    s.handle_client_data(now, &frame(b'Q', b"select * from t\0"));
    s.handle_verdict(now, Verdict::Forward(()));
    while s.poll().is_some() {}
    while s.poll_client_transmit().is_some() {}
    while s.poll_backend_transmit().is_some() {}
    s
}

fn result_bytes() -> Vec<u8> {
    let mut out = row_description(&["id", "email", "secret", "day"]);
    for i in 0..10_000 {
        out.extend(data_row(i));
    }
    out.extend(frame(b'C', b"SELECT 10000\0"));
    out.extend(frame(b'Z', b"I"));
    out
}

/// A ready session (one column transformed) and the result bytes.
fn pg_setup() -> (Session<Bench>, Vec<u8>) {
    (ready_session(true), result_bytes())
}

/// A ready session whose hook chooses no column (every row forwarded
/// untouched) and the result bytes.
fn pg_setup_untouched() -> (Session<Bench>, Vec<u8>) {
    (ready_session(false), result_bytes())
}

#[library_benchmark]
#[bench::forward_untouched(setup = pg_setup_untouched, teardown = drop_after)]
#[bench::transform_one_column(setup = pg_setup, teardown = drop_after)]
fn session_10k_rows((mut s, result): (Session<Bench>, Vec<u8>)) -> (Session<Bench>, Vec<u8>) {
    let now = Instant::now();
    let mut sent = 0;
    for chunk in result.chunks(64 * 1024) {
        s.handle_backend_data(now, chunk);
        while let Some(b) = s.poll_client_transmit() {
            sent += b.len();
        }
    }
    while s.poll().is_some() {}
    black_box(sent);
    (s, result)
}

library_benchmark_group!(name = pg, benchmarks = [session_10k_rows]);

main!(library_benchmark_groups = mask, policy, pg);
