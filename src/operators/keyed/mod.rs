//! The keyed engine: per-key state on the worker that owns the key.
//!
//! Every keyed step (`stateful`, the `*_final` folds, `collect`, `join`, the window
//! step) is a [`KeyedLogic`] run by one engine, in parts:
//!
//! * `table.rs`: the per-worker step, its state table (a `hashbrown::HashTable` indexed
//!   by the key's hash) and the per-record apply path;
//! * `out.rs`: where the step's emissions go (with their keys, or fused into a
//!   `key_rm`);
//! * `timers.rs`: per-key system-time notifications;
//! * `snapshots.rs`: the step's part in recovery (dirty keys, snapshot rows, and the
//!   epoch gate, `runtime/gate.rs`, that holds items of later epochs);
//! * `owned.rs`: a by-value logic's state moved out of its slot for the callback;
//! * `logics.rs`: the logics of the built-in operators.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashTable;

use crate::dataflow::{ChannelId, Key, Stream, StreamId};
use crate::error::Error;
use crate::exchange::combine::{Combiner, Precombine};
use crate::exchange::keyed::KeyBatch;
use crate::operators::stateful::Retention;
use crate::runtime::build::BuildCtx;
use crate::runtime::gate::EpochGate;
use crate::runtime::push::{Data, ExchangeData};

pub(crate) mod logics;
mod marks;
pub(crate) mod out;
mod owned;
mod snapshots;
mod table;
pub(crate) mod timers;

use marks::{Marks, NoMarks, SlotMarks};
use out::{KeyedOut, Unkeyed, ValuesOnly, WithKeys};
use snapshots::Snapshots;
use table::KeyedOp;
use timers::{deadline_of, Deadline, Timers};

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
    /// True if `on_item` never emits (the `*_final` folds): the per-record path then
    /// skips looking at what it emitted.
    const SILENT_ON_ITEM: bool = false;
    /// True if two values for one key merge into one ([`combine`](Self::combine)):
    /// applying the merge of `a` and `b` leaves a key's state as applying `a` then `b`
    /// does, and emits nothing either way. With several workers the step then combines
    /// values per key before the exchange (`exchange/combine.rs`).
    const COMBINES: bool = false;
    /// Merges `value` into `into` (only called for a logic that sets
    /// [`COMBINES`](Self::COMBINES), which overrides it).
    fn combine(&self, _into: &mut V, _value: V) {
        unreachable!("combine is called only for a COMBINES logic, which overrides it")
    }

    /// The state of a new key before its first item. Not called for a
    /// [`BY_VALUE`](Self::BY_VALUE) logic.
    fn build(&self) -> Self::State;
    /// Appends a key's state, encoded, for a snapshot.
    fn encode(&self, state: &Self::State, out: &mut Vec<u8>) -> Result<(), String>;
    /// Rebuilds a key's state from what [`encode`](Self::encode) wrote.
    fn decode(&self, bytes: &[u8]) -> Result<Self::State, String>;
    /// Applies one item to a key's state. Not called for a [`BY_VALUE`](Self::BY_VALUE)
    /// logic.
    fn on_item(&self, state: &mut Self::State, value: V, emit: &mut Vec<Self::Out>) -> Retention;
    /// [`on_item`](Self::on_item), with what it emits appended to `out` under `key`
    /// (`emit` is scratch space, left empty). A logic that emits directly overrides it
    /// to skip the scratch buffer: this is the per-record path of every keyed step.
    #[inline(always)]
    fn on_item_keyed<K, O: KeyedOut<K, Self::Out>>(
        &self,
        state: &mut Self::State,
        value: V,
        key: &K,
        emit: &mut Vec<Self::Out>,
        out: &mut O,
    ) -> Retention {
        let retention = self.on_item(state, value, emit);
        push_emitted(Self::SILENT_ON_ITEM, key, emit, out);
        retention
    }

    /// True if the logic takes a key's state by value and gives back the next one,
    /// `None` to discard the key (`stateful_map`, `stateful_flat_map`, the folds). The
    /// table then keeps the bare state, no `Option` around it, and a new key has no
    /// state until its first item gives it one (`owned.rs`). The engine calls the
    /// `*_owned` callbacks of such a logic, never its `build`, `on_item` or `on_eof`.
    const BY_VALUE: bool = false;
    /// [`on_item`](Self::on_item) of a [`BY_VALUE`](Self::BY_VALUE) logic: `state` is
    /// `None` for a new key. A logic that sets `BY_VALUE` overrides it.
    fn on_item_owned(
        &self,
        _state: Option<Self::State>,
        _value: V,
        _emit: &mut Vec<Self::Out>,
    ) -> Option<Self::State> {
        unreachable!("on_item_owned is called only for a BY_VALUE logic, which overrides it")
    }
    /// [`on_item_keyed`](Self::on_item_keyed) of a [`BY_VALUE`](Self::BY_VALUE) logic.
    /// A [`ONE_TO_ONE`](Self::ONE_TO_ONE) logic's one output goes straight to `out`.
    #[inline(always)]
    fn on_item_keyed_owned<K, O: KeyedOut<K, Self::Out>>(
        &self,
        state: Option<Self::State>,
        value: V,
        key: &K,
        emit: &mut Vec<Self::Out>,
        out: &mut O,
    ) -> Option<Self::State> {
        if Self::ONE_TO_ONE {
            let (next, w) = self.on_item_one(state, value);
            out.emit(key, w);
            return next;
        }
        let next = self.on_item_owned(state, value, emit);
        push_emitted(Self::SILENT_ON_ITEM, key, emit, out);
        next
    }
    /// True if a [`BY_VALUE`](Self::BY_VALUE) logic emits exactly one value per item
    /// (`stateful_map`): then [`on_item_one`](Self::on_item_one) returns it, and a step
    /// fused into a `key_rm` turns its input batch into its output batch in place
    /// (`table.rs`).
    const ONE_TO_ONE: bool = false;
    /// [`on_item_owned`](Self::on_item_owned) of a [`ONE_TO_ONE`](Self::ONE_TO_ONE)
    /// logic, returning its one output. A logic that sets `ONE_TO_ONE` overrides it.
    #[inline(always)]
    fn on_item_one(
        &self,
        state: Option<Self::State>,
        value: V,
    ) -> (Option<Self::State>, Self::Out) {
        let mut emit = Vec::with_capacity(1);
        let next = self.on_item_owned(state, value, &mut emit);
        assert_eq!(emit.len(), 1, "a ONE_TO_ONE logic emits one value per item");
        (next, emit.pop().expect("one value"))
    }
    /// End of stream for a [`BY_VALUE`](Self::BY_VALUE) logic: the key's state after
    /// it, `None` if the key is done (the folds emit their state).
    fn on_eof_owned(&self, state: Self::State, _emit: &mut Vec<Self::Out>) -> Option<Self::State> {
        Some(state)
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
    /// [`notify_at`](Self::notify_at) as a [`Deadline`], which is what the engine asks
    /// after every callback; a logic that computes its wake-up in integers overrides it.
    #[inline]
    fn deadline(&self, state: &Self::State) -> Option<Deadline> {
        self.notify_at(state).map(deadline_of)
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

/// After an item's callback: what it emitted goes into `out` for `key`, unless the logic
/// is silent on items (`KeyedLogic::SILENT_ON_ITEM`), which must have emitted nothing.
#[inline(always)]
fn push_emitted<K, W>(silent: bool, key: &K, emit: &mut Vec<W>, out: &mut impl KeyedOut<K, W>) {
    if silent {
        debug_assert!(
            emit.is_empty(),
            "a SILENT_ON_ITEM logic emitted from its item callback"
        );
    } else {
        push_keyed(key, emit, out);
    }
}

/// Moves what a callback emitted into `out`, for `key`.
#[inline(always)]
pub(crate) fn push_keyed<K, W>(key: &K, emit: &mut Vec<W>, out: &mut impl KeyedOut<K, W>) {
    // Most callbacks emit nothing or one value: take it without a drain.
    match emit.len() {
        0 => {}
        1 => {
            let w = emit.pop().expect("one value");
            out.emit(key, w);
        }
        _ => emit.drain(..).for_each(|w| out.emit(key, w)),
    }
}

/// [`push_keyed`] for a key the caller is done with: the last value takes the key
/// itself instead of a clone.
#[inline]
pub(crate) fn push_keyed_owned<K, W>(key: K, emit: &mut Vec<W>, out: &mut impl KeyedOut<K, W>) {
    let Some(last) = emit.pop() else {
        return;
    };
    emit.drain(..).for_each(|w| out.emit(&key, w));
    out.emit_owned(key, last);
}

/// Largest batch the engine emits at once (end of stream can emit one item per key).
pub(crate) const EMIT_CHUNK: usize = 4096;

impl<K: Key, V: ExchangeData> Stream<(K, V)> {
    /// A keyed step running `logic` per key.
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
        gate: EpochGate::new(ctx.first_epoch()),
        dirty: Vec::new(),
    });
    // Fused with a `key_rm` that is the step's only consumer: emit bare values into
    // the `key_rm`'s output.
    match ctx.take_fused::<Unkeyed<L::Out>>(out) {
        Some(into) => {
            let out = ValuesOnly {
                into,
                own: ctx.step_cells(),
                buf: Vec::new(),
            };
            finish_keyed::<K, V, L, _>(ctx, logic, snaps, out, chan, inp)
        }
        None => {
            let out = WithKeys {
                tee: ctx.take_tee(out),
                buf: Vec::new(),
            };
            finish_keyed::<K, V, L, _>(ctx, logic, snaps, out, chan, inp)
        }
    }
}

/// Builds the step's table around its chosen output, with snapshot flags in its slots
/// only if it snapshots, and connects it to the exchange.
fn finish_keyed<K: Key, V: ExchangeData, L: KeyedLogic<V>, O: KeyedOut<K, L::Out>>(
    ctx: &mut BuildCtx,
    logic: Arc<L>,
    snaps: Option<Snapshots<K, V>>,
    out: O,
    chan: ChannelId,
    inp: StreamId,
) -> crate::error::Result<()> {
    match snaps {
        Some(_) => finish_marked::<K, V, L, O, Marks>(ctx, logic, snaps, out, chan, inp),
        None => finish_marked::<K, V, L, O, NoMarks>(ctx, logic, snaps, out, chan, inp),
    }
}

fn finish_marked<
    K: Key,
    V: ExchangeData,
    L: KeyedLogic<V>,
    O: KeyedOut<K, L::Out>,
    M: SlotMarks,
>(
    ctx: &mut BuildCtx,
    logic: Arc<L>,
    snaps: Option<Snapshots<K, V>>,
    out: O,
    chan: ChannelId,
    inp: StreamId,
) -> crate::error::Result<()> {
    let mut op = KeyedOp::<K, V, L, O, M> {
        logic,
        table: HashTable::new(),
        snaps,
        timers: Timers::default(),
        alone: ctx.worker_count() == 1,
        out,
        emit: Vec::new(),
        _v: PhantomData,
    };
    if let Some(saved) = ctx.resume_keys() {
        op.resume(ctx.step_id(), &saved)?;
    }
    // Used only with several workers (`KeyedEntry::new` drops it otherwise).
    let combiner = L::COMBINES.then(|| {
        let logic = op.logic.clone();
        Box::new(Combiner::new(move |into: &mut V, v: V| {
            logic.combine(into, v)
        })) as Box<dyn Precombine<K, V>>
    });
    let op = Rc::new(RefCell::new(op));
    ctx.keyed_exchange(inp, chan, op.clone(), combiner);
    ctx.add_activation(op);
    Ok(())
}
