//! The built-in detector catalogue (plain data; see `spec.rs`).
//!
//! One file per provider family; [`BUILTIN`] is their concatenation, in
//! **priority order**: specific detectors first, the generic `password=` /
//! `secret:` / `token=` / `api_key=` assignments last. When two detectors mask
//! the same bytes (a `TWILIO_AUTH_TOKEN=<hex>` line is both a Twilio auth token
//! and a generic token assignment), the earlier one is the one to report.
//!
//! Every detector has at least three positive and two negative cases in
//! `testdata/mask/<family>.toml`; the tests below check each pattern (and its
//! validators) against every case of every family, with the whole catalogue.
//!
//! # Adding a detector
//!
//! * Write the pattern from the provider's documented token format. Prefer a
//!   distinctive prefix (`ghp_`, `xoxb-`, `AKIA`) as keyword; a bare format
//!   (32 hex) needs the variable name as context (`TWILIO_AUTH_TOKEN=`), with
//!   the secret in the `m` group and the value case-sensitive (`(?-i:…)`).
//! * Bound every repetition; `max_len` is the pattern's longest match (the
//!   tests compare it with the parser's own figure). Keep patterns free of
//!   overlapping bounded repetitions (`[a-z0-9]{20,100}KEY[a-z0-9]{20,100}`):
//!   their DFAs grow with every possible split. The tests build each as an
//!   anchored dense DFA of at most 16 MiB.
//! * Every match must contain a keyword (the prefilter only probes near
//!   keywords): write header-style separators as a literal space, not `\s`.
//! * Add three positives in realistic surroundings and two near-miss
//!   negatives (wrong length, wrong prefix, placeholder) to the family's
//!   TOML; run `cargo test -p portcullis-mask catalogue`.

use crate::spec::{Category, DetectorSpec};

mod ai;
mod cloud;
mod code;
mod db;
mod formats_ai;
mod formats_cloud;
mod formats_comms;
mod formats_data;
mod formats_devtools;
mod formats_keys;
mod formats_observability;
mod formats_payments;
mod formats_saas;
mod generic;
mod keys;
mod messaging;
mod payments;
mod pii;
mod saas;

/// Values that are never worth masking: placeholders and documented examples
/// (compared case-insensitively with the masked part; see
/// `Validator::NotPlaceholder`).
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change_me",
    "change-me",
    "password",
    "passw0rd",
    "secret",
    "example",
    "sample",
    "test",
    "testing",
    "dummy",
    "placeholder",
    "redacted",
    "masked",
    "hidden",
    "none",
    "null",
    "nil",
    "undefined",
    "true",
    "false",
    "your_password",
    "yourpassword",
    "your-password",
    "your_secret",
    "your_token",
    "your_api_key",
    "mypassword",
    "my_password",
    "letmein",
    "admin",
    "root",
    "default",
    "todo",
    "fixme",
    "notset",
    "not_set",
    "empty",
    // AWS's documented example credentials.
    "akiaiosfodnn7example",
    "wjalrxutnfemi/k7mdeng/bpxrficyexamplekey",
];

/// The families, in priority order.
const FAMILIES: &[&[DetectorSpec]] = &[
    cloud::DETECTORS,
    code::DETECTORS,
    messaging::DETECTORS,
    payments::DETECTORS,
    ai::DETECTORS,
    saas::DETECTORS,
    db::DETECTORS,
    keys::DETECTORS,
    formats_ai::DETECTORS,
    formats_cloud::DETECTORS,
    formats_devtools::DETECTORS,
    formats_comms::DETECTORS,
    formats_payments::DETECTORS,
    formats_observability::DETECTORS,
    formats_saas::DETECTORS,
    formats_data::DETECTORS,
    formats_keys::DETECTORS,
    pii::DETECTORS,
    generic::DETECTORS,
];

// Const evaluation: an index out of bounds is a compile error, not a panic.
#[allow(clippy::indexing_slicing)]
const fn total(families: &[&[DetectorSpec]]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < families.len() {
        n += families[i].len();
        i += 1;
    }
    n
}

/// Filler for the array built by [`concat_families`]; never left in the result.
const FILLER: DetectorSpec = DetectorSpec {
    id: "",
    category: Category::Secret,
    description: "",
    keywords: &[],
    pattern: "",
    validators: &[],
    max_len: 0,
};

// Const evaluation: an index out of bounds is a compile error, not a panic.
#[allow(clippy::indexing_slicing)]
const fn concat_families<const N: usize>(families: &[&[DetectorSpec]]) -> [DetectorSpec; N] {
    let mut out = [FILLER; N];
    let mut k = 0;
    let mut i = 0;
    while i < families.len() {
        let mut j = 0;
        while j < families[i].len() {
            out[k] = families[i][j];
            k += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(k == N, "catalogue length mismatch");
    out
}

static ALL: [DetectorSpec; total(FAMILIES)] = concat_families(FAMILIES);

/// Every built-in detector, in priority order (see the module doc).
pub(crate) static BUILTIN: &[DetectorSpec] = &ALL;

#[cfg(test)]
mod catalogue_tests;
