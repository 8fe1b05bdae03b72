//! planledger's command path: from a command to events in the log.
//!
//! - [`CommandService`] serves each store through a queue whose worker (`worker.rs`) decides
//!   waiting commands in order; committers (`committer.rs`) write the batches of many stores in
//!   the store's group commit.
//! - [`outcome`]: what a command became (accepted with its facts, refused with a reason), in
//!   types; the edge renders them.
//! - [`Journal`] records every command, accepted or refused, off the hot path.
//! - [`Retention`]: how long stored answers, the ledger's keys and the journal are kept.
//! - [`sessions`]: the admin console's sessions.
//! - [`Clock`]: the one clock decisions read; a settable [`TestClock`] for tests.

mod answers;
pub mod catalogs;
pub mod clock;
mod committer;
pub mod faults;
pub mod journal;
pub mod outcome;
pub mod retention;
pub mod service;
pub mod sessions;
mod worker;

pub use clock::{Clock, SystemClock, TestClock};
pub use faults::InjectedFaults;
pub use journal::{Journal, JournalEntry};
pub use outcome::{Accepted, Answer, Outcome, Receipt, ReceiptEvent, Refusal, RenderedAnswer, Renderer};
pub use retention::{Retention, RetentionReport};
pub use service::{
    CommandMeta, CommandService, FaultInjector, IdempotencyRequest, ServiceConfig, ServiceError, ServiceMetrics,
};
