//! Admin credentials: bearer secrets shown once and stored only as a hash.
//!
//! A token is `mandate_admin_<id>_<secret>`. The id finds the stored record,
//! so verification is one lookup plus a constant-time comparison of
//! SHA-256(secret) — no timing signal about how much of a guess was right.
//! The secret is 32 random bytes, so a fast hash is enough (there is nothing
//! to brute-force that a slow hash would protect).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::RuleError;
use crate::ids::AdminCredentialId;

const PREFIX: &str = "mandate_admin_";

/// A freshly minted or presented admin token. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct AdminToken {
    id: AdminCredentialId,
    secret: [u8; 32],
}

/// What is stored: the id and the hash of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSecretHash(pub [u8; 32]);

impl AdminToken {
    /// `random` must come from a CSPRNG; core does no I/O so the caller supplies it.
    pub fn from_parts(id: AdminCredentialId, random: [u8; 32]) -> Self {
        AdminToken { id, secret: random }
    }

    pub fn parse(s: &str) -> Result<Self, RuleError> {
        let bad = || RuleError::invalid("admin token", "expected mandate_admin_<id>_<secret>");
        let rest = s.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (id, secret) = rest.split_once('_').ok_or_else(bad)?;
        let id = Uuid::try_parse(id).map_err(|_| bad())?;
        let secret: [u8; 32] = B64URL
            .decode(secret)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(bad)?;
        Ok(AdminToken {
            id: AdminCredentialId::from_uuid(id),
            secret,
        })
    }

    pub fn id(&self) -> AdminCredentialId {
        self.id
    }

    pub fn hash(&self) -> AdminSecretHash {
        AdminSecretHash(Sha256::digest(self.secret).into())
    }

    /// Constant-time check against a stored hash.
    pub fn matches(&self, stored: &AdminSecretHash) -> bool {
        self.hash().0.ct_eq(&stored.0).into()
    }

    /// The full token text. Only ever shown to the operator, once.
    pub fn expose(&self) -> String {
        format!(
            "{PREFIX}{}_{}",
            self.id.as_uuid().simple(),
            B64URL.encode(self.secret)
        )
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token(byte: u8) -> AdminToken {
        AdminToken::from_parts(
            AdminCredentialId::from_uuid(Uuid::from_u128(42)),
            [byte; 32],
        )
    }

    #[test]
    fn round_trip_and_match() {
        let t = token(9);
        let parsed = AdminToken::parse(&t.expose()).unwrap();
        assert_eq!(parsed.id(), t.id());
        assert!(parsed.matches(&t.hash()));
        assert!(!token(8).matches(&t.hash()));
    }

    #[test]
    fn debug_redacts_the_secret() {
        let t = token(9);
        let secret = t.expose().rsplit_once('_').unwrap().1.to_owned();
        assert!(!format!("{t:?}").contains(&secret));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,120}") {
            let _ = AdminToken::parse(&s);
        }

        #[test]
        fn any_single_byte_change_is_refused(i in 0usize..32, flip in 1u8..=255) {
            let good = token(3);
            let mut secret = [3u8; 32];
            secret[i] ^= flip;
            prop_assert!(!AdminToken::from_parts(good.id(), secret).matches(&good.hash()));
        }
    }
}
