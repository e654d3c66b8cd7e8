//! Fetching an OIDC issuer's JSON Web Key Set.
//!
//! `https://` URLs go through rustls with the system's root certificates;
//! plain `http://` is accepted only for a loopback host (a local test IdP).
//! The answer is untrusted: its size is capped and a slow server times out.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use jsonwebtoken::jwk::JwkSet;

/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches and parses the JWKS at `url`.
pub(crate) async fn fetch(url: &str) -> Result<JwkSet, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback(uri.host().unwrap_or("")) => {}
        _ => {
            return Err(format!(
                "{url}: a JWKS is fetched over https (http only from a loopback host)"
            ));
        }
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("loading the system's root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<Bytes>>(connector);
    let fetch = async {
        let resp = client.get(uri).await.map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: answered {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{url}: reading the JWKS (at most {MAX_JWKS_BYTES} bytes): {e}"))?
            .to_bytes();
        serde_json::from_slice::<JwkSet>(&body).map_err(|e| format!("{url}: not a JWKS: {e}"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("{url}: no answer within {FETCH_TIMEOUT:?}"))?
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app =
            axum::Router::new().route("/jwks", axum::routing::get(move || async move { body }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/jwks")
    }

    #[tokio::test]
    async fn fetches_a_jwks_from_a_loopback_server() {
        let url = serve(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}]}"#).await;
        let set = fetch(&url).await.unwrap();
        assert!(set.find("k1").is_some());
    }

    #[tokio::test]
    async fn refuses_what_is_not_a_jwks_and_plain_http_elsewhere() {
        let url = serve("<html>not json</html>").await;
        assert!(fetch(&url).await.unwrap_err().contains("not a JWKS"));
        let err = fetch("http://idp.example/jwks").await.unwrap_err();
        assert!(err.contains("over https"), "{err}");
        assert!(fetch("ftp://x").await.is_err());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("idp.example"));
    }
}
