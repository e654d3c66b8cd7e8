//! Loading the policy file the gateway enforces: the policy crate's own
//! validation, then the options this gateway does not implement, refused with
//! their `file:line:column` rather than accepted and ignored.

use std::path::Path;

use portcullis_policy::Policy;
use serde::Deserialize;
use toml::Spanned;

use crate::config::policy_error;

/// Reads, validates and checks `path` for serving.
pub(crate) fn load(path: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let policy = Policy::from_toml_str(&text).map_err(|e| policy_error(path, &e))?;
    unsupported(&text).map_err(|(offset, message)| {
        let (line, column) = line_col(&text, offset);
        format!("{}:{line}:{column}: {message}", path.display())
    })?;
    Ok(policy)
}

/// Only the parts of the document this check reads; the policy crate has
/// validated the rest.
#[derive(Deserialize)]
struct Doc {
    review: Option<Review>,
    #[serde(default)]
    rule: Vec<Rule>,
}

#[derive(Deserialize)]
struct Review {
    mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct Rule {
    mode: Option<Spanned<String>>,
}

/// The byte offset and message of the first option the gateway cannot keep.
fn unsupported(text: &str) -> Result<(), (usize, String)> {
    let Ok(doc) = toml::from_str::<Doc>(text) else {
        // The policy crate accepted it; a shape this reader does not know
        // cannot carry a mode it would miss.
        return Ok(());
    };
    let modes = doc
        .review
        .iter()
        .filter_map(|r| r.mode.as_ref())
        .chain(doc.rule.iter().filter_map(|r| r.mode.as_ref()));
    for mode in modes {
        if mode.get_ref() == "ticket" {
            return Err((
                mode.span().start,
                "review mode \"ticket\" is not implemented by this gateway yet: \
                 a ticket would be held like mode = \"hold\"; use \"hold\""
                    .to_owned(),
            ));
        }
    }
    Ok(())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_mode_is_refused_where_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.toml");
        let text = "default = \"deny\"\n\n[[rule]]\nid = \"w\"\neffect = \"review\"\nmode = \"ticket\"\nwhen.sql.kind = \"delete\"\n";
        std::fs::write(&file, text).unwrap();
        let err = load(&file).unwrap_err();
        assert!(err.ends_with("policy.toml:6:8: review mode \"ticket\" is not implemented by this gateway yet: a ticket would be held like mode = \"hold\"; use \"hold\""), "{err}");

        let text = "[review]\nmode = \"ticket\"\n";
        std::fs::write(&file, text).unwrap();
        assert!(load(&file).unwrap_err().contains("policy.toml:2:8:"));

        let text = "[review]\nmode = \"hold\"\n[[rule]]\nid = \"w\"\neffect = \"review\"\nmode = \"hold\"\nwhen.sql.kind = \"delete\"\n";
        std::fs::write(&file, text).unwrap();
        assert!(load(&file).is_ok());
    }
}
