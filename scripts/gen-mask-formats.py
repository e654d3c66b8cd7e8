#!/usr/bin/env python3
"""Generates the provider-format detectors of portcullis-mask and their testdata.

Reads the table in scripts/mask-formats.txt (one detector per line, written
from each provider's documented token format: prefix, charset, length) and
writes

  crates/mask/src/catalogue/formats_<family>.rs   (plain DetectorSpec data)
  testdata/mask/formats-<family>.toml             (3 positives, 2+ negatives each)

Values are synthetic: random characters of the documented charset and length
from a fixed seed (never real credentials). Negatives are near misses: the
same prefix with a body too short, a documentation placeholder of the right
shape (xxxx, EXAMPLE, your_..._here, ${VAR}), and a hash or UUID under the
provider's name in a non-secret field.

The longest match of each pattern (`max_len`) is computed by the catalogue
tests' own rule (the parser's maximum_len), by the crate's example
`pattern_max_len`.

It also writes testdata/mask-eval/formats-<family>.toml: an evaluation set
that the tests do not gate (other surroundings, fresh values, other kinds of
negatives), measured by `cargo run -p portcullis-mask --example detection`.

Usage: python3 scripts/gen-mask-formats.py
"""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "scripts" / "mask-formats.txt"
CAT = ROOT / "crates" / "mask" / "src" / "catalogue"
TD = ROOT / "testdata" / "mask"
EVAL = ROOT / "testdata" / "mask-eval"

CHARSETS = {
    "hex": "0123456789abcdef",
    "HEX": "0123456789ABCDEF",
    "Hex": "0123456789abcdefABCDEF",
    "alnum": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "lower": "abcdefghijklmnopqrstuvwxyz0123456789",
    "upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "b64url": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
    "b64": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    "digits": "0123456789",
    "base32": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
    "crypt": "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
}
CLASS = {
    "hex": "[a-f0-9]",
    "HEX": "[A-F0-9]",
    "Hex": "[a-fA-F0-9]",
    "alnum": "[A-Za-z0-9]",
    "lower": "[a-z0-9]",
    "upper": "[A-Z0-9]",
    "b64url": "[A-Za-z0-9_-]",
    "b64": "[A-Za-z0-9+/]",
    "digits": "[0-9]",
    "base32": "[A-Z2-7]",
}
WORDY = {"hex", "HEX", "Hex", "alnum", "lower", "upper", "digits", "base32"}
UUID_RE = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ASSIGN = r"""["']?\s{0,3}(?::=|=>|[:=])\s{0,3}["']?"""
DEFAULT_SUFFIXES = ["api_key", "apikey", "api_token", "access_token", "auth_token", "secret_key", "secret", "token", "key"]

FRAGMENTS = ["example", "your_", "your-", "placeholder", "xxxx", "****", "changeme", "dummy", "sample",
             "redacted", "insert_", "replace_", "_here", "-here", "notreal", "fake_"]

rng = random.Random(1717)


def rand_body(cs, n):
    chars = CHARSETS[cs]
    while True:
        s = "".join(rng.choice(chars) for _ in range(n))
        if cs not in WORDY and not (s[-1].isalnum() and (s[0].isalnum() or cs == "crypt")):
            continue
        low = s.lower()
        if any(f in low for f in FRAGMENTS):
            continue
        # Random tokens with mixed classes, as real ones have.
        if cs in ("alnum", "b64url", "b64") and n >= 12 and not (
            any(c.islower() for c in s) and any(c.isupper() for c in s) and any(c.isdigit() for c in s)
        ):
            continue
        if cs in ("hex", "lower", "upper", "Hex") and n >= 12 and not (
            any(c.isdigit() for c in s) and any(c.isalpha() for c in s)
        ):
            continue
        return s


def rand_uuid():
    h = "".join(rng.choice(CHARSETS["hex"]) for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def words_re(w):
    """`api_key` -> `api[_.-]?key` (matches snake, kebab, dotted, camel, upper)."""
    parts = [re.escape(p) for p in re.split(r"[_\-. ]", w) if p]
    return "[_.-]?".join(parts)


def parse_len(spec):
    if "-" in spec:
        lo, hi = spec.split("-")
        return int(lo), int(hi)
    return int(spec), int(spec)


def q(s):
    return json.dumps(s, ensure_ascii=False)


def pos_case(name, det, inp, secret):
    assert inp.count(secret) >= 1, (name, secret)
    out = inp.replace(secret, f"[MASKED:{det}]", 1)
    return (f'[[case]]\nname = {q(name)}\ndetector = {q(det)}\nkind = "positive"\n'
            f'input = {q(inp)}\noutput = {q(out)}\nfindings = [{q(det)}]\n')


def neg_case(name, det, inp):
    return f'[[case]]\nname = {q(name)}\ndetector = {q(det)}\nkind = "negative"\ninput = {q(inp)}\nfindings = []\n'


def env_name(s):
    return re.sub(r"[^A-Za-z0-9]+", "_", s).upper().strip("_")


def camel(*words):
    out = []
    for i, w in enumerate(words):
        for j, p in enumerate(re.split(r"[_\-. ]", w)):
            if not p:
                continue
            out.append(p.lower() if (i == 0 and j == 0) else p[:1].upper() + p[1:].lower())
    return "".join(out)


class Det:
    def __init__(self, fam, id, desc, keywords, pattern, validators, positives, negatives, evals=None):
        self.fam, self.id, self.desc, self.keywords = fam, id, desc, keywords
        self.pattern, self.validators = pattern, validators
        self.positives, self.negatives = positives, negatives
        # (kind, input, secret-or-None) for the evaluation set.
        self.evals = evals or []


def validators_for(min_body, cs="alnum"):
    """No placeholder text; and for bodies of 8 or more random characters an
    entropy floor of 60 % of what a random body of the shortest length can
    reach (so `0000…`, `aaaa…`, `abcabc…` fail and random values pass)."""
    import math
    v = ["Validator::NoPlaceholderText"]
    if min_body >= 8:
        k = len(CHARSETS.get(cs, CHARSETS["hex"]))
        floor = math.floor(0.6 * min(math.log2(k), math.log2(min_body)) * 10) / 10
        v.append(f"Validator::MinEntropy({floor})")
    return v


def prefix_det(fam, id, display, what, prefixes, cs, length, env):
    lo, hi = parse_len(length)
    rep = "{%d}" % lo if lo == hi else "{%d,%d}" % (lo, hi)
    if cs == "uuid":
        body_re, end = UUID_RE, r"\b"
    elif cs in WORDY:
        body_re, end = CLASS[cs] + rep, r"\b"
    else:
        # End on a word character and a word boundary, so the match never
        # stops inside a longer word (masking must be idempotent).
        rep1 = "{%d}" % (lo - 1) if lo == hi else "{%d,%d}" % (lo - 1, hi - 1)
        body_re, end = CLASS[cs] + rep1 + "[A-Za-z0-9_]", r"\b"
    pre_alt = "|".join(re.escape(p) for p in prefixes)
    pre_re = f"(?:{pre_alt})" if len(prefixes) > 1 else re.escape(prefixes[0])
    start = r"\b" if prefixes[0][0].isalnum() else ""
    pattern = f"{start}{pre_re}{body_re}{end}"
    keywords = sorted({p.lower() for p in prefixes})
    lens = f"{lo}" if lo == hi else f"{lo}-{hi}"
    cs_desc = "UUID" if cs == "uuid" else f"{lens} {cs} characters"
    pre_desc = " / ".join(prefixes)
    desc = f"{display} {what}: {pre_desc} followed by {cs_desc}"

    def tok(i):
        p = prefixes[i % len(prefixes)]
        if cs == "uuid":
            return p + rand_uuid()
        n = rng.randint(lo, hi)
        return p + rand_body(cs, n)

    t = [tok(0), tok(1), tok(2)]
    low = env.lower()
    positives = [
        f"export {env}={t[0]}\nexport APP_ENV=production",
        f'{{"service": "{id.split("-")[0]}", "{low}": "{t[1]}", "region": "eu-west-1"}}',
        f"2024-05-01T12:00:00Z DEBUG outbound request headers={{'X-Api-Key': '{t[2]}'}} status=200",
    ]
    pos = [(positives[i], t[i]) for i in range(3)]
    p0 = prefixes[0]
    if cs == "uuid":
        short = p0 + rand_uuid()[:23]
        placeholder = p0 + "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    else:
        short = p0 + rand_body(cs, max(4, lo // 2))
        if "x" in CHARSETS[cs]:
            placeholder = p0 + "x" * lo
        elif "X" in CHARSETS[cs]:
            placeholder = p0 + "X" * lo
        else:
            placeholder = p0 + "0" * lo
    negs = [
        f"release notes: the {display} format changed, ids such as {short} are no longer valid",
        f"# {env}={placeholder}\n# set {env} in your shell before running",
    ]
    e = [tok(0), tok(1), tok(2), tok(0)]
    sha = "".join(rng.choice(CHARSETS["hex"]) for _ in range(40))
    swapped = p0.swapcase() + (t[0][len(p0):])
    evals = [
        ("positive", f"docker run --rm -e {env}={e[0]} ghcr.io/acme/worker:1.4", e[0]),
        ("positive", f"env:\n  - name: {env}\n    value: \"{e[1]}\"", e[1]),
        ("positive", f"GET /v1/export?token_id=7&key={e[2]}&limit=10 HTTP/1.1", e[2]),
        ("positive", f"{low}: '{e[3]}'", e[3]),
        ("negative", f"{display} SDK release {sha[:7]}: commit {sha} bumps the client", None),
        ("negative", f"{env}=${{{{ secrets.{env} }}}}", None),
        ("negative", f"lookup id {swapped} returned 404", None),
    ]
    return Det(fam, id, desc, keywords, pattern, validators_for(lo, cs), pos, negs, evals)


# Letters frequent in English text: a name piece of one or two of these
# (`os`, `ec`, `lt`, `x`) occurs in every other word, so as a keyword it would
# stop the keyword prefilter everywhere.
FREQUENT_LETTERS = set("etaoinshrdlcup")


def common_piece(p):
    return len(p) <= 1 or (len(p) == 2 and set(p.lower()) <= FREQUENT_LETTERS)


def context_keywords(names, suffixes):
    """Every match of a context detector contains each piece of one of its
    names and each piece of one of its suffixes (any case, any separator
    between pieces). The keywords are each name's first piece; where that
    piece is common in text (`common_piece`), the name's longest piece; and
    where that is common too, each suffix's longest piece instead."""

    def pieces(w):
        return [p.lower() for p in re.split(r"[_\-. ]", w) if p]

    def name_kw(n):
        first = pieces(n)[0]
        return first if not common_piece(first) else max(pieces(n), key=len)

    by_name = sorted({name_kw(n) for n in names})
    if any(common_piece(k) for k in by_name):
        return sorted({max(pieces(x), key=len) for x in suffixes})
    return by_name


def context_det(fam, id, display, what, names, suffixes, cs, length, value_re=None, gen=None, neg_value=None):
    lo, hi = parse_len(length) if length else (0, 0)
    if cs == "asana":
        value_re = "[12]/[0-9]{10,16}(?:/[0-9]{10,16})?:[a-f0-9]{32}"
        gen = lambda: f"1/{rng.randint(10**12, 10**13)}:{rand_body('hex', 32)}"
        cs, length = "uuid", None
    elif cs == "xxxx4":
        value_re = "[a-z]{4}-[a-z]{4}-[a-z]{4}-[a-z]{4}"
        gen = lambda: "-".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(4)) for _ in range(4))
        cs, length = "uuid", None
    if value_re is None:
        if cs == "uuid":
            value_re = UUID_RE
        else:
            if cs in WORDY:
                rep = "{%d}" % lo if lo == hi else "{%d,%d}" % (lo, hi)
                value_re = CLASS[cs] + rep
            else:
                rep1 = "{%d}" % (lo - 1) if lo == hi else "{%d,%d}" % (lo - 1, hi - 1)
                value_re = CLASS[cs] + rep1 + "[A-Za-z0-9_]"
        wordy = True
    else:
        wordy = cs == "uuid"
    names_re = "|".join(words_re(n) for n in names)
    suf_re = "|".join(words_re(s) for s in suffixes)
    end = r"\b" if wordy else ""
    pattern = f"(?i)(?:{names_re})[_.-]?(?:{suf_re}){ASSIGN}(?P<m>(?-i:{value_re}){end})"
    keywords = context_keywords(names, suffixes)
    if cs == "uuid" and length is None:
        shape = "its documented format"
    elif cs == "uuid":
        shape = "a UUID"
    elif length:
        shape = f"{lo if lo == hi else f'{lo}-{hi}'} {cs} characters"
    else:
        shape = "its documented format"
    env = env_name(f"{names[0]}_{suffixes[0]}")
    desc = f"{display} {what} ({shape}) assigned to {env} or {names[0]}.{suffixes[0]} in env files, config, JSON and code"

    def val():
        if gen is not None:
            return gen()
        if cs == "uuid":
            return rand_uuid()
        return rand_body(cs, rng.randint(lo, hi))

    v = [val(), val(), val()]
    json_key = f"{names[0].replace(' ', '_').replace('-', '_').replace('.', '_').lower()}_{suffixes[0]}"
    cam = camel(names[0], suffixes[0])
    positives = [
        (f"APP_ENV=production\n{env}={v[0]}\nLOG_LEVEL=info", v[0]),
        (f'{{"{json_key}": "{v[1]}", "timeout": 30}}', v[1]),
        (f"const {cam} = '{v[2]}';", v[2]),
    ]
    hash_val = "".join(rng.choice(CHARSETS["hex"]) for _ in range(64)) if rng.random() < 0.5 else rand_uuid()
    nv = neg_value if neg_value is not None else f"your_{names[0].replace(' ', '_').lower()}_{suffixes[0]}_here"
    negs = [
        f"{env}={nv}\n# paste the value from the {display} dashboard",
        f"{env_name(names[0])}_BUILD_SHA={hash_val}\n{env_name(names[0])}_REGION=us-east-1",
    ]
    vmin = lo if length else 16
    e = [val(), val(), val(), val()]
    evals = [
        ("positive", f"docker run --rm -e {env}={e[0]} ghcr.io/acme/worker:1.4", e[0]),
        ("positive", f"env:\n  - name: {env}\n    value: \"{e[1]}\"", e[1]),
        ("positive", f'export {env}="{e[2]}"', e[2]),
        ("positive", f"  {cam}: \"{e[3]}\",", e[3]),
        ("negative", f"{env}=${{{{ secrets.{env} }}}}", None),
        ("negative", f'{env}: "***"', None),
        ("negative", f"{env_name(names[0])}_PROJECT_ID={rand_uuid()}", None),
    ]
    return Det(fam, id, desc, keywords, pattern, validators_for(vmin, cs), positives, negs, evals)


def expand(v):
    """`<hex:32>` in a sample value -> 32 random characters of that charset."""
    return re.sub(r"<([A-Za-z0-9]+):([0-9]+)>", lambda m: rand_body(m.group(1), int(m.group(2))), v)


def load_table():
    dets = []
    fam = None
    for ln, raw in enumerate(TABLE.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            fam = line.strip("[]")
            continue
        f = [x.strip() for x in line.split(" | ")]
        kind = f[0]
        try:
            if kind == "P":
                # P | id | Display | what | prefix1,prefix2 | charset | len | ENV
                _, id, display, what, prefixes, cs, length, env = f
                dets.append(prefix_det(fam, id, display, what, prefixes.split(","), cs, length, env))
            elif kind == "C":
                # C | id | Display | what | name1,name2 | suffix1,suffix2 (or *) | charset | len
                _, id, display, what, names, suffixes, cs, length = f
                sufs = DEFAULT_SUFFIXES if suffixes == "*" else suffixes.split(",")
                dets.append(context_det(fam, id, display, what, names.split(","), sufs, cs, length))
            elif kind == "R":
                # R | id | Display/description | keywords | pattern | v1 ;; v2 ;; v3 | neg1 ;; neg2 | ctx
                _, id, desc, kws, pattern, vals, negs, ctx = f
                vals = [expand(v.strip()) for v in vals.split(";;")]
                negs = [v.strip().replace("\\n", "\n") for v in negs.split(";;")]
                ctxs = [c.strip().replace("\\n", "\n") for c in ctx.split(";;")]
                positives = []
                for i, v in enumerate(vals):
                    c = ctxs[i % len(ctxs)]
                    m = re.search(r"\{\{(.*?)\}\}", v)
                    secret = m.group(1) if m else v
                    full = v.replace("{{", "").replace("}}", "")
                    positives.append((c.replace("@", full), secret))
                vmin = 6
                dets.append(Det(fam, id, desc, kws.split(","), pattern, validators_for(vmin), positives, negs))
            else:
                raise ValueError(f"unknown kind {kind}")
        except Exception as e:  # noqa: BLE001
            raise SystemExit(f"{TABLE}:{ln}: {e}: {line}")
    return dets


def max_lens(patterns):
    cmd = ["cargo", "run", "-q", "-p", "portcullis-mask", "--example", "pattern_max_len"]
    out = subprocess.run(cmd, cwd=ROOT, input="\n".join(patterns) + "\n", capture_output=True, text=True, check=True)
    res = out.stdout.splitlines()
    assert len(res) == len(patterns)
    for p, r in zip(patterns, res):
        if r.startswith("ERR") or int(r) < 0:
            raise SystemExit(f"pattern {p}: {r}")
    return [int(r) for r in res]


FAMILY_DOC = {
    "ai": "AI and machine-learning platforms",
    "cloud": "cloud, hosting, backend-as-a-service and identity platforms",
    "devtools": "developer tools: CI/CD, package registries, code quality, localisation, feature flags, project tools",
    "comms": "messaging, e-mail, SMS, voice, chat and social platforms",
    "payments": "payments, commerce, finance, crypto exchanges and market data",
    "observability": "logging, monitoring, APM, incident and uptime services",
    "saas": "business SaaS: CRM, support, documents, CMS, maps, media and web-hooks",
    "data": "databases, data warehouses, analytics and vector stores",
    "keys": "key material and password hashes: WireGuard, Laravel APP_KEY, crypt(3) hashes",
}


def rust_str(s):
    assert '"#' not in s
    return f'r#"{s}"#'


def main():
    dets = load_table()
    ids = [d.id for d in dets]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, dup
    existing = set()
    for p in CAT.glob("*.rs"):
        if p.name.startswith("formats_"):
            continue
        existing |= set(re.findall(r'id: "([a-z0-9-]+)"', p.read_text()))
    clash = existing & set(ids)
    assert not clash, clash
    lens = max_lens([d.pattern for d in dets])
    fams = []
    for d in dets:
        if d.fam not in fams:
            fams.append(d.fam)
    for fam in fams:
        rs = [
            f"//! Generated by scripts/gen-mask-formats.py from scripts/mask-formats.txt: do not edit by hand.\n",
            f"//! Provider formats: {FAMILY_DOC[fam]}.\n",
            "//!\n",
            f"//! Plain data (see `spec.rs`); every pattern is checked by the catalogue tests\n",
            f"//! against `testdata/mask/formats-{fam}.toml`.\n\n",
            "use crate::spec::{Category, DetectorSpec, Validator};\n\n",
            f"/// The generated {fam} detectors, in priority order.\n",
            "pub(super) static DETECTORS: &[DetectorSpec] = &[\n",
        ]
        toml = [f"# Generated by scripts/gen-mask-formats.py: {FAMILY_DOC[fam]}.\n"
                "# Synthetic values only (random characters of the documented charset and length): none is a real credential.\n"]
        for d, ml in zip(dets, lens):
            if d.fam != fam:
                continue
            kws = ", ".join(q(k) for k in d.keywords)
            rs.append(
                "    DetectorSpec {\n"
                f"        id: {q(d.id)},\n"
                "        category: Category::Secret,\n"
                f"        description: {rust_str(d.desc)},\n"
                f"        keywords: &[{kws}],\n"
                f"        pattern: {rust_str(d.pattern)},\n"
                f"        validators: &[{', '.join(d.validators)}],\n"
                f"        max_len: {ml},\n"
                "    },\n"
            )
            for i, (inp, secret) in enumerate(d.positives, 1):
                toml.append("\n" + pos_case(f"{d.id}-{i}", d.id, inp, secret))
            for i, inp in enumerate(d.negatives, 1):
                toml.append("\n" + neg_case(f"{d.id}-neg-{i}", d.id, inp))
        rs.append("];\n")
        ev = [f"# Generated by scripts/gen-mask-formats.py: evaluation set for {FAMILY_DOC[fam]}.\n"
              "# Not gated by the tests; measured by `cargo run -p portcullis-mask --example detection`.\n"
              "# Synthetic values only.\n"]
        for d in dets:
            if d.fam != fam:
                continue
            for i, (kind, inp, secret) in enumerate(d.evals, 1):
                ev.append(f'\n[[case]]\nname = {q(f"{d.id}-eval-{i}")}\ndetector = {q(d.id)}\nkind = "{kind}"\ninput = {q(inp)}\n'
                          + (f"secret = {q(secret)}\n" if secret else ""))
        EVAL.mkdir(exist_ok=True)
        (EVAL / f"formats-{fam}.toml").write_text("".join(ev))
        (CAT / f"formats_{fam}.rs").write_text("".join(rs))
        (TD / f"formats-{fam}.toml").write_text("".join(toml))
    print(f"{len(dets)} detectors in {len(fams)} families: {', '.join(fams)}")


if __name__ == "__main__":
    main()
