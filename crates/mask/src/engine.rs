//! The scanning core shared by whole-buffer and streaming masking.
//!
//! # What a match is
//!
//! Every decision is a function of the input bytes near a position, never of
//! how the input was cut into chunks, which is what makes streaming output
//! byte-identical to whole-buffer output:
//!
//! * The *probe* of detector `d` at position `s` runs `d`'s pattern anchored
//!   at `s` (leftmost-first, like a backtracking regex), seeing the input up
//!   to `s + max_len(d)` plus one byte of look-ahead (and the bytes before
//!   `s` for look-behind such as `\b`). Its result is the match `[s, e)`, or
//!   nothing. A detector with keywords whose pattern is still consuming
//!   input at `s + max_len` (with or without a match so far) is *capped*:
//!   `[s, s + max_len)` (its `m` part if it matched) is masked anyway, with
//!   validators skipped, and so are the bytes after it up to the next ASCII
//!   whitespace, in further pieces of at most `max_len` bytes (reported as
//!   findings of the same detector; redact and keyed-hash styles render no
//!   second token). So an over-long secret is cut into pieces, never leaked.
//! * Which positions are probed: for a detector with keywords, every `s`
//!   whose first byte can start the pattern and from which a match of at
//!   most `max_len` bytes could cover a keyword occurrence (found by one
//!   Aho-Corasick automaton over all keywords, ASCII case-insensitive,
//!   overlapping). For a keyword-less detector (email, cards, phones, ...)
//!   one unanchored multi-pattern lazy DFA over all keyword-less patterns
//!   reports every position where one of their matches ends, and the
//!   positions up to `max_len` before it are probed. That DFA finds every
//!   match a probe can find, so its reports depend on nothing but the input.
//! * A candidate passes the detector's validators (on the whole match, the
//!   masked part, and up to the largest `ContextBefore` window of bytes
//!   before the match).
//! * Overlaps are resolved on the masked parts (the `m` group, or the whole
//!   match): candidates are taken by earliest masked part, then catalogue
//!   order (built-in detectors first, specific before generic, then user
//!   rules in the order they were added), then longest; a candidate whose
//!   masked part starts inside one already taken is dropped. So when a
//!   generic `api_key=` rule and a provider's key format mask the same
//!   value, the provider's detector reports it.
//!
//! # Streaming
//!
//! With `end` bytes seen, every probe at `s < end - (max_len + 1)` has all
//! the bytes it needs, and every keyword or DFA report that could make such
//! an `s` a candidate has been seen; so those positions are decided, and the
//! output before them is released. The core keeps at most the catalogue's
//! largest `max_len`, plus look-behind context, of input.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::panic::{RefUnwindSafe, UnwindSafe};

use aho_corasick::MatchKind as AcMatchKind;
use aho_corasick::automaton::Automaton as _;
use regex_automata::hybrid::LazyStateID;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::pool::Pool;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, Input, MatchKind, PatternID, meta};

use crate::error::BuildError;
use crate::spec::{Category, Validator};
use crate::style::Style;
use crate::validate::validate;

/// Lazy DFA cache capacity per pattern set. The combined forward DFA of a
/// full catalogue needs a few MiB before it stops recomputing states.
const CACHE_CAPACITY: usize = 16 << 20;

/// The compile-time description of one detector, built-in or user rule.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) id: Cow<'static, str>,
    pub(crate) category: Category,
    pub(crate) keywords: Vec<Cow<'static, str>>,
    pub(crate) pattern: Cow<'static, str>,
    pub(crate) validators: Cow<'static, [Validator]>,
    pub(crate) max_len: usize,
    pub(crate) style: Style,
}

/// One compiled detector.
pub(crate) struct Det {
    pub(crate) id: Cow<'static, str>,
    pub(crate) category: Category,
    pub(crate) style: Style,
    validators: Cow<'static, [Validator]>,
    max_len: usize,
    /// How far before the end of a keyword occurrence a match can start:
    /// `max_len`, or less when known (a derived one-byte keyword).
    kw_reach: usize,
    keyworded: bool,
    /// `prefix[w][j]`: the bytes that can be the `j`-th byte of a match (or
    /// its look-ahead byte) without the pattern dying, after a word byte
    /// (`w = 1`) or anything else (`w = 0`); a cheap filter before a probe.
    /// At most `PREFIX_DEPTH` deep.
    prefix: [Vec<ByteSet>; 2],
    /// The capture engine and the index of the `m` group, if there is one.
    capture: Option<(meta::Regex, usize)>,
}

impl fmt::Debug for Det {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Det")
            .field("id", &self.id)
            .field("category", &self.category)
            .field("max_len", &self.max_len)
            .field("keyworded", &self.keyworded)
            .finish_non_exhaustive()
    }
}

impl Det {
    /// Whether a probe at `at` (an index into `hay`) can find anything:
    /// false if a byte of the input kills the pattern within its prefix.
    fn may_match_at(&self, hay: &[u8], at: usize) -> bool {
        let after_word = at
            .checked_sub(1)
            .and_then(|i| hay.get(i))
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_');
        let Some(prefix) = self.prefix.get(usize::from(after_word)) else {
            return true;
        };
        let depth = prefix.len().min(self.max_len + 1);
        prefix
            .iter()
            .take(depth)
            .zip(hay.get(at..).unwrap_or_default())
            .all(|(set, &b)| set.contains(b))
    }
}

type ScratchFn = Box<dyn Fn() -> Scratch + Send + Sync + UnwindSafe + RefUnwindSafe>;

/// Mutable per-search state: the lazy DFAs' caches. Pooled in the engine so
/// that a `Masker` can be shared across threads and a `StreamMasker` stays
/// small between pushes.
#[derive(Debug)]
pub(crate) struct Scratch {
    probe: Cache,
    free: Option<Cache>,
}

/// Everything compiled from the detectors; immutable, `Send + Sync`.
pub(crate) struct Engine {
    pub(crate) dets: Vec<Det>,
    /// Keyword automaton, and for each keyword the detectors it serves.
    ac: Option<aho_corasick::dfa::DFA>,
    kw_dets: Vec<Vec<u32>>,
    max_kw: usize,
    /// All patterns, one per detector (pattern id = detector index), for
    /// anchored probes.
    probe: DFA,
    /// The keyword-less patterns, unanchored, reporting all match ends; and
    /// the detector of each of its pattern ids.
    free: Option<DFA>,
    free_dets: Vec<u32>,
    /// Every keyword-less match contains one of these bytes (`None`: no such
    /// small set was found, the DFA runs over all input).
    free_trigger: Option<[bool; 256]>,
    /// The largest `max_len`: the decision lag of streaming.
    pub(crate) lmax: usize,
    /// The largest `max_len` among keyword-less detectors.
    lfree: usize,
    /// The largest `ContextBefore` window.
    ctx: usize,
    pool: Pool<Scratch, ScratchFn>,
    /// Detector and field rule ids, sorted (see `overlaps_redaction_token`),
    /// and the length of the longest `[MASKED:<id>]` token.
    ids: Vec<Box<str>>,
    max_token: usize,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("detectors", &self.dets.len())
            .field("keywords", &self.kw_dets.len())
            .field("keyword_less", &self.free_dets.len())
            .field("max_len", &self.lmax)
            .finish_non_exhaustive()
    }
}

fn syntax_config() -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false)
}

fn automaton_error(e: impl fmt::Display) -> BuildError {
    BuildError::Automaton {
        message: e.to_string(),
    }
}

impl Engine {
    /// Compiles `sources`; `extra_ids` are other ids whose redaction tokens
    /// are not masked again (field rules).
    pub(crate) fn new(sources: Vec<Source>, extra_ids: &[&str]) -> Result<Engine, BuildError> {
        let n = sources.len();
        if u32::try_from(n).is_err() || n >= PatternID::LIMIT {
            return Err(automaton_error("too many detectors"));
        }
        // Per-pattern checks give errors that name the rule.
        let mut dets = Vec::with_capacity(n);
        for src in &sources {
            syntax::parse_with(&src.pattern, &syntax_config()).map_err(|e| {
                BuildError::Pattern {
                    id: src.id.to_string(),
                    message: e.to_string(),
                }
            })?;
            let capture = if may_have_group_m(&src.pattern) {
                let re = meta::Regex::builder()
                    .syntax(syntax_config())
                    .configure(
                        meta::Config::new()
                            .match_kind(MatchKind::LeftmostFirst)
                            .utf8_empty(false),
                    )
                    .build(&src.pattern)
                    .map_err(|e| BuildError::Pattern {
                        id: src.id.to_string(),
                        message: e.to_string(),
                    })?;
                re.group_info()
                    .to_index(PatternID::ZERO, "m")
                    .map(|index| (re, index))
            } else {
                None
            };
            if src.keywords.iter().any(|k| k.is_empty()) {
                return Err(BuildError::EmptyKeyword {
                    id: src.id.to_string(),
                });
            }
            dets.push(Det {
                id: src.id.clone(),
                category: src.category,
                style: src.style.clone(),
                validators: src.validators.clone(),
                max_len: src.max_len.max(1),
                kw_reach: src.max_len.max(1),
                keyworded: !src.keywords.is_empty(),
                prefix: [Vec::new(), Vec::new()],
                capture,
            });
        }

        let patterns: Vec<&str> = sources.iter().map(|s| s.pattern.as_ref()).collect();
        let probe = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::LeftmostFirst)
                    .starts_for_each_pattern(true)
                    .cache_capacity(CACHE_CAPACITY)
                    .minimum_cache_clear_count(None),
            )
            .syntax(syntax_config())
            .thompson(thompson::Config::new().utf8(false))
            .build_many(&patterns)
            .map_err(automaton_error)?;

        // Keyword-less detectors whose every match contains a byte that is
        // rare in text (`@` for e-mail) take that byte as their keyword.
        let mut cache = probe.create_cache();
        let mut keywords_of: Vec<Vec<String>> = Vec::with_capacity(n);
        for (i, (src, det)) in sources.iter().zip(dets.iter_mut()).enumerate() {
            let mut kws: Vec<String> = src
                .keywords
                .iter()
                .map(|k| k.to_ascii_lowercase())
                .collect();
            if kws.is_empty() {
                let pid = PatternID::new(i).map_err(automaton_error)?;
                if let Some(&byte) = RARE_BYTES
                    .iter()
                    .find(|&&b| requires_byte(&probe, &mut cache, pid, b))
                {
                    kws.push(char::from(byte).to_string());
                    det.keyworded = true;
                    if let Some(reach) = reach_before(&probe, &mut cache, pid, byte, det.max_len) {
                        det.kw_reach = (reach + 1).min(det.max_len);
                    }
                }
            }
            keywords_of.push(kws);
        }

        let mut free_trigger = Some(ByteSet::default());
        for (i, kws) in keywords_of.iter().enumerate() {
            if !kws.is_empty() {
                continue;
            }
            let pid = PatternID::new(i).map_err(automaton_error)?;
            let found = TRIGGER_SETS
                .iter()
                .map(|bytes| ByteSet::of(bytes))
                .find(|set| requires_set(&probe, &mut cache, pid, set));
            free_trigger = match (free_trigger, found) {
                (Some(acc), Some(set)) => Some(acc.union(&set)),
                _ => None,
            };
        }

        let mut free_dets = Vec::new();
        let mut free_patterns = Vec::new();
        for (i, (src, kws)) in sources.iter().zip(&keywords_of).enumerate() {
            if kws.is_empty() {
                free_dets.push(u32::try_from(i).map_err(automaton_error)?);
                free_patterns.push(src.pattern.as_ref());
            }
        }
        let free = if free_patterns.is_empty() {
            None
        } else {
            Some(
                DFA::builder()
                    .configure(
                        DFA::config()
                            .match_kind(MatchKind::All)
                            .cache_capacity(CACHE_CAPACITY)
                            .minimum_cache_clear_count(None),
                    )
                    .syntax(syntax_config())
                    .thompson(thompson::Config::new().utf8(false))
                    .build_many(&free_patterns)
                    .map_err(automaton_error)?,
            )
        };

        // Keywords: deduplicated, each serving the detectors that list it.
        let mut keywords: Vec<String> = Vec::new();
        let mut kw_dets: Vec<Vec<u32>> = Vec::new();
        for (i, kws) in keywords_of.into_iter().enumerate() {
            let det = u32::try_from(i).map_err(automaton_error)?;
            for kw in kws {
                match keywords.iter().position(|k| *k == kw) {
                    Some(p) => {
                        if let Some(list) = kw_dets.get_mut(p)
                            && !list.contains(&det)
                        {
                            list.push(det);
                        }
                    }
                    None => {
                        keywords.push(kw);
                        kw_dets.push(vec![det]);
                    }
                }
            }
        }
        let max_kw = keywords.iter().map(String::len).max().unwrap_or(0);
        let ac = if keywords.is_empty() {
            None
        } else {
            Some(
                // A DFA without prefilter: only match and dead states are
                // special, so `scan_keywords` steps it in a tight loop.
                aho_corasick::dfa::DFA::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(AcMatchKind::Standard)
                    .prefilter(false)
                    .build(&keywords)
                    .map_err(automaton_error)?,
            )
        };

        // How far before a keyword's end a match can start.
        for (i, (src, det)) in sources.iter().zip(dets.iter_mut()).enumerate() {
            if src.keywords.is_empty() {
                continue;
            }
            let pid = PatternID::new(i).map_err(automaton_error)?;
            if let Some(reach) = keyword_reach(&probe, &mut cache, pid, &src.keywords, det.max_len)
            {
                det.kw_reach = reach.clamp(1, det.max_len);
            }
        }

        // The bytes each pattern can start with (see `Det::prefix`).
        for (i, det) in dets.iter_mut().enumerate() {
            let pid = PatternID::new(i).map_err(automaton_error)?;
            det.prefix = [
                prefix_sets(
                    &probe,
                    &mut cache,
                    pid,
                    &[None, Some(b' '), Some(b'\n'), Some(b'\r')],
                ),
                prefix_sets(&probe, &mut cache, pid, &[Some(b'a')]),
            ];
        }

        let lmax = dets.iter().map(|d| d.max_len).max().unwrap_or(1);
        let lfree = dets
            .iter()
            .filter(|d| !d.keyworded)
            .map(|d| d.max_len)
            .max()
            .unwrap_or(0);
        let ctx = dets
            .iter()
            .flat_map(|d| d.validators.iter())
            .map(|v| match v {
                Validator::ContextBefore { window, .. } => *window,
                _ => 0,
            })
            .max()
            .unwrap_or(0);

        let mut ids: Vec<Box<str>> = sources
            .iter()
            .map(|s| Box::from(s.id.as_ref()))
            .chain(extra_ids.iter().map(|&id| Box::from(id)))
            .collect();
        ids.sort();
        let max_token = ids.iter().map(|id| id.len() + 9).max().unwrap_or(9);
        let (p2, f2) = (probe.clone(), free.clone());
        let create: ScratchFn = Box::new(move || Scratch {
            probe: p2.create_cache(),
            free: f2.as_ref().map(DFA::create_cache),
        });
        Ok(Engine {
            dets,
            ac,
            kw_dets,
            max_kw,
            probe,
            free,
            free_dets,
            free_trigger: free_trigger
                .map(|set| std::array::from_fn(|b| u8::try_from(b).is_ok_and(|b| set.contains(b)))),
            lmax,
            lfree,
            ctx,
            pool: Pool::new(create),
            max_token,
            ids,
        })
    }

    /// Runs `f` with a pooled scratch.
    pub(crate) fn with_scratch<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        let mut guard = self.pool.get();
        f(&mut guard)
    }

    /// How many bytes before the undecided frontier a stream must keep.
    fn keep_before(&self) -> usize {
        self.ctx + self.max_token + 1
    }

    /// The most input a stream holds back between pushes (decision lag plus
    /// look-behind).
    pub(crate) fn holdback(&self) -> usize {
        (self.lmax + 1 + self.keep_before())
            .max(self.max_kw)
            .max(self.lfree + 1)
    }

    /// The probe of detector `det` at `s` (see the module doc). `hay` holds
    /// the input from absolute offset `base` to `end` (`end` is the end of
    /// the input when `eof`).
    fn probe_at(
        &self,
        cache: &mut Cache,
        hay: &[u8],
        base: usize,
        eof: bool,
        det_ix: u32,
        s: usize,
    ) -> Option<Cand> {
        let det = self.dets.get(det_ix as usize)?;
        let end = base + hay.len();
        let clip = (s + det.max_len).min(end);
        let (rs, rc) = (s - base, clip - base);
        let outcome = self.run_probe(cache, hay, rs, rc, det_ix);
        let (e, capped) = match outcome {
            Ok(Probe { last, alive }) => {
                let capped = alive && det.keyworded && !(eof && clip == end);
                match (last, capped) {
                    (_, true) => (clip, true),
                    (Some(e), false) => (base + e, false),
                    (None, false) => return None,
                }
            }
            // The lazy DFA is configured never to give up and has no quit
            // bytes, so this does not happen; if it did, fail closed.
            Err(()) => (clip, true),
        };
        if e <= s {
            return None;
        }
        let (ms, me) = match (&det.capture, outcome) {
            (Some((re, group)), Ok(Probe { last: Some(le), .. })) => {
                let mut caps = re.create_captures();
                re.search_captures(
                    &Input::new(hay).span(rs..le).anchored(Anchored::Yes),
                    &mut caps,
                );
                match caps.get_group(*group) {
                    Some(span) => (base + span.start, if capped { e } else { base + span.end }),
                    None => (s, e),
                }
            }
            _ => (s, e),
        };
        if me <= ms || self.overlaps_redaction_token(hay, base, ms, me) {
            return None;
        }
        if !capped {
            let whole = hay.get(rs..e - base).unwrap_or_default();
            let masked = hay.get(ms - base..me - base).unwrap_or_default();
            // The context window, and a token length ahead of it to tell a
            // `[MASKED:<id>]` token straddling the window's start.
            let before = hay
                .get(s.saturating_sub(self.ctx + self.max_token).max(base) - base..rs)
                .unwrap_or_default();
            if !det
                .validators
                .iter()
                .all(|v| validate(v, whole, masked, before))
            {
                return None;
            }
        }
        Some(Cand {
            e,
            ms,
            me,
            det: det_ix,
            capped,
            cont: false,
        })
    }

    /// Whether the masked part `[ms, me)` overlaps a `[MASKED:<id>]` token
    /// of one of this engine's detectors or field rules: what a masker
    /// already masked is not masked again, so masking is idempotent even
    /// where a pattern would match a token (its `:`, its brackets) together
    /// with the text around it. A real secret next to such a token is still
    /// found by its own detector at its own position. Looks at most one
    /// token length before `ms`, which a stream keeps.
    fn overlaps_redaction_token(&self, hay: &[u8], base: usize, ms: usize, me: usize) -> bool {
        const OPEN: &[u8] = b"[MASKED:";
        let from = ms.saturating_sub(self.max_token).max(base) - base;
        let to = (me - base).min(hay.len());
        let Some(region) = hay.get(from..to) else {
            return false;
        };
        let mut i = 0;
        while let Some(off) = region
            .get(i..)
            .and_then(|r| r.windows(OPEN.len()).position(|w| w == OPEN))
        {
            let t = from + i + off;
            let rest = hay.get(t + OPEN.len()..).unwrap_or_default();
            if let Some(close) = rest.iter().take(self.max_token).position(|&b| b == b']') {
                let id = rest.get(..close).unwrap_or_default();
                let t_end = t + OPEN.len() + close + 1;
                if base + t_end > ms && self.ids.binary_search_by(|x| x.as_bytes().cmp(id)).is_ok()
                {
                    return true;
                }
            }
            i += off + 1;
        }
        false
    }

    /// Steps the probe DFA for pattern `det_ix` anchored at `rs` over
    /// `hay[rs..rc]` and one byte of look-ahead. Offsets are relative to hay.
    fn run_probe(
        &self,
        cache: &mut Cache,
        hay: &[u8],
        rs: usize,
        rc: usize,
        det_ix: u32,
    ) -> Result<Probe, ()> {
        let pid = PatternID::new(det_ix as usize).map_err(|_| ())?;
        let input = Input::new(hay)
            .span(rs..rc)
            .anchored(Anchored::Pattern(pid));
        let dfa = &self.probe;
        let mut sid: LazyStateID = dfa.start_state_forward(cache, &input).map_err(|_| ())?;
        let mut last = None;
        for (at, &byte) in (rs..).zip(hay.get(rs..rc).unwrap_or_default()) {
            sid = dfa.next_state(cache, sid, byte).map_err(|_| ())?;
            if sid.is_tagged() {
                if sid.is_match() {
                    last = Some(at);
                } else if sid.is_dead() {
                    return Ok(Probe { last, alive: false });
                } else if sid.is_quit() {
                    return Err(());
                }
            }
        }
        sid = match hay.get(rc) {
            Some(&byte) => dfa.next_state(cache, sid, byte),
            None => dfa.next_eoi_state(cache, sid),
        }
        .map_err(|_| ())?;
        if sid.is_match() {
            // A match ends at the clip; is the pattern still consuming?
            return Ok(Probe {
                last: Some(rc),
                alive: self.has_live_transition(cache, sid),
            });
        }
        Ok(Probe {
            last,
            alive: !sid.is_dead() && !sid.is_quit(),
        })
    }

    /// Whether some byte leads from `sid` to a live state. If the lazy DFA's
    /// cache is cleared meanwhile (which would make `sid` stale) the answer
    /// is "yes", the cautious one.
    fn has_live_transition(&self, cache: &mut Cache, sid: LazyStateID) -> bool {
        let clears = cache.clear_count();
        for unit in self.probe.byte_classes().representatives(..) {
            let Some(byte) = unit.as_u8() else { continue };
            match self.probe.next_state(cache, sid, byte) {
                Ok(next) if cache.clear_count() == clears => {
                    if !next.is_dead() && !next.is_quit() {
                        return true;
                    }
                }
                _ => return true,
            }
        }
        false
    }

    /// The continuation of a capped match at `p`: the bytes from `p` up to
    /// the next ASCII whitespace, at most `max_len` of them (see the module
    /// doc).
    fn continuation_at(&self, hay: &[u8], base: usize, det_ix: u32, p: usize) -> Option<Cand> {
        let det = self.dets.get(det_ix as usize)?;
        let end = base + hay.len();
        let clip = (p + det.max_len).min(end);
        let run = hay.get(p - base..clip - base).unwrap_or_default();
        let e = p + run
            .iter()
            .position(u8::is_ascii_whitespace)
            .unwrap_or(run.len());
        if e == p {
            return None;
        }
        let capped =
            e == p + det.max_len && hay.get(e - base).is_some_and(|b| !b.is_ascii_whitespace());
        Some(Cand {
            e,
            ms: p,
            me: e,
            det: det_ix,
            capped,
            cont: true,
        })
    }
}

/// How many walks of the keyword DFA `keyword_match_states` runs in step.
const WALKS: usize = 4;

/// Steps the keyword DFA from `start` over `bytes` and records in `events`
/// every match state it enters, with the index of the byte that led to it,
/// in order of that index. What an overlapping search reports, without its
/// per-byte bookkeeping.
///
/// The DFA's transitions are a chain of dependent loads, so one walk waits
/// on memory at every byte. Over a long input `WALKS` walks run in step,
/// one per segment, each from `max_kw - 1` bytes before its segment (where
/// its state has caught up with a walk from the start: a state is the
/// longest keyword prefix ending at a byte, at most `max_kw` bytes long),
/// each reporting only inside its segment.
#[inline(never)]
fn keyword_match_states(
    ac: &aho_corasick::dfa::DFA,
    start: aho_corasick::automaton::StateID,
    bytes: &[u8],
    max_kw: usize,
    events: &mut Vec<(usize, aho_corasick::automaton::StateID)>,
) {
    use aho_corasick::Anchored::No;
    let overlap = max_kw.saturating_sub(1);
    let n = bytes.len();
    // Segment length; every walk but the first starts `overlap` bytes early.
    let seg = n / WALKS;
    if seg < 2 * overlap + 256 {
        let mut sid = start;
        for (i, &b) in bytes.iter().enumerate() {
            sid = ac.next_state(No, sid, b);
            if ac.is_special(sid) && ac.is_match(sid) {
                events.push((i, sid));
            }
        }
        return;
    }
    // Walk `w` reads from `from[w]`; in step for `seg` bytes, then each
    // finishes alone (the first has nothing left).
    let from: [usize; WALKS] = std::array::from_fn(|w| (w * seg).saturating_sub(overlap));
    let lanes: [&[u8]; WALKS] = from.map(|f| bytes.get(f..).unwrap_or_default());
    // The walks' states stay in registers: one variable each.
    let [l0, l1, l2, l3] = lanes.map(|l| l.get(..seg).unwrap_or_default());
    let (mut s0, mut s1, mut s2, mut s3) = (start, start, start, start);
    for (t, (((&b0, &b1), &b2), &b3)) in l0.iter().zip(l1).zip(l2).zip(l3).enumerate() {
        s0 = ac.next_state(No, s0, b0);
        s1 = ac.next_state(No, s1, b1);
        s2 = ac.next_state(No, s2, b2);
        s3 = ac.next_state(No, s3, b3);
        if ac.is_special(s0) | ac.is_special(s1) | ac.is_special(s2) | ac.is_special(s3) {
            for (w, sid) in [s0, s1, s2, s3].into_iter().enumerate() {
                let at = from.get(w).copied().unwrap_or(0) + t;
                if ac.is_match(sid) && at >= w * seg {
                    events.push((at, sid));
                }
            }
        }
    }
    let sids = [s0, s1, s2, s3];
    for w in 1..WALKS {
        let (Some(&lane), Some(mut sid)) = (lanes.get(w), sids.get(w).copied()) else {
            continue;
        };
        let to = if w + 1 == WALKS { n } else { (w + 1) * seg };
        let at0 = from.get(w).copied().unwrap_or(0);
        for (at, &b) in (at0 + seg..).zip(lane.get(seg..to - at0).unwrap_or_default()) {
            sid = ac.next_state(No, sid, b);
            if ac.is_special(sid) && ac.is_match(sid) {
                events.push((at, sid));
            }
        }
    }
    events.sort_unstable_by_key(|e| e.0);
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    /// End of the leftmost-first match (relative to hay), if any.
    last: Option<usize>,
    /// The pattern could still match beyond the clip.
    alive: bool,
}

/// How many leading bytes of a match `Det::prefix` describes.
const PREFIX_DEPTH: usize = 4;

/// `Det::prefix` of pattern `pid`: for each depth `j`, the bytes on which
/// some state reachable in `j` steps from an anchored start does not die.
/// Stops at the first depth where a state has already matched (anything may
/// follow a match) or where the states get too many to track.
fn prefix_sets(
    dfa: &DFA,
    cache: &mut Cache,
    pid: PatternID,
    look_behinds: &[Option<u8>],
) -> Vec<ByteSet> {
    const MAX_STATES: usize = 64;
    let clears = cache.clear_count();
    let mut sets = Vec::new();
    let mut states: Vec<LazyStateID> = Vec::new();
    for &lb in look_behinds {
        let config = start::Config::new()
            .anchored(Anchored::Pattern(pid))
            .look_behind(lb);
        match dfa.start_state(cache, &config) {
            Ok(sid) if !states.contains(&sid) => states.push(sid),
            Ok(_) => {}
            Err(_) => return sets,
        }
    }
    while sets.len() < PREFIX_DEPTH && !states.is_empty() {
        if states.iter().any(|s| s.is_match()) {
            break;
        }
        let mut set = ByteSet::default();
        let mut next_states = Vec::new();
        for &sid in &states {
            for b in 0..=255u8 {
                let Ok(next) = dfa.next_state(cache, sid, b) else {
                    return sets;
                };
                if !next.is_dead() {
                    set.insert(b);
                    if !next_states.contains(&next) {
                        next_states.push(next);
                    }
                }
            }
        }
        // A cleared cache would make the state ids stale: keep what is sure.
        if cache.clear_count() != clears {
            return sets;
        }
        sets.push(set);
        if next_states.len() > MAX_STATES {
            break;
        }
        states = next_states;
    }
    sets
}

/// A set of bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, byte: u8) {
        if let Some(w) = self.0.get_mut(usize::from(byte >> 6)) {
            *w |= 1u64 << (byte & 63);
        }
    }

    fn contains(&self, byte: u8) -> bool {
        let word = self.0.get(usize::from(byte >> 6)).copied().unwrap_or(0);
        word & (1u64 << (byte & 63)) != 0
    }

    fn of(bytes: &[u8]) -> ByteSet {
        let mut set = ByteSet::default();
        for &b in bytes {
            set.insert(b);
        }
        set
    }

    fn union(mut self, other: &ByteSet) -> ByteSet {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
        self
    }
}

/// Byte sets tried, in this order, as what every match of a keyword-less
/// detector must contain; the keyword-less DFA only runs near such bytes.
const TRIGGER_SETS: &[&[u8]] = &[
    b"0123456789",
    b"0123456789:",
    b"0123456789:.",
    b"0123456789:.abcdefABCDEF",
];

/// Bytes that are rare in text, tried in this order as a keyword-less
/// detector's one-byte keyword.
const RARE_BYTES: &[u8] = b"@$#~^|`";

/// Look-behind bytes that stand for every start configuration (text start,
/// word byte, non-word byte, line feed, carriage return).
const LOOK_BEHINDS: [Option<u8>; 5] = [None, Some(b'a'), Some(b' '), Some(b'\n'), Some(b'\r')];

/// Whether every match of pattern `pid` contains `byte`: no match state is
/// reachable from its anchored start states without reading `byte`. Gives
/// up (answers no) past a state budget or if the cache is cleared.
fn requires_byte(dfa: &DFA, cache: &mut Cache, pid: PatternID, byte: u8) -> bool {
    let mut set = ByteSet::default();
    set.insert(byte);
    requires_set(dfa, cache, pid, &set)
}

/// At most how many bytes from the start of a match of pattern `pid` to the
/// end of the first of `keywords` (ASCII case-insensitive) in it: walks the
/// lazy DFA and a keyword automaton in step, level by level, each path
/// ending where a keyword completes. `None` when the walk does not end
/// within `limit` bytes or a state budget, when it cycles, or when a match
/// without keyword is possible (then the window stays `max_len`).
fn keyword_reach(
    dfa: &DFA,
    cache: &mut Cache,
    pid: PatternID,
    keywords: &[Cow<'static, str>],
    limit: usize,
) -> Option<usize> {
    use aho_corasick::automaton::Automaton;
    const BUDGET: usize = 4_000;
    let ac = aho_corasick::dfa::DFA::builder()
        .ascii_case_insensitive(true)
        .match_kind(AcMatchKind::Standard)
        .build(keywords.iter().map(|k| k.as_bytes()))
        .ok()?;
    let unanchored = aho_corasick::Anchored::No;
    let ac_start = ac.start_state(unanchored).ok()?;
    let clears = cache.clear_count();
    let mut level: Vec<(LazyStateID, aho_corasick::automaton::StateID)> = Vec::new();
    for lb in LOOK_BEHINDS {
        let config = start::Config::new()
            .anchored(Anchored::Pattern(pid))
            .look_behind(lb);
        let sid = dfa.start_state(cache, &config).ok()?;
        if !level.contains(&(sid, ac_start)) {
            level.push((sid, ac_start));
        }
    }
    let mut reach = 0;
    let mut work = 0;
    for depth in 1..=limit {
        let mut next = Vec::new();
        for &(sid, aid) in &level {
            if dfa.next_eoi_state(cache, sid).ok()?.is_match() {
                return None;
            }
            for b in 0..=255u8 {
                let n = dfa.next_state(cache, sid, b).ok()?;
                if n.is_dead() || n.is_quit() {
                    continue;
                }
                if n.is_match() {
                    return None;
                }
                let a = ac.next_state(unanchored, aid, b);
                if ac.is_match(a) {
                    reach = depth;
                } else if !next.contains(&(n, a)) {
                    next.push((n, a));
                }
            }
            work += 1;
        }
        if cache.clear_count() != clears || work > BUDGET || next == level {
            return None;
        }
        if next.is_empty() {
            return Some(reach);
        }
        level = next;
    }
    None
}

/// Given that every match of pattern `pid` contains `byte`: at most how
/// many bytes precede its first `byte` (`None` if more than `limit`, or past
/// a state budget). Walks the states reachable without reading `byte`, level
/// by level, until none is left.
fn reach_before(
    dfa: &DFA,
    cache: &mut Cache,
    pid: PatternID,
    byte: u8,
    limit: usize,
) -> Option<usize> {
    const BUDGET: usize = 50_000;
    let clears = cache.clear_count();
    let mut level: Vec<LazyStateID> = Vec::new();
    for lb in LOOK_BEHINDS {
        let config = start::Config::new()
            .anchored(Anchored::Pattern(pid))
            .look_behind(lb);
        let sid = dfa.start_state(cache, &config).ok()?;
        if !level.contains(&sid) {
            level.push(sid);
        }
    }
    let mut work = 0;
    for depth in 0..=limit {
        let mut next: Vec<LazyStateID> = Vec::new();
        for &sid in &level {
            for b in (0..=255u8).filter(|&b| b != byte) {
                let n = dfa.next_state(cache, sid, b).ok()?;
                if !n.is_dead() && !n.is_quit() && !next.contains(&n) {
                    next.push(n);
                }
            }
            work += 1;
        }
        if cache.clear_count() != clears || work > BUDGET {
            return None;
        }
        if next.is_empty() {
            return Some(depth);
        }
        level = next;
    }
    None
}

/// Whether every match of pattern `pid` contains a byte of `set` (see
/// `requires_byte`).
fn requires_set(dfa: &DFA, cache: &mut Cache, pid: PatternID, set: &ByteSet) -> bool {
    const BUDGET: usize = 20_000;
    let clears = cache.clear_count();
    let classes = dfa.byte_classes();
    let mut class_seen = [false; 256];
    let mut reps = Vec::new();
    for b in 0..=255u8 {
        if set.contains(b) {
            continue;
        }
        if let Some(seen) = class_seen.get_mut(usize::from(classes.get(b)))
            && !*seen
        {
            *seen = true;
            reps.push(b);
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut stack = Vec::new();
    for lb in LOOK_BEHINDS {
        let config = start::Config::new()
            .anchored(Anchored::Pattern(pid))
            .look_behind(lb);
        let Ok(sid) = dfa.start_state(cache, &config) else {
            return false;
        };
        if seen.insert(sid) {
            stack.push(sid);
        }
    }
    while let Some(sid) = stack.pop() {
        if sid.is_match() || seen.len() > BUDGET || cache.clear_count() != clears {
            return false;
        }
        match dfa.next_eoi_state(cache, sid) {
            Ok(eoi) if !eoi.is_match() => {}
            _ => return false,
        }
        for &b in &reps {
            let Ok(next) = dfa.next_state(cache, sid, b) else {
                return false;
            };
            if cache.clear_count() != clears {
                return false;
            }
            if !next.is_dead() && !next.is_quit() && seen.insert(next) {
                stack.push(next);
            }
        }
    }
    true
}

/// Whether the pattern may have a capture group named `m` (the compiled
/// regex's group info decides).
fn may_have_group_m(pattern: &str) -> bool {
    pattern.contains("?P<m>") || pattern.contains("?<m>")
}

/// Candidate starts `[lo, hi]` (inclusive) of one detector.
#[derive(Debug, Clone, Copy)]
struct Hit {
    det: u32,
    lo: usize,
    hi: usize,
}

/// A validated match ending at `e`, with masked part `[ms, me)`.
#[derive(Debug, Clone, Copy)]
struct Cand {
    e: usize,
    ms: usize,
    me: usize,
    det: u32,
    /// The match was cut at `max_len` while the pattern went on: the bytes
    /// after it are masked as its continuation.
    capped: bool,
    /// This is such a continuation.
    cont: bool,
}

/// A finding as the core reports it (absolute offsets).
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) det: u32,
    pub(crate) span: Range<usize>,
}

/// Where output goes as it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    /// Streaming: copy every decided byte to the output.
    Eager,
    /// Whole buffer: copy only when something is masked (the caller copies
    /// the rest at the end, or borrows the input if nothing was masked).
    OnMask,
}

/// The per-input scanning state (absolute offsets throughout).
#[derive(Debug, Clone)]
pub(crate) struct Core {
    /// Keyword occurrences ending at or before this were reported.
    ac_done: usize,
    /// Keyword-less match ends at or before this were reported.
    free_done: usize,
    /// Every start position below this was decided.
    decided: usize,
    /// No masked part may start below this (the end of the last one taken).
    cursor: usize,
    /// Output was produced for the input below this.
    pub(crate) released: usize,
    /// Per detector: positions below this were probed or skipped.
    watermark: Vec<usize>,
    hits: Vec<Hit>,
    cands: Vec<Cand>,
    /// Scratch of `scan_keywords`: match states of the keyword DFA by the
    /// index of their last byte.
    kw_events: Vec<(usize, aho_corasick::automaton::StateID)>,
    /// Scratch of `free_walks`: match ends and their detectors.
    free_found: Vec<(usize, u32)>,
    /// A capped match's continuation still to be masked: (detector, start).
    cont: Option<(u32, usize)>,
}

impl Core {
    pub(crate) fn new(engine: &Engine) -> Core {
        Core {
            ac_done: 0,
            free_done: 0,
            decided: 0,
            cursor: 0,
            released: 0,
            watermark: vec![0; engine.dets.len()],
            hits: Vec::new(),
            cands: Vec::new(),
            kw_events: Vec::new(),
            free_found: Vec::new(),
            cont: None,
        }
    }

    /// The absolute offset before which a stream may drop its input.
    pub(crate) fn keep_from(&self, engine: &Engine) -> usize {
        let ac_next = (self.ac_done + 1).saturating_sub(engine.max_kw.max(1));
        let free_next = (self.free_done + 1).saturating_sub(engine.lfree + 1);
        self.decided
            .saturating_sub(engine.keep_before())
            .min(self.released)
            .min(ac_next)
            .min(free_next)
    }

    /// Scans what `hay` (the input from absolute offset `base` to its end)
    /// adds, decides what can be decided, appends output to `out` and
    /// findings to `found`. `eof`: `hay` ends where the input ends.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn advance(
        &mut self,
        engine: &Engine,
        scratch: &mut Scratch,
        hay: &[u8],
        base: usize,
        eof: bool,
        release: Release,
        out: &mut Vec<u8>,
        found: &mut Vec<Found>,
    ) {
        let end = base + hay.len();
        self.scan_keywords(engine, hay, base, end);
        self.scan_free(engine, scratch, hay, base, end, eof);

        let frontier = if eof {
            end
        } else {
            end.saturating_sub(engine.lmax + 1)
        };
        if frontier <= self.decided {
            return;
        }
        // Probe every pending window below the frontier. (Candidates whose
        // masked part starts at or after the frontier wait in `cands`.)
        let mut kept = 0;
        for i in 0..self.hits.len() {
            let Some(&hit) = self.hits.get(i) else { break };
            let det_ix = hit.det as usize;
            let (Some(det), Some(wm)) = (engine.dets.get(det_ix), self.watermark.get(det_ix))
            else {
                continue;
            };
            let from = hit.lo.max(*wm).max(base);
            let to = (hit.hi + 1).min(frontier);
            for s in from..to {
                if s - base >= hay.len() {
                    break;
                }
                if det.may_match_at(hay, s - base)
                    && let Some(c) = engine.probe_at(&mut scratch.probe, hay, base, eof, hit.det, s)
                {
                    self.cands.push(c);
                }
            }
            if let Some(wm) = self.watermark.get_mut(det_ix) {
                *wm = (*wm).max(to);
            }
            if hit.hi >= frontier {
                if let Some(slot) = self.hits.get_mut(kept) {
                    *slot = hit;
                }
                kept += 1;
            }
        }
        self.hits.truncate(kept);

        // Earliest masked part, then catalogue order, then longest. Every
        // candidate whose masked part starts below the frontier is known
        // (it starts no later than its masked part).
        self.cands
            .sort_unstable_by_key(|c| (c.ms, c.det, std::cmp::Reverse(c.me)));
        let mut cands = std::mem::take(&mut self.cands);
        let mut waiting = 0;
        for i in 0..cands.len() {
            let Some(&c) = cands.get(i) else { break };
            if c.ms >= frontier {
                if let Some(slot) = cands.get_mut(waiting) {
                    *slot = c;
                }
                waiting += 1;
                continue;
            }
            self.continue_capped(engine, hay, base, c.ms.saturating_add(1), out, found);
            if c.ms < self.cursor {
                continue;
            }
            self.take(engine, hay, base, &c, out, found);
        }
        cands.truncate(waiting);
        self.cands = cands;
        self.continue_capped(engine, hay, base, frontier, out, found);
        if release == Release::Eager && self.released < frontier {
            out.extend_from_slice(
                hay.get(self.released - base..frontier - base)
                    .unwrap_or_default(),
            );
            self.released = frontier;
        }
        self.decided = frontier;
    }

    /// Masks pending continuations of capped matches that start below
    /// `limit`.
    fn continue_capped(
        &mut self,
        engine: &Engine,
        hay: &[u8],
        base: usize,
        limit: usize,
        out: &mut Vec<u8>,
        found: &mut Vec<Found>,
    ) {
        while let Some((det, p)) = self.cont {
            if p >= limit {
                return;
            }
            self.cont = None;
            if let Some(c) = engine.continuation_at(hay, base, det, p) {
                self.take(engine, hay, base, &c, out, found);
            }
        }
    }

    /// Masks candidate `c` (which starts at or after the cursor).
    fn take(
        &mut self,
        engine: &Engine,
        hay: &[u8],
        base: usize,
        c: &Cand,
        out: &mut Vec<u8>,
        found: &mut Vec<Found>,
    ) {
        let Some(det) = engine.dets.get(c.det as usize) else {
            return;
        };
        out.extend_from_slice(
            hay.get(self.released - base..c.ms - base)
                .unwrap_or_default(),
        );
        let value = hay.get(c.ms - base..c.me - base).unwrap_or_default();
        if c.cont {
            det.style.render_continuation(value, out);
        } else {
            det.style.render(&det.id, value, out);
        }
        found.push(Found {
            det: c.det,
            span: c.ms..c.me,
        });
        self.released = c.me;
        self.cursor = c.me;
        if c.capped {
            self.cont = Some((c.det, c.e));
        }
    }

    fn scan_keywords(&mut self, engine: &Engine, hay: &[u8], base: usize, end: usize) {
        let Some(ac) = &engine.ac else { return };
        let from = (self.ac_done + 1).saturating_sub(engine.max_kw).max(base);
        if from >= end {
            return;
        }
        // What an overlapping search reports (every keyword of every match
        // state, in order of their ends), stepping the DFA in one loop.
        let Ok(sid) = ac.start_state(aho_corasick::Anchored::No) else {
            // Cannot happen (the DFA is built unanchored); fail closed.
            self.probe_everything(engine, true, from, end);
            self.ac_done = end;
            return;
        };
        let bytes = hay.get(from - base..).unwrap_or_default();
        let mut events = std::mem::take(&mut self.kw_events);
        keyword_match_states(ac, sid, bytes, engine.max_kw, &mut events);
        for &(i, sid) in &events {
            let ke = from + i + 1;
            if ke <= self.ac_done {
                continue;
            }
            for n in 0..ac.match_len(sid) {
                let pid = ac.match_pattern(sid, n);
                let k = ke - ac.pattern_len(pid);
                let Some(dets) = engine.kw_dets.get(pid.as_usize()) else {
                    continue;
                };
                for &det in dets {
                    let l = engine.dets.get(det as usize).map_or(1, |d| d.kw_reach);
                    self.hits.push(Hit {
                        det,
                        lo: ke.saturating_sub(l),
                        hi: k,
                    });
                }
            }
        }
        events.clear();
        self.kw_events = events;
        self.ac_done = end;
    }

    fn scan_free(
        &mut self,
        engine: &Engine,
        scratch: &mut Scratch,
        hay: &[u8],
        base: usize,
        end: usize,
        eof: bool,
    ) {
        let (Some(dfa), Some(cache)) = (&engine.free, scratch.free.as_mut()) else {
            return;
        };
        // A match ending at `end` may need the byte after it (look-ahead), so
        // report it only once that byte is here.
        let limit = if eof { end } else { end.saturating_sub(1) };
        if limit <= self.free_done {
            return;
        }
        let from = (self.free_done + 1).saturating_sub(engine.lfree).max(base);
        let Some(trigger) = &engine.free_trigger else {
            self.scan_free_span(engine, dfa, cache, hay, base, from, limit);
            self.free_done = limit;
            return;
        };
        // Every match contains a trigger byte `r`, so lies within
        // `[r + 1 - lfree, r + lfree]`: scan only the union of those spans.
        let reach = engine.lfree.max(1);
        let window = hay.get(from - base..limit - base).unwrap_or_default();
        let is_trigger = |b: &u8| trigger.get(usize::from(*b)).copied().unwrap_or(true);
        let mut region: Option<(usize, usize)> = None;
        let mut i = 0;
        while let Some(off) = window.get(i..).and_then(|w| w.iter().position(is_trigger)) {
            let mut r = i + off;
            let rs = (r + 1).saturating_sub(reach);
            let mut re = (r + reach).min(window.len());
            // Extend by the last trigger before the region's end, scanning
            // backwards (cheap where triggers are dense), until none is left.
            while let Some(back) = window
                .get(r + 1..re)
                .and_then(|w| w.iter().rposition(is_trigger))
            {
                r += 1 + back;
                re = (r + reach).min(window.len());
            }
            region = match region {
                Some((cs, ce)) if rs <= ce => Some((cs, re)),
                Some((cs, ce)) => {
                    self.scan_free_span(engine, dfa, cache, hay, base, from + cs, from + ce);
                    Some((rs, re))
                }
                None => Some((rs, re)),
            };
            i = re;
        }
        if let Some((cs, ce)) = region {
            self.scan_free_span(engine, dfa, cache, hay, base, from + cs, from + ce);
        }
        self.free_done = limit;
    }

    /// Runs the keyword-less DFA over `[from, to)` and records a hit for
    /// every match end after `free_done`.
    ///
    /// What `DFA::try_search_overlapping_fwd` reports (every pattern of
    /// every match state, at the offset of the byte that led to it, then
    /// the end-of-span transition), in one loop that steps through
    /// untagged states without the per-byte bookkeeping of the overlapping
    /// search and without leaving it at each match.
    #[allow(clippy::too_many_arguments)]
    fn scan_free_span(
        &mut self,
        engine: &Engine,
        dfa: &DFA,
        cache: &mut Cache,
        hay: &[u8],
        base: usize,
        from: usize,
        to: usize,
    ) {
        if self
            .run_free_dfa(engine, dfa, cache, hay, base, from, to)
            .is_err()
        {
            // Cannot happen (no quit bytes, never gives up); fail closed.
            self.probe_everything(engine, false, from, to);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_free_dfa(
        &mut self,
        engine: &Engine,
        dfa: &DFA,
        cache: &mut Cache,
        hay: &[u8],
        base: usize,
        from: usize,
        to: usize,
    ) -> Result<(), ()> {
        let (fs, ts) = (from - base, to - base);
        // Over a long span, four walks in step (see `free_walks`).
        let overlap = engine.lfree + 2;
        let seg = (ts - fs) / 4;
        if seg >= 2 * overlap + 256 && self.free_walks(engine, dfa, cache, hay, base, fs, ts)? {
            return Ok(());
        }
        let input = Input::new(hay).span(fs..ts);
        let mut sid = dfa.start_state_forward(cache, &input).map_err(|_| ())?;
        let bytes = hay.get(fs..ts).unwrap_or_default();
        let mut i = 0;
        while let Some(&byte) = bytes.get(i) {
            if sid.is_tagged() {
                sid = dfa.next_state(cache, sid, byte).map_err(|_| ())?;
                i += 1;
            } else {
                // Chew through untagged states; an unknown one is computed
                // from the state before it.
                let mut prev = sid;
                while let Some(&b) = bytes.get(i) {
                    prev = sid;
                    sid = dfa.next_state_untagged(cache, sid, b);
                    i += 1;
                    if sid.is_tagged() {
                        break;
                    }
                }
                if sid.is_unknown() {
                    let b = bytes.get(i - 1).copied().ok_or(())?;
                    sid = dfa.next_state(cache, prev, b).map_err(|_| ())?;
                }
            }
            if sid.is_tagged() {
                if sid.is_match() {
                    // Matches are delayed by one byte: they end before it.
                    self.free_matches(engine, dfa, cache, sid, base + fs + i - 1);
                } else if sid.is_dead() {
                    return Ok(());
                } else if sid.is_quit() {
                    return Err(());
                }
            }
        }
        sid = match hay.get(ts) {
            Some(&b) => dfa.next_state(cache, sid, b),
            None => dfa.next_eoi_state(cache, sid),
        }
        .map_err(|_| ())?;
        if sid.is_match() {
            self.free_matches(engine, dfa, cache, sid, base + ts);
        } else if sid.is_quit() {
            return Err(());
        }
        Ok(())
    }

    /// What `run_free_dfa` does over `hay[fs..ts]`, with four walks of the
    /// DFA in step, one per quarter, so that their dependent transition
    /// loads overlap. Each walk reports the match ends of its own quarter
    /// only, and starts `lfree + 2` bytes before it (the look-behind before
    /// its first byte is in its start state); the reports are then put in
    /// the order of one walk. It sees every match of at most `lfree` bytes
    /// that ends in its quarter, which is every match a probe can find (a
    /// probe reads at most `max_len` bytes): a longer match that started
    /// before the walk may go unreported, but a probe it would have caused
    /// finds something only where a match of at most `max_len` bytes
    /// starts, whose end the walk of that end's quarter reports; so the
    /// candidates are those of one walk. Returns false, having recorded nothing, if the
    /// lazy DFA's cache was cleared meanwhile (the other walks' states would
    /// be stale): the caller then makes one walk.
    #[allow(clippy::too_many_arguments)]
    fn free_walks(
        &mut self,
        engine: &Engine,
        dfa: &DFA,
        cache: &mut Cache,
        hay: &[u8],
        base: usize,
        fs: usize,
        ts: usize,
    ) -> Result<bool, ()> {
        let overlap = engine.lfree + 2;
        let seg = (ts - fs) / 4;
        let clears = cache.clear_count();
        // Walk `w` reads from `q[w]`: in step for `seg` bytes, then alone up
        // to the end of its quarter (the first has nothing left).
        let q: [usize; 4] = std::array::from_fn(|w| fs + (w * seg).saturating_sub(overlap));
        let qtr: [usize; 4] = std::array::from_fn(|w| fs + w * seg);
        let mut s = [LazyStateID::default(); 4];
        for (sw, &qw) in s.iter_mut().zip(&q) {
            let input = Input::new(hay).span(qw..ts);
            *sw = dfa.start_state_forward(cache, &input).map_err(|_| ())?;
        }
        if cache.clear_count() != clears {
            return Ok(false);
        }
        let mut found = std::mem::take(&mut self.free_found);
        found.clear();
        // One step of one walk; records the match ends of its quarter.
        let step = |found: &mut Vec<(usize, u32)>,
                    cache: &mut Cache,
                    w: usize,
                    sid: LazyStateID,
                    at: usize,
                    b: u8|
         -> Result<Option<LazyStateID>, ()> {
            let next = dfa.next_state(cache, sid, b).map_err(|_| ())?;
            if cache.clear_count() != clears || next.is_dead() {
                return Ok(None);
            }
            if next.is_quit() {
                return Err(());
            }
            if next.is_match() && at >= qtr.get(w).copied().unwrap_or(0) {
                for k in 0..dfa.match_len(cache, next) {
                    let pid = dfa.match_pattern(cache, next, k);
                    if let Some(&det) = engine.free_dets.get(pid.as_usize()) {
                        found.push((at, det));
                    }
                }
            }
            Ok(Some(next))
        };
        let lane = |w: usize, len: usize| {
            let from = q.get(w).copied().unwrap_or(0);
            hay.get(from..from + len).unwrap_or_default()
        };
        let (l0, l1, l2, l3) = (lane(0, seg), lane(1, seg), lane(2, seg), lane(3, seg));
        let [mut s0, mut s1, mut s2, mut s3] = s;
        let [q0, q1, q2, q3] = q;
        for (t, (((&b0, &b1), &b2), &b3)) in l0.iter().zip(l1).zip(l2).zip(l3).enumerate() {
            if !(s0.is_tagged() | s1.is_tagged() | s2.is_tagged() | s3.is_tagged()) {
                let n0 = dfa.next_state_untagged(cache, s0, b0);
                let n1 = dfa.next_state_untagged(cache, s1, b1);
                let n2 = dfa.next_state_untagged(cache, s2, b2);
                let n3 = dfa.next_state_untagged(cache, s3, b3);
                if !(n0.is_tagged() | n1.is_tagged() | n2.is_tagged() | n3.is_tagged()) {
                    (s0, s1, s2, s3) = (n0, n1, n2, n3);
                    continue;
                }
            }
            // Some walk meets a tagged state: step each one checked.
            let steps = [(s0, q0, b0), (s1, q1, b1), (s2, q2, b2), (s3, q3, b3)];
            let mut next = [LazyStateID::default(); 4];
            for (w, ((sid, qw, b), slot)) in steps.into_iter().zip(next.iter_mut()).enumerate() {
                match step(&mut found, cache, w, sid, qw + t, b)? {
                    Some(n) => *slot = n,
                    None => {
                        self.free_found = found;
                        return Ok(false);
                    }
                }
            }
            [s0, s1, s2, s3] = next;
        }
        // The rest of each quarter, one walk at a time; then the last
        // walk's end-of-span transition.
        for (w, sid) in [(1, s1), (2, s2), (3, s3)] {
            let (Some(&qw), Some(&end)) = (q.get(w), qtr.get(w + 1).or(Some(&ts))) else {
                continue;
            };
            let mut sid = sid;
            for (at, &b) in (qw + seg..).zip(hay.get(qw + seg..end).unwrap_or_default()) {
                match step(&mut found, cache, w, sid, at, b)? {
                    Some(n) => sid = n,
                    None => {
                        self.free_found = found;
                        return Ok(false);
                    }
                }
            }
            if w == 3 {
                let last = match hay.get(ts) {
                    Some(&b) => dfa.next_state(cache, sid, b),
                    None => dfa.next_eoi_state(cache, sid),
                }
                .map_err(|_| ())?;
                if cache.clear_count() != clears {
                    self.free_found = found;
                    return Ok(false);
                }
                if last.is_quit() {
                    return Err(());
                }
                if last.is_match() {
                    for k in 0..dfa.match_len(cache, last) {
                        let pid = dfa.match_pattern(cache, last, k);
                        if let Some(&det) = engine.free_dets.get(pid.as_usize()) {
                            found.push((ts, det));
                        }
                    }
                }
            }
        }
        // In the order of one walk: by end, then pattern (a stable sort).
        found.sort_by_key(|&(at, _)| at);
        for &(at, det) in &found {
            let e = base + at;
            if e <= self.free_done {
                continue;
            }
            let l = engine.dets.get(det as usize).map_or(1, |d| d.max_len);
            self.hits.push(Hit {
                det,
                lo: e.saturating_sub(l),
                hi: e.saturating_sub(1),
            });
        }
        found.clear();
        self.free_found = found;
        Ok(true)
    }

    /// Records a hit for each pattern of match state `sid`, whose matches
    /// end at `e`.
    fn free_matches(
        &mut self,
        engine: &Engine,
        dfa: &DFA,
        cache: &Cache,
        sid: LazyStateID,
        e: usize,
    ) {
        if e <= self.free_done {
            return;
        }
        for k in 0..dfa.match_len(cache, sid) {
            let pid = dfa.match_pattern(cache, sid, k);
            let Some(&det) = engine.free_dets.get(pid.as_usize()) else {
                continue;
            };
            let l = engine.dets.get(det as usize).map_or(1, |d| d.max_len);
            self.hits.push(Hit {
                det,
                lo: e.saturating_sub(l),
                hi: e.saturating_sub(1),
            });
        }
    }

    fn probe_everything(&mut self, engine: &Engine, keyworded: bool, from: usize, to: usize) {
        for (i, det) in engine.dets.iter().enumerate() {
            if det.keyworded == keyworded
                && let Ok(det) = u32::try_from(i)
            {
                self.hits.push(Hit {
                    det,
                    lo: from,
                    hi: to,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::AhoCorasick;

    fn source(id: &'static str, pattern: &'static str) -> Source {
        Source {
            id: Cow::Borrowed(id),
            category: Category::Pii,
            keywords: Vec::new(),
            pattern: Cow::Borrowed(pattern),
            validators: Cow::Borrowed(&[]),
            max_len: 64,
            style: Style::redact(),
        }
    }

    #[test]
    fn keyword_windows_are_as_narrow_as_the_pattern_allows() {
        let kw = |id, pattern, kws: &[&'static str], max_len| Source {
            keywords: kws.iter().map(|k| Cow::Borrowed(*k)).collect(),
            max_len,
            ..source(id, pattern)
        };
        let engine = Engine::new(
            vec![
                kw("jwt", r"eyJ[A-Za-z0-9_-]{10,}", &["eyj"], 500),
                kw("pre", r"(?i)(?:api|x)_key=[a-z0-9]{8}", &["key="], 100),
                kw("loop", r"BEGIN [A-Z ]*KEY", &["key"], 300),
                kw("mid", r"[a-z]{0,5}tok[0-9]+", &["tok"], 40),
            ],
            &[],
        )
        .unwrap();
        let reach: Vec<usize> = engine.dets.iter().map(|d| d.kw_reach).collect();
        assert_eq!(reach, [3, 8, 300, 8]);
    }

    /// The keyword-less DFA loop (one walk, or four in step over a long
    /// span) reports what the library's overlapping search reports, on
    /// inputs dense in digits, separators and matches.
    #[test]
    fn free_dfa_loop_reports_what_the_overlapping_search_reports() {
        use regex_automata::hybrid::dfa::OverlappingState;
        let engine = Engine::new(
            vec![
                source("card", r"\b(?:[0-9]{13,19}|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]{4})\b"),
                source("phone", r"(?:\B\+[1-9][0-9]{7,14}|\b[2-9][0-9]{2}[.-][2-9][0-9]{2}[.-][0-9]{4})\b"),
                source("ssn", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b"),
                source("btc", r"\b[123mn][1-9A-HJ-NP-Za-km-z]{24,34}\b"),
                source("ipv4", r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\b"),
            ],
            &[],
        )
        .unwrap();
        let dfa = engine.free.as_ref().unwrap();
        let mut cache = dfa.create_cache();
        let alphabet = b"0123456789012345678901234567 .-+mnxAZ\n";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..330 {
            // Short spans (one walk) and long ones (four walks in step).
            let len = if round < 300 {
                1 + round % 97
            } else {
                1500 + 211 * (round - 300)
            };
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let (from, to) = (round % 5 % len, len - round % 3 % len);
            let (from, to) = (from.min(to), to.max(from));
            let mut expected = Vec::new();
            let input = Input::new(&hay[..]).span(from..to);
            let mut state = OverlappingState::start();
            loop {
                dfa.try_search_overlapping_fwd(&mut cache, &input, &mut state)
                    .unwrap();
                let Some(hm) = state.get_match() else { break };
                let det = engine.free_dets[hm.pattern().as_usize()];
                expected.push((det, hm.offset()));
            }
            let mut core = Core::new(&engine);
            core.run_free_dfa(&engine, dfa, &mut cache, &hay, 0, from, to)
                .unwrap();
            let got: Vec<(u32, usize)> = core.hits.iter().map(|h| (h.det, h.hi + 1)).collect();
            assert_eq!(
                got,
                expected,
                "{:?} {from}..{to}",
                String::from_utf8_lossy(&hay)
            );
        }
    }

    /// The keyword loop reports what aho-corasick's overlapping search
    /// reports (every keyword occurrence, overlapping ones included, in
    /// the order of their ends), whole and from any resume point.
    #[test]
    fn keyword_loop_reports_what_the_overlapping_search_reports() {
        let kw = |id, pattern, kws: &[&'static str]| Source {
            keywords: kws.iter().map(|k| Cow::Borrowed(*k)).collect(),
            max_len: 20,
            ..source(id, pattern)
        };
        let engine = Engine::new(
            vec![
                kw("a", r"ab[a-z]{2}", &["ab", "abab"]),
                kw("b", r"b[a-z]{2}", &["ba", "b"]),
                kw("c", r"(?i)key[0-9]", &["key", "ey"]),
            ],
            &[],
        )
        .unwrap();
        let keywords = ["ab", "abab", "ba", "b", "key", "ey"];
        assert_eq!(engine.kw_dets.len(), keywords.len());
        let reference = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(AcMatchKind::Standard)
            .build(keywords)
            .unwrap();
        let alphabet = b"abABkKeEyY1 ";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..340 {
            // Short inputs (one walk) and long ones (several walks in step).
            let len = if round < 300 {
                1 + round % 61
            } else {
                1000 + 97 * (round - 300)
            };
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let done = round % 7 % len;
            let mut expected = Vec::new();
            for m in reference.find_overlapping_iter(&hay[..]) {
                if m.end() <= done {
                    continue;
                }
                // The engine numbers its keywords in the same order.
                let k = m.pattern().as_usize();
                for &det in &engine.kw_dets[k] {
                    let l = engine.dets[det as usize].kw_reach;
                    expected.push((det, m.end().saturating_sub(l), m.start()));
                }
            }
            let mut core = Core::new(&engine);
            core.ac_done = done;
            core.scan_keywords(&engine, &hay, 0, hay.len());
            let got: Vec<(u32, usize, usize)> =
                core.hits.iter().map(|h| (h.det, h.lo, h.hi)).collect();
            assert_eq!(
                got,
                expected,
                "{:?} from {done}",
                String::from_utf8_lossy(&hay)
            );
        }
    }

    #[test]
    fn rare_required_bytes_become_keywords() {
        let engine = Engine::new(
            vec![
            source(
                "email",
                r"\b[a-z0-9._%+-]{1,30}@[a-z0-9.-]{1,30}\.[a-z]{2,6}\b",
            ),
            source("card", r"\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b"),
            source("dollar-or-hash", r"[$#]\d{3}"),
            source("dollar", r"(?:US)?\$\d+"),
            source(
                "email2",
                r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,4}\.[A-Za-z]{2,24}\b",
            ),
            ],
            &[],
        )
        .unwrap();
        let keyworded: Vec<bool> = engine.dets.iter().map(|d| d.keyworded).collect();
        assert_eq!(keyworded, [true, false, false, true, true]);
        // At most 30 (then 64) local-part bytes before the `@`.
        assert_eq!((engine.dets[0].kw_reach, engine.dets[4].kw_reach), (31, 64));
        assert_eq!(engine.free_dets, [1, 2]);
        let digits: [bool; 256] = std::array::from_fn(|b| (b as u8).is_ascii_digit());
        assert_eq!(engine.free_trigger, Some(digits));
        let d = &engine.dets;
        assert!(d[0].may_match_at(b"ab@c", 0) && !d[0].may_match_at(b"@b", 0));
        assert!(d[1].may_match_at(b"1234", 0) && !d[1].may_match_at(b"12x4", 0));
        assert!(
            d[1].may_match_at(b"12", 0),
            "the end of input is no evidence"
        );
        assert!(d[3].may_match_at(b"$1", 0) && d[3].may_match_at(b"US$1", 0));
        // `\b` at the start: not inside a word.
        assert!(d[0].may_match_at(b" ab@c", 1) && !d[0].may_match_at(b"xab@c", 1));
        assert!(!d[3].may_match_at(b"UK$1", 0));
    }
}
