//! Fuzzes the exec stream decoders: arbitrary bytes as client WebSocket
//! frames (tungstenite with the proxy's 1 MiB limits) demuxed as
//! `v4`/`v5.channel.k8s.io` messages, one message's channel/status/resize
//! decoding, and the streamed Secret masker on arbitrary JSON-ish bodies.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    frames: Vec<u8>,
    message: Vec<u8>,
    body: Vec<u8>,
    split: usize,
}

fuzz_target!(|input: Input| {
    if input.frames.len() + input.message.len() + input.body.len() > 256 * 1024 {
        return;
    }
    portcullis_k8s::internal::fuzz_websocket(&input.frames);
    portcullis_k8s::internal::fuzz_channel(&input.message);
    portcullis_k8s::internal::fuzz_secret(&input.body, input.split);
});
