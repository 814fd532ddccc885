//! Downstream secrets the gateway injects on an agent's behalf.
//!
//! An agent never holds the API key or bearer token of the system it calls:
//! the gateway adds it to the forwarded request. Secrets are sealed at rest
//! with the master key; the secret's name is the associated data, so a sealed
//! value copied onto another name's row fails to open.

use serde::{Deserialize, Serialize};

use crate::RuleError;
use crate::sealed::MasterKey;

/// A secret's name, e.g. `billing-api-key`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "billing-api-key"))]
#[serde(transparent)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        crate::outcome::slug("secret name", s).map(|s| SecretName(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn aad(&self) -> String {
        format!("secret:{}", self.0)
    }
}

impl std::fmt::Display for SecretName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SecretName::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Longest secret value accepted: API keys and tokens, not documents.
pub const MAX_SECRET_BYTES: usize = 8 * 1024;

/// A secret in the clear. `Debug` does not print it, and it cannot be
/// serialised: it leaves the process only in the header it is injected into.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Refuses what could not travel in an HTTP header (control characters,
    /// non-ASCII) and what is empty or too long.
    pub fn new(value: String) -> Result<Self, RuleError> {
        let bad = |why: &str| RuleError::invalid("secret value", why.to_owned());
        if value.is_empty() || value.len() > MAX_SECRET_BYTES {
            return Err(bad("must be 1 to 8192 bytes"));
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(bad(
                "must be printable ASCII (it is sent in an HTTP header); no newlines",
            ));
        }
        Ok(SecretValue(value))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// A secret as stored: sealed, with its version (1 when first stored, +1 per rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub name: SecretName,
    pub sealed: String,
}

impl SealedSecret {
    /// `nonce` must be fresh random bytes.
    pub fn seal(
        master: &MasterKey,
        name: SecretName,
        value: &SecretValue,
        nonce: [u8; 12],
    ) -> Self {
        let sealed = master.seal(&name.aad(), nonce, value.expose().as_bytes());
        SealedSecret { name, sealed }
    }

    pub fn open(&self, master: &MasterKey) -> Result<SecretValue, RuleError> {
        let bytes = master.open(&self.name.aad(), &self.sealed)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| RuleError::invalid("secret value", "not UTF-8"))?;
        SecretValue::new(text)
    }
}

/// What anyone may see of a stored secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretInfo {
    pub name: SecretName,
    pub version: u32,
    pub created_at: crate::time::Timestamp,
    pub rotated_at: crate::time::Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes([b; 32])
    }

    #[test]
    fn a_sealed_secret_opens_only_under_its_name_and_key() {
        let name = SecretName::parse("billing-key").unwrap();
        let value = SecretValue::new("sk_live_123".into()).unwrap();
        let s = SealedSecret::seal(&key(1), name, &value, [7; 12]);
        assert!(!s.sealed.contains("sk_live_123"));
        assert_eq!(s.open(&key(1)).unwrap(), value);
        assert!(s.open(&key(2)).is_err(), "another master key opened it");
        let moved = SealedSecret {
            name: SecretName::parse("other-key").unwrap(),
            sealed: s.sealed.clone(),
        };
        assert!(
            moved.open(&key(1)).is_err(),
            "a blob moved to another name opened"
        );
    }

    #[test]
    fn values_that_cannot_be_a_header_are_refused_and_never_printed() {
        for bad in ["", "a\r\nX-Injected: 1", "tab\there", "é"] {
            assert!(SecretValue::new(bad.into()).is_err(), "{bad:?} accepted");
        }
        assert!(SecretValue::new("x".repeat(MAX_SECRET_BYTES + 1)).is_err());
        let v = SecretValue::new("hunter2".into()).unwrap();
        assert!(!format!("{v:?}").contains("hunter2"));
        assert!(SecretName::parse("Bad Name").is_err());
    }
}
