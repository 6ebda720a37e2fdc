//! Stateful operators: per-key state on the worker that owns the key.
//!
//! All of them run on one engine, `KeyedOp`: a hash map from key to state, values
//! applied in arrival order (so per-key order is kept), optional system-time
//! notifications per key, and end-of-stream handling in key order. Each operator is a
//! small `KeyedLogic` over that engine, monomorphised, so `count_final` costs one hash
//! lookup and one increment per item.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashTable;
use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_64;

use crate::dataflow::{ChannelId, Key, Stream, StreamId};
use crate::error::Error;
use crate::exchange::keyed::{KeyBatch, KeyedInput};
use crate::operators::stateless::transform;
use crate::recovery::{encode_into, kind, KeyRows, Rows};
use crate::runtime::build::{fail, Activation, BuildCtx};
use crate::runtime::progress::{Epoch, EOF_EPOCH};
use crate::runtime::push::{Data, ExchangeData, Tee};

/// Whether a key's state is kept after a callback (Bytewax's `RETAIN` / `DISCARD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep the state for the next value.
    Retain,
    /// Drop the state; the next value for this key starts from scratch.
    Discard,
}

/// Per-key logic for [`Stream::stateful`], with Bytewax's lifecycle.
///
/// A logic is built (by the builder passed to `stateful`) when its key is first seen,
/// with the key's resume state if the run resumed from a snapshot. Values of the key are
/// applied in arrival order with [`on_item`](Self::on_item); a time returned by
/// [`notify_at`](Self::notify_at) (asked after every callback) fires
/// [`on_notify`](Self::on_notify) once, even if no more data arrives; at end of stream
/// [`on_eof`](Self::on_eof) runs for every live key, in key order. Each callback pushes
/// what it emits onto `emit` and says whether to keep the state.
///
/// ```
/// use waxfast::operators::{Retention, StatefulLogic};
///
/// /// Emits the running total per key; forgets the key when the total hits zero.
/// struct Sum(i64);
/// impl StatefulLogic<i64> for Sum {
///     type Out = i64;
///     type State = i64;
///     fn on_item(&mut self, value: i64, emit: &mut Vec<i64>) -> Retention {
///         self.0 += value;
///         emit.push(self.0);
///         if self.0 == 0 { Retention::Discard } else { Retention::Retain }
///     }
///     fn snapshot(&self) -> i64 { self.0 }
/// }
/// ```
pub trait StatefulLogic<V>: Send + 'static {
    /// What the logic emits (downstream items are `(key, Out)`).
    type Out: Data;
    /// What [`snapshot`](Self::snapshot) returns and the builder is given on resume.
    /// Saved with serde (postcard) when the run has a recovery directory.
    type State: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static;

    /// Applies one value.
    fn on_item(&mut self, value: V, emit: &mut Vec<Self::Out>) -> Retention;

    /// Called once the time from [`notify_at`](Self::notify_at) has passed.
    fn on_notify(&mut self, _emit: &mut Vec<Self::Out>) -> Retention {
        Retention::Retain
    }

    /// Called at end of stream.
    fn on_eof(&mut self, _emit: &mut Vec<Self::Out>) -> Retention {
        Retention::Retain
    }

    /// When to call [`on_notify`](Self::on_notify) (system time); `None` for never.
    fn notify_at(&self) -> Option<Instant> {
        None
    }

    /// The state to save at the end of an epoch.
    fn snapshot(&self) -> Self::State;
}

/// The engine's view of an operator: shared (immutable) logic over per-key state.
pub(crate) trait KeyedLogic<V>: Send + Sync + 'static {
    type State: 'static;
    type Out: Data;
    /// Whether `notify_at` can ever return a time (skips timer bookkeeping if not).
    const TIMERS: bool;
    /// Why this logic cannot be snapshotted, if it cannot (a run with recovery refuses
    /// it before any item).
    const NO_SNAPSHOTS: Option<&'static str> = None;
    /// True if `on_eof` never changes nor discards a state (then end of stream writes
    /// no snapshot rows: the keys' last rows stand).
    const EOF_KEEPS_STATE: bool = false;

    fn build(&self) -> Self::State;
    /// Appends a key's state, encoded, for a snapshot.
    fn encode(&self, state: &Self::State, out: &mut Vec<u8>) -> Result<(), String>;
    /// Rebuilds a key's state from what [`encode`](Self::encode) wrote.
    fn decode(&self, bytes: &[u8]) -> Result<Self::State, String>;
    fn on_item(&self, state: &mut Self::State, value: V, emit: &mut Vec<Self::Out>) -> Retention;
    /// [`on_item`](Self::on_item), with what it emits appended to `out` under `key`
    /// (`emit` is scratch space, left empty). A logic that emits directly overrides it
    /// to skip the scratch buffer: this is the per-record path of every keyed step.
    #[inline(always)]
    fn on_item_keyed<K: Clone>(
        &self,
        state: &mut Self::State,
        value: V,
        key: &K,
        emit: &mut Vec<Self::Out>,
        out: &mut Vec<(K, Self::Out)>,
    ) -> Retention {
        let retention = self.on_item(state, value, emit);
        push_keyed(key, emit, out);
        retention
    }
    fn on_notify(&self, _state: &mut Self::State, _emit: &mut Vec<Self::Out>) -> Retention {
        Retention::Retain
    }
    fn on_eof(&self, _state: &mut Self::State, _emit: &mut Vec<Self::Out>) -> Retention {
        Retention::Retain
    }
    fn notify_at(&self, _state: &Self::State) -> Option<Instant> {
        None
    }
    /// Called before the step applies a batch of items, fires its due timers or ends
    /// the stream, and [`end_batch`](Self::end_batch) after: the window step reads the
    /// system time once per batch there.
    fn begin_batch(&self) {}
    fn end_batch(&self) {}

    /// For a window step: a key's open windows and its watermark (nanoseconds since
    /// the Unix epoch, `None` before it has one), for the dataflow API's gauges. Only
    /// asked when [`WINDOWED`](Self::WINDOWED) is set.
    fn window_gauge(&self, _state: &Self::State) -> (usize, Option<i64>) {
        (0, None)
    }
    /// True for window steps (see [`window_gauge`](Self::window_gauge)).
    const WINDOWED: bool = false;
}

/// Moves what a callback emitted into `out`, each value beside a clone of `key`.
#[inline(always)]
fn push_keyed<K: Clone, W>(key: &K, emit: &mut Vec<W>, out: &mut Vec<(K, W)>) {
    // Most callbacks emit nothing or one value: take it without a drain.
    match emit.len() {
        0 => {}
        1 => {
            let w = emit.pop().expect("one value");
            out.push((key.clone(), w));
        }
        _ => out.extend(emit.drain(..).map(|w| (key.clone(), w))),
    }
}

/// Largest batch the engine emits at once (end of stream can emit one item per key).
const EMIT_CHUNK: usize = 4096;

/// A key's state in a keyed step's table. The key's stable hash is not kept: the table
/// recomputes it only when it grows, and a smaller slot keeps more of the table in cache.
struct Slot<K, S> {
    key: K,
    state: S,
    /// Changed since the last snapshot (and listed in `Snapshots::dirty`).
    dirty: bool,
    /// Has a saved state (it was resumed, or a snapshot wrote it): a discard of a key
    /// that never had one needs no row.
    saved: bool,
}

/// A keyed step's part in recovery: the epoch gate and the keys to snapshot.
struct Snapshots<K, V> {
    step_id: Arc<str>,
    rows: Rc<RefCell<Rows>>,
    /// The step's input frontier: items of this epoch are applied at once, later ones
    /// wait in `pending` until the frontier reaches them.
    frontier: Epoch,
    pending: BTreeMap<Epoch, Vec<(u64, K, V)>>,
    /// Keys changed since the last snapshot (a key may appear twice).
    dirty: Vec<K>,
}

/// A key as it reaches a keyed step: a value, or a peer's encoding of it.
enum KeyRef<'a, K> {
    Owned(K),
    Encoded(&'a [u8]),
}

/// The per-worker instance of a keyed step. Its table is indexed by the keys' stable
/// hash, which the exchange computed once per record and hands over with it.
struct KeyedOp<K, V, L: KeyedLogic<V>> {
    logic: Arc<L>,
    table: HashTable<Slot<K, L::State>>,
    /// Only with a recovery directory.
    snaps: Option<Snapshots<K, V>>,
    /// Armed notification per key.
    timers: Timers<K>,
    out: Tee<(K, L::Out)>,
    emit: Vec<L::Out>,
    out_buf: Vec<(K, L::Out)>,
    _v: PhantomData<fn(V)>,
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>> KeyedOp<K, V, L> {
    /// Applies one value to `key` (whose stable hash is `hash`), building the key's
    /// state if it is new.
    #[inline(always)]
    fn apply(&mut self, epoch: Epoch, hash: u64, key: KeyRef<'_, K>, value: V) {
        // A lookup first, an insert only for a new key: cheaper than `entry`, which
        // checks for room to insert on every call.
        let found = match &key {
            KeyRef::Owned(k) => self.table.find_entry(hash, |s| s.key.same(k)),
            KeyRef::Encoded(b) => self.table.find_entry(hash, |s| s.key.eq_encoded(b)),
        };
        let mut entry = match found {
            Ok(o) => o,
            Err(absent) => absent.into_table().insert_unique(
                hash,
                Slot {
                    key: match key {
                        KeyRef::Owned(k) => k,
                        KeyRef::Encoded(b) => {
                            K::decode(b).expect("a worker of this process encoded this key")
                        }
                    },
                    state: self.logic.build(),
                    dirty: false,
                    saved: false,
                },
                |s| s.key.stable_hash(),
            ),
        };
        let slot = entry.get_mut();
        let retention = self.logic.on_item_keyed(
            &mut slot.state,
            value,
            &slot.key,
            &mut self.emit,
            &mut self.out_buf,
        );
        if let Some(snaps) = &mut self.snaps {
            if !slot.dirty {
                slot.dirty = true;
                snaps.dirty.push(slot.key.clone());
            }
        }
        if L::TIMERS {
            let at = match retention {
                Retention::Retain => self.logic.notify_at(&slot.state),
                Retention::Discard => None,
            };
            self.timers.arm(&slot.key, at);
        }
        if retention == Retention::Discard {
            entry.remove();
        }
        if self.out_buf.len() >= EMIT_CHUNK {
            self.out.push(epoch, &mut self.out_buf);
        }
    }

    fn eof(&mut self, epoch: Epoch) {
        // Key order, as Bytewax does within an activation: deterministic output.
        let mut all: Vec<Slot<K, L::State>> = self.table.drain().collect();
        all.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        self.logic.begin_batch();
        for mut slot in all {
            let retention = self.logic.on_eof(&mut slot.state, &mut self.emit);
            push_keyed(&slot.key, &mut self.emit, &mut self.out_buf);
            if let Some(snaps) = self.snaps.as_ref().filter(|_| !L::EOF_KEEPS_STATE) {
                // The state after end of stream, so that a run resumed after it does
                // not apply `on_eof` twice.
                match retention {
                    Retention::Retain => {
                        snaps.write(&*self.logic, epoch, &slot.key, Some(&slot.state))
                    }
                    Retention::Discard if slot.saved => {
                        snaps.write::<L>(&*self.logic, epoch, &slot.key, None)
                    }
                    Retention::Discard => {}
                }
            }
            if self.out_buf.len() >= EMIT_CHUNK {
                self.out.push(epoch, &mut self.out_buf);
            }
        }
        self.logic.end_batch();
        self.out.push(epoch, &mut self.out_buf);
        self.timers.clear();
        if let Some(snaps) = &mut self.snaps {
            // Keys discarded earlier in the last epoch.
            let dirty = std::mem::take(&mut snaps.dirty);
            for k in dirty {
                snaps.write::<L>(&*self.logic, epoch, &k, None);
            }
        }
    }

    /// Writes the keys changed since the last snapshot, tagged `epoch`.
    fn snapshot(&mut self, epoch: Epoch) {
        let Some(snaps) = &mut self.snaps else {
            return;
        };
        let dirty = std::mem::take(&mut snaps.dirty);
        for k in &dirty {
            let h = k.stable_hash();
            match self.table.find_mut(h, |s| s.key == *k) {
                Some(slot) => {
                    slot.dirty = false;
                    slot.saved = true;
                    snaps.write(&*self.logic, epoch, k, Some(&slot.state));
                }
                None => snaps.write::<L>(&*self.logic, epoch, k, None),
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        snaps.dirty = dirty;
    }

    /// Applies the items that waited for epoch `e`.
    fn apply_pending(&mut self, e: Epoch, items: Vec<(u64, K, V)>) {
        self.logic.begin_batch();
        for (h, k, v) in items {
            self.apply(e, h, KeyRef::Owned(k), v);
        }
        self.logic.end_batch();
        self.out.push(e, &mut self.out_buf);
    }

    /// True if an item of `epoch` must wait for the frontier (recovery only).
    #[inline]
    fn gated(&self, epoch: Epoch) -> bool {
        self.snaps.as_ref().is_some_and(|s| epoch > s.frontier)
    }

    fn hold(&mut self, epoch: Epoch) -> &mut Vec<(u64, K, V)> {
        let snaps = self.snaps.as_mut().expect("gated only with recovery");
        snaps.pending.entry(epoch).or_default()
    }

    /// The input frontier moved from `old` to `new` with recovery on: snapshot what
    /// epoch `old` changed, then apply and snapshot the epochs that waited, in order.
    fn advance(&mut self, old: Epoch, new: Epoch) {
        let snaps = self.snaps.as_mut().expect("advance only with recovery");
        if new == EOF_EPOCH && snaps.pending.is_empty() && !L::EOF_KEEPS_STATE {
            // End of stream right after `old`: `eof` writes every live key, tagged `old`
            // too; only the keys discarded during `old` need rows here.
            let dirty = std::mem::take(&mut snaps.dirty);
            for k in &dirty {
                let h = k.stable_hash();
                if self.table.find(h, |s| s.key == *k).is_none() {
                    snaps.write::<L>(&*self.logic, old, k, None);
                }
            }
            snaps.frontier = new;
            self.eof(old);
            return;
        }
        self.snapshot(old);
        let mut last = old;
        loop {
            let snaps = self.snaps.as_mut().expect("advance only with recovery");
            let Some(entry) = snaps.pending.first_entry() else {
                break;
            };
            let e = *entry.key();
            if e >= new {
                break;
            }
            let items = entry.remove();
            snaps.frontier = e;
            self.apply_pending(e, items);
            self.snapshot(e);
            last = e;
        }
        let snaps = self.snaps.as_mut().expect("advance only with recovery");
        snaps.frontier = new;
        if new == EOF_EPOCH {
            self.eof(last);
        } else if let Some(items) = snaps.pending.remove(&new) {
            self.apply_pending(new, items);
        }
    }
}

impl<K: Key, V> Snapshots<K, V> {
    fn write<L: KeyedLogic<V>>(&self, logic: &L, epoch: Epoch, key: &K, state: Option<&L::State>) {
        let r = self.rows.borrow_mut().push(
            &self.step_id,
            kind::KEY,
            epoch,
            |b| key.encode(b),
            |b| match state {
                Some(s) => logic.encode(s, b).map(|()| true),
                None => Ok(false),
            },
        );
        if let Err(e) = r {
            fail(Error::in_step(
                self.step_id.to_string(),
                format!("cannot snapshot key {key:?}: {e}"),
            ));
        }
    }
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>> KeyedInput<K, V> for KeyedOp<K, V, L> {
    fn push_local(&mut self, epoch: Epoch, items: &mut Vec<(u64, K, V)>) {
        if self.gated(epoch) {
            self.hold(epoch).append(items);
            return;
        }
        self.logic.begin_batch();
        for (h, k, v) in items.drain(..) {
            self.apply(epoch, h, KeyRef::Owned(k), v);
        }
        self.logic.end_batch();
        self.out.push(epoch, &mut self.out_buf);
    }

    fn push_remote(&mut self, epoch: Epoch, batch: &mut KeyBatch<K, V>) {
        let KeyBatch {
            hashes,
            keys,
            ends,
            bytes,
            values,
        } = batch;
        if self.gated(epoch) {
            let held = self.hold(epoch);
            if K::SHIP_BYTES {
                let mut start = 0usize;
                for (&end, v) in ends.iter().zip(values.drain(..)) {
                    let kb = &bytes[start..end as usize];
                    let k = K::decode(kb).expect("a worker of this cluster encoded this key");
                    held.push((xxh3_64(kb), k, v));
                    start = end as usize;
                }
            } else {
                for ((&h, k), v) in hashes.iter().zip(keys.drain(..)).zip(values.drain(..)) {
                    held.push((h, k, v));
                }
            }
            return;
        }
        self.logic.begin_batch();
        if K::SHIP_BYTES {
            let mut start = 0usize;
            for (&end, v) in ends.iter().zip(values.drain(..)) {
                let end = end as usize;
                let kb = &bytes[start..end];
                // The stable hash is by definition XXH3-64 of the canonical bytes.
                self.apply(epoch, xxh3_64(kb), KeyRef::Encoded(kb), v);
                start = end;
            }
        } else {
            for ((&h, k), v) in hashes.iter().zip(keys.drain(..)).zip(values.drain(..)) {
                self.apply(epoch, h, KeyRef::Owned(k), v);
            }
        }
        self.logic.end_batch();
        self.out.push(epoch, &mut self.out_buf);
    }
}

/// Per-key timers: the armed time of each key, and the same times in a min-heap. Arming
/// a key pushes a heap entry without searching for its old one, which stays behind,
/// stale (its time is no longer the key's), until it reaches the top and is dropped: a
/// window step re-arms its key on almost every item, and a `BTreeSet` remove + insert
/// per item was an eighth of its time. The heap is rebuilt when stale entries outnumber
/// live ones, so it stays within about twice the armed keys.
struct Timers<K> {
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
    fn arm(&mut self, key: &K, at: Option<Instant>) {
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
    fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Disarms and returns the keys due at `now`, earliest first.
    fn take_due(&mut self, now: Instant) -> Vec<K> {
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

    fn clear(&mut self) {
        self.deadline.clear();
        self.heap.clear();
    }
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>> Activation for KeyedOp<K, V, L> {
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
        self.logic.begin_batch();
        for k in self.timers.take_due(now) {
            let h = k.stable_hash();
            let Ok(mut entry) = self.table.find_entry(h, |s| s.key == k) else {
                continue;
            };
            let retention = self
                .logic
                .on_notify(&mut entry.get_mut().state, &mut self.emit);
            if let Some(snaps) = &mut self.snaps {
                let slot = entry.get_mut();
                if !slot.dirty {
                    slot.dirty = true;
                    snaps.dirty.push(k.clone());
                }
            }
            push_keyed(&k, &mut self.emit, &mut self.out_buf);
            match retention {
                Retention::Retain => {
                    let at = self.logic.notify_at(&entry.get().state);
                    self.timers.arm(&k, at);
                }
                Retention::Discard => {
                    entry.remove();
                }
            }
        }
        self.logic.end_batch();
        self.out.push(epoch, &mut self.out_buf);
    }
}

/// Builds a keyed step on one worker: an exchange by key into the engine.
fn build_keyed<K: Key, V: ExchangeData, L: KeyedLogic<V>>(
    ctx: &mut BuildCtx,
    logic: Arc<L>,
    chan: ChannelId,
    inp: StreamId,
    out: StreamId,
) -> crate::error::Result<()> {
    if let (Some(why), Some(_)) = (L::NO_SNAPSHOTS, ctx.snapshot_rows()) {
        return Err(Error::in_step(ctx.step_id().to_string(), why));
    }
    let snaps = ctx.snapshot_rows().map(|rows| Snapshots {
        step_id: ctx.step_id_arc(),
        rows,
        frontier: ctx.first_epoch(),
        pending: BTreeMap::new(),
        dirty: Vec::new(),
    });
    let mut op = KeyedOp::<K, V, L> {
        logic,
        table: HashTable::new(),
        snaps,
        timers: Timers::default(),
        out: ctx.take_tee(out),
        emit: Vec::new(),
        out_buf: Vec::new(),
        _v: PhantomData,
    };
    if let Some(saved) = ctx.resume_keys() {
        op.resume(ctx.step_id(), &saved)?;
    }
    let op = Rc::new(RefCell::new(op));
    ctx.keyed_exchange(inp, chan, op.clone());
    ctx.add_activation(op);
    Ok(())
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>> KeyedOp<K, V, L> {
    /// Loads the keys this worker resumes with.
    fn resume(&mut self, step_id: &str, saved: &KeyRows) -> crate::error::Result<()> {
        self.table.reserve(saved.len(), |s| s.key.stable_hash());
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
            let hash = xxh3_64(kb);
            if L::TIMERS {
                let at = self.logic.notify_at(&state);
                self.timers.arm(&key, at);
            }
            self.table.insert_unique(
                hash,
                Slot {
                    key,
                    state,
                    dirty: false,
                    saved: true,
                },
                |s| s.key.stable_hash(),
            );
        }
        Ok(())
    }
}

// ---- the logics ----------------------------------------------------------------------

struct UserLogic<B, L>(B, PhantomData<fn() -> L>);

impl<V, L, B> KeyedLogic<V> for UserLogic<B, L>
where
    V: Data,
    L: StatefulLogic<V>,
    B: Fn(Option<L::State>) -> L + Send + Sync + 'static,
{
    type State = L;
    type Out = L::Out;
    const TIMERS: bool = true;

    fn build(&self) -> L {
        (self.0)(None)
    }
    fn encode(&self, state: &L, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(&state.snapshot(), out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<L, String> {
        Ok((self.0)(Some(crate::recovery::decode(bytes)?)))
    }
    fn on_item(&self, state: &mut L, value: V, emit: &mut Vec<L::Out>) -> Retention {
        state.on_item(value, emit)
    }
    fn on_notify(&self, state: &mut L, emit: &mut Vec<L::Out>) -> Retention {
        state.on_notify(emit)
    }
    fn on_eof(&self, state: &mut L, emit: &mut Vec<L::Out>) -> Retention {
        state.on_eof(emit)
    }
    fn notify_at(&self, state: &L) -> Option<Instant> {
        state.notify_at()
    }
}

struct FlatMapLogic<F, S, I>(F, PhantomData<fn(S) -> I>);

impl<F, S, I> FlatMapLogic<F, S, I> {
    /// Runs the mapper on a key's state and `value`, handing each output to `emit`.
    #[inline(always)]
    fn apply<V, W>(&self, state: &mut Option<S>, value: V, emit: impl FnMut(W)) -> Retention
    where
        I: IntoIterator<Item = W>,
        F: Fn(Option<S>, V) -> (Option<S>, I),
    {
        let (next, out) = (self.0)(state.take(), value);
        out.into_iter().for_each(emit);
        *state = next;
        if state.is_some() {
            Retention::Retain
        } else {
            Retention::Discard
        }
    }
}

impl<V, S, W, I, F> KeyedLogic<V> for FlatMapLogic<F, S, I>
where
    V: Data,
    S: Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
    W: Data,
    I: IntoIterator<Item = W> + 'static,
    F: Fn(Option<S>, V) -> (Option<S>, I) + Send + Sync + 'static,
{
    type State = Option<S>;
    type Out = W;
    const TIMERS: bool = false;
    const EOF_KEEPS_STATE: bool = true;

    fn build(&self) -> Option<S> {
        None
    }
    fn encode(&self, state: &Option<S>, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(state, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Option<S>, String> {
        crate::recovery::decode(bytes)
    }
    fn on_item(&self, state: &mut Option<S>, value: V, emit: &mut Vec<W>) -> Retention {
        self.apply(state, value, |w| emit.push(w))
    }
    #[inline(always)]
    fn on_item_keyed<K: Clone>(
        &self,
        state: &mut Option<S>,
        value: V,
        key: &K,
        _emit: &mut Vec<W>,
        out: &mut Vec<(K, W)>,
    ) -> Retention {
        self.apply(state, value, |w| out.push((key.clone(), w)))
    }
}

struct FoldLogic<B, F>(B, F);

impl<V, S, B, F> KeyedLogic<V> for FoldLogic<B, F>
where
    V: Data,
    S: ExchangeData,
    B: Fn() -> S + Send + Sync + 'static,
    F: Fn(S, V) -> S + Send + Sync + 'static,
{
    type State = Option<S>;
    type Out = S;
    const TIMERS: bool = false;

    fn build(&self) -> Option<S> {
        Some((self.0)())
    }
    fn encode(&self, state: &Option<S>, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(state, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Option<S>, String> {
        crate::recovery::decode(bytes)
    }
    #[inline]
    fn on_item(&self, state: &mut Option<S>, value: V, _emit: &mut Vec<S>) -> Retention {
        let acc = state
            .take()
            .expect("fold state is always present between calls");
        *state = Some((self.1)(acc, value));
        Retention::Retain
    }
    fn on_eof(&self, state: &mut Option<S>, emit: &mut Vec<S>) -> Retention {
        emit.extend(state.take());
        Retention::Discard
    }
}

struct CountLogic;

impl<V: Data> KeyedLogic<V> for CountLogic {
    type State = u64;
    type Out = u64;
    const TIMERS: bool = false;

    fn build(&self) -> u64 {
        0
    }
    fn encode(&self, state: &u64, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(state, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<u64, String> {
        crate::recovery::decode(bytes)
    }
    #[inline]
    fn on_item(&self, state: &mut u64, _value: V, _emit: &mut Vec<u64>) -> Retention {
        *state += 1;
        Retention::Retain
    }
    fn on_eof(&self, state: &mut u64, emit: &mut Vec<u64>) -> Retention {
        emit.push(*state);
        Retention::Discard
    }
}

struct ReduceLogic<F>(F);

impl<V: ExchangeData, F: Fn(V, V) -> V + Send + Sync + 'static> KeyedLogic<V> for ReduceLogic<F> {
    type State = Option<V>;
    type Out = V;
    const TIMERS: bool = false;

    fn build(&self) -> Option<V> {
        None
    }
    fn encode(&self, state: &Option<V>, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(state, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Option<V>, String> {
        crate::recovery::decode(bytes)
    }
    #[inline]
    fn on_item(&self, state: &mut Option<V>, value: V, _emit: &mut Vec<V>) -> Retention {
        *state = Some(match state.take() {
            Some(acc) => (self.0)(acc, value),
            None => value,
        });
        Retention::Retain
    }
    fn on_eof(&self, state: &mut Option<V>, emit: &mut Vec<V>) -> Retention {
        emit.extend(state.take());
        Retention::Discard
    }
}

// ---- the operators -------------------------------------------------------------------

impl<K: Key, V: ExchangeData> Stream<(K, V)> {
    pub(crate) fn keyed<L: KeyedLogic<V>>(
        &self,
        step: &str,
        kind: &'static str,
        logic: L,
    ) -> Stream<(K, L::Out)> {
        let logic = Arc::new(logic);
        let chan = self.new_channel::<KeyBatch<K, V>>();
        self.unary(step, kind, move |ctx, inp, out| {
            build_keyed::<K, V, L>(ctx, logic.clone(), chan, inp, out)
        })
    }

    /// Runs a [`StatefulLogic`] per key; `builder` makes a key's logic when the key is
    /// first seen (with its saved state when resuming).
    ///
    /// ```
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSource, TestingSink};
    /// use waxfast::operators::{Retention, StatefulLogic};
    ///
    /// /// Emits every second value per key as a pair.
    /// struct Pairs(Option<u32>);
    /// impl StatefulLogic<u32> for Pairs {
    ///     type Out = (u32, u32);
    ///     type State = Option<u32>;
    ///     fn on_item(&mut self, v: u32, emit: &mut Vec<(u32, u32)>) -> Retention {
    ///         match self.0.take() {
    ///             Some(first) => { emit.push((first, v)); Retention::Discard }
    ///             None => { self.0 = Some(v); Retention::Retain }
    ///         }
    ///     }
    ///     fn snapshot(&self) -> Option<u32> { self.0 }
    /// }
    ///
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec![("a", 1), ("b", 2), ("a", 3)]))
    ///     .stateful("pairs", |resume: Option<Option<u32>>| Pairs(resume.flatten()))
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("a", (1, 3))]);
    /// ```
    pub fn stateful<L: StatefulLogic<V>>(
        &self,
        step: &str,
        builder: impl Fn(Option<L::State>) -> L + Send + Sync + 'static,
    ) -> Stream<(K, L::Out)> {
        self.keyed(step, "stateful", UserLogic(builder, PhantomData))
    }

    /// Per key, `mapper(state, value) -> (state, output)`: the state starts as `None`
    /// and returning `None` discards it.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec![("a", 1), ("a", 2)]))
    ///     .stateful_map("sum", |s: Option<i32>, v| {
    ///         let t = s.unwrap_or(0) + v;
    ///         (Some(t), t)
    ///     })
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("a", 1), ("a", 3)]);
    /// ```
    pub fn stateful_map<
        S: Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
        W: Data,
    >(
        &self,
        step: &str,
        mapper: impl Fn(Option<S>, V) -> (Option<S>, W) + Send + Sync + 'static,
    ) -> Stream<(K, W)> {
        self.keyed(
            step,
            "stateful_map",
            FlatMapLogic(
                move |s, v| {
                    let (s, w) = mapper(s, v);
                    (s, std::iter::once(w))
                },
                PhantomData,
            ),
        )
    }

    /// Per key, `mapper(state, value) -> (state, outputs)`: like
    /// [`stateful_map`](Self::stateful_map) but emitting any number of items.
    pub fn stateful_flat_map<
        S: Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
        W: Data,
        I: IntoIterator<Item = W> + 'static,
    >(
        &self,
        step: &str,
        mapper: impl Fn(Option<S>, V) -> (Option<S>, I) + Send + Sync + 'static,
    ) -> Stream<(K, W)> {
        self.keyed(step, "stateful_flat_map", FlatMapLogic(mapper, PhantomData))
    }

    /// Folds each key's values, starting from `builder()`, and emits the result per key
    /// at end of stream (keys in order).
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec![("a", 1), ("b", 5), ("a", 2)]))
    ///     .fold_final("collect", Vec::new, |mut acc: Vec<i32>, v| { acc.push(v); acc })
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("a", vec![1, 2]), ("b", vec![5])]);
    /// ```
    pub fn fold_final<S: ExchangeData>(
        &self,
        step: &str,
        builder: impl Fn() -> S + Send + Sync + 'static,
        folder: impl Fn(S, V) -> S + Send + Sync + 'static,
    ) -> Stream<(K, S)> {
        self.keyed(step, "fold_final", FoldLogic(builder, folder))
    }

    /// Combines each key's values pairwise with `reducer` and emits the result per key
    /// at end of stream.
    pub fn reduce_final(
        &self,
        step: &str,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Stream<(K, V)> {
        self.keyed(step, "reduce_final", ReduceLogic(reducer))
    }

    /// The largest value per key, at end of stream.
    pub fn max_final(&self, step: &str) -> Stream<(K, V)>
    where
        V: Ord,
    {
        self.keyed(step, "max_final", ReduceLogic(std::cmp::max::<V>))
    }

    /// The smallest value per key, at end of stream.
    pub fn min_final(&self, step: &str) -> Stream<(K, V)>
    where
        V: Ord,
    {
        self.keyed(step, "min_final", ReduceLogic(std::cmp::min::<V>))
    }
}

impl<T: Data> Stream<T> {
    /// Counts items per `key_fn(item)` and emits `(key, count)` per key at end of stream
    /// (keys in order). A composite step: `step.key` keys the items, `step.count` counts.
    /// `key_fn` takes the item by value: only its key is kept, so a string item can
    /// become its own key without a copy.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["x", "y", "x"]))
    ///     .count_final("count", |w: &str| w.to_string())
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("x".to_string(), 2), ("y".to_string(), 1)]);
    /// ```
    pub fn count_final<K: Key>(
        &self,
        step: &str,
        key_fn: impl Fn(T) -> K + Send + Sync + 'static,
    ) -> Stream<(K, u64)> {
        let inner = self.enter_as(step, "count_final");
        let key_fn = Arc::new(key_fn);
        inner
            .unary::<(K, ())>("key", "key_on", move |ctx, inp, out| {
                let key_fn = key_fn.clone();
                transform(
                    ctx,
                    inp,
                    out,
                    move |b: &mut Vec<T>, o: &mut Vec<(K, ())>| {
                        o.extend(b.drain(..).map(|x| (key_fn(x), ())))
                    },
                );
                Ok(())
            })
            .keyed("count", "count_final", CountLogic)
            .rescope(self)
    }
}

// ---- collect -------------------------------------------------------------------------

struct CollectLogic {
    timeout: std::time::Duration,
    max_size: usize,
}

/// A key's items being collected, and when the collection times out.
struct Collecting<V> {
    items: Vec<V>,
    due: Option<Instant>,
}

impl<V: ExchangeData> KeyedLogic<V> for CollectLogic {
    type State = Collecting<V>;
    type Out = Vec<V>;
    const TIMERS: bool = true;

    fn build(&self) -> Collecting<V> {
        Collecting {
            items: Vec::new(),
            due: None,
        }
    }
    fn encode(&self, state: &Collecting<V>, out: &mut Vec<u8>) -> Result<(), String> {
        // The timeout as wall-clock time (Unix nanoseconds): an `Instant` means nothing
        // to another process.
        let due = state.due.map(|d| {
            let now = (Instant::now(), std::time::SystemTime::now());
            let wall = match d.checked_duration_since(now.0) {
                Some(ahead) => now.1 + ahead,
                None => now.1 - now.0.duration_since(d),
            };
            wall.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_nanos() as u64)
        });
        encode_into(&(&state.items, due), out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Collecting<V>, String> {
        let (items, due): (Vec<V>, Option<u64>) = crate::recovery::decode(bytes)?;
        let due = due.map(|nanos| {
            let wall = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
            let ahead = wall
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            Instant::now() + ahead
        });
        Ok(Collecting { items, due })
    }
    fn on_item(&self, state: &mut Collecting<V>, value: V, emit: &mut Vec<Vec<V>>) -> Retention {
        // Bytewax's rule (`_CollectLogic.on_item`): every item restarts the timeout, so
        // a list is emitted once its key has been quiet for `timeout`.
        state.due = Instant::now().checked_add(self.timeout);
        state.items.push(value);
        if state.items.len() >= self.max_size {
            emit.push(std::mem::take(&mut state.items));
            return Retention::Discard;
        }
        Retention::Retain
    }
    fn on_notify(&self, state: &mut Collecting<V>, emit: &mut Vec<Vec<V>>) -> Retention {
        emit.push(std::mem::take(&mut state.items));
        Retention::Discard
    }
    fn on_eof(&self, state: &mut Collecting<V>, emit: &mut Vec<Vec<V>>) -> Retention {
        if !state.items.is_empty() {
            emit.push(std::mem::take(&mut state.items));
        }
        Retention::Discard
    }
    fn notify_at(&self, state: &Collecting<V>) -> Option<Instant> {
        state.due
    }
}

impl<K: Key, V: ExchangeData> Stream<(K, V)> {
    /// Collects each key's values into lists, emitted when a list reaches `max_size`,
    /// when `timeout` (system time) has passed since its latest value, or at end of
    /// stream. As in Bytewax, every value restarts the timeout: a key that keeps
    /// receiving values more often than `timeout` is emitted only by size or at end of
    /// stream.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec![("k", 1), ("k", 2), ("k", 3)]))
    ///     .collect("c", Duration::from_secs(10), 2)
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("k", vec![1, 2]), ("k", vec![3])]);
    /// ```
    pub fn collect(
        &self,
        step: &str,
        timeout: std::time::Duration,
        max_size: usize,
    ) -> Stream<(K, Vec<V>)> {
        self.keyed(
            step,
            "collect",
            CollectLogic {
                timeout,
                max_size: max_size.max(1),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn collect_restarts_its_timeout_on_every_item() {
        let logic = CollectLogic {
            timeout: Duration::from_secs(1),
            max_size: 10,
        };
        let mut state = KeyedLogic::<u32>::build(&logic);
        let mut emit = Vec::new();
        logic.on_item(&mut state, 1, &mut emit);
        let first = state.due.expect("a timeout after the first item");
        std::thread::sleep(Duration::from_millis(2));
        logic.on_item(&mut state, 2, &mut emit);
        let second = state.due.expect("a timeout after the second item");
        assert!(
            second > first,
            "the second item moved the timeout: {first:?} -> {second:?}"
        );
        assert!(emit.is_empty());
    }

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
