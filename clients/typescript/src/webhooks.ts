// Verifying the ledger's notifications: Standard Webhooks (https://www.standardwebhooks.com),
// with the reference library, so that a receiver checks the signature, the timestamp's
// freshness (5 minutes) and the body before trusting a field of it.

import { Webhook, WebhookVerificationError } from "standardwebhooks";

import type { components, webhooks } from "./schema.js";

/** Every notification the ledger sends: a union on `type`, each with its `data`. */
export type Notification = {
  [K in keyof webhooks]: webhooks[K]["post"] extends {
    requestBody?: { content: { "application/json": infer B } };
  }
    ? B
    : never;
}[keyof webhooks];
export type NotificationType = Notification["type"];
/** One kind's notification: `NotificationOf<"quota.threshold">["data"]["percent"]`. */
export type NotificationOf<T extends NotificationType> = Extract<Notification, { type: T }>;
export type NotificationSource = components["schemas"]["NotificationSource"];

export { WebhookVerificationError };

/**
 * The notification in `body` if it was signed with `secret` (the endpoint's `whsec_...`) in the
 * last 5 minutes; throws `WebhookVerificationError` otherwise. `body` must be the raw bytes as
 * received (with Express: `express.raw({ type: "application/json" })`), not a re-serialized
 * object. Deduplicate on `headers["webhook-id"]`: a notification may arrive more than once.
 */
export function verifyNotification(
  secret: string,
  body: string | Buffer,
  headers: Record<string, string | string[] | undefined>,
): Notification {
  const flat: Record<string, string> = {};
  for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"]) {
    const value = headers[name];
    flat[name] = Array.isArray(value) ? (value[0] ?? "") : (value ?? "");
  }
  const payload = typeof body === "string" ? body : body.toString("utf8");
  return new Webhook(secret).verify(payload, flat) as Notification;
}
