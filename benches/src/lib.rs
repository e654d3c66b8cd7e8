//! Benchmarks of Portcullis's hot paths.
//!
//! The criterion benches live in `benches/benches/*.rs` (`harness = false`),
//! one per hot path; this library holds what they share, such as the
//! deterministic corpus generators. Run them with
//! `cargo bench -p portcullis-benches`; the figures and the commands that
//! produced them are recorded in BENCHMARKS.md at the workspace root.
#![deny(missing_docs)]

pub mod corpus;
