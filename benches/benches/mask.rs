//! Masking throughput: portcullis-mask (whole buffer and 8 KiB streaming,
//! full default catalogue; and whole buffer restricted to [`EQUIVALENT`], the
//! detectors equivalent to the peer's rules) on three deterministic 1 MiB
//! corpora, and with `--features peers` Datadog's `dd-sensitive-data-scanner`
//! on the same input with equivalent rules (the PII ones and 22 common secret
//! formats). The Datadog crate ships no default rule catalogue (its rule
//! library is served by Datadog's service, not the crate), so the "each
//! engine's full default catalogue" comparison is ours in full against those
//! 29 rules, the most the crate can be given without writing rules for it.
//!
//! `cargo bench -p portcullis-benches --bench mask` (add `--features peers`
//! for the peer). Figures are recorded in BENCHMARKS.md.
// A bench harness: a broken setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_benches::corpus;
use portcullis_mask::Masker;

const LEN: usize = 1 << 20;
const CHUNK: usize = 8 << 10;

fn corpora() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("no-secrets", corpus::no_secrets(LEN, 1)),
        ("dense", corpus::dense(LEN, 2)),
        ("base64", corpus::base64_blobs(LEN, 3)),
    ]
}

/// Our detectors equivalent to the 29 Datadog rules below (in their order;
/// `sk_live_`/`rk_live_` is two detectors here, `private_key_id` is the
/// service-account key's `private_key` here).
const EQUIVALENT: &[&str] = &[
    "email",
    "credit-card",
    "iban",
    "phone",
    "us-ssn",
    "ipv4",
    "ipv6",
    "aws-access-key-id",
    "aws-secret-access-key",
    "github-pat",
    "github-fine-grained-pat",
    "gitlab-pat",
    "slack-token",
    "stripe-secret-key",
    "stripe-restricted-key",
    "openai-api-key",
    "anthropic-api-key",
    "gcp-api-key",
    "jwt",
    "pem-private-key",
    "postgres-uri-password",
    "postgres-scram-verifier",
    "postgres-md5-verifier",
    "generic-password",
    "twilio-api-key-sid",
    "sendgrid-api-key",
    "npm-token",
    "azure-storage-account-key",
    "slack-webhook-url",
    "gcp-service-account-private-key",
];

/// The default catalogue with every detector outside [`EQUIVALENT`] disabled.
fn equivalent_masker() -> Masker {
    let mut b = Masker::builder();
    for d in portcullis_mask::catalogue() {
        if !EQUIVALENT.contains(&d.id()) {
            b = b.disable(d.id());
        }
    }
    let m = b.build().unwrap();
    assert_eq!(m.detector_ids().len(), EQUIVALENT.len());
    m
}

fn stream(masker: &Masker, data: &[u8], out: &mut Vec<u8>) -> usize {
    let mut s = masker.stream();
    let mut findings = 0;
    for chunk in data.chunks(CHUNK) {
        out.clear();
        findings += s.push(chunk, out).len();
    }
    out.clear();
    findings += s.finish(out).len();
    findings
}

fn bench(c: &mut Criterion) {
    let masker = Masker::builder().build().unwrap();
    let equivalent = equivalent_masker();
    #[cfg(feature = "peers")]
    let dd = datadog::scanner();
    for (name, data) in corpora() {
        // What each engine finds on this corpus (printed once, for the record).
        let ours = masker.mask(&data).findings().len();
        let ours_eq = equivalent.mask(&data).findings().len();
        let mut out = Vec::with_capacity(2 * CHUNK + masker.holdback());
        assert_eq!(stream(&masker, &data, &mut out), ours);
        #[cfg(feature = "peers")]
        {
            let mut s = String::from_utf8_lossy(&data).into_owned();
            let theirs = dd.scan(&mut s).unwrap().len();
            eprintln!(
                "{name}: portcullis finds {ours} (equivalent rules: {ours_eq}), datadog finds {theirs}"
            );
        }
        #[cfg(not(feature = "peers"))]
        eprintln!("{name}: portcullis finds {ours} (equivalent rules: {ours_eq})");

        let mut g = c.benchmark_group(format!("mask/{name}"));
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.sample_size(20);
        g.bench_function("portcullis/whole", |b| {
            b.iter(|| black_box(masker.mask(black_box(&data)).findings().len()))
        });
        g.bench_function("portcullis/stream-8k", |b| {
            b.iter(|| black_box(stream(&masker, black_box(&data), &mut out)))
        });
        g.bench_function("portcullis-equivalent/whole", |b| {
            b.iter(|| black_box(equivalent.mask(black_box(&data)).findings().len()))
        });
        #[cfg(feature = "peers")]
        g.bench_function("datadog/whole", |b| {
            b.iter_batched(
                || String::from_utf8_lossy(&data).into_owned(),
                |mut s| black_box(dd.scan(&mut s).unwrap().len()),
                criterion::BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

#[cfg(feature = "peers")]
mod datadog {
    use dd_sds::{
        MatchAction, ProximityKeywordsConfig, RegexRuleConfig, RootRuleConfig, Scanner,
        SecondaryValidator,
    };

    /// Rules equivalent to ours: the PII detectors and 22 secret formats.
    const RULES: &[(&str, Option<SecondaryValidator>, &[&str])] = &[
        // PII.
        (
            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
            None,
            &[],
        ),
        (
            r"\b(?:\d[ -]?){12,18}\d\b",
            Some(SecondaryValidator::LuhnChecksum),
            &[],
        ),
        (
            r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b",
            Some(SecondaryValidator::IbanChecker),
            &[],
        ),
        (
            r"(?:\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}\b",
            None,
            &[],
        ),
        (r"\b\d{3}-\d{2}-\d{4}\b", None, &["ssn", "social security"]),
        (
            r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
            None,
            &[],
        ),
        (r"\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b", None, &[]),
        // Secrets.
        (r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b", None, &[]),
        (
            r"(?i)aws_?secret_?access_?key\s*[:=]\s*[A-Za-z0-9/+]{40}",
            None,
            &[],
        ),
        (r"\bghp_[A-Za-z0-9]{36}\b", None, &[]),
        (r"\bgithub_pat_[A-Za-z0-9_]{82}\b", None, &[]),
        (r"\bglpat-[A-Za-z0-9_-]{20}\b", None, &[]),
        (r"\bxox[baprs]-[A-Za-z0-9-]{10,72}\b", None, &[]),
        (r"\b[sr]k_live_[A-Za-z0-9]{24,99}\b", None, &[]),
        (r"\bsk-(?:proj-)?[A-Za-z0-9_-]{40,200}", None, &[]),
        (r"\bsk-ant-api03-[A-Za-z0-9_-]{93}AA\b", None, &[]),
        (r"\bAIza[0-9A-Za-z_-]{35}\b", None, &[]),
        (
            r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
            None,
            &[],
        ),
        (
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[A-Za-z0-9+/=\s]{1,3000}-----END [A-Z ]*PRIVATE KEY-----",
            None,
            &[],
        ),
        (r"postgres(?:ql)?://[^:\s/]+:[^@\s]+@", None, &[]),
        (
            r"SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+",
            None,
            &[],
        ),
        (r"\bmd5[0-9a-f]{32}\b", None, &[]),
        (r"(?i)password\s*[:=]\s*\S{8,}", None, &[]),
        (r"\bSK[0-9a-f]{32}\b", None, &[]),
        (r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b", None, &[]),
        (r"\bnpm_[A-Za-z0-9]{36}\b", None, &[]),
        (r"AccountKey=[A-Za-z0-9+/=]{88}", None, &[]),
        (
            r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
            None,
            &[],
        ),
        (r#""private_key_id"\s*:\s*"[0-9a-f]{40}""#, None, &[]),
    ];

    pub(super) fn scanner() -> Scanner {
        let rules: Vec<_> = RULES
            .iter()
            .map(|(pattern, validator, keywords)| {
                let mut rule = RegexRuleConfig::new(pattern).with_validator(validator.clone());
                if !keywords.is_empty() {
                    rule = rule.with_proximity_keywords(ProximityKeywordsConfig {
                        look_ahead_character_count: 30,
                        included_keywords: keywords.iter().map(|k| k.to_string()).collect(),
                        excluded_keywords: vec![],
                    });
                }
                RootRuleConfig::new(rule.build()).match_action(MatchAction::redact("[MASKED]"))
            })
            .collect();
        Scanner::builder(&rules).build().unwrap()
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
