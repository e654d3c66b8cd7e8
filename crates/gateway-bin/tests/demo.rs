//! `portcullis demo` as a newcomer runs it: the printed psql line works, and
//! Ctrl-C (SIGINT) cleans everything up.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::Client;

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn the_demo_prints_a_psql_line_that_works_and_cleans_up() {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let (listen, admin, kube_listen) = (free_addr(), free_addr(), free_addr());
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "demo",
            "--listen",
            &listen,
            "--admin",
            &admin,
            "--kube-listen",
            &kube_listen,
        ])
        .stdout(out_file.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let banner = loop {
        let mut text = String::new();
        out_file
            .reopen()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        if text.contains("Verify the trail") && text.contains("kubectl create serviceaccount") {
            break text;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the demo exited:\n{text}"
        );
        assert!(Instant::now() < deadline, "no banner:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let line = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("psql \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no psql line:\n{banner}"));
    let dir = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("audit trail"))
        .map(|d| std::path::PathBuf::from(d.trim().trim_end_matches("/audit/")))
        .unwrap();
    let out = Client::psql(line)
        .unwrap()
        .args([
            "-tA",
            "-c",
            "select name, email, api_key from customers where id = 1",
        ])
        .run()
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "Ada Lovelace|[MASKED:email]|[MASKED:field:api_key]"
    );
    let out = Client::psql(line)
        .unwrap()
        .args(["-tA", "-c", "drop table orders"])
        .run()
        .unwrap();
    assert!(out.stderr.contains("no-drop-or-truncate"), "{}", out.stderr);

    // The Kubernetes half: the printed kubeconfig works with kubectl.
    let kubeconfig = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
        .unwrap_or_else(|| panic!("no KUBECONFIG line:\n{banner}"));
    let home = tempfile::tempdir().unwrap();
    let kubectl = |args: &[&str]| {
        let out = Command::new(portcullis_testkit::find_kubectl(33).unwrap())
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", home.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, yaml, err) = kubectl(&["get", "secret", "db-creds", "-o", "yaml"]);
    assert!(ok, "{err}");
    assert!(
        yaml.contains("password: W01BU0tFRDprOHMtc2VjcmV0XQ=="),
        "{yaml}"
    );
    let (ok, _, err) = kubectl(&["delete", "namespace", "prod"]);
    assert!(!ok);
    assert!(err.contains("k8s-no-namespace-delete"), "{err}");

    assert!(dir.exists());
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!dir.exists(), "{} left behind", dir.display());
}
