//! Task credentials and the tokens that prove who is asking for one.
//!
//! Three kinds of JWT cross Mandate's boundary, and this module owns the
//! rules for each (JOSE itself is the `jsonwebtoken` crate's job):
//! - **task tokens** Mandate signs (EdDSA, `kid`): iss, sub (the human), aud,
//!   exp, iat, jti, the task id, the granted scope as RFC 9396
//!   `authorization_details`, the agent as `client_id`, and the delegation
//!   chain as nested RFC 8693 `act` claims, optionally bound by `cnf.jkt`;
//! - **agent assertions** (RFC 7523): iss = sub = the agent's SPIFFE id,
//!   signed with one of its registered keys, short-lived, single-use jti;
//! - **human ID tokens** from a trusted OIDC issuer.
//!
//! Verification never reads the clock: `now` is passed in. `alg: none` and
//! HMAC are never accepted; the algorithm must match the key.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::{SigningKey, VerifyingKey};
pub use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::delegation::{DelegationError, TaskRequest};
use crate::ids::{SpiffeId, TaskId};
use crate::scope::{ActionPattern, Grant, ResourcePattern, Scope};
use crate::task::Limits;
use crate::time::Timestamp;

pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const TOKEN_TYPE_ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const TOKEN_TYPE_ID: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The RFC 9396 authorization details type for a Mandate task.
pub const DETAIL_TYPE: &str = "mandate_task";
/// Agent assertions may live at most this long (RFC 7523 says "short").
pub const MAX_ASSERTION_LIFETIME_S: i64 = 300;
/// Tolerated clock skew for `iat` in the future.
const SKEW_S: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("the token is signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (issued in the future)")]
    NotYetValid,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token is from another issuer")]
    Issuer,
    #[error("{0}")]
    Claims(String),
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => TokenError::BadSignature,
        K::InvalidAudience => TokenError::Audience,
        K::InvalidIssuer => TokenError::Issuer,
        K::ExpiredSignature => TokenError::Expired,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::Algorithm("mismatch".into()),
        K::MissingRequiredClaim(c) => TokenError::Claims(format!("missing claim {c}")),
        _ => TokenError::Malformed(e.to_string()),
    }
}

/// Reads claims WITHOUT verifying anything: only to decide which key or
/// record to verify against. Never trust what this returns.
pub fn peek_claims<T: DeserializeOwned>(token: &str) -> Result<T, TokenError> {
    jsonwebtoken::dangerous::insecure_decode::<T>(token)
        .map(|d| d.claims)
        .map_err(map_jwt_error)
}

fn header(token: &str) -> Result<Header, TokenError> {
    jsonwebtoken::decode_header(token).map_err(map_jwt_error)
}

/// Signature, issuer and audience via jsonwebtoken; times against `now` here.
fn decode<T: DeserializeOwned + Timed>(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: Option<&str>,
    audience: &str,
    now: Timestamp,
) -> Result<T, TokenError> {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims = HashSet::from(["aud".to_owned()]);
    v.set_audience(&[audience]);
    if let Some(i) = issuer {
        v.set_issuer(&[i]);
    }
    let claims: T = jsonwebtoken::decode::<T>(token, key, &v)
        .map_err(map_jwt_error)?
        .claims;
    let (iat, exp) = claims.times();
    if exp <= now.as_secs() {
        return Err(TokenError::Expired);
    }
    if iat > now.as_secs() + SKEW_S {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

trait Timed {
    fn times(&self) -> (i64, i64);
}

/// PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410), which is the form
/// jsonwebtoken takes signing keys in.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    [PREFIX.as_slice(), seed.as_slice()].concat()
}

/// Signs JWTs with one Ed25519 key under a `kid`.
pub struct JwtSigner {
    kid: String,
    key: EncodingKey,
}

impl JwtSigner {
    pub fn new(kid: impl Into<String>, key: &SigningKey) -> Self {
        JwtSigner {
            kid: kid.into(),
            key: EncodingKey::from_ed_der(&ed25519_pkcs8(&key.to_bytes())),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        h.typ = Some("JWT".into());
        jsonwebtoken::encode(&h, claims, &self.key)
            .expect("Ed25519 signing of serialisable claims cannot fail")
    }
}

fn ed_key(key: &VerifyingKey) -> DecodingKey {
    DecodingKey::from_ed_components(&B64URL.encode(key.as_bytes()))
        .expect("a valid Ed25519 point encodes")
}

// ---- the delegation chain ----------------------------------------------------------

/// RFC 8693 `act`: the current actor, with the previous actors nested inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(no_recursion))]
pub struct Act {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Act>>,
}

impl Act {
    /// The chain after `actor` takes over from `previous`.
    pub fn then(previous: Option<&Act>, actor: &SpiffeId) -> Act {
        Act {
            sub: actor.to_string(),
            act: previous.map(|p| Box::new(p.clone())),
        }
    }

    /// Actors from the first delegate to the current one.
    pub fn chain(&self) -> Vec<String> {
        let mut out = vec![self.sub.clone()];
        let mut cur = &self.act;
        while let Some(a) = cur {
            out.push(a.sub.clone());
            cur = &a.act;
        }
        out.reverse();
        out
    }
}

// ---- authorization details (RFC 9396) -----------------------------------------------

/// One `authorization_details` entry of type `mandate_task` in a token request:
/// the scope is every listed action on every listed resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedDetail {
    #[serde(rename = "type")]
    pub kind: String,
    pub purpose: String,
    pub actions: Vec<ActionPattern>,
    pub resources: Vec<ResourcePattern>,
    #[serde(default)]
    pub limits: Limits,
}

/// Turns the request's details into one task request. All entries must be
/// `mandate_task` and share one purpose; limits take the tightest given.
pub fn task_request(
    details: &[RequestedDetail],
    ttl_ms: Option<i64>,
) -> Result<TaskRequest, DelegationError> {
    let first = details.first().ok_or_else(|| {
        DelegationError::InvalidRequest(
            "authorization_details must hold a mandate_task entry".into(),
        )
    })?;
    let mut grants = Vec::new();
    let mut limits = Limits::default();
    for d in details {
        if d.kind != DETAIL_TYPE {
            return Err(DelegationError::InvalidRequest(format!(
                "authorization_details type {:?} is not supported; use {DETAIL_TYPE:?}",
                d.kind
            )));
        }
        if d.purpose != first.purpose {
            return Err(DelegationError::InvalidRequest(
                "all authorization_details entries must share one purpose".into(),
            ));
        }
        if d.actions.is_empty() || d.resources.is_empty() {
            return Err(DelegationError::InvalidScope(
                "each entry needs at least one action and one resource".into(),
            ));
        }
        for a in &d.actions {
            for r in &d.resources {
                grants.push(Grant {
                    action: a.clone(),
                    resource: r.clone(),
                });
            }
        }
        limits = limits.merge(&d.limits);
    }
    let scope = Scope::new(grants).map_err(|e| DelegationError::InvalidScope(e.to_string()))?;
    Ok(TaskRequest {
        purpose: first.purpose.clone(),
        scope,
        limits,
        ttl_ms,
    })
}

/// The granted task as carried in the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantedDetail {
    #[serde(rename = "type")]
    pub kind: String,
    pub purpose: String,
    pub grants: Scope,
    #[serde(default)]
    pub limits: Limits,
}

/// Proof-of-possession confirmation (RFC 9449 §6): the JWK thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cnf {
    pub jkt: String,
}

/// The claims of a Mandate task token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskClaims {
    pub iss: String,
    /// The human on whose authority the chain acts (Mandate human id).
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub task_id: TaskId,
    /// The acting agent's SPIFFE id.
    pub client_id: String,
    pub authorization_details: Vec<GrantedDetail>,
    pub act: Act,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Cnf>,
}

impl Timed for TaskClaims {
    fn times(&self) -> (i64, i64) {
        (self.iat, self.exp)
    }
}

/// Verifies a Mandate task token's signature (by `kid`), issuer, audience and
/// times. Revocation and task state are the store's to check.
pub fn verify_task_token(
    token: &str,
    key_for: impl Fn(&str) -> Option<VerifyingKey>,
    issuer: &str,
    audience: &str,
    now: Timestamp,
) -> Result<TaskClaims, TokenError> {
    let h = header(token)?;
    if h.alg != Algorithm::EdDSA {
        return Err(TokenError::Algorithm(format!("{:?}", h.alg)));
    }
    let kid = h
        .kid
        .ok_or_else(|| TokenError::Malformed("no kid in the header".into()))?;
    let key = key_for(&kid).ok_or(TokenError::UnknownKey)?;
    decode(
        token,
        &ed_key(&key),
        Algorithm::EdDSA,
        Some(issuer),
        audience,
        now,
    )
}

// ---- agent assertions (RFC 7523) -----------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

impl Timed for AssertionClaims {
    fn times(&self) -> (i64, i64) {
        (self.iat, self.exp)
    }
}

/// Mints an agent assertion (the agent's side; used by the CLI, demo and tests).
pub fn mint_assertion(
    key: &SigningKey,
    kid: &str,
    spiffe: &SpiffeId,
    audience: &str,
    now: Timestamp,
    jti: &str,
) -> String {
    let c = AssertionClaims {
        iss: spiffe.to_string(),
        sub: spiffe.to_string(),
        aud: audience.to_owned(),
        iat: now.as_secs(),
        exp: now.as_secs() + 120,
        jti: jti.to_owned(),
    };
    JwtSigner::new(kid, key).sign(&c)
}

/// Verifies an assertion against the agent's registered keys. The caller
/// must still record the jti so it is accepted only once.
pub fn verify_assertion(
    token: &str,
    spiffe: &SpiffeId,
    keys: &[(String, VerifyingKey)],
    audience: &str,
    now: Timestamp,
) -> Result<AssertionClaims, TokenError> {
    let h = header(token)?;
    if h.alg != Algorithm::EdDSA {
        return Err(TokenError::Algorithm(format!("{:?}", h.alg)));
    }
    let candidates: Vec<&VerifyingKey> = match &h.kid {
        Some(kid) => keys
            .iter()
            .filter(|(k, _)| k == kid)
            .map(|(_, v)| v)
            .collect(),
        None => keys.iter().map(|(_, v)| v).collect(),
    };
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey);
    }
    let mut last = TokenError::BadSignature;
    for key in candidates {
        match decode::<AssertionClaims>(
            token,
            &ed_key(key),
            Algorithm::EdDSA,
            Some(spiffe.as_str()),
            audience,
            now,
        ) {
            Ok(c) => {
                if c.sub != c.iss {
                    return Err(TokenError::Claims(
                        "an agent assertion needs sub = iss = the agent's SPIFFE id".into(),
                    ));
                }
                if c.exp - c.iat > MAX_ASSERTION_LIFETIME_S
                    || c.exp - now.as_secs() > MAX_ASSERTION_LIFETIME_S
                {
                    return Err(TokenError::Claims(format!(
                        "an agent assertion may live at most {MAX_ASSERTION_LIFETIME_S} s"
                    )));
                }
                if c.jti.is_empty() || c.jti.len() > 128 {
                    return Err(TokenError::Claims(
                        "an agent assertion needs a jti of 1 to 128 characters".into(),
                    ));
                }
                return Ok(c);
            }
            Err(e @ TokenError::BadSignature) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

// ---- human ID tokens from trusted issuers ---------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: serde_json::Value,
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
}

impl Timed for IdClaims {
    fn times(&self) -> (i64, i64) {
        (self.iat, self.exp)
    }
}

/// Parses an issuer's JWKS, refusing private key material and symmetric keys.
pub fn parse_jwks(v: &serde_json::Value) -> Result<JwkSet, TokenError> {
    let keys = v
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| TokenError::Malformed("a JWKS is an object with a \"keys\" array".into()))?;
    if keys.is_empty() {
        return Err(TokenError::Malformed("the JWKS holds no keys".into()));
    }
    for k in keys {
        if k.get("d").is_some() || k.get("k").is_some() {
            return Err(TokenError::Malformed(
                "the JWKS holds private or symmetric key material; publish public keys only".into(),
            ));
        }
    }
    serde_json::from_value(v.clone()).map_err(|e| TokenError::Malformed(format!("JWKS: {e}")))
}

/// Verifies an ID token against the issuer's JWKS. Asymmetric algorithms only.
pub fn verify_id_token(
    token: &str,
    issuer: &str,
    jwks: &JwkSet,
    audience: &str,
    now: Timestamp,
) -> Result<IdClaims, TokenError> {
    let h = header(token)?;
    if !matches!(
        h.alg,
        Algorithm::EdDSA
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
    ) {
        return Err(TokenError::Algorithm(format!("{:?}", h.alg)));
    }
    let jwk = match &h.kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or(TokenError::UnknownKey)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| TokenError::UnknownKey)?;
    decode(token, &key, h.alg, Some(issuer), audience, now)
}

/// A local OIDC-style issuer for demos and tests. A data dir trusts it only
/// when an admin registers its JWKS, like any other issuer: no back door.
pub struct DevIssuer {
    issuer: String,
    key: SigningKey,
}

impl DevIssuer {
    pub const KID: &'static str = "dev-issuer-1";

    pub fn new(issuer: impl Into<String>, seed: [u8; 32]) -> Self {
        DevIssuer {
            issuer: issuer.into(),
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": Self::KID,
            "x": B64URL.encode(self.key.verifying_key().as_bytes()),
        }]})
    }

    pub fn mint(&self, subject: &str, audience: &str, now: Timestamp, ttl_s: i64) -> String {
        JwtSigner::new(Self::KID, &self.key).sign(&IdClaims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: serde_json::Value::String(audience.to_owned()),
            iat: now.as_secs(),
            exp: now.as_secs() + ttl_s,
        })
    }
}

#[cfg(test)]
mod tests;
