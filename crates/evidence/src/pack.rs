//! The pack format (v1) and its builder.
//!
//! Files, in this order, each exactly once:
//!
//! | file | contents |
//! |---|---|
//! | `README.txt` | what the pack is, how to verify it, the metric definitions |
//! | `definitions.json` | the same definitions, machine-readable |
//! | `report.json` | workflow, period, figures, generated_at |
//! | `transactions.jsonl` | one `{"leaf_index","entry","proof"}` line per outcome, in log order |
//! | `checkpoint.txt` | the signed checkpoint note, verbatim |
//! | `control_boundary.json` | policies, agents and humans in force |
//! | `keys.json` | `{"log": "<vkey>"}` |
//! | `manifest.txt` | signed note: `mandate evidence pack v1`, then `<sha256>  <name>` per file above |
//!
//! JSON files are pretty-printed with a final newline; the text is UTF-8.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use mandate_core::audit::checkpoint::{CheckpointError, NoteSigner};
use mandate_core::audit::to_hex;
use mandate_core::outcome::{Classification, Period, PeriodFigures, Workflow};
use mandate_core::time::Timestamp;

use crate::{PackInput, zipfile};

pub const README: &str = "README.txt";
pub const DEFINITIONS: &str = "definitions.json";
pub const REPORT: &str = "report.json";
pub const TRANSACTIONS: &str = "transactions.jsonl";
pub const CHECKPOINT: &str = "checkpoint.txt";
pub const BOUNDARY: &str = "control_boundary.json";
pub const KEYS: &str = "keys.json";
pub const MANIFEST: &str = "manifest.txt";

/// Every file of a pack, in pack order. The manifest lists the others.
pub const FILES: [&str; 8] = [
    README,
    DEFINITIONS,
    REPORT,
    TRANSACTIONS,
    CHECKPOINT,
    BOUNDARY,
    KEYS,
    MANIFEST,
];

/// The manifest's first line: names the format and its version.
pub const MANIFEST_HEADER: &str = "mandate evidence pack v1";

/// Why a pack could not be built. Only inputs that cannot be encoded or
/// signed consistently are refused; wrong figures are encoded as given.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("the figures are for {figures}, the pack is for {pack}")]
    PeriodMismatch { figures: String, pack: String },
    #[error(
        "the checkpoint is not signed by the pack's signing key {key}: {source} (sign a fresh checkpoint with the log's current key)"
    )]
    CheckpointKey {
        key: String,
        source: CheckpointError,
    },
    #[error("cannot encode {file}: {source}")]
    Json {
        file: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot write the zip: {0}")]
    Zip(String),
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportFile {
    pub workflow: Workflow,
    pub period: Period,
    pub figures: PeriodFigures,
    pub generated_at: Timestamp,
}

/// One line of `transactions.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionLine {
    pub leaf_index: u64,
    pub entry: String,
    /// Lowercase hex hashes, leaf to root.
    pub proof: Vec<String>,
}

/// `keys.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// The audit log's note verifier key (C2SP vkey), which signs both the
    /// checkpoint and the manifest.
    pub log: String,
}

/// `definitions.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definitions {
    pub format: String,
    pub metrics: BTreeMap<String, String>,
    pub classifications: Vec<ClassDefinition>,
}

/// One classification and what it contributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassDefinition {
    pub kind: Classification,
    pub definition: String,
    pub adds_value: bool,
    pub adds_cost: bool,
}

/// The metric definitions, in words. They restate the fold in core
/// `outcome::roai`, which is what the verifier actually recomputes with.
const METRICS: [(&str, &str); 10] = [
    (
        "reported",
        "every outcome of the workflow reported in the period, counted or not",
    ),
    (
        "counted",
        "outcomes classified counted: the only ones that add value",
    ),
    (
        "exceptions",
        "outcomes not counted, by classification (every kind listed, zeros included)",
    ),
    (
        "value",
        "sum of the value of counted outcomes only, in the workflow's currency",
    ),
    (
        "cost",
        "sum of the cost of every outcome except duplicates: the spend behind a phantom or a refused task was real, a retry's was already reported",
    ),
    ("net", "value - cost (may be negative)"),
    (
        "roai",
        "Return on AI = (value - cost) / cost; absent when cost is zero",
    ),
    (
        "minutes_saved",
        "human minutes the counted outcomes saved (reported, or the workflow's baseline minutes)",
    ),
    (
        "human_baseline_cost",
        "counted outcomes x the workflow's baseline cost per transaction: what humans would have spent",
    ),
    (
        "model_tokens",
        "model tokens of every outcome except duplicates",
    ),
];

pub fn definitions() -> Definitions {
    Definitions {
        format: MANIFEST_HEADER.to_owned(),
        metrics: METRICS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        classifications: Classification::ALL
            .into_iter()
            .map(|c| ClassDefinition {
                kind: c,
                definition: c.definition().to_owned(),
                adds_value: c == Classification::Counted,
                adds_cost: c != Classification::Duplicate,
            })
            .collect(),
    }
}

fn readme(input: &PackInput) -> String {
    let wf = &input.workflow.def;
    let mut s = String::new();
    // `write!` to a String cannot fail.
    let _ = write!(
        s,
        "Mandate evidence pack, format v1
================================

Workflow:  {name} ({desc})
Period:    {from} (inclusive) to {to} (exclusive)
Generated: {at}
Outcomes:  {n} listed in transactions.jsonl

This pack backs the Return-on-AI figures in report.json. Each outcome is the
exact audit-log entry the server wrote when it was reported, with a Merkle
inclusion proof (RFC 9162) into the signed checkpoint in checkpoint.txt. The
figures recompute exactly from those entries. Everything is signed by the
audit log's key (keys.json) through manifest.txt, and the zip itself has one
canonical encoding, so any changed byte makes verification fail.

How to verify (offline, no server needed):

    mandate evidence verify pack.zip --key <vkey>

where <vkey> is the audit log's verifier key as the operator publishes it
(name+keyid+base64). Take it from the operator, not from keys.json: anyone can
build a pack signed by a key of their own. Without --key the key inside the
pack is used and the verifier says the key was NOT pinned.

The verifier checks: the zip holds exactly these files in this order and is
byte-for-byte canonical; the manifest and checkpoint signatures; every file's
SHA-256; every entry is an outcome.reported event of this workflow reported
in the period, proven into the checkpoint, listed once, and attributed to an
agent, owner and initiator in control_boundary.json; the policy texts match
their hashes; the figures in report.json equal the figures recomputed from
the entries; every duplicate names its first report.

What the pack cannot show: that no outcome was left out. It proves what it
lists; completeness needs the whole log (mandate audit verify).

Files:
  README.txt             this text
  definitions.json       the definitions below, machine-readable
  report.json            the workflow, period and figures as reported
  transactions.jsonl     one outcome per line: leaf_index, entry, proof
  checkpoint.txt         the signed checkpoint (C2SP tlog-checkpoint)
  control_boundary.json  policy versions, agents and humans in force
  keys.json              the log's verifier key
  manifest.txt           signed SHA-256 of every other file

Metrics:
",
        name = wf.name,
        desc = wf.description,
        from = input.period.from.rfc3339(),
        to = input.period.to.rfc3339(),
        at = input.generated_at.rfc3339(),
        n = input.transactions.len(),
    );
    for (k, v) in METRICS {
        let _ = writeln!(s, "  {k}: {v}");
    }
    let _ = writeln!(s, "\nClassifications (only counted adds value):");
    for c in Classification::ALL {
        let _ = writeln!(s, "  {}: {}", c.as_str(), c.definition());
    }
    s
}

fn json_file<T: Serialize>(file: &'static str, v: &T) -> Result<Vec<u8>, PackError> {
    let mut out =
        serde_json::to_vec_pretty(v).map_err(|source| PackError::Json { file, source })?;
    out.push(b'\n');
    Ok(out)
}

pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

/// The manifest's signed text: the header, then one `<sha256>  <name>` line
/// per file (the `sha256sum` layout).
pub fn manifest_body<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut body = format!("{MANIFEST_HEADER}\n");
    for (name, data) in files {
        let _ = writeln!(body, "{}  {name}", sha256_hex(data));
    }
    body
}

/// Builds the pack. `signer` is the audit log's note signer, the key that
/// signed `input.checkpoint`; it also signs the manifest.
pub fn build(input: &PackInput, signer: &NoteSigner) -> Result<Vec<u8>, PackError> {
    if input.figures.period != input.period {
        return Err(PackError::PeriodMismatch {
            figures: show_period(&input.figures.period),
            pack: show_period(&input.period),
        });
    }
    let verifier = signer.verifier();
    input
        .checkpoint
        .verify(std::slice::from_ref(&verifier))
        .map_err(|source| PackError::CheckpointKey {
            key: verifier.to_vkey(),
            source,
        })?;

    // Log order: deterministic, and the order an auditor reads the log in.
    let mut txs: Vec<&crate::ProvenEntry> = input.transactions.iter().collect();
    txs.sort_by_key(|t| t.leaf_index);
    let mut transactions = Vec::new();
    for t in txs {
        let line = TransactionLine {
            leaf_index: t.leaf_index,
            entry: t.entry.clone(),
            proof: t.proof.iter().map(|h| to_hex(h)).collect(),
        };
        serde_json::to_writer(&mut transactions, &line).map_err(|source| PackError::Json {
            file: TRANSACTIONS,
            source,
        })?;
        transactions.push(b'\n');
    }

    let report = ReportFile {
        workflow: input.workflow.clone(),
        period: input.period,
        figures: input.figures.clone(),
        generated_at: input.generated_at,
    };
    let contents: [Vec<u8>; 7] = [
        readme(input).into_bytes(),
        json_file(DEFINITIONS, &definitions())?,
        json_file(REPORT, &report)?,
        transactions,
        input.checkpoint.note.clone().into_bytes(),
        json_file(BOUNDARY, &input.boundary)?,
        json_file(
            KEYS,
            &KeysFile {
                log: verifier.to_vkey(),
            },
        )?,
    ];
    let body = manifest_body(
        FILES
            .iter()
            .copied()
            .zip(contents.iter().map(Vec::as_slice)),
    );
    let manifest = signer.sign_note(&body);
    let files: Vec<(&str, &[u8])> = FILES
        .iter()
        .copied()
        .zip(
            contents
                .iter()
                .map(Vec::as_slice)
                .chain([manifest.as_bytes()]),
        )
        .collect();
    repack(&files)
}

pub(crate) fn show_period(p: &Period) -> String {
    format!("[{}, {})", p.from.rfc3339(), p.to.rfc3339())
}

/// The files of a pack as stored, in zip order, without verifying anything
/// (for tools that show or extract a pack; [`crate::verify()`] is the check).
pub fn unpack(zip: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    Ok(zipfile::read(zip)?
        .into_iter()
        .map(|e| (String::from_utf8_lossy(&e.name).into_owned(), e.data))
        .collect())
}

/// Encodes files with the pack's canonical zip writer, in the given order.
/// [`build`] uses it; tests use it to make packs that differ in exactly one
/// file's contents.
pub fn repack(files: &[(&str, &[u8])]) -> Result<Vec<u8>, PackError> {
    zipfile::write(files).map_err(PackError::Zip)
}
