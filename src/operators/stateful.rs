//! Stateful operators: per-key state on the worker that owns the key.
//!
//! All of them run on one engine, the keyed engine (`operators/keyed/`):
//! a hash table from key to state, values applied in arrival order (so per-key order is
//! kept), optional system-time notifications per key, and end-of-stream handling in key
//! order. Each operator here is a small `KeyedLogic` over that engine (in
//! `keyed/logics.rs`), monomorphised, so `count_final` costs one hash lookup and one
//! increment per item.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use crate::dataflow::{Key, Stream};
use crate::operators::keyed::logics::{
    CollectLogic, CountLogic, ExtremeLogic, FlatMapLogic, FoldLogic, MapLogic, ReduceLogic,
    UserLogic,
};
use crate::operators::stateless::transform;
use crate::runtime::fuse::FusedKeys;
use crate::runtime::push::{Data, ExchangeData, PushFn};

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

// ---- the operators -------------------------------------------------------------------

impl<K: Key, V: ExchangeData> Stream<(K, V)> {
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
        self.keyed(step, "stateful_map", MapLogic(mapper, PhantomData))
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

    /// The largest value per key, at end of stream (of equal values, the later one, as
    /// `std::cmp::max` picks). With several workers each worker first keeps its own
    /// largest value per key and sends those to the keys' owners (as `count_final`
    /// does with its counts).
    pub fn max_final(&self, step: &str) -> Stream<(K, V)>
    where
        V: Ord,
    {
        self.keyed(step, "max_final", ExtremeLogic::<true>)
    }

    /// The smallest value per key, at end of stream (of equal values, the earlier one,
    /// as `std::cmp::min` picks). With several workers each worker first keeps its own
    /// smallest value per key and sends those to the keys' owners.
    pub fn min_final(&self, step: &str) -> Stream<(K, V)>
    where
        V: Ord,
    {
        self.keyed(step, "min_final", ExtremeLogic::<false>)
    }
}

impl<T: Data> Stream<T> {
    /// Counts items per `key_fn(item)` and emits `(key, count)` per key at end of stream
    /// (keys in order). A composite step: `step.key` keys the items, `step.count` counts.
    /// `key_fn` takes the item by value: only its key is kept, so a string item can
    /// become its own key without a copy. With several workers each worker first counts
    /// its own items per key and sends the partial counts to the keys' owners when the
    /// epoch ends (or every 16 384 keys), rather than every item: the counts, the
    /// snapshots and the output are the same either way.
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
            .unary::<(K, u64)>("key", "key_on", move |ctx, inp, out| {
                let key_fn = key_fn.clone();
                if let Some(fused) = ctx.take_fused::<FusedKeys<K, u64>>(out) {
                    // Fused into the count: a column of keys beside a column of ones.
                    let (cells, mut keys, mut ones) = (ctx.step_cells(), Vec::new(), Vec::new());
                    ctx.consume(
                        inp,
                        PushFn(move |epoch, batch: &mut Vec<T>| {
                            keys.extend(batch.drain(..).map(&*key_fn));
                            ones.resize(keys.len(), 1u64);
                            fused.push(epoch, &mut keys, &mut ones, cells.as_deref());
                        }),
                    );
                    return Ok(());
                }
                transform(
                    ctx,
                    inp,
                    out,
                    move |b: &mut Vec<T>, o: &mut Vec<(K, u64)>| {
                        o.extend(b.drain(..).map(|x| (key_fn(x), 1u64)))
                    },
                );
                Ok(())
            })
            .keyed("count", "count_final", CountLogic)
            .rescope(self)
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
