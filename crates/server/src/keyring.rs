//! The token-signing keys: the active one signs, retired ones still verify
//! (and stay in the JWKS) until every token they signed has expired.
//!
//! The keyring is a cache of the `signing_keys` table. Another node may rotate
//! at any time, so an unknown `kid` makes it reload once before refusing.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use ed25519_dalek::{SigningKey, VerifyingKey};
use mandate_core::credential::JwtSigner;
use mandate_core::jwk::Ed25519Jwk;
use mandate_core::sealed::MasterKey;
use mandate_core::time::Timestamp;
use mandate_store::{SigningKeyRecord, Store, StoreError};

use crate::StartError;

struct Key {
    public: VerifyingKey,
    /// When it stopped signing; `None` for the active key.
    retired_at: Option<Timestamp>,
}

struct Loaded {
    signer: Arc<JwtSigner>,
    keys: BTreeMap<String, Key>,
}

pub struct Keyring {
    master: MasterKey,
    /// Longest token lifetime: how long a retired key must stay published.
    max_ttl_ms: i64,
    loaded: RwLock<Loaded>,
}

fn unseal(master: &MasterKey, rec: &SigningKeyRecord) -> Result<SigningKey, StartError> {
    let seed = master
        .open(&rec.kid, &rec.sealed_private)
        .map_err(|e| StartError::MasterKey(e.to_string()))?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| StartError::Key(format!("sealed key {} has the wrong length", rec.kid)))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn load(master: &MasterKey, records: &[SigningKeyRecord]) -> Result<Loaded, StartError> {
    let mut keys = BTreeMap::new();
    let mut signer = None;
    for rec in records {
        let secret = unseal(master, rec)?;
        if rec.active {
            signer = Some(Arc::new(JwtSigner::new(rec.kid.clone(), &secret)));
        }
        keys.insert(
            rec.kid.clone(),
            Key {
                public: secret.verifying_key(),
                retired_at: if rec.active { None } else { rec.retired_at },
            },
        );
    }
    let signer =
        signer.ok_or_else(|| StartError::Key("no active signing key in the store".into()))?;
    Ok(Loaded { signer, keys })
}

/// A fresh signing key, sealed under the master key, ready to store.
pub fn new_signing_key(master: &MasterKey, now: Timestamp) -> SigningKeyRecord {
    let seed: [u8; 32] = crate::install::random();
    let jwk = Ed25519Jwk::from_verifying_key(&SigningKey::from_bytes(&seed).verifying_key(), None);
    let kid = jwk.kid().to_owned();
    SigningKeyRecord {
        sealed_private: master.seal(&kid, crate::install::random(), &seed),
        public_key: serde_json::to_value(&jwk)
            .ok()
            .and_then(|v| v["x"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        kid,
        created_at: now,
        active: true,
        retired_at: None,
    }
}

impl Keyring {
    pub async fn load(
        store: &dyn Store,
        master: MasterKey,
        max_ttl_ms: i64,
    ) -> Result<Self, StartError> {
        let loaded = load(&master, &store.signing_keys().await?)?;
        Ok(Keyring {
            master,
            max_ttl_ms,
            loaded: RwLock::new(loaded),
        })
    }

    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let fresh = load(&self.master, &store.signing_keys().await?)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        *self.loaded.write().expect("keyring lock") = fresh;
        Ok(())
    }

    /// The key that signs new tokens.
    pub fn signer(&self) -> Arc<JwtSigner> {
        self.loaded.read().expect("keyring lock").signer.clone()
    }

    /// A verification key, if `kid` is active or retired recently enough that
    /// tokens it signed may still be live.
    pub fn key(&self, kid: &str, now: Timestamp) -> Option<VerifyingKey> {
        let l = self.loaded.read().expect("keyring lock");
        l.keys
            .get(kid)
            .filter(|k| self.published(k, now))
            .map(|k| k.public)
    }

    /// Like [`Keyring::key`], reloading from the store once if `kid` is unknown
    /// (another node may have rotated).
    pub async fn key_or_reload(
        &self,
        store: &dyn Store,
        kid: &str,
        now: Timestamp,
    ) -> Result<Option<VerifyingKey>, StoreError> {
        let known = self
            .loaded
            .read()
            .expect("keyring lock")
            .keys
            .contains_key(kid);
        if !known {
            self.reload(store).await?;
        }
        Ok(self.key(kid, now))
    }

    fn published(&self, k: &Key, now: Timestamp) -> bool {
        k.retired_at
            .is_none_or(|r| now.as_millis() < r.as_millis() + self.max_ttl_ms)
    }

    /// RFC 7517 JWK set of every key whose tokens may still be live.
    pub fn jwks(&self, now: Timestamp) -> serde_json::Value {
        let l = self.loaded.read().expect("keyring lock");
        let keys: Vec<_> = l
            .keys
            .iter()
            .filter(|(_, k)| self.published(k, now))
            .map(|(kid, k)| {
                let mut v = serde_json::to_value(Ed25519Jwk::from_verifying_key(
                    &k.public,
                    Some(kid.clone()),
                ))
                .expect("a JWK serialises");
                v["alg"] = "EdDSA".into();
                v["use"] = "sig".into();
                v
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }
}
