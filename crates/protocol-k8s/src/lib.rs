//! Kubernetes API proxy for Portcullis.
//!
//! This crate will classify Kubernetes API requests (verb, resource,
//! namespace, subresource), carry `exec`/`attach` streams over WebSocket
//! (`v5.channel.k8s.io`), and pass them through interception hooks that the
//! gateway implements. It knows nothing of policy, masking or audit.
//!
//! Status: nothing is built yet, so the crate exposes nothing.
#![deny(missing_docs)]
