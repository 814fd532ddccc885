//! Mandate's durable state, behind one trait.
//!
//! [`Store`] is the only way the server touches persistence. Every method that
//! changes state also appends its audit event **in the same database
//! transaction**, so there is no change without its event and a failed append
//! fails the request (Vault's fail-closed rule). Two backends implement it
//! with the same SQL: SQLite (embedded default, WAL, one writer) and
//! PostgreSQL (many nodes, appends serialised by an advisory lock).

#![forbid(unsafe_code)]

pub mod log;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;

use async_trait::async_trait;
use mandate_core::RuleError;
use mandate_core::admin::AdminSecretHash;
use mandate_core::agent::{Agent, AgentKind, AgentStatus, Lifecycle, NewAgent};
use mandate_core::approval::{Approval, ApprovalStatus};
use mandate_core::audit::Actor;
use mandate_core::audit::Hash;
use mandate_core::audit::checkpoint::SignedCheckpoint;
use mandate_core::audit::verify::StoredEntry;
use mandate_core::breakglass::BreakGlass;
use mandate_core::decision::Verdict;
use mandate_core::human::{Human, HumanStatus, NewHuman};
use mandate_core::ids::{
    AdminCredentialId, AgentId, AgentName, ApprovalId, BreakGlassId, DecisionId, HumanId,
    OutcomeId, ReviewId, SpiffeId, TaskId, TrustDomain,
};
use mandate_core::inventory::InventoryItem;
use mandate_core::jwk::Ed25519Jwk;
use mandate_core::outcome::{
    Claim, Currency, NewWorkflow, OutcomeRecord, Period, TallyRow, Valuation, Workflow,
    WorkflowName,
};
use mandate_core::review::{Review, ReviewDecision};
use mandate_core::secret::{SealedSecret, SecretInfo, SecretName};
use mandate_core::task::{Ending, Task, TaskStatus};
use mandate_core::time::Timestamp;
use mandate_core::tool_call::ToolCall;

pub use sql::SqlStore;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The database is unreachable or refused the connection: retryable.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("Mandate is not initialised here; run `mandate init` first")]
    NotInitialized,
    #[error("storage error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who is making a change, when, and under which request id: the context
/// every audited write needs. The caller reads the clock; the store does not.
#[derive(Debug, Clone)]
pub struct Change {
    pub actor: Actor,
    pub at: Timestamp,
    pub request_id: Option<String>,
}

/// What becomes of an agent when its owner is offboarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Transfer(HumanId),
    Retire,
}

/// Set once by `mandate init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    pub trust_domain: TrustDomain,
    /// The `iss` of tokens Mandate signs.
    pub issuer: String,
    /// The origin line of audit checkpoints.
    pub log_origin: String,
    pub created_at: Timestamp,
}

/// A server signing key; the private half is sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// Base64url of the 32-byte Ed25519 public key.
    pub public_key: String,
    pub sealed_private: String,
    pub created_at: Timestamp,
    pub active: bool,
    /// When it stopped signing; its public key stays published until every
    /// token it signed has expired.
    pub retired_at: Option<Timestamp>,
}

/// An issued task credential. The token itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub jti: String,
    pub task: TaskId,
    pub agent: AgentId,
    /// The signing key's id.
    pub kid: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// DPoP binding (RFC 9449 `cnf.jkt`), when the token is bound.
    pub cnf_jkt: Option<String>,
    pub revoked_at: Option<Timestamp>,
}

/// What a decision reads about a token's task, as stored at one moment (one
/// statement: see [`Store::decision_context`]).
#[derive(Debug, Clone)]
pub struct DecisionContext {
    /// The credential the token's jti names, whichever task it is for (the
    /// caller checks it is this task's), or `None` when there is none.
    pub credential: Option<CredentialRecord>,
    pub task: Task,
    /// Calls counted against the task's limit so far.
    pub calls_used: u64,
    /// The task's assignee.
    pub agent: ChainAgent,
    /// The task's parent, its parent ... up to the root, each with its assignee.
    pub ancestors: Vec<(Task, ChainAgent)>,
    /// The active policy version's hash.
    pub policy_hash: Option<String>,
}

/// What a decision knows of an agent on a task's chain: who it is and how it
/// is tagged. The rest of its record (keys, ceiling, tools) is not read:
/// decoding an agent's keys (Ed25519 point decompression) cost more than the
/// read itself, on every decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainAgent {
    pub id: AgentId,
    pub spiffe_id: SpiffeId,
    pub kind: AgentKind,
    pub owner: HumanId,
    pub tags: std::collections::BTreeSet<String>,
    pub status: AgentStatus,
}

impl From<&Agent> for ChainAgent {
    fn from(a: &Agent) -> Self {
        ChainAgent {
            id: a.id,
            spiffe_id: a.spiffe_id.clone(),
            kind: a.kind,
            owner: a.owner,
            tags: a.tags.clone(),
            status: a.status,
        }
    }
}

/// A task to create with its first credential, atomically.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub task: Task,
    pub credential: CredentialRecord,
    /// Single-use ids (agent assertion and DPoP proof jtis) to consume in the
    /// same transaction; any one already used refuses the whole request.
    pub single_use: Vec<(String, Timestamp)>,
    /// Human initiator, then each agent hop, for the audit record.
    pub chain: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub assignee: Option<AgentId>,
    pub initiator: Option<HumanId>,
    pub status: Option<TaskStatus>,
    pub root: Option<TaskId>,
    /// When set, `status` is the status at this time: an open task past its
    /// expiry is `expired`, not `open` (its stored status changes only when
    /// something ends it).
    pub now: Option<Timestamp>,
}

/// The outcome of ending a task: the task and every descendant it ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub task: Task,
    pub cascaded: Vec<TaskId>,
}

/// A page request: at most `limit` items after `after` (exclusive).
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

pub const MAX_PAGE: u32 = 500;

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    pub owner: Option<HumanId>,
    /// Only campaigns with items still undecided.
    pub incomplete: bool,
}

/// An owner's decision on one agent of a review.
#[derive(Debug, Clone)]
pub struct ReviewAnswer {
    pub review: ReviewId,
    pub agent: AgentId,
    pub by: HumanId,
    pub decision: ReviewDecision,
    pub note: String,
}

#[derive(Debug, Clone, Default)]
pub struct HumanFilter {
    pub status: Option<HumanStatus>,
}

#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    pub owner: Option<HumanId>,
    pub kind: Option<AgentKind>,
    pub status: Option<AgentStatus>,
    pub tag: Option<String>,
    pub orphaned: Option<bool>,
    /// Only agents whose name contains this text (agent names are lowercase
    /// `[a-z0-9._-]`; the text is matched literally).
    pub name_contains: Option<String>,
}

/// One stored version of the policy set. Versions are immutable and
/// identified by the SHA-256 of their text; exactly one is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// 1, 2, 3 ... in push order.
    pub version: i64,
    pub hash: String,
    pub text: String,
    pub pushed_at: Timestamp,
    pub pushed_by: Actor,
    pub active: bool,
}

/// A decision to record, with what it spends. The audit event is written in
/// the same transaction as the spending, so a counted call or a used approval
/// always has its decision on the log, and the reverse.
#[derive(Debug, Clone)]
pub struct DecisionWrite {
    pub id: DecisionId,
    pub task: TaskId,
    pub agent: AgentId,
    pub action: String,
    pub resource: String,
    pub verdict: Verdict,
    /// The decision as shown to callers (reasons, policy hash ...): the
    /// audit event's details, as JSON text (the caller serialises them once).
    pub details: Box<serde_json::value::RawValue>,
    /// When set and the task has a call limit: the call is counted only if
    /// fewer than this many were made, atomically.
    pub max_calls: Option<u64>,
    /// Whether this decision counts as a call (allowed decisions do).
    pub counts_call: bool,
    /// The amount (minor units) a counted call moves: charged to the task and
    /// every ancestor with a budget, only if each has room, atomically.
    pub spends: Option<u64>,
    /// An approved approval this decision spends (status approved -> used).
    pub spends_approval: Option<ApprovalId>,
    /// A new approval request this decision raises.
    pub raises_approval: Option<Approval>,
}

/// What recording a decision came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded with everything it spends.
    Done,
    /// Nothing written: the task has no calls left.
    OverLimit,
    /// Nothing written: the approval was spent (or changed) meanwhile.
    ApprovalSpent,
    /// Nothing written: the amount would exceed the budget of the task or of
    /// a task it was delegated from.
    OverBudget,
}

#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    pub status: Option<ApprovalStatus>,
    pub task: Option<TaskId>,
}

/// An outcome an agent reported, with everything the server established
/// about who stands behind it. The store decides the classification, under
/// the task tree's lock, from the task as it is at that moment.
#[derive(Debug, Clone)]
pub struct OutcomeWrite {
    pub id: OutcomeId,
    pub claim: Claim,
    pub task: TaskId,
    /// The reporting credential, by jti (revoked means not counted).
    pub jti: String,
    pub agent: AgentId,
    pub initiator: HumanId,
    pub owner: HumanId,
    /// The human initiator, then each agent hop.
    pub chain: Vec<String>,
    /// Gaps found in the chain (inactive initiator or owner ...), in words.
    pub chain_gaps: Vec<String>,
    pub currency: Currency,
    pub valuation: Valuation,
}

/// What reporting an outcome came to.
#[derive(Debug, Clone)]
pub struct OutcomeRecorded {
    /// This report as recorded (a retry is recorded as a `duplicate`).
    pub record: OutcomeRecord,
    /// For a retry: the first report of the key, which is the answer.
    pub first: Option<OutcomeRecord>,
}

/// A policy version becoming active, from the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyActivation {
    pub hash: String,
    pub at: Timestamp,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> Result<()>;

    // ---- installation -------------------------------------------------
    /// Records the installation, its first admin credential and signing key,
    /// with the `system.initialized` event. Refused if already initialised.
    async fn initialize(
        &self,
        install: &Installation,
        admin: (AdminCredentialId, AdminSecretHash),
        key: &SigningKeyRecord,
    ) -> Result<()>;
    async fn installation(&self) -> Result<Option<Installation>>;
    async fn admin_credential(&self, id: AdminCredentialId) -> Result<Option<AdminSecretHash>>;
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;

    // ---- humans ---------------------------------------------------------
    async fn create_human(&self, change: &Change, id: HumanId, new: &NewHuman) -> Result<Human>;
    async fn human(&self, id: HumanId) -> Result<Option<Human>>;
    /// The human an external IdP knows as `subject` at `issuer`.
    async fn human_by_subject(&self, issuer: &str, subject: &str) -> Result<Option<Human>>;
    async fn list_humans(&self, filter: &HumanFilter, page: &PageRequest) -> Result<Page<Human>>;
    /// Deactivates a human; every agent they own becomes orphaned (the
    /// emergency path: posture reports the orphans).
    async fn deactivate_human(&self, change: &Change, id: HumanId) -> Result<Human>;
    /// Offboards a human: transfers or retires each agent they own as the
    /// plan says (it must name every one), then deactivates them, atomically.
    async fn offboard_human(
        &self,
        change: &Change,
        id: HumanId,
        plan: &[(AgentId, Disposition)],
    ) -> Result<Human>;

    // ---- agents ---------------------------------------------------------
    /// Registers an agent. Its owner must exist and be active, checked in the
    /// same transaction as the insert.
    async fn create_agent(
        &self,
        change: &Change,
        id: AgentId,
        spiffe_id: &SpiffeId,
        new: &NewAgent,
    ) -> Result<Agent>;
    async fn agent(&self, id: AgentId) -> Result<Option<Agent>>;
    async fn agent_by_name(&self, name: &AgentName) -> Result<Option<Agent>>;
    async fn list_agents(&self, filter: &AgentFilter, page: &PageRequest) -> Result<Page<Agent>>;
    /// The agents `filter` selects, with who delegates to them, what they
    /// were allowed to do, and what they hold at `now`.
    async fn inventory(
        &self,
        filter: &AgentFilter,
        page: &PageRequest,
        now: Timestamp,
    ) -> Result<Page<InventoryItem>>;
    async fn change_agent_lifecycle(
        &self,
        change: &Change,
        id: AgentId,
        op: Lifecycle,
    ) -> Result<Agent>;
    async fn transfer_agent(
        &self,
        change: &Change,
        id: AgentId,
        new_owner: HumanId,
    ) -> Result<Agent>;
    async fn add_agent_key(&self, change: &Change, id: AgentId, key: &Ed25519Jwk) -> Result<Agent>;
    async fn remove_agent_key(&self, change: &Change, id: AgentId, kid: &str) -> Result<Agent>;

    // ---- credentials and tasks -------------------------------------------
    /// Trusts (or re-keys) an OIDC issuer whose ID tokens prove humans.
    async fn trust_issuer(
        &self,
        change: &Change,
        issuer: &str,
        jwks: &serde_json::Value,
    ) -> Result<()>;
    /// The JWKS of a trusted issuer.
    async fn trusted_issuer(&self, issuer: &str) -> Result<Option<serde_json::Value>>;
    /// Makes `key` the active signing key; the others stop signing now.
    async fn rotate_signing_key(&self, change: &Change, key: &SigningKeyRecord) -> Result<()>;
    /// Creates a task and its credential, consuming the single-use ids,
    /// re-checking inside the transaction that the assignee is active and the
    /// parent still open.
    async fn create_task(&self, change: &Change, new: &NewTask) -> Result<()>;
    async fn task(&self, id: TaskId) -> Result<Option<Task>>;
    /// Every task sharing `root`, parents before children.
    async fn task_tree(&self, root: TaskId) -> Result<Vec<Task>>;
    async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>>;
    async fn credential(&self, jti: &str) -> Result<Option<CredentialRecord>>;
    /// Ends an open task and every open descendant, revoking their
    /// credentials, with the audit events, in one transaction.
    async fn end_task(
        &self,
        change: &Change,
        id: TaskId,
        ending: Ending,
        reason: &str,
    ) -> Result<Ended>;
    /// Revokes one credential (RFC 7009). False if it was already revoked.
    async fn revoke_credential(&self, change: &Change, jti: &str) -> Result<bool>;
    /// Records a single-use id; refused if it was seen before.
    async fn consume_jti(&self, jti: &str, expires_at: Timestamp) -> Result<()>;

    /// Calls counted against the task's limit so far.
    async fn calls_used(&self, task: TaskId) -> Result<u64>;

    /// Everything a decision under `task`'s token `jti` reads, in one
    /// statement: the credential, the task and its ancestors with their
    /// assignees, the calls used and the active policy's hash. `None` when
    /// the task is not stored. Always what is stored when it reads
    /// (whatever a backend reuses, it checks against the store first):
    /// revocations, task ends and policy pushes are seen at once.
    async fn decision_context(&self, jti: &str, task: TaskId) -> Result<Option<DecisionContext>>;

    // ---- policy ---------------------------------------------------------
    /// Stores a validated policy set (if this hash is new) and makes it the
    /// active version, with its `policy.activated` event.
    async fn activate_policy(
        &self,
        change: &Change,
        hash: &str,
        text: &str,
    ) -> Result<PolicyVersion>;
    async fn active_policy(&self) -> Result<Option<PolicyVersion>>;
    /// Only the active version's hash: one small read, so every node can
    /// check on each decision that it decides under the set active now.
    async fn active_policy_hash(&self) -> Result<Option<String>>;
    /// A version by hash (a unique prefix of at least 8 hex digits also works).
    async fn policy_version(&self, hash: &str) -> Result<Option<PolicyVersion>>;
    /// Every version, newest first.
    async fn policy_versions(&self) -> Result<Vec<PolicyVersion>>;

    // ---- decisions, approvals, break-glass --------------------------------
    async fn record_decision(&self, change: &Change, d: &DecisionWrite) -> Result<Recorded>;
    async fn approval(&self, id: ApprovalId) -> Result<Option<Approval>>;
    /// The newest approval raised for exactly this request digest of `task`.
    async fn approval_for(&self, task: TaskId, digest: &str) -> Result<Option<Approval>>;
    async fn list_approvals(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>>;
    /// Records a human's answer to a pending approval (re-checked pending in
    /// the transaction), with its event.
    async fn answer_approval(
        &self,
        change: &Change,
        id: ApprovalId,
        approve: bool,
        by: HumanId,
        note: Option<&str>,
    ) -> Result<Approval>;
    async fn grant_breakglass(&self, change: &Change, grant: &BreakGlass) -> Result<()>;
    async fn breakglass(&self, id: BreakGlassId) -> Result<Option<BreakGlass>>;
    /// Every grant, newest first; only unreviewed ones when asked.
    async fn list_breakglass(&self, unreviewed_only: bool) -> Result<Vec<BreakGlass>>;
    /// Unexpired grants for `agent` at `now`.
    async fn active_breakglass(&self, agent: AgentId, now: Timestamp) -> Result<Vec<BreakGlass>>;
    async fn review_breakglass(
        &self,
        change: &Change,
        id: BreakGlassId,
        by: HumanId,
        note: &str,
    ) -> Result<BreakGlass>;

    // ---- outcomes ------------------------------------------------------
    /// Registers a workflow, or updates its definition (owner, baseline,
    /// value model); returns it and whether it was new.
    async fn register_workflow(
        &self,
        change: &Change,
        wf: &NewWorkflow,
    ) -> Result<(Workflow, bool)>;
    async fn workflow(&self, name: &WorkflowName) -> Result<Option<Workflow>>;
    async fn list_workflows(&self) -> Result<Vec<Workflow>>;
    /// Records an outcome with its `outcome.reported` event. A key already
    /// reported with the same claim records a duplicate and returns the first
    /// report; with a different claim it is refused (conflict), writing nothing.
    async fn record_outcome(&self, change: &Change, o: &OutcomeWrite) -> Result<OutcomeRecorded>;
    async fn outcome(&self, id: OutcomeId) -> Result<Option<OutcomeRecord>>;
    /// The audit entries of a workflow's outcomes reported in `period`, in
    /// log order, after leaf index `after`.
    async fn outcome_entries(
        &self,
        workflow: &WorkflowName,
        period: &Period,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredEntry>>;
    /// Sums of a workflow's outcomes reported in `period`, by agent,
    /// initiator and class.
    async fn outcome_tally(
        &self,
        workflow: &WorkflowName,
        period: &Period,
    ) -> Result<Vec<TallyRow>>;
    /// Recomputes the per-day sums from the outcomes (repair, bulk loads).
    async fn rebuild_outcome_rollup(&self) -> Result<()>;
    // ---- gateway --------------------------------------------------------
    /// Stores a downstream secret, or rotates it (a new value, version + 1),
    /// with its `secret.stored` or `secret.rotated` event (never the value).
    async fn store_secret(&self, change: &Change, secret: &SealedSecret) -> Result<SecretInfo>;
    async fn secret(&self, name: &SecretName) -> Result<Option<(SealedSecret, SecretInfo)>>;
    async fn list_secrets(&self) -> Result<Vec<SecretInfo>>;
    // ---- access reviews -------------------------------------------------
    /// Opens a campaign (`review.started`).
    async fn start_review(&self, change: &Change, review: &Review) -> Result<()>;
    async fn review(&self, id: ReviewId) -> Result<Option<Review>>;
    /// Newest first.
    async fn list_reviews(&self, filter: &ReviewFilter) -> Result<Vec<Review>>;
    /// Records one owner decision and applies it in the same transaction:
    /// a reduction replaces the ceiling and revokes the agent's open tasks
    /// the new ceiling no longer covers; a retirement retires the agent.
    /// `review.decided` (and `agent.retired`, `task.revoked`) are appended.
    async fn decide_review(&self, change: &Change, d: &ReviewAnswer) -> Result<Review>;
    /// Appends what became of a call through the gateway (`gateway.call`);
    /// returns its leaf index.
    async fn record_tool_call(&self, change: &Change, call: &ToolCall) -> Result<u64>;

    /// Every policy activation, oldest first.
    async fn policy_activations(&self) -> Result<Vec<PolicyActivation>>;

    // ---- audit ----------------------------------------------------------
    async fn audit_len(&self) -> Result<u64>;
    /// One past the highest leaf index (the log's size when no entry is
    /// missing): one index lookup, where [`Store::audit_len`] counts rows.
    async fn audit_end(&self) -> Result<u64>;
    /// Entries with index >= `from`, in order, at most `limit`.
    async fn audit_entries(&self, from: u64, limit: u32) -> Result<Vec<StoredEntry>>;
    /// The leaf hashes of those entries alone: what keeping a Merkle tree in
    /// step needs, without reading and decoding every entry's text.
    async fn audit_leaf_hashes(&self, from: u64, limit: u32) -> Result<Vec<Hash>>;
    /// The entries at these leaf indexes (missing ones are left out).
    async fn audit_entries_at(&self, indexes: &[u64]) -> Result<Vec<StoredEntry>>;
    /// Entries that name `agent`, newest first, with index < `before` (all
    /// when none), at most `limit`: an index lookup, not a scan of the log.
    async fn audit_entries_by_agent(
        &self,
        agent: AgentId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredEntry>>;
    /// Entries that name `task` (its creation, what happened under it, its
    /// end), in log order, with index >= `from`, at most `limit`: an index
    /// lookup.
    async fn audit_entries_by_task(
        &self,
        task: TaskId,
        from: u64,
        limit: u32,
    ) -> Result<Vec<StoredEntry>>;
    /// Entries that name a task of the tree rooted at `root` (every task
    /// whose creation entry names `root` as its root), in log order, with
    /// `from <= index < before`, at most `limit`: index lookups, not a scan.
    async fn audit_entries_by_tree(
        &self,
        root: TaskId,
        from: u64,
        before: u64,
        limit: u32,
    ) -> Result<Vec<StoredEntry>>;
    /// The registration entries (`human.registered`) of `humans`, in log order.
    async fn audit_registrations(&self, humans: &[HumanId]) -> Result<Vec<StoredEntry>>;
    /// Stores a checkpoint; a second one for the same size is ignored.
    async fn add_checkpoint(&self, cp: &SignedCheckpoint, at: Timestamp) -> Result<()>;
    async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>>;
}
