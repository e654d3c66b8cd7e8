//! Policy engine for Portcullis.
//!
//! This crate will decide, for every command that crosses the gateway, whether
//! it is allowed, denied (with a reason the client can act on) or held for a
//! human's review, and which masking applies, and it will say why. It works on
//! the parsed statement (SQL through `sqlparser`, Kubernetes requests through
//! their verb, resource and body) rather than on text patterns, and any
//! internal error resolves to deny.
//!
//! It is synchronous and sans-IO: it never depends on an async runtime.
//!
//! Status: the engine is not built yet, so the crate exposes nothing.
#![deny(missing_docs)]
