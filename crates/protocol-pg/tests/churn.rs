//! 1,000 connections opened, logged in and dropped through the proxy leave
//! no file descriptor behind. Alone in its test binary, so no other test's
//! sockets are counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Running, TOKEN};
use portcullis_testkit::PgCluster;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Logs in and reads until ReadyForQuery; then the connection is dropped
/// (half of them mid-query, without a Terminate).
fn login_and_drop(port: u16, mid_query: bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    startup.extend_from_slice(b"user\0alice\0database\0postgres\0\0");
    let len = (startup.len() as u32).to_be_bytes();
    startup[..4].copy_from_slice(&len);
    s.write_all(&startup).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut sent_token = false;
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {got:?}");
        got.extend_from_slice(&buf[..n]);
        if !sent_token && got.first() == Some(&b'R') {
            let mut token = TOKEN.as_bytes().to_vec();
            token.push(0);
            s.write_all(&frame(b'p', &token)).unwrap();
            sent_token = true;
            got.clear();
        } else if sent_token && got.windows(6).any(|w| w == b"Z\0\0\0\x05I") {
            break;
        }
    }
    if mid_query {
        s.write_all(&frame(b'Q', b"SELECT pg_sleep(0.2)\0"))
            .unwrap();
    }
}

#[test]
fn a_thousand_connections_opened_and_dropped_leave_no_descriptor_behind() {
    let cluster = PgCluster::start().unwrap();
    // The backend leg over the unix socket (trust): 1,000 SCRAM logins in a
    // debug build would take minutes. SCRAM is covered by the other tests.
    let proxy = Running::start_unix(&cluster);
    proxy
        .hook
        .record_events
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // Warm up: the runtime's threads and first allocations.
    for _ in 0..20 {
        login_and_drop(proxy.port, false);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (fds_before, rss_before) = (open_fds(), rss_kib());
    for i in 0..1000 {
        login_and_drop(proxy.port, i % 2 == 1);
    }
    let mut fds_after = open_fds();
    for _ in 0..100 {
        if fds_after <= fds_before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        fds_after = open_fds();
    }
    let rss_after = rss_kib();
    eprintln!(
        "1000 connections: fds {fds_before} -> {fds_after}, RSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert!(
        fds_after <= fds_before,
        "descriptors grew from {fds_before} to {fds_after}"
    );
    // Every backend process went away too.
    let mut backends = String::new();
    for _ in 0..100 {
        backends = cluster
            .execute(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
            .unwrap();
        if backends.trim() == "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(backends.trim(), "0");
}
