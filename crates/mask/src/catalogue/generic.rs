//! Generic credentials: password / secret / token / API key assignments (guarded by an entropy floor and a placeholder list), HTTP bearer and basic credentials. Last in priority: a specific detector that matches the same bytes wins.
//!
//! Plain data (see `spec.rs`); every pattern is checked by the catalogue tests
//! against `testdata/mask/generic.toml`.

use crate::spec::{Category, DetectorSpec, Validator};

use super::PLACEHOLDERS;

/// The generic detectors, in priority order.
pub(super) static DETECTORS: &[DetectorSpec] = &[
    DetectorSpec {
        id: "generic-password",
        category: Category::Secret,
        description: r#"A password assigned in config, env, JSON, YAML or URLs: password / passwd / passphrase followed by = or : and a value of 6 or more characters with a digit or symbol (so code such as `password: String` is not one)"#,
        keywords: &["password", "passwd", "passphrase"],
        pattern: r#"(?i)(?:password|passwd|passphrase)["']?\s{0,3}(?::=|=>|[:=])\s{0,3}["']?(?P<m>(?-i:[A-Za-z_.]{0,64}[0-9#$%*+/=?@^~-][^\s"'`,;&<>(){}\[\]]{0,127}))"#,
        validators: &[
            Validator::MinEntropy(2.5),
            Validator::NotPlaceholder(PLACEHOLDERS),
            Validator::NoPlaceholderText,
        ],
        max_len: 212,
    },
    DetectorSpec {
        id: "generic-secret",
        category: Category::Secret,
        description: r#"A secret assigned in config, env, JSON or YAML: secret / secret_key / client_secret followed by = or : and a high-entropy value"#,
        keywords: &["secret"],
        pattern: r#"(?i)secret(?:[_.-]?key)?["']?\s{0,3}(?::=|=>|[:=])\s{0,3}["']?(?P<m>(?-i:[A-Za-z0-9_.~+/=!@#$%^*-]{8,256}))"#,
        validators: &[
            Validator::MinEntropy(3.0),
            Validator::NotPlaceholder(PLACEHOLDERS),
            Validator::NoPlaceholderText,
        ],
        max_len: 276,
    },
    DetectorSpec {
        id: "generic-token",
        category: Category::Secret,
        description: r#"A token assigned in config, env, JSON or headers: <anything>token followed by = or : and a high-entropy value"#,
        keywords: &["token"],
        pattern: r#"(?i)token["']?\s{0,3}(?::=|=>|[:=])\s{0,3}["']?(?P<m>(?-i:[A-Za-z0-9_.~+/=-]{16,512}))"#,
        validators: &[
            Validator::MinEntropy(3.2),
            Validator::MinClasses(2),
            Validator::NotPlaceholder(PLACEHOLDERS),
            Validator::NoPlaceholderText,
        ],
        max_len: 527,
    },
    DetectorSpec {
        id: "generic-api-key",
        category: Category::Secret,
        description: r#"An API key assigned in config, env, JSON or headers: api_key / apikey / api-key followed by = or : and a high-entropy value"#,
        keywords: &["apikey", "api_key", "api-key", "api.key"],
        pattern: r#"(?i)api[_.-]?key["']?\s{0,3}(?::=|=>|[:=])\s{0,3}["']?(?P<m>(?-i:[A-Za-z0-9_.~+/=-]{16,256}))"#,
        validators: &[
            Validator::MinEntropy(3.2),
            Validator::MinClasses(2),
            Validator::NotPlaceholder(PLACEHOLDERS),
            Validator::NoPlaceholderText,
        ],
        max_len: 273,
    },
    DetectorSpec {
        id: "generic-credential",
        category: Category::Secret,
        description: r#"A credential assigned under another secret-like key name, in any casing and separator (snake, kebab, camel, dotted, ENV): pwd / pass / auth / credential(s) as whole words, access_key / private_key / auth_key / client_key / signing_key / encryption_key / master_key / session_key, followed by = : := => and a value of 8 or more characters with mixed character classes and high entropy (paths, plain words, numbers, templates and placeholders are not)"#,
        keywords: &[
            "pwd",
            "pass",
            "auth",
            "credential",
            "access",
            "private",
            "client",
            "signing",
            "encryption",
            "master",
            "session",
        ],
        pattern: r#"(?i)(?:(?:\b|[^a-z])(?:pwd|pass|auth|credentials?)|(?:access|private|auth|client|signing|encryption|master|session)[_.-]?key)["']?\s{0,3}(?::=|=>|[:=])\s{0,3}["']?(?P<m>(?-i:[A-Za-z0-9_+=!@#$%^*-][A-Za-z0-9_.~+/=!@#$%^*-]{7,255}))"#,
        validators: &[
            Validator::MinEntropy(3.0),
            Validator::MinClasses(2),
            Validator::NotPlaceholder(PLACEHOLDERS),
            Validator::NoPlaceholderText,
        ],
        max_len: 280,
    },
    DetectorSpec {
        id: "k8s-env-secret",
        category: Category::Secret,
        description: r#"A secret in a Kubernetes / Compose env list, where the name and the value are separate keys: name: <NAME with password / passphrase / secret / token / api_key / access_key / private_key / credential / auth / key / pat / sk as one of its words> followed by value: <high-entropy value>"#,
        keywords: &["name:"],
        pattern: r#"(?i)\bname:[ \t]{0,3}["']?(?:[a-z0-9]{1,16}_){0,3}(?:password|passwd|pass_?phrase|secret|token|api_?key|access_?key|private_?key|credentials?|auth|key|pat|sk)(?:_[a-z0-9]{1,12}){0,2}["']?\s{1,24}value:[ \t]{0,3}["']?(?P<m>(?-i:[A-Za-z0-9_+=!@#$%^*-][A-Za-z0-9_.~+/=!@#$%^*-]{7,255}))"#,
        validators: &[
            Validator::MinEntropy(3.0),
            Validator::MinClasses(2),
            Validator::NotPlaceholder(PLACEHOLDERS),
            Validator::NoPlaceholderText,
        ],
        max_len: 388,
    },
    DetectorSpec {
        id: "netrc-password",
        category: Category::Secret,
        description: r#"Password in a .netrc / _netrc entry: machine <host> [login <user>] password <PASSWORD> (curl, git, ftp, pip read these files)"#,
        keywords: &["machine"],
        pattern: r#"\bmachine[ \t]{1,8}[^\s]{1,128}\s{1,8}(?:login[ \t]{1,8}[^\s]{1,128}\s{1,8})?password[ \t]{1,8}(?P<m>[^\s]{1,128})"#,
        validators: &[
            Validator::NotPlaceholder(PLACEHOLDERS),
            Validator::NoPlaceholderText,
        ],
        max_len: 444,
    },
    DetectorSpec {
        id: "bearer-token",
        category: Category::Secret,
        description: r#"HTTP bearer credential: 'Bearer ' followed by a high-entropy token (Authorization headers, curl commands, logs)"#,
        keywords: &["bearer"],
        pattern: r#"(?i)\bbearer\s{1,3}(?P<m>(?-i:[A-Za-z0-9_.~+/-]{16,2000}={0,2}))"#,
        validators: &[
            Validator::MinEntropy(3.2),
            Validator::MinClasses(2),
            Validator::NotPlaceholder(PLACEHOLDERS),
            Validator::NoPlaceholderText,
        ],
        max_len: 2011,
    },
    DetectorSpec {
        id: "http-basic-auth",
        category: Category::Secret,
        description: r#"HTTP basic credentials: 'Authorization: Basic ' followed by base64(user:password)"#,
        keywords: &["authorization"],
        pattern: r#"(?i)\bauthorization["']?\s{0,3}[:=]\s{0,3}["']?basic\s{1,3}(?P<m>(?-i:[A-Za-z0-9+/]{8,1000}={0,2}))"#,
        validators: &[],
        max_len: 1032,
    },
];
