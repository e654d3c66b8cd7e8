//! PostgreSQL wire proxy for Portcullis.
//!
//! This crate will terminate a client's PostgreSQL connection, authenticate
//! it with a bearer token, open its own connection to the real server with
//! credentials the client never sees, and pass every message through hooks
//! that can deny, hold or transform it. Its core is a sans-IO state machine;
//! a tokio driver pumps it. It knows nothing of policy, masking or audit.
//!
//! Status: nothing is built yet, so the crate exposes nothing.
#![deny(missing_docs)]
