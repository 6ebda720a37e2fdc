//! The keyed engine's fast paths against plain ones, on random inputs, at 1, 2 and 8
//! workers, with and without recovery:
//!
//! * keyed steps (`stateful_map` and `stateful_flat_map` with discards, `fold_final`,
//!   `reduce_final`, string and integer keys, so both wire layouts of a keyed batch,
//!   and heap states) against a sequential model of the same logic, the recovering
//!   variant aborted mid-stream and resumed;
//! * `key_on` -> keyed step -> `key_rm` chains and `count_final`, which the engine
//!   fuses, against the same flows with fusion off (`RunConfig::fuse(false)`);
//! * the window engine's integer time (the built-in clocks and windowers) against the
//!   same clocks and windowers seen through wrappers that implement only the chrono
//!   methods of `ClockLogic` / `WindowerLogic`, so the engine goes through the
//!   traits' converting defaults.
//!
//! Cases are few and small: every case runs several flows with real worker threads.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use waxfast::connectors::testing::{TestEvent, TestingOutput, TestingSink, TestingSource};
use waxfast::operators::window::chrono::{DateTime, TimeDelta, Utc};
use waxfast::operators::window::{
    Clock, ClockLogic, EventClock, SessionWindower, SlidingWindower, TestingClock,
    TumblingWindower, WindowMetadata, Windower, WindowerLogic,
};
use waxfast::recovery::{init, RecoveryConfig};
use waxfast::{cluster_main_with, Dataflow, RunConfig};

const WORKERS: [usize; 3] = [1, 2, 8];

fn config() -> RunConfig {
    RunConfig::default()
        .pin(false)
        .epoch_interval(Duration::ZERO)
}

// ---- keyed steps against a sequential model --------------------------------------

/// Per key, the running sum of the values, discarded (restarted) whenever it is a
/// multiple of 5; each output carries the item's input position.
type Emitted = (String, (usize, i64));

/// Per key, the values seen as letters since the last discard (a heap state), emitted
/// as two outputs per item; the key is discarded after a 0 once it has 3 letters.
type Spelled = (String, (usize, String));

/// Where [`keyed_flow`]'s steps write.
struct KeyedSinks {
    maps: TestingSink<Emitted>,
    folds: TestingSink<(u16, i64)>,
    spelled: TestingSink<Spelled>,
    reduced: TestingSink<(u16, i64)>,
}

/// The state of `stateful_flat_map` in [`keyed_flow`] and its model.
fn spell(state: Option<String>, i: usize, v: i64) -> (Option<String>, Vec<(usize, String)>) {
    let mut s = state.unwrap_or_default();
    s.push(char::from(b'a' + v as u8));
    let out = vec![(i, s.clone()), (i, s.to_uppercase())];
    let keep = !(v == 0 && s.len() >= 3);
    (keep.then_some(s), out)
}

/// The order-sensitive reduction of `reduce_final` in [`keyed_flow`] and its model.
fn combine(a: i64, b: i64) -> i64 {
    a * 7 % 1_000_003 + b
}

fn keyed_flow(
    items: Vec<(u16, i64)>,
    abort_at: Option<usize>,
    batch: usize,
    sinks: KeyedSinks,
) -> Dataflow {
    let KeyedSinks {
        maps,
        folds,
        spelled,
        reduced,
    } = sinks;
    let events = numbered_events(&items, abort_at);
    let flow = Dataflow::new("paths");
    let inp = flow.input("inp", TestingSource::events(events).batch_size(batch));
    // String keys: encoded bytes between workers.
    inp.map("as_str", |(i, k, v): (usize, u16, i64)| {
        (format!("k{k}"), (i, v))
    })
    .stateful_map("sum", |s: Option<i64>, (i, v): (usize, i64)| {
        let t = s.unwrap_or(0) + v;
        (if t % 5 == 0 { None } else { Some(t) }, (i, t))
    })
    .output("maps", maps);
    inp.map("as_str2", |(i, k, v): (usize, u16, i64)| {
        (format!("k{k}"), (i, v))
    })
    .stateful_flat_map("spell", |s: Option<String>, (i, v): (usize, i64)| {
        spell(s, i, v)
    })
    .output("spelled", spelled);
    // Integer keys: keys as values between workers.
    let ints = inp.map("as_int", |(_, k, v): (usize, u16, i64)| (k, v));
    ints.fold_final("fold", || 0i64, |acc, v| acc * 3 % 1_000_003 + v)
        .output("folds", folds);
    ints.reduce_final("reduce", combine)
        .output("reduced", reduced);
    flow
}

/// `items` as numbered test events, with an abort at `abort_at`.
fn numbered_events(
    items: &[(u16, i64)],
    abort_at: Option<usize>,
) -> Vec<TestEvent<(usize, u16, i64)>> {
    let mut events: Vec<TestEvent<(usize, u16, i64)>> = items
        .iter()
        .enumerate()
        .map(|(i, &(k, v))| TestEvent::Item((i, k, v)))
        .collect();
    if let Some(at) = abort_at {
        events.insert(at.min(events.len()), TestEvent::Abort);
    }
    events
}

/// Runs `flow` to completion; with `recovery`, first an execution that aborts at the
/// source `input` (its events hold an abort), then the resumed one.
fn run_maybe_resumed(
    flow: &Dataflow,
    input: &str,
    workers: usize,
    recovery: bool,
    config: RunConfig,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config;
    if recovery {
        init(dir.path(), 3).unwrap();
        config = config.recovery(RecoveryConfig::new(dir.path()));
        let err = cluster_main_with(flow, &[], 0, workers, &config)
            .expect_err("the first execution aborts");
        assert!(err.to_string().contains(input), "{err}");
    }
    cluster_main_with(flow, &[], 0, workers, &config).unwrap();
}

/// What [`keyed_flow`] emits, as sets (each output carries its input position, and a
/// final state is one per key).
struct KeyedOutputs {
    maps: BTreeSet<Emitted>,
    folds: BTreeSet<(u16, i64)>,
    spelled: BTreeSet<Spelled>,
    reduced: BTreeSet<(u16, i64)>,
}

fn model(items: &[(u16, i64)]) -> KeyedOutputs {
    let (mut sums, mut folds) = (BTreeMap::<u16, i64>::new(), BTreeMap::<u16, i64>::new());
    let mut words = BTreeMap::<u16, String>::new();
    let mut reduced = BTreeMap::<u16, i64>::new();
    let (mut maps, mut spelled) = (BTreeSet::new(), BTreeSet::new());
    for (i, &(k, v)) in items.iter().enumerate() {
        let s = sums.entry(k).or_insert(0);
        *s += v;
        maps.insert((format!("k{k}"), (i, *s)));
        if *s % 5 == 0 {
            *s = 0;
        }
        let f = folds.entry(k).or_insert(0);
        *f = *f * 3 % 1_000_003 + v;
        let (next, out) = spell(words.remove(&k), i, v);
        spelled.extend(out.into_iter().map(|o| (format!("k{k}"), o)));
        if let Some(next) = next {
            words.insert(k, next);
        }
        let r = reduced.remove(&k).map_or(v, |acc| combine(acc, v));
        reduced.insert(k, r);
    }
    KeyedOutputs {
        maps,
        folds: folds.into_iter().collect(),
        spelled,
        reduced: reduced.into_iter().collect(),
    }
}

/// One final state per key: the list as a set, checked to have no duplicate.
fn finals(got: Vec<(u16, i64)>, what: &str) -> BTreeSet<(u16, i64)> {
    let set: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(set.len(), got.len(), "{what}: one final state per key");
    set
}

/// Outputs of one key arrive in the key's order; across keys the order depends on the
/// workers, so outputs are compared as sets (each carries its input position).
fn run_keyed(items: &[(u16, i64)], workers: usize, recovery: bool, batch: usize) {
    let (maps, maps_out) = TestingSink::new();
    let (folds, folds_out) = TestingSink::new();
    let (spelled, spelled_out) = TestingSink::new();
    let (reduced, reduced_out) = TestingSink::new();
    let sinks = KeyedSinks {
        maps,
        folds,
        spelled,
        reduced,
    };
    let abort_at = recovery.then_some(items.len() / 2);
    let flow = keyed_flow(items.to_vec(), abort_at, batch, sinks);
    let want = model(items);
    run_maybe_resumed(&flow, "paths.inp", workers, recovery, config());
    // Items after the last snapshot of the aborted execution are applied again by the
    // resumed one: the same outputs, emitted twice. The state is exactly once.
    let got = KeyedOutputs {
        maps: maps_out.take().into_iter().collect(),
        folds: finals(folds_out.take(), "fold_final"),
        spelled: spelled_out.take().into_iter().collect(),
        reduced: finals(reduced_out.take(), "reduce_final"),
    };
    assert_eq!(got.maps, want.maps, "stateful_map at -w{workers}");
    assert_eq!(got.folds, want.folds, "fold_final at -w{workers}");
    assert_eq!(
        got.spelled, want.spelled,
        "stateful_flat_map at -w{workers}"
    );
    assert_eq!(got.reduced, want.reduced, "reduce_final at -w{workers}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn keyed_steps_agree_with_a_sequential_model(
        items in prop::collection::vec((0u16..40, 0i64..9), 0..300),
        batch in 1usize..64,
    ) {
        for w in WORKERS {
            run_keyed(&items, w, false, batch);
        }
    }

    #[test]
    fn keyed_steps_resumed_after_an_abort_agree_with_the_model(
        items in prop::collection::vec((0u16..40, 0i64..9), 1..300),
        batch in 1usize..64,
    ) {
        for w in WORKERS {
            run_keyed(&items, w, true, batch);
        }
    }
}

// ---- fused chains against the same steps run apart ---------------------------------

/// What the chained flow emits: `stateful_map` values after `key_rm`, `fold_final`'s
/// final states, `count_final`'s counts, and the text `stateful_map`'s values (its
/// output has its input's type, which one worker maps in place).
type Chained = (
    BTreeSet<(usize, i64)>,
    BTreeSet<(u16, i64)>,
    BTreeSet<(String, u64)>,
    BTreeSet<String>,
);

/// The chained flow and its three outputs.
type ChainedFlow = (
    Dataflow,
    TestingOutput<(usize, i64)>,
    TestingOutput<(u16, i64)>,
    TestingOutput<(String, u64)>,
    TestingOutput<String>,
);

/// `key_on` -> `stateful_map` -> `key_rm`, `key_on` -> `fold_final`, and `count_final`:
/// the shapes the engine fuses (`RunConfig::fuse`).
fn chained_flow(items: Vec<(u16, i64)>, abort_at: Option<usize>, batch: usize) -> ChainedFlow {
    let events = numbered_events(&items, abort_at);
    let flow = Dataflow::new("chain");
    let inp = flow.input("inp", TestingSource::events(events).batch_size(batch));
    let (maps, maps_out) = TestingSink::new();
    inp.key_on("key_str", |&(_, k, _): &(usize, u16, i64)| format!("k{k}"))
        .stateful_map("sum", |s: Option<i64>, (i, _, v): (usize, u16, i64)| {
            let t = s.unwrap_or(0) + v;
            (if t % 5 == 0 { None } else { Some(t) }, (i, t))
        })
        .key_rm("unkey")
        .output("maps", maps);
    let (folds, folds_out) = TestingSink::new();
    inp.key_on("key_int", |&(_, k, _): &(usize, u16, i64)| k)
        .fold_final("fold", || 0i64, |acc, (_, _, v)| acc * 3 % 1_000_003 + v)
        .output("folds", folds);
    let (counts, counts_out) = TestingSink::new();
    inp.count_final("count", |(_, k, _): (usize, u16, i64)| {
        format!("c{}", k % 7)
    })
    .output("counts", counts);
    // String in, String out: one worker replaces each value by its output in place.
    let (texts, texts_out) = TestingSink::new();
    inp.map("as_text", |(i, k, v): (usize, u16, i64)| {
        format!("{i} {k} {v}")
    })
    .key_on("key_text", |text: &String| text_key(text))
    .stateful_map("sum_text", |s: Option<i64>, text: String| {
        let v: i64 = text.rsplit(' ').next().unwrap().parse().unwrap();
        let t = s.unwrap_or(0) + v;
        (
            if t % 7 == 0 { None } else { Some(t) },
            format!("{text} {t}"),
        )
    })
    .key_rm("unkey_text")
    .output("texts", texts);
    (flow, maps_out, folds_out, counts_out, texts_out)
}

/// The key of a text item `"i k v"`: `k % 11`.
fn text_key(text: &str) -> u16 {
    text.split(' ').nth(1).unwrap().parse::<u16>().unwrap() % 11
}

fn chained_model(items: &[(u16, i64)]) -> Chained {
    let KeyedOutputs { maps, folds, .. } = model(items);
    let maps = maps.into_iter().map(|(_, iv)| iv).collect();
    let mut counts = BTreeMap::<String, u64>::new();
    for &(k, _) in items {
        *counts.entry(format!("c{}", k % 7)).or_insert(0) += 1;
    }
    let mut sums = BTreeMap::<u16, i64>::new();
    let mut texts = BTreeSet::new();
    for (i, &(k, v)) in items.iter().enumerate() {
        let s = sums.entry(k % 11).or_insert(0);
        *s += v;
        texts.insert(format!("{i} {k} {v} {s}"));
        if *s % 7 == 0 {
            *s = 0;
        }
    }
    (maps, folds, counts.into_iter().collect(), texts)
}

fn run_chained(
    items: &[(u16, i64)],
    workers: usize,
    recovery: bool,
    batch: usize,
    fuse: bool,
) -> Chained {
    let abort_at = recovery.then_some(items.len() / 2);
    let (flow, maps, folds, counts, texts) = chained_flow(items.to_vec(), abort_at, batch);
    run_maybe_resumed(&flow, "chain.inp", workers, recovery, config().fuse(fuse));
    let folds = folds.take();
    let counts = counts.take();
    let got: Chained = (
        maps.take().into_iter().collect(),
        folds.iter().cloned().collect(),
        counts.iter().cloned().collect(),
        texts.take().into_iter().collect(),
    );
    // Exactly one final state per key, fused or not.
    assert_eq!(
        got.1.len(),
        folds.len(),
        "fold_final at -w{workers}, fuse {fuse}"
    );
    assert_eq!(
        got.2.len(),
        counts.len(),
        "count_final at -w{workers}, fuse {fuse}"
    );
    got
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5, ..ProptestConfig::default() })]

    /// Fused and apart, the chains give the same outputs and final states, and both
    /// agree with the model; with recovery, after an abort and a resume too.
    #[test]
    fn fused_chains_agree_with_the_same_steps_run_apart(
        items in prop::collection::vec((0u16..40, 0i64..9), 1..300),
        batch in 1usize..64,
        recovery in any::<bool>(),
    ) {
        let want = chained_model(&items);
        for w in WORKERS {
            let fused = run_chained(&items, w, recovery, batch, true);
            let apart = run_chained(&items, w, recovery, batch, false);
            prop_assert_eq!(&fused, &apart, "-w{} recovery {}", w, recovery);
            prop_assert_eq!(&fused, &want, "-w{} recovery {}", w, recovery);
        }
    }
}

// ---- the window engine's integer time against the chrono path ---------------------

/// A clock seen only through its chrono methods.
struct ChronoClock<C>(C);
struct ChronoClockLogic<L>(L);

impl<V, C: Clock<V>> Clock<V> for ChronoClock<C> {
    type Logic = ChronoClockLogic<C::Logic>;
    fn build(&self, resume: Option<<C::Logic as ClockLogic<V>>::State>) -> Self::Logic {
        ChronoClockLogic(self.0.build(resume))
    }
}

impl<V, L: ClockLogic<V>> ClockLogic<V> for ChronoClockLogic<L> {
    type State = L::State;
    fn on_item(&mut self, value: &V) -> (DateTime<Utc>, DateTime<Utc>) {
        self.0.on_item(value)
    }
    fn on_notify(&mut self) -> DateTime<Utc> {
        self.0.on_notify()
    }
    fn on_eof(&mut self) -> DateTime<Utc> {
        self.0.on_eof()
    }
    fn to_system_utc(&self, watermark: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.to_system_utc(watermark)
    }
    fn instant_at(&self, at: DateTime<Utc>) -> Option<Instant> {
        self.0.instant_at(at)
    }
    fn snapshot(&self) -> Self::State {
        self.0.snapshot()
    }
}

/// A windower seen only through its chrono methods.
struct ChronoWindower<W>(W);
struct ChronoWindowerLogic<L>(L);

impl<W: Windower> Windower for ChronoWindower<W> {
    type Logic = ChronoWindowerLogic<W::Logic>;
    fn build(&self, resume: Option<<W::Logic as WindowerLogic>::State>) -> Self::Logic {
        ChronoWindowerLogic(self.0.build(resume))
    }
}

impl<L: WindowerLogic> WindowerLogic for ChronoWindowerLogic<L> {
    type State = L::State;
    fn open_for(&mut self, timestamp: DateTime<Utc>, out: &mut Vec<i64>) {
        self.0.open_for(timestamp, out)
    }
    fn late_for(&self, timestamp: DateTime<Utc>, out: &mut Vec<i64>) {
        self.0.late_for(timestamp, out)
    }
    fn merged(&mut self, out: &mut Vec<(i64, i64)>) {
        self.0.merged(out)
    }
    fn close_for(&mut self, watermark: DateTime<Utc>, out: &mut Vec<(i64, WindowMetadata)>) {
        self.0.close_for(watermark, out)
    }
    fn notify_at(&self) -> Option<DateTime<Utc>> {
        self.0.notify_at()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn snapshot(&self) -> Self::State {
        self.0.snapshot()
    }
}

type Event = (u8, DateTime<Utc>, u32);
type Down = (u8, (i64, Vec<u32>));
type Late = (u8, (i64, Event));
type Meta = (u8, (i64, WindowMetadata));

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_704_067_200, 0).expect("in range")
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Tumbling,
    Sliding,
    Session,
}

/// Runs a `fold_window` collecting each window's values; `chrono` wraps the clock and
/// windower so the engine converts through the traits' defaults.
fn run_window(
    events: &[Event],
    shape: Shape,
    ordered: bool,
    chrono: bool,
    workers: usize,
    recovery: bool,
) -> (Vec<Down>, Vec<Late>, Vec<Meta>) {
    fn go<C: Clock<Event>, W: Windower>(
        events: &[Event],
        clock: C,
        windower: W,
        ordered: bool,
        workers: usize,
        recovery: bool,
    ) -> (Vec<Down>, Vec<Late>, Vec<Meta>) {
        let (down, down_out) = TestingSink::new();
        let (late, late_out) = TestingSink::new();
        let (meta, meta_out) = TestingSink::new();
        let flow = Dataflow::new("win");
        let out = flow
            .input("inp", TestingSource::new(events.to_vec()).batch_size(7))
            .key_on("key", |e: &Event| e.0)
            .fold_window(
                "w",
                clock,
                windower,
                Vec::new,
                |mut acc: Vec<u32>, e: Event| {
                    acc.push(e.2);
                    acc
                },
                |mut a, b| {
                    a.extend(b);
                    a
                },
                ordered,
            );
        out.down.output("down", down);
        out.late.output("late", late);
        out.meta.output("meta", meta);
        let dir = tempfile::tempdir().unwrap();
        let mut config = config();
        if recovery {
            init(dir.path(), 2).unwrap();
            config = config.recovery(RecoveryConfig::new(dir.path()));
        }
        cluster_main_with(&flow, &[], 0, workers, &config).unwrap();
        let (mut d, mut l, mut m) = (down_out.take(), late_out.take(), meta_out.take());
        d.sort();
        l.sort();
        m.sort();
        (d, l, m)
    }
    // A testing clock that never moves: the watermark is the largest timestamp minus
    // the wait, whatever the machine's speed.
    let clock =
        EventClock::new(|e: &Event| e.1, TimeDelta::seconds(3)).with_time(TestingClock::new(t0()));
    let align = t0();
    let s = TimeDelta::seconds;
    macro_rules! both {
        ($w:expr) => {
            if chrono {
                go(
                    events,
                    ChronoClock(clock),
                    ChronoWindower($w),
                    ordered,
                    workers,
                    recovery,
                )
            } else {
                go(events, clock, $w, ordered, workers, recovery)
            }
        };
    }
    match shape {
        Shape::Tumbling => both!(TumblingWindower::new(s(5), align)),
        Shape::Sliding => both!(SlidingWindower::new(s(6), s(4), align)),
        Shape::Session => both!(SessionWindower::new(s(2))),
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Tumbling),
        Just(Shape::Sliding),
        Just(Shape::Session)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn window_engine_integer_time_agrees_with_the_chrono_path(
        raw in prop::collection::vec((0u8..6, -20_000i64..60_000, 0u32..1000), 0..150),
        shape in shape(),
        ordered in any::<bool>(),
        recovery in any::<bool>(),
    ) {
        // Times in milliseconds around t0, mostly increasing with jitter: some late.
        let mut events: Vec<Event> = raw
            .iter()
            .enumerate()
            .map(|(i, &(k, jitter, v))| {
                let ms = i as i64 * 400 + jitter / 4;
                (k, t0() + TimeDelta::milliseconds(ms), v)
            })
            .collect();
        events.truncate(150);
        for w in WORKERS {
            let fast = run_window(&events, shape, ordered, false, w, recovery);
            let plain = run_window(&events, shape, ordered, true, w, recovery);
            prop_assert_eq!(&fast, &plain, "{:?} ordered={} -w{}", shape, ordered, w);
            if matches!(shape, Shape::Tumbling) {
                // Each item is in exactly one window, or late for exactly one.
                let values: usize = fast.0.iter().map(|d| d.1 .1.len()).sum();
                prop_assert_eq!(values + fast.1.len(), events.len());
            }
        }
    }
}
