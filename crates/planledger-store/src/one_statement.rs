//! One statement text for both backends.
//!
//! Tables that store times as microseconds since the Unix epoch (an `bigint` on both backends)
//! can be read and written with the same SQL: it is written once with PostgreSQL's `$n`
//! placeholders and [`sqlite_sql`] turns them into SQLite's `?n` (the same numbering).
//! [`on_log!`](crate::on_log) and [`in_tx!`](crate::in_tx) run such a statement on the log's
//! pool or inside a write transaction, typed for each backend.

use std::borrow::Cow;

/// A statement written with `$n` placeholders, as SQLite reads it (`?n`, the same numbering).
pub fn sqlite_sql(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') {
        Cow::Owned(sql.replace('$', "?"))
    } else {
        Cow::Borrowed(sql)
    }
}

/// Runs `$build` (a query built from `$q`, executed on `$on`) on the log's backend: the same
/// statement text and binds, typed for each backend. `writer` or `reader` names SQLite's pool.
#[macro_export]
macro_rules! on_log {
    ($log:expr, $pool:ident, $sql:expr, |$q:ident, $on:ident| $build:expr) => {
        match $log {
            $crate::AnyEventLog::Postgres(pg) => {
                let sql: &str = $sql;
                let $on = pg.pool();
                let $q = sql;
                $build
            }
            $crate::AnyEventLog::Sqlite(lite) => {
                let sql = $crate::one_statement::sqlite_sql($sql);
                let $on = $crate::on_log!(@pool lite, $pool);
                let $q: &str = &sql;
                $build
            }
        }
    };
    (@pool $lite:ident, writer) => { $lite.writer() };
    (@pool $lite:ident, reader) => { $lite.readers() };
}

/// The same, inside a write transaction of the log.
#[macro_export]
macro_rules! in_tx {
    ($tx:expr, $sql:expr, |$q:ident, $on:ident| $build:expr) => {
        match $tx {
            $crate::AnyTx::Postgres(tx) => {
                let $on = &mut **tx;
                let $q: &str = $sql;
                $build
            }
            $crate::AnyTx::Sqlite(tx) => {
                let sql = $crate::one_statement::sqlite_sql($sql);
                let $on = &mut **tx;
                let $q: &str = &sql;
                $build
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_keep_their_numbers() {
        assert_eq!(super::sqlite_sql("SELECT $1, $2 WHERE a = $1"), "SELECT ?1, ?2 WHERE a = ?1");
        assert!(matches!(super::sqlite_sql("SELECT 1"), std::borrow::Cow::Borrowed(_)));
    }
}
