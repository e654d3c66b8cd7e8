//! Fuzzes Kubernetes request classification: arbitrary methods, targets and
//! headers must classify or be refused, never panic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    target: String,
    headers: Vec<(String, String)>,
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fuzz_target!(|input: Input| {
    if input.target.len() > 32 * 1024 || input.headers.len() > 64 {
        return;
    }
    let method = METHODS[usize::from(input.method) % METHODS.len()];
    portcullis_k8s::internal::fuzz_classify(method, &input.target, &input.headers);
    // The same target with a leading slash reaches the resource grammar.
    portcullis_k8s::internal::fuzz_classify(method, &format!("/{}", input.target), &input.headers);
});
