//! Streaming secret and PII masker for Portcullis.
//!
//! `portcullis-mask` finds credentials (cloud keys, tokens, private keys,
//! connection strings with passwords, ...) and personal data (email
//! addresses, card numbers, IBANs, phone numbers, ...) in bytes and replaces
//! them. It is synchronous and sans-IO, never depends on an async runtime,
//! and can be embedded anywhere: the Portcullis gateway runs it on every
//! byte a backend returns.
//!
//! * A built-in catalogue of detectors ([`catalogue`]), plus user rules
//!   ([`Rule`]: regex or literal) and field-name rules for structured values
//!   ([`FieldRule`]).
//! * Masking styles per detector or rule ([`Style`]): `[MASKED:<id>]`,
//!   partial, same-length, or a keyed hash (HMAC-SHA-256) so equal values
//!   mask equally.
//! * One Aho-Corasick automaton over all keywords picks candidate windows;
//!   only there do the detectors' lazy DFAs run. Detectors without keywords
//!   share one DFA pass of their own.
//! * Streaming ([`StreamMasker`]) with output byte-identical to whole-buffer
//!   masking for every chunking, holding back at most about the longest match
//!   length ([`Masker::holdback`]); matches are capped at `max_match_len`
//!   (default [`DEFAULT_MAX_MATCH_LEN`], 4 KiB) and masked anyway when they
//!   reach it.
//! * Every call reports its findings (detector id, category, byte span, never
//!   the value). Any input (invalid UTF-8, NUL bytes, huge buffers) is fine:
//!   masking never panics and its memory is bounded by a small multiple of
//!   the input (whole buffer) or of the holdback (stream).
//!
//! Overlapping matches are resolved deterministically, on the parts they
//! mask: earliest start, then catalogue order (built-in detectors first,
//! specific before generic, then user rules in the order added), then
//! longest.
//!
//! A value longer than a detector's cap is masked up to the cap and then up
//! to the next whitespace, in cap-sized pieces, so its tail does not leak. A
//! `[MASKED:<id>]` token of the masker's own detectors is never masked again,
//! so masking masked output changes nothing.
//!
//! # Whole buffer
//!
//! ```
//! use portcullis_mask::{Masker, Rule};
//!
//! let masker = Masker::builder()
//!     .rule(Rule::regex("order-ref", r"\bORD-(?P<m>[0-9]{8})\b").keywords(["ord-"]))
//!     .build()?;
//! let masked = masker.mask(b"status of ORD-12345678: shipped");
//! assert_eq!(masked.output(), b"status of ORD-[MASKED:order-ref]: shipped");
//! for f in masked.findings() {
//!     assert_eq!((f.detector(), f.span()), ("order-ref", 14..22));
//! }
//! # Ok::<(), portcullis_mask::BuildError>(())
//! ```
//!
//! # Streaming
//!
//! ```
//! use portcullis_mask::{Masker, Rule};
//!
//! let masker = Masker::builder()
//!     .rule(Rule::regex("order-ref", r"\bORD-(?P<m>[0-9]{8})\b").keywords(["ord-"]))
//!     .build()?;
//! let input = b"status of ORD-12345678: shipped";
//! let mut stream = masker.stream();
//! let mut out = Vec::new();
//! let mut count = 0;
//! for chunk in input.chunks(5) {
//!     count += stream.push(chunk, &mut out).len();
//! }
//! count += stream.finish(&mut out).len();
//! assert_eq!(out, masker.mask(input).output());
//! assert_eq!(count, 1);
//! # Ok::<(), portcullis_mask::BuildError>(())
//! ```
//!
//! # Fields
//!
//! ```
//! use portcullis_mask::{FieldRule, Masker, Style};
//!
//! let masker = Masker::builder()
//!     .field_rule(FieldRule::new("*_token"))
//!     .field_rule(FieldRule::new("ssn").style(Style::keyed_hash(b"embedder key")))
//!     .build()?;
//! assert_eq!(masker.mask_field("refresh_token", b"x").output(), b"[MASKED:field:*_token]");
//! let a = masker.mask_field("SSN", b"078-05-1120");
//! let b = masker.mask_field("ssn", b"078-05-1120");
//! assert_eq!(a.output(), b.output()); // equal values mask equally
//! assert!(a.output().starts_with(b"[HASH:"));
//! # Ok::<(), portcullis_mask::BuildError>(())
//! ```
//!
//! # Features
//!
//! None: the crate depends only on `aho-corasick`, `regex-automata`,
//! `hmac`/`sha2`, `thiserror`, and for crypto-address checksums `bs58`,
//! `bech32` and `sha3`.
#![deny(missing_docs)]

mod catalogue;
mod engine;
mod error;
mod masker;
mod rule;
mod spec;
mod style;
mod validate;

pub use error::BuildError;
pub use masker::{
    DEFAULT_MAX_MATCH_LEN, DetectorInfo, Finding, Masked, Masker, MaskerBuilder, StreamMasker,
    catalogue,
};
pub use rule::{FieldPattern, FieldRule, Rule};
pub use spec::{Category, Validator};
pub use style::Style;
