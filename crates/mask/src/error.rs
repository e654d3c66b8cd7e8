//! Errors.

/// Why a [`Masker`](crate::Masker) could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A rule's pattern does not compile.
    #[error("pattern of rule `{id}` is invalid: {message}")]
    Pattern {
        /// The rule's id.
        id: String,
        /// What is wrong with it.
        message: String,
    },
    /// Two detectors or rules share an id.
    #[error("duplicate detector id `{id}`")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// A rule id is empty or contains characters other than ASCII letters,
    /// digits, `-`, `_`, `.` and `:`.
    #[error("invalid detector id `{id}`: use ASCII letters, digits, '-', '_', '.' or ':'")]
    InvalidId {
        /// The id.
        id: String,
    },
    /// A detector id named in the configuration is not in the catalogue.
    #[error("unknown detector `{id}`")]
    UnknownDetector {
        /// The id.
        id: String,
    },
    /// A rule has an empty keyword.
    #[error("rule `{id}` has an empty keyword")]
    EmptyKeyword {
        /// The rule's id.
        id: String,
    },
    /// A maximum match length is zero or above the masker's limit.
    #[error("maximum match length {value} of `{id}` is out of range 1..={limit}")]
    MaxLen {
        /// The rule's id (or `max_match_len` for the masker's own limit).
        id: String,
        /// The length asked for.
        value: usize,
        /// The largest allowed.
        limit: usize,
    },
    /// The combined automata could not be built (too large).
    #[error("cannot build the matching automata: {message}")]
    Automaton {
        /// What failed.
        message: String,
    },
}
