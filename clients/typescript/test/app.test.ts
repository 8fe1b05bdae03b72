// The example app against a real `planledger serve` (started here): the seed's refusals, a quota
// exact under 32 concurrent requests, a verified webhook, retries that keep their key.

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";

import { app } from "../examples/app.js";
import {
  PlanledgerClient,
  PlanledgerError,
  PlanledgerUnreachable,
  verifyNotification,
  WebhookVerificationError,
  type Notification,
} from "../src/index.js";
import { startLedger, type Ledger } from "./ledger.js";

let ledger: Ledger;
let service: PlanledgerClient;
let admin: PlanledgerClient;
let appServer: Server;
let appUrl: string;
let webhookSecret: string | undefined;
const notifications: Notification[] = [];

async function listen(server: Server): Promise<string> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The first instant of this month in UTC: where a monthly window imported today started. */
function monthStart(): string {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
}

function daysFromNow(days: number): string {
  return new Date(Date.now() + days * 86_400_000).toISOString();
}

/** A tenant moved in as active on `starter` (30 articles a month) with `used` articles so far. */
function importActive(externalId: string, used = 0) {
  return admin.importStore({
    externalId,
    status: "active",
    planId: "starter",
    subscriptionId: `sub_${externalId}`,
    trialUsed: true,
    usage: used ? [{ action: "create_article", used, since: monthStart() }] : [],
  });
}

async function call(method: string, path: string, storeId: string): Promise<{ status: number; body: any }> {
  const answer = await fetch(appUrl + path, { method, headers: { "x-store-id": storeId } });
  const text = await answer.text();
  return { status: answer.status, body: text ? JSON.parse(text) : undefined };
}

before(async () => {
  ledger = await startLedger();
  service = new PlanledgerClient({ baseUrl: ledger.url, token: ledger.serviceToken });
  admin = new PlanledgerClient({ baseUrl: ledger.url, token: ledger.adminToken });
  appServer = createServer(
    app({
      ledger: service,
      webhookSecret: () => webhookSecret,
      onNotification: (notification) => notifications.push(notification),
    }),
  );
  appUrl = await listen(appServer);
});

after(async () => {
  appServer.close();
  await ledger.stop();
});

describe("requireWritableStore", () => {
  test("a frozen store is refused with the seed's body", async () => {
    const store = await admin.importStore({ externalId: "cl-frozen-1", status: "frozen", trialUsed: true });
    const answer = await call("PATCH", "/articles/1", store.storeId);
    assert.equal(answer.status, 403);
    assert.deepEqual(
      {
        error: answer.body.error,
        message: answer.body.message,
        subscriptionStatus: answer.body.subscriptionStatus,
        subscriptionTier: answer.body.subscriptionTier,
        internalStatus: answer.body.internalStatus,
        upgradeUrl: answer.body.upgradeUrl,
      },
      {
        error: "account_frozen",
        message:
          "Your account is in read-only mode. Your storefront and directory listing remain visible, but you cannot make changes. Please upgrade to regain full access.",
        subscriptionStatus: "expired",
        subscriptionTier: "google_only",
        internalStatus: "frozen",
        upgradeUrl: "/settings/subscription",
      },
    );
  });

  test("a store in maintenance may edit but not grow", async () => {
    const store = await admin.importStore({
      externalId: "cl-maintenance-1",
      status: "maintenance",
      maintenanceEndsAt: daysFromNow(30),
      trialUsed: true,
    });
    assert.equal((await call("PATCH", "/articles/7", store.storeId)).status, 200);
    const create = await call("POST", "/articles", store.storeId);
    assert.equal(create.status, 403);
    assert.equal(create.body.error, "maintenance_no_growth");
    assert.equal(create.body.internalStatus, "maintenance");
  });

  test("a request naming no store is refused before the ledger is asked", async () => {
    const answer = await fetch(`${appUrl}/articles/1`, { method: "PATCH" });
    assert.equal(answer.status, 400);
  });
});

describe("checkQuota", () => {
  test("32 concurrent creations take exactly the 10 left of 30", async () => {
    const store = await importActive("cl-active-1", 20);
    const answers = await Promise.all(Array.from({ length: 32 }, () => call("POST", "/articles", store.storeId)));
    const created = answers.filter((a) => a.status === 201);
    const refused = answers.filter((a) => a.status === 429);
    assert.equal(created.length, 10, JSON.stringify(answers.map((a) => a.status)));
    assert.equal(refused.length, 22);
    for (const answer of refused) {
      assert.equal(answer.body.error, "quota_exceeded");
      assert.equal(answer.body.limit, 30);
    }
    assert.deepEqual(created.map((a) => a.body.used).sort((x, y) => x - y), [21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    const view = await service.getStore(store.storeId);
    const article = view.usage.find((q) => q.action === "create_article");
    assert.equal(article?.used, 30);
  });

  test("an unknown action is a typed refusal, narrowed on its code", async () => {
    const store = await service.registerStore({});
    await assert.rejects(service.consume(store.storeId, { action: "no_such_action" }), (error: unknown) => {
      assert.ok(error instanceof PlanledgerError);
      assert.equal(error.status, 422);
      assert.ok(error.is("unknown_action"));
      return true;
    });
    await assert.rejects(service.consume(store.storeId, { action: "create_article" }), (error: unknown) => {
      assert.ok(error instanceof PlanledgerError && error.is("no_subscription"));
      // The gate's fields, typed on this code.
      assert.equal(error.body.internalStatus, "none");
      return true;
    });
  });
});

describe("webhooks", () => {
  test("a notification arrives and verifies; a changed body does not", async () => {
    const created = await admin.createWebhookEndpoint({
      url: `${appUrl}/webhooks/planledger`,
      kinds: ["plan.transitioned"],
    });
    webhookSecret = created.secret;
    const store = await importActive("cl-upgrade-1");
    await service.transitionPlan(store.storeId, {
      fromPlanId: "starter",
      toPlanId: "professional",
      reason: "upgrade",
      subscriptionId: "sub_cl-upgrade-1",
    });
    const deadline = Date.now() + 20_000;
    let received: Notification | undefined;
    while (!received && Date.now() < deadline) {
      received = notifications.find((n) => n.type === "plan.transitioned" && n.data.storeId === store.storeId);
      if (!received) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(received, "no plan.transitioned notification arrived in 20 s");
    assert.equal(received.type, "plan.transitioned");
    if (received.type === "plan.transitioned") {
      assert.equal(received.data.toPlanId, "professional");
      assert.equal(received.data.reason, "upgrade");
    }

    // The helper refuses a body that is not the one signed.
    const body = JSON.stringify(received);
    const id = "msg_0123456789abcdef0123456789abcdef";
    const timestamp = Math.floor(Date.now() / 1000).toString();
    const { Webhook } = await import("standardwebhooks");
    const signature = new Webhook(webhookSecret).sign(id, new Date(Number(timestamp) * 1000), body);
    const headers = { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature };
    assert.equal(verifyNotification(webhookSecret, body, headers).type, "plan.transitioned");
    assert.throws(() => verifyNotification(webhookSecret!, body.replace("professional", "enterprise"), headers), WebhookVerificationError);
  });
});

describe("the client", () => {
  test("retries a command whose answer was lost with the same Idempotency-Key", async () => {
    const store = await importActive("cl-retry-1");
    // A proxy that passes the first consumption to the ledger and loses its answer (as a
    // failover or a dropped connection would), then passes everything.
    const keys: string[] = [];
    let lost = false;
    const target = new URL(ledger.url);
    const proxy = createServer((req, res) => {
      keys.push(String(req.headers["idempotency-key"]));
      const forward = httpRequest(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers },
        (answer) => {
          if (!lost) {
            lost = true;
            answer.resume();
            res.writeHead(503, { "content-type": "text/plain" }).end("upstream lost");
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      req.pipe(forward);
    });
    const proxyUrl = await listen(proxy);
    try {
      const client = new PlanledgerClient({ baseUrl: proxyUrl, token: ledger.serviceToken, backoffMs: 10 });
      const consumed = await client.consume(store.storeId, { action: "create_article" });
      assert.equal(consumed.used, 1);
      assert.equal(keys.length, 2);
      assert.equal(keys[0], keys[1], "the retry kept its key");
      const view = await service.getStore(store.storeId);
      assert.equal(view.usage.find((q) => q.action === "create_article")?.used, 1, "consumed once");
    } finally {
      proxy.close();
    }
  });

  test("schedules a plan change for the period's end and withdraws it", async () => {
    const store = await importActive("cl-schedule-1");
    const answer = await service.schedulePlanTransition(store.storeId, {
      fromPlanId: "starter",
      toPlanId: "professional",
      reason: "upgrade",
      subscriptionId: "sub_cl-schedule-1",
      at: "period_end",
    });
    assert.equal(answer.scheduled.atPeriodEnd, true);
    assert.equal(answer.replaced, null);
    assert.deepEqual(answer.store.scheduledPlanTransition, answer.scheduled);
    const view = await service.cancelScheduledTransition(store.storeId, answer.scheduled.scheduleId);
    assert.equal(view.scheduledPlanTransition, null);
    await assert.rejects(
      service.cancelScheduledTransition(store.storeId, answer.scheduled.scheduleId),
      (error: unknown) => error instanceof PlanledgerError && error.is("schedule_not_found"),
    );
  });

  test("a grant lets a store past its plan's limit, and is voided", async () => {
    const store = await importActive("cl-grant-1", 30);
    await assert.rejects(service.consume(store.storeId, { action: "create_article" }), (e: unknown) =>
      e instanceof PlanledgerError && e.is("quota_exceeded"),
    );
    const { grant } = await service.addGrant(store.storeId, { action: "create_article", amount: 2, reason: "goodwill" });
    const consumed = await service.consume(store.storeId, { action: "create_article" });
    assert.deepEqual(consumed.fromGrants, [{ grantId: grant.grantId, amount: 1 }]);
    const view = await service.voidGrant(store.storeId, grant.grantId, { reason: "by mistake" });
    assert.deepEqual(view.grants, []);
  });

  test("gives up with PlanledgerUnreachable when nothing answers", async () => {
    const closed = createServer();
    const url = await listen(closed);
    closed.close();
    const client = new PlanledgerClient({ baseUrl: url, token: "t", retries: 1, backoffMs: 1, timeoutMs: 500 });
    await assert.rejects(client.getStore("00000000-0000-0000-0000-000000000000"), PlanledgerUnreachable);
  });
});
