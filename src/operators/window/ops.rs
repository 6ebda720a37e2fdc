//! The window operators: methods on keyed streams, each a composite step
//! `step.window` (the keyed window step) + `step.split` (into `down`, `late`, `meta`).

use std::marker::PhantomData;

use super::clock::Clock;
use super::engine::{UserWindow, WindowAgg, WindowEvent, WindowLogic, WindowStep};
use super::windower::Windower;
use super::{WindowConfigError, WindowMetadata, WindowOut, WindowStats};
use crate::dataflow::{Key, Role, Stream};
use crate::error::Error;
pub use crate::operators::join::JoinSide;
use crate::operators::join::{JoinEmit, JoinInsert, JoinSides, JoinWith};
use crate::recovery::{decode, encode_into};
use crate::runtime::push::{Data, PushFn};

// ---- the built-in window logics -----------------------------------------------------

struct FoldAgg<B, F, M>(B, F, M);

impl<V, S, B, F, M> WindowAgg<V> for FoldAgg<B, F, M>
where
    S: crate::ExchangeData,
    B: Fn() -> S + Send + Sync + 'static,
    F: Fn(S, V) -> S + Send + Sync + 'static,
    M: Fn(S, S) -> S + Send + Sync + 'static,
{
    // `None` only while the folder runs.
    type Acc = Option<S>;
    type Out = S;

    fn build(&self) -> Option<S> {
        Some((self.0)())
    }
    fn on_value(&self, acc: &mut Option<S>, value: V, _emit: &mut Vec<S>) {
        let s = acc.take().expect("an accumulator outside the folder");
        *acc = Some((self.1)(s, value));
    }
    fn on_merge(&self, into: &mut Option<S>, original: Option<S>, _emit: &mut Vec<S>) {
        if let (Some(a), Some(b)) = (into.take(), original) {
            *into = Some((self.2)(a, b));
        }
    }
    fn on_close(&self, acc: Option<S>, emit: &mut Vec<S>) {
        emit.extend(acc);
    }
    fn encode(&self, acc: &Option<S>, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(acc, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Option<S>, String> {
        decode(bytes)
    }
}

struct CountAgg;

impl<V> WindowAgg<V> for CountAgg {
    type Acc = u64;
    type Out = u64;

    fn build(&self) -> u64 {
        0
    }
    #[inline]
    fn on_value(&self, acc: &mut u64, _value: V, _emit: &mut Vec<u64>) {
        *acc += 1;
    }
    fn on_merge(&self, into: &mut u64, original: u64, _emit: &mut Vec<u64>) {
        *into += original;
    }
    fn on_close(&self, acc: u64, emit: &mut Vec<u64>) {
        emit.push(acc);
    }
    fn encode(&self, acc: &u64, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(acc, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<u64, String> {
        decode(bytes)
    }
}

struct CollectAgg;

impl<V: crate::ExchangeData> WindowAgg<V> for CollectAgg {
    type Acc = Vec<V>;
    type Out = Vec<V>;

    fn build(&self) -> Vec<V> {
        Vec::new()
    }
    fn on_value(&self, acc: &mut Vec<V>, value: V, _emit: &mut Vec<Vec<V>>) {
        acc.push(value);
    }
    fn on_merge(&self, into: &mut Vec<V>, mut original: Vec<V>, _emit: &mut Vec<Vec<V>>) {
        into.append(&mut original);
    }
    fn on_close(&self, acc: Vec<V>, emit: &mut Vec<Vec<V>>) {
        emit.push(acc);
    }
    fn encode(&self, acc: &Vec<V>, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(acc, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Vec<V>, String> {
        decode(bytes)
    }
}

struct ReduceAgg<F>(F);

impl<V: crate::ExchangeData, F: Fn(V, V) -> V + Send + Sync + 'static> WindowAgg<V>
    for ReduceAgg<F>
{
    type Acc = Option<V>;
    type Out = V;

    fn build(&self) -> Option<V> {
        None
    }
    fn on_value(&self, acc: &mut Option<V>, value: V, _emit: &mut Vec<V>) {
        *acc = Some(match acc.take() {
            Some(a) => (self.0)(a, value),
            None => value,
        });
    }
    fn on_merge(&self, into: &mut Option<V>, original: Option<V>, _emit: &mut Vec<V>) {
        *into = match (into.take(), original) {
            (Some(a), Some(b)) => Some((self.0)(a, b)),
            (a, b) => a.or(b),
        };
    }
    fn on_close(&self, acc: Option<V>, emit: &mut Vec<V>) {
        emit.extend(acc);
    }
    fn encode(&self, acc: &Option<V>, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(acc, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Option<V>, String> {
        decode(bytes)
    }
}

struct JoinAgg<S> {
    sides: S,
    insert: JoinInsert,
    emit: JoinEmit,
}

impl<S: JoinSides> JoinAgg<S> {
    fn check_emit(&self, state: &mut S::State, emit: &mut Vec<S::Row>) {
        match self.emit {
            JoinEmit::Complete if self.sides.is_complete(state) => {
                self.sides.product(state, emit);
                self.sides.clear(state);
            }
            JoinEmit::Running => self.sides.product(state, emit),
            _ => {}
        }
    }
}

impl<S: JoinSides> WindowAgg<S::Value> for JoinAgg<S> {
    type Acc = S::State;
    type Out = S::Row;

    fn build(&self) -> Self::Acc {
        self.sides.empty()
    }
    fn on_value(&self, acc: &mut Self::Acc, value: S::Value, emit: &mut Vec<Self::Out>) {
        self.sides.insert(acc, value, self.insert);
        self.check_emit(acc, emit);
    }
    fn on_merge(&self, into: &mut Self::Acc, original: Self::Acc, emit: &mut Vec<Self::Out>) {
        self.sides.merge(into, original, self.insert);
        self.check_emit(into, emit);
    }
    fn on_close(&self, acc: Self::Acc, emit: &mut Vec<Self::Out>) {
        if self.emit == JoinEmit::Final && !self.sides.is_empty(&acc) {
            self.sides.product(&acc, emit);
        }
    }
    fn encode(&self, acc: &Self::Acc, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(acc, out)
    }
    fn decode(&self, bytes: &[u8]) -> Result<Self::Acc, String> {
        decode(bytes)
    }
}

// ---- the steps ----------------------------------------------------------------------

impl<K: Key, V: crate::ExchangeData> Stream<(K, V)> {
    /// The window step and its split, in the composite scope this stream is in.
    /// `id` is the composite's full id, named by a configuration error.
    fn window_steps<C, Wr, A>(
        &self,
        id: String,
        clock: C,
        windower: Wr,
        agg: A,
        ordered: bool,
    ) -> WindowOut<K, V, A::Out>
    where
        C: Clock<V>,
        Wr: Windower,
        A: WindowAgg<V>,
    {
        let problem: Option<WindowConfigError> =
            clock.validate().and_then(|_| windower.validate()).err();
        let stats = WindowStats::default();
        let events = self.keyed(
            "window",
            "window",
            WindowStep {
                clock,
                windower,
                agg,
                ordered,
                stats: stats.clone(),
            },
        );
        let outs = events.general(
            "split",
            "window_split",
            Role::Operator,
            vec![events.id],
            3,
            move |ctx, ins, outs| {
                if let Some(problem) = &problem {
                    return Err(Error::in_step(id.clone(), problem.clone()));
                }
                let mut down = ctx.take_tee::<(K, (i64, A::Out))>(outs[0]);
                let mut late = ctx.take_tee::<(K, (i64, V))>(outs[1]);
                let mut meta = ctx.take_tee::<(K, (i64, WindowMetadata))>(outs[2]);
                let (mut d, mut l, mut m) = (Vec::new(), Vec::new(), Vec::new());
                ctx.consume(
                    ins[0],
                    PushFn(move |epoch, batch: &mut Vec<(K, WindowEvent<V, A::Out>)>| {
                        for (k, event) in batch.drain(..) {
                            match event {
                                WindowEvent::Down(w, x) => d.push((k, (w, x))),
                                WindowEvent::Late(w, x) => l.push((k, (w, x))),
                                WindowEvent::Meta(w, x) => m.push((k, (w, x))),
                            }
                        }
                        down.push(epoch, &mut d);
                        late.push(epoch, &mut l);
                        meta.push(epoch, &mut m);
                    }),
                );
                Ok(())
            },
        );
        WindowOut {
            down: self.output_handle(outs[0]),
            late: self.output_handle(outs[1]),
            meta: self.output_handle(outs[2]),
            stats,
        }
    }

    /// Opens the composite `step` and runs `agg` over windows inside it.
    fn windowed<C, Wr, A>(
        &self,
        step: &str,
        kind: &'static str,
        clock: C,
        windower: Wr,
        agg: A,
        ordered: bool,
    ) -> WindowOut<K, V, A::Out>
    where
        C: Clock<V>,
        Wr: Windower,
        A: WindowAgg<V>,
    {
        let id = format!("{}.{step}", self.scope());
        let out = self
            .enter_as(step, kind)
            .window_steps(id, clock, windower, agg, ordered);
        rescope(out, self)
    }

    /// Runs a [`WindowLogic`] per window of each key (Bytewax's generic `window`):
    /// `builder` makes a window's logic when the window opens (with its saved state
    /// when resuming). With `ordered` (Bytewax's default), values wait until the
    /// watermark passes them and are applied in timestamp order; otherwise in arrival
    /// order.
    ///
    /// ```
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::window::{EventClock, TumblingWindower, WindowLogic};
    ///
    /// /// Emits the first and last value of each window.
    /// #[derive(Default)]
    /// struct Span(Option<(u32, u32)>);
    /// impl WindowLogic<(u32, DateTime<Utc>)> for Span {
    ///     type Out = (u32, u32);
    ///     type State = Option<(u32, u32)>;
    ///     fn on_value(&mut self, (v, _): (u32, DateTime<Utc>), _emit: &mut Vec<(u32, u32)>) {
    ///         self.0 = Some(self.0.map_or((v, v), |(first, _)| (first, v)));
    ///     }
    ///     fn on_merge(&mut self, _original: Self, _emit: &mut Vec<(u32, u32)>) {}
    ///     fn on_close(self, emit: &mut Vec<(u32, u32)>) { emit.extend(self.0); }
    ///     fn snapshot(&self) -> Option<(u32, u32)> { self.0 }
    /// }
    ///
    /// let t0 = DateTime::from_timestamp(0, 0).unwrap();
    /// let at = move |s| t0 + TimeDelta::seconds(s);
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// // Out of order within the 2 s wait: applied in timestamp order.
    /// let inp = flow.input("inp", TestingSource::new(vec![("k", (2, at(2))), ("k", (1, at(1))), ("k", (3, at(3)))]));
    /// inp.window(
    ///     "span",
    ///     EventClock::new(|v: &(u32, DateTime<Utc>)| v.1, TimeDelta::seconds(2)),
    ///     TumblingWindower::new(TimeDelta::seconds(10), t0),
    ///     |_resume| Span::default(),
    ///     true,
    /// )
    /// .down
    /// .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("k", (0, (1, 3)))]);
    /// ```
    pub fn window<C, Wr, L>(
        &self,
        step: &str,
        clock: C,
        windower: Wr,
        builder: impl Fn(Option<L::State>) -> L + Send + Sync + 'static,
        ordered: bool,
    ) -> WindowOut<K, V, L::Out>
    where
        C: Clock<V>,
        Wr: Windower,
        L: WindowLogic<V>,
    {
        self.windowed(
            step,
            "window",
            clock,
            windower,
            UserWindow(builder, PhantomData),
            ordered,
        )
    }

    /// Folds each window's values into an accumulator that starts as `builder()`, and
    /// emits it when the window closes. `merger` combines two accumulators when
    /// sessions merge. `ordered`: see [`window`](Self::window) (Bytewax's default is
    /// `true`).
    ///
    /// ```
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::window::{EventClock, TumblingWindower};
    ///
    /// let t0 = DateTime::from_timestamp(0, 0).unwrap();
    /// let at = move |s| t0 + TimeDelta::seconds(s);
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let inp = flow.input("inp", TestingSource::new(vec![("k", (5, at(1))), ("k", (7, at(3))), ("k", (1, at(12)))]));
    /// inp.fold_window(
    ///     "sum",
    ///     EventClock::new(|v: &(i32, DateTime<Utc>)| v.1, TimeDelta::zero()),
    ///     TumblingWindower::new(TimeDelta::seconds(10), t0),
    ///     || 0,
    ///     |acc, (v, _)| acc + v,
    ///     |a, b| a + b,
    ///     true,
    /// )
    /// .down
    /// .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("k", (0, 12)), ("k", (1, 1))]);
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn fold_window<S: crate::ExchangeData, C: Clock<V>, Wr: Windower>(
        &self,
        step: &str,
        clock: C,
        windower: Wr,
        builder: impl Fn() -> S + Send + Sync + 'static,
        folder: impl Fn(S, V) -> S + Send + Sync + 'static,
        merger: impl Fn(S, S) -> S + Send + Sync + 'static,
        ordered: bool,
    ) -> WindowOut<K, V, S> {
        self.windowed(
            step,
            "fold_window",
            clock,
            windower,
            FoldAgg(builder, folder, merger),
            ordered,
        )
    }

    /// Collects each window's values into a list, emitted when the window closes.
    /// `ordered` (Bytewax's default `true`) puts the values in timestamp order.
    ///
    /// ```
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::window::{EventClock, SessionWindower};
    ///
    /// let t0 = DateTime::from_timestamp(0, 0).unwrap();
    /// let at = move |s| t0 + TimeDelta::seconds(s);
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let inp = flow.input("inp", TestingSource::new(vec![("u", at(0)), ("u", at(3)), ("u", at(20))]));
    /// inp.collect_window(
    ///     "sessions",
    ///     EventClock::new(|t: &DateTime<Utc>| *t, TimeDelta::seconds(30)),
    ///     SessionWindower::new(TimeDelta::seconds(5)),
    ///     true,
    /// )
    /// .down
    /// .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("u", (0, vec![at(0), at(3)])), ("u", (1, vec![at(20)]))]);
    /// ```
    pub fn collect_window<C: Clock<V>, Wr: Windower>(
        &self,
        step: &str,
        clock: C,
        windower: Wr,
        ordered: bool,
    ) -> WindowOut<K, V, Vec<V>> {
        self.windowed(step, "collect_window", clock, windower, CollectAgg, ordered)
    }

    /// Combines each window's values pairwise with `reducer` (in arrival order, as
    /// Bytewax), emitting the result when the window closes.
    ///
    /// ```
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::window::{EventClock, TumblingWindower};
    ///
    /// let t0 = DateTime::from_timestamp(0, 0).unwrap();
    /// let at = move |s| t0 + TimeDelta::seconds(s);
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let inp = flow.input("inp", TestingSource::new(vec![("k", ("a", at(1))), ("k", ("b", at(2)))]));
    /// inp.map_value("own", |(s, t): (&str, _)| (s.to_string(), t))
    ///     .reduce_window(
    ///         "concat",
    ///         EventClock::new(|v: &(String, DateTime<Utc>)| v.1, TimeDelta::zero()),
    ///         TumblingWindower::new(TimeDelta::seconds(10), t0),
    ///         |a, b| (a.0 + &b.0, a.1.max(b.1)),
    ///     )
    ///     .down
    ///     .map("fmt", |(k, (w, (s, _)))| (k, w, s))
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("k", 0, "ab".to_string())]);
    /// ```
    pub fn reduce_window<C: Clock<V>, Wr: Windower>(
        &self,
        step: &str,
        clock: C,
        windower: Wr,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> WindowOut<K, V, V> {
        self.windowed(
            step,
            "reduce_window",
            clock,
            windower,
            ReduceAgg(reducer),
            false,
        )
    }

    /// The largest value of each window, when the window closes.
    ///
    /// ```
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::window::{EventClock, TumblingWindower};
    ///
    /// let t0 = DateTime::from_timestamp(0, 0).unwrap();
    /// let at = move |s| t0 + TimeDelta::seconds(s);
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let inp = flow.input("inp", TestingSource::new(vec![("k", (4, at(1))), ("k", (9, at(2))), ("k", (2, at(3)))]));
    /// // Tuples compare by their first field: the value.
    /// inp.max_window(
    ///     "max",
    ///     EventClock::new(|v: &(i32, DateTime<Utc>)| v.1, TimeDelta::zero()),
    ///     TumblingWindower::new(TimeDelta::seconds(10), t0),
    /// )
    /// .down
    /// .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("k", (0, (9, at(2))))]);
    /// ```
    pub fn max_window<C: Clock<V>, Wr: Windower>(
        &self,
        step: &str,
        clock: C,
        windower: Wr,
    ) -> WindowOut<K, V, V>
    where
        V: Ord,
    {
        self.windowed(
            step,
            "max_window",
            clock,
            windower,
            ReduceAgg(|a: V, b: V| if b > a { b } else { a }),
            false,
        )
    }

    /// The smallest value of each window, when the window closes.
    ///
    /// ```
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::window::{SystemClock, TumblingWindower};
    ///
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let inp = flow.input("inp", TestingSource::new(vec![("k", 4), ("k", 2), ("k", 9)]));
    /// // Processing time: a window as long as a day holds the whole (short) run.
    /// let align = DateTime::from_timestamp(0, 0).unwrap();
    /// inp.min_window("min", SystemClock::new(), TumblingWindower::new(TimeDelta::days(3650), align))
    ///     .down
    ///     .map("value", |(k, (_, v))| (k, v))
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("k", 2)]);
    /// ```
    pub fn min_window<C: Clock<V>, Wr: Windower>(
        &self,
        step: &str,
        clock: C,
        windower: Wr,
    ) -> WindowOut<K, V, V>
    where
        V: Ord,
    {
        self.windowed(
            step,
            "min_window",
            clock,
            windower,
            ReduceAgg(|a: V, b: V| if b < a { b } else { a }),
            false,
        )
    }

    /// Joins this keyed stream with `others` per key and window: one other stream, a
    /// tuple of up to five, or a slice of streams of this value type, as for
    /// [`join`](Self::join). `insert` says which values each side keeps and `emit`
    /// when to emit, within each window: `Complete` once every side has a value (then
    /// the window's values are cleared), `Running` on every value, `Final` (Bytewax's
    /// default for windows) when the window closes. Each emission is
    /// `(key, (window_id, row))`, a row as `join` emits it. The clock reads
    /// timestamps from the tagged values ([`JoinSide`] for two sides, `JoinSide3`..
    /// `JoinSide6` for tuples, `(side, value)` for slices), and late items carry
    /// them. `ordered`: see [`window`](Self::window) (Bytewax's default is `true`).
    ///
    /// ```
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::{JoinEmit, JoinInsert};
    /// use waxfast::operators::window::{EventClock, JoinSide, TumblingWindower};
    ///
    /// type Click = (DateTime<Utc>, String); // owned: values cross exchanges
    /// let t0 = DateTime::from_timestamp(0, 0).unwrap();
    /// let at = move |s| t0 + TimeDelta::seconds(s);
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let click = move |s, page: &str| ("u1", (at(s), page.to_string()));
    /// let views = flow.input("views", TestingSource::new(vec![click(1, "home"), click(12, "cart")]));
    /// let buys = flow.input("buys", TestingSource::new(vec![click(15, "book")]));
    /// let ts = |side: &JoinSide<Click, Click>| match side {
    ///     JoinSide::Left(v) | JoinSide::Right(v) => v.0,
    /// };
    /// views.join_window(
    ///     "j",
    ///     &buys,
    ///     EventClock::new(ts, TimeDelta::seconds(60)),
    ///     TumblingWindower::new(TimeDelta::seconds(10), t0),
    ///     JoinInsert::Last,
    ///     JoinEmit::Final,
    ///     true,
    /// )
    /// .down
    /// .map("names", |(k, (w, (v, b)))| (k, w, v.map(|v| v.1), b.map(|b| b.1)))
    /// .output("out", sink);
    /// run_main(&flow).unwrap();
    /// let s = |x: &str| Some(x.to_string());
    /// assert_eq!(out.take(), vec![("u1", 0, s("home"), None), ("u1", 1, s("cart"), s("book"))]);
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn join_window<O, C, Wr>(
        &self,
        step: &str,
        others: O,
        clock: C,
        windower: Wr,
        insert: JoinInsert,
        emit: JoinEmit,
        ordered: bool,
    ) -> WindowOut<K, <O::Sides as JoinSides>::Value, <O::Sides as JoinSides>::Row>
    where
        O: JoinWith<K, V>,
        C: Clock<<O::Sides as JoinSides>::Value>,
        Wr: Windower,
    {
        let id = format!("{}.{step}", self.scope());
        let inner = self.enter_as(step, "join_window");
        let (sides, merged) = others.tag_and_merge(step, &inner);
        let out = merged.window_steps(
            id,
            clock,
            windower,
            JoinAgg {
                sides,
                insert,
                emit,
            },
            ordered,
        );
        rescope(out, self)
    }
}

impl<T: Data> Stream<T> {
    /// Counts items per `key_fn(item)` and window, emitting `(key, (window_id, count))`
    /// when each window closes. Late items keep their original form:
    /// `(key, (window_id, item))`. A composite step: `step.key`, `step.window`,
    /// `step.split`.
    ///
    /// ```
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::window::{EventClock, TumblingWindower};
    ///
    /// type Event = (char, DateTime<Utc>); // items cross exchanges: owned data
    /// let t0 = DateTime::from_timestamp(0, 0).unwrap();
    /// let at = move |s| t0 + TimeDelta::seconds(s);
    /// let flow = Dataflow::new("f");
    /// let (down, counts) = TestingSink::new();
    /// let (late, lates) = TestingSink::new();
    /// let inp = flow.input("inp", TestingSource::new(vec![('a', at(1)), ('a', at(15)), ('a', at(2))]));
    /// let out = inp.count_window(
    ///     "count",
    ///     EventClock::new(|e: &Event| e.1, TimeDelta::zero()),
    ///     TumblingWindower::new(TimeDelta::seconds(10), t0),
    ///     |e: &Event| e.0,
    /// );
    /// out.down.output("down", down);
    /// out.late.output("late", late);
    /// run_main(&flow).unwrap();
    /// assert_eq!(counts.take(), vec![('a', (0, 1)), ('a', (1, 1))]);
    /// assert_eq!(lates.take(), vec![('a', (0, ('a', at(2))))]);
    /// ```
    pub fn count_window<K: Key, C: Clock<T>, Wr: Windower>(
        &self,
        step: &str,
        clock: C,
        windower: Wr,
        key_fn: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> WindowOut<K, T, u64>
    where
        T: crate::ExchangeData,
    {
        let id = format!("{}.{step}", self.scope());
        let out = self
            .enter_as(step, "count_window")
            .key_on("key", key_fn)
            .window_steps(id, clock, windower, CountAgg, false);
        rescope(out, self)
    }
}

/// `out`'s streams in `outer`'s scope (out of a composite operator).
fn rescope<K: Data, V: Data, W: Data, O>(
    out: WindowOut<K, V, W>,
    outer: &Stream<O>,
) -> WindowOut<K, V, W> {
    WindowOut {
        down: out.down.rescope(outer),
        late: out.late.rescope(outer),
        meta: out.meta.rescope(outer),
        stats: out.stats,
    }
}
