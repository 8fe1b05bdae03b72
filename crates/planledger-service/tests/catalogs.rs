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
    Publication {
        source_name: "catalog.toml",
        source,
        author: "tester",
        reason: Some("a test"),
        effective_at,
        existing_stores: planledger_domain::Reach::EffectiveTime,
        require_preview: false,
    }
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

/// A version cannot take effect in the past: the stores decided then were decided under the
/// rules then.
async fn a_version_cannot_take_effect_in_the_past(postgres: bool) {
    let Some((log, _db)) = support::open(postgres, "catalog in the past").await else { return };
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    let yesterday = now - TimeDelta::days(1);
    let refused = catalogs::publish(&log, &publication(BUILTIN_SOURCE, Some(yesterday)), now).await;
    assert!(matches!(refused, Err(PublishError::InThePast { .. })), "{refused:?}");
    assert_eq!(catalogs::head(&log).await.unwrap(), 0, "nothing written");
}

/// A store registered on one node under a version another node has not read yet (published a
/// moment ago) is decided there under that version: the node reads the versions again first,
/// rather than deciding under the rules it has.
async fn a_node_reads_a_stores_version_it_does_not_know_before_deciding(postgres: bool) {
    use planledger_domain::{ActionName, Amount, Command, StoreId};
    use planledger_service::{Answer, CommandMeta, Outcome, ServiceConfig, TestClock};
    use std::sync::Arc;

    let Some((log, _db)) = support::open(postgres, "catalog unknown version").await else { return };
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    catalogs::publish(&log, &publication(BUILTIN_SOURCE, None), now).await.unwrap();
    let clock = Arc::new(TestClock::new(now));
    let behind = support::node_with(&log, clock.clone(), ServiceConfig::default());
    behind.replace_catalogs(Arc::new(catalogs::load(&log).await.unwrap().unwrap()));
    // Version 2: starter's articles down from 30 to 20, for stores registered from now on.
    let stricter = stricter();
    let publication = Publication { existing_stores: planledger_domain::Reach::Never, ..publication(&stricter, None) };
    catalogs::publish(&log, &publication, now).await.unwrap();
    let ahead = support::node_with(&log, clock.clone(), ServiceConfig::default());
    ahead.replace_catalogs(Arc::new(catalogs::load(&log).await.unwrap().unwrap()));

    let meta = || CommandMeta {
        correlation_id: "terms".into(),
        actor: "tester".into(),
        idempotency: None,
        expected_version: None,
        causation_id: None,
    };
    let store = StoreId::new(uuid::Uuid::now_v7());
    let register = Command::RegisterStore { store_id: store, name: None, time_zone: None };
    assert!(support::accepted(&ahead.execute(store, register, meta()).await));
    let paid = Command::ActivateSubscription {
        plan_id: planledger_domain::PlanId::parse("starter").unwrap(),
        subscription_id: planledger_domain::SubscriptionId::parse("sub_terms").unwrap(),
    };
    assert!(support::accepted(&ahead.execute(store, paid, meta()).await));
    assert_eq!(behind.catalogs().newest().version(), 1, "this node has not looked yet");
    let consume = || Command::Consume {
        action: ActionName::parse("create_article").unwrap(),
        amount: Amount::parse(1).unwrap(),
        consumption_id: uuid::Uuid::now_v7(),
    };
    let Ok(Answer::Decided(Outcome::Accepted(accepted))) = behind.execute(store, consume(), meta()).await else {
        panic!("the consumption is accepted")
    };
    let limit = accepted.facts.iter().find_map(|e| match e {
        planledger_domain::Event::QuotaConsumed { limit, .. } => *limit,
        _ => None,
    });
    assert_eq!(limit, Some(20), "decided under the store's version 2, not the node's version 1");
    assert_eq!(behind.catalogs().newest().version(), 2, "the node read the versions again");
}

planledger_testkit::on_both_backends!(
    a_version_cannot_take_effect_in_the_past,
    a_node_reads_a_stores_version_it_does_not_know_before_deciding,
    versions_are_numbered_immutable_and_in_force_from_their_time,
    two_publishers_never_write_one_number_twice,
    a_node_follows_the_ledger_whatever_its_file_says,
);
