//! Epochs and frontiers: the progress protocol (see ARCHITECTURE.md).

use std::time::{Duration, Instant};

/// A span of input time between snapshots. Epochs start at 1.
pub type Epoch = u64;

/// The frontier of a finished stream: no epoch can appear on it any more.
pub const EOF_EPOCH: Epoch = Epoch::MAX;

/// The first epoch of a run.
pub const FIRST_EPOCH: Epoch = 1;

/// A worker's epoch clock: advances every `interval` of wall time (every scheduling round
/// when the interval is zero).
#[derive(Debug)]
pub(crate) struct EpochClock {
    epoch: Epoch,
    interval: Duration,
    started: Instant,
}

impl EpochClock {
    pub(crate) fn new(interval: Duration, now: Instant) -> Self {
        EpochClock {
            epoch: FIRST_EPOCH,
            interval,
            started: now,
        }
    }

    pub(crate) fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Advances the epoch if its interval has passed; true if it did.
    pub(crate) fn tick(&mut self, now: Instant) -> bool {
        if now.duration_since(self.started) >= self.interval {
            self.epoch += 1;
            self.started = now;
            true
        } else {
            false
        }
    }

    /// When the current epoch ends.
    pub(crate) fn deadline(&self) -> Instant {
        self.started + self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_advances_on_interval_only() {
        let t0 = Instant::now();
        let mut c = EpochClock::new(Duration::from_secs(10), t0);
        assert_eq!(c.epoch(), 1);
        assert!(!c.tick(t0 + Duration::from_secs(9)));
        assert!(c.tick(t0 + Duration::from_secs(10)));
        assert_eq!(c.epoch(), 2);
        assert_eq!(c.deadline(), t0 + Duration::from_secs(20));
    }

    #[test]
    fn zero_interval_advances_every_round() {
        let t0 = Instant::now();
        let mut c = EpochClock::new(Duration::ZERO, t0);
        assert!(c.tick(t0));
        assert!(c.tick(t0));
        assert_eq!(c.epoch(), 3);
    }
}
