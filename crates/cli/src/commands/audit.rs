//! `mandate audit ...`: verify and export the log, straight from the store or
//! from an export file (offline), trace one task tree's decision path from
//! the log alone, ask a server for a checkpoint, and fetch RFC 9162 proofs
//! from a server and check them locally.

use std::collections::HashMap;
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
use mandate_core::audit::trace::{
    BreakGlassGrant, DecisionItem, OutcomeItem, TaskEnd, TaskNode, Trace, TraceEvent, TraceItem,
    Tracer,
};
use mandate_core::audit::verify::{LogVerifier, StoredEntry, VerifyReport};
use mandate_core::audit::{Actor, Hash, hash_from_hex};
use mandate_core::ids::{HumanId, TaskId};
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
    /// Print one task tree's decision path, reconstructed from the log alone.
    ///
    /// Who started the tree, each delegation with its scope, and every decision,
    /// approval, break-glass use, revocation and outcome under it, each with the leaf
    /// index of its entry (for `audit proof inclusion`).
    Trace {
        #[command(flatten)]
        store: StoreArgs,
        /// A task id, decision id, outcome id or credential jti (the log tells which).
        target: String,
        /// JSON instead of the tree.
        #[arg(long)]
        json: bool,
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
        AuditCommand::Trace {
            store,
            target,
            json,
        } => {
            let store = open_store(&store).await?;
            let trace = trace_store(store.as_ref(), Tracer::for_text(&target)).await?;
            if json {
                crate::output::json(&trace);
            } else {
                print!("{}", render_trace(&trace));
            }
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

// ---- trace ----------------------------------------------------------------------------

/// Runs `tracer` over the store's log ([`log::trace`]).
pub async fn trace_store(store: &dyn Store, tracer: Tracer) -> Result<Trace, CliError> {
    log::trace(store, tracer).await.map_err(|e| match e {
        log::TraceFailure::Store(e) => e.into(),
        other => CliError::Failed(other.to_string()),
    })
}

/// One line of the drawn tree: a head, notes under it, and whether lines
/// nest below it (so the notes keep the branch drawn).
struct Row {
    depth: usize,
    last: bool,
    nests: bool,
    head: String,
    notes: Vec<String>,
}

/// What hangs under a task, in log order: its items, its subtasks (where
/// they were delegated) and how it ended.
enum Part<'a> {
    Item(&'a TraceItem),
    Subtask(usize),
    End(&'a TaskNode, &'a TaskEnd),
    Open(&'a TaskNode),
}

impl Part<'_> {
    fn leaf(&self, t: &Trace) -> u64 {
        match self {
            Part::Item(i) => i.leaf,
            Part::Subtask(n) => t.tasks[*n].leaf,
            Part::End(_, e) => e.leaf,
            Part::Open(_) => u64::MAX,
        }
    }
}

/// The trace as an indented tree, with leaf indexes as `[#N]`.
pub fn render_trace(t: &Trace) -> String {
    let target_leaf = t.target_leaf;
    let mut out = format!(
        "trace of {} (entry #{target_leaf}), from a log of {} entries\n",
        t.target, t.log_size
    );
    draw(&mut out, &trace_rows(t));
    out.push_str(&format!(
        "{} task(s). [#N] is the entry's leaf index: `mandate audit proof inclusion --index N --size {}` proves it is in the log\n",
        t.tasks.len(),
        t.log_size
    ));
    out
}

/// The rows depth first, walked with an explicit stack so that no log,
/// however deep its tree, can exhaust the call stack.
fn trace_rows(t: &Trace) -> Vec<Row> {
    let Some(root) = t.tasks.first() else {
        return Vec::new();
    };
    let position: HashMap<TaskId, usize> =
        t.tasks.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let mut subtasks = vec![Vec::new(); t.tasks.len()];
    for (i, n) in t.tasks.iter().enumerate().skip(1) {
        if let Some(&p) = n.parent.as_ref().and_then(|p| position.get(p)) {
            subtasks[p].push(i);
        }
    }
    let parts = |i: usize| {
        let n = &t.tasks[i];
        let mut parts: Vec<Part> = n.events.iter().map(Part::Item).collect();
        parts.extend(subtasks[i].iter().map(|&s| Part::Subtask(s)));
        parts.push(n.ended.as_ref().map_or(Part::Open(n), |e| Part::End(n, e)));
        parts.sort_by_key(|p| p.leaf(t));
        parts
    };
    let mut rows = vec![Row {
        depth: 0,
        last: true,
        nests: true,
        head: format!("task {} {:?}  [#{}]", root.id, root.purpose, root.leaf),
        notes: root_notes(t, root),
    }];
    let mut stack = vec![(parts(0), 0usize, 1usize)];
    while let Some((list, next, depth)) = stack.last_mut() {
        let Some(part) = list.get(*next) else {
            stack.pop();
            continue;
        };
        *next += 1;
        let (last, depth) = (*next == list.len(), *depth);
        let (head, notes) = match part {
            Part::Item(i) => item_text(t, i),
            Part::End(n, e) => end_text(t, n, e),
            Part::Open(n) => (
                format!(
                    "open: no ending in the log; expires {}",
                    n.expires_at.rfc3339()
                ),
                Vec::new(),
            ),
            Part::Subtask(s) => subtask_text(&t.tasks[*s]),
        };
        rows.push(Row {
            depth,
            last,
            nests: matches!(part, Part::Subtask(_)),
            head,
            notes,
        });
        if let Part::Subtask(s) = part {
            let below = parts(*s);
            stack.push((below, 0, depth + 1));
        }
    }
    rows
}

/// Draws rows with box-drawing branches; notes hang under their head.
fn draw(out: &mut String, rows: &[Row]) {
    // Whether each depth still has siblings to come (a `│` to carry down).
    let mut open: Vec<bool> = Vec::new();
    for r in rows {
        open.truncate(r.depth);
        let carried: String = open
            .iter()
            .skip(1)
            .map(|&o| if o { "│  " } else { "   " })
            .collect();
        if r.depth == 0 {
            out.push_str(&r.head);
        } else {
            let branch = if r.last { "└─ " } else { "├─ " };
            out.push_str(&format!("{carried}{branch}{}", r.head));
        }
        out.push('\n');
        open.push(!r.last);
        let mut under: String = open
            .iter()
            .skip(1)
            .map(|&o| if o { "│  " } else { "   " })
            .collect();
        under.push_str(if r.nests { "│  " } else { "   " });
        for n in &r.notes {
            out.push_str(&format!("{under}{n}\n"));
        }
    }
}

/// A human by the name the log registered, else by id.
fn human(t: &Trace, id: HumanId) -> String {
    t.humans
        .get(&id)
        .map_or_else(|| format!("human {id}"), |h| h.display_name.clone())
}

fn actor(t: &Trace, a: &Actor) -> String {
    match a {
        Actor::System => "the system".into(),
        Actor::Admin { credential } => format!("admin {credential}"),
        Actor::Human { id } => human(t, *id),
        Actor::Agent { spiffe_id, .. } => spiffe_id.clone(),
    }
}

fn scope_text(n: &TaskNode) -> String {
    let grants: Vec<String> = n.scope.grants().map(|g| g.to_string()).collect();
    let mut limit = n
        .limits
        .max_calls
        .map_or_else(|| "no call limit".to_owned(), |m| format!("max {m} calls"));
    if let Some(b) = n.limits.budget {
        limit.push_str(&format!(", budget {b}"));
    }
    format!(
        "scope {}; {limit}; expires {}",
        grants.join(", "),
        n.expires_at.rfc3339()
    )
}

fn credential_text(n: &TaskNode) -> Option<String> {
    let jti = n.jti.as_ref()?;
    let bound = if n.dpop_bound { " (DPoP-bound)" } else { "" };
    Some(format!("credential {jti}{bound}"))
}

fn root_notes(t: &Trace, root: &TaskNode) -> Vec<String> {
    let initiator = match t.humans.get(&t.initiator) {
        Some(h) => format!("{} [human {}]", h.display_name, t.initiator),
        None => format!("human {}", t.initiator),
    };
    let mut notes = vec![
        format!(
            "initiated by {initiator}, created {}",
            root.created_at.rfc3339()
        ),
        format!("agent {}", root.agent_spiffe),
        scope_text(root),
    ];
    notes.extend(credential_text(root));
    notes
}

fn subtask_text(n: &TaskNode) -> (String, Vec<String>) {
    let from = n.delegator.as_deref().unwrap_or("?");
    let head = format!(
        "subtask {} {:?}: {from} -> {}  [#{}]",
        n.id, n.purpose, n.agent_spiffe, n.leaf
    );
    let mut notes = vec![format!("created {}", n.created_at.rfc3339()), scope_text(n)];
    notes.extend(credential_text(n));
    (head, notes)
}

fn end_text(t: &Trace, n: &TaskNode, e: &TaskEnd) -> (String, Vec<String>) {
    let cascade = match e.cascade_from {
        Some(p) if Some(p) == n.parent => " (cascade from the parent task)".to_owned(),
        Some(p) => format!(" (cascade from ancestor task {p})"),
        None => String::new(),
    };
    let head = format!(
        "{} {} by {}: {}{cascade}  [#{}]",
        e.status.as_str(),
        e.at.rfc3339(),
        actor(t, &e.by),
        e.reason,
        e.leaf
    );
    let notes = if e.credentials_revoked.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "credentials revoked: {}",
            e.credentials_revoked.join(", ")
        )]
    };
    (head, notes)
}

fn item_text(t: &Trace, i: &TraceItem) -> (String, Vec<String>) {
    let leaf = i.leaf;
    match &i.event {
        TraceEvent::Decision(d) => decision_text(t, d, leaf),
        TraceEvent::ApprovalRequested(a) => (
            format!(
                "approval requested for {} on {} by policy {}  [#{leaf}]",
                a.action,
                a.resource,
                a.policies.join(", ")
            ),
            vec![format!(
                "approval {}, expires {}",
                a.approval,
                a.expires_at.rfc3339()
            )],
        ),
        TraceEvent::ApprovalGranted(a) | TraceEvent::ApprovalDenied(a) => {
            let verb = if matches!(i.event, TraceEvent::ApprovalGranted(_)) {
                "granted"
            } else {
                "denied"
            };
            let note = a
                .note
                .as_ref()
                .map(|n| format!(": {n:?}"))
                .unwrap_or_default();
            (
                format!("approval {verb} by {}{note}  [#{leaf}]", human(t, a.by)),
                vec![format!("approval {}, {}", a.approval, i.at.rfc3339())],
            )
        }
        TraceEvent::CredentialRevoked { jti, by } => (
            format!(
                "credential {jti} revoked by {} at {}  [#{leaf}]",
                actor(t, by),
                i.at.rfc3339()
            ),
            Vec::new(),
        ),
        TraceEvent::Outcome(o) => outcome_text(o, leaf),
        TraceEvent::ToolCall(c) => (
            format!(
                "gateway call {} via {}: {}  [#{leaf}]",
                c.target,
                c.upstream,
                mandate_server::otel::call_status(&c.status)
            ),
            vec![format!("decision {}, {} µs", c.decision, c.duration_us)],
        ),
    }
}

fn decision_text(t: &Trace, d: &DecisionItem, leaf: u64) -> (String, Vec<String>) {
    let mut head = format!(
        "decision {} {} on {}",
        d.verdict.as_str(),
        d.action,
        d.resource
    );
    if let Some(a) = d.approval {
        head.push_str(&format!(" (approval {a})"));
    }
    if let Some(b) = d.breakglass {
        head.push_str(&format!(" (break-glass {b})"));
    }
    head.push_str(&format!("  [#{leaf}]"));
    let mut notes: Vec<String> = d
        .reasons
        .iter()
        .map(|r| match &r.policy_id {
            Some(p) => format!("{} [{p}]: {}", r.code, r.message),
            None => format!("{}: {}", r.code, r.message),
        })
        .collect();
    let policy = d
        .policy_hash
        .as_ref()
        .map(|h| format!(", policy {}", h.get(..12).unwrap_or(h)))
        .unwrap_or_default();
    notes.push(format!("decision {}{policy}", d.id));
    if let Some(g) = d
        .breakglass
        .and_then(|b| t.breakglass.iter().find(|g| g.id == b))
    {
        notes.push(grant_text(t, g));
    }
    (head, notes)
}

fn grant_text(t: &Trace, g: &BreakGlassGrant) -> String {
    let review = match &g.review {
        Some(r) => format!(
            "reviewed by {}: {:?}  [#{}]",
            human(t, r.by),
            r.note,
            r.leaf
        ),
        None => "not reviewed".into(),
    };
    format!(
        "break-glass granted by {} at {}: {:?}  [#{}]; {review}",
        actor(t, &g.granted_by),
        g.granted_at.rfc3339(),
        g.reason,
        g.leaf
    )
}

fn outcome_text(o: &OutcomeItem, leaf: u64) -> (String, Vec<String>) {
    let reference = o
        .external_ref
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let head = format!(
        "outcome {} {} {}{reference}  [#{leaf}]",
        o.classification.as_str(),
        o.outcome_type.as_str(),
        o.idempotency_key.as_str()
    );
    let v = &o.valuation;
    let duplicate = o
        .duplicate_of
        .map(|d| format!(", duplicate of {d}"))
        .unwrap_or_default();
    let notes = vec![
        o.explanation.clone(),
        format!(
            "{} value {} {}, cost {} {}; outcome {}{duplicate}",
            o.workflow, v.value, o.currency, v.cost, o.currency, o.id
        ),
    ];
    (head, notes)
}
