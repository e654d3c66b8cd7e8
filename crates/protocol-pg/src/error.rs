//! Errors of the PostgreSQL proxy.

/// A frame that could not be read or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A declared length is below the protocol minimum or negative.
    #[error("message {tag:#04x} declares an invalid length {length}")]
    BadLength {
        /// The message type byte (0 for startup-phase packets).
        tag: u8,
        /// The declared length.
        length: i64,
    },
    /// A declared length is above the configured maximum.
    #[error("message {tag:#04x} of {length} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The message type byte (0 for startup-phase packets).
        tag: u8,
        /// The declared length.
        length: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A complete frame whose body does not parse.
    #[error("malformed message {tag:#04x}: {reason}")]
    Malformed {
        /// The message type byte (0 for startup-phase packets).
        tag: u8,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why a session ended abnormally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The client sent bytes that are not a valid message.
    #[error("client protocol error: {0}")]
    Client(CodecError),
    /// The backend sent bytes that are not a valid message.
    #[error("backend protocol error: {0}")]
    Backend(CodecError),
    /// A message arrived that is not valid in the session's current state.
    #[error("unexpected message {tag:#04x} from the {from} during {state}")]
    UnexpectedMessage {
        /// The message type byte.
        tag: u8,
        /// "client" or "backend".
        from: &'static str,
        /// The state the session was in.
        state: &'static str,
    },
    /// The backend sent a message the session cannot attribute to any reply
    /// it expects.
    #[error("backend protocol violation: {0}")]
    Violation(String),
    /// The gateway could not authenticate to the backend.
    #[error("backend authentication failed: {0}")]
    BackendAuth(String),
    /// The client was refused during startup or authentication.
    #[error("client refused: {0}")]
    Refused(String),
    /// A handshake or idle deadline passed.
    #[error("{0} timeout")]
    Timeout(&'static str),
    /// The hook ended the session ([`crate::Verdict::Terminate`]).
    #[error("terminated by the gateway: {0}")]
    Terminated(String),
}
