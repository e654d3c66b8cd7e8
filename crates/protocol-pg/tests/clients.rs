//! tokio-postgres, pgbench and raw captures through the real proxy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Running;
use portcullis_pg::{Event, ProxyConfig, RefusedBy, SessionConfig};
use portcullis_testkit::{Client, PgCluster};
use tokio_postgres::NoTls;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(proxy: &Running) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&proxy.dsn("postgres"), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("not a db error: {e}"))
}

#[test]
fn extended_protocol_transforms_denies_and_holds() {
    let cluster = PgCluster::start().unwrap();
    cluster
        .execute("CREATE TABLE t (id int primary key, secret text, n int); INSERT INTO t VALUES (1, 'quiet', 10), (2, 'calm', 20);")
        .unwrap();
    let proxy = Running::start(&cluster);
    runtime().block_on(async {
        let client = connect(&proxy).await;
        // Binary results (tokio-postgres asks for them) are transformed too.
        let rows = client
            .query("SELECT id, secret, n FROM t WHERE id = $1", &[&1i32])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, String>(1), "QUIET");
        assert_eq!(rows[0].get::<_, i32>(2), 10);
        let stmt = client
            .prepare("SELECT secret FROM t ORDER BY id")
            .await
            .unwrap();
        for _ in 0..3 {
            let rows = client.query(&stmt, &[]).await.unwrap();
            let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(got, ["QUIET", "CALM"]);
        }
        // Denied at Parse; the connection stays usable.
        let err = client.prepare("DROP TABLE t").await.unwrap_err();
        assert_eq!(code(&err), "42501");
        assert_eq!(
            client
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get::<_, i64>(0),
            2
        );
        // Held at Execute with the bound parameters; one approval, one execution.
        let del = client.prepare("DELETE FROM t WHERE id = $1").await.unwrap();
        let c2 = &client;
        let run = async { c2.execute(&del, &[&2i32]).await };
        let release = async {
            while proxy.hook.held.load(Ordering::SeqCst) < 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            proxy.hook.release.add_permits(1);
        };
        let (deleted, ()) = tokio::join!(run, release);
        assert_eq!(deleted.unwrap(), 1);
        // Every Execute reached the hook (each is a command), the DELETE's
        // with its bound value.
        let params = proxy.hook.executed_params.lock().unwrap().clone();
        assert_eq!(params.len(), 6, "{params:?}");
        assert_eq!(
            params.last(),
            Some(&vec![Some(bytes::Bytes::from_static(&[0, 0, 0, 2]))])
        );
        // A second execution is held again.
        let run = async { c2.execute(&del, &[&1i32]).await };
        let release = async {
            while proxy.hook.held.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            proxy.hook.release.add_permits(1);
        };
        let (deleted, ()) = tokio::join!(run, release);
        assert_eq!(deleted.unwrap(), 1);
    });
    let events = proxy.hook.events();
    assert!(events.iter().any(
        |e| matches!(e, Event::CommandDenied { reason, by: RefusedBy::Hook, .. } if reason == "DROP is not allowed")
    ));
    assert!(
        events.iter().any(
            |e| matches!(e, Event::CommandCompleted { tag, rows: 2, .. } if tag == "SELECT 2")
        )
    );
}

#[test]
fn extended_denial_fails_the_transaction() {
    let cluster = PgCluster::start().unwrap();
    cluster.execute("CREATE TABLE tx (id int)").unwrap();
    let proxy = Running::start(&cluster);
    runtime().block_on(async {
        let client = connect(&proxy).await;
        client.batch_execute("BEGIN").await.unwrap();
        client
            .execute("INSERT INTO tx VALUES ($1)", &[&1i32])
            .await
            .unwrap();
        assert_eq!(
            code(&client.prepare("DROP TABLE tx").await.unwrap_err()),
            "42501"
        );
        assert_eq!(
            code(&client.query("SELECT 1", &[]).await.unwrap_err()),
            "25P02"
        );
        let msgs = client.simple_query("COMMIT").await.unwrap();
        let tag = msgs.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(_) => Some(()),
            _ => None,
        });
        assert!(tag.is_some());
        assert_eq!(
            client
                .query_one("SELECT count(*) FROM tx", &[])
                .await
                .unwrap()
                .get::<_, i64>(0),
            0
        );
    });
}

#[test]
fn cancel_through_the_proxy() {
    let cluster = PgCluster::start().unwrap();
    cluster.execute("CREATE TABLE d (id int)").unwrap();
    let proxy = Running::start(&cluster);
    runtime().block_on(async {
        let client = connect(&proxy).await;
        let token = client.cancel_token();
        let sleeper = tokio::spawn(async move {
            let r = client.simple_query("SELECT pg_sleep(30)").await;
            (r.map(|_| ()), client)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        token.cancel_query(NoTls).await.unwrap();
        let (result, client) = sleeper.await.unwrap();
        let elapsed = started.elapsed();
        println!("cancel answered in {elapsed:?}");
        assert_eq!(code(&result.unwrap_err()), "57014");
        assert!(elapsed < Duration::from_secs(1), "cancel took {elapsed:?}");
        // The session goes on; a held command is cancelled the same way.
        let token = client.cancel_token();
        let held =
            tokio::spawn(async move { client.simple_query("DELETE FROM d").await.map(|_| ()) });
        while proxy.hook.held.load(Ordering::SeqCst) < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        token.cancel_query(NoTls).await.unwrap();
        assert_eq!(code(&held.await.unwrap().unwrap_err()), "57014");
    });
    assert!(
        proxy
            .hook
            .events()
            .iter()
            .any(|e| matches!(e, Event::HoldAbandoned { .. }))
    );
}

/// A TCP relay that records every byte the proxy sends to its client.
fn capturing_relay(target: u16) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let captured = Arc::new(Mutex::new(Vec::new()));
    let cap = captured.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut server = TcpStream::connect(("127.0.0.1", target)).unwrap();
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
            let cap = cap.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            cap.lock().unwrap().extend_from_slice(&buf[..n]);
                            if client.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, captured)
}

#[test]
fn backend_password_and_scram_material_never_reach_the_client() {
    let password = "Backend-Pa55word-xyzzy";
    let cluster = PgCluster::builder().password(password).start().unwrap();
    let proxy = Running::start(&cluster);
    let (relay, captured) = capturing_relay(proxy.port);
    let dsn = format!(
        "host=127.0.0.1 port={relay} user=alice dbname=postgres password={} sslmode=disable",
        common::TOKEN
    );
    let out = Client::psql(&dsn)
        .unwrap()
        .stdin("SELECT current_user, version();\nSELECT 1/0;\nSHOW password_encryption;\nDROP TABLE nothing;\n")
        .run()
        .unwrap();
    assert!(out.stdout.contains("postgres"), "{out:?}");
    let verifier = Client::psql(&cluster.dsn())
        .unwrap()
        .args([
            "-tAc",
            "SELECT rolpassword FROM pg_authid WHERE rolname = current_user",
        ])
        .run()
        .unwrap()
        .stdout;
    // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
    let verifier = verifier.trim();
    let (_, rest) = verifier.split_once(':').unwrap();
    let (salt, keys) = rest.split_once('$').unwrap();
    let (stored, server) = keys.split_once(':').unwrap();
    let bytes = captured.lock().unwrap().clone();
    assert!(bytes.len() > 100);
    let hay = String::from_utf8_lossy(&bytes);
    for needle in [password, salt, stored, server, "SCRAM-SHA-256", "r=", "p="] {
        assert!(!hay.contains(needle), "{needle:?} reached the client");
    }
    // Only AuthenticationCleartextPassword and AuthenticationOk were sent.
    let mut at = 0;
    let mut auth_codes = Vec::new();
    while at + 5 <= bytes.len() {
        let tag = bytes[at];
        let len = u32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap()) as usize;
        if tag == b'R' {
            auth_codes.push(i32::from_be_bytes(
                bytes[at + 5..at + 9].try_into().unwrap(),
            ));
        }
        at += 1 + len;
    }
    assert_eq!(at, bytes.len(), "the capture parses as whole messages");
    assert_eq!(auth_codes, [3, 0]);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn unix_socket_backend_and_graceful_shutdown() {
    let cluster = PgCluster::start().unwrap();
    let proxy = Running::start_unix(&cluster);
    let rt = runtime();
    let client = rt.block_on(async {
        let client = connect(&proxy).await;
        let row = client
            .query_one("SELECT inet_server_addr() IS NULL", &[])
            .await
            .unwrap();
        assert!(
            row.get::<_, bool>(0),
            "the backend connection is a unix socket"
        );
        client
    });
    // Shutdown ends idle sessions at once with 57P01 and returns.
    let started = Instant::now();
    proxy.shutdown();
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = rt.block_on(client.simple_query("SELECT 1")).unwrap_err();
    assert!(err.is_closed() || code(&err) == "57P01", "{err}");
}

fn pgbench_ok(out: &portcullis_testkit::ClientOutput) {
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("number of failed transactions: 0"),
        "{out:?}"
    );
}

#[test]
fn pgbench_simple_extended_prepared_and_200_clients() {
    let cluster = PgCluster::builder()
        .setting("max_connections", "300")
        .start()
        .unwrap();
    let config = ProxyConfig {
        session: SessionConfig {
            idle_timeout: Some(Duration::from_secs(60)),
            ..SessionConfig::default()
        },
        ..ProxyConfig::default()
    };
    // The backend leg goes over the unix socket (trust): SCRAM's 4096
    // PBKDF2 rounds per connection, unoptimised in a debug build, would
    // otherwise dominate 200 connections. SCRAM is covered by the other tests.
    let socket = cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()));
    let mut allow = portcullis_pg::Allowances::default();
    allow.backend_trust = true;
    let proxy = Running::start_allowing(
        &cluster,
        portcullis_pg::BackendAddr::Unix(socket),
        config,
        allow,
    );
    proxy.hook.record_events.store(false, Ordering::SeqCst);
    let dsn = proxy.dsn("postgres");
    // 'd' (drop tables) is left out: the test hook denies DROP.
    let init = Client::pgbench(&dsn)
        .unwrap()
        .args(["-i", "-I", "tgvp", "-s", "1"])
        .run()
        .unwrap();
    assert!(init.success(), "{init:?}");
    for mode in ["simple", "extended", "prepared"] {
        let out = Client::pgbench(&dsn)
            .unwrap()
            .args(["-M", mode, "-T", "10", "-c", "4", "-j", "2"])
            .run()
            .unwrap();
        println!("-M {mode}:\n{}", out.stdout);
        pgbench_ok(&out);
    }
    // Resident memory of this process (proxy included) is sampled while 200
    // clients run: it must level off, not grow with the number of queries.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (sampling, samples) = (sampling.clone(), samples.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::SeqCst) {
                samples.lock().unwrap().push(rss_kib());
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let out = Client::pgbench(&dsn)
        .unwrap()
        .args(["-S", "-T", "10", "-c", "200", "-j", "2"])
        .run()
        .unwrap();
    sampling.store(false, Ordering::SeqCst);
    sampler.join().unwrap();
    println!("{}", out.stdout);
    pgbench_ok(&out);
    let processed = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(processed > 1000, "{out:?}");
    let samples = samples.lock().unwrap().clone();
    println!("rss KiB every 0.5 s: {samples:?}");
    assert!(samples.len() >= 16, "{samples:?}");
    // After the clients have connected (4 s in), growth stays within 10 % + 4 MiB.
    let settled = samples[8];
    let last = *samples.last().unwrap();
    assert!(
        last <= settled + settled / 10 + 4 * 1024,
        "memory grew from {settled} KiB to {last} KiB"
    );
    assert!(out.stdout.contains("number of clients: 200"), "{out:?}");
}

/// A raw client that logs in and sends one query, then reads at its own pace.
fn raw_login(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0alice\0database\0postgres\0\0");
    let mut startup = (body.len() as i32 + 4).to_be_bytes().to_vec();
    startup.extend(body);
    s.write_all(&startup).unwrap();
    let mut r = [0u8; 9];
    s.read_exact(&mut r).unwrap();
    assert_eq!(&r, b"R\0\0\0\x08\0\0\0\x03");
    let mut pw = vec![b'p'];
    pw.extend_from_slice(&(common::TOKEN.len() as i32 + 5).to_be_bytes());
    pw.extend_from_slice(common::TOKEN.as_bytes());
    pw.push(0);
    s.write_all(&pw).unwrap();
    // Read up to ReadyForQuery.
    loop {
        let mut h = [0u8; 5];
        s.read_exact(&mut h).unwrap();
        let len = i32::from_be_bytes(h[1..5].try_into().unwrap()) as usize;
        let mut b = vec![0u8; len - 4];
        s.read_exact(&mut b).unwrap();
        if h[0] == b'Z' {
            return s;
        }
        assert_ne!(h[0], b'E', "{}", String::from_utf8_lossy(&b));
    }
}

#[test]
fn a_slow_client_slows_the_backend_instead_of_filling_memory() {
    let cluster = PgCluster::start().unwrap();
    let proxy = Running::start(&cluster);
    let mut s = raw_login(proxy.port);
    // About 60 MB of rows.
    let sql = b"SELECT repeat('x', 50) || g FROM generate_series(1, 1000000) g\0";
    let mut q = vec![b'Q'];
    q.extend_from_slice(&(sql.len() as i32 + 4).to_be_bytes());
    q.extend_from_slice(sql);
    let before = rss_kib();
    s.write_all(&q).unwrap();
    // The client reads nothing for two seconds.
    std::thread::sleep(Duration::from_secs(2));
    let stalled = rss_kib();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let mut tail = Vec::new();
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        total += n;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
        if tail.ends_with(b"Z\0\0\0\x05I") {
            break;
        }
    }
    println!("rss before {before} KiB, while stalled {stalled} KiB; {total} bytes received");
    assert!(total > 60_000_000, "{total}");
    assert!(
        stalled < before + 16 * 1024,
        "the proxy buffered the result: {before} KiB -> {stalled} KiB"
    );
}

#[test]
fn handshake_and_idle_timeouts_close_connections() {
    let cluster = PgCluster::start().unwrap();
    let config = ProxyConfig {
        session: SessionConfig {
            handshake_timeout: Duration::from_millis(500),
            idle_timeout: Some(Duration::from_millis(700)),
            ..SessionConfig::default()
        },
        ..ProxyConfig::default()
    };
    let proxy = Running::start_with(&cluster, config);
    // Silent after connecting: closed with 08006.
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(String::from_utf8_lossy(&got).contains("C08006"), "{got:?}");
    // Logged in, then idle: closed with 57P05.
    let mut s = raw_login(proxy.port);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(String::from_utf8_lossy(&got).contains("C57P05"), "{got:?}");
}

/// The (process id, secret) of the BackendKeyData in bytes a client received.
fn key_data(captured: &[u8]) -> (i32, i32) {
    let mut rest = captured;
    while rest.len() >= 5 {
        let len = i32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        if rest[0] == b'K' {
            let body = &rest[5..1 + len];
            return (
                i32::from_be_bytes(body[..4].try_into().unwrap()),
                i32::from_be_bytes(body[4..8].try_into().unwrap()),
            );
        }
        rest = &rest[1 + len..];
    }
    panic!("no BackendKeyData in {captured:?}");
}

/// A raw CancelRequest to `port`, as any client could send one.
fn raw_cancel(port: u16, pid: i32, secret: i32) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut packet = Vec::new();
    packet.extend(16i32.to_be_bytes());
    packet.extend(80_877_102i32.to_be_bytes());
    packet.extend(pid.to_be_bytes());
    packet.extend(secret.to_be_bytes());
    s.write_all(&packet).unwrap();
    // The proxy closes the connection once it has read the request.
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

#[test]
fn cancel_keys_carry_the_backend_pid_and_cancel_only_their_own_session() {
    let cluster = PgCluster::start().unwrap();
    let proxy = Running::start(&cluster);
    let (relay_a, captured_a) = capturing_relay(proxy.port);
    let (relay_b, captured_b) = capturing_relay(proxy.port);
    let dsn = |port: u16| {
        format!(
            "host=127.0.0.1 port={port} user=alice dbname=postgres password={} sslmode=disable",
            common::TOKEN
        )
    };
    runtime().block_on(async {
        let connect_at = |port: u16| {
            let dsn = dsn(port);
            async move {
                let (client, conn) = tokio_postgres::connect(&dsn, NoTls).await.unwrap();
                tokio::spawn(conn);
                client
            }
        };
        let a = connect_at(relay_a).await;
        let b = connect_at(relay_b).await;
        let watcher = connect(&proxy).await;
        let key_a = key_data(&captured_a.lock().unwrap());
        let key_b = key_data(&captured_b.lock().unwrap());
        // The client is told its backend's real process id.
        for (client, key) in [(&a, key_a), (&b, key_b)] {
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(pid, key.0);
        }
        assert_ne!(key_a.1, key_b.1, "each session has its own secret");

        let sleep = |client: tokio_postgres::Client| {
            tokio::spawn(async move {
                let r = client.simple_query("SELECT pg_sleep(60)").await;
                (r.map(|_| ()), client)
            })
        };
        let running = |pid: i32| {
            let watcher = &watcher;
            async move {
                watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 \
                         AND state = 'active' AND query LIKE 'SELECT pg_sleep%'",
                        &[&pid],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
                    == 1
            }
        };
        let sleeping_a = sleep(a);
        let sleeping_b = sleep(b);
        while !(running(key_a.0).await && running(key_b.0).await) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Another session's process id with any secret but its own, and a
        // known secret with another process id, cancel nothing.
        let port = proxy.port;
        tokio::task::spawn_blocking(move || {
            for (pid, secret) in [
                (key_a.0, key_b.1),
                (key_b.0, key_a.1),
                (key_a.0, key_a.1 ^ 1),
                (key_a.0, key_a.1.wrapping_add(1)),
                (key_b.0, 0),
                (key_a.0.wrapping_add(1), key_a.1),
            ] {
                raw_cancel(port, pid, secret);
            }
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(running(key_a.0).await, "a forged cancel stopped session a");
        assert!(running(key_b.0).await, "a forged cancel stopped session b");

        // A's own key cancels A's query, and only A's.
        tokio::task::spawn_blocking(move || raw_cancel(port, key_a.0, key_a.1))
            .await
            .unwrap();
        let (result, _a) = sleeping_a.await.unwrap();
        assert_eq!(code(&result.unwrap_err()), "57014");
        assert!(running(key_b.0).await, "a's cancel stopped session b");
        tokio::task::spawn_blocking(move || raw_cancel(port, key_b.0, key_b.1))
            .await
            .unwrap();
        let (result, _b) = sleeping_b.await.unwrap();
        assert_eq!(code(&result.unwrap_err()), "57014");
    });
}
