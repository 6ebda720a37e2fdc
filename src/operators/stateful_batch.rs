//! `stateful_batch`: Bytewax's per-key logic that sees its values in batches.
//!
//! Bytewax hands a key's logic all of the key's values that arrived in one activation
//! (`StatefulBatchLogic.on_batch(values)`). Here a first step (`step.batch`) groups
//! the values of each incoming batch by key, keeping each key's values in arrival
//! order, and the keyed step (`step.logic`) calls [`on_batch`] once per key and
//! group. Batches are what a source partition and the exchanges deliver together, so
//! their sizes depend on the input and the worker count, as in Bytewax: a logic must
//! give the same results whatever the split (batches of one included).
//!
//! [`on_batch`]: StatefulBatchLogic::on_batch

use std::marker::PhantomData;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::dataflow::{Key, Stream};
use crate::operators::stateful::{Retention, StatefulLogic};
use crate::operators::stateless::transform;
use crate::runtime::push::{Data, ExchangeData};

/// Per-key logic for [`Stream::stateful_batch`] (Bytewax's `StatefulBatchLogic`):
/// [`StatefulLogic`] with the values of one batch at a time.
///
/// ```
/// use waxfast::operators::{Retention, StatefulBatchLogic};
///
/// /// Emits the size of each batch and keeps the running total as state.
/// struct Sizes(usize);
/// impl StatefulBatchLogic<u8> for Sizes {
///     type Out = usize;
///     type State = usize;
///     fn on_batch(&mut self, values: Vec<u8>, emit: &mut Vec<usize>) -> Retention {
///         self.0 += values.len();
///         emit.push(values.len());
///         Retention::Retain
///     }
///     fn snapshot(&self) -> usize { self.0 }
/// }
/// ```
pub trait StatefulBatchLogic<V>: Send + 'static {
    /// What the logic emits (downstream items are `(key, Out)`).
    type Out: Data;
    /// What [`snapshot`](Self::snapshot) returns and the builder is given on resume.
    type State: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static;

    /// Applies a batch of the key's values (never empty), in arrival order.
    fn on_batch(&mut self, values: Vec<V>, emit: &mut Vec<Self::Out>) -> Retention;

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

/// A [`StatefulBatchLogic`] as a [`StatefulLogic`] over groups of values.
struct Batched<L, V>(L, PhantomData<fn(V)>);

impl<V: Send + 'static, L: StatefulBatchLogic<V>> StatefulLogic<Vec<V>> for Batched<L, V> {
    type Out = L::Out;
    type State = L::State;
    fn on_item(&mut self, values: Vec<V>, emit: &mut Vec<L::Out>) -> Retention {
        self.0.on_batch(values, emit)
    }
    fn on_notify(&mut self, emit: &mut Vec<L::Out>) -> Retention {
        self.0.on_notify(emit)
    }
    fn on_eof(&mut self, emit: &mut Vec<L::Out>) -> Retention {
        self.0.on_eof(emit)
    }
    fn notify_at(&self) -> Option<Instant> {
        self.0.notify_at()
    }
    fn snapshot(&self) -> L::State {
        self.0.snapshot()
    }
}

/// Groups a batch's values by key, keys in order of first appearance.
fn group<K: Key, V>(batch: &mut Vec<(K, V)>, out: &mut Vec<(K, Vec<V>)>) {
    let mut at: FxHashMap<K, usize> = FxHashMap::default();
    for (k, v) in batch.drain(..) {
        match at.get(&k) {
            Some(&i) => out[i].1.push(v),
            None => {
                at.insert(k.clone(), out.len());
                out.push((k, vec![v]));
            }
        }
    }
}

impl<K: Key, V: ExchangeData> Stream<(K, V)> {
    /// Runs a [`StatefulBatchLogic`] per key (Bytewax's `stateful_batch`); `builder`
    /// makes a key's logic when the key is first seen (with its saved state when
    /// resuming). A composite step: `step.batch` groups each batch by key,
    /// `step.logic` runs the logic.
    ///
    /// ```
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::{Retention, StatefulBatchLogic};
    ///
    /// /// Sums each key's values and emits the sum at end of stream.
    /// struct Sum(i64);
    /// impl StatefulBatchLogic<i64> for Sum {
    ///     type Out = i64;
    ///     type State = i64;
    ///     fn on_batch(&mut self, values: Vec<i64>, _emit: &mut Vec<i64>) -> Retention {
    ///         self.0 += values.iter().sum::<i64>();
    ///         Retention::Retain
    ///     }
    ///     fn on_eof(&mut self, emit: &mut Vec<i64>) -> Retention {
    ///         emit.push(self.0);
    ///         Retention::Discard
    ///     }
    ///     fn snapshot(&self) -> i64 { self.0 }
    /// }
    ///
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec![("a", 1), ("b", 2), ("a", 3)]))
    ///     .stateful_batch("sum", |resume: Option<i64>| Sum(resume.unwrap_or(0)))
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("a", 4), ("b", 2)]);
    /// ```
    pub fn stateful_batch<L: StatefulBatchLogic<V>>(
        &self,
        step: &str,
        builder: impl Fn(Option<L::State>) -> L + Send + Sync + 'static,
    ) -> Stream<(K, L::Out)> {
        let inner = self.enter_as(step, "stateful_batch");
        inner
            .unary::<(K, Vec<V>)>("batch", "stateful_batch", |ctx, inp, out| {
                transform(ctx, inp, out, group::<K, V>);
                Ok(())
            })
            .stateful("logic", move |resume| Batched(builder(resume), PhantomData))
            .rescope(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_keeps_each_keys_order() {
        let mut batch = vec![("b", 1), ("a", 2), ("b", 3), ("a", 4), ("c", 5)];
        let mut out = Vec::new();
        group(&mut batch, &mut out);
        assert_eq!(
            out,
            vec![("b", vec![1, 3]), ("a", vec![2, 4]), ("c", vec![5])]
        );
        assert!(batch.is_empty());
    }
}
