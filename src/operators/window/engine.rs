//! The window step: per key, a clock, a windower, one accumulator per open window, and
//! (for ordered operators) the items waiting for the watermark. It runs on the keyed
//! engine (`operators/keyed/`) as one more `KeyedLogic`, so it
//! gets per-key routing, system-time notifications and end-of-stream handling from
//! there; a second step splits what it emits into the `down`, `late` and `meta`
//! streams.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::clock::{Clock, ClockLogic};
use super::nanos::{from_nanos, nanos, NANOS_MAX, NANOS_MIN};
use super::windower::{Windower, WindowerLogic};
use super::{Counts, WindowMetadata, WindowStats};
use crate::operators::keyed::timers::{instant_of, Deadline};
use crate::operators::keyed::KeyedLogic;
use crate::operators::stateful::Retention;
use crate::runtime::push::Data;

/// Per-window logic for the generic [`window`](crate::Stream::window) operator
/// (Bytewax's `WindowLogic`): one instance per open window of each key.
///
/// ```
/// use waxfast::operators::window::WindowLogic;
///
/// /// Emits the running maximum on every value, and the number of values at close.
/// #[derive(Default)]
/// struct Peaks { max: Option<i64>, seen: u64 }
///
/// impl WindowLogic<i64> for Peaks {
///     type Out = String;
///     type State = (Option<i64>, u64);
///     fn on_value(&mut self, v: i64, emit: &mut Vec<String>) {
///         self.seen += 1;
///         if self.max.is_none_or(|m| v > m) {
///             self.max = Some(v);
///             emit.push(format!("new max {v}"));
///         }
///     }
///     fn on_merge(&mut self, original: Self, _emit: &mut Vec<String>) {
///         self.max = self.max.max(original.max);
///         self.seen += original.seen;
///     }
///     fn on_close(self, emit: &mut Vec<String>) {
///         emit.push(format!("{} values", self.seen));
///     }
///     fn snapshot(&self) -> (Option<i64>, u64) { (self.max, self.seen) }
/// }
/// ```
pub trait WindowLogic<V>: Send + Sized + 'static {
    /// What the logic emits (downstream items are `(key, (window_id, Out))`).
    type Out: Data;
    /// What [`snapshot`](Self::snapshot) returns and the builder is given on resume.
    /// Saved with serde (postcard) when the run has a recovery directory.
    type State: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static;

    /// Applies one value of the window (in timestamp order if the operator is
    /// `ordered`, else in arrival order).
    fn on_value(&mut self, value: V, emit: &mut Vec<Self::Out>);

    /// Absorbs the window `original`, merged into this one (sessions only).
    fn on_merge(&mut self, original: Self, emit: &mut Vec<Self::Out>);

    /// The window closed.
    fn on_close(self, emit: &mut Vec<Self::Out>);

    /// The state to save at the end of an epoch.
    fn snapshot(&self) -> Self::State;
}

/// The engine's view of what a window computes: shared logic over per-window
/// accumulators (so the built-in operators carry no per-window pointer to their
/// closures).
pub(crate) trait WindowAgg<V>: Send + Sync + 'static {
    type Acc: Send + 'static;
    type Out: Data;
    fn build(&self) -> Self::Acc;
    fn on_value(&self, acc: &mut Self::Acc, value: V, emit: &mut Vec<Self::Out>);
    fn on_merge(&self, into: &mut Self::Acc, original: Self::Acc, emit: &mut Vec<Self::Out>);
    fn on_close(&self, acc: Self::Acc, emit: &mut Vec<Self::Out>);
    /// Appends an accumulator, encoded, for a snapshot.
    fn encode(&self, acc: &Self::Acc, out: &mut Vec<u8>) -> Result<(), String>;
    /// Rebuilds an accumulator from what [`encode`](Self::encode) wrote.
    fn decode(&self, bytes: &[u8]) -> Result<Self::Acc, String>;
}

/// A user's [`WindowLogic`] as a [`WindowAgg`].
pub(crate) struct UserWindow<B, L>(pub(crate) B, pub(crate) PhantomData<fn() -> L>);

impl<V, L, B> WindowAgg<V> for UserWindow<B, L>
where
    L: WindowLogic<V>,
    B: Fn(Option<L::State>) -> L + Send + Sync + 'static,
{
    type Acc = L;
    type Out = L::Out;

    fn build(&self) -> L {
        (self.0)(None)
    }
    fn on_value(&self, acc: &mut L, value: V, emit: &mut Vec<L::Out>) {
        acc.on_value(value, emit)
    }
    fn on_merge(&self, into: &mut L, original: L, emit: &mut Vec<L::Out>) {
        into.on_merge(original, emit)
    }
    fn on_close(&self, acc: L, emit: &mut Vec<L::Out>) {
        acc.on_close(emit)
    }
    fn encode(&self, acc: &L, out: &mut Vec<u8>) -> Result<(), String> {
        crate::recovery::encode_into(&acc.snapshot(), out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<L, String> {
        Ok((self.0)(Some(crate::recovery::decode(bytes)?)))
    }
}

/// What the window step emits, before the split into three streams.
#[derive(Debug, Clone)]
pub(crate) enum WindowEvent<V, W> {
    Down(i64, W),
    Late(i64, V),
    Meta(i64, WindowMetadata),
}

thread_local! {
    // Scratch lists, taken out while in use (a nested use just starts a new one).
    static IDS: Cell<Vec<i64>> = const { Cell::new(Vec::new()) };
    static CLOSED: Cell<Vec<(i64, WindowMetadata)>> = const { Cell::new(Vec::new()) };
}

fn with_scratch<T, R>(
    slot: &'static std::thread::LocalKey<Cell<Vec<T>>>,
    f: impl FnOnce(&mut Vec<T>) -> R,
) -> R {
    // Put back empty: taken empty.
    let mut v = slot.take();
    let r = f(&mut v);
    v.clear();
    slot.set(v);
    r
}

/// The window step's logic, shared by the keys of a worker.
pub(crate) struct WindowStep<C, Wr, A> {
    pub(crate) clock: C,
    pub(crate) windower: Wr,
    pub(crate) agg: A,
    pub(crate) ordered: bool,
    pub(crate) stats: WindowStats,
}

/// One key's windows.
pub(crate) struct KeyWindows<CL, WL, Acc, V> {
    clock: CL,
    windower: WL,
    /// Open windows' accumulators, ascending by window id (a key has a few open
    /// windows, and a new one is almost always the last).
    accs: Vec<(i64, Acc)>,
    /// Ordered operators: items waiting for the watermark, by (timestamp, arrival);
    /// times are nanoseconds since the Unix epoch, as everywhere in the engine.
    queue: BTreeMap<(i128, u64), V>,
    seq: u64,
    watermark: i128,
    /// Scratch for the ids of the windows an item is in (empty between items).
    ids: Vec<i64>,
    /// The last timer asked for: its system time and instant. Reused while the system
    /// time is unchanged, so the runtime does not re-arm the key's timer per item.
    armed: Cell<Option<(i128, Deadline)>>,
    counts: Arc<Counts>,
}

impl<CL, WL, Acc, V> Drop for KeyWindows<CL, WL, Acc, V> {
    fn drop(&mut self) {
        self.counts.keys.add(-1);
        self.counts.windows.add(-(self.accs.len() as i64));
        self.counts.queued.add(-(self.queue.len() as i64));
    }
}

/// The accumulator of window `id` in `accs` (ascending by id), built if new.
#[inline]
fn acc_entry<Acc>(accs: &mut Vec<(i64, Acc)>, id: i64, build: impl FnOnce() -> Acc) -> &mut Acc {
    let at = match accs.last() {
        Some(&(last, _)) if last == id => accs.len() - 1,
        Some(&(last, _)) if last < id => {
            accs.push((id, build()));
            accs.len() - 1
        }
        None => {
            accs.push((id, build()));
            0
        }
        Some(_) => match accs.binary_search_by_key(&id, |(i, _)| *i) {
            Ok(at) => at,
            Err(at) => {
                accs.insert(at, (id, build()));
                at
            }
        },
    };
    &mut accs[at].1
}

/// Removes and returns the accumulator of window `id`.
#[inline]
fn acc_remove<Acc>(accs: &mut Vec<(i64, Acc)>, id: i64) -> Option<Acc> {
    // Windows close oldest first: usually the first.
    let at = match accs.first() {
        Some(&(first, _)) if first == id => 0,
        _ => accs.binary_search_by_key(&id, |(i, _)| *i).ok()?,
    };
    Some(accs.remove(at).1)
}

impl<C, Wr, A> WindowStep<C, Wr, A> {
    /// Adds an on-time item to the windows it is in.
    fn insert<V: Data>(
        &self,
        state: &mut KeyWindows<C::Logic, Wr::Logic, A::Acc, V>,
        ts: i128,
        value: V,
        emit: &mut Vec<WindowEvent<V, A::Out>>,
    ) where
        C: Clock<V>,
        Wr: Windower,
        A: WindowAgg<V>,
    {
        // The key's own id list (kept for its next item: no allocation, no
        // thread-local).
        let mut ids = std::mem::take(&mut state.ids);
        state.windower.open_for_nanos(ts, &mut ids);
        let mut value = Some(value);
        let mut out = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let acc = acc_entry(&mut state.accs, id, || {
                state.counts.windows.add(1);
                self.agg.build()
            });
            let v = if i + 1 == ids.len() {
                value.take().expect("taken only by the last window")
            } else {
                value.clone().expect("taken only by the last window")
            };
            self.agg.on_value(acc, v, &mut out);
            if !out.is_empty() {
                emit.extend(out.drain(..).map(|w| WindowEvent::Down(id, w)));
            }
        }
        ids.clear();
        state.ids = ids;
    }

    /// Applies what the watermark lets through, then merges and closes windows.
    fn flush<V: Data>(
        &self,
        state: &mut KeyWindows<C::Logic, Wr::Logic, A::Acc, V>,
        emit: &mut Vec<WindowEvent<V, A::Out>>,
    ) where
        C: Clock<V>,
        Wr: Windower,
        A: WindowAgg<V>,
    {
        while let Some(entry) = state.queue.first_entry() {
            if entry.key().0 > state.watermark {
                break;
            }
            let ((ts, _), value) = entry.remove_entry();
            state.counts.queued.add(-1);
            self.insert(state, ts, value, emit);
        }
        let mut out = Vec::new();
        // Merges are rare (sessions only): a list that allocates only if one happens.
        let mut merges = Vec::new();
        state.windower.merged(&mut merges);
        for &(original, target) in merges.iter() {
            if original == target {
                continue;
            }
            let Some(orig) = acc_remove(&mut state.accs, original) else {
                continue;
            };
            state.counts.windows.add(-1);
            let into = acc_entry(&mut state.accs, target, || {
                state.counts.windows.add(1);
                self.agg.build()
            });
            self.agg.on_merge(into, orig, &mut out);
            emit.extend(out.drain(..).map(|w| WindowEvent::Down(target, w)));
        }
        // The common case, nothing to close, is one comparison (`notify_at` is when the
        // next window closes).
        let closing = state.watermark >= NANOS_MAX
            || state
                .windower
                .notify_at_nanos()
                .is_some_and(|close| close <= state.watermark);
        if !closing {
            return;
        }
        with_scratch(&CLOSED, |closed| {
            state.windower.close_for_nanos(state.watermark, closed);
            for (id, meta) in closed.drain(..) {
                if let Some(acc) = acc_remove(&mut state.accs, id) {
                    state.counts.windows.add(-1);
                    self.agg.on_close(acc, &mut out);
                    emit.extend(out.drain(..).map(|w| WindowEvent::Down(id, w)));
                }
                emit.push(WindowEvent::Meta(id, meta));
            }
        });
    }

    fn retention<V>(&self, state: &KeyWindows<C::Logic, Wr::Logic, A::Acc, V>) -> Retention
    where
        C: Clock<V>,
        Wr: Windower,
        A: WindowAgg<V>,
    {
        if state.accs.is_empty() && state.queue.is_empty() && state.windower.is_empty() {
            Retention::Discard
        } else {
            Retention::Retain
        }
    }
}

/// A key's windows as saved in a snapshot (accumulators encoded by their aggregate).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedWindows<C, W, V> {
    clock: C,
    windower: W,
    accs: Vec<(i64, Vec<u8>)>,
    queue: Vec<(DateTime<Utc>, u64, V)>,
    seq: u64,
    watermark: DateTime<Utc>,
}

impl<V, C, Wr, A> KeyedLogic<V> for WindowStep<C, Wr, A>
where
    V: crate::ExchangeData,
    C: Clock<V>,
    Wr: Windower,
    A: WindowAgg<V>,
{
    type State = KeyWindows<C::Logic, Wr::Logic, A::Acc, V>;
    type Out = WindowEvent<V, A::Out>;
    const TIMERS: bool = true;

    fn build(&self) -> Self::State {
        self.stats.0.keys.add(1);
        KeyWindows {
            clock: self.clock.build(None),
            windower: self.windower.build(None),
            accs: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            watermark: NANOS_MIN,
            ids: Vec::new(),
            armed: Cell::new(None),
            counts: self.stats.0.clone(),
        }
    }

    fn encode(&self, state: &Self::State, out: &mut Vec<u8>) -> Result<(), String> {
        let mut accs = Vec::with_capacity(state.accs.len());
        for (id, acc) in &state.accs {
            let id = *id;
            let mut b = Vec::new();
            self.agg.encode(acc, &mut b)?;
            accs.push((id, b));
        }
        let saved = SavedWindows {
            clock: state.clock.snapshot(),
            windower: state.windower.snapshot(),
            accs,
            queue: state
                .queue
                .iter()
                .map(|(k, v)| (from_nanos(k.0), k.1, v))
                .collect(),
            seq: state.seq,
            watermark: from_nanos(state.watermark),
        };
        crate::recovery::encode_into(&saved, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Self::State, String> {
        type Saved<C, W, V> = SavedWindows<C, W, V>;
        let saved: Saved<
            <C::Logic as ClockLogic<V>>::State,
            <Wr::Logic as WindowerLogic>::State,
            V,
        > = crate::recovery::decode(bytes)?;
        let mut accs = Vec::with_capacity(saved.accs.len());
        for (id, b) in saved.accs {
            accs.push((id, self.agg.decode(&b)?));
        }
        // Saved in id order; sorted again in case an older snapshot was not.
        accs.sort_by_key(|(id, _)| *id);
        let queue: BTreeMap<(i128, u64), V> = saved
            .queue
            .into_iter()
            .map(|(ts, seq, v)| ((nanos(ts), seq), v))
            .collect();
        let counts = self.stats.0.clone();
        counts.keys.add(1);
        counts.windows.add(accs.len() as i64);
        counts.queued.add(queue.len() as i64);
        Ok(KeyWindows {
            clock: self.clock.build(Some(saved.clock)),
            windower: self.windower.build(Some(saved.windower)),
            accs,
            queue,
            seq: saved.seq,
            watermark: nanos(saved.watermark),
            ids: Vec::new(),
            armed: Cell::new(None),
            counts,
        })
    }

    fn on_item(&self, state: &mut Self::State, value: V, emit: &mut Vec<Self::Out>) -> Retention {
        let (ts, watermark) = state.clock.on_item_nanos(&value);
        state.watermark = state.watermark.max(watermark);
        if ts < state.watermark {
            with_scratch(&IDS, |ids| {
                state.windower.late_for_nanos(ts, ids);
                if let Some((&last, rest)) = ids.split_last() {
                    emit.extend(rest.iter().map(|&id| WindowEvent::Late(id, value.clone())));
                    emit.push(WindowEvent::Late(last, value));
                }
            });
        } else if self.ordered {
            state.queue.insert((ts, state.seq), value);
            state.seq += 1;
            state.counts.queued.add(1);
        } else {
            self.insert(state, ts, value, emit);
        }
        self.flush(state, emit);
        self.retention(state)
    }

    fn on_notify(&self, state: &mut Self::State, emit: &mut Vec<Self::Out>) -> Retention {
        // The timer fired: the next one is computed afresh from the time now.
        state.armed.set(None);
        let watermark = state.clock.on_notify_nanos();
        state.watermark = state.watermark.max(watermark);
        self.flush(state, emit);
        self.retention(state)
    }

    fn on_eof(&self, state: &mut Self::State, emit: &mut Vec<Self::Out>) -> Retention {
        let watermark = state.clock.on_eof_nanos();
        state.watermark = state.watermark.max(watermark);
        self.flush(state, emit);
        Retention::Discard
    }

    fn begin_batch(&self) {
        super::clock::hold_time();
    }

    fn end_batch(&self) {
        super::clock::release_time();
    }

    const WINDOWED: bool = true;

    fn window_gauge(&self, state: &Self::State) -> (usize, Option<i64>) {
        let wm = (state.watermark > NANOS_MIN)
            .then(|| i64::try_from(state.watermark).ok())
            .flatten();
        (state.accs.len(), wm)
    }

    fn notify_at(&self, state: &Self::State) -> Option<Instant> {
        self.deadline(state).map(instant_of)
    }

    #[inline]
    fn deadline(&self, state: &Self::State) -> Option<Deadline> {
        let window = state.windower.notify_at_nanos();
        let queued = if self.ordered {
            state.queue.first_key_value().map(|((ts, _), _)| *ts)
        } else {
            None
        };
        let at = match (window, queued) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let system = state.clock.to_system_nanos(at)?;
        if let Some((armed, deadline)) = state.armed.get() {
            if armed == system {
                return Some(deadline);
            }
        }
        let deadline = state.clock.deadline_at_nanos(system)?;
        state.armed.set(Some((system, deadline)));
        Some(deadline)
    }
}
