//! Faults to inject into the commit path: a [`FaultInjector`] that fails the next N commits
//! in a chosen way, or each commit with a seeded chance. Used by the tests of unknown commit
//! outcomes and by the simulator; production runs without one.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::service::FaultInjector;

/// Counts down each kind of fault, then draws from a seeded chance (per mille) per kind.
#[derive(Debug, Default)]
pub struct InjectedFaults {
    before_commit: AtomicU32,
    after_commit: AtomicU32,
    probe: AtomicU32,
    /// Chances per mille, drawn with `seed`: (before commit, after commit, probe).
    chances: (u32, u32, u32),
    seed: AtomicU64,
    injected: AtomicU64,
}

impl InjectedFaults {
    /// Fails the next `before`, `after` commits and `probe` look-ups.
    pub fn next(before: u32, after: u32, probe: u32) -> Self {
        Self {
            before_commit: AtomicU32::new(before),
            after_commit: AtomicU32::new(after),
            probe: AtomicU32::new(probe),
            ..Self::default()
        }
    }

    /// Fails each commit or look-up with these chances per mille, drawn from `seed`.
    pub fn seeded(seed: u64, before_per_mille: u32, after_per_mille: u32, probe_per_mille: u32) -> Self {
        Self {
            chances: (before_per_mille, after_per_mille, probe_per_mille),
            seed: AtomicU64::new(seed | 1),
            ..Self::default()
        }
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn fire(&self, remaining: &AtomicU32, per_mille: u32) -> bool {
        let counted = remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok();
        let drawn = per_mille > 0 && self.draw() % 1000 < u64::from(per_mille);
        if counted || drawn {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        counted || drawn
    }

    /// xorshift64: the same seed gives the same sequence of draws.
    fn draw(&self) -> u64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        loop {
            let mut next = x;
            next ^= next << 13;
            next ^= next >> 7;
            next ^= next << 17;
            match self.seed.compare_exchange(x, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(current) => x = current,
            }
        }
    }
}

impl FaultInjector for InjectedFaults {
    fn fail_before_commit(&self) -> bool {
        self.fire(&self.before_commit, self.chances.0)
    }

    fn fail_after_commit(&self) -> bool {
        self.fire(&self.after_commit, self.chances.1)
    }

    fn fail_probe(&self) -> bool {
        self.fire(&self.probe, self.chances.2)
    }
}
