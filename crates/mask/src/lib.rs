//! Streaming secret and PII masker for Portcullis.
//!
//! This crate will hold the masking engine that sits on every byte the
//! gateway returns: a catalogue of secret and personal-data detectors, an
//! Aho-Corasick keyword prefilter that picks candidate windows, regex-automata
//! DFAs that run only there, validators (Luhn, mod-97, entropy), field rules
//! for structured values, and a streaming masker whose output does not depend
//! on how its input was split into chunks.
//!
//! It is synchronous and sans-IO: it never depends on an async runtime, so it
//! can be embedded anywhere.
//!
//! Status: the engine is not built yet, so the crate exposes nothing.
#![deny(missing_docs)]

#[allow(dead_code)] // Used by the engine, which is being written.
mod catalogue;
#[allow(dead_code)]
mod spec;
#[allow(dead_code)]
mod validate;

pub use spec::{Category, Validator};
