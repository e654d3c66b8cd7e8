//! Replays the seeds of the `k8s_websocket` and `k8s_classify` fuzz targets
//! (fuzz/fuzz_targets/) through the same entry points, and mutations of
//! them, on every `cargo test`: hostile WebSocket frame sequences (a 1 GiB
//! declared length, reserved opcodes, unmasked and fragmented frames,
//! oversized control frames) and hostile request targets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis_k8s::internal::{fuzz_channel, fuzz_classify, fuzz_secret, fuzz_websocket};

/// A masked client frame (FIN set) with `opcode` and `payload`.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

fn websocket_seeds() -> Vec<Vec<u8>> {
    let mut gib = vec![0x82, 0x80 | 127];
    gib.extend_from_slice(&(1u64 << 30).to_be_bytes());
    gib.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7]);
    let mut fragmented = vec![0x02, 0x83, 1, 2, 3, 4, 1, 2, 3];
    fragmented.extend(frame(0x0, b"more"));
    let mut interleaved = frame(0x2, b"\x00stdin");
    interleaved.extend(frame(0x9, b"ping"));
    interleaved.extend(frame(0x2, b"\x04{\"Width\":80,\"Height\":24}"));
    interleaved.extend(frame(0x2, b"\x04{\"Width\":-1}"));
    interleaved.extend(frame(0x2, b"\x03{\"status\":\"Failure\"}"));
    interleaved.extend(frame(0x2, b"\xff\x00"));
    interleaved.extend(frame(0x1, "\u{0}text stdin".as_bytes()));
    interleaved.extend(frame(0x8, b"\x03\xe8bye"));
    vec![
        frame(0x2, b"\x00hello"),
        frame(0x2, b""),
        frame(0x3, b"reserved opcode"),
        vec![0x82, 0x02, 0x00, 0x41],
        frame(0x9, &[0u8; 200]),
        frame(0x2, &vec![b'x'; 70_000]),
        gib,
        fragmented,
        interleaved,
        vec![0xff; 64],
        Vec::new(),
    ]
}

const TARGETS: [&str; 12] = [
    "/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=id&stdout=true",
    "/api/v1/namespaces/default/pods/web-0/attach?stdin=true&tty=true",
    "/api/v1/namespaces/default/pods/web-0/portforward?ports=8080",
    "/apis/apps/v1/namespaces/prod/deployments/api/scale",
    "/api/v1/namespaces/%2e%2e/secrets",
    "/api/v1/namespaces/a%2Fb/pods",
    "/api/v1/namespaces//pods",
    "/api/v1/namespaces/default/pods/web-0/exec?command=%ZZ",
    "/apis/../../etc/passwd",
    "/api/v1/namespaces/default/pods?watch=true&fieldSelector=a%3Db",
    "/version?%",
    "/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c&command=rm%20-rf%20%2F&container=a&stdin=true&stdout=true&stderr=true&tty=true",
];

fn headers() -> Vec<(String, String)> {
    vec![
        ("Upgrade".into(), "websocket".into()),
        ("Connection".into(), "Upgrade".into()),
        ("Impersonate-User".into(), "admin".into()),
        ("Impersonate-Extra-scopes".into(), "x".into()),
        ("X-Stream-Protocol-Version".into(), "channel.k8s.io".into()),
    ]
}

#[test]
fn websocket_seeds_replay() {
    for seed in websocket_seeds() {
        fuzz_websocket(&seed);
        for end in 0..seed.len().min(256) {
            fuzz_websocket(&seed[..end]);
        }
        fuzz_channel(&seed);
    }
}

#[test]
fn classify_seeds_replay() {
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
        for target in TARGETS {
            fuzz_classify(method, target, &headers());
            fuzz_classify(method, target, &[]);
            for end in 0..target.len() {
                if target.is_char_boundary(end) {
                    fuzz_classify(method, &target[..end], &headers());
                }
            }
        }
    }
}

#[test]
fn secret_seeds_replay() {
    let body =
        br#"{"kind":"SecretList","items":[{"data":{"k":"c2VjcmV0"}},{"data":{"k":"YQ=="}}]}"#;
    for split in 0..body.len() {
        fuzz_secret(body, split);
        fuzz_secret(&body[..split], split / 2);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// The seeds with bytes overwritten at random places: the mutations a
    /// fuzzer starts from.
    #[test]
    fn mutated_websocket_seeds_replay(
        pick in 0usize..64,
        edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..16),
    ) {
        let all = websocket_seeds();
        let mut seed = all[pick % all.len()].clone();
        for (at, byte) in edits {
            let len = seed.len();
            if len > 0 {
                seed[at % len] = byte;
            }
        }
        fuzz_websocket(&seed);
    }

    #[test]
    fn mutated_targets_replay(
        pick in 0usize..64,
        edits in proptest::collection::vec((0usize..256, proptest::prelude::any::<char>()), 1..8),
    ) {
        let mut target: Vec<char> = TARGETS[pick % TARGETS.len()].chars().collect();
        for (at, c) in edits {
            let len = target.len();
            target[at % len] = c;
        }
        let target: String = target.into_iter().collect();
        fuzz_classify("GET", &target, &headers());
        fuzz_classify("POST", &target, &[]);
    }
}
