//! `policy explain` and `policy test`: try a policy before enforcing it.

use std::path::{Path, PathBuf};

use portcullis_policy::{
    Policy, Principal, PrincipalKind, ReplayEntry, Request, Resource, ResourceKind, replay,
};

use crate::cli::PolicyCommand;
use crate::config::policy_error;

pub(crate) fn run(cmd: PolicyCommand) -> Result<(), String> {
    match cmd {
        PolicyCommand::Explain {
            policy,
            sql,
            principal,
            resource,
            json,
        } => {
            let policy = read_policy(&policy)?;
            let principal = parse_principal(&principal)?;
            let resource = Resource::new(resource, ResourceKind::Postgres);
            let explanation = policy.explain(&Request::sql(&principal, &resource, &sql));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&explanation).map_err(|e| e.to_string())?
                );
            } else {
                println!("{}", explanation.to_string().trim_end());
            }
            Ok(())
        }
        PolicyCommand::Test {
            policy,
            trail,
            baseline,
            json,
        } => {
            let candidate = read_policy(&policy)?;
            let baseline = baseline.as_deref().map(read_policy).transpose()?;
            let files = super::audit::trail_paths(&trail)?;
            let entries = trail_commands(&files)?;
            let report = replay(&candidate, baseline.as_ref(), entries);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                println!("{}", report.to_string().trim_end());
            }
            Ok(())
        }
    }
}

fn read_policy(path: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Policy::from_toml_str(&text).map_err(|e| policy_error(path, &e))
}

/// `ID:KIND[:GROUP,GROUP…]`, e.g. `ci-bot:agent:readers`.
fn parse_principal(s: &str) -> Result<Principal, String> {
    let mut parts = s.splitn(3, ':');
    let id = parts.next().filter(|id| !id.is_empty());
    let kind = match parts.next() {
        Some("human") => PrincipalKind::Human,
        Some("agent") | None => PrincipalKind::Agent,
        Some("service") => PrincipalKind::Service,
        Some(other) => return Err(format!("principal kind {other:?}: human, agent or service")),
    };
    let id = id.ok_or_else(|| format!("principal {s:?}: give ID:KIND[:GROUPS]"))?;
    let groups: Vec<&str> = parts
        .next()
        .map(|g| g.split(',').filter(|g| !g.is_empty()).collect())
        .unwrap_or_default();
    Ok(Principal::new(id, kind).with_groups(groups))
}

/// The SQL commands recorded in a trail, with who ran them where and what was
/// decided then. Statement text in the trail is masked (secrets in literals
/// are replaced), so a decision that depends on a literal's content may
/// differ from the one taken live.
fn trail_commands(files: &[PathBuf]) -> Result<Vec<ReplayEntry>, String> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: not a trail record: {e}", f.display(), n + 1))?;
            let Some(event) = record.get("event") else {
                continue;
            };
            if event.get("type").and_then(|t| t.as_str()) != Some("command") {
                continue;
            }
            let resource_is_pg = event
                .pointer("/resource/protocol")
                .and_then(|p| p.as_str())
                .is_none_or(|p| p == "postgres");
            let Some(sql) = event.get("text").and_then(|t| t.as_str()) else {
                continue;
            };
            if !resource_is_pg {
                continue;
            }
            let principal = match event.get("principal") {
                Some(p) => {
                    let id = p.get("id").and_then(|v| v.as_str()).unwrap_or("unknown");
                    let kind = match p.get("kind").and_then(|v| v.as_str()) {
                        Some("human") => PrincipalKind::Human,
                        Some("service") => PrincipalKind::Service,
                        _ => PrincipalKind::Agent,
                    };
                    let groups: Vec<String> = p
                        .get("groups")
                        .and_then(|g| g.as_array())
                        .map(|g| {
                            g.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    Principal::new(id, kind).with_groups(groups)
                }
                None => Principal::new("unknown", PrincipalKind::Agent),
            };
            let target = event
                .pointer("/resource/target")
                .and_then(|t| t.as_str())
                .unwrap_or("unknown");
            out.push(ReplayEntry {
                principal,
                resource: Resource::new(target, ResourceKind::Postgres),
                sql: sql.to_owned(),
                recorded_effect: event
                    .get("effect")
                    .and_then(|e| e.as_str())
                    .map(str::to_owned),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_and_refuse_nonsense() {
        let p = parse_principal("ci-bot:agent:readers,ops").unwrap();
        assert_eq!(p.id, "ci-bot");
        assert_eq!(p.groups, vec!["readers".to_owned(), "ops".to_owned()]);
        assert!(parse_principal(":agent").is_err());
        assert!(parse_principal("x:robot").is_err());
    }
}
