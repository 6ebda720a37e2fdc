//! The epoch gate of a step with recovery (see ARCHITECTURE.md, "Recovery"): items of
//! epochs after the step's input frontier wait here until the frontier reaches them, so
//! the step's snapshot after epoch `e` covers exactly the items of epochs <= `e`. Keyed
//! steps and fixed-partitioned sinks use it alike.

use std::collections::BTreeMap;

use crate::runtime::progress::Epoch;

/// Held items by epoch, and the frontier that releases them.
#[derive(Debug)]
pub(crate) struct EpochGate<T> {
    /// The step's input frontier: items of this epoch pass at once, later ones wait.
    frontier: Epoch,
    pending: BTreeMap<Epoch, Vec<T>>,
}

impl<T> EpochGate<T> {
    /// A gate whose frontier is the run's first epoch.
    pub(crate) fn new(first: Epoch) -> EpochGate<T> {
        EpochGate {
            frontier: first,
            pending: BTreeMap::new(),
        }
    }

    /// True if an item of `epoch` must wait for the frontier.
    #[inline]
    pub(crate) fn holds(&self, epoch: Epoch) -> bool {
        epoch > self.frontier
    }

    /// Where the items of `epoch` wait (only for an epoch [`holds`](Self::holds) is true of).
    pub(crate) fn hold(&mut self, epoch: Epoch) -> &mut Vec<T> {
        self.pending.entry(epoch).or_default()
    }

    /// True if nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The frontier is moving to `new`: releases the earliest epoch held before `new`,
    /// with the frontier moved to it, or `None` once none is left. Call it until `None`,
    /// processing and snapshotting each epoch in order, then [`open`](Self::open).
    pub(crate) fn release_before(&mut self, new: Epoch) -> Option<(Epoch, Vec<T>)> {
        let entry = self.pending.first_entry()?;
        let e = *entry.key();
        if e >= new {
            return None;
        }
        self.frontier = e;
        Some((e, entry.remove()))
    }

    /// Moves the frontier to `new` and returns the items held for `new` itself.
    pub(crate) fn open(&mut self, new: Epoch) -> Option<Vec<T>> {
        self.frontier = new;
        self.pending.remove(&new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_held_epochs_in_order_then_opens_the_new_one() {
        let mut g = EpochGate::new(1);
        assert!(!g.holds(1));
        assert!(g.holds(2));
        g.hold(4).push('d');
        g.hold(2).push('b');
        g.hold(3).push('c');
        g.hold(5).push('e');
        assert_eq!(g.release_before(4), Some((2, vec!['b'])));
        assert!(!g.holds(2) && g.holds(3));
        assert_eq!(g.release_before(4), Some((3, vec!['c'])));
        assert_eq!(g.release_before(4), None);
        assert_eq!(g.open(4), Some(vec!['d']));
        assert!(!g.holds(4) && g.holds(5));
        assert!(!g.is_empty());
        assert_eq!(g.open(5), Some(vec!['e']));
        assert!(g.is_empty());
    }
}
