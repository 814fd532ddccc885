//! A statement with its values, runnable on either kind of connection.
//!
//! A batch's closing writes (its counts and audit rows, see `group`) run
//! through sqlx inside a batch that also holds guarded writes, and on an
//! SQLite file through SQLite's own API when the batch is only appends
//! (`direct`). Both run the statements built here, so the two paths cannot
//! write different rows.

use std::borrow::Cow;

use sqlx::AnyConnection;

use super::db_error;
use super::sqlite::sqlite_error;
use crate::Result;

/// One bound value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Int(i64),
    Text(Option<Cow<'a, str>>),
}

impl<'a> Value<'a> {
    pub(crate) fn text(t: &'a str) -> Self {
        Value::Text(Some(Cow::Borrowed(t)))
    }

    pub(crate) fn opt_text(t: Option<&'a str>) -> Self {
        Value::Text(t.map(Cow::Borrowed))
    }

    pub(crate) fn owned(t: String) -> Self {
        Value::Text(Some(Cow::Owned(t)))
    }
}

/// SQL text and its values in placeholder order.
pub(crate) struct Statement<'a> {
    pub(crate) sql: String,
    pub(crate) values: Vec<Value<'a>>,
}

impl Statement<'_> {
    /// Runs it through sqlx.
    pub(crate) async fn run(&self, conn: &mut AnyConnection) -> Result<()> {
        // Only placeholders and fixed names are formatted into statements here.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql.as_str()));
        for v in &self.values {
            q = match v {
                Value::Int(i) => q.bind(*i),
                Value::Text(t) => q.bind(t.as_deref()),
            };
        }
        q.execute(conn).await.map_err(db_error)?;
        Ok(())
    }

    /// Runs it on an SQLite connection of this process.
    pub(crate) fn run_sqlite(&self, conn: &rusqlite::Connection) -> Result<()> {
        let mut stmt = conn.prepare_cached(&self.sql).map_err(sqlite_error)?;
        stmt.execute(rusqlite::params_from_iter(&self.values))
            .map_err(sqlite_error)?;
        Ok(())
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput;
        match self {
            Value::Int(i) => i.to_sql(),
            Value::Text(None) => Ok(ToSqlOutput::from(rusqlite::types::Null)),
            Value::Text(Some(t)) => Ok(ToSqlOutput::from(t.as_ref())),
        }
    }
}
