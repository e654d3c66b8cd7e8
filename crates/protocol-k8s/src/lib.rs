//! Kubernetes API proxy for Portcullis.
//!
//! A client (kubectl, a Kubernetes client library) points its kubeconfig at
//! this proxy. Each request is authenticated with the client's bearer token
//! through a [`Hook`], classified into Kubernetes facts ([`K8sRequest`]:
//! verb, group, version, resource, subresource, namespace, name, exec argv,
//! impersonation headers), decided on by the hook (allow, deny, hold), and
//! forwarded to the real API server with a backend credential the client
//! never sees. Responses stream back through a per-response transform, and
//! Secret values are masked object by object ([`SecretStream`]). Exec and
//! attach over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`) are
//! decided on before the stream opens and relayed message by message, each
//! output channel through its own streaming transform. It knows nothing of
//! policy, masking or audit: the gateway implements the hook.
//!
//! - [`classify`]: pure request classification.
//! - [`channel`]: the exec channel protocol (pure functions over messages).
//! - [`SecretStream`], [`mask_secret_object`]: Secret masking, streamed.
//! - [`Proxy`] (feature `tokio`): the TLS listener, reverse proxy and relay.
//!
//! Not supported yet, each refused with a clear Status: exec over SPDY
//! (kubectl ≤ 1.29 is told to use ≥ 1.30), port-forward.
//!
//! # Example
//!
//! ```
//! use portcullis_k8s::{classify, Verb};
//!
//! let r = classify("DELETE", "/api/v1/namespaces/prod", []).unwrap();
//! assert_eq!(r.verb, Verb::Delete);
//! assert_eq!(r.resource.as_deref(), Some("namespaces"));
//! assert_eq!(r.name.as_deref(), Some("prod"));
//! ```
//!
//! # Features
//!
//! - `tokio` (default): [`Proxy`], on tokio, hyper, rustls and
//!   tokio-tungstenite. Without it the crate is the pure core.
#![deny(missing_docs)]

pub mod channel;
mod classify;
mod hook;
#[cfg(feature = "tokio")]
mod proxy;
mod secret;

pub use async_trait::async_trait;
pub use classify::{
    ClassifyError, K8sRequest, MAX_TARGET_LEN, StreamKind, StreamRequest, Transport, Verb, classify,
};
pub use hook::{
    Authenticated, BackendCredential, Event, Hook, Refusal, Release, ReleaseFuture, ResponsePlan,
    StreamPlan, ValueMasker, Verdict,
};
#[cfg(feature = "tokio")]
pub use proxy::{Proxy, ProxyConfig, Upstream};
pub use secret::{
    Identity, SecretBody, SecretMaskError, SecretStream, StreamTransform, mask_secret_object,
};

/// Entry points for the fuzz targets. Not a stable interface.
#[doc(hidden)]
pub mod internal {
    /// Classifies arbitrary request parts; must never panic.
    pub fn fuzz_classify(method: &str, target: &str, headers: &[(String, String)]) {
        let _ = crate::classify(
            method,
            target,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
    }

    /// Decodes arbitrary bytes as channel messages and status/resize JSON.
    pub fn fuzz_channel(message: &[u8]) {
        for p in [crate::channel::Protocol::V4, crate::channel::Protocol::V5] {
            if let Ok(Some(m)) = crate::channel::decode(p, message) {
                let _ = crate::channel::parse_status(m.data);
                let _ = crate::channel::parse_resize(m.data);
            }
        }
    }

    /// Feeds arbitrary bytes, split at `split`, to a Secret list rewriter.
    pub fn fuzz_secret(body: &[u8], split: usize) {
        for mode in [
            crate::SecretBody::Object,
            crate::SecretBody::List,
            crate::SecretBody::Watch,
        ] {
            let mut s = crate::SecretStream::new(mode, 4096);
            let mut out = Vec::new();
            let (a, b) = body.split_at(split.min(body.len()));
            let mask = |_: &str| String::from("x");
            if s.feed(a, &mask, &mut out).is_ok() && s.feed(b, &mask, &mut out).is_ok() {
                let _ = s.finish();
            }
        }
    }

    /// Reads arbitrary bytes as client-to-server WebSocket frames with the
    /// proxy's limits (1 MiB), decoding each message as a channel message.
    #[cfg(feature = "tokio")]
    pub fn fuzz_websocket(bytes: &[u8]) {
        use std::io::{Cursor, Read, Write};
        struct Pipe(Cursor<Vec<u8>>);
        impl Read for Pipe {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.0.read(buf)
            }
        }
        impl Write for Pipe {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let cfg = tungstenite::protocol::WebSocketConfig::default()
            .max_frame_size(Some(1 << 20))
            .max_message_size(Some(1 << 20));
        let mut ws = tungstenite::WebSocket::from_raw_socket(
            Pipe(Cursor::new(bytes.to_vec())),
            tungstenite::protocol::Role::Server,
            Some(cfg),
        );
        while let Ok(msg) = ws.read() {
            fuzz_channel(&msg.into_data());
        }
    }
}
