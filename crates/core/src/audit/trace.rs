//! The decision path of one task tree, reconstructed from the audit log alone.
//!
//! Given a task, a decision, a credential (jti) or an outcome, a [`Tracer`]
//! finds the root task of its tree and collects who started it, every
//! delegation hop with its scope, and every decision, approval, break-glass
//! use, revocation and outcome under it. Each item keeps its leaf index, so
//! an auditor can ask for an inclusion proof of exactly the entry behind it.
//! Nothing but the entries is consulted: a trace of an exported log reads
//! the same as a trace of the live store.
//!
//! The log is read in forward passes, and a pass may stop early, so memory
//! stays proportional to the trace rather than to the log:
//!
//! 1. find the entry naming the target. A task id or jti is found at the
//!    task's creation, which also names the root; a decision or outcome
//!    only names its task, whose creation came earlier, so
//! 2. (decisions and outcomes only) find that task's creation and its root;
//! 3. collect the tree from the root's creation on. A task joins when its
//!    parent has joined: the log records a parent before its children, so
//!    one forward pass sees the whole tree;
//! 4. name the humans the trace mentions and describe the break-glass
//!    grants it used: their entries come before the tree's, so they can only
//!    be picked up once the tree is known.
//!
//! A target that is not in the log, or a tree whose own entries cannot be
//! read, is an error naming what was looked for; entries of other trees are
//! never parsed beyond the fields that tell they are not ours.
//!
//! The same reading of each kind's details is public one entry at a time
//! ([`read_creation`], [`read_item`], [`read_end`] ...) for readers that
//! follow the log as it grows, such as the server's OTLP exporter.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::{Actor, EventKind, LogEntry};
use crate::decision::Verdict;
use crate::ids::{AgentId, ApprovalId, BreakGlassId, DecisionId, HumanId, OutcomeId, TaskId};
use crate::outcome::{
    Classification, Currency, IdempotencyKey, OutcomeRecord, OutcomeType, Valuation, WorkflowName,
};
use crate::scope::Scope;
use crate::task::{Limits, TaskStatus};
use crate::time::Timestamp;

// ---- what to trace ------------------------------------------------------------------

/// What a trace starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum TraceTarget {
    Task(TaskId),
    Decision(DecisionId),
    /// A task credential, by its jti.
    Jti(String),
    Outcome(OutcomeId),
}

impl fmt::Display for TraceTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceTarget::Task(t) => write!(f, "task {t}"),
            TraceTarget::Decision(d) => write!(f, "decision {d}"),
            TraceTarget::Jti(j) => write!(f, "credential (jti) {j:?}"),
            TraceTarget::Outcome(o) => write!(f, "outcome {o}"),
        }
    }
}

/// What the caller asked for: a known kind, or one string whose kind the
/// log decides.
#[derive(Debug, Clone)]
enum Sought {
    Target(TraceTarget),
    Text { text: String, uuid: Option<Uuid> },
}

impl fmt::Display for Sought {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sought::Target(t) => t.fmt(f),
            Sought::Text { text, .. } => {
                write!(f, "task, decision, outcome or credential (jti) {text:?}")
            }
        }
    }
}

impl Sought {
    /// The target `e` names, if it names what is sought. For one string the
    /// first entry naming it decides: an outcome, a decision, a task, and a
    /// jti only when no id matched (a task's creation carries both).
    fn named_by(&self, e: &LogEntry) -> Option<TraceTarget> {
        match self {
            Sought::Target(t) => names(e, t).then(|| t.clone()),
            Sought::Text { text, uuid } => {
                let by_id = uuid.and_then(|u| {
                    [
                        TraceTarget::Outcome(OutcomeId::from_uuid(u)),
                        TraceTarget::Decision(DecisionId::from_uuid(u)),
                        TraceTarget::Task(TaskId::from_uuid(u)),
                    ]
                    .into_iter()
                    .find(|t| names(e, t))
                });
                by_id.or_else(|| {
                    let jti = TraceTarget::Jti(text.clone());
                    names(e, &jti).then_some(jti)
                })
            }
        }
    }
}

/// Is `e` the entry that introduces `t`? Tasks and their credentials are
/// introduced by the task's creation, decisions and outcomes by their own
/// event.
fn names(e: &LogEntry, t: &TraceTarget) -> bool {
    let ev = &e.event;
    match t {
        TraceTarget::Task(id) => is_creation(ev.kind) && ev.task == Some(*id),
        TraceTarget::Jti(jti) => is_creation(ev.kind) && ev.credential.as_deref() == Some(jti),
        TraceTarget::Decision(id) => {
            ev.kind == EventKind::DecisionMade
                && detail_uuid(e, "decision_id") == Some(*id.as_uuid())
        }
        TraceTarget::Outcome(id) => {
            ev.kind == EventKind::OutcomeReported && detail_uuid(e, "id") == Some(*id.as_uuid())
        }
    }
}

fn is_creation(kind: EventKind) -> bool {
    matches!(kind, EventKind::TaskCreated | EventKind::TaskDelegated)
}

/// One id-valued field of an entry's details, read without parsing the rest
/// (entries of other trees may hold anything).
fn detail_uuid(e: &LogEntry, field: &str) -> Option<Uuid> {
    e.event.details.get(field)?.as_str()?.parse().ok()
}

// ---- the trace ----------------------------------------------------------------------

/// A task tree's decision path, as the log recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// What was asked for, with the kind the log gave it.
    pub target: TraceTarget,
    /// Leaf index of the entry that names the target.
    pub target_leaf: u64,
    /// The tree's root task.
    pub root: TaskId,
    /// The human who started the root task.
    pub initiator: HumanId,
    /// Every task of the tree, depth first from the root, each task's
    /// subtasks in the order they were delegated.
    pub tasks: Vec<TaskNode>,
    /// The humans the trace names, as their registrations recorded them.
    pub humans: BTreeMap<HumanId, HumanEntry>,
    /// The break-glass grants decisions of the tree were allowed under.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakglass: Vec<BreakGlassGrant>,
    /// Entries in the log when the tree was collected: inclusion proofs for
    /// the leaves above hold at this tree size.
    pub log_size: u64,
}

/// One task: one delegation hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNode {
    pub id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TaskId>,
    /// Delegations below the human's task, as recorded.
    pub depth: u32,
    /// The agent holding the task.
    pub agent: AgentId,
    pub agent_spiffe: String,
    /// The agent that delegated it; none for a task a human started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegator: Option<String>,
    pub initiator: HumanId,
    pub purpose: String,
    pub scope: Scope,
    pub limits: Limits,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The credential issued with the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    pub dpop_bound: bool,
    /// Leaf index of the task's creation.
    pub leaf: u64,
    /// How the task ended; none while the log shows it open (an expiry is
    /// not an event: compare `expires_at` with the time of interest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<TaskEnd>,
    /// What happened under the task, in log order.
    pub events: Vec<TraceItem>,
}

/// A task's completion, failure or revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEnd {
    /// Completed, failed or revoked.
    pub status: TaskStatus,
    pub at: Timestamp,
    pub by: Actor,
    pub reason: String,
    /// The ancestor whose ending revoked this task with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade_from: Option<TaskId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials_revoked: Vec<String>,
    pub leaf: u64,
}

/// One entry under a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceItem {
    pub leaf: u64,
    pub at: Timestamp,
    #[serde(flatten)]
    pub event: TraceEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TraceEvent {
    Decision(DecisionItem),
    ApprovalRequested(ApprovalRequest),
    ApprovalGranted(ApprovalAnswer),
    ApprovalDenied(ApprovalAnswer),
    /// One credential revoked on its own (RFC 7009), the task staying open.
    CredentialRevoked {
        jti: String,
        by: Actor,
    },
    Outcome(OutcomeItem),
    /// What became of a call through the gateway (it follows its decision).
    ToolCall(crate::tool_call::ToolCall),
}

/// A runtime decision with its reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionItem {
    pub id: DecisionId,
    pub verdict: Verdict,
    pub action: String,
    pub resource: String,
    pub reasons: Vec<DecisionReason>,
    /// The policy set version that decided; none when a step before policy stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// The approval it asked for or spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalId>,
    /// The break-glass grant it was allowed under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakglass: Option<BreakGlassId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionReason {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub approval: ApprovalId,
    pub action: String,
    pub resource: String,
    /// The approval gates that asked for it.
    #[serde(default)]
    pub policies: Vec<String>,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalAnswer {
    pub approval: ApprovalId,
    pub by: HumanId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A reported outcome with its classification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeItem {
    pub id: OutcomeId,
    pub workflow: WorkflowName,
    pub outcome_type: OutcomeType,
    pub idempotency_key: IdempotencyKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    pub classification: Classification,
    pub explanation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<OutcomeId>,
    pub currency: Currency,
    pub valuation: Valuation,
}

impl From<OutcomeRecord> for OutcomeItem {
    fn from(r: OutcomeRecord) -> Self {
        OutcomeItem {
            id: r.id,
            workflow: r.workflow,
            outcome_type: r.outcome_type,
            idempotency_key: r.idempotency_key,
            external_ref: r.external_ref,
            classification: r.classification,
            explanation: r.explanation,
            duplicate_of: r.duplicate_of,
            currency: r.currency,
            valuation: r.valuation,
        }
    }
}

/// A human as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HumanEntry {
    pub display_name: String,
    /// Leaf index of the registration.
    pub leaf: u64,
}

/// A break-glass grant a decision of the tree was allowed under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassGrant {
    pub id: BreakGlassId,
    pub agent: AgentId,
    pub scope: Scope,
    pub reason: String,
    pub granted_by: Actor,
    pub granted_at: Timestamp,
    pub expires_at: Timestamp,
    pub leaf: u64,
    /// None while the log holds no review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<BreakGlassReview>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassReview {
    pub by: HumanId,
    pub note: String,
    pub at: Timestamp,
    pub leaf: u64,
}

// ---- errors -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("no {0} in the audit log")]
    NotFound(String),
    #[error("the audit log has no creation entry for task {task}, which {target} names")]
    NoCreation { task: TaskId, target: TraceTarget },
    #[error("audit entry {index} ({kind}) cannot be read for the trace: {why}")]
    Malformed {
        index: u64,
        kind: &'static str,
        why: String,
    },
}

fn malformed(e: &LogEntry, why: impl Into<String>) -> TraceError {
    TraceError::Malformed {
        index: e.index,
        kind: e.event.kind.as_str(),
        why: why.into(),
    }
}

/// The kind-specific details of one of the tree's entries.
fn details<T: DeserializeOwned>(e: &LogEntry) -> Result<T, TraceError> {
    T::deserialize(&e.event.details).map_err(|err| malformed(e, err.to_string()))
}

// ---- the details as the store writes them ----------------------------------------------
// Unknown fields are ignored: events may gain facts without breaking traces.

/// `task.created` / `task.delegated` (store `tasks::create_task`).
#[derive(Deserialize)]
struct Created {
    purpose: String,
    scope: Scope,
    limits: Limits,
    parent: Option<TaskId>,
    root: TaskId,
    depth: u32,
    expires_at: Timestamp,
    #[serde(default)]
    dpop_bound: bool,
}

/// `task.completed` / `task.failed` / `task.revoked` (store `tasks::end_one`).
#[derive(Deserialize)]
struct Ended {
    reason: String,
    #[serde(default)]
    credentials_revoked: Vec<String>,
    #[serde(default)]
    cascades_to: Vec<TaskId>,
}

/// `decision.made`: the server's answer (`mandate_server::decision::Outcome`).
#[derive(Deserialize)]
struct Decided {
    decision_id: DecisionId,
    decision: Verdict,
    #[serde(default)]
    reasons: Vec<DecisionReason>,
    policy_hash: Option<String>,
    action: String,
    resource: String,
    approval_id: Option<ApprovalId>,
    breakglass_id: Option<BreakGlassId>,
}

/// `approval.granted` / `approval.denied`.
#[derive(Deserialize)]
struct Answered {
    approval: ApprovalId,
    note: Option<String>,
}

/// `breakglass.granted`.
#[derive(Deserialize)]
struct Granted {
    id: BreakGlassId,
    scope: Scope,
    reason: String,
    expires_at: Timestamp,
}

/// `breakglass.reviewed`.
#[derive(Deserialize)]
struct Reviewed {
    note: String,
}

// ---- the passes ---------------------------------------------------------------------

/// Reconstructs one trace, pass by pass: read entries in log order from
/// [`Tracer::start`] into [`Tracer::feed`] until it answers `Break` or the log
/// ends, then call [`Tracer::end_pass`]. [`Tracer::run`] does this over an
/// in-memory log.
#[derive(Debug)]
pub struct Tracer {
    stage: Stage,
    /// Set by `feed`, which stops the pass; reported by `end_pass`.
    error: Option<TraceError>,
}

/// Which entries the current pass can react to, so a reader with an index
/// can feed those alone (in log order) instead of the whole log. The trace
/// is the same either way; [`Tracer::feed`] still checks every entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// The pass looks for this task's creation: feed the entries naming the
    /// task. If the pass has not ended (`feed` never said `Break`), the
    /// creation was not among them (or the target may be something else
    /// named by the same text): feed the log from [`Tracer::start`] as well.
    Task(TaskId),
    /// The pass collects the tree with this root: feed the entries naming
    /// its tasks from [`Tracer::start`] up to some log size, then pass that
    /// size to [`Tracer::read_to`].
    Tree(TaskId),
    /// The pass names these humans: feed their `human.registered` entries.
    Registrations(Vec<HumanId>),
    /// Any entry may matter: feed the log from [`Tracer::start`].
    Log,
}

/// After a pass: another pass, or the trace.
#[derive(Debug)]
pub enum Next {
    Pass(Tracer),
    Done(Trace),
}

#[derive(Debug)]
enum Stage {
    /// Pass 1: the entry naming the target.
    Find {
        sought: Sought,
        found: Option<(Located, Option<Root>)>,
    },
    /// Pass 2: the creation of the target's task, which names the root.
    Root {
        located: Located,
        root: Option<Root>,
    },
    /// Pass 3: the tree.
    Collect(Collector),
    /// Pass 4: names and break-glass grants.
    Annotate(Annotator),
}

/// Where the target was found.
#[derive(Debug)]
struct Located {
    target: TraceTarget,
    leaf: u64,
    task: TaskId,
}

#[derive(Debug, Clone, Copy)]
struct Root {
    id: TaskId,
    /// Leaf of its creation, when the pass that found the root saw it.
    leaf: Option<u64>,
}

impl Tracer {
    pub fn new(target: TraceTarget) -> Tracer {
        Tracer::seeking(Sought::Target(target))
    }

    /// Traces whatever `text` is in the log: an outcome, decision or task
    /// id, or else a credential's jti.
    pub fn for_text(text: &str) -> Tracer {
        Tracer::seeking(Sought::Text {
            text: text.to_owned(),
            uuid: Uuid::parse_str(text).ok(),
        })
    }

    fn seeking(sought: Sought) -> Tracer {
        Tracer {
            stage: Stage::Find {
                sought,
                found: None,
            },
            error: None,
        }
    }

    /// The first leaf index the current pass needs; earlier entries may be
    /// skipped (and are ignored if fed).
    pub fn start(&self) -> u64 {
        match &self.stage {
            Stage::Collect(c) => c.root.leaf.unwrap_or(0),
            _ => 0,
        }
    }

    /// What the current pass reacts to (see [`Need`]).
    pub fn need(&self) -> Need {
        match &self.stage {
            Stage::Find { sought, .. } => match sought {
                Sought::Target(TraceTarget::Task(id)) => Need::Task(*id),
                // A uuid is most often a task's id; if it is not, the
                // fallback scan finds what it is.
                Sought::Text { uuid: Some(u), .. } => Need::Task(TaskId::from_uuid(*u)),
                _ => Need::Log,
            },
            Stage::Root { located, .. } => Need::Task(located.task),
            Stage::Collect(c) => Need::Tree(c.root.id),
            Stage::Annotate(a) if a.grants.is_empty() && a.unreviewed.is_empty() => {
                Need::Registrations(a.humans.iter().copied().collect())
            }
            Stage::Annotate(_) => Need::Log,
        }
    }

    /// Says the current pass has seen every entry it needs below leaf
    /// `size`, though only some were fed (an index chose them): the trace
    /// then holds at log size `size`, as if all had been read.
    pub fn read_to(&mut self, size: u64) {
        if let Stage::Collect(c) = &mut self.stage {
            c.log_size = c.log_size.max(size);
        }
    }

    /// Takes the next entry of the current pass. `Break` means the pass has
    /// what it needs (or hit an error) and the rest of the log may be skipped.
    pub fn feed(&mut self, e: &LogEntry) -> ControlFlow<()> {
        if self.error.is_some() {
            return ControlFlow::Break(());
        }
        if e.index < self.start() {
            return ControlFlow::Continue(());
        }
        self.step(e).unwrap_or_else(|err| {
            self.error = Some(err);
            ControlFlow::Break(())
        })
    }

    fn step(&mut self, e: &LogEntry) -> Result<ControlFlow<()>, TraceError> {
        use ControlFlow::{Break, Continue};
        match &mut self.stage {
            Stage::Find { sought, found } => match sought.named_by(e) {
                Some(target) => {
                    *found = Some(locate(target, e)?);
                    Ok(Break(()))
                }
                None => Ok(Continue(())),
            },
            Stage::Root { located, root } => {
                // The task was created before anything could happen under it.
                if e.index >= located.leaf {
                    return Ok(Break(()));
                }
                if is_creation(e.event.kind) && e.event.task == Some(located.task) {
                    *root = Some(root_of(located.task, e)?);
                    return Ok(Break(()));
                }
                Ok(Continue(()))
            }
            Stage::Collect(c) => c.take(e).map(|()| Continue(())),
            Stage::Annotate(a) => {
                a.take(e)?;
                Ok(if a.complete() {
                    Break(())
                } else {
                    Continue(())
                })
            }
        }
    }

    /// Ends the current pass: the log ran out or `feed` said `Break`.
    pub fn end_pass(self) -> Result<Next, TraceError> {
        if let Some(err) = self.error {
            return Err(err);
        }
        let stage = match self.stage {
            Stage::Find {
                sought,
                found: None,
            } => return Err(TraceError::NotFound(sought.to_string())),
            Stage::Find {
                found: Some((located, Some(root))),
                ..
            }
            | Stage::Root {
                located,
                root: Some(root),
            } => Stage::Collect(Collector::new(located, root)),
            Stage::Find {
                found: Some((located, None)),
                ..
            } => Stage::Root {
                located,
                root: None,
            },
            Stage::Root {
                located,
                root: None,
            } => {
                return Err(TraceError::NoCreation {
                    task: located.task,
                    target: located.target,
                });
            }
            Stage::Collect(c) => {
                let a = Annotator::new(c.finish()?);
                if a.complete() {
                    return Ok(Next::Done(a.trace));
                }
                Stage::Annotate(a)
            }
            Stage::Annotate(a) => return Ok(Next::Done(a.trace)),
        };
        Ok(Next::Pass(Tracer { stage, error: None }))
    }

    /// Runs every pass over a log held in memory (or re-read on demand):
    /// `log` is called once per pass and yields the entries in order.
    pub fn run<I>(self, mut log: impl FnMut() -> I) -> Result<Trace, TraceError>
    where
        I: IntoIterator,
        I::Item: Borrow<LogEntry>,
    {
        let mut tracer = self;
        loop {
            for e in log() {
                if tracer.feed(e.borrow()).is_break() {
                    break;
                }
            }
            match tracer.end_pass()? {
                Next::Pass(t) => tracer = t,
                Next::Done(trace) => return Ok(trace),
            }
        }
    }
}

/// The target's task, and its root when the entry is the task's creation.
fn locate(target: TraceTarget, e: &LogEntry) -> Result<(Located, Option<Root>), TraceError> {
    let task = e
        .event
        .task
        .ok_or_else(|| malformed(e, format!("it names {target} but no task")))?;
    let root = if is_creation(e.event.kind) {
        Some(root_of(task, e)?)
    } else {
        None
    };
    let located = Located {
        target,
        leaf: e.index,
        task,
    };
    Ok((located, root))
}

/// The root named by `task`'s creation entry `e`.
fn root_of(task: TaskId, e: &LogEntry) -> Result<Root, TraceError> {
    let c: Created = details(e)?;
    Ok(Root {
        id: c.root,
        leaf: (c.root == task).then_some(e.index),
    })
}

// ---- pass 3: the tree -------------------------------------------------------------------

#[derive(Debug)]
struct Collector {
    located: Located,
    root: Root,
    /// In creation order; the root first.
    nodes: Vec<TaskNode>,
    members: HashMap<TaskId, usize>,
    /// Tasks an ancestor's ending announced it revokes, with that ancestor.
    cascading: HashMap<TaskId, TaskId>,
    log_size: u64,
}

impl Collector {
    fn new(located: Located, root: Root) -> Collector {
        Collector {
            located,
            root,
            nodes: Vec::new(),
            members: HashMap::new(),
            cascading: HashMap::new(),
            log_size: 0,
        }
    }

    fn take(&mut self, e: &LogEntry) -> Result<(), TraceError> {
        self.log_size = self.log_size.max(e.index.saturating_add(1));
        let Some(task) = e.event.task else {
            return Ok(());
        };
        if is_creation(e.event.kind) {
            return self.created(task, e);
        }
        let Some(&at) = self.members.get(&task) else {
            return Ok(());
        };
        match e.event.kind {
            EventKind::TaskCompleted | EventKind::TaskFailed | EventKind::TaskRevoked => {
                self.ended(at, task, e)
            }
            _ => {
                if let Some(item) = read_item(e)? {
                    self.nodes[at].events.push(item);
                }
                Ok(())
            }
        }
    }

    fn created(&mut self, task: TaskId, e: &LogEntry) -> Result<(), TraceError> {
        // A task is created once; a repeated creation entry adds nothing.
        if self.members.contains_key(&task) {
            return Ok(());
        }
        let joins = if self.nodes.is_empty() {
            task == self.root.id
        } else {
            detail_uuid(e, "parent")
                .is_some_and(|p| self.members.contains_key(&TaskId::from_uuid(p)))
        };
        if joins {
            self.members.insert(task, self.nodes.len());
            self.nodes.push(task_node(task, e)?.0);
        }
        Ok(())
    }

    fn ended(&mut self, at: usize, task: TaskId, e: &LogEntry) -> Result<(), TraceError> {
        let (mut end, cascades_to) = read_end(e)?;
        for child in cascades_to {
            if self.members.contains_key(&child) {
                self.cascading.insert(child, task);
            }
        }
        let node = &mut self.nodes[at];
        // The first ending stands: every ending is final.
        if node.ended.is_none() {
            end.cascade_from = self.cascading.remove(&task);
            node.ended = Some(end);
        }
        Ok(())
    }

    fn finish(self) -> Result<Trace, TraceError> {
        let Some(root) = self.nodes.first() else {
            return Err(TraceError::NoCreation {
                task: self.root.id,
                target: self.located.target,
            });
        };
        let initiator = root.initiator;
        let order = depth_first(&self.nodes, &self.members);
        let mut slots: Vec<Option<TaskNode>> = self.nodes.into_iter().map(Some).collect();
        let tasks = order.into_iter().filter_map(|i| slots[i].take()).collect();
        Ok(Trace {
            target: self.located.target,
            target_leaf: self.located.leaf,
            root: self.root.id,
            initiator,
            tasks,
            humans: BTreeMap::new(),
            breakglass: Vec::new(),
            log_size: self.log_size,
        })
    }
}

/// Node positions depth first from the root (position 0), children in
/// creation order. Iterative, so a pathological log cannot exhaust the stack.
fn depth_first(nodes: &[TaskNode], members: &HashMap<TaskId, usize>) -> Vec<usize> {
    let mut children = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate().skip(1) {
        if let Some(&p) = n.parent.as_ref().and_then(|p| members.get(p)) {
            children[p].push(i);
        }
    }
    let mut order = Vec::with_capacity(nodes.len());
    let mut stack = vec![0];
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(children[i].iter().rev());
    }
    order
}

/// The node a creation entry describes, and the root of its tree.
fn task_node(task: TaskId, e: &LogEntry) -> Result<(TaskNode, TaskId), TraceError> {
    let c: Created = details(e)?;
    let ev = &e.event;
    let agent = ev.agent.ok_or_else(|| malformed(e, "it names no agent"))?;
    let initiator = ev
        .human
        .ok_or_else(|| malformed(e, "it names no initiator"))?;
    let agent_spiffe = match (ev.chain.last(), &ev.actor) {
        (Some(s), _) if ev.chain.len() > 1 => s.clone(),
        (_, Actor::Agent { spiffe_id, .. }) => spiffe_id.clone(),
        _ => return Err(malformed(e, "it names no agent SPIFFE id")),
    };
    // The chain is the human, then each agent hop down to the holder.
    let delegator = ev
        .chain
        .len()
        .checked_sub(2)
        .filter(|&i| i >= 1)
        .and_then(|i| ev.chain.get(i).cloned());
    let node = TaskNode {
        id: task,
        parent: c.parent,
        depth: c.depth,
        agent,
        agent_spiffe,
        delegator,
        initiator,
        purpose: c.purpose,
        scope: c.scope,
        limits: c.limits,
        created_at: ev.at,
        expires_at: c.expires_at,
        jti: ev.credential.clone(),
        dpop_bound: c.dpop_bound,
        leaf: e.index,
        ended: None,
        events: Vec::new(),
    };
    Ok((node, c.root))
}

// ---- one entry at a time ----------------------------------------------------------------
// The passes above read entries with these; readers that follow the log as it
// grows (the server's OTLP exporter) call them on each entry on its own, so
// both read the details the same way.

/// A task's creation (`task.created` / `task.delegated`): the task as a node
/// with no events yet, and the root of its tree.
pub fn read_creation(e: &LogEntry) -> Result<(TaskNode, TaskId), TraceError> {
    let task = e
        .event
        .task
        .ok_or_else(|| malformed(e, "it names no task"))?;
    task_node(task, e)
}

/// A task's ending (`task.completed` / `.failed` / `.revoked`) and the
/// descendants it ends with it. `cascade_from` is left empty: only the
/// ancestor's ending, read earlier, tells it.
pub fn read_end(e: &LogEntry) -> Result<(TaskEnd, Vec<TaskId>), TraceError> {
    let d: Ended = details(e)?;
    let end = TaskEnd {
        status: match e.event.kind {
            EventKind::TaskCompleted => TaskStatus::Completed,
            EventKind::TaskFailed => TaskStatus::Failed,
            _ => TaskStatus::Revoked,
        },
        at: e.event.at,
        by: e.event.actor.clone(),
        reason: d.reason,
        cascade_from: None,
        credentials_revoked: d.credentials_revoked,
        leaf: e.index,
    };
    Ok((end, d.cascades_to))
}

/// A `breakglass.granted` entry.
pub fn read_breakglass_grant(e: &LogEntry) -> Result<BreakGlassGrant, TraceError> {
    let g: Granted = details(e)?;
    Ok(BreakGlassGrant {
        id: g.id,
        agent: e
            .event
            .agent
            .ok_or_else(|| malformed(e, "it names no agent"))?,
        scope: g.scope,
        reason: g.reason,
        granted_by: e.event.actor.clone(),
        granted_at: e.event.at,
        expires_at: g.expires_at,
        leaf: e.index,
        review: None,
    })
}

/// A `breakglass.reviewed` entry: the grant and its review.
pub fn read_breakglass_review(
    e: &LogEntry,
) -> Result<(BreakGlassId, BreakGlassReview), TraceError> {
    let id = detail_uuid(e, "id")
        .map(BreakGlassId::from_uuid)
        .ok_or_else(|| malformed(e, "it names no grant"))?;
    let r: Reviewed = details(e)?;
    let review = BreakGlassReview {
        by: e
            .event
            .human
            .ok_or_else(|| malformed(e, "it names no reviewer"))?,
        note: r.note,
        at: e.event.at,
        leaf: e.index,
    };
    Ok((id, review))
}

/// The item an entry under a task adds to its decision path (a decision, an
/// approval asked or answered, a credential revoked, an outcome); none for
/// other kinds.
pub fn read_item(e: &LogEntry) -> Result<Option<TraceItem>, TraceError> {
    let ev = &e.event;
    let event = match ev.kind {
        EventKind::DecisionMade => {
            let d: Decided = details(e)?;
            TraceEvent::Decision(DecisionItem {
                id: d.decision_id,
                verdict: d.decision,
                action: d.action,
                resource: d.resource,
                reasons: d.reasons,
                policy_hash: d.policy_hash,
                approval: d.approval_id,
                breakglass: d.breakglass_id,
            })
        }
        EventKind::ApprovalRequested => TraceEvent::ApprovalRequested(details(e)?),
        EventKind::ApprovalGranted | EventKind::ApprovalDenied => {
            let a: Answered = details(e)?;
            let answer = ApprovalAnswer {
                approval: a.approval,
                by: ev
                    .human
                    .ok_or_else(|| malformed(e, "it names no approver"))?,
                note: a.note,
            };
            if ev.kind == EventKind::ApprovalGranted {
                TraceEvent::ApprovalGranted(answer)
            } else {
                TraceEvent::ApprovalDenied(answer)
            }
        }
        EventKind::CredentialRevoked => TraceEvent::CredentialRevoked {
            jti: ev
                .credential
                .clone()
                .ok_or_else(|| malformed(e, "it names no credential"))?,
            by: ev.actor.clone(),
        },
        EventKind::OutcomeReported => TraceEvent::Outcome(details::<OutcomeRecord>(e)?.into()),
        EventKind::GatewayCall => TraceEvent::ToolCall(details(e)?),
        _ => return Ok(None),
    };
    Ok(Some(TraceItem {
        leaf: e.index,
        at: ev.at,
        event,
    }))
}

// ---- pass 4: names and grants ---------------------------------------------------------

/// Names come from `human.registered` entries, grants from
/// `breakglass.granted` and `.reviewed`. A reviewer is named only when the
/// trace names them elsewhere too: their registration precedes the review
/// that reveals them, and another pass for that alone is not worth it.
#[derive(Debug)]
struct Annotator {
    trace: Trace,
    /// Humans the trace names whose registration was not yet seen.
    humans: BTreeSet<HumanId>,
    /// Grants used whose grant entry was not yet seen.
    grants: BTreeSet<BreakGlassId>,
    /// Grants seen whose review was not yet seen.
    unreviewed: BTreeMap<BreakGlassId, usize>,
}

impl Annotator {
    fn new(trace: Trace) -> Annotator {
        let mut humans = BTreeSet::from([trace.initiator]);
        let mut grants = BTreeSet::new();
        let actor = |a: &Actor, humans: &mut BTreeSet<HumanId>| {
            if let Actor::Human { id } = a {
                humans.insert(*id);
            }
        };
        for t in &trace.tasks {
            humans.insert(t.initiator);
            if let Some(end) = &t.ended {
                actor(&end.by, &mut humans);
            }
            for item in &t.events {
                match &item.event {
                    TraceEvent::Decision(d) => grants.extend(d.breakglass),
                    TraceEvent::ApprovalGranted(a) | TraceEvent::ApprovalDenied(a) => {
                        humans.insert(a.by);
                    }
                    TraceEvent::CredentialRevoked { by, .. } => actor(by, &mut humans),
                    TraceEvent::ApprovalRequested(_)
                    | TraceEvent::Outcome(_)
                    | TraceEvent::ToolCall(_) => {}
                }
            }
        }
        Annotator {
            trace,
            humans,
            grants,
            unreviewed: BTreeMap::new(),
        }
    }

    fn complete(&self) -> bool {
        self.humans.is_empty() && self.grants.is_empty() && self.unreviewed.is_empty()
    }

    fn take(&mut self, e: &LogEntry) -> Result<(), TraceError> {
        match e.event.kind {
            EventKind::HumanRegistered => {
                if let Some(h) = e.event.human.filter(|h| self.humans.remove(h)) {
                    let name = e.event.details.get("display_name").and_then(|n| n.as_str());
                    if let Some(name) = name {
                        let entry = HumanEntry {
                            display_name: name.to_owned(),
                            leaf: e.index,
                        };
                        self.trace.humans.insert(h, entry);
                    }
                }
            }
            EventKind::BreakGlassGranted => {
                let id = detail_uuid(e, "id").map(BreakGlassId::from_uuid);
                if let Some(id) = id.filter(|id| self.grants.remove(id)) {
                    let grant = read_breakglass_grant(e)?;
                    self.unreviewed.insert(id, self.trace.breakglass.len());
                    self.trace.breakglass.push(grant);
                }
            }
            EventKind::BreakGlassReviewed => {
                let id = detail_uuid(e, "id").map(BreakGlassId::from_uuid);
                if let Some(at) = id.and_then(|id| self.unreviewed.remove(&id)) {
                    let (_, review) = read_breakglass_review(e)?;
                    self.trace.breakglass[at].review = Some(review);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
