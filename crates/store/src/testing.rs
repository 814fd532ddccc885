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
}

impl TestStore {
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
    let schema = format!(
        "mandate_t_{}_{:08x}",
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
