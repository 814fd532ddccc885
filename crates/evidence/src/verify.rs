//! The offline verifier.
//!
//! Every check always appears in the result, in the order of [`CHECKS`], so
//! an auditor's report has the same shape for every pack; a check that could
//! not run because an earlier one failed is a failed check saying so. No
//! input makes the verifier panic, and only a pack whose every check passed
//! counts as verified.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use mandate_core::audit::checkpoint::{NoteVerifier, SignedCheckpoint, verify_note};
use mandate_core::audit::merkle::{ProofError, leaf_hash, verify_inclusion};
use mandate_core::audit::{EventKind, Hash, LogEntry, hash_from_hex, to_hex};
use mandate_core::ids::OutcomeId;
use mandate_core::outcome::{
    Classification, OutcomeRecord, Period, PeriodFigures, TallyRow, WorkflowName,
};

use crate::ControlBoundary;
use crate::figures::first_difference;
use crate::pack::{
    BOUNDARY, CHECKPOINT, FILES, KEYS, KeysFile, MANIFEST, MANIFEST_HEADER, REPORT, ReportFile,
    TRANSACTIONS, TransactionLine, sha256_hex, show_period,
};
use crate::zipfile;

/// The checks, in the order they are reported.
pub const CHECKS: [&str; 10] = [
    "files",
    "byte-exact",
    "log key",
    "manifest",
    "checkpoint",
    "report",
    "control boundary",
    "transactions",
    "totals",
    "duplicates",
];

/// One verification step and its outcome in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What the pack claims to cover, for the verifier's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackSummary {
    pub workflow: WorkflowName,
    pub period: Period,
    /// Lines in transactions.jsonl.
    pub transactions: usize,
    /// Counted outcomes, as report.json states them (equal to the
    /// recomputed count only if the "totals" check passed).
    pub counted: u64,
    /// Outcomes not counted, by kind, as report.json states them.
    pub excluded: BTreeMap<Classification, u64>,
    /// The key the signatures were checked against (vkey), if any was known.
    pub log_key: Option<String>,
    /// Whether the auditor pinned that key. When false the key came from the
    /// pack itself, which anyone can write: compare it with the published one.
    pub pinned: bool,
}

/// The verifier's verdict: every check, and the pack's summary when its
/// report could be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub checks: Vec<Check>,
    pub summary: Option<PackSummary>,
}

impl Verification {
    /// True only if every check passed.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// The check of that name (one of [`CHECKS`]).
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// How many problems one check lists before summarising the rest.
const SHOWN_PROBLEMS: usize = 5;

/// Collects the checks in order.
#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: &'static str, result: Result<String, String>) {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.checks.push(Check { name, ok, detail });
    }

    /// Fails every check not yet reported, saying why it could not run.
    fn skip_rest(&mut self, why: &str) {
        for name in CHECKS.into_iter().skip(self.checks.len()) {
            self.push(name, Err(format!("not checked: {why}")));
        }
    }
}

/// Joins problems into one detail, listing at most [`SHOWN_PROBLEMS`].
fn problems(list: &[String]) -> String {
    let mut s = list
        .iter()
        .take(SHOWN_PROBLEMS)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if list.len() > SHOWN_PROBLEMS {
        s.push_str(&format!(
            "; and {} more problem(s)",
            list.len() - SHOWN_PROBLEMS
        ));
    }
    s
}

/// The pack's files by name, once check 1 passed.
struct Files {
    data: Vec<Vec<u8>>,
}

impl Files {
    fn get(&self, name: &str) -> &[u8] {
        FILES
            .iter()
            .position(|f| *f == name)
            .and_then(|i| self.data.get(i))
            .map_or(&[], Vec::as_slice)
    }

    fn text(&self, name: &str) -> Result<&str, String> {
        std::str::from_utf8(self.get(name)).map_err(|e| format!("{name} is not UTF-8: {e}"))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, String> {
        serde_json::from_str(self.text(name)?).map_err(|e| format!("{name}: {e}"))
    }
}

/// Verifies a pack offline. `pinned` is the log verifier key the auditor
/// trusts; without it the key inside the pack is used, and the "log key"
/// check says that it was not pinned.
pub fn verify(zip: &[u8], pinned: Option<&NoteVerifier>) -> Verification {
    let mut r = Report::default();

    // 1. Exactly the expected files, in order.
    let files = match check_files(zip) {
        Ok(f) => {
            r.push(
                "files",
                Ok(format!("the {} pack files, in order", FILES.len())),
            );
            f
        }
        Err(e) => {
            r.push("files", Err(e));
            r.skip_rest("the pack's files could not be read (see \"files\")");
            return Verification {
                checks: r.checks,
                summary: None,
            };
        }
    };

    // 2. The canonical encoding of those files, byte for byte.
    r.push("byte-exact", check_bytes(zip, &files));

    // 3. The key everything is checked against.
    let pack_key = files.json::<KeysFile>(KEYS).and_then(|k| {
        NoteVerifier::parse_vkey(&k.log).map_err(|e| format!("{KEYS}: log key {:?}: {e}", k.log))
    });
    let key: Option<NoteVerifier> = pinned.cloned().or_else(|| pack_key.clone().ok());
    r.push("log key", check_key(&pack_key, pinned));

    // 4-5. Signatures.
    r.push("manifest", check_manifest(&files, key.as_ref()));
    let checkpoint = SignedCheckpoint::parse(files.text(CHECKPOINT).unwrap_or(""));
    r.push(
        "checkpoint",
        check_checkpoint(&files, &checkpoint, key.as_ref()),
    );

    // 6. The report the figures belong to.
    let report = files.json::<ReportFile>(REPORT);
    r.push("report", check_report(&report));

    // 7. Who and what was in force.
    let boundary = files.json::<ControlBoundary>(BOUNDARY);
    r.push("control boundary", check_boundary(&boundary));

    // 8. Each transaction on its own.
    let txs = read_transactions(&files);
    r.push(
        "transactions",
        check_transactions(&txs, &report, &boundary, &checkpoint),
    );

    // 9-10. Across transactions.
    r.push("totals", check_totals(&txs, &report));
    r.push("duplicates", check_duplicates(&txs));

    let summary = report.ok().map(|rep| PackSummary {
        workflow: rep.workflow.def.name.clone(),
        period: rep.period,
        transactions: txs.as_ref().map_or(0, Vec::len),
        counted: rep.figures.totals.counted,
        excluded: rep.figures.totals.exceptions.clone(),
        log_key: key.as_ref().map(NoteVerifier::to_vkey),
        pinned: pinned.is_some(),
    });
    Verification {
        checks: r.checks,
        summary,
    }
}

fn check_files(zip: &[u8]) -> Result<Files, String> {
    let entries = zipfile::read(zip)?;
    let names: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    let mut problems_found = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if !FILES.contains(&n.as_str()) {
            problems_found.push(format!("unexpected file {n:?}"));
        } else if names[..i].contains(n) {
            problems_found.push(format!("{n} appears more than once"));
        }
    }
    for f in FILES {
        if !names.iter().any(|n| n == f) {
            problems_found.push(format!("{f} is missing"));
        }
    }
    if problems_found.is_empty() && names.iter().map(String::as_str).ne(FILES) {
        problems_found.push(format!(
            "the files are in the order {}, not {}",
            names.join(", "),
            FILES.join(", ")
        ));
    }
    if !problems_found.is_empty() {
        return Err(problems(&problems_found));
    }
    Ok(Files {
        data: entries.into_iter().map(|e| e.data).collect(),
    })
}

fn check_bytes(zip: &[u8], files: &Files) -> Result<String, String> {
    let list: Vec<(&str, &[u8])> = FILES.iter().map(|n| (*n, files.get(n))).collect();
    let canonical =
        zipfile::write(&list).map_err(|e| format!("cannot re-encode the files: {e}"))?;
    if canonical == zip {
        return Ok(format!(
            "the zip is exactly the canonical encoding of its files ({} bytes)",
            zip.len()
        ));
    }
    let at = canonical
        .iter()
        .zip(zip)
        .position(|(a, b)| a != b)
        .unwrap_or(canonical.len().min(zip.len()));
    Err(format!(
        "the zip is not the canonical encoding of its files: it differs at byte {at} \
         ({} bytes, canonical {}); headers, directory or framing were altered",
        zip.len(),
        canonical.len()
    ))
}

fn check_key(
    pack_key: &Result<NoteVerifier, String>,
    pinned: Option<&NoteVerifier>,
) -> Result<String, String> {
    let pack_key = pack_key.as_ref().map_err(Clone::clone)?;
    match pinned {
        Some(p) if p == pack_key => Ok(format!(
            "the pack is signed by the pinned key {}",
            p.to_vkey()
        )),
        Some(p) => Err(format!(
            "the pack is signed by key {}, not the pinned key {}",
            pack_key.to_vkey(),
            p.to_vkey()
        )),
        None => Ok(format!(
            "NOT PINNED: signatures were checked against the key inside the pack, {}; \
             anyone can sign a pack with a key of their own, so compare it with the \
             log key the operator publishes, or verify with --key",
            pack_key.to_vkey()
        )),
    }
}

fn check_manifest(files: &Files, key: Option<&NoteVerifier>) -> Result<String, String> {
    let key = key.ok_or("not checked: no log key (see \"log key\")")?;
    let note = files.text(MANIFEST)?;
    let (body, _) = verify_note(note, std::slice::from_ref(key)).map_err(|e| {
        format!(
            "{MANIFEST}: the signature does not verify with {}: {e}",
            key.name()
        )
    })?;
    // Exactly one signature line: a cosignature added later would change the
    // pack's bytes without invalidating anything, and a pack has one form.
    if note[body.len()..].matches('\n').count() != 2 {
        return Err(format!(
            "{MANIFEST}: carries more than the log key's signature"
        ));
    }
    let lines: Vec<&str> = body.trim_end_matches('\n').split('\n').collect();
    let expected = FILES.len(); // the header plus every other file
    if lines.first() != Some(&MANIFEST_HEADER) {
        return Err(format!(
            "{MANIFEST}: the first line is not {MANIFEST_HEADER:?}"
        ));
    }
    if lines.len() != expected {
        return Err(format!(
            "{MANIFEST}: lists {} files, a v1 pack has {}",
            lines.len() - 1,
            expected - 1
        ));
    }
    let mut found = Vec::new();
    for (i, (line, name)) in lines[1..].iter().zip(FILES).enumerate() {
        let n = i + 2;
        let Some((hash, listed)) = line.split_once("  ") else {
            found.push(format!("{MANIFEST} line {n}: not \"<sha256>  <file>\""));
            continue;
        };
        if listed != name {
            found.push(format!(
                "{MANIFEST} line {n}: lists {listed:?} where {name} belongs"
            ));
            continue;
        }
        let actual = sha256_hex(files.get(name));
        if hash != actual {
            found.push(format!(
                "{name} has SHA-256 {actual}, but the signed manifest says {hash}"
            ));
        }
    }
    if !found.is_empty() {
        return Err(problems(&found));
    }
    Ok(format!(
        "signed by {}; the SHA-256 of all {} files match",
        key.name(),
        expected - 1
    ))
}

fn check_checkpoint(
    files: &Files,
    checkpoint: &Result<SignedCheckpoint, mandate_core::audit::checkpoint::CheckpointError>,
    key: Option<&NoteVerifier>,
) -> Result<String, String> {
    files.text(CHECKPOINT)?;
    let cp = checkpoint
        .as_ref()
        .map_err(|e| format!("{CHECKPOINT} is not a checkpoint note: {e}"))?;
    let key = key.ok_or("not checked: no log key (see \"log key\")")?;
    cp.verify(std::slice::from_ref(key)).map_err(|e| {
        format!(
            "{CHECKPOINT}: the signature does not verify with {}: {e}",
            key.name()
        )
    })?;
    Ok(format!(
        "signed by {}: log {:?}, {} entries, root {}",
        key.name(),
        cp.checkpoint.origin,
        cp.checkpoint.size,
        to_hex(&cp.checkpoint.root)
    ))
}

fn check_report(report: &Result<ReportFile, String>) -> Result<String, String> {
    let rep = report.as_ref().map_err(Clone::clone)?;
    if rep.period.from >= rep.period.to {
        return Err(format!(
            "{REPORT}: the period {} is empty",
            show_period(&rep.period)
        ));
    }
    Ok(format!(
        "workflow {} ({}), period {}, generated {}",
        rep.workflow.def.name,
        rep.workflow.def.currency,
        show_period(&rep.period),
        rep.generated_at.rfc3339()
    ))
}

/// `canonical_text` in the policy crate: hashes are over LF line endings.
fn policy_hash(text: &str) -> String {
    sha256_hex(text.replace("\r\n", "\n").as_bytes())
}

fn check_boundary(boundary: &Result<ControlBoundary, String>) -> Result<String, String> {
    let b = boundary.as_ref().map_err(Clone::clone)?;
    let mut found = Vec::new();
    for (i, p) in b.policies.iter().enumerate() {
        let actual = policy_hash(&p.text);
        if p.hash != actual {
            found.push(format!(
                "policy version {}: its text hashes to {actual}, not {}",
                p.version, p.hash
            ));
        }
        if p.active_until.is_some_and(|u| u < p.active_from) {
            found.push(format!(
                "policy version {}: active until before it became active",
                p.version
            ));
        }
        if b.policies[..i].iter().any(|q| q.version == p.version) {
            found.push(format!("policy version {} is listed twice", p.version));
        }
    }
    for (i, a) in b.agents.iter().enumerate() {
        if b.agents[..i].iter().any(|x| x.id == a.id) {
            found.push(format!("agent {} is listed twice", a.id));
        }
        if !b.humans.iter().any(|h| h.id == a.owner) {
            found.push(format!(
                "agent {} ({})'s owner {} is not among the humans",
                a.id, a.name, a.owner
            ));
        }
    }
    for (i, h) in b.humans.iter().enumerate() {
        if b.humans[..i].iter().any(|x| x.id == h.id) {
            found.push(format!("human {} is listed twice", h.id));
        }
    }
    if !found.is_empty() {
        return Err(format!("{BOUNDARY}: {}", problems(&found)));
    }
    Ok(format!(
        "{} policy version(s) whose texts match their hashes, {} agent(s), {} human(s); \
         every agent's owner is listed",
        b.policies.len(),
        b.agents.len(),
        b.humans.len()
    ))
}

/// One line of transactions.jsonl, as far as it could be read.
struct Tx {
    line: usize,
    leaf_index: u64,
    entry: String,
    proof: Result<Vec<Hash>, String>,
    /// The parsed entry and its outcome record, or why not.
    parsed: Result<(LogEntry, OutcomeRecord), String>,
}

fn read_transactions(files: &Files) -> Result<Vec<Tx>, String> {
    let text = files.text(TRANSACTIONS)?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| format!("{TRANSACTIONS} does not end with a newline"))?;
    let mut out = Vec::new();
    for (i, raw) in body.split('\n').enumerate() {
        let line = i + 1;
        let t: TransactionLine = serde_json::from_str(raw)
            .map_err(|e| format!("{TRANSACTIONS} line {line}: not a transaction line: {e}"))?;
        let proof = t
            .proof
            .iter()
            .enumerate()
            .map(|(k, h)| {
                hash_from_hex(h).ok_or_else(|| format!("proof hash {} is not 64 hex digits", k + 1))
            })
            .collect();
        let parsed = serde_json::from_str::<LogEntry>(&t.entry)
            .map_err(|e| format!("the entry is not an audit-log entry: {e}"))
            .and_then(|entry| {
                if entry.event.kind != EventKind::OutcomeReported {
                    return Err(format!(
                        "the entry is a {} event, not {}",
                        entry.event.kind.as_str(),
                        EventKind::OutcomeReported.as_str()
                    ));
                }
                let record = serde_json::from_value::<OutcomeRecord>(entry.event.details.clone())
                    .map_err(|e| {
                    format!("the event's details are not an outcome record: {e}")
                })?;
                Ok((entry, record))
            });
        out.push(Tx {
            line,
            leaf_index: t.leaf_index,
            entry: t.entry,
            proof,
            parsed,
        });
    }
    Ok(out)
}

fn check_transactions(
    txs: &Result<Vec<Tx>, String>,
    report: &Result<ReportFile, String>,
    boundary: &Result<ControlBoundary, String>,
    checkpoint: &Result<SignedCheckpoint, mandate_core::audit::checkpoint::CheckpointError>,
) -> Result<String, String> {
    let txs = txs.as_ref().map_err(Clone::clone)?;
    let mut found = Vec::new();
    let report = report.as_ref().ok();
    let boundary = boundary.as_ref().ok();
    let cp = checkpoint.as_ref().ok().map(|c| &c.checkpoint);
    if report.is_none() {
        found.push(format!(
            "workflow and period not checked: {REPORT} could not be read"
        ));
    }
    if boundary.is_none() {
        found.push(format!(
            "attribution not checked: {BOUNDARY} could not be read"
        ));
    }
    if cp.is_none() {
        found.push(format!(
            "inclusion proofs not checked: {CHECKPOINT} could not be read"
        ));
    }
    let mut leaf_lines: HashMap<u64, usize> = HashMap::new();
    let mut outcome_lines: HashMap<OutcomeId, usize> = HashMap::new();
    let mut prev: Option<&Tx> = None;
    for t in txs {
        let at = |what: String| format!("{TRANSACTIONS} line {}: {what}", t.line);
        if let Some(&first) = leaf_lines.get(&t.leaf_index) {
            found.push(at(format!(
                "leaf index {} is already on line {first}",
                t.leaf_index
            )));
        } else if let Some(p) = prev
            && p.leaf_index > t.leaf_index
        {
            found.push(at(format!(
                "leaf index {} comes after {}: transactions must be in log order",
                t.leaf_index, p.leaf_index
            )));
        }
        leaf_lines.entry(t.leaf_index).or_insert(t.line);

        let leaf = leaf_hash(t.entry.as_bytes());
        match (&t.proof, cp) {
            (Err(e), _) => found.push(at(e.clone())),
            (Ok(proof), Some(cp)) => {
                if let Err(e) = verify_inclusion(&leaf, t.leaf_index, cp.size, proof, &cp.root) {
                    found.push(at(match e {
                        ProofError::RootMismatch => {
                            "inclusion proof does not match the checkpoint root".to_owned()
                        }
                        ProofError::IndexOutOfRange { index, size } => format!(
                            "leaf index {index} is outside the checkpoint's tree of {size} entries"
                        ),
                        ProofError::WrongProofLength { expected, actual } => format!(
                            "the inclusion proof has {actual} hashes; leaf {} of a tree of {} needs {expected}",
                            t.leaf_index, cp.size
                        ),
                        other => format!("inclusion proof: {other}"),
                    }));
                }
            }
            (Ok(_), None) => {}
        }

        let (entry, record) = match &t.parsed {
            Ok(p) => p,
            Err(e) => {
                found.push(at(e.clone()));
                prev = Some(t);
                continue;
            }
        };
        if entry.index != t.leaf_index {
            found.push(at(format!(
                "the entry says index {} but leaf_index is {}",
                entry.index, t.leaf_index
            )));
        }
        // Adjacent entries are chained: each names its predecessor's leaf hash.
        if let Some(p) = prev
            && p.leaf_index.checked_add(1) == Some(t.leaf_index)
            && entry.prev != to_hex(&leaf_hash(p.entry.as_bytes()))
        {
            found.push(at(format!(
                "prev does not match the leaf hash of the entry on line {}",
                p.line
            )));
        }
        if let Some(&first) = outcome_lines.get(&record.id) {
            found.push(at(format!(
                "outcome {} is already on line {first}",
                record.id
            )));
        }
        outcome_lines.entry(record.id).or_insert(t.line);
        // The event's own identity fields, where set, must agree with the record.
        if entry.event.agent.is_some_and(|a| a != record.agent)
            || entry.event.task.is_some_and(|x| x != record.task)
        {
            found.push(at(format!(
                "the event's agent or task differs from outcome {}'s",
                record.id
            )));
        }
        if let Some(rep) = report {
            let wf = &rep.workflow.def;
            if record.workflow != wf.name {
                found.push(at(format!(
                    "outcome {} belongs to workflow {}, not {}",
                    record.id, record.workflow, wf.name
                )));
            } else if record.currency != wf.currency {
                found.push(at(format!(
                    "outcome {} is in {}, the workflow accounts in {}",
                    record.id, record.currency, wf.currency
                )));
            }
            if !rep.period.contains(record.reported_at) {
                found.push(at(format!(
                    "outcome {} was reported at {}, outside the period {}",
                    record.id,
                    record.reported_at.rfc3339(),
                    show_period(&rep.period)
                )));
            }
        }
        if let Some(b) = boundary {
            if !b.agents.iter().any(|a| a.id == record.agent) {
                found.push(at(format!(
                    "agent {} of outcome {} is not in the control boundary",
                    record.agent, record.id
                )));
            }
            for (role, who) in [("owner", record.owner), ("initiator", record.initiator)] {
                if !b.humans.iter().any(|h| h.id == who) {
                    found.push(at(format!(
                        "{role} {who} of outcome {} is not in the control boundary",
                        record.id
                    )));
                }
            }
        }
        prev = Some(t);
    }
    if !found.is_empty() {
        return Err(problems(&found));
    }
    Ok(format!(
        "{} outcome.reported entries, each proven into the checkpoint, of this workflow, \
         in the period, listed once and attributed within the control boundary",
        txs.len()
    ))
}

fn records(txs: &Result<Vec<Tx>, String>) -> Result<Vec<(&Tx, &OutcomeRecord)>, String> {
    let txs = txs.as_ref().map_err(|e| format!("cannot recompute: {e}"))?;
    txs.iter()
        .map(|t| match &t.parsed {
            Ok((_, r)) => Ok((t, r)),
            Err(_) => Err(format!(
                "cannot recompute: {TRANSACTIONS} line {} holds no outcome record",
                t.line
            )),
        })
        .collect()
}

fn check_totals(
    txs: &Result<Vec<Tx>, String>,
    report: &Result<ReportFile, String>,
) -> Result<String, String> {
    let rep = report
        .as_ref()
        .map_err(|e| format!("cannot recompute: {e}"))?;
    let recs = records(txs)?;
    let rows: Vec<TallyRow> = recs.iter().map(|(_, r)| r.tally_row()).collect();
    let got = PeriodFigures::from_rows(rep.period, &rows, &rep.workflow.def);
    if let Some(diff) = first_difference(&rep.figures, &got) {
        return Err(format!("{REPORT}: {diff}"));
    }
    let t = &got.totals;
    let cur = rep.workflow.def.currency;
    Ok(format!(
        "the report's figures recompute exactly from the {} listed transactions: \
         {} counted, value {} {cur}, cost {} {cur}, ROAI {}",
        recs.len(),
        t.counted,
        t.value,
        t.cost,
        t.roai
            .map_or_else(|| "n/a (no cost)".to_owned(), |x| format!("{x:.4}"))
    ))
}

/// Duplicates add nothing, but each must be the retry of a first report and
/// each key must have one first report, or one transaction could be counted
/// twice.
///
/// A duplicate whose first report is not in the pack passes with a note:
/// a retry in this period of a transaction first reported in an earlier
/// period is normal, and neither value nor cost of a duplicate enters the
/// totals, so nothing in the figures depends on the first report. What does
/// fail is a record that contradicts the pack (a first report in the pack
/// with the same key but another id, a named first report that is later,
/// itself a duplicate or of another key) and two first reports of one key.
fn check_duplicates(txs: &Result<Vec<Tx>, String>) -> Result<String, String> {
    let recs = records(txs).map_err(|e| e.replace("cannot recompute", "not checked"))?;
    let by_id: HashMap<OutcomeId, (&Tx, &OutcomeRecord)> =
        recs.iter().map(|(t, r)| (r.id, (*t, *r))).collect();
    let mut firsts: HashMap<&str, (&Tx, &OutcomeRecord)> = HashMap::new();
    let mut found = Vec::new();
    for (t, r) in &recs {
        if r.classification == Classification::Duplicate {
            continue;
        }
        let at = |what: String| format!("{TRANSACTIONS} line {}: {what}", t.line);
        if r.duplicate_of.is_some() {
            found.push(at(format!(
                "outcome {} is classified {} but names a first report",
                r.id,
                r.classification.as_str()
            )));
        }
        if let Some((ft, fr)) = firsts.get(r.idempotency_key.as_str()) {
            found.push(at(format!(
                "outcome {} is a second first report of idempotency key {:?} (outcome {} on line {})",
                r.id,
                r.idempotency_key.as_str(),
                fr.id,
                ft.line
            )));
        } else {
            firsts.insert(r.idempotency_key.as_str(), (*t, *r));
        }
    }
    let (mut inside, mut outside) = (0usize, Vec::new());
    for (t, r) in &recs {
        if r.classification != Classification::Duplicate {
            continue;
        }
        let at = |what: String| format!("{TRANSACTIONS} line {}: {what}", t.line);
        let Some(first) = r.duplicate_of else {
            found.push(at(format!("duplicate {} names no first report", r.id)));
            continue;
        };
        match by_id.get(&first) {
            Some((ft, fr)) => {
                if ft.leaf_index >= t.leaf_index {
                    found.push(at(format!(
                        "duplicate {} names outcome {first}, which was logged after it (line {})",
                        r.id, ft.line
                    )));
                } else if fr.idempotency_key != r.idempotency_key {
                    found.push(at(format!(
                        "duplicate {} names outcome {first}, which has another idempotency key",
                        r.id
                    )));
                } else if fr.classification == Classification::Duplicate {
                    found.push(at(format!(
                        "duplicate {} names outcome {first}, itself a duplicate, not the first report",
                        r.id
                    )));
                } else {
                    inside += 1;
                }
            }
            None => match firsts.get(r.idempotency_key.as_str()) {
                Some((ft, fr)) => found.push(at(format!(
                    "duplicate {} names outcome {first}, but the first report of its key in the pack is outcome {} (line {})",
                    r.id, fr.id, ft.line
                ))),
                None => outside.push(first),
            },
        }
    }
    if !found.is_empty() {
        return Err(problems(&found));
    }
    let mut detail = format!("{inside} duplicate(s) name their first report in the pack");
    if !outside.is_empty() {
        let shown: Vec<String> = outside
            .iter()
            .take(SHOWN_PROBLEMS)
            .map(ToString::to_string)
            .collect();
        detail.push_str(&format!(
            "; note: {} duplicate(s) retry a transaction first reported outside the period \
             ({}{}), which the pack does not list; duplicates add neither value nor cost",
            outside.len(),
            shown.join(", "),
            if outside.len() > SHOWN_PROBLEMS {
                ", ..."
            } else {
                ""
            }
        ));
    }
    Ok(detail)
}
