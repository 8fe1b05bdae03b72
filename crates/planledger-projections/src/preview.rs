//! A draft catalog previewed against the ledger's history: every consumption the ledger
//! accepted is decided again under the draft, in order, on a shadow of the store that keeps
//! only what the draft would have allowed, and the preview lists what the draft would refuse.
//!
//! The consumptions the ledger refused (as the journal keeps them, with their action and amount)
//! are decided again too, at their time among the events: the ones the draft would allow are
//! listed, and the shadow takes them, as the store would have.
//!
//! The other facts (registrations, trials, deadlines, subscriptions, plan changes) are kept as
//! recorded: they are decided by time and by other systems, and the draft's durations are not
//! re-decided. A store whose plan the draft does not have is an error of the draft, not
//! "unmetered".

use chrono::{DateTime, Utc};
use std::collections::HashMap;

use planledger_domain::{decide, evolve, ActionName, Amount, Catalog, Catalogs, Command, Event, StoreId, TenantState};
use planledger_store::{EventLog, RecordedEvent, StoreError, StreamId};
use uuid::Uuid;

use crate::audit::RefusedConsumption;
use crate::history::decode;
use crate::replay::StatusLine;

/// A consumption the ledger accepted that the draft would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldRefuse {
    /// The store's stream version of the consumption.
    pub version: i64,
    pub at: DateTime<Utc>,
    pub action: String,
    pub amount: u64,
    /// The refusal's code (`quota_exceeded`, `feature_not_in_plan`, ...).
    pub code: &'static str,
    pub correlation_id: String,
}

/// A consumption the ledger refused that the draft would allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldAllow {
    pub at: DateTime<Utc>,
    pub action: String,
    pub amount: u64,
    /// Why the ledger refused it.
    pub refused_with: String,
    pub correlation_id: String,
}

/// What the draft changes for one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePreview {
    pub store: StoreId,
    /// The store's plan, when the draft does not have it: the draft cannot decide for the store.
    pub plan_missing: Option<String>,
    pub would_refuse: Vec<WouldRefuse>,
    pub would_allow: Vec<WouldAllow>,
    /// The store's status now, under the rules in force and under the draft (on its shadow).
    pub status_now: StatusLine,
    pub status_draft: StatusLine,
}

impl StorePreview {
    pub fn changes(&self) -> bool {
        self.plan_missing.is_some()
            || !self.would_refuse.is_empty()
            || !self.would_allow.is_empty()
            || self.status_now != self.status_draft
    }
}

/// The whole preview: the stores it changes, and what it looked at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preview {
    pub stores_examined: u64,
    pub consumptions_examined: u64,
    /// The refused consumptions decided again (those the journal still holds).
    pub refusals_examined: u64,
    /// The stores the draft changes, in stream order.
    pub stores: Vec<StorePreview>,
}

impl Preview {
    pub fn refusals(&self) -> usize {
        self.stores.iter().map(|s| s.would_refuse.len()).sum()
    }

    pub fn allowances(&self) -> usize {
        self.stores.iter().map(|s| s.would_allow.len()).sum()
    }

    pub fn missing_plans(&self) -> usize {
        self.stores.iter().filter(|s| s.plan_missing.is_some()).count()
    }
}

/// One store's history under the draft (see the module's comment), with the consumptions the
/// ledger refused it (oldest first). No IO.
pub fn preview_store(
    store: StoreId,
    history: &[(RecordedEvent, Event)],
    refused: &[RefusedConsumption],
    current: &Catalogs,
    draft: &Catalog,
    now: DateTime<Utc>,
) -> (StorePreview, u64) {
    let mut recorded_state = TenantState::default();
    let mut shadow = TenantState::default();
    let mut would_refuse = Vec::new();
    let mut would_allow = Vec::new();
    let mut plan_missing = None;
    let mut refused_ids = Vec::new();
    let mut consumptions = 0;
    let mut refusals = refused.iter().enumerate().peekable();
    // A refused consumption decided again on the shadow, at its time.
    let mut again = |shadow: &mut TenantState, index: usize, refusal: &RefusedConsumption| {
        let (Ok(action), Ok(amount)) = (ActionName::parse(&refusal.action), Amount::parse(refusal.amount)) else {
            return;
        };
        if shadow.plan_id.as_ref().is_some_and(|plan| draft.plan(plan).is_none()) {
            return;
        }
        let command = Command::Consume { action, amount, consumption_id: Uuid::from_u128(index as u128) };
        if let Ok(decided) = decide(shadow, &command, refusal.at, draft) {
            *shadow = decided.iter().fold(std::mem::take(shadow), evolve);
            would_allow.push(WouldAllow {
                at: refusal.at,
                action: refusal.action.clone(),
                amount: amount.get(),
                refused_with: refusal.code.clone(),
                correlation_id: refusal.correlation_id.clone(),
            });
        }
    };
    for (recorded, event) in history {
        while let Some((index, refusal)) = refusals.next_if(|(_, r)| r.at < recorded.recorded_at) {
            again(&mut shadow, index, refusal);
        }
        recorded_state = evolve(recorded_state, event);
        match event {
            Event::QuotaConsumed { consumption_id, action, amount, at, .. } if plan_missing.is_none() => {
                consumptions += 1;
                if let Some(plan) = shadow.plan_id.as_ref().filter(|plan| draft.plan(plan).is_none()) {
                    plan_missing = Some(plan.to_string());
                    continue;
                }
                let command =
                    Command::Consume { action: action.clone(), amount: *amount, consumption_id: *consumption_id };
                match decide(&shadow, &command, *at, draft) {
                    Ok(decided) => shadow = decided.iter().fold(shadow, evolve),
                    Err(error) => {
                        refused_ids.push(*consumption_id);
                        would_refuse.push(WouldRefuse {
                            version: recorded.version,
                            at: *at,
                            action: action.to_string(),
                            amount: amount.get(),
                            code: error.code(),
                            correlation_id: recorded.correlation_id.clone(),
                        });
                    }
                }
            }
            // A refund of a consumption the draft would have refused has nothing to give back.
            Event::QuotaRefunded { consumption_id, .. } if refused_ids.contains(consumption_id) => {}
            other => shadow = evolve(shadow, other),
        }
    }
    for (index, refusal) in refusals {
        again(&mut shadow, index, refusal);
    }
    if plan_missing.is_none() {
        plan_missing = shadow.plan_id.as_ref().filter(|plan| draft.plan(plan).is_none()).map(ToString::to_string);
    }
    let status_draft = if plan_missing.is_some() {
        StatusLine::of(&shadow, now, &current.shown_for(&shadow, now).catalog)
    } else {
        StatusLine::of(&shadow, now, draft)
    };
    let preview = StorePreview {
        store,
        plan_missing,
        would_refuse,
        would_allow,
        // Under the store's own catalog version, as the ledger decides it.
        status_now: StatusLine::of(&recorded_state, now, &current.shown_for(&recorded_state, now).catalog),
        status_draft,
    };
    (preview, consumptions)
}

/// The draft previewed against every store of the log, one stream after another (bounded
/// memory: a page of events at a time, one store's history at a time).
///
/// `refused`: the consumptions the ledger refused, by store id (`audit::refused_consumptions`).
pub async fn preview<L: EventLog>(
    log: &L,
    current: &Catalogs,
    draft: &Catalog,
    now: DateTime<Utc>,
    refused: &HashMap<String, Vec<RefusedConsumption>>,
) -> Result<Preview, StoreError> {
    const PAGE: i64 = 1_000;
    let mut report = Preview::default();
    let mut after: Option<(StreamId, i64)> = None;
    let mut open: Option<(StoreId, Vec<(RecordedEvent, Event)>)> = None;
    let finish = |report: &mut Preview, store: StoreId, history: Vec<(RecordedEvent, Event)>| {
        let refused = refused.get(&store.to_string()).map_or(&[][..], Vec::as_slice);
        let (store_preview, consumptions) = preview_store(store, &history, refused, current, draft, now);
        report.stores_examined += 1;
        report.consumptions_examined += consumptions;
        report.refusals_examined += refused.len() as u64;
        if store_preview.changes() {
            report.stores.push(store_preview);
        }
    };
    loop {
        let page = log.read_by_stream(after.as_ref().map(|(s, v)| (s, *v)), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.stream_id.clone(), last.version));
        let full = page.len() as i64 == PAGE;
        for recorded in page {
            let Some(store) = StoreId::from_stream_name(recorded.stream_id.as_str()) else { continue };
            if open.as_ref().is_some_and(|(s, _)| *s != store) {
                if let Some((done, history)) = open.take() {
                    finish(&mut report, done, history);
                }
            }
            let event = decode(&recorded)?;
            open.get_or_insert_with(|| (store, Vec::new())).1.push((recorded, event));
        }
        if !full {
            break;
        }
    }
    if let Some((store, history)) = open.take() {
        finish(&mut report, store, history);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use planledger_domain::{
        ActionName, Amount, Consumption, InternalStatus, PlanId, StoreName, SubscriptionId, BUILTIN_SOURCE,
    };
    use planledger_store::Checkpoint;
    use uuid::Uuid;

    use super::*;

    /// A store's history decided under `catalog`, as the log would hold it.
    struct History {
        store: StoreId,
        state: TenantState,
        events: Vec<(RecordedEvent, Event)>,
    }

    impl History {
        fn new() -> Self {
            Self { store: StoreId::new(Uuid::new_v4()), state: TenantState::default(), events: Vec::new() }
        }

        fn run(&mut self, command: Command, at: DateTime<Utc>, catalog: &Catalog) -> Vec<Event> {
            let decided = decide(&self.state, &command, at, catalog).expect("accepted under the rules in force");
            for event in &decided {
                self.state = evolve(std::mem::take(&mut self.state), event);
                let version = self.events.len() as i64 + 1;
                let recorded = RecordedEvent {
                    event_id: Uuid::now_v7(),
                    stream_id: StreamId::parse(self.store.stream_name()).unwrap(),
                    version,
                    global_position: version,
                    checkpoint: Checkpoint { transaction_id: 0, position: version },
                    event_type: event.event_type().to_owned(),
                    schema_version: event.schema_version(),
                    data: event.data(),
                    correlation_id: format!("c{version}"),
                    causation_id: None,
                    idempotency_key: None,
                    actor: "tester".into(),
                    catalog_fingerprint: catalog.fingerprint().to_owned(),
                    recorded_at: at,
                    hash: planledger_store::GENESIS,
                };
                self.events.push((recorded, event.clone()));
            }
            decided
        }
    }

    fn consume() -> Command {
        Command::Consume {
            action: ActionName::parse("create_article").unwrap(),
            amount: Amount::ONE,
            consumption_id: Uuid::now_v7(),
        }
    }

    #[test]
    fn a_refund_of_a_consumption_the_draft_refused_gives_nothing_back() {
        let current = Catalog::builtin();
        let text = BUILTIN_SOURCE.replacen("create_article = { limit = 30,", "create_article = { limit = 2,", 1);
        let draft = Catalog::parse("draft.toml", &text).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
        let mut history = History::new();
        let register = Command::RegisterStore {
            store_id: history.store,
            name: Some(StoreName::parse("Shop").unwrap()),
            time_zone: None,
        };
        history.run(register, at, &current);
        let pay = Command::ActivateSubscription {
            plan_id: PlanId::parse("starter").unwrap(),
            subscription_id: SubscriptionId::parse("sub_1").unwrap(),
        };
        history.run(pay, at, &current);
        let mut consumed = Vec::new();
        for _ in 0..3 {
            consumed.extend(history.run(consume(), at, &current));
        }
        // The third consumption (refused by the draft) is refunded: under the draft nothing was
        // taken, so nothing comes back, and the fourth is refused too.
        let third = Consumption::from_event(&consumed[2]).unwrap();
        let refund = Command::Refund { consumption_id: third.consumption_id, consumption: Some(third) };
        history.run(refund, at, &current);
        history.run(consume(), at, &current);

        let catalogs = Catalogs::single(std::sync::Arc::new(current.clone()));
        let (preview, examined) = preview_store(history.store, &history.events, &[], &catalogs, &draft, at);
        assert_eq!(examined, 4);
        let refused: Vec<i64> = preview.would_refuse.iter().map(|r| r.version).collect();
        assert_eq!(refused, [5, 7], "the third and the fourth consumption: {preview:?}");
        assert!(preview.would_refuse.iter().all(|r| r.code == "quota_exceeded"));
        assert_eq!(preview.plan_missing, None);
        assert_eq!(preview.status_now.internal_status, InternalStatus::Active.as_str());
        assert!(preview.changes());

        // Under the rules in force nothing changes.
        let (same, _) = preview_store(history.store, &history.events, &[], &catalogs, &current, at);
        assert!(!same.changes(), "{same:?}");
    }
}
