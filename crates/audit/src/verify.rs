//! Verification of a hash-chained trail.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::chain::{ChainHash, ChainHead, ChainKey, LineError, parse_line};
use crate::{AuditEvent, EventKind};

/// Where a line is: a file (or `table/replica` for the PostgreSQL sink) and
/// a 1-based line number (the sequence number for PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file path or table.
    pub source: String,
    /// The 1-based line number.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// One thing wrong with a trail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A file could not be read.
    Unreadable {
        /// The file.
        source: String,
        /// The error.
        reason: String,
    },
    /// A line is not a record in the exact layout (edited framing, merged
    /// lines, inserted garbage).
    Malformed {
        /// Where.
        at: Location,
        /// What the parser said.
        reason: String,
    },
    /// A record's contents do not match its hash: it was modified.
    Modified {
        /// Where.
        at: Location,
        /// The sequence number it claims.
        seq: u64,
    },
    /// A record of another chain.
    WrongChain {
        /// Where.
        at: Location,
        /// The chain of the first record.
        expected: String,
        /// This record's chain.
        found: String,
    },
    /// Records are missing before this one: deleted.
    Missing {
        /// Where the gap ends.
        at: Location,
        /// The first missing sequence number.
        from: u64,
        /// The last missing sequence number.
        to: u64,
    },
    /// A record with a sequence number already passed: inserted, duplicated
    /// or reordered.
    OutOfOrder {
        /// Where.
        at: Location,
        /// The sequence number expected here.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// A record whose `prev_hash` is not the previous record's hash: a
    /// record was replaced, or one was inserted with a forged number.
    BrokenLink {
        /// Where.
        at: Location,
        /// Its sequence number.
        seq: u64,
    },
    /// The first record is not the chain's first (sequence 1 after the
    /// genesis hash), or does not follow the given starting point.
    BadStart {
        /// Where.
        at: Location,
        /// Its sequence number.
        seq: u64,
    },
    /// A line cut short in a file that is not the last, with no recovery
    /// record naming it.
    UnrecoveredTornLine {
        /// Where.
        at: Location,
    },
    /// A line longer than the verifier's limit.
    TooLong {
        /// Where.
        at: Location,
    },
    /// The anchor (a receipt kept elsewhere) is not in the trail: the trail
    /// was cut short or rewritten.
    AnchorNotFound {
        /// The anchor's sequence number.
        seq: u64,
        /// The anchor's hash.
        hash: ChainHash,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unreadable { source, reason } => write!(f, "{source}: unreadable: {reason}"),
            Problem::Malformed { at, reason } => write!(f, "{at}: not a valid record: {reason}"),
            Problem::Modified { at, seq } => {
                write!(f, "{at}: record {seq} was modified (hash mismatch)")
            }
            Problem::WrongChain {
                at,
                expected,
                found,
            } => write!(f, "{at}: record of chain {found:?} in chain {expected:?}"),
            Problem::Missing { at, from, to } => {
                write!(f, "{at}: records {from}..={to} are missing (deleted)")
            }
            Problem::OutOfOrder {
                at,
                expected,
                found,
            } => write!(
                f,
                "{at}: record {found} where {expected} was expected (inserted or reordered)"
            ),
            Problem::BrokenLink { at, seq } => write!(
                f,
                "{at}: record {seq} does not link to the previous record (replaced or inserted)"
            ),
            Problem::BadStart { at, seq } => {
                write!(
                    f,
                    "{at}: trail starts at record {seq}, not at its beginning"
                )
            }
            Problem::UnrecoveredTornLine { at } => {
                write!(f, "{at}: line cut short with no recovery record")
            }
            Problem::TooLong { at } => write!(f, "{at}: line too long"),
            Problem::AnchorNotFound { seq, hash } => {
                write!(
                    f,
                    "anchor record {seq} ({hash}) is not in the trail (cut short?)"
                )
            }
        }
    }
}

/// Where a verification starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Start {
    /// At the chain's first record (the default).
    Genesis,
    /// Right after this record (older files archived elsewhere).
    After(ChainHead),
    /// Wherever the first file starts (no check of the first link).
    Anywhere,
}

/// Options for [`verify_with`].
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    start: Start,
    anchor: Option<ChainHead>,
    max_line_bytes: usize,
    key: Option<ChainKey>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            start: Start::Genesis,
            anchor: None,
            max_line_bytes: 4 << 20,
            key: None,
        }
    }
}

impl VerifyOptions {
    /// Default options: start at the genesis, no anchor, lines up to 4 MiB.
    pub fn new() -> VerifyOptions {
        VerifyOptions::default()
    }

    /// Where the trail starts.
    pub fn start(mut self, start: Start) -> VerifyOptions {
        self.start = start;
        self
    }

    /// A record known from elsewhere (the latest receipt's sequence number and
    /// hash, kept in another sink) that must be in the trail. Without an
    /// anchor, a trail cut at a line boundary looks like a shorter trail.
    pub fn anchor(mut self, head: ChainHead) -> VerifyOptions {
        self.anchor = Some(head);
        self
    }

    /// The key of a keyed chain (see [`ChainKey`]). Without it, every record
    /// of a keyed chain shows as modified; with a wrong one, too.
    pub fn key(mut self, key: ChainKey) -> VerifyOptions {
        self.key = Some(key);
        self
    }

    /// The longest line accepted.
    pub fn max_line_bytes(mut self, bytes: usize) -> VerifyOptions {
        self.max_line_bytes = bytes;
        self
    }
}

/// The result of verifying a trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    sources: usize,
    records: u64,
    chain: Option<String>,
    head: Option<ChainHead>,
    torn_tail: Option<Location>,
    recovered: Vec<Location>,
    problems: Vec<Problem>,
}

impl VerifyReport {
    /// No problem found. A torn tail (a crash mid-write) is not a problem.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// Intact, and no torn tail either.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.torn_tail.is_none()
    }

    /// The problems, in trail order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The last record read.
    pub fn head(&self) -> Option<ChainHead> {
        self.head
    }

    /// Valid records read.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The chain id of the first record.
    pub fn chain(&self) -> Option<&str> {
        self.chain.as_deref()
    }

    /// A torn last line (crash mid-write), if any.
    pub fn torn_tail(&self) -> Option<&Location> {
        self.torn_tail.as_ref()
    }

    /// Torn lines earlier in the trail that a recovery record accounts for.
    pub fn recovered(&self) -> &[Location] {
        &self.recovered
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_clean() {
            "INTACT"
        } else if self.is_intact() {
            "INTACT (torn tail)"
        } else {
            "TAMPERED OR DAMAGED"
        };
        writeln!(f, "verdict: {verdict}")?;
        writeln!(f, "chain: {}", self.chain.as_deref().unwrap_or("-"))?;
        writeln!(f, "files: {}", self.sources)?;
        writeln!(f, "records: {}", self.records)?;
        match &self.head {
            Some(h) => writeln!(f, "head: seq {} hash {}", h.seq, h.hash)?,
            None => writeln!(f, "head: -")?,
        }
        for at in &self.recovered {
            writeln!(f, "recovered torn line: {at}")?;
        }
        if let Some(at) = &self.torn_tail {
            writeln!(f, "torn tail (crash mid-write, never acknowledged): {at}")?;
        }
        writeln!(f, "problems: {}", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

struct PendingTorn {
    at: Location,
    file: String,
    bytes: u64,
    sha256: String,
}

/// The chain checker, fed one line at a time.
pub(crate) struct Verifier {
    key: Option<ChainKey>,
    start: Start,
    anchor: Option<ChainHead>,
    anchor_seen: bool,
    prev: Option<ChainHead>,
    pending_torn: Option<PendingTorn>,
    report: VerifyReport,
}

impl Verifier {
    pub(crate) fn new(options: &VerifyOptions) -> Verifier {
        Verifier {
            key: options.key.clone(),
            start: options.start,
            anchor: options.anchor,
            anchor_seen: false,
            prev: match options.start {
                Start::After(h) => Some(h),
                Start::Genesis | Start::Anywhere => None,
            },
            pending_torn: None,
            report: VerifyReport::default(),
        }
    }

    pub(crate) fn begin_source(&mut self) {
        self.report.sources += 1;
    }

    pub(crate) fn problem(&mut self, p: Problem) {
        self.report.problems.push(p);
    }

    /// A line cut short at the end of a file.
    pub(crate) fn torn(&mut self, at: Location, file: String, bytes: &[u8]) {
        if let Some(prev) = self.pending_torn.take() {
            self.problem(Problem::UnrecoveredTornLine { at: prev.at });
        }
        self.pending_torn = Some(PendingTorn {
            at,
            file,
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        });
    }

    /// A complete line (without its newline).
    pub(crate) fn line(&mut self, at: Location, line: &[u8]) {
        let rec = match parse_line(line, self.key.as_ref()) {
            Ok(rec) => rec,
            Err(LineError::Malformed(reason)) => {
                self.problem(Problem::Malformed { at, reason });
                return;
            }
            Err(LineError::HashMismatch { seq, claimed }) => {
                self.problem(Problem::Modified { at, seq });
                self.prev = Some(ChainHead { seq, hash: claimed });
                return;
            }
        };
        match &self.report.chain {
            None => self.report.chain = Some(rec.chain.to_owned()),
            Some(c) if c != rec.chain => {
                let expected = c.clone();
                self.problem(Problem::WrongChain {
                    at: at.clone(),
                    expected,
                    found: rec.chain.to_owned(),
                });
            }
            Some(_) => {}
        }
        if let Some(torn) = self.pending_torn.take() {
            let names_it = matches!(
                serde_json::from_str::<AuditEvent>(rec.event).map(|e| e.kind),
                Ok(EventKind::TrailRecovered { file, line, bytes, sha256 })
                    if file == torn.file && line == torn.at.line && bytes == torn.bytes && sha256 == torn.sha256
            );
            if names_it {
                self.report.recovered.push(torn.at);
            } else {
                self.problem(Problem::UnrecoveredTornLine { at: torn.at });
            }
        }
        match self.prev {
            None => {
                if self.start == Start::Genesis
                    && (rec.seq != 1 || rec.prev_hash != ChainHash::GENESIS)
                {
                    self.problem(Problem::BadStart {
                        at: at.clone(),
                        seq: rec.seq,
                    });
                }
            }
            Some(prev) => {
                let expected = prev.seq.saturating_add(1);
                if rec.seq == expected {
                    if rec.prev_hash != prev.hash {
                        self.problem(Problem::BrokenLink {
                            at: at.clone(),
                            seq: rec.seq,
                        });
                    }
                } else if rec.seq > expected {
                    self.problem(Problem::Missing {
                        at: at.clone(),
                        from: expected,
                        to: rec.seq - 1,
                    });
                } else {
                    self.problem(Problem::OutOfOrder {
                        at: at.clone(),
                        expected,
                        found: rec.seq,
                    });
                }
            }
        }
        let head = ChainHead {
            seq: rec.seq,
            hash: rec.hash,
        };
        if self.anchor == Some(head) {
            self.anchor_seen = true;
        }
        self.prev = Some(head);
        self.report.head = Some(head);
        self.report.records += 1;
    }

    pub(crate) fn finish(mut self) -> VerifyReport {
        if let Some(torn) = self.pending_torn.take() {
            self.report.torn_tail = Some(torn.at);
        }
        if let Some(anchor) = self.anchor
            && !self.anchor_seen
        {
            self.problem(Problem::AnchorNotFound {
                seq: anchor.seq,
                hash: anchor.hash,
            });
        }
        self.report
    }
}

/// One line read from a file: complete (ended by a newline), cut short at the
/// end of the file, or over the limit.
pub(crate) enum RawLine<'a> {
    Complete(&'a [u8]),
    Torn(&'a [u8]),
    TooLong,
}

/// Calls `f` for each line of `path` with its 1-based number, never holding
/// more than `max` bytes of one line.
pub(crate) fn for_each_line(
    path: &Path,
    max: usize,
    f: impl FnMut(u64, RawLine<'_>),
) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    for_each_line_in(file, max, f)
}

/// [`for_each_line`] over any reader.
pub(crate) fn for_each_line_in(
    input: impl Read,
    max: usize,
    mut f: impl FnMut(u64, RawLine<'_>),
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(64 << 10, input);
    let mut buf = Vec::new();
    let mut too_long = false;
    let mut line_no = 0u64;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            if too_long {
                line_no += 1;
                f(line_no, RawLine::TooLong);
            } else if !buf.is_empty() {
                line_no += 1;
                f(line_no, RawLine::Torn(&buf));
            }
            return Ok(());
        }
        let (chunk, used, ended) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (available.get(..i).unwrap_or_default(), i + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if ended {
            line_no += 1;
            if too_long {
                f(line_no, RawLine::TooLong);
            } else {
                f(line_no, RawLine::Complete(&buf));
            }
            buf.clear();
            too_long = false;
        }
    }
}

/// Verifies a trail made of `paths`, in chain order (see
/// [`crate::trail_files`]), from the chain's first record, without an anchor.
///
/// Finds modified, deleted, inserted and reordered lines and a torn tail,
/// and says where (file, line). See [`verify_with`].
///
/// # Example
///
/// ```
/// use portcullis_audit::verify;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("gw-1-0000000001.jsonl");
/// std::fs::write(&path, "not a record\n").unwrap();
/// let report = verify(&[&path]);
/// assert!(!report.is_intact());
/// println!("{report}");
/// ```
pub fn verify<P: AsRef<Path>>(paths: &[P]) -> VerifyReport {
    verify_with(paths, &VerifyOptions::default())
}

/// Verifies a trail with options: a start other than the genesis, an anchor,
/// a line limit.
pub fn verify_with<P: AsRef<Path>>(paths: &[P], options: &VerifyOptions) -> VerifyReport {
    let mut v = Verifier::new(options);
    for path in paths {
        let path = path.as_ref();
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let opened = std::fs::File::open(path);
        verify_source(&mut v, options, path.display().to_string(), file, opened);
    }
    v.finish()
}

/// Feeds one file (or an in-memory stand-in) to the verifier.
fn verify_source(
    v: &mut Verifier,
    options: &VerifyOptions,
    source: String,
    file: String,
    input: std::io::Result<impl Read>,
) {
    v.begin_source();
    let mut torn = None;
    let result = input.and_then(|input| {
        for_each_line_in(input, options.max_line_bytes, |n, line| {
            let at = Location {
                source: source.clone(),
                line: n,
            };
            match line {
                RawLine::Complete(l) => v.line(at, l),
                RawLine::Torn(l) => torn = Some((at, l.to_vec())),
                RawLine::TooLong => v.problem(Problem::TooLong { at }),
            }
        })
    });
    if let Some((at, bytes)) = torn {
        v.torn(at, file, &bytes);
    }
    if let Err(e) = result {
        v.problem(Problem::Unreadable {
            source,
            reason: e.to_string(),
        });
    }
}

/// Verifies a trail held in memory: `(file name, contents)` in chain order.
/// The same checks as [`verify_with`]; for property tests and fuzzing.
pub fn verify_in_memory(files: &[(&str, &[u8])], options: &VerifyOptions) -> VerifyReport {
    let mut v = Verifier::new(options);
    for (name, bytes) in files {
        verify_source(
            &mut v,
            options,
            (*name).to_owned(),
            (*name).to_owned(),
            Ok(*bytes),
        );
    }
    v.finish()
}
