//! PostgreSQL session throughput: one result of 10,000 DataRows (4 text
//! columns) fed through a ready `portcullis_pg::Session` in 64 KiB reads,
//! with no column chosen for transformation (frames forwarded as they are),
//! with one column transformed, and beside them the baseline of copying the
//! same bytes once (what any proxy must at least do).
//!
//! `cargo bench -p portcullis-benches --bench pg`. Figures are recorded in BENCHMARKS.md.
// A bench harness: a broken setup should stop it loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_pg::{
    Authenticated, BackendAddr, BackendTarget, BackendTls, CancelKey, Column, Context, FieldValue,
    Session, SessionConfig, SessionId, Transform, Verdict,
};

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

fn run(transform: bool, result: &[u8]) -> usize {
    let mut s = ready_session(transform);
    let now = Instant::now();
    let mut sent = 0;
    for chunk in result.chunks(64 * 1024) {
        s.handle_backend_data(now, chunk);
        while let Some(b) = s.poll_client_transmit() {
            sent += b.len();
        }
    }
    while s.poll().is_some() {}
    sent
}

fn bench(c: &mut Criterion) {
    let result = result_bytes();
    assert_eq!(run(false, &result), result.len());
    let mut g = c.benchmark_group("pg/session-10k-rows");
    g.throughput(Throughput::Bytes(result.len() as u64));
    g.sample_size(20);
    g.bench_function("copy-baseline", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(result.len());
            for chunk in result.chunks(64 * 1024) {
                out.extend_from_slice(chunk);
            }
            black_box(out.len())
        })
    });
    g.bench_function("forward-untouched", |b| {
        b.iter(|| black_box(run(false, &result)))
    });
    g.bench_function("transform-one-column", |b| {
        b.iter(|| black_box(run(true, &result)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
