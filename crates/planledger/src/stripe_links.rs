//! `planledger import FILE --stripe-subscriptions SUBS`: links the imported stores' Stripe
//! subscriptions, from a file of subscription objects as Stripe's list API returns them (`{"object":
//! "list", "data": [...]}` pages, an array, or one object per line), so that Stripe's webhooks find
//! each store without a `metadata.store_id` edit on every subscription.
//!
//! A subscription is matched to a store by, in order: its `metadata.store_id`; its
//! `metadata.<KEY>` as the tenant's external id (`--stripe-external-id-key KEY`); the tenant
//! whose `subscriptionId` it is; the tenant whose `customerId` is its customer. The link is the
//! row the Stripe applier keeps per subscription (`stripe_subscriptions`), with the import's time
//! as its watermark: an event Stripe created before the import is older than the state imported.
//! A subscription linked already (by an event, or an earlier run) is left as it is.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use planledger_domain::command::ImportedStore;
use planledger_domain::values::ExternalId;
use planledger_domain::StoreId;
use planledger_service::CommandService;
use planledger_stripe::event::{subscription_object, SubscriptionFacts};
use planledger_stripe::inbox::{self, SubscriptionRow};
use serde_json::{json, Value};

/// Where the tenants of the import file lead: by subscription id and by customer id.
#[derive(Debug, Default)]
pub struct Tenants {
    by_subscription: HashMap<String, StoreId>,
    by_customer: HashMap<String, StoreId>,
    /// Every store of the file (a dry run links to them as if they were imported).
    stores: HashSet<StoreId>,
}

impl Tenants {
    pub fn of<'a>(tenants: impl IntoIterator<Item = &'a ImportedStore>) -> Tenants {
        let mut found = Tenants::default();
        for tenant in tenants {
            let store = StoreId::imported(&tenant.external_id);
            found.stores.insert(store);
            if let Some(subscription) = &tenant.subscription_id {
                found.by_subscription.insert(subscription.as_str().to_owned(), store);
            }
            if let Some(customer) = &tenant.customer_id {
                found.by_customer.insert(customer.as_str().to_owned(), store);
            }
        }
        found
    }
}

/// What became of one subscription of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Linked,
    /// Linked before (an event of it was applied, or an earlier import linked it).
    LinkedBefore,
    NotLinked(String),
}

/// The subscription objects of `text`, each with where it is (its place in the file).
pub fn subscriptions(text: &str) -> anyhow::Result<Vec<(String, Value)>> {
    fn push(value: Value, place: String, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    push(item, format!("{place}[{i}]"), out);
                }
            }
            Value::Object(ref object) if object.get("object").and_then(Value::as_str) == Some("list") => {
                let data = object.get("data").cloned().unwrap_or(Value::Array(Vec::new()));
                push(data, format!("{place}.data"), out);
            }
            other => out.push((place, other)),
        }
    }
    let mut out = Vec::new();
    match serde_json::from_str::<Value>(text) {
        Ok(document) => push(document, "$".into(), &mut out),
        // Not one document: one object (or page) per line.
        Err(_) => {
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let value: Value =
                    serde_json::from_str(line).with_context(|| format!("line {}: not a JSON object", i + 1))?;
                push(value, format!("line {}", i + 1), &mut out);
            }
        }
    }
    Ok(out)
}

/// Links every subscription of `file` it can (none with `dry_run`: it says what it would do);
/// answers the summary.
pub async fn link(
    service: &CommandService,
    file: &str,
    tenants: &Tenants,
    external_id_key: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<(Value, Vec<String>)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("could not read {file}"))?;
    let sha = planledger_api::import::sha256_hex(&text);
    let now = Utc::now();
    let mut fates = Vec::new();
    for (place, object) in subscriptions(&text)? {
        let fate = match subscription_object(&object) {
            Err(why) => Fate::NotLinked(why),
            Ok(facts) => match store_of(&facts, &object, tenants, external_id_key) {
                None => Fate::NotLinked(format!(
                    "no imported tenant has subscription {} or customer {}{}",
                    facts.subscription_id,
                    facts.customer_id.as_deref().unwrap_or("(none)"),
                    external_id_key.map(|key| format!(", and metadata.{key} names none")).unwrap_or_default()
                )),
                // A dry run imported nothing: a store of the file would be there.
                Some(store) if dry_run && tenants.stores.contains(&store) => Fate::Linked,
                Some(store) => link_one(service, store, &facts, &sha, now, dry_run).await?,
            },
        };
        let id = object.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
        fates.push((place, id, fate));
    }
    let count = |wanted: &Fate| fates.iter().filter(|(_, _, fate)| fate == wanted).count();
    let problems: Vec<String> = fates
        .iter()
        .filter_map(|(place, id, fate)| match fate {
            Fate::NotLinked(why) => Some(format!("{place} {id}: {why}")),
            _ => None,
        })
        .collect();
    let summary = json!({
        "file": file,
        "sha256": sha,
        "linked": count(&Fate::Linked),
        "linkedBefore": count(&Fate::LinkedBefore),
        "notLinked": problems.len(),
        "problems": problems,
    });
    Ok((summary, problems))
}

/// The store `facts` belong to, by the rules of the module's comment.
fn store_of(facts: &SubscriptionFacts, object: &Value, tenants: &Tenants, key: Option<&str>) -> Option<StoreId> {
    let by_metadata = facts.store_id.as_deref().and_then(|id| StoreId::parse(id).ok());
    let by_external = key
        .and_then(|key| object.pointer(&format!("/metadata/{key}")).and_then(Value::as_str))
        .and_then(|external| ExternalId::parse(external).ok())
        .map(|external| StoreId::imported(&external));
    by_metadata
        .or(by_external)
        .or_else(|| tenants.by_subscription.get(&facts.subscription_id).copied())
        .or_else(|| facts.customer_id.as_ref().and_then(|c| tenants.by_customer.get(c)).copied())
}

async fn link_one(
    service: &CommandService,
    store: StoreId,
    facts: &SubscriptionFacts,
    sha: &str,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<Fate> {
    let Some((state, _)) = service.load_row(store).await? else {
        return Ok(Fate::NotLinked(format!("store {store} is not in the ledger (import its tenant first)")));
    };
    let log = service.log();
    if inbox::subscription(log, &facts.subscription_id).await?.is_some() {
        return Ok(Fate::LinkedBefore);
    }
    if dry_run {
        return Ok(Fate::Linked);
    }
    // The price's plan by the catalog's mapping, else the plan the store was imported on.
    let catalog = service.catalog();
    let plan = facts
        .price
        .as_ref()
        .and_then(|price| catalog.plan_for_stripe_price(price.lookup_key.as_deref(), &price.id).cloned())
        .or(state.plan_id);
    let row = SubscriptionRow::of(facts, store, plan.as_ref(), (format!("import:{}", &sha[..12]), now), None);
    Ok(if inbox::link(log, &row, now).await? { Fate::Linked } else { Fate::LinkedBefore })
}
