//! Private keys at rest, sealed with a master key (ChaCha20-Poly1305).
//!
//! The database alone never yields a signing key: an attacker who copies it
//! also needs the master key, which lives outside the database (a file in the
//! data dir with 0600 permissions, or an environment variable). The key id is
//! the associated data, so a sealed blob cannot be moved onto another key's
//! row without failing to open.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::RuleError;

const VERSION: &str = "v1";

/// A 32-byte key-encryption key. `Debug` does not print it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        MasterKey(b)
    }

    pub fn parse(text: &str) -> Result<Self, RuleError> {
        B64URL
            .decode(text.trim())
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .map(MasterKey)
            .ok_or_else(|| {
                RuleError::invalid("master key", "expected 32 bytes as unpadded base64url")
            })
    }

    pub fn encode(&self) -> String {
        B64URL.encode(self.0)
    }

    /// `nonce` must be fresh random bytes for every call.
    pub fn seal(&self, kid: &str, nonce: [u8; 12], secret: &[u8]) -> String {
        let cipher = ChaCha20Poly1305::new(&Key::from(self.0));
        let ct = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: kid.as_bytes(),
                },
            )
            .expect("encryption with a valid key cannot fail");
        format!("{VERSION}.{}.{}", B64URL.encode(nonce), B64URL.encode(ct))
    }

    pub fn open(&self, kid: &str, sealed: &str) -> Result<Vec<u8>, RuleError> {
        let bad = |why: &str| RuleError::invalid("sealed key", format!("{kid}: {why}"));
        let mut parts = sealed.split('.');
        let (Some(VERSION), Some(nonce), Some(ct), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("unknown format"));
        };
        let nonce: [u8; 12] = B64URL
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| bad("bad nonce"))?;
        let ct = B64URL
            .decode(ct)
            .map_err(|_| bad("bad ciphertext encoding"))?;
        ChaCha20Poly1305::new(&Key::from(self.0))
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ct,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| {
                bad("does not open with this master key (wrong key, or the blob was altered)")
            })
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_the_kid() {
        let mk = MasterKey::from_bytes([1; 32]);
        let sealed = mk.seal("k1", [2; 12], b"secret key bytes");
        assert_eq!(mk.open("k1", &sealed).unwrap(), b"secret key bytes");
        assert!(mk.open("k2", &sealed).is_err(), "moved to another kid");
        assert!(
            MasterKey::from_bytes([3; 32]).open("k1", &sealed).is_err(),
            "wrong master key"
        );
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(
            mk.open("k1", &String::from_utf8(flipped).unwrap()).is_err(),
            "altered ciphertext"
        );
    }

    #[test]
    fn master_key_text_round_trips_and_is_redacted() {
        let mk = MasterKey::from_bytes([7; 32]);
        assert_eq!(MasterKey::parse(&mk.encode()).unwrap().0, [7; 32]);
        assert!(MasterKey::parse("short").is_err());
        assert!(!format!("{mk:?}").contains(&mk.encode()));
    }
}
