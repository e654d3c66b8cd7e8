//! TLS between the client and the proxy, with real psql.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use common::Running;
use portcullis_pg::{ProxyConfig, SessionConfig};
use portcullis_testkit::{Client, PgCluster};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn server_config(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    Arc::new(config)
}

#[test]
fn tls_to_the_client_and_plaintext_refused_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = PgCluster::start().unwrap();
    let config = ProxyConfig {
        session: SessionConfig {
            require_tls: true,
            ..SessionConfig::default()
        },
        client_tls: Some(server_config(dir.path())),
        ..ProxyConfig::default()
    };
    let proxy = Running::start_with(&cluster, config);
    let tls_dsn = proxy
        .dsn("postgres")
        .replace("sslmode=disable", "sslmode=require");
    let out = Client::psql(&tls_dsn)
        .unwrap()
        .stdin("\\conninfo\nSELECT 'over tls';\n")
        .run()
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("SSL connection (protocol: TLSv1.3"),
        "{out:?}"
    );
    assert!(out.stdout.contains("over tls"), "{out:?}");
    let out = Client::psql(&proxy.dsn("postgres"))
        .unwrap()
        .args(["-c", "select 1"])
        .run()
        .unwrap();
    assert!(!out.success());
    assert!(out.stderr.contains("the gateway requires TLS"), "{out:?}");
}

/// CVE-2021-23214 class: plaintext pipelined behind an SSLRequest, before
/// the handshake, is never read as if it had come over TLS.
#[test]
fn plaintext_pipelined_after_an_ssl_request_is_refused() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let cluster = PgCluster::start().unwrap();
    let config = ProxyConfig {
        client_tls: Some(server_config(dir.path())),
        ..ProxyConfig::default()
    };
    let proxy = Running::start_with(&cluster, config);
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    startup.extend_from_slice(b"user\0alice\0database\0postgres\0\0");
    let len = (startup.len() as u32).to_be_bytes();
    startup[..4].copy_from_slice(&len);

    // Alone, an SSLRequest is accepted.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"S");

    // With a StartupMessage in the same packet, it is refused.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut bytes = vec![0, 0, 0, 8, 4, 210, 22, 47];
    bytes.extend_from_slice(&startup);
    s.write_all(&bytes).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got.first(), Some(&b'E'), "{got:?}");
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("08P01"), "{text}");
    assert!(text.contains("received unencrypted data after SSL request"));
    // Nothing of it reached the hook: no session was authenticated.
    assert!(
        !proxy
            .hook
            .events()
            .iter()
            .any(|e| matches!(e, portcullis_pg::Event::SessionStarted { .. }))
    );
}

/// Garbage instead of a TLS ClientHello ends that connection only.
#[test]
fn tls_handshake_garbage_closes_the_connection_and_the_proxy_goes_on() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let cluster = PgCluster::start().unwrap();
    let config = ProxyConfig {
        client_tls: Some(server_config(dir.path())),
        ..ProxyConfig::default()
    };
    let proxy = Running::start_with(&cluster, config);
    let ssl_request = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"S");
    };
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    ssl_request(&mut s);
    s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff]).unwrap();
    s.write_all(&[0x5a; 512]).unwrap();
    let mut rest = Vec::new();
    // The proxy answers with a TLS alert at most, then closes.
    let _ = s.read_to_end(&mut rest);
    assert!(rest.len() < 64, "{rest:?}");
    // Another client is served.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    ssl_request(&mut s);
}
