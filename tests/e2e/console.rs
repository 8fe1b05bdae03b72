//! The admin console in a real headless Chromium against the real binary: sign in, find a frozen
//! store, read its timeline and an older version of it, extend a grace period (a form sent three
//! times extends once), compare under another catalog, run a rebuild and watch it finish, and a
//! reader who sees pages but can do nothing. Screenshots of each page are saved (into
//! `docs/console/` with `PLANLEDGER_CONSOLE_SCREENSHOTS=docs/console`). Then, without a browser,
//! what the console refuses: no session, a form without the session's token, bad input.

use serde_json::json;

use crate::browser::Browser;
use crate::on_both_backends;
use crate::server::{Backend, Db, Options, Server, ADMIN, READER};

/// The stores of the console's tests, each in a state worth seeing.
struct World {
    frozen: String,
    grace: String,
    active: String,
    trialing: String,
}

async fn world(server: &Server) -> World {
    let frozen = server.register("Frozen Bakery").await;
    assert_eq!(server.post(&format!("/v1/stores/{frozen}/trial"), json!({})).await.0, 201);
    server.advance_days(14 + 3 + 180 + 1).await;
    let grace = server.register("Grace Garden").await;
    assert_eq!(server.post(&format!("/v1/stores/{grace}/trial"), json!({})).await.0, 201);
    let consumed = json!({"action": "create_article", "amount": 4});
    assert_eq!(server.post(&format!("/v1/stores/{grace}/quota/consume"), consumed).await.0, 200);
    server.advance_days(15).await;
    let active = server.register("Active Atelier").await;
    assert_eq!(server.post(&format!("/v1/stores/{active}/trial"), json!({})).await.0, 201);
    let paid = json!({"planId": "starter", "subscriptionId": "sub_console"});
    assert_eq!(server.post(&format!("/v1/stores/{active}/subscription"), paid).await.0, 200);
    let trialing = server.register("Trial Tailor").await;
    assert_eq!(server.post(&format!("/v1/stores/{trialing}/trial"), json!({"days": 5})).await.0, 201);
    // A refusal for the overview: more articles than the trial's month allows.
    let too_many = json!({"action": "create_article", "amount": 11});
    assert_eq!(server.post(&format!("/v1/stores/{trialing}/quota/consume"), too_many).await.0, 429);
    for (store, status) in [(&frozen, "frozen"), (&grace, "grace"), (&active, "active"), (&trialing, "trialing")] {
        let (_, view) = server.get(&format!("/v1/stores/{store}")).await;
        assert_eq!(view["internalStatus"], status, "{view}");
    }
    World { frozen, grace, active, trialing }
}

async fn sign_in(browser: &Browser, server: &Server, token: &str) {
    browser.goto(&format!("{}/admin", server.base)).await;
    browser.wait_path("/admin/login").await;
    browser.fill("#token", token).await;
    browser.click("#sign-in").await;
    browser.wait_path("/admin").await;
    browser.wait_for("#who").await;
}

async fn the_console_in_a_browser(backend: Backend) {
    let Some(db) = Db::create(backend, "the_console_in_a_browser").await else { return };
    let Some(browser) = Browser::start("the_console_in_a_browser").await else { return };
    let log = std::env::temp_dir().join(format!("planledger-console-{}.log", uuid::Uuid::new_v4()));
    let options = Options { log_file: Some(log.clone()), ..Options::test_clock().with_tokens() };
    let server = Server::start(db.url(), &options);
    let w = world(&server).await;
    let shots = backend == Backend::Sqlite;
    let b = &browser;

    // Sign in; the login page first.
    b.goto(&format!("{}/admin/login", server.base)).await;
    if shots {
        b.screenshot("login").await;
    }
    sign_in(b, &server, ADMIN).await;
    assert_eq!(b.text("#who").await, "ops (admin)");
    let cookies = b.run("arguments[0](document.cookie)").await;
    assert!(!cookies.as_str().unwrap_or_default().contains("planledger_session"), "the session cookie is HttpOnly");

    // The overview: statuses, what is due, refusals.
    let chart = b.text("#status-chart").await;
    assert!(chart.contains("frozen") && chart.contains("grace"), "{chart}");
    assert!(b.text("#trials-ending").await.contains("Trial Tailor"));
    b.reload_until("#refusals", |t| t.contains("quota_exceeded")).await;
    assert!(b.text("#audit-lag").await.contains("events"));
    if shots {
        b.screenshot("overview").await;
    }

    // Find the frozen store through the list's filter.
    b.click("header nav a[href='/admin/stores']").await;
    b.select("select[name=status]", "frozen").await;
    b.click("#filters button[type=submit]").await;
    let listed = b.wait_text("#stores", |t| t.contains("Frozen Bakery") && !t.contains("Grace Garden")).await;
    assert!(listed.contains("Frozen Bakery") && !listed.contains("Active Atelier"), "{listed}");
    if shots {
        b.screenshot("stores").await;
    }
    b.click(&format!("#stores a[href='/admin/stores/{}']", w.frozen)).await;
    b.wait_for("#timeline").await;
    let timeline = b.text("#timeline").await;
    for event in ["StoreRegistered", "TrialStarted", "TrialExpired", "DowngradedToMaintenance", "StoreFrozen"] {
        assert!(timeline.contains(event), "{event} in the timeline: {timeline}");
    }
    assert!(b.text("#state").await.contains("frozen"));
    if shots {
        b.screenshot("store").await;
    }
    // The store at an older version: still trialing then.
    b.fill("#version-number", "2").await;
    b.click("#version-picker button[type=submit]").await;
    assert!(b.text("#as-of").await.contains("version 2"));
    assert!(b.text("#state").await.contains("trialing"));
    assert!(b.exists("#timeline tr.selected[data-version='2']").await);
    // The slider shows the version it stops on.
    b.run("const s = document.getElementById('version'); s.value = 3; s.dispatchEvent(new Event('change')); arguments[0](true);")
        .await;
    b.wait_text("#as-of", |t| t.contains("version 3")).await;
    // A correlation id leads to everything that carries it.
    b.click("#timeline tr[data-version='2'] a.mono").await;
    b.wait_text("#correlated-events", |t| t.contains("TrialStarted")).await;
    assert!(b.text("#correlated-commands").await.contains("start_trial"));
    if shots {
        b.screenshot("correlation").await;
    }

    // Extend the grace period of the store in grace, with a reason; the confirmed form is sent
    // three times (twice at once, then a click): one extension.
    b.goto(&format!("{}/admin/stores/{}", server.base, w.grace)).await;
    b.select("#extend select[name=kind]", "grace").await;
    b.fill("#extend input[name=days]", "2").await;
    b.fill("#extend input[name=reason]", "customer asked for more time").await;
    b.click("#extend button[type=submit]").await;
    assert!(b.text("#confirm-what").await.contains("Extend the grace period of 1 store by 2 days"));
    assert!(b.exists(&format!("#cancel[href='/admin/stores/{}']", w.grace)).await, "cancel leads back to the store");
    if shots {
        b.screenshot("confirm").await;
    }
    let statuses = b
        .run(
            "const done = arguments[arguments.length - 1];
             const form = document.getElementById('confirm-form');
             const send = () => fetch(form.action, { method: 'POST', body: new URLSearchParams(new FormData(form)) })
                 .then((r) => r.status);
             Promise.all([send(), send()]).then(done, (e) => done(String(e)));",
        )
        .await;
    assert_eq!(statuses, json!([200, 200]));
    b.click("#confirm").await;
    assert_eq!(b.text("#done-count").await, "0", "the third sending does nothing");
    assert_eq!(b.text("#replayed-count").await, "1");
    let extensions = server.event_types(&w.grace).await.iter().filter(|t| *t == "GracePeriodExtended").count();
    assert_eq!(extensions, 1, "one extension for three sendings of one form");
    b.goto(&format!("{}/admin/stores/{}", server.base, w.grace)).await;
    let newest = b.text("#timeline tbody tr:first-child").await;
    assert!(newest.contains("GracePeriodExtended") && newest.contains("customer asked for more time"), "{newest}");
    assert!(newest.contains("ops"), "the actor is the signed-in token: {newest}");
    if shots {
        b.screenshot("store-extended").await;
    }

    // What if the trial allowed 3 articles a month? The same facts, another catalog.
    b.click("#what-if-link").await;
    b.wait_for("#catalog").await;
    let catalog = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/catalog.toml")).unwrap();
    let fewer_articles = catalog.replacen("create_article = { limit = 10,", "create_article = { limit = 3,", 1);
    assert_ne!(catalog, fewer_articles);
    // The catalog is uploaded as a file: the page reads it into the form.
    let file = std::env::temp_dir().join(format!("planledger-fewer-articles-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&file, &fewer_articles).unwrap();
    b.wait_for("#catalog-file").await.send_keys(&file.display().to_string()).await.expect("choose the file");
    let loaded = b.wait_value("#catalog", |v| v.contains("create_article = { limit = 3,")).await;
    assert_eq!(loaded, fewer_articles);
    let _ = std::fs::remove_file(&file);
    b.click("#what-if button[type=submit]").await;
    let summary = b.text("#what-if-summary").await;
    assert!(summary.starts_with("1 of"), "the consumption of 4 articles differs: {summary}");
    let differing = b.text("#what-if-events tr.differs").await;
    assert!(differing.contains("create_article 4/10") && differing.contains("create_article 4/3"), "{differing}");
    if shots {
        b.screenshot("what-if").await;
    }

    // A rebuild, confirmed, watched until it is done.
    b.click("header nav a[href='/admin/rebuilds']").await;
    b.fill("#rebuild-tenant_state input[name=reason]", "catalog review").await;
    b.click("#rebuild-tenant_state button[type=submit]").await;
    b.click("#confirm").await;
    b.wait_path("/admin/rebuilds").await;
    b.wait_text("#rebuild-tenant_state .rebuild-state", |t| t == "done").await;
    assert_eq!(b.text("#rebuild-tenant_state .new-generation").await, "2");
    assert_eq!(b.text("#rebuild-tenant_state .generation").await, "2", "the page shows the new live generation");
    if shots {
        b.screenshot("rebuilds").await;
    }

    // A reader sees pages, not actions; the server refuses a reader's action too.
    b.click("#logout").await;
    b.wait_path("/admin/login").await;
    sign_in(b, &server, READER).await;
    b.goto(&format!("{}/admin/stores/{}", server.base, w.trialing)).await;
    b.wait_for("#timeline").await;
    assert!(!b.exists("#extend").await && !b.exists("#trial-reset").await, "no action forms for a reader");
    let status = b
        .run(
            "const done = arguments[arguments.length - 1];
             const csrf = document.querySelector('input[name=csrf]').value;
             const body = new URLSearchParams({ csrf, kind: 'trial', days: '3', reason: 'r', store: location.pathname.split('/').pop() });
             fetch('/admin/extensions/confirm', { method: 'POST', body }).then((r) => done(r.status));",
        )
        .await;
    assert_eq!(status, json!(403));
    browser.close().await;

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("console sign-in"), "sign-ins are logged");
    assert!(!logged.contains(ADMIN) && !logged.contains(READER), "no token in the server's log");
    let _ = std::fs::remove_file(log);
}

/// Signs in over plain HTTP; answers the session cookie and the form token.
async fn session(server: &Server, token: &str, forwarded_https: bool) -> (String, String, reqwest::header::HeaderMap) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = client.get(format!("{}/admin/login", server.base)).send().await.unwrap();
    let login_cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let csrf = form_token(&html);
    let mut request = client
        .post(format!("{}/admin/login", server.base))
        .header("cookie", login_cookie)
        .form(&[("csrf", csrf.as_str()), ("token", token)]);
    if forwarded_https {
        request = request.header("x-forwarded-proto", "https");
    }
    let signed_in = request.send().await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let headers = signed_in.headers().clone();
    let cookie = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("planledger_session="))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let overview = client.get(format!("{}/admin", server.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(overview.status(), 200);
    let csrf = form_token(&overview.text().await.unwrap());
    (cookie, csrf, headers)
}

fn form_token(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form token") + "name=\"csrf\" value=\"".len();
    html[at..at + 64].to_owned()
}

async fn post_form(server: &Server, cookie: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response =
        client.post(format!("{}{path}", server.base)).header("cookie", cookie).form(form).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn the_console_refuses_what_it_should(backend: Backend) {
    let Some(db) = Db::create(backend, "the_console_refuses_what_it_should").await else { return };
    let server = Server::start(db.url(), &Options::test_clock().with_tokens());
    let store = server.register("Refusing Rooms").await;
    assert_eq!(server.post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
    let events_before = server.event_types(&store).await;
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // No session: every page sends to the login page; a made-up cookie is no session.
    for path in ["/admin", "/admin/stores", &format!("/admin/stores/{store}"), "/admin/rebuilds"] {
        let response = plain.get(format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(
            (response.status().as_u16(), response.headers()["location"].to_str().unwrap()),
            (303, "/admin/login")
        );
    }
    let forged = format!("planledger_session={}", "ab".repeat(32));
    assert_eq!(
        plain.get(format!("{}/admin", server.base)).header("cookie", forged).send().await.unwrap().status(),
        303
    );

    // A wrong token, a service token, a login form without its cookie: no session.
    let (_, csrf, _) = session(&server, ADMIN, false).await;
    let response = plain
        .post(format!("{}/admin/login", server.base))
        .form(&[("csrf", csrf.as_str()), ("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "a login form must come with its own cookie");
    let login_page = plain.get(format!("{}/admin/login", server.base)).send().await.unwrap();
    let login_cookie = login_page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let token = form_token(&login_page.text().await.unwrap());
    for (secret, status) in [("not-a-token-at-all", 401), (crate::server::SERVICE, 403)] {
        let response = plain
            .post(format!("{}/admin/login", server.base))
            .header("cookie", &login_cookie)
            .form(&[("csrf", token.as_str()), ("token", secret)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{secret}");
        assert!(response
            .headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("planledger_session")));
    }

    // The cookie's attributes; Secure behind a proxy that speaks TLS.
    let (cookie, csrf, headers) = session(&server, ADMIN, false).await;
    let set = |headers: &reqwest::header::HeaderMap| {
        headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with("planledger_session="))
            .unwrap()
    };
    let attributes = set(&headers);
    assert!(
        attributes.contains("HttpOnly") && attributes.contains("SameSite=Strict") && !attributes.contains("Secure"),
        "{attributes}"
    );
    let (_, _, tls) = session(&server, ADMIN, true).await;
    assert!(set(&tls).contains("; Secure"), "{}", set(&tls));

    // Pages are sent so that they cannot be framed or cached.
    let overview = plain.get(format!("{}/admin", server.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(overview.headers()["x-frame-options"], "DENY");
    assert_eq!(overview.headers()["cache-control"], "no-store");
    assert!(overview.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));

    // A form without the session's token changes nothing.
    let store_field = store.as_str();
    let extension = [("kind", "trial"), ("days", "3"), ("reason", "support ticket 12"), ("store", store_field)];
    let (status, body) = post_form(&server, &cookie, "/admin/extensions/confirm", &extension).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Form expired"));
    let mut with_token = vec![("csrf", csrf.as_str())];
    with_token.extend(extension);
    let zeros = "0".repeat(64);
    let mut forged_key = with_token.clone();
    forged_key.push(("key", &zeros));
    forged_key[0] = ("csrf", "00");
    assert_eq!(post_form(&server, &cookie, "/admin/extensions", &forged_key).await.0, 403);

    // Bad input: a clear page naming the field, nothing changed.
    for (field, value, says) in [
        ("days", "many", "days"),
        ("days", "0", "days"),
        ("reason", "   ", "reason"),
        ("kind", "forever", "kind"),
        ("store", "not-a-store", "store"),
    ] {
        let form: Vec<(&str, &str)> =
            with_token.iter().map(|(k, v)| if *k == field { (*k, value) } else { (*k, *v) }).collect();
        let (status, body) = post_form(&server, &cookie, "/admin/extensions/confirm", &form).await;
        assert_eq!(status, 422, "{field}={value}: {body}");
        assert!(body.contains(says), "{field}={value}: {body}");
    }
    let (status, _) = post_form(&server, &cookie, "/admin/extensions", &with_token).await;
    assert_eq!(status, 422, "an action without its confirmation key is not done");
    let unknown = uuid::Uuid::new_v4().to_string();
    let other_store: Vec<(&str, &str)> =
        with_token.iter().map(|(k, v)| if *k == "store" { (*k, unknown.as_str()) } else { (*k, *v) }).collect();
    assert_eq!(post_form(&server, &cookie, "/admin/extensions/confirm", &other_store).await.0, 404);
    let bulk_without_status: Vec<(&str, &str)> = with_token.iter().filter(|(k, _)| *k != "store").copied().collect();
    assert_eq!(post_form(&server, &cookie, "/admin/extensions/confirm", &bulk_without_status).await.0, 422);
    let what_if = [("csrf", csrf.as_str()), ("catalog", "[lifecycle]\ntrial_days = \"long\"\n")];
    let (status, body) = post_form(&server, &cookie, &format!("/admin/stores/{store}/what-if"), &what_if).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("uploaded catalog"), "the catalog's error names where: {body}");
    for path in ["/admin/stores/nope", &format!("/admin/stores/{unknown}")] {
        let response = plain.get(format!("{}{path}", server.base)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = plain
        .get(format!("{}/admin/stores?status=sleeping", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(server.event_types(&store).await, events_before, "nothing refused changed the store");

    // Hostile input anywhere in the console: a page that says what is wrong, never a 500.
    let long = "x".repeat(70 * 1024);
    let gets = [
        "/admin/stores?cursor=xyz".to_owned(),
        "/admin/stores?q=%00".to_owned(),
        format!("/admin/stores?q={}", "y".repeat(300)),
        format!("/admin/stores/{store}?version=abc"),
        format!("/admin/stores/{store}?version=999999"),
        format!("/admin/stores/{store}?before=-1"),
        "/admin/correlations/%00".to_owned(),
        format!("/admin/correlations/{}", "z".repeat(300)),
        "/admin/rebuilds/nothing/progress".to_owned(),
        "/admin/stores?status=%F0%9F%92%A5".to_owned(),
    ];
    for path in &gets {
        let status = page(&server, &cookie, path).await.0;
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    let posts: [(String, Vec<(&str, &str)>); 5] = [
        (format!("/admin/stores/{store}/what-if"), vec![("csrf", csrf.as_str()), ("catalog", "")]),
        ("/admin/extensions/confirm".to_owned(), vec![("csrf", csrf.as_str()), ("reason", long.as_str())]),
        ("/admin/rebuilds/nothing/confirm".to_owned(), vec![("csrf", csrf.as_str()), ("reason", "r")]),
        (
            format!("/admin/stores/{store}/trial-reset/confirm"),
            vec![("csrf", csrf.as_str()), ("plan", "Not A Plan"), ("reason", "r")],
        ),
        (
            format!("/admin/stores/{store}/trial-reset"),
            vec![("csrf", csrf.as_str()), ("reason", "r"), ("key", "short")],
        ),
    ];
    for (path, form) in &posts {
        let (status, body) = post_form(&server, &cookie, path, form).await;
        assert!((400..500).contains(&status), "{path}: {status} {body}");
    }
    let (status, _) = post_form(&server, &cookie, "/admin/logout", &[("csrf", "\u{0}")]).await;
    assert_eq!(status, 403);

    // A forced trial reset through the console: confirmed, once, as the API would do it.
    let reset_key = "c".repeat(64);
    let reset = [("csrf", csrf.as_str()), ("reason", "support ticket 12"), ("key", &reset_key)];
    for _ in 0..2 {
        let (status, body) = post_form(&server, &cookie, &format!("/admin/stores/{store}/trial-reset"), &reset).await;
        assert_eq!(status, 200, "{body}");
    }
    let restarts = server.event_types(&store).await.iter().filter(|t| *t == "TrialRestarted").count();
    assert_eq!(restarts, 1, "a reset form sent twice resets once");

    // Logging out ends the session on the server: the old cookie no longer opens a page.
    let (status, _) = post_form(&server, &cookie, "/admin/logout", &[("csrf", csrf.as_str())]).await;
    assert_eq!(status, 303);
    let after = plain.get(format!("{}/admin", server.base)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(after.status(), 303, "a closed session is gone");
}

/// GETs a console page with a session; answers status, `Location` and body.
async fn page(server: &Server, cookie: &str, path: &str) -> (u16, String, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client.get(format!("{}{path}", server.base)).header("cookie", cookie).send().await.unwrap();
    let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (response.status().as_u16(), location, response.text().await.unwrap())
}

/// The href of the element with `id` in a page.
fn href_of(html: &str, id: &str) -> Option<String> {
    let pattern = format!("id=\"{id}\" href=\"");
    let at = html.find(&pattern)? + pattern.len();
    Some(html[at..].split('"').next()?.replace("&amp;", "&"))
}

async fn the_store_list_filters_pages_and_extends_in_bulk(backend: Backend) {
    let Some(db) = Db::create(backend, "the_store_list_filters_pages_and_extends_in_bulk").await else { return };
    let server = Server::start(db.url(), &Options::test_clock().with_tokens());
    let mut trialing = Vec::new();
    for i in 0..55 {
        let store = server.register(&format!("Listed Shop {i:02}")).await;
        if i % 5 == 0 {
            assert_eq!(server.post(&format!("/v1/stores/{store}/trial"), json!({})).await.0, 201);
            trialing.push(store);
        }
    }
    let (cookie, csrf, _) = session(&server, ADMIN, false).await;

    // Pages of 50 in store id order, with a cursor to the next.
    let (status, _, first) = page(&server, &cookie, "/admin/stores").await;
    assert_eq!(status, 200);
    assert_eq!(first.matches("Listed Shop").count(), 50);
    let next = href_of(&first, "next-page").expect("a next page");
    let (_, _, second) = page(&server, &cookie, &next).await;
    assert_eq!(second.matches("Listed Shop").count(), 5);
    assert!(href_of(&second, "next-page").is_none());
    // Filters: status, plan, a part of the name in any case; an id goes to its store.
    let (_, _, listed) = page(&server, &cookie, "/admin/stores?status=trialing&plan=free_trial").await;
    assert_eq!(listed.matches("Listed Shop").count(), trialing.len());
    let (_, _, listed) = page(&server, &cookie, "/admin/stores?q=shop%2004").await;
    assert_eq!(listed.matches("Listed Shop").count(), 1, "{listed}");
    let (_, _, literal) = page(&server, &cookie, "/admin/stores?q=shop_04").await;
    assert!(literal.contains("id=\"no-stores\""), "'_' is a character, not a wildcard");
    let (_, _, none) = page(&server, &cookie, "/admin/stores?status=frozen").await;
    assert!(none.contains("id=\"no-stores\""));
    let (status, location, _) = page(&server, &cookie, &format!("/admin/stores?q={}", trialing[0])).await;
    assert_eq!((status, location), (303, format!("/admin/stores/{}", trialing[0])));
    assert_eq!(page(&server, &cookie, "/admin/stores?plan=platinum").await.0, 422);

    // Extend every trialing store by 3 days, confirmed; the form sent again extends none twice.
    let form =
        [("csrf", csrf.as_str()), ("status", "trialing"), ("kind", "trial"), ("days", "3"), ("reason", "outage week")];
    let (status, confirm) = post_form(&server, &cookie, "/admin/extensions/confirm", &form).await;
    assert_eq!(status, 200, "{confirm}");
    assert!(confirm.contains(&format!("Extend the trial of {} stores by 3 days", trialing.len())), "{confirm}");
    let at = confirm.find("name=\"key\" value=\"").unwrap() + 18;
    let key = confirm[at..at + 64].to_owned();
    let mut confirmed = form.to_vec();
    confirmed.push(("key", &key));
    let (status, done) = post_form(&server, &cookie, "/admin/extensions", &confirmed).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains(&format!("id=\"done-count\">{}<", trialing.len())), "{done}");
    let (_, again) = post_form(&server, &cookie, "/admin/extensions", &confirmed).await;
    assert!(
        again.contains("id=\"done-count\">0<") && again.contains(&format!("id=\"replayed-count\">{}<", trialing.len()))
    );
    for store in &trialing {
        let types = server.event_types(store).await;
        assert_eq!(types.iter().filter(|t| *t == "TrialExtended").count(), 1, "{store}: {types:?}");
    }
    // Each extension carries the signed-in actor and the reason.
    let (_, events) = server.get(&format!("/v1/stores/{}/events", trialing[0])).await;
    let extended = events["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((extended["actor"].clone(), extended["data"]["reason"].clone()), (json!("ops"), json!("outage week")));
}

async fn without_tokens_anyone_on_loopback_signs_in_as_admin(backend: Backend) {
    let Some(db) = Db::create(backend, "without_tokens_anyone_on_loopback_signs_in_as_admin").await else { return };
    let server = Server::start(db.url(), &Options::test_clock());
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = client.get(format!("{}/admin/login", server.base)).send().await.unwrap();
    let login_cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = login.text().await.unwrap();
    assert!(html.contains("no tokens configured") && !html.contains("id=\"token\""), "{html}");
    let signed_in = client
        .post(format!("{}/admin/login", server.base))
        .header("cookie", login_cookie)
        .form(&[("csrf", form_token(&html).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let (status, _, overview) = page(&server, &cookie, "/admin").await;
    assert_eq!(status, 200);
    assert!(overview.contains("id=\"who\">anonymous (admin)"), "{overview}");
}

/// The store page tells the truth in every state: a window the gate refuses says so rather than
/// what is "left"; only the extension that applies is offered; a frozen store says since when;
/// a deadline the store left behind (a trial a paid subscription replaced) is not "to come";
/// the store's own refusals are listed.
async fn the_store_page_tells_the_truth_in_every_state(backend: Backend) {
    let Some(db) = Db::create(backend, "the_store_page_tells_the_truth_in_every_state").await else { return };
    let server = Server::start(db.url(), &Options::test_clock().with_tokens());
    let world = world(&server).await;
    let (cookie, _, _) = session(&server, ADMIN, false).await;
    let page = |store: String| {
        let (server, cookie) = (&server, cookie.clone());
        async move {
            let response = reqwest::Client::new()
                .get(format!("{}/admin/stores/{store}", server.base))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };

    let frozen = page(world.frozen.clone()).await;
    assert!(frozen.contains("id=\"frozen-since\""), "a frozen store says since when");
    assert!(frozen.contains("refused: account_frozen"), "its windows say the gate refuses them");
    assert!(!frozen.contains(" left)"), "nothing is 'left' on a store whose every change is refused");
    assert!(!frozen.contains("id=\"extend\"") && frozen.contains("id=\"no-extension\""), "no extension applies");
    let why = |page: &str, action: &str| -> String {
        let section =
            &page[page.find("id=\"why\"").expect("the explain panel")..page.find("id=\"store-refusals\"").unwrap()];
        let row = &section
            [section.find(&format!("data-action=\"{action}\"")).unwrap_or_else(|| panic!("{action} explained"))..];
        row[..row.find("</tr>").unwrap()].to_owned()
    };
    let frozen_why = why(&frozen, "create_article");
    assert!(frozen_why.contains("account_frozen"), "the panel names the rule: {frozen_why}");
    assert!(frozen_why.contains("on plan "), "and the plan that would allow it: {frozen_why}");

    let grace = page(world.grace.clone()).await;
    assert!(
        grace.contains("option value=\"grace\"") && !grace.contains("option value=\"trial\""),
        "only the grace period"
    );
    assert!(grace.contains(" left)"), "growth is allowed in grace: what is left is shown");

    let active = page(world.active.clone()).await;
    assert!(active.contains("<td id=\"catalog-version\">version 1 "), "the store's catalog version");
    assert!(active.contains("will not come"), "the trial a paid subscription replaced is not to come");
    assert!(!active.contains("id=\"extend\""), "no extension for an active store");
    assert!(why(&active, "create_article").contains("allowed"), "an active store may create");
    // A thousand at once is more than the month allows: a grant of what is missing would.
    let thousand = page(format!("{}?amount=1000", world.active)).await;
    let thousand_why = why(&thousand, "create_article");
    assert!(thousand_why.contains("quota_exceeded"), "{thousand_why}");
    assert!(thousand_why.contains("more allowance"), "{thousand_why}");

    // The trial store was refused 11 articles (more than its month allows): listed once the
    // journal writer has written it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let trialing = page(world.trialing.clone()).await;
        let refusals = &trialing[trialing.find("id=\"store-refusals\"").expect("the refusals section")..];
        if refusals.contains("quota_exceeded") {
            assert!(refusals.contains("consume"), "the command is named");
            assert!(trialing.contains("option value=\"trial\"") && !trialing.contains("option value=\"grace\""));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the store's refusal was never listed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(page(world.grace).await.contains("No refusals."), "a store without refusals says so");
}

on_both_backends!(
    the_store_page_tells_the_truth_in_every_state,
    without_tokens_anyone_on_loopback_signs_in_as_admin,
    the_console_in_a_browser,
    the_console_refuses_what_it_should,
    the_store_list_filters_pages_and_extends_in_bulk
);
