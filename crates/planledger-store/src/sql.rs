//! Statements written once for both backends, run by the store on whichever the log is.
//!
//! A crate above the store writes its statement in PostgreSQL's SQL with three conventions, and
//! the store reads it as SQLite does when the log is SQLite:
//!
//! - placeholders are `$n`; SQLite reads `?n` (the same numbering);
//! - `@name` is a time column: `name` (`timestamptz`) on PostgreSQL, `name_us` (integer
//!   microseconds since the epoch) on SQLite, the schemas' one naming difference; a time is
//!   bound as a [`Value::Time`] and read as [`Kind::Time`], whichever it is;
//! - `= ANY($n)` with a [`Value::List`]: PostgreSQL binds an array, SQLite reads
//!   `IN (SELECT value FROM json_each(?n))` of a JSON array;
//! - `now()` is the database's clock (so that nodes with skewed clocks agree), and
//!   `seconds($n)` a span of `$n` seconds to add to or subtract from a time: SQLite reads them
//!   in microseconds.
//!
//! No `::` casts (`CAST(x AS text)` reads the same on both). Rows come back as [`Row`]s of the
//! [`Kind`]s asked for. This is how no crate above the store names a backend.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use crate::rows::{Kind, Value};
use crate::{AnyEventLog, AnyTx, StoreError};

/// A statement and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    sql: Cow<'static, str>,
    args: Vec<Value>,
}

impl Statement {
    pub fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Self { sql: sql.into(), args: Vec::new() }
    }

    /// Binds the next `$n`.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    fn text(&self, sqlite: bool) -> Cow<'_, str> {
        if sqlite {
            Cow::Owned(sqlite_text(&self.sql))
        } else {
            pg_text(&self.sql)
        }
    }

    fn pg_query<'q>(&self, sql: &'q str) -> crate::PgQuery<'q> {
        // The arguments are bound as owned values: the query borrows only the text.
        self.args.iter().fold(sqlx::query(sql), crate::rows::bind_pg_value)
    }

    fn sqlite_query<'q>(&self, sql: &'q str) -> crate::rows::SqliteQuery<'q> {
        self.args.iter().fold(sqlx::query(sql), crate::rows::bind_sqlite_value)
    }
}

/// `seconds($n)` at the start of `rest`: the placeholder's number and the token's length.
fn seconds_token(rest: &str) -> Option<(&str, usize)> {
    let after = rest.strip_prefix("seconds($")?;
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0 && after[digits..].starts_with(')')).then(|| (&after[..digits], "seconds($".len() + digits + 1))
}

/// The statement as PostgreSQL reads it.
pub(crate) fn pg_text(sql: &str) -> Cow<'_, str> {
    if !sql.contains('@') && !sql.contains("seconds($") {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut i = 0;
    while i < sql.len() {
        let rest = &sql[i..];
        if let Some((n, len)) = seconds_token(rest) {
            out.push_str(&format!("(${n} * interval '1 second')"));
            i += len;
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        if c != '@' {
            out.push(c);
        }
        i += c.len_utf8();
    }
    Cow::Owned(out)
}

/// The statement as SQLite reads it.
pub(crate) fn sqlite_text(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < sql.len() {
        let rest = &sql[i..];
        if let Some((n, len)) = seconds_token(rest) {
            out.push_str(&format!("(?{n} * 1000000)"));
            i += len;
            continue;
        }
        if rest.starts_with("now()") {
            out.push_str(crate::SQLITE_NOW_US);
            i += "now()".len();
            continue;
        }
        if let Some(after) = rest.strip_prefix("= ANY($") {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 && after[digits..].starts_with(')') {
                out.push_str("IN (SELECT value FROM json_each(?");
                out.push_str(&after[..digits]);
                out.push_str("))");
                i += "= ANY($".len() + digits + 1;
                continue;
            }
        }
        match bytes[i] {
            b'$' => out.push('?'),
            b'@' => {
                let name_len = rest[1..].bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
                out.push_str(&rest[1..=name_len]);
                out.push_str("_us");
                i += 1 + name_len;
                continue;
            }
            _ => {
                let c = rest.chars().next().unwrap_or_default();
                out.push(c);
                i += c.len_utf8();
                continue;
            }
        }
        i += 1;
    }
    out
}

/// One row read back, of the kinds asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

fn missing(i: usize, what: &str) -> StoreError {
    StoreError::Corrupt(format!("column {i} of a row is not {what}"))
}

impl Row {
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.0.get(i) {
            Some(Value::Text(text)) => Ok(text.clone()),
            Some(Value::Json(json)) => Ok(Some(json.clone())),
            _ => Err(missing(i, "text")),
        }
    }
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or_else(|| missing(i, "text (it is null)"))
    }
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.0.get(i) {
            Some(Value::Int(n)) => Ok(*n),
            _ => Err(missing(i, "an integer")),
        }
    }
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.ok_or_else(|| missing(i, "an integer (it is null)"))
    }
    pub fn bool(&self, i: usize) -> Result<bool, StoreError> {
        match self.0.get(i) {
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(missing(i, "a flag")),
        }
    }
    pub fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.0.get(i) {
            Some(Value::Time(at)) => Ok(*at),
            _ => Err(missing(i, "a time")),
        }
    }
    pub fn time(&self, i: usize) -> Result<DateTime<Utc>, StoreError> {
        self.opt_time(i)?.ok_or_else(|| missing(i, "a time (it is null)"))
    }
    pub fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.0.get(i) {
            Some(Value::Bytes(bytes)) => Ok(bytes.clone()),
            _ => Err(missing(i, "bytes")),
        }
    }
    pub fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        self.opt_bytes(i)?.ok_or_else(|| missing(i, "bytes (it is null)"))
    }
}

fn pg_value(row: &sqlx::postgres::PgRow, i: usize, kind: Kind) -> Result<Value, StoreError> {
    Ok(match kind {
        Kind::Text => Value::Text(row.try_get(i)?),
        Kind::Int => Value::Int(match row.try_get::<Option<i64>, _>(i) {
            Ok(n) => n,
            Err(_) => match row.try_get::<Option<i32>, _>(i) {
                Ok(n) => n.map(i64::from),
                Err(_) => row.try_get::<Option<i16>, _>(i)?.map(i64::from),
            },
        }),
        Kind::Bool => Value::Bool(row.try_get(i)?),
        Kind::Time => Value::Time(row.try_get(i)?),
        Kind::Json => match row.try_get::<Option<sqlx::types::Json<Box<serde_json::value::RawValue>>>, _>(i) {
            Ok(json) => Value::Json(json.map(|j| j.0.get().to_owned()).unwrap_or_else(|| "null".to_owned())),
            Err(_) => Value::Json(row.try_get::<Option<String>, _>(i)?.unwrap_or_else(|| "null".to_owned())),
        },
        Kind::Bytes => Value::Bytes(row.try_get(i)?),
    })
}

fn sqlite_value(row: &sqlx::sqlite::SqliteRow, i: usize, kind: Kind) -> Result<Value, StoreError> {
    Ok(match kind {
        Kind::Text => Value::Text(row.try_get(i)?),
        Kind::Int => Value::Int(row.try_get(i)?),
        Kind::Bool => Value::Bool(row.try_get(i)?),
        Kind::Time => Value::Time(match row.try_get::<Option<i64>, _>(i)? {
            None => None,
            Some(us) => Some(crate::sqlite::from_micros(us)?),
        }),
        Kind::Json => Value::Json(row.try_get::<Option<String>, _>(i)?.unwrap_or_else(|| "null".to_owned())),
        Kind::Bytes => Value::Bytes(row.try_get(i)?),
    })
}

fn pg_row(row: &sqlx::postgres::PgRow, kinds: &[Kind]) -> Result<Row, StoreError> {
    kinds.iter().enumerate().map(|(i, kind)| pg_value(row, i, *kind)).collect::<Result<_, _>>().map(Row)
}

fn sqlite_row(row: &sqlx::sqlite::SqliteRow, kinds: &[Kind]) -> Result<Row, StoreError> {
    kinds.iter().enumerate().map(|(i, kind)| sqlite_value(row, i, *kind)).collect::<Result<_, _>>().map(Row)
}

impl AnyEventLog {
    /// Runs a statement that writes, in a transaction of its own (PostgreSQL: the statement
    /// alone; SQLite: the one writer). Answers the rows it touched.
    pub async fn execute(&self, statement: &Statement) -> Result<u64, StoreError> {
        Ok(match self {
            AnyEventLog::Postgres(pg) => {
                let sql = statement.text(false);
                statement.pg_query(&sql).execute(pg.pool()).await?.rows_affected()
            }
            AnyEventLog::Sqlite(lite) => {
                let sql = statement.text(true);
                statement.sqlite_query(&sql).execute(lite.writer()).await?.rows_affected()
            }
        })
    }

    /// Runs a statement that reads (SQLite: on a reader), and reads each row as `kinds`.
    pub async fn fetch(&self, statement: &Statement, kinds: &[Kind]) -> Result<Vec<Row>, StoreError> {
        self.fetch_on(statement, kinds, false).await
    }

    /// The first row of a statement that reads, if any.
    pub async fn fetch_optional(&self, statement: &Statement, kinds: &[Kind]) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch(statement, kinds).await?.into_iter().next())
    }

    /// Runs a statement that writes and reads what it wrote (`RETURNING`), on the writer.
    pub async fn fetch_written(&self, statement: &Statement, kinds: &[Kind]) -> Result<Vec<Row>, StoreError> {
        self.fetch_on(statement, kinds, true).await
    }

    /// Rows of `statement`; on SQLite from the writer if `writes`, else from a reader.
    async fn fetch_on(&self, statement: &Statement, kinds: &[Kind], writes: bool) -> Result<Vec<Row>, StoreError> {
        match self {
            AnyEventLog::Postgres(pg) => {
                let sql = statement.text(false);
                let rows = statement.pg_query(&sql).fetch_all(pg.pool()).await?;
                rows.iter().map(|row| pg_row(row, kinds)).collect()
            }
            AnyEventLog::Sqlite(lite) => {
                let sql = statement.text(true);
                let pool = if writes { lite.writer() } else { lite.readers() };
                let rows = statement.sqlite_query(&sql).fetch_all(pool).await?;
                rows.iter().map(|row| sqlite_row(row, kinds)).collect()
            }
        }
    }
}

impl AnyTx {
    /// Runs a statement in this transaction; answers the rows it touched.
    pub async fn execute(&mut self, statement: &Statement) -> Result<u64, StoreError> {
        Ok(match self {
            AnyTx::Postgres(tx) => {
                let sql = statement.text(false);
                statement.pg_query(&sql).execute(&mut **tx).await?.rows_affected()
            }
            AnyTx::Sqlite(tx) => {
                let sql = statement.text(true);
                statement.sqlite_query(&sql).execute(&mut **tx).await?.rows_affected()
            }
        })
    }

    /// Runs a statement in this transaction and reads each row as `kinds`.
    pub async fn fetch(&mut self, statement: &Statement, kinds: &[Kind]) -> Result<Vec<Row>, StoreError> {
        match self {
            AnyTx::Postgres(tx) => {
                let sql = statement.text(false);
                let rows = statement.pg_query(&sql).fetch_all(&mut **tx).await?;
                rows.iter().map(|row| pg_row(row, kinds)).collect()
            }
            AnyTx::Sqlite(tx) => {
                let sql = statement.text(true);
                let rows = statement.sqlite_query(&sql).fetch_all(&mut **tx).await?;
                rows.iter().map(|row| sqlite_row(row, kinds)).collect()
            }
        }
    }

    /// The first row, if any.
    pub async fn fetch_optional(&mut self, statement: &Statement, kinds: &[Kind]) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch(statement, kinds).await?.into_iter().next())
    }
}

/// A copy of events into a table of their rows, in the database (no event leaves it, none is
/// decoded): what a projection's bulk load does. `columns` and `select` are written as
/// statements are (`@` time columns); `select` reads `ledger_events`; `sequence` is the
/// target's identity column, which numbers the rows in the order they were copied.
#[derive(Debug, Clone, Copy)]
pub struct EventCopy<'a> {
    pub into: &'a str,
    pub columns: &'a str,
    pub select: &'a str,
    pub sequence: &'a str,
}

impl AnyTx {
    /// Copies the rows of up to `limit` events after `after`, in the order of `read_all`
    /// (gap-safe on PostgreSQL: only transactions older than every running one). Answers the
    /// checkpoint of the last event copied and how many were, or `None` if there was none.
    pub async fn copy_events_in(
        &mut self,
        copy: &EventCopy<'_>,
        after: crate::Checkpoint,
        limit: i64,
    ) -> Result<Option<(crate::Checkpoint, u64)>, StoreError> {
        let EventCopy { into, columns, select, sequence } = *copy;
        Ok(match self {
            // One statement: the rows are inserted walking the feed's index in order, so their
            // sequence numbers follow the log; the last of them (the highest sequence) names the
            // page's last event, whose transaction one probe finds.
            AnyTx::Postgres(tx) => {
                let sql = format!(
                    "WITH copied AS (
                        INSERT INTO {into} ({columns})
                        SELECT {select}
                        FROM ledger_events
                        WHERE (transaction_id, global_position) > ((($1::bigint)::text)::xid8, $2)
                          AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                        ORDER BY ledger_events.transaction_id, ledger_events.global_position
                        LIMIT $3
                        RETURNING {sequence}, global_position
                     )
                     SELECT e.transaction_id::text::bigint, e.global_position, (SELECT count(*) FROM copied)
                     FROM ledger_events e
                     WHERE e.global_position = (SELECT global_position FROM copied ORDER BY {sequence} DESC LIMIT 1)"
                );
                let sql = pg_text(&sql);
                let last: Option<(i64, i64, i64)> = sqlx::query_as(&sql)
                    .bind(after.transaction_id)
                    .bind(after.position)
                    .bind(limit)
                    .fetch_optional(&mut **tx)
                    .await?;
                last.map(|(transaction_id, position, count)| {
                    (crate::Checkpoint { transaction_id, position }, count as u64)
                })
            }
            // One writer: this transaction holds the write lock, so nothing commits between the
            // two statements.
            AnyTx::Sqlite(tx) => {
                let last: Option<i64> = sqlx::query_scalar(
                    "SELECT max(global_position) FROM
                        (SELECT global_position FROM ledger_events WHERE global_position > ? ORDER BY global_position LIMIT ?)",
                )
                .bind(after.position)
                .bind(limit)
                .fetch_one(&mut **tx)
                .await?;
                let Some(position) = last else { return Ok(None) };
                let sql = sqlite_text(&format!(
                    "INSERT INTO {into} ({columns}) SELECT {select}
                     FROM ledger_events WHERE global_position > $1 AND global_position <= $2 ORDER BY global_position"
                ));
                let count =
                    sqlx::query(&sql).bind(after.position).bind(position).execute(&mut **tx).await?.rows_affected();
                Some((crate::Checkpoint { transaction_id: 0, position }, count))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_text;

    #[test]
    fn sqlite_reads_placeholders_time_columns_and_lists_its_way() {
        assert_eq!(
            sqlite_text("SELECT @created_at FROM t WHERE k = $1 AND id = ANY($2) AND @due_at <= $3"),
            "SELECT created_at_us FROM t WHERE k = ?1 AND id IN (SELECT value FROM json_each(?2)) AND due_at_us <= ?3"
        );
        assert_eq!(
            sqlite_text("UPDATE t SET @at = EXCLUDED.@at, name = 'é'"),
            "UPDATE t SET at_us = EXCLUDED.at_us, name = 'é'"
        );
    }
}
