//! The startup-parameter allow-list, the session settings the gateway pins,
//! and the check of what the backend reports about them.
//!
//! The gateway's analysis reads SQL text as UTF-8 with standard-conforming
//! strings (a backslash is an ordinary character in `'...'`). PostgreSQL
//! must read it the same way, or a statement the policy reads as two string
//! literals can run as a DELETE. So:
//!
//! - a client's startup parameters are forwarded only from an allow-list;
//!   `options` (which can set any setting), `role`, `search_path` and
//!   everything else are refused (or, when the connection allows it, dropped
//!   with a notice);
//! - `standard_conforming_strings = on` and a client encoding the analysis
//!   reads correctly are sent in every StartupMessage to the backend (a
//!   startup parameter outranks database and role defaults);
//! - every ParameterStatus the backend sends is checked: a value the
//!   analysis does not handle ends the session before anything else is
//!   forwarded ([`check_reported`]);
//! - between a statement that may change a setting and the ReadyForQuery
//!   that reports the change, only statement text whose reading does not
//!   depend on these settings is forwarded (see [`is_setting_independent`]).

use std::collections::BTreeMap;

/// Parameters forwarded as the client gave them (names compared in lower case).
const ALLOWED: [&str; 5] = [
    "application_name",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
];

/// The client encoding used when the client names none.
const DEFAULT_ENCODING: &str = "UTF8";

/// What the backend's StartupMessage carries, and what was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filtered {
    /// Parameters for the backend (lower-case names), pinned ones included.
    pub(crate) forward: BTreeMap<String, String>,
    /// Names of the parameters dropped (only when dropping is allowed).
    pub(crate) dropped: Vec<String>,
}

/// A startup parameter the gateway does not forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// The parameter's name as the client sent it.
    pub(crate) name: String,
    /// Why, for the client's error message.
    pub(crate) reason: String,
}

/// The canonical name of a client encoding the analysis reads correctly,
/// or `None`. PostgreSQL ignores case and punctuation in encoding names.
///
/// UTF8 is what the analysis reads. SQL_ASCII (no conversion; a UTF-8
/// server still checks the client's bytes are valid UTF-8) is accepted as
/// well. Encodings whose multibyte characters may contain the bytes of `\`
/// or `'` (SJIS, BIG5, GBK, GB18030, UHC, JOHAB) and single-byte ones the
/// analysis would decode wrongly (LATIN1, WIN1252, ...) are not.
pub(crate) fn canonical_encoding(value: &str) -> Option<&'static str> {
    let norm: String = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match norm.as_str() {
        "utf8" | "unicode" => Some("UTF8"),
        "sqlascii" => Some("SQL_ASCII"),
        _ => None,
    }
}

fn is_on(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "on" | "true" | "yes" | "1"
    )
}

/// Applies the allow-list to a client's startup parameters. `user`,
/// `database`, `replication` and `_pq_.*` are handled by the session and
/// skipped here. With `drop_unknown`, a parameter that is not allowed is
/// dropped (and named in [`Filtered::dropped`]) instead of refused.
pub(crate) fn filter(
    params: &BTreeMap<String, String>,
    drop_unknown: bool,
) -> Result<Filtered, Refused> {
    let mut forward = BTreeMap::new();
    let mut dropped = Vec::new();
    let mut encoding = DEFAULT_ENCODING;
    for (name, value) in params {
        if matches!(name.as_str(), "user" | "database" | "replication") || name.starts_with("_pq_.")
        {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        let refusal = if ALLOWED.contains(&lower.as_str()) {
            forward.insert(lower, value.clone());
            None
        } else if lower == "client_encoding" {
            match canonical_encoding(value) {
                Some(e) => {
                    encoding = e;
                    None
                }
                None => Some(format!(
                    "client_encoding \"{value}\" is not supported by the gateway (use UTF8)"
                )),
            }
        } else if lower == "standard_conforming_strings" {
            (!is_on(value))
                .then(|| "the gateway requires standard_conforming_strings = on".to_owned())
        } else {
            Some(format!(
                "the gateway does not forward the startup parameter \"{name}\""
            ))
        };
        if let Some(reason) = refusal {
            if drop_unknown {
                dropped.push(name.clone());
            } else {
                return Err(Refused {
                    name: name.clone(),
                    reason,
                });
            }
        }
    }
    forward.insert("client_encoding".to_owned(), encoding.to_owned());
    forward.insert("standard_conforming_strings".to_owned(), "on".to_owned());
    Ok(Filtered { forward, dropped })
}

/// Checks a setting the backend reports in a ParameterStatus. `Err` names
/// what the analysis cannot follow: the session must end.
pub(crate) fn check_reported(name: &str, value: &str) -> Result<(), String> {
    if name.eq_ignore_ascii_case("standard_conforming_strings") && value != "on" {
        return Err(format!(
            "the backend reported standard_conforming_strings = {value}; the gateway's \
             analysis requires on"
        ));
    }
    if name.eq_ignore_ascii_case("client_encoding") && canonical_encoding(value).is_none() {
        return Err(format!(
            "the backend reported client_encoding = {value}; the gateway's analysis \
             reads only UTF8 and SQL_ASCII"
        ));
    }
    Ok(())
}

/// Whether PostgreSQL reads `sql` the same way under every value of the
/// settings a statement could change: no backslash (whose meaning depends
/// on `standard_conforming_strings`) and only ASCII bytes (whose meaning
/// does not depend on the client encoding).
pub(crate) fn is_setting_independent(sql: &[u8]) -> bool {
    sql.iter().all(|&b| b < 0x80 && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn allowed_parameters_pass_and_settings_are_pinned() {
        let f = filter(
            &params(&[
                ("user", "u"),
                ("database", "d"),
                ("application_name", "psql"),
                ("DateStyle", "ISO, MDY"),
                ("client_encoding", "unicode"),
                ("_pq_.x", "1"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(f.forward.get("application_name").unwrap(), "psql");
        assert_eq!(f.forward.get("datestyle").unwrap(), "ISO, MDY");
        assert_eq!(f.forward.get("client_encoding").unwrap(), "UTF8");
        assert_eq!(f.forward.get("standard_conforming_strings").unwrap(), "on");
        assert!(!f.forward.contains_key("user"));
        assert!(!f.forward.contains_key("_pq_.x"));
        assert!(f.dropped.is_empty());
    }

    #[test]
    fn dangerous_parameters_are_refused_by_name() {
        for (k, v) in [
            ("options", "-c standard_conforming_strings=off"),
            ("role", "postgres"),
            ("search_path", "evil"),
            ("default_transaction_read_only", "off"),
            ("statement_timeout", "0"),
            ("standard_conforming_strings", "off"),
            ("client_encoding", "SJIS"),
            ("client_encoding", "BIG5"),
            ("client_encoding", "GBK"),
            ("client_encoding", "GB18030"),
            ("client_encoding", "LATIN1"),
            ("Options", "-c x=y"),
            ("USER", "postgres"),
        ] {
            let e = filter(&params(&[("user", "u"), (k, v)]), false).unwrap_err();
            assert_eq!(e.name, k);
            assert!(e.reason.contains(k) || e.reason.contains(v), "{e:?}");
        }
    }

    #[test]
    fn dropping_keeps_the_pins() {
        let f = filter(
            &params(&[
                ("options", "-c standard_conforming_strings=off"),
                ("client_encoding", "SJIS"),
                ("standard_conforming_strings", "off"),
            ]),
            true,
        )
        .unwrap();
        assert_eq!(f.dropped.len(), 3);
        assert_eq!(f.forward.get("client_encoding").unwrap(), "UTF8");
        assert_eq!(f.forward.get("standard_conforming_strings").unwrap(), "on");
        assert!(!f.forward.contains_key("options"));
    }

    #[test]
    fn reported_settings_are_checked() {
        assert!(check_reported("standard_conforming_strings", "on").is_ok());
        assert!(check_reported("standard_conforming_strings", "off").is_err());
        assert!(check_reported("client_encoding", "UTF8").is_ok());
        assert!(check_reported("client_encoding", "SQL_ASCII").is_ok());
        assert!(check_reported("client_encoding", "SJIS").is_err());
        assert!(check_reported("DateStyle", "German").is_ok());
    }

    #[test]
    fn setting_independent_text() {
        assert!(is_setting_independent(b"select 'a', 1"));
        assert!(!is_setting_independent(b"select '\\', ' ; delete'"));
        assert!(!is_setting_independent("select 'é'".as_bytes()));
    }
}
