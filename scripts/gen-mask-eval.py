#!/usr/bin/env python3
"""Writes the hand-built part of the masker's evaluation set:
testdata/mask-eval/generic.toml (secret-like key names assigned values, in
code, env, JSON, YAML, URLs and connection strings) and
testdata/mask-eval/pii.toml (national identifiers, phones, crypto addresses,
cards, IBANs, e-mail, IPs), with realistic negatives for each.

The values are synthetic: random strings, card numbers and IBANs built to
pass their checksums, SSNs and SINs built by their rules, crypto addresses
from random payloads (base58check / bech32 computed here). Not gated by the
tests; measured with `cargo run -p portcullis-mask --example detection`.

Usage: python3 scripts/gen-mask-eval.py
"""

import hashlib
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "testdata" / "mask-eval"
rng = random.Random(4242)
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def rnd(n, chars=ALNUM):
    while True:
        s = "".join(rng.choice(chars) for _ in range(n))
        if any(c.isdigit() for c in s) and any(c.islower() for c in s) and any(c.isupper() for c in s):
            return s


def q(s):
    return json.dumps(s, ensure_ascii=False)


def case(name, det, kind, inp, secret=None):
    out = f"\n[[case]]\nname = {q(name)}\ndetector = {q(det)}\nkind = \"{kind}\"\ninput = {q(inp)}\n"
    if secret:
        assert secret in inp, (name, secret)
        out += f"secret = {q(secret)}\n"
    return out


def generic():
    out = []
    pos = []
    keys = [
        ("password", "DB_PASSWORD={v}"), ("passwd", "passwd: {v}"), ("pwd", "Server=db;Uid=sa;Pwd={v};"),
        ("secret", "client_secret = \"{v}\""), ("token", "GITHUB_TOKEN={v}"), ("api_key", "\"api_key\": \"{v}\""),
        ("apikey", "apikey: {v}"), ("access_key", "accessKey: '{v}'"), ("client_secret", "CLIENT_SECRET: {v}"),
        ("private_key", "private-key={v}"), ("auth", "\"auth\": \"{v}\""), ("credential", "credential = \"{v}\""),
        ("camel", "const dbPassword = \"{v}\";"), ("kebab", "--api-key={v}"), ("dotted", "spring.datasource.password={v}"),
        ("upper", "export SECRET_KEY='{v}'"), ("query", "GET /cb?code=1&access_token={v}&state=x HTTP/1.1"),
        ("header", "X-Api-Key: {v}"), ("bearer", "Authorization: Bearer {v}"),
        ("jdbc", "jdbc:mysql://db:3306/app?user=app&password={v}"), ("ado", "Data Source=db;User ID=app;Password={v};"),
        ("pg-url", "postgres://app:{v}@db.internal:5432/app"), ("mongo", "mongodb+srv://app:{v}@cluster0.abc.mongodb.net/"),
        ("redis", "redis://default:{v}@cache:6379/0"), ("amqp", "amqps://svc:{v}@mq.internal/vhost"),
        ("https", "https://deploy:{v}@git.example.com/acme/app.git"), ("ftp", "ftp://backup:{v}@files.example.com/"),
        ("neo4j", "neo4j+s://neo4j:{v}@x.databases.neo4j.io"), ("yaml-nested", "smtp:\n  password: {v}\n  port: 587"),
        ("python-kw", "client = Client(api_key=\"{v}\")"), ("go", "cfg.Secret = \"{v}\""), ("php", "$config['db_pass'] = '{v}';"),
        ("ini", "[db]\npass = {v}"), ("properties", "mail.smtp.password={v}"), ("toml", "token = \"{v}\""),
        ("netrc", "machine api.example.com login jane password {v}"), ("docker-env", "docker run -e DB_PASS={v} app"),
        ("auth-token", "AUTH_TOKEN={v}"), ("session-key", "sessionKey: \"{v}\""), ("signing-key", "SIGNING_KEY={v}"),
    ]
    for i, (kind, tpl) in enumerate(keys, 1):
        v = rnd(rng.randint(14, 32))
        pos.append(case(f"generic-eval-{kind}", "generic", "positive", tpl.format(v=v), v))
    negs = [
        "password = \"\"", "token: ${TOKEN}", "DB_PASSWORD=changeme", "api_key: <your-token>", "password: ********",
        "secret: null", "PASSWORD=your_password_here", "auth: oauth2", "token_type: bearer", "password_min_length: 12",
        "api_key_header = \"X-Api-Key\"", "secret_name: prod-db-credentials", "PWD=/home/jane/work",
        "passwordless: true", "tokenizer: bert-base-uncased", "\"token_count\": 1834", "access_key_id: AKIAIOSFODNN7EXAMPLE",
        "client_secret: '{{ .Values.clientSecret }}'", "password: \"%(db_password)s\"", "secret = os.environ[\"SECRET\"]",
        "commit 3f9c2b7e1a4d8f6c0b5e9a2d7f1c4b8e3a6d9f2c", "request_id=6f1c2a9e-4b7d-4e21-9c3a-8d5f0b2e7a41",
        "sha256: 9b74c9897bac770ffc029102a200c5de2d5a0ba4c4e1f2b9d3c8f6a1e0b7d4c2", "auth_method = \"kerberos\"",
        "token: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"", "password: REPLACE_ME", "secret_ref: vault:secret/data/app#db",
        "credentials: file:///etc/app/creds.json", "api_key = None", "password = getpass.getpass()",
    ]
    for i, n in enumerate(negs, 1):
        out.append(case(f"generic-eval-neg-{i}", "generic", "negative", n))
    hdr = ("# Hand-built evaluation set for the generic secret-assignment detectors (scripts/gen-mask-eval.py).\n"
           "# Not gated by the tests; measured by `cargo run -p portcullis-mask --example detection`.\n"
           "# Synthetic values only.\n")
    (OUT / "generic.toml").write_text(hdr + "".join(pos) + "".join(out))


def luhn_complete(body):
    digits = [int(c) for c in body][::-1]
    total = 0
    for i, d in enumerate(digits):
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


def iban(country, bban):
    s = bban + country + "00"
    n = int("".join(str(int(c, 36)) for c in s))
    return f"{country}{98 - n % 97:02d}{bban}"


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58check(ver, payload):
    d = bytes([ver]) + payload
    d += hashlib.sha256(hashlib.sha256(d).digest()).digest()[:4]
    n = int.from_bytes(d, "big")
    s = ""
    while n:
        n, r = divmod(n, 58)
        s = B58[r] + s
    return "1" * (len(d) - len(d.lstrip(b"\0"))) + s


CH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32(hrp, data, m):
    def polymod(v):
        g = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
        c = 1
        for x in v:
            b = c >> 25
            c = (c & 0x1FFFFFF) << 5 ^ x
            for i in range(5):
                c ^= g[i] if (b >> i) & 1 else 0
        return c
    hx = [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]
    p = polymod(hx + data + [0] * 6) ^ (0x2BC830A3 if m else 1)
    return hrp + "1" + "".join(CH[d] for d in data + [(p >> 5 * (5 - i)) & 31 for i in range(6)])


def conv(b):
    acc = bits = 0
    out = []
    for v in b:
        acc = (acc << 8) | v
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


def rb(n):
    return bytes(rng.randrange(256) for _ in range(n))


def ssn():
    while True:
        a = rng.randint(1, 899)
        if a != 666:
            return f"{a:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


def pii():
    c = []
    P = lambda det, n, inp, sec: c.append(case(f"{det}-eval-{n}", det, "positive", inp, sec))
    N = lambda det, n, inp: c.append(case(f"{det}-eval-neg-{n}", det, "negative", inp))
    for i in range(6):
        a, g, s = ssn()
        form = [f"{a}-{g}-{s}", f"{a} {g} {s}", f"{a}{g}{s}"][i % 3]
        ctx = ["employee ssn: {}", "{{\"ssn\": \"{}\"}}", "SSN {}", "social security number {}", "| Jane Doe | {} | TX", "applicant SSN#: {}"][i]
        P("us-ssn", i + 1, ctx.format(form), form)
    for i, n in enumerate(["order 123-45-6789 shipped", "SSN: 000-12-3456", "ssn 666-45-1234", "ssn 912-45-1234",
                           "ref 536228741 paid", "date 2024-05-01 id 12-345-6789"], 1):
        N("us-ssn", i, n)
    phones = ["+1 415 555 0132", "+14155550198", "(212) 555-0147", "415-555-0163", "+44 20 7946 0321",
              "+49 30 901820 45", "+33 1 23 45 67 89", "+81 3-1234-5678", "phone: 020 7946 0958", "tel. 030 9018 2045",
              "mobile 07700 900456", "+61 2 9876 5432", "+91 98765 43210", "+55 11 91234-5678"]
    for i, p in enumerate(phones, 1):
        sec = p.split(" ", 1)[1] if p.startswith(("phone", "tel", "mobile")) else p
        inp = p if p.startswith(("phone", "tel", "mobile")) else f"contact: {p}"
        P("phone", i, inp, sec)
    for i, n in enumerate(["order 4155550123 shipped", "version 1.2.3+20240501", "ts 1714557600123",
                           "build 2024.05.01.1234", "price 1 234 567", "id 00000000"], 1):
        N("phone", i, n)
    for i in range(4):
        body = "".join(rng.choice("0123456789") for _ in range(14))
        card = luhn_complete(["4", "51", "37", "6011"][i] + body[: [14, 13, 12, 11][i]])
        if i == 2:
            card = luhn_complete("37" + body[:12])
        P("credit-card", i + 1, f"card: {card}", card)
    N("credit-card", 1, "card: 4111111111111112")
    N("credit-card", 2, "ts 1714557600123")
    for i, (cc, bban) in enumerate([("DE", "37040044" + "0532013000"), ("GB", "WEST" + "123456" + "98765432"),
                                    ("FR", "2004101005" + "0500013M02606"), ("NL", "ABNA0417164300")], 1):
        v = iban(cc, bban)
        P("iban", i, f"IBAN: {v}", v)
    N("iban", 1, "IBAN: DE00370400440532013000")
    N("iban", 2, "ref GB82WEST1234569876543")
    for i, e in enumerate(["jane.doe@example.com", "j.smith+billing@mail.example.co.uk", "ops-team@acme.io"], 1):
        P("email", i, f"contact {e} today", e)
    N("email", 1, "git@github.com:acme/app.git is a remote, @mention someone")
    N("email", 2, "version 1.2@beta and user@localhost")
    for i, ip in enumerate(["203.0.113.45", "198.51.100.7", "2001:db8::8a2e:370:7334"], 1):
        P("ip", i, f"client {ip} connected", ip)
    N("ip", 1, "version 1.2.3.4567 released")
    N("ip", 2, "rust path std::io::Read")
    for i in range(3):
        v = b58check([0, 5, 0][i], rb(20))
        P("bitcoin-address", i + 1, f"send to {v}", v)
    v = bech32("bc", [0] + conv(rb(20)), False)
    P("bitcoin-address", 4, f"payout {v}", v)
    v = bech32("bc", [1] + conv(rb(32)), True)
    P("bitcoin-address", 5, f"taproot {v}", v)
    good = b58check(0, rb(20))
    N("bitcoin-address", 1, f"send to {good[:-1]}{'A' if good[-1] != 'A' else 'B'}")
    N("bitcoin-address", 2, "ipfs QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG pinned")
    for i, v in enumerate(["0x843619Aa15d298CF22778591FCf7dE2e67FA6B0d", "0x1a57ab569DbE23065EEe4fe09850eAa6183003f9",
                           "0x630e70c3d11688bbdc0a219aa3a47f9e3872d96f"], 1):
        P("ethereum-address", i, f"wallet {v}", v)
    N("ethereum-address", 1, "wallet 0x843619Aa15d298CF22778591FCf7dE2e67FA6B0D")
    N("ethereum-address", 2, "tx 0x9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d")
    for i, v in enumerate(["QQ123456C".replace("QQ", "AB"), "JG 10 37 59 D", "PC940311A"], 1):
        P("uk-nino", i, f"NI number {v}", v)
    N("uk-nino", 1, "part GB123456A")
    N("uk-nino", 2, "sku DQ123456C")
    for i in range(3):
        sin = luhn_complete(str(rng.choice([1, 2, 4, 5, 6, 7, 9])) + "".join(rng.choice("0123456789") for _ in range(7)))
        f = [sin, f"{sin[:3]} {sin[3:6]} {sin[6:]}", f"{sin[:3]}-{sin[3:6]}-{sin[6:]}"][i]
        P("ca-sin", i + 1, f"SIN: {f}", f)
    N("ca-sin", 1, "order 130692544 shipped")
    N("ca-sin", 2, "SIN: 130 692 545")
    hdr = ("# Hand-built evaluation set for the PII detectors (scripts/gen-mask-eval.py).\n"
           "# Not gated by the tests; measured by `cargo run -p portcullis-mask --example detection`.\n"
           "# Synthetic values only (checksums computed here).\n")
    (OUT / "pii.toml").write_text(hdr + "".join(c))


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    generic()
    pii()
