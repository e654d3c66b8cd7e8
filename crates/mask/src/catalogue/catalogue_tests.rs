//! The catalogue's own checks: every spec is well formed and compiles as a
//! DFA, and every testdata case holds for a reference matcher that runs the
//! whole catalogue (patterns, validators, priority order) without the engine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use regex_automata::dfa::{self, dense};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use regex_automata::{Input, hybrid};
use serde::Deserialize;

use super::BUILTIN;
use crate::spec::{Category, DetectorSpec, Validator};
use crate::validate::validate;

/// The dialect every pattern is compiled in.
fn syntax_config() -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false)
}

fn compile(spec: &DetectorSpec) -> Regex {
    Regex::builder()
        .syntax(syntax_config())
        .configure(Regex::config().utf8_empty(false))
        .build(spec.pattern)
        .unwrap_or_else(|e| panic!("{}: {e}", spec.id))
}

/// PEM-style blocks (private keys) may be up to 8 KiB; everything else 4 KiB.
fn len_cap(spec: &DetectorSpec) -> usize {
    if spec.pattern.contains("PRIVATE KEY") {
        8 * 1024
    } else {
        4 * 1024
    }
}

#[test]
fn catalogue_specs_are_well_formed() {
    let mut ids = BTreeSet::new();
    for spec in BUILTIN {
        assert!(ids.insert(spec.id), "duplicate id {}", spec.id);
        assert!(
            !spec.id.is_empty()
                && spec.id.split('-').all(|p| !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())),
            "id not kebab-case: {}",
            spec.id
        );
        assert!(!spec.description.is_empty(), "{}: no description", spec.id);
        for kw in spec.keywords {
            assert!(!kw.is_empty(), "{}: empty keyword", spec.id);
            assert!(
                kw.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()),
                "{}: keyword {kw:?} not lowercase ASCII",
                spec.id
            );
        }
        if spec.category == Category::Secret {
            assert!(
                !spec.keywords.is_empty(),
                "{}: secret without keywords",
                spec.id
            );
        }
        assert!(
            spec.max_len > 0 && spec.max_len <= len_cap(spec),
            "{}: max_len {}",
            spec.id,
            spec.max_len
        );
        for v in spec.validators {
            match v {
                Validator::MinEntropy(f) => assert!(*f > 0.0 && *f < 8.0, "{}", spec.id),
                Validator::ContextBefore { words, window } => {
                    assert!(
                        !words.is_empty() && *window > 0 && *window <= 256,
                        "{}",
                        spec.id
                    );
                    assert!(
                        words
                            .iter()
                            .all(|w| !w.is_empty() && w.bytes().all(|b| !b.is_ascii_uppercase()))
                    );
                }
                _ => {}
            }
        }
    }
}

#[test]
fn catalogue_max_len_is_the_longest_match() {
    for spec in BUILTIN {
        let hir = syntax::parse_with(spec.pattern, &syntax_config())
            .unwrap_or_else(|e| panic!("{}: {e}", spec.id));
        let max = hir.properties().maximum_len();
        assert_eq!(max, Some(spec.max_len), "{}: max_len", spec.id);
        // Only the ASCII word boundary (\b, \B) is used as an assertion, so the
        // patterns run as DFAs on any window of a stream.
        let props = hir.properties();
        let look = props.look_set();
        assert!(
            look.iter()
                .all(|l| matches!(format!("{l:?}").as_str(), "WordAscii" | "WordAsciiNegate")),
            "{}: pattern uses look-around other than \\b: {look:?}",
            spec.id
        );
    }
}

/// The engine probes every detector anchored at candidate positions, so each
/// pattern must build as an anchored dense DFA within a modest size. The
/// keyword-less ones (PII) also run unanchored, in one lazy DFA: they must
/// build as an unanchored lazy (hybrid) DFA. (Unanchored dense DFAs of
/// bounded repetitions such as an e-mail local part `{1,64}` grow
/// exponentially with the number of overlapping starts, which only a lazy DFA
/// avoids by building the states an input actually reaches.)
#[test]
fn catalogue_patterns_build_as_dfas() {
    for spec in BUILTIN {
        let dfa = dense::Builder::new()
            .syntax(syntax_config())
            .configure(
                dense::Config::new()
                    .start_kind(dfa::StartKind::Anchored)
                    .dfa_size_limit(Some(16 << 20))
                    .determinize_size_limit(Some(16 << 20)),
            )
            .build(spec.pattern)
            .unwrap_or_else(|e| panic!("{}: {e}", spec.id));
        assert!(dfa.memory_usage() > 0);
        if spec.keywords.is_empty() {
            let lazy = hybrid::dfa::DFA::builder()
                .syntax(syntax_config())
                .build(spec.pattern)
                .unwrap_or_else(|e| panic!("{}: {e}", spec.id));
            let mut cache = lazy.create_cache();
            let hay = b"contact jane.doe@example.com or +1 415 555 0123 from 192.0.2.1";
            lazy.try_search_fwd(&mut cache, &Input::new(&hay[..]))
                .unwrap_or_else(|e| panic!("{}: {e}", spec.id));
        }
    }
}

/// Issue 17 asks for at least 600 provider formats.
const MIN_SECRETS: usize = 600;

#[test]
fn catalogue_has_enough_detectors() {
    let secrets = BUILTIN
        .iter()
        .filter(|s| s.category == Category::Secret)
        .count();
    assert!(secrets >= MIN_SECRETS, "only {secrets} secret detectors");
    let pii: BTreeSet<&str> = BUILTIN
        .iter()
        .filter(|s| s.category == Category::Pii)
        .map(|s| s.id)
        .collect();
    for id in [
        "email",
        "credit-card",
        "iban",
        "phone",
        "us-ssn",
        "ipv4",
        "ipv6",
        "us-ssn-bare",
        "uk-nino",
        "ca-sin",
        "bitcoin-address",
        "bitcoin-segwit-address",
        "ethereum-address",
        "phone-national",
    ] {
        assert!(pii.contains(id), "missing PII detector {id}");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    detector: String,
    kind: String,
    input: String,
    output: Option<String>,
    findings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct File {
    case: Vec<Case>,
}

fn load_cases() -> Vec<(String, Case)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/mask");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        let file: File = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let fname = p.file_name().unwrap().to_string_lossy().into_owned();
        out.extend(file.case.into_iter().map(|c| (fname.clone(), c)));
    }
    out
}

/// One candidate of the reference matcher.
#[derive(Debug, Clone)]
struct Found {
    prio: usize,
    masked: (usize, usize),
}

/// The reference matcher: for every detector, the leftmost-first match at
/// every position where one starts (as the engine probes anchored), kept if
/// it passes the detector's validators; checks the keyword and max_len
/// contracts on the way.
fn reference_candidates(regexes: &[Regex], input: &[u8]) -> Vec<Found> {
    let window = BUILTIN
        .iter()
        .flat_map(|s| s.validators)
        .filter_map(|v| match v {
            Validator::ContextBefore { window, .. } => Some(*window),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    for (prio, (spec, re)) in BUILTIN.iter().zip(regexes).enumerate() {
        let mut caps = re.create_captures();
        let mut from = 0;
        while from <= input.len() {
            re.search_captures(&Input::new(input).range(from..), &mut caps);
            let Some(whole) = caps.get_match() else { break };
            from = whole.start() + 1;
            let masked = caps
                .get_group_by_name("m")
                .map_or(whole.range(), |m| m.range());
            let w = &input[whole.range()];
            assert!(
                w.len() <= spec.max_len,
                "{}: match longer than max_len",
                spec.id
            );
            if !spec.keywords.is_empty() {
                let lower = w.to_ascii_lowercase();
                assert!(
                    spec.keywords
                        .iter()
                        .any(|k| lower.windows(k.len()).any(|x| x == k.as_bytes())),
                    "{}: match {:?} contains no keyword",
                    spec.id,
                    String::from_utf8_lossy(w)
                );
            }
            let before = &input[whole.start().saturating_sub(window)..whole.start()];
            if spec
                .validators
                .iter()
                .all(|v| validate(v, w, &input[masked.clone()], before))
            {
                out.push(Found {
                    prio,
                    masked: (masked.start, masked.end),
                });
            }
        }
    }
    out
}

/// The engine's overlap rule, on masked parts: earliest masked part, then
/// catalogue order, then longest; a candidate whose masked part starts inside
/// one already taken is dropped.
fn resolve(mut found: Vec<Found>) -> Vec<Found> {
    found.sort_by_key(|f| (f.masked.0, f.prio, std::cmp::Reverse(f.masked.1)));
    let mut kept: Vec<Found> = Vec::new();
    let mut end = 0;
    for f in found {
        if kept.is_empty() || f.masked.0 >= end {
            end = end.max(f.masked.1);
            kept.push(f);
        }
    }
    kept
}

#[test]
fn catalogue_testdata_cases_hold() {
    let regexes: Vec<Regex> = BUILTIN.iter().map(compile).collect();
    let by_id: BTreeMap<&str, usize> = BUILTIN.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let cases = load_cases();
    assert!(!cases.is_empty());
    let mut names = BTreeSet::new();
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (file, case) in &cases {
        assert!(
            names.insert(case.name.clone()),
            "duplicate case name {}",
            case.name
        );
        let Some(&idx) = by_id.get(case.detector.as_str()) else {
            panic!("{file}: {}: unknown detector {}", case.name, case.detector);
        };
        let input = case.input.as_bytes();
        let found = resolve(reference_candidates(&regexes, input));
        let mut output = Vec::new();
        let mut at = 0;
        for f in &found {
            output.extend_from_slice(&input[at..f.masked.0]);
            output.extend_from_slice(format!("[MASKED:{}]", BUILTIN[f.prio].id).as_bytes());
            at = f.masked.1;
        }
        output.extend_from_slice(&input[at..]);
        let ids: Vec<&str> = found.iter().map(|f| BUILTIN[f.prio].id).collect();
        let expected_output = case.output.as_deref().unwrap_or(&case.input);
        let c = counts.entry(BUILTIN[idx].id).or_default();
        match case.kind.as_str() {
            "positive" => {
                c.0 += 1;
                if !ids.contains(&case.detector.as_str()) {
                    failures.push(format!(
                        "{file}: {}: own detector did not fire: {ids:?}",
                        case.name
                    ));
                }
            }
            "negative" => {
                c.1 += 1;
                if case.output.is_some() || !case.findings.is_empty() {
                    failures.push(format!(
                        "{file}: {}: negative with output or findings",
                        case.name
                    ));
                }
            }
            k => panic!("{file}: {}: unknown kind {k}", case.name),
        }
        if output != expected_output.as_bytes() || ids != case.findings {
            failures.push(format!(
                "{file}: {}:\n  input    {:?}\n  expected {:?} {:?}\n  got      {:?} {:?}",
                case.name,
                case.input,
                expected_output,
                case.findings,
                String::from_utf8_lossy(&output),
                ids
            ));
        }
        // Masked output is a fixed point: no detector fires on it again.
        let again = resolve(reference_candidates(&regexes, &output));
        if !again.is_empty() {
            failures.push(format!(
                "{file}: {}: masked output {:?} is masked again by {:?}",
                case.name,
                String::from_utf8_lossy(&output),
                again.iter().map(|f| BUILTIN[f.prio].id).collect::<Vec<_>>()
            ));
        }
    }
    for spec in BUILTIN {
        let (p, n) = counts.get(spec.id).copied().unwrap_or_default();
        if p < 3 || n < 2 {
            failures.push(format!(
                "{}: {p} positives, {n} negatives (need 3 and 2)",
                spec.id
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
