//! The keyword prefilter: finds every occurrence of every keyword (ASCII
//! case-insensitive, overlapping) without stepping an automaton per byte.
//!
//! Each keyword of two or more bytes gets one *anchor*: the two-byte window
//! of it that is rarest by a static estimate of byte frequencies in text and
//! data (letters by their English frequency, digits and the punctuation of
//! logs, SQL and JSON as common; see `commonness`). The scan tests every
//! two-byte window of the input against a 64 Kibit set of anchors (folded
//! with `| 0x20`, which maps both cases of a letter to one value and never
//! misses: two bytes that are equal ignoring ASCII case fold equal), and
//! only where a window is in the set compares the keywords anchored there
//! with the input. One-byte keywords (the `@` the engine derives for e-mail)
//! are found with `memchr`'s vectorized search.
//!
//! Each occurrence is found exactly once (through its keyword's one anchor),
//! and the result is exactly what an overlapping ASCII case-insensitive
//! Aho-Corasick search reports, in order of end offset (the property test
//! `prefilter_agrees_with_aho_corasick` below checks this against
//! `aho-corasick` itself).

use std::fmt;

/// One keyword occurrence: its start and end (absolute) and keyword index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Occurrence {
    pub(crate) end: usize,
    pub(crate) start: usize,
    pub(crate) keyword: u32,
}

/// Finds keyword occurrences (see the module doc).
pub(crate) struct KeywordFinder {
    /// Bit `key` set: some anchor folds to `key = fold(a) << 8 | fold(b)`.
    table: Box<[u64; 1024]>,
    /// `(key, keyword, offset of the anchor in the keyword)`, sorted by key.
    anchored: Vec<(u16, u32, u32)>,
    /// The keywords, lowercase.
    keywords: Vec<Box<[u8]>>,
    /// The one-byte keywords: (byte, keyword), both cases of a letter.
    single: Vec<(u8, u32)>,
    /// The distinct bytes of `single`.
    single_bytes: Vec<u8>,
}

impl fmt::Debug for KeywordFinder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeywordFinder")
            .field("keywords", &self.keywords.len())
            .field("anchors", &self.anchored.len())
            .field("single", &self.single.len())
            .finish_non_exhaustive()
    }
}

fn fold(b: u8) -> u8 {
    b | 0x20
}

fn key(a: u8, b: u8) -> u16 {
    (u16::from(fold(a)) << 8) | u16::from(fold(b))
}

/// How common a byte is in the text a gateway sees, in parts per thousand
/// (a static estimate: English letter frequencies scaled to prose plus
/// identifiers, and digits and punctuation as common as in logs, SQL rows
/// and JSON). Only the order matters: anchors avoid common bytes.
fn commonness(b: u8) -> u32 {
    match b.to_ascii_lowercase() {
        b' ' => 150,
        b'e' => 80,
        b't' => 60,
        b'a' | b'o' => 55,
        b'i' | b'n' | b's' => 50,
        b'r' | b'h' => 40,
        b'0'..=b'9' => 30,
        b'd' | b'l' => 28,
        b'"' | b'c' | b'u' => 22,
        b'm' | b'w' | b'f' | b':' | b',' | b'-' => 18,
        b'g' | b'y' | b'p' | b'b' | b'.' | b'\n' | b'_' => 15,
        b'=' | b'/' | b'v' | b'k' | b'(' | b')' | b'\'' | b'{' | b'}' => 8,
        b'j' | b'x' | b'q' | b'z' => 2,
        _ => 1,
    }
}

impl KeywordFinder {
    /// A finder for `keywords` (non-empty, lowercase ASCII or any bytes).
    pub(crate) fn new(keywords: &[String]) -> KeywordFinder {
        let mut table = Box::new([0u64; 1024]);
        let mut anchored = Vec::new();
        let mut single = Vec::new();
        for (i, kw) in keywords.iter().enumerate() {
            let Ok(ix) = u32::try_from(i) else { break };
            let bytes = kw.as_bytes();
            match bytes {
                [] => {}
                [b] => {
                    single.push((b.to_ascii_lowercase(), ix));
                    if b.is_ascii_alphabetic() {
                        single.push((b.to_ascii_uppercase(), ix));
                    }
                }
                _ => {
                    let best = bytes
                        .windows(2)
                        .enumerate()
                        .min_by_key(|(_, w)| w.iter().map(|&b| commonness(b)).product::<u32>());
                    if let Some((off, [a, b])) = best {
                        let k = key(*a, *b);
                        if let Some(word) = table.get_mut(usize::from(k >> 6)) {
                            *word |= 1 << (k & 63);
                        }
                        anchored.push((k, ix, u32::try_from(off).unwrap_or(u32::MAX)));
                    }
                }
            }
        }
        anchored.sort_unstable();
        let mut single_bytes: Vec<u8> = single.iter().map(|&(b, _)| b).collect();
        single_bytes.sort_unstable();
        single_bytes.dedup();
        KeywordFinder {
            table,
            anchored,
            keywords: keywords
                .iter()
                .map(|k| Box::from(k.to_ascii_lowercase().as_bytes()))
                .collect(),
            single,
            single_bytes,
        }
    }

    /// Appends to `out` every occurrence lying within `hay[from..]`, as
    /// absolute offsets (`hay` starts at `base`), sorted by end, then start,
    /// then keyword.
    pub(crate) fn find(&self, hay: &[u8], base: usize, from: usize, out: &mut Vec<Occurrence>) {
        let first = out.len();
        let window = hay.get(from..).unwrap_or_default();
        let mut iter = window.iter();
        if let Some(&b0) = iter.next() {
            let mut prev = fold(b0);
            for (j, &b) in iter.enumerate() {
                let cur = fold(b);
                let k = (usize::from(prev) << 8) | usize::from(cur);
                prev = cur;
                let bit = self.table.get(k >> 6).copied().unwrap_or(0) >> (k & 63);
                if bit & 1 != 0 {
                    self.verify(hay, from, from + j, k, base, out);
                }
            }
        }
        self.find_single(window, base + from, out);
        if let Some(found) = out.get_mut(first..) {
            found.sort_unstable();
        }
    }

    /// The keywords anchored at `hay[at..at + 2]` (folded key `k`).
    fn verify(
        &self,
        hay: &[u8],
        from: usize,
        at: usize,
        k: usize,
        base: usize,
        out: &mut Vec<Occurrence>,
    ) {
        let lo = self.anchored.partition_point(|&(key, _, _)| usize::from(key) < k);
        for &(key, ix, off) in self.anchored.get(lo..).unwrap_or_default() {
            if usize::from(key) != k {
                break;
            }
            let Some(start) = at.checked_sub(off as usize).filter(|&s| s >= from) else {
                continue;
            };
            let Some(kw) = self.keywords.get(ix as usize) else {
                continue;
            };
            if hay
                .get(start..start + kw.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(kw))
            {
                out.push(Occurrence {
                    end: base + start + kw.len(),
                    start: base + start,
                    keyword: ix,
                });
            }
        }
    }

    fn find_single(&self, window: &[u8], base: usize, out: &mut Vec<Occurrence>) {
        let mut push = |i: usize| {
            let Some(&b) = window.get(i) else { return };
            for &(sb, ix) in &self.single {
                if sb == b {
                    out.push(Occurrence {
                        end: base + i + 1,
                        start: base + i,
                        keyword: ix,
                    });
                }
            }
        };
        match self.single_bytes.as_slice() {
            [] => {}
            [a] => memchr::memchr_iter(*a, window).for_each(&mut push),
            [a, b] => memchr::memchr2_iter(*a, *b, window).for_each(&mut push),
            [a, b, c] => memchr::memchr3_iter(*a, *b, *c, window).for_each(&mut push),
            many => window
                .iter()
                .enumerate()
                .filter(|(_, b)| many.binary_search(b).is_ok())
                .for_each(|(i, _)| push(i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::{AhoCorasick, MatchKind};
    use proptest::prelude::*;

    fn reference(keywords: &[String], hay: &[u8], from: usize) -> Vec<Occurrence> {
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(keywords)
            .unwrap();
        let input = aho_corasick::Input::new(hay).span(from..hay.len());
        let mut v: Vec<Occurrence> = ac
            .find_overlapping_iter(input)
            .map(|m| Occurrence {
                end: 7 + m.end(),
                start: 7 + m.start(),
                keyword: m.pattern().as_u32(),
            })
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn finds_overlapping_case_insensitive_occurrences() {
        let kws: Vec<String> = ["ghp_", "p_", "@", "password", "a", "pass", "sk-"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let finder = KeywordFinder::new(&kws);
        let hay = b"x GHP_abc PassWord=@ sk-Sk- ghp";
        let mut got = Vec::new();
        finder.find(hay, 7, 0, &mut got);
        assert_eq!(got, reference(&kws, hay, 0));
        assert!(got.len() > 8);
        let mut tail = Vec::new();
        finder.find(hay, 7, 5, &mut tail);
        assert_eq!(tail, reference(&kws, hay, 5));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// The fast path and a straightforward Aho-Corasick scan agree.
        #[test]
        fn prefilter_agrees_with_aho_corasick(
            kws in prop::collection::vec("[a-cA-C_@.$ -]{1,5}", 1..12),
            hay in prop::collection::vec(prop::sample::select(b"abcABC_@.$ -x\0\xff".to_vec()), 0..200),
            from in 0usize..20,
        ) {
            let kws: Vec<String> = kws.iter().map(|k| k.to_ascii_lowercase()).collect();
            let from = from.min(hay.len());
            let finder = KeywordFinder::new(&kws);
            let mut got = Vec::new();
            finder.find(&hay, 7, from, &mut got);
            prop_assert_eq!(got, reference(&kws, &hay, from));
        }
    }
}
