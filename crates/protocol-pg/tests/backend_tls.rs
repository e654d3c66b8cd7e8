//! TLS between the proxy and a real PostgreSQL with a certificate the proxy verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::Running;
use portcullis_pg::{BackendAddr, BackendTls, ProxyConfig};
use portcullis_testkit::{Client, PgCluster};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA and a server certificate for `localhost` signed by it, readable by the server.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-days",
                "1",
                "-subj",
                "/CN=portcullis test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
        dir,
    );
    openssl(
        &[
            &["req"],
            &ec[..],
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
        dir,
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
        dir,
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("server.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // When tests run as root the server runs as `postgres`, which must own its key.
    if rustix::process::geteuid().is_root() {
        let status = Command::new("chown")
            .arg("postgres")
            .arg(dir.join("server.key"))
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[test]
fn backend_leg_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let cluster = PgCluster::builder()
        .setting("ssl", "on")
        .setting(
            "ssl_cert_file",
            dir.path().join("server.pem").to_string_lossy(),
        )
        .setting(
            "ssl_key_file",
            dir.path().join("server.key").to_string_lossy(),
        )
        .start()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.path().join("ca.pem")).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let config = ProxyConfig {
        backend_tls: Some(Arc::new(client)),
        ..ProxyConfig::default()
    };
    let addr = BackendAddr::Tcp {
        host: "127.0.0.1".into(),
        port: cluster.port(),
    };
    let proxy = Running::start_at(&cluster, addr, config);
    let mut backend = proxy.hook.backend.clone();
    backend.tls = BackendTls::Require {
        server_name: "localhost".into(),
    };
    proxy.hook.set_backend(backend);
    let out = Client::psql(&proxy.dsn("postgres"))
        .unwrap()
        .args([
            "-tAc",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ])
        .run()
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "t");

    // A certificate for another name is refused: the client gets 08001.
    let mut wrong = proxy.hook.backend.clone();
    wrong.tls = BackendTls::Require {
        server_name: "db.example".into(),
    };
    proxy.hook.set_backend(wrong);
    let out = Client::psql(&proxy.dsn("postgres"))
        .unwrap()
        .args(["-tAc", "SELECT 1"])
        .run()
        .unwrap();
    assert!(!out.success());
    assert!(
        out.stderr.contains("could not connect to the backend"),
        "{out:?}"
    );

    // Channel binding required: PostgreSQL offers SCRAM-SHA-256-PLUS over
    // TLS and the login is bound to its certificate (any unbound login
    // would end the session).
    let mut bound = proxy.hook.backend.clone();
    bound.tls = BackendTls::Require {
        server_name: "localhost".into(),
    };
    bound.allow.require_channel_binding = true;
    proxy.hook.set_backend(bound.clone());
    let out = Client::psql(&proxy.dsn("postgres"))
        .unwrap()
        .args([
            "-tAc",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ])
        .run()
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "t");
    // The same server without TLS offers no -PLUS: refused, 08001.
    bound.tls = BackendTls::Disable;
    proxy.hook.set_backend(bound);
    let out = Client::psql(&proxy.dsn("postgres"))
        .unwrap()
        .args(["-tAc", "SELECT 1"])
        .run()
        .unwrap();
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains("could not log in to the backend"),
        "{out:?}"
    );
}
