//! Lists the built-in detectors: id, category, keywords, validators, maximum
//! match length, and a count per category.
//!
//! Run with: `cargo run -p portcullis-mask --example catalogue`

use portcullis_mask::{Category, Validator, catalogue};

fn validator(v: &Validator) -> String {
    match v {
        Validator::Luhn => "luhn".into(),
        Validator::CardIssuer => "card-issuer".into(),
        Validator::IbanMod97 => "iban-mod97".into(),
        Validator::MinEntropy(bits) => format!("entropy>={bits}"),
        Validator::ContextBefore { words, window } => {
            format!("context({} within {window}B)", words.join("|"))
        }
        Validator::NotPlaceholder(list) => format!("not-placeholder({})", list.len()),
        other => format!("{other:?}"),
    }
}

fn main() {
    let (mut secrets, mut pii) = (0, 0);
    println!(
        "{:<44} {:<7} {:>6}  {:<40} validators",
        "id", "kind", "maxlen", "keywords"
    );
    for d in catalogue() {
        let kind = match d.category() {
            Category::Secret => {
                secrets += 1;
                "secret"
            }
            Category::Pii => {
                pii += 1;
                "pii"
            }
            _ => "other",
        };
        let keywords = if d.keywords().is_empty() {
            "(none: own prefilter)".to_string()
        } else {
            d.keywords().join(",")
        };
        let validators: Vec<String> = d.validators().iter().map(validator).collect();
        println!(
            "{:<44} {:<7} {:>6}  {:<40} {}",
            d.id(),
            kind,
            d.max_len(),
            keywords,
            if validators.is_empty() {
                "-".to_string()
            } else {
                validators.join(" ")
            }
        );
    }
    println!(
        "\n{secrets} secret detectors, {pii} PII detectors, {} in all",
        secrets + pii
    );
}
