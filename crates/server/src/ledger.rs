//! The server's side of the audit log: the in-memory Merkle tree that answers
//! proofs in microseconds, and the key that signs checkpoints.
//!
//! The tree is a cache of the stored log: before answering it catches up
//! with the store, so proofs are right on every node even when other nodes
//! appended meanwhile.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use mandate_core::audit::checkpoint::{NoteSigner, NoteVerifier, SignedCheckpoint};
use mandate_core::audit::merkle::{Hash, MerkleTree, ProofError};
use mandate_core::sealed::MasterKey;
use mandate_store::{Installation, Store, StoreError, log};
use tokio::sync::Mutex;

use crate::{AppState, StartError};

pub struct Ledger {
    tree: Mutex<MerkleTree>,
    signer: NoteSigner,
    origin: String,
}

/// An inclusion or consistency proof with the sizes it is for.
pub struct Proof {
    pub size: u64,
    pub root: Hash,
    pub hashes: Vec<Hash>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Proof(#[from] ProofError),
}

impl Ledger {
    /// Unseals the log key and loads the tree from the store. The log key is
    /// the first key made at `mandate init`: auditors pin its verifier key,
    /// so rotating token-signing keys must not change it.
    pub async fn load(
        store: &dyn Store,
        install: &Installation,
        master: &MasterKey,
    ) -> Result<Self, StartError> {
        let keys = store.signing_keys().await?;
        let active = keys
            .first()
            .ok_or_else(|| StartError::Key("no signing key in the store".into()))?;
        let seed = master
            .open(&active.kid, &active.sealed_private)
            .map_err(|e| StartError::MasterKey(e.to_string()))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| StartError::Key("sealed key has the wrong length".into()))?;
        let signer = NoteSigner::new(install.log_origin.clone(), SigningKey::from_bytes(&seed))
            .map_err(|e| StartError::Key(e.to_string()))?;
        let mut tree = MerkleTree::new();
        log::sync_tree(store, &mut tree).await?;
        Ok(Ledger {
            tree: Mutex::new(tree),
            signer,
            origin: install.log_origin.clone(),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The log key as a note signer, for other signed notes over the log
    /// (evidence pack manifests).
    pub fn signer(&self) -> &NoteSigner {
        &self.signer
    }

    /// The verifier key (C2SP vkey) auditors pin to check checkpoints.
    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// Signs a checkpoint over everything stored so far.
    pub async fn checkpoint(&self, store: &dyn Store) -> Result<SignedCheckpoint, StoreError> {
        let mut tree = self.tree.lock().await;
        log::checkpoint(store, &mut tree, &self.signer, &self.origin, crate::now()).await
    }

    pub async fn inclusion(
        &self,
        store: &dyn Store,
        index: u64,
        size: Option<u64>,
    ) -> Result<Proof, LedgerError> {
        let mut tree = self.tree.lock().await;
        log::sync_tree(store, &mut tree).await?;
        let size = size.unwrap_or(tree.len());
        let hashes = tree.inclusion_proof(index, size)?;
        Ok(Proof {
            size,
            root: tree.root_at(size)?,
            hashes,
        })
    }

    /// Inclusion proofs for many entries against one tree size, with one
    /// catch-up with the store (an evidence pack proves thousands).
    pub async fn inclusions(
        &self,
        store: &dyn Store,
        indexes: &[u64],
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, LedgerError> {
        let mut tree = self.tree.lock().await;
        log::sync_tree(store, &mut tree).await?;
        indexes
            .iter()
            .map(|i| tree.inclusion_proof(*i, size).map_err(LedgerError::from))
            .collect()
    }

    pub async fn consistency(
        &self,
        store: &dyn Store,
        from: u64,
        to: Option<u64>,
    ) -> Result<(Hash, Proof), LedgerError> {
        let mut tree = self.tree.lock().await;
        log::sync_tree(store, &mut tree).await?;
        let to = to.unwrap_or(tree.len());
        let hashes = tree.consistency_proof(from, to)?;
        Ok((
            tree.root_at(from)?,
            Proof {
                size: to,
                root: tree.root_at(to)?,
                hashes,
            },
        ))
    }

    pub async fn leaf(&self, store: &dyn Store, index: u64) -> Result<Option<Hash>, StoreError> {
        let mut tree = self.tree.lock().await;
        log::sync_tree(store, &mut tree).await?;
        Ok(tree.leaf(index))
    }
}

/// Signs a checkpoint whenever the log has grown, every `every`.
pub async fn checkpoint_loop(state: AppState, every: Duration) {
    let mut last = 0;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.store.audit_len().await {
            Ok(n) if n > last => match state.ledger.checkpoint(state.store.as_ref()).await {
                Ok(cp) => last = cp.checkpoint.size,
                Err(e) => tracing::warn!(error = %e, "periodic checkpoint failed"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the audit log size"),
        }
    }
}
