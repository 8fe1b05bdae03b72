//! Rows that a crate writes into a table it owns, declared once for both backends.
//!
//! A crate above the store describes its table ([`Table`]: columns, kinds, what a conflict
//! means) and hands over rows of [`Value`]s; the store writes them the way each backend does
//! best: on PostgreSQL one statement for all rows (arrays bound per column, `unnest`), or a rider
//! of a group append's statement; on SQLite, whose one writer is in this process, one prepared
//! statement per row. No crate above the store writes SQL for a backend of its own.
//!
//! The schemas' one convention this relies on: a time column is `timestamptz` named `name` on
//! PostgreSQL and integer microseconds since the epoch named `name_us` on SQLite; a JSON column is
//! `jsonb` on PostgreSQL and text on SQLite.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteArguments;

use crate::postgres::PgQuery;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Bool,
    /// `timestamptz` on PostgreSQL, `name_us` microseconds on SQLite.
    Time,
    /// `jsonb` on PostgreSQL, text on SQLite; written from its JSON text.
    Json,
    /// `bytea` on PostgreSQL, a blob on SQLite (hashes, signatures).
    Bytes,
}

/// One column of a [`Table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

impl Column {
    pub const fn text(name: &'static str) -> Self {
        Self { name, kind: Kind::Text }
    }
    pub const fn int(name: &'static str) -> Self {
        Self { name, kind: Kind::Int }
    }
    pub const fn bool(name: &'static str) -> Self {
        Self { name, kind: Kind::Bool }
    }
    pub const fn time(name: &'static str) -> Self {
        Self { name, kind: Kind::Time }
    }
    pub const fn json(name: &'static str) -> Self {
        Self { name, kind: Kind::Json }
    }
    pub const fn bytes(name: &'static str) -> Self {
        Self { name, kind: Kind::Bytes }
    }

    /// The column's name on SQLite.
    pub fn sqlite_name(&self) -> Cow<'static, str> {
        match self.kind {
            Kind::Time => Cow::Owned(format!("{}_us", self.name)),
            _ => Cow::Borrowed(self.name),
        }
    }

    fn pg_array(&self) -> &'static str {
        match self.kind {
            Kind::Text | Kind::Json => "text[]",
            Kind::Int => "bigint[]",
            Kind::Bool => "bool[]",
            Kind::Time => "timestamptz[]",
            Kind::Bytes => "bytea[]",
        }
    }
}

/// One value of a row, of its column's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
    Time(Option<DateTime<Utc>>),
    /// JSON text.
    Json(String),
    /// A list of texts, an argument of `= ANY($n)` (see `crate::sql`); never a column's value.
    List(Vec<String>),
    Bytes(Option<Vec<u8>>),
}

impl Value {
    fn kind(&self) -> Option<Kind> {
        match self {
            Value::Text(_) => Some(Kind::Text),
            Value::Int(_) => Some(Kind::Int),
            Value::Bool(_) => Some(Kind::Bool),
            Value::Time(_) => Some(Kind::Time),
            Value::Json(_) => Some(Kind::Json),
            Value::Bytes(_) => Some(Kind::Bytes),
            Value::List(_) => None,
        }
    }

    /// As a key column's text (keys are text columns).
    pub(crate) fn as_key(&self) -> Option<&str> {
        match self {
            Value::Text(text) => text.as_deref(),
            _ => None,
        }
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(Some(value))
    }
}
impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(Some(value.to_owned()))
    }
}
impl From<Option<String>> for Value {
    fn from(value: Option<String>) -> Self {
        Value::Text(value)
    }
}
impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Value::Bytes(Some(value.to_vec()))
    }
}
impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(Some(value))
    }
}
impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(Some(value.clone()))
    }
}
impl From<Option<&str>> for Value {
    fn from(value: Option<&str>) -> Self {
        Value::Text(value.map(str::to_owned))
    }
}
impl From<&Option<String>> for Value {
    fn from(value: &Option<String>) -> Self {
        Value::Text(value.clone())
    }
}
impl From<Option<i64>> for Value {
    fn from(value: Option<i64>) -> Self {
        Value::Int(value)
    }
}
impl From<Vec<String>> for Value {
    fn from(value: Vec<String>) -> Self {
        Value::List(value)
    }
}
impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(value: DateTime<Utc>) -> Self {
        Value::Time(Some(value))
    }
}
impl From<Option<DateTime<Utc>>> for Value {
    fn from(value: Option<DateTime<Utc>>) -> Self {
        Value::Time(value)
    }
}

/// What a row whose key is taken means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The row claims its key (text columns) once: a row whose key exists is not written, and
    /// in a group the part it belongs to is answered `Duplicate`.
    Claim { key: &'static [&'static str] },
    /// The row replaces an older row of its key, never a newer one (by `version`), so a late
    /// write cannot take a row back.
    KeepNewer { key: &'static str, version: &'static str },
    /// Rows are only ever added (a journal): no key.
    Append,
}

/// A table a crate above the store owns, as the store needs to know it to write its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: Cow<'static, str>,
    pub columns: &'static [Column],
    pub on_conflict: OnConflict,
}

impl Table {
    pub fn new(name: impl Into<Cow<'static, str>>, columns: &'static [Column], on_conflict: OnConflict) -> Self {
        Self { name: name.into(), columns, on_conflict }
    }

    /// The same columns in another table (a read model's generation being rebuilt).
    pub fn named(&self, name: impl Into<Cow<'static, str>>) -> Self {
        Self { name: name.into(), ..self.clone() }
    }

    /// Checks that each row has a value of the right kind per column.
    pub(crate) fn check(&self, rows: &[&[Value]]) -> Result<(), crate::StoreError> {
        for row in rows {
            let fits = row.len() == self.columns.len()
                && row.iter().zip(self.columns).all(|(value, column)| value.kind() == Some(column.kind));
            if !fits {
                return Err(crate::StoreError::Corrupt(format!("a row does not fit the columns of {}", self.name)));
            }
        }
        Ok(())
    }

    pub(crate) fn key_columns(&self) -> Vec<&'static str> {
        match self.on_conflict {
            OnConflict::Claim { key } => key.to_vec(),
            OnConflict::KeepNewer { key, .. } => vec![key],
            OnConflict::Append => Vec::new(),
        }
    }

    /// The positions of the key's columns in a row.
    pub(crate) fn key_positions(&self) -> Vec<usize> {
        self.key_columns()
            .iter()
            .filter_map(|name| self.columns.iter().position(|column| column.name == *name))
            .collect()
    }

    fn conflict_clause(&self, names: &[Cow<'static, str>], claim_may_fail: bool) -> String {
        match self.on_conflict {
            OnConflict::Append => String::new(),
            OnConflict::Claim { .. } if claim_may_fail => String::new(),
            OnConflict::Claim { key } => format!("ON CONFLICT ({}) DO NOTHING", key.join(", ")),
            OnConflict::KeepNewer { key, version } => {
                let set: Vec<String> =
                    names.iter().filter(|name| *name != key).map(|name| format!("{name} = EXCLUDED.{name}")).collect();
                format!(
                    "ON CONFLICT ({key}) DO UPDATE SET {} WHERE {}.{version} < EXCLUDED.{version}",
                    set.join(", "),
                    self.name
                )
            }
        }
    }

    fn pg_names(&self) -> Vec<Cow<'static, str>> {
        self.columns.iter().map(|column| Cow::Borrowed(column.name)).collect()
    }

    fn sqlite_names(&self) -> Vec<Cow<'static, str>> {
        self.columns.iter().map(Column::sqlite_name).collect()
    }

    /// PostgreSQL: an insert of every row from one array per column (`$1`..`$n`). With
    /// `only_streams_in`, the insert of a rider: the rows' streams in `$n+1`, and only the rows
    /// of streams in that `WITH` item are written; a claim is then not `ON CONFLICT`, so that a
    /// key taken since the statement's snapshot fails the whole statement.
    pub(crate) fn pg_insert(&self, only_streams_in: Option<&str>, returning_keys: bool) -> String {
        let names = self.pg_names();
        let n = self.columns.len();
        let mut arrays: Vec<String> =
            self.columns.iter().enumerate().map(|(i, column)| format!("${}::{}", i + 1, column.pg_array())).collect();
        let mut aliases: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let selected: Vec<String> = self
            .columns
            .iter()
            .map(|column| match column.kind {
                Kind::Json => format!("r.{}::jsonb", column.name),
                _ => format!("r.{}", column.name),
            })
            .collect();
        let filter = match only_streams_in {
            Some(item) => {
                arrays.push(format!("${}::text[]", n + 1));
                aliases.push("stream_id_".to_owned());
                format!("WHERE r.stream_id_ IN (SELECT stream_id FROM {item})")
            }
            None => String::new(),
        };
        let returning =
            if returning_keys { format!(" RETURNING {}", self.key_columns().join(", ")) } else { String::new() };
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS r({}) {filter} {}{returning}",
            self.name,
            names.join(", "),
            selected.join(", "),
            arrays.join(", "),
            aliases.join(", "),
            self.conflict_clause(&names, only_streams_in.is_some()),
        )
    }

    /// SQLite: an insert of one row (`?1`..`?n`).
    pub(crate) fn sqlite_insert(&self) -> String {
        let names = self.sqlite_names();
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({}) {}",
            self.name,
            names.join(", "),
            placeholders.join(", "),
            self.conflict_clause(&names, false)
        )
    }

    /// Binds the rows to a [`Table::pg_insert`], one array per column.
    pub(crate) fn bind_pg<'q>(&self, query: PgQuery<'q>, rows: &[&[Value]]) -> PgQuery<'q> {
        bind_columns(query, self.pg_columns(rows))
    }

    /// The rows as one array per column, as [`Table::pg_insert`] binds them: made once, so a
    /// rider's binding owns them without copying the rows first.
    pub(crate) fn pg_columns(&self, rows: &[&[Value]]) -> Vec<PgColumn> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let values = rows.iter().map(|row| &row[i]);
                match column.kind {
                    Kind::Text => PgColumn::Text(values.map(text).collect()),
                    Kind::Json => PgColumn::Text(values.map(|v| Some(text(v).unwrap_or_default())).collect()),
                    Kind::Int => PgColumn::Int(values.map(int).collect()),
                    Kind::Bool => PgColumn::Bool(values.map(|v| matches!(v, Value::Bool(true))).collect()),
                    Kind::Time => PgColumn::Time(values.map(time).collect()),
                    Kind::Bytes => PgColumn::Bytes(values.map(bytes).collect()),
                }
            })
            .collect()
    }
}

/// One column of many rows, as PostgreSQL binds it (an array).
#[derive(Debug)]
pub(crate) enum PgColumn {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<bool>),
    Time(Vec<Option<DateTime<Utc>>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

/// Binds the columns in their order.
pub(crate) fn bind_columns(mut query: PgQuery<'_>, columns: Vec<PgColumn>) -> PgQuery<'_> {
    for column in columns {
        query = match column {
            PgColumn::Text(values) => query.bind(values),
            PgColumn::Int(values) => query.bind(values),
            PgColumn::Bool(values) => query.bind(values),
            PgColumn::Time(values) => query.bind(values),
            PgColumn::Bytes(values) => query.bind(values),
        };
    }
    query
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Text(text) => text.clone(),
        Value::Json(json) => Some(json.clone()),
        _ => None,
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => *n,
        _ => None,
    }
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Bytes(bytes) => bytes.clone(),
        _ => None,
    }
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Time(at) => at.map(crate::truncate_to_micros),
        _ => None,
    }
}

/// Binds one value to a PostgreSQL query.
pub(crate) fn bind_pg_value<'q>(query: PgQuery<'q>, value: &Value) -> PgQuery<'q> {
    match value {
        Value::Text(text) => query.bind(text.clone()),
        Value::Int(n) => query.bind(*n),
        Value::Bool(b) => query.bind(*b),
        Value::Time(at) => query.bind(*at),
        Value::Json(json) => query.bind(json.clone()),
        Value::Bytes(bytes) => query.bind(bytes.clone()),
        Value::List(list) => query.bind(list.clone()),
    }
}

pub(crate) type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments<'q>>;

/// Binds one value to a SQLite query (times as microseconds).
pub(crate) fn bind_sqlite_value<'q>(query: SqliteQuery<'q>, value: &Value) -> SqliteQuery<'q> {
    match value {
        Value::Text(text) => query.bind(text.clone()),
        Value::Int(n) => query.bind(*n),
        Value::Bool(b) => query.bind(*b),
        Value::Time(at) => query.bind(at.map(|t| t.timestamp_micros())),
        Value::Json(json) => query.bind(json.clone()),
        Value::Bytes(bytes) => query.bind(bytes.clone()),
        Value::List(list) => query.bind(serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())),
    }
}

/// `WHERE` over the given columns of a row, compared for equality (`$n`, as a `Statement` is
/// written): the columns a row can be found by again (text, integers, flags; times, JSON and
/// bytes are left out).
pub(crate) fn equality_on(table: &Table, row: &[Value]) -> (String, Vec<Value>) {
    let mut terms = Vec::new();
    let mut values = Vec::new();
    for (column, value) in table.columns.iter().zip(row) {
        if matches!(column.kind, Kind::Time | Kind::Json | Kind::Bytes) {
            continue;
        }
        values.push(value.clone());
        terms.push(format!("{} = ${}", column.name, values.len()));
    }
    (terms.join(" AND "), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[Column::text("id"), Column::int("version"), Column::time("at"), Column::json("doc")];

    #[test]
    fn one_declaration_reads_as_each_backend_names_it() {
        let table = Table::new("things", COLUMNS, OnConflict::KeepNewer { key: "id", version: "version" });
        assert_eq!(
            table.sqlite_insert(),
            "INSERT INTO things (id, version, at_us, doc) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET \
             version = EXCLUDED.version, at_us = EXCLUDED.at_us, doc = EXCLUDED.doc WHERE things.version < EXCLUDED.version"
        );
        let rider = table.pg_insert(Some("bumped"), false);
        assert!(
            rider.contains("unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[])"),
            "{rider}"
        );
        assert!(
            rider.contains("r.doc::jsonb") && rider.contains("WHERE r.stream_id_ IN (SELECT stream_id FROM bumped)")
        );
    }

    #[test]
    fn a_claim_in_a_rider_fails_the_statement_instead_of_skipping() {
        let table = Table::new("claims", COLUMNS, OnConflict::Claim { key: &["id"] });
        assert!(!table.pg_insert(Some("kept"), false).contains("ON CONFLICT"));
        assert!(table.pg_insert(None, true).ends_with("ON CONFLICT (id) DO NOTHING RETURNING id"));
    }

    #[test]
    fn a_row_of_the_wrong_shape_is_refused() {
        let table = Table::new("things", COLUMNS, OnConflict::Claim { key: &["id"] });
        let row = [Value::from("a"), Value::from(1), Value::from(Utc::now())];
        assert!(table.check(&[&row]).is_err());
    }
}
