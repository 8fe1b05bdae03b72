//! planledger's command path: from a command to events in the log.
//!
//! - [`CommandService`] serves each store through a queue whose worker decides waiting
//!   commands in order and appends them in one transaction (see `service.rs`).
//! - [`views`] builds what clients see: the store view and each command's answer.
//! - [`Journal`] records every command, accepted or refused, off the hot path.
//! - [`Clock`]: the one clock decisions read; a settable [`TestClock`] for tests.

mod answers;
pub mod clock;
pub mod faults;
pub mod journal;
pub mod service;
pub mod views;

pub use clock::{Clock, SystemClock, TestClock};
pub use faults::InjectedFaults;
pub use journal::{Journal, JournalEntry};
pub use service::{
    CommandMeta, CommandService, FaultInjector, IdempotencyRequest, ServiceConfig, ServiceError, ServiceMetrics,
};
pub use views::Answer;
