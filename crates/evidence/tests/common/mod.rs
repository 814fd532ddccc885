//! A fabricated but realistic audit log and the pack inputs drawn from it:
//! a fixed-seed log key, a Merkle tree with unrelated entries between the
//! outcomes, a signed checkpoint, inclusion proofs from the tree and figures
//! from the same fold the server uses. No database.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use uuid::Uuid;

use mandate_core::audit::checkpoint::{Checkpoint, NoteSigner, NoteVerifier, SignedCheckpoint};
use mandate_core::audit::event::GENESIS_PREV;
use mandate_core::audit::merkle::MerkleTree;
use mandate_core::audit::{Actor, AuditEvent, EventKind, Hash, LogEntry};
use mandate_core::ids::{AgentId, HumanId, OutcomeId, TaskId};
use mandate_core::outcome::{
    Amount, Classification, IdempotencyKey, NewWorkflow, OutcomeRecord, OutcomeType, Period,
    PeriodFigures, Valuation, ValueModel, Workflow, WorkflowName,
};
use mandate_core::time::Timestamp;
use mandate_evidence::{
    BoundaryAgent, BoundaryHuman, ControlBoundary, PackInput, PolicyInForce, ProvenEntry, build,
};
use sha2::{Digest, Sha256};

pub const ORIGIN: &str = "mandate.test/audit";
/// 2026-01-01T00:00:00Z and 2026-02-01T00:00:00Z.
pub const JAN: i64 = 1_767_225_600_000;
pub const FEB: i64 = 1_769_904_000_000;
const MINUTE: i64 = 60_000;

pub fn signer() -> NoteSigner {
    NoteSigner::new(ORIGIN.into(), SigningKey::from_bytes(&[7; 32])).unwrap()
}

/// A forger's key under the same name.
pub fn forger() -> NoteSigner {
    NoteSigner::new(ORIGIN.into(), SigningKey::from_bytes(&[9; 32])).unwrap()
}

pub fn pinned() -> NoteVerifier {
    // As an auditor gets it: the published vkey string.
    NoteVerifier::parse_vkey(&signer().verifier().to_vkey()).unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub fn alice() -> HumanId {
    HumanId::from_uuid(id(0xa11ce))
}
pub fn bob() -> HumanId {
    HumanId::from_uuid(id(0xb0b))
}
pub fn invoice_agent() -> AgentId {
    AgentId::from_uuid(id(0xa6e47))
}
pub fn stranger_agent() -> AgentId {
    AgentId::from_uuid(id(0xbad))
}

pub fn period() -> Period {
    Period::new(Timestamp::from_millis(JAN), Timestamp::from_millis(FEB)).unwrap()
}

pub fn workflow(name: &str) -> Workflow {
    Workflow {
        def: NewWorkflow {
            name: WorkflowName::parse(name).unwrap(),
            description: "one supplier invoice matched and paid".into(),
            owner: alice(),
            currency: "EUR".parse().unwrap(),
            baseline_cost: Amount::from_whole(12),
            baseline_minutes: 20,
            value_model: ValueModel::TimeSaved,
            token_price: Some(Amount::from_whole(2)),
        },
        created_at: Timestamp::from_millis(JAN - 86_400_000),
        updated_at: Timestamp::from_millis(JAN - 86_400_000),
    }
}

pub const POLICY: &str = "permit (principal, action, resource);\n";

pub fn boundary() -> ControlBoundary {
    ControlBoundary {
        policies: vec![PolicyInForce {
            hash: Sha256::digest(POLICY.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            version: 1,
            text: POLICY.into(),
            active_from: Timestamp::from_millis(JAN - 86_400_000),
            active_until: None,
        }],
        agents: vec![BoundaryAgent {
            id: invoice_agent(),
            spiffe_id: "spiffe://acme.test/agent/invoices".into(),
            name: "invoices".into(),
            owner: bob(),
        }],
        humans: vec![
            BoundaryHuman {
                id: alice(),
                display_name: "Alice".into(),
                email: Some("alice@acme.test".into()),
            },
            BoundaryHuman {
                id: bob(),
                display_name: "Bob".into(),
                email: None,
            },
        ],
    }
}

/// An outcome record as the store writes it.
pub fn record(
    n: u128,
    class: Classification,
    key: &str,
    minutes_into_period: i64,
    duplicate_of: Option<u128>,
) -> OutcomeRecord {
    OutcomeRecord {
        id: OutcomeId::from_uuid(id(n)),
        workflow: WorkflowName::parse("invoices").unwrap(),
        outcome_type: OutcomeType::parse("invoice.paid").unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        external_ref: Some(format!("INV-{n}")),
        task: TaskId::from_uuid(id(0x7a5c)),
        agent: invoice_agent(),
        initiator: alice(),
        owner: bob(),
        chain: vec![
            format!("human:{}", alice()),
            "spiffe://acme.test/agent/invoices".into(),
        ],
        classification: class,
        explanation: format!("{} for the test", class.as_str()),
        duplicate_of: duplicate_of.map(|d| OutcomeId::from_uuid(id(d))),
        currency: "EUR".parse().unwrap(),
        valuation: Valuation {
            value: Amount::from_whole(12),
            cost: Amount::from_units(5_000 + n as i64),
            minutes_saved: 20,
            model_tokens: 1_000,
        },
        reported_at: Timestamp::from_millis(JAN + minutes_into_period * MINUTE),
    }
}

/// An append-only log: entry texts, their tree, and the chain of `prev`.
pub struct Log {
    pub signer: NoteSigner,
    pub tree: MerkleTree,
    pub entries: Vec<String>,
    prev: Hash,
}

impl Log {
    pub fn new(signer: NoteSigner) -> Self {
        Log {
            signer,
            tree: MerkleTree::new(),
            entries: Vec::new(),
            prev: GENESIS_PREV,
        }
    }

    pub fn append(&mut self, event: AuditEvent) -> u64 {
        let index = self.tree.len();
        let (text, hash) = LogEntry::new(index, &self.prev, event).encode();
        self.tree.push(hash);
        self.entries.push(text);
        self.prev = hash;
        index
    }

    /// Something else happening in the log (not an outcome).
    pub fn noise(&mut self, kind: EventKind, minutes: i64) -> u64 {
        self.append(
            AuditEvent::new(
                kind,
                Timestamp::from_millis(JAN + minutes * MINUTE),
                Actor::System,
            )
            .details(serde_json::json!({ "note": "unrelated" })),
        )
    }

    pub fn outcome(&mut self, r: &OutcomeRecord) -> u64 {
        self.append(
            AuditEvent::new(
                EventKind::OutcomeReported,
                r.reported_at,
                Actor::Agent {
                    id: r.agent,
                    spiffe_id: "spiffe://acme.test/agent/invoices".into(),
                },
            )
            .task(r.task)
            .agent(r.agent)
            .human(r.initiator)
            .chain(r.chain.clone())
            .details(serde_json::to_value(r).unwrap()),
        )
    }

    pub fn checkpoint(&self) -> SignedCheckpoint {
        self.signer.sign(&Checkpoint {
            origin: ORIGIN.into(),
            size: self.tree.len(),
            root: self.tree.root(),
        })
    }

    /// Entry `index` with its proof against the current tree.
    pub fn proven(&self, index: u64) -> ProvenEntry {
        ProvenEntry {
            leaf_index: index,
            entry: self.entries[index as usize].clone(),
            proof: self.tree.inclusion_proof(index, self.tree.len()).unwrap(),
        }
    }
}

pub fn figures(records: &[OutcomeRecord], wf: &Workflow) -> PeriodFigures {
    let rows: Vec<_> = records.iter().map(OutcomeRecord::tally_row).collect();
    PeriodFigures::from_rows(period(), &rows, &wf.def)
}

/// A small log: three outcomes (counted, a retry of it, a phantom) among
/// unrelated entries, and the pack input covering them.
pub struct Scenario {
    pub log: Log,
    /// Each outcome with its leaf index.
    pub outcomes: Vec<(u64, OutcomeRecord)>,
    pub input: PackInput,
}

impl Scenario {
    pub fn new() -> Self {
        Self::with(signer(), |_| {})
    }

    /// Builds the log with `signer`; `extra` may append more entries before
    /// the checkpoint is signed.
    pub fn with(signer: NoteSigner, extra: impl FnOnce(&mut Log)) -> Self {
        let mut log = Log::new(signer);
        log.noise(EventKind::SystemInitialized, -60 * 24);
        log.noise(EventKind::TaskCreated, 5);
        log.noise(EventKind::DecisionMade, 6);
        let records = [
            record(1, Classification::Counted, "inv-1", 10, None),
            record(2, Classification::Duplicate, "inv-1", 11, Some(1)),
            record(3, Classification::Phantom, "inv-2", 30, None),
        ];
        let mut outcomes = Vec::new();
        for r in records {
            let i = log.outcome(&r);
            outcomes.push((i, r));
            log.noise(EventKind::DecisionMade, 40);
        }
        extra(&mut log);
        let wf = workflow("invoices");
        let recs: Vec<_> = outcomes.iter().map(|(_, r)| r.clone()).collect();
        let input = PackInput {
            figures: figures(&recs, &wf),
            workflow: wf,
            period: period(),
            transactions: outcomes.iter().map(|(i, _)| log.proven(*i)).collect(),
            checkpoint: log.checkpoint(),
            boundary: boundary(),
            generated_at: Timestamp::from_millis(FEB + 3_600_000),
        };
        Scenario {
            log,
            outcomes,
            input,
        }
    }

    pub fn pack(&self) -> Vec<u8> {
        build(&self.input, &self.log.signer).unwrap()
    }

    /// Adds outcome `r` to the log and the pack's transactions (figures are
    /// left as they were); call before `resign`.
    pub fn add_outcome(&mut self, r: &OutcomeRecord) -> u64 {
        let i = self.log.outcome(r);
        self.outcomes.push((i, r.clone()));
        i
    }

    /// Re-derives proofs, checkpoint and figures from the current log and
    /// outcomes: an honest pack of whatever the log now says.
    pub fn refresh(&mut self) {
        let recs: Vec<_> = self.outcomes.iter().map(|(_, r)| r.clone()).collect();
        self.input.figures = figures(&recs, &self.input.workflow);
        self.input.transactions = self
            .outcomes
            .iter()
            .map(|(i, _)| self.log.proven(*i))
            .collect();
        self.input.checkpoint = self.log.checkpoint();
    }
}

/// The failed checks' names and details, for assertion messages.
pub fn failures(v: &mandate_evidence::Verification) -> Vec<(String, String)> {
    v.failures()
        .map(|c| (c.name.to_owned(), c.detail.clone()))
        .collect()
}

/// Asserts the verification failed on exactly `names` and returns it.
pub fn assert_fails_on<'a>(
    v: &'a mandate_evidence::Verification,
    names: &[&str],
) -> &'a mandate_evidence::Verification {
    let failed: Vec<&str> = v.failures().map(|c| c.name).collect();
    assert!(!v.passed(), "passed: {v:#?}");
    assert_eq!(failed, names, "{:#?}", failures(v));
    v
}
