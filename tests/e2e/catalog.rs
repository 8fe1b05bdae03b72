//! One catalog for the whole deployment: two nodes on one database decide under the ledger's
//! version whatever file each was started with; `planledger catalog publish` brings in stricter
//! rules that both enforce within the poll interval, without a restart, and no store goes past
//! the limit in force.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{Backend, Db, Options, Server};
use crate::{on_both_backends, planledger};

const BUILTIN: &str = include_str!("../../config/catalog.toml");

/// The built-in catalog with starter's monthly article limit set to `limit`, written to a file.
fn with_starter_articles(dir: &std::path::Path, name: &str, limit: u64) -> String {
    let text = BUILTIN.replacen("create_article = { limit = 30,", &format!("create_article = {{ limit = {limit},"), 1);
    assert_ne!(text, BUILTIN);
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn catalog_version(node: &Server) -> (i64, String) {
    let (status, view) = node.get("/v1/catalog").await;
    assert_eq!(status, 200, "{view}");
    (view["version"].as_i64().unwrap(), view["fingerprint"].as_str().unwrap().to_owned())
}

async fn consume(node: &Server, store: &str) -> (u16, Value) {
    node.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "create_article"})).await
}

async fn a_published_catalog_reaches_every_node_without_a_restart(backend: Backend) {
    let Some(db) = Db::create(backend, "a_published_catalog_reaches_every_node_without_a_restart").await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("planledger-catalog-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let looser = with_starter_articles(&dir, "looser.toml", 25);
    let stricter = with_starter_articles(&dir, "stricter.toml", 20);
    let poll = ("PLANLEDGER_CATALOG_POLL_MS", "100".to_owned());

    // The first node publishes its (built-in) catalog as version 1; the second, started with
    // another file, follows the ledger.
    let a = Server::start(db.url(), &Options { env: vec![poll.clone()], ..Options::default() });
    let b = Server::start(db.url(), &Options { catalog: Some(looser), env: vec![poll], ..Options::default() });
    let (version_a, fingerprint_a) = catalog_version(&a).await;
    assert_eq!((version_a, catalog_version(&b).await), (1, (1, fingerprint_a.clone())), "one catalog for both");

    let store = a.register("Writer").await;
    let (status, paid) = b
        .post(&format!("/v1/stores/{store}/subscription"), json!({"planId": "starter", "subscriptionId": "sub_w"}))
        .await;
    assert_eq!(status, 200, "{paid}");
    for i in 0..15 {
        let (status, consumed) = consume(if i % 2 == 0 { &a } else { &b }, &store).await;
        assert_eq!(
            (status, consumed["limit"].as_u64()),
            (200, Some(30)),
            "the ledger's limit on both nodes: {consumed}"
        );
    }

    // Stricter rules, published while both run.
    let published =
        planledger(db.url(), &["catalog", "publish", &stricter, "--reason", "fewer articles", "--author", "ops"]);
    let stdout = String::from_utf8_lossy(&published.stdout);
    assert!(published.status.success(), "{stdout}{}", String::from_utf8_lossy(&published.stderr));
    assert!(stdout.contains("published catalog version 2"), "{stdout}");
    let picked_up = Instant::now();
    for node in [&a, &b] {
        while catalog_version(node).await.0 != 2 {
            assert!(picked_up.elapsed() < Duration::from_secs(2), "a node still decides under version 1");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Exactly five more articles (15 of 20), whichever node is asked, then refusals on both.
    let mut allowed = 0;
    for i in 0..12 {
        let (status, answer) = consume(if i % 2 == 0 { &b } else { &a }, &store).await;
        match status {
            200 => allowed += 1,
            429 => assert_eq!((answer["error"].as_str(), answer["limit"].as_u64()), (Some("quota_exceeded"), Some(20))),
            other => panic!("{other}: {answer}"),
        }
    }
    assert_eq!(allowed, 5, "the new limit, exactly");
    let (_, view) = a.get(&format!("/v1/stores/{store}")).await;
    let usage = view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_article").unwrap().clone();
    assert_eq!((usage["used"].as_u64(), usage["limit"].as_u64()), (Some(20), Some(20)), "{view}");

    // The versions, over HTTP and from the command line.
    let (status, versions) = b.get("/v1/catalog/versions").await;
    assert_eq!(status, 200, "{versions}");
    let items = versions["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{versions}");
    assert_eq!((items[0]["inForce"].clone(), items[1]["inForce"].clone()), (json!(false), json!(true)));
    assert_eq!((items[1]["author"].as_str(), items[1]["reason"].as_str()), (Some("ops"), Some("fewer articles")));
    let listed = planledger(db.url(), &["catalog", "versions", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("versions as JSON");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(2), "{listed}");
    let again = planledger(db.url(), &["catalog", "publish", &stricter]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("unchanged: catalog version 2"),
        "publishing again is a no-op"
    );
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, BUILTIN.replacen("kind = \"growth\"", "kind = \"growing\"", 1)).unwrap();
    let refused = planledger(db.url(), &["catalog", "publish", broken.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("actions.create_article.kind"), "the field is named");
    assert_eq!(catalog_version(&a).await.0, 2, "nothing was published");
    let _ = std::fs::remove_dir_all(dir);
}

/// A version this build cannot read (a newer build published it: written here straight into
/// the table) is not applied: the node keeps the rules it has, keeps answering under them, and
/// `/readyz` says it is behind once the grace (five polls) is over.
async fn a_node_that_cannot_read_the_version_in_force_is_not_ready(backend: Backend) {
    let Some(db) = Db::create(backend, "a_node_that_cannot_read_the_version_in_force_is_not_ready").await else {
        return;
    };
    let node = Server::start(
        db.url(),
        &Options { env: vec![("PLANLEDGER_CATALOG_POLL_MS", "100".into())], ..Options::default() },
    );
    let (status, ready) = node.get("/readyz").await;
    assert_eq!((status, &ready["checks"]["catalog"]["status"]), (200, &json!("ok")), "{ready}");
    assert_eq!(ready["checks"]["catalog"]["ledgerVersion"], 1, "{ready}");
    let insert = "INSERT INTO catalog_versions (version, fingerprint, source, source_name, author, reason, {columns})
                  VALUES (2, 'sha256:from-the-future', '[teleportation]\nenabled = true\n', 'future.toml', 'a newer build', NULL, {values})";
    match &db {
        Db::Sqlite(lite) => {
            let pool = sqlx::SqlitePool::connect(&lite.url).await.unwrap();
            let now_us = chrono::Utc::now().timestamp_micros();
            let sql = insert
                .replace("{columns}", "effective_at_us, published_at_us")
                .replace("{values}", &format!("{now_us}, {now_us}"));
            sqlx::query(&sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Db::Postgres(pg) => {
            let pool = sqlx::PgPool::connect(&pg.url).await.unwrap();
            let sql = insert.replace("{columns}", "effective_at, published_at").replace("{values}", "now(), now()");
            sqlx::query(&sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
    let inserted = Instant::now();
    loop {
        let (status, ready) = node.get("/readyz").await;
        if status == 503 && ready["checks"]["catalog"]["status"] == "behind" {
            assert_eq!(
                (ready["checks"]["catalog"]["version"].clone(), ready["checks"]["catalog"]["ledgerVersion"].clone()),
                (json!(1), json!(2))
            );
            break;
        }
        assert!(inserted.elapsed() < Duration::from_secs(5), "/readyz did not report the node behind: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(catalog_version(&node).await.0, 1, "the node kept the rules it could read");
    let store = node.register("Still served").await;
    assert_eq!(node.post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
}

/// A version published with `--existing-stores never` keeps its word to the stores registered
/// before it: a grandfathered store keeps its limit past the effective time while a store
/// registered after gets the new one; a plan change takes the version in force. A version that
/// reaches existing stores at their next period start moves each at its own month boundary, on
/// the test clock, recorded once by the deadline worker; replay and the audit say so.
async fn versions_keep_their_word_to_existing_stores(backend: Backend) {
    let Some(db) = Db::create(backend, "versions_keep_their_word_to_existing_stores").await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("planledger-terms-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut options = Options::test_clock();
    options.env.push(("PLANLEDGER_CATALOG_POLL_MS", "100".into()));
    let server = Server::start(db.url(), &options);
    let subscribe = |store: String, plan: &'static str| {
        let server = &server;
        async move {
            let paid = json!({"planId": plan, "subscriptionId": format!("sub_{store}")});
            let (status, view) = server.post(&format!("/v1/stores/{store}/subscription"), paid).await;
            assert_eq!(status, 200, "{view}");
            view
        }
    };
    let old = server.register("Grandfathered").await;
    assert_eq!(subscribe(old.clone(), "starter").await["catalogVersion"], 1);
    for _ in 0..22 {
        assert_eq!(consume(&server, &old).await.0, 200);
    }

    // In force from the node's (test) clock's now.
    let node_now = || async {
        let now = server.client().advance_test_clock(1).await.expect("the test clock").value.now;
        now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let stricter = with_starter_articles(&dir, "stricter.toml", 20);
    let at = node_now().await;
    let out =
        planledger(db.url(), &["catalog", "publish", &stricter, "--existing-stores", "never", "--effective-at", &at]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(5);
    while catalog_version(&server).await.0 != 2 {
        assert!(Instant::now() < deadline, "the node did not take the published version");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, versions) = server.get("/v1/catalog/versions").await;
    assert_eq!(versions["items"][1]["existingStores"], "never", "{versions}");

    // The grandfathered store: its 30 articles, past the new version's effective time.
    for _ in 0..8 {
        let (status, consumed) = consume(&server, &old).await;
        assert_eq!((status, consumed["limit"].as_u64()), (200, Some(30)), "{consumed}");
    }
    let (status, refused) = consume(&server, &old).await;
    assert_eq!((status, refused["limit"].as_u64()), (429, Some(30)), "{refused}");
    let (_, view) = server.get(&format!("/v1/stores/{old}")).await;
    assert_eq!(view["catalogVersion"], 1, "{view}");

    // A store registered now: the new version's 20.
    let new = server.register("Newcomer").await;
    assert_eq!(subscribe(new.clone(), "starter").await["catalogVersion"], 2);
    for _ in 0..20 {
        assert_eq!(consume(&server, &new).await.0, 200);
    }
    let (status, refused) = consume(&server, &new).await;
    assert_eq!((status, refused["limit"].as_u64()), (429, Some(20)), "{refused}");

    // A plan change takes the version in force.
    let moved = server.register("Upgrader").await;
    let _ = subscribe(moved.clone(), "starter").await;
    assert_eq!(subscribe(moved.clone(), "professional").await["catalogVersion"], 2);

    // A version for existing stores at their next period start: the newcomer keeps version 2
    // until its month ends, then moves, recorded once by the deadline worker.
    let looser = with_starter_articles(&dir, "looser.toml", 40);
    let at = node_now().await;
    let out = planledger(
        db.url(),
        &["catalog", "publish", &looser, "--existing-stores", "next_period", "--effective-at", &at],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    while catalog_version(&server).await.0 != 3 {
        assert!(Instant::now() < deadline + Duration::from_secs(5), "the node did not take version 3");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The read models are rebuilt for the new set of versions: each store's row then holds the
    // time the version reaches it, as a deadline the deadline worker sweeps.
    loop {
        let (_, ready) = server.get("/readyz").await;
        if ready["checks"]["staleReadModels"] == json!([]) {
            break;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(30), "the read models stayed stale: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, view) = server.get(&format!("/v1/stores/{new}")).await;
    assert_eq!(view["catalogVersion"], 2, "not before its period ends: {view}");
    assert_eq!(consume(&server, &new).await.0, 429, "still version 2's limit this month");
    server.advance_days(32).await;
    let (_, view) = server.get(&format!("/v1/stores/{new}")).await;
    assert_eq!(view["catalogVersion"], 3, "{view}");
    let usage = view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_article").unwrap().clone();
    assert_eq!(usage["limit"], 40, "{view}");
    // Version 2 never reached the grandfathered store; version 3, for every existing store,
    // does.
    assert_eq!(server.get(&format!("/v1/stores/{old}")).await.1["catalogVersion"], 3);
    let types = server.event_types(&new).await;
    assert_eq!(types.iter().filter(|t| *t == "CatalogAdopted").count(), 1, "{types:?}");

    // Replay and the audit name the versions.
    let out = planledger(db.url(), &["replay", "--store", &new, "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("registered Newcomer (UTC) under catalog version 2"), "{text}");
    assert!(text.contains("now decided under catalog version 3 (reached at the store's period start"), "{text}");
    // The audit log follows the events asynchronously.
    let caught_up = Instant::now();
    loop {
        let (_, audit) = server.get(&format!("/v1/audit?storeId={new}&type=CatalogAdopted")).await;
        if audit["items"].as_array().map(Vec::len) == Some(1) {
            assert!(audit["items"][0]["summary"].as_str().unwrap().contains("catalog version 3"), "{audit}");
            break;
        }
        assert!(caught_up.elapsed() < Duration::from_secs(10), "the audit log lacks the move: {audit}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `planledger catalog preview DRAFT` decides the ledger's consumptions again under a draft: a
/// stricter one lists exactly the store and the consumptions it would refuse, which the
/// published version then refuses; a draft without a store's plan says so, as an error.
async fn a_preview_lists_what_a_stricter_catalog_would_refuse(backend: Backend) {
    let Some(db) = Db::create(backend, "a_preview_lists_what_a_stricter_catalog_would_refuse").await else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("planledger-preview-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::start(
        db.url(),
        &Options { env: vec![("PLANLEDGER_CATALOG_POLL_MS", "100".into())], ..Options::default() },
    );
    let starter = |name: &'static str| {
        let server = &server;
        async move {
            let store = server.register(name).await;
            let paid = json!({"planId": "starter", "subscriptionId": format!("sub_{name}")});
            assert_eq!(server.post(&format!("/v1/stores/{store}/subscription"), paid).await.0, 200);
            store
        }
    };
    let (busy, quiet) = (starter("busy").await, starter("quiet").await);
    for (store, articles) in [(&busy, 25), (&quiet, 10)] {
        for _ in 0..articles {
            assert_eq!(consume(&server, store).await.0, 200);
        }
    }
    let before = planledger(db.url(), &["catalog", "versions", "--json"]);

    let stricter = with_starter_articles(&dir, "stricter.toml", 20);
    let out = planledger(db.url(), &["catalog", "preview", &stricter, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let preview: Value = serde_json::from_slice(&out.stdout).expect("the preview as JSON");
    assert_eq!((preview["storesExamined"].clone(), preview["consumptionsExamined"].clone()), (json!(2), json!(35)));
    assert_eq!((preview["wouldRefuse"].clone(), preview["plansMissing"].clone()), (json!(5), json!(0)), "{preview}");
    let stores = preview["stores"].as_array().unwrap();
    assert_eq!(stores.len(), 1, "only the store over the new limit: {preview}");
    assert_eq!(stores[0]["storeId"], busy);
    let refused = stores[0]["wouldRefuse"].as_array().unwrap();
    assert!(refused.iter().all(|r| r["error"] == "quota_exceeded" && r["action"] == "create_article"), "{preview}");
    // The 21st to the 25th articles: versions 23 to 27 (the registration is version 1, the
    // subscription 2, then one event per article).
    let versions: Vec<i64> = refused.iter().map(|r| r["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, [23, 24, 25, 26, 27], "{preview}");
    let text = planledger(db.url(), &["catalog", "preview", &stricter]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("5 consumptions would be refused on 1 stores"), "{text}");
    // The same over HTTP, one answer shape for both; a draft that is no catalog names why.
    let draft = std::fs::read_to_string(&stricter).unwrap();
    let (status, answer) = server.post("/v1/admin/catalog/preview", json!({"catalog": draft})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, preview, "the route and the command line answer alike");
    let (status, refused) = server.post("/v1/admin/catalog/preview", json!({"catalog": "[plans.x]\ntier = 1"})).await;
    assert_eq!(
        (status, refused["error"].as_str(), refused["field"].as_str()),
        (422, Some("validation_failed"), Some("catalog"))
    );

    // A draft without the starter plan cannot decide for either store: an error, not unmetered.
    let without_starter = dir.join("without-starter.toml");
    let (head, tail) = BUILTIN.split_once("[plans.starter]").unwrap();
    let tail = &tail[tail.find("[plans.professional]").unwrap()..];
    std::fs::write(&without_starter, format!("{head}{tail}")).unwrap();
    let out = planledger(db.url(), &["catalog", "preview", without_starter.to_str().unwrap(), "--json"]);
    let preview: Value = serde_json::from_slice(&out.stdout).expect("the preview as JSON");
    assert_eq!(preview["plansMissing"], 2, "{preview}");
    assert!(preview["stores"].as_array().unwrap().iter().all(|s| s["planMissing"] == "starter"), "{preview}");

    // Nothing was written; once published, the store the preview named is refused, the other
    // reaches the new limit.
    assert_eq!(
        planledger(db.url(), &["catalog", "versions", "--json"]).stdout,
        before.stdout,
        "a preview writes nothing"
    );
    assert!(planledger(db.url(), &["catalog", "publish", &stricter]).status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while catalog_version(&server).await.0 != 2 {
        assert!(Instant::now() < deadline, "the node did not take the published version");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(consume(&server, &busy).await.0, 429);
    let allowed = {
        let mut allowed = 0;
        while consume(&server, &quiet).await.0 == 200 {
            allowed += 1;
        }
        allowed
    };
    assert_eq!(allowed, 10, "the quiet store reaches the new limit of 20");

    // A looser draft lifts refusals: the quiet store's 21st article, refused under version 2,
    // would be allowed under 25; the busy store's refusal (its 26th) would not. Publishing with
    // --require-preview needs a preview of the same rules first.
    let looser = with_starter_articles(&dir, "looser.toml", 25);
    let refused = planledger(db.url(), &["catalog", "publish", &looser, "--require-preview"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("never previewed"), "{refused:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let preview = loop {
        let out = planledger(db.url(), &["catalog", "preview", &looser, "--json"]);
        let preview: Value = serde_json::from_slice(&out.stdout).expect("the preview as JSON");
        // The journal is written off the command path: wait for both refusals.
        if preview["refusalsExamined"] == 2 {
            break preview;
        }
        assert!(Instant::now() < deadline, "the journal never held both refusals: {preview}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((preview["wouldAllow"].clone(), preview["wouldRefuse"].clone()), (json!(1), json!(0)), "{preview}");
    let lifted = preview["stores"].as_array().unwrap().iter().find(|s| s["storeId"] == quiet).unwrap().clone();
    let allowance = &lifted["wouldAllow"][0];
    assert_eq!(
        (allowance["action"].as_str(), allowance["refusedWith"].as_str()),
        (Some("create_article"), Some("quota_exceeded")),
        "{preview}"
    );
    let published = planledger(db.url(), &["catalog", "publish", &looser, "--require-preview"]);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    let _ = std::fs::remove_dir_all(dir);
}

on_both_backends!(
    versions_keep_their_word_to_existing_stores,
    a_preview_lists_what_a_stricter_catalog_would_refuse,
    a_published_catalog_reaches_every_node_without_a_restart,
    a_node_that_cannot_read_the_version_in_force_is_not_ready,
);
