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
use super::{db_error, is_sqlite, values_sql};
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
    /// row (in the connection's dialect), then `tail`. Through sqlx it is one
    /// statement for all the rows (one round trip). Through SQLite's own API
    /// it is split into INSERTs of a few fixed row counts ([`ROWS_AT_ONCE`]),
    /// each prepared once per connection: the n-row text for every new n was
    /// parsed again, a tenth of a batch's write.
    Rows {
        head: &'static str,
        columns: usize,
        tail: String,
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
            } => Cow::Owned(format!(
                "{head}{}{tail}",
                values_sql(self.values.len() / columns, *columns, is_sqlite(conn))
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
        let (head, columns, tail) = match &self.sql {
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
            } => (head, *columns, tail),
        };
        let mut rest = self.values.as_slice();
        for rows in ROWS_AT_ONCE {
            let width = rows * columns;
            if rest.len() < width {
                continue;
            }
            let sql = format!("{head}{}{tail}", values_sql(rows, columns, true));
            let mut stmt = conn.prepare_cached(&sql).map_err(sqlite_error)?;
            while rest.len() >= width {
                let (now, later) = rest.split_at(width);
                stmt.execute(rusqlite::params_from_iter(now))
                    .map_err(sqlite_error)?;
                rest = later;
            }
        }
        Ok(())
    }
}

/// The row counts of the INSERTs an n-row [`Sql::Rows`] is split into on
/// SQLite, largest first: few enough texts to stay in the connection's
/// statement cache (so none is parsed twice), large enough that a big batch
/// runs few statements. The last is 1, so every n splits exactly.
const ROWS_AT_ONCE: [usize; 5] = [256, 64, 16, 4, 1];

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

#[cfg(test)]
mod tests {
    use super::*;

    /// However many rows, each is inserted once, in order, whatever sizes
    /// the split takes.
    #[test]
    fn every_row_count_splits_exactly() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n BIGINT NOT NULL, label TEXT)")
            .unwrap();
        let mut next = 0i64;
        for rows in (0..=600).chain([1023, 1024, 1025]) {
            let first = next;
            let mut values = Vec::new();
            for _ in 0..rows {
                values.extend([Value::Int(next), Value::owned(format!("row {next}"))]);
                next += 1;
            }
            let statement = Statement {
                sql: Sql::Rows {
                    head: "INSERT INTO t (n, label) VALUES ",
                    columns: 2,
                    tail: String::new(),
                },
                values,
            };
            statement.run_sqlite(&conn).unwrap();
            let (count, min, max, labelled): (i64, Option<i64>, Option<i64>, i64) = conn
                .query_row(
                    "SELECT COUNT(*), MIN(n), MAX(n), \
                     SUM(label = 'row ' || n) FROM t WHERE n >= ?1",
                    [first],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3).unwrap_or(0))),
                )
                .unwrap();
            assert_eq!(count, rows as i64, "{rows} rows");
            assert_eq!(labelled, rows as i64, "{rows} rows: each value in its row");
            if rows > 0 {
                assert_eq!((min, max), (Some(first), Some(next - 1)), "{rows} rows");
            }
        }
        // Its rowids follow the values' order: the rows went in in order.
        let out_of_order: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM t a JOIN t b ON b.rowid = a.rowid + 1 WHERE b.n <= a.n",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(out_of_order, 0);
    }
}
