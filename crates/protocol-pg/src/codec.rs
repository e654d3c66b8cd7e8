//! Framing with bounds, then decoding on pgwire's message types.
//!
//! A frame is read from its 5-byte header (type byte and length), the length
//! is checked against a configured maximum before anything is allocated, and
//! only a complete frame is handed to pgwire. Frames keep their original
//! bytes so an unchanged message is forwarded byte for byte (pgwire decodes
//! strings lossily).

use bytes::{Bytes, BytesMut};
use pgwire::messages::Message;

use crate::error::CodecError;

/// Size limits applied to every frame before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest startup-phase packet (SSLRequest, StartupMessage, CancelRequest), in bytes.
    pub max_startup: usize,
    /// Largest password message (the bearer token) before authentication, in bytes.
    pub max_auth: usize,
    /// Largest frame an authenticated client may send, in bytes, header included.
    pub max_client_frame: usize,
    /// Largest frame the backend may send, in bytes, header included.
    pub max_backend_frame: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_startup: 10_000,
            max_auth: 64 * 1024,
            max_client_frame: 64 * 1024 * 1024,
            max_backend_frame: 256 * 1024 * 1024,
        }
    }
}

/// The most a declared length makes the reader reserve ahead of the bytes.
const RESERVE_STEP: usize = 256 * 1024;

/// One complete message: its type byte and its original bytes, header included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The type byte, or 0 for the untagged startup-phase packets.
    pub(crate) tag: u8,
    /// The whole frame as received.
    pub(crate) raw: Bytes,
}

impl Frame {
    /// The body after the header.
    pub(crate) fn body(&self) -> &[u8] {
        let skip = if self.tag == 0 { 4 } else { 5 };
        self.raw.get(skip..).unwrap_or_default()
    }
}

/// Reads one tagged frame from `buf`. `Ok(None)` means more bytes are needed.
pub(crate) fn read_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, CodecError> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let tag = header.first().copied().unwrap_or(0);
    let declared = i32::from_be_bytes([
        header.get(1).copied().unwrap_or(0),
        header.get(2).copied().unwrap_or(0),
        header.get(3).copied().unwrap_or(0),
        header.get(4).copied().unwrap_or(0),
    ]);
    if declared < 4 {
        return Err(CodecError::BadLength {
            tag,
            length: i64::from(declared),
        });
    }
    let total = usize::try_from(declared).map_err(|_| CodecError::BadLength {
        tag,
        length: i64::from(declared),
    })? + 1;
    if total > max {
        return Err(CodecError::TooLarge {
            tag,
            length: total,
            max,
        });
    }
    if buf.len() < total {
        // Grow towards the declared size only as bytes arrive: a peer that
        // declares a large frame and sends nothing costs nothing.
        buf.reserve((total - buf.len()).min(RESERVE_STEP));
        return Ok(None);
    }
    Ok(Some(Frame {
        tag,
        raw: buf.split_to(total).freeze(),
    }))
}

/// Reads one untagged startup-phase packet. `Ok(None)` means more bytes are needed.
pub(crate) fn read_startup(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, CodecError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let declared = i32::from_be_bytes([
        header.first().copied().unwrap_or(0),
        header.get(1).copied().unwrap_or(0),
        header.get(2).copied().unwrap_or(0),
        header.get(3).copied().unwrap_or(0),
    ]);
    if declared < 8 {
        return Err(CodecError::BadLength {
            tag: 0,
            length: i64::from(declared),
        });
    }
    let total = usize::try_from(declared).map_err(|_| CodecError::BadLength {
        tag: 0,
        length: i64::from(declared),
    })?;
    if total > max {
        return Err(CodecError::TooLarge {
            tag: 0,
            length: total,
            max,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Frame {
        tag: 0,
        raw: buf.split_to(total).freeze(),
    }))
}

/// The request code of an untagged startup-phase packet.
pub(crate) fn startup_code(frame: &Frame) -> i32 {
    let b = frame.body();
    i32::from_be_bytes([
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(0),
        b.get(2).copied().unwrap_or(0),
        b.get(3).copied().unwrap_or(0),
    ])
}

/// Startup-phase request codes.
pub(crate) const SSL_REQUEST: i32 = 80_877_103;
pub(crate) const GSSENC_REQUEST: i32 = 80_877_104;
pub(crate) const CANCEL_REQUEST: i32 = 80_877_102;

/// Encodes a pgwire message into bytes.
pub(crate) fn encode<M: Message>(msg: &M) -> Bytes {
    let mut buf = BytesMut::with_capacity(msg.message_length() + 1);
    // Encoding only fails for messages over pgwire's limits, which the
    // gateway never builds; an empty frame is then dropped by the peer.
    if msg.encode(&mut buf).is_err() {
        buf.clear();
    }
    buf.freeze()
}

/// Splits a DataRow body into its fields without copying them.
///
/// Each field is `None` for SQL NULL, or the byte range of its value.
pub(crate) fn split_data_row(
    body: &[u8],
) -> Result<Vec<Option<std::ops::Range<usize>>>, CodecError> {
    let bad = |reason: &str| CodecError::Malformed {
        tag: b'D',
        reason: reason.into(),
    };
    let count = body
        .get(..2)
        .map(|b| {
            i16::from_be_bytes([
                b.first().copied().unwrap_or(0),
                b.get(1).copied().unwrap_or(0),
            ])
        })
        .ok_or_else(|| bad("missing field count"))?;
    let count = usize::try_from(count).map_err(|_| bad("negative field count"))?;
    // Each field takes at least 4 bytes, so the count is bounded by the body.
    if count.saturating_mul(4) > body.len().saturating_sub(2) {
        return Err(bad("field count larger than the message"));
    }
    let mut out = Vec::with_capacity(count);
    let mut at = 2usize;
    for _ in 0..count {
        let len_bytes = body
            .get(at..at + 4)
            .ok_or_else(|| bad("truncated field length"))?;
        let len = i32::from_be_bytes([
            len_bytes.first().copied().unwrap_or(0),
            len_bytes.get(1).copied().unwrap_or(0),
            len_bytes.get(2).copied().unwrap_or(0),
            len_bytes.get(3).copied().unwrap_or(0),
        ]);
        at += 4;
        if len == -1 {
            out.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| bad("negative field length"))?;
        let end = at
            .checked_add(len)
            .ok_or_else(|| bad("field length overflows"))?;
        if end > body.len() {
            return Err(bad("field longer than the message"));
        }
        out.push(Some(at..end));
        at = end;
    }
    if at != body.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

/// Builds a DataRow frame from its fields.
pub(crate) fn build_data_row<'a>(
    fields: impl ExactSizeIterator<Item = Option<&'a [u8]>> + Clone,
) -> Bytes {
    let count = fields.len();
    let body_len: usize = 2 + fields
        .clone()
        .map(|f| 4 + f.map_or(0, <[u8]>::len))
        .sum::<usize>();
    let mut buf = BytesMut::with_capacity(body_len + 5);
    buf.extend_from_slice(b"D");
    buf.extend_from_slice(
        &i32::try_from(body_len + 4)
            .unwrap_or(i32::MAX)
            .to_be_bytes(),
    );
    buf.extend_from_slice(&i16::try_from(count).unwrap_or(i16::MAX).to_be_bytes());
    for f in fields {
        match f {
            None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                buf.extend_from_slice(&i32::try_from(v.len()).unwrap_or(i32::MAX).to_be_bytes());
                buf.extend_from_slice(v);
            }
        }
    }
    buf.freeze()
}

/// Builds a tagged frame from a type byte and a body.
pub(crate) fn build_frame(tag: u8, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(body.len() + 5);
    buf.extend_from_slice(&[tag]);
    buf.extend_from_slice(
        &i32::try_from(body.len() + 4)
            .unwrap_or(i32::MAX)
            .to_be_bytes(),
    );
    buf.extend_from_slice(body);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_needs_more_then_completes() {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x09sel"[..]);
        assert_eq!(read_frame(&mut buf, 100).unwrap(), None);
        buf.extend_from_slice(b"1\0extra");
        let f = read_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(f.tag, b'Q');
        assert_eq!(f.body(), b"sel1\0");
        assert_eq!(&buf[..], b"extra");
    }

    #[test]
    fn oversized_length_rejected_before_allocation() {
        let mut buf = BytesMut::from(&b"D\x7f\xff\xff\xff"[..]);
        assert!(matches!(
            read_frame(&mut buf, 1 << 20),
            Err(CodecError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&b"D\xff\xff\xff\xff"[..]);
        assert!(matches!(
            read_frame(&mut buf, 1 << 20),
            Err(CodecError::BadLength { .. })
        ));
        // A declared length under the limit reserves a bounded step only.
        let mut buf = BytesMut::from(&b"Q\x03\xff\xff\xff"[..]);
        assert_eq!(read_frame(&mut buf, 1 << 30).unwrap(), None);
        assert!(buf.capacity() <= RESERVE_STEP + 5, "{}", buf.capacity());
        let mut buf = BytesMut::from(&b"\x7f\xff\xff\xff\0\x03\0\0"[..]);
        assert!(matches!(
            read_startup(&mut buf, 10_000),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn data_row_split_and_rebuild_round_trip() {
        let row = build_data_row([Some(&b"ab"[..]), None, Some(&b""[..])].into_iter());
        let mut buf = BytesMut::from(&row[..]);
        let f = read_frame(&mut buf, 100).unwrap().unwrap();
        let fields = split_data_row(f.body()).unwrap();
        let values: Vec<_> = fields
            .iter()
            .map(|r| r.clone().map(|r| &f.body()[r]))
            .collect();
        assert_eq!(values, vec![Some(&b"ab"[..]), None, Some(&b""[..])]);
        assert!(split_data_row(b"\x00\x02\x00\x00\x00\x05ab").is_err());
        assert!(split_data_row(b"\x7f\xff").is_err());
    }
}
