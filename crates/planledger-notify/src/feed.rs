//! The log as a feed to follow: `GET /v1/events?after=...&types=...&wait=...`.
//!
//! It reads the same gap-safe order the projectors read (on PostgreSQL, by writing transaction
//! and position, only below the oldest transaction still running), so a transaction that commits
//! late is never skipped, and a cursor names a place in the log, not a node: it is stable across
//! nodes and restarts. A cursor moves past events the `types` filter leaves out, so a reader of
//! rare types does not scan the same events again.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use planledger_store::{AnyEventLog, Checkpoint, EventLog, RecordedEvent, StoreError};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

/// Events read per step of a scan.
const SCAN_PAGE: i64 = 1000;
/// At most this many events are scanned for one answer; the cursor then says where to go on.
const SCAN_LIMIT: usize = 10_000;
/// How often the watcher looks at the head of the log while anyone waits.
const POLL: Duration = Duration::from_millis(200);
/// The longest wait a reader may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Long polls a process holds at once unless configured otherwise (`PLANLEDGER_MAX_LONG_POLLS`).
pub const DEFAULT_MAX_WAITING: usize = 1000;

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

/// Why the feed did not answer with a page.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The process already holds as many long polls as it may.
    #[error("too many long polls are waiting")]
    TooManyWaiting,
    /// The cursor names an event the log does not hold: the log moved back under the follower
    /// (a failover to a standby that lacked the follower's last events), or the cursor is from
    /// another log. Reading on from it would skip events; `head` is where the log ends now.
    #[error("the log holds no event at this cursor")]
    CursorNotInLog { head: Checkpoint },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Up to `limit` events after `after` (of `types`, if given), without waiting.
pub async fn read(
    log: &AnyEventLog,
    after: Checkpoint,
    types: Option<&[String]>,
    limit: usize,
) -> Result<FeedPage, FeedError> {
    check_cursor(log, after).await?;
    Ok(scan(log, after, types, limit).await?.0)
}

/// Refuses a cursor the log does not hold (see [`FeedError::CursorNotInLog`]): one index probe.
async fn check_cursor(log: &AnyEventLog, after: Checkpoint) -> Result<(), FeedError> {
    if log.holds(after).await? {
        return Ok(());
    }
    let head = log.settled_head().await?;
    tracing::warn!(cursor = %cursor_text(after), head = %cursor_text(head), "a follower's cursor names an event the log does not hold: the log moved back (a failover?)");
    Err(FeedError::CursorNotInLog { head })
}

/// A page, and whether the scan stopped at its bound (the caller should not wait then).
async fn scan<L: EventLog>(
    log: &L,
    after: Checkpoint,
    types: Option<&[String]>,
    limit: usize,
) -> Result<(FeedPage, bool), StoreError> {
    let wanted = |event: &RecordedEvent| types.is_none_or(|types| types.contains(&event.event_type));
    let mut next = after;
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
                    return Ok((FeedPage { events, next }, true));
                }
            }
        }
        if !full {
            break;
        }
    }
    Ok((FeedPage { events, next }, scanned >= SCAN_LIMIT))
}

/// The long polls of one process, and the one watcher of the log's head they share.
///
/// A waiting poll costs the database nothing: one task per process reads the head of the
/// gap-safe log (one index probe) every 200 ms while anyone waits, and wakes the waiters when it
/// moves; each then reads once, from its own cursor. So 2,000 waiting polls cost what one does.
/// At most `max_waiting` polls wait at once (over that, [`FeedError::TooManyWaiting`]); when the
/// process drains for shutdown, every waiting poll answers at once with what it has.
#[derive(Debug, Clone)]
pub struct Feed {
    inner: Arc<FeedInner>,
}

#[derive(Debug)]
struct FeedInner {
    log: AnyEventLog,
    /// The head of the log as the watcher last read it.
    head: watch::Sender<Checkpoint>,
    watcher: OnceLock<()>,
    waiting: Semaphore,
    draining: watch::Receiver<bool>,
}

impl Feed {
    pub fn new(log: AnyEventLog, max_waiting: usize, draining: watch::Receiver<bool>) -> Self {
        let (head, _) = watch::channel(Checkpoint::ORIGIN);
        Self {
            inner: Arc::new(FeedInner {
                log,
                head,
                watcher: OnceLock::new(),
                waiting: Semaphore::new(max_waiting),
                draining,
            }),
        }
    }

    /// How many polls are waiting now.
    pub fn waiting(&self) -> usize {
        self.inner.head.receiver_count()
    }

    /// Up to `limit` events after `after` (of `types`, if given), waiting up to `wait` for the
    /// first.
    pub async fn read(
        &self,
        after: Checkpoint,
        types: Option<&[String]>,
        limit: usize,
        wait: Duration,
    ) -> Result<FeedPage, FeedError> {
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        let log = &self.inner.log;
        check_cursor(log, after).await?;
        let (mut page, bounded) = scan(log, after, types, limit).await?;
        if !page.events.is_empty() || bounded || wait.is_zero() || *self.inner.draining.borrow() {
            return Ok(page);
        }
        let Ok(_waiting) = self.inner.waiting.try_acquire() else {
            return Err(FeedError::TooManyWaiting);
        };
        let mut head = self.inner.head.subscribe();
        self.start_watcher();
        let mut draining = self.inner.draining.clone();
        loop {
            if *head.borrow_and_update() > page.next {
                let (next_page, bounded) = scan(log, page.next, types, limit).await?;
                page = next_page;
                if !page.events.is_empty() || bounded {
                    return Ok(page);
                }
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return Ok(page) },
                () = tokio::time::sleep_until(deadline) => return Ok(page),
                _ = draining.wait_for(|draining| *draining) => return Ok(page),
            }
        }
    }

    /// Starts the one watcher of the head, the first time anyone waits. It reads only while
    /// someone waits, and ends with the last handle of the feed.
    fn start_watcher(&self) {
        self.inner.watcher.get_or_init(|| {
            let inner: Weak<FeedInner> = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(POLL).await;
                    let Some(inner) = inner.upgrade() else { return };
                    if inner.head.receiver_count() == 0 {
                        continue;
                    }
                    match inner.log.settled_head().await {
                        Ok(head) => {
                            inner.head.send_if_modified(|known| {
                                let moved = *known != head;
                                *known = head;
                                moved
                            });
                        }
                        Err(error) => tracing::debug!(%error, "the feed's watcher could not read the head of the log"),
                    }
                }
            });
        });
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
