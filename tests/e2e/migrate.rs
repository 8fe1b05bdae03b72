//! `planledger migrate` applies the schema once, on both backends, and says what it did.

use planledger_testkit::{PgTestDatabase, SqliteTestDatabase};

use crate::planledger;

fn assert_migrates(url: &str, backend: &str, count: usize) {
    let applied: Vec<String> = (1..=count).map(|v| v.to_string()).collect();
    let first = planledger(url, &["migrate"]);
    assert!(first.status.success(), "migrate failed: {}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        format!("{backend}: applied migrations [{}]", applied.join(", "))
    );
    let second = planledger(url, &["migrate"]);
    assert!(second.status.success());
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        format!("{backend}: up to date ({count} migrations applied before)")
    );
}

#[test]
fn migrate_applies_the_schema_once_on_sqlite() {
    let db = SqliteTestDatabase::create();
    assert_migrates(&db.url, "sqlite", planledger_store::migrate::SQLITE.len());
    assert!(db.path.exists(), "the database file is created");
}

#[tokio::test]
async fn migrate_applies_the_schema_once_on_postgres() {
    let Some(db) = PgTestDatabase::create("migrate_applies_the_schema_once_on_postgres").await else { return };
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || assert_migrates(&url, "postgres", planledger_store::migrate::POSTGRES.len()))
        .await
        .expect("migrate");
}

#[test]
fn an_unsupported_database_url_is_refused_with_a_hint() {
    let out = planledger("mysql://localhost/x", &["migrate"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("use postgres://... or sqlite://..."), "{stderr}");
}
