//! Fuzzes the PostgreSQL session state machine with scripts: arbitrary
//! interleavings of client bytes, backend bytes, hook answers (allow, deny,
//! hold, terminate), time, closes and driver callbacks. Seeds and crashers
//! live in testdata/fuzz/pg_session/ and are replayed by
//! crates/protocol-pg/tests/fuzz_replay.rs:
//!
//!     cargo +nightly fuzz run pg_session ../testdata/fuzz/pg_session
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|script: &[u8]| {
    if script.len() > 64 * 1024 {
        return;
    }
    portcullis_pg::internal::fuzz_session_script(script);
});
