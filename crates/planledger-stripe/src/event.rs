//! A Stripe event as delivered, and what it says about a subscription.
//!
//! Only the fields planledger needs are read, by path, from the event's JSON (Stripe adds
//! fields, and moved some between API versions: an invoice names its subscription at
//! `parent.subscription_details` since 2025 and at `subscription` before); anything else is
//! left alone. What each type means is written once, in [`Reading::of`].

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A delivered event: its identity and the object it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeEvent {
    pub id: String,
    pub kind: String,
    /// When Stripe created the event (the order of what happened, not of delivery).
    pub created: DateTime<Utc>,
    pub livemode: bool,
    pub object: Value,
    pub previous_attributes: Option<Value>,
}

impl StripeEvent {
    /// Reads an event from a verified body; refuses what is not one.
    pub fn parse(body: &[u8]) -> Result<StripeEvent, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let text = |field: &str| value.get(field).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 255);
        if value.get("object").and_then(Value::as_str) != Some("event") {
            return Err("the body is not a Stripe event (its \"object\" is not \"event\")".into());
        }
        let id = text("id").ok_or("the event has no id")?.to_owned();
        let kind = text("type").ok_or("the event has no type")?.to_owned();
        let created = value
            .get("created")
            .and_then(Value::as_i64)
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .ok_or("the event has no created time")?;
        let data = value.get("data").ok_or("the event has no data")?;
        let object = data.get("object").filter(|o| o.is_object()).ok_or("the event has no data.object")?.clone();
        Ok(StripeEvent {
            id,
            kind,
            created,
            livemode: value.get("livemode").and_then(Value::as_bool).unwrap_or(false),
            object,
            previous_attributes: data.get("previous_attributes").filter(|p| p.is_object()).cloned(),
        })
    }
}

/// A subscription's status as planledger acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// In its trial (Stripe `trialing`).
    Trialing,
    /// Paid and current (`active`; an invoice paid).
    Active,
    /// A payment failed (`past_due`, `unpaid`; an invoice's payment failed).
    PastDue,
    /// Ended (`canceled`, `incomplete_expired`, `paused`, the subscription deleted).
    /// `was_paid`: it had been a paying subscription, not a trial or a first payment that never
    /// happened, so the store had (or should have had) it active.
    Ended { was_paid: bool },
    /// Waiting for its first payment (`incomplete`): nothing to do yet.
    Incomplete,
}

/// The statuses in the order a subscription usually moves through them, an end last: how far
/// along a status is decides between events of one second (see `docs/decisions.md`).
const LIFECYCLE: [&str; 5] = ["incomplete", "trialing", "active", "past_due", "ended"];

impl Status {
    /// A subscription's Stripe status as planledger acts on it; `None` for one it does not know.
    /// `was_paid` says whether an ended subscription had been paying (see [`was_paid`]).
    pub fn from_stripe(status: &str, was_paid: bool) -> Option<Status> {
        Some(match status {
            "trialing" => Status::Trialing,
            "active" => Status::Active,
            "past_due" | "unpaid" => Status::PastDue,
            "canceled" => Status::Ended { was_paid },
            // A trial that ended without a payment method (Stripe pauses it) or a first
            // payment that never came: never paid.
            "paused" | "incomplete_expired" => Status::Ended { was_paid: false },
            "incomplete" => Status::Incomplete,
            _ => return None,
        })
    }

    /// How far along the lifecycle a status is, by the name [`Status::as_str`] gives it.
    pub fn rank_of(name: &str) -> usize {
        LIFECYCLE.iter().position(|n| *n == name).unwrap_or(LIFECYCLE.len())
    }

    pub fn rank(self) -> usize {
        Self::rank_of(self.as_str())
    }

    /// Its name, as stored beside the watermark.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Incomplete => LIFECYCLE[0],
            Status::Trialing => LIFECYCLE[1],
            Status::Active => LIFECYCLE[2],
            Status::PastDue => LIFECYCLE[3],
            Status::Ended { .. } => LIFECYCLE[4],
        }
    }
}

/// A price as a subscription or an invoice line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub id: String,
    pub lookup_key: Option<String>,
}

/// What an event says of one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionFacts {
    pub subscription_id: String,
    pub customer_id: Option<String>,
    /// `metadata.store_id`, where the event carries it.
    pub store_id: Option<String>,
    pub status: Status,
    pub price: Option<Price>,
    /// The Stripe status before this change (`previous_attributes.status` of an update).
    pub previous_status: Option<String>,
    /// The Stripe status itself, for the record.
    pub stripe_status: String,
    /// When its trial ends (Stripe `trial_end`), for a trial started from it.
    pub trial_end: Option<DateTime<Utc>>,
}

/// What an event asks of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// Bring the store to the subscription's state as of the event.
    Subscription(SubscriptionFacts),
    /// Recorded, nothing to change (`customer.subscription.trial_will_end`, which notifications
    /// act on).
    Noted { subscription_id: Option<String> },
    /// Nothing planledger applies, and why.
    Ignored(String),
}

impl Reading {
    /// What `event` means for the ledger.
    pub fn of(event: &StripeEvent) -> Reading {
        let object = &event.object;
        match event.kind.as_str() {
            "customer.subscription.created"
            | "customer.subscription.updated"
            | "customer.subscription.paused"
            | "customer.subscription.resumed" => subscription(object, event.previous_attributes.as_ref(), None),
            "customer.subscription.deleted" => {
                let was_paid = was_paid(object);
                subscription(object, event.previous_attributes.as_ref(), Some(Status::Ended { was_paid }))
            }
            "customer.subscription.trial_will_end" => {
                Reading::Noted { subscription_id: str_at(object, &["id"]).map(str::to_owned) }
            }
            "invoice.paid" => invoice(object, Status::Active),
            "invoice.payment_failed" => invoice(object, Status::PastDue),
            other => Reading::Ignored(format!("{other} is not an event planledger applies")),
        }
    }
}

/// What a `subscription` object says, as Stripe's list API returns it (`planledger import
/// --stripe-subscriptions`): its id, customer, status and price.
pub fn subscription_object(object: &Value) -> Result<SubscriptionFacts, String> {
    if str_at(object, &["object"]).is_some_and(|kind| kind != "subscription") {
        return Err(format!("a {} object, not a subscription", str_at(object, &["object"]).unwrap_or("")));
    }
    match subscription(object, None, None) {
        Reading::Subscription(facts) => Ok(facts),
        Reading::Ignored(why) => Err(why),
        Reading::Noted { .. } => Err("not a subscription".into()),
    }
}

fn subscription(object: &Value, previous: Option<&Value>, status: Option<Status>) -> Reading {
    let Some(id) = str_at(object, &["id"]) else {
        return Reading::Ignored("the subscription has no id".into());
    };
    let stripe_status = str_at(object, &["status"]).unwrap_or("").to_owned();
    let status = match status.or_else(|| Status::from_stripe(&stripe_status, was_paid(object))) {
        Some(status) => status,
        None => return Reading::Ignored(format!("subscription status {stripe_status:?} is not one planledger knows")),
    };
    let item = object.pointer("/items/data/0/price");
    Reading::Subscription(SubscriptionFacts {
        subscription_id: id.to_owned(),
        customer_id: id_of(object.get("customer")),
        store_id: str_at(object, &["metadata", "store_id"]).map(str::to_owned),
        status,
        price: item.and_then(|price| {
            Some(Price {
                id: str_at(price, &["id"])?.to_owned(),
                lookup_key: str_at(price, &["lookup_key"]).map(str::to_owned),
            })
        }),
        previous_status: previous.and_then(|p| str_at(p, &["status"])).map(str::to_owned),
        stripe_status,
        trial_end: time_at(object, "trial_end"),
    })
}

/// Whether an ended subscription had been paying: it got past its trial (it had none, or it
/// ended after the trial's end) and its first payment was made (it was not `incomplete`).
fn was_paid(object: &Value) -> bool {
    let ended = time_at(object, "ended_at").or_else(|| time_at(object, "canceled_at"));
    let past_trial = match (time_at(object, "trial_end"), ended) {
        (Some(trial_end), Some(ended)) => ended > trial_end,
        (Some(_), None) => false,
        (None, _) => true,
    };
    past_trial && !matches!(str_at(object, &["status"]), Some("incomplete" | "incomplete_expired" | "paused"))
}

fn invoice(object: &Value, status: Status) -> Reading {
    let details = object.pointer("/parent/subscription_details").or_else(|| object.get("subscription_details"));
    let subscription_id =
        details.and_then(|d| id_of(d.get("subscription"))).or_else(|| id_of(object.get("subscription")));
    let Some(subscription_id) = subscription_id else {
        return Reading::Ignored("the invoice is not a subscription's".into());
    };
    let store_id = details
        .and_then(|d| str_at(d, &["metadata", "store_id"]))
        .or_else(|| str_at(object, &["metadata", "store_id"]))
        .map(str::to_owned);
    let line = object.pointer("/lines/data/0");
    let price = line.and_then(|line| {
        // Since 2025 a line names its price by id under `pricing`; before, it carried the price.
        if let Some(id) = line.pointer("/pricing/price_details/price").and_then(|p| id_of(Some(p))) {
            return Some(Price { id, lookup_key: None });
        }
        let price = line.get("price")?;
        Some(Price {
            id: str_at(price, &["id"])?.to_owned(),
            lookup_key: str_at(price, &["lookup_key"]).map(str::to_owned),
        })
    });
    Reading::Subscription(SubscriptionFacts {
        subscription_id,
        customer_id: id_of(object.get("customer")),
        store_id,
        status,
        price,
        previous_status: None,
        stripe_status: if status == Status::Active { "invoice_paid" } else { "invoice_payment_failed" }.to_owned(),
        trial_end: None,
    })
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str().filter(|s| !s.is_empty())
}

/// An id given as a string, or as an expanded object with an `id`.
fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Object(object) => object.get("id")?.as_str().filter(|s| !s.is_empty()).map(str::to_owned),
        _ => None,
    }
}

fn time_at(value: &Value, field: &str) -> Option<DateTime<Utc>> {
    value.get(field)?.as_i64().and_then(|t| DateTime::from_timestamp(t, 0))
}
