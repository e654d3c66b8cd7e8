//! Audit trail for Portcullis.
//!
//! This crate will hold the audit event model, the `AuditSink` trait with its
//! durability contract, a hash-chained JSON Lines sink (the embedded default),
//! a PostgreSQL sink, a fan-out sink, verification of a trail, and session
//! recordings (asciicast v2 for terminal sessions).
//!
//! Status: nothing is built yet, so the crate exposes nothing.
#![deny(missing_docs)]
