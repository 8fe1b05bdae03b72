//! Schema migrations of the event log, embedded in the binary and applied in order.
//!
//! Each migration is recorded with a checksum; a migration edited after it was applied is an
//! error rather than a silent divergence between databases. Concurrent starters are serialized
//! (an advisory lock on PostgreSQL, an immediate transaction on SQLite).

use sha2::{Digest, Sha256};

/// One schema step, the same number on both backends.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        let digest = Sha256::digest(self.sql.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

pub const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "event_log", sql: include_str!("../../../migrations/postgres/0001_event_log.sql") },
    Migration {
        version: 2,
        name: "command_service",
        sql: include_str!("../../../migrations/postgres/0002_command_service.sql"),
    },
    Migration {
        version: 3,
        name: "read_models",
        sql: include_str!("../../../migrations/postgres/0003_read_models.sql"),
    },
    Migration {
        version: 4,
        name: "rendered_answers",
        sql: include_str!("../../../migrations/postgres/0004_rendered_answers.sql"),
    },
    Migration {
        version: 5,
        name: "snapshot_fold_fingerprint",
        sql: include_str!("../../../migrations/postgres/0005_snapshot_fold_fingerprint.sql"),
    },
    Migration {
        version: 6,
        name: "rebuild_claims",
        sql: include_str!("../../../migrations/postgres/0006_rebuild_claims.sql"),
    },
    Migration { version: 7, name: "retention", sql: include_str!("../../../migrations/postgres/0007_retention.sql") },
    Migration {
        version: 8,
        name: "stripe_inbox",
        sql: include_str!("../../../migrations/postgres/0008_stripe_inbox.sql"),
    },
    Migration {
        version: 9,
        name: "webhook_outbox",
        sql: include_str!("../../../migrations/postgres/0009_webhook_outbox.sql"),
    },
    Migration {
        version: 10,
        name: "console_sessions",
        sql: include_str!("../../../migrations/postgres/0010_console_sessions.sql"),
    },
    Migration {
        version: 11,
        name: "stripe_same_second",
        sql: include_str!("../../../migrations/postgres/0011_stripe_same_second.sql"),
    },
    Migration {
        version: 12,
        name: "catalog_versions",
        sql: include_str!("../../../migrations/postgres/0012_catalog_versions.sql"),
    },
    Migration {
        version: 13,
        name: "catalog_reach",
        sql: include_str!("../../../migrations/postgres/0013_catalog_reach.sql"),
    },
    Migration {
        version: 14,
        name: "catalog_previews",
        sql: include_str!("../../../migrations/postgres/0014_catalog_previews.sql"),
    },
    Migration {
        version: 15,
        name: "event_hashes",
        sql: include_str!("../../../migrations/postgres/0015_event_hashes.sql"),
    },
    Migration {
        version: 16,
        name: "event_hashes_required",
        sql: include_str!("../../../migrations/postgres/0016_event_hashes_required.sql"),
    },
];

pub const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "event_log", sql: include_str!("../../../migrations/sqlite/0001_event_log.sql") },
    Migration {
        version: 2,
        name: "command_service",
        sql: include_str!("../../../migrations/sqlite/0002_command_service.sql"),
    },
    Migration { version: 3, name: "read_models", sql: include_str!("../../../migrations/sqlite/0003_read_models.sql") },
    Migration {
        version: 4,
        name: "snapshot_fold_fingerprint",
        sql: include_str!("../../../migrations/sqlite/0004_snapshot_fold_fingerprint.sql"),
    },
    Migration {
        version: 5,
        name: "rebuild_claims",
        sql: include_str!("../../../migrations/sqlite/0005_rebuild_claims.sql"),
    },
    Migration { version: 6, name: "retention", sql: include_str!("../../../migrations/sqlite/0006_retention.sql") },
    Migration {
        version: 7,
        name: "stripe_inbox",
        sql: include_str!("../../../migrations/sqlite/0007_stripe_inbox.sql"),
    },
    Migration {
        version: 8,
        name: "webhook_outbox",
        sql: include_str!("../../../migrations/sqlite/0008_webhook_outbox.sql"),
    },
    Migration {
        version: 9,
        name: "console_sessions",
        sql: include_str!("../../../migrations/sqlite/0009_console_sessions.sql"),
    },
    Migration {
        version: 10,
        name: "stripe_same_second",
        sql: include_str!("../../../migrations/sqlite/0010_stripe_same_second.sql"),
    },
    Migration {
        version: 11,
        name: "catalog_versions",
        sql: include_str!("../../../migrations/sqlite/0011_catalog_versions.sql"),
    },
    Migration {
        version: 12,
        name: "catalog_reach",
        sql: include_str!("../../../migrations/sqlite/0012_catalog_reach.sql"),
    },
    Migration {
        version: 13,
        name: "catalog_previews",
        sql: include_str!("../../../migrations/sqlite/0013_catalog_previews.sql"),
    },
    Migration {
        version: 14,
        name: "event_hashes",
        sql: include_str!("../../../migrations/sqlite/0014_event_hashes.sql"),
    },
    Migration {
        version: 15,
        name: "event_hashes_required",
        sql: include_str!("../../../migrations/sqlite/0015_event_hashes_required.sql"),
    },
];

/// The migration after which the events written before it are hashed (in its transaction).
pub(crate) const EVENT_HASHES: &str = "event_hashes";

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    pub applied: Vec<i64>,
    pub already_applied: Vec<i64>,
}

/// The migrations table, the same shape on both backends.
pub(crate) const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS ledger_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// The migrations a database has applied, in order (both backends).
pub(crate) const APPLIED: &str = "SELECT version, checksum FROM ledger_migrations ORDER BY version";

/// Decides, from the applied (version, checksum) pairs, which migrations remain to apply.
pub(crate) fn pending<'m>(
    known: &'m [Migration],
    applied: &[(i64, String)],
) -> Result<Vec<&'m Migration>, crate::StoreError> {
    for (version, checksum) in applied {
        match known.iter().find(|m| m.version == *version) {
            None => return Err(crate::StoreError::UnknownMigration(*version)),
            Some(m) if &m.checksum() != checksum => {
                return Err(crate::StoreError::MigrationChanged { version: m.version, name: m.name.to_owned() })
            }
            Some(_) => {}
        }
    }
    Ok(known.iter().filter(|m| !applied.iter().any(|(v, _)| *v == m.version)).collect())
}
