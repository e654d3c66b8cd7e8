//! Who is connecting: gateway-minted JWTs, OIDC JWTs and static API keys.
//!
//! A client presents one credential (as its PostgreSQL password, or as a
//! bearer token to the admin API). [`Verifier::verify`] turns it into a
//! [`Principal`] or an [`AuthError`] whose message says what was wrong
//! (expired, not yet valid, wrong issuer, ...), without ever echoing the
//! credential.
//!
//! Expiry and not-before are checked here against a `now` the caller gives,
//! not by `jsonwebtoken` against the wall clock, so that a session can be
//! re-checked at every statement and tests can move time.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::KeyPair as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What kind of party a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PrincipalKind {
    Human,
    Agent,
    Service,
}

impl PrincipalKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Human => "human",
            PrincipalKind::Agent => "agent",
            PrincipalKind::Service => "service",
        }
    }

    fn parse(s: &str) -> Option<PrincipalKind> {
        match s {
            "human" => Some(PrincipalKind::Human),
            "agent" => Some(PrincipalKind::Agent),
            "service" => Some(PrincipalKind::Service),
            _ => None,
        }
    }
}

/// An authenticated party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Principal {
    /// Its id, e.g. `agent:ci-bot` or an OIDC subject.
    pub(crate) id: String,
    pub(crate) kind: PrincipalKind,
    pub(crate) groups: Vec<String>,
    /// The token's `jti`, or the API key's name: what a revocation names.
    pub(crate) token_id: String,
    /// Who vouched for it: the gateway, an OIDC issuer, or `api-key`.
    pub(crate) issuer: String,
    /// Seconds since the Unix epoch after which the credential is no longer
    /// valid; `None` for API keys.
    pub(crate) expires_at: Option<u64>,
}

/// Why a credential was refused. Messages are shown to the client; they name
/// what was wrong and never contain the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AuthError {
    #[error("token expired at {at} (unix seconds); get a new token")]
    Expired { at: u64 },
    #[error("token is not valid before {at} (unix seconds)")]
    NotYetValid { at: u64 },
    #[error("token issuer {0:?} is not trusted by this gateway")]
    UnknownIssuer(String),
    #[error("token audience does not include this gateway")]
    WrongAudience,
    #[error("token signature is not valid")]
    BadSignature,
    #[error("token {0} has been revoked")]
    Revoked(String),
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("the credential is neither a valid token nor a known API key")]
    UnknownCredential,
}

/// Claims of a gateway-minted token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GatewayClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    kind: PrincipalKind,
    #[serde(default)]
    groups: Vec<String>,
}

/// The gateway's own Ed25519 key pair, which signs the tokens it mints.
pub(crate) struct GatewayKey {
    encoding: EncodingKey,
    public: Vec<u8>,
}

impl fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayKey")
            .field("public", &hex::encode(&self.public))
            .finish_non_exhaustive()
    }
}

const PEM_LABEL: &str = "PRIVATE KEY";

impl GatewayKey {
    /// A new random key, as PKCS#8 PEM.
    pub(crate) fn generate_pem() -> Result<String, String> {
        let rng = SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| "could not generate an Ed25519 key".to_owned())?;
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
        Ok(pem)
    }

    /// Reads a PKCS#8 PEM Ed25519 private key.
    pub(crate) fn from_pem(pem: &str) -> Result<GatewayKey, String> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect();
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| {
                "the signing key is not PEM (base64 between BEGIN/END lines)".to_owned()
            })?;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|_| "the signing key is not an Ed25519 PKCS#8 private key".to_owned())?;
        Ok(GatewayKey {
            encoding: EncodingKey::from_ed_der(&der),
            public: pair.public_key().as_ref().to_vec(),
        })
    }

    fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ed_der(&self.public)
    }
}

/// Mints gateway tokens.
#[derive(Debug)]
pub(crate) struct TokenIssuer<'a> {
    pub(crate) key: &'a GatewayKey,
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a str,
}

/// A minted token and its id.
#[derive(Debug)]
pub(crate) struct Minted {
    pub(crate) token: String,
    pub(crate) id: String,
    pub(crate) expires_at: u64,
}

impl TokenIssuer<'_> {
    /// Mints a token for `principal` (`kind:name`, e.g. `agent:ci-bot`).
    pub(crate) fn issue(
        &self,
        principal: &str,
        groups: &[String],
        ttl_secs: u64,
        now: u64,
    ) -> Result<Minted, String> {
        let kind = principal
            .split_once(':')
            .and_then(|(k, _)| PrincipalKind::parse(k))
            .ok_or_else(|| {
                format!(
                    "principal {principal:?} must be written kind:name, with kind one of \
                     human, agent, service (e.g. agent:ci-bot)"
                )
            })?;
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| "no randomness for a token id".to_owned())?;
        let claims = GatewayClaims {
            iss: self.issuer.to_owned(),
            sub: principal.to_owned(),
            aud: self.audience.to_owned(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl_secs),
            jti: hex::encode(id),
            kind,
            groups: groups.to_vec(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.key.encoding)
                .map_err(|e| format!("signing the token: {e}"))?;
        Ok(Minted {
            token,
            id: claims.jti,
            expires_at: claims.exp,
        })
    }
}

/// A trusted OIDC issuer.
#[derive(Debug, Clone)]
pub(crate) struct OidcIssuer {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) groups_claim: String,
    pub(crate) jwks: JwkSet,
}

/// A static API key: only its SHA-256 is known to the gateway.
#[derive(Debug, Clone)]
pub(crate) struct ApiKey {
    pub(crate) name: String,
    pub(crate) sha256: [u8; 32],
    pub(crate) principal: String,
    pub(crate) kind: PrincipalKind,
    pub(crate) groups: Vec<String>,
}

/// Turns credentials into principals.
#[derive(Debug, Default)]
pub(crate) struct Verifier {
    gateway: Option<(DecodingKey, String, String)>,
    oidc: Vec<OidcIssuer>,
    api_keys: Vec<ApiKey>,
    revoked: HashSet<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    leeway: u64,
}

impl Verifier {
    pub(crate) fn new(leeway: u64) -> Verifier {
        Verifier {
            leeway,
            ..Verifier::default()
        }
    }

    /// Trusts tokens minted by the gateway's own key.
    pub(crate) fn trust_gateway(&mut self, key: &GatewayKey, issuer: &str, audience: &str) {
        self.gateway = Some((key.decoding_key(), issuer.to_owned(), audience.to_owned()));
    }

    pub(crate) fn trust_oidc(&mut self, issuer: OidcIssuer) {
        self.oidc.push(issuer);
    }

    /// Replaces a trusted issuer's key set (after fetching it again).
    pub(crate) fn set_jwks(&mut self, issuer: &str, jwks: JwkSet) {
        for o in self.oidc.iter_mut().filter(|o| o.issuer == issuer) {
            o.jwks = jwks.clone();
        }
    }

    pub(crate) fn add_api_key(&mut self, key: ApiKey) {
        self.api_keys.push(key);
    }

    /// Replaces the set of revoked token ids.
    pub(crate) fn set_revoked(&mut self, revoked: HashSet<String>) {
        self.revoked = revoked;
    }

    /// Verifies a credential at time `now` (Unix seconds).
    pub(crate) fn verify(&self, credential: &str, now: u64) -> Result<Principal, AuthError> {
        let credential = credential.trim();
        let principal = if looks_like_jwt(credential) {
            self.verify_jwt(credential, now)?
        } else {
            self.verify_api_key(credential)?
        };
        if self.revoked.contains(&principal.token_id) {
            return Err(AuthError::Revoked(principal.token_id));
        }
        Ok(principal)
    }

    /// Whether a principal verified earlier is still valid at `now`: not
    /// expired and not revoked since.
    pub(crate) fn recheck(&self, principal: &Principal, now: u64) -> Result<(), AuthError> {
        if let Some(exp) = principal.expires_at
            && now > exp.saturating_add(self.leeway)
        {
            return Err(AuthError::Expired { at: exp });
        }
        if self.revoked.contains(&principal.token_id) {
            return Err(AuthError::Revoked(principal.token_id.clone()));
        }
        Ok(())
    }

    fn verify_api_key(&self, credential: &str) -> Result<Principal, AuthError> {
        let digest: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        // Compare with every key, each without an early exit, so that
        // timing says nothing about how close a guess came.
        let mut found = None;
        for key in &self.api_keys {
            let diff = key
                .sha256
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(key);
            }
        }
        let key = found.ok_or(AuthError::UnknownCredential)?;
        Ok(Principal {
            id: key.principal.clone(),
            kind: key.kind,
            groups: key.groups.clone(),
            token_id: key.name.clone(),
            issuer: "api-key".to_owned(),
            expires_at: None,
        })
    }

    fn verify_jwt(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Malformed(describe_jwt_error(&e)))?;
        // Which issuer does it claim? Decided before trusting anything, then
        // the signature is checked with that issuer's keys only.
        let unverified: BTreeMap<String, serde_json::Value> =
            jsonwebtoken::dangerous::insecure_decode(token)
                .map(|d| d.claims)
                .map_err(|e| AuthError::Malformed(describe_jwt_error(&e)))?;
        let iss = unverified
            .get("iss")
            .and_then(|v| v.as_str())
            .ok_or_else(|| AuthError::Malformed("no iss claim".to_owned()))?
            .to_owned();

        if let Some((key, issuer, audience)) = &self.gateway
            && *issuer == iss
        {
            {
                let claims: GatewayClaims =
                    decode_checked(token, key, Algorithm::EdDSA, issuer, audience)?;
                self.check_times(claims.exp, Some(claims.nbf), now)?;
                return Ok(Principal {
                    id: claims.sub,
                    kind: claims.kind,
                    groups: claims.groups,
                    token_id: claims.jti,
                    issuer: claims.iss,
                    expires_at: Some(claims.exp),
                });
            }
        }
        let oidc = self
            .oidc
            .iter()
            .find(|o| o.issuer == iss)
            .ok_or(AuthError::UnknownIssuer(iss))?;
        let jwk = match &header.kid {
            Some(kid) => oidc.jwks.find(kid),
            None if oidc.jwks.keys.len() == 1 => oidc.jwks.keys.first(),
            None => None,
        }
        .ok_or(AuthError::BadSignature)?;
        let alg = jwk_algorithm(jwk).ok_or(AuthError::BadSignature)?;
        if alg != header.alg {
            return Err(AuthError::BadSignature);
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| AuthError::BadSignature)?;
        let claims: BTreeMap<String, serde_json::Value> =
            decode_checked(token, &key, alg, &oidc.issuer, &oidc.audience)?;
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| AuthError::Malformed("no exp claim".to_owned()))?;
        let nbf = claims.get("nbf").and_then(serde_json::Value::as_u64);
        self.check_times(exp, nbf, now)?;
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .ok_or_else(|| AuthError::Malformed("no sub claim".to_owned()))?;
        let groups = match claims.get(&oidc.groups_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let token_id = claims
            .get("jti")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}#{sub}#{exp}", oidc.issuer));
        Ok(Principal {
            id: sub.to_owned(),
            kind: PrincipalKind::Human,
            groups,
            token_id,
            issuer: oidc.issuer.clone(),
            expires_at: Some(exp),
        })
    }

    fn check_times(&self, exp: u64, nbf: Option<u64>, now: u64) -> Result<(), AuthError> {
        if now > exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired { at: exp });
        }
        if let Some(nbf) = nbf
            && now.saturating_add(self.leeway) < nbf
        {
            return Err(AuthError::NotYetValid { at: nbf });
        }
        Ok(())
    }
}

/// Signature, algorithm, issuer and audience through `jsonwebtoken`; times
/// are checked by the caller against its own clock.
fn decode_checked<T: serde::de::DeserializeOwned>(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &str,
    audience: &str,
) -> Result<T, AuthError> {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims = ["exp", "iss", "aud", "sub"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    jsonwebtoken::decode::<T>(token, key, &v)
        .map(|d| d.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature
                | K::InvalidAlgorithm
                | K::InvalidEddsaKey
                | K::InvalidEcdsaKey
                | K::InvalidRsaKey(_)
                | K::InvalidKeyFormat => AuthError::BadSignature,
                K::InvalidAudience => AuthError::WrongAudience,
                K::InvalidIssuer => AuthError::UnknownIssuer(issuer.to_owned()),
                _ => AuthError::Malformed(describe_jwt_error(&e)),
            }
        })
}

fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{EllipticCurve, KeyAlgorithm};
    if let Some(alg) = jwk.common.key_algorithm {
        return match alg {
            KeyAlgorithm::RS256 => Some(Algorithm::RS256),
            KeyAlgorithm::RS384 => Some(Algorithm::RS384),
            KeyAlgorithm::RS512 => Some(Algorithm::RS512),
            KeyAlgorithm::PS256 => Some(Algorithm::PS256),
            KeyAlgorithm::PS384 => Some(Algorithm::PS384),
            KeyAlgorithm::PS512 => Some(Algorithm::PS512),
            KeyAlgorithm::ES256 => Some(Algorithm::ES256),
            KeyAlgorithm::ES384 => Some(Algorithm::ES384),
            KeyAlgorithm::EdDSA => ed25519_ok(jwk).then_some(Algorithm::EdDSA),
            _ => None,
        };
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => ed25519_ok(jwk).then_some(Algorithm::EdDSA),
        _ => None,
    }
}

/// `jsonwebtoken` slices an Ed25519 key's first 32 bytes without checking
/// its length; a JWKS is untrusted input, so check it first.
fn ed25519_ok(jwk: &jsonwebtoken::jwk::Jwk) -> bool {
    use base64::Engine as _;
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.x.trim_end_matches('='))
            .is_ok_and(|x| x.len() == 32),
        _ => false,
    }
}

fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.bytes().filter(|&b| b == b'.').count() == 2
}

fn describe_jwt_error(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::Base64(_) => "bad base64".to_owned(),
        K::Json(_) => "bad JSON in the header or claims".to_owned(),
        K::Utf8(_) => "bad UTF-8".to_owned(),
        K::MissingRequiredClaim(c) => format!("missing the {c} claim"),
        K::InvalidClaimFormat(c) => format!("the {c} claim has the wrong format"),
        K::InvalidToken => "not a JWT".to_owned(),
        K::InvalidAlgorithmName | K::UnsupportedAlgorithm => "unsupported algorithm".to_owned(),
        _ => "invalid token".to_owned(),
    }
}

/// The SHA-256 of an API key, as stored in the configuration (hex).
pub(crate) fn api_key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.trim().as_bytes()))
}

/// A new random API key (`pcl_` and 43 base64url characters).
pub(crate) fn generate_api_key() -> Result<String, String> {
    let mut raw = [0u8; 32];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| "no randomness for an API key".to_owned())?;
    use base64::Engine as _;
    Ok(format!(
        "pcl_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    ))
}

/// Decodes a token's header and claims without checking anything, for
/// `portcullis token inspect`.
pub(crate) fn inspect(token: &str) -> Result<(serde_json::Value, serde_json::Value), String> {
    let header = jsonwebtoken::decode_header(token.trim()).map_err(|e| describe_jwt_error(&e))?;
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(token.trim())
        .map(|d| d.claims)
        .map_err(|e| describe_jwt_error(&e))?;
    let header = serde_json::to_value(header).map_err(|e| e.to_string())?;
    Ok((header, claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn gateway() -> (GatewayKey, Verifier) {
        let key = GatewayKey::from_pem(&GatewayKey::generate_pem().unwrap()).unwrap();
        let mut v = Verifier::new(0);
        v.trust_gateway(&key, "portcullis", "portcullis-gw");
        (key, v)
    }

    fn mint(key: &GatewayKey, ttl: u64, now: u64) -> Minted {
        TokenIssuer {
            key,
            issuer: "portcullis",
            audience: "portcullis-gw",
        }
        .issue("agent:ci-bot", &["agents".to_owned()], ttl, now)
        .unwrap()
    }

    #[test]
    fn a_minted_token_verifies_into_its_principal() {
        let (key, v) = gateway();
        let m = mint(&key, 900, NOW);
        let p = v.verify(&m.token, NOW + 10).unwrap();
        assert_eq!(p.id, "agent:ci-bot");
        assert_eq!(p.kind, PrincipalKind::Agent);
        assert_eq!(p.groups, vec!["agents".to_owned()]);
        assert_eq!(p.token_id, m.id);
        assert_eq!(p.expires_at, Some(NOW + 900));
    }

    #[test]
    fn expiry_and_not_before_are_checked_against_the_given_clock() {
        let (key, v) = gateway();
        let m = mint(&key, 60, NOW);
        assert_eq!(
            v.verify(&m.token, NOW + 61),
            Err(AuthError::Expired { at: NOW + 60 })
        );
        assert_eq!(
            v.verify(&m.token, NOW - 5),
            Err(AuthError::NotYetValid { at: NOW })
        );
        let p = v.verify(&m.token, NOW).unwrap();
        assert!(v.recheck(&p, NOW + 60).is_ok());
        assert_eq!(
            v.recheck(&p, NOW + 61),
            Err(AuthError::Expired { at: NOW + 60 })
        );
    }

    #[test]
    fn tampered_foreign_and_wrong_audience_tokens_are_refused() {
        let (key, v) = gateway();
        let m = mint(&key, 900, NOW);
        // Flip one character of the payload: the signature no longer holds.
        let mut parts: Vec<String> = m.token.split('.').map(str::to_owned).collect();
        let payload = &mut parts[1];
        let last = payload.pop().unwrap();
        payload.push(if last == 'A' { 'B' } else { 'A' });
        let tampered = parts.join(".");
        assert!(matches!(
            v.verify(&tampered, NOW),
            Err(AuthError::BadSignature | AuthError::Malformed(_))
        ));

        // Signed by another key under the same issuer name.
        let (other, _) = gateway();
        let forged = mint(&other, 900, NOW);
        assert_eq!(v.verify(&forged.token, NOW), Err(AuthError::BadSignature));

        // Right key, wrong audience.
        let aud = TokenIssuer {
            key: &key,
            issuer: "portcullis",
            audience: "someone-else",
        }
        .issue("agent:x", &[], 900, NOW)
        .unwrap();
        assert_eq!(v.verify(&aud.token, NOW), Err(AuthError::WrongAudience));

        // Unknown issuer.
        let iss = TokenIssuer {
            key: &key,
            issuer: "elsewhere",
            audience: "portcullis-gw",
        }
        .issue("agent:x", &[], 900, NOW)
        .unwrap();
        assert_eq!(
            v.verify(&iss.token, NOW),
            Err(AuthError::UnknownIssuer("elsewhere".to_owned()))
        );
    }

    #[test]
    fn revocation_applies_at_verify_and_recheck() {
        let (key, mut v) = gateway();
        let m = mint(&key, 900, NOW);
        let p = v.verify(&m.token, NOW).unwrap();
        v.set_revoked([m.id.clone()].into_iter().collect());
        assert_eq!(
            v.verify(&m.token, NOW),
            Err(AuthError::Revoked(m.id.clone()))
        );
        assert_eq!(v.recheck(&p, NOW), Err(AuthError::Revoked(m.id)));
    }

    #[test]
    fn api_keys_match_by_hash_only() {
        let mut v = Verifier::new(0);
        let key = generate_api_key().unwrap();
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(api_key_hash(&key), &mut sha256).unwrap();
        v.add_api_key(ApiKey {
            name: "etl".to_owned(),
            sha256,
            principal: "service:etl".to_owned(),
            kind: PrincipalKind::Service,
            groups: vec!["etl".to_owned()],
        });
        let p = v.verify(&key, NOW).unwrap();
        assert_eq!(p.id, "service:etl");
        assert_eq!(p.expires_at, None);
        assert_eq!(
            v.verify("pcl_wrong", NOW),
            Err(AuthError::UnknownCredential)
        );
        let msg = v.verify("pcl_wrong", NOW).unwrap_err().to_string();
        assert!(!msg.contains("pcl_wrong"));
    }

    #[test]
    fn oidc_tokens_verify_against_a_jwks_and_take_groups_from_the_claim() {
        // An OIDC issuer with an Ed25519 key, published as a JWKS.
        let pem = GatewayKey::generate_pem().unwrap();
        let idp = GatewayKey::from_pem(&pem).unwrap();
        use base64::Engine as _;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&idp.public);
        let jwks: JwkSet = serde_json::from_value(serde_json::json!({
            "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA"}]
        }))
        .unwrap();
        let mut v = Verifier::new(0);
        v.trust_oidc(OidcIssuer {
            issuer: "https://idp.example".to_owned(),
            audience: "portcullis".to_owned(),
            groups_claim: "roles".to_owned(),
            jwks,
        });
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".to_owned());
        let claims = serde_json::json!({
            "iss": "https://idp.example", "aud": "portcullis", "sub": "alice",
            "exp": NOW + 100, "roles": ["dba", "oncall"]
        });
        let token = jsonwebtoken::encode(&header, &claims, &idp.encoding).unwrap();
        let p = v.verify(&token, NOW).unwrap();
        assert_eq!(p.id, "alice");
        assert_eq!(p.groups, vec!["dba".to_owned(), "oncall".to_owned()]);
        assert_eq!(
            v.verify(&token, NOW + 101),
            Err(AuthError::Expired { at: NOW + 100 })
        );
    }

    #[test]
    fn a_short_ed25519_key_in_a_jwks_is_refused_not_a_panic() {
        let jwks: JwkSet = serde_json::from_value(serde_json::json!({
            "keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "k1"}]
        }))
        .unwrap();
        let mut v = Verifier::new(0);
        v.trust_oidc(OidcIssuer {
            issuer: "https://idp.example".to_owned(),
            audience: "portcullis".to_owned(),
            groups_claim: "groups".to_owned(),
            jwks,
        });
        let key = GatewayKey::from_pem(&GatewayKey::generate_pem().unwrap()).unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".to_owned());
        let claims = serde_json::json!({
            "iss": "https://idp.example", "aud": "portcullis", "sub": "a", "exp": NOW + 1
        });
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
        assert_eq!(v.verify(&token, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn garbage_credentials_never_panic() {
        let (_, v) = gateway();
        for s in [
            "",
            "eyJ",
            "eyJ..",
            "eyJhbGciOiJub25lIn0.e30.",
            "a.b.c",
            "\0\u{ffff}",
        ] {
            assert!(v.verify(s, NOW).is_err());
        }
    }
}
