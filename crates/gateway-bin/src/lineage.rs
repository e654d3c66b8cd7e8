//! What one statement's results have masked because of where their values
//! come from, decided from the SQL's lineage against the backend's schema
//! (portcullis-policy's [`lineage`]), and the transforms that apply it:
//! result columns, COPY data (text, CSV, binary), and the texts of errors
//! and notices.
//!
//! Fail closed: with field rules configured, a column is shown in the clear
//! only when the lineage proves it clean. If the schema could not be read,
//! every column of every result is masked.

use portcullis_policy::{
    self as policy, CopyFormat, Effect, Lineage, LineageSchema, Policy, Risk, StatementLineage,
    lineage,
};

/// The marker a masked COPY field or error value becomes.
const MARK: &str = "[MASKED:field]";

/// What a statement's lineage says about its results.
#[derive(Debug, Clone)]
pub(crate) struct Masking {
    /// Which result columns are masked.
    pub(crate) columns: Lineage,
    /// Its errors and notices may quote a masked value.
    pub(crate) reads_masked: bool,
    /// It runs code the lineage cannot see into: error and notice texts
    /// are masked whole.
    pub(crate) opaque: bool,
    /// It would write a masked value where it is not masked.
    pub(crate) moves_masked: bool,
    /// A masked value is used in a predicate.
    pub(crate) masked_predicate: bool,
    /// The format of a `COPY … TO STDOUT`'s data.
    pub(crate) copy: Option<CopyFormat>,
}

impl Masking {
    /// Nothing masked: no field rule is configured.
    pub(crate) fn clean() -> Masking {
        Masking {
            columns: Lineage::Uniform(false),
            reads_masked: false,
            opaque: false,
            moves_masked: false,
            masked_predicate: false,
            copy: None,
        }
    }

    /// Everything masked: the schema is not known.
    fn unknown() -> Masking {
        Masking {
            columns: Lineage::Uniform(true),
            reads_masked: true,
            opaque: true,
            moves_masked: false,
            masked_predicate: false,
            copy: None,
        }
    }

    /// The masking of `sql`: `active` when field rules are configured;
    /// `schema` as read from the backend, `None` if it could not be.
    pub(crate) fn of(sql: &str, active: bool, schema: Option<&LineageSchema>) -> Masking {
        if !active {
            return Masking::clean();
        }
        let Some(schema) = schema else {
            return Masking::unknown();
        };
        let mut all = lineage(sql, schema);
        if all.len() == 1
            && let Some(one) = all.pop()
        {
            return Masking::from_statement(one);
        }
        // Several statements in one Query: which result belongs to which
        // statement is not tracked, so one masked column anywhere masks
        // every column of every result.
        Masking {
            columns: Lineage::Uniform(all.iter().any(|s| s.output.any_masked())),
            reads_masked: all.iter().any(|s| s.reads_masked),
            opaque: all.iter().any(|s| s.opaque),
            moves_masked: all.iter().any(|s| s.moves_masked),
            masked_predicate: all.iter().any(|s| s.masked_predicate),
            copy: all
                .iter()
                .any(|s| s.copy.is_some())
                .then_some(CopyFormat::Unknown),
        }
    }

    fn from_statement(s: StatementLineage) -> Masking {
        Masking {
            columns: s.output,
            reads_masked: s.reads_masked,
            opaque: s.opaque,
            moves_masked: s.moves_masked,
            masked_predicate: s.masked_predicate,
            copy: s.copy,
        }
    }
}

/// Brings the lineage's findings into the policy's decision:
/// - a masked value used in a predicate that the policy's own (name-based)
///   analysis did not see (through a view, a whole-row reference) adds the
///   `masked_column_predicate` risk to every statement, and the policy
///   decides again;
/// - a statement that would write a masked value where it is not masked is
///   refused, whatever the policy says.
pub(crate) fn apply(
    policy: &Policy,
    request: &policy::Request<'_>,
    masking: &Masking,
    decision: &mut policy::Decision,
) {
    if masking.masked_predicate
        && let policy::CommandFacts::Sql { statements } = &decision.facts
        && !statements
            .iter()
            .any(|s| s.has_risk(Risk::MaskedColumnPredicate))
    {
        // Decided again as asked (same search_path), with the risk.
        let risks = [Risk::MaskedColumnPredicate];
        *decision = policy.evaluate(&request.clone().with_risks(&risks));
    }
    if masking.moves_masked && !matches!(decision.effect, Effect::Deny) {
        decision.effect = Effect::Deny;
        decision.rule_id = None;
        decision.reason = "the statement would copy a value of a masked column where it is not \
                           masked (another column, a new table, a function's argument); \
                           refused (fail closed)"
            .to_owned();
    }
}

/// Masks the values an error or notice field may quote, for a statement
/// that reads masked columns; `None` keeps the field.
///
/// The message (`M`) and hint (`H`) keep their words: everything between
/// the first and the last double quote, hexadecimal byte sequences and
/// numbers are masked. The detail (`D`), context (`W`) and internal query
/// (`q`) quote values in too many ways (a failing row, a line of JSON or
/// XML), so they are masked whole. After code the lineage cannot see into,
/// every field is masked whole.
pub(crate) fn mask_error_field(code: u8, text: &str, opaque: bool) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    if opaque {
        return Some("[MASKED:error]".to_owned());
    }
    match code {
        b'M' | b'H' => {
            let out = mask_message(text);
            (out != text).then_some(out)
        }
        b'D' => Some("[MASKED:detail]".to_owned()),
        b'W' => Some("[MASKED:context]".to_owned()),
        b'q' => Some("[MASKED:query]".to_owned()),
        _ => None,
    }
}

fn mask_message(text: &str) -> String {
    let (head, quoted, tail) = match (text.find('"'), text.rfind('"')) {
        (Some(a), Some(b)) if b > a => (
            text.get(..=a).unwrap_or_default(),
            true,
            text.get(b..).unwrap_or_default(),
        ),
        // One quote: from it to the end.
        (Some(a), _) => (text.get(..=a).unwrap_or_default(), true, ""),
        _ => (text, false, ""),
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&mask_numbers(head));
    if quoted {
        out.push('…');
    }
    out.push_str(&mask_numbers(tail));
    out
}

/// Masks runs of digits and `0x…` byte sequences (an out-of-range value,
/// a character code, bytes of an encoding error).
fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut prev_word = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() && !prev_word {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.')
            {
                chars.next();
            }
            out.push('…');
            prev_word = false;
            continue;
        }
        prev_word = c.is_alphanumeric() || c == '_';
        out.push(c);
    }
    out
}

/// State of one COPY's data across its CopyData messages.
#[derive(Debug, Default)]
pub(crate) struct CopyState {
    /// The first message was seen (binary: its header; CSV: the header row).
    started: bool,
}

/// Masks one CopyData message of a COPY TO STDOUT per column; `None` keeps
/// it. Text and CSV messages hold one row each (as PostgreSQL sends them),
/// binary ones one tuple (the first also the file header, the last the
/// trailer).
pub(crate) fn mask_copy(
    masking: &Masking,
    state: &mut CopyState,
    data: &[u8],
) -> Option<(Vec<u8>, u64)> {
    let first = !state.started;
    state.started = true;
    if !masking.columns.any_masked() {
        return None;
    }
    match masking.copy {
        Some(CopyFormat::Text { delimiter }) => {
            Some(mask_text_rows(&masking.columns, delimiter, data))
        }
        Some(CopyFormat::Csv {
            delimiter,
            quote,
            escape,
            header,
        }) => {
            if first && header {
                return None;
            }
            Some(mask_csv_row(
                &masking.columns,
                delimiter,
                quote,
                escape,
                data,
            ))
        }
        Some(CopyFormat::Binary) => Some(mask_binary(&masking.columns, first, data)),
        _ => Some((format!("{MARK}\n").into_bytes(), 1)),
    }
}

fn mask_text_rows(columns: &Lineage, delimiter: u8, data: &[u8]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(data.len());
    let mut masked = 0;
    let mut lines = data.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        if last && line.is_empty() {
            break;
        }
        let fields: Vec<&[u8]> = line.split(|b| *b == delimiter).collect();
        let n = fields.len();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(delimiter);
            }
            if columns.is_masked(i, n) && *f != b"\\N" {
                out.extend_from_slice(MARK.as_bytes());
                masked += 1;
            } else {
                out.extend_from_slice(f);
            }
        }
        if !last {
            out.push(b'\n');
        }
    }
    (out, masked)
}

/// Splits one CSV row into its fields' raw bytes (quotes kept), and the
/// line end.
fn csv_fields(data: &[u8], delimiter: u8, quote: u8, escape: u8) -> (Vec<&[u8]>, &[u8]) {
    let body_end = if data.ends_with(b"\r\n") {
        data.len() - 2
    } else if data.ends_with(b"\n") {
        data.len() - 1
    } else {
        data.len()
    };
    let (body, end) = data.split_at(body_end);
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut in_quotes = false;
    while let Some(&b) = body.get(i) {
        if in_quotes {
            if b == escape && escape != quote && body.get(i + 1).is_some() {
                i += 2;
                continue;
            }
            if b == quote {
                if escape == quote && body.get(i + 1) == Some(&quote) {
                    i += 2;
                    continue;
                }
                in_quotes = false;
            }
        } else if b == quote {
            in_quotes = true;
        } else if b == delimiter {
            fields.push(body.get(start..i).unwrap_or_default());
            start = i + 1;
        }
        i += 1;
    }
    fields.push(body.get(start..).unwrap_or_default());
    (fields, end)
}

fn mask_csv_row(
    columns: &Lineage,
    delimiter: u8,
    quote: u8,
    escape: u8,
    data: &[u8],
) -> (Vec<u8>, u64) {
    let (fields, end) = csv_fields(data, delimiter, quote, escape);
    let n = fields.len();
    let mut out = Vec::with_capacity(data.len());
    let mut masked = 0;
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        // An empty unquoted field is NULL.
        if columns.is_masked(i, n) && !f.is_empty() {
            out.extend_from_slice(MARK.as_bytes());
            masked += 1;
        } else {
            out.extend_from_slice(f);
        }
    }
    out.extend_from_slice(end);
    (out, masked)
}

/// Binary COPY: masked fields become NULL (the only value valid in every
/// type). A message that does not parse is replaced by nothing: the client
/// sees a broken stream, never a value.
fn mask_binary(columns: &Lineage, first: bool, data: &[u8]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(data.len());
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let s = data.get(*pos..pos.checked_add(n)?)?;
        *pos += n;
        Some(s)
    };
    let parsed = (|| -> Option<u64> {
        if first {
            let sig = take(&mut pos, 11)?;
            if sig != b"PGCOPY\n\xff\r\n\0" {
                return None;
            }
            let flags = take(&mut pos, 4)?;
            let ext_len = take(&mut pos, 4)?;
            let n = u32::from_be_bytes(ext_len.try_into().ok()?);
            let ext = take(&mut pos, usize::try_from(n).ok()?)?;
            out.extend_from_slice(sig);
            out.extend_from_slice(flags);
            out.extend_from_slice(ext_len);
            out.extend_from_slice(ext);
        }
        let mut masked = 0;
        while pos < data.len() {
            let count = take(&mut pos, 2)?;
            let n = i16::from_be_bytes(count.try_into().ok()?);
            out.extend_from_slice(count);
            if n < 0 {
                // The trailer.
                continue;
            }
            let n = usize::try_from(n).ok()?;
            for i in 0..n {
                let len = take(&mut pos, 4)?;
                let l = i32::from_be_bytes(len.try_into().ok()?);
                if l < 0 {
                    out.extend_from_slice(len);
                    continue;
                }
                let value = take(&mut pos, usize::try_from(l).ok()?)?;
                if columns.is_masked(i, n) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                    masked += 1;
                } else {
                    out.extend_from_slice(len);
                    out.extend_from_slice(value);
                }
            }
        }
        Some(masked)
    })();
    match parsed {
        Some(masked) => (out, masked),
        None => (Vec::new(), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masking(cols: Vec<bool>, copy: CopyFormat) -> Masking {
        Masking {
            columns: Lineage::Columns(cols),
            copy: Some(copy),
            ..Masking::clean()
        }
    }

    #[test]
    fn error_messages_keep_their_words_and_lose_their_values() {
        let m = mask_error_field(
            b'M',
            "invalid input syntax for type integer: \"pk_demo_4f9a\"",
            false,
        );
        assert_eq!(
            m.as_deref(),
            Some("invalid input syntax for type integer: \"…\"")
        );
        // A value holding quotes is masked from the first quote to the last.
        let m = mask_error_field(b'M', "x: \"a\"pk_secret\"", false).unwrap();
        assert!(!m.contains("pk_secret"), "{m}");
        let m = mask_error_field(b'M', "requested character too large: 2000112", false).unwrap();
        assert!(!m.contains("2000112"), "{m}");
        assert_eq!(mask_error_field(b'M', "division by zero", false), None);
        assert_eq!(
            mask_error_field(b'D', "Key (api_key)=(pk) exists.", false).as_deref(),
            Some("[MASKED:detail]")
        );
        assert_eq!(
            mask_error_field(b'M', "anything", true).as_deref(),
            Some("[MASKED:error]")
        );
    }

    #[test]
    fn text_copy_rows_mask_their_masked_columns_only() {
        let m = masking(
            vec![false, true, false],
            CopyFormat::Text { delimiter: b'\t' },
        );
        let mut st = CopyState::default();
        let (out, n) = mask_copy(&m, &mut st, b"1\tpk_x\t\\N\n").unwrap();
        assert_eq!(out, b"1\t[MASKED:field]\t\\N\n");
        assert_eq!(n, 1);
        // A NULL stays NULL; a row of another width is masked whole.
        let (out, _) = mask_copy(&m, &mut st, b"1\t\\N\tz\n").unwrap();
        assert_eq!(out, b"1\t\\N\tz\n");
        let (out, _) = mask_copy(&m, &mut st, b"1\tpk\n").unwrap();
        assert_eq!(out, b"[MASKED:field]\t[MASKED:field]\n");
    }

    #[test]
    fn csv_rows_respect_quotes_and_the_header() {
        let m = masking(
            vec![false, true],
            CopyFormat::Csv {
                delimiter: b',',
                quote: b'"',
                escape: b'"',
                header: true,
            },
        );
        let mut st = CopyState::default();
        assert!(mask_copy(&m, &mut st, b"id,api_key\n").is_none());
        let (out, _) = mask_copy(&m, &mut st, b"\"a,\"\"b\",\"pk,\n\"\"x\"\n").unwrap();
        assert_eq!(out, b"\"a,\"\"b\",[MASKED:field]\n");
        let (out, _) = mask_copy(&m, &mut st, b"1,\n").unwrap();
        assert_eq!(out, b"1,\n");
    }

    #[test]
    fn binary_tuples_get_null_for_masked_fields_and_bad_input_gets_nothing() {
        let m = masking(vec![false, true], CopyFormat::Binary);
        let mut st = CopyState::default();
        let mut msg = b"PGCOPY\n\xff\r\n\0".to_vec();
        msg.extend_from_slice(&0u32.to_be_bytes());
        msg.extend_from_slice(&0u32.to_be_bytes());
        msg.extend_from_slice(&2i16.to_be_bytes());
        msg.extend_from_slice(&4i32.to_be_bytes());
        msg.extend_from_slice(&7i32.to_be_bytes());
        msg.extend_from_slice(&2i32.to_be_bytes());
        msg.extend_from_slice(b"pk");
        let (out, n) = mask_copy(&m, &mut st, &msg).unwrap();
        assert_eq!(n, 1);
        assert!(!out.windows(2).any(|w| w == b"pk"));
        assert!(out.ends_with(&(-1i32).to_be_bytes()));
        let (out, _) = mask_copy(&m, &mut st, &(-1i16).to_be_bytes()).unwrap();
        assert_eq!(out, (-1i16).to_be_bytes());
        let (out, _) = mask_copy(&m, &mut st, &[0, 2, 0, 0, 0, 9, b'p']).unwrap();
        assert!(out.is_empty());
    }
}
