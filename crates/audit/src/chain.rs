//! The hash chain and the stored record's exact byte layout.
//!
//! A record is one line:
//!
//! ```text
//! {"chain":"<id>","seq":<n>,"prev_hash":"<64 hex>","event":<canonical event>,"hash":"<64 hex>"}\n
//! ```
//!
//! `hash` is SHA-256 over the line's bytes from its start up to, but not
//! including, `,"hash":` — that is, over the chain id, the sequence number,
//! the previous record's hash and the canonical event bytes — or, when the
//! chain is keyed ([`ChainKey`]), HMAC-SHA-256 with the key over the same
//! bytes, so that only a holder of the key can write a chain that verifies.
//! The first
//! record of a chain has `seq` 1 and a `prev_hash` of 64 zeros. Any change to
//! any byte of a line changes either the hashed prefix, the hash, or the
//! fixed framing, so the verifier sees it.

use std::io::Write as _;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// A SHA-256 digest, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash(pub(crate) [u8; 32]);

impl ChainHash {
    /// The `prev_hash` of a chain's first record: 32 zero bytes.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<ChainHash> {
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ChainHash(out))
    }
}

impl std::fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Display for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A secret key for an HMAC-SHA-256 chain.
///
/// A plain SHA-256 chain shows tampering only against an anchor kept
/// elsewhere: whoever can rewrite the files can recompute every hash. With a
/// key (kept out of the trail's reach, e.g. in the gateway's secret store),
/// a rewritten trail does not verify without it. Verify a keyed chain with
/// the same key ([`crate::VerifyOptions::key`]).
#[derive(Clone)]
pub struct ChainKey(Vec<u8>);

impl ChainKey {
    /// A key of at least 16 bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<ChainKey, crate::AuditError> {
        let bytes = bytes.into();
        if bytes.len() < 16 {
            return Err(crate::AuditError::InvalidOption {
                option: "chain key",
                reason: format!("{} bytes; at least 16 are needed", bytes.len()),
            });
        }
        Ok(ChainKey(bytes))
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(<redacted>)")
    }
}

/// The record hash of `prefix`: SHA-256, or HMAC-SHA-256 with `key`.
fn digest(key: Option<&ChainKey>, prefix: &[u8]) -> ChainHash {
    use hmac::Mac as _;
    match key.and_then(|k| hmac::Hmac::<Sha256>::new_from_slice(&k.0).ok()) {
        Some(mut mac) => {
            mac.update(prefix);
            ChainHash(mac.finalize().into_bytes().into())
        }
        None => ChainHash(Sha256::digest(prefix).into()),
    }
}

/// The last record of a chain: where the next record links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// The last record's sequence number (0 for an empty chain).
    pub seq: u64,
    /// The last record's hash ([`ChainHash::GENESIS`] for an empty chain).
    pub hash: ChainHash,
}

impl ChainHead {
    /// The head of an empty chain.
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        hash: ChainHash::GENESIS,
    };
}

/// A chain id: 1 to 64 of `[A-Za-z0-9._-]`, so that it needs no escaping in
/// JSON and is safe in a file name.
pub(crate) fn validate_chain_id(id: &str) -> Result<(), crate::AuditError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(crate::AuditError::InvalidOption {
            option: "chain id",
            reason: format!("{id:?} must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with a dot"),
        })
    }
}

/// Renders one record line (with its trailing newline) into `out` and
/// returns its hash.
pub(crate) fn render_line(
    out: &mut Vec<u8>,
    key: Option<&ChainKey>,
    chain: &str,
    seq: u64,
    prev: &ChainHash,
    event: &[u8],
) -> ChainHash {
    let start = out.len();
    render_prefix(out, chain, seq, prev, event);
    let hash = digest(key, out.get(start..).unwrap_or_default());
    render_suffix(out, &hash);
    hash
}

/// The hashed part of a line: everything before `,"hash":`.
fn render_prefix(out: &mut Vec<u8>, chain: &str, seq: u64, prev: &ChainHash, event: &[u8]) {
    out.extend_from_slice(b"{\"chain\":\"");
    out.extend_from_slice(chain.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    let _ = write!(out, "{seq}");
    out.extend_from_slice(b",\"prev_hash\":\"");
    push_hex(out, prev);
    out.extend_from_slice(b"\",\"event\":");
    out.extend_from_slice(event);
}

fn push_hex(out: &mut Vec<u8>, hash: &ChainHash) {
    let mut hex = [0u8; 64];
    if hex::encode_to_slice(hash.0, &mut hex).is_ok() {
        out.extend_from_slice(&hex);
    }
}

fn render_suffix(out: &mut Vec<u8>, hash: &ChainHash) {
    out.extend_from_slice(b",\"hash\":\"");
    push_hex(out, hash);
    out.extend_from_slice(b"\"}\n");
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    chain: &'a str,
    seq: u64,
    #[serde(borrow)]
    prev_hash: &'a str,
    #[serde(borrow)]
    event: &'a RawValue,
    #[serde(borrow)]
    hash: &'a str,
}

/// A record parsed from one line (without its newline).
#[derive(Debug, Clone)]
pub(crate) struct ParsedRecord<'a> {
    pub(crate) chain: &'a str,
    pub(crate) seq: u64,
    pub(crate) prev_hash: ChainHash,
    pub(crate) event: &'a str,
    pub(crate) hash: ChainHash,
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineError {
    /// Not a record in the exact layout.
    Malformed(String),
    /// The layout is right but the hash does not match the contents.
    HashMismatch { seq: u64, claimed: ChainHash },
}

/// Parses a line (without its newline), checks that it is byte for byte the
/// canonical layout, and checks its own hash.
pub(crate) fn parse_line<'a>(
    line: &'a [u8],
    key: Option<&ChainKey>,
) -> Result<ParsedRecord<'a>, LineError> {
    let env: Envelope<'_> =
        serde_json::from_slice(line).map_err(|e| LineError::Malformed(e.to_string()))?;
    validate_chain_id(env.chain).map_err(|_| LineError::Malformed("invalid chain id".into()))?;
    let prev_hash = ChainHash::from_hex(env.prev_hash)
        .ok_or_else(|| LineError::Malformed("invalid prev_hash".into()))?;
    let hash =
        ChainHash::from_hex(env.hash).ok_or_else(|| LineError::Malformed("invalid hash".into()))?;
    let mut canonical = Vec::with_capacity(line.len() + 1);
    render_prefix(
        &mut canonical,
        env.chain,
        env.seq,
        &prev_hash,
        env.event.get().as_bytes(),
    );
    let computed = digest(key, &canonical);
    render_suffix(&mut canonical, &hash);
    canonical.pop();
    if canonical != line {
        return Err(LineError::Malformed(
            "not in the canonical record layout".into(),
        ));
    }
    if computed != hash {
        return Err(LineError::HashMismatch {
            seq: env.seq,
            claimed: hash,
        });
    }
    Ok(ParsedRecord {
        chain: env.chain,
        seq: env.seq,
        prev_hash,
        event: env.event.get(),
        hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_then_parse() {
        let mut out = Vec::new();
        let h = render_line(
            &mut out,
            None,
            "gw-1",
            1,
            &ChainHash::GENESIS,
            br#"{"a":1}"#,
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let rec = parse_line(&out[..out.len() - 1], None).unwrap();
        let key = ChainKey::new(*b"0123456789abcdef").unwrap();
        assert!(matches!(
            parse_line(&out[..out.len() - 1], Some(&key)),
            Err(LineError::HashMismatch { .. })
        ));
        let mut keyed = Vec::new();
        let hk = render_line(
            &mut keyed,
            Some(&key),
            "gw-1",
            1,
            &ChainHash::GENESIS,
            br#"{"a":1}"#,
        );
        assert_ne!(hk, h);
        assert_eq!(
            parse_line(&keyed[..keyed.len() - 1], Some(&key))
                .unwrap()
                .hash,
            hk
        );
        assert_eq!(rec.hash, h);
        assert_eq!(rec.seq, 1);
        assert_eq!(rec.event, r#"{"a":1}"#);
        let mut bad = out[..out.len() - 1].to_vec();
        let i = bad.iter().position(|&b| b == b'1').unwrap();
        bad[i] = b'2';
        assert!(parse_line(&bad, None).is_err());
    }
}
