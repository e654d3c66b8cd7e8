//! Engine behaviour with user rules (independent of the built-in catalogue).
// Test code: a failed unwrap is a failed test (clippy.toml allows this in
// `#[test]` functions only, not in their helpers).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis_mask::{BuildError, Category, FieldRule, Masker, Rule, Style};

fn masker() -> Masker {
    Masker::builder()
        .default_catalogue(false)
        .rule(
            Rule::regex("akid", r"\bAKIA[0-9A-Z]{16}\b")
                .keywords(["akia"])
                .max_len(20),
        )
        .rule(
            Rule::regex("pw", r"(?i)password\s*[:=]\s*(?P<m>[^\s,;]{4,})")
                .keywords(["password"])
                .max_len(80),
        )
        .rule(
            Rule::regex(
                "email",
                r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}\b",
            )
            .max_len(280)
            .category(Category::Pii),
        )
        .rule(
            Rule::regex("digits", r"\b\d{4}-\d{4}-\d{4}-\d{4}\b")
                .max_len(19)
                .category(Category::Pii),
        )
        .rule(
            Rule::regex("pem", r"-----BEGIN KEY-----[\s\S]*?-----END KEY-----")
                .keywords(["-----begin key-----"])
                .max_len(200),
        )
        .build()
        .unwrap()
}

fn streamed(
    m: &Masker,
    input: &[u8],
    chunk: usize,
) -> (Vec<u8>, Vec<(String, std::ops::Range<usize>)>) {
    let mut s = m.stream();
    let mut out = Vec::new();
    let mut f = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        f.extend(
            s.push(c, &mut out)
                .iter()
                .map(|x| (x.detector().to_string(), x.span())),
        );
    }
    f.extend(
        s.finish(&mut out)
            .iter()
            .map(|x| (x.detector().to_string(), x.span())),
    );
    (out, f)
}

fn whole(m: &Masker, input: &[u8]) -> (Vec<u8>, Vec<(String, std::ops::Range<usize>)>) {
    let r = m.mask(input);
    (
        r.output().to_vec(),
        r.findings()
            .iter()
            .map(|x| (x.detector().to_string(), x.span()))
            .collect(),
    )
}

fn check(m: &Masker, input: &[u8], expect: &str) {
    let w = whole(m, input);
    assert_eq!(
        String::from_utf8_lossy(&w.0),
        expect,
        "input {:?}",
        String::from_utf8_lossy(input)
    );
    for n in 1..=64 {
        assert_eq!(streamed(m, input, n), w, "chunk size {n}");
    }
}

#[test]
fn masks_keyword_and_keywordless_rules() {
    let m = masker();
    check(&m, b"key AKIAABCDEFGHIJKLMNOP end", "key [MASKED:akid] end");
    check(
        &m,
        b"key AKIAABCDEFGHIJKLMNOPQ end",
        "key AKIAABCDEFGHIJKLMNOPQ end",
    );
    check(
        &m,
        b"PASSWORD = s3cr3t!x, next",
        "PASSWORD = [MASKED:pw], next",
    );
    check(&m, b"mail ada@example.org now", "mail [MASKED:email] now");
    check(&m, b"card 4111-1111-1111-1111", "card [MASKED:digits]");
    check(
        &m,
        b"x -----BEGIN KEY-----\nabc\n-----END KEY----- y",
        "x [MASKED:pem] y",
    );
    check(&m, b"", "");
    // A value longer than the cap: its tail is masked as a continuation.
    let long = format!("password={} next", "x".repeat(150));
    check(&m, long.as_bytes(), "password=[MASKED:pw] next");
    check(
        &m,
        b"nothing to see \x00\xff\xfe here",
        "nothing to see \u{0}\u{fffd}\u{fffd} here",
    );
}

#[test]
fn overlap_prefers_earliest_then_catalogue_order() {
    let m = Masker::builder()
        .default_catalogue(false)
        .rule(Rule::literal("short", "abc"))
        .rule(Rule::literal("long", "abcdef"))
        .rule(Rule::literal("later", "cdefgh"))
        .build()
        .unwrap();
    let m2 = Masker::builder()
        .default_catalogue(false)
        .rule(Rule::regex("generic", r"key=(?P<m>\S+)").keywords(["key="]))
        .rule(Rule::regex("specific", r"sk_[a-z0-9]{6}").keywords(["sk_"]))
        .build()
        .unwrap();
    // The generic rule starts first and masks the same value from the same
    // byte: earlier masked part wins, then rule order.
    check(&m2, b"key=sk_abc123 x", "key=[MASKED:generic] x");
    // A value that starts before the masked part of a later-found match.
    check(
        &m2,
        b"a sk_abc123 key=zz",
        "a [MASKED:specific] key=[MASKED:generic]",
    );
    // Same start: catalogue order decides; the later rule overlapping it is
    // dropped.
    check(&m, b"xabcdefgh", "x[MASKED:short]defgh");
    check(&m, b"xabcx", "x[MASKED:short]x");
    check(&m, b"xbcdefghij", "xb[MASKED:later]ij");
}

#[test]
fn capped_match_is_masked_anyway() {
    let m = masker();
    let mut input = b"a -----BEGIN KEY-----\n".to_vec();
    input.extend(std::iter::repeat_n(b'Q', 500));
    input.extend(b" tail");
    let w = whole(&m, &input);
    // Cut at the 200-byte cap, and what follows up to the next whitespace is
    // masked too, as continuations of the same finding.
    assert_eq!(String::from_utf8_lossy(&w.0), "a [MASKED:pem] tail");
    let spans: Vec<_> = w.1.iter().map(|f| (f.0.as_str(), f.1.clone())).collect();
    assert_eq!(
        spans,
        [("pem", 2..202), ("pem", 202..402), ("pem", 402..522)]
    );
    for n in [1, 7, 64, 300] {
        assert_eq!(streamed(&m, &input, n), w);
    }
}

#[test]
fn findings_are_in_order_with_stream_offsets() {
    let m = masker();
    let input = b"ada@example.org AKIAABCDEFGHIJKLMNOP password: hunter22";
    let (out, f) = streamed(&m, input, 3);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "[MASKED:email] [MASKED:akid] password: [MASKED:pw]"
    );
    let ids: Vec<_> = f.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(ids, ["email", "akid", "pw"]);
    assert_eq!(f[1].1, 16..36);
    assert_eq!(&input[f[2].1.clone()], b"hunter22");
}

#[test]
fn redaction_tokens_are_not_masked_again() {
    let m = Masker::builder()
        .default_catalogue(false)
        .rule(Rule::regex("a", r"key=(?P<m>\S+)").keywords(["key="]))
        .rule(Rule::regex("b", r"pass=(?P<m>\S+)").keywords(["pass="]))
        .build()
        .unwrap();
    check(
        &m,
        b"key=[MASKED:b] pass=[MASKED:a]",
        "key=[MASKED:b] pass=[MASKED:a]",
    );
    check(&m, b"key=[MASKED:b]tail", "key=[MASKED:b]tail");
    // A match that would take a token's `:` as a delimiter.
    let u = Masker::builder()
        .default_catalogue(false)
        .rule(Rule::regex("k", r"key=(?P<m>[a-z]{4})").keywords(["key="]))
        .rule(Rule::regex("u", r"//[^:\s]*:(?P<m>[^@\s]+)@").keywords(["//"]))
        .build()
        .unwrap();
    let once = u.mask(b"x //key=abcd;v=1@").output().to_vec();
    assert_eq!(once, b"x //key=[MASKED:k];v=1@");
    assert_eq!(u.mask(&once).output(), &once[..]);
    // Unknown ids are ordinary values.
    check(&m, b"key=[MASKED:zz]", "key=[MASKED:a]");
    let once = m.mask(b"pass=hunter2 key=x").output().to_vec();
    assert_eq!(m.mask(&once).output(), &once[..]);
}

#[test]
fn field_rules_then_detectors() {
    let m = Masker::builder()
        .default_catalogue(false)
        .rule(Rule::literal("lit", "zzz"))
        .field_rule(FieldRule::new("*_token").style(Style::same_length()))
        .build()
        .unwrap();
    let r = m.mask_field("Access_TOKEN", b"abc");
    assert_eq!(r.output(), b"***");
    assert_eq!(r.findings()[0].detector(), "field:*_token");
    assert_eq!(
        m.mask_field("note", b"a zzz b").output(),
        b"a [MASKED:lit] b"
    );
}

#[test]
fn build_errors() {
    let b = || Masker::builder().default_catalogue(false);
    assert!(matches!(
        b().rule(Rule::regex("x", "(")).build(),
        Err(BuildError::Pattern { .. })
    ));
    assert!(matches!(
        b().rule(Rule::literal("x", "a"))
            .rule(Rule::literal("x", "b"))
            .build(),
        Err(BuildError::DuplicateId { .. })
    ));
    assert!(matches!(
        b().rule(Rule::literal("bad id", "a")).build(),
        Err(BuildError::InvalidId { .. })
    ));
    assert!(matches!(
        b().disable("no-such-detector").build(),
        Err(BuildError::UnknownDetector { .. })
    ));
    assert!(matches!(
        b().rule(Rule::regex("x", "a").keywords([""])).build(),
        Err(BuildError::EmptyKeyword { .. })
    ));
    assert!(matches!(
        b().max_match_len(0).build(),
        Err(BuildError::MaxLen { .. })
    ));
    assert!(matches!(
        b().rule(Rule::regex("x", "a").max_len(5000)).build(),
        Err(BuildError::MaxLen { .. })
    ));
}

#[test]
fn masker_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Masker>();
}
