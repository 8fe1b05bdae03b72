//! Grants, end to end (issue 35): a grant of 50 lets exactly 50 more consumptions through under
//! 64 concurrent clients, refunds go back to the grant they came from, and it expires on time.

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::server::{Backend, Db, Options, Server};

async fn grants_add_exactly_their_amount_under_concurrency(backend: Backend) {
    let Some(db) = Db::create(backend, "grants_add_exactly_their_amount").await else { return };
    let server = Server::start(db.url(), &Options::test_clock());
    let (status, clock) = server
        .caller()
        .send(server.client.put(format!("{}/v1/test-clock", server.base)).json(&json!({"now": "2027-01-05T12:00:00Z"})))
        .await;
    assert_eq!(status, 200, "{clock}");
    let (status, body) = server.post("/v1/stores", json!({"name": "Granted"})).await;
    assert_eq!(status, 201, "{body}");
    let store = body["storeId"].as_str().unwrap().to_owned();
    let (status, body) = server
        .post(&format!("/v1/stores/{store}/subscription"), json!({"planId": "starter", "subscriptionId": "sub_g"}))
        .await;
    assert_eq!(status, 200, "{body}");
    // The plan's 30 articles of January, used up.
    let consume = format!("/v1/stores/{store}/quota/consume");
    let (status, body) = server.post(&consume, json!({"action": "create_article", "amount": 30})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post(&consume, json!({"action": "create_article"})).await;
    assert_eq!((status, body["error"].as_str()), (429, Some("quota_exceeded")), "{body}");

    let grant = json!({"action": "create_article", "amount": 50, "expiresAt": "2027-01-15T00:00:00Z", "reason": "launch, ticket 4411"});
    let (status, answer) = server.post(&format!("/v1/stores/{store}/grants"), grant).await;
    assert_eq!(status, 201, "{answer}");
    let grant_id = answer["grant"]["grantId"].as_str().unwrap().to_owned();
    assert_eq!(answer["grant"]["remaining"], 50);
    assert_eq!(answer["store"]["grants"][0]["grantId"], grant_id.as_str());
    let usage = |view: &Value| {
        view["usage"].as_array().unwrap().iter().find(|u| u["action"] == "create_article").unwrap().clone()
    };
    assert_eq!(
        (usage(&answer["store"])["used"].clone(), usage(&answer["store"])["granted"].clone()),
        (json!(30), json!(50))
    );

    // 64 clients, two articles each: exactly the grant's 50 get through.
    let attempts = futures_util::future::join_all((0..64).map(|_| {
        let (server, consume) = (&server, &consume);
        async move {
            let mut through = Vec::new();
            for _ in 0..2 {
                let (status, body) = server.post(consume, json!({"action": "create_article"})).await;
                match status {
                    200 => through.push(body),
                    429 => assert_eq!(body["error"], "quota_exceeded", "{body}"),
                    other => panic!("{other}: {body}"),
                }
            }
            through
        }
    }))
    .await;
    let through: Vec<Value> = attempts.into_iter().flatten().collect();
    assert_eq!(through.len(), 50, "exactly the grant");
    for consumed in &through {
        assert_eq!(consumed["fromGrants"], json!([{"grantId": grant_id, "amount": 1}]), "{consumed}");
        assert_eq!(consumed["used"], 30, "the plan's window holds only its own");
    }
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!(view["grants"], json!([]), "used up: {view}");
    assert_eq!(usage(&view)["granted"], 0);

    // A refund goes back to the grant it came from, and is used again.
    let refunded = through[0]["consumptionId"].clone();
    let (status, body) =
        server.post(&format!("/v1/stores/{store}/quota/refund"), json!({"consumptionId": refunded})).await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!(
        (view["grants"][0]["grantId"].as_str(), view["grants"][0]["remaining"].as_u64()),
        (Some(grant_id.as_str()), Some(1)),
        "{view}"
    );
    let (status, body) = server.post(&consume, json!({"action": "create_article"})).await;
    assert_eq!((status, body["fromGrants"][0]["grantId"].as_str()), (200, Some(grant_id.as_str())), "{body}");

    // Refund once more, then let it expire: what is left lapses on time.
    let (status, _) =
        server.post(&format!("/v1/stores/{store}/quota/refund"), json!({"consumptionId": body["consumptionId"]})).await;
    assert_eq!(status, 200);
    let (status, _) = server
        .caller()
        .send(server.client.put(format!("{}/v1/test-clock", server.base)).json(&json!({"now": "2027-01-14T23:59:59Z"})))
        .await;
    assert_eq!(status, 200);
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!(view["grants"][0]["remaining"], 1, "{view}");
    let (status, _) = server.post("/v1/test-clock/advance", json!({"seconds": 1})).await;
    assert_eq!(status, 200);
    let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
    assert_eq!(view["grants"], json!([]), "expired: {view}");
    let (status, body) = server.post(&consume, json!({"action": "create_article"})).await;
    assert_eq!((status, body["error"].as_str()), (429, Some("quota_exceeded")), "{body}");

    // Voiding: a new grant, voided, gives nothing; a second void is refused.
    let (_, answer) = server
        .post(
            &format!("/v1/stores/{store}/grants"),
            json!({"action": "create_article", "amount": 5, "reason": "goodwill"}),
        )
        .await;
    let second = answer["grant"]["grantId"].as_str().unwrap().to_owned();
    let void = format!("/v1/stores/{store}/grants/{second}/void");
    let (status, view) = server.post(&void, json!({"reason": "by mistake"})).await;
    assert_eq!((status, view["grants"].clone()), (200, json!([])), "{view}");
    let (status, body) = server.post(&void, json!({"reason": "again"})).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("grant_not_found")), "{body}");
    let (status, _) = server.post(&consume, json!({"action": "create_article"})).await;
    assert_eq!(status, 429);

    // The Rust client does the same.
    let client = server.client();
    let id: uuid::Uuid = store.parse().unwrap();
    let body = planledger_client::wire::AddGrant {
        action: "create_article".into(),
        amount: 1,
        expires_at: None,
        reason: "client".into(),
    };
    let granted = client.add_grant(id, &body, &Default::default()).await.unwrap().value;
    assert_eq!(granted.grant.remaining, 1);
    let view = client.void_grant(id, granted.grant.grant_id, "by mistake", &Default::default()).await.unwrap().value;
    assert!(view.grants.is_empty());

    // Bad input changes nothing.
    let grants = format!("/v1/stores/{store}/grants");
    let (status, body) = server.post(&grants, json!({"action": "teleport", "amount": 5, "reason": "x"})).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("unknown_action")), "{body}");
    let (status, body) = server
        .post(
            &grants,
            json!({"action": "create_article", "amount": 5, "reason": "x", "expiresAt": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("expiresAt")), "{body}");
    let (status, body) = server.post(&grants, json!({"action": "create_article", "amount": 0, "reason": "x"})).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("amount")), "{body}");
}

/// `GET /v1/stores/{id}/explain`: why, from what, and what would allow it.
async fn explain_says_why_and_what_would_allow_it(backend: Backend) {
    let Some(db) = Db::create(backend, "explain_says_why").await else { return };
    let server = Server::start(db.url(), &Options::test_clock());
    let (status, _) = server
        .caller()
        .send(server.client.put(format!("{}/v1/test-clock", server.base)).json(&json!({"now": "2027-01-05T12:00:00Z"})))
        .await;
    assert_eq!(status, 200);
    let (_, body) = server.post("/v1/stores", json!({"name": "Explained"})).await;
    let store = body["storeId"].as_str().unwrap().to_owned();
    let (status, _) = server.post("/v1/test-clock/advance", json!({"seconds": 60})).await;
    assert_eq!(status, 200);
    server
        .post(&format!("/v1/stores/{store}/subscription"), json!({"planId": "starter", "subscriptionId": "sub_e"}))
        .await;
    server.post(&format!("/v1/stores/{store}/quota/consume"), json!({"action": "create_article", "amount": 30})).await;
    let explain = format!("/v1/stores/{store}/explain");

    let (status, e) = server.get(&format!("{explain}?action=create_article&amount=2")).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!((e["allowed"].as_bool(), e["refusal"]["error"].as_str()), (Some(false), Some("quota_exceeded")), "{e}");
    assert_eq!((e["quota"]["limit"].as_u64(), e["quota"]["used"].as_u64()), (Some(30), Some(30)));
    let changes: Vec<&str> = e["wouldAllow"].as_array().unwrap().iter().filter_map(|r| r["change"].as_str()).collect();
    assert_eq!(changes, ["date", "amount", "plan"], "{e}");
    assert_eq!(e["wouldAllow"][0]["at"], e["quota"]["periodEnd"]);
    assert_eq!(e["wouldAllow"][1]["amount"], 2);
    assert_eq!(e["wouldAllow"][2]["planId"], "professional");

    // Take the amount remedy: a grant of 2, and the same question is allowed.
    let (status, _) = server
        .post(
            &format!("/v1/stores/{store}/grants"),
            json!({"action": "create_article", "amount": 2, "reason": "as explained"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, e) = server.get(&format!("{explain}?action=create_article&amount=2")).await;
    assert_eq!((e["allowed"].as_bool(), e["wouldAllow"].clone()), (Some(true), json!([])), "{e}");
    assert_eq!(e["quota"]["granted"], 2);

    // As it was before the subscription (at the registration): no subscription, a plan would do.
    let (_, e) = server.get(&format!("{explain}?action=create_article&at=2027-01-05T12:00:30Z")).await;
    assert_eq!(e["refusal"]["error"], "no_subscription", "{e}");
    assert_eq!(e["wouldAllow"][0]["change"], "plan");

    let (status, body) = server.get(&format!("{explain}?action=teleport")).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("unknown_action")), "{body}");
    let (status, body) = server.get(&explain).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("action")), "{body}");
    let (status, _) = server.get(&format!("/v1/stores/{}/explain?action=create_article", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
}

on_both_backends!(grants_add_exactly_their_amount_under_concurrency, explain_says_why_and_what_would_allow_it);
