//! The policy document as written (serde), before validation.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyDoc {
    pub(crate) default: Option<Spanned<String>>,
    pub(crate) on_unparsed: Option<Spanned<String>>,
    pub(crate) review: Option<ReviewSpec>,
    pub(crate) dangerous_functions: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) extra_dangerous_functions: Vec<String>,
    pub(crate) unsafe_parameters: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) extra_unsafe_parameters: Vec<String>,
    pub(crate) default_schema: Option<String>,
    pub(crate) max_command_bytes: Option<usize>,
    #[serde(default)]
    pub(crate) extra_read_only_functions: Vec<String>,
    pub(crate) decision_cache_entries: Option<usize>,
    #[serde(default, rename = "rule")]
    pub(crate) rules: Vec<Spanned<RuleSpec>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewSpec {
    pub(crate) groups: Option<Vec<String>>,
    pub(crate) min_approvals: Option<u32>,
    pub(crate) timeout: Option<Spanned<DurationSpec>>,
    pub(crate) mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum DurationSpec {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    pub(crate) id: Spanned<String>,
    pub(crate) description: Option<String>,
    pub(crate) effect: Spanned<String>,
    pub(crate) reason: Option<String>,
    pub(crate) groups: Option<Vec<String>>,
    pub(crate) min_approvals: Option<u32>,
    pub(crate) timeout: Option<Spanned<DurationSpec>>,
    pub(crate) mode: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) when: WhenSpec,
    pub(crate) mask: Option<MaskSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhenSpec {
    pub(crate) principal: Option<PrincipalWhen>,
    pub(crate) resource: Option<ResourceWhen>,
    pub(crate) sql: Option<Spanned<SqlWhen>>,
    pub(crate) k8s: Option<Spanned<K8sWhen>>,
}

pub(crate) type Pat = Option<Spanned<Patterns>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrincipalWhen {
    pub(crate) id: Pat,
    pub(crate) kind: Pat,
    pub(crate) groups: Pat,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceWhen {
    pub(crate) name: Pat,
    pub(crate) kind: Pat,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, Spanned<Patterns>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlWhen {
    pub(crate) kind: Pat,
    pub(crate) reads: Pat,
    pub(crate) writes: Pat,
    pub(crate) objects: Pat,
    pub(crate) functions: Pat,
    pub(crate) columns: Pat,
    pub(crate) predicate_columns: Pat,
    pub(crate) computed_columns: Pat,
    pub(crate) risk: Pat,
    pub(crate) parameters: Pat,
    pub(crate) unparsed: Option<bool>,
    pub(crate) read_only: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct K8sWhen {
    pub(crate) verb: Pat,
    pub(crate) group: Pat,
    pub(crate) resource: Pat,
    pub(crate) subresource: Pat,
    pub(crate) namespace: Pat,
    pub(crate) name: Pat,
    pub(crate) command: Pat,
    pub(crate) risk: Pat,
    pub(crate) impersonate_user: Pat,
    pub(crate) unparsed: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MaskSpec {
    #[serde(default)]
    pub(crate) fields: Vec<FieldSpec>,
    /// Accepted only to reject it with its location (see `Compiler::rule`).
    pub(crate) detectors: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldSpec {
    pub(crate) field: String,
    pub(crate) action: Option<Spanned<String>>,
}

/// A condition's patterns: `"x"`, `["x", "y"]`, or `{ any = [...], all = [...], none = [...] }`.
#[derive(Debug, Default)]
pub(crate) struct Patterns {
    pub(crate) any: Option<Vec<String>>,
    pub(crate) all: Option<Vec<String>>,
    pub(crate) none: Option<Vec<String>>,
}

impl Patterns {
    pub(crate) fn all_patterns(&self) -> impl Iterator<Item = &String> {
        self.any
            .iter()
            .chain(self.all.iter())
            .chain(self.none.iter())
            .flatten()
    }
}

/// A string or a list of strings.
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(OneOrMany(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Patterns;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a pattern, a list of patterns, or a table with `any`, `all` and `none`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Patterns, E> {
                Ok(Patterns {
                    any: Some(vec![v.to_owned()]),
                    ..Patterns::default()
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Patterns, A::Error> {
                let OneOrMany(v) =
                    OneOrMany::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Patterns {
                    any: Some(v),
                    ..Patterns::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Patterns, A::Error> {
                let mut p = Patterns::default();
                while let Some(key) = map.next_key::<String>()? {
                    let OneOrMany(v) = map.next_value()?;
                    let slot = match key.as_str() {
                        "any" => &mut p.any,
                        "all" => &mut p.all,
                        "none" | "not" => &mut p.none,
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["any", "all", "none", "not"],
                            ));
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom(format!("`{key}` given twice")));
                    }
                    *slot = Some(v);
                }
                if p.any.is_none() && p.all.is_none() && p.none.is_none() {
                    return Err(de::Error::custom(
                        "an empty condition table; give `any`, `all` or `none`",
                    ));
                }
                Ok(p)
            }
        }
        d.deserialize_any(V)
    }
}
