//! The catalog as ledger data (`planledger_service::catalogs`), on both backends: versions are
//! numbered, never changed, in force from their effective time; publishing the same rules again
//! changes nothing; two publishers never write one number twice; a node follows the ledger
//! whatever its own file says, unless told to publish it.

use chrono::{TimeDelta, TimeZone, Utc};
use planledger_domain::BUILTIN_SOURCE;
use planledger_service::catalogs::{self, Publication, PublishError, Published, ResolveNote};
use planledger_store::sql::Statement;

mod support;

fn stricter() -> String {
    BUILTIN_SOURCE.replacen("create_article = { limit = 30,", "create_article = { limit = 20,", 1)
}

fn publication<'a>(source: &'a str, effective_at: Option<chrono::DateTime<Utc>>) -> Publication<'a> {
    Publication { source_name: "catalog.toml", source, author: "tester", reason: Some("a test"), effective_at }
}

async fn versions_are_numbered_immutable_and_in_force_from_their_time(postgres: bool) {
    let Some((log, _db)) = support::open(postgres, "catalog versions").await else { return };
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    assert_eq!(catalogs::head(&log).await.unwrap(), 0);
    let Published::New(first) = catalogs::publish(&log, &publication(BUILTIN_SOURCE, None), now).await.unwrap() else {
        panic!("the first publication is a new version")
    };
    assert_eq!((first.version, first.effective_at, first.author.as_str()), (1, now, "tester"));
    assert_eq!(first.reason.as_deref(), Some("a test"));
    assert_eq!(first.catalog().unwrap().fingerprint(), first.fingerprint);

    // The same rules again: nothing written.
    let again = catalogs::publish(&log, &publication(BUILTIN_SOURCE, None), now + TimeDelta::hours(1)).await.unwrap();
    assert!(matches!(again, Published::Unchanged(ref v) if v.version == 1), "{again:?}");

    // Stricter rules from next month: version 2, in force only from then.
    let next_month = Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap();
    let text = stricter();
    let Published::New(second) = catalogs::publish(&log, &publication(&text, Some(next_month)), now).await.unwrap()
    else {
        panic!("new rules are a new version")
    };
    assert_eq!((second.version, second.effective_at), (2, next_month));
    let all = catalogs::versions(&log).await.unwrap();
    assert_eq!(all.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(catalogs::head(&log).await.unwrap(), 2);
    assert_eq!(catalogs::in_force(&all, now).map(|v| v.version), Some(1));
    assert_eq!(catalogs::in_force(&all, next_month - TimeDelta::microseconds(1)).map(|v| v.version), Some(1));
    assert_eq!(catalogs::in_force(&all, next_month).map(|v| v.version), Some(2));
    assert_eq!(catalogs::in_force(&all, now - TimeDelta::days(1)), None, "before any version");

    // An invalid file is refused, naming the field, and writes nothing.
    let broken = BUILTIN_SOURCE.replacen("kind = \"growth\"", "kind = \"growing\"", 1);
    match catalogs::publish(&log, &publication(&broken, None), now).await {
        Err(PublishError::Invalid(error)) => assert!(error.to_string().contains(".kind"), "{error}"),
        other => panic!("expected an invalid catalog, got {other:?}"),
    }
    assert_eq!(catalogs::head(&log).await.unwrap(), 2);

    // Versions are never changed or deleted.
    for sql in ["UPDATE catalog_versions SET author = 'someone else'", "DELETE FROM catalog_versions"] {
        assert!(log.execute(&Statement::new(sql)).await.is_err(), "{sql} was allowed");
    }
    assert_eq!(catalogs::versions(&log).await.unwrap(), all);
}

async fn two_publishers_never_write_one_number_twice(postgres: bool) {
    let Some((log, _db)) = support::open(postgres, "catalog publish race").await else { return };
    let now = Utc::now();
    catalogs::publish(&log, &publication(BUILTIN_SOURCE, None), now).await.unwrap();
    let texts: Vec<String> = (0..6)
        .map(|i| {
            BUILTIN_SOURCE.replacen(
                "create_article = { limit = 30,",
                &format!("create_article = {{ limit = {},", 21 + i),
                1,
            )
        })
        .collect();
    let publishes = texts.iter().map(|text| {
        let log = log.clone();
        async move { catalogs::publish(&log, &publication(text, None), now).await }
    });
    let results = futures_util::future::join_all(publishes).await;
    let mut written = Vec::new();
    for result in results {
        match result {
            Ok(Published::New(version)) => written.push(version.version),
            Err(PublishError::Raced) => {}
            other => panic!("a publication is new or lost a race, got {other:?}"),
        }
    }
    let all: Vec<i64> = catalogs::versions(&log).await.unwrap().iter().map(|v| v.version).collect();
    assert_eq!(all, (1..=all.len() as i64).collect::<Vec<_>>(), "numbered without gaps");
    written.sort();
    assert_eq!(written, all[1..], "every new version written once, and only those");
}

async fn a_node_follows_the_ledger_whatever_its_file_says(postgres: bool) {
    let Some((log, _db)) = support::open(postgres, "catalog resolve").await else { return };
    let clock = planledger_service::SystemClock;
    let text = stricter();
    // An empty ledger takes the first node's file.
    let first = catalogs::resolve(&log, ("mine.toml", &text), true, false, "node a", &clock).await.unwrap();
    assert_eq!((first.note.clone(), first.version.version), (ResolveNote::FirstVersion, 1));
    // A node with another file follows the ledger and says so.
    let other = catalogs::resolve(&log, ("theirs.toml", BUILTIN_SOURCE), true, false, "node b", &clock).await.unwrap();
    assert!(matches!(other.note, ResolveNote::FileDiffers { .. }), "{:?}", other.note);
    assert_eq!(other.catalog.fingerprint(), first.catalog.fingerprint(), "the ledger's rules, not the file's");
    // Without a file of its own (the built-in one) it follows too, silently.
    let builtin = catalogs::resolve(&log, ("built in", BUILTIN_SOURCE), false, false, "node c", &clock).await.unwrap();
    assert_eq!((builtin.note, builtin.version.version), (ResolveNote::Agrees, 1));
    // Told to publish, it does, and decides under its file.
    let published =
        catalogs::resolve(&log, ("theirs.toml", BUILTIN_SOURCE), true, true, "node b", &clock).await.unwrap();
    assert_eq!((published.note, published.version.version), (ResolveNote::Published, 2));
    assert_eq!(published.version.author, "node b");
    let again = catalogs::resolve(&log, ("theirs.toml", BUILTIN_SOURCE), true, true, "node b", &clock).await.unwrap();
    assert_eq!((again.note, again.version.version), (ResolveNote::Agrees, 2), "publishing what is in force is a no-op");
}

planledger_testkit::on_both_backends!(
    versions_are_numbered_immutable_and_in_force_from_their_time,
    two_publishers_never_write_one_number_twice,
    a_node_follows_the_ledger_whatever_its_file_says,
);
