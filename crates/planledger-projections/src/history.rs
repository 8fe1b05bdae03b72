//! A store's history folded into its state: the one fold every reader of a stream uses (the
//! command path's cache, the state at a time or version, `replay`, rebuilds), so that they
//! cannot disagree on what a stream means.

use chrono::{DateTime, Utc};
use planledger_domain::{evolve, Event, StoreId, TenantState};
use planledger_store::{AnyEventLog, EventLog, RecordedEvent, StoreError, StreamId};

/// Events read per page.
const PAGE: i64 = 1000;

/// A store's state folded up to `version`, whose last event was recorded at `at`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    pub state: TenantState,
    pub version: i64,
    pub at: Option<DateTime<Utc>>,
    /// The chain hash of the event at `version`, once one was folded in.
    pub head: Option<planledger_store::Hash>,
}

impl Folded {
    /// A state known at `version` (a snapshot, a cache).
    pub fn at_version(state: TenantState, version: i64) -> Self {
        Self { state, version, at: None, head: None }
    }

    /// Folds in the next event of the stream (decoded through its upcasters); returns it.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> Result<Event, StoreError> {
        let event = decode(recorded)?;
        self.fold_in(&event, recorded);
        Ok(event)
    }

    /// As `apply`, taking the event: its data is decoded without a copy (a rebuild's fold).
    pub fn apply_owned(&mut self, mut recorded: RecordedEvent) -> Result<(), StoreError> {
        let data = std::mem::take(&mut recorded.data);
        let event = decode_data(&recorded, data)?;
        self.fold_in(&event, &recorded);
        Ok(())
    }

    fn fold_in(&mut self, event: &Event, recorded: &RecordedEvent) {
        self.state = evolve(std::mem::take(&mut self.state), event);
        self.version = recorded.version;
        self.at = Some(recorded.recorded_at);
        self.head = Some(recorded.hash);
    }
}

/// A stored event as the domain's event, upcast to its current schema.
pub fn decode(recorded: &RecordedEvent) -> Result<Event, StoreError> {
    decode_data(recorded, recorded.data.clone())
}

fn decode_data(recorded: &RecordedEvent, data: serde_json::Value) -> Result<Event, StoreError> {
    Event::from_stored(&recorded.event_type, recorded.schema_version, data, recorded.recorded_at)
        .map_err(|e| StoreError::Corrupt(format!("event {} of {}: {e}", recorded.version, recorded.stream_id)))
}

/// Where a fold stops: after the last event at or before `version` and recorded at or before
/// `time` (each if given); `Until::END` folds the whole stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Until {
    pub version: Option<i64>,
    pub time: Option<DateTime<Utc>>,
}

impl Until {
    pub const END: Until = Until { version: None, time: None };

    fn includes(self, recorded: &RecordedEvent) -> bool {
        self.version.is_none_or(|v| recorded.version <= v) && self.time.is_none_or(|t| recorded.recorded_at <= t)
    }
}

/// Folds `store`'s stream into `from`, from the event after `from.version` up to `until`,
/// calling `visit` with each event and the state after it.
pub async fn fold_stream<E: From<StoreError>>(
    log: &AnyEventLog,
    store: StoreId,
    mut from: Folded,
    until: Until,
    mut visit: impl FnMut(&RecordedEvent, &Event, &Folded) -> Result<(), E>,
) -> Result<Folded, E> {
    let stream = StreamId::parse(store.stream_name())?;
    loop {
        let page = log.read_stream(&stream, from.version + 1, PAGE).await?;
        let full = page.len() as i64 == PAGE;
        for recorded in &page {
            if !until.includes(recorded) {
                return Ok(from);
            }
            let event = from.apply(recorded)?;
            visit(recorded, &event, &from)?;
        }
        if !full {
            return Ok(from);
        }
    }
}
