//! `[connection.kubernetes]`: where the API server is, the credential the
//! gateway presents to it, and the listener kubectl connects to.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use portcullis_k8s::{BackendCredential, Upstream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use toml::Spanned;

use crate::config::{Config, Connection, ConnectionKind};

/// The Kubernetes part of a `kind = "kubernetes"` connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KubeSettings {
    /// The API server, `https://HOST[:PORT]` (no path).
    pub(crate) server: Spanned<String>,
    /// PEM roots the API server's certificate must chain to (default: the
    /// system's roots).
    #[serde(default)]
    pub(crate) ca_file: Option<PathBuf>,
    /// The name the API server's certificate must carry (default: the host
    /// of `server`).
    #[serde(default)]
    pub(crate) tls_server_name: Option<String>,
    /// The bearer token the gateway presents, from the environment...
    #[serde(default)]
    pub(crate) token_env: Option<String>,
    /// ... or from a file (first line) ...
    #[serde(default)]
    pub(crate) token_file: Option<PathBuf>,
    /// ... or a client certificate and its key (PEM).
    #[serde(default)]
    pub(crate) client_cert: Option<PathBuf>,
    #[serde(default)]
    pub(crate) client_key: Option<PathBuf>,
    /// Where kubectl connects (TLS only: kubectl sends tokens only over TLS).
    pub(crate) listen: Spanned<String>,
    /// The listener's certificate (PEM chain) and key.
    pub(crate) tls_cert: PathBuf,
    pub(crate) tls_key: PathBuf,
    /// The URL `portcullis kubeconfig` writes (default `https://LISTEN`).
    #[serde(default)]
    pub(crate) public_url: Option<String>,
    /// Where exec/attach sessions are recorded as asciicast v2 files (one
    /// per stream); no recording when absent.
    #[serde(default)]
    pub(crate) recordings_dir: Option<PathBuf>,
}

type Span = std::ops::Range<usize>;

/// The checks of a Kubernetes connection, at load time.
pub(crate) fn check_connection(c: &Connection) -> Result<(), (Span, String)> {
    let name = c.name.get_ref();
    if c.kind != ConnectionKind::Kubernetes {
        return Err((
            c.name.span(),
            format!(
                "connection {name:?} has a [connection.kubernetes] table but is not of kind \"kubernetes\""
            ),
        ));
    }
    let Some(k) = &c.kubernetes else {
        return Err((
            c.name.span(),
            format!(
                "kubernetes connection {name:?} needs a [connection.kubernetes] table (server, \
                 a credential, listen, tls_cert, tls_key)"
            ),
        ));
    };
    if c.password.is_some() || c.password_env.is_some() || c.password_file.is_some() {
        return Err((
            c.name.span(),
            "a kubernetes connection takes token_env, token_file or client_cert/client_key in \
             [connection.kubernetes], not a password"
                .to_owned(),
        ));
    }
    server_parts(k.server.get_ref()).map_err(|e| (k.server.span(), e))?;
    k.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        (
            k.listen.span(),
            format!(
                "{:?} is not an address like 127.0.0.1:8443",
                k.listen.get_ref()
            ),
        )
    })?;
    let tokens = usize::from(k.token_env.is_some()) + usize::from(k.token_file.is_some());
    let certs = match (&k.client_cert, &k.client_key) {
        (Some(_), Some(_)) => 1,
        (None, None) => 0,
        _ => {
            return Err((
                k.server.span(),
                "client_cert and client_key go together".to_owned(),
            ));
        }
    };
    if tokens + certs != 1 {
        return Err((
            k.server.span(),
            "give the cluster credential in exactly one of token_env, token_file or \
             client_cert + client_key"
                .to_owned(),
        ));
    }
    Ok(())
}

/// `https://host:port` to (host, port); refuses other schemes and paths.
pub(crate) fn server_parts(server: &str) -> Result<(String, u16), String> {
    let uri: hyper::Uri = server
        .parse()
        .map_err(|e| format!("{server:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "{server:?}: the API server is reached over https only"
        ));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(format!(
            "{server:?}: an API server URL with a path is not supported yet"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{server:?} has no host"))?;
    Ok((host.to_owned(), uri.port_u16().unwrap_or(443)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The upstream (address, TLS with roots and an optional client
/// certificate) and the credential the proxy presents.
pub(crate) fn upstream(
    config: &Config,
    name: &str,
    k: &KubeSettings,
) -> Result<(Upstream, BackendCredential), String> {
    let (host, port) = server_parts(k.server.get_ref())?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let server_name =
        ServerName::try_from(k.tls_server_name.clone().unwrap_or_else(|| bare.to_owned()))
            .map_err(|e| format!("connection {name}: tls server name: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    match &k.ca_file {
        Some(f) => {
            let f = config.resolve(f);
            let certs = CertificateDer::pem_file_iter(&f)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("connection {name}: {}: {e}", f.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "connection {name}: {}: no certificate in it",
                    f.display()
                ));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("connection {name}: {}: {e}", f.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let (mut tls, credential) = match (&k.client_cert, &k.client_key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (config.resolve(cert), config.resolve(key));
            let chain = CertificateDer::pem_file_iter(&cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("connection {name}: {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| format!("connection {name}: {}: {e}", key.display()))?;
            let tls = builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("connection {name}: client certificate: {e}"))?;
            (tls, BackendCredential::ClientCertificate)
        }
        _ => (
            builder.with_no_client_auth(),
            BackendCredential::BearerToken(token(config, name, k)?),
        ),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let authority = if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    };
    Ok((
        Upstream {
            authority,
            server_name,
            tls: Arc::new(tls),
        },
        credential,
    ))
}

fn token(config: &Config, name: &str, k: &KubeSettings) -> Result<String, String> {
    let token = if let Some(var) = &k.token_env {
        std::env::var(var)
            .map_err(|_| format!("connection {name}: environment variable {var} is not set"))?
    } else if let Some(f) = &k.token_file {
        let f = config.resolve(f);
        let text = std::fs::read_to_string(&f)
            .map_err(|e| format!("connection {name}: {}: {e}", f.display()))?;
        text.lines().next().unwrap_or("").to_owned()
    } else {
        return Err(format!("connection {name}: no cluster credential"));
    };
    let token = token.trim().to_owned();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "connection {name}: the cluster token is empty or not printable ASCII"
        ));
    }
    Ok(token)
}

/// The listener's TLS settings (ALPN `http/1.1`).
pub(crate) fn server_tls(
    config: &Config,
    k: &KubeSettings,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let (cert, key) = (config.resolve(&k.tls_cert), config.resolve(&k.tls_key));
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(text, Path::new("gw.toml"), Path::new("/etc/portcullis"))
    }

    /// The commented connection of examples/portcullis.toml, uncommented.
    fn example_block() -> String {
        let text = include_str!("../../../../examples/portcullis.toml");
        let start = text.find("# [[connection]]").unwrap();
        let end = text[start..].find("\n\n").unwrap() + start;
        text[start..end]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_example_kubernetes_connection_loads() {
        let c = parse(&example_block()).unwrap();
        let k = c.connections[0].kubernetes.as_ref().unwrap();
        assert_eq!(c.connections[0].kind, ConnectionKind::Kubernetes);
        assert_eq!(k.listen.get_ref(), "127.0.0.1:8443");
        assert_eq!(k.token_env.as_deref(), Some("PROD_KUBE_TOKEN"));
        assert_eq!(super::super::public_url(k), "https://127.0.0.1:8443");
    }

    #[test]
    fn check_reports_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::parse(&example_block(), Path::new("gw.toml"), dir.path()).unwrap();
        let problems = super::super::check_files(&c, &c.connections[0]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("cluster-ca.crt"), "{problems:?}");
        assert!(problems[1].contains("gateway.crt"), "{problems:?}");
    }

    #[test]
    fn kubernetes_connections_are_checked() {
        let base = example_block();
        let two = base.replace(
            "token_env = \"PROD_KUBE_TOKEN\"",
            "token_env = \"T\"\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"",
        );
        let e = parse(&two).unwrap_err();
        assert!(e.message.contains("exactly one of token_env"), "{e}");
        let e = parse(&base.replace("https://", "http://")).unwrap_err();
        assert!(e.message.contains("https only"), "{e}");
        assert!(e.line > 0, "{e}");
        let e = parse(&base.replace("127.0.0.1:8443", "localhost")).unwrap_err();
        assert!(e.message.contains("not an address"), "{e}");
        let cut = base.find("[connection.kubernetes]").unwrap();
        let e = parse(&base[..cut]).unwrap_err();
        assert!(e.message.contains("needs a [connection.kubernetes]"), "{e}");
        let e = parse(&base.replace("kind = \"kubernetes\"", "kind = \"postgres\"")).unwrap_err();
        assert!(e.message.contains("not of kind"), "{e}");
        let e = parse(&format!("{base}\npassword_env = \"X\"")).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn server_urls_are_https_without_a_path() {
        assert_eq!(
            server_parts("https://10.0.0.1:6443"),
            Ok(("10.0.0.1".to_owned(), 6443))
        );
        assert_eq!(
            server_parts("https://kube.example"),
            Ok(("kube.example".to_owned(), 443))
        );
        assert!(server_parts("http://10.0.0.1:6443").is_err());
        assert!(server_parts("https://10.0.0.1:6443/k8s/clusters/c-1").is_err());
        assert!(server_parts("not a url").is_err());
    }
}
