//! Test databases: each test gets a database of its own and leaves nothing behind.
//!
//! PostgreSQL tests run against `PLANLEDGER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`): a fresh database is created per test and
//! dropped when the guard is dropped, even if the test panicked. Without a reachable server
//! the test prints one line and is skipped, unless `PLANLEDGER_REQUIRE_POSTGRES=1`, in which
//! case it fails: CI sets it, so PostgreSQL tests cannot be skipped there.

// Stripe objects are large JSON literals.
#![recursion_limit = "256"]

pub mod stripe;
pub mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};

/// Runs an async test body on both backends: `async fn name(postgres: bool)` becomes
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(false).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(true).await;
                }
            )*
        }
    };
}
use sqlx::{ConnectOptions, Connection};

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server that test databases are created on.
pub fn postgres_server_url() -> String {
    std::env::var("PLANLEDGER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// Whether a missing PostgreSQL server must fail the test rather than skip it.
pub fn postgres_required() -> bool {
    std::env::var("PLANLEDGER_REQUIRE_POSTGRES").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A database created for one test, dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct PgTestDatabase {
    pub url: String,
    pub name: String,
    server: Box<PgConnectOptions>,
}

impl PgTestDatabase {
    /// Creates a fresh database, or returns `None` (after printing why) if no server is
    /// reachable and PostgreSQL is not required.
    ///
    /// # Panics
    /// If the server is unreachable and `PLANLEDGER_REQUIRE_POSTGRES=1`, or if the database
    /// cannot be created.
    pub async fn create(test_name: &str) -> Option<Self> {
        let server_url = postgres_server_url();
        let server = match PgConnectOptions::from_str(&server_url) {
            Ok(options) => options,
            Err(e) => panic!("PLANLEDGER_TEST_POSTGRES_URL is not a PostgreSQL URL ({server_url}): {e}"),
        };
        let mut admin = match tokio::time::timeout(Duration::from_secs(5), server.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Self::unreachable(test_name, &server_url, &e.to_string()),
            Err(_) => return Self::unreachable(test_name, &server_url, "connection timed out"),
        };
        let name = format!("planledger_test_{}", uuid::Uuid::new_v4().simple());
        if let Err(e) = sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut admin).await {
            panic!("could not create test database {name} on {server_url}: {e}");
        }
        let _ = admin.close().await;
        let url = format!("{}/{name}", server_url.rsplit_once('/').map_or(server_url.as_str(), |(base, _)| base));
        Some(Self { url, name, server: Box::new(server) })
    }

    fn unreachable(test_name: &str, server_url: &str, why: &str) -> Option<Self> {
        if postgres_required() {
            panic!("PostgreSQL is required (PLANLEDGER_REQUIRE_POSTGRES=1) but {server_url} is unreachable: {why}");
        }
        println!("skipped {test_name}: PostgreSQL not reachable at {server_url} ({why}); set PLANLEDGER_REQUIRE_POSTGRES=1 to fail instead");
        None
    }
}

impl Drop for PgTestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime (or while unwinding from a panic); a thread with its own
        // runtime can block on the cleanup either way.
        let server = (*self.server).clone();
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async move {
                let mut admin: PgConnection = server.connect().await.ok()?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        });
        if cleanup.join().ok().flatten().is_none() {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// A SQLite database file in a temporary directory, removed when this is dropped.
#[derive(Debug)]
pub struct SqliteTestDatabase {
    pub url: String,
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SqliteTestDatabase {
    /// # Panics
    /// If no temporary directory can be made.
    pub fn create() -> Self {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("could not create a temporary directory: {e}"),
        };
        let path = dir.path().join("planledger.db");
        Self { url: format!("sqlite://{}", path.display()), path, _dir: dir }
    }
}
