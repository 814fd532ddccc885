//! DPoP proofs (RFC 9449): binding a token to a key its holder proves it has.
//!
//! A proof is a JWT the client signs per request with the private key whose
//! public JWK rides in the header. A bound token (`cnf.jkt`) is useless
//! without a fresh proof from that key for the same method and URL.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::credential::TokenError;
use crate::time::Timestamp;

/// How far a proof's `iat` may be from now.
pub const PROOF_WINDOW_S: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofClaims {
    pub htm: String,
    pub htu: String,
    pub iat: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ath: Option<String>,
}

/// A verified proof: the key's thumbprint and the proof's jti (to be
/// recorded so the proof is used once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    pub jkt: String,
    pub jti: String,
}

/// RFC 7638 thumbprint of an OKP or EC public JWK.
pub fn thumbprint(jwk: &Jwk) -> Result<String, TokenError> {
    let v = serde_json::to_value(jwk).map_err(|e| TokenError::Malformed(e.to_string()))?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let canonical = match field("kty").as_deref() {
        Some("OKP") => serde_json::json!({ "crv": field("crv"), "kty": "OKP", "x": field("x") }),
        Some("EC") => {
            serde_json::json!({ "crv": field("crv"), "kty": "EC", "x": field("x"), "y": field("y") })
        }
        _ => {
            return Err(TokenError::Algorithm(
                "DPoP keys must be OKP (Ed25519) or EC".into(),
            ));
        }
    };
    // serde_json without preserve_order writes object keys sorted, as RFC 7638 requires.
    Ok(B64URL.encode(Sha256::digest(canonical.to_string().as_bytes())))
}

/// `ath`: the hash of the access token a proof accompanies.
pub fn access_token_hash(token: &str) -> String {
    B64URL.encode(Sha256::digest(token.as_bytes()))
}

/// Verifies a proof for `method` on `url` (no query or fragment), optionally
/// accompanying `access_token`.
pub fn verify_proof(
    proof: &str,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    now: Timestamp,
) -> Result<VerifiedProof, TokenError> {
    let h = jsonwebtoken::decode_header(proof).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if h.typ.as_deref() != Some("dpop+jwt") {
        return Err(TokenError::Malformed(
            "a DPoP proof needs typ dpop+jwt".into(),
        ));
    }
    if !matches!(h.alg, Algorithm::EdDSA | Algorithm::ES256) {
        return Err(TokenError::Algorithm(format!("{:?}", h.alg)));
    }
    let jwk = h.jwk.ok_or_else(|| {
        TokenError::Malformed("a DPoP proof carries its public key as jwk".into())
    })?;
    let raw = serde_json::to_value(&jwk).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if raw.get("d").is_some() {
        return Err(TokenError::Malformed(
            "the DPoP jwk contains private key material".into(),
        ));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| TokenError::UnknownKey)?;
    let mut v = Validation::new(h.alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims = HashSet::new();
    let c: ProofClaims = jsonwebtoken::decode(proof, &key, &v)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
            _ => TokenError::Malformed(e.to_string()),
        })?
        .claims;
    if !c.htm.eq_ignore_ascii_case(method) || c.htu != url {
        return Err(TokenError::Claims(format!(
            "the DPoP proof is for {} {}, not {method} {url}",
            c.htm, c.htu
        )));
    }
    if (c.iat - now.as_secs()).abs() > PROOF_WINDOW_S {
        return Err(TokenError::Claims(
            "the DPoP proof is stale or from the future".into(),
        ));
    }
    if c.jti.is_empty() || c.jti.len() > 128 {
        return Err(TokenError::Claims(
            "the DPoP proof needs a jti of 1 to 128 characters".into(),
        ));
    }
    if let Some(token) = access_token
        && c.ath.as_deref() != Some(access_token_hash(token).as_str())
    {
        return Err(TokenError::Claims(
            "the DPoP proof is not for this access token (ath)".into(),
        ));
    }
    Ok(VerifiedProof {
        jkt: thumbprint(&jwk)?,
        jti: c.jti,
    })
}

/// Mints a proof (the client's side; used by the CLI, demo and tests).
pub fn mint_proof(
    key: &ed25519_dalek::SigningKey,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    now: Timestamp,
    jti: &str,
) -> String {
    let jwk: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(key.verifying_key().as_bytes()),
    }))
    .expect("a well-formed OKP JWK");
    let mut h = jsonwebtoken::Header::new(Algorithm::EdDSA);
    h.typ = Some("dpop+jwt".into());
    h.jwk = Some(jwk);
    let claims = ProofClaims {
        htm: method.to_owned(),
        htu: url.to_owned(),
        iat: now.as_secs(),
        jti: jti.to_owned(),
        ath: access_token.map(access_token_hash),
    };
    let der = [
        [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ]
        .as_slice(),
        key.to_bytes().as_slice(),
    ]
    .concat();
    jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ed_der(&der))
        .expect("signing cannot fail")
}

/// The thumbprint of an Ed25519 key, as `cnf.jkt` would carry it.
pub fn ed25519_jkt(key: &ed25519_dalek::VerifyingKey) -> String {
    crate::jwk::Ed25519Jwk::from_verifying_key(key, None).thumbprint()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
    const URL: &str = "https://mandate.example/v1/tasks/current";

    #[test]
    fn a_fresh_proof_verifies_and_binds_to_the_key_thumbprint() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let p = mint_proof(&key, "GET", URL, Some("tok"), NOW, "j1");
        let v = verify_proof(&p, "GET", URL, Some("tok"), NOW).unwrap();
        assert_eq!(v.jkt, ed25519_jkt(&key.verifying_key()));
        assert_eq!(v.jti, "j1");
    }

    #[test]
    fn proofs_for_anything_else_are_refused() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let p = mint_proof(&key, "GET", URL, Some("tok"), NOW, "j1");
        assert!(
            verify_proof(&p, "POST", URL, Some("tok"), NOW).is_err(),
            "other method"
        );
        assert!(
            verify_proof(&p, "GET", "https://evil.example/", Some("tok"), NOW).is_err(),
            "other URL"
        );
        assert!(
            verify_proof(&p, "GET", URL, Some("other token"), NOW).is_err(),
            "other token"
        );
        let later = Timestamp::from_millis(NOW.as_millis() + 120_000);
        assert!(
            verify_proof(&p, "GET", URL, Some("tok"), later).is_err(),
            "stale"
        );
        let mut parts: Vec<String> = p.split('.').map(str::to_owned).collect();
        parts[1] = B64URL.encode(br#"{"htm":"GET","htu":"x","iat":0,"jti":"j"}"#);
        assert!(
            verify_proof(&parts.join("."), "GET", "x", None, NOW).is_err(),
            "tampered"
        );
    }
}
