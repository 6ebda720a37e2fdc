//! Per-key system-time notifications of a keyed step.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::dataflow::Key;

/// Per-key timers: the armed time of each key, and the same times in a min-heap. Arming
/// a key pushes a heap entry without searching for its old one, which stays behind,
/// stale (its time is no longer the key's), until it reaches the top and is dropped: a
/// window step re-arms its key on almost every item, and a `BTreeSet` remove + insert
/// per item was an eighth of its time. The heap is rebuilt when stale entries outnumber
/// live ones, so it stays within about twice the armed keys.
pub(super) struct Timers<K> {
    deadline: FxHashMap<K, Instant>,
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            deadline: FxHashMap::default(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Key> Timers<K> {
    /// Arms `key` for `at`, or disarms it for `None`.
    pub(super) fn arm(&mut self, key: &K, at: Option<Instant>) {
        match at {
            None => {
                if self.deadline.remove(key).is_none() {
                    return;
                }
            }
            Some(t) => {
                match self.deadline.get_mut(key) {
                    Some(d) if *d == t => return,
                    Some(d) => *d = t,
                    None => {
                        self.deadline.insert(key.clone(), t);
                    }
                }
                self.heap.push(Reverse((t, key.clone())));
                if self.heap.len() > 2 * self.deadline.len() + 64 {
                    // Rebuilt in its own allocation: a fresh one would grow again, by
                    // copies, on the pushes that follow.
                    let mut entries = std::mem::take(&mut self.heap).into_vec();
                    entries.clear();
                    entries.extend(self.deadline.iter().map(|(k, &t)| Reverse((t, k.clone()))));
                    self.heap = BinaryHeap::from(entries);
                }
            }
        }
        self.drop_stale();
    }

    /// Pops stale entries off the top, so that the top is the next live time.
    fn drop_stale(&mut self) {
        while let Some(Reverse((t, k))) = self.heap.peek() {
            if self.deadline.get(k) == Some(t) {
                break;
            }
            self.heap.pop();
        }
    }

    /// The earliest armed time.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Disarms and returns the keys due at `now`, earliest first.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<K> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            let Reverse((t, k)) = self.heap.pop().expect("checked non-empty");
            if self.deadline.get(&k) == Some(&t) {
                self.deadline.remove(&k);
                due.push(k);
            }
        }
        self.drop_stale();
        due
    }

    pub(super) fn clear(&mut self) {
        self.deadline.clear();
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_time_order_and_only_at_their_latest_time() {
        let t0 = Instant::now();
        let at = |ms: u64| Some(t0 + Duration::from_millis(ms));
        let mut timers = Timers::<u64>::default();
        timers.arm(&1, at(30));
        timers.arm(&2, at(10));
        timers.arm(&3, at(20));
        timers.arm(&2, at(40)); // re-armed later: its 10 ms entry is stale
        timers.arm(&3, None); // disarmed
        assert_eq!(timers.next(), at(30));
        assert_eq!(timers.take_due(t0 + Duration::from_millis(35)), vec![1]);
        assert_eq!(timers.next(), at(40));
        timers.arm(&4, at(40));
        assert_eq!(timers.take_due(t0 + Duration::from_millis(100)), vec![2, 4]);
        assert_eq!(timers.next(), None);
        assert!(timers.take_due(t0 + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn timers_heap_stays_bounded_under_constant_rearming() {
        let t0 = Instant::now();
        let mut timers = Timers::<u64>::default();
        for i in 0..100_000u64 {
            timers.arm(&(i % 10), Some(t0 + Duration::from_micros(1_000_000 - i)));
            assert!(
                timers.heap.len() <= 2 * 10 + 65,
                "at {i}: {}",
                timers.heap.len()
            );
        }
        let due = timers.take_due(t0 + Duration::from_secs(2));
        let mut keys = due.clone();
        keys.sort();
        assert_eq!(keys, (0..10).collect::<Vec<_>>(), "each key once");
    }
}
