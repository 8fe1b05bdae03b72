//! The log's own statements that both backends run, each written once in the dialect of
//! [`crate::sql`] (`$n` placeholders, `@name` time columns, `now()`) and rendered for each
//! backend at its first use. `{events}` stands for the columns of an event row, which the
//! schemas hold differently (PostgreSQL stores each event's transaction id; SQLite, whose order
//! is its row ids, has none): each backend's list is beside its decoder.

use std::sync::LazyLock;

/// A statement's text, rendered for PostgreSQL and for SQLite.
pub(crate) struct Text {
    postgres: LazyLock<String>,
    sqlite: LazyLock<String>,
}

impl Text {
    pub(crate) fn postgres(&self) -> &str {
        &self.postgres
    }

    pub(crate) fn sqlite(&self) -> &str {
        &self.sqlite
    }
}

macro_rules! text {
    ($(#[$doc:meta])* $name:ident = $sql:expr) => {
        $(#[$doc])*
        pub(crate) static $name: Text = Text {
            postgres: LazyLock::new(|| {
                crate::sql::pg_text(&$sql.replace("{events}", crate::postgres::EVENT_COLUMNS)).into_owned()
            }),
            sqlite: LazyLock::new(|| crate::sql::sqlite_text(&$sql.replace("{events}", crate::sqlite::EVENT_COLUMNS))),
        };
    };
}

text!(
    /// A stream's version (no row: 0).
    STREAM_VERSION = "SELECT version FROM ledger_streams WHERE stream_id = $1"
);
text!(
    /// A stream's version and the chain hash of its last event (no row: 0, the genesis hash).
    STREAM_HEAD = "SELECT version, head FROM ledger_streams WHERE stream_id = $1"
);
text!(
    /// Up to `$3` events of a stream from version `$2` on.
    READ_STREAM = "SELECT {events} FROM ledger_events WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
);
text!(
    /// A stream's events from version `$2` to `$3`.
    READ_RANGE = "SELECT {events} FROM ledger_events WHERE stream_id = $1 AND version BETWEEN $2 AND $3 ORDER BY version"
);
text!(
    /// Up to `$3` events after (stream `$1`, version `$2`), one stream after another: the row
    /// comparison walks the (stream_id, version) unique index.
    READ_BY_STREAM = "SELECT {events} FROM ledger_events WHERE (stream_id, version) > ($1, $2)
        ORDER BY stream_id, version LIMIT $3"
);
text!(
    /// One event by its id.
    READ_EVENT = "SELECT {events} FROM ledger_events WHERE event_id = $1"
);
text!(
    /// A consumer's checkpoint (no row: the origin).
    LOAD_CHECKPOINT = "SELECT transaction_id, position FROM ledger_checkpoints WHERE consumer = $1"
);
text!(
    /// Keeps a snapshot unless a newer one, of the same fold, is stored.
    SAVE_SNAPSHOT = "INSERT INTO ledger_snapshots (stream_id, version, state, fold_fingerprint, @taken_at)
        VALUES ($1, $2, $3, $4, now())
        ON CONFLICT (stream_id) DO UPDATE
           SET version = excluded.version, state = excluded.state,
               fold_fingerprint = excluded.fold_fingerprint, @taken_at = excluded.@taken_at
        WHERE ledger_snapshots.version < excluded.version
           OR ledger_snapshots.fold_fingerprint <> excluded.fold_fingerprint"
);
text!(
    /// A stream's snapshot.
    LOAD_SNAPSHOT = "SELECT version, state, fold_fingerprint FROM ledger_snapshots WHERE stream_id = $1"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backend_reads_its_own_dialect() {
        assert_eq!(STREAM_VERSION.postgres(), "SELECT version FROM ledger_streams WHERE stream_id = $1");
        assert_eq!(STREAM_VERSION.sqlite(), "SELECT version FROM ledger_streams WHERE stream_id = ?1");
        assert!(READ_EVENT.postgres().contains("transaction_id::text::bigint"), "{}", READ_EVENT.postgres());
        assert!(READ_EVENT.sqlite().contains("recorded_at_us") && !READ_EVENT.sqlite().contains("transaction_id"));
        let save = SAVE_SNAPSHOT.sqlite();
        assert!(save.contains("taken_at_us = excluded.taken_at_us") && !save.contains("now()"), "{save}");
        let save = SAVE_SNAPSHOT.postgres();
        assert!(save.contains("taken_at = excluded.taken_at") && save.contains("now()"), "{save}");
    }
}
