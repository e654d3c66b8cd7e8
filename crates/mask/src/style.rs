//! Masking styles: how a found value is replaced.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How a found value is replaced in the output.
///
/// The default is [`Style::redact`]. A style can be set for the whole
/// masker ([`MaskerBuilder::style`](crate::MaskerBuilder::style)), per
/// built-in detector ([`MaskerBuilder::detector_style`](crate::MaskerBuilder::detector_style)),
/// per user rule and per field rule.
///
/// # Example
///
/// ```
/// use portcullis_mask::{Masker, Rule, Style};
///
/// let masker = Masker::builder()
///     .default_catalogue(false)
///     .rule(Rule::literal("pin", "4711").style(Style::same_length()))
///     .build()?;
/// assert_eq!(masker.mask(b"pin 4711").output(), b"pin ****");
/// # Ok::<(), portcullis_mask::BuildError>(())
/// ```
#[derive(Clone, Default)]
pub struct Style(Kind);

#[derive(Clone, Default)]
enum Kind {
    #[default]
    Redact,
    Partial(usize),
    SameLength,
    KeyedHash(Arc<Hmac<Sha256>>),
}

impl fmt::Debug for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Redact => f.write_str("Style::Redact"),
            Kind::Partial(n) => write!(f, "Style::Partial({n})"),
            Kind::SameLength => f.write_str("Style::SameLength"),
            // Never print the key.
            Kind::KeyedHash(_) => f.write_str("Style::KeyedHash(..)"),
        }
    }
}

/// How many hex digits of the HMAC a keyed-hash token shows (64 bits).
const HASH_HEX: usize = 16;

impl Style {
    /// Replace the value with `[MASKED:<detector id>]` (the default).
    pub fn redact() -> Style {
        Style(Kind::Redact)
    }

    /// Keep the last `n` characters and replace the others with `*`, one per
    /// character; never keeps more than half of the value (a short value is
    /// mostly starred), so `partial(4)` turns a 16-digit card number into
    /// `************1234`. Characters are UTF-8 characters where the value is
    /// valid UTF-8, bytes otherwise.
    pub fn partial(n: usize) -> Style {
        Style(Kind::Partial(n))
    }

    /// Replace each character of the value with `*`.
    pub fn same_length() -> Style {
        Style(Kind::SameLength)
    }

    /// Replace the value with `[HASH:<16 hex digits>]`, the first 64 bits of
    /// HMAC-SHA-256 of the value under `key`: equal values mask to equal
    /// tokens (so joins and counts still work) while the value cannot be
    /// recovered without the key. The key is the embedder's secret; it is
    /// never printed.
    pub fn keyed_hash(key: &[u8]) -> Style {
        match <Hmac<Sha256> as Mac>::new_from_slice(key) {
            Ok(mac) => Style(Kind::KeyedHash(Arc::new(mac))),
            // HMAC takes keys of any length, so this does not happen; fail
            // closed to redaction if it ever did.
            Err(_) => Style(Kind::Redact),
        }
    }

    /// Appends the replacement of `value`, found by detector `id`, to `out`.
    pub(crate) fn render(&self, id: &str, value: &[u8], out: &mut Vec<u8>) {
        match &self.0 {
            Kind::Redact => {
                out.extend_from_slice(b"[MASKED:");
                out.extend_from_slice(id.as_bytes());
                out.push(b']');
            }
            Kind::SameLength => {
                out.resize(out.len() + char_count(value), b'*');
            }
            Kind::Partial(n) => {
                let chars = char_count(value);
                let keep = (*n).min(chars / 2);
                let starred = chars - keep;
                out.resize(out.len() + starred, b'*');
                let cut = char_offset(value, starred);
                out.extend_from_slice(value.get(cut..).unwrap_or_default());
            }
            Kind::KeyedHash(mac) => {
                let mut mac = Hmac::<Sha256>::clone(mac.as_ref());
                mac.update(value);
                let digest = mac.finalize().into_bytes();
                out.extend_from_slice(b"[HASH:");
                for byte in digest.iter().take(HASH_HEX / 2) {
                    out.push(hex_digit(byte >> 4));
                    out.push(hex_digit(byte & 0x0f));
                }
                out.push(b']');
            }
        }
    }
}

impl Style {
    /// Appends the replacement of the continuation of a value cut at the
    /// match cap: nothing for styles that render one token per value, one
    /// `*` per character for the character-wise styles.
    pub(crate) fn render_continuation(&self, value: &[u8], out: &mut Vec<u8>) {
        match &self.0 {
            Kind::Redact | Kind::KeyedHash(_) => {}
            Kind::Partial(_) | Kind::SameLength => {
                out.resize(out.len() + char_count(value), b'*');
            }
        }
    }
}

fn hex_digit(n: u8) -> u8 {
    match n {
        0..=9 => b'0' + n,
        _ => b'a' + (n - 10),
    }
}

/// The number of characters of `value`: UTF-8 characters if it is valid
/// UTF-8, bytes otherwise.
fn char_count(value: &[u8]) -> usize {
    match std::str::from_utf8(value) {
        Ok(s) => s.chars().count(),
        Err(_) => value.len(),
    }
}

/// The byte offset of character number `n` of `value` (see `char_count`).
fn char_offset(value: &[u8], n: usize) -> usize {
    match std::str::from_utf8(value) {
        Ok(s) => s.char_indices().nth(n).map_or(value.len(), |(i, _)| i),
        Err(_) => n.min(value.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(style: &Style, value: &str) -> String {
        let mut out = Vec::new();
        style.render("x", value.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn styles_render() {
        assert_eq!(render(&Style::redact(), "secret"), "[MASKED:x]");
        assert_eq!(render(&Style::same_length(), "sécret"), "******");
        assert_eq!(
            render(&Style::partial(4), "4111111111111111"),
            "************1111"
        );
        assert_eq!(render(&Style::partial(4), "abcd"), "**cd");
        assert_eq!(render(&Style::partial(4), "é1é2é3"), "***2é3");
        let h = Style::keyed_hash(b"k");
        let a = render(&h, "alice@example.com");
        assert_eq!(a, render(&h, "alice@example.com"));
        assert_ne!(a, render(&h, "bob@example.com"));
        assert_ne!(a, render(&Style::keyed_hash(b"other"), "alice@example.com"));
        assert!(a.starts_with("[HASH:") && a.len() == 6 + 16 + 1, "{a}");
        assert_eq!(format!("{h:?}"), "Style::KeyedHash(..)");
    }

    #[test]
    fn keyed_hash_is_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?",
        // HMAC-SHA-256 = 5bdcc146bf60754e...
        let out = render(&Style::keyed_hash(b"Jefe"), "what do ya want for nothing?");
        assert_eq!(out, "[HASH:5bdcc146bf60754e]");
    }
}
