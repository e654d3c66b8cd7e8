//! The `portcullis` command line, run as a real process.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Output};

fn portcullis(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn keygen_issue_inspect_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = portcullis(&["token", "keygen", "--out", "gateway.pem"], d);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Never overwrite a key.
    let again = portcullis(&["token", "keygen", "--out", "gateway.pem"], d);
    assert!(!again.status.success());

    std::fs::write(
        d.join("portcullis.toml"),
        "[identity]\nsigning_key = \"gateway.pem\"\nrevocation_file = \"revoked\"\n",
    )
    .unwrap();
    let out = portcullis(
        &[
            "token",
            "issue",
            "--principal",
            "agent:ci-bot",
            "--groups",
            "agents,ci",
            "--ttl",
            "15m",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert!(token.starts_with("eyJ"), "{token}");

    let out = portcullis(
        &["token", "inspect", &token, "--config", "portcullis.toml"],
        d,
    );
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(shown.contains("\"sub\": \"agent:ci-bot\""), "{shown}");
    assert!(shown.contains("\"agents\""), "{shown}");
    assert!(shown.contains("accepted: agent:ci-bot (agent)"), "{shown}");
    let claims: serde_json::Value =
        serde_json::from_str(shown.split("\naccepted").next().unwrap()).unwrap();
    let jti = claims["claims"]["jti"].as_str().unwrap().to_owned();
    let exp = claims["claims"]["exp"].as_u64().unwrap();
    let iat = claims["claims"]["iat"].as_u64().unwrap();
    assert_eq!(exp - iat, 900);

    let out = portcullis(&["token", "revoke", &jti], d);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = portcullis(
        &["token", "inspect", &token, "--config", "portcullis.toml"],
        d,
    );
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("refused: token {jti} has been revoked")),
        "{shown}"
    );
}

#[test]
fn check_reports_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("broken.toml"),
        "# a listener open to the network without TLS\n[[listener]]\naddress = \"0.0.0.0:6432\"\n",
    )
    .unwrap();
    let out = portcullis(&["check", "--config", "broken.toml"], d);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("broken.toml:3:11: "), "{err}");
    assert!(err.contains("loopback"), "{err}");

    std::fs::write(d.join("syntax.toml"), "[identity\n").unwrap();
    let out = portcullis(&["check", "--config", "syntax.toml"], d);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("syntax.toml:1:"),
        "{}",
        text(&out.stderr)
    );

    // The policy file is checked too, with its own line and column.
    std::fs::write(
        d.join("policy.toml"),
        "default = \"deny\"\n\n[[rule]]\nid = \"r\"\neffect = \"alow\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("bad-policy.toml"),
        "[[listener]]\naddress = \"127.0.0.1:6432\"\n[policy]\nfile = \"policy.toml\"\n",
    )
    .unwrap();
    let out = portcullis(&["check", "--config", "bad-policy.toml"], d);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("policy.toml:5:10: "), "{err}");

    std::fs::write(d.join("policy.toml"), "default = \"deny\"\n").unwrap();
    std::fs::write(
        d.join("ok.toml"),
        "[[listener]]\naddress = \"127.0.0.1:6432\"\n[policy]\nfile = \"policy.toml\"\n",
    )
    .unwrap();
    let out = portcullis(&["check", "--config", "ok.toml"], d);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn api_key_prints_a_key_and_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let out = portcullis(&["token", "api-key"], dir.path());
    assert!(out.status.success());
    let s = text(&out.stdout);
    let key = s.lines().next().unwrap().strip_prefix("key:    ").unwrap();
    assert!(key.starts_with("pcl_"));
    let hash = s.lines().nth(1).unwrap();
    assert_eq!(hash.len(), "sha256 = \"\"".len() + 64, "{hash}");
}

#[test]
fn audit_tail_follow_prints_lines_as_they_are_appended() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw-000001.jsonl");
    std::fs::write(&file, "{\"old\":1}\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "tail", "-n", "1", "--follow"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "{\"old\":1}");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    // A half-written line is not printed until it is complete.
    f.write_all(b"{\"new\":").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    f.write_all(b"2}\n").unwrap();
    // A new file of the trail is followed too.
    std::fs::write(dir.path().join("gw-000002.jsonl"), "{\"next\":3}\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "{\"new\":2}");
    assert_eq!(lines.next().unwrap().unwrap(), "{\"next\":3}");
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn policy_explain_and_test_against_a_trail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read_only = root.join("examples/read-only-agent.toml");
    let read_only = read_only.to_str().unwrap();

    let out = portcullis(
        &[
            "policy",
            "explain",
            read_only,
            "SELECT set_config('a', 'b', false)",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("set_config"), "{shown}");
    assert!(shown.contains("decision: deny"), "{shown}");

    // A trail where an agent's write was allowed at the time: the read-only
    // policy would deny it, and keeps allowing the plain read.
    let mut trail = String::new();
    for (seq, sql) in [
        (1, "SELECT id FROM shop.orders WHERE id = 1"),
        (2, "DELETE FROM shop.orders WHERE id = 1"),
    ] {
        trail.push_str(&format!(
            "{{\"chain\":\"t\",\"seq\":{seq},\"event\":{{\"v\":1,\"time\":\"2026-11-30T00:00:00Z\",\"session\":\"s1\",\
             \"principal\":{{\"id\":\"ci-bot\",\"kind\":\"agent\",\"groups\":[]}},\
             \"resource\":{{\"protocol\":\"postgres\",\"target\":\"shop\"}},\
             \"type\":\"command\",\"command_id\":{seq},\"text\":\"{sql}\",\"effect\":\"allow\",\"reason\":\"\"}}}}\n"
        ));
    }
    std::fs::write(d.join("trail.jsonl"), trail).unwrap();
    let out = portcullis(
        &[
            "policy",
            "test",
            read_only,
            "--trail",
            "trail.jsonl",
            "--json",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["total"], 2, "{report}");
    assert_eq!(report["changed"], 1, "{report}");
    assert_eq!(report["changes"][0]["after"], "deny", "{report}");
    assert!(
        report["changes"][0]["sql"]
            .as_str()
            .unwrap()
            .starts_with("DELETE")
    );
}
