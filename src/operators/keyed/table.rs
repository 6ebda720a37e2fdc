//! The per-worker instance of a keyed step: its state table and the per-record apply
//! path, end of stream, resume, and the runtime's entry points (`KeyedInput` for the
//! records the keyed exchange hands over, `Activation` for frontiers and timers).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashTable;

use super::marks::SlotMarks;
use super::out::KeyedOut;
use super::owned;
use super::snapshots::Snapshots;
use super::timers::Timers;
use super::{push_keyed, push_keyed_owned, KeyedLogic, EMIT_CHUNK};
use crate::dataflow::Key;
use crate::error::Error;
use crate::exchange::keyed::{KeyBatch, KeyedInput, WireKey};
use crate::operators::stateful::Retention;
use crate::recovery::KeyRows;
use crate::runtime::build::Activation;
use crate::runtime::progress::{Epoch, EOF_EPOCH};
use crate::runtime::push::ExchangeData;

/// A key's state in a keyed step's table. The key's hash is not kept: the table
/// recomputes it only when it grows, and a smaller slot keeps more of the table in cache.
/// `marks` are the snapshot flags, zero bytes without recovery (`marks.rs`).
pub(super) struct Slot<K, S, M> {
    pub(super) key: K,
    pub(super) state: S,
    pub(super) marks: M,
}

/// The per-worker instance of a keyed step. Its table is indexed by the keys' table hash
/// with one worker, and with several by their stable hash, which the router computed
/// once per record and hands over with it ([`hash_of`]).
pub(super) struct KeyedOp<K, V, L: KeyedLogic<V>, O, M> {
    pub(super) logic: Arc<L>,
    pub(super) table: HashTable<Slot<K, L::State, M>>,
    /// Only with a recovery directory.
    pub(super) snaps: Option<Snapshots<K, V>>,
    /// Armed notification per key.
    pub(super) timers: Timers<K>,
    /// The run has one worker: the table is indexed by `Key::table_hash` (see
    /// [`hash_of`]).
    pub(super) alone: bool,
    /// Where emissions go: with their keys, or as values into a fused `key_rm`.
    pub(super) out: O,
    pub(super) emit: Vec<L::Out>,
    pub(super) _v: PhantomData<fn(V)>,
}

/// The hash of `key` in a state table: with one worker nothing is routed and the table
/// uses the cheap `Key::table_hash`; with several it uses the stable hash the router
/// computed anyway (and a peer's batch carries, or its key bytes give).
#[inline(always)]
pub(super) fn hash_of<K: Key>(key: &K, alone: bool) -> u64 {
    if alone {
        key.table_hash()
    } else {
        key.stable_hash()
    }
}

/// The entry points that call [`KeyedOp::apply`] (its `SITE`).
const PAIRS: u8 = 0;
const COLUMNS: u8 = 1;
const LOCAL: u8 = 2;
const REMOTE: u8 = 3;
pub(super) const RECOVERY_SITE: u8 = 4;

/// A key as the table is probed with: a value, or (from a peer) its encoding.
pub(super) trait Probe<K> {
    /// True if this is `key`.
    fn matches(&self, key: &K) -> bool;
    fn into_owned(self) -> K;
}

impl<K: Key> Probe<K> for K {
    #[inline(always)]
    fn matches(&self, key: &K) -> bool {
        key.same(self)
    }
    #[inline(always)]
    fn into_owned(self) -> K {
        self
    }
}

impl<K: Key> Probe<K> for WireKey<'_, K> {
    #[inline(always)]
    fn matches(&self, key: &K) -> bool {
        match self {
            WireKey::Owned(k) => key.same(k),
            WireKey::Encoded(b) => key.eq_encoded(b),
        }
    }
    #[inline(always)]
    fn into_owned(self) -> K {
        WireKey::into_owned(self)
    }
}

/// Empties `table` into a list in key order. Byte-string keys are compared by their
/// order prefixes first: for short strings one integer comparison instead of a `memcmp`
/// call.
fn sorted_by_key<K: Key, S, M>(table: &mut HashTable<Slot<K, S, M>>) -> Vec<Slot<K, S, M>> {
    if !K::ORDER_PREFIX {
        let mut all: Vec<Slot<K, S, M>> = table.drain().collect();
        all.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        return all;
    }
    let mut all: Vec<(u64, Slot<K, S, M>)> =
        table.drain().map(|s| (s.key.order_prefix(), s)).collect();
    all.sort_unstable_by(|(pa, a), (pb, b)| pa.cmp(pb).then_with(|| a.key.cmp(&b.key)));
    all.into_iter().map(|(_, s)| s).collect()
}

/// Inserts a new key's slot.
#[cold]
fn insert_new<K: Key, S, M>(
    table: &mut HashTable<Slot<K, S, M>>,
    hash: u64,
    slot: Slot<K, S, M>,
    alone: bool,
) -> &mut Slot<K, S, M> {
    table
        .insert_unique(hash, slot, |s| hash_of(&s.key, alone))
        .into_mut()
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>, O: KeyedOut<K, L::Out>, M: SlotMarks>
    KeyedOp<K, V, L, O, M>
{
    /// The table hash of `key` in this run.
    #[inline(always)]
    pub(super) fn hash_of(&self, key: &K) -> u64 {
        hash_of(key, self.alone)
    }

    /// Applies one value to `key` (whose hash in this table is `hash`), building the key's
    /// state if it is new. `RECOVERY` is whether the step has a recovery directory
    /// (`snaps` is set): decided once per batch, so the per-record path of a run
    /// without recovery has no snapshot bookkeeping in it.
    ///
    /// `SITE` tells the calling entry points apart: each then has its own copy of the
    /// table probe, called from one place only, which the compiler inlines (one copy
    /// shared by several callers stays out of line, a call per record).
    #[inline(always)]
    pub(super) fn apply<const RECOVERY: bool, const SITE: u8>(
        &mut self,
        epoch: Epoch,
        hash: u64,
        key: impl Probe<K>,
        value: V,
    ) {
        if L::BY_VALUE {
            self.on_slot_owned::<RECOVERY, SITE, ()>(hash, key, |logic, state, key, emit, out| {
                (logic.on_item_keyed_owned(state, value, key, emit, out), ())
            });
        } else {
            self.on_slot::<RECOVERY, SITE>(hash, key, |logic, slot, emit, out| {
                logic.on_item_keyed(&mut slot.state, value, &slot.key, emit, out)
            });
        }
        // A logic silent on items emitted nothing here.
        if !L::SILENT_ON_ITEM && self.out.pending() >= EMIT_CHUNK {
            self.out.flush(epoch);
        }
    }

    /// [`apply`](Self::apply) for a [`ONE_TO_ONE`](KeyedLogic::ONE_TO_ONE) logic without
    /// recovery: returns the item's output instead of emitting it.
    #[inline(always)]
    fn apply_one<const SITE: u8>(&mut self, hash: u64, key: impl Probe<K>, value: V) -> L::Out {
        self.on_slot_owned::<false, SITE, L::Out>(hash, key, |logic, state, _, _, _| {
            logic.on_item_one(state, value)
        })
    }

    /// Finds `key`'s slot (inserting a fresh state for a new key), runs `f` on it, then
    /// does what its retention asks: the snapshot mark, the key's timer, a discard.
    #[inline(always)]
    fn on_slot<const RECOVERY: bool, const SITE: u8>(
        &mut self,
        hash: u64,
        key: impl Probe<K>,
        f: impl FnOnce(&L, &mut Slot<K, L::State, M>, &mut Vec<L::Out>, &mut O) -> Retention,
    ) {
        // A lookup first, an insert only for a new key: cheaper than `entry`, which
        // checks for room to insert on every call.
        let found = self.table.find_mut(hash, |s| key.matches(&s.key));
        let slot = match found {
            Some(slot) => slot,
            None => {
                let slot = Slot {
                    key: key.into_owned(),
                    state: self.logic.build(),
                    marks: M::default(),
                };
                insert_new(&mut self.table, hash, slot, self.alone)
            }
        };
        let retention = f(&self.logic, slot, &mut self.emit, &mut self.out);
        if RECOVERY && !slot.marks.dirty() {
            slot.marks.set_dirty(true);
            let snaps = self.snaps.as_mut().expect("RECOVERY only with snapshots");
            snaps.dirty.push(slot.key.clone());
        }
        if L::TIMERS {
            let at = match retention {
                Retention::Retain => self.logic.deadline(&slot.state),
                Retention::Discard => None,
            };
            self.timers.arm(&slot.key, at);
        }
        if retention == Retention::Discard {
            // A second lookup, only for a discard: the common path keeps no entry.
            let this: *const Slot<K, L::State, M> = slot;
            if let Ok(entry) = self.table.find_entry(hash, |s| std::ptr::eq(s, this)) {
                entry.remove();
            }
        }
    }

    /// [`on_slot`](Self::on_slot) for a [`BY_VALUE`](KeyedLogic::BY_VALUE) logic: `f`
    /// gets the key's state by value (`None` for a new key) and returns the next one,
    /// which is stored, or, if `None`, the key is discarded (a new key then never enters
    /// the table).
    #[inline(always)]
    fn on_slot_owned<const RECOVERY: bool, const SITE: u8, R>(
        &mut self,
        hash: u64,
        key: impl Probe<K>,
        f: impl FnOnce(&L, Option<L::State>, &K, &mut Vec<L::Out>, &mut O) -> (Option<L::State>, R),
    ) -> R {
        let (logic, emit, out) = (&*self.logic, &mut self.emit, &mut self.out);
        let (slot, r) = match self.table.find_entry(hash, |s| key.matches(&s.key)) {
            Ok(mut entry) => {
                if RECOVERY {
                    let slot = entry.get_mut();
                    if !slot.marks.dirty() {
                        slot.marks.set_dirty(true);
                        let snaps = self.snaps.as_mut().expect("RECOVERY only with snapshots");
                        snaps.dirty.push(slot.key.clone());
                    }
                }
                owned::update(entry, |key, state| f(logic, Some(state), key, emit, out))
            }
            Err(_) => {
                let key = key.into_owned();
                let (next, r) = f(logic, None, &key, emit, out);
                let mut marks = M::default();
                if RECOVERY {
                    // Listed even if discarded at once, as a key of `on_slot` is.
                    marks.set_dirty(true);
                    let snaps = self.snaps.as_mut().expect("RECOVERY only with snapshots");
                    snaps.dirty.push(key.clone());
                }
                let slot = next.map(|state| {
                    let slot = Slot { key, state, marks };
                    insert_new(&mut self.table, hash, slot, self.alone)
                });
                (slot, r)
            }
        };
        if L::TIMERS {
            if let Some(slot) = slot {
                let at = self.logic.deadline(&slot.state);
                self.timers.arm(&slot.key, at);
            }
        }
        r
    }

    /// Starts a batch of callbacks: the logic's `begin_batch`, and the time that new
    /// timers are measured from.
    #[inline]
    pub(super) fn begin_batch(&mut self) {
        self.logic.begin_batch();
        if L::TIMERS {
            self.timers.set_now(Instant::now());
        }
    }

    /// Ends a batch of callbacks: the logic's `end_batch`, and what they emitted goes
    /// downstream.
    #[inline]
    pub(super) fn end_batch(&mut self, epoch: Epoch) {
        self.logic.end_batch();
        self.out.flush(epoch);
    }

    pub(super) fn eof(&mut self, epoch: Epoch) {
        // Key order, as Bytewax does within an activation: deterministic output.
        let all = sorted_by_key(&mut self.table);
        self.begin_batch();
        for slot in all {
            let Slot { key, state, marks } = slot;
            // The key's state after end of stream, `None` if the key is done.
            let after = if L::BY_VALUE {
                self.logic.on_eof_owned(state, &mut self.emit)
            } else {
                let mut state = state;
                match self.logic.on_eof(&mut state, &mut self.emit) {
                    Retention::Retain => Some(state),
                    Retention::Discard => None,
                }
            };
            if let Some(snaps) = self.snaps.as_ref().filter(|_| !L::EOF_KEEPS_STATE) {
                // The state after end of stream, so that a run resumed after it does
                // not apply `on_eof` twice.
                match &after {
                    Some(state) => snaps.write(&*self.logic, epoch, &key, Some(state)),
                    None if marks.saved() => snaps.write::<L>(&*self.logic, epoch, &key, None),
                    None => {}
                }
            }
            push_keyed_owned(key, &mut self.emit, &mut self.out);
            if self.out.pending() >= EMIT_CHUNK {
                self.out.flush(epoch);
            }
        }
        self.end_batch(epoch);
        self.timers.clear();
        if let Some(snaps) = &mut self.snaps {
            // Keys discarded earlier in the last epoch.
            let dirty = std::mem::take(&mut snaps.dirty);
            for k in dirty {
                snaps.write::<L>(&*self.logic, epoch, &k, None);
            }
        }
    }
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>, O: KeyedOut<K, L::Out>, M: SlotMarks>
    KeyedInput<K, V> for KeyedOp<K, V, L, O, M>
{
    fn push_pairs(&mut self, epoch: Epoch, batch: &mut Vec<(K, V)>) {
        if self.maps_batches() {
            let items = batch.drain(..).map(|(k, v)| (k.table_hash(), k, v));
            return self.map_items::<PAIRS>(epoch, items);
        }
        self.apply_unhashed::<PAIRS>(epoch, batch.drain(..));
    }

    fn push_columns(&mut self, epoch: Epoch, keys: &mut Vec<K>, values: &mut Vec<V>) {
        if self.maps_batches() && same_layout::<V, L::Out>() {
            return self.map_columns(epoch, keys, values);
        }
        self.apply_unhashed::<COLUMNS>(epoch, keys.drain(..).zip(values.drain(..)));
    }

    fn push_local(&mut self, epoch: Epoch, items: &mut Vec<(u64, K, V)>) {
        if self.snaps.is_some() {
            return self.recovering(epoch, items.drain(..));
        }
        if self.maps_batches() {
            return self.map_items::<LOCAL>(epoch, items.drain(..));
        }
        self.begin_batch();
        for (h, k, v) in items.drain(..) {
            self.apply::<false, LOCAL>(epoch, h, k, v);
        }
        self.end_batch(epoch);
    }

    fn push_remote(&mut self, epoch: Epoch, batch: &mut KeyBatch<K, V>) {
        if self.snaps.is_some() {
            return self.remote_recovering(epoch, batch);
        }
        if !K::SHIP_BYTES {
            // The same layout as the local share.
            return self.push_local(epoch, &mut batch.items);
        }
        self.begin_batch();
        batch.drain_encoded(|h, k, v| self.apply::<false, REMOTE>(epoch, h, k, v));
        self.end_batch(epoch);
    }
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>, O: KeyedOut<K, L::Out>, M: SlotMarks>
    KeyedOp<K, V, L, O, M>
{
    /// The one-worker entry points: items without their hash, which is the table hash
    /// made here. Inlined into each caller with its own `SITE`.
    #[inline(always)]
    fn apply_unhashed<const SITE: u8>(
        &mut self,
        epoch: Epoch,
        items: impl Iterator<Item = (K, V)>,
    ) {
        debug_assert!(self.alone, "items come in unhashed with one worker only");
        if self.snaps.is_some() {
            return self.recovering(epoch, items.map(|(k, v)| (k.table_hash(), k, v)));
        }
        self.begin_batch();
        for (k, v) in items {
            let h = k.table_hash();
            self.apply::<false, SITE>(epoch, h, k, v);
        }
        self.end_batch(epoch);
    }
}

/// True if a `Vec<A>`'s allocation can hold `B`s, capacity for capacity.
const fn same_layout<A, B>() -> bool {
    std::mem::size_of::<A>() == std::mem::size_of::<B>()
        && std::mem::align_of::<A>() == std::mem::align_of::<B>()
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>, O: KeyedOut<K, L::Out>, M: SlotMarks>
    KeyedOp<K, V, L, O, M>
{
    /// True if this step turns a batch of items into its batch of outputs in one pass:
    /// a one-to-one logic ([`KeyedLogic::ONE_TO_ONE`]) fused into a `key_rm`
    /// ([`KeyedOut::TAKES_VALUES`]), without recovery (which may hold items back).
    #[inline(always)]
    fn maps_batches(&self) -> bool {
        L::ONE_TO_ONE && O::TAKES_VALUES && self.snaps.is_none()
    }

    /// [`maps_batches`](Self::maps_batches): the outputs of `items`, in order, are
    /// written into one buffer (reserved once: no capacity check per record) that goes
    /// downstream whole.
    #[inline(always)]
    fn map_items<const SITE: u8>(
        &mut self,
        epoch: Epoch,
        items: impl Iterator<Item = (u64, K, V)>,
    ) {
        self.begin_batch();
        // The scratch buffer of emissions, unused by a one-to-one logic.
        let mut outs = std::mem::take(&mut self.emit);
        outs.extend(items.map(|(h, k, v)| self.apply_one::<SITE>(h, k, v)));
        self.out.push_values(epoch, &mut outs);
        self.emit = outs;
        self.end_batch(epoch);
    }

    /// A one-to-one logic fused into a `key_rm`, with one worker, no recovery, and an
    /// output laid out as its input: each value is replaced by its output in the same
    /// buffer, which goes downstream whole (no push per record) and comes back empty to
    /// the caller for its next batch. std's `collect` from a `vec::IntoIter` writes into
    /// the source's allocation when the layouts match; were it not to, this would
    /// allocate a buffer per batch, never give a different result. The keys are taken
    /// whole too (their buffer is freed here and the caller's next `extend` allocates
    /// one of the batch's size): two `vec::IntoIter`s zip on one index, where draining
    /// the keys cost a second bound check and a spill per record.
    #[inline(always)]
    fn map_columns(&mut self, epoch: Epoch, keys: &mut Vec<K>, values: &mut Vec<V>) {
        debug_assert!(self.alone, "columns come with one worker only");
        self.begin_batch();
        let mut outs: Vec<L::Out> = std::mem::take(values)
            .into_iter()
            .zip(std::mem::take(keys))
            .map(|(v, k)| self.apply_one::<COLUMNS>(k.table_hash(), k, v))
            .collect();
        self.out.push_values(epoch, &mut outs);
        self.end_batch(epoch);
        outs.clear();
        *values = outs
            .into_iter()
            .map(|_| unreachable!("the outputs were pushed"))
            .collect();
    }
}

// The entry points with recovery on, out of line: they hold items of later epochs and
// mark keys dirty. Kept apart so that the path without recovery stays small enough for
// the compiler to inline the table probe into it.
impl<K: Key, V: ExchangeData, L: KeyedLogic<V>, O: KeyedOut<K, L::Out>, M: SlotMarks>
    KeyedOp<K, V, L, O, M>
{
    #[inline(never)]
    fn recovering(&mut self, epoch: Epoch, items: impl Iterator<Item = (u64, K, V)>) {
        if self.gated(epoch) {
            self.hold(epoch).extend(items);
            return;
        }
        self.begin_batch();
        for (h, k, v) in items {
            self.apply::<true, RECOVERY_SITE>(epoch, h, k, v);
        }
        self.end_batch(epoch);
    }

    #[inline(never)]
    fn remote_recovering(&mut self, epoch: Epoch, batch: &mut KeyBatch<K, V>) {
        if self.gated(epoch) {
            let held = self.hold(epoch);
            batch.drain(|h, k, v| held.push((h, k.into_owned(), v)));
            return;
        }
        self.begin_batch();
        batch.drain(|h, k, v| self.apply::<true, RECOVERY_SITE>(epoch, h, k, v));
        self.end_batch(epoch);
    }
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>, O: KeyedOut<K, L::Out>, M: SlotMarks> Activation
    for KeyedOp<K, V, L, O, M>
{
    fn on_frontier(&mut self, old: Epoch, new: Epoch) {
        if self.snaps.is_some() {
            self.advance(old, new);
        } else if new == EOF_EPOCH {
            // Emissions at end of stream carry the last epoch that was still open.
            self.eof(old);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn live_keys(&self) -> Option<usize> {
        Some(self.table.len())
    }

    fn windows(&self) -> Option<(u64, Option<i64>)> {
        if !L::WINDOWED {
            return None;
        }
        // Read every 100 ms with the API on only: one pass over this worker's keys.
        let (mut open, mut watermark) = (0u64, None::<i64>);
        for slot in self.table.iter() {
            let (n, wm) = self.logic.window_gauge(&slot.state);
            open += n as u64;
            watermark = watermark.max(wm);
        }
        Some((open, watermark))
    }

    fn on_wake(&mut self, now: Instant, epoch: Epoch) {
        // Fire only what was due when this wake began: a logic whose `notify_at` stays
        // in the past is notified once per scheduling round, not in a tight loop that
        // starves the input.
        self.begin_batch();
        for k in self.timers.take_due(now) {
            let h = self.hash_of(&k);
            let Ok(mut entry) = self.table.find_entry(h, |s| s.key == k) else {
                continue;
            };
            let retention = self
                .logic
                .on_notify(&mut entry.get_mut().state, &mut self.emit);
            if let Some(snaps) = &mut self.snaps {
                let slot = entry.get_mut();
                if !slot.marks.dirty() {
                    slot.marks.set_dirty(true);
                    snaps.dirty.push(k.clone());
                }
            }
            push_keyed(&k, &mut self.emit, &mut self.out);
            match retention {
                Retention::Retain => {
                    let at = self.logic.deadline(&entry.get().state);
                    self.timers.arm(&k, at);
                }
                Retention::Discard => {
                    entry.remove();
                }
            }
        }
        self.end_batch(epoch);
    }
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>, O: KeyedOut<K, L::Out>, M: SlotMarks>
    KeyedOp<K, V, L, O, M>
{
    /// Loads the keys this worker resumes with.
    pub(super) fn resume(&mut self, step_id: &str, saved: &KeyRows) -> crate::error::Result<()> {
        let alone = self.alone;
        self.table.reserve(saved.len(), |s| hash_of(&s.key, alone));
        for (kb, sb) in saved.iter() {
            let bad = |what: String| Error::in_step(step_id.to_string(), what);
            let key = K::decode(kb).ok_or_else(|| {
                bad(format!(
                    "a saved key ({} bytes) does not decode as this step's key type; was the flow changed?",
                    kb.len()
                ))
            })?;
            let state = self
                .logic
                .decode(sb)
                .map_err(|e| bad(format!("key {key:?}: {e}")))?;
            let hash = hash_of(&key, alone);
            if L::TIMERS {
                let at = self.logic.deadline(&state);
                self.timers.arm(&key, at);
            }
            self.table.insert_unique(
                hash,
                Slot {
                    key,
                    state,
                    marks: {
                        let mut m = M::default();
                        m.set_saved(true);
                        m
                    },
                },
                |s| hash_of(&s.key, alone),
            );
        }
        Ok(())
    }
}
