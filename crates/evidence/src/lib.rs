//! Evidence packs for Return-on-AI figures.
//!
//! An evidence pack is a zip that lets an auditor check, offline and without
//! trusting the server, that a Return-on-AI report's totals are backed by
//! real, signed audit-log entries: every counted transaction is an
//! `outcome.reported` entry proven into a signed checkpoint, and the report's
//! figures recompute exactly from those entries with the same fold the server
//! uses ([`mandate_core::outcome::PeriodFigures::from_rows`]).
//!
//! This crate owns the pack format ([`pack`]: file names, their encodings,
//! the signed manifest), the builder ([`build`]) and the verifier
//! ([`verify()`]). It does no I/O: packs go in and out as bytes, so the server,
//! the CLI and the fuzzer all run exactly the same code.
//!
//! # Building a pack (server side)
//!
//! 1. Sync the Merkle tree and sign a fresh checkpoint with the log's
//!    [`NoteSigner`](mandate_core::audit::checkpoint::NoteSigner), so that it
//!    covers every outcome listed; the same signer is passed to [`build`].
//! 2. For every outcome of the workflow with `period.from <= reported_at <
//!    period.to`, a [`ProvenEntry`]: its audit index, the stored entry text
//!    verbatim, and `tree.inclusion_proof(index, checkpoint.size)`.
//! 3. `figures` for exactly `period` (`figures.period == period`, or
//!    [`build`] refuses).
//! 4. The [`ControlBoundary`]: the policy versions active during the period,
//!    every agent the outcomes name, and every human they name (initiators,
//!    owners at report time) plus each listed agent's owner.
//!
//! # Verifying (auditor side)
//!
//! [`verify()`] returns every check of [`CHECKS`] with a reason; only
//! [`Verification::passed`] means the figures are backed. Pass the published
//! log key as `pinned`; without it the pack's own key is used and the
//! "log key" check says so.
#![forbid(unsafe_code)]

mod figures;
pub mod pack;
pub mod verify;
mod zipfile;

use serde::{Deserialize, Serialize};

use mandate_core::audit::Hash;
use mandate_core::audit::checkpoint::SignedCheckpoint;
use mandate_core::ids::{AgentId, HumanId};
use mandate_core::outcome::{Period, PeriodFigures, Workflow};
use mandate_core::time::Timestamp;

pub use pack::{FILES, PackError, build};
pub use verify::{CHECKS, Check, PackSummary, Verification, verify};

/// Everything a pack is built from. The server gathers it; [`build`] only
/// encodes and signs it, and never second-guesses the figures: a pack whose
/// figures do not follow from its transactions is built as asked and fails
/// verification, which is the point of the pack.
#[derive(Debug, Clone, PartialEq)]
pub struct PackInput {
    pub workflow: Workflow,
    pub period: Period,
    /// Figures the server computed (from its pre-aggregated store rows).
    pub figures: PeriodFigures,
    /// Every outcome of the workflow reported in the period, as its exact
    /// audit-log entry text with an inclusion proof.
    pub transactions: Vec<ProvenEntry>,
    /// A checkpoint covering every listed entry, signed by the pack's signer.
    pub checkpoint: SignedCheckpoint,
    pub boundary: ControlBoundary,
    pub generated_at: Timestamp,
}

/// One audit-log entry with its RFC 9162 inclusion proof against the pack's
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenEntry {
    pub leaf_index: u64,
    /// The exact stored entry text (what was hashed into the tree).
    pub entry: String,
    pub proof: Vec<Hash>,
}

/// Who and what was in force for the workflow's transactions: the policy
/// versions, and the agents and humans the outcomes name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlBoundary {
    pub policies: Vec<PolicyInForce>,
    pub agents: Vec<BoundaryAgent>,
    pub humans: Vec<BoundaryHuman>,
}

/// A policy-set version that was active during (part of) the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInForce {
    /// Hex SHA-256 of `text` (the policy crate's `hash_text`).
    pub hash: String,
    pub version: i64,
    pub text: String,
    pub active_from: Timestamp,
    /// `None` while still active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_until: Option<Timestamp>,
}

/// An agent named by a transaction, with its accountable owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundaryAgent {
    pub id: AgentId,
    pub spiffe_id: String,
    pub name: String,
    pub owner: HumanId,
}

/// A human named by a transaction (initiator or owner) or owning an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundaryHuman {
    pub id: HumanId,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}
