//! What the service's test binaries share: a fresh database on either backend, migrated, with
//! the read models in place.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::Utc;
use planledger_domain::Catalog;
use planledger_service::{CommandService, Journal, ServiceConfig, TestClock};
use planledger_store::{AnyEventLog, StoreConfig};
use planledger_testkit::{PgTestDatabase, SqliteTestDatabase};

/// A test's database; dropping it removes the database.
pub enum Db {
    Sqlite(SqliteTestDatabase),
    Postgres(Box<PgTestDatabase>),
}

impl Db {
    /// A fresh database, or `None` when PostgreSQL is wanted, unreachable and not required.
    pub async fn create(postgres: bool, test: &str) -> Option<Db> {
        Some(if postgres {
            Db::Postgres(Box::new(PgTestDatabase::create(test).await?))
        } else {
            Db::Sqlite(SqliteTestDatabase::create())
        })
    }

    pub fn url(&self) -> &str {
        match self {
            Db::Sqlite(db) => &db.url,
            Db::Postgres(db) => &db.url,
        }
    }
}

/// A fresh database with its log migrated and the read models created for the built-in catalog.
pub async fn open(postgres: bool, test: &str) -> Option<(AnyEventLog, Db)> {
    let db = Db::create(postgres, test).await?;
    // Generous: tests run many at once on two cores.
    let config = StoreConfig { acquire_timeout: std::time::Duration::from_secs(10), ..StoreConfig::new(db.url()) };
    let log = AnyEventLog::connect(&config).await.expect("connect");
    log.migrate().await.expect("migrate");
    let built_with = planledger_projections::schema::built_with(&Catalog::builtin());
    planledger_projections::schema::ensure(&log, &built_with, Utc::now()).await.expect("schema");
    Some((log, db))
}

/// A node on `log` with the built-in catalog, `clock` and `config`.
pub fn node_with(log: &AnyEventLog, clock: Arc<TestClock>, config: ServiceConfig) -> CommandService {
    let (journal, _writer) = Journal::spawn(log.clone());
    CommandService::new(
        log.clone(),
        Arc::new(Catalog::builtin()),
        clock,
        config,
        journal,
        Arc::new(planledger_api::render::JsonRenderer),
    )
}
