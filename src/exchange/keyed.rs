//! Exchanging keyed items by their key's stable hash.
//!
//! Each item travels with its hash, computed once on the sender, so routing, the
//! receiver's state table and its lookup all share one hash per record. Keys that own
//! heap memory (`Key::SHIP_BYTES`: strings, byte vectors) travel as their encoded bytes
//! in one contiguous buffer per batch: the sender frees its key locally and the receiver
//! reads the bytes sequentially, instead of missing in cache on every key's heap block
//! and freeing it across threads. Other keys travel as values.

use std::cell::RefCell;
use std::rc::Rc;

use xxhash_rust::xxh3::xxh3_64;

use super::combine::Precombine;
use super::{worker_of, Batch, Channel, Links, BATCH};
use crate::base::epoch::Epoch;
use crate::base::key::Key;
use crate::base::push::Data;

/// A batch of keyed items in one of two layouts chosen by `K::SHIP_BYTES`: items as
/// `(hash, key, value)` (the layout of this worker's local share too, so the receiver
/// applies both the same way), or keys as encoded bytes (`ends[i]` is the end offset of
/// key `i` in `bytes`) beside a column of values, whose hash the receiver recomputes
/// from those bytes.
#[derive(Debug)]
pub(crate) struct KeyBatch<K, V> {
    pub(crate) items: Vec<(u64, K, V)>,
    pub(crate) ends: Vec<u32>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) values: Vec<V>,
}

impl<K: Key, V> KeyBatch<K, V> {
    pub(crate) fn new() -> Self {
        KeyBatch {
            items: Vec::new(),
            ends: Vec::new(),
            bytes: Vec::new(),
            values: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, hash: u64, key: K, value: V) {
        if K::SHIP_BYTES {
            // The receiver rehashes the bytes it reads anyway: cheaper than shipping the
            // hash across cores.
            key.encode(&mut self.bytes);
            self.ends.push(self.bytes.len() as u32);
            self.values.push(value);
        } else {
            // One push: a record is one write, not three.
            self.items.push((hash, key, value));
        }
    }
}

/// A key as a keyed step receives it: a value, or a peer's canonical encoding of it
/// (compared against the state table's keys as bytes, decoded only for a new key).
pub(crate) enum WireKey<'a, K> {
    Owned(K),
    Encoded(&'a [u8]),
}

impl<K: Key> WireKey<'_, K> {
    /// The key as a value.
    pub(crate) fn into_owned(self) -> K {
        match self {
            WireKey::Owned(k) => k,
            WireKey::Encoded(b) => K::decode(b).expect("a worker of this cluster encoded this key"),
        }
    }
}

impl<K: Key, V> KeyBatch<K, V> {
    /// Hands every byte-shipped item to `f` as `(hash, key bytes, value)`, in order, and
    /// leaves the batch empty with its buffers kept; the hash is recomputed from the
    /// bytes (the stable hash is by definition XXH3-64 of the canonical encoding). Items
    /// of keys shipped as values are in [`items`](Self::items).
    #[inline]
    pub(crate) fn drain_encoded(&mut self, mut f: impl FnMut(u64, WireKey<'_, K>, V)) {
        debug_assert!(self.items.is_empty() || !K::SHIP_BYTES);
        let mut start = 0usize;
        for (&end, v) in self.ends.iter().zip(self.values.drain(..)) {
            let end = end as usize;
            let kb = &self.bytes[start..end];
            f(xxh3_64(kb), WireKey::Encoded(kb), v);
            start = end;
        }
        self.ends.clear();
        self.bytes.clear();
    }

    /// Hands every item to `f` as `(hash, key, value)`, in order, whichever the layout,
    /// and leaves the batch empty with its buffers kept.
    #[inline]
    pub(crate) fn drain(&mut self, mut f: impl FnMut(u64, WireKey<'_, K>, V)) {
        if K::SHIP_BYTES {
            self.drain_encoded(f);
        } else {
            for (h, k, v) in self.items.drain(..) {
                f(h, WireKey::Owned(k), v);
            }
        }
    }
}

impl<K: Key, V: Send + 'static> Batch for KeyBatch<K, V> {
    fn fresh() -> Self {
        let mut b = Self::new();
        if K::SHIP_BYTES {
            b.values.reserve(BATCH);
            b.ends.reserve(BATCH);
            b.bytes.reserve(BATCH * 8);
        } else {
            b.items.reserve(BATCH);
        }
        b
    }

    fn len(&self) -> usize {
        if K::SHIP_BYTES {
            self.values.len()
        } else {
            self.items.len()
        }
    }

    fn clear(&mut self) {
        self.items.clear();
        self.ends.clear();
        self.bytes.clear();
        self.values.clear();
    }

    fn split_off(&mut self, at: usize) -> Self {
        let mut tail = Self::new();
        if K::SHIP_BYTES {
            let cut = at.checked_sub(1).map_or(0, |i| self.ends[i]);
            tail.values = self.values.split_off(at);
            tail.bytes = self.bytes.split_off(cut as usize);
            tail.ends = self.ends.split_off(at);
            for end in &mut tail.ends {
                *end -= cut;
            }
        } else {
            tail.items = self.items.split_off(at);
        }
        tail
    }
}

/// What a keyed step receives: with one worker, every item (as pairs, or as a column
/// of keys beside a column of values when the step before it made the keys); with
/// several, its local share as hashed items, and peers' batches.
pub(crate) trait KeyedInput<K, V> {
    /// With one worker: items as `(key, value)` pairs (the step hashes the keys).
    fn push_pairs(&mut self, epoch: Epoch, batch: &mut Vec<(K, V)>);
    /// With one worker: `keys[i]` is the key of `values[i]`; both are left empty.
    fn push_columns(&mut self, epoch: Epoch, keys: &mut Vec<K>, values: &mut Vec<V>);
    /// Items routed to this worker by this worker, each with its stable hash.
    fn push_local(&mut self, epoch: Epoch, items: &mut Vec<(u64, K, V)>);
    /// A batch from a peer; left empty (its buffers go back to the peer for reuse).
    fn push_remote(&mut self, epoch: Epoch, batch: &mut KeyBatch<K, V>);
}

/// Where the items of a keyed step come in on this worker: straight into the step with
/// one worker, through the router with several.
pub(crate) struct KeyedEntry<K, V> {
    target: Rc<RefCell<dyn KeyedInput<K, V>>>,
    router: Option<KeyRouter<K, V>>,
    /// With several workers, for a step whose values merge: partials per key in front
    /// of the router (`combine.rs`).
    combiner: Option<Box<dyn Precombine<K, V>>>,
}

impl<K: Key, V: Data> KeyedEntry<K, V> {
    /// A combiner is used only with a router (several workers).
    pub(crate) fn new(
        target: Rc<RefCell<dyn KeyedInput<K, V>>>,
        router: Option<KeyRouter<K, V>>,
        combiner: Option<Box<dyn Precombine<K, V>>>,
    ) -> Self {
        let combiner = combiner.filter(|_| router.is_some());
        KeyedEntry {
            target,
            router,
            combiner,
        }
    }

    /// True if the step's items are combined before they are routed.
    pub(crate) fn combines(&self) -> bool {
        self.combiner.is_some()
    }

    /// Items as `(key, value)` pairs (the keyed step's ordinary input).
    pub(crate) fn push_pairs(&mut self, epoch: Epoch, batch: &mut Vec<(K, V)>) {
        match (&mut self.router, &mut self.combiner) {
            (Some(r), Some(c)) => c.push_pairs(epoch, batch, r),
            (Some(r), None) => r.push(epoch, batch.drain(..)),
            (None, _) => self.target.borrow_mut().push_pairs(epoch, batch),
        }
    }

    /// Items as a column of keys beside a column of values (from a fused `key_on`);
    /// both are left empty.
    pub(crate) fn push_columns(&mut self, epoch: Epoch, keys: &mut Vec<K>, values: &mut Vec<V>) {
        debug_assert_eq!(keys.len(), values.len());
        match (&mut self.router, &mut self.combiner) {
            (Some(r), Some(c)) => c.push_columns(epoch, keys, values, r),
            (Some(r), None) => r.push(epoch, keys.drain(..).zip(values.drain(..))),
            (None, _) => self.target.borrow_mut().push_columns(epoch, keys, values),
        }
    }

    /// The channel is about to announce frontier `f`: the combiner first routes its
    /// partials of the epochs before it.
    pub(crate) fn flush_combined(&mut self, f: Epoch) {
        if let (Some(r), Some(c)) = (&mut self.router, &mut self.combiner) {
            c.flush_before(f, r);
        }
    }
}

/// Build-time switch for measuring what routing alone costs (every record stays on the
/// worker that routed it, so nothing crosses and the answers are wrong):
/// `WAXFAST_EXPERIMENT_ROUTE_LOCAL=1 cargo build --release --target-dir
/// target/route-local`. Used only by `scripts/bench_route_floor.py`; never set it in a
/// real build.
const ROUTE_LOCAL_EXPERIMENT: bool = option_env!("WAXFAST_EXPERIMENT_ROUTE_LOCAL").is_some();

/// The worker a record of hash `h` goes to (`me` under [`ROUTE_LOCAL_EXPERIMENT`]).
#[inline(always)]
fn route(h: u64, me: usize, workers: usize) -> usize {
    if ROUTE_LOCAL_EXPERIMENT {
        me
    } else {
        worker_of(h, workers)
    }
}

/// A column reserved for a whole chunk was full: `ExactSizeIterator::len` was wrong.
#[cold]
#[inline(never)]
fn full_column() -> ! {
    panic!("the keyed router's input had more items than its length said")
}

/// A keyed channel as the worker loop holds it.
pub(crate) type KeyChannel<K, V> = Rc<RefCell<Channel<KeyBatch<K, V>>>>;

/// Routes keyed items to `stable_hash(key) % workers`: the local share straight to the
/// step with its hash, the rest staged in the channel.
pub(crate) struct KeyRouter<K, V> {
    channel: KeyChannel<K, V>,
    target: Rc<RefCell<dyn KeyedInput<K, V>>>,
    local: Vec<(u64, K, V)>,
    /// Plain keys, while a batch is routed: one column per worker (`push_plain`).
    parts: Vec<Vec<(u64, K, V)>>,
}

impl<K: Key, V: Data> KeyRouter<K, V> {
    /// The router, and the channel the worker loop drives.
    pub(crate) fn new(
        links: Links<KeyBatch<K, V>>,
        target: Rc<RefCell<dyn KeyedInput<K, V>>>,
    ) -> (Self, KeyChannel<K, V>) {
        let inbound = target.clone();
        let channel = Rc::new(RefCell::new(Channel::new(
            links,
            Box::new(move |epoch, batch| inbound.borrow_mut().push_remote(epoch, batch)),
        )));
        let router = KeyRouter {
            channel: channel.clone(),
            target,
            local: Vec::new(),
            parts: Vec::new(),
        };
        (router, channel)
    }

    /// Routes a batch.
    #[inline]
    pub(crate) fn push(&mut self, epoch: Epoch, items: impl ExactSizeIterator<Item = (K, V)>) {
        if !K::SHIP_BYTES {
            return self.push_plain(epoch, items);
        }
        {
            let mut ch = self.channel.borrow_mut();
            let (me, n) = (ch.me(), ch.workers());
            // Every peer's batch at this epoch, checked once here rather than per item.
            ch.open(epoch);
            for (k, v) in items {
                // With several workers the routing hash is also the table's (see
                // `Key::table_hash`): one hash per record.
                let h = k.stable_hash();
                let to = route(h, me, n);
                if to == me {
                    self.local.push((h, k, v));
                } else {
                    let batch = ch.opened(to);
                    batch.push(h, k, v);
                    if batch.len() >= BATCH {
                        ch.send_staged(to);
                    }
                }
            }
        }
        self.deliver_local(epoch);
    }

    /// Routes a batch of plain keys: each item is pushed into its worker's column,
    /// indexed by the worker (this worker's local share, or a peer's staged batch, whose
    /// column is borrowed for the batch), with no branch on whether it stays: that
    /// branch goes either way at random, and mispredicted it was a quarter of a `-w2`
    /// router's time. A staged batch is sent once the batch is routed, if full, so it
    /// can hold up to one input batch more than `BATCH` items.
    #[inline]
    fn push_plain(&mut self, epoch: Epoch, items: impl ExactSizeIterator<Item = (K, V)>) {
        {
            let mut ch = self.channel.borrow_mut();
            let (me, n) = (ch.me(), ch.workers());
            ch.open(epoch);
            let parts = &mut self.parts;
            parts.resize_with(n, Vec::new);
            std::mem::swap(&mut parts[me], &mut self.local);
            for (to, part) in parts.iter_mut().enumerate().filter(|(to, _)| *to != me) {
                std::mem::swap(part, &mut ch.opened(to).items);
            }
            let mut items = items;
            while items.len() > 0 {
                // Every column has room for the whole chunk, and the loop says so before
                // each push (`full_column` never returns): the push then has no growth
                // call, around which the key and value were spilled to the stack.
                let chunk = items.len().min(BATCH);
                for part in parts.iter_mut() {
                    part.reserve(chunk);
                }
                for (k, v) in items.by_ref().take(chunk) {
                    // With several workers the routing hash is also the table's: one
                    // hash per record.
                    let h = k.stable_hash();
                    let part = &mut parts[route(h, me, n)];
                    if part.len() == part.capacity() {
                        full_column();
                    }
                    part.push((h, k, v));
                }
            }
            for (to, part) in parts.iter_mut().enumerate().filter(|(to, _)| *to != me) {
                std::mem::swap(part, &mut ch.opened(to).items);
                ch.staged(to);
            }
            std::mem::swap(&mut parts[me], &mut self.local);
        }
        self.deliver_local(epoch);
    }

    /// Applies this worker's share of the batch just routed.
    #[inline]
    fn deliver_local(&mut self, epoch: Epoch) {
        if !self.local.is_empty() {
            self.target.borrow_mut().push_local(epoch, &mut self.local);
            self.local.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::epoch::EOF_EPOCH;
    use crate::base::park::Shared;
    use crate::exchange::ChannelIo;
    use crate::transport::threads::mesh;
    use std::sync::Arc;

    #[derive(Default)]
    struct Recorder {
        local: Vec<(u64, String, u32)>,
        remote: Vec<(u64, String, u32)>,
    }

    impl KeyedInput<String, u32> for Recorder {
        fn push_pairs(&mut self, _e: Epoch, _b: &mut Vec<(String, u32)>) {
            unreachable!("two workers")
        }
        fn push_columns(&mut self, _e: Epoch, _k: &mut Vec<String>, _v: &mut Vec<u32>) {
            unreachable!("two workers")
        }
        fn push_local(&mut self, _e: Epoch, items: &mut Vec<(u64, String, u32)>) {
            self.local.append(items);
        }
        fn push_remote(&mut self, _e: Epoch, b: &mut KeyBatch<String, u32>) {
            assert!(b.items.is_empty(), "strings travel as bytes");
            b.drain(|h, k, v| {
                assert!(matches!(k, WireKey::Encoded(_)), "strings travel as bytes");
                self.remote.push((h, k.into_owned(), v));
            });
            assert!(b.values.is_empty() && b.bytes.is_empty() && b.ends.is_empty());
        }
    }

    proptest::proptest! {
        /// The mask for power-of-two counts routes exactly as the modulo does.
        #[test]
        fn worker_of_is_the_hash_modulo_the_workers(h in proptest::prelude::any::<u64>(),
                                                    n in 1usize..=130) {
            proptest::prop_assert_eq!(worker_of(h, n) as u64, h % n as u64);
        }
    }

    #[test]
    fn a_batch_splits_anywhere_into_pieces_that_keep_its_order() {
        use crate::exchange::Batch;
        let want: Vec<(String, u32)> = (0..7).map(|i| ("k".repeat(i + 1), i as u32)).collect();
        for at in 0..=7 {
            // Keys shipped as bytes: ends are offsets into the tail's own bytes.
            let mut b = KeyBatch::<String, u32>::new();
            for (k, i) in &want {
                b.push(k.stable_hash(), k.clone(), *i);
            }
            let mut tail = b.split_off(at);
            assert_eq!((b.len(), tail.len()), (at, 7 - at));
            let mut got = Vec::new();
            for piece in [&mut b, &mut tail] {
                piece.drain(|h, k, v| {
                    let k = k.into_owned();
                    assert_eq!(h, k.stable_hash());
                    got.push((k, v));
                });
            }
            assert_eq!(got, want, "split at {at}");
        }
        // Plain keys, and a plain batch.
        let mut p = KeyBatch::<u64, u64>::new();
        for i in 0..5u64 {
            p.push(i.stable_hash(), i, i * 10);
        }
        let t = p.split_off(2);
        assert_eq!(p.items.iter().map(|x| x.1).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(
            t.items.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        let mut v: Vec<u8> = vec![1, 2, 3];
        assert_eq!(Batch::split_off(&mut v, 1), vec![2, 3]);
        assert_eq!(v, vec![1]);
    }

    #[test]
    fn keys_route_by_hash_and_strings_travel_as_bytes() {
        let shared = Arc::new(Shared::new(2));
        let mut eps = mesh::<KeyBatch<String, u32>>(2, 8);
        let ep1 = eps.pop().unwrap();
        let ep0 = eps.pop().unwrap();
        let r0 = Rc::new(RefCell::new(Recorder::default()));
        let r1 = Rc::new(RefCell::new(Recorder::default()));
        let (mut x0, c0) = KeyRouter::new(Links::new(0, ep0, shared.clone()), r0.clone());
        let (_x1, c1) = KeyRouter::new(Links::new(1, ep1, shared), r1.clone());
        let mut batch: Vec<(String, u32)> = (0..100).map(|i| (format!("k{i}"), i)).collect();
        x0.push(1, batch.drain(..));
        c0.borrow_mut().advance_local(EOF_EPOCH);
        c1.borrow_mut().drain();
        let (r0, r1) = (r0.borrow(), r1.borrow());
        assert_eq!(r0.local.len() + r1.remote.len(), 100);
        assert!(!r0.local.is_empty() && !r1.remote.is_empty());
        for (h, k, _) in r0.local.iter().chain(r1.remote.iter()) {
            assert_eq!(*h, k.stable_hash());
        }
        assert!(r0.local.iter().all(|(h, _, _)| worker_of(*h, 2) == 0));
        assert!(r1.remote.iter().all(|(h, _, _)| worker_of(*h, 2) == 1));
        // Per-sender order is kept.
        let vals: Vec<u32> = r1.remote.iter().map(|x| x.2).collect();
        assert!(vals.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(c1.borrow().remote_frontier(), EOF_EPOCH);
    }
}
