//! The log as a feed to follow: `GET /v1/events?after=...&types=...&wait=...`.
//!
//! It reads the same gap-safe order the projectors read (on PostgreSQL, by writing transaction
//! and position, only below the oldest transaction still running), so a transaction that commits
//! late is never skipped, and a cursor names a place in the log, not a node: it is stable across
//! nodes and restarts. A cursor moves past events the `types` filter leaves out, so a reader of
//! rare types does not scan the same events again.

use std::time::{Duration, Instant};

use planledger_store::{Checkpoint, EventLog, RecordedEvent, StoreError};

/// Events read per step of a scan.
const SCAN_PAGE: i64 = 1000;
/// At most this many events are scanned for one answer; the cursor then says where to go on.
const SCAN_LIMIT: usize = 10_000;
/// How often a long poll looks again.
const POLL: Duration = Duration::from_millis(200);
/// The longest wait a reader may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// A cursor in text: `{transaction}-{position}` (`0-0` before the first event).
pub fn cursor_text(at: Checkpoint) -> String {
    format!("{}-{}", at.transaction_id, at.position)
}

pub fn parse_cursor(text: &str) -> Option<Checkpoint> {
    let (transaction, position) = text.split_once('-')?;
    // 1 to 18 digits each: what the contract's pattern says, and always an `i64`.
    let number = |s: &str| {
        (1..=18).contains(&s.len()).then_some(s).filter(|s| s.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()
    };
    Some(Checkpoint { transaction_id: number(transaction)?, position: number(position)? })
}

/// One answer of the feed.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub events: Vec<RecordedEvent>,
    /// Where the next read starts: after the last event returned, or after the last one scanned.
    pub next: Checkpoint,
}

/// Up to `limit` events after `after` (of `types`, if given), waiting up to `wait` for the first.
pub async fn read<L: EventLog>(
    log: &L,
    after: Checkpoint,
    types: Option<&[String]>,
    limit: usize,
    wait: Duration,
) -> Result<FeedPage, StoreError> {
    let deadline = Instant::now() + wait.min(MAX_WAIT);
    let wanted = |event: &RecordedEvent| types.is_none_or(|types| types.contains(&event.event_type));
    let mut next = after;
    loop {
        let mut events = Vec::new();
        let mut scanned = 0;
        while scanned < SCAN_LIMIT {
            let page = log.read_all(next, SCAN_PAGE).await?;
            let full = page.len() as i64 == SCAN_PAGE;
            for event in page {
                scanned += 1;
                next = event.checkpoint;
                if wanted(&event) {
                    events.push(event);
                    if events.len() == limit {
                        return Ok(FeedPage { events, next });
                    }
                }
            }
            if !full {
                break;
            }
        }
        let now = Instant::now();
        if !events.is_empty() || scanned >= SCAN_LIMIT || now >= deadline {
            return Ok(FeedPage { events, next });
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_nothing_else_does() {
        let at = Checkpoint { transaction_id: 812, position: 40 };
        assert_eq!(parse_cursor(&cursor_text(at)), Some(at));
        assert_eq!(parse_cursor("0-0"), Some(Checkpoint::ORIGIN));
        for bad in ["", "1", "1-", "-1-2", "a-b", "1-2-3", "+1-2", "1000000000000000000-1", " 1-2"] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
