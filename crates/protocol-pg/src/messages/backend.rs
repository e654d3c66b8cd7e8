//! Backend messages: what the backend sends, and what the gateway sends the
//! client in the backend's place. Each is pgwire's type, read here with the
//! bounds-checked [`Reader`]; a few raw-byte shapes sit beside them where
//! the session must keep bytes exactly (each says why).

use std::ops::Range;

use bytes::{Bytes, BytesMut};
pub(crate) use pgwire::messages::copy::{CopyBothResponse, CopyInResponse, CopyOutResponse};
pub(crate) use pgwire::messages::data::{
    DataRow, FieldDescription, NoData, ParameterDescription, RowDescription,
};
pub(crate) use pgwire::messages::extendedquery::{
    BindComplete, CloseComplete, ParseComplete, PortalSuspended,
};
pub(crate) use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ErrorResponse, GssEncResponse, NoticeResponse,
    NotificationResponse, ReadyForQuery, SslResponse, TransactionStatus,
};
pub(crate) use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};

use super::{Decode, Reader, build_frame, encode, len_i16, len_i32, malformed};
use crate::error::CodecError;
use crate::hook::{Column, Format};

/// The code of an Authentication request, which pgwire's type has no room
/// for when it is one pgwire does not model (SCM, GSSAPI, SSPI): the
/// session names it when it refuses it.
pub(crate) fn authentication_code(body: &[u8]) -> Option<i32> {
    Reader::new(body).i32()
}

/// The requests pgwire models; any other code is refused by [`decode`](super::decode).
impl Decode for Authentication {
    const NAME: &'static str = "authentication request";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(match r.i32()? {
            0 => Authentication::Ok,
            2 => Authentication::KerberosV5,
            3 => Authentication::CleartextPassword,
            5 => Authentication::MD5Password(r.bytes(4)?.to_vec()),
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.text()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                Authentication::SASL(mechanisms)
            }
            11 => Authentication::SASLContinue(Bytes::copy_from_slice(r.rest())),
            12 => Authentication::SASLFinal(Bytes::copy_from_slice(r.rest())),
            _ => return None,
        })
    }
}

/// Protocol 3.0: the secret is exactly 4 bytes.
impl Decode for BackendKeyData {
    const NAME: &'static str = "backend key data";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let pid = r.i32()?;
        Some(BackendKeyData::new(pid, SecretKey::I32(r.i32()?)))
    }
}

/// A BackendKeyData with a 3.0 (4-byte) secret.
pub(crate) fn backend_key_data(pid: i32, secret: i32) -> BackendKeyData {
    BackendKeyData::new(pid, SecretKey::I32(secret))
}

impl Decode for ParameterStatus {
    const NAME: &'static str = "parameter status";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let name = r.text()?;
        Some(ParameterStatus::new(name, r.text()?))
    }
}

/// The raw name and value of a ParameterStatus. Raw because the session
/// forwards a status the hook does not rewrite exactly as it came, and a
/// backend in SQL_ASCII may report any bytes (pgwire's strings are UTF-8).
pub(crate) fn parameter_status(body: &[u8]) -> Result<(&[u8], &[u8]), CodecError> {
    let mut r = Reader::new(body);
    match (r.cstr(), r.cstr(), r.done()) {
        (Some(name), Some(value), true) => Ok((name, value)),
        _ => Err(malformed(b'S', ParameterStatus::NAME)),
    }
}

/// A ParameterStatus from raw parts (see [`parameter_status`]); a NUL in
/// the value is dropped.
pub(crate) fn build_parameter_status(name: &[u8], value: &[u8]) -> Bytes {
    let mut body = Vec::with_capacity(name.len() + value.len() + 2);
    body.extend(name.iter().filter(|b| **b != 0));
    body.push(0);
    body.extend(value.iter().filter(|b| **b != 0));
    body.push(0);
    build_frame(b'S', &body)
}

/// Only `I`, `T` and `E`.
impl Decode for ReadyForQuery {
    const NAME: &'static str = "ready for query";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let status = TransactionStatus::try_from(r.u8()?).ok()?;
        Some(ReadyForQuery::new(status))
    }
}

/// A ReadyForQuery of the gateway's own, from a status byte the backend
/// reported (anything but `T` or `E` is idle).
pub(crate) fn ready(status: u8) -> Bytes {
    let status = TransactionStatus::try_from(status).unwrap_or(TransactionStatus::Idle);
    encode(&ReadyForQuery::new(status))
}

impl Decode for RowDescription {
    const NAME: &'static str = "row description";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        // Each field takes at least 19 bytes.
        let n = r.count(19)?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(FieldDescription::new(
                r.text()?,
                r.i32()?,
                r.i16()?,
                r.u32()?,
                r.i16()?,
                r.i32()?,
                r.i16()?,
            ));
        }
        Some(RowDescription::new(fields))
    }
}

/// The columns of a RowDescription as the hook sees them. Read from the raw
/// body (names lossily, for the hook only) because a backend in SQL_ASCII
/// may name a column in any bytes, which must not end the session.
pub(crate) fn columns(body: &[u8]) -> Result<Vec<Column>, CodecError> {
    let mut r = Reader::new(body);
    let cols = (|| {
        let n = r.count(19)?;
        let mut cols = Vec::with_capacity(n);
        for index in 0..n {
            let name = super::lossy(r.cstr()?);
            let table_oid = r.u32()?;
            let attribute = r.i16()?;
            let type_oid = r.u32()?;
            let _size = r.i16()?;
            let _modifier = r.i32()?;
            let format = if r.i16()? == 1 {
                Format::Binary
            } else {
                Format::Text
            };
            cols.push(Column {
                index,
                name,
                table_oid,
                attribute,
                type_oid,
                format,
            });
        }
        r.done().then_some(cols)
    })();
    cols.ok_or_else(|| malformed(b'T', RowDescription::NAME))
}

/// A RowDescription field's raw name, and the 18 bytes after it.
pub(crate) type RawField<'a> = (&'a [u8], &'a [u8]);

/// The fields of a RowDescription as raw (name, the 18 bytes after it)
/// pairs: the column-name transform rewrites names and keeps every other
/// byte as it came (see [`columns`] for why the names stay raw).
pub(crate) fn row_fields(body: &[u8]) -> Result<Vec<RawField<'_>>, CodecError> {
    let mut r = Reader::new(body);
    let fields = (|| {
        let n = r.count(19)?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            // Table oid, attribute, type oid, size, modifier, format.
            fields.push((r.cstr()?, r.bytes(18)?));
        }
        r.done().then_some(fields)
    })();
    fields.ok_or_else(|| malformed(b'T', RowDescription::NAME))
}

/// A RowDescription from raw fields (see [`row_fields`]); a NUL in a name
/// is dropped (it would end the name early and shift the fields after it).
pub(crate) fn build_row_description<'a>(
    fields: impl ExactSizeIterator<Item = RawField<'a>>,
) -> Bytes {
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&len_i16(fields.len()).to_be_bytes());
    for (name, rest) in fields {
        body.extend(name.iter().filter(|b| **b != 0));
        body.push(0);
        body.extend_from_slice(rest);
    }
    build_frame(b'T', &body)
}

/// pgwire's DataRow keeps the fields as one undivided buffer; they are
/// checked here (every length within the body, nothing after the last).
impl Decode for DataRow {
    const NAME: &'static str = "data row";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let count = r.i16()?;
        let n = usize::try_from(count).ok()?;
        if n.saturating_mul(4) > r.remaining() {
            return None;
        }
        let rest = r.rest();
        let mut fields = Reader::new(rest);
        for _ in 0..n {
            fields.value()?;
        }
        fields
            .done()
            .then(|| DataRow::new(BytesMut::from(rest), count))
    }
}

/// Splits a DataRow body into its fields without copying them: the row
/// transform's path (pgwire's [`DataRow`] would copy the row).
///
/// Each field is `None` for SQL NULL, or the byte range of its value.
pub(crate) fn split_data_row(body: &[u8]) -> Result<Vec<Option<Range<usize>>>, CodecError> {
    let bad = |reason: &str| malformed(b'D', reason);
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

/// Builds a DataRow frame from its fields in one allocation, without first
/// gathering them into pgwire's [`DataRow`] buffer (which would copy the
/// row twice).
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
    buf.extend_from_slice(&len_i32(body_len + 4).to_be_bytes());
    buf.extend_from_slice(&len_i16(count).to_be_bytes());
    for f in fields {
        match f {
            None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                buf.extend_from_slice(&len_i32(v.len()).to_be_bytes());
                buf.extend_from_slice(v);
            }
        }
    }
    buf.freeze()
}

impl Decode for CommandComplete {
    const NAME: &'static str = "command complete";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.text().map(CommandComplete::new)
    }
}

/// The (code, value) fields of an ErrorResponse or NoticeResponse.
fn read_fields(r: &mut Reader<'_>) -> Option<Vec<(u8, String)>> {
    let mut out = Vec::new();
    loop {
        match r.u8()? {
            0 => return Some(out),
            code => out.push((code, r.text()?)),
        }
    }
}

impl Decode for ErrorResponse {
    const NAME: &'static str = "error fields";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        read_fields(r).map(ErrorResponse::new)
    }
}

impl Decode for NoticeResponse {
    const NAME: &'static str = "notice fields";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        read_fields(r).map(NoticeResponse::new)
    }
}

/// The raw fields of an ErrorResponse (`tag` `E`) or NoticeResponse (`N`).
/// Raw because the transform forwards every field the hook leaves alone
/// byte for byte, and a backend in SQL_ASCII may put any bytes in them
/// (an input value quoted in an error message).
pub(crate) fn parse_fields(tag: u8, body: &[u8]) -> Result<Vec<(u8, &[u8])>, CodecError> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    loop {
        match r.u8() {
            Some(0) => break,
            Some(code) => match r.cstr() {
                Some(value) => out.push((code, value)),
                None => return Err(malformed(tag, "error fields")),
            },
            None => return Err(malformed(tag, "error fields")),
        }
    }
    if !r.done() {
        return Err(malformed(tag, "error fields"));
    }
    Ok(out)
}

/// An ErrorResponse (`tag` `E`) or NoticeResponse (`N`) from raw fields
/// (see [`parse_fields`]).
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

/// The fields of an error or notice of the gateway's own.
fn own_fields(
    severity: &str,
    code: &str,
    message: &str,
    detail: Option<&str>,
) -> Vec<(u8, String)> {
    let mut fields = vec![
        (b'S', severity.to_owned()),
        (b'V', severity.to_owned()),
        (b'C', code.to_owned()),
        (b'M', message.to_owned()),
    ];
    if let Some(d) = detail {
        fields.push((b'D', d.to_owned()));
    }
    // A NUL would end the field early and shift the rest.
    for (_, v) in &mut fields {
        v.retain(|c| c != '\0');
    }
    fields
}

/// An ErrorResponse (`tag` `E`) or NoticeResponse (`N`) of the gateway's own.
pub(crate) fn error_like(
    tag: u8,
    severity: &str,
    code: &str,
    message: &str,
    detail: Option<&str>,
) -> Bytes {
    let fields = own_fields(severity, code, message, detail);
    if tag == b'N' {
        encode(&NoticeResponse::new(fields))
    } else {
        encode(&ErrorResponse::new(fields))
    }
}

/// An ERROR with a SQLSTATE.
pub(crate) fn error(code: &str, message: &str) -> Bytes {
    error_like(b'E', "ERROR", code, message, None)
}

/// A FATAL error with a SQLSTATE: the connection ends after it.
pub(crate) fn fatal(code: &str, message: &str) -> Bytes {
    error_like(b'E', "FATAL", code, message, None)
}

/// A NOTICE.
pub(crate) fn notice(message: &str) -> Bytes {
    error_like(b'N', "NOTICE", "00000", message, None)
}

impl Decode for NotificationResponse {
    const NAME: &'static str = "notification";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let pid = r.i32()?;
        let channel = r.text()?;
        Some(NotificationResponse::new(pid, channel, r.text()?))
    }
}

/// The raw process id, channel and payload of a NotificationResponse. Raw
/// for the reason [`parse_fields`] gives.
pub(crate) fn notification(body: &[u8]) -> Result<(i32, &[u8], &[u8]), CodecError> {
    let mut r = Reader::new(body);
    match (r.i32(), r.cstr(), r.cstr(), r.done()) {
        (Some(pid), Some(channel), Some(payload), true) => Ok((pid, channel, payload)),
        _ => Err(malformed(b'A', NotificationResponse::NAME)),
    }
}

/// A NotificationResponse from raw parts (see [`notification`]); a NUL in
/// the payload is dropped.
pub(crate) fn build_notification(pid: i32, channel: &[u8], payload: &[u8]) -> Bytes {
    let mut body = Vec::with_capacity(channel.len() + payload.len() + 6);
    body.extend_from_slice(&pid.to_be_bytes());
    body.extend(channel.iter().filter(|b| **b != 0));
    body.push(0);
    body.extend(payload.iter().filter(|b| **b != 0));
    body.push(0);
    build_frame(b'A', &body)
}

impl Decode for ParameterDescription {
    const NAME: &'static str = "parameter description";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let n = r.count(4)?;
        let types = (0..n).map(|_| r.u32()).collect::<Option<Vec<_>>>()?;
        Some(ParameterDescription::new(types))
    }
}

/// The body shared by the COPY responses. pgwire keeps the column count
/// apart from the formats; here it is always their number.
fn copy_formats(r: &mut Reader<'_>) -> Option<(i8, i16, Vec<i16>)> {
    let format = i8::from_be_bytes([r.u8()?]);
    let formats = r.i16s()?;
    Some((format, len_i16(formats.len()), formats))
}

impl Decode for CopyInResponse {
    const NAME: &'static str = "copy in response";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let (format, n, formats) = copy_formats(r)?;
        Some(CopyInResponse::new(format, n, formats))
    }
}

impl Decode for CopyOutResponse {
    const NAME: &'static str = "copy out response";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let (format, n, formats) = copy_formats(r)?;
        Some(CopyOutResponse::new(format, n, formats))
    }
}

impl Decode for CopyBothResponse {
    const NAME: &'static str = "copy both response";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let (format, n, formats) = copy_formats(r)?;
        Some(CopyBothResponse::new(format, n, formats))
    }
}

impl Decode for NegotiateProtocolVersion {
    const NAME: &'static str = "protocol negotiation";
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let minor = r.i32()?;
        let n = usize::try_from(r.i32()?).ok()?;
        // Each option takes at least its NUL.
        if n > r.remaining() {
            return None;
        }
        let options = (0..n).map(|_| r.text()).collect::<Option<Vec<_>>>()?;
        Some(NegotiateProtocolVersion::new(minor, options))
    }
}

/// A CopyData of the hook's rewritten COPY bytes (pgwire's [`CopyData`]
/// would copy them once more).
///
/// [`CopyData`]: super::frontend::CopyData
pub(crate) fn copy_data(data: &[u8]) -> Bytes {
    build_frame(b'd', data)
}

/// The one-byte answer to an SSLRequest or GSSENCRequest the gateway
/// declines (pgwire writes both as `N`).
pub(crate) fn ssl_refused() -> Bytes {
    encode(&SslResponse::Refuse)
}

/// See [`ssl_refused`].
pub(crate) fn gss_refused() -> Bytes {
    encode(&GssEncResponse::Refuse)
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
    ParseComplete = "parse complete",
    BindComplete = "bind complete",
    CloseComplete = "close complete",
    NoData = "no data",
    PortalSuspended = "portal suspended",
    EmptyQueryResponse = "empty query response",
}
