//! Errors of loading a policy.

/// An error in a policy document, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The document is not valid TOML, does not have the policy's shape, or
    /// breaks a rule of the policy model (unknown kind, bad glob, duplicate id, …).
    #[error("{}", located(*.line, *.column, message))]
    Invalid {
        /// What is wrong.
        message: String,
        /// The line (1-based) of the offending part, when known.
        line: Option<usize>,
        /// The column (1-based, in characters) of the offending part, when known.
        column: Option<usize>,
    },
}

fn located(line: Option<usize>, column: Option<usize>, message: &str) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: {message}"),
        _ => message.to_owned(),
    }
}

impl PolicyError {
    /// The error at byte offset `offset` of `source`.
    pub(crate) fn at(source: &str, offset: Option<usize>, message: impl Into<String>) -> Self {
        let (line, column) = match offset {
            Some(o) => {
                let (l, c) = line_col(source, o);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        Self::Invalid {
            message: message.into(),
            line,
            column,
        }
    }

    /// The line and column, when known.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            Self::Invalid {
                line: Some(l),
                column: Some(c),
                ..
            } => Some((*l, *c)),
            Self::Invalid { .. } => None,
        }
    }
}

/// 1-based line and column (in characters) of byte offset `offset`.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let before = source.get(..end).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}
