//! Fresh stores for tests: a SQLite file in a temporary directory, or a new
//! schema in the PostgreSQL named by `MANDATE_TEST_DATABASE_URL`.
//!
//! A missing PostgreSQL URL is a test failure, never a skip: a suite that
//! silently ran one backend would claim a guarantee it did not check.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::AssertSqlSafe;

use crate::{Backend, SqlStore};

pub const PG_URL_VAR: &str = "MANDATE_TEST_DATABASE_URL";

/// A store that lives as long as this value.
pub struct TestStore {
    pub store: Arc<SqlStore>,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL schema of this store.
    schema: Option<String>,
}

impl TestStore {
    /// A second store on the same database, as a restarted server opens it
    /// (pending migrations run).
    pub async fn reopen(&self) -> Arc<SqlStore> {
        let store = match &self._dir {
            Some(dir) => SqlStore::open_sqlite(dir.path()).await,
            None => SqlStore::connect(&postgres_url(), self.schema.as_deref()).await,
        };
        Arc::new(store.expect("reopen the test store"))
    }

    /// Puts the audit log back as it was before migration 10 (`idx` not
    /// SQLite's rowid, an index by human, every row in the root index, and
    /// none of the later migrations' indexes) and forgets the migrations
    /// from 10 on, so the next [`TestStore::reopen`] upgrades it.
    pub async fn undo_migration_10(&self) {
        let sql = match self.backend {
            Backend::Sqlite => {
                "CREATE TABLE audit_log_v9 (idx BIGINT PRIMARY KEY, kind TEXT NOT NULL, \
                   at BIGINT NOT NULL, agent_id TEXT, human_id TEXT, leaf_hash TEXT NOT NULL, \
                   entry TEXT NOT NULL, task_id TEXT, root_id TEXT); \
                 INSERT INTO audit_log_v9 SELECT idx, kind, at, agent_id, human_id, leaf_hash, \
                   entry, task_id, root_id FROM audit_log; \
                 DROP TABLE audit_log; \
                 ALTER TABLE audit_log_v9 RENAME TO audit_log; \
                 CREATE INDEX audit_log_by_agent ON audit_log (agent_id); \
                 CREATE INDEX audit_log_by_human ON audit_log (human_id); \
                 CREATE INDEX audit_log_registrations ON audit_log (human_id, kind) \
                   WHERE kind = 'human.registered'; \
                 CREATE INDEX audit_log_by_task ON audit_log (task_id, idx); \
                 CREATE INDEX audit_log_by_root ON audit_log (root_id);"
            }
            Backend::Postgres => {
                "DROP INDEX audit_log_by_root; \
                 DROP INDEX audit_log_policy_activations; \
                 CREATE INDEX audit_log_by_root ON audit_log (root_id); \
                 CREATE INDEX audit_log_by_human ON audit_log (human_id);"
            }
        };
        execute_raw(&self.store, sql).await;
        execute_raw(
            &self.store,
            "DELETE FROM _sqlx_migrations WHERE version >= 10",
        )
        .await;
    }

    /// Whether the audit log's key is SQLite's rowid (no separate unique
    /// index on `idx`); always so on PostgreSQL, where the question does not arise.
    pub async fn audit_key_is_rowid(store: &SqlStore) -> bool {
        if crate::Store::backend(store) == Backend::Postgres {
            return true;
        }
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE tbl_name = 'audit_log' \
             AND name LIKE 'sqlite_autoindex_audit_log%'",
        )
        .fetch_one(store.pool())
        .await
        .expect("read SQLite's schema");
        n == 0
    }

    /// Holds the log's write lock from outside this store, as another
    /// process's writer would on SQLite (`BEGIN IMMEDIATE` on the same file)
    /// or another node's batch on PostgreSQL (the audit advisory lock),
    /// until [`LockHolder::release`]: writes of this store queue behind it.
    pub async fn hold_write_lock(&self) -> LockHolder {
        use sqlx::Connection;
        let (url, take) = match &self._dir {
            Some(dir) => (
                format!("sqlite://{}", dir.path().join("mandate.db").display()),
                "BEGIN IMMEDIATE".to_owned(),
            ),
            None => (
                postgres_url(),
                format!("SELECT pg_advisory_lock({})", crate::sql::AUDIT_LOCK),
            ),
        };
        let mut conn = sqlx::AnyConnection::connect(&url)
            .await
            .expect("a second connection to the test database");
        sqlx::raw_sql(AssertSqlSafe(take))
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        LockHolder {
            conn,
            sqlite: self._dir.is_some(),
        }
    }
}

/// See [`TestStore::hold_write_lock`].
pub struct LockHolder {
    conn: sqlx::AnyConnection,
    sqlite: bool,
}

impl LockHolder {
    pub async fn release(mut self) {
        let free = if self.sqlite {
            "ROLLBACK".to_owned()
        } else {
            format!("SELECT pg_advisory_unlock({})", crate::sql::AUDIT_LOCK)
        };
        sqlx::raw_sql(AssertSqlSafe(free))
            .execute(&mut self.conn)
            .await
            .expect("release the write lock");
    }
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqlStore::open_sqlite(dir.path())
        .await
        .expect("open sqlite store");
    TestStore {
        store: Arc::new(store),
        backend: Backend::Sqlite,
        _dir: Some(dir),
        schema: None,
    }
}

pub fn postgres_url() -> String {
    std::env::var(PG_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{PG_URL_VAR} is not set: the PostgreSQL half of the suite cannot run. \
             Set it, e.g. {PG_URL_VAR}=postgres://postgres@127.0.0.1:5432/test"
        )
    })
}

/// A fresh schema per call, so concurrent tests and runs never collide.
pub async fn postgres() -> TestStore {
    let url = postgres_url();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    // The clock alone is not unique: tests of one process start in the
    // same tick often enough (two got one schema, and one saw the other's
    // rows), so a process-wide count goes in too.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let schema = format!(
        "mandate_t_{}_{:08x}_{n}",
        now.as_secs(),
        now.subsec_nanos() ^ std::process::id()
    );
    let store = SqlStore::connect(&url, Some(&schema))
        .await
        .expect("connect to the test PostgreSQL");
    drop_stale_schemas(&store, now.as_secs()).await;
    TestStore {
        store: Arc::new(store),
        backend: Backend::Postgres,
        _dir: None,
        schema: Some(schema),
    }
}

pub async fn store(backend: Backend) -> TestStore {
    match backend {
        Backend::Sqlite => sqlite().await,
        Backend::Postgres => postgres().await,
    }
}

/// Test schemas older than an hour are from finished runs.
async fn drop_stale_schemas(store: &SqlStore, now: u64) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mandate\\_t\\_%'")
            .fetch_all(store.pool())
            .await
            .unwrap_or_default();
    for n in names {
        let started = n
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(now);
        if started + 3600 < now {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {n} CASCADE")))
                .execute(store.pool())
                .await;
        }
    }
}

/// Runs raw SQL against a test store: how tamper tests play the attacker
/// with direct database access.
pub async fn execute_raw(store: &SqlStore, sql: &str) -> u64 {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("raw SQL failed: {sql}: {e}"))
        .rows_affected()
}

/// The first column of each row `sql` reads, as text (SQLite's
/// `CAST(... AS TEXT)` for numbers).
pub async fn fetch_raw(store: &SqlStore, sql: &str) -> Vec<String> {
    sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
        .fetch_all(store.pool())
        .await
        .unwrap_or_else(|e| panic!("raw SQL failed: {sql}: {e}"))
}

/// Fills the audit log's `task_id` and `root_id` columns from the entries
/// again, as migration 9 does for a log written before them.
pub async fn refill_audit_task_columns(store: &SqlStore) {
    execute_raw(
        store,
        crate::sql::audit_task_backfill(crate::Store::backend(store)),
    )
    .await;
}

/// Runs each listed `async fn(TestStore)` once per backend, as
/// `sqlite::<case>` and `postgres::<case>`, so test output shows both ran.
#[macro_export]
macro_rules! backend_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $case() {
                super::$case($crate::testing::store($crate::Backend::Sqlite).await).await
            } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $case() {
                super::$case($crate::testing::store($crate::Backend::Postgres).await).await
            } )*
        }
    };
}
