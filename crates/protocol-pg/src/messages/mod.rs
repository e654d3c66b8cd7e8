//! Every PostgreSQL message the crate reads or writes, in one place, on
//! pgwire's message types.
//!
//! - Framing: a frame is read from its header (type byte and length); the
//!   length is checked against a configured maximum ([`Limits`]) before
//!   anything is allocated, and an incomplete frame is `Ok(None)`. Frames
//!   keep their original bytes, so a message forwarded unchanged goes out
//!   byte for byte, never re-encoded.
//! - Bodies: [`decode`] reads a frame's body into pgwire's type for that
//!   message ([`Decode`], implemented in [`frontend`] and [`backend`]) with
//!   one bounds-checked [`Reader`]; [`encode`] writes any pgwire message with
//!   pgwire's own encoder. `decode(encode(m)) == m` is a property test for
//!   every message type the gateway reads or writes.
//!
//! Why pgwire's decoders are not called on untrusted bytes: its
//! `decode_body` functions read with `Buf::get_*` and `split_to`, which
//! panic on a short body (a Bind cut after its portal name, an MD5
//! Authentication without its salt, a Parse without its type count); they
//! accept trailing bytes; and they read strings lossily (`from_utf8_lossy`),
//! so the text the hook would see could differ from the bytes forwarded.
//! The decoders here check every length against what remains, refuse
//! trailing bytes, and read text as UTF-8 or refuse it, so what they accept
//! pgwire encodes back to exactly the bytes read (also a property test).
//! A Query or Parse refused only for text that is not UTF-8 is told apart
//! by [`frontend::invalid_statement_text`]: the session answers it as
//! PostgreSQL does (22021) instead of ending.
//!
//! A few shapes stay raw bytes on purpose, each said where it is: the
//! DataRow hot path, and the error, notice, notification, parameter and
//! column-name fields the transforms rewrite (a backend whose encoding is
//! SQL_ASCII sends them in any bytes, and fields the hook leaves alone are
//! forwarded exactly as they came).

use bytes::{Bytes, BytesMut};
use pgwire::messages::Message;

use crate::error::CodecError;

pub(crate) mod backend;
pub(crate) mod frontend;

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

    /// The body read as the pgwire message `M` (whose type byte the caller
    /// has matched).
    pub(crate) fn decode<M: Decode>(&self) -> Result<M, CodecError> {
        decode(self.body())
    }
}

/// A pgwire message type read from the body of a bounds-checked frame.
///
/// Implementations read with [`Reader`] only: they never index past the
/// body, never reserve more than the body can hold, never panic, and return
/// `None` for anything that is not exactly one such message.
pub(crate) trait Decode: Message {
    /// What the message is called, for errors.
    const NAME: &'static str;

    /// Reads the fields from `r`; [`decode`] checks nothing is left over.
    fn read(r: &mut Reader<'_>) -> Option<Self>;
}

/// Reads `body` (a frame's bytes after its header) as the message `M`.
pub(crate) fn decode<M: Decode>(body: &[u8]) -> Result<M, CodecError> {
    let mut r = Reader::new(body);
    match M::read(&mut r) {
        Some(m) if r.done() => Ok(m),
        _ => Err(malformed(M::message_type().unwrap_or(0), M::NAME)),
    }
}

/// Encodes a pgwire message into a whole frame, header included.
///
/// pgwire refuses to encode a message over its own per-type limit; the
/// gateway never builds one (its messages are small, and what it re-encodes
/// came in under [`Limits`]). Should it happen, the frame is empty and the
/// peer sees nothing rather than a truncated message.
pub(crate) fn encode<M: Message>(msg: &M) -> Bytes {
    let mut buf = BytesMut::with_capacity(msg.message_length() + 1);
    if msg.encode(&mut buf).is_err() {
        buf.clear();
    }
    buf.freeze()
}

/// The error for a body that is not a well-formed message of type `tag`.
pub(crate) fn malformed(tag: u8, reason: &str) -> CodecError {
    CodecError::Malformed {
        tag,
        reason: reason.into(),
    }
}

/// Reads one tagged frame from `buf`. `Ok(None)` means more bytes are needed.
pub(crate) fn read_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, CodecError> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let mut r = Reader::new(header);
    let (tag, declared) = (r.u8().unwrap_or(0), r.i32().unwrap_or(0));
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
    let declared = Reader::new(header).i32().unwrap_or(0);
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

/// Builds a tagged frame from a type byte and a raw body (the transforms
/// that rewrite raw-byte fields, and the hook's COPY data).
pub(crate) fn build_frame(tag: u8, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(body.len() + 5);
    buf.extend_from_slice(&[tag]);
    buf.extend_from_slice(&len_i32(body.len() + 4).to_be_bytes());
    buf.extend_from_slice(body);
    buf.freeze()
}

/// A length as the protocol's i32; lengths past it (which no frame under
/// the limits reaches) saturate.
pub(crate) fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A count as the protocol's i16, saturating.
pub(crate) fn len_i16(n: usize) -> i16 {
    i16::try_from(n).unwrap_or(i16::MAX)
}

/// A cursor over a message body that never reads past its end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.at)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.buf.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.bytes(1).and_then(|b| b.first().copied())
    }

    pub(crate) fn i16(&mut self) -> Option<i16> {
        let b = self.bytes(2)?;
        Some(i16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    pub(crate) fn i32(&mut self) -> Option<i32> {
        let b = self.bytes(4)?;
        Some(i32::from_be_bytes([
            *b.first()?,
            *b.get(1)?,
            *b.get(2)?,
            *b.get(3)?,
        ]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.i32().map(|v| u32::from_be_bytes(v.to_be_bytes()))
    }

    /// A count (i16) that is not negative and whose items, of at least
    /// `min_size` bytes each, fit in what remains: what a decoder reserves
    /// for them is bounded by the body.
    pub(crate) fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = usize::try_from(self.i16()?).ok()?;
        (n.saturating_mul(min_size) <= self.remaining()).then_some(n)
    }

    /// A count (i16) then that many big-endian i16 values.
    pub(crate) fn i16s(&mut self) -> Option<Vec<i16>> {
        let n = self.count(2)?;
        (0..n).map(|_| self.i16()).collect()
    }

    /// A value with an i32 length prefix; -1 is `None` (SQL NULL).
    pub(crate) fn value(&mut self) -> Option<Option<&'a [u8]>> {
        match self.i32()? {
            -1 => Some(None),
            n => self.bytes(usize::try_from(n).ok()?).map(Some),
        }
    }

    /// A NUL-terminated string, without its terminator.
    pub(crate) fn cstr(&mut self) -> Option<&'a [u8]> {
        let rest = self.buf.get(self.at..)?;
        let nul = rest.iter().position(|&b| b == 0)?;
        let out = rest.get(..nul)?;
        self.at += nul + 1;
        Some(out)
    }

    /// A NUL-terminated string that must be UTF-8.
    pub(crate) fn text(&mut self) -> Option<String> {
        std::str::from_utf8(self.cstr()?).ok().map(str::to_owned)
    }

    /// A statement or portal name as pgwire holds it: the empty name
    /// (unnamed) is `None`, as pgwire encodes `None`.
    pub(crate) fn name(&mut self) -> Option<Option<String>> {
        self.text().map(|s| (!s.is_empty()).then_some(s))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.at..).unwrap_or_default();
        self.at = self.buf.len();
        out
    }

    pub(crate) fn done(&self) -> bool {
        self.remaining() == 0
    }
}

/// Text for the hook and for events, from bytes that may not be UTF-8.
pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests;
