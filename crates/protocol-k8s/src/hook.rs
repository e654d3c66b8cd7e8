//! The contract between the proxy and the gateway.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::channel::{ExitStatus, TerminalSize};
use crate::classify::K8sRequest;
use crate::secret::{Identity, StreamTransform};

/// The credential the proxy presents to the real API server on behalf of an
/// authenticated client. The client never sees it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendCredential {
    /// `Authorization: Bearer TOKEN`.
    BearerToken(String),
    /// No header: the client certificate configured in the upstream's TLS
    /// settings ([`Upstream::tls`](crate::Upstream)) authenticates the proxy.
    ClientCertificate,
}

impl fmt::Debug for BackendCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendCredential::BearerToken(_) => f.write_str("BearerToken(..)"),
            BackendCredential::ClientCertificate => f.write_str("ClientCertificate"),
        }
    }
}

/// A client that the hook accepted.
#[derive(Debug)]
pub struct Authenticated<P> {
    /// Who the client is, as the gateway knows it.
    pub principal: P,
    /// The credential to use upstream for this client's requests.
    pub backend: BackendCredential,
}

/// Why a client was not accepted (sent to the client as a 401 Status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The message the client sees.
    pub message: String,
}

/// How a held request was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Release {
    /// Approved: the request proceeds.
    Allow,
    /// Refused (or timed out): the request is denied with this reason.
    Deny {
        /// Shown to the client.
        reason: String,
    },
}

/// The future a held request waits on; the gateway's approval machinery
/// resolves it.
pub type ReleaseFuture = Pin<Box<dyn Future<Output = Release> + Send>>;

/// A decision on one request or one exec/attach stream.
#[non_exhaustive]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Refuse it: a 403 Status for a plain request; for an exec, the upgrade
    /// is accepted and a Failure status with the reason is written on
    /// channel 3 (so kubectl reports it instead of retrying over SPDY).
    Deny {
        /// Shown to the client.
        reason: String,
    },
    /// Wait for a human: an exec client sees a banner with the id on
    /// stdout; a plain request just waits.
    Hold {
        /// The approval id shown to the client.
        id: String,
        /// Resolves when the approval is decided.
        release: ReleaseFuture,
    },
}

impl fmt::Debug for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Allow => f.write_str("Allow"),
            Verdict::Deny { reason } => f.debug_struct("Deny").field("reason", reason).finish(),
            Verdict::Hold { id, .. } => f
                .debug_struct("Hold")
                .field("id", id)
                .finish_non_exhaustive(),
        }
    }
}

/// A masker of one Secret value (decoded text in, text to show out).
pub type ValueMasker = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// What to do to the body of one response. It belongs to that response only.
pub struct ResponsePlan {
    /// Applied to every byte of the body, chunk by chunk (after Secret values
    /// were masked).
    pub body: Box<dyn StreamTransform>,
    /// Applied to each Secret `data`/`stringData` value of a `secrets`
    /// response (see [`mask_secret_object`](crate::mask_secret_object)).
    pub secret_values: ValueMasker,
}

impl Default for ResponsePlan {
    /// No body transform; every Secret value redacted.
    fn default() -> Self {
        ResponsePlan {
            body: Box::new(Identity),
            secret_values: Arc::new(|_| "[REDACTED]".to_owned()),
        }
    }
}

impl fmt::Debug for ResponsePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponsePlan").finish_non_exhaustive()
    }
}

/// What to do to the output of one exec/attach stream: one streaming
/// transform per output channel, so a secret split across WebSocket
/// messages of one channel is still seen whole.
pub struct StreamPlan {
    /// Applied to channel 1.
    pub stdout: Box<dyn StreamTransform>,
    /// Applied to channel 2.
    pub stderr: Box<dyn StreamTransform>,
}

impl Default for StreamPlan {
    fn default() -> Self {
        StreamPlan {
            stdout: Box::new(Identity),
            stderr: Box::new(Identity),
        }
    }
}

impl fmt::Debug for StreamPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamPlan").finish_non_exhaustive()
    }
}

/// Something that happened, for the audit trail.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The client wrote to stdin of an exec/attach stream.
    Stdin(&'a [u8]),
    /// The client resized its terminal.
    Resize(TerminalSize),
    /// Output sent to the client (after transforms) on channel 1 or 2.
    Output {
        /// The channel.
        channel: u8,
        /// The bytes the client got.
        data: &'a [u8],
    },
    /// An exec/attach stream ended; `exit` is the status the server sent,
    /// if it sent one.
    StreamEnded {
        /// The remote command's status.
        exit: Option<&'a ExitStatus>,
        /// Why the proxy ended the stream, if it did.
        error: Option<&'a str>,
    },
    /// A plain response was sent.
    ResponseEnded {
        /// The HTTP status.
        status: u16,
        /// Body bytes sent to the client.
        bytes: u64,
        /// Why the body was cut short, if it was.
        error: Option<&'a str>,
    },
}

/// The interception hooks the gateway implements.
///
/// Every method gets the principal and the classified request it is about;
/// the plans a method returns belong to that one request or stream.
#[async_trait::async_trait]
pub trait Hook: Send + Sync + 'static {
    /// Who a client is, as the hook knows it.
    type Principal: Send + Sync + 'static;

    /// Authenticates the bearer token a client sent.
    async fn authenticate(&self, token: &str) -> Result<Authenticated<Self::Principal>, Refusal>;

    /// Decides on one request. For exec/attach, `request.stream` holds the
    /// command argv; the decision is made before the stream is opened.
    async fn decide(&self, principal: &Self::Principal, request: &K8sRequest) -> Verdict;

    /// The plan for the body of an allowed request's response.
    fn response_plan(&self, _principal: &Self::Principal, _request: &K8sRequest) -> ResponsePlan {
        ResponsePlan::default()
    }

    /// The plan for the output of an allowed exec/attach stream.
    fn stream_plan(&self, _principal: &Self::Principal, _request: &K8sRequest) -> StreamPlan {
        StreamPlan::default()
    }

    /// Observes an event of a request or stream.
    fn on_event(&self, _principal: &Self::Principal, _request: &K8sRequest, _event: &Event<'_>) {}
}
