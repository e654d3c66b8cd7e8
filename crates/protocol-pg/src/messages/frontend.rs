//! Frontend messages: what a client sends, and what the gateway sends the
//! backend as its client. Each is pgwire's type, read here with the
//! bounds-checked [`Reader`] (see the module above for why not with
//! pgwire's decoders).

use bytes::Bytes;
pub(crate) use pgwire::messages::cancel::CancelRequest;
pub(crate) use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
pub(crate) use pgwire::messages::extendedquery::{
    Bind, Close, Describe, Execute, Flush, Parse, Sync, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
pub(crate) use pgwire::messages::simplequery::Query;
pub(crate) use pgwire::messages::startup::{
    GssEncRequest, Password, SASLInitialResponse, SASLResponse, SecretKey, SslRequest, Startup,
};
pub(crate) use pgwire::messages::terminate::Terminate;

use super::{Decode, Reader};

/// Request code of an SSLRequest.
pub(crate) const SSL_REQUEST: i32 = SslRequest::BODY_MAGIC_NUMBER;
/// Request code of a GSSENCRequest.
pub(crate) const GSSENC_REQUEST: i32 = GssEncRequest::BODY_MAGIC_NUMBER;
/// Request code of a CancelRequest (pgwire keeps its own private).
pub(crate) const CANCEL_REQUEST: i32 = 80_877_102;

/// The request code (or protocol version) of an untagged startup-phase
/// packet's body; 0 when the body is shorter than a code.
pub(crate) fn startup_code(body: &[u8]) -> i32 {
    Reader::new(body).i32().unwrap_or(0)
}

/// A CancelRequest for protocol 3.0 (a 4-byte secret), as the gateway
/// sends the backend's own key.
pub(crate) fn cancel_request(pid: i32, secret: i32) -> CancelRequest {
    CancelRequest::new(pid, SecretKey::I32(secret))
}

/// A simple query of the gateway's own.
pub(crate) fn query(sql: &str) -> Query {
    Query::new(sql.to_owned())
}

impl Decode for SslRequest {
    const NAME: &'static str = "SSLRequest";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        (r.i32()? == SSL_REQUEST).then(SslRequest::new)
    }
}

impl Decode for GssEncRequest {
    const NAME: &'static str = "GSSENCRequest";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        (r.i32()? == GSSENC_REQUEST).then(GssEncRequest::new)
    }
}

/// Protocol 3.0 only: the secret is exactly 4 bytes (pgwire would read a
/// longer 3.2 key as bytes; the gateway speaks 3.0 on both sides).
impl Decode for CancelRequest {
    const NAME: &'static str = "CancelRequest";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        if r.i32()? != CANCEL_REQUEST {
            return None;
        }
        let pid = r.i32()?;
        let secret = r.i32()?;
        Some(cancel_request(pid, secret))
    }
}

/// The parameters land in pgwire's map: a name sent twice keeps its last
/// value, as PostgreSQL does. Names and values must be UTF-8.
impl Decode for Startup {
    const NAME: &'static str = "startup parameters";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let version = r.i32()?.to_be_bytes();
        let mut startup = Startup::new();
        startup.protocol_number_major = u16::from_be_bytes([version[0], version[1]]);
        startup.protocol_number_minor = u16::from_be_bytes([version[2], version[3]]);
        loop {
            let key = r.text()?;
            if key.is_empty() {
                break;
            }
            let value = r.text()?;
            startup.parameters.insert(key, value);
        }
        Some(startup)
    }
}

impl Decode for Password {
    const NAME: &'static str = "password message";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.text().map(Password::new)
    }
}

impl Decode for SASLInitialResponse {
    const NAME: &'static str = "SASL initial response";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let mechanism = r.text()?;
        let data = r.value()?.map(Bytes::copy_from_slice);
        Some(SASLInitialResponse::new(mechanism, data))
    }
}

impl Decode for SASLResponse {
    const NAME: &'static str = "SASL response";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(SASLResponse::new(Bytes::copy_from_slice(r.rest())))
    }
}

impl Decode for Query {
    const NAME: &'static str = "query";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.text().map(Query::new)
    }
}

impl Decode for Parse {
    const NAME: &'static str = "parse";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let name = r.name()?;
        let sql = r.text()?;
        let n = r.count(4)?;
        let types = (0..n).map(|_| r.u32()).collect::<Option<Vec<_>>>()?;
        Some(Parse::new(name, sql, types))
    }
}

/// PostgreSQL's refusal of a message whose text is well framed but not
/// valid UTF-8: a Query's text, a Parse's statement name or text, a Bind's
/// portal or statement name, the name in a Describe, Close or Execute. The
/// message of its error 22021, or `None` for a frame that is valid or that
/// is malformed in any other way (the decoders refuse it, and the session
/// ends with 08P01).
///
/// PostgreSQL checks text in the client encoding as it reads a message,
/// before acting on any of it, and answers `invalid byte sequence for
/// encoding "UTF8"`; the session goes on. The gateway reads only UTF-8 and
/// SQL_ASCII clients, and under either PostgreSQL (its database in UTF8)
/// checks the bytes as UTF-8, so UTF-8 is the check for both; a database in
/// SQL_ASCII with a SQL_ASCII client checks nothing, where the gateway
/// still refuses (its analysis reads text only as UTF-8). A Bind's
/// parameter values are not text here: they are forwarded as bytes, and
/// PostgreSQL checks those in text format itself.
pub(crate) fn invalid_statement_text(tag: u8, body: &[u8]) -> Option<String> {
    let mut r = Reader::new(body);
    let texts = match tag {
        b'Q' => vec![r.cstr()?],
        b'P' => {
            let name = r.cstr()?;
            let sql = r.cstr()?;
            let n = r.count(4)?;
            for _ in 0..n {
                r.u32()?;
            }
            vec![name, sql]
        }
        b'B' => {
            let portal = r.cstr()?;
            let statement = r.cstr()?;
            r.i16s()?;
            let n = r.count(4)?;
            for _ in 0..n {
                r.value()?;
            }
            r.i16s()?;
            vec![portal, statement]
        }
        b'D' | b'C' => {
            target(&mut r)?;
            vec![r.cstr()?]
        }
        b'E' => {
            let portal = r.cstr()?;
            r.i32()?;
            vec![portal]
        }
        _ => return None,
    };
    if !r.done() {
        return None;
    }
    texts.into_iter().find_map(invalid_utf8)
}

/// PostgreSQL's message for bytes that are not UTF-8: from the first
/// invalid sequence, as many bytes as its lead byte announces (one for a
/// byte that leads nothing), at most to the end of the text.
fn invalid_utf8(text: &[u8]) -> Option<String> {
    let e = std::str::from_utf8(text).err()?;
    let rest = text.get(e.valid_up_to()..)?;
    let len = match rest.first()? {
        b if b & 0xe0 == 0xc0 => 2,
        b if b & 0xf0 == 0xe0 => 3,
        b if b & 0xf8 == 0xf0 => 4,
        _ => 1,
    };
    let bytes: Vec<String> = rest
        .iter()
        .take(len)
        .map(|b| format!("0x{b:02x}"))
        .collect();
    Some(format!(
        "invalid byte sequence for encoding \"UTF8\": {}",
        bytes.join(" ")
    ))
}

/// Counts are read as the protocol's i16 (pgwire reads u16) and each is
/// checked against what remains before anything is reserved.
impl Decode for Bind {
    const NAME: &'static str = "bind";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let portal = r.name()?;
        let statement = r.name()?;
        let formats = r.i16s()?;
        let n = r.count(4)?;
        let params = (0..n)
            .map(|_| r.value().map(|v| v.map(Bytes::copy_from_slice)))
            .collect::<Option<Vec<_>>>()?;
        let results = r.i16s()?;
        Some(Bind::new(portal, statement, formats, params, results))
    }
}

/// The target byte of a Describe or Close: `S` or `P`, nothing else.
fn target(r: &mut Reader<'_>) -> Option<u8> {
    r.u8()
        .filter(|t| matches!(*t, TARGET_TYPE_BYTE_STATEMENT | TARGET_TYPE_BYTE_PORTAL))
}

impl Decode for Describe {
    const NAME: &'static str = "describe";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let target = target(r)?;
        Some(Describe::new(target, r.name()?))
    }
}

impl Decode for Close {
    const NAME: &'static str = "close";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let target = target(r)?;
        Some(Close::new(target, r.name()?))
    }
}

impl Decode for Execute {
    const NAME: &'static str = "execute";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let portal = r.name()?;
        Some(Execute::new(portal, r.i32()?))
    }
}

impl Decode for CopyData {
    const NAME: &'static str = "copy data";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(CopyData::new(Bytes::copy_from_slice(r.rest())))
    }
}

impl Decode for CopyFail {
    const NAME: &'static str = "copy fail";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.text().map(CopyFail::new)
    }
}

/// Declares the decoders of messages without a body: any body is refused.
macro_rules! empty {
    ($($ty:ty = $name:literal,)*) => {$(
        impl Decode for $ty {
            const NAME: &'static str = $name;
            fn read(_: &mut Reader<'_>) -> Option<Self> {
                Some(<$ty>::new())
            }
        }
    )*};
}

empty! {
    Sync = "sync",
    Flush = "flush",
    Terminate = "terminate",
    CopyDone = "copy done",
}
