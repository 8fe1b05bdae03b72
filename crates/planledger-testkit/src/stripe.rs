//! Stripe events for tests: objects with the field names and nesting of Stripe's API reference
//! and its published OpenAPI fixtures (`stripe/openapi`, `fixtures3.json`), with the values a
//! test needs, and deliveries signed as Stripe's documentation describes `Stripe-Signature`:
//! the hex HMAC-SHA256 of `"{t}.{body}"` keyed by the endpoint's secret. The signing here is
//! written from that description, not shared with the code under test.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The API version whose shapes these follow (invoices name their subscription under
/// `parent.subscription_details`).
pub const API_VERSION: &str = "2025-03-31.basil";

/// A subscription's price, as a test names it.
#[derive(Debug, Clone, Copy)]
pub struct Price<'a> {
    pub id: &'a str,
    pub lookup_key: Option<&'a str>,
    pub unit_amount: i64,
}

/// The parts of a subscription a test varies; the rest is filled as Stripe fills it.
#[derive(Debug, Clone)]
pub struct Subscription<'a> {
    pub id: &'a str,
    pub customer: &'a str,
    pub status: &'a str,
    /// `metadata.store_id`.
    pub store_id: Option<&'a str>,
    pub price: Price<'a>,
    pub created: i64,
    pub trial_end: Option<i64>,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
}

impl Subscription<'_> {
    /// The `subscription` object.
    pub fn object(&self) -> Value {
        let period_end = self.created + 30 * 86_400;
        json!({
            "id": self.id,
            "object": "subscription",
            "application": null,
            "application_fee_percent": null,
            "automatic_tax": {"enabled": false, "liability": null, "disabled_reason": null},
            "billing_cycle_anchor": self.trial_end.unwrap_or(self.created),
            "billing_cycle_anchor_config": null,
            "billing_mode": {"type": "classic"},
            "billing_thresholds": null,
            "cancel_at": null,
            "cancel_at_period_end": false,
            "canceled_at": self.canceled_at,
            "cancellation_details": {"comment": null, "feedback": null, "reason": self.canceled_at.map(|_| "cancellation_requested")},
            "collection_method": "charge_automatically",
            "created": self.created,
            "currency": "usd",
            "customer": self.customer,
            "days_until_due": null,
            "default_payment_method": "pm_1QxTestCard0000000000000",
            "default_source": null,
            "default_tax_rates": [],
            "description": null,
            "discounts": [],
            "ended_at": self.ended_at,
            "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": [{
                    "id": format!("si_{}", &self.id[4.min(self.id.len())..]),
                    "object": "subscription_item",
                    "billing_thresholds": null,
                    "created": self.created,
                    "current_period_end": period_end,
                    "current_period_start": self.created,
                    "discounts": [],
                    "metadata": {},
                    "price": {
                        "id": self.price.id,
                        "object": "price",
                        "active": true,
                        "billing_scheme": "per_unit",
                        "created": self.created - 86_400,
                        "currency": "usd",
                        "custom_unit_amount": null,
                        "livemode": false,
                        "lookup_key": self.price.lookup_key,
                        "metadata": {},
                        "nickname": null,
                        "product": "prod_RplanledgerTest",
                        "recurring": {"interval": "month", "interval_count": 1, "meter": null, "trial_period_days": null, "usage_type": "licensed"},
                        "tax_behavior": "unspecified",
                        "tiers_mode": null,
                        "transform_quantity": null,
                        "type": "recurring",
                        "unit_amount": self.price.unit_amount,
                        "unit_amount_decimal": self.price.unit_amount.to_string()
                    },
                    "quantity": 1,
                    "subscription": self.id,
                    "tax_rates": []
                }],
                "has_more": false,
                "total_count": 1,
                "url": format!("/v1/subscription_items?subscription={}", self.id)
            },
            "latest_invoice": format!("in_{}", &self.id[4.min(self.id.len())..]),
            "livemode": false,
            "metadata": match self.store_id { Some(store) => json!({"store_id": store}), None => json!({}) },
            "next_pending_invoice_item_invoice": null,
            "on_behalf_of": null,
            "pause_collection": null,
            "payment_settings": {"payment_method_options": null, "payment_method_types": null, "save_default_payment_method": "off"},
            "pending_invoice_item_interval": null,
            "pending_setup_intent": null,
            "pending_update": null,
            "schedule": null,
            "start_date": self.created,
            "status": self.status,
            "test_clock": null,
            "transfer_data": null,
            "trial_end": self.trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": self.trial_end.map(|_| self.created)
        })
    }

    /// An `invoice` of this subscription, `paid` or not (its payment failed).
    pub fn invoice(&self, id: &str, created: i64, paid: bool) -> Value {
        let amount = self.price.unit_amount;
        json!({
            "id": id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "planledger test",
            "amount_due": amount,
            "amount_paid": if paid { amount } else { 0 },
            "amount_remaining": if paid { 0 } else { amount },
            "attempt_count": 1,
            "attempted": true,
            "auto_advance": !paid,
            "billing_reason": "subscription_cycle",
            "collection_method": "charge_automatically",
            "created": created,
            "currency": "usd",
            "customer": self.customer,
            "customer_email": "owner@example.com",
            "description": null,
            "discounts": [],
            "due_date": null,
            "effective_at": created,
            "hosted_invoice_url": null,
            "issuer": {"type": "self"},
            "lines": {
                "object": "list",
                "data": [{
                    "id": format!("il_{id}"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": "usd",
                    "description": "1 x planledger (at $29.00 / month)",
                    "discount_amounts": [],
                    "discountable": true,
                    "discounts": [],
                    "invoice": id,
                    "livemode": false,
                    "metadata": {},
                    "parent": {
                        "invoice_item_details": null,
                        "subscription_item_details": {
                            "invoice_item": null,
                            "proration": false,
                            "proration_details": {"credited_items": null},
                            "subscription": self.id,
                            "subscription_item": format!("si_{}", &self.id[4.min(self.id.len())..])
                        },
                        "type": "subscription_item_details"
                    },
                    "period": {"end": created + 30 * 86_400, "start": created},
                    "pretax_credit_amounts": [],
                    "pricing": {"price_details": {"price": self.price.id, "product": "prod_RplanledgerTest"}, "type": "price_details", "unit_amount_decimal": amount.to_string()},
                    "quantity": 1,
                    "taxes": []
                }],
                "has_more": false,
                "total_count": 1,
                "url": format!("/v1/invoices/{id}/lines")
            },
            "livemode": false,
            "metadata": {},
            "next_payment_attempt": if paid { Value::Null } else { json!(created + 3 * 86_400) },
            "number": format!("PL-{id}"),
            "parent": {
                "quote_details": null,
                "subscription_details": {
                    "metadata": match self.store_id { Some(store) => json!({"store_id": store}), None => json!({}) },
                    "subscription": self.id
                },
                "type": "subscription_details"
            },
            "period_end": created,
            "period_start": created - 30 * 86_400,
            "status": if paid { "paid" } else { "open" },
            "status_transitions": {"finalized_at": created, "marked_uncollectible_at": null, "paid_at": if paid { json!(created) } else { Value::Null }, "voided_at": null},
            "subtotal": amount,
            "total": amount,
            "webhooks_delivered_at": null
        })
    }
}

/// An `event` carrying `object`, as a webhook delivers it.
pub fn event(id: &str, kind: &str, created: i64, object: Value, previous_attributes: Option<Value>) -> Value {
    let mut data = json!({ "object": object });
    if let Some(previous) = previous_attributes {
        data["previous_attributes"] = previous;
    }
    json!({
        "id": id,
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": data,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": kind
    })
}

/// `Stripe-Signature` for `body` signed at `t` with `secret`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}
