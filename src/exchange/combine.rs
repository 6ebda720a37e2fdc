//! Combining before a keyed exchange: one partial value per key on the sending worker,
//! routed when its epoch ends instead of every record as it comes (ARCHITECTURE.md,
//! "Combining before the exchange").
//!
//! Only for a step whose values merge: applying `merge(a, b)` to a key's state must be
//! the same as applying `a` then `b` (`count_final`'s counts add; `max_final` and
//! `min_final` keep the larger or smaller value). Partials leave
//! through the ordinary router at the epoch they were taken at: when a batch of another
//! epoch comes, when the table is full, and before the channel announces a frontier
//! past their epoch ([`CombinedChannel`]), so the progress rule still holds.

use std::cell::RefCell;
use std::rc::Rc;

use hashbrown::HashTable;

use super::keyed::{KeyChannel, KeyRouter, KeyedEntry};
use super::ChannelIo;
use crate::base::epoch::Epoch;
use crate::base::frame::FrameHeader;
use crate::base::key::Key;
use crate::base::push::Data;

/// Keys a combiner holds before it routes its partials: bounds its memory whatever the
/// number of keys.
pub(crate) const COMBINE_KEYS: usize = 16_384;

/// Records routed without combining after a table filled with fewer than two records
/// per key (combining them did not pay); then the combiner tries again.
pub(crate) const BYPASS_RECORDS: usize = 262_144;

/// A keyed step's combiner as its entry holds it (one virtual call per batch).
pub(crate) trait Precombine<K, V> {
    /// Takes a batch of `(key, value)` pairs (left empty).
    fn push_pairs(&mut self, epoch: Epoch, batch: &mut Vec<(K, V)>, router: &mut KeyRouter<K, V>);
    /// Takes a column of keys beside a column of values (both left empty).
    fn push_columns(
        &mut self,
        epoch: Epoch,
        keys: &mut Vec<K>,
        values: &mut Vec<V>,
        router: &mut KeyRouter<K, V>,
    );
    /// Routes every partial of an epoch before `frontier`.
    fn flush_before(&mut self, frontier: Epoch, router: &mut KeyRouter<K, V>);
}

/// One partial value per key, merged with `merge`.
pub(crate) struct Combiner<K, V, F> {
    merge: F,
    table: HashTable<(K, V)>,
    /// The epoch of every partial in the table.
    epoch: Epoch,
    /// Records merged into the table since it was last emptied.
    taken: usize,
    /// Records still to route without combining.
    bypass: usize,
}

impl<K: Key, V: Data, F: Fn(&mut V, V) + 'static> Combiner<K, V, F> {
    pub(crate) fn new(merge: F) -> Self {
        Combiner {
            merge,
            table: HashTable::new(),
            epoch: 0,
            taken: 0,
            bypass: 0,
        }
    }

    /// Merges `items`, taken at `epoch`, or routes them if combining is off for now.
    #[inline]
    fn take(
        &mut self,
        epoch: Epoch,
        items: impl ExactSizeIterator<Item = (K, V)>,
        router: &mut KeyRouter<K, V>,
    ) {
        if self.bypass > 0 {
            self.bypass = self.bypass.saturating_sub(items.len());
            return router.push(epoch, items);
        }
        if epoch != self.epoch {
            self.flush(router);
            self.epoch = epoch;
        }
        self.taken += items.len();
        for (k, v) in items {
            let h = k.table_hash();
            match self.table.find_mut(h, |(x, _)| x.same(&k)) {
                Some((_, acc)) => (self.merge)(acc, v),
                None => {
                    self.table.insert_unique(h, (k, v), |(x, _)| x.table_hash());
                }
            }
        }
        if self.table.len() >= COMBINE_KEYS {
            let poor = self.table.len() * 2 > self.taken;
            self.flush(router);
            if poor {
                self.bypass = BYPASS_RECORDS;
            }
        }
    }

    /// Routes every partial (at the epoch it was taken at); the table keeps its room.
    fn flush(&mut self, router: &mut KeyRouter<K, V>) {
        if !self.table.is_empty() {
            router.push(self.epoch, self.table.drain());
        }
        self.taken = 0;
    }
}

impl<K: Key, V: Data, F: Fn(&mut V, V) + 'static> Precombine<K, V> for Combiner<K, V, F> {
    fn push_pairs(&mut self, epoch: Epoch, batch: &mut Vec<(K, V)>, router: &mut KeyRouter<K, V>) {
        self.take(epoch, batch.drain(..), router);
    }

    fn push_columns(
        &mut self,
        epoch: Epoch,
        keys: &mut Vec<K>,
        values: &mut Vec<V>,
        router: &mut KeyRouter<K, V>,
    ) {
        self.take(epoch, keys.drain(..).zip(values.drain(..)), router);
    }

    fn flush_before(&mut self, frontier: Epoch, router: &mut KeyRouter<K, V>) {
        if self.epoch < frontier {
            self.flush(router);
        }
    }
}

/// The channel of a combining keyed step as the worker loop drives it: the channel
/// itself, except that before it announces a new frontier it has the step's combiner
/// route the partials of the epochs that frontier passes.
pub(crate) struct CombinedChannel<K, V> {
    pub(crate) entry: Rc<RefCell<KeyedEntry<K, V>>>,
    pub(crate) channel: KeyChannel<K, V>,
}

impl<K: Key, V: Data> ChannelIo for CombinedChannel<K, V> {
    fn drain(&mut self) -> bool {
        self.channel.borrow_mut().drain()
    }
    fn flush(&mut self, hold: bool) -> bool {
        self.channel.borrow_mut().flush(hold)
    }
    fn advance_local(&mut self, f: Epoch) {
        self.entry.borrow_mut().flush_combined(f);
        self.channel.borrow_mut().advance_local(f);
    }
    fn remote_frontier(&self) -> Epoch {
        self.channel.borrow().remote_frontier()
    }
    fn has_overflow(&self) -> bool {
        self.channel.borrow().has_overflow()
    }
    fn is_backlogged(&self) -> bool {
        self.channel.borrow().is_backlogged()
    }
    fn has_inbound(&self) -> bool {
        self.channel.borrow().has_inbound()
    }
    fn recv_frame(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<bool, String> {
        self.channel.borrow_mut().recv_frame(header, payload)
    }
    fn deliver_received(&mut self) {
        self.channel.borrow_mut().deliver_received()
    }
    fn backlog(&self) -> (usize, usize) {
        self.channel.borrow().backlog()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::epoch::EOF_EPOCH;
    use crate::base::park::Shared;
    use crate::exchange::keyed::{KeyBatch, KeyedInput};
    use crate::exchange::Links;
    use crate::transport::threads::mesh;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// What reached each worker's step: `(epoch, key, value)` in arrival order.
    #[derive(Default)]
    struct Recorder(Vec<(Epoch, u64, u64)>);

    impl KeyedInput<u64, u64> for Recorder {
        fn push_pairs(&mut self, _e: Epoch, _b: &mut Vec<(u64, u64)>) {
            unreachable!("two workers")
        }
        fn push_columns(&mut self, _e: Epoch, _k: &mut Vec<u64>, _v: &mut Vec<u64>) {
            unreachable!("two workers")
        }
        fn push_local(&mut self, e: Epoch, items: &mut Vec<(u64, u64, u64)>) {
            self.0.extend(items.drain(..).map(|(_, k, v)| (e, k, v)));
        }
        fn push_remote(&mut self, e: Epoch, b: &mut KeyBatch<u64, u64>) {
            b.drain(|_, k, v| self.0.push((e, k.into_owned(), v)));
        }
    }

    type Rig = (
        CombinedChannel<u64, u64>,
        KeyChannel<u64, u64>,
        Rc<RefCell<Recorder>>,
        Rc<RefCell<Recorder>>,
    );

    /// Worker 0's combining entry (summing values) behind its channel, worker 1's
    /// channel, and what each worker's step received.
    fn rig() -> Rig {
        let shared = Arc::new(Shared::new(2));
        let mut eps = mesh::<KeyBatch<u64, u64>>(2, 64);
        let ep1 = eps.pop().unwrap();
        let ep0 = eps.pop().unwrap();
        let (r0, r1): (Rc<RefCell<Recorder>>, Rc<RefCell<Recorder>>) = Default::default();
        let (x0, c0) = KeyRouter::new(Links::new(0, ep0, shared.clone()), r0.clone());
        let (_x1, c1) = KeyRouter::new(Links::new(1, ep1, shared), r1.clone());
        let merge: Box<dyn Precombine<u64, u64>> =
            Box::new(Combiner::new(|a: &mut u64, b: u64| *a += b));
        let entry = KeyedEntry::new(r0.clone(), Some(x0), Some(merge));
        assert!(entry.combines());
        let driven = CombinedChannel {
            entry: Rc::new(RefCell::new(entry)),
            channel: c0,
        };
        (driven, c1, r0, r1)
    }

    /// Every item both workers' steps received, by epoch and key: their values summed,
    /// and how many items carried them.
    fn received(
        r0: &Rc<RefCell<Recorder>>,
        r1: &Rc<RefCell<Recorder>>,
    ) -> BTreeMap<(Epoch, u64), (u64, usize)> {
        let mut all = BTreeMap::new();
        for &(e, k, v) in r0.borrow().0.iter().chain(r1.borrow().0.iter()) {
            let slot: &mut (u64, usize) = all.entry((e, k)).or_default();
            slot.0 += v;
            slot.1 += 1;
        }
        all
    }

    #[test]
    fn partials_merge_per_key_and_leave_at_their_epoch_before_the_frontier_passes_it() {
        let (mut ch0, c1, r0, r1) = rig();
        let mut batch: Vec<(u64, u64)> = (0..300).map(|i| (i % 10, 1)).collect();
        ch0.entry.borrow_mut().push_pairs(3, &mut batch);
        let (mut keys, mut vals): (Vec<u64>, Vec<u64>) = (0..50).map(|i| (i % 5, 2)).unzip();
        ch0.entry.borrow_mut().push_columns(3, &mut keys, &mut vals);
        assert!(batch.is_empty() && keys.is_empty() && vals.is_empty());
        // Nothing has left the combiner yet.
        ch0.advance_local(3);
        c1.borrow_mut().drain();
        assert!(r0.borrow().0.is_empty() && r1.borrow().0.is_empty());
        // A batch of another epoch sends epoch 3's partials first.
        let mut later = vec![(1u64, 7u64)];
        ch0.entry.borrow_mut().push_pairs(4, &mut later);
        // (The worker loop sends staged batches at the end of every round.)
        ch0.flush(false);
        c1.borrow_mut().drain();
        let got = received(&r0, &r1);
        for k in 0..10 {
            let want = 30 + if k < 5 { 20 } else { 0 };
            assert_eq!(got[&(3, k)], (want, 1), "key {k}: one merged item");
        }
        assert!(!got.contains_key(&(4, 1)));
        // The frontier passing epoch 4 sends its partial before the progress marker.
        ch0.advance_local(EOF_EPOCH);
        c1.borrow_mut().drain();
        assert_eq!(received(&r0, &r1)[&(4, 1)], (7, 1));
        assert_eq!(c1.borrow().remote_frontier(), EOF_EPOCH);
        assert!(r0.borrow().0.iter().all(|&(_, k, _)| worker_of_key(k) == 0));
        assert!(r1.borrow().0.iter().all(|&(_, k, _)| worker_of_key(k) == 1));
    }

    fn worker_of_key(k: u64) -> usize {
        crate::exchange::worker_of(k.stable_hash(), 2)
    }

    #[test]
    fn a_full_table_is_routed_and_keys_that_rarely_repeat_turn_combining_off_for_a_while() {
        let (mut ch0, c1, r0, r1) = rig();
        // Distinct keys, each seen once: the table fills with nothing merged.
        let n = COMBINE_KEYS as u64;
        let mut batch: Vec<(u64, u64)> = (0..n).map(|k| (k, 1)).collect();
        ch0.entry.borrow_mut().push_pairs(1, &mut batch);
        ch0.channel.borrow_mut().flush(false);
        c1.borrow_mut().drain();
        assert_eq!(
            received(&r0, &r1).len(),
            COMBINE_KEYS,
            "the full table was routed"
        );
        // Now records pass straight through: a repeated key arrives as separate items.
        let mut again: Vec<(u64, u64)> = vec![(5, 1), (5, 1)];
        ch0.entry.borrow_mut().push_pairs(1, &mut again);
        ch0.advance_local(EOF_EPOCH);
        c1.borrow_mut().drain();
        assert_eq!(received(&r0, &r1)[&(1, 5)], (3, 3));
    }

    #[test]
    fn a_full_table_of_repeated_keys_keeps_combining() {
        let (mut ch0, c1, r0, r1) = rig();
        // Every key three times before the table fills.
        let n = COMBINE_KEYS as u64;
        let mut batch: Vec<(u64, u64)> = (0..3 * n).map(|i| (i / 3, 1)).collect();
        ch0.entry.borrow_mut().push_pairs(1, &mut batch);
        let mut again: Vec<(u64, u64)> = vec![(5, 1), (5, 1)];
        ch0.entry.borrow_mut().push_pairs(1, &mut again);
        ch0.advance_local(EOF_EPOCH);
        c1.borrow_mut().drain();
        let got = received(&r0, &r1);
        assert_eq!(got.len(), COMBINE_KEYS);
        assert_eq!(
            got[&(1, 5)],
            (5, 2),
            "merged before the flush, and once after it"
        );
        assert!(got
            .iter()
            .all(|(&(_, k), &(v, _))| v == if k == 5 { 5 } else { 3 }));
    }
}
