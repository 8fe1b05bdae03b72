//! A given/when/then harness: tests that read as the rules.
//!
//! `given(history).at(now).when(command).then(events)` or `.then_err(code)`.

use chrono::{DateTime, TimeDelta, Utc};
use planledger_domain::*;
use uuid::Uuid;

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("RFC 3339 time").with_timezone(&Utc)
}

pub fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

/// When the test store registers and starts its trial.
pub fn t0() -> DateTime<Utc> {
    t("2026-03-02T10:00:00Z")
}

pub fn store() -> StoreId {
    StoreId::new(Uuid::from_u128(0x5107e))
}

pub fn plan(id: &str) -> PlanId {
    PlanId::parse(id).expect("plan id")
}

pub fn action(name: &str) -> ActionName {
    ActionName::parse(name).expect("action")
}

pub fn reason(text: &str) -> Reason {
    Reason::parse(text).expect("reason")
}

pub fn sub(id: &str) -> SubscriptionId {
    SubscriptionId::parse(id).expect("subscription id")
}

pub fn amount(n: i64) -> Amount {
    Amount::parse(n).expect("amount")
}

pub fn catalog() -> Catalog {
    Catalog::builtin()
}

pub fn registered() -> Event {
    Event::StoreRegistered {
        store_id: store(),
        name: Some(StoreName::parse("Corner Shop").unwrap()),
        time_zone: TimeZoneName::UTC,
        catalog_version: None,
    }
}

pub fn trial_started(at: DateTime<Utc>) -> Event {
    Event::TrialStarted { plan_id: plan("free_trial"), started_at: at, ends_at: at + days(14) }
}

pub fn trial_expired(trial_end: DateTime<Utc>) -> Event {
    Event::TrialExpired { trial_ends_at: trial_end, grace_ends_at: trial_end + days(3) }
}

pub fn downgraded(grace_end: DateTime<Utc>, from: &str) -> Event {
    Event::DowngradedToMaintenance {
        from_plan_id: Some(plan(from)),
        plan_id: plan("google_only"),
        grace_ends_at: grace_end,
        maintenance_ends_at: grace_end + days(180),
    }
}

pub fn frozen(maintenance_end: DateTime<Utc>) -> Event {
    Event::StoreFrozen { maintenance_ends_at: maintenance_end }
}

pub fn activated(plan_id: &str, subscription: &str, at: DateTime<Utc>, from: Option<&str>) -> Event {
    Event::SubscriptionActivated {
        plan_id: plan(plan_id),
        subscription_id: sub(subscription),
        from_plan_id: from.map(plan),
        activated_at: at,
    }
}

/// A registered store on a trial that started at t0.
pub fn trialing() -> Vec<Event> {
    vec![registered(), trial_started(t0())]
}

/// A store whose trial ran out into grace.
pub fn in_grace() -> Vec<Event> {
    let mut h = trialing();
    h.push(trial_expired(t0() + days(14)));
    h
}

/// A store downgraded to google_only.
pub fn in_maintenance() -> Vec<Event> {
    let mut h = in_grace();
    h.push(downgraded(t0() + days(17), "free_trial"));
    h
}

pub fn in_frozen() -> Vec<Event> {
    let mut h = in_maintenance();
    h.push(frozen(t0() + days(197)));
    h
}

/// A store on a paid starter subscription, activated during its trial.
pub fn active() -> Vec<Event> {
    let mut h = trialing();
    h.push(activated("starter", "sub_1", t0() + days(2), Some("free_trial")));
    h
}

pub fn past_due() -> Vec<Event> {
    let mut h = active();
    h.push(Event::SubscriptionPastDue { subscription_id: Some(sub("sub_1")) });
    h
}

pub fn canceled() -> Vec<Event> {
    let mut h = active();
    h.push(Event::SubscriptionCanceled { subscription_id: Some(sub("sub_1")) });
    h
}

pub fn consume(name: &str, n: i64) -> Command {
    Command::Consume { action: action(name), amount: amount(n), consumption_id: Uuid::from_u128(n as u128 + 1000) }
}

pub struct Scenario {
    history: Vec<Event>,
    now: DateTime<Utc>,
    catalog: Catalog,
}

pub fn given(history: Vec<Event>) -> Scenario {
    Scenario { history, now: t0(), catalog: catalog() }
}

impl Scenario {
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }

    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = catalog;
        self
    }

    pub fn state(&self) -> TenantState {
        TenantState::from_events(&self.history)
    }

    pub fn status(&self) -> Status {
        status(&self.state(), self.now, &self.catalog)
    }

    pub fn gate(&self, name: &str) -> GateDecision {
        gate(&self.state(), self.now, &self.catalog, &action(name)).expect("known action")
    }

    pub fn when(self, command: Command) -> Outcome {
        let state = self.state();
        let result = decide(&state, &command, self.now, &self.catalog);
        Outcome { state, result, now: self.now, catalog: self.catalog }
    }
}

pub struct Outcome {
    pub state: TenantState,
    pub result: Result<Vec<Event>, DomainError>,
    pub now: DateTime<Utc>,
    pub catalog: Catalog,
}

impl Outcome {
    #[track_caller]
    pub fn then(self, expected: Vec<Event>) -> TenantState {
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected);
                events.iter().fold(self.state, evolve)
            }
            Err(e) => panic!("expected events, got the refusal {} ({e})", e.code()),
        }
    }

    #[track_caller]
    pub fn then_types(self, expected: &[&str]) -> (Vec<Event>, TenantState) {
        match self.result {
            Ok(events) => {
                assert_eq!(events.iter().map(Event::event_type).collect::<Vec<_>>(), expected);
                let state = events.iter().fold(self.state, evolve);
                (events, state)
            }
            Err(e) => panic!("expected events, got the refusal {} ({e})", e.code()),
        }
    }

    #[track_caller]
    pub fn then_err(self, code: &str) -> DomainError {
        match self.result {
            Ok(events) => panic!("expected the refusal {code}, got {events:?}"),
            Err(e) => {
                assert_eq!(e.code(), code, "{e}");
                e
            }
        }
    }
}
