//! Fuzzes the PostgreSQL proxy: frame readers, body readers and a whole
//! session fed arbitrary client and backend bytes.
//!
//! Seeds and crashers live in testdata/fuzz/pg_codec/ and are replayed (with
//! mutations) by `cargo test -p portcullis-pg --test fuzz_replay`, which decodes
//! them into the same input structure; keep the two in step.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    client: Vec<u8>,
    backend: Vec<u8>,
    ready: bool,
}

fuzz_target!(|input: Input| {
    if input.client.len() + input.backend.len() > 64 * 1024 {
        return;
    }
    portcullis_pg::internal::fuzz_codec(&input.client);
    portcullis_pg::internal::fuzz_codec(&input.backend);
    portcullis_pg::internal::fuzz_session(&input.client, &input.backend, input.ready);
});
