// An example app in the shape of seed 004's API, with its checks made by the ledger:
//
//   POST  /articles             create: consumes `create_article` (quota, maintenance no-growth)
//   PATCH /articles/:id         edit: refused for frozen and canceled stores
//   POST  /webhooks/planledger  the ledger's notifications, verified (Standard Webhooks)
//
// The store is the `X-Store-Id` header here; a real app takes it from its session.
//
//   PLANLEDGER_URL=http://127.0.0.1:8080 PLANLEDGER_TOKEN=... PLANLEDGER_WEBHOOK_SECRET=whsec_... \
//     node dist/examples/app.js

import express from "express";

import { PlanledgerClient, verifyNotification, type Notification } from "../src/index.js";
import { checkQuota, requireWritableStore, type Consumption } from "../src/express.js";

export interface AppOptions {
  ledger: PlanledgerClient;
  /** The webhook endpoint's secret (`whsec_...`), once it is registered. */
  webhookSecret: () => string | undefined;
  /** Called with each verified notification. */
  onNotification?: (notification: Notification, id: string) => void;
}

export function app(options: AppOptions): express.Express {
  const { ledger } = options;
  const store = (req: express.Request) => req.get("x-store-id");
  const app = express();

  let articles = 0;
  app.post("/articles", checkQuota(ledger, "create_article", { store }), (_req, res) => {
    const consumption = res.locals.planledger as Consumption;
    articles += 1;
    res.status(201).json({ id: articles, used: consumption.usedAfter, limit: consumption.limit });
  });

  app.patch("/articles/:id", requireWritableStore(ledger, { store, action: "update_product" }), (req, res) => {
    res.json({ id: Number(req.params.id), updated: true });
  });

  // The raw body: the signature covers the bytes as sent.
  const seen = new Set<string>();
  app.post("/webhooks/planledger", express.raw({ type: "application/json" }), (req, res) => {
    const secret = options.webhookSecret();
    if (!secret) {
      res.status(503).end();
      return;
    }
    let notification: Notification;
    try {
      notification = verifyNotification(secret, req.body as Buffer, req.headers);
    } catch {
      res.status(400).json({ error: "invalid_signature" });
      return;
    }
    const id = req.get("webhook-id") ?? "";
    if (!seen.has(id)) {
      seen.add(id);
      options.onNotification?.(notification, id);
    }
    res.status(204).end();
  });

  return app;
}

// Run directly: `node dist/examples/app.js`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const ledger = new PlanledgerClient({
    baseUrl: process.env.PLANLEDGER_URL ?? "http://127.0.0.1:8080",
    token: process.env.PLANLEDGER_TOKEN ?? "",
  });
  const port = Number(process.env.PORT ?? 3000);
  app({ ledger, webhookSecret: () => process.env.PLANLEDGER_WEBHOOK_SECRET }).listen(port, () => {
    console.log(`example app on http://127.0.0.1:${port}`);
  });
}
