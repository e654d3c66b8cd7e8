//! User rules: regex and literal detectors, and field-name rules.

use std::fmt::Write as _;

use crate::spec::Category;
use crate::style::Style;

/// A detector the embedder adds: a regular expression or a literal, with an
/// id that names it in findings and in `[MASKED:<id>]`.
///
/// Patterns use the same dialect as the built-in catalogue: they run on
/// bytes with Unicode off, so `\b`, `\w`, `\d` and `\s` are ASCII; write
/// `(?i)` for case-insensitivity. A capture group named `m` marks the part to
/// mask (the rest of the match is kept). Keywords (ASCII, matched
/// case-insensitively) let the prefilter skip text that cannot match: every
/// match must contain one of them. A rule without keywords is found by a
/// DFA pass of its own over all input, which is slower.
///
/// # Example
///
/// ```
/// use portcullis_mask::{Masker, Rule};
///
/// let masker = Masker::builder()
///     .default_catalogue(false)
///     .rule(Rule::regex("employee-id", r"\bEMP-(?P<m>\d{6})\b").keywords(["emp-"]))
///     .build()?;
/// assert_eq!(masker.mask(b"owner EMP-123456").output(), b"owner EMP-[MASKED:employee-id]");
/// # Ok::<(), portcullis_mask::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) id: String,
    pub(crate) pattern: String,
    pub(crate) keywords: Vec<String>,
    pub(crate) style: Option<Style>,
    pub(crate) category: Category,
    pub(crate) max_len: Option<usize>,
}

impl Rule {
    /// A rule that masks matches of `pattern` (see the type's doc for the
    /// dialect). Its longest match is capped at the masker's
    /// `max_match_len` unless [`Rule::max_len`] says less.
    pub fn regex(id: impl Into<String>, pattern: impl Into<String>) -> Rule {
        Rule {
            id: id.into(),
            pattern: pattern.into(),
            keywords: Vec::new(),
            style: None,
            category: Category::Secret,
            max_len: None,
        }
    }

    /// A rule that masks every occurrence of the exact bytes `literal`
    /// (case-sensitive).
    pub fn literal(id: impl Into<String>, literal: impl AsRef<[u8]>) -> Rule {
        let literal = literal.as_ref();
        let mut pattern = String::with_capacity(literal.len() * 6);
        for byte in literal {
            // `\xHH` is one byte when Unicode is off, whatever its value.
            let _ = write!(pattern, "\\x{byte:02x}");
        }
        let keyword = String::from_utf8_lossy(literal).to_ascii_lowercase();
        Rule {
            id: id.into(),
            pattern,
            keywords: if keyword.is_empty() || !literal.is_ascii() {
                Vec::new()
            } else {
                vec![keyword]
            },
            style: None,
            category: Category::Secret,
            max_len: Some(literal.len()),
        }
    }

    /// Keywords for the prefilter (ASCII, case-insensitive); every match must
    /// contain one of them.
    pub fn keywords<I, S>(mut self, keywords: I) -> Rule
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.keywords = keywords
            .into_iter()
            .map(|k| k.as_ref().to_ascii_lowercase())
            .collect();
        self
    }

    /// The style of this rule's replacements (default: the masker's style).
    pub fn style(mut self, style: Style) -> Rule {
        self.style = Some(style);
        self
    }

    /// Whether this rule finds secrets (the default) or personal data.
    pub fn category(mut self, category: Category) -> Rule {
        self.category = category;
        self
    }

    /// The longest match in bytes; longer matches are cut there and masked
    /// anyway. Must not exceed the masker's `max_match_len`.
    pub fn max_len(mut self, max_len: usize) -> Rule {
        self.max_len = Some(max_len);
        self
    }
}

/// A rule for structured values: a field (column, JSON key, header) whose
/// name matches is masked whole by [`Masker::mask_field`](crate::Masker::mask_field),
/// whatever its value.
///
/// The name pattern is a glob matched ASCII case-insensitively against the
/// whole field name: `*` matches any run of characters, `?` any one
/// character, everything else itself (`password`, `*_token`, `ssn`).
/// Findings name the rule `field:<pattern>`.
///
/// # Example
///
/// ```
/// use portcullis_mask::{FieldRule, Masker};
///
/// let masker = Masker::builder().field_rule(FieldRule::new("*_token")).build()?;
/// let masked = masker.mask_field("Refresh_Token", b"r1");
/// assert_eq!(masked.output(), b"[MASKED:field:*_token]");
/// # Ok::<(), portcullis_mask::BuildError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FieldRule {
    pub(crate) id: String,
    pub(crate) pattern: FieldPattern,
    pub(crate) style: Option<Style>,
    pub(crate) category: Category,
}

impl FieldRule {
    /// A rule for fields whose name matches the glob `pattern`.
    pub fn new(pattern: impl Into<String>) -> FieldRule {
        let pattern = pattern.into();
        FieldRule {
            id: format!("field:{pattern}"),
            pattern: FieldPattern::new(&pattern),
            style: None,
            category: Category::Secret,
        }
    }

    /// The style of this rule's replacements (default: the masker's style).
    pub fn style(mut self, style: Style) -> FieldRule {
        self.style = Some(style);
        self
    }

    /// Whether the field holds secrets (the default) or personal data.
    pub fn category(mut self, category: Category) -> FieldRule {
        self.category = category;
        self
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        self.pattern.matches(name)
    }
}

/// A field-name pattern, the one matcher Portcullis uses wherever a field
/// (column, JSON key, header) is named by a glob: ASCII case-insensitive,
/// against the whole name; `*` matches any run of characters (dots
/// included, so `*_token` matches `shop.users.refresh_token`), `?` any one
/// character, everything else itself. Matching is linear in the pattern
/// times the name at worst, never recursive, and allocates nothing.
///
/// # Example
///
/// ```
/// use portcullis_mask::FieldPattern;
///
/// let p = FieldPattern::new("*.api_key");
/// assert!(p.matches("customers.API_KEY"));
/// assert!(p.matches("shop.customers.api_key"));
/// assert!(!p.matches("api_key"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPattern(Vec<u8>);

impl FieldPattern {
    /// Compiles `pattern` (lowercases it; any string is a valid pattern).
    pub fn new(pattern: &str) -> FieldPattern {
        FieldPattern(pattern.to_ascii_lowercase().into_bytes())
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(&self.0, name.as_bytes())
    }
}

/// Matches `name` against the lowercase glob `pat` (ASCII case-insensitive),
/// in O(len(pat) * len(name)) time at worst, without recursion.
fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, name index).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match (pat.get(p), name.get(n)) {
            (Some(b'*'), _) => {
                star = Some((p + 1, n));
                p += 1;
            }
            (Some(&pc), Some(&nc)) if pc == b'?' || pc == nc.to_ascii_lowercase() => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pat.get(p..).unwrap_or_default().iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        let g = |p: &str, n: &str| glob_match(p.as_bytes(), n.as_bytes());
        assert!(g("password", "PassWord"));
        assert!(!g("password", "password2"));
        assert!(g("*_token", "access_token"));
        assert!(g("*_token", "_token"));
        assert!(!g("*_token", "token"));
        assert!(g("*secret*", "client_secret_v2"));
        assert!(g("s?n", "SSN"));
        assert!(!g("s?n", "sn"));
        assert!(g("*", ""));
        assert!(g("a*b*c", "aXXbYYc"));
        assert!(!g("a*b*c", "aXXbYY"));
    }
}
