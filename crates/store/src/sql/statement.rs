//! A statement with its values, runnable on either kind of connection.
//!
//! A batch's closing writes (its counts and audit rows, see `group`) run
//! through sqlx inside a batch that also holds guarded writes, and on an
//! SQLite file through SQLite's own API when the batch is only appends
//! (`direct`). Both run the statements built here, so the two paths cannot
//! write different rows.

use std::borrow::Cow;

use sqlx::AnyConnection;

use super::sqlite::sqlite_error;
use super::{db_error, values_sql};
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
    pub(crate) sql: Sql,
    pub(crate) values: Vec<Value<'a>>,
}

/// A statement's text.
pub(crate) enum Sql {
    /// As written.
    Plain(String),
    /// An INSERT of many rows: `head`, then `columns` placeholders for each
    /// row, then `tail`. Through sqlx it is one statement for all the rows
    /// (one round trip); through SQLite's own API, the one-row statement,
    /// prepared once and run for each row, where the n-row text would be
    /// parsed again for every new n.
    Rows {
        head: &'static str,
        columns: usize,
        tail: String,
        sqlite: bool,
    },
}

impl Statement<'_> {
    /// Runs it through sqlx.
    pub(crate) async fn run(&self, conn: &mut AnyConnection) -> Result<()> {
        let sql = match &self.sql {
            Sql::Plain(sql) => Cow::Borrowed(sql.as_str()),
            Sql::Rows {
                head,
                columns,
                tail,
                sqlite,
            } => Cow::Owned(format!(
                "{head}{}{tail}",
                values_sql(self.values.len() / columns, *columns, *sqlite)
            )),
        };
        // Only placeholders and fixed names are formatted into statements here.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_ref()));
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
        let (sql, columns) = match &self.sql {
            Sql::Plain(sql) => {
                let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
                stmt.execute(rusqlite::params_from_iter(&self.values))
                    .map_err(sqlite_error)?;
                return Ok(());
            }
            Sql::Rows {
                head,
                columns,
                tail,
                ..
            } => (
                format!("{head}{}{tail}", values_sql(1, *columns, true)),
                *columns,
            ),
        };
        let mut stmt = conn.prepare_cached(&sql).map_err(sqlite_error)?;
        for row in self.values.chunks(columns) {
            stmt.execute(rusqlite::params_from_iter(row))
                .map_err(sqlite_error)?;
        }
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
