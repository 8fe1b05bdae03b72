//! What the service's test binaries share: a fresh database on either backend, migrated, with
//! the read models in place, and a renderer of their own. (The api crate's command-path tests
//! and simulator include this file too, and pass the edge's renderer instead.)
#![allow(dead_code)]

use std::sync::Arc;

use chrono::Utc;
use planledger_domain::Catalog;
use planledger_service::{
    Answer, CommandService, Journal, Outcome, RenderedAnswer, Renderer, ServiceConfig, ServiceError, TestClock,
};
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
    let built_with =
        planledger_projections::schema::built_with(&planledger_domain::Catalogs::single(Arc::new(Catalog::builtin())));
    planledger_projections::schema::ensure(&log, &built_with, Utc::now()).await.expect("schema");
    Some((log, db))
}

/// A node on `log` with the built-in catalog, `clock`, `config` and the tests' renderer.
pub fn node_with(log: &AnyEventLog, clock: Arc<TestClock>, config: ServiceConfig) -> CommandService {
    node_rendering(log, clock, config, Arc::new(Verdicts))
}

/// A node on `log` with the built-in catalog, `clock`, `config` and `renderer`.
pub fn node_rendering(
    log: &AnyEventLog,
    clock: Arc<TestClock>,
    config: ServiceConfig,
    renderer: Arc<dyn Renderer>,
) -> CommandService {
    let (journal, _writer) = Journal::spawn(log.clone());
    CommandService::new(log.clone(), Arc::new(Catalog::builtin()), clock, config, journal, renderer)
}

/// The service's tests' renderer. To the service a rendering is opaque: it stores it with a
/// key and hands it back on a retry, word for word. These tests need no HTTP: an answer says
/// what was decided (the refusal in full) and for which correlation id, so that a replay can be
/// told from a decision taken again. The edge's renderer is tested in the api crate.
#[derive(Debug)]
pub struct Verdicts;

impl Renderer for Verdicts {
    fn render(
        &self,
        outcome: &Outcome,
        _catalogs: &planledger_domain::Catalogs,
        correlation_id: &str,
    ) -> RenderedAnswer {
        let verdict = match outcome {
            Outcome::Accepted(accepted) => format!("accepted at version {}", accepted.version),
            Outcome::Refused(refusal) => format!("refused: {refusal:?}"),
        };
        RenderedAnswer {
            status: 0,
            body: serde_json::json!({"verdict": verdict, "correlationId": correlation_id}).to_string(),
        }
    }
}

/// Whether the service accepted the command (decided now, or replayed from a stored acceptance).
pub fn accepted(answer: &Result<Answer, ServiceError>) -> bool {
    match answer {
        Ok(Answer::Decided(Outcome::Accepted(_))) => true,
        Ok(Answer::Replayed(stored)) => stored.body.contains("\"verdict\":\"accepted"),
        _ => false,
    }
}

/// Whether the service refused the command (decided now, or replayed from a stored refusal).
pub fn refused(answer: &Result<Answer, ServiceError>) -> bool {
    match answer {
        Ok(Answer::Decided(Outcome::Refused(_))) => true,
        Ok(Answer::Replayed(stored)) => stored.body.contains("\"verdict\":\"refused"),
        _ => false,
    }
}
