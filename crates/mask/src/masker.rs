//! The public masking API: `Masker`, its builder, `StreamMasker`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use crate::catalogue::BUILTIN;
use crate::engine::{Core, Engine, Found, Release, Source};
use crate::error::BuildError;
use crate::rule::{FieldRule, Rule};
use crate::spec::{Category, DetectorSpec, Validator};
use crate::style::Style;

/// The default cap on the length of one match, in bytes (4 KiB).
pub const DEFAULT_MAX_MATCH_LEN: usize = 4096;

/// The largest `max_match_len` a masker accepts (1 MiB).
const MAX_MATCH_LEN_LIMIT: usize = 1 << 20;

/// Whole-buffer masking advances the core this many bytes at a time, which
/// bounds its pending state without changing its output.
const WHOLE_STEP: usize = 256 << 10;

/// A stream's input is fed to the core at most this many bytes at a time,
/// which bounds a stream's buffer to the holdback plus this.
const STREAM_PIECE: usize = 64 << 10;

/// A built-in detector, as listed by [`catalogue`].
#[derive(Debug, Clone, Copy)]
pub struct DetectorInfo {
    spec: &'static DetectorSpec,
}

impl DetectorInfo {
    /// The stable id (`aws-access-key-id`), used in findings and in
    /// `[MASKED:<id>]`.
    pub fn id(&self) -> &'static str {
        self.spec.id
    }

    /// Secret or personal data.
    pub fn category(&self) -> Category {
        self.spec.category
    }

    /// What it finds, for humans.
    pub fn description(&self) -> &'static str {
        self.spec.description
    }

    /// Prefilter keywords (lowercase ASCII; empty for keyword-less
    /// detectors).
    pub fn keywords(&self) -> &'static [&'static str] {
        self.spec.keywords
    }

    /// The pattern.
    pub fn pattern(&self) -> &'static str {
        self.spec.pattern
    }

    /// Checks a candidate must pass.
    pub fn validators(&self) -> &'static [Validator] {
        self.spec.validators
    }

    /// The longest match in bytes (before the masker's `max_match_len` cap).
    pub fn max_len(&self) -> usize {
        self.spec.max_len
    }
}

/// The built-in detector catalogue, in catalogue order (the order that
/// breaks ties between overlapping matches).
///
/// # Example
///
/// ```
/// use portcullis_mask::{Category, catalogue};
///
/// for d in catalogue() {
///     assert!(!d.id().is_empty());
///     let _ = (d.category() == Category::Pii, d.validators());
/// }
/// ```
pub fn catalogue() -> impl ExactSizeIterator<Item = DetectorInfo> + Clone {
    BUILTIN.iter().map(|spec| DetectorInfo { spec })
}

/// One value that was masked: which detector found it, where, and what kind
/// it is. Never the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding<'m> {
    detector: &'m str,
    category: Category,
    span: Range<usize>,
}

impl<'m> Finding<'m> {
    /// The id of the detector or rule that found the value.
    pub fn detector(&self) -> &'m str {
        self.detector
    }

    /// Secret or personal data.
    pub fn category(&self) -> Category {
        self.category
    }

    /// The byte range of the masked value in the input (for a stream: offsets
    /// from the start of the stream).
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }
}

/// The result of masking one buffer: the output, borrowed from the input when
/// nothing was masked, and the findings in input order.
#[derive(Debug, Clone)]
pub struct Masked<'a> {
    output: Cow<'a, [u8]>,
    findings: Vec<Finding<'a>>,
}

impl<'a> Masked<'a> {
    /// The masked bytes.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// The masked bytes, borrowed from the input if nothing changed.
    pub fn into_output(self) -> Cow<'a, [u8]> {
        self.output
    }

    /// What was masked, in input order.
    pub fn findings(&self) -> &[Finding<'a>] {
        &self.findings
    }

    /// Whether anything was masked.
    pub fn is_masked(&self) -> bool {
        !self.findings.is_empty()
    }
}

/// Builds a [`Masker`]; see [`Masker::builder`].
#[derive(Debug, Clone)]
pub struct MaskerBuilder {
    default_catalogue: bool,
    disabled: Vec<String>,
    rules: Vec<Rule>,
    field_rules: Vec<FieldRule>,
    style: Style,
    detector_styles: Vec<(String, Style)>,
    max_match_len: usize,
}

impl MaskerBuilder {
    /// Whether the built-in catalogue is used (default: yes).
    pub fn default_catalogue(mut self, yes: bool) -> MaskerBuilder {
        self.default_catalogue = yes;
        self
    }

    /// Leaves out the built-in detector `id` (an unknown id fails `build`).
    pub fn disable(mut self, id: impl Into<String>) -> MaskerBuilder {
        self.disabled.push(id.into());
        self
    }

    /// Adds a user rule; it ranks after the built-in detectors and the rules
    /// added before it when matches overlap.
    pub fn rule(mut self, rule: Rule) -> MaskerBuilder {
        self.rules.push(rule);
        self
    }

    /// Adds a field-name rule for [`Masker::mask_field`].
    pub fn field_rule(mut self, rule: FieldRule) -> MaskerBuilder {
        self.field_rules.push(rule);
        self
    }

    /// The style of every detector and rule that does not set its own
    /// (default: [`Style::redact`]).
    pub fn style(mut self, style: Style) -> MaskerBuilder {
        self.style = style;
        self
    }

    /// The style of the built-in detector `id` (an unknown id fails `build`).
    pub fn detector_style(mut self, id: impl Into<String>, style: Style) -> MaskerBuilder {
        self.detector_styles.push((id.into(), style));
        self
    }

    /// Caps the length of one match (default [`DEFAULT_MAX_MATCH_LEN`],
    /// at most 1 MiB). Detectors whose matches could be longer are cut at the
    /// cap and masked anyway. A stream holds back about this many bytes.
    pub fn max_match_len(mut self, bytes: usize) -> MaskerBuilder {
        self.max_match_len = bytes;
        self
    }

    /// Compiles the detectors.
    ///
    /// # Errors
    ///
    /// A pattern that does not compile, a duplicate or malformed id, an
    /// unknown detector id, an empty keyword or an out-of-range length.
    pub fn build(self) -> Result<Masker, BuildError> {
        let cap = self.max_match_len;
        if cap == 0 || cap > MAX_MATCH_LEN_LIMIT {
            return Err(BuildError::MaxLen {
                id: "max_match_len".into(),
                value: cap,
                limit: MAX_MATCH_LEN_LIMIT,
            });
        }
        let builtin_ids: HashSet<&str> = BUILTIN.iter().map(|d| d.id).collect();
        for id in self
            .disabled
            .iter()
            .chain(self.detector_styles.iter().map(|(id, _)| id))
        {
            if !builtin_ids.contains(id.as_str()) {
                return Err(BuildError::UnknownDetector { id: id.clone() });
            }
        }
        let mut sources = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        if self.default_catalogue {
            for spec in BUILTIN {
                if self.disabled.iter().any(|d| d == spec.id) {
                    continue;
                }
                let style = self
                    .detector_styles
                    .iter()
                    .rev()
                    .find(|(id, _)| id == spec.id)
                    .map_or_else(|| self.style.clone(), |(_, s)| s.clone());
                if !seen.insert(spec.id.to_string()) {
                    return Err(BuildError::DuplicateId { id: spec.id.into() });
                }
                sources.push(Source {
                    id: Cow::Borrowed(spec.id),
                    category: spec.category,
                    keywords: spec.keywords.iter().map(|k| Cow::Borrowed(*k)).collect(),
                    pattern: Cow::Borrowed(spec.pattern),
                    validators: Cow::Borrowed(spec.validators),
                    max_len: spec.max_len.clamp(1, cap),
                    style,
                });
            }
        }
        for rule in self.rules {
            if !valid_id(&rule.id) {
                return Err(BuildError::InvalidId { id: rule.id });
            }
            if !seen.insert(rule.id.clone()) {
                return Err(BuildError::DuplicateId { id: rule.id });
            }
            let max_len = rule.max_len.unwrap_or(cap);
            if max_len == 0 || max_len > cap {
                return Err(BuildError::MaxLen {
                    id: rule.id,
                    value: max_len,
                    limit: cap,
                });
            }
            sources.push(Source {
                id: Cow::Owned(rule.id),
                category: rule.category,
                keywords: rule.keywords.into_iter().map(Cow::Owned).collect(),
                pattern: Cow::Owned(rule.pattern),
                validators: Cow::Borrowed(&[]),
                max_len,
                style: rule.style.unwrap_or_else(|| self.style.clone()),
            });
        }
        let field_rules: Vec<(FieldRule, Style)> = self
            .field_rules
            .into_iter()
            .map(|r| {
                let style = r.style.clone().unwrap_or_else(|| self.style.clone());
                (r, style)
            })
            .collect();
        let field_ids: Vec<&str> = field_rules.iter().map(|(r, _)| r.id.as_str()).collect();
        let engine = Engine::new(sources, &field_ids)?;
        Ok(Masker {
            engine,
            field_rules,
        })
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A compiled set of detectors, built once and shared across threads
/// (`Masker: Send + Sync`); each call or stream keeps its own small state.
///
/// # Example
///
/// ```
/// use portcullis_mask::{Masker, Rule};
///
/// let masker = Masker::builder()
///     .rule(Rule::literal("demo-token", "tok_4f1c2a9b"))
///     .build()?;
/// let masked = masker.mask(b"auth tok_4f1c2a9b ok");
/// assert_eq!(masked.output(), b"auth [MASKED:demo-token] ok");
/// assert_eq!(masked.findings()[0].detector(), "demo-token");
/// assert_eq!(masked.findings()[0].span(), 5..17);
/// # Ok::<(), portcullis_mask::BuildError>(())
/// ```
pub struct Masker {
    engine: Engine,
    field_rules: Vec<(FieldRule, Style)>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("engine", &self.engine)
            .field("field_rules", &self.field_rules.len())
            .finish()
    }
}

impl Masker {
    /// A builder with the default catalogue, the redact style and a 4 KiB
    /// match cap.
    pub fn builder() -> MaskerBuilder {
        MaskerBuilder {
            default_catalogue: true,
            disabled: Vec::new(),
            rules: Vec::new(),
            field_rules: Vec::new(),
            style: Style::redact(),
            detector_styles: Vec::new(),
            max_match_len: DEFAULT_MAX_MATCH_LEN,
        }
    }

    /// The ids of the detectors this masker runs (built-in ones first, then
    /// user rules), in tie-breaking order.
    pub fn detector_ids(&self) -> impl ExactSizeIterator<Item = &str> {
        self.engine.dets.iter().map(|d| d.id.as_ref())
    }

    /// How many bytes of input a [`StreamMasker`] holds back at most beyond
    /// the chunk it is processing: the largest match length plus look-behind
    /// context.
    pub fn holdback(&self) -> usize {
        self.engine.holdback()
    }

    /// Masks `input` whole.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis_mask::{Masker, Rule};
    ///
    /// let masker = Masker::builder()
    ///     .rule(Rule::regex("ticket", r"\bT-\d{4}\b").keywords(["t-"]))
    ///     .build()?;
    /// let clean = masker.mask(b"nothing here");
    /// assert!(!clean.is_masked());
    /// assert!(matches!(clean.into_output(), std::borrow::Cow::Borrowed(_)));
    /// assert_eq!(masker.mask(b"see T-1234.").output(), b"see [MASKED:ticket].");
    /// # Ok::<(), portcullis_mask::BuildError>(())
    /// ```
    pub fn mask<'a>(&'a self, input: &'a [u8]) -> Masked<'a> {
        let mut core = Core::new(&self.engine);
        let mut out = Vec::new();
        let mut found = Vec::new();
        self.engine.with_scratch(|scratch| {
            let mut end = 0;
            loop {
                end = (end + WHOLE_STEP).min(input.len());
                let eof = end == input.len();
                let hay = input.get(..end).unwrap_or_default();
                core.advance(
                    &self.engine,
                    scratch,
                    hay,
                    0,
                    eof,
                    Release::OnMask,
                    &mut out,
                    &mut found,
                );
                if eof {
                    break;
                }
            }
        });
        if found.is_empty() {
            return Masked {
                output: Cow::Borrowed(input),
                findings: Vec::new(),
            };
        }
        out.extend_from_slice(input.get(core.released..).unwrap_or_default());
        Masked {
            output: Cow::Owned(out),
            findings: self.findings(found),
        }
    }

    /// Masks the value of a structured field (a column, a JSON key, a
    /// header): if a field rule matches `field_name`, the whole value is
    /// replaced; otherwise the detectors run on it as in [`Masker::mask`].
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis_mask::{FieldRule, Masker, Style};
    ///
    /// let masker = Masker::builder()
    ///     .field_rule(FieldRule::new("password"))
    ///     .field_rule(FieldRule::new("*_token").style(Style::partial(2)))
    ///     .build()?;
    /// assert_eq!(masker.mask_field("PASSWORD", b"hunter2").output(), b"[MASKED:field:password]");
    /// assert_eq!(masker.mask_field("api_token", b"abcdef").output(), b"****ef");
    /// assert_eq!(masker.mask_field("name", b"Ada").output(), b"Ada");
    /// # Ok::<(), portcullis_mask::BuildError>(())
    /// ```
    pub fn mask_field<'a>(&'a self, field_name: &str, value: &'a [u8]) -> Masked<'a> {
        for (rule, style) in &self.field_rules {
            if rule.matches(field_name) {
                let mut out = Vec::with_capacity(value.len().min(64) + 16);
                style.render(&rule.id, value, &mut out);
                return Masked {
                    output: Cow::Owned(out),
                    findings: vec![Finding {
                        detector: &rule.id,
                        category: rule.category,
                        span: 0..value.len(),
                    }],
                };
            }
        }
        self.mask(value)
    }

    /// Starts masking a stream.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis_mask::{Masker, Rule};
    ///
    /// let masker = Masker::builder()
    ///     .rule(Rule::literal("demo-token", "tok_4f1c2a9b"))
    ///     .build()?;
    /// let mut stream = masker.stream();
    /// let mut out = Vec::new();
    /// let mut found = Vec::new();
    /// for chunk in [&b"auth tok_4f"[..], b"1c2a9b", b" ok"] {
    ///     found.extend(stream.push(chunk, &mut out).iter().map(|f| f.span()));
    /// }
    /// found.extend(stream.finish(&mut out).iter().map(|f| f.span()));
    /// assert_eq!(out, b"auth [MASKED:demo-token] ok");
    /// assert_eq!(found, [5..17]);
    /// # Ok::<(), portcullis_mask::BuildError>(())
    /// ```
    pub fn stream(&self) -> StreamMasker<'_> {
        StreamMasker {
            masker: self,
            core: Core::new(&self.engine),
            buf: Vec::new(),
            base: 0,
            found: Vec::new(),
            findings: Vec::new(),
        }
    }

    fn finding(&self, f: &Found) -> Option<Finding<'_>> {
        let det = self.engine.dets.get(f.det as usize)?;
        Some(Finding {
            detector: &det.id,
            category: det.category,
            span: f.span.clone(),
        })
    }

    fn findings(&self, found: Vec<Found>) -> Vec<Finding<'_>> {
        found.iter().filter_map(|f| self.finding(f)).collect()
    }
}

/// Masks one stream chunk by chunk; see [`Masker::stream`].
///
/// The output is byte-identical to [`Masker::mask`] of the whole stream,
/// however it is cut into chunks. [`StreamMasker::push`] releases every byte
/// that can no longer change; it holds back at most about the largest match
/// length of the masker's detectors (plus look-behind context), so memory
/// stays bounded whatever the stream's length.
pub struct StreamMasker<'m> {
    masker: &'m Masker,
    core: Core,
    /// Input from absolute offset `base` on.
    buf: Vec<u8>,
    base: usize,
    found: Vec<Found>,
    findings: Vec<Finding<'m>>,
}

impl fmt::Debug for StreamMasker<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamMasker")
            .field("offset", &(self.base + self.buf.len()))
            .field("held", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<'m> StreamMasker<'m> {
    /// Feeds `chunk`, appends all output that can no longer change to `out`,
    /// and returns what was masked in that output (spans are stream offsets).
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> &[Finding<'m>] {
        self.findings.clear();
        for piece in chunk.chunks(STREAM_PIECE) {
            self.buf.extend_from_slice(piece);
            self.advance(false, out);
        }
        &self.findings
    }

    /// Ends the stream: appends the rest of the output to `out` and returns
    /// what was masked in it.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Vec<Finding<'m>> {
        self.findings.clear();
        self.advance(true, out);
        self.findings
    }

    /// Bytes fed so far.
    pub fn offset(&self) -> usize {
        self.base + self.buf.len()
    }

    /// How many of the bytes fed so far have not yet been released to the
    /// output: the tail a match could still extend, which [`push`] holds
    /// back until more input (or [`finish`]) decides it. At most about
    /// [`Masker::holdback`] after a push. A caller that knows no more input
    /// is coming soon (an idle interactive stream) can tell from this
    /// whether ending the stream would release anything.
    ///
    /// [`push`]: StreamMasker::push
    /// [`finish`]: StreamMasker::finish
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis_mask::{Masker, Rule};
    ///
    /// let masker = Masker::builder()
    ///     .default_catalogue(false)
    ///     .rule(Rule::literal("demo-token", "tok_4f1c2a9b"))
    ///     .build()?;
    /// let mut stream = masker.stream();
    /// let mut out = Vec::new();
    /// assert_eq!(stream.pending(), 0);
    /// stream.push(b"auth tok_4f", &mut out);
    /// assert_eq!(out.len() + stream.pending(), 11);
    /// assert!(stream.pending() > 0, "the start of the token is held back");
    /// stream.finish(&mut out);
    /// assert_eq!(out, b"auth tok_4f");
    /// # Ok::<(), portcullis_mask::BuildError>(())
    /// ```
    pub fn pending(&self) -> usize {
        self.offset().saturating_sub(self.core.released)
    }

    fn advance(&mut self, eof: bool, out: &mut Vec<u8>) {
        let engine = &self.masker.engine;
        let (core, buf, base, found) = (&mut self.core, &self.buf, self.base, &mut self.found);
        engine.with_scratch(|scratch| {
            core.advance(engine, scratch, buf, base, eof, Release::Eager, out, found);
        });
        for f in self.found.drain(..) {
            if let Some(finding) = self.masker.finding(&f) {
                self.findings.push(finding);
            }
        }
        let keep = self.core.keep_from(engine).max(self.base);
        let drop = (keep - self.base).min(self.buf.len());
        self.buf.drain(..drop);
        self.base += drop;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_is_what_was_fed_and_not_yet_released() {
        let masker = Masker::builder().build().unwrap();
        let text = b"GET /items?page=3 status=200 user=alice took=3ms\n".repeat(400);
        for size in [1, 7, 64, 1000, 8192, 70_000] {
            let mut stream = masker.stream();
            let mut out = Vec::new();
            for chunk in text.chunks(size) {
                stream.push(chunk, &mut out);
                // Nothing is masked in this text: output is input released.
                assert_eq!(out.len() + stream.pending(), stream.offset());
                assert!(stream.pending() <= masker.holdback() + STREAM_PIECE);
            }
            stream.finish(&mut out);
            assert_eq!(out, text);
        }
        // With a secret masked, pending still counts input bytes.
        let mut stream = masker.stream();
        let mut out = Vec::new();
        stream.push(b"key AKIA2OGYBAH6J4PRX7QZ and more text", &mut out);
        assert!(stream.pending() > 0);
        let before = stream.pending();
        stream.push(&[b' '; 8192], &mut out);
        assert!(stream.pending() <= before + 8192);
        assert!(out.starts_with(b"key [MASKED:"));
    }

    #[test]
    fn stream_memory_is_bounded_by_the_holdback() {
        let masker = Masker::builder()
            .rule(Rule::regex("blob", r"<<[\s\S]*?>>").keywords(["<<"]))
            .build()
            .unwrap();
        // Keywords everywhere, unterminated matches, NUL and invalid UTF-8.
        let mut input = Vec::new();
        while input.len() < 1 << 19 {
            input.extend_from_slice(b"<<token=\x00\xff\xfe password: AKIA 4111 ");
        }
        let mut stream = masker.stream();
        let mut out = Vec::new();
        let mut max_held = 0;
        for chunk in input.chunks(70_000) {
            out.clear();
            stream.push(chunk, &mut out);
            max_held = max_held.max(stream.buf.len());
        }
        assert!(
            max_held <= masker.holdback() + STREAM_PIECE,
            "held {max_held} bytes, holdback {}",
            masker.holdback()
        );
        out.clear();
        stream.finish(&mut out);
        // The whole-buffer result of the same input is one capped match per
        // cap length, never a panic or an unbounded state.
        assert!(masker.mask(&input).is_masked());
    }
}
