//! The keyword-level classifier for statements the parser rejected.
//!
//! It never decides that a statement is harmless: it names the statement's
//! leading kind so rules can match it, and raises every risk it can see in the
//! tokens. The policy's `on_unparsed` then sets a floor under the decision.

use std::collections::BTreeSet;

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::Analyzer;
use crate::facts::{Risk, StatementFacts, StatementKind};

/// Facts for a statement nothing could be read of.
pub(crate) fn unparsed(msg: String) -> StatementFacts {
    StatementFacts {
        kind: StatementKind::Other,
        nested_kinds: Vec::new(),
        unparsed: true,
        parse_error: Some(msg),
        reads: Vec::new(),
        writes: Vec::new(),
        columns: Vec::new(),
        functions: Vec::new(),
        risks: vec![Risk::OpaqueCode],
        parameters: Vec::new(),
    }
}

/// Classifies an unparsed statement from its tokens.
pub(crate) fn classify(
    analyzer: &Analyzer,
    tokens: &[TokenWithSpan],
    msg: String,
) -> StatementFacts {
    let sig: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    // Upper-cased unquoted words, in order (quoted identifiers become "").
    let words: Vec<String> = sig
        .iter()
        .map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            _ => String::new(),
        })
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let mut risks = BTreeSet::new();
    let mut parameters = BTreeSet::new();
    let mut table_read: Option<String> = None;

    // Skip `CREATE OR REPLACE`, `CREATE TEMP`, … to the object type.
    let after_create = |start: usize| {
        let mut i = start;
        while matches!(
            w(i),
            "OR" | "REPLACE"
                | "TEMP"
                | "TEMPORARY"
                | "UNLOGGED"
                | "GLOBAL"
                | "LOCAL"
                | "TRUSTED"
                | "PROCEDURAL"
                | "CONSTRAINT"
                | "DEFAULT"
                | "UNIQUE"
                | "MATERIALIZED"
                | "RECURSIVE"
        ) {
            i += 1;
        }
        w(i).to_owned()
    };
    let first = if matches!(sig.first(), Some(Token::LParen)) {
        "SELECT"
    } else {
        w(0)
    };
    let kind = match first {
        "SELECT" | "WITH" | "VALUES" => StatementKind::Select,
        "TABLE" => {
            // `TABLE name` reads the whole table.
            if let Some(Token::Word(word)) = sig.get(1) {
                let mut parts = vec![fold(&word.value, word.quote_style)];
                if let (Some(Token::Period), Some(Token::Word(w2))) = (sig.get(2), sig.get(3)) {
                    parts.push(fold(&w2.value, w2.quote_style));
                }
                table_read = Some(match parts.as_slice() {
                    [one] => format!("{}.{one}", analyzer.default_schema()),
                    _ => parts.join("."),
                });
            }
            StatementKind::Select
        }
        "INSERT" => StatementKind::Insert,
        "UPDATE" => StatementKind::Update,
        "DELETE" => StatementKind::Delete,
        "MERGE" => StatementKind::Merge,
        "TRUNCATE" => StatementKind::Truncate,
        "COPY" => StatementKind::Copy,
        "DO" => {
            risks.insert(Risk::OpaqueCode);
            StatementKind::Do
        }
        "CREATE" => match after_create(1).as_str() {
            "FUNCTION" | "PROCEDURE" | "AGGREGATE" | "LANGUAGE" | "RULE" | "TRIGGER" | "EVENT"
            | "EXTENSION" | "CAST" | "OPERATOR" => {
                risks.insert(Risk::OpaqueCode);
                if matches!(
                    after_create(1).as_str(),
                    "FUNCTION" | "PROCEDURE" | "AGGREGATE"
                ) {
                    StatementKind::FunctionDefinition
                } else {
                    StatementKind::Create
                }
            }
            "ROLE" | "USER" | "GROUP" => {
                risks.insert(Risk::ChangesRoleOrPrivilege);
                StatementKind::RoleChange
            }
            _ => StatementKind::Create,
        },
        "ALTER" => match w(1) {
            "SYSTEM" => {
                risks.insert(Risk::SetsUnsafeParameter);
                if let Some(p) = words.get(3) {
                    parameters.insert(p.to_ascii_lowercase());
                }
                StatementKind::Alter
            }
            "DEFAULT" => {
                risks.insert(Risk::ChangesRoleOrPrivilege);
                StatementKind::Grant
            }
            "ROLE" | "USER" | "GROUP" => {
                risks.insert(Risk::ChangesRoleOrPrivilege);
                StatementKind::RoleChange
            }
            "FUNCTION" | "PROCEDURE" | "ROUTINE" | "EXTENSION" | "LANGUAGE" => {
                risks.insert(Risk::OpaqueCode);
                StatementKind::Alter
            }
            _ => StatementKind::Alter,
        },
        "DROP" => match w(1) {
            "ROLE" | "USER" | "GROUP" | "OWNED" => {
                risks.insert(Risk::ChangesRoleOrPrivilege);
                StatementKind::RoleChange
            }
            _ => StatementKind::Drop,
        },
        "REASSIGN" => {
            risks.insert(Risk::ChangesRoleOrPrivilege);
            StatementKind::RoleChange
        }
        "GRANT" => {
            risks.insert(Risk::ChangesRoleOrPrivilege);
            StatementKind::Grant
        }
        "REVOKE" => {
            risks.insert(Risk::ChangesRoleOrPrivilege);
            StatementKind::Revoke
        }
        "SET" | "RESET" => {
            let mut i = 1;
            while matches!(w(i), "SESSION" | "LOCAL") && !matches!(w(i + 1), "" | "TO" | "=") {
                i += 1;
            }
            let param = match (w(i), w(i + 1)) {
                ("SESSION", "AUTHORIZATION") => "session_authorization".to_owned(),
                ("TIME", "ZONE") => "timezone".to_owned(),
                ("NAMES", _) => "client_encoding".to_owned(),
                _ => match sig.get(i) {
                    Some(Token::Word(word)) => fold(&word.value, word.quote_style),
                    _ => String::new(),
                },
            };
            if param == "role" || param == "session_authorization" {
                risks.insert(Risk::ChangesRoleOrPrivilege);
            }
            if analyzer.is_unsafe_parameter(&param) || param == "all" {
                risks.insert(Risk::SetsUnsafeParameter);
            }
            if !param.is_empty() {
                parameters.insert(param);
            }
            if first == "SET" {
                StatementKind::Set
            } else {
                StatementKind::Reset
            }
        }
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE" => {
            StatementKind::Transaction
        }
        "PREPARE" if w(1) == "TRANSACTION" => StatementKind::Transaction,
        "CALL" => StatementKind::Call,
        "EXPLAIN" => StatementKind::Explain,
        "PREPARE" => StatementKind::Prepare,
        "EXECUTE" => {
            risks.insert(Risk::OpaqueCode);
            StatementKind::Execute
        }
        "VACUUM" | "ANALYZE" | "ANALYSE" | "CLUSTER" | "REINDEX" | "CHECKPOINT" | "REFRESH" => {
            StatementKind::Maintenance
        }
        "SHOW" | "LISTEN" | "UNLISTEN" | "NOTIFY" | "FETCH" | "MOVE" | "CLOSE" | "DISCARD"
        | "DEALLOCATE" | "LOCK" => StatementKind::Other,
        _ => {
            // When in doubt, the statement may run anything.
            risks.insert(Risk::OpaqueCode);
            StatementKind::Other
        }
    };

    // Risks visible anywhere in the tokens, whatever the leading kind.
    let mut functions = BTreeSet::new();
    for (i, t) in sig.iter().enumerate() {
        match t {
            Token::Word(word) => {
                let upper = words.get(i).map(String::as_str).unwrap_or("");
                if matches!(sig.get(i + 1), Some(Token::LParen)) {
                    let name = fold(&word.value, word.quote_style);
                    if analyzer.is_dangerous(&name) {
                        risks.insert(Risk::DangerousFunction);
                    }
                    if word.quote_style.is_some() || !is_reserved_like(upper) {
                        functions.insert(name);
                    }
                }
                match upper {
                    "PROGRAM" if kind == StatementKind::Copy => {
                        risks.insert(Risk::CopyProgram);
                    }
                    "EXECUTE" if i > 0 => {
                        risks.insert(Risk::OpaqueCode);
                    }
                    "DO" if i > 0
                        && matches!(sig.get(i + 1), Some(Token::DollarQuotedString(_))) =>
                    {
                        risks.insert(Risk::OpaqueCode);
                    }
                    _ => {}
                }
                if kind == StatementKind::Select
                    && matches!(upper, "INSERT" | "UPDATE" | "DELETE" | "MERGE")
                {
                    // Data-modifying CTE in a statement we could not parse.
                    risks.insert(Risk::OpaqueCode);
                }
            }
            Token::DollarQuotedString(_)
            | Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
                if matches!(
                    kind,
                    StatementKind::Do | StatementKind::FunctionDefinition | StatementKind::Create
                ) =>
            {
                if matches!(t, Token::DollarQuotedString(_)) {
                    risks.insert(Risk::OpaqueCode);
                }
                let body = match t {
                    Token::DollarQuotedString(s) => s.value.as_str(),
                    Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s) => s.as_str(),
                    _ => "",
                };
                if hidden_dangerous_call(analyzer, body, 1) {
                    risks.insert(Risk::DangerousFunction);
                }
            }
            _ => {}
        }
    }
    if kind == StatementKind::Copy && words.iter().any(|w| w == "PROGRAM") {
        risks.insert(Risk::CopyProgram);
    }

    StatementFacts {
        kind,
        nested_kinds: Vec::new(),
        unparsed: true,
        parse_error: Some(msg),
        reads: table_read.into_iter().collect(),
        writes: Vec::new(),
        columns: Vec::new(),
        functions: functions.into_iter().collect(),
        risks: risks.into_iter().collect(),
        parameters: parameters.into_iter().collect(),
    }
}

/// Keywords that are followed by `(` without being function calls.
fn is_reserved_like(upper: &str) -> bool {
    matches!(
        upper,
        "VALUES"
            | "IN"
            | "AS"
            | "EXISTS"
            | "ON"
            | "USING"
            | "INTO"
            | "TABLE"
            | "SELECT"
            | "WHERE"
            | "AND"
            | "OR"
            | "NOT"
            | "ANY"
            | "ALL"
            | "FROM"
            | "OVER"
            | "FILTER"
            | "WITH"
            | "RETURNS"
    )
}

/// PostgreSQL identifier folding: unquoted names are lower-cased, quoted names kept.
pub(crate) fn fold(value: &str, quote_style: Option<char>) -> String {
    if quote_style.is_some() {
        value.to_owned()
    } else {
        value.to_ascii_lowercase()
    }
}

/// Scans code hidden in strings (a `DO` body, a function body, the string
/// of a dynamic `EXECUTE`) for calls of dangerous functions, up to a few
/// levels of strings within strings. Raises risk only; never lowers it.
pub(crate) fn hidden_dangerous_call(analyzer: &Analyzer, text: &str, depth: usize) -> bool {
    if depth > 3 {
        return false;
    }
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let mut tokens = Vec::new();
    // A body that does not tokenize is scanned as far as it went.
    let _ = sqlparser::tokenizer::Tokenizer::new(&dialect, text)
        .tokenize_with_location_into_buf(&mut tokens);
    let sig: Vec<&Token> = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    for (i, t) in sig.iter().enumerate() {
        match t {
            Token::Word(w)
                if matches!(sig.get(i + 1), Some(Token::LParen))
                    && analyzer.is_dangerous(&fold(&w.value, w.quote_style)) =>
            {
                return true;
            }
            Token::DollarQuotedString(s)
                if hidden_dangerous_call(analyzer, &s.value, depth + 1) =>
            {
                return true;
            }
            Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s)
                if s.contains('(') && hidden_dangerous_call(analyzer, s, depth + 1) =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}
