//! The one clock every decision reads. Production uses the system clock; with
//! `PLANLEDGER_TEST_CLOCK=1` a settable test clock stands in (like payment providers' test clocks).

use std::fmt::Debug;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use planledger_store::truncate_to_micros;

pub trait Clock: Send + Sync + Debug {
    /// Now, to the microsecond (the precision the log keeps).
    fn now(&self) -> DateTime<Utc>;

    /// The test clock, if this is one.
    fn as_test_clock(&self) -> Option<&TestClock> {
        None
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_to_micros(Utc::now())
    }
}

/// A clock that stands still until told to move.
#[derive(Debug)]
pub struct TestClock {
    now: Mutex<DateTime<Utc>>,
}

impl TestClock {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self { now: Mutex::new(truncate_to_micros(now)) }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = truncate_to_micros(now);
    }

    pub fn advance(&self, by: TimeDelta) -> DateTime<Utc> {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
        *now
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn as_test_clock(&self) -> Option<&TestClock> {
        Some(self)
    }
}
