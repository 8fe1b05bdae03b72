//! Operating the server: graceful shutdown, the loopback rule, the command journal.

use serde_json::json;

use crate::server::{Backend, Db, Options, Server};
use crate::{on_both_backends, server_or_skip};

async fn sigterm_finishes_in_flight_work_and_flushes_the_journal(backend: Backend) {
    let Some(db) = Db::create(backend, "sigterm_finishes_in_flight_work_and_flushes_the_journal").await else { return };
    let mut server = Server::start(db.url(), &Options::default());
    let store = server.register("Journaled").await;
    let (status, _) =
        server.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "create_article"})).await;
    assert_eq!(status, 402);
    server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;

    // Requests race the signal. Each is either answered 200 with its event in the log, or
    // refused at the connection (the listener closed) with nothing written: never half done.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = format!("{}/v1/stores/{store}/quota/consume", server.base);
    let requests: Vec<_> = (0..40)
        .map(|_| {
            let request = client.post(&url).json(&json!({"action": "update_product"}));
            async move { request.send().await.map(|r| r.status().as_u16()) }
        })
        .collect();
    let (outcomes, ()) = tokio::join!(futures_util::future::join_all(requests), async {
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        server.terminate();
    });
    let exit = tokio::task::block_in_place(|| server.wait());
    assert!(exit.success(), "a graceful exit: {exit:?}");
    let answered = outcomes.iter().filter(|o| matches!(o, Ok(200))).count();
    assert!(outcomes.iter().all(|o| matches!(o, Ok(200) | Err(_))), "{outcomes:?}");

    let db = &db;
    let query = |sql: &'static str| async move {
        match db {
            Db::Sqlite(lite) => {
                let pool = sqlx::SqlitePool::connect(&lite.url).await.unwrap();
                sqlx::query_as::<_, (String, String, Option<String>)>(sql).fetch_all(&pool).await.unwrap()
            }
            Db::Postgres(pg) => {
                let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
                let rows = sqlx::query_as::<_, (String, String, Option<String>)>(sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
        }
    };
    let consumed =
        query("SELECT event_type, stream_id, idempotency_key FROM ledger_events WHERE event_type = 'QuotaConsumed'")
            .await;
    assert_eq!(consumed.len(), answered, "every acknowledged consumption is in the log, and only those");

    // The journal was flushed before exit: the registration, the refusal, the trial, the answers.
    let journal = query("SELECT kind, outcome, error_code FROM command_journal ORDER BY id").await;
    assert_eq!(
        journal[..3],
        [
            ("register_store".to_owned(), "accepted".to_owned(), None),
            ("consume".to_owned(), "refused".to_owned(), Some("no_subscription".to_owned())),
            ("start_trial".to_owned(), "accepted".to_owned(), None),
        ]
    );
    assert_eq!(journal.len(), 3 + answered);
}

/// jemalloc reads its options from a symbol the binary defines (crates/planledger/src/memory.rs);
/// if the library stopped reading it (a renamed symbol after an upgrade, say), nothing would
/// fail but memory would stay at a burst's high-water mark. The background thread that gives it
/// back exists only if the options were read.
#[tokio::test]
async fn serve_gives_memory_back_with_the_allocator_background_thread() {
    let db = Db::create(Backend::Sqlite, "serve_gives_memory_back_with_the_allocator_background_thread").await.unwrap();
    let server = Server::start(db.url(), &Options::default());
    server.register("Allocating").await;
    let names = server.thread_names();
    assert!(
        names.iter().any(|name| name.starts_with("jemalloc_bg_thd")),
        "no allocator background thread in {names:?}"
    );
}

/// What `planledger serve --bind BIND` prints on stderr when it refuses to start with `env`.
fn serve_refuses(bind: &str, env: &[(&str, &str)]) -> String {
    let db = planledger_testkit::SqliteTestDatabase::create();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_planledger"));
    command.args(["serve", "--bind", bind]).env("PLANLEDGER_DATABASE_URL", &db.url).env_remove("PLANLEDGER_TOKENS");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("run serve");
    assert!(!out.status.success(), "serve started with {env:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn without_tokens_the_server_refuses_a_non_loopback_bind() {
    let stderr = serve_refuses("0.0.0.0:0", &[]);
    assert!(stderr.contains("refusing to bind 0.0.0.0:0 without tokens"), "{stderr}");
}

#[test]
fn a_bad_token_list_stops_the_server_without_echoing_secrets() {
    let stderr = serve_refuses("127.0.0.1:0", &[("PLANLEDGER_TOKENS", "ops:superuser:topsecret-value")]);
    assert!(stderr.contains("unknown role") && !stderr.contains("topsecret-value"), "{stderr}");
}

/// Tokens never reach the logs, even at debug level, whether right or wrong.
async fn no_secret_reaches_the_logs(backend: Backend) {
    let Some(db) = Db::create(backend, "no_secret_reaches_the_logs").await else { return };
    let log = std::env::temp_dir().join(format!("planledger-log-{}.txt", uuid::Uuid::new_v4()));
    let options = Options { log_file: Some(log.clone()), ..Options::default().with_tokens() };
    let mut server = Server::start(db.url(), &options);
    let store = server.register("Secretive").await;
    server.as_token(Some(crate::server::SERVICE)).post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    server.as_token(Some("guessed-secret-123")).get(&format!("/v1/stores/{store}")).await;
    server.as_token(Some(crate::server::READER)).get(&format!("/v1/stores/{store}")).await;
    server.terminate();
    server.wait();
    let text = std::fs::read_to_string(&log).expect("the server's log");
    assert!(text.len() > 200, "the server logged at debug level: {text}");
    for secret in [crate::server::ADMIN, crate::server::SERVICE, crate::server::READER, "guessed-secret-123"] {
        assert!(!text.contains(secret), "{secret} appears in the log");
    }
    let _ = std::fs::remove_file(log);
}

/// `serve` runs the retention job: once a stored answer is older than `PLANLEDGER_KEEP_ANSWERS`
/// it is deleted (counted in `/metrics`), and a request with its key is a new command.
async fn serve_deletes_expired_answers_and_the_key_is_new_again(backend: Backend) {
    let options = Options {
        env: vec![("PLANLEDGER_KEEP_ANSWERS", "2d".into()), ("PLANLEDGER_RETENTION_INTERVAL_SECONDS", "1".into())],
        ..Options::test_clock()
    };
    let (server, _db) = server_or_skip!(backend, "serve_deletes_expired_answers_and_the_key_is_new_again", options);
    // Registered without a key (the typed client would give it one, and store its answer too):
    // order-7's is the one answer stored.
    let (status, registered) = server.post("/v1/stores", json!({"name": "Forgetful"})).await;
    assert_eq!(status, 201, "{registered}");
    let store = registered["storeId"].as_str().unwrap().to_owned();
    server.post(&format!("/v1/stores/{store}/trial"), json!({})).await;
    let consume = format!("/v1/stores/{store}/quota/consume");
    let body = json!({"action": "create_article"});
    let (status, first) = server.post_keyed(&consume, "order-7", body.clone()).await;
    assert_eq!((status, first["used"].as_u64()), (200, Some(1)), "{first}");
    assert_eq!(server.post_keyed(&consume, "order-7", body.clone()).await, (200, first.clone()), "a retry replays");

    server.advance_days(3).await;
    let deleted = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("planledger_retention_deleted_total{table=\"answers\"} ")?.parse::<u64>().ok())
    };
    let mut seen = None;
    for _ in 0..100 {
        let metrics = server.client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
        seen = deleted(&metrics);
        if seen == Some(1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, Some(1), "the retention job deleted the expired answer");
    let (status, again) = server.post_keyed(&consume, "order-7", body).await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again["consumptionId"], first["consumptionId"], "a new command once the answer expired: {again}");
}

#[test]
fn serve_refuses_to_keep_answers_less_than_a_day() {
    let stderr = serve_refuses("127.0.0.1:0", &[("PLANLEDGER_KEEP_ANSWERS", "12h")]);
    assert!(stderr.contains("PLANLEDGER_KEEP_ANSWERS") && stderr.contains("at least 24 hours"), "{stderr}");
    let stderr = serve_refuses("127.0.0.1:0", &[("PLANLEDGER_KEEP_JOURNAL", "a while")]);
    assert!(stderr.contains("--keep-journal") && stderr.contains("like 7d"), "{stderr}");
}

on_both_backends!(
    sigterm_finishes_in_flight_work_and_flushes_the_journal,
    no_secret_reaches_the_logs,
    serve_deletes_expired_answers_and_the_key_is_new_again
);
