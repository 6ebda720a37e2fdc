//! Epochs and frontiers: the progress protocol (see ARCHITECTURE.md).

use std::time::{Duration, Instant};

pub use crate::base::epoch::{Epoch, EOF_EPOCH, FIRST_EPOCH};

/// A worker's epoch clock. With an interval, epochs are slots of a time grid that
/// starts at `base` (shared by the workers of a process, so they never drift apart):
/// the epoch at time `t` is `first + (t - base) / interval`, and a late round may skip
/// epochs. With a zero interval it advances by one at every tick.
#[derive(Debug)]
pub(crate) struct EpochClock {
    epoch: Epoch,
    first: Epoch,
    interval: Duration,
    base: Instant,
    /// `deadline()`, cached: a tick before it is a comparison, not a 128-bit division
    /// (the worker ticks every round).
    ends: Instant,
}

impl EpochClock {
    pub(crate) fn new(interval: Duration, base: Instant, first: Epoch) -> Self {
        let mut clock = EpochClock {
            epoch: first,
            first,
            interval,
            base,
            ends: base,
        };
        clock.ends = clock.deadline();
        clock
    }

    pub(crate) fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Advances the epoch if its interval has passed; true if it did.
    pub(crate) fn tick(&mut self, now: Instant) -> bool {
        if self.interval.is_zero() {
            self.epoch += 1;
            return true;
        }
        if now < self.ends {
            return false;
        }
        let slots = now.saturating_duration_since(self.base).as_nanos() / self.interval.as_nanos();
        let e = self
            .first
            .saturating_add(u64::try_from(slots).unwrap_or(u64::MAX));
        if e > self.epoch {
            self.epoch = e;
            self.ends = self.deadline();
            true
        } else {
            false
        }
    }

    /// When the current epoch ends.
    pub(crate) fn deadline(&self) -> Instant {
        let slots = u128::from(self.epoch - self.first + 1);
        let nanos = self.interval.as_nanos().saturating_mul(slots);
        let far = Duration::from_secs(86_400 * 365);
        self.base
            .checked_add(Duration::from_nanos(
                u64::try_from(nanos).unwrap_or(u64::MAX),
            ))
            .unwrap_or(self.base + far)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_advances_on_interval_only() {
        let t0 = Instant::now();
        let mut c = EpochClock::new(Duration::from_secs(10), t0, FIRST_EPOCH);
        assert_eq!(c.epoch(), 1);
        assert!(!c.tick(t0 + Duration::from_secs(9)));
        assert!(c.tick(t0 + Duration::from_secs(10)));
        assert_eq!(c.epoch(), 2);
        assert_eq!(c.deadline(), t0 + Duration::from_secs(20));
    }

    #[test]
    fn clock_stays_on_its_grid_and_skips_late_epochs() {
        let t0 = Instant::now();
        let mut c = EpochClock::new(Duration::from_secs(1), t0, 7);
        assert!(c.tick(t0 + Duration::from_millis(1500)));
        assert_eq!(c.epoch(), 8);
        // A late round lands in the slot of its time, not one after the last.
        assert!(c.tick(t0 + Duration::from_millis(4100)));
        assert_eq!(c.epoch(), 11);
        assert_eq!(c.deadline(), t0 + Duration::from_secs(5));
    }

    #[test]
    fn zero_interval_advances_every_round() {
        let t0 = Instant::now();
        let mut c = EpochClock::new(Duration::ZERO, t0, FIRST_EPOCH);
        assert!(c.tick(t0));
        assert!(c.tick(t0));
        assert_eq!(c.epoch(), 3);
    }
}
