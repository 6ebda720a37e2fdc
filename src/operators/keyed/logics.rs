//! The logics of the built-in keyed operators (the operators themselves are in
//! `operators/stateful.rs`).

use std::marker::PhantomData;
use std::time::Instant;

use super::out::KeyedOut;
use super::KeyedLogic;
use crate::operators::stateful::{Retention, StatefulLogic};
use crate::recovery::encode_into;
use crate::runtime::push::{Data, ExchangeData};

pub(crate) struct UserLogic<B, L>(pub(crate) B, pub(crate) PhantomData<fn() -> L>);

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

/// What every [`BY_VALUE`](KeyedLogic::BY_VALUE) logic has alike: the by-reference
/// callbacks, which the engine never calls for it, and the codec of its bare state,
/// snapshotted as `Some(state)`. A snapshot row is thus the `Option` these logics hand
/// their callbacks, so `stateful_map` and `stateful_flat_map` read each other's.
macro_rules! by_value {
    ($s:ty, $v:ty, $w:ty) => {
        const BY_VALUE: bool = true;
        fn build(&self) -> $s {
            unreachable!("a BY_VALUE logic builds no state: a new key's callback is given None")
        }
        fn on_item(&self, _state: &mut $s, _value: $v, _emit: &mut Vec<$w>) -> Retention {
            unreachable!("a BY_VALUE logic is applied by value (on_item_owned)")
        }
        fn encode(&self, state: &$s, out: &mut Vec<u8>) -> Result<(), String> {
            encode_into(&Some(state), out)
        }
        fn decode(&self, bytes: &[u8]) -> Result<$s, String> {
            let state: Option<$s> = crate::recovery::decode(bytes)?;
            state.ok_or_else(|| {
                "the saved state is None, which no live key of this step has; \
                 was the snapshot written by a different flow?"
                    .to_string()
            })
        }
    };
}

pub(crate) struct FlatMapLogic<F, S, I>(pub(crate) F, pub(crate) PhantomData<fn(S) -> I>);

impl<V, S, W, I, F> KeyedLogic<V> for FlatMapLogic<F, S, I>
where
    V: Data,
    S: Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
    W: Data,
    I: IntoIterator<Item = W> + 'static,
    F: Fn(Option<S>, V) -> (Option<S>, I) + Send + Sync + 'static,
{
    type State = S;
    type Out = W;
    const TIMERS: bool = false;
    const EOF_KEEPS_STATE: bool = true;

    by_value!(S, V, W);
    fn on_item_owned(&self, state: Option<S>, value: V, emit: &mut Vec<W>) -> Option<S> {
        let (next, out) = (self.0)(state, value);
        emit.extend(out);
        next
    }
    #[inline(always)]
    fn on_item_keyed_owned<K, O: KeyedOut<K, W>>(
        &self,
        state: Option<S>,
        value: V,
        key: &K,
        _emit: &mut Vec<W>,
        out: &mut O,
    ) -> Option<S> {
        let (next, ws) = (self.0)(state, value);
        ws.into_iter().for_each(|w| out.emit(key, w));
        next
    }
}

/// `stateful_map`: one output per item, so the engine can map a batch in place
/// ([`KeyedLogic::ONE_TO_ONE`]). Its snapshots are those of [`FlatMapLogic`].
pub(crate) struct MapLogic<F, S>(pub(crate) F, pub(crate) PhantomData<fn() -> S>);

impl<V, S, W, F> KeyedLogic<V> for MapLogic<F, S>
where
    V: Data,
    S: Send + serde::Serialize + serde::de::DeserializeOwned + 'static,
    W: Data,
    F: Fn(Option<S>, V) -> (Option<S>, W) + Send + Sync + 'static,
{
    type State = S;
    type Out = W;
    const TIMERS: bool = false;
    const EOF_KEEPS_STATE: bool = true;
    const ONE_TO_ONE: bool = true;

    by_value!(S, V, W);
    fn on_item_owned(&self, state: Option<S>, value: V, emit: &mut Vec<W>) -> Option<S> {
        let (next, w) = (self.0)(state, value);
        emit.push(w);
        next
    }
    #[inline(always)]
    fn on_item_one(&self, state: Option<S>, value: V) -> (Option<S>, W) {
        (self.0)(state, value)
    }
}

/// `fold_final`: the accumulator is built at a key's first item.
pub(crate) struct FoldLogic<B, F>(pub(crate) B, pub(crate) F);

impl<V, S, B, F> KeyedLogic<V> for FoldLogic<B, F>
where
    V: Data,
    S: ExchangeData,
    B: Fn() -> S + Send + Sync + 'static,
    F: Fn(S, V) -> S + Send + Sync + 'static,
{
    type State = S;
    type Out = S;
    const TIMERS: bool = false;
    const SILENT_ON_ITEM: bool = true;

    by_value!(S, V, S);
    #[inline]
    fn on_item_owned(&self, state: Option<S>, value: V, _emit: &mut Vec<S>) -> Option<S> {
        let acc = state.unwrap_or_else(|| (self.0)());
        Some((self.1)(acc, value))
    }
    fn on_eof_owned(&self, state: S, emit: &mut Vec<S>) -> Option<S> {
        emit_final(state, emit)
    }
}

pub(crate) struct CountLogic;

/// `count_final`'s count: each value is how many items it stands for (1 from the key
/// step, more once combined before the exchange).
impl KeyedLogic<u64> for CountLogic {
    type State = u64;
    type Out = u64;
    const TIMERS: bool = false;
    const SILENT_ON_ITEM: bool = true;
    const COMBINES: bool = true;

    #[inline]
    fn combine(&self, into: &mut u64, value: u64) {
        *into += value;
    }

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
    fn on_item(&self, state: &mut u64, value: u64, _emit: &mut Vec<u64>) -> Retention {
        *state += value;
        Retention::Retain
    }
    fn on_eof(&self, state: &mut u64, emit: &mut Vec<u64>) -> Retention {
        emit.push(*state);
        Retention::Discard
    }
}

/// `max_final` (`MAX`) and `min_final`: `reduce_final` with `std::cmp::max` or
/// `std::cmp::min`, whose values also merge before the exchange (`KeyedLogic::COMBINES`:
/// both are associative). Ties resolve as std's do, `max` to the later value and `min`
/// to the earlier, so a merged partial is what the same values reduced in order give.
pub(crate) struct ExtremeLogic<const MAX: bool>;

impl<const MAX: bool> ExtremeLogic<MAX> {
    #[inline(always)]
    fn pick<V: Ord>(acc: V, value: V) -> V {
        if MAX {
            std::cmp::max(acc, value)
        } else {
            std::cmp::min(acc, value)
        }
    }
}

impl<V: ExchangeData + Ord, const MAX: bool> KeyedLogic<V> for ExtremeLogic<MAX> {
    type State = V;
    type Out = V;
    const TIMERS: bool = false;
    const SILENT_ON_ITEM: bool = true;
    const COMBINES: bool = true;

    by_value!(V, V, V);
    #[inline]
    fn on_item_owned(&self, state: Option<V>, value: V, _emit: &mut Vec<V>) -> Option<V> {
        Some(reduce_into(state, value, Self::pick))
    }
    fn on_eof_owned(&self, state: V, emit: &mut Vec<V>) -> Option<V> {
        emit_final(state, emit)
    }
    #[inline]
    fn combine(&self, into: &mut V, value: V) {
        // In place, as `pick` would choose: replace only if the new value wins.
        let wins = if MAX { value >= *into } else { value < *into };
        if wins {
            *into = value;
        }
    }
}

pub(crate) struct ReduceLogic<F>(pub(crate) F);

impl<V: ExchangeData, F: Fn(V, V) -> V + Send + Sync + 'static> KeyedLogic<V> for ReduceLogic<F> {
    type State = V;
    type Out = V;
    const TIMERS: bool = false;
    const SILENT_ON_ITEM: bool = true;

    by_value!(V, V, V);
    #[inline]
    fn on_item_owned(&self, state: Option<V>, value: V, _emit: &mut Vec<V>) -> Option<V> {
        Some(reduce_into(state, value, &self.0))
    }
    fn on_eof_owned(&self, state: V, emit: &mut Vec<V>) -> Option<V> {
        emit_final(state, emit)
    }
}

/// A reduction's next state: the first value, or the reducer of the state and it.
#[inline(always)]
fn reduce_into<V>(state: Option<V>, value: V, f: impl Fn(V, V) -> V) -> V {
    match state {
        Some(acc) => f(acc, value),
        None => value,
    }
}

/// End of stream for a `*_final` reduction: the state is the key's output.
fn emit_final<V>(state: V, emit: &mut Vec<V>) -> Option<V> {
    emit.push(state);
    None
}

// ---- collect -------------------------------------------------------------------------

pub(crate) struct CollectLogic {
    pub(crate) timeout: std::time::Duration,
    pub(crate) max_size: usize,
}

/// A key's items being collected, and when the collection times out.
pub(crate) struct Collecting<V> {
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

    /// A value ordered by `0` only, so that ties are told apart by `1`.
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct Tied(u8, u16);
    impl PartialEq for Tied {
        fn eq(&self, o: &Self) -> bool {
            self.0 == o.0
        }
    }
    impl Eq for Tied {}
    impl PartialOrd for Tied {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Tied {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            self.0.cmp(&o.0)
        }
    }

    /// Reduces `values` in order with the logic's item callback.
    fn reduced<const MAX: bool>(values: &[Tied]) -> Option<Tied> {
        let logic = ExtremeLogic::<MAX>;
        let mut emit = Vec::new();
        values.iter().fold(None, |s, v| {
            KeyedLogic::<Tied>::on_item_owned(&logic, s, v.clone(), &mut emit)
        })
    }

    proptest::proptest! {
        /// Values merged in chunks before the exchange (`combine`), then the partials
        /// reduced in order, give the very value (ties included) that reducing every
        /// value in order gives, for max and min.
        #[test]
        fn merged_partials_reduce_to_what_the_values_reduce_to(
            vals in proptest::collection::vec(0u8..4, 1..40),
            cut in proptest::collection::vec(1usize..6, 1..10),
        ) {
            let values: Vec<Tied> = vals.iter().enumerate().map(|(i, &v)| Tied(v, i as u16)).collect();
            fn check<const MAX: bool>(values: &[Tied], cut: &[usize]) -> Result<(), proptest::test_runner::TestCaseError> {
                let logic = ExtremeLogic::<MAX>;
                let mut partials = Vec::new();
                let (mut at, mut c) = (0, 0);
                while at < values.len() {
                    let end = (at + cut[c % cut.len()]).min(values.len());
                    let mut acc = values[at].clone();
                    for v in &values[at + 1..end] {
                        KeyedLogic::<Tied>::combine(&logic, &mut acc, v.clone());
                    }
                    partials.push(acc);
                    (at, c) = (end, c + 1);
                }
                let (want, got) = (reduced::<MAX>(values), reduced::<MAX>(&partials));
                proptest::prop_assert_eq!(want.map(|t| t.1), got.map(|t| t.1));
                Ok(())
            }
            check::<true>(&values, &cut)?;
            check::<false>(&values, &cut)?;
        }
    }
}
