//! The channel protocol that Kubernetes runs inside WebSocket messages for
//! exec, attach and port-forward (`v4.channel.k8s.io`, `v5.channel.k8s.io`):
//! each binary message is one channel byte followed by that channel's data.
//! Pure functions over whole messages; the WebSocket framing itself (with its
//! declared-length bound) is tungstenite's.

use serde::{Deserialize, Serialize};

/// Channel 0: the process's stdin (client to server).
pub const STDIN: u8 = 0;
/// Channel 1: stdout (server to client).
pub const STDOUT: u8 = 1;
/// Channel 2: stderr (server to client).
pub const STDERR: u8 = 2;
/// Channel 3: the error/status channel, one JSON `Status` (server to client).
pub const ERROR: u8 = 3;
/// Channel 4: terminal resize events, JSON `{"Width":..,"Height":..}`.
pub const RESIZE: u8 = 4;
/// Channel 255 (v5 only): close signal, data is the channel to half-close.
pub const CLOSE: u8 = 255;

/// Longest status (channel 3) message that is parsed.
const MAX_STATUS_LEN: usize = 64 * 1024;

/// The WebSocket subprotocol of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// `v4.channel.k8s.io`: JSON status on channel 3, resize on channel 4.
    V4,
    /// `v5.channel.k8s.io`: v4 plus the close signal on channel 255.
    V5,
}

impl Protocol {
    /// The subprotocol's name as sent in `Sec-WebSocket-Protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V5 => "v5.channel.k8s.io",
        }
    }

    /// Picks the best protocol this crate speaks from a
    /// `Sec-WebSocket-Protocol` header value (comma-separated offers).
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis_k8s::channel::Protocol;
    /// let p = Protocol::negotiate("v4.channel.k8s.io, v5.channel.k8s.io");
    /// assert_eq!(p, Some(Protocol::V5));
    /// assert_eq!(Protocol::negotiate("base64.channel.k8s.io"), None);
    /// ```
    pub fn negotiate(offers: &str) -> Option<Protocol> {
        let offered = |p: Protocol| offers.split(',').any(|o| o.trim() == p.name());
        [Protocol::V5, Protocol::V4]
            .into_iter()
            .find(|p| offered(*p))
    }
}

/// A channel message was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The channel byte is not one the protocol defines.
    #[error("unknown channel {0}")]
    UnknownChannel(u8),
    /// The status or resize JSON could not be parsed.
    #[error("malformed {what} message")]
    Malformed {
        /// Which message.
        what: &'static str,
    },
    /// A v5 close signal names no channel.
    #[error("close signal without a channel")]
    EmptyClose,
}

/// One decoded channel message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelMessage<'a> {
    /// The channel.
    pub channel: u8,
    /// The data after the channel byte.
    pub data: &'a [u8],
}

/// Decodes one WebSocket message of an exec/attach stream. An empty message
/// carries nothing and decodes to `Ok(None)` (the API server skips them too).
///
/// # Example
///
/// ```
/// use portcullis_k8s::channel::{decode, Protocol, STDOUT};
/// let m = decode(Protocol::V5, b"\x01hello").unwrap().unwrap();
/// assert_eq!((m.channel, m.data), (STDOUT, &b"hello"[..]));
/// assert!(decode(Protocol::V4, b"\xffx").is_err());
/// ```
pub fn decode(
    protocol: Protocol,
    message: &[u8],
) -> Result<Option<ChannelMessage<'_>>, ChannelError> {
    let Some((&channel, data)) = message.split_first() else {
        return Ok(None);
    };
    match channel {
        STDIN | STDOUT | STDERR | ERROR | RESIZE => {}
        CLOSE if protocol == Protocol::V5 => {
            if data.is_empty() {
                return Err(ChannelError::EmptyClose);
            }
        }
        other => return Err(ChannelError::UnknownChannel(other)),
    }
    Ok(Some(ChannelMessage { channel, data }))
}

/// Encodes one channel message.
///
/// # Example
///
/// ```
/// assert_eq!(portcullis_k8s::channel::encode(2, b"oops"), b"\x02oops");
/// ```
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// How a remote command ended, as its status message on channel 3 says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitStatus {
    /// Exit code 0.
    Success,
    /// A non-zero exit code.
    Code(i32),
    /// Another failure, with the status message.
    Failure(String),
}

#[derive(Serialize, Deserialize, Default)]
struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(
        default,
        rename = "apiVersion",
        skip_serializing_if = "Option::is_none"
    )]
    api_version: Option<String>,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize, Deserialize, Default)]
struct Details {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause>,
}

#[derive(Serialize, Deserialize)]
struct Cause {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// Parses the status message of channel 3.
///
/// # Example
///
/// ```
/// use portcullis_k8s::channel::{exit_code_status, parse_status, ExitStatus};
/// assert_eq!(parse_status(&exit_code_status(0)).unwrap(), ExitStatus::Success);
/// assert_eq!(parse_status(&exit_code_status(7)).unwrap(), ExitStatus::Code(7));
/// ```
pub fn parse_status(data: &[u8]) -> Result<ExitStatus, ChannelError> {
    if data.len() > MAX_STATUS_LEN {
        return Err(ChannelError::Malformed { what: "status" });
    }
    let s: Status =
        serde_json::from_slice(data).map_err(|_| ChannelError::Malformed { what: "status" })?;
    if s.status == "Success" {
        return Ok(ExitStatus::Success);
    }
    if s.reason == "NonZeroExitCode" {
        let code = s
            .details
            .iter()
            .flat_map(|d| d.causes.iter())
            .find(|c| c.reason == "ExitCode")
            .and_then(|c| c.message.parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(ExitStatus::Code(code));
        }
    }
    Ok(ExitStatus::Failure(s.message))
}

/// The channel-3 status for a process that exited with `code`, as the
/// kubelet writes it.
pub fn exit_code_status(code: i32) -> Vec<u8> {
    let status = if code == 0 {
        Status {
            status: "Success".into(),
            ..Status::default()
        }
    } else {
        Status {
            status: "Failure".into(),
            message: format!("command terminated with non-zero exit code: exit status {code}"),
            reason: "NonZeroExitCode".into(),
            details: Some(Details {
                causes: vec![Cause {
                    reason: "ExitCode".into(),
                    message: code.to_string(),
                }],
            }),
            ..Status::default()
        }
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// A channel-3 `Failure` status with a message and reason (`Forbidden`, ...):
/// kubectl prints the message and exits 1.
///
/// # Example
///
/// ```
/// use portcullis_k8s::channel::{failure_status, parse_status, ExitStatus};
/// let s = failure_status("denied by policy", "Forbidden");
/// assert_eq!(parse_status(&s).unwrap(), ExitStatus::Failure("denied by policy".into()));
/// ```
pub fn failure_status(message: &str, reason: &str) -> Vec<u8> {
    let status = Status {
        status: "Failure".into(),
        message: message.into(),
        reason: reason.into(),
        ..Status::default()
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// A full `v1 Status` object for an HTTP error response body.
pub fn http_status(code: u16, message: &str, reason: &str) -> Vec<u8> {
    let status = Status {
        kind: Some("Status".into()),
        api_version: Some("v1".into()),
        status: "Failure".into(),
        message: message.into(),
        reason: reason.into(),
        code: Some(code),
        ..Status::default()
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// A terminal size sent on the resize channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Parses a resize message (channel 4).
///
/// # Example
///
/// ```
/// use portcullis_k8s::channel::{parse_resize, TerminalSize};
/// let s = parse_resize(br#"{"Width":80,"Height":24}"#).unwrap();
/// assert_eq!(s, TerminalSize { width: 80, height: 24 });
/// ```
pub fn parse_resize(data: &[u8]) -> Result<TerminalSize, ChannelError> {
    if data.len() > 1024 {
        return Err(ChannelError::Malformed { what: "resize" });
    }
    serde_json::from_slice(data).map_err(|_| ChannelError::Malformed { what: "resize" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_channels() {
        assert_eq!(decode(Protocol::V5, b"").unwrap(), None);
        assert_eq!(
            decode(Protocol::V5, b"\xff\x00").unwrap().unwrap().channel,
            CLOSE
        );
        assert_eq!(decode(Protocol::V5, b"\xff"), Err(ChannelError::EmptyClose));
        assert_eq!(
            decode(Protocol::V4, b"\x05x"),
            Err(ChannelError::UnknownChannel(5))
        );
        assert_eq!(decode(Protocol::V4, b"\x00").unwrap().unwrap().data, b"");
    }

    #[test]
    fn status_round_trips() {
        assert_eq!(
            parse_status(br#"{"metadata":{},"status":"Success"}"#).unwrap(),
            ExitStatus::Success
        );
        assert_eq!(
            parse_status(&exit_code_status(42)).unwrap(),
            ExitStatus::Code(42)
        );
        assert!(parse_status(b"{").is_err());
        assert!(parse_status(&vec![b' '; MAX_STATUS_LEN + 1]).is_err());
    }

    #[test]
    fn negotiate_prefers_v5() {
        assert_eq!(
            Protocol::negotiate("v5.channel.k8s.io,v4.channel.k8s.io"),
            Some(Protocol::V5)
        );
        assert_eq!(Protocol::negotiate("v4.channel.k8s.io"), Some(Protocol::V4));
        assert_eq!(Protocol::negotiate(""), None);
    }
}
