//! Personal data: e-mail addresses, payment card numbers, IBANs, phone numbers, US social security numbers, IP addresses.
//!
//! Plain data (see `spec.rs`); every pattern is checked by the catalogue tests
//! against `testdata/mask/pii.toml`.

use crate::spec::{Category, DetectorSpec, Validator};

/// The pii detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[
    DetectorSpec {
        id: "email",
        category: Category::Pii,
        description: r#"E-mail address: local part, @, a dotted domain with an alphabetic top-level label"#,
        keywords: &[],
        pattern: r#"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,5}[A-Za-z]{2,24}\b"#,
        validators: &[],
        max_len: 409,
    },
    DetectorSpec {
        id: "credit-card",
        category: Category::Pii,
        description: r#"Payment card number (PAN): 13-19 digits, plain or in 4-digit groups, passing Luhn and a known issuer prefix/length (Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro, Mir, RuPay)"#,
        keywords: &[],
        pattern: r#"\b(?:[0-9]{13,19}|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]{4}(?:[ -]?[0-9]{1,3})?|[0-9]{4}[ -][0-9]{6}[ -][0-9]{4,5})\b"#,
        validators: &[Validator::Luhn, Validator::CardIssuer],
        max_len: 23,
    },
    DetectorSpec {
        id: "iban",
        category: Category::Pii,
        description: r#"International Bank Account Number (ISO 13616): country code, check digits and BBAN, plain or in groups of four, with the country's length and a valid mod-97 check"#,
        keywords: &[],
        pattern: r#"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"#,
        validators: &[Validator::IbanMod97],
        max_len: 43,
    },
    DetectorSpec {
        id: "phone",
        category: Category::Pii,
        description: r#"Phone number: E.164 (+<country><number>, compact or grouped) or North American (NXX) NXX-XXXX with separators; plain digit runs are not phones"#,
        keywords: &[],
        pattern: r#"(?:\B\+[1-9][0-9]{7,14}|\B\+[1-9][0-9]{0,2}[ .-](?:\([0-9]{1,4}\) ?)?[0-9]{1,4}(?:[ .-][0-9]{2,4}){1,4}|\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[.-][0-9]{4}|\b[2-9][0-9]{2}[.-][2-9][0-9]{2}[.-][0-9]{4})\b"#,
        validators: &[],
        max_len: 36,
    },
    DetectorSpec {
        id: "us-ssn",
        category: Category::Pii,
        description: r#"US social security number (AAA-GG-SSSS, excluding the never-issued 000/666/9xx areas, 00 groups and 0000 serials), only after a context word such as 'SSN' or 'social security'"#,
        keywords: &[],
        pattern: r#"\b(?:00[1-9]|0[1-9][0-9]|[1-5][0-9]{2}|6[0-57-9][0-9]|66[0-57-9]|[78][0-9]{2})[- ]?(?:0[1-9]|[1-9][0-9])[- ]?(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})\b"#,
        validators: &[Validator::ContextBefore {
            words: &[
                "ssn",
                "social security",
                "social-security",
                "socialsecurity",
                "ss#",
                "ss #",
                "ss no",
            ],
            window: 32,
        }],
        max_len: 11,
    },
    DetectorSpec {
        id: "ipv4",
        category: Category::Pii,
        description: r#"IPv4 address in dotted-decimal form (each octet 0-255)"#,
        keywords: &[],
        pattern: r#"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\b"#,
        validators: &[],
        max_len: 15,
    },
    DetectorSpec {
        id: "ipv6",
        category: Category::Pii,
        description: r#"IPv6 address: eight colon-separated groups, a compressed form with '::' and at least three groups, or two groups around '::' one of which has a digit (so Rust/C++ paths such as dfa::DEAD are not addresses)"#,
        keywords: &[],
        pattern: r#"\b(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b|(?:[0-9A-Fa-f]{1,4}:){2,6}(?::[0-9A-Fa-f]{1,4}){1,5}\b|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){2,6}\b|(?:[0-9][0-9A-Fa-f]{0,3}|[A-Fa-f][0-9][0-9A-Fa-f]{0,2}|[A-Fa-f]{2}[0-9][0-9A-Fa-f]?|[A-Fa-f]{3}[0-9])::[0-9A-Fa-f]{1,4}\b|[0-9A-Fa-f]{1,4}::(?:[0-9][0-9A-Fa-f]{0,3}|[A-Fa-f][0-9][0-9A-Fa-f]{0,2}|[A-Fa-f]{2}[0-9][0-9A-Fa-f]?|[A-Fa-f]{3}[0-9])\b|(?:[0-9A-Fa-f]{1,4}:){2,7}:)"#,
        validators: &[],
        max_len: 55,
    },
];
