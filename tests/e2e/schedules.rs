//! Scheduled plan changes, end to end (issue 35): a downgrade at the end of the billing period
//! keeps the higher limit until the boundary, in the store's time zone and a 28-day month; a
//! change canceled before its time never applies; nodes racing to apply one due change append it
//! once, caused by the request that scheduled it.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::server::{Backend, Db, Options, Server};

async fn set_clock(server: &Server, now: &str) {
    let (status, body) = server
        .caller()
        .send(server.client.put(format!("{}/v1/test-clock", server.base)).json(&json!({"now": now})))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn advance_seconds(server: &Server, seconds: i64) {
    let (status, body) = server.post("/v1/test-clock/advance", json!({"seconds": seconds})).await;
    assert_eq!(status, 200, "{body}");
}

async fn delete(server: &Server, path: &str) -> (u16, Value) {
    server.caller().send(server.client.delete(format!("{}{path}", server.base))).await
}

/// A store in New York on professional (150 articles a month) with a subscription.
async fn professional_store(server: &Server) -> String {
    let (status, body) =
        server.post("/v1/stores", json!({"name": "Brooklyn Books", "timeZone": "America/New_York"})).await;
    assert_eq!(status, 201, "{body}");
    let store = body["storeId"].as_str().unwrap().to_owned();
    let (status, body) = server
        .post(
            &format!("/v1/stores/{store}/subscription"),
            json!({"planId": "professional", "subscriptionId": "sub_pro_1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    store
}

fn articles(view: &Value) -> (Value, Value) {
    let usage = view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_article").unwrap();
    (usage["limit"].clone(), usage["used"].clone())
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

async fn a_downgrade_at_period_end_keeps_the_higher_limit_until_the_boundary(backend: Backend) {
    let Some(db) = Db::create(backend, "a_downgrade_at_period_end_keeps_the_higher_limit").await else { return };
    let server = Server::start(db.url(), &Options::test_clock());
    // February 2027: 28 days.
    set_clock(&server, "2027-02-10T15:00:00Z").await;
    let store = professional_store(&server).await;
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    let period_end = view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_article").unwrap()
        ["periodEnd"]
        .clone();

    let transition = json!({"fromPlanId": "professional", "toPlanId": "starter", "reason": "downgrade", "subscriptionId": "sub_pro_1", "at": "period_end"});
    let (status, answer) = server.post(&format!("/v1/stores/{store}/plan-transitions"), transition).await;
    assert_eq!(status, 202, "{answer}");
    let scheduled = &answer["scheduled"];
    assert_eq!(scheduled["at"], period_end, "the end of the store's billing period: {answer}");
    // Professional's months are anchored on the subscription (the 10th), at local midnight: the
    // period that holds the 10th of February (a 28-day month) ends on the 10th of March, 00:00 in
    // New York.
    assert_eq!(time(&scheduled["at"]).to_rfc3339(), "2027-03-10T05:00:00+00:00");
    assert_eq!(scheduled["atPeriodEnd"], true);
    assert_eq!(answer["replaced"], Value::Null);
    assert_eq!(answer["store"]["scheduledPlanTransition"], *scheduled);
    assert_eq!(answer["store"]["nextDeadline"], scheduled["at"]);
    let schedule_id = scheduled["scheduleId"].as_str().unwrap().to_owned();
    // The request's correlation id, which the change names as its cause when it applies.
    let scheduling = server.get(&format!("/v1/stores/{store}/events?limit=100")).await.1["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "PlanTransitionScheduled")
        .unwrap()["correlationId"]
        .clone();

    // 40 articles before the boundary: the higher limit holds.
    for _ in 0..40 {
        let (status, body) =
            server.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "create_article"})).await;
        assert_eq!(status, 200, "{body}");
    }
    // A second before the boundary: still professional.
    set_clock(&server, "2027-03-10T04:59:59Z").await;
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!((view["planId"].as_str(), articles(&view)), (Some("professional"), (json!(150), json!(40))), "{view}");

    // Past it: starter, 30 a calendar month; March's count holds none of February's 40.
    advance_seconds(&server, 2).await;
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!((view["planId"].as_str(), articles(&view)), (Some("starter"), (json!(30), json!(0))), "{view}");
    assert_eq!(view["scheduledPlanTransition"], Value::Null);
    let (_, page) = server.get(&format!("/v1/stores/{store}/events?limit=100")).await;
    let applied: Vec<&Value> =
        page["items"].as_array().unwrap().iter().filter(|e| e["type"] == "PlanTransitioned").collect();
    assert_eq!(applied.len(), 1, "{page}");
    assert_eq!(applied[0]["data"]["scheduleId"], schedule_id);
    assert_eq!(time(&applied[0]["data"]["at"]), time(&period_end), "dated by its time, not by when it was found due");
    assert_eq!(applied[0]["causationId"], scheduling, "caused by the request that scheduled it");
    // The audit view follows the log (its projector): wait for the change to reach it.
    let mut summaries: Vec<String> = Vec::new();
    for _ in 0..100 {
        let (_, audit) = server.get(&format!("/v1/audit?storeId={store}&limit=100")).await;
        summaries = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["summary"].as_str().map(str::to_owned))
            .collect();
        if summaries.iter().any(|s| s.contains("as scheduled")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        summaries.iter().any(|s| s.contains("scheduled for 2027-03-10T05:00:00Z, the end of the billing period")),
        "{summaries:?}"
    );
    assert!(summaries.iter().any(|s| s.contains("as scheduled")), "{summaries:?}");
}

async fn a_canceled_change_never_applies_and_a_newer_one_replaces_it(backend: Backend) {
    let Some(db) = Db::create(backend, "a_canceled_change_never_applies").await else { return };
    let server = Server::start(db.url(), &Options::test_clock());
    set_clock(&server, "2027-01-10T12:00:00Z").await;
    let store = professional_store(&server).await;
    let path = format!("/v1/stores/{store}/plan-transitions");
    let change = |to: &str, at: &str| json!({"fromPlanId": "professional", "toPlanId": to, "reason": "downgrade", "subscriptionId": "sub_pro_1", "at": at});
    let (status, first) = server.post(&path, change("starter", "2027-01-13T12:00:00Z")).await;
    assert_eq!(status, 202, "{first}");
    let first_id = first["scheduled"]["scheduleId"].clone();
    let (status, second) = server.post(&path, change("starter", "2027-01-14T12:00:00Z")).await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["replaced"], first_id, "the answer says what it replaced");
    let second_id = second["scheduled"]["scheduleId"].as_str().unwrap().to_owned();
    // The replaced one is gone.
    let (status, body) = delete(&server, &format!("{path}/{}", first_id.as_str().unwrap())).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("schedule_not_found")), "{body}");

    let (status, view) = delete(&server, &format!("{path}/{second_id}")).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["scheduledPlanTransition"], Value::Null);
    assert_eq!(view["nextDeadline"], Value::Null);
    let (status, body) = delete(&server, &format!("{path}/{second_id}")).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("schedule_not_found")), "{body}");
    let (status, _) = delete(&server, &format!("{path}/not-a-uuid")).await;
    assert_eq!(status, 404);

    server.advance_days(10).await;
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!(view["planId"], "professional", "{view}");
    let types = server.event_types(&store).await;
    assert_eq!(types.iter().filter(|t| *t == "PlanTransitioned").count(), 0, "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "ScheduledTransitionCanceled").count(), 1, "{types:?}");

    // The Rust client does the same.
    let client = server.client();
    let id: uuid::Uuid = store.parse().unwrap();
    let body = planledger_client::wire::TransitionPlan {
        from_plan_id: "professional".into(),
        to_plan_id: "starter".into(),
        reason: planledger_client::wire::TransitionReason::Downgrade,
        subscription_id: Some("sub_pro_1".into()),
        metadata: None,
        at: Some("period_end".into()),
    };
    let scheduled = client.schedule_plan_transition(id, &body, &Default::default()).await.unwrap().value;
    assert!(scheduled.scheduled.at_period_end);
    let view =
        client.cancel_scheduled_transition(id, scheduled.scheduled.schedule_id, &Default::default()).await.unwrap();
    assert_eq!(view.value.scheduled_plan_transition, None);
    let again = client.cancel_scheduled_transition(id, scheduled.scheduled.schedule_id, &Default::default()).await;
    assert!(matches!(again, Err(planledger_client::Error::Api { status: 404, .. })), "{again:?}");

    // A time that has passed, or that is no time, is refused.
    let (status, body) = server.post(&path, change("starter", "2027-01-01T00:00:00Z")).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("at")), "{body}");
    let (status, body) = server.post(&path, change("starter", "next tuesday")).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("at")), "{body}");
}

on_both_backends!(
    a_downgrade_at_period_end_keeps_the_higher_limit_until_the_boundary,
    a_canceled_change_never_applies_and_a_newer_one_replaces_it,
);

/// Three nodes whose clocks pass one due change: it is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_apply_one_due_change_once() {
    let Some(db) = Db::create(Backend::Postgres, "three_nodes_apply_one_due_change_once").await else { return };
    let nodes: Vec<Server> = (0..3).map(|_| Server::start(db.url(), &Options::test_clock())).collect();
    for node in &nodes {
        set_clock(node, "2027-01-10T12:00:00Z").await;
    }
    let mut stores = Vec::new();
    for i in 0..6 {
        let store = professional_store(&nodes[i % 3]).await;
        let change = json!({"fromPlanId": "professional", "toPlanId": "starter", "reason": "downgrade", "subscriptionId": "sub_pro_1", "at": "2027-01-11T12:00:00Z"});
        let (status, body) = nodes[(i + 1) % 3].post(&format!("/v1/stores/{store}/plan-transitions"), change).await;
        assert_eq!(status, 202, "{body}");
        stores.push(store);
    }
    // Every node's clock passes the time at once; each sweeps its deadlines.
    futures_util::future::join_all(nodes.iter().map(|node| node.advance_days(2))).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    for store in &stores {
        let types = nodes[0].event_types(store).await;
        assert_eq!(types.iter().filter(|t| *t == "PlanTransitioned").count(), 1, "{store}: {types:?}");
        let (_, view) = nodes[2].get(&format!("/v1/stores/{store}")).await;
        assert_eq!(view["planId"], "starter", "{view}");
    }
}
