//! Shared by the testdata runner and the property tests: the cases of
//! testdata/mask/*.toml.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) detector: String,
    pub(crate) kind: Kind,
    pub(crate) input: String,
    pub(crate) output: Option<String>,
    #[serde(default)]
    pub(crate) findings: Vec<String>,
    /// Set by the loader: the file the case came from.
    #[serde(skip)]
    pub(crate) file: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Positive,
    Negative,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    case: Vec<Case>,
}

pub(crate) fn testdata_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/mask")
}

/// Every case of every testdata/mask/*.toml, in file then case order.
pub(crate) fn load_cases() -> Vec<Case> {
    let dir = testdata_dir();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file: File =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for mut case in file.case {
            case.file = name.clone();
            cases.push(case);
        }
    }
    cases
}
