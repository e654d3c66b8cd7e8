//! Bounds-checked reading of message bodies, and building of the messages
//! the gateway itself sends.
//!
//! pgwire's `decode_body` functions index and split without checking the
//! remaining length (a short Bind or a short MD5 Authentication panics), so
//! bodies of untrusted frames are read here, field by field, and pgwire's
//! types are used to encode what the gateway sends to the backend.

use bytes::{Bytes, BytesMut};

use crate::codec::build_frame;

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

    /// A NUL-terminated string, without its terminator.
    pub(crate) fn cstr(&mut self) -> Option<&'a [u8]> {
        let rest = self.buf.get(self.at..)?;
        let nul = rest.iter().position(|&b| b == 0)?;
        let out = rest.get(..nul)?;
        self.at += nul + 1;
        Some(out)
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

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Builds an ErrorResponse (`tag` b'E') or NoticeResponse (`tag` b'N').
pub(crate) fn error_like(
    tag: u8,
    severity: &str,
    code: &str,
    message: &str,
    detail: Option<&str>,
) -> Bytes {
    let mut body = BytesMut::new();
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.extend_from_slice(&[field]);
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(&[0]);
    }
    if let Some(d) = detail {
        body.extend_from_slice(b"D");
        body.extend_from_slice(d.as_bytes());
        body.extend_from_slice(&[0]);
    }
    body.extend_from_slice(&[0]);
    build_frame(tag, &body)
}

pub(crate) fn error(code: &str, message: &str) -> Bytes {
    error_like(b'E', "ERROR", code, message, None)
}

pub(crate) fn fatal(code: &str, message: &str) -> Bytes {
    error_like(b'E', "FATAL", code, message, None)
}

pub(crate) fn notice(message: &str) -> Bytes {
    error_like(b'N', "NOTICE", "00000", message, None)
}

pub(crate) fn ready(status: u8) -> Bytes {
    build_frame(b'Z', &[status])
}

pub(crate) fn auth_request(code: i32) -> Bytes {
    build_frame(b'R', &code.to_be_bytes())
}

pub(crate) fn backend_key_data(pid: i32, secret: i32) -> Bytes {
    let mut body = [0u8; 8];
    let (a, b) = body.split_at_mut(4);
    a.copy_from_slice(&pid.to_be_bytes());
    b.copy_from_slice(&secret.to_be_bytes());
    build_frame(b'K', &body)
}

/// An ErrorResponse or NoticeResponse as (field code, raw value) pairs.
pub(crate) fn parse_fields(body: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    loop {
        let code = r.u8()?;
        if code == 0 {
            break;
        }
        out.push((code, r.cstr()?));
    }
    r.done().then_some(out)
}

pub(crate) fn build_fields(tag: u8, fields: &[(u8, Vec<u8>)]) -> Bytes {
    let mut body = Vec::new();
    for (code, value) in fields {
        body.push(*code);
        body.extend_from_slice(value);
        body.push(0);
    }
    body.push(0);
    build_frame(tag, &body)
}

/// A client-side CancelRequest packet for the backend.
pub(crate) fn cancel_request(pid: i32, secret: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(&16i32.to_be_bytes());
    buf.extend_from_slice(&crate::codec::CANCEL_REQUEST.to_be_bytes());
    buf.extend_from_slice(&pid.to_be_bytes());
    buf.extend_from_slice(&secret.to_be_bytes());
    buf.freeze()
}

/// A simple query frame.
pub(crate) fn query(sql: &str) -> Bytes {
    let mut body = Vec::with_capacity(sql.len() + 1);
    body.extend_from_slice(sql.as_bytes());
    body.push(0);
    build_frame(b'Q', &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_stops_at_end() {
        let mut r = Reader::new(b"ab\0\x00\x01");
        assert_eq!(r.cstr(), Some(&b"ab"[..]));
        assert_eq!(r.i32(), None);
        assert_eq!(r.i16(), Some(1));
        assert_eq!(r.u8(), None);
        assert!(r.done());
        assert_eq!(Reader::new(b"abc").cstr(), None);
    }

    #[test]
    fn fields_round_trip() {
        let e = error("42501", "no");
        let f = parse_fields(&e[5..]).unwrap();
        assert!(f.contains(&(b'C', &b"42501"[..])));
        let rebuilt = build_fields(
            b'E',
            &f.iter().map(|(c, v)| (*c, v.to_vec())).collect::<Vec<_>>(),
        );
        assert_eq!(rebuilt, e);
    }
}
