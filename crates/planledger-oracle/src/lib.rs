//! An independent check of one store's stream, written against the events' stored form (type
//! and JSON data, contract §7) and nothing of the rules' code.
//!
//! The command path keeps usage per local day and decides quotas from folded state; this oracle
//! recomputes everything by brute force from the list of events, the way a person auditing the
//! log would, so that a bug in the fold or in `decide` cannot hide itself:
//!
//! - every `QuotaConsumed` says `usedAfter` = what the consumptions still unrefunded, decided
//!   inside its window (`[periodStart, periodEnd)`, or ever for a lifetime limit), add up to,
//!   and that is at most its `limit`;
//! - windows of one action never partially overlap, except a calendar month beside a
//!   subscription-anchored month (a plan change must never open a fresh window);
//! - a refund names a consumption of this stream, with its action and amount, and no
//!   consumption is refunded twice;
//! - each time-driven transition (by its deadline) is appended at most once;
//! - grants: what consumptions take from a grant (`fromGrants`) never passes its amount (net of
//!   refunds), is taken only once the plan's allowance in the window is used up, only while the
//!   grant is live (added, not voided, not expired at the time of the consumption), and from
//!   the grant that expires first before the others; the totals a consumption records of the
//!   live grants are the books'; a refund gives back what it took;
//! - a scheduled plan change is applied (or refused) at most once, at its time, only while it
//!   is pending (not canceled, not replaced).
//!
//! The property tests of the domain and the simulator of the command path both call it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use serde_json::Value;

/// One event as stored: what the oracle reads.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub version: i64,
    pub event_type: String,
    pub data: Value,
    pub recorded_at: DateTime<Utc>,
}

/// What is wrong with a stream, for a person: the event's version and the broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub version: i64,
    pub rule: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}: {}: {}", self.version, self.rule, self.detail)
    }
}

#[derive(Debug, Clone)]
struct Consumed {
    action: String,
    /// The plan's part: the amount less what grants gave.
    amount: u64,
    at: DateTime<Utc>,
    refunded: bool,
    from_grants: Vec<(String, u64)>,
}

#[derive(Debug, Clone)]
struct GrantSeen {
    action: String,
    amount: u64,
    used: u64,
    added_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    voided_at: Option<DateTime<Utc>>,
}

impl GrantSeen {
    fn live_at(&self, at: DateTime<Utc>) -> bool {
        self.added_at <= at && self.expires_at.is_none_or(|e| at < e) && self.voided_at.is_none_or(|v| at < v)
    }
}

fn draws(data: &Value) -> Vec<(String, u64)> {
    data.get("fromGrants")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|d| (text(d, "grantId").to_owned(), number(d, "amount").unwrap_or(0)))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeenWindow {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    version: i64,
}

fn time(data: &Value, field: &str) -> Option<DateTime<Utc>> {
    data.get(field)?.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

fn text<'a>(data: &'a Value, field: &str) -> &'a str {
    data.get(field).and_then(Value::as_str).unwrap_or("")
}

fn number(data: &Value, field: &str) -> Option<u64> {
    data.get(field).and_then(Value::as_u64)
}

/// Whether `[start, end)` is a calendar month in `tz`.
fn is_calendar_month(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> bool {
    let (s, e) = (start.with_timezone(&tz), end.with_timezone(&tz));
    s.day() == 1 && e.day() == 1 && (e.year() * 12 + e.month() as i32) - (s.year() * 12 + s.month() as i32) == 1
}

/// Checks one store's stream, in version order; returns every violation found.
pub fn check_stream(events: &[StoredEvent]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut fail =
        |version: i64, rule: &'static str, detail: String| violations.push(Violation { version, rule, detail });
    let mut tz: Tz = Tz::UTC;
    let mut consumed: Vec<Consumed> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut windows: BTreeMap<(String, String), Vec<SeenWindow>> = BTreeMap::new();
    let mut deadlines: HashSet<(String, String)> = HashSet::new();
    let mut grants: HashMap<String, GrantSeen> = HashMap::new();
    // The pending scheduled change: its id and time.
    let mut pending: Option<(String, Option<DateTime<Utc>>)> = None;

    for event in events {
        let data = &event.data;
        let v = event.version;
        match event.event_type.as_str() {
            "StoreRegistered" => tz = text(data, "timeZone").parse().unwrap_or(Tz::UTC),
            "QuotaConsumed" => {
                let action = text(data, "action").to_owned();
                let amount = number(data, "amount").unwrap_or(0);
                let at = time(data, "at").unwrap_or(event.recorded_at);
                let id = text(data, "consumptionId").to_owned();
                let period = text(data, "period").to_owned();
                let (start, end) = (time(data, "periodStart"), time(data, "periodEnd"));
                if by_id.insert(id.clone(), consumed.len()).is_some() {
                    fail(v, "consumption ids are unique", id);
                }
                let from_grants = draws(data);
                let granted: u64 = from_grants.iter().map(|(_, n)| n).sum();
                let own = amount.saturating_sub(granted);
                // The plan's allowance used up: the window at its limit, or past it (usage carried
                // over from a plan with a higher limit).
                if granted > 0 && number(data, "usedAfter") < number(data, "limit") {
                    fail(v, "grants are used only once the plan's allowance is used up", format!("{action}: {data}"));
                }
                for (id, n) in &from_grants {
                    match grants.get_mut(id) {
                        None => fail(v, "a consumption takes only from a grant of its store", id.clone()),
                        Some(g) => {
                            if g.action != action || !g.live_at(at) {
                                fail(v, "a grant gives only to its action while it is live", format!("{id} at {at}"));
                            }
                            g.used += n;
                            if g.used > g.amount {
                                fail(
                                    v,
                                    "a grant gives no more than its amount",
                                    format!("{id}: {} > {}", g.used, g.amount),
                                );
                            }
                        }
                    }
                }
                // The live grants' totals it records are the books' (only for a limited action).
                if number(data, "limit").is_some() {
                    let live: Vec<&GrantSeen> =
                        grants.values().filter(|g| g.action == action && g.live_at(at)).collect();
                    let books = (!live.is_empty()).then(|| {
                        (live.iter().map(|g| g.amount).sum::<u64>(), live.iter().map(|g| g.used).sum::<u64>())
                    });
                    let said =
                        data.get("grants").map(|g| (number(g, "amount").unwrap_or(0), number(g, "used").unwrap_or(0)));
                    if said != books {
                        fail(
                            v,
                            "a consumption records the live grants' totals",
                            format!("{action}: says {said:?}, the books {books:?}"),
                        );
                    }
                }
                // Earliest expiry first: a grant that comes before the last one drawn is used up.
                if let Some((last, _)) = from_grants.last() {
                    let order =
                        |g: &GrantSeen, id: &String| (g.expires_at.is_none(), g.expires_at, g.added_at, id.clone());
                    if let Some(last_key) = grants.get(last).map(|g| order(g, last)) {
                        for (id, g) in &grants {
                            if g.action == action && g.live_at(at) && order(g, id) < last_key && g.used < g.amount {
                                fail(
                                    v,
                                    "grants are used earliest expiry first",
                                    format!("{id} has {} left", g.amount - g.used),
                                );
                            }
                        }
                    }
                }
                consumed.push(Consumed { action: action.clone(), amount: own, at, refunded: false, from_grants });
                let inside = |c: &&Consumed| match (start, end) {
                    (Some(s), Some(e)) => s <= c.at && c.at < e,
                    _ => true,
                };
                let used: u64 = consumed
                    .iter()
                    .filter(|c| c.action == action && !c.refunded)
                    .filter(inside)
                    .map(|c| c.amount)
                    .sum();
                if number(data, "usedAfter") != Some(used) {
                    fail(
                        v,
                        "usedAfter is the recount of its window",
                        format!("{action}: says {:?}, the log holds {used}", number(data, "usedAfter")),
                    );
                }
                // A consumption's own part never takes its window past the limit (one taken
                // wholly from grants adds nothing to it, however full it is).
                if let Some(limit) = number(data, "limit").filter(|_| own > 0) {
                    if used > limit {
                        fail(v, "allowed amounts never exceed the limit", format!("{action}: {used} > {limit}"));
                    }
                }
                if let (Some(s), Some(e)) = (start, end) {
                    if !(s <= at && at < e) {
                        fail(v, "a consumption lies in its own window", format!("{at} not in [{s}, {e})"));
                    }
                    let seen = windows.entry((action.clone(), period.clone())).or_default();
                    for w in seen.iter() {
                        let partial = w.start < e && s < w.end && (w.start != s || w.end != e);
                        let calendar_beside_anchored =
                            period == "month" && is_calendar_month(s, e, tz) != is_calendar_month(w.start, w.end, tz);
                        if partial && !calendar_beside_anchored {
                            fail(
                                v,
                                "windows never partially overlap (no fresh window mid-period)",
                                format!(
                                    "{action} {period}: [{s}, {e}) overlaps [{}, {}) of v{}",
                                    w.start, w.end, w.version
                                ),
                            );
                        }
                    }
                    if !seen.iter().any(|w| w.start == s && w.end == e) {
                        seen.push(SeenWindow { start: s, end: e, version: v });
                    }
                }
            }
            "QuotaRefunded" => {
                let id = text(data, "consumptionId").to_owned();
                match by_id.get(&id).map(|i| &mut consumed[*i]) {
                    None => fail(v, "a refund names a consumption of its store", id),
                    Some(c) if c.refunded => fail(v, "a consumption is refunded at most once", id),
                    Some(c) => {
                        let given_back = draws(data);
                        let own =
                            number(data, "amount").map(|a| a.saturating_sub(given_back.iter().map(|(_, n)| n).sum()));
                        if c.action != text(data, "action") || Some(c.amount) != own || c.from_grants != given_back {
                            fail(v, "a refund gives back what was consumed, where it was taken from", id);
                        }
                        for (grant, n) in &given_back {
                            if let Some(g) = grants.get_mut(grant) {
                                g.used = g.used.saturating_sub(*n);
                            }
                        }
                        c.refunded = true;
                    }
                }
            }
            "GrantAdded" => {
                let id = text(data, "grantId").to_owned();
                let grant = GrantSeen {
                    action: text(data, "action").to_owned(),
                    amount: number(data, "amount").unwrap_or(0),
                    used: 0,
                    added_at: time(data, "at").unwrap_or(event.recorded_at),
                    expires_at: time(data, "expiresAt"),
                    voided_at: None,
                };
                if grants.insert(id.clone(), grant).is_some() {
                    fail(v, "a grant is added once", id);
                }
            }
            "GrantVoided" => {
                let id = text(data, "grantId").to_owned();
                match grants.get_mut(&id) {
                    Some(g) if g.voided_at.is_none() => g.voided_at = time(data, "at"),
                    _ => fail(v, "only a grant that is not voided is voided", id),
                }
            }
            "PlanTransitionScheduled" => {
                let id = text(data, "scheduleId").to_owned();
                let replaces = data.get("replaces").and_then(Value::as_str).map(str::to_owned);
                if replaces != pending.as_ref().map(|(p, _)| p.clone()) {
                    fail(v, "a new scheduled change names the one it replaces", format!("{id} replaces {replaces:?}"));
                }
                pending = Some((id, time(data, "at")));
            }
            kind @ ("ScheduledTransitionCanceled" | "ScheduledTransitionFailed" | "PlanTransitioned") => {
                let Some(id) = data.get("scheduleId").and_then(Value::as_str) else { continue };
                match &pending {
                    Some((p, at)) if p == id => {
                        if kind != "ScheduledTransitionCanceled" && time(data, "at") != *at {
                            fail(v, "a scheduled change is applied at its time", format!("{id}: {data}"));
                        }
                        pending = None;
                    }
                    _ => fail(v, "a scheduled change is settled once, while it is pending", format!("{kind} {id}")),
                }
            }
            kind @ ("TrialExpired" | "DowngradedToMaintenance" | "StoreFrozen") => {
                let deadline = match kind {
                    "TrialExpired" => text(data, "trialEndsAt"),
                    "DowngradedToMaintenance" => text(data, "graceEndsAt"),
                    _ => text(data, "maintenanceEndsAt"),
                };
                if !deadlines.insert((kind.to_owned(), deadline.to_owned())) {
                    fail(v, "a deadline's transition is appended once", format!("{kind} at {deadline}"));
                }
            }
            _ => {}
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn consumed(version: i64, id: &str, at_: &str, window: (&str, &str), used_after: u64, limit: u64) -> StoredEvent {
        StoredEvent {
            version,
            event_type: "QuotaConsumed".into(),
            data: json!({"consumptionId": id, "action": "a", "amount": 1, "period": "month",
                         "periodStart": window.0, "periodEnd": window.1, "usedAfter": used_after,
                         "limit": limit, "at": at_}),
            recorded_at: at(at_),
        }
    }

    fn refund(version: i64, id: &str) -> StoredEvent {
        StoredEvent {
            version,
            event_type: "QuotaRefunded".into(),
            data: json!({"consumptionId": id, "action": "a", "amount": 1}),
            recorded_at: at("2026-03-05T00:00:00Z"),
        }
    }

    const MARCH: (&str, &str) = ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z");

    #[test]
    fn a_sound_stream_has_no_violation() {
        let events = vec![
            consumed(1, "c1", "2026-03-02T00:00:00Z", MARCH, 1, 2),
            consumed(2, "c2", "2026-03-03T00:00:00Z", MARCH, 2, 2),
            refund(3, "c1"),
            consumed(4, "c3", "2026-03-04T00:00:00Z", MARCH, 2, 2),
        ];
        assert_eq!(check_stream(&events), vec![]);
    }

    #[test]
    fn a_double_refund_and_what_it_lets_through_are_found() {
        let events = vec![
            consumed(1, "c1", "2026-03-02T00:00:00Z", MARCH, 1, 1),
            refund(2, "c1"),
            refund(3, "c1"),
            consumed(4, "c2", "2026-03-04T00:00:00Z", MARCH, 1, 1),
        ];
        let rules: Vec<&str> = check_stream(&events).iter().map(|v| v.rule).collect();
        assert_eq!(rules, ["a consumption is refunded at most once"]);
    }

    #[test]
    fn an_overshoot_and_a_wrong_count_are_found() {
        let events = vec![
            consumed(1, "c1", "2026-03-02T00:00:00Z", MARCH, 1, 1),
            consumed(2, "c2", "2026-03-03T00:00:00Z", MARCH, 2, 1),
            consumed(3, "c3", "2026-03-03T00:00:00Z", MARCH, 1, 5),
        ];
        let rules: Vec<&str> = check_stream(&events).iter().map(|v| v.rule).collect();
        assert_eq!(rules, ["allowed amounts never exceed the limit", "usedAfter is the recount of its window"]);
    }

    #[test]
    fn a_fresh_anchored_window_opened_mid_period_is_found() {
        let events = vec![
            consumed(1, "c1", "2026-03-20T00:00:00Z", ("2026-03-15T00:00:00Z", "2026-04-15T00:00:00Z"), 1, 1),
            consumed(2, "c2", "2026-03-21T00:00:00Z", ("2026-03-21T00:00:00Z", "2026-04-21T00:00:00Z"), 1, 1),
        ];
        let rules: Vec<&str> = check_stream(&events).iter().map(|v| v.rule).collect();
        assert_eq!(rules, ["windows never partially overlap (no fresh window mid-period)"]);
    }

    #[test]
    fn a_deadline_appended_twice_is_found() {
        let expired = StoredEvent {
            version: 1,
            event_type: "TrialExpired".into(),
            data: json!({"trialEndsAt": "2026-03-16T10:00:00Z", "graceEndsAt": "2026-03-19T10:00:00Z"}),
            recorded_at: at("2026-03-16T10:00:00Z"),
        };
        let again = StoredEvent { version: 2, ..expired.clone() };
        let rules: Vec<&str> = check_stream(&[expired, again]).iter().map(|v| v.rule).collect();
        assert_eq!(rules, ["a deadline's transition is appended once"]);
    }
}
