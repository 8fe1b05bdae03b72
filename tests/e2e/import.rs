//! Moving in (`planledger import`, docs/import.md): tenants in every status, with ids that are
//! not UUIDs, trials mid-way and usage mid-month, imported from NDJSON and CSV; each then answers
//! gates, quotas and deadlines as its source system would. Bad rows are reported by line and
//! written nowhere; importing again changes nothing; a dry run writes nothing.

use chrono::{Datelike, TimeDelta, TimeZone, Utc};
use serde_json::{json, Value};

use crate::server::{Backend, Db, Options, Server};
use crate::{on_both_backends, planledger};

fn at(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn found(server: &Server, external: &str) -> Value {
    let (status, page) = server.get(&format!("/v1/stores?externalId={external}")).await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{external}: {page}");
    items[0].clone()
}

async fn consume(server: &Server, store: &Value, action: &str) -> (u16, Value) {
    let id = store["storeId"].as_str().unwrap();
    server.post(&format!("/v1/stores/{id}/quota/consume"), json!({"action": action})).await
}

async fn tenants_in_every_status_move_in(backend: Backend) {
    let Some(db) = Db::create(backend, "tenants_in_every_status_move_in").await else { return };
    let server = Server::start(db.url(), &Options::default());
    let now = Utc::now();
    let month = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).unwrap();
    let (in_5_days, in_2_days, in_100_days) =
        (now + TimeDelta::days(5), now + TimeDelta::days(2), now + TimeDelta::days(100));
    let lines = [
        json!({"externalId": "clx0trial", "name": "Trial Shop", "status": "trialing", "trialEndsAt": at(in_5_days),
               "usage": [{"action": "create_article", "used": 40, "since": at(month)}]}),
        json!({"externalId": "clx0grace", "status": "grace", "graceEndsAt": at(in_2_days)}),
        json!({"externalId": "clx0maint", "status": "maintenance", "maintenanceEndsAt": at(in_100_days)}),
        json!({"externalId": "clx0frozen", "status": "frozen"}),
        json!({"externalId": "clx0active", "status": "active", "planId": "starter", "subscriptionId": "sub_A",
               "customerId": "cus_A", "usage": [{"action": "create_article", "used": 12, "since": at(month)}]}),
        json!({"externalId": "42", "status": "past_due", "planId": "starter", "subscriptionId": "sub_B"}),
        json!({"externalId": "shop/7", "status": "canceled", "planId": "starter", "subscriptionId": "sub_C"}),
        json!({"externalId": "clx0new", "status": "unsubscribed", "trialUsed": true}),
        // Rows the import refuses, each on its own line.
        json!({"externalId": "clx0bad1", "status": "sleeping"}),
        json!({"externalId": "clx0bad2", "status": "active", "planId": "starter"}),
        json!({"externalId": "clx0bad3", "status": "active", "planId": "platinum", "subscriptionId": "sub_D"}),
    ];
    let dir = std::env::temp_dir().join(format!("planledger-import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tenants.ndjson");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, &text).unwrap();
    let file = file.display().to_string();

    let out = planledger(db.url(), &["import", &file, "--json"]);
    assert!(!out.status.success(), "rows were refused: the exit status says so");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the summary as JSON");
    assert_eq!((summary["imported"].clone(), summary["notImported"].clone()), (json!(8), json!(3)), "{summary}");
    let problems: Vec<(u64, &str)> = summary["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), p["error"].as_str().unwrap()))
        .collect();
    assert_eq!(problems, [(9, "validation_failed"), (10, "subscription_required"), (11, "unknown_plan")], "{summary}");
    let (_, none) = server.get("/v1/stores?externalId=clx0bad2").await;
    assert_eq!(none["items"], json!([]), "nothing written for a refused row");

    // Each tenant answers as it stood at home.
    let trial = found(&server, "clx0trial").await;
    assert_eq!((trial["internalStatus"].as_str(), trial["externalId"].as_str()), (Some("trialing"), Some("clx0trial")));
    assert_eq!(trial["trialEndsAt"].as_str().unwrap()[..19], at(in_5_days)[..19], "the exact trial end");
    let articles = trial["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_article").unwrap().clone();
    assert_eq!((articles["used"].as_u64(), articles["limit"].as_u64()), (Some(40), Some(10)), "{trial}");
    let (status, refused) = consume(&server, &trial, "create_article").await;
    assert_eq!((status, refused["error"].as_str()), (429, Some("quota_exceeded")), "over its limit at home: {refused}");
    let (status, refused) =
        server.post(&format!("/v1/stores/{}/trial", trial["storeId"].as_str().unwrap()), json!({})).await;
    assert_eq!(status, 200, "a running trial is not restarted: {refused}");

    let grace = found(&server, "clx0grace").await;
    assert_eq!((grace["internalStatus"].as_str(), grace["planId"].as_str()), (Some("grace"), Some("free_trial")));
    assert_eq!(consume(&server, &grace, "create_article").await.0, 200, "growth is allowed in grace");

    let maintenance = found(&server, "clx0maint").await;
    assert_eq!(
        (maintenance["internalStatus"].as_str(), maintenance["planId"].as_str()),
        (Some("maintenance"), Some("google_only"))
    );
    let (status, refused) = consume(&server, &maintenance, "create_article").await;
    assert_eq!((status, refused["error"].as_str()), (403, Some("maintenance_no_growth")), "{refused}");

    let frozen = found(&server, "clx0frozen").await;
    let (status, refused) = consume(&server, &frozen, "update_product").await;
    assert_eq!((status, refused["error"].as_str()), (403, Some("account_frozen")), "{refused}");

    let active = found(&server, "clx0active").await;
    let (status, consumed) = consume(&server, &active, "create_article").await;
    assert_eq!(
        (status, consumed["used"].as_u64(), consumed["limit"].as_u64()),
        (200, Some(13), Some(30)),
        "{consumed}"
    );
    assert_eq!(found(&server, "42").await["internalStatus"], "past_due");
    let canceled = found(&server, "shop/7").await;
    let (status, refused) = consume(&server, &canceled, "create_article").await;
    assert_eq!((status, refused["error"].as_str()), (403, Some("subscription_canceled")), "{refused}");
    let unsubscribed = found(&server, "clx0new").await;
    let id = unsubscribed["storeId"].as_str().unwrap();
    let (status, refused) = server.post(&format!("/v1/stores/{id}/trial"), json!({})).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("trial_already_used")), "{refused}");
    let types = server.event_types(trial["storeId"].as_str().unwrap()).await;
    assert_eq!(types[0], "StoreImported");

    // Again: nothing changes.
    let events_before = server.get("/v1/events?limit=1000").await.1["items"].as_array().unwrap().len();
    let out = planledger(db.url(), &["import", &file, "--json"]);
    let again: Value = serde_json::from_slice(&out.stdout).expect("the summary as JSON");
    assert_eq!((again["imported"].clone(), again["unchanged"].clone()), (json!(0), json!(8)), "{again}");
    let events_after = server.get("/v1/events?limit=1000").await.1["items"].as_array().unwrap().len();
    assert_eq!(events_after, events_before, "re-importing appends nothing");

    // CSV, dry run first: nothing written; then for real.
    let csv = dir.join("more.csv");
    std::fs::write(
        &csv,
        format!(
            "externalId,name,status,planId,subscriptionId,used:create_article,since:create_article\n\
             csv-1,From CSV,active,starter,sub_E,29,{}\n",
            at(month)
        ),
    )
    .unwrap();
    let csv = csv.display().to_string();
    let dry = planledger(db.url(), &["import", &csv, "--dry-run"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("1 tenants would be imported"), "{dry:?}");
    assert_eq!(server.get("/v1/stores?externalId=csv-1").await.1["items"], json!([]), "a dry run writes nothing");
    assert!(planledger(db.url(), &["import", &csv]).status.success());
    let from_csv = found(&server, "csv-1").await;
    assert_eq!(consume(&server, &from_csv, "create_article").await.0, 200, "the 30th article");
    assert_eq!(consume(&server, &from_csv, "create_article").await.0, 429, "then its limit");

    // One tenant over HTTP: imported, then unchanged; a status without its date names the field.
    let one = json!({"externalId": "api-1", "status": "trialing", "trialEndsAt": at(in_5_days)});
    let (status, view) = server.post("/v1/admin/stores/import", one.clone()).await;
    assert_eq!(
        (status, view["externalId"].as_str(), view["internalStatus"].as_str()),
        (201, Some("api-1"), Some("trialing"))
    );
    let (status, again) = server.post("/v1/admin/stores/import", one).await;
    assert_eq!((status, again["version"].clone()), (200, view["version"].clone()), "unchanged: {again}");
    let (status, refused) =
        server.post("/v1/admin/stores/import", json!({"externalId": "api-2", "status": "grace"})).await;
    assert_eq!((status, refused["field"].as_str()), (422, Some("graceEndsAt")), "{refused}");
    // A store registered here under the id an external id derives to is not that tenant.
    let namespace = uuid::Uuid::from_u128(0x6f1c_2b0e_4d7a_4c55_9a3e_1f0b_8c2d_5e71);
    let taken = uuid::Uuid::new_v5(&namespace, b"taken-1");
    assert_eq!(server.post("/v1/stores", json!({"storeId": taken})).await.0, 201);
    let (status, refused) =
        server.post("/v1/admin/stores/import", json!({"externalId": "taken-1", "status": "frozen"})).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("store_exists")), "{refused}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `--stripe-subscriptions`: Stripe's own list of subscriptions links each imported store, by
/// its subscription id (A), its customer (B), or an external id in the subscription's metadata
/// (C), so that
/// webhooks without `metadata.store_id` reach the right store; an event Stripe made before the
/// import is older than the state imported; a subscription of no tenant is reported.
async fn stripe_subscriptions_link_imported_stores(backend: Backend) {
    use crate::stripe::{applied, catalog_file, deliver, PRO, SECRET};
    use planledger_testkit::stripe::{event, Subscription};

    let Some(db) = Db::create(backend, "stripe_subscriptions_link_imported_stores").await else { return };
    let catalog = catalog_file();
    let options = Options {
        catalog: Some(catalog.display().to_string()),
        env: vec![("PLANLEDGER_STRIPE_WEBHOOK_SECRETS", SECRET.to_owned())],
        ..Options::default().with_tokens()
    };
    let server = Server::start(db.url(), &options);
    let now = Utc::now();
    let dir = std::env::temp_dir().join(format!("planledger-links-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let tenants = dir.join("tenants.ndjson");
    let lines = [
        json!({"externalId": "clA", "status": "active", "planId": "starter", "subscriptionId": "sub_A", "customerId": "cus_A"}),
        json!({"externalId": "clB", "status": "trialing", "trialEndsAt": at(now + TimeDelta::days(5)), "customerId": "cus_B"}),
        json!({"externalId": "clC", "status": "trialing", "trialEndsAt": at(now + TimeDelta::days(9))}),
    ];
    std::fs::write(&tenants, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    // As `stripe subscriptions list` pages them: a page per line.
    let t = now.timestamp();
    let sub = |id, customer, status| Subscription {
        id,
        customer,
        status,
        store_id: None,
        price: PRO,
        created: t - 86_400,
        trial_end: None,
        canceled_at: None,
        ended_at: None,
    };
    let mut c = sub("sub_C", "cus_C", "trialing").object();
    c["metadata"] = json!({"tenant_id": "clC"});
    let pages = [
        json!({"object": "list", "url": "/v1/subscriptions", "has_more": true,
               "data": [sub("sub_A", "cus_A", "active").object(), sub("sub_B", "cus_B", "trialing").object()]}),
        json!({"object": "list", "url": "/v1/subscriptions", "has_more": false,
               "data": [c, sub("sub_D", "cus_Z", "active").object()]}),
    ];
    let subscriptions = dir.join("subscriptions.ndjson");
    std::fs::write(&subscriptions, pages.iter().map(|p| format!("{p}\n")).collect::<String>()).unwrap();
    let (tenants, subscriptions) = (tenants.display().to_string(), subscriptions.display().to_string());
    let import = |extra: &[&str]| {
        let mut args =
            vec!["import", &tenants, "--stripe-subscriptions", &subscriptions, "--stripe-external-id-key", "tenant_id"];
        args.extend_from_slice(extra);
        args.push("--json");
        let out = planledger(db.url(), &args);
        let summary: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.success(), summary)
    };

    let (ok, summary) = import(&["--dry-run"]);
    assert!(!ok, "a subscription of no tenant is a problem: {summary}");
    assert_eq!(summary["stripeSubscriptions"]["linked"], 3, "{summary}");
    let (status, listed) = server.get("/v1/admin/stores").await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 0, "a dry run writes nothing");

    let (ok, summary) = import(&[]);
    assert!(!ok);
    let links = &summary["stripeSubscriptions"];
    assert_eq!((links["linked"].as_u64(), links["notLinked"].as_u64()), (Some(3), Some(1)), "{summary}");
    let problem = links["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("sub_D") && problem.contains("cus_Z") && problem.contains("metadata.tenant_id"),
        "{problem}"
    );

    // Stripe's webhooks, none with metadata.store_id, after the import.
    let later = t + 60;
    let failed = sub("sub_A", "cus_A", "past_due");
    let converted = sub("sub_B", "cus_B", "active");
    let mut paid = sub("sub_C", "cus_C", "active").object();
    paid["metadata"] = json!({"tenant_id": "clC"});
    // And one Stripe made before the import, delivered late: older than the state imported.
    let before = sub("sub_A", "cus_A", "canceled");
    for e in [
        event("evt_A_failed", "invoice.payment_failed", later, failed.invoice("in_A", later, false), None),
        event(
            "evt_B_active",
            "customer.subscription.updated",
            later,
            converted.object(),
            Some(json!({"status": "trialing"})),
        ),
        event("evt_C_active", "customer.subscription.updated", later, paid, Some(json!({"status": "trialing"}))),
        event("evt_A_old", "customer.subscription.deleted", t - 3_600, before.object(), None),
    ] {
        let (status, body) = deliver(&server, &e, SECRET, Utc::now().timestamp()).await;
        assert_eq!(status, 200, "{body}");
    }
    let events = applied(&server).await;
    let status_of = |id: &str| events.iter().find(|e| e["eventId"] == id).map(|e| e["status"].clone());
    assert_eq!(status_of("evt_A_old"), Some(json!("stale")), "{events:?}");
    for id in ["evt_A_failed", "evt_B_active", "evt_C_active"] {
        assert_eq!(status_of(id), Some(json!("applied")), "{id}: {events:?}");
    }
    let a = found(&server, "clA").await;
    assert_eq!(
        (a["subscriptionStatus"].as_str(), a["internalStatus"].as_str()),
        (Some("past_due"), Some("past_due")),
        "{a}"
    );
    let b = found(&server, "clB").await;
    assert_eq!((b["internalStatus"].as_str(), b["planId"].as_str()), (Some("active"), Some("professional")), "{b}");
    assert_eq!(b["subscriptionId"], "sub_B");
    let c = found(&server, "clC").await;
    assert_eq!((c["internalStatus"].as_str(), c["planId"].as_str()), (Some("active"), Some("professional")), "{c}");
    assert_eq!(c["subscriptionId"], "sub_C", "found by the tenant id in the subscription's metadata");

    // Again: everything is linked already.
    let (_, summary) = import(&[]);
    assert_eq!(summary["stripeSubscriptions"]["linkedBefore"], 3, "{summary}");
    assert_eq!(summary["unchanged"], 3, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&catalog);
}

on_both_backends!(tenants_in_every_status_move_in, stripe_subscriptions_link_imported_stores);
