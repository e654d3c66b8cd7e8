//! What an approver sees of a statement: the statement as it will run, with
//! only the **insides** of string literals, comments and bound parameter
//! values masked. Quotes, keywords, operators and comment markers are kept
//! as they are, so a literal cannot hide SQL: in
//! `… AND status <> 'password=' OR/**/true` the `OR` stays SQL, outside
//! the literal, whatever the masker makes of `password=`.
//!
//! The statement is split into tokens by sqlparser's PostgreSQL tokenizer
//! (the policy's own). A statement it cannot tokenize is shown masked
//! whole, marked as such, so that nothing unmasked slips through.

use serde::{Deserialize, Serialize};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, Tokenizer, Whitespace};

/// What a piece of the shown statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// SQL structure: keywords, names, operators, numbers, whitespace.
    Sql,
    /// The inside of a string literal (masked).
    Literal,
    /// The inside of a comment (masked).
    Comment,
    /// A bound parameter's value (masked).
    Param,
    /// A statement the tokenizer could not split: masked whole.
    Opaque,
}

/// One piece of the shown statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Segment {
    pub(crate) kind: Kind,
    pub(crate) text: String,
}

/// The statement as an approver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct Shown {
    pub(crate) segments: Vec<Segment>,
}

impl Shown {
    /// The whole text, for a terminal.
    pub(crate) fn text(&self) -> String {
        self.segments.iter().map(|s| s.text.as_str()).collect()
    }

    fn push(&mut self, kind: Kind, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(last) = self.segments.last_mut()
            && last.kind == kind
        {
            last.text.push_str(text);
            return;
        }
        self.segments.push(Segment {
            kind,
            text: text.to_owned(),
        });
    }
}

/// Byte offsets of each line's start.
fn line_starts(sql: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The byte offset of a tokenizer location (1-based line and column, the
/// column counted in characters).
fn offset(sql: &str, starts: &[usize], at: Location) -> Option<usize> {
    let line = usize::try_from(at.line).ok()?.checked_sub(1)?;
    let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
    let start = *starts.get(line)?;
    let rest = sql.get(start..)?;
    if column == 0 {
        return Some(start);
    }
    match rest.char_indices().nth(column) {
        Some((i, _)) => Some(start + i),
        None if rest.chars().count() == column => Some(sql.len()),
        None => None,
    }
}

/// Where the inside of a literal or comment token is: (prefix length,
/// suffix length) in bytes of its own text.
fn inside(token: &Token, text: &str) -> Option<(usize, usize)> {
    match token {
        Token::SingleQuotedString(_)
        | Token::EscapedStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::SingleQuotedByteStringLiteral(_) => {
            let open = text.find('\'')? + 1;
            let close = text.rfind('\'')?;
            (close >= open).then(|| (open, text.len() - close))
        }
        Token::DollarQuotedString(_) => {
            // `$tag$ … $tag$`
            let open = text.get(1..)?.find('$')? + 2;
            let close = text.get(..text.len().checked_sub(1)?)?.rfind('$')?;
            (close >= open).then(|| (open, text.len() - close))
        }
        Token::Whitespace(Whitespace::SingleLineComment { prefix, .. }) => {
            let open = prefix.len();
            let close = if text.ends_with('\n') { 1 } else { 0 };
            (text.len() >= open + close).then_some((open, close))
        }
        Token::Whitespace(Whitespace::MultiLineComment(_)) => {
            (text.len() >= 4 && text.starts_with("/*") && text.ends_with("*/")).then_some((2, 2))
        }
        _ => None,
    }
}

/// The statement `sql`, with its bound `params`, as an approver sees it;
/// `mask` masks one literal's inside.
pub(crate) fn show(
    sql: &str,
    params: Option<&[Option<bytes::Bytes>]>,
    mask: &dyn Fn(&str) -> String,
) -> Shown {
    let mut shown = tokens(sql, mask).unwrap_or_else(|| Shown {
        segments: vec![Segment {
            kind: Kind::Opaque,
            text: mask(sql),
        }],
    });
    if let Some(params) = params.filter(|p| !p.is_empty()) {
        shown.push(Kind::Sql, "\n-- parameters:");
        for (i, p) in params.iter().enumerate() {
            match p {
                None => shown.push(Kind::Sql, &format!(" ${} = NULL", i + 1)),
                Some(v) => {
                    shown.push(Kind::Sql, &format!(" ${} = '", i + 1));
                    let value = String::from_utf8_lossy(v);
                    shown.push(Kind::Param, &mask(&value).replace('\'', "''"));
                    shown.push(Kind::Sql, "'");
                }
            }
        }
    }
    shown
}

fn tokens(sql: &str, mask: &dyn Fn(&str) -> String) -> Option<Shown> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize_with_location()
        .ok()?;
    let starts = line_starts(sql);
    let mut bounds = Vec::with_capacity(tokens.len());
    for t in &tokens {
        if t.token == Token::EOF {
            continue;
        }
        bounds.push((offset(sql, &starts, t.span.start)?, &t.token));
    }
    let mut shown = Shown::default();
    let mut covered = 0;
    for (i, (start, token)) in bounds.iter().enumerate() {
        let end = bounds.get(i + 1).map_or(sql.len(), |(s, _)| *s);
        // Tokens must tile the statement exactly, in order.
        if *start != covered || end < *start {
            return None;
        }
        covered = end;
        let text = sql.get(*start..end)?;
        match inside(token, text) {
            Some((open, close)) => {
                let kind = if matches!(token, Token::Whitespace(_)) {
                    Kind::Comment
                } else {
                    Kind::Literal
                };
                shown.push(Kind::Sql, text.get(..open)?);
                shown.push(kind, &mask(text.get(open..text.len() - close)?));
                shown.push(Kind::Sql, text.get(text.len() - close..)?);
            }
            None if matches!(
                token,
                Token::SingleQuotedString(_)
                    | Token::EscapedStringLiteral(_)
                    | Token::NationalStringLiteral(_)
                    | Token::UnicodeStringLiteral(_)
                    | Token::HexStringLiteral(_)
                    | Token::SingleQuotedByteStringLiteral(_)
                    | Token::DollarQuotedString(_)
                    | Token::Whitespace(
                        Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)
                    )
            ) =>
            {
                return None;
            }
            None => shown.push(Kind::Sql, text),
        }
    }
    (covered == sql.len()).then_some(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in masker with the property that matters: it swallows the
    /// rest of its input after `password=` (as a keyword-value detector
    /// would, across a quote, were it given the whole statement).
    fn greedy(text: &str) -> String {
        match text.find("password=") {
            Some(i) => format!("{}password=[MASKED:secret]", &text[..i]),
            None => text.to_owned(),
        }
    }

    #[test]
    fn a_literal_cannot_hide_sql_after_it() {
        let sql = "SELECT * FROM users WHERE id = 1 AND status <> 'password=' OR/**/true";
        // Masking the whole statement would hide the OR.
        assert!(!greedy(sql).contains("OR/**/true"));
        let shown = show(sql, None, &greedy);
        assert_eq!(
            shown.text(),
            "SELECT * FROM users WHERE id = 1 AND status <> 'password=[MASKED:secret]' OR/**/true"
        );
        let sql_parts: String = shown
            .segments
            .iter()
            .filter(|s| s.kind == Kind::Sql)
            .map(|s| s.text.as_str())
            .collect();
        assert!(sql_parts.contains("' OR/*"), "{shown:?}");
        assert!(shown.segments.iter().any(|s| s.kind == Kind::Literal));
    }

    #[test]
    fn every_kind_of_literal_and_comment_keeps_its_quotes() {
        let mask = |t: &str| format!("<{}>", t.len());
        let sql = "select E'a\\'b', $x$ q'q $x$, 'it''s', -- note\n1 /* c */";
        let shown = show(sql, None, &mask);
        assert_eq!(
            shown.text(),
            "select E'<4>', $x$<5>$x$, '<5>', --<5>\n1 /*<3>*/"
        );
    }

    #[test]
    fn parameters_are_masked_values_and_an_untokenizable_statement_is_masked_whole() {
        let mask = |t: &str| t.replace("s3cr3t", "[MASKED]");
        let params = [Some(bytes::Bytes::from_static(b"s3cr3t'x")), None];
        let shown = show("update t set a = $1, b = $2", Some(&params), &mask);
        assert_eq!(
            shown.text(),
            "update t set a = $1, b = $2\n-- parameters: $1 = '[MASKED]''x' $2 = NULL"
        );
        let shown = show("select 's3cr3t", None, &mask);
        assert_eq!(shown.segments.len(), 1);
        assert_eq!(shown.segments[0].kind, Kind::Opaque);
        assert_eq!(shown.text(), "select '[MASKED]");
    }

    #[test]
    fn multibyte_text_keeps_its_offsets() {
        let mask = |t: &str| t.to_uppercase();
        let sql = "select 'ünïcødé' as \"naïve\"\n, 'é' -- ö\n";
        assert_eq!(
            show(sql, None, &mask).text(),
            "select 'ÜNÏCØDÉ' as \"naïve\"\n, 'É' -- Ö\n"
        );
    }
}
