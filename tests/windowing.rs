//! Windowing through the public API: Bytewax's reference flows `window_count.py` and
//! `session_window.py` (expected lines embedded below, checked against
//! `../shared/reference/bytewax/outputs` when that directory is present), edge cases,
//! a property test against a direct computation, and bounded live state.
//!
//! Clocks read a `TestingClock`: system time stands still unless a test moves it, so
//! results never depend on how fast the machine is.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use proptest::prelude::*;

use waxfast::connectors::testing::{TestingOutput, TestingSink, TestingSource};
use waxfast::io::{DynamicSource, Source, SourceKind, SourceStatus, StatelessSourcePartition};
use waxfast::operators::window::{
    EventClock, SessionWindower, SlidingWindower, SystemClock, TestingClock, TumblingWindower,
    WindowMetadata, WindowOut, LATE_SESSION_ID,
};
use waxfast::operators::{JoinEmit, JoinInsert};
use waxfast::{cluster_main, run_main, BoxError, Data, Dataflow, Error, Stream};

use util::sorted;

// ---- helpers ---------------------------------------------------------------------------

/// 2024-01-01T00:00:00Z plus `s` seconds (the reference flows' origin).
fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_704_067_200 + s, 0).expect("in range")
}

fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

/// A system time that stands still (far from the event times, as in a real replay).
fn frozen() -> TestingClock {
    TestingClock::new(DateTime::from_timestamp(1_900_000_000, 0).expect("in range"))
}

fn collect<T: Data>(stream: &Stream<T>, step: &str) -> TestingOutput<T> {
    let (sink, out) = TestingSink::new();
    stream.output(step, sink);
    out
}

fn run(flow: &Dataflow, workers: usize) {
    if workers == 1 {
        run_main(flow).expect("flow runs");
    } else {
        cluster_main(flow, &[], 0, workers).expect("flow runs");
    }
}

/// Python's `repr` of an aware UTC `datetime`.
fn py_datetime(d: DateTime<Utc>) -> String {
    let mut s = format!(
        "datetime.datetime({}, {}, {}, {}, {}",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute()
    );
    let micros = d.nanosecond() / 1000;
    if d.second() != 0 || micros != 0 {
        s += &format!(", {}", d.second());
    }
    if micros != 0 {
        s += &format!(", {micros}");
    }
    s + ", tzinfo=datetime.timezone.utc)"
}

/// Python's `repr` of a set of ints.
fn py_set(ids: &std::collections::BTreeSet<i64>) -> String {
    if ids.is_empty() {
        "set()".to_string()
    } else {
        let items: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        format!("{{{}}}", items.join(", "))
    }
}

fn py_meta(m: &WindowMetadata) -> String {
    format!(
        "WindowMetadata(open_time={}, close_time={}, merged_ids={})",
        py_datetime(m.open_time),
        py_datetime(m.close_time),
        py_set(&m.merged_ids)
    )
}

/// The lines of `text` that start with `prefix`, in order.
fn lines_with(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// `embedded` is the reference output `name` (when the reference directory exists).
fn check_embedded_copy(name: &str, embedded: &str) {
    let Some(dir) = util::reference_dir() else {
        return;
    };
    let file = std::fs::read_to_string(dir.join("outputs").join(name)).expect("reference output");
    let file: Vec<&str> = file.lines().filter(|l| !l.starts_with("rc=")).collect();
    let ours: Vec<&str> = embedded.lines().collect();
    assert_eq!(ours, file, "the copy of {name} in this test is out of date");
}

/// Compares our lines with the reference, stream by stream (`prefixes`): in order with
/// one worker (the order within one stream on one worker is defined), as multisets
/// with more (order across workers is not).
fn assert_matches_reference(ours: &[String], reference: &str, prefixes: &[&str], workers: usize) {
    let ours = ours.join("\n");
    for p in prefixes {
        let (got, want) = (lines_with(&ours, p), lines_with(reference, p));
        if workers == 1 {
            assert_eq!(got, want, "stream {p:?}");
        } else {
            assert_eq!(sorted(&got), sorted(&want), "stream {p:?} at -w{workers}");
        }
    }
}

// ---- reference flows -------------------------------------------------------------------

const WINDOW_COUNT: &str = "\
DOWN ('b', (0, 1))
META ('b', (0, WindowMetadata(open_time=datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), close_time=datetime.datetime(2024, 1, 1, 0, 0, 10, tzinfo=datetime.timezone.utc), merged_ids=set())))
DOWN ('a', (0, 2))
DOWN ('a', (1, 1))
META ('a', (0, WindowMetadata(open_time=datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), close_time=datetime.datetime(2024, 1, 1, 0, 0, 10, tzinfo=datetime.timezone.utc), merged_ids=set())))
META ('a', (1, WindowMetadata(open_time=datetime.datetime(2024, 1, 1, 0, 0, 10, tzinfo=datetime.timezone.utc), close_time=datetime.datetime(2024, 1, 1, 0, 0, 20, tzinfo=datetime.timezone.utc), merged_ids=set())))
LATE ('b', (0, ('b', datetime.datetime(2024, 1, 1, 0, 0, 5, tzinfo=datetime.timezone.utc))))
DOWN ('b', (1, 1))
META ('b', (1, WindowMetadata(open_time=datetime.datetime(2024, 1, 1, 0, 0, 10, tzinfo=datetime.timezone.utc), close_time=datetime.datetime(2024, 1, 1, 0, 0, 20, tzinfo=datetime.timezone.utc), merged_ids=set())))
DOWN ('a', (2, 1))
DOWN ('b', (2, 1))
META ('a', (2, WindowMetadata(open_time=datetime.datetime(2024, 1, 1, 0, 0, 20, tzinfo=datetime.timezone.utc), close_time=datetime.datetime(2024, 1, 1, 0, 0, 30, tzinfo=datetime.timezone.utc), merged_ids=set())))
META ('b', (2, WindowMetadata(open_time=datetime.datetime(2024, 1, 1, 0, 0, 20, tzinfo=datetime.timezone.utc), close_time=datetime.datetime(2024, 1, 1, 0, 0, 30, tzinfo=datetime.timezone.utc), merged_ids=set())))";

type Event = (String, DateTime<Utc>);

fn own(x: &str) -> String {
    x.to_string()
}

/// window_count.py: a tumbling event-time count with one late item.
fn window_count_lines(workers: usize) -> Vec<String> {
    let events: Vec<Event> = vec![
        (own("a"), t(1)),
        (own("b"), t(2)),
        (own("a"), t(4)),
        (own("a"), t(11)),
        (own("b"), t(13)),
        (own("a"), t(25)),
        (own("b"), t(5)),
        (own("b"), t(26)),
    ];
    let flow = Dataflow::new("window_count");
    let inp = flow.input("inp", TestingSource::new(events));
    let wo = inp.count_window(
        "count",
        EventClock::new(|e: &Event| e.1, secs(2)).with_time(frozen()),
        TumblingWindower::new(secs(10), t(0)),
        |e: &Event| e.0.clone(),
    );
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (l1, l2, l3) = (lines.clone(), lines.clone(), lines.clone());
    wo.down.inspect_with("down", move |_, (k, (w, c))| {
        l1.lock().unwrap().push(format!("DOWN ('{k}', ({w}, {c}))"))
    });
    wo.late.inspect_with("late", move |_, (k, (w, (ek, ets)))| {
        l2.lock().unwrap().push(format!(
            "LATE ('{k}', ({w}, ('{ek}', {})))",
            py_datetime(*ets)
        ))
    });
    wo.meta.inspect_with("meta", move |_, (k, (w, m))| {
        l3.lock()
            .unwrap()
            .push(format!("META ('{k}', ({w}, {}))", py_meta(m)))
    });
    run(&flow, workers);
    assert_eq!(wo.stats.keys(), 0, "every key's state is gone at the end");
    let lines = lines.lock().unwrap().clone();
    lines
}

#[test]
fn reference_window_count_w1_and_w2() {
    check_embedded_copy("window_count_w1.txt", WINDOW_COUNT);
    for workers in [1, 2] {
        let ours = window_count_lines(workers);
        assert_eq!(ours.len(), 13, "{ours:#?}");
        assert_matches_reference(&ours, WINDOW_COUNT, &["DOWN", "LATE", "META"], workers);
    }
}

#[test]
fn reference_window_count_w2_output_is_the_same_multiset() {
    // The -w2 reference differs from -w1 only in order across workers.
    let Some(dir) = util::reference_dir() else {
        return;
    };
    let w2 = std::fs::read_to_string(dir.join("outputs/window_count_w2.txt")).expect("file");
    let w2: Vec<String> = w2
        .lines()
        .filter(|l| !l.starts_with("rc="))
        .map(str::to_string)
        .collect();
    let ours = window_count_lines(2);
    assert_eq!(sorted(&ours), sorted(&w2));
}

const SESSION_WINDOW: &str = "\
SESSION DOWN u win=0 secs=[0, 3, 4]
SESSION META u win=0 open=0 close=4 merged=set()
SLIDING COUNT ('u', (-1, 3))
SESSION DOWN u win=1 secs=[20, 22]
SESSION DOWN u win=2 secs=[40]
SESSION META u win=1 open=20 close=22 merged=set()
SESSION META u win=2 open=40 close=40 merged=set()
SLIDING COUNT ('u', (0, 3))
SLIDING COUNT ('u', (1, 2))
SLIDING COUNT ('u', (2, 2))
SLIDING COUNT ('u', (3, 1))
SLIDING COUNT ('u', (4, 1))";

/// session_window.py: ordered sessions (collect) and overlapping sliding counts.
fn session_window_lines(workers: usize) -> Vec<String> {
    let events: Vec<Event> = [0, 3, 20, 4, 22, 40].map(|s| (own("u"), t(s))).to_vec();
    let flow = Dataflow::new("session_window");
    let inp = flow.input("inp", TestingSource::new(events));
    let keyed = inp.key_on("key", |e: &Event| e.0.clone());
    let clock = EventClock::new(|e: &Event| e.1, secs(30)).with_time(frozen());
    let sess = keyed.collect_window("sess", clock.clone(), SessionWindower::new(secs(5)), true);
    let since = |d: DateTime<Utc>| d.signed_duration_since(t(0)).num_seconds();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (l1, l2, l3) = (lines.clone(), lines.clone(), lines.clone());
    sess.down.inspect_with("s_down", move |_, (k, (w, evs))| {
        let s: Vec<i64> = evs.iter().map(|e| since(e.1)).collect();
        l1.lock()
            .unwrap()
            .push(format!("SESSION DOWN {k} win={w} secs={s:?}"))
    });
    sess.meta.inspect_with("s_meta", move |_, (k, (w, m))| {
        l2.lock().unwrap().push(format!(
            "SESSION META {k} win={w} open={} close={} merged={}",
            since(m.open_time),
            since(m.close_time),
            py_set(&m.merged_ids)
        ))
    });
    let sl = inp.count_window(
        "slide",
        clock,
        SlidingWindower::new(secs(20), secs(10), t(0)),
        |e: &Event| e.0.clone(),
    );
    sl.down.inspect_with("sl_down", move |_, (k, (w, c))| {
        l3.lock()
            .unwrap()
            .push(format!("SLIDING COUNT ('{k}', ({w}, {c}))"))
    });
    run(&flow, workers);
    let lines = lines.lock().unwrap().clone();
    lines
}

#[test]
fn reference_session_window_w1_and_w2() {
    check_embedded_copy("session_window_w1.txt", SESSION_WINDOW);
    for workers in [1, 2] {
        let ours = session_window_lines(workers);
        assert_eq!(ours.len(), 12, "{ours:#?}");
        assert_matches_reference(
            &ours,
            SESSION_WINDOW,
            &["SESSION DOWN", "SESSION META", "SLIDING COUNT"],
            workers,
        );
    }
}

// ---- edge cases ------------------------------------------------------------------------

// Values cross exchanges, so they are owned (`ExchangeData`); keys may be `&str`.
type Val = (String, DateTime<Utc>);
type Outs<W> = (
    Vec<(&'static str, (i64, W))>,
    Vec<(&'static str, (i64, Val))>,
    Vec<(&'static str, (i64, WindowMetadata))>,
);

/// Runs `events` (key, value) through `op` and returns down, late and meta.
fn through<W: Data>(
    events: Vec<(&'static str, Val)>,
    op: impl FnOnce(&Stream<(&'static str, Val)>) -> WindowOut<&'static str, Val, W>,
) -> Outs<W> {
    let flow = Dataflow::new("f");
    let inp = flow.input("inp", TestingSource::new(events));
    let out = op(&inp);
    let (d, l, m) = (
        collect(&out.down, "d"),
        collect(&out.late, "l"),
        collect(&out.meta, "m"),
    );
    run_main(&flow).expect("flow runs");
    (d.take(), l.take(), m.take())
}

fn ev(k: &'static str, s: i64) -> (&'static str, Val) {
    (k, (k.to_string(), t(s)))
}

fn event_clock(wait: i64) -> EventClock<impl Fn(&Val) -> DateTime<Utc>, TestingClock> {
    EventClock::new(|v: &Val| v.1, secs(wait)).with_time(frozen())
}

#[test]
fn an_item_on_a_boundary_opens_the_next_window() {
    let (down, late, meta) = through(vec![ev("k", 0), ev("k", 10), ev("k", 19)], |s| {
        s.collect_window(
            "c",
            event_clock(100),
            TumblingWindower::new(secs(10), t(0)),
            true,
        )
    });
    assert_eq!(
        down,
        vec![
            ("k", (0, vec![(own("k"), t(0))])),
            ("k", (1, vec![(own("k"), t(10)), (own("k"), t(19))]))
        ]
    );
    assert!(late.is_empty());
    assert_eq!(
        meta,
        vec![
            ("k", (0, WindowMetadata::new(t(0), t(10)))),
            ("k", (1, WindowMetadata::new(t(10), t(20))))
        ]
    );
}

#[test]
fn times_before_align_to_have_negative_window_ids() {
    let (down, _, meta) = through(vec![ev("k", -1), ev("k", -10), ev("k", -11)], |s| {
        s.fold_window(
            "f",
            event_clock(100),
            TumblingWindower::new(secs(10), t(0)),
            || 0,
            |n, _| n + 1,
            |a, b| a + b,
            false,
        )
    });
    assert_eq!(down, vec![("k", (-2, 1)), ("k", (-1, 2))]);
    assert_eq!(
        meta,
        vec![
            ("k", (-2, WindowMetadata::new(t(-20), t(-10)))),
            ("k", (-1, WindowMetadata::new(t(-10), t(0))))
        ]
    );
}

#[test]
fn overlapping_sliding_windows_count_each_item_in_every_window() {
    // 10 s windows every 4 s: an item is in 2 or 3 windows.
    let (down, late, meta) = through(vec![ev("k", 0), ev("k", 5), ev("k", 9)], |s| {
        s.fold_window(
            "f",
            event_clock(100),
            SlidingWindower::new(secs(10), secs(4), t(0)),
            || 0,
            |n, _| n + 1,
            |a, b| a + b,
            false,
        )
    });
    // Window n covers [4n, 4n + 10): 0 is in -2, -1, 0; 5 in -1, 0, 1; 9 in 0, 1, 2.
    assert_eq!(
        down,
        vec![
            ("k", (-2, 1)),
            ("k", (-1, 2)),
            ("k", (0, 3)),
            ("k", (1, 2)),
            ("k", (2, 1))
        ]
    );
    assert!(late.is_empty());
    assert_eq!(meta[0].1, (-2, WindowMetadata::new(t(-8), t(2))));
}

#[test]
fn a_late_item_goes_to_late_for_every_window_it_would_have_been_in() {
    // Wait 0: after 30 the watermark is 30; 25 is late for sliding windows 1 and 2.
    let (down, late, _) = through(vec![ev("k", 30), ev("k", 25), ev("k", 31)], |s| {
        s.fold_window(
            "f",
            event_clock(0),
            SlidingWindower::new(secs(20), secs(10), t(0)),
            || 0,
            |n, _| n + 1,
            |a, b| a + b,
            false,
        )
    });
    assert_eq!(
        late,
        vec![("k", (1, (own("k"), t(25)))), ("k", (2, (own("k"), t(25))))]
    );
    assert_eq!(down, vec![("k", (2, 2)), ("k", (3, 2))]);
}

#[test]
fn an_item_on_the_watermark_is_not_late() {
    let (down, late, _) = through(vec![ev("k", 12), ev("k", 10)], |s| {
        s.fold_window(
            "f",
            event_clock(2),
            TumblingWindower::new(secs(10), t(0)),
            || 0,
            |n, _| n + 1,
            |a, b| a + b,
            false,
        )
    });
    assert!(late.is_empty());
    assert_eq!(down, vec![("k", (1, 2))]);
}

#[test]
fn a_late_item_for_a_session_gets_the_late_session_id() {
    let (down, late, _) = through(vec![ev("k", 100), ev("k", 50)], |s| {
        s.collect_window("s", event_clock(10), SessionWindower::new(secs(5)), true)
    });
    assert_eq!(late, vec![("k", (LATE_SESSION_ID, (own("k"), t(50))))]);
    assert_eq!(down, vec![("k", (0, vec![(own("k"), t(100))]))]);
}

#[test]
fn a_session_merge_joins_three_sessions() {
    // Sessions 0 [0], 1 [20], 2 [10]; 5 bridges 0 and 2, then 15 bridges that and 1.
    let events = vec![
        ev("u", 0),
        ev("u", 20),
        ev("u", 10),
        ev("u", 5),
        ev("u", 15),
    ];
    let (down, late, meta) = through(events, |s| {
        s.collect_window("s", event_clock(60), SessionWindower::new(secs(5)), false)
    });
    assert!(late.is_empty());
    let secs_of = |v: &Vec<Val>| -> Vec<i64> {
        v.iter()
            .map(|e| e.1.signed_duration_since(t(0)).num_seconds())
            .collect()
    };
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(
        down[0].1 .0, 0,
        "the merged session keeps the earliest one's id"
    );
    // Arrival order, merged windows appended to the target.
    assert_eq!(secs_of(&down[0].1 .1), vec![0, 5, 10, 15, 20]);
    let mut expected = WindowMetadata::new(t(0), t(20));
    expected.merged_ids.extend([1, 2]);
    assert_eq!(meta, vec![("u", (0, expected))]);
}

#[test]
fn ordered_applies_values_in_timestamp_order_and_unordered_in_arrival_order() {
    let events = vec![ev("k", 3), ev("k", 1), ev("k", 2)];
    for (ordered, expected) in [(true, vec![1, 2, 3]), (false, vec![3, 1, 2])] {
        let (down, _, _) = through(events.clone(), |s| {
            s.collect_window(
                "c",
                event_clock(10),
                TumblingWindower::new(secs(10), t(0)),
                ordered,
            )
        });
        let got: Vec<i64> = down[0]
            .1
             .1
            .iter()
            .map(|e| e.1.signed_duration_since(t(0)).num_seconds())
            .collect();
        assert_eq!(got, expected, "ordered={ordered}");
    }
}

#[test]
fn end_of_stream_closes_every_open_window() {
    // A wait of a day: nothing closes before the end.
    let events = vec![
        ev("a", 1),
        ev("b", 15),
        ev("a", 25),
        ev("a", -5),
        ev("c", 0),
    ];
    let flow = Dataflow::new("f");
    let inp = flow.input("inp", TestingSource::new(events));
    let out = inp.fold_window(
        "f",
        event_clock(86_400),
        TumblingWindower::new(secs(10), t(0)),
        || 0,
        |n, _| n + 1,
        |a, b| a + b,
        false,
    );
    let (down, meta) = (collect(&out.down, "d"), collect(&out.meta, "m"));
    // The live state just before the end: observed by a step after the windows.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s, stats) = (seen.clone(), out.stats.clone());
    out.down.inspect_with("peek", move |_, _| {
        s.lock().unwrap().push((stats.keys(), stats.windows()))
    });
    run_main(&flow).expect("flow runs");
    assert_eq!(
        down.take(),
        vec![
            ("a", (-1, 1)),
            ("a", (0, 1)),
            ("a", (2, 1)),
            ("b", (1, 1)),
            ("c", (0, 1))
        ]
    );
    assert_eq!(meta.len(), 5);
    assert_eq!(out.stats.peak_windows(), 5);
    assert_eq!(out.stats.peak_keys(), 3);
    assert_eq!((out.stats.keys(), out.stats.windows()), (0, 0));
}

#[test]
fn join_window_modes() {
    type Side = (DateTime<Utc>, String);
    let run_mode = |insert: JoinInsert, emit: JoinEmit| {
        let flow = Dataflow::new("f");
        let left = flow.input(
            "l",
            TestingSource::new(vec![
                ("k", (t(1), own("a1"))),
                ("k", (t(3), own("a2"))),
                ("k", (t(12), own("a3"))),
            ]),
        );
        let right = flow.input("r", TestingSource::new(vec![("k", (t(2), own("b1")))]));
        let ts = |s: &waxfast::operators::window::JoinSide<Side, Side>| match s {
            waxfast::operators::window::JoinSide::Left(v)
            | waxfast::operators::window::JoinSide::Right(v) => v.0,
        };
        let out = left.join_window(
            "j",
            &right,
            EventClock::new(ts, secs(100)).with_time(frozen()),
            TumblingWindower::new(secs(10), t(0)),
            insert,
            emit,
            true,
        );
        let got = collect(
            &out.down.map("names", |(k, (w, (l, r)))| {
                (k, w, l.map(|v| v.1), r.map(|v| v.1))
            }),
            "out",
        );
        run_main(&flow).expect("flow runs");
        got.take()
    };
    // Final: one row per window at close; window 1 has no right value.
    assert_eq!(
        run_mode(JoinInsert::Last, JoinEmit::Final),
        vec![
            ("k", 0, Some(own("a2")), Some(own("b1"))),
            ("k", 1, Some(own("a3")), None)
        ]
    );
    assert_eq!(
        run_mode(JoinInsert::First, JoinEmit::Final),
        vec![
            ("k", 0, Some(own("a1")), Some(own("b1"))),
            ("k", 1, Some(own("a3")), None)
        ]
    );
    assert_eq!(
        run_mode(JoinInsert::Product, JoinEmit::Final),
        vec![
            ("k", 0, Some(own("a1")), Some(own("b1"))),
            ("k", 0, Some(own("a2")), Some(own("b1"))),
            ("k", 1, Some(own("a3")), None)
        ]
    );
    // Complete (ordered: a1 at 1, b1 at 2, a2 at 3): emitted once both sides are set,
    // then cleared.
    assert_eq!(
        run_mode(JoinInsert::Last, JoinEmit::Complete),
        vec![("k", 0, Some(own("a1")), Some(own("b1")))]
    );
    assert_eq!(
        run_mode(JoinInsert::Last, JoinEmit::Running),
        vec![
            ("k", 0, Some(own("a1")), None),
            ("k", 0, Some(own("a1")), Some(own("b1"))),
            ("k", 0, Some(own("a2")), Some(own("b1"))),
            ("k", 1, Some(own("a3")), None)
        ]
    );
}

#[test]
fn reduce_max_and_min_windows() {
    let events = vec![ev("k", 4), ev("k", 1), ev("k", 7), ev("k", 12)];
    let ids = |d: Vec<(&'static str, (i64, Val))>| -> Vec<(i64, i64)> {
        d.into_iter()
            .map(|(_, (w, v))| (w, v.1.signed_duration_since(t(0)).num_seconds()))
            .collect()
    };
    let tumbling = || TumblingWindower::new(secs(10), t(0));
    let (max, _, _) = through(events.clone(), |s| {
        s.max_window("max", event_clock(100), tumbling())
    });
    assert_eq!(ids(max), vec![(0, 7), (1, 12)]);
    let (min, _, _) = through(events.clone(), |s| {
        s.min_window("min", event_clock(100), tumbling())
    });
    assert_eq!(ids(min), vec![(0, 1), (1, 12)]);
    // reduce_window: in arrival order (keeps the first).
    let (first, _, _) = through(events, |s| {
        s.reduce_window("first", event_clock(100), tumbling(), |a, _| a)
    });
    assert_eq!(ids(first), vec![(0, 4), (1, 12)]);
}

#[test]
fn a_zero_length_window_or_gap_is_refused_naming_the_step_and_parameter() {
    fn refused(
        build: impl FnOnce(&Stream<(&'static str, Val)>) -> Stream<(&'static str, (i64, u64))>,
    ) -> String {
        let flow = Dataflow::new("f");
        let inp = flow.input("inp", TestingSource::new(vec![ev("k", 1)]));
        let (sink, out) = TestingSink::new();
        build(&inp).output("out", sink);
        let err = run_main(&flow).expect_err("refused");
        assert!(out.is_empty());
        match &err {
            Error::Step { step_id, .. } => assert_eq!(step_id, "f.w"),
            other => panic!("expected Error::Step, got {other:?}"),
        }
        err.to_string()
    }
    let count = |n: u64, _: Val| n + 1;
    let e = refused(|s| {
        s.fold_window(
            "w",
            event_clock(0),
            TumblingWindower::new(secs(0), t(0)),
            || 0,
            count,
            |a, b| a + b,
            false,
        )
        .down
    });
    assert!(
        e.contains("TumblingWindower") && e.contains("`length`"),
        "{e}"
    );
    let e = refused(|s| {
        s.fold_window(
            "w",
            event_clock(0),
            SessionWindower::new(secs(0)),
            || 0,
            count,
            |a, b| a + b,
            false,
        )
        .down
    });
    assert!(e.contains("SessionWindower") && e.contains("`gap`"), "{e}");
    let e = refused(|s| {
        s.fold_window(
            "w",
            event_clock(0),
            SlidingWindower::new(secs(5), secs(6), t(0)),
            || 0,
            count,
            |a, b| a + b,
            false,
        )
        .down
    });
    assert!(e.contains("`offset`"), "{e}");
    let e = refused(|s| {
        s.fold_window(
            "w",
            event_clock(-1),
            TumblingWindower::new(secs(1), t(0)),
            || 0,
            count,
            |a, b| a + b,
            false,
        )
        .down
    });
    assert!(e.contains("wait_for_system_duration"), "{e}");
}

// ---- closing on system time ------------------------------------------------------------

/// A source on worker 0: emits `first`, then runs `between` (e.g. advances a testing
/// clock), waits until `ready()` (at most 30 s, then gives up so the test fails rather
/// than hangs), emits `then`, and ends.
struct Gated<T> {
    first: Vec<T>,
    between: Arc<dyn Fn() + Send + Sync>,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
    then: Vec<T>,
    /// Set when `ready()` held before `then` was emitted.
    was_ready: Arc<AtomicBool>,
}

struct GatedPart<T> {
    phase: u8,
    src: Option<Gated<T>>,
    deadline: Option<Instant>,
}

impl<T: Data + Sync> DynamicSource for Gated<T> {
    type Item = T;
    type Part = GatedPart<T>;
    fn build(&self, _: &str, worker: usize, _: usize) -> Result<GatedPart<T>, BoxError> {
        Ok(GatedPart {
            phase: 0,
            src: (worker == 0).then(|| Gated {
                first: self.first.clone(),
                between: self.between.clone(),
                ready: self.ready.clone(),
                then: self.then.clone(),
                was_ready: self.was_ready.clone(),
            }),
            deadline: None,
        })
    }
}

impl<T: Data> StatelessSourcePartition for GatedPart<T> {
    type Item = T;
    fn next_batch(&mut self, batch: &mut Vec<T>) -> Result<SourceStatus, BoxError> {
        let Some(src) = &mut self.src else {
            return Ok(SourceStatus::Eof);
        };
        match self.phase {
            0 => {
                batch.append(&mut src.first);
                self.phase = 1;
            }
            1 => {
                (src.between)();
                self.deadline = Some(Instant::now() + Duration::from_secs(30));
                self.phase = 2;
            }
            _ => {
                let ready = (src.ready)();
                if ready || self.deadline.is_some_and(|d| Instant::now() > d) {
                    src.was_ready.store(ready, Ordering::SeqCst);
                    batch.append(&mut src.then);
                    return Ok(SourceStatus::Eof);
                }
            }
        }
        Ok(SourceStatus::Active)
    }
    fn next_awake(&self) -> Option<Instant> {
        (self.phase == 2).then(|| Instant::now() + Duration::from_millis(1))
    }
}

impl<T: Data + Sync> Source<T> for Gated<T> {
    fn into_kind(self) -> SourceKind<T> {
        SourceKind::dynamic(self)
    }
}

/// Key "a" gets one item; the system clock is advanced; then the source waits until
/// a's window has been emitted before sending key "b" an item and ending. So a's window
/// closed on system time, with no new item for "a" and before end of stream.
fn closes_on_system_time<W: Data>(
    clock: TestingClock,
    advance: TimeDelta,
    first: Vec<(&'static str, Val)>,
    op: impl FnOnce(&Stream<(&'static str, Val)>) -> WindowOut<&'static str, Val, W>,
) -> Vec<(&'static str, (i64, W))> {
    let flow = Dataflow::new("f");
    let seen_a = Arc::new(AtomicBool::new(false));
    let was_ready = Arc::new(AtomicBool::new(false));
    let (c, s) = (clock.clone(), seen_a.clone());
    let inp = flow.input(
        "inp",
        Gated {
            first,
            between: Arc::new(move || c.advance(advance)),
            ready: Arc::new(move || s.load(Ordering::SeqCst)),
            then: vec![ev("b", 1000)],
            was_ready: was_ready.clone(),
        },
    );
    let out = op(&inp);
    let s = seen_a.clone();
    let down = out.down.inspect_with("watch", move |_, (k, _)| {
        if *k == "a" {
            s.store(true, Ordering::SeqCst);
        }
    });
    let got = collect(&down, "out");
    run_main(&flow).expect("flow runs");
    assert!(
        was_ready.load(Ordering::SeqCst),
        "a's window was not emitted before the end of the input"
    );
    got.take()
}

#[test]
fn event_time_windows_close_on_system_time_without_new_items() {
    let clock = frozen();
    let time = clock.clone();
    // Wait 5 s: a's watermark is -4 s after its item, and reaches 10 s (the end of
    // window 0) 14 s of system time later.
    let got = closes_on_system_time(clock, secs(15), vec![ev("a", 1), ev("a", 2)], |s| {
        s.fold_window(
            "f",
            EventClock::new(|v: &Val| v.1, secs(5)).with_time(time),
            TumblingWindower::new(secs(10), t(0)),
            || 0,
            |n, _| n + 1,
            |a, b| a + b,
            false,
        )
    });
    assert_eq!(got, vec![("a", (0, 2)), ("b", (100, 1))]);
}

#[test]
fn sessions_close_on_system_time_without_new_items() {
    let start = t(0);
    let clock = TestingClock::new(start);
    let time = clock.clone();
    // Processing time: both items are stamped `start`; the session closes once the
    // system time is more than the 5 s gap past it.
    let got = closes_on_system_time(clock, secs(6), vec![ev("a", 1), ev("a", 2)], |s| {
        s.fold_window(
            "f",
            SystemClock::new().with_time(time),
            SessionWindower::new(secs(5)),
            || 0,
            |n, _| n + 1,
            |a, b| a + b,
            true,
        )
    });
    assert_eq!(got, vec![("a", (0, 2)), ("b", (0, 1))]);
}

// ---- bounded state ---------------------------------------------------------------------

/// Many short sessions over many keys: each phase of the run uses new keys, and the
/// system clock follows the event time, so a phase's sessions close (by watermark or by
/// notification) and their keys are dropped as the next phase runs. Bytewax would still
/// hold every key's session state at the end (their issue #577).
#[test]
fn many_short_sessions_keep_live_state_bounded() {
    const PHASES: i64 = 200;
    const KEYS: i64 = 5;
    const SESSIONS: i64 = 3;
    let mut events = Vec::new();
    for p in 0..PHASES {
        for s in 0..SESSIONS {
            for i in 0..2 {
                for k in 0..KEYS {
                    let ts = p * 100 + s * 10 + i;
                    events.push((format!("p{p}k{k}"), ts));
                }
            }
        }
    }
    let total = events.len();
    let clock = TestingClock::new(t(0));
    let flow = Dataflow::new("f");
    let set = clock.clone();
    let keyed = flow
        .input("inp", TestingSource::new(events))
        // The system clock follows the items' time.
        .map("tick", move |(k, ts): (String, i64)| {
            set.set(t(ts));
            (k, ts)
        });
    let out = keyed.fold_window(
        "sessions",
        SystemClock::new().with_time(clock),
        SessionWindower::new(secs(3)),
        || 0u64,
        |n, _| n + 1,
        |a, b| a + b,
        true,
    );
    let down = collect(&out.down, "out");
    run_main(&flow).expect("flow runs");
    let down = down.take();
    assert_eq!(down.len() as i64, PHASES * KEYS * SESSIONS);
    assert!(
        down.iter().all(|(_, (_, n))| *n == 2),
        "two items per session"
    );
    assert_eq!(
        down.iter().map(|(_, (_, n))| *n as usize).sum::<usize>(),
        total
    );
    let stats = &out.stats;
    // At most the keys of two phases at once (a phase's last sessions close while the
    // next one starts), against 1000 keys over the run.
    assert!(
        stats.peak_keys() <= 2 * KEYS as usize,
        "peak keys {} (total {})",
        stats.peak_keys(),
        PHASES * KEYS
    );
    assert!(
        stats.peak_windows() <= 2 * KEYS as usize,
        "peak windows {}",
        stats.peak_windows()
    );
    assert_eq!((stats.keys(), stats.windows(), stats.queued()), (0, 0, 0));
}

#[test]
fn tumbling_windows_free_their_state_when_they_close() {
    // One key, 10 000 windows of 1 s, event time with no wait.
    let events: Vec<(&'static str, Val)> = (0..10_000).map(|s| ev("k", s)).collect();
    let flow = Dataflow::new("f");
    let out = flow.input("inp", TestingSource::new(events)).fold_window(
        "f",
        event_clock(0),
        TumblingWindower::new(secs(1), t(0)),
        || 0u64,
        |n, _| n + 1,
        |a, b| a + b,
        true,
    );
    let down = collect(&out.down, "out");
    run_main(&flow).expect("flow runs");
    assert_eq!(down.len(), 10_000);
    assert!(
        out.stats.peak_windows() <= 2,
        "{}",
        out.stats.peak_windows()
    );
    assert!(out.stats.peak_queued() <= 1, "{}", out.stats.peak_queued());
}

// ---- property: count_window = a direct computation ------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For any events, the on-time items' counts per (key, window) equal
    /// `floor((ts - align) / length)` grouping, and the late ones are exactly those
    /// behind their key's watermark (largest timestamp so far minus the wait).
    #[test]
    fn count_window_matches_a_direct_computation(
        events in prop::collection::vec((0u8..3, -60i64..60), 0..60),
        length in 1i64..20,
        align in -30i64..30,
        wait in 0i64..10,
        workers in 1usize..3,
    ) {
        let events: Vec<(u8, i64)> = events;
        let flow = Dataflow::new("p");
        let inp = flow.input("inp", TestingSource::new(events.clone()).batch_size(7));
        let out = inp.count_window(
            "count",
            EventClock::new(|e: &(u8, i64)| t(e.1), secs(wait)).with_time(frozen()),
            TumblingWindower::new(secs(length), t(align)),
            |e: &(u8, i64)| e.0,
        );
        let (down, late) = (collect(&out.down, "d"), collect(&out.late, "l"));
        run(&flow, workers);

        let mut counts = std::collections::BTreeMap::<(u8, i64), u64>::new();
        let mut lates = Vec::new();
        let mut watermark = std::collections::HashMap::<u8, i64>::new();
        for &(k, ts) in &events {
            let wm = watermark.entry(k).or_insert(i64::MIN);
            if ts < *wm {
                lates.push((k, ((ts - align).div_euclid(length), (k, ts))));
            } else {
                *counts.entry((k, (ts - align).div_euclid(length))).or_default() += 1;
            }
            *wm = (*wm).max(ts - wait);
        }
        let expected: Vec<(u8, (i64, u64))> =
            counts.into_iter().map(|((k, w), n)| (k, (w, n))).collect();
        prop_assert_eq!(sorted(&down.take()), expected);
        prop_assert_eq!(sorted(&late.take()), sorted(&lates));
    }
}

// ---- the built-in benchmark flow -------------------------------------------------------

#[test]
fn bench_window_flow_counts_every_key_and_window() {
    // 30 000 records at 100 µs: event time 0-3 s, so 3 windows for each of 7 keys.
    for workers in ["1", "2"] {
        let out = util::run_with_timeout(util::waxfast().args([
            "bench_window:30000,7",
            "-w",
            workers,
            "--no-pin",
        ]));
        let stderr = util::stderr(&out);
        assert!(out.status.success(), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("bench_window: records=30000 "))
            .unwrap_or_else(|| panic!("no summary line in {stderr:?}"));
        assert!(line.contains(&format!(" workers={workers} ")), "{line}");
        assert!(line.contains(" outputs=21 "), "{line}");
    }
}
