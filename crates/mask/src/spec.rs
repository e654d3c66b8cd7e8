//! The shape of a built-in detector: the contract between the catalogue
//! (`catalogue/`) and the engine. The catalogue is plain data; the engine
//! compiles it once into one Aho-Corasick automaton and one DFA per detector.

/// What kind of value a detector finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Category {
    /// A credential: an API key, a token, a private key, a password.
    Secret,
    /// Personal data: an email address, a card number, a phone number.
    Pii,
}

/// A check a candidate match must pass before it is masked.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Validator {
    /// The digits of the match pass the Luhn checksum (payment cards).
    Luhn,
    /// The digits of the match start with a known card issuer prefix and have
    /// a length that issuer uses; rejects what is obviously not a card, such
    /// as a 13-digit millisecond timestamp.
    CardIssuer,
    /// The match is an IBAN whose ISO 13616 mod-97 check holds and whose
    /// length is the one its country uses.
    IbanMod97,
    /// The Shannon entropy of the masked part, in bits per byte, is at least
    /// this floor (guards generic `password=` / `secret:` rules against
    /// placeholders such as `password=changeme`).
    MinEntropy(f32),
    /// One of these words (ASCII, matched case-insensitively) occurs within
    /// `window` bytes before the start of the match (e.g. `ssn` before a US
    /// social security number).
    ContextBefore {
        /// The words; lowercase.
        words: &'static [&'static str],
        /// How many bytes before the match to look at.
        window: usize,
    },
    /// The masked part is not one of these values (ASCII, case-insensitive):
    /// well-known placeholders and examples; nor one byte repeated
    /// (`********`), nor a template, variable reference or redaction
    /// (`${VAR}`, `{{ var }}`, `<your-token>`, `%VAR%`, `$VAR`, `[MASKED:…]`).
    NotPlaceholder(&'static [&'static str]),
    /// The masked part contains none of the usual placeholder fragments
    /// (ASCII, case-insensitive): `example`, `your_`, `your-`,
    /// `placeholder`, `xxxx`, `****`, `changeme`, `dummy`, `sample`,
    /// `redacted`, `insert_`, `replace_`, `_here`, `-here`, `notreal`,
    /// `fake_`, `<`, `>`, `${`, `{{`. Guards formats whose charset a
    /// documentation placeholder also fits (`ghp_xxxxxxxx…`,
    /// `sk_live_your_key_here`).
    NoPlaceholderText,
    /// The masked part has characters of at least this many of the classes
    /// lowercase letter, uppercase letter, digit (so a value that is one
    /// plain word or one number, such as `kubernetes-oidc-provider`, is not
    /// taken for a generated secret).
    MinClasses(u8),
    /// The masked part has between `.0` and `.1` ASCII digits (inclusive):
    /// a phone number of a plausible length whatever its grouping.
    DigitsBetween(u8, u8),
    /// The masked part is a Bitcoin base58check address (P2PKH or P2SH,
    /// mainnet or testnet): it decodes, its 4-byte double-SHA-256 checksum
    /// holds, and the payload is a version byte (0x00, 0x05, 0x6f, 0xc4) and
    /// a 20-byte hash.
    Base58CheckAddress,
    /// The masked part is a segwit address (BIP-173 bech32 for version 0,
    /// BIP-350 bech32m for versions 1-16) with the `bc` or `tb` prefix and a
    /// valid checksum and witness program.
    SegwitAddress,
    /// The masked part is an Ethereum address (`0x` and 40 hex digits):
    /// all-lowercase and all-uppercase addresses carry no checksum and pass;
    /// mixed-case ones must carry the EIP-55 checksum (the case of each
    /// letter follows the Keccak-256 hash of the lowercase address).
    Eip55Address,
}

/// One built-in detector, as plain data.
///
/// Patterns are compiled by `regex-automata` with Unicode mode off and on
/// bytes (`unicode(false)`, `utf8(false)`): `\b`, `\w`, `\d` and `\s` are
/// ASCII, which lets every pattern run as a DFA. Case-insensitivity is
/// written in the pattern (`(?i)`). If the pattern has a capture group named
/// `m`, only that group is masked; otherwise the whole match is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DetectorSpec {
    /// Stable id, kebab-case (`aws-access-key-id`).
    pub(crate) id: &'static str,
    /// Secret or PII.
    pub(crate) category: Category,
    /// One line for humans: what it finds and where the format is documented.
    pub(crate) description: &'static str,
    /// Lowercase ASCII literals, matched case-insensitively by the prefilter;
    /// every match of the pattern contains at least one of them. Empty for
    /// detectors with no keyword (email, card, phone, ...): the engine gives
    /// those a cheap prefilter of their own.
    pub(crate) keywords: &'static [&'static str],
    /// The pattern (see the type's doc for the dialect).
    pub(crate) pattern: &'static str,
    /// Checks a candidate must pass, all of them.
    pub(crate) validators: &'static [Validator],
    /// The longest match the pattern can produce, in bytes; patterns that
    /// could match without bound are capped at this length.
    pub(crate) max_len: usize,
}
