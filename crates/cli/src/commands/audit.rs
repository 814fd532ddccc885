//! `mandate audit ...`: verify and export the log, straight from the store or
//! from an export file (offline), ask a server for a checkpoint, and fetch
//! RFC 9162 proofs from a server and check them locally.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use clap::Subcommand;
use ed25519_dalek::VerifyingKey;
use mandate_core::audit::checkpoint::{NoteVerifier, SignedCheckpoint};
use mandate_core::audit::export::ExportLine;
use mandate_core::audit::merkle::{verify_consistency, verify_inclusion};
use mandate_core::audit::to_hex;
use mandate_core::audit::verify::{LogVerifier, StoredEntry, VerifyReport};
use mandate_core::audit::{Hash, hash_from_hex};
use mandate_store::{Store, StoreError, log};

use super::open_store;
use crate::client::Client;
use crate::{CliError, ServerArgs, StoreArgs};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the log and check every checkpoint; exits non-zero on the first problem.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Verify an export file offline instead of the store (needs --vkey).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Pin the checkpoint verifier key (C2SP vkey) instead of trusting the store's.
        #[arg(long)]
        vkey: Option<String>,
        /// A checkpoint note you kept earlier: the log must still contain it (catches rollbacks).
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
    },
    /// Export the log as JSON Lines (one entry or checkpoint per line).
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Only jsonl is supported.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write here instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print the checkpoint verifier key (C2SP vkey) to pin for offline verification.
    Vkey {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Ask the server to sign a checkpoint now and print it.
    Checkpoint {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the latest stored checkpoint instead of signing a new one.
        #[arg(long)]
        latest: bool,
    },
    /// Fetch an RFC 9162 Merkle proof from the server and verify it locally.
    #[command(subcommand)]
    Proof(ProofCommand),
}

#[derive(Subcommand)]
pub enum ProofCommand {
    /// Prove that entry N is in the tree of size S (default: the current size).
    Inclusion {
        #[command(flatten)]
        server: ServerArgs,
        /// Leaf index of the entry (0-based).
        #[arg(long)]
        index: u64,
        /// Tree size the proof is for (default: the current size).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Prove that the tree of size A is a prefix of the tree of size B (default: the current size).
    Consistency {
        #[command(flatten)]
        server: ServerArgs,
        /// Older tree size.
        #[arg(long)]
        from: u64,
        /// Newer tree size (default: the current size).
        #[arg(long)]
        to: Option<u64>,
    },
}

/// `GET /v1/audit/proof/inclusion`.
#[derive(serde::Deserialize, serde::Serialize)]
struct InclusionView {
    index: u64,
    size: u64,
    leaf_hash: String,
    root: String,
    proof: Vec<String>,
}

/// `GET /v1/audit/proof/consistency`.
#[derive(serde::Deserialize, serde::Serialize)]
struct ConsistencyView {
    from: u64,
    to: u64,
    old_root: String,
    new_root: String,
    proof: Vec<String>,
}

pub async fn run(cmd: AuditCommand) -> Result<(), CliError> {
    match cmd {
        AuditCommand::Verify {
            store,
            file,
            vkey,
            trusted_checkpoint,
        } => {
            let trusted = match &trusted_checkpoint {
                Some(p) => Some(read_checkpoint(p)?),
                None => None,
            };
            let report = match file {
                Some(path) => {
                    let vkey = vkey.ok_or_else(|| {
                        CliError::Usage("offline verification needs --vkey (get it from GET /v1/audit/verifier)".into())
                    })?;
                    verify_file(&path, &vkey, trusted.as_ref())?
                }
                None => {
                    let store = open_store(&store).await?;
                    verify_store(store.as_ref(), vkey.as_deref(), trusted.as_ref()).await?
                }
            };
            print_report(&report);
        }
        AuditCommand::Export {
            store,
            format,
            output,
        } => {
            if format != "jsonl" {
                return Err(CliError::Usage(format!(
                    "unknown --format {format:?}; only jsonl is supported"
                )));
            }
            let store = open_store(&store).await?;
            let n = match output {
                Some(p) => {
                    let f = std::fs::File::create(&p).map_err(|e| {
                        CliError::Usage(format!("cannot create {}: {e}", p.display()))
                    })?;
                    export(store.as_ref(), BufWriter::new(f)).await?
                }
                None => export(store.as_ref(), BufWriter::new(std::io::stdout().lock())).await?,
            };
            eprintln!("exported {n} entries");
        }
        AuditCommand::Vkey { store } => {
            let store = open_store(&store).await?;
            for v in store_verifiers(store.as_ref()).await? {
                println!("{}", v.to_vkey());
            }
        }
        AuditCommand::Checkpoint { server, latest } => {
            let c = Client::new(&server.server, server.token.clone());
            let cp: serde_json::Value = if latest {
                c.get("/v1/audit/checkpoint").await?
            } else {
                c.post_empty("/v1/audit/checkpoint").await?
            };
            if server.json {
                crate::output::json(&cp);
            } else {
                print!("{}", cp["note"].as_str().unwrap_or_default());
            }
        }
        AuditCommand::Proof(p) => run_proof(p).await?,
    }
    Ok(())
}

async fn run_proof(cmd: ProofCommand) -> Result<(), CliError> {
    match cmd {
        ProofCommand::Inclusion {
            server,
            index,
            size,
        } => {
            let c = Client::new(&server.server, server.token.clone());
            let path = match size {
                Some(s) => format!("/v1/audit/proof/inclusion?index={index}&size={s}"),
                None => format!("/v1/audit/proof/inclusion?index={index}"),
            };
            let v: InclusionView = c.get(&path).await?;
            if v.index != index || size.is_some_and(|s| s != v.size) {
                return Err(CliError::Failed(format!(
                    "inclusion proof verification FAILED: asked for entry {index}{}, the server answered for entry {} in a tree of size {}",
                    size.map(|s| format!(" in a tree of size {s}"))
                        .unwrap_or_default(),
                    v.index,
                    v.size
                )));
            }
            let leaf = proof_hash("leaf_hash", &v.leaf_hash)?;
            let root = proof_hash("root", &v.root)?;
            let hashes = proof_hashes(&v.proof)?;
            verify_inclusion(&leaf, v.index, v.size, &hashes, &root).map_err(|e| {
                CliError::Failed(format!("inclusion proof verification FAILED: {e}"))
            })?;
            if server.json {
                crate::output::json(&v);
            } else {
                println!("index:     {}", v.index);
                println!("size:      {}", v.size);
                println!("leaf hash: {}", v.leaf_hash);
                println!("root:      {}", v.root);
                print_proof(&v.proof);
                println!(
                    "inclusion proof verified: entry {} is in the tree of size {}",
                    v.index, v.size
                );
            }
        }
        ProofCommand::Consistency { server, from, to } => {
            let c = Client::new(&server.server, server.token.clone());
            let path = match to {
                Some(t) => format!("/v1/audit/proof/consistency?from={from}&to={t}"),
                None => format!("/v1/audit/proof/consistency?from={from}"),
            };
            let v: ConsistencyView = c.get(&path).await?;
            if v.from != from || to.is_some_and(|t| t != v.to) {
                return Err(CliError::Failed(format!(
                    "consistency proof verification FAILED: asked for sizes {from} to {}, the server answered for {} to {}",
                    to.map(|t| t.to_string())
                        .unwrap_or_else(|| "current".into()),
                    v.from,
                    v.to
                )));
            }
            let old_root = proof_hash("old_root", &v.old_root)?;
            let new_root = proof_hash("new_root", &v.new_root)?;
            let hashes = proof_hashes(&v.proof)?;
            verify_consistency(v.from, v.to, &old_root, &new_root, &hashes).map_err(|e| {
                CliError::Failed(format!("consistency proof verification FAILED: {e}"))
            })?;
            if server.json {
                crate::output::json(&v);
            } else {
                println!("from:      {}", v.from);
                println!("to:        {}", v.to);
                println!("old root:  {}", v.old_root);
                println!("new root:  {}", v.new_root);
                print_proof(&v.proof);
                println!(
                    "consistency proof verified: the tree of size {} is a prefix of the tree of size {}",
                    v.from, v.to
                );
            }
        }
    }
    Ok(())
}

fn proof_hash(field: &str, hex: &str) -> Result<Hash, CliError> {
    hash_from_hex(hex).ok_or_else(|| {
        CliError::Failed(format!(
            "the server returned a malformed {field} (expected 64 hex digits): {hex:?}"
        ))
    })
}

fn proof_hashes(proof: &[String]) -> Result<Vec<Hash>, CliError> {
    proof.iter().map(|h| proof_hash("proof hash", h)).collect()
}

fn print_proof(proof: &[String]) {
    if proof.is_empty() {
        println!("proof:     (empty)");
    }
    for (i, h) in proof.iter().enumerate() {
        println!("{:<10} {h}", if i == 0 { "proof:" } else { "" });
    }
}

pub fn print_report(r: &VerifyReport) {
    println!(
        "audit log OK: {} entries, {} checkpoints verified, signed up to entry {}, root {}",
        r.entries,
        r.checkpoints,
        r.checkpointed_size,
        to_hex(&r.root)
    );
}

fn read_checkpoint(p: &PathBuf) -> Result<SignedCheckpoint, CliError> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", p.display())))?;
    SignedCheckpoint::parse(&text)
        .map_err(|e| CliError::Usage(format!("{} is not a signed checkpoint: {e}", p.display())))
}

fn parse_vkey(v: &str) -> Result<NoteVerifier, CliError> {
    NoteVerifier::parse_vkey(v).map_err(|e| CliError::Usage(format!("--vkey: {e}")))
}

/// Verifies the store's log; the verifier key comes from `vkey` if pinned,
/// else from the store's own signing keys.
pub async fn verify_store(
    store: &dyn Store,
    vkey: Option<&str>,
    trusted: Option<&SignedCheckpoint>,
) -> Result<VerifyReport, CliError> {
    let install = store
        .installation()
        .await?
        .ok_or(StoreError::NotInitialized)?;
    let verifiers = match vkey {
        Some(v) => vec![parse_vkey(v)?],
        None => store_verifiers(store).await?,
    };
    log::verify(store, &install.log_origin, &verifiers, trusted)
        .await?
        .map_err(|e| CliError::Failed(format!("audit log verification FAILED: {e}")))
}

/// The checkpoint verifiers for the store's own signing keys.
async fn store_verifiers(store: &dyn Store) -> Result<Vec<NoteVerifier>, CliError> {
    let install = store
        .installation()
        .await?
        .ok_or(StoreError::NotInitialized)?;
    Ok(store
        .signing_keys()
        .await?
        .iter()
        .filter_map(|k| {
            let raw: [u8; 32] = B64URL.decode(&k.public_key).ok()?.try_into().ok()?;
            NoteVerifier::new(
                install.log_origin.clone(),
                VerifyingKey::from_bytes(&raw).ok()?,
            )
            .ok()
        })
        .collect())
}

fn verify_file(
    path: &PathBuf,
    vkey: &str,
    trusted: Option<&SignedCheckpoint>,
) -> Result<VerifyReport, CliError> {
    let verifier = parse_vkey(vkey)?;
    let open = || {
        std::fs::File::open(path)
            .map(BufReader::new)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
    };
    let bad_line =
        |n: usize, e: String| CliError::Failed(format!("{} line {}: {e}", path.display(), n + 1));
    // Two passes: checkpoints first, then entries streamed (an export can be large).
    let mut checkpoints = Vec::new();
    for (n, line) in open()?.lines().enumerate() {
        let line = line.map_err(|e| bad_line(n, e.to_string()))?;
        if let ExportLine::Checkpoint { note } =
            serde_json::from_str(&line).map_err(|e| bad_line(n, e.to_string()))?
        {
            checkpoints
                .push(SignedCheckpoint::parse(&note).map_err(|e| bad_line(n, e.to_string()))?);
        }
    }
    let origin = verifier.name().to_owned();
    let mut v = LogVerifier::new(&origin, &[verifier], &checkpoints, trusted)
        .map_err(|e| CliError::Failed(format!("audit log verification FAILED: {e}")))?;
    for (n, line) in open()?.lines().enumerate() {
        let line = line.map_err(|e| bad_line(n, e.to_string()))?;
        if let Ok(ExportLine::Entry {
            index,
            leaf_hash,
            entry,
        }) = serde_json::from_str(&line)
        {
            let leaf_hash = hash_from_hex(&leaf_hash).unwrap_or([0; 32]);
            v.push(StoredEntry {
                index,
                leaf_hash,
                entry,
            })
            .map_err(|e| CliError::Failed(format!("audit log verification FAILED: {e}")))?;
        }
    }
    v.finish()
        .map_err(|e| CliError::Failed(format!("audit log verification FAILED: {e}")))
}

async fn export(store: &dyn Store, mut out: impl Write) -> Result<u64, CliError> {
    let io = |e: std::io::Error| CliError::Failed(format!("writing the export failed: {e}"));
    for cp in store.checkpoints().await? {
        serde_json::to_writer(&mut out, &ExportLine::Checkpoint { note: cp.note })
            .map_err(|e| io(e.into()))?;
        out.write_all(b"\n").map_err(io)?;
    }
    let mut from = 0;
    loop {
        let rows = store.audit_entries(from, 10_000).await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            from = r.index + 1;
            let line = ExportLine::Entry {
                index: r.index,
                leaf_hash: to_hex(&r.leaf_hash),
                entry: r.entry,
            };
            serde_json::to_writer(&mut out, &line).map_err(|e| io(e.into()))?;
            out.write_all(b"\n").map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    Ok(from)
}
