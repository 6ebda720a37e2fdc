//! Per-key system-time notifications of a keyed step.
//!
//! Deadlines are [`Deadline`]s: nanoseconds of the monotonic clock since a process-wide
//! base instant, so arming and comparing are integer operations; a logic that computes
//! its wake-up in integers (the window step) never builds an `Instant`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::dataflow::Key;

/// A monotonic time: nanoseconds since [`base`] (taken the first time it is asked for).
pub(crate) type Deadline = u64;

/// Below this distance from now, a key's heap entry is its exact deadline.
const EXACT_WITHIN: u64 = 1_000_000;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// `at` as a [`Deadline`]; instants before the base (long past) are 0.
#[inline]
pub(crate) fn deadline_of(at: Instant) -> Deadline {
    at.saturating_duration_since(base()).as_nanos() as u64
}

/// The instant of a [`Deadline`].
#[inline]
pub(crate) fn instant_of(d: Deadline) -> Instant {
    base() + Duration::from_nanos(d)
}

/// A key's timer: when it is due, and the time of its live entry in the heap.
#[derive(Clone, Copy)]
struct Armed {
    deadline: Deadline,
    /// At or before `deadline`: the key is looked at then, and fired if due (an entry
    /// that comes early is pushed again for the deadline).
    queued: Deadline,
}

/// Per-key timers: each armed key's deadline, and a min-heap of entries that wake the
/// step at or before each deadline.
///
/// A key's timer is pushed onto the heap only when its deadline moves before its
/// entry, or when the entry comes due: a deadline that moves later (`collect`'s timeout,
/// restarted by every item) costs one comparison. An entry far ahead is placed an
/// eighth of the way early, so a deadline that creeps earlier item by item (an event
/// clock replaying faster than system time) is pushed again only once it has moved by
/// that eighth, not on every item; the early entry, when it comes, pushes the deadline
/// again from closer by (about five times for a deadline a minute out). A key's old
/// entries stay behind, stale, until they reach the top and are dropped; the heap is
/// rebuilt when stale entries outnumber live ones. A key is never fired before its
/// deadline.
pub(super) struct Timers<K> {
    armed: FxHashMap<K, Armed>,
    heap: BinaryHeap<Reverse<(Deadline, K)>>,
    /// The time the step read when its current batch began.
    now: Deadline,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            armed: FxHashMap::default(),
            heap: BinaryHeap::new(),
            now: deadline_of(Instant::now()),
        }
    }
}

impl<K: Key> Timers<K> {
    /// Sets the time that [`arm`](Self::arm) measures deadlines from (read once per batch).
    #[inline]
    pub(super) fn set_now(&mut self, now: Instant) {
        self.now = deadline_of(now);
    }

    /// Where the heap entry for `deadline` goes: the deadline itself when it is close,
    /// an eighth of the way early when it is far.
    #[inline]
    fn entry_time(&self, deadline: Deadline) -> Deadline {
        match deadline.checked_sub(self.now) {
            Some(ahead) if ahead > EXACT_WITHIN => deadline - ahead / 8,
            _ => deadline,
        }
    }

    /// Arms `key` for `at`, or disarms it for `None`. Inlined for its common case, an
    /// armed key whose live entry comes at or before the new deadline (one lookup, one
    /// store); the rest is out of line.
    #[inline(always)]
    pub(super) fn arm(&mut self, key: &K, at: Option<Deadline>) {
        if let Some(t) = at {
            if let Some(a) = self.armed.get_mut(key) {
                if a.queued <= t {
                    a.deadline = t;
                    return;
                }
            }
        }
        self.arm_slow(key, at);
    }

    #[inline(never)]
    fn arm_slow(&mut self, key: &K, at: Option<Deadline>) {
        match at {
            None => {
                if self.armed.remove(key).is_some() {
                    self.drop_stale();
                }
            }
            Some(t) => {
                let queued = match self.armed.get_mut(key) {
                    Some(a) => {
                        a.deadline = t;
                        if a.queued <= t {
                            // The live entry comes at or before the deadline.
                            return;
                        }
                        let q = self.entry_time(t);
                        // `get_mut` again after the shared borrow for `entry_time`.
                        let a = self.armed.get_mut(key).expect("found above");
                        a.queued = q;
                        q
                    }
                    None => {
                        let q = self.entry_time(t);
                        self.armed.insert(
                            key.clone(),
                            Armed {
                                deadline: t,
                                queued: q,
                            },
                        );
                        q
                    }
                };
                self.push(queued, key.clone());
            }
        }
    }

    fn push(&mut self, at: Deadline, key: K) {
        self.heap.push(Reverse((at, key)));
        if self.heap.len() > 2 * self.armed.len() + 64 {
            // Rebuilt in its own allocation: a fresh one would grow again, by copies,
            // on the pushes that follow.
            let mut entries = std::mem::take(&mut self.heap).into_vec();
            entries.clear();
            entries.extend(
                self.armed
                    .iter()
                    .map(|(k, a)| Reverse((a.queued, k.clone()))),
            );
            self.heap = BinaryHeap::from(entries);
        }
        self.drop_stale();
    }

    /// True if `(at, key)` is the key's live entry.
    fn live(&self, at: &Deadline, key: &K) -> bool {
        self.armed.get(key).is_some_and(|a| a.queued == *at)
    }

    /// Pops stale entries off the top, so that the top is a live entry.
    fn drop_stale(&mut self) {
        while let Some(Reverse((t, k))) = self.heap.peek() {
            if self.live(t, k) {
                break;
            }
            self.heap.pop();
        }
    }

    /// When to look at the timers next: at or before the earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| instant_of(*t))
    }

    /// Disarms and returns the keys due at `now`, earliest entry first; keys whose
    /// entry came early are pushed again for their deadline.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<K> {
        let now = deadline_of(now);
        self.now = now;
        let mut due = Vec::new();
        let mut again = Vec::new();
        while self.heap.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            let Reverse((t, k)) = self.heap.pop().expect("checked non-empty");
            if !self.live(&t, &k) {
                continue;
            }
            let deadline = self.armed[&k].deadline;
            if deadline <= now {
                self.armed.remove(&k);
                due.push(k);
            } else {
                again.push((deadline, k));
            }
        }
        for (deadline, k) in again {
            let q = self.entry_time(deadline);
            self.armed.get_mut(&k).expect("live above").queued = q;
            self.heap.push(Reverse((q, k)));
        }
        self.drop_stale();
        due
    }

    pub(super) fn clear(&mut self) {
        self.armed.clear();
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_time_order_and_only_at_their_latest_time() {
        let t0 = Instant::now();
        let at = |ms: u64| Some(t0 + Duration::from_millis(ms));
        let d = |i: Option<Instant>| i.map(deadline_of);
        let mut timers = Timers::<u64>::default();
        timers.set_now(t0);
        timers.arm(&1, d(at(30)));
        timers.arm(&2, d(at(10)));
        timers.arm(&3, d(at(20)));
        timers.arm(&2, d(at(40))); // moved later: fires at 40, not 10
        timers.arm(&3, None); // disarmed
                              // Never later than the earliest deadline (an entry may come early).
        assert!(timers.next().expect("armed") <= at(30).unwrap());
        assert!(timers.take_due(t0 + Duration::from_millis(29)).is_empty());
        assert_eq!(timers.take_due(t0 + Duration::from_millis(35)), vec![1]);
        assert!(timers.next().expect("armed") <= at(40).unwrap());
        timers.arm(&4, d(at(40)));
        assert!(timers.take_due(t0 + Duration::from_millis(39)).is_empty());
        let mut due = timers.take_due(t0 + Duration::from_millis(100));
        due.sort();
        assert_eq!(due, vec![2, 4]);
        assert_eq!(timers.next(), None);
        assert!(timers.take_due(t0 + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn a_deadline_moving_earlier_is_never_missed() {
        // An event-time replay: every item moves the key's deadline a little earlier.
        let t0 = Instant::now();
        let mut timers = Timers::<u64>::default();
        timers.set_now(t0);
        let mut pushes = 0;
        for i in 0..1000u64 {
            let before = timers.heap.len();
            timers.arm(
                &7,
                Some(deadline_of(t0 + Duration::from_millis(60_000 - 10 * i))),
            );
            pushes += usize::from(timers.heap.len() > before);
        }
        // The last deadline is 50 s out: a handful of pushes, not one per item.
        assert!(
            pushes < 10,
            "{pushes} heap pushes for 1000 earlier deadlines"
        );
        let last = t0 + Duration::from_millis(60_000 - 10 * 999);
        assert!(timers.next().expect("armed") <= last);
        // Early entries are pushed again until the deadline, which fires once.
        let mut now = t0;
        while let Some(next) = timers.next() {
            now = now.max(next);
            let due = timers.take_due(now);
            if !due.is_empty() {
                assert_eq!(due, vec![7]);
                assert!(now >= last, "fired before its deadline");
                break;
            }
        }
        assert_eq!(timers.next(), None);
    }

    #[test]
    fn timers_heap_stays_bounded_under_constant_rearming() {
        let t0 = Instant::now();
        let mut timers = Timers::<u64>::default();
        timers.set_now(t0);
        for i in 0..100_000u64 {
            timers.arm(
                &(i % 10),
                Some(deadline_of(t0 + Duration::from_micros(1_000_000 - i))),
            );
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
