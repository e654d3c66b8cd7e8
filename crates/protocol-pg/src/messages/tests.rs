//! Framing examples, and the properties of every message type: pgwire's
//! types round-trip through our decoders, untrusted bodies never panic, and
//! what a decoder accepts encodes back to exactly the bytes it read.

use std::collections::BTreeMap;
use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::backend::*;
use super::frontend::*;
use super::*;

/// The bytes PostgreSQL names for text that is not UTF-8 (its
/// `report_invalid_encoding`): as many as the lead byte announces, at most
/// to the end; the statement name before the text; nothing for a frame
/// that is valid or malformed otherwise.
#[test]
fn invalid_statement_text_names_the_bytes_postgresql_names() {
    let msg = |b: &str| format!("invalid byte sequence for encoding \"UTF8\": {b}");
    let q = |t: &[u8]| invalid_statement_text(b'Q', &[t, b"\0"].concat());
    assert_eq!(q(b"select '\xff'"), Some(msg("0xff")));
    assert_eq!(q(b"'caf\xc3'"), Some(msg("0xc3 0x27")));
    assert_eq!(q(b"a\xe2\x28\xa1b"), Some(msg("0xe2 0x28 0xa1")));
    assert_eq!(q(b"\xed\xa0\x80"), Some(msg("0xed 0xa0 0x80")));
    assert_eq!(q(b"\xc0\xaf"), Some(msg("0xc0 0xaf")));
    assert_eq!(q(b"a\xf0\x90"), Some(msg("0xf0 0x90")));
    assert_eq!(q(b"\xf8\x88\x80"), Some(msg("0xf8")));
    assert_eq!(q("caf\u{e9} \u{1f600}".as_bytes()), None);
    assert_eq!(invalid_statement_text(b'Q', b"\xff"), None);
    assert_eq!(invalid_statement_text(b'Q', b"\xff\0x"), None);
    assert_eq!(
        invalid_statement_text(b'P', b"s\xfe\0\xff\0\0\x01\0\0\0\x17"),
        Some(msg("0xfe"))
    );
    assert_eq!(
        invalid_statement_text(b'P', b"s\0\xff\0\0\0"),
        Some(msg("0xff"))
    );
    assert_eq!(invalid_statement_text(b'P', b"s\0\xff\0\0\x01"), None);
    assert_eq!(invalid_statement_text(b'P', b"s\0\xff\0\0\0x"), None);
    // Names in Bind, Describe, Close and Execute; a frame malformed
    // otherwise (a short Bind, an unknown target) is not this refusal.
    assert_eq!(
        invalid_statement_text(b'B', b"\xff\0\0\0\0\0\0\0\0"),
        Some(msg("0xff"))
    );
    assert_eq!(
        invalid_statement_text(b'B', b"p\0s\xc3\0\0\0\0\0\0\0"),
        Some(msg("0xc3"))
    );
    assert_eq!(invalid_statement_text(b'B', b"\xff\0\0\0\0\0\0\0"), None);
    assert_eq!(invalid_statement_text(b'D', b"S\xff\0"), Some(msg("0xff")));
    assert_eq!(invalid_statement_text(b'C', b"P\xff\0"), Some(msg("0xff")));
    assert_eq!(invalid_statement_text(b'C', b"X\xff\0"), None);
    assert_eq!(
        invalid_statement_text(b'E', b"\xff\0\0\0\0\0"),
        Some(msg("0xff"))
    );
    assert_eq!(invalid_statement_text(b'E', b"\xff\0\0\0"), None);
    assert_eq!(invalid_statement_text(b'D', b"Sok\0"), None);
}

#[test]
fn frame_needs_more_then_completes() {
    let mut buf = BytesMut::from(&b"Q\0\0\0\x09sel"[..]);
    assert_eq!(read_frame(&mut buf, 100).unwrap(), None);
    buf.extend_from_slice(b"1\0extra");
    let f = read_frame(&mut buf, 100).unwrap().unwrap();
    assert_eq!(f.tag, b'Q');
    assert_eq!(f.body(), b"sel1\0");
    assert_eq!(f.decode::<Query>().unwrap().query, "sel1");
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
    // pgwire's DataRow of the same frame holds the same bytes.
    let pg: DataRow = f.decode().unwrap();
    assert_eq!(pg.field_count, 3);
    assert_eq!(encode(&pg), row);
    assert!(split_data_row(b"\x00\x02\x00\x00\x00\x05ab").is_err());
    assert!(split_data_row(b"\x7f\xff").is_err());
}

#[test]
fn reader_stops_at_end() {
    let mut r = Reader::new(b"ab\0\x00\x01");
    assert_eq!(r.cstr(), Some(&b"ab"[..]));
    assert_eq!(r.i32(), None);
    assert_eq!(r.i16(), Some(1));
    assert_eq!(r.u8(), None);
    assert!(r.done());
    assert_eq!(Reader::new(b"abc").cstr(), None);
    // A count whose items cannot fit in what remains is refused.
    assert_eq!(Reader::new(b"\x00\x03\0\0\0\0\0\0\0\0").count(4), None);
    assert_eq!(Reader::new(b"\xff\xff").count(1), None);
    // Text is UTF-8 or nothing.
    assert_eq!(Reader::new(b"\xff\0").text(), None);
}

/// The bodies pgwire's own decoders panic on (short reads): ours refuse them.
#[test]
fn short_bodies_pgwire_would_panic_on_are_refused() {
    assert!(decode::<Bind>(b"p\0").is_err());
    assert!(decode::<Bind>(b"\0\0\0\x01\0\0\0\x01\0\0\0\x09ab").is_err());
    assert!(decode::<Authentication>(b"\0\0\0\x05\x01").is_err());
    assert!(decode::<Parse>(b"s\0select 1\0").is_err());
    assert!(decode::<ErrorResponse>(b"Mno").is_err());
    assert!(decode::<ReadyForQuery>(b"").is_err());
    assert!(decode::<ReadyForQuery>(b"X").is_err());
    assert!(decode::<BackendKeyData>(b"\0\0\0\x01").is_err());
    // Trailing bytes pgwire would ignore.
    assert!(decode::<Sync>(b"x").is_err());
    assert!(decode::<Query>(b"select 1\0x").is_err());
    // Strings pgwire would read lossily.
    assert!(decode::<Query>(b"select '\xff'\0").is_err());
    // A request code pgwire does not model is refused, and can be named.
    assert!(decode::<Authentication>(b"\0\0\0\x07").is_err());
    assert_eq!(authentication_code(b"\0\0\0\x07"), Some(7));
}

#[test]
fn gateway_errors_carry_their_fields() {
    let e = error("42501", "no");
    let f = parse_fields(b'E', &e[5..]).unwrap();
    assert!(f.contains(&(b'C', &b"42501"[..])));
    assert!(f.contains(&(b'S', &b"ERROR"[..])));
    let rebuilt = build_fields(
        b'E',
        &f.iter().map(|(c, v)| (*c, v.to_vec())).collect::<Vec<_>>(),
    );
    assert_eq!(rebuilt, e);
    assert_eq!(&notice("n")[..1], b"N");
    let f = fatal("08P01", "x\0y");
    let f: ErrorResponse = decode(&f[5..]).unwrap();
    assert!(f.fields.contains(&(b'S', "FATAL".to_owned())));
    assert!(f.fields.contains(&(b'M', "xy".to_owned())));
}

#[test]
fn frames_the_gateway_builds_are_the_documented_bytes() {
    let bind = Bind::new(None, None, vec![], vec![], vec![]);
    assert_eq!(&encode(&bind)[..], b"B\0\0\0\x0c\0\0\0\0\0\0\0\0");
    assert_eq!(
        &encode(&Execute::new(None, 0))[..],
        b"E\0\0\0\x09\0\0\0\0\0"
    );
    assert_eq!(&encode(&Terminate::new())[..], b"X\0\0\0\x04");
    assert_eq!(
        &encode(&SslRequest::new())[..],
        b"\0\0\0\x08\x04\xd2\x16\x2f"
    );
    assert_eq!(
        &encode(&cancel_request(1, 2))[..],
        b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x01\0\0\0\x02"
    );
    assert_eq!(&ssl_refused()[..], b"N");
    assert_eq!(&gss_refused()[..], b"N");
    assert_eq!(&ready(b'T')[..], b"Z\0\0\0\x05T");
    assert_eq!(
        &encode(&backend_key_data(7, 9))[..],
        b"K\0\0\0\x0c\0\0\0\x07\0\0\0\x09"
    );
    assert_eq!(&encode(&Authentication::Ok)[..], b"R\0\0\0\x08\0\0\0\0");
}

/// Encodes `m` with pgwire, reads it back as one whole frame with our
/// framing, and decodes it with ours: it must be `m`.
fn check<M>(m: &M) -> Result<(), TestCaseError>
where
    M: Decode + PartialEq + Debug,
{
    let frame = encode(m);
    prop_assert!(!frame.is_empty(), "pgwire refused to encode {:?}", m);
    let mut buf = BytesMut::from(&frame[..]);
    let tag = M::message_type().unwrap_or(0);
    let read = if tag == 0 {
        read_startup(&mut buf, usize::MAX)
    } else {
        read_frame(&mut buf, usize::MAX)
    };
    let read = read
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .ok_or_else(|| TestCaseError::fail("incomplete frame"))?;
    prop_assert!(buf.is_empty(), "bytes after the frame");
    prop_assert_eq!(read.tag, tag);
    let back: M = read
        .decode()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, m);
    Ok(())
}

/// `frame` is one whole frame that decodes to `m`.
fn check_frame<M>(frame: &Bytes, m: &M) -> Result<(), TestCaseError>
where
    M: Decode + PartialEq + Debug,
{
    let mut buf = BytesMut::from(&frame[..]);
    let read = read_frame(&mut buf, usize::MAX)
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .ok_or_else(|| TestCaseError::fail("incomplete frame"))?;
    prop_assert!(buf.is_empty(), "bytes after the frame");
    prop_assert_eq!(Some(read.tag), M::message_type());
    let back: M = read
        .decode()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, m);
    Ok(())
}

/// UTF-8 text without NUL (a C string's content).
fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,10}"
}

/// A statement or portal name as pgwire holds it (unnamed is `None`).
fn name() -> impl Strategy<Value = Option<String>> {
    option::of("[^\\x00]{1,8}")
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..24)
}

fn values() -> impl Strategy<Value = Vec<Option<Vec<u8>>>> {
    vec(option::of(bytes()), 0..6)
}

fn shared(v: &[Option<Vec<u8>>]) -> Vec<Option<Bytes>> {
    v.iter()
        .map(|v| v.as_deref().map(Bytes::copy_from_slice))
        .collect()
}

proptest! {
    #[test]
    fn frontend_messages_round_trip(
        a in text(), b in text(), c in bytes(), n in any::<i32>(), m in any::<i32>(),
        version in any::<(u16, u16)>(),
        params in proptest::collection::btree_map("[^\\x00]{1,8}", text(), 0..5),
        portal in name(), statement in name(),
        types in vec(any::<u32>(), 0..6), formats in vec(any::<i16>(), 0..6),
        results in vec(any::<i16>(), 0..6), values in values(),
        data in option::of(bytes()), target in prop_oneof![Just(b'S'), Just(b'P')],
    ) {
        check(&SslRequest::new())?;
        check(&GssEncRequest::new())?;
        check(&cancel_request(n, m))?;
        let mut startup = Startup::new();
        startup.protocol_number_major = version.0;
        startup.protocol_number_minor = version.1;
        startup.parameters = params.into_iter().collect::<BTreeMap<_, _>>();
        check(&startup)?;
        check(&Password::new(a.clone()))?;
        check(&SASLInitialResponse::new(a.clone(), data.map(Bytes::from)))?;
        check(&SASLResponse::new(Bytes::from(c.clone())))?;
        check(&Query::new(a.clone()))?;
        check(&Parse::new(statement.clone(), b.clone(), types))?;
        check(&Bind::new(portal.clone(), statement.clone(), formats, shared(&values), results))?;
        check(&Describe::new(target, portal.clone()))?;
        check(&Close::new(target, statement))?;
        check(&Execute::new(portal, n))?;
        check(&CopyData::new(Bytes::from(c)))?;
        check(&CopyFail::new(b))?;
        check(&CopyDone::new())?;
        check(&Sync::new())?;
        check(&Flush::new())?;
        check(&Terminate::new())?;
    }

    #[test]
    fn backend_messages_round_trip(
        a in text(), b in text(), c in bytes(), n in any::<i32>(), m in any::<i32>(),
        salt in any::<[u8; 4]>(), mechanisms in vec("[^\\x00]{1,12}", 0..4),
        fields in vec((text(), any::<i32>(), any::<i16>(), any::<u32>(), any::<i16>(),
            any::<i32>(), any::<i16>()), 0..5),
        row in values(), error_fields in vec((1u8..=255, text()), 0..6),
        oids in vec(any::<u32>(), 0..6), formats in vec(any::<i16>(), 0..6),
        format in any::<i8>(), options in vec(text(), 0..4),
        status in prop_oneof![
            Just(TransactionStatus::Idle),
            Just(TransactionStatus::Transaction),
            Just(TransactionStatus::Error),
        ],
    ) {
        check(&Authentication::Ok)?;
        check(&Authentication::KerberosV5)?;
        check(&Authentication::CleartextPassword)?;
        check(&Authentication::MD5Password(salt.to_vec()))?;
        check(&Authentication::SASL(mechanisms))?;
        check(&Authentication::SASLContinue(Bytes::from(c.clone())))?;
        check(&Authentication::SASLFinal(Bytes::from(c.clone())))?;
        check(&backend_key_data(n, m))?;
        check(&ParameterStatus::new(a.clone(), b.clone()))?;
        check(&ReadyForQuery::new(status))?;
        let described = fields
            .into_iter()
            .map(|(name, table, column, type_id, size, modifier, format)| {
                FieldDescription::new(name, table, column, type_id, size, modifier, format)
            })
            .collect::<Vec<_>>();
        let count = described.len();
        let description = RowDescription::new(described);
        prop_assert_eq!(columns(&encode(&description)[5..]).map(|c| c.len()), Ok(count));
        check(&description)?;
        // pgwire's DataRow carries the fields as one buffer: built the way
        // the row transform builds a row.
        let frame = build_data_row(row.iter().map(|v| v.as_deref()));
        let body = frame.get(7..).unwrap_or_default();
        check(&DataRow::new(BytesMut::from(body), len_i16(row.len())))?;
        check(&CommandComplete::new(a.clone()))?;
        let error_fields: Vec<(u8, String)> = error_fields;
        check(&ErrorResponse::new(error_fields.clone()))?;
        check(&NoticeResponse::new(error_fields))?;
        check(&NotificationResponse::new(n, a, b))?;
        check(&ParameterDescription::new(oids))?;
        let k = len_i16(formats.len());
        check(&CopyInResponse::new(format, k, formats.clone()))?;
        check(&CopyOutResponse::new(format, k, formats.clone()))?;
        check(&CopyBothResponse::new(format, k, formats))?;
        check(&NegotiateProtocolVersion::new(n, options))?;
        check(&ParseComplete::new())?;
        check(&BindComplete::new())?;
        check(&CloseComplete::new())?;
        check(&NoData::new())?;
        check(&PortalSuspended::new())?;
        check(&EmptyQueryResponse::new())?;
    }

    /// The raw-byte builders the transforms use write what pgwire's types
    /// read back, and their raw readers read back what they wrote.
    #[test]
    fn raw_builders_agree_with_pgwire(
        a in text(), b in text(), n in any::<i32>(),
        fields in vec((text(), any::<i32>(), any::<i16>(), any::<u32>(), any::<i16>(),
            any::<i32>(), any::<i16>()), 0..5),
    ) {
        let frame = build_notification(n, a.as_bytes(), b.as_bytes());
        check_frame(&frame, &NotificationResponse::new(n, a.clone(), b.clone()))?;
        prop_assert_eq!(notification(&frame[5..]), Ok((n, a.as_bytes(), b.as_bytes())));
        let frame = build_parameter_status(a.as_bytes(), b.as_bytes());
        check_frame(&frame, &ParameterStatus::new(a.clone(), b.clone()))?;
        prop_assert_eq!(parameter_status(&frame[5..]), Ok((a.as_bytes(), b.as_bytes())));
        let frame = copy_data(b.as_bytes());
        check_frame(&frame, &CopyData::new(Bytes::from(b.clone())))?;
        let description = RowDescription::new(
            fields
                .into_iter()
                .map(|(name, table, column, type_id, size, modifier, format)| {
                    FieldDescription::new(name, table, column, type_id, size, modifier, format)
                })
                .collect(),
        );
        let encoded = encode(&description);
        let raw = row_fields(&encoded[5..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(build_row_description(raw.into_iter()), encoded);
    }

    /// Untrusted bytes: no decoder panics, and whatever one accepts pgwire
    /// encodes back to exactly the bytes it read (nothing lost or invented
    /// by a lenient reading). Startup is left out of the exactness: its
    /// parameters land in pgwire's sorted map.
    #[test]
    fn arbitrary_bodies_never_panic_and_decode_exactly(body in vec(any::<u8>(), 0..64)) {
        decode_all(&body);
        exact::<SslRequest>(&body)?;
        exact::<CancelRequest>(&body)?;
        exact::<Password>(&body)?;
        exact::<SASLInitialResponse>(&body)?;
        exact::<Query>(&body)?;
        exact::<Parse>(&body)?;
        exact::<Bind>(&body)?;
        exact::<Describe>(&body)?;
        exact::<Close>(&body)?;
        exact::<Execute>(&body)?;
        exact::<CopyFail>(&body)?;
        exact::<Authentication>(&body)?;
        exact::<BackendKeyData>(&body)?;
        exact::<ParameterStatus>(&body)?;
        exact::<ReadyForQuery>(&body)?;
        exact::<RowDescription>(&body)?;
        exact::<DataRow>(&body)?;
        exact::<CommandComplete>(&body)?;
        exact::<ErrorResponse>(&body)?;
        exact::<NotificationResponse>(&body)?;
        exact::<ParameterDescription>(&body)?;
        exact::<CopyOutResponse>(&body)?;
        exact::<NegotiateProtocolVersion>(&body)?;
    }

    /// The same with bodies built from valid messages then damaged: closer
    /// to the real thing, so the decoders' deeper paths run.
    #[test]
    fn damaged_messages_never_panic(
        row in values(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(),
        byte in any::<u8>(), pick in 0usize..7,
    ) {
        let frames = [
            build_data_row(row.iter().map(|v| v.as_deref())),
            encode(&Bind::new(Some("p".into()), Some("s".into()), vec![1], shared(&row), vec![0, 1])),
            encode(&Authentication::SASL(vec!["SCRAM-SHA-256".into()])),
            error("42501", "no"),
            encode(&NegotiateProtocolVersion::new(0, vec!["_pq_.x".into()])),
            encode(&RowDescription::new(vec![FieldDescription::new(
                "c".into(), 1, 1, 25, -1, -1, 0,
            )])),
            encode(&Parse::new(None, "select $1".into(), vec![25])),
        ];
        let frame = frames.get(pick).cloned().unwrap_or_default();
        let mut body = frame.get(5..).unwrap_or_default().to_vec();
        if !body.is_empty() {
            let at = flip.index(body.len());
            if let Some(b) = body.get_mut(at) {
                *b = byte;
            }
            body.truncate(cut.index(body.len() + 1));
        }
        decode_all(&body);
        let mut buf = BytesMut::from(&frame[..]);
        buf.truncate(cut.index(frame.len() + 1));
        let _ = read_frame(&mut buf, 1 << 20);
    }

    /// A declared length over the limit is refused from the header alone,
    /// and one under it reserves at most a bounded step, whatever it says.
    #[test]
    fn declared_lengths_never_allocate_ahead(
        tag in any::<u8>(), declared in any::<i32>(), max in 5usize..(1 << 24),
        startup in any::<bool>(),
    ) {
        let mut buf = BytesMut::with_capacity(16);
        if !startup {
            buf.extend_from_slice(&[tag]);
        }
        buf.extend_from_slice(&declared.to_be_bytes());
        let read = if startup { read_startup(&mut buf, max) } else { read_frame(&mut buf, max) };
        let total = usize::try_from(declared).ok().map(|d| d + usize::from(!startup));
        match total {
            Some(t) if t > max && declared >= if startup { 8 } else { 4 } => {
                let too_large = matches!(read, Err(CodecError::TooLarge { .. }));
                prop_assert!(too_large, "{:?}", read);
            }
            _ => {}
        }
        prop_assert!(buf.capacity() <= RESERVE_STEP + 16, "{}", buf.capacity());
    }
}

/// Runs every decoder on `body`.
fn decode_all(body: &[u8]) {
    crate::internal::decode_all(body);
    let _ = decode::<Startup>(body);
}

/// If `M` accepts `body`, pgwire encodes what it read back to `body`.
fn exact<M>(body: &[u8]) -> Result<(), TestCaseError>
where
    M: Decode + Debug,
{
    if let Ok(m) = decode::<M>(body) {
        let frame = encode(&m);
        let skip = if M::message_type().is_none() { 4 } else { 5 };
        prop_assert_eq!(frame.get(skip..), Some(body), "{:?}", m);
    }
    Ok(())
}
