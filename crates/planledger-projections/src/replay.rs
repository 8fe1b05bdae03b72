//! A store's history replayed event by event, with the status and plan after each, optionally
//! beside what the same facts give under another catalog (a what-if: nothing is written). The
//! one comparison `planledger replay --compare` prints and the console's what-if page shows.

use chrono::{DateTime, Utc};
use planledger_domain::{
    effective_state, quota_position, status, ActionName, Catalog, Catalogs, Event, StoreId, TenantState,
};
use planledger_store::{RecordedEvent, StoreError};

use crate::audit::summary;
use crate::history::{fold_stream, Folded, Until};

/// A store's status and plan at a time, under one catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub internal_status: &'static str,
    pub plan_id: Option<String>,
}

impl StatusLine {
    pub fn of(state: &TenantState, at: DateTime<Utc>, catalog: &Catalog) -> Self {
        let s = status(state, at, catalog);
        StatusLine { internal_status: s.internal_status.as_str(), plan_id: s.plan_id.map(|p| p.to_string()) }
    }
}

impl std::fmt::Display for StatusLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {}", self.internal_status, self.plan_id.as_deref().unwrap_or("-"))
    }
}

/// One event of the history and the store after it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedEvent<'a> {
    pub recorded: &'a RecordedEvent,
    /// The event for people (`audit::summary`).
    pub summary: String,
    /// After the event, as of when it was recorded, under the store's own catalog version.
    pub after: StatusLine,
    /// The same under the compared catalog.
    pub after_compared: Option<StatusLine>,
    /// For a consumption or a refund: its action's window after it, under both catalogs (where
    /// another limit shows first).
    pub quota: Option<UsageLine>,
}

impl ReplayedEvent<'_> {
    /// Whether the compared catalog says something else after this event.
    pub fn differs(&self) -> bool {
        self.after_compared.as_ref().is_some_and(|other| *other != self.after)
            || self.quota.as_ref().is_some_and(UsageLine::differs)
    }

    /// "grace / free_trial, create_article 4/10": the status after the event, and for a
    /// consumption or refund its window.
    pub fn after_text(&self) -> String {
        describe(&self.after, self.quota.as_ref().map(|q| (&q.action, q.current)))
    }

    /// The same under the compared catalog.
    pub fn after_compared_text(&self) -> Option<String> {
        let quota = self.quota.as_ref().and_then(|q| q.compared.map(|u| (&q.action, u)));
        self.after_compared.as_ref().map(|line| describe(line, quota))
    }
}

fn describe(line: &StatusLine, quota: Option<(&ActionName, Usage)>) -> String {
    match quota {
        Some((action, usage)) => format!("{line}, {action} {usage}"),
        None => line.to_string(),
    }
}

/// Used and limit of one action's current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub limit: Option<u64>,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.limit {
            Some(limit) => write!(f, "{}/{limit}", self.used),
            None => write!(f, "{}/unmetered", self.used),
        }
    }
}

/// One action's usage, under both catalogs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLine {
    pub action: ActionName,
    pub current: Usage,
    pub compared: Option<Usage>,
}

impl UsageLine {
    fn at(
        state: &TenantState,
        action: &ActionName,
        at: DateTime<Utc>,
        current: &Catalog,
        compared: Option<&Catalog>,
    ) -> Self {
        let position = |catalog: &Catalog| {
            let q = quota_position(&effective_state(state, at, catalog), action, at, catalog);
            Usage { used: q.used, limit: q.limit }
        };
        UsageLine { action: action.clone(), current: position(current), compared: compared.map(position) }
    }

    pub fn differs(&self) -> bool {
        self.compared.is_some_and(|other| other != self.current)
    }
}

/// Where the replay ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// How many events were replayed (the store's version then).
    pub version: i64,
    /// The time the end is read at: `at`, or now, and never before the last event.
    pub at: DateTime<Utc>,
    pub status: StatusLine,
    pub status_compared: Option<StatusLine>,
    /// Every action with usage, or every action of the catalog when comparing.
    pub usage: Vec<UsageLine>,
}

/// Replays `store`'s events recorded until `at` (all of them if `None`), calling `visit` with
/// each; `now` is when the end is read if `at` is not given. Answers `None` if there was no event.
/// Each point is read under the catalog version the store was on then (`catalogs`), beside
/// `compared` if given.
pub async fn replay<E: From<StoreError>>(
    log: &planledger_store::AnyEventLog,
    store: StoreId,
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    catalogs: &Catalogs,
    compared: Option<&Catalog>,
    mut visit: impl FnMut(ReplayedEvent<'_>) -> Result<(), E>,
) -> Result<Option<Ending>, E> {
    let until = Until { version: None, time: at };
    let folded = fold_stream(log, store, Folded::default(), until, |recorded, event, folded| {
        let when = recorded.recorded_at;
        let action = match event {
            Event::QuotaConsumed { action, .. } | Event::QuotaRefunded { action, .. } => Some(action),
            _ => None,
        };
        let current = &catalogs.shown_for(&folded.state, when).catalog;
        visit(ReplayedEvent {
            recorded,
            summary: summary(event),
            after: StatusLine::of(&folded.state, when, current),
            after_compared: compared.map(|other| StatusLine::of(&folded.state, when, other)),
            quota: action.map(|action| UsageLine::at(&folded.state, action, when, current, compared)),
        })
    })
    .await?;
    let Some(last) = folded.at else { return Ok(None) };
    let state = folded.state;
    let at = at.unwrap_or(now).max(last);
    let current = &catalogs.shown_for(&state, at).catalog;
    let effective = effective_state(&state, at, current);
    let mut actions: Vec<&ActionName> =
        current.actions().map(|(a, _)| a).filter(|a| compared.is_some() || effective.usage.contains_key(*a)).collect();
    actions.sort();
    let usage = actions.into_iter().map(|action| UsageLine::at(&state, action, at, current, compared)).collect();
    Ok(Some(Ending {
        version: folded.version,
        at,
        status: StatusLine::of(&state, at, current),
        status_compared: compared.map(|other| StatusLine::of(&state, at, other)),
        usage,
    }))
}
