// Express middleware with the gates and quotas of the ledger, in the shape of the app planledger
// was made for (seed 004's `requireWritableSubscription` and `checkSubscriptionLimits`):
//
//   app.patch("/items/:id", requireWritableStore(ledger, { store, action: "update_product" }), handler);
//   app.post("/items", checkQuota(ledger, "create_product", { store }), handler);
//
// A refusal answers the ledger's status and body, which are the seed's: 403 with
// `{error: "account_frozen", message, subscriptionStatus, subscriptionTier, internalStatus,
// upgradeUrl}` for a frozen store, 403 `maintenance_no_growth` for growth in maintenance, 402
// `no_subscription`, 429 `quota_exceeded` with `limit`, `used` and `resetsAt`.

import type { NextFunction, Request, RequestHandler, Response } from "express";

import { PlanledgerClient, PlanledgerError } from "./client.js";

export interface StoreOptions {
  /** The store (tenant) a request acts for: from the session, a header, a route parameter. */
  store: (req: Request) => string | undefined;
  /**
   * When the ledger cannot be reached or cannot decide: `"deny"` answers 503 (the default: a
   * gate that cannot be checked is closed), `"allow"` lets the request through.
   */
  whenUnavailable?: "deny" | "allow";
}

/** What `checkQuota` consumed, on `res.locals.planledger`. */
export interface Consumption {
  storeId: string;
  action: string;
  consumptionId: string;
  usedAfter: number;
  limit: number | null;
}

function refuse(res: Response, failure: unknown, options: StoreOptions, next: NextFunction): void {
  if (failure instanceof PlanledgerError && failure.status < 500) {
    res.status(failure.status).json(failure.body);
    return;
  }
  if (options.whenUnavailable === "allow") {
    next();
    return;
  }
  res.status(503).json({
    error: "ledger_unavailable",
    message: "The subscription ledger cannot be reached; try again shortly.",
  });
}

function storeOf(req: Request, res: Response, options: StoreOptions): string | undefined {
  const storeId = options.store(req);
  if (!storeId) {
    res.status(400).json({ error: "store_required", message: "The request names no store." });
  }
  return storeId;
}

/**
 * Lets a request through if the store may do `action` now (the ledger's gate: frozen and
 * canceled stores may not write, a store in maintenance may not grow). Nothing is consumed.
 */
export function requireWritableStore(
  ledger: PlanledgerClient,
  options: StoreOptions & { action: string },
): RequestHandler {
  return (req, res, next) => {
    const storeId = storeOf(req, res, options);
    if (!storeId) return;
    ledger.authorize(storeId, { action: options.action }).then(
      () => next(),
      (failure: unknown) => refuse(res, failure, options, next),
    );
  };
}

/**
 * Consumes one `action` of the store's quota, or refuses: exact under any concurrency, since
 * the ledger decides each consumption on the store's stream. The request's `Idempotency-Key`
 * header, if it has one, is the consumption's, so a client's retry is not counted twice.
 * If the handler then answers an error (status 400 or more), the consumption is refunded,
 * unless `refundOnError` is false.
 */
export function checkQuota(
  ledger: PlanledgerClient,
  action: string,
  options: StoreOptions & { amount?: number; refundOnError?: boolean },
): RequestHandler {
  return (req, res, next) => {
    const storeId = storeOf(req, res, options);
    if (!storeId) return;
    const key = req.get("idempotency-key");
    const command = key === undefined ? {} : { idempotencyKey: `${action}:${key}` };
    ledger.consume(storeId, { action, amount: options.amount ?? 1 }, command).then(
      (consumed) => {
        const consumption: Consumption = {
          storeId,
          action,
          consumptionId: consumed.consumptionId,
          usedAfter: consumed.used,
          limit: consumed.limit,
        };
        res.locals.planledger = consumption;
        if (options.refundOnError !== false) {
          res.once("finish", () => {
            if (res.statusCode >= 400) {
              ledger.refund(storeId, { consumptionId: consumed.consumptionId }).catch(() => {
                // The consumption stays; the refund can be made later from the journal.
              });
            }
          });
        }
        next();
      },
      (failure: unknown) => refuse(res, failure, options, next),
    );
  };
}
