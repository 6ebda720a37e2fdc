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

/// The state of `stateful_map` and `stateful_flat_map`: `None` for a new key (what the
/// mapper is given), snapshotted as the `Option` itself, so both logics read each
/// other's snapshots.
macro_rules! optional_state {
    ($s:ty) => {
        fn build(&self) -> Option<$s> {
            None
        }
        fn encode(&self, state: &Option<$s>, out: &mut Vec<u8>) -> Result<(), String> {
            encode_into(state, out)
        }
        fn decode(&self, bytes: &[u8]) -> Result<Option<$s>, String> {
            crate::recovery::decode(bytes)
        }
    };
}

pub(crate) struct FlatMapLogic<F, S, I>(pub(crate) F, pub(crate) PhantomData<fn(S) -> I>);

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
        kept(state)
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

    optional_state!(S);
    fn on_item(&self, state: &mut Option<S>, value: V, emit: &mut Vec<W>) -> Retention {
        self.apply(state, value, |w| emit.push(w))
    }
    #[inline(always)]
    fn on_item_keyed<K, O: KeyedOut<K, W>>(
        &self,
        state: &mut Option<S>,
        value: V,
        key: &K,
        _emit: &mut Vec<W>,
        out: &mut O,
    ) -> Retention {
        self.apply(state, value, |w| out.emit(key, w))
    }
}

/// Whether a `stateful_map` or `stateful_flat_map` key keeps its state.
#[inline(always)]
fn kept<S>(state: &Option<S>) -> Retention {
    if state.is_some() {
        Retention::Retain
    } else {
        Retention::Discard
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
    type State = Option<S>;
    type Out = W;
    const TIMERS: bool = false;
    const EOF_KEEPS_STATE: bool = true;
    const ONE_TO_ONE: bool = true;

    optional_state!(S);
    fn on_item(&self, state: &mut Option<S>, value: V, emit: &mut Vec<W>) -> Retention {
        let (retention, w) = self.on_item_one(state, value);
        emit.push(w);
        retention
    }
    #[inline(always)]
    fn on_item_one(&self, state: &mut Option<S>, value: V) -> (Retention, W) {
        let (next, w) = (self.0)(state.take(), value);
        *state = next;
        (kept(state), w)
    }
}

pub(crate) struct FoldLogic<B, F>(pub(crate) B, pub(crate) F);

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
    const SILENT_ON_ITEM: bool = true;

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

pub(crate) struct CountLogic;

impl<V: Data> KeyedLogic<V> for CountLogic {
    type State = u64;
    type Out = u64;
    const TIMERS: bool = false;
    const SILENT_ON_ITEM: bool = true;

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

pub(crate) struct ReduceLogic<F>(pub(crate) F);

impl<V: ExchangeData, F: Fn(V, V) -> V + Send + Sync + 'static> KeyedLogic<V> for ReduceLogic<F> {
    type State = Option<V>;
    type Out = V;
    const TIMERS: bool = false;
    const SILENT_ON_ITEM: bool = true;

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
}
