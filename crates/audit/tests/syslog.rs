//! The syslog sink against a real rsyslog (`apt-get install -y rsyslog`),
//! and the fan-out's quorum.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_audit::{
    AuditError, AuditEvent, AuditSink, Effect, EventKind, FanoutSink, JsonlOptions, JsonlSink,
    MaskedText, Principal, PrincipalKind, SyslogOptions, SyslogSink,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn rsyslogd() -> PathBuf {
    for p in ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("rsyslogd is not installed; this test needs a real rsyslog: apt-get install -y rsyslog")
}

struct Rsyslog {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_rsyslog(dir: &Path) -> Rsyslog {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = dir.join("out.log");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{dir}")
module(load="imtcp")
template(name="fields" type="string" string="%msgid%|%structured-data%|%app-name%|%hostname%|%procid%|%syslogseverity%|%syslogfacility%|%timereported:::date-rfc3339%|%msg%\n")
ruleset(name="audit") {{ action(type="omfile" file="{out}" template="fields") }}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="audit")
"#,
            dir = dir.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let child = Command::new(rsyslogd())
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "rsyslogd did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Rsyslog { child, port, out }
}

fn command(effect: Effect, text: &str) -> AuditEvent {
    AuditEvent::new(EventKind::Command {
        command_id: 1,
        text: MaskedText::already_masked(text),
        facts: Default::default(),
        effect,
        rule_id: None,
        reason: "r".into(),
    })
    .with_session("s-1")
    .with_principal(Principal {
        id: "al\"ice]".into(),
        kind: PrincipalKind::Agent,
        groups: vec![],
        token_id: None,
    })
}

#[test]
fn rsyslog_parses_each_octet_counted_rfc5424_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_rsyslog(dir.path());
    let rt = runtime();
    let options = SyslogOptions::new(format!("127.0.0.1:{}", server.port), "gw-1.example")
        .unwrap()
        .procid("replica-a")
        .unwrap();
    let sink = SyslogSink::new(options);
    let events = [
        command(Effect::Allow, "select 1"),
        command(
            Effect::Deny,
            "drop table users -- with a\nnewline and ünïcode",
        ),
        AuditEvent::new(EventKind::GatewayError {
            message: "oops".into(),
        }),
    ];
    rt.block_on(async {
        assert!(sink.health().await.is_ready());
        for (i, e) in events.iter().enumerate() {
            let r = sink.record(e).await.unwrap();
            assert_eq!(r.seq(), i as u64 + 1);
            assert_eq!(r.durability(), portcullis_audit::Durability::Transmitted);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&server.out).unwrap_or_default();
        if text.lines().count() >= 3 {
            break text;
        }
        assert!(Instant::now() < deadline, "rsyslog wrote only:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (i, (line, event)) in lines.iter().zip(&events).enumerate() {
        let f: Vec<&str> = line.splitn(9, '|').collect();
        assert_eq!(f[0], event.kind.name(), "{line}");
        assert!(
            f[1].starts_with(&format!("[portcullis@32473 seq=\"{}\"", i + 1)),
            "{line}"
        );
        assert_eq!(
            (f[2], f[3], f[4]),
            ("portcullis", "gw-1.example", "replica-a"),
            "{line}"
        );
        assert_eq!(f[6], "13", "facility log audit: {line}");
        let msg = f[8].trim_start_matches('\u{feff}');
        let back: AuditEvent = serde_json::from_str(msg).unwrap();
        assert_eq!(&back, event);
    }
    assert_eq!(lines[0].split('|').nth(5), Some("5"));
    assert_eq!(
        lines[1].split('|').nth(5),
        Some("4"),
        "a denial is a warning"
    );
    assert_eq!(
        lines[2].split('|').nth(5),
        Some("3"),
        "a gateway error is an error"
    );
    assert!(
        lines[0].contains(r#"principal="al\"ice\]""#),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(r#"effect="deny""#), "{}", lines[1]);

    // The collector goes away: health says so and records fail.
    drop(server);
    rt.block_on(async {
        assert!(!sink.health().await.is_ready());
        assert!(sink.record(&events[0]).await.is_err());
    });
}

#[test]
fn fanout_requires_its_quorum_and_never_drops_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    // Nothing listens on this port.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead: Arc<dyn AuditSink> = Arc::new(SyslogSink::new(
        SyslogOptions::new(format!("127.0.0.1:{dead_port}"), "gw").unwrap(),
    ));
    let a: Arc<dyn AuditSink> = Arc::new(
        JsonlSink::open(&dir.path().join("a"), JsonlOptions::new("gw"))
            .unwrap()
            .0,
    );
    let b: Arc<dyn AuditSink> = Arc::new(
        JsonlSink::open(&dir.path().join("b"), JsonlOptions::new("gw"))
            .unwrap()
            .0,
    );
    let event = command(Effect::Allow, "select 1");

    let all = FanoutSink::builder()
        .member(Arc::clone(&a))
        .member(Arc::clone(&dead))
        .build()
        .unwrap();
    let err = rt.block_on(all.record(&event)).unwrap_err();
    assert!(
        matches!(&err, AuditError::QuorumNotMet { acknowledged: 1, required: 2, failures } if failures.contains("syslog")),
        "{err}"
    );
    assert!(!rt.block_on(all.health()).is_ready());

    let two_of_three = FanoutSink::builder()
        .member(Arc::clone(&a))
        .member(Arc::clone(&b))
        .member(Arc::clone(&dead))
        .quorum(2)
        .member_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let receipt = rt.block_on(two_of_three.record(&event)).unwrap();
    assert_eq!(receipt.members().len(), 3);
    let failures: Vec<_> = receipt.failures().collect();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].0.starts_with("syslog:"), "{failures:?}");
    assert!(rt.block_on(two_of_three.health()).is_ready());

    assert!(FanoutSink::builder().member(a).quorum(2).build().is_err());
    assert!(FanoutSink::builder().build().is_err());
}
