//! PostgreSQL wire proxy for Portcullis.
//!
//! This crate terminates a client's PostgreSQL connection, authenticates it
//! with a bearer token, opens its own connection to the real server with
//! credentials the client never sees, and passes every message through a
//! [`Hook`] that can deny, hold or transform it. It knows nothing of policy,
//! masking or audit: the gateway implements the hook.
#![deny(missing_docs)]

mod codec;
#[cfg(feature = "tokio")]
mod driver;
mod error;
mod hook;
mod session;
mod wire;

pub use async_trait::async_trait;
pub use codec::Limits;
#[cfg(feature = "tokio")]
pub use driver::{Proxy, ProxyConfig};
pub use error::{CodecError, SessionError};
pub use hook::{
    Authenticated, BackendAddr, BackendTarget, BackendTls, Column, CommandId, Context, Decision,
    Event, FieldValue, Format, Hold, Hook, ParseVerdict, Rejection, SessionId, StartupParams,
    TextKind, Verdict,
};
pub use session::{CancelKey, DecisionFuture, HookRequest, Output, Session, SessionConfig};

/// Entry points for the fuzz targets; not part of the supported API.
#[doc(hidden)]
pub mod internal {
    /// Runs the frame readers and every body reader on arbitrary bytes.
    pub fn fuzz_codec(data: &[u8]) {
        let limits = crate::Limits::default();
        let mut buf = bytes::BytesMut::from(data);
        while let Ok(Some(frame)) = crate::codec::read_frame(&mut buf, limits.max_client_frame) {
            crate::session::fuzz_bodies(frame.body());
        }
        let mut buf = bytes::BytesMut::from(data);
        let _ = crate::codec::read_startup(&mut buf, limits.max_startup);
    }
}
