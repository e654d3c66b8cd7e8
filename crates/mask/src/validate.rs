//! Validators (see `spec::Validator`): checks a candidate match must pass
//! before it is masked. All of them are total over arbitrary bytes: they never
//! panic and never allocate more than a few bytes.

use crate::spec::Validator;

/// Whether a candidate passes `v`. `whole` is the whole match, `masked` the
/// part that would be masked (the `m` group, or the whole match), `before` up
/// to the largest `ContextBefore` window plus the longest `[MASKED:<id>]`
/// token of bytes immediately before the match.
pub(crate) fn validate(v: &Validator, whole: &[u8], masked: &[u8], before: &[u8]) -> bool {
    let _ = whole;
    match *v {
        Validator::Luhn => luhn(masked),
        Validator::CardIssuer => card_issuer(masked),
        Validator::IbanMod97 => iban_mod97(masked),
        Validator::MinEntropy(floor) => shannon_entropy(masked) >= f64::from(floor),
        Validator::ContextBefore { words, window } => context_before(words, window, before),
        Validator::NotPlaceholder(list) => not_placeholder(list, masked),
        Validator::NoPlaceholderText => no_placeholder_text(masked),
        Validator::MinClasses(n) => char_classes(masked) >= n,
        Validator::DigitsBetween(lo, hi) => {
            let n = masked.iter().filter(|b| b.is_ascii_digit()).count();
            (usize::from(lo)..=usize::from(hi)).contains(&n)
        }
        Validator::Base58CheckAddress => base58check_address(masked),
        Validator::SegwitAddress => segwit_address(masked),
        Validator::Eip55Address => eip55_address(masked),
    }
}

/// The ASCII digits of `s`, in order, as values 0..=9.
fn digits(s: &[u8]) -> impl DoubleEndedIterator<Item = u32> + '_ {
    s.iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| u32::from(b - b'0'))
}

/// The Luhn (mod 10) checksum over the digits of `s`; other bytes (spaces,
/// dashes) are skipped. Fewer than two digits never pass.
fn luhn(s: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for (i, d) in digits(s).rev().enumerate() {
        count += 1;
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 { x - 9 } else { x }
        } else {
            d
        };
    }
    count >= 2 && sum.is_multiple_of(10)
}

/// Whether the digits of `s` look like a payment card number: a known issuer
/// prefix with a length that issuer uses, consistent separators, and not an
/// obvious non-card (one repeated digit).
fn card_issuer(s: &[u8]) -> bool {
    // Separators, if any, must all be the same byte (`4111 1111 …` or
    // `4111-1111-…`, not `4111-1111 1111.1111`).
    let mut sep: Option<u8> = None;
    for &b in s {
        if b.is_ascii_digit() {
            continue;
        }
        if b != b' ' && b != b'-' {
            return false;
        }
        match sep {
            None => sep = Some(b),
            Some(x) if x == b => {}
            Some(_) => return false,
        }
    }
    let mut buf = [0u8; 19];
    let mut len = 0usize;
    for d in s.iter().filter(|b| b.is_ascii_digit()) {
        match buf.get_mut(len) {
            Some(slot) => *slot = *d,
            None => return false, // longer than any card number
        }
        len += 1;
    }
    let Some(num) = buf.get(..len) else {
        return false;
    };
    if let Some(first) = num.first()
        && num.iter().all(|d| d == first)
    {
        return false;
    }
    let prefix = |n: usize| -> u32 {
        num.iter()
            .take(n)
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    let in_len = |lo: usize, hi: usize| (lo..=hi).contains(&len);
    // Visa: 4, 16 or 19 digits (the 13-digit range is retired; every
    // millisecond timestamp of this century also has 13 digits).
    (p1 == 4 && (len == 16 || len == 19))
        // Mastercard: 51-55 and 2221-2720, 16 digits.
        || (((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16)
        // American Express: 34, 37; 15 digits.
        || ((p2 == 34 || p2 == 37) && len == 15)
        // Diners Club International: 36, 300-305, 38-39; 14-19 digits.
        || ((p2 == 36 || (300..=305).contains(&p3) || p2 == 38 || p2 == 39) && in_len(14, 19))
        // Discover: 6011, 644-649, 65, 622126-622925; 16-19 digits.
        || ((p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622_126..=622_925).contains(&p6))
            && in_len(16, 19))
        // JCB: 3528-3589; 16-19 digits.
        || ((3528..=3589).contains(&p4) && in_len(16, 19))
        // UnionPay: 62; 16-19 digits.
        || (p2 == 62 && in_len(16, 19))
        // Maestro: 5018, 5020, 5038, 5893, 6304, 6759, 6761-6763; 16-19 here
        // (shorter Maestro numbers are rare and collide with plain ids).
        || (matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761..=6763) && in_len(16, 19))
        // Mir: 2200-2204; 16-19 digits.
        || ((2200..=2204).contains(&p4) && in_len(16, 19))
        // RuPay: 60, 508; 16 digits.
        || ((p2 == 60 || p3 == 508) && len == 16)
}

/// The length of an IBAN for each country of the ISO 13616 registry.
fn iban_length(country: [u8; 2]) -> Option<usize> {
    let n = match &country {
        b"AD" => 24,
        b"AE" => 23,
        b"AL" => 28,
        b"AT" => 20,
        b"AZ" => 28,
        b"BA" => 20,
        b"BE" => 16,
        b"BG" => 22,
        b"BH" => 22,
        b"BI" => 27,
        b"BR" => 29,
        b"BY" => 28,
        b"CH" => 21,
        b"CR" => 22,
        b"CY" => 28,
        b"CZ" => 24,
        b"DE" => 22,
        b"DJ" => 27,
        b"DK" => 18,
        b"DO" => 28,
        b"EE" => 20,
        b"EG" => 29,
        b"ES" => 24,
        b"FI" => 18,
        b"FK" => 18,
        b"FO" => 18,
        b"FR" => 27,
        b"GB" => 22,
        b"GE" => 22,
        b"GI" => 23,
        b"GL" => 18,
        b"GR" => 27,
        b"GT" => 28,
        b"HN" => 28,
        b"HR" => 21,
        b"HU" => 28,
        b"IE" => 22,
        b"IL" => 23,
        b"IQ" => 23,
        b"IS" => 26,
        b"IT" => 27,
        b"JO" => 30,
        b"KW" => 30,
        b"KZ" => 20,
        b"LB" => 28,
        b"LC" => 32,
        b"LI" => 21,
        b"LT" => 20,
        b"LU" => 20,
        b"LV" => 21,
        b"LY" => 25,
        b"MC" => 27,
        b"MD" => 24,
        b"ME" => 22,
        b"MK" => 19,
        b"MN" => 20,
        b"MR" => 27,
        b"MT" => 31,
        b"MU" => 30,
        b"NI" => 28,
        b"NL" => 18,
        b"NO" => 15,
        b"OM" => 23,
        b"PK" => 24,
        b"PL" => 28,
        b"PS" => 29,
        b"PT" => 25,
        b"QA" => 29,
        b"RO" => 24,
        b"RS" => 22,
        b"RU" => 33,
        b"SA" => 24,
        b"SC" => 31,
        b"SD" => 18,
        b"SE" => 24,
        b"SI" => 19,
        b"SK" => 24,
        b"SM" => 27,
        b"SO" => 23,
        b"ST" => 25,
        b"SV" => 28,
        b"TL" => 23,
        b"TN" => 24,
        b"TR" => 26,
        b"UA" => 29,
        b"VA" => 22,
        b"VG" => 24,
        b"XK" => 20,
        b"YE" => 30,
        _ => return None,
    };
    Some(n)
}

/// ISO 13616: country code with its registered length, two check digits, an
/// alphanumeric BBAN, and the whole rearranged number ≡ 1 (mod 97). Spaces
/// between groups are allowed; letters may be upper or lower case.
fn iban_mod97(s: &[u8]) -> bool {
    let mut buf = [0u8; 34];
    let mut len = 0usize;
    for &b in s {
        if b == b' ' {
            continue;
        }
        if !b.is_ascii_alphanumeric() {
            return false;
        }
        match buf.get_mut(len) {
            Some(slot) => *slot = b.to_ascii_uppercase(),
            None => return false,
        }
        len += 1;
    }
    let Some(iban) = buf.get(..len) else {
        return false;
    };
    let (Some(&c0), Some(&c1)) = (iban.first(), iban.get(1)) else {
        return false;
    };
    if !c0.is_ascii_uppercase() || !c1.is_ascii_uppercase() {
        return false;
    }
    if iban_length([c0, c1]) != Some(len) {
        return false;
    }
    if !iban
        .get(2..4)
        .is_some_and(|c| c.iter().all(u8::is_ascii_digit))
    {
        return false;
    }
    // Move the first four characters to the end; letters become 10..=35.
    let mut rem = 0u32;
    for &b in iban.iter().skip(4).chain(iban.iter().take(4)) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(b - b'A') + 10) % 97;
        }
    }
    rem == 1
}

/// Shannon entropy of the byte distribution of `s`, in bits per byte; 0 for
/// the empty string.
fn shannon_entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    // Lengths are bounded by max_len (a few KiB), so the cast is exact.
    #[allow(clippy::cast_precision_loss)]
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether one of `words` occurs in the last `window` bytes of `before`,
/// case-insensitively, and not as part of a longer run of letters (`ssn`
/// counts in `SSN:` and `user_ssn=`, not in `lessn`), nor inside a
/// `[MASKED:<id>]` token that closes before the match: a masker's own
/// replacement (`[MASKED:us-ssn]`) is not context, so masking masked output
/// changes nothing further. Bytes of `before` ahead of the window only serve
/// to recognise a token that straddles the window's start.
fn context_before(words: &[&str], window: usize, before: &[u8]) -> bool {
    let start = before.len().saturating_sub(window);
    words.iter().any(|w| {
        let w = w.as_bytes();
        if w.is_empty() || w.len() > before.len() - start {
            return false;
        }
        (start..=before.len() - w.len()).any(|i| {
            before
                .get(i..i + w.len())
                .is_some_and(|cand| cand.eq_ignore_ascii_case(w))
                && !i
                    .checked_sub(1)
                    .and_then(|j| before.get(j))
                    .is_some_and(u8::is_ascii_alphabetic)
                && !before.get(i + w.len()).is_some_and(u8::is_ascii_alphabetic)
                && !inside_redaction_token(before, i, i + w.len())
        })
    })
}

/// Whether `[from, to)` of `hay` lies inside a `[MASKED:<id>]` token: the
/// run of bytes other than whitespace and `]` around it holds `[MASKED:`
/// before it and is closed by `]` after it, within `hay`.
fn inside_redaction_token(hay: &[u8], from: usize, to: usize) -> bool {
    const OPEN: &[u8] = b"[MASKED:";
    let id_byte = |b: &u8| *b != b']' && !b.is_ascii_whitespace();
    let head = hay.get(..from).unwrap_or_default();
    let run = head
        .get(head.iter().rposition(|b| !id_byte(b)).map_or(0, |p| p + 1)..)
        .unwrap_or_default();
    run.windows(OPEN.len()).any(|x| x == OPEN)
        && hay
            .get(to..)
            .unwrap_or_default()
            .iter()
            .find(|b| !id_byte(b))
            == Some(&b']')
}

/// Whether `masked` is not a placeholder: not one of `list`
/// (case-insensitively), not one byte repeated (`xxxxxxxx`, `********`), and
/// not a template, variable reference or redaction (`${DB_PASSWORD}`,
/// `{{ token }}`, `{password}`, `<your-token>`, `%(password)s`, `%PASSWORD%`,
/// `$SECRET`, `[MASKED:generic-password]`).
fn not_placeholder(list: &[&str], masked: &[u8]) -> bool {
    if list
        .iter()
        .any(|p| p.as_bytes().eq_ignore_ascii_case(masked))
    {
        return false;
    }
    if let Some(first) = masked.first()
        && masked.iter().all(|b| b == first)
    {
        return false;
    }
    let starts = |p: &[u8]| masked.starts_with(p);
    let ends = |p: &[u8]| masked.ends_with(p);
    let template = starts(b"${")
        || starts(b"{{")
        || starts(b"%(")
        || (starts(b"$")
            && masked.len() > 1
            && masked
                .iter()
                .skip(1)
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_'))
        || (starts(b"<") && ends(b">"))
        || (starts(b"[") && ends(b"]"))
        || (starts(b"{") && ends(b"}"))
        || (starts(b"%") && ends(b"%"));
    !template
}

/// Fragments that mark a documentation placeholder rather than a value.
const PLACEHOLDER_FRAGMENTS: &[&[u8]] = &[
    b"example",
    b"your_",
    b"your-",
    b"placeholder",
    b"xxxx",
    b"****",
    b"changeme",
    b"dummy",
    b"sample",
    b"redacted",
    b"insert_",
    b"replace_",
    b"_here",
    b"-here",
    b"notreal",
    b"fake_",
    b"<",
    b">",
    b"${",
    b"{{",
];

/// Whether `masked` contains none of [`PLACEHOLDER_FRAGMENTS`]
/// (ASCII case-insensitive).
fn no_placeholder_text(masked: &[u8]) -> bool {
    !PLACEHOLDER_FRAGMENTS.iter().any(|f| {
        f.len() <= masked.len() && masked.windows(f.len()).any(|w| w.eq_ignore_ascii_case(f))
    })
}

/// How many of the classes lowercase, uppercase, digit occur in `s`.
fn char_classes(s: &[u8]) -> u8 {
    let lower = s.iter().any(u8::is_ascii_lowercase);
    let upper = s.iter().any(u8::is_ascii_uppercase);
    let digit = s.iter().any(u8::is_ascii_digit);
    u8::from(lower) + u8::from(upper) + u8::from(digit)
}

/// A Bitcoin P2PKH/P2SH address (mainnet 0x00/0x05, testnet 0x6f/0xc4):
/// base58 with a valid double-SHA-256 checksum, 21 payload bytes. Decoding
/// is done by `bs58` (its `check` feature verifies the checksum).
fn base58check_address(s: &[u8]) -> bool {
    // 25 bytes encode to at most 35 base58 characters; anything longer is
    // not an address (and bounds the decoder's allocation).
    if s.len() < 25 || s.len() > 35 {
        return false;
    }
    match bs58::decode(s).with_check(None).into_vec() {
        Ok(payload) => {
            payload.len() == 21
                && payload
                    .first()
                    .is_some_and(|v| matches!(v, 0x00 | 0x05 | 0x6f | 0xc4))
        }
        Err(_) => false,
    }
}

/// A segwit address with the `bc` (mainnet) or `tb` (testnet) prefix whose
/// bech32/bech32m checksum, witness version and program length are valid
/// (BIP-173, BIP-350), as checked by the `bech32` crate.
fn segwit_address(s: &[u8]) -> bool {
    // BIP-173 caps an address at 90 characters.
    if s.len() > 90 {
        return false;
    }
    let Ok(text) = std::str::from_utf8(s) else {
        return false;
    };
    match bech32::segwit::decode(text) {
        Ok((hrp, _, _)) => hrp == bech32::hrp::BC || hrp == bech32::hrp::TB,
        Err(_) => false,
    }
}

/// An Ethereum address `0x` + 40 hex digits; mixed case must carry the
/// EIP-55 checksum: letter `i` is uppercase exactly when nibble `i` of
/// Keccak-256(lowercase hex address) is 8 or more.
fn eip55_address(s: &[u8]) -> bool {
    use sha3::{Digest, Keccak256};
    let Some(hex) = s.strip_prefix(b"0x").or_else(|| s.strip_prefix(b"0X")) else {
        return false;
    };
    if hex.len() != 40 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let has_lower = hex.iter().any(u8::is_ascii_lowercase);
    let has_upper = hex.iter().any(u8::is_ascii_uppercase);
    if !(has_lower && has_upper) {
        // One repeated digit (0x000…0, the zero address) is not a wallet.
        return hex.first().is_some_and(|f| !hex.iter().all(|b| b == f));
    }
    let lower = hex.to_ascii_lowercase();
    let hash = Keccak256::digest(&lower);
    hex.iter().enumerate().all(|(i, &c)| {
        if !c.is_ascii_alphabetic() {
            return true;
        }
        let Some(byte) = hash.get(i / 2) else {
            return false;
        };
        let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
        (nibble >= 8) == c.is_ascii_uppercase()
    })
}

#[cfg(test)]
mod catalogue_validator_tests {
    use super::*;
    use proptest::prelude::*;

    const PLACEHOLDERS: &[&str] = &["changeme", "password"];

    #[test]
    fn luhn_accepts_valid_and_rejects_off_by_one() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"4111 1111 1111 1111"));
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b"79927398710"));
        assert!(!luhn(b"0"));
        assert!(!luhn(b""));
    }

    #[test]
    fn card_issuer_knows_issuers_and_lengths() {
        for ok in [
            &b"4111111111111111"[..],
            b"5555555555554444",
            b"2223003122003222",
            b"378282246310005",
            b"6011111111111117",
            b"3530111333300000",
            b"36227206271667",
            b"6200000000000005",
            b"4000-0566-5566-5556",
            b"4000 0566 5566 5556",
        ] {
            assert!(card_issuer(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            // 13-digit millisecond timestamp.
            &b"1714557600123"[..],
            // Visa prefix, timestamp-like 13 digits.
            b"4111111111111",
            // No issuer starts with 1, 7, 8, 9.
            b"1234567812345678",
            b"9999888877776666",
            // Amex prefix, wrong length.
            b"3782822463100051",
            // One repeated digit.
            b"4444444444444444",
            // Mixed separators.
            b"4000-0566 5566-5556",
            // Too long.
            b"41111111111111111111",
            b"4111.1111.1111.1111",
        ] {
            assert!(!card_issuer(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn iban_checks_mod97_and_country_length() {
        assert!(iban_mod97(b"GB82WEST12345698765432"));
        assert!(iban_mod97(b"GB82 WEST 1234 5698 7654 32"));
        assert!(iban_mod97(b"DE89370400440532013000"));
        assert!(iban_mod97(b"NO9386011117947"));
        assert!(iban_mod97(b"FR1420041010050500013M02606"));
        // Check digits off by one.
        assert!(!iban_mod97(b"GB83WEST12345698765432"));
        // Right checksum would need another length for DE.
        assert!(!iban_mod97(b"DE8937040044053201300"));
        // Unknown country.
        assert!(!iban_mod97(b"ZZ89370400440532013000"));
        assert!(!iban_mod97(b"GB82-WEST-1234"));
        assert!(!iban_mod97(b""));
    }

    #[test]
    fn entropy_of_known_strings() {
        assert!(shannon_entropy(b"").abs() < 1e-9);
        assert!(shannon_entropy(b"aaaa").abs() < 1e-9);
        assert!((shannon_entropy(b"abab") - 1.0).abs() < 1e-9);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        let v = Validator::MinEntropy(3.0);
        assert!(validate(&v, b"", b"Zx9!kQ2#pL7m", b""));
        assert!(!validate(&v, b"", b"changeme", b""));
    }

    #[test]
    fn context_before_is_case_insensitive_and_word_bounded() {
        let v = Validator::ContextBefore {
            words: &["ssn", "social security"],
            window: 24,
        };
        assert!(validate(&v, b"", b"", b"SSN: "));
        assert!(validate(&v, b"", b"", b"user_ssn="));
        assert!(validate(&v, b"", b"", b"Social Security no. "));
        assert!(!validate(&v, b"", b"", b"lessn "));
        // A masker's own replacement is not context (masking is idempotent),
        // also when the window starts inside the token; a context word after
        // a token still counts.
        assert!(!validate(&v, b"", b"", b"[MASKED:us-ssn], born "));
        let straddle = b"x [MASKED:us-ssn], born on the day ";
        assert_eq!(straddle.len() - 24, 11, "the window starts at `s-ssn]`");
        assert!(!validate(&v, b"", b"", straddle));
        assert!(validate(&v, b"", b"", b"[MASKED:us-ssn] ssn "));
        assert!(validate(&v, b"", b"", b"[ssn] "));
        assert!(!validate(&v, b"", b"", b"phone: "));
        // Outside the window.
        assert!(!validate(&v, b"", b"", b"ssn .........................."));
        assert!(!validate(&v, b"", b"", b""));
    }

    #[test]
    fn placeholders_are_rejected() {
        let v = Validator::NotPlaceholder(PLACEHOLDERS);
        for bad in [
            &b"changeme"[..],
            b"CHANGEME",
            b"xxxxxxxx",
            b"********",
            b"${DB_PASSWORD}",
            b"{{ secret }}",
            b"<your-token>",
            b"%(password)s",
            b"$SECRET",
            b"[redacted]",
            b"[MASKED:generic-password]",
            b"{password}",
            b"%DB_PASSWORD%",
        ] {
            assert!(
                !validate(&v, b"", bad, b""),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for ok in [&b"s3cr3t-Vq8"[..], b"$2y$10$abc", b"<<not"] {
            assert!(
                validate(&v, b"", ok, b""),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
    }

    #[test]
    fn base58check_addresses() {
        // Generated test vectors: random hash160s with version 0x00, 0x05, 0x6f.
        assert!(base58check_address(b"18jb8L9M1Nqte1qk7NWouiJzSW1SUQcnmE"));
        assert!(base58check_address(b"3CeK1Ngrs6Ke1fMHs4encg5Qiwxzb2o5hf"));
        assert!(base58check_address(b"moi5gSRY5efjnB2NhfppAfg9PsvntPDzdz"));
        // Last character changed: checksum fails.
        assert!(!base58check_address(b"18jb8L9M1Nqte1qk7NWouiJzSW1SUQcnmF"));
        // Not base58 (0, O, I, l), too short, too long.
        assert!(!base58check_address(b"10jb8L9M1Nqte1qk7NWouiJzSW1SUQcnmE"));
        assert!(!base58check_address(b"18jb8L9M1Nq"));
        assert!(!base58check_address(&[b'1'; 36]));
    }

    #[test]
    fn segwit_addresses() {
        // BIP-173 / BIP-350 test vectors.
        assert!(segwit_address(
            b"BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"
        ));
        assert!(segwit_address(
            b"bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"
        ));
        assert!(segwit_address(
            b"tb1q5k0f2cfq5enm2gdz6umjvf09pt30r37d5nkd42"
        ));
        // v0 with a bech32m checksum, v1 with a bech32 checksum (BIP-350).
        assert!(!segwit_address(
            b"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh"
        ));
        assert!(!segwit_address(
            b"bc1py3escxx7z4lgmn76a9uue3d8l96zkyl4tramumhxse7ldl79nnps5p28uz"
        ));
        // Mixed case, other network prefix.
        assert!(!segwit_address(
            b"bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
        ));
        assert!(!segwit_address(
            b"ltc1qw508d6qejxtdg4y5r3zarvary0c5xw7kgmn4n9"
        ));
    }

    #[test]
    fn eip55_addresses() {
        // EIP-55's own examples.
        assert!(eip55_address(b"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"));
        assert!(eip55_address(b"0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"));
        // Unchecksummed (one case) passes; the zero address does not.
        assert!(eip55_address(b"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"));
        assert!(!eip55_address(
            b"0x0000000000000000000000000000000000000000"
        ));
        // One letter's case flipped.
        assert!(!eip55_address(
            b"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"
        ));
        assert!(!eip55_address(b"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe"));
    }

    #[test]
    fn placeholder_text_and_classes() {
        for bad in [
            &b"ghp_xxxxxxxxxxxxxxxxxxxxxxxx"[..],
            b"sk_live_your_key_here",
            b"AKIAEXAMPLE",
            b"<token>",
        ] {
            assert!(
                !no_placeholder_text(bad),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(no_placeholder_text(
            b"ghp_9fK2mQ7zL4xW8vR1tN5pB3cY6hJ0dS2aE4gU"
        ));
        assert_eq!(char_classes(b"kubernetes-oidc-provider"), 1);
        assert_eq!(char_classes(b"a1b2"), 2);
        assert_eq!(char_classes(b"aB3"), 3);
        let v = Validator::DigitsBetween(9, 13);
        assert!(validate(&v, b"", b"020 7946 0958", b""));
        assert!(!validate(&v, b"", b"0123 45", b""));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes: no panic, and the checksums agree with a plain
        /// re-computation on the digits.
        #[test]
        fn validators_are_total(s in proptest::collection::vec(any::<u8>(), 0..48)) {
            for v in [
                Validator::Luhn,
                Validator::CardIssuer,
                Validator::IbanMod97,
                Validator::MinEntropy(3.0),
                Validator::ContextBefore { words: &["ssn"], window: 8 },
                Validator::NotPlaceholder(PLACEHOLDERS),
                Validator::NoPlaceholderText,
                Validator::MinClasses(2),
                Validator::DigitsBetween(9, 15),
                Validator::Base58CheckAddress,
                Validator::SegwitAddress,
                Validator::Eip55Address,
            ] {
                let _ = validate(&v, &s, &s, &s);
            }
            let e = shannon_entropy(&s);
            prop_assert!((0.0..=8.0).contains(&e));
        }

        /// A card number passes Luhn exactly when its check digit is the
        /// one Luhn computes.
        #[test]
        fn luhn_check_digit(body in "[0-9]{12,18}", d in 0u8..10) {
            let mut sum = 0u32;
            for (i, c) in body.bytes().rev().enumerate() {
                let x = u32::from(c - b'0');
                sum += if i % 2 == 0 { let y = x * 2; if y > 9 { y - 9 } else { y } } else { x };
            }
            let check = (10 - sum % 10) % 10;
            let n = format!("{body}{d}");
            prop_assert_eq!(luhn(n.as_bytes()), u32::from(d) == check);
        }
    }

    #[test]
    fn validators_never_panic_on_odd_bytes() {
        let inputs: [&[u8]; 5] = [b"", b"\xff\xfe\x00", &[0u8; 64], b"4\x004\x00", &[b'9'; 40]];
        let vs = [
            Validator::Luhn,
            Validator::CardIssuer,
            Validator::IbanMod97,
            Validator::MinEntropy(2.0),
            Validator::ContextBefore {
                words: &["ssn", ""],
                window: usize::MAX,
            },
            Validator::NotPlaceholder(&[""]),
        ];
        for v in &vs {
            for i in inputs {
                let _ = validate(v, i, i, i);
            }
        }
    }
}
