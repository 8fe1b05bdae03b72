//! What the ledger tells the world, derived from its log. Pure: no IO, time passed in.
//!
//! [`notices_of`] turns one recorded event into the notices it causes: facts at once
//! (`trial.expired`, `store.frozen`, ...), warnings due ahead of the deadline the event set
//! (`trial.ending_soon`, `store.freeze_warning`, ...), quota thresholds crossed, and the raw
//! event itself (`ledger.event`). Every notice has a deterministic id made of what it is about
//! (its kind, its store, its deadline or its event), so projecting the same event again (a
//! replay, a second node, a restart) makes the same notice, which the outbox stores once.
//!
//! A warning is sent only if the store still faces the deadline it warns of
//! ([`still_applies`]): a store that paid is not told it will freeze.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use planledger_domain::{Event, Notifications, Phase, StoreId, TenantState};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// A kind of notification an endpoint may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    TrialEndingSoon,
    TrialExpired,
    GraceEndingSoon,
    StoreDowngradedToMaintenance,
    StoreFreezeWarning,
    StoreFrozen,
    SubscriptionChanged,
    PlanTransitioned,
    QuotaThreshold,
    /// A grant with something left expires soon.
    GrantExpiringSoon,
    /// Every raw event (of the types an endpoint chose).
    LedgerEvent,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::TrialEndingSoon,
        Kind::TrialExpired,
        Kind::GraceEndingSoon,
        Kind::StoreDowngradedToMaintenance,
        Kind::StoreFreezeWarning,
        Kind::StoreFrozen,
        Kind::SubscriptionChanged,
        Kind::PlanTransitioned,
        Kind::QuotaThreshold,
        Kind::GrantExpiringSoon,
        Kind::LedgerEvent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TrialEndingSoon => "trial.ending_soon",
            Kind::TrialExpired => "trial.expired",
            Kind::GraceEndingSoon => "grace.ending_soon",
            Kind::StoreDowngradedToMaintenance => "store.downgraded_to_maintenance",
            Kind::StoreFreezeWarning => "store.freeze_warning",
            Kind::StoreFrozen => "store.frozen",
            Kind::SubscriptionChanged => "subscription.changed",
            Kind::PlanTransitioned => "plan.transitioned",
            Kind::QuotaThreshold => "quota.threshold",
            Kind::GrantExpiringSoon => "grant.expiring_soon",
            Kind::LedgerEvent => "ledger.event",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// One notification, ready to be delivered to every endpoint that wants its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Deterministic: the same fact always makes the same id (`msg_` and 32 hex digits). It is
    /// the `webhook-id` receivers deduplicate on.
    pub id: String,
    pub kind: Kind,
    pub store_id: StoreId,
    /// The raw event's type, for `ledger.event` (endpoints may choose types).
    pub event_type: Option<&'static str>,
    /// When it is to be sent: at once for facts, ahead of the deadline for warnings.
    pub due_at: DateTime<Utc>,
    /// For a warning: the deadline the store must still face when it is sent.
    pub deadline: Option<DateTime<Utc>>,
    /// The body delivered, byte for byte on every attempt (Standard Webhooks' shape:
    /// `{"type", "timestamp", "data"}`).
    pub body: String,
}

/// The recorded envelope of the event a notice comes from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub store: StoreId,
    pub event_id: uuid::Uuid,
    pub version: i64,
    pub correlation_id: &'a str,
    pub recorded_at: DateTime<Utc>,
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn notice_id(kind: Kind, store: StoreId, about: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{store}\n{about}", kind.as_str()).as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

struct Builder<'a> {
    source: Source<'a>,
    notices: Vec<Notice>,
}

impl Builder<'_> {
    /// A fact, sent at once; its id is the event's.
    fn fact(&mut self, kind: Kind, data: Value) {
        let about = self.source.event_id.to_string();
        self.push(kind, &about, self.source.recorded_at, None, data, None);
    }

    /// A warning `lead_days` before `deadline` (at once if less remains); none if the deadline
    /// has passed already.
    fn warning(&mut self, kind: Kind, deadline: DateTime<Utc>, lead_days: i64, mut data: Value) {
        let now = self.source.recorded_at;
        if deadline <= now {
            return;
        }
        let due_at = (deadline - TimeDelta::days(lead_days)).max(now);
        if let Value::Object(fields) = &mut data {
            fields.insert("daysBefore".to_owned(), json!(lead_days));
        }
        let about = format!("{}\n{lead_days}", time(deadline));
        self.push(kind, &about, due_at, Some(deadline), data, None);
    }

    fn push(
        &mut self,
        kind: Kind,
        about: &str,
        due_at: DateTime<Utc>,
        deadline: Option<DateTime<Utc>>,
        data: Value,
        event_type: Option<&'static str>,
    ) {
        let store = self.source.store;
        let mut fields = Map::new();
        fields.insert("storeId".to_owned(), json!(store.to_string()));
        if let Value::Object(data) = data {
            fields.extend(data);
        }
        // Where it comes from, so a receiver can find the event (and everything its correlation
        // id carries) in the ledger.
        fields.insert(
            "source".to_owned(),
            json!({
                "eventId": self.source.event_id,
                "version": self.source.version,
                "correlationId": self.source.correlation_id,
                "recordedAt": time(self.source.recorded_at),
            }),
        );
        let body = json!({ "type": kind.as_str(), "timestamp": time(due_at), "data": Value::Object(fields) });
        self.notices.push(Notice {
            id: notice_id(kind, store, about),
            kind,
            store_id: store,
            event_type,
            due_at,
            deadline,
            body: body.to_string(),
        });
    }
}

/// The notices one recorded event causes, under the catalog's `[notifications]`.
pub fn notices_of(source: Source<'_>, event: &Event, leads: &Notifications) -> Vec<Notice> {
    let mut b = Builder { source, notices: Vec::new() };
    match event {
        // A recorded trial is over or held under a subscription: nothing to warn of. A store's
        // move to a later catalog version is the vendor's own doing, announced by the vendor.
        Event::StoreRegistered { .. } | Event::TrialRecorded { .. } | Event::CatalogAdopted { .. } => {}
        Event::TrialStarted { plan_id, ends_at, .. } | Event::TrialRestarted { plan_id, ends_at, .. } => {
            let data = json!({ "planId": plan_id, "trialEndsAt": time(*ends_at) });
            b.warning(Kind::TrialEndingSoon, *ends_at, leads.trial_ending_days, data);
        }
        // A tenant moving in is warned of the deadline its status has, as if it had come to it here.
        Event::StoreImported { tenant, .. } => match tenant.status {
            planledger_domain::command::ImportedStatus::Trialing => {
                if let Some(ends_at) = tenant.trial_ends_at {
                    let data = json!({ "planId": tenant.plan_id, "trialEndsAt": time(ends_at) });
                    b.warning(Kind::TrialEndingSoon, ends_at, leads.trial_ending_days, data);
                }
            }
            planledger_domain::command::ImportedStatus::Grace => {
                if let Some(ends_at) = tenant.grace_ends_at {
                    grace_warning(&mut b, ends_at, leads);
                }
            }
            planledger_domain::command::ImportedStatus::Maintenance => {
                if let Some(ends_at) = tenant.maintenance_ends_at {
                    freeze_warnings(&mut b, ends_at, leads);
                }
            }
            _ => {}
        },
        Event::TrialExtended { ends_at, .. } => {
            let data = json!({ "planId": null, "trialEndsAt": time(*ends_at) });
            b.warning(Kind::TrialEndingSoon, *ends_at, leads.trial_ending_days, data);
        }
        Event::TrialExpired { trial_ends_at, grace_ends_at } => {
            let data = json!({ "trialEndedAt": time(*trial_ends_at), "graceEndsAt": time(*grace_ends_at) });
            b.fact(Kind::TrialExpired, data);
            grace_warning(&mut b, *grace_ends_at, leads);
        }
        Event::GracePeriodExtended { ends_at, .. } => grace_warning(&mut b, *ends_at, leads),
        Event::DowngradedToMaintenance { from_plan_id, plan_id, maintenance_ends_at, .. } => {
            let data = json!({
                "fromPlanId": from_plan_id,
                "planId": plan_id,
                "freezesAt": time(*maintenance_ends_at),
            });
            b.fact(Kind::StoreDowngradedToMaintenance, data);
            freeze_warnings(&mut b, *maintenance_ends_at, leads);
        }
        Event::MaintenanceExtended { ends_at, .. } => freeze_warnings(&mut b, *ends_at, leads),
        Event::StoreFrozen { maintenance_ends_at } => {
            b.fact(Kind::StoreFrozen, json!({ "maintenanceEndedAt": time(*maintenance_ends_at) }));
        }
        Event::SubscriptionActivated { plan_id, subscription_id, from_plan_id, .. } => {
            let data = json!({
                "status": "active",
                "subscriptionId": subscription_id,
                "planId": plan_id,
                "fromPlanId": from_plan_id,
            });
            b.fact(Kind::SubscriptionChanged, data);
        }
        Event::SubscriptionPastDue { subscription_id } => {
            b.fact(
                Kind::SubscriptionChanged,
                json!({ "status": "past_due", "subscriptionId": subscription_id, "planId": null, "fromPlanId": null }),
            );
        }
        Event::SubscriptionRecovered { subscription_id } => {
            let data =
                json!({ "status": "active", "subscriptionId": subscription_id, "planId": null, "fromPlanId": null });
            b.fact(Kind::SubscriptionChanged, data);
        }
        Event::SubscriptionCanceled { subscription_id } => {
            b.fact(
                Kind::SubscriptionChanged,
                json!({ "status": "canceled", "subscriptionId": subscription_id, "planId": null, "fromPlanId": null }),
            );
        }
        Event::PlanTransitioned { from_plan_id, to_plan_id, reason, subscription_id, .. } => {
            let data = json!({
                "fromPlanId": from_plan_id,
                "toPlanId": to_plan_id,
                "reason": reason,
                "subscriptionId": subscription_id,
            });
            b.fact(Kind::PlanTransitioned, data);
        }
        Event::QuotaConsumed {
            action, amount, period, period_start, period_end, used_after, limit, grants, ..
        } => {
            if let Some(plan_limit) = *limit {
                // The allowance counts the grants that were live: the plan's limit and what they
                // grant; the usage, what was used of both.
                let granted = grants.map_or(0, |g| g.amount);
                let limit = plan_limit + granted;
                let used_after = &(used_after + grants.map_or(0, |g| g.used));
                let used_before = used_after.saturating_sub(amount.get());
                for &percent in &leads.quota_threshold_percents {
                    // The usage that reaches `percent` of the limit, rounded up: 80 % of 10 is 8.
                    let threshold = (u128::from(limit) * u128::from(percent)).div_ceil(100);
                    if limit == 0 || u128::from(used_before) >= threshold || u128::from(*used_after) < threshold {
                        continue;
                    }
                    let window = period_start.map_or_else(|| "lifetime".to_owned(), time);
                    let data = json!({
                        "action": action,
                        "percent": percent,
                        "used": used_after,
                        "limit": plan_limit,
                        "granted": granted,
                        "period": period.as_str(),
                        "windowStart": period_start.map(time),
                        "windowEnd": period_end.map(time),
                    });
                    // Once per window and threshold, however often refunds take usage back below it.
                    let about = format!("{action}\n{window}\n{percent}");
                    b.push(Kind::QuotaThreshold, &about, source.recorded_at, None, data, None);
                }
            }
        }
        Event::GrantAdded { grant_id, action, amount, expires_at: Some(expires_at), .. } => {
            let data = json!({ "grantId": grant_id, "action": action, "amount": amount.get(), "expiresAt": time(*expires_at) });
            b.warning(Kind::GrantExpiringSoon, *expires_at, leads.grant_expiring_days, data);
        }
        // A scheduled change is announced when it applies (`plan.transitioned`); scheduling,
        // canceling and a refusal when due are in the raw feed (`ledger.event`).
        Event::QuotaRefunded { .. }
        | Event::PlanTransitionScheduled { .. }
        | Event::ScheduledTransitionCanceled { .. }
        | Event::ScheduledTransitionFailed { .. }
        | Event::GrantAdded { .. }
        | Event::GrantVoided { .. } => {}
    }
    let data = json!({ "eventType": event.event_type(), "event": event.data() });
    let about = source.event_id.to_string();
    b.push(Kind::LedgerEvent, &about, source.recorded_at, None, data, Some(event.event_type()));
    b.notices
}

fn grace_warning(b: &mut Builder<'_>, grace_ends_at: DateTime<Utc>, leads: &Notifications) {
    let data = json!({ "graceEndsAt": time(grace_ends_at) });
    b.warning(Kind::GraceEndingSoon, grace_ends_at, leads.grace_ending_days, data);
}

fn freeze_warnings(b: &mut Builder<'_>, freezes_at: DateTime<Utc>, leads: &Notifications) {
    for &lead in &leads.freeze_warning_days {
        b.warning(Kind::StoreFreezeWarning, freezes_at, lead, json!({ "freezesAt": time(freezes_at) }));
    }
}

/// Whether a notice is still true of the store: a warning only while the store still faces
/// the deadline it warns of (an extended trial has a later one, a store that paid has none);
/// facts always.
pub fn still_applies(kind: Kind, deadline: Option<DateTime<Utc>>, state: &TenantState) -> bool {
    let Some(deadline) = deadline else {
        return true;
    };
    if kind == Kind::GrantExpiringSoon {
        // A grant expiring then with something left: not voided, not used up.
        return state
            .grants
            .values()
            .any(|g| g.expires_at == Some(deadline) && g.remaining(deadline - TimeDelta::microseconds(1)) > 0);
    }
    match (kind, &state.phase) {
        (Kind::TrialEndingSoon, Phase::Trialing { ends_at }) => *ends_at == deadline,
        (Kind::GraceEndingSoon, Phase::Grace { grace_ends_at }) => *grace_ends_at == deadline,
        (Kind::StoreFreezeWarning, Phase::Maintenance { maintenance_ends_at }) => *maintenance_ends_at == deadline,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use planledger_domain::catalog::Period;
    use planledger_domain::{ActionName, Amount, PlanId};

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, day, hour, 0, 0).unwrap()
    }

    fn source(recorded_at: DateTime<Utc>) -> Source<'static> {
        Source {
            store: StoreId::new(uuid::Uuid::from_u128(7)),
            event_id: uuid::Uuid::from_u128(recorded_at.timestamp() as u128),
            version: 3,
            correlation_id: "corr-1",
            recorded_at,
        }
    }

    fn kinds(notices: &[Notice]) -> Vec<(Kind, DateTime<Utc>)> {
        notices.iter().filter(|n| n.kind != Kind::LedgerEvent).map(|n| (n.kind, n.due_at)).collect()
    }

    fn trial(ends_at: DateTime<Utc>) -> Event {
        Event::TrialStarted { plan_id: PlanId::parse("free_trial").unwrap(), started_at: at(1, 0), ends_at }
    }

    #[test]
    fn a_trial_is_warned_of_ahead_or_at_once_if_less_remains() {
        let leads = Notifications::default();
        let notices = notices_of(source(at(1, 0)), &trial(at(15, 0)), &leads);
        assert_eq!(kinds(&notices), vec![(Kind::TrialEndingSoon, at(12, 0))]);
        let short = notices_of(source(at(1, 0)), &trial(at(2, 0)), &leads);
        assert_eq!(kinds(&short), vec![(Kind::TrialEndingSoon, at(1, 0))], "less than the lead remains");
        let body: Value = serde_json::from_str(&notices[0].body).unwrap();
        assert_eq!(body["type"], "trial.ending_soon");
        assert_eq!(body["data"]["trialEndsAt"], "2026-03-15T00:00:00.000000Z");
        assert_eq!(body["data"]["daysBefore"], 3);
        assert_eq!(body["data"]["source"]["correlationId"], "corr-1");
    }

    #[test]
    fn the_same_fact_makes_the_same_id_and_another_deadline_another() {
        let leads = Notifications::default();
        let first = notices_of(source(at(1, 0)), &trial(at(15, 0)), &leads);
        let again = notices_of(source(at(1, 0)), &trial(at(15, 0)), &leads);
        assert_eq!(first, again);
        let extended = Event::TrialExtended {
            days: planledger_domain::Days::parse(2).unwrap(),
            reason: planledger_domain::Reason::parse("support").unwrap(),
            previous_ends_at: at(15, 0),
            ends_at: at(17, 0),
        };
        let later = notices_of(source(at(5, 0)), &extended, &leads);
        assert_eq!(kinds(&later), vec![(Kind::TrialEndingSoon, at(14, 0))]);
        assert_ne!(later[0].id, first[0].id);
        assert!(first.iter().all(|n| n.id.len() == 36 && n.id.starts_with("msg_")));
    }

    #[test]
    fn maintenance_warns_at_each_lead_and_facts_come_at_once() {
        let leads = Notifications::default();
        let downgraded = Event::DowngradedToMaintenance {
            from_plan_id: Some(PlanId::parse("free_trial").unwrap()),
            plan_id: PlanId::parse("google_only").unwrap(),
            grace_ends_at: at(2, 0),
            maintenance_ends_at: at(30, 0),
        };
        let notices = notices_of(source(at(2, 0)), &downgraded, &leads);
        assert_eq!(
            kinds(&notices),
            vec![
                (Kind::StoreDowngradedToMaintenance, at(2, 0)),
                (Kind::StoreFreezeWarning, at(23, 0)),
                (Kind::StoreFreezeWarning, at(29, 0)),
            ]
        );
        let raw = notices.last().unwrap();
        assert_eq!((raw.kind, raw.event_type), (Kind::LedgerEvent, Some("DowngradedToMaintenance")));
    }

    fn consumed(amount: u64, used_after: u64, limit: Option<u64>) -> Event {
        Event::QuotaConsumed {
            consumption_id: uuid::Uuid::from_u128(u128::from(used_after)),
            action: ActionName::parse("create_article").unwrap(),
            amount: Amount::parse(amount as i64).unwrap(),
            period: Period::Month,
            period_start: Some(at(1, 0)),
            period_end: Some(at(31, 0)),
            used_after,
            limit,
            at: at(3, 0),
            from_grants: vec![],
            grants: None,
        }
    }

    #[test]
    fn a_threshold_is_reported_when_usage_crosses_it_once_per_window() {
        let leads = Notifications::default();
        let percents = |e: &Event| -> Vec<u64> {
            notices_of(source(at(3, 0)), e, &leads)
                .iter()
                .filter(|n| n.kind == Kind::QuotaThreshold)
                .map(|n| serde_json::from_str::<Value>(&n.body).unwrap()["data"]["percent"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(percents(&consumed(1, 7, Some(10))), Vec::<u64>::new());
        assert_eq!(percents(&consumed(1, 8, Some(10))), vec![80]);
        assert_eq!(percents(&consumed(1, 9, Some(10))), Vec::<u64>::new(), "already past 80 %");
        assert_eq!(percents(&consumed(5, 10, Some(10))), vec![80, 100], "one consumption crosses both");
        assert_eq!(percents(&consumed(1, 5, None)), Vec::<u64>::new(), "unmetered");
        let once = notices_of(source(at(3, 0)), &consumed(1, 8, Some(10)), &leads);
        let after_a_refund = notices_of(source(at(4, 0)), &consumed(1, 8, Some(10)), &leads);
        let id = |n: &[Notice]| n.iter().find(|n| n.kind == Kind::QuotaThreshold).unwrap().id.clone();
        assert_eq!(id(&once), id(&after_a_refund), "crossing again in the same window is the same notice");
    }

    /// With grants, the thresholds are of the allowance: the plan's 10 and the grants' 10.
    #[test]
    fn a_threshold_counts_the_grants() {
        let leads = Notifications::default();
        let with_grants = |amount: u64, plan_used: u64, grant_used: u64| {
            let mut event = consumed(amount, plan_used, Some(10));
            if let Event::QuotaConsumed { grants, from_grants, .. } = &mut event {
                *grants = Some(planledger_domain::GrantTotals { amount: 10, used: grant_used });
                if grant_used > 0 {
                    from_grants
                        .push(planledger_domain::GrantDraw { grant_id: uuid::Uuid::from_u128(1), amount: grant_used });
                }
            }
            notices_of(source(at(3, 0)), &event, &leads)
                .iter()
                .filter(|n| n.kind == Kind::QuotaThreshold)
                .map(|n| serde_json::from_str::<Value>(&n.body).unwrap()["data"].clone())
                .collect::<Vec<_>>()
        };
        // 8 of the plan's 10 is 40 % of 20: nothing.
        assert!(with_grants(1, 8, 0).is_empty());
        // The plan's 10 used is 50 %: still nothing, though the plan's own limit is reached.
        assert!(with_grants(2, 10, 0).is_empty());
        // 10 and 6 of the grants is 80 % of 20.
        let data = with_grants(1, 10, 6);
        assert_eq!((data.len(), data[0]["percent"].as_u64()), (1, Some(80)), "{data:?}");
        assert_eq!(
            (data[0]["used"].as_u64(), data[0]["limit"].as_u64(), data[0]["granted"].as_u64()),
            (Some(16), Some(10), Some(10))
        );
    }

    #[test]
    fn a_warning_applies_only_while_the_store_faces_its_deadline() {
        let mut state =
            TenantState { phase: Phase::Maintenance { maintenance_ends_at: at(30, 0) }, ..Default::default() };
        assert!(still_applies(Kind::StoreFreezeWarning, Some(at(30, 0)), &state));
        assert!(!still_applies(Kind::StoreFreezeWarning, Some(at(20, 0)), &state), "extended since");
        state.phase = Phase::Active { subscription_id: None };
        assert!(!still_applies(Kind::StoreFreezeWarning, Some(at(30, 0)), &state), "paid");
        assert!(still_applies(Kind::StoreFrozen, None, &state), "facts always apply");
    }
}
