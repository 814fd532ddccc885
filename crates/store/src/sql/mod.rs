//! The SQL implementation of [`Store`], shared by both backends.
//!
//! sqlx's `Any` driver runs the same portable SQL on SQLite and PostgreSQL;
//! the few real differences (how writers are serialised) are in
//! [`Dialect`]-dependent branches here rather than in two copies of every
//! query.

mod audit;
mod checkpoint;
#[cfg(feature = "testing")]
pub(crate) use audit::AUDIT_LOCK;
mod context;
mod convert;
mod decisions;
mod direct;
mod gateway;
mod group;
mod inventory;
mod outcomes;
mod readers;
mod registry;
mod reviews;
mod sqlite;
mod statement;
mod tally;
mod tasks;

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::AnyConnection;
use sqlx::AnyPool;
use sqlx::ConnectOptions;
use sqlx::SqlSafeStr;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::*;

/// Migrations compiled into the binary; the SQL is portable to both backends.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "registry and audit",
        include_str!("../../migrations/0001_registry_and_audit.sql"),
    ),
    (
        2,
        "tasks and credentials",
        include_str!("../../migrations/0002_tasks_and_credentials.sql"),
    ),
    (
        3,
        "decisions and approvals",
        include_str!("../../migrations/0003_decisions_and_approvals.sql"),
    ),
    (
        4,
        "outcomes",
        include_str!("../../migrations/0004_outcomes.sql"),
    ),
    (
        5,
        "task budgets",
        include_str!("../../migrations/0005_task_budgets.sql"),
    ),
    (
        6,
        "gateway",
        include_str!("../../migrations/0006_gateway.sql"),
    ),
    (
        7,
        "agent usage",
        include_str!("../../migrations/0007_agent_usage.sql"),
    ),
    (
        8,
        "access reviews",
        include_str!("../../migrations/0008_access_reviews.sql"),
    ),
    (
        9,
        "audit by task, approval context",
        include_str!("../../migrations/0009_audit_by_task.sql"),
    ),
    (
        10,
        "audit row layout",
        include_str!("../../migrations/0010_audit_row_layout.sql"),
    ),
    (
        11,
        "policy activations by index",
        include_str!("../../migrations/0011_policy_activations.sql"),
    ),
    (
        12,
        "decision context epoch",
        include_str!("../../migrations/0012_context_epoch.sql"),
    ),
];

/// The parts of migrations that cannot be portable (reading JSON in SQL,
/// triggers), by version: SQLite's, then PostgreSQL's. Each is run after
/// the portable part, in the same migration.
const DIALECT_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        9,
        include_str!("../../migrations/0009_audit_by_task.sqlite.sql"),
        include_str!("../../migrations/0009_audit_by_task.postgres.sql"),
    ),
    (
        10,
        include_str!("../../migrations/0010_audit_row_layout.sqlite.sql"),
        include_str!("../../migrations/0010_audit_row_layout.postgres.sql"),
    ),
    (
        12,
        include_str!("../../migrations/0012_context_epoch.sqlite.sql"),
        include_str!("../../migrations/0012_context_epoch.postgres.sql"),
    ),
];

/// The part of migration `version` written for `backend`, if it has one.
fn dialect_part(version: i64, backend: Backend) -> Option<&'static str> {
    DIALECT_MIGRATIONS
        .iter()
        .find(|(v, ..)| *v == version)
        .map(|(_, sqlite, postgres)| match backend {
            Backend::Sqlite => *sqlite,
            Backend::Postgres => *postgres,
        })
}

/// Migration 9's filling of the audit log's task columns from the entries
/// on `backend` (it may run again: its indexes are created if missing).
#[cfg(feature = "testing")]
pub(crate) fn audit_task_backfill(backend: Backend) -> &'static str {
    dialect_part(9, backend).expect("migration 9 has a part per backend")
}

/// Longest wait for a database connection before a request fails with
/// [`StoreError::Unavailable`] (503 with `Retry-After`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A statement slower than this is logged as a warning. sqlx's default, 1 s,
/// fires on a slow disk's first `PRAGMA journal_mode = WAL` at start-up, which
/// is nothing an operator can act on; a statement as slow as a request's own
/// time-out is.
const SLOW_STATEMENT: Duration = ACQUIRE_TIMEOUT;

/// A store on SQLite or PostgreSQL.
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Every write of this process goes through one group-committed
    /// transaction at a time (see [`group`]).
    writer: group::GroupWriter,
    /// Connections for the read every decision makes (see [`readers`]).
    readers: readers::Readers,
    /// Tasks this process has seen stored. Tasks are never deleted, so a
    /// task once found stays found, on any node: a decision under a known
    /// task needs no lookup to refuse an unknown one.
    known_tasks: std::sync::Mutex<std::collections::HashSet<mandate_core::ids::TaskId>>,
    /// Decision contexts read on an SQLite file, reused while they are
    /// what is stored (see `context`).
    recent: context::Recent,
}

/// Connections kept for decisions' reads, besides the pool's: about one per
/// core reading at a time, as more only queue in the database.
const READERS: usize = 4;

/// Bound on [`SqlStore::known_tasks`]: past it the set starts again (a task
/// forgotten is only looked up once more).
const KNOWN_TASKS: usize = 100_000;

/// An open write: a turn (a savepoint) in the group-committed transaction.
pub(crate) struct WriteTx<'a> {
    turn: group::Turn,
    pub(crate) backend: Backend,
    _store: std::marker::PhantomData<&'a SqlStore>,
}

impl WriteTx<'_> {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        self.turn.conn()
    }

    /// The batch's audit buffer, and the connection to read the log's tail.
    pub(crate) fn audit_buffer(&mut self) -> (&mut AnyConnection, &mut audit::AuditBuffer) {
        self.turn.audit()
    }

    /// Makes this batch's audit entries visible to a read in this transaction.
    pub(crate) async fn flush_audit(&mut self) -> Result<()> {
        self.turn.flush_audit().await
    }

    /// Abandons the write: nothing it did is kept. (Dropping does the same;
    /// this waits for it on PostgreSQL and says so at the call site.)
    pub(crate) async fn rollback(self) -> Result<()> {
        // The turn's `Drop` rolls back to its savepoint, leaving the rest of
        // the batch as it was.
        drop(self.turn);
        Ok(())
    }

    /// Returns once the write is durable; an error means it was not kept.
    pub(crate) async fn commit(self) -> Result<()> {
        self.turn.commit().await
    }
}

impl SqlStore {
    /// Opens (creating if needed) the embedded store in `data_dir`.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Internal(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join("mandate.db");
        Self::connect(&format!("sqlite://{}?mode=rwc", path.display()), None).await
    }

    /// Connects to a `sqlite://` or `postgres://` URL and applies migrations.
    /// With `schema`, PostgreSQL work happens inside that schema (created if
    /// missing), which is how tests get a fresh database each.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Internal(format!(
                "unsupported database URL {:?}: use sqlite://PATH or postgres://HOST/DB",
                redact_url(url)
            )));
        };
        if let Some(s) = schema
            && !s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(StoreError::Internal(format!("invalid schema name {s:?}")));
        }
        let schema = schema.map(str::to_owned);
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            // Bounds both the wait for a free connection and (re)connecting:
            // with the database down, sqlx retries refused connections until
            // this passes, so it is how long a request waits before its 503.
            // A database back within it is not noticed by clients at all;
            // a pool queue longer than this is an overload worth shedding.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // Testing a connection before handing it out pings it: a round
            // trip to the connection's worker thread on SQLite, where it can
            // find nothing (the database is a local file, and a crashed
            // worker fails the statement itself, 503). PostgreSQL connections
            // can go stale when the server restarts, so they are still tested.
            .test_before_acquire(backend != Backend::Sqlite)
            .after_connect(move |conn, _| {
                let schema = schema.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            // WAL for concurrent readers; FULL so an acknowledged
                            // commit survives a crash; FKs are off by default.
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = FULL",
                                "PRAGMA foreign_keys = ON",
                                "PRAGMA busy_timeout = 5000",
                            ] {
                                sqlx::raw_sql(pragma).execute(&mut *conn).await?;
                            }
                        }
                        Backend::Postgres => {
                            if let Some(s) = schema {
                                let sql = format!(
                                    "CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s}"
                                );
                                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                                    .execute(&mut *conn)
                                    .await?;
                            }
                        }
                    }
                    Ok(())
                })
            });
        let connect = url
            .parse::<AnyConnectOptions>()
            .map_err(db_error)?
            .log_slow_statements(::log::LevelFilter::Warn, SLOW_STATEMENT);
        let pool = options.connect_with(connect).await.map_err(db_error)?;
        let file = sqlite::file(&pool, backend).await?;
        let store = SqlStore {
            pool: pool.clone(),
            backend,
            writer: group::GroupWriter::new(
                pool.clone(),
                backend,
                file.clone().map(direct::Direct::new),
            ),
            readers: readers::Readers::new(&pool, file, READERS),
            known_tasks: Default::default(),
            recent: Default::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(v, d, sql)| {
                let sql = match dialect_part(*v, self.backend) {
                    None => sql.into_sql_str(),
                    // Only the compiled-in migration texts are joined.
                    Some(part) => sqlx::AssertSqlSafe(format!("{sql}\n{part}")).into_sql_str(),
                };
                Migration::new(*v, (*d).into(), MigrationType::Simple, sql, false)
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write: a turn in this process's group-committed transaction.
    pub(crate) async fn write(&self) -> Result<WriteTx<'_>> {
        Ok(WriteTx {
            turn: self.writer.turn(true).await?,
            backend: self.backend,
            _store: std::marker::PhantomData,
        })
    }

    /// Appends one audit event, with the counts of the plain decision it
    /// records if any (see [`tally`]), and changes nothing else; returns its
    /// index once durable. Such appends share one turn per batch and run no
    /// statement until the batch's COMMIT.
    pub(crate) async fn append_alone(
        &self,
        event: audit::Prepared,
        counted: Option<tally::Counted>,
    ) -> Result<u64> {
        self.writer.append(event, counted).await
    }

    /// Whether `task` was seen stored by this process.
    pub(crate) fn task_known(&self, task: mandate_core::ids::TaskId) -> bool {
        self.known_tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&task)
    }

    pub(crate) fn remember_task(&self, task: mandate_core::ids::TaskId) {
        let mut known = self.known_tasks.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= KNOWN_TASKS {
            known.clear();
        }
        known.insert(task);
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.readers.close();
        self.writer.close();
        self.pool.close().await;
    }
}

/// Whether `conn` is SQLite, for the few statements whose text differs.
pub(crate) fn is_sqlite(conn: &AnyConnection) -> bool {
    conn.backend_name() == "SQLite"
}

/// The `VALUES` list of a multi-row INSERT: `rows` tuples of `columns`
/// placeholders. SQLite gets anonymous `?` placeholders: the driver looks up
/// each numbered parameter's name with `sqlite3_bind_parameter_name`, a
/// linear scan, so `$n` made binding quadratic in the size of the statement
/// (a quarter of all CPU time under an append load). PostgreSQL needs `$n`.
pub(crate) fn values_sql(rows: usize, columns: usize, sqlite: bool) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(rows * columns * 6);
    for i in 0..rows {
        sql.push_str(if i > 0 { ",(" } else { "(" });
        for c in 0..columns {
            if c > 0 {
                sql.push(',');
            }
            if sqlite {
                sql.push('?');
            } else {
                let _ = write!(sql, "${}", i * columns + c + 1);
            }
        }
        sql.push(')');
    }
    sql
}

/// `$1`, `$2` ... for `n` parameters from `first` on, comma-separated: an
/// IN-list of bound values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Hides a password in a database URL before it goes into an error message.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Maps a driver error onto the store's error kinds.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Rule(
            RuleError::Conflict(format!("already exists: {}", d.message())),
        ),
        // PostgreSQL "admin shutdown" / "cannot connect now" during restarts.
        sqlx::Error::Database(d)
            if matches!(d.code().as_deref(), Some("57P01" | "57P02" | "57P03")) =>
        {
            StoreError::Unavailable(d.message().to_owned())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn initialize(
        &self,
        install: &Installation,
        admin: (AdminCredentialId, AdminSecretHash),
        key: &SigningKeyRecord,
    ) -> Result<()> {
        registry::initialize(self, install, admin, key).await
    }
    async fn installation(&self) -> Result<Option<Installation>> {
        registry::installation(self).await
    }
    async fn admin_credential(&self, id: AdminCredentialId) -> Result<Option<AdminSecretHash>> {
        registry::admin_credential(self, id).await
    }
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        registry::signing_keys(self).await
    }

    async fn create_human(&self, change: &Change, id: HumanId, new: &NewHuman) -> Result<Human> {
        registry::create_human(self, change, id, new).await
    }
    async fn human(&self, id: HumanId) -> Result<Option<Human>> {
        registry::human(&self.pool, id).await
    }
    async fn human_by_subject(&self, issuer: &str, subject: &str) -> Result<Option<Human>> {
        registry::human_by_subject(&self.pool, issuer, subject).await
    }
    async fn list_humans(&self, filter: &HumanFilter, page: &PageRequest) -> Result<Page<Human>> {
        registry::list_humans(self, filter, page).await
    }
    async fn deactivate_human(&self, change: &Change, id: HumanId) -> Result<Human> {
        registry::deactivate_human(self, change, id).await
    }
    async fn offboard_human(
        &self,
        change: &Change,
        id: HumanId,
        plan: &[(AgentId, Disposition)],
    ) -> Result<Human> {
        registry::offboard_human(self, change, id, plan).await
    }

    async fn create_agent(
        &self,
        change: &Change,
        id: AgentId,
        spiffe_id: &SpiffeId,
        new: &NewAgent,
    ) -> Result<Agent> {
        registry::create_agent(self, change, id, spiffe_id, new).await
    }
    async fn agent(&self, id: AgentId) -> Result<Option<Agent>> {
        registry::agent_where(&self.pool, "a.id", id.to_string(), "").await
    }
    async fn agent_by_name(&self, name: &AgentName) -> Result<Option<Agent>> {
        registry::agent_where(&self.pool, "a.name", name.to_string(), "").await
    }
    async fn list_agents(&self, filter: &AgentFilter, page: &PageRequest) -> Result<Page<Agent>> {
        registry::list_agents(self, filter, page).await
    }
    async fn inventory(
        &self,
        filter: &AgentFilter,
        page: &PageRequest,
        now: Timestamp,
    ) -> Result<Page<InventoryItem>> {
        inventory::inventory(self, filter, page, now).await
    }
    async fn change_agent_lifecycle(
        &self,
        change: &Change,
        id: AgentId,
        op: Lifecycle,
    ) -> Result<Agent> {
        registry::change_agent_lifecycle(self, change, id, op).await
    }
    async fn transfer_agent(
        &self,
        change: &Change,
        id: AgentId,
        new_owner: HumanId,
    ) -> Result<Agent> {
        registry::transfer_agent(self, change, id, new_owner).await
    }
    async fn add_agent_key(&self, change: &Change, id: AgentId, key: &Ed25519Jwk) -> Result<Agent> {
        registry::add_agent_key(self, change, id, key).await
    }
    async fn remove_agent_key(&self, change: &Change, id: AgentId, kid: &str) -> Result<Agent> {
        registry::remove_agent_key(self, change, id, kid).await
    }

    async fn trust_issuer(
        &self,
        change: &Change,
        issuer: &str,
        jwks: &serde_json::Value,
    ) -> Result<()> {
        tasks::trust_issuer(self, change, issuer, jwks).await
    }
    async fn trusted_issuer(&self, issuer: &str) -> Result<Option<serde_json::Value>> {
        tasks::trusted_issuer(&self.pool, issuer).await
    }
    async fn rotate_signing_key(&self, change: &Change, key: &SigningKeyRecord) -> Result<()> {
        tasks::rotate_signing_key(self, change, key).await
    }
    async fn create_task(&self, change: &Change, new: &NewTask) -> Result<()> {
        tasks::create_task(self, change, new).await
    }
    async fn task(&self, id: TaskId) -> Result<Option<Task>> {
        tasks::task(&self.pool, id).await
    }
    async fn task_tree(&self, root: TaskId) -> Result<Vec<Task>> {
        tasks::task_tree(&self.pool, root).await
    }
    async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
        tasks::list_tasks(self, filter, page).await
    }
    async fn credential(&self, jti: &str) -> Result<Option<CredentialRecord>> {
        tasks::credential(&self.pool, jti).await
    }
    async fn end_task(
        &self,
        change: &Change,
        id: TaskId,
        ending: Ending,
        reason: &str,
    ) -> Result<Ended> {
        tasks::end_task(self, change, id, ending, reason).await
    }
    async fn revoke_credential(&self, change: &Change, jti: &str) -> Result<bool> {
        tasks::revoke_credential(self, change, jti).await
    }
    async fn consume_jti(&self, jti: &str, expires_at: Timestamp) -> Result<()> {
        tasks::consume_jti(self, jti, expires_at).await
    }

    async fn calls_used(&self, task: TaskId) -> Result<u64> {
        decisions::calls_used(&self.pool, task).await
    }
    async fn decision_context(&self, jti: &str, task: TaskId) -> Result<Option<DecisionContext>> {
        let found = context::decision_context(&self.readers, &self.recent, jti, task).await?;
        if found.is_some() {
            // Stored for good: its decisions need no lookup to know it exists.
            self.remember_task(task);
        }
        Ok(found)
    }

    async fn activate_policy(
        &self,
        change: &Change,
        hash: &str,
        text: &str,
    ) -> Result<PolicyVersion> {
        decisions::activate_policy(self, change, hash, text).await
    }
    async fn active_policy(&self) -> Result<Option<PolicyVersion>> {
        decisions::active_policy(&self.pool).await
    }
    async fn active_policy_hash(&self) -> Result<Option<String>> {
        decisions::active_policy_hash(&self.pool).await
    }
    async fn policy_version(&self, hash: &str) -> Result<Option<PolicyVersion>> {
        decisions::policy_version(&self.pool, hash).await
    }
    async fn policy_versions(&self) -> Result<Vec<PolicyVersion>> {
        decisions::policy_versions(&self.pool).await
    }

    async fn record_decision(&self, change: &Change, d: &DecisionWrite) -> Result<Recorded> {
        decisions::record_decision(self, change, d).await
    }
    async fn approval(&self, id: ApprovalId) -> Result<Option<Approval>> {
        decisions::approval(&self.pool, id).await
    }
    async fn approval_for(&self, task: TaskId, digest: &str) -> Result<Option<Approval>> {
        decisions::approval_for(&self.pool, task, digest).await
    }
    async fn list_approvals(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>> {
        decisions::list_approvals(self, filter).await
    }
    async fn answer_approval(
        &self,
        change: &Change,
        id: ApprovalId,
        approve: bool,
        by: HumanId,
        note: Option<&str>,
    ) -> Result<Approval> {
        decisions::answer_approval(self, change, id, approve, by, note).await
    }
    async fn grant_breakglass(&self, change: &Change, grant: &BreakGlass) -> Result<()> {
        decisions::grant_breakglass(self, change, grant).await
    }
    async fn breakglass(&self, id: BreakGlassId) -> Result<Option<BreakGlass>> {
        decisions::breakglass(&self.pool, id).await
    }
    async fn list_breakglass(&self, unreviewed_only: bool) -> Result<Vec<BreakGlass>> {
        decisions::list_breakglass(&self.pool, unreviewed_only).await
    }
    async fn active_breakglass(&self, agent: AgentId, now: Timestamp) -> Result<Vec<BreakGlass>> {
        decisions::active_breakglass(&self.pool, agent, now).await
    }
    async fn review_breakglass(
        &self,
        change: &Change,
        id: BreakGlassId,
        by: HumanId,
        note: &str,
    ) -> Result<BreakGlass> {
        decisions::review_breakglass(self, change, id, by, note).await
    }

    async fn register_workflow(
        &self,
        change: &Change,
        wf: &NewWorkflow,
    ) -> Result<(Workflow, bool)> {
        outcomes::register_workflow(self, change, wf).await
    }
    async fn workflow(&self, name: &WorkflowName) -> Result<Option<Workflow>> {
        outcomes::workflow(&self.pool, name).await
    }
    async fn list_workflows(&self) -> Result<Vec<Workflow>> {
        outcomes::list_workflows(&self.pool).await
    }
    async fn record_outcome(&self, change: &Change, o: &OutcomeWrite) -> Result<OutcomeRecorded> {
        outcomes::record_outcome(self, change, o).await
    }
    async fn outcome(&self, id: OutcomeId) -> Result<Option<OutcomeRecord>> {
        outcomes::outcome(&self.pool, id).await
    }
    async fn outcome_entries(
        &self,
        workflow: &WorkflowName,
        period: &Period,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredEntry>> {
        outcomes::outcome_entries(&self.pool, workflow, period, after, limit).await
    }
    async fn outcome_tally(
        &self,
        workflow: &WorkflowName,
        period: &Period,
    ) -> Result<Vec<TallyRow>> {
        outcomes::outcome_tally(&self.pool, workflow, period).await
    }
    async fn rebuild_outcome_rollup(&self) -> Result<()> {
        outcomes::rebuild_outcome_rollup(self).await
    }
    async fn store_secret(&self, change: &Change, secret: &SealedSecret) -> Result<SecretInfo> {
        gateway::store_secret(self, change, secret).await
    }
    async fn secret(&self, name: &SecretName) -> Result<Option<(SealedSecret, SecretInfo)>> {
        gateway::secret(&self.pool, name).await
    }
    async fn list_secrets(&self) -> Result<Vec<SecretInfo>> {
        gateway::list_secrets(&self.pool).await
    }
    async fn start_review(&self, change: &Change, review: &Review) -> Result<()> {
        reviews::start_review(self, change, review).await
    }
    async fn review(&self, id: ReviewId) -> Result<Option<Review>> {
        reviews::review(&self.pool, id).await
    }
    async fn list_reviews(&self, filter: &ReviewFilter) -> Result<Vec<Review>> {
        reviews::list_reviews(self, filter).await
    }
    async fn decide_review(&self, change: &Change, d: &ReviewAnswer) -> Result<Review> {
        reviews::decide_review(self, change, d).await
    }
    async fn record_tool_call(&self, change: &Change, call: &ToolCall) -> Result<u64> {
        gateway::record_tool_call(self, change, call).await
    }
    async fn policy_activations(&self) -> Result<Vec<PolicyActivation>> {
        outcomes::policy_activations(&self.pool).await
    }
    async fn audit_entries_at(&self, indexes: &[u64]) -> Result<Vec<StoredEntry>> {
        audit::entries_at(&self.pool, indexes).await
    }

    async fn audit_len(&self) -> Result<u64> {
        audit::len(&self.pool).await
    }
    async fn audit_end(&self) -> Result<u64> {
        audit::end(&self.pool).await
    }
    async fn audit_entries(&self, from: u64, limit: u32) -> Result<Vec<StoredEntry>> {
        audit::entries(&self.pool, from, limit).await
    }
    async fn audit_leaf_hashes(&self, from: u64, limit: u32) -> Result<Vec<Hash>> {
        audit::leaf_hashes(&self.pool, from, limit).await
    }
    async fn audit_entries_by_agent(
        &self,
        agent: AgentId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredEntry>> {
        audit::entries_by_agent(&self.pool, agent, before, limit).await
    }
    async fn audit_entries_by_task(
        &self,
        task: TaskId,
        from: u64,
        limit: u32,
    ) -> Result<Vec<StoredEntry>> {
        audit::entries_by_task(&self.pool, task, from, limit).await
    }
    async fn audit_entries_by_tree(
        &self,
        root: TaskId,
        from: u64,
        before: u64,
        limit: u32,
    ) -> Result<Vec<StoredEntry>> {
        audit::entries_by_tree(&self.pool, root, from, before, limit).await
    }
    async fn audit_registrations(&self, humans: &[HumanId]) -> Result<Vec<StoredEntry>> {
        audit::registrations(&self.pool, humans).await
    }
    async fn add_checkpoint(&self, cp: &SignedCheckpoint, at: Timestamp) -> Result<()> {
        audit::add_checkpoint(self, cp, at).await
    }
    async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>> {
        audit::checkpoints(&self.pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }
}
