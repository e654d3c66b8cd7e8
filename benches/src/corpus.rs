//! Deterministic corpora for the masking benches (seeded xorshift; the same
//! seed gives the same bytes on every machine).
//!
//! * [`no_secrets`]: SQL result rows (ids, timestamps, names, amounts,
//!   UUIDs), JSON log lines and English prose, with digits as common as in
//!   real data and no e-mail addresses;
//! * [`dense`]: the same with one secret or PII value per KiB on average,
//!   drawn from [`secret_values`];
//! * [`base64_blobs`]: base64 lines (MIME-style, 76 columns), a known slow
//!   case for entropy rules.

/// A small xorshift64* generator (no external dependency needed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// One element of `items` (the default value if `items` is empty).
    pub fn pick<T: Copy + Default>(&mut self, items: &[T]) -> T {
        let i = self.below(items.len() as u64) as usize;
        items.get(i).copied().unwrap_or_default()
    }

    fn chars(&mut self, alphabet: &[u8], n: usize, out: &mut String) {
        for _ in 0..n {
            out.push(char::from(self.pick(alphabet)));
        }
    }
}

const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Barbara",
    "Dennis",
    "Margaret",
    "Ken",
    "Frances",
    "John",
    "Radia",
    "Edsger",
    "Hedy",
    "Tim",
    "Katherine",
    "Donald",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Liskov",
    "Ritchie",
    "Hamilton",
    "Thompson",
    "Allen",
    "Backus",
    "Perlman",
    "Dijkstra",
    "Lamarr",
    "Berners-Lee",
    "Johnson",
    "Knuth",
];
const WORDS: &[&str] = &[
    "the",
    "request",
    "was",
    "served",
    "from",
    "cache",
    "and",
    "the",
    "customer",
    "received",
    "their",
    "order",
    "within",
    "two",
    "days",
    "after",
    "payment",
    "cleared",
    "but",
    "a",
    "retry",
    "of",
    "the",
    "batch",
    "job",
    "failed",
    "because",
    "disk",
    "space",
    "ran",
    "low",
    "on",
    "node",
    "while",
    "migrating",
    "tables",
    "to",
    "new",
    "schema",
    "version",
    "report",
    "shows",
    "revenue",
    "grew",
    "percent",
    "in",
    "quarter",
    "compared",
    "with",
    "last",
    "year",
    "shipping",
    "delayed",
    "warehouse",
    "inventory",
    "count",
    "matched",
    "expected",
    "totals",
];
const STATUS: &[&str] = &["paid", "pending", "shipped", "refunded", "cancelled"];
const LEVELS: &[&str] = &["info", "info", "info", "debug", "warn", "error"];
const PATHS: &[&str] = &[
    "/api/v1/orders",
    "/api/v1/customers",
    "/healthz",
    "/api/v2/invoices/search",
    "/static/app.js",
];

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HEX: &[u8] = b"0123456789abcdef";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const DIGITS: &[u8] = b"0123456789";

fn uuid(rng: &mut Rng, out: &mut String) {
    for (i, n) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        rng.chars(HEX, n, out);
    }
}

fn timestamp(rng: &mut Rng) -> String {
    format!(
        "2025-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60),
        rng.below(1000)
    )
}

fn sql_row(rng: &mut Rng, out: &mut String) {
    out.push_str(&format!(
        " {:>7} | {} | ",
        1 + rng.below(9_999_999),
        timestamp(rng)
    ));
    out.push_str(&format!("{:<9} {:<12} | ", rng.pick(FIRST), rng.pick(LAST)));
    out.push_str(&format!(
        "{:>9}.{:02} | ",
        rng.below(100_000),
        rng.below(100)
    ));
    uuid(rng, out);
    out.push_str(&format!(" | {}\n", rng.pick(STATUS)));
}

fn json_log(rng: &mut Rng, out: &mut String) {
    let ts = timestamp(rng).replace(' ', "T");
    out.push_str(&format!(
        "{{\"ts\":\"{ts}Z\",\"level\":\"{}\",\"method\":\"GET\",\"path\":\"{}\",\"status\":{},\"latency_ms\":{},\"user_id\":{},\"request_id\":\"",
        rng.pick(LEVELS),
        rng.pick(PATHS),
        rng.pick(&[200, 200, 200, 201, 304, 404, 500]),
        rng.below(2000),
        rng.below(1_000_000)
    ));
    uuid(rng, out);
    out.push_str("\",\"msg\":\"");
    for i in 0..(4 + rng.below(8)) {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(rng.pick(WORDS));
    }
    out.push_str("\"}\n");
}

fn prose(rng: &mut Rng, out: &mut String) {
    let n = 8 + rng.below(16);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        if rng.below(9) == 0 {
            out.push_str(&rng.below(10_000).to_string());
        } else {
            out.push_str(rng.pick(WORDS));
        }
    }
    out.push_str(".\n");
}

fn filler(rng: &mut Rng, out: &mut String) {
    match rng.below(3) {
        0 => sql_row(rng, out),
        1 => json_log(rng, out),
        _ => prose(rng, out),
    }
}

/// About `len` bytes (cut to exactly `len`) of text without secrets.
pub fn no_secrets(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(len + 512);
    while out.len() < len {
        filler(&mut rng, &mut out);
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(len);
    bytes
}

/// About `len` bytes of the same text with one secret or PII value per KiB
/// on average, each on a line of its own context.
pub fn dense(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(len + 4096);
    let mut next_secret = 1024usize;
    while out.len() < len {
        if out.len() >= next_secret {
            out.push_str(&secret_line(&mut rng));
            out.push('\n');
            next_secret += 512 + rng.below(1024) as usize;
        } else {
            filler(&mut rng, &mut out);
        }
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(len);
    bytes
}

/// About `len` bytes of base64 blobs in 76-column lines.
pub fn base64_blobs(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(len + 128);
    while out.len() < len {
        rng.chars(B64, 76, &mut out);
        out.push('\n');
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(len);
    bytes
}

fn luhn_complete(digits: &mut Vec<u8>) {
    // Append the check digit that makes `digits` pass Luhn.
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    digits.push(((10 - sum % 10) % 10) as u8);
}

fn card(rng: &mut Rng) -> String {
    let prefix: &[u8] = rng.pick(&[&[4u8][..], &[5, 1], &[5, 5], &[3, 7]]);
    let total = if prefix == [3, 7] { 15 } else { 16 };
    let mut d = prefix.to_vec();
    while d.len() < total - 1 {
        d.push(rng.below(10) as u8);
    }
    luhn_complete(&mut d);
    let grouped = total == 16 && rng.below(2) == 0;
    let mut s = String::new();
    for (i, x) in d.iter().enumerate() {
        if grouped && i > 0 && i % 4 == 0 {
            s.push(' ');
        }
        s.push(char::from(b'0' + x));
    }
    s
}

fn iban(rng: &mut Rng) -> String {
    // German IBAN: DE + 2 check digits + 18-digit BBAN.
    let mut bban = String::new();
    rng.chars(DIGITS, 18, &mut bban);
    // mod-97 of BBAN + "DE00" with letters as numbers (D=13, E=14).
    let numeric = format!("{bban}131400");
    let mut rem = 0u64;
    for c in numeric.bytes() {
        rem = (rem * 10 + u64::from(c - b'0')) % 97;
    }
    format!("DE{:02}{bban}", 98 - rem)
}

fn jwt(rng: &mut Rng) -> String {
    let mut s = String::from("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ");
    rng.chars(B64URL, 40, &mut s);
    s.push('.');
    rng.chars(B64URL, 43, &mut s);
    s
}

/// One line carrying one secret or PII value, in a realistic context.
pub fn secret_line(rng: &mut Rng) -> String {
    let mut v = String::new();
    match rng.below(20) {
        0 => {
            v.push_str("export AWS_ACCESS_KEY_ID=AKIA");
            rng.chars(UPPER_DIGITS, 16, &mut v);
        }
        1 => {
            v.push_str("aws_secret_access_key = ");
            rng.chars(B64, 40, &mut v);
        }
        2 => {
            v.push_str("GITHUB_TOKEN=ghp_");
            rng.chars(ALNUM, 36, &mut v);
        }
        3 => {
            v.push_str("slack webhook token xoxb-");
            rng.chars(DIGITS, 12, &mut v);
            v.push('-');
            rng.chars(DIGITS, 13, &mut v);
            v.push('-');
            rng.chars(ALNUM, 24, &mut v);
        }
        4 => {
            v.push_str("stripe key sk_live_");
            rng.chars(ALNUM, 24, &mut v);
        }
        5 => {
            v.push_str("OPENAI_API_KEY=sk-proj-");
            rng.chars(B64URL, 48, &mut v);
        }
        6 => {
            v.push_str("Authorization: Bearer ");
            v.push_str(&jwt(rng));
        }
        7 => {
            v.push_str("DATABASE_URL=postgres://app:");
            rng.chars(ALNUM, 16, &mut v);
            v.push_str("@db.internal:5432/orders");
        }
        8 => {
            v.push_str("google maps key AIza");
            rng.chars(B64URL, 35, &mut v);
        }
        9 => {
            v.push_str("contact: ");
            v.push_str(&rng.pick(FIRST).to_lowercase());
            v.push('.');
            v.push_str(&rng.pick(LAST).to_lowercase().replace('-', ""));
            v.push_str("@example.com");
        }
        10 | 11 => {
            v.push_str("card number ");
            v.push_str(&card(rng));
        }
        12 => {
            v.push_str("IBAN ");
            v.push_str(&iban(rng));
        }
        13 => {
            v.push_str(&format!(
                "phone +1 ({}) 555-{:04}",
                200 + rng.below(800),
                rng.below(10_000)
            ));
        }
        14 => {
            v.push_str(&format!(
                "ssn: {:03}-{:02}-{:04}",
                100 + rng.below(600),
                10 + rng.below(89),
                1000 + rng.below(8999)
            ));
        }
        15 => {
            v.push_str(&format!(
                "client ip 10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            ));
        }
        16 => {
            v.push_str("password=");
            rng.chars(ALNUM, 20, &mut v);
        }
        17 => {
            v.push_str("-----BEGIN RSA PRIVATE KEY-----\n");
            for _ in 0..6 {
                rng.chars(B64, 64, &mut v);
                v.push('\n');
            }
            v.push_str("-----END RSA PRIVATE KEY-----");
        }
        18 => {
            v.push_str("anthropic key sk-ant-api03-");
            rng.chars(B64URL, 93, &mut v);
            v.push_str("AA");
        }
        _ => {
            v.push_str("rolpassword: SCRAM-SHA-256$4096:");
            rng.chars(B64, 24, &mut v);
            v.push('$');
            rng.chars(B64, 44, &mut v);
            v.push(':');
            rng.chars(B64, 44, &mut v);
        }
    }
    v
}

/// Values of every kind [`dense`] uses, one line each (for tests).
pub fn secret_values(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| secret_line(&mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        assert_eq!(no_secrets(10_000, 7), no_secrets(10_000, 7));
        assert_ne!(no_secrets(10_000, 7), no_secrets(10_000, 8));
        assert_eq!(dense(50_000, 1).len(), 50_000);
        assert_eq!(base64_blobs(4096, 1).len(), 4096);
        assert!(!no_secrets(100_000, 3).contains(&b'@'));
    }

    #[test]
    fn generated_checksums_hold() {
        let mut rng = Rng::new(5);
        for _ in 0..100 {
            let c: Vec<u32> = card(&mut rng)
                .bytes()
                .filter(u8::is_ascii_digit)
                .map(|b| u32::from(b - b'0'))
                .collect();
            let sum: u32 = c
                .iter()
                .rev()
                .enumerate()
                .map(|(i, &d)| {
                    if i % 2 == 1 {
                        if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
                    } else {
                        d
                    }
                })
                .sum();
            assert_eq!(sum % 10, 0);
            let i = iban(&mut rng);
            let moved = format!("{}{}", &i[4..], "1314") + &i[2..4];
            let rem = moved
                .bytes()
                .fold(0u64, |r, c| (r * 10 + u64::from(c - b'0')) % 97);
            assert_eq!(rem, 1, "{i}");
        }
    }
}
