//! A recording made by the Recorder is accepted by a real asciinema.
//!
//! `asciinema cat` opens /dev/tty, so it runs under a pseudo-terminal made
//! by `script`. Without asciinema this test fails: install it with
//! `apt-get install -y asciinema`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use portcullis_audit::{AsciicastHeader, Recorder};

fn asciinema_cat(file: &Path) -> (bool, String) {
    let found = Command::new("asciinema").arg("--version").output();
    match found {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "asciinema is not installed; this test needs a real asciinema 2.x: apt-get install -y asciinema"
        ),
    }
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("asciinema cat '{}'", file.display()),
            "/dev/null",
        ])
        .output()
        .expect("`script` (util-linux) is needed to give asciinema a terminal");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn asciinema_accepts_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.cast");
    let mut header = AsciicastHeader::new(100, 30);
    header.title = Some("kubectl exec -it web-0 -- sh".into());
    header.timestamp = Some(1_795_000_000);
    header.env.insert("TERM".into(), "xterm-256color".into());
    let mut rec = Recorder::new(std::fs::File::create(&path).unwrap(), &header).unwrap();
    let ms = Duration::from_millis;
    rec.output(ms(5), b"/ # ").unwrap();
    rec.input(ms(900), b"echo h\xc3").unwrap(); // a character split across chunks
    rec.input(ms(901), b"\xa9llo\r").unwrap();
    rec.output(ms(902), "echo héllo\r\nhéllo-from-the-pod\r\n".as_bytes())
        .unwrap();
    rec.resize(ms(1500), 120, 40).unwrap();
    rec.output(ms(1600), b"token=[masked:aws_access_key]\r\n")
        .unwrap();
    rec.output(ms(1700), b"/ # exit\r\n").unwrap();
    rec.finish().unwrap();

    let cast = std::fs::read_to_string(&path).unwrap();
    assert!(cast.contains(r#"[0.900000,"i","echo h"]"#), "{cast}");
    assert!(cast.contains(r#"[0.901000,"i","éllo\r"]"#), "{cast}");
    assert!(cast.contains(r#"[1.500000,"r","120x40"]"#), "{cast}");

    let (ok, out) = asciinema_cat(&path);
    assert!(ok, "asciinema rejected the recording:\n{out}\n{cast}");
    assert!(out.contains("héllo-from-the-pod"), "{out}");
    assert!(out.contains("token=[masked:aws_access_key]"), "{out}");

    // The check can fail: asciinema refuses a file that is not asciicast.
    let bad = dir.path().join("bad.cast");
    std::fs::write(&bad, "{\"version\": 7}\n[0.1, \"o\", \"x\"]\n").unwrap();
    let (ok, out) = asciinema_cat(&bad);
    assert!(!ok, "asciinema accepted a bad file:\n{out}");
    assert!(out.contains("only asciicast v1 and v2"), "{out}");
}
