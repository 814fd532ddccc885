//! Ed25519 public keys as JWKs (RFC 7517, RFC 8037) and their thumbprints (RFC 7638).
//!
//! Agents attest with keys they hold; Mandate only ever stores the public half.
//! A JWK carrying private material (`d`) is refused outright rather than
//! stripped, because whoever sent it has already leaked it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::RuleError;

/// A validated Ed25519 public JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ed25519Jwk {
    kty: &'static str,
    crv: &'static str,
    x: String,
    /// Key id: the one given, else the RFC 7638 thumbprint.
    kid: String,
}

fn bad(why: impl Into<String>) -> RuleError {
    RuleError::invalid("JWK", why)
}

impl Ed25519Jwk {
    pub fn from_verifying_key(key: &VerifyingKey, kid: Option<String>) -> Self {
        let x = B64URL.encode(key.as_bytes());
        let kid = kid.unwrap_or_else(|| thumbprint(&x));
        Ed25519Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x,
            kid,
        }
    }

    /// Parses and checks a JWK given as JSON.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, RuleError> {
        let obj = v.as_object().ok_or_else(|| bad("must be a JSON object"))?;
        if obj.contains_key("d") {
            return Err(bad(
                "contains private key material (\"d\"); send only the public key",
            ));
        }
        for k in obj.keys() {
            if !matches!(
                k.as_str(),
                "kty" | "crv" | "x" | "kid" | "use" | "alg" | "key_ops"
            ) {
                return Err(bad(format!("unknown member {k:?}")));
            }
        }
        let field = |name: &str| obj.get(name).and_then(|v| v.as_str());
        if field("kty") != Some("OKP") {
            return Err(bad("kty must be \"OKP\""));
        }
        if field("crv") != Some("Ed25519") {
            return Err(bad("crv must be \"Ed25519\""));
        }
        if let Some(alg) = obj.get("alg")
            && alg.as_str() != Some("EdDSA")
        {
            return Err(bad("alg, when present, must be \"EdDSA\""));
        }
        if let Some(u) = obj.get("use")
            && u.as_str() != Some("sig")
        {
            return Err(bad("use, when present, must be \"sig\""));
        }
        let x = field("x").ok_or_else(|| bad("missing \"x\""))?;
        let raw = B64URL
            .decode(x)
            .map_err(|_| bad("\"x\" is not unpadded base64url"))?;
        let raw: [u8; 32] = raw.try_into().map_err(|_| bad("\"x\" must be 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|_| bad("\"x\" is not a valid Ed25519 point"))?;
        if key.is_weak() {
            return Err(bad("\"x\" is a weak (small-order) Ed25519 key"));
        }
        let kid = match obj.get("kid") {
            None => None,
            Some(k) => {
                let k = k.as_str().ok_or_else(|| bad("kid must be a string"))?;
                if k.is_empty() || k.len() > 128 || !k.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(bad("kid must be 1 to 128 printable ASCII characters"));
                }
                Some(k.to_owned())
            }
        };
        Ok(Self::from_verifying_key(&key, kid))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        let raw: [u8; 32] = B64URL
            .decode(&self.x)
            .ok()
            .and_then(|v| v.try_into().ok())
            .expect("x was validated at construction");
        VerifyingKey::from_bytes(&raw).expect("x was validated at construction")
    }

    pub fn thumbprint(&self) -> String {
        thumbprint(&self.x)
    }
}

/// RFC 7638: SHA-256 over the required members in lexicographic order.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64URL.encode(Sha256::digest(canonical.as_bytes()))
}

impl<'de> Deserialize<'de> for Ed25519Jwk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ed25519Jwk::from_json(&serde_json::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    fn key() -> VerifyingKey {
        SigningKey::from_bytes(&[7u8; 32]).verifying_key()
    }

    #[test]
    fn round_trips_and_defaults_kid_to_thumbprint() {
        let jwk = Ed25519Jwk::from_verifying_key(&key(), None);
        let v = serde_json::to_value(&jwk).unwrap();
        let back = Ed25519Jwk::from_json(&v).unwrap();
        assert_eq!(back, jwk);
        assert_eq!(back.kid(), jwk.thumbprint());
        assert_eq!(back.verifying_key(), key());
    }

    #[test]
    fn rfc8037_appendix_a_thumbprint() {
        // RFC 8037 A.3: the thumbprint of the A.2 public key.
        let jwk = Ed25519Jwk::from_json(&json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }))
        .unwrap();
        assert_eq!(
            jwk.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn refuses_bad_keys() {
        let x = B64URL.encode(key().as_bytes());
        let cases = [
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "d": "secret"}),
            json!({"kty": "RSA", "crv": "Ed25519", "x": x}),
            json!({"kty": "OKP", "crv": "X25519", "x": x}),
            json!({"kty": "OKP", "crv": "Ed25519"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": "not base64!"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": B64URL.encode([1u8; 31])}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": B64URL.encode([0u8; 32])}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "RS256"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "surprise": 1}),
            json!("a string"),
        ];
        for c in cases {
            assert!(Ed25519Jwk::from_json(&c).is_err(), "accepted {c}");
        }
    }
}

#[cfg(test)]
mod fuzz_mirror {
    //! The input space of the `jwk` fuzz target, exercised in CI.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_json_never_panics(kty in "OKP|RSA|.{0,4}", crv in "Ed25519|X25519|.{0,4}",
                                        x in "[A-Za-z0-9_-]{0,50}", extra in proptest::option::of(".{0,8}")) {
            let mut v = serde_json::json!({ "kty": kty, "crv": crv, "x": x });
            if let Some(e) = extra { v[e] = serde_json::json!(1); }
            if let Ok(jwk) = Ed25519Jwk::from_json(&v) {
                prop_assert_eq!(Ed25519Jwk::from_json(&serde_json::to_value(&jwk).unwrap()).unwrap(), jwk);
            }
        }
    }
}
