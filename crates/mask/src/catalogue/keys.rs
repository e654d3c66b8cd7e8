//! Private keys and signed tokens: PEM (PKCS#1, PKCS#8, SEC1, DSA, encrypted), OpenSSH, PGP, PuTTY, age, and JWTs.
//!
//! Plain data (see `spec.rs`); every pattern is checked by the catalogue tests
//! against `testdata/mask/keys.toml`.

use crate::spec::{Category, DetectorSpec};

/// The keys detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[
    DetectorSpec {
        id: "pem-private-key",
        category: Category::Secret,
        description: r#"PEM private key block: -----BEGIN [RSA |EC |DSA |ENCRYPTED ]PRIVATE KEY----- … -----END … PRIVATE KEY----- (PKCS#1, SEC1, PKCS#8, encrypted PKCS#8 and legacy Proc-Type/DEK-Info encryption)"#,
        keywords: &["private key-----"],
        pattern: r#"-----BEGIN (?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----(?:\s{1,4}Proc-Type: 4,ENCRYPTED\s{1,4}DEK-Info: [A-Z0-9-]{3,30},[A-Fa-f0-9]{16,32}\r?\n)?[A-Za-z0-9+/=\s]{64,7000}-----END (?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----"#,
        validators: &[],
        max_len: 7177,
    },
    DetectorSpec {
        id: "openssh-private-key",
        category: Category::Secret,
        description: r#"OpenSSH private key block: -----BEGIN OPENSSH PRIVATE KEY----- … -----END OPENSSH PRIVATE KEY-----"#,
        keywords: &["openssh private key"],
        pattern: r#"-----BEGIN OPENSSH PRIVATE KEY-----[A-Za-z0-9+/=\s]{64,7000}-----END OPENSSH PRIVATE KEY-----"#,
        validators: &[],
        max_len: 7068,
    },
    DetectorSpec {
        id: "pgp-private-key-block",
        category: Category::Secret,
        description: r#"OpenPGP armored private key: -----BEGIN PGP PRIVATE KEY BLOCK----- … -----END PGP PRIVATE KEY BLOCK-----"#,
        keywords: &["pgp private key block"],
        pattern: r#"-----BEGIN PGP PRIVATE KEY BLOCK-----\r?\n(?:[A-Za-z]{1,20}: [ -~]{0,100}\r?\n){0,5}\r?\n[A-Za-z0-9+/=\r\n]{64,7000}-----END PGP PRIVATE KEY BLOCK-----"#,
        validators: &[],
        max_len: 7696,
    },
    DetectorSpec {
        id: "putty-private-key",
        category: Category::Secret,
        description: r#"PuTTY .ppk private key: the base64 lines after 'Private-Lines: N'"#,
        keywords: &["private-lines:"],
        pattern: r#"Private-Lines: [0-9]{1,2}\r?\n(?P<m>(?:[A-Za-z0-9+/=]{1,64}\r?\n){1,50})"#,
        validators: &[],
        max_len: 3319,
    },
    DetectorSpec {
        id: "age-secret-key",
        category: Category::Secret,
        description: r#"age encryption secret key: AGE-SECRET-KEY-1 followed by 58 Bech32 characters"#,
        keywords: &["age-secret-key-1"],
        pattern: r#"\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}\b"#,
        validators: &[],
        max_len: 74,
    },
    DetectorSpec {
        id: "jwt",
        category: Category::Secret,
        description: r#"JSON Web Token (JWS compact form): base64url header eyJ…, '.', payload eyJ…, '.', signature"#,
        keywords: &["eyj"],
        pattern: r#"\beyJ[A-Za-z0-9_-]{10,500}\.eyJ[A-Za-z0-9_-]{2,3000}\.[A-Za-z0-9_-]{20,500}"#,
        validators: &[],
        max_len: 4008,
    },
];
