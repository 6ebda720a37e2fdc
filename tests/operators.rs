//! Integration tests of every operator's semantics, through the public API only.
//!
//! Expected values of the Bytewax reference flows (`shared/reference/bytewax`) are
//! embedded here; nothing outside the crate is read at test time.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use waxfast::connectors::testing::{TestEvent, TestingOutput, TestingSink, TestingSource};
use waxfast::operators::{Retention, StatefulLogic};
use waxfast::{run_main, run_main_with, Data, Dataflow, Error, RunConfig, Stream};

use util::sorted;

// ---- helpers ---------------------------------------------------------------------------

/// Adds a `TestingSink` output named `step` to `stream` and returns its handle.
fn collect<T: Data>(stream: &Stream<T>, step: &str) -> TestingOutput<T> {
    let (sink, out) = TestingSink::new();
    stream.output(step, sink);
    out
}

/// Runs a one-input, one-output flow `inp -> build -> out` and returns what reached the
/// sink.
fn run_through<T, U, I>(items: I, build: impl FnOnce(&Stream<T>) -> Stream<U>) -> Vec<U>
where
    T: Data,
    U: Data,
    I: IntoIterator<Item = T> + Clone + Send + Sync + 'static,
    I::IntoIter: Send + 'static,
{
    let flow = Dataflow::new("f");
    let inp = flow.input("inp", TestingSource::new(items));
    let out = collect(&build(&inp), "out");
    run_main(&flow).expect("flow runs");
    out.take()
}

/// Runs `flow` on another thread; `None` if it has not finished within `limit`.
fn run_within(flow: &Dataflow, limit: Duration) -> Option<waxfast::Result<()>> {
    let (tx, rx) = mpsc::channel();
    let flow = flow.clone();
    std::thread::spawn(move || {
        let _ = tx.send(run_main(&flow));
    });
    rx.recv_timeout(limit).ok()
}

/// The items of `v` that satisfy `p`, in order (to check per-input order after a merge).
fn only<T: Clone>(v: &[T], p: impl Fn(&T) -> bool) -> Vec<T> {
    v.iter().filter(|x| p(x)).cloned().collect()
}

fn s(x: &str) -> String {
    x.to_string()
}

// ---- stateless operators ---------------------------------------------------------------

#[test]
fn map_transforms_each_item_in_order() {
    let got = run_through(vec![3, 1, 2], |s| s.map("double", |x: i32| x * 2));
    assert_eq!(got, vec![6, 2, 4]);
    // The item type may change.
    let got = run_through(vec![1, 22], |s| s.map("fmt", |x: i32| format!("<{x}>")));
    assert_eq!(got, vec![s("<1>"), s("<22>")]);
}

#[test]
fn filter_keeps_matching_items_in_order() {
    let got = run_through(0..10, |s| s.filter("odd", |x: &i32| x % 2 == 1));
    assert_eq!(got, vec![1, 3, 5, 7, 9]);
    let none = run_through(0..10, |s| s.filter("none", |_: &i32| false));
    assert!(none.is_empty());
}

#[test]
fn filter_map_keeps_some_results() {
    let got = run_through(vec!["1", "x", "3", "", "-4"], |s| {
        s.filter_map("parse", |t: &str| t.parse::<i32>().ok())
    });
    assert_eq!(got, vec![1, 3, -4]);
}

#[test]
fn flat_map_expands_each_item_in_order() {
    let got = run_through(vec![0usize, 3, 1, 2], |s| {
        s.flat_map("repeat", |n: usize| vec![n; n])
    });
    assert_eq!(got, vec![3, 3, 3, 1, 2, 2]);
}

#[test]
fn flat_map_batch_sees_the_source_batches() {
    let flow = Dataflow::new("f");
    let batches = flow
        .input("inp", TestingSource::new(0..7).batch_size(3))
        .flat_map_batch("whole", |b: Vec<i32>| vec![b]);
    let out = collect(&batches, "out");
    run_main(&flow).unwrap();
    assert_eq!(out.take(), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);

    // Default batch size is 1: every call sees one item; the mapper may emit any number.
    let got = run_through(vec![1, 2, 3], |s| {
        s.flat_map_batch("lens", |b: Vec<i32>| vec![b.len(); b[0] as usize])
    });
    assert_eq!(got, vec![1, 1, 1, 1, 1, 1]);
}

#[test]
fn flat_map_batch_batches_end_at_a_pause_and_skip_emptied_batches() {
    let flow = Dataflow::new("f");
    let events = vec![
        TestEvent::Item(1),
        TestEvent::Item(2),
        TestEvent::Pause(Duration::from_millis(20)),
        TestEvent::Item(3),
        TestEvent::Item(4),
        TestEvent::Item(5),
        TestEvent::Item(6),
    ];
    let batches = flow
        .input("inp", TestingSource::events(events).batch_size(3))
        // Batches are [1, 2] (cut by the pause), [3, 4, 5] and [6]; the filter leaves
        // [1, 2], [5] and nothing, and an emptied batch is not delivered.
        .filter("drop", |x: &i32| *x != 3 && *x != 4 && *x != 6)
        .flat_map_batch("whole", |b: Vec<i32>| vec![b]);
    let out = collect(&batches, "out");
    run_main(&flow).unwrap();
    assert_eq!(out.take(), vec![vec![1, 2], vec![5]]);
}

#[test]
fn flatten_vectors_and_options() {
    let got = run_through(vec![vec![1, 2], vec![], vec![3]], |s| s.flatten("flat"));
    assert_eq!(got, vec![1, 2, 3]);
    let got = run_through(vec![Some("a"), None, Some("b")], |s| s.flatten("flat"));
    assert_eq!(got, vec!["a", "b"]);
}

#[test]
fn inspect_with_gets_the_full_step_id_and_passes_items_on() {
    let seen: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
    let seen2 = seen.clone();
    let got = run_through(vec![4, 5, 6], move |s| {
        s.inspect_with("look", move |id: &str, x: &i32| {
            seen2.lock().unwrap().push((id.to_string(), *x))
        })
        .map("inc", |x| x + 1)
    });
    assert_eq!(got, vec![5, 6, 7]);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(s("f.look"), 4), (s("f.look"), 5), (s("f.look"), 6)]
    );
}

#[test]
fn inspect_with_alone_counts_as_an_output() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let flow = Dataflow::new("f");
    flow.input("inp", TestingSource::new(0..5))
        .inspect_with("look", move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
        });
    flow.validate().expect("inspect is an output");
    run_main(&flow).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 5);
}

#[test]
fn branch_splits_keeping_order_within_each_side() {
    let flow = Dataflow::new("f");
    let b = flow
        .input("inp", TestingSource::new(vec![5, 2, 8, 1, 4, 7, 6]))
        .branch("small", |x: &i32| *x < 5);
    let trues = collect(&b.trues, "t");
    let falses = collect(&b.falses, "fa");
    run_main(&flow).unwrap();
    assert_eq!(trues.take(), vec![2, 1, 4]);
    assert_eq!(falses.take(), vec![5, 8, 7, 6]);
}

#[test]
fn merge_of_two_streams_is_the_multiset_union_keeping_each_inputs_order() {
    let flow = Dataflow::new("f");
    let a = flow.input("a", TestingSource::new(vec![3, 1, 2]));
    let b = flow.input("b", TestingSource::new(vec![30, 10, 20, 10]));
    let out = collect(&a.merge("both", [&b]), "out");
    run_main(&flow).unwrap();
    let got = out.take();
    assert_eq!(sorted(&got), vec![1, 2, 3, 10, 10, 20, 30]);
    assert_eq!(only(&got, |x| *x < 10), vec![3, 1, 2]);
    assert_eq!(only(&got, |x| *x >= 10), vec![30, 10, 20, 10]);
}

#[test]
fn merge_of_three_streams_is_the_multiset_union_keeping_each_inputs_order() {
    let flow = Dataflow::new("f");
    let a = flow.input("a", TestingSource::new(vec![1, 1, 0]));
    let b = flow.input("b", TestingSource::new(vec![12, 11]).batch_size(2));
    let c = flow.input("c", TestingSource::new(vec![23, 21, 22]));
    let out = collect(&a.merge("all", [&b, &c]), "out");
    run_main(&flow).unwrap();
    let got = out.take();
    assert_eq!(sorted(&got), vec![0, 1, 1, 11, 12, 21, 22, 23]);
    assert_eq!(only(&got, |x| *x < 10), vec![1, 1, 0]);
    assert_eq!(only(&got, |x| (10..20).contains(x)), vec![12, 11]);
    assert_eq!(only(&got, |x| *x >= 20), vec![23, 21, 22]);
}

#[test]
fn redistribute_passes_items_through_with_one_worker() {
    let got = run_through(vec![9, 8, 7, 8], |s| s.redistribute("spread"));
    assert_eq!(got, vec![9, 8, 7, 8]);
}

#[test]
fn key_on_makes_pairs_and_key_rm_drops_the_key() {
    let flow = Dataflow::new("f");
    let keyed = flow
        .input("inp", TestingSource::new(vec!["apple", "bob", "avocado"]))
        .key_on("first", |w: &&str| w[..1].to_string());
    let pairs = collect(&keyed, "pairs");
    let values = collect(&keyed.key_rm("unkey"), "values");
    run_main(&flow).unwrap();
    assert_eq!(
        pairs.take(),
        vec![(s("a"), "apple"), (s("b"), "bob"), (s("a"), "avocado")]
    );
    assert_eq!(values.take(), vec!["apple", "bob", "avocado"]);
}

#[test]
fn value_operators_keep_keys() {
    let input = vec![("a", 1), ("b", -2), ("a", 3), ("c", 0)];
    let got = run_through(input.clone(), |s| s.map_value("sq", |v: i32| v * v));
    assert_eq!(got, vec![("a", 1), ("b", 4), ("a", 9), ("c", 0)]);

    let got = run_through(input.clone(), |s| s.filter_value("pos", |v: &i32| *v > 0));
    assert_eq!(got, vec![("a", 1), ("a", 3)]);

    let got = run_through(input.clone(), |s| {
        s.flat_map_value("upto", |v: i32| 0..v.max(0))
    });
    assert_eq!(
        got,
        vec![("a", 0), ("a", 0), ("a", 1), ("a", 2)],
        "each value expands to 0..v under its own key"
    );

    let got = run_through(input, |s| {
        s.filter_map_value("half", |v: i32| (v % 2 != 0).then(|| format!("{v}/2")))
    });
    assert_eq!(
        got,
        vec![("a", s("1/2")), ("a", s("3/2"))],
        "None drops the item, Some keeps its key"
    );
}

#[test]
fn a_stream_consumed_twice_gives_each_consumer_the_full_stream() {
    let flow = Dataflow::new("f");
    let inp = flow.input("inp", TestingSource::new(vec![1, 2, 3, 4]).batch_size(3));
    let doubled = collect(&inp.map("double", |x: i32| x * 2), "o1");
    let evens = collect(&inp.filter("even", |x: &i32| x % 2 == 0), "o2");
    let raw = collect(&inp, "o3");
    let counts = collect(&inp.count_final("count", |x: i32| x % 2), "o4");
    run_main(&flow).unwrap();
    assert_eq!(doubled.take(), vec![2, 4, 6, 8]);
    assert_eq!(evens.take(), vec![2, 4]);
    assert_eq!(raw.take(), vec![1, 2, 3, 4]);
    assert_eq!(counts.take(), vec![(0, 2), (1, 2)]);
}

// ---- stateful operators ----------------------------------------------------------------

/// Reference `stateful_map_sum.py`: running sum per key, discarded when it hits 0.
#[test]
fn reference_stateful_map_sum() {
    let flow = Dataflow::new("stateful_map_sum");
    let events = vec![("a", 1), ("b", 10), ("a", 2), ("a", -3), ("a", 5), ("b", 1)];
    let sums = flow.input("inp", TestingSource::new(events)).stateful_map(
        "sum",
        |state: Option<i64>, value: i64| {
            let total = state.unwrap_or(0) + value;
            ((total != 0).then_some(total), total)
        },
    );
    let out = collect(&sums, "out");
    run_main(&flow).unwrap();
    assert_eq!(
        out.take(),
        vec![("a", 1), ("b", 10), ("a", 3), ("a", 0), ("a", 5), ("b", 11)]
    );
}

#[test]
fn stateful_map_none_state_discards_the_key() {
    // Counts values per key; the state is discarded after every third value, so the next
    // value of that key starts again from None.
    let got = run_through(vec![("k", ()); 7], |s| {
        s.stateful_map("cnt", |state: Option<u32>, ()| {
            let n = state.unwrap_or(0) + 1;
            ((n < 3).then_some(n), (state.is_none(), n))
        })
    });
    let got: Vec<_> = got.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        got,
        vec![
            (true, 1),
            (false, 2),
            (false, 3),
            (true, 1),
            (false, 2),
            (false, 3),
            (true, 1)
        ]
    );
}

#[test]
fn stateful_flat_map_emits_any_number_and_none_discards() {
    // Buffers values per key; on a 0 emits the buffer (possibly nothing) and forgets it.
    let input = vec![
        ("a", 1),
        ("b", 7),
        ("a", 2),
        ("a", 0),
        ("b", 0),
        ("b", 0),
        ("a", 3),
    ];
    let got = run_through(input, |s| {
        s.stateful_flat_map("flush", |state: Option<Vec<i32>>, v: i32| {
            let mut buf = state.unwrap_or_default();
            if v == 0 {
                (None, buf)
            } else {
                buf.push(v);
                (Some(buf), Vec::new())
            }
        })
    });
    assert_eq!(got, vec![("a", 1), ("a", 2), ("b", 7)]);
}

#[test]
fn final_operators_emit_once_per_key_at_eof_in_key_order() {
    let input = vec![("m", 5), ("c", 2), ("x", -1), ("c", 9), ("m", 1), ("c", 4)];
    let flow = Dataflow::new("f");
    let inp = flow.input("inp", TestingSource::new(input));
    let fold = collect(
        &inp.fold_final("fold", Vec::new, |mut acc: Vec<i32>, v| {
            acc.push(v);
            acc
        }),
        "o_fold",
    );
    let reduce = collect(&inp.reduce_final("sum", |a, b| a + b), "o_reduce");
    let count = collect(&inp.count_final("count", |kv: (&str, i32)| kv.0), "o_count");
    let max = collect(&inp.max_final("max"), "o_max");
    let min = collect(&inp.min_final("min"), "o_min");
    run_main(&flow).unwrap();
    assert_eq!(
        fold.take(),
        vec![("c", vec![2, 9, 4]), ("m", vec![5, 1]), ("x", vec![-1])]
    );
    assert_eq!(reduce.take(), vec![("c", 15), ("m", 6), ("x", -1)]);
    assert_eq!(count.take(), vec![("c", 3), ("m", 2), ("x", 1)]);
    assert_eq!(max.take(), vec![("c", 9), ("m", 5), ("x", -1)]);
    assert_eq!(min.take(), vec![("c", 2), ("m", 1), ("x", -1)]);
}

#[test]
fn reduce_final_applies_values_in_arrival_order() {
    // A non-commutative reducer shows the order in which values are combined.
    let input = vec![("k", s("a")), ("j", s("x")), ("k", s("b")), ("k", s("c"))];
    let got = run_through(input, |s| s.reduce_final("cat", |a, b| a + &b));
    assert_eq!(got, vec![("j", s("x")), ("k", s("abc"))]);
}

#[test]
fn final_operators_on_empty_input_emit_nothing() {
    let flow = Dataflow::new("f");
    let inp = flow.input("inp", TestingSource::new(Vec::<(String, i32)>::new()));
    let outs = [
        collect(&inp.fold_final("fold", || 0, |a, v| a + v), "o1"),
        collect(&inp.reduce_final("reduce", |a, b| a + b), "o2"),
        collect(&inp.max_final("max"), "o3"),
        collect(&inp.min_final("min"), "o4"),
    ];
    let count = collect(&inp.count_final("count", |kv: (String, i32)| kv.0), "o5");
    let stateful_eof = collect(&inp.stateful("logic", |_| Recorder::default()), "o6");
    run_main(&flow).unwrap();
    for (i, o) in outs.iter().enumerate() {
        assert!(o.is_empty(), "output {i} got {:?}", o.get());
    }
    assert!(count.is_empty());
    assert!(stateful_eof.is_empty());
}

#[test]
fn finals_chain_each_waits_for_its_input_to_end() {
    // Word counts, then how many words have each count: the second count_final can only
    // emit after the first one has emitted at EOF.
    let words = vec!["a", "b", "a", "c", "b", "a", "d"];
    let got = run_through(words, |s| {
        s.count_final("per_word", |w: &str| w)
            .count_final("per_count", |(_, n): (&str, u64)| n)
    });
    assert_eq!(got, vec![(1, 2), (2, 1), (3, 1)]);
}

#[test]
fn a_flow_runs_again_from_scratch() {
    let flow = Dataflow::new("f");
    let (sink, out) = TestingSink::new();
    flow.input("inp", TestingSource::new(vec!["x", "y", "x"]))
        .count_final("count", |w: &str| w)
        .output("out", sink);
    run_main(&flow).unwrap();
    let first = out.take();
    run_main(&flow).unwrap();
    assert_eq!(first, vec![("x", 2), ("y", 1)]);
    assert_eq!(out.take(), first, "no state leaks from the first run");
}

/// A `StatefulLogic` that records its lifecycle.
#[derive(Default)]
struct Recorder {
    items: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    /// `on_item`: the value and how many values this logic instance had seen before.
    Item(i32, usize),
    /// `on_eof`: everything this logic instance saw.
    Eof(Vec<i32>),
}

impl StatefulLogic<i32> for Recorder {
    type Out = Rec;
    type State = Vec<i32>;
    fn on_item(&mut self, value: i32, emit: &mut Vec<Rec>) -> Retention {
        emit.push(Rec::Item(value, self.items.len()));
        self.items.push(value);
        // A negative value ends the key: the next value starts a fresh logic.
        if value < 0 {
            Retention::Discard
        } else {
            Retention::Retain
        }
    }
    fn on_eof(&mut self, emit: &mut Vec<Rec>) -> Retention {
        emit.push(Rec::Eof(self.items.clone()));
        Retention::Discard
    }
    fn snapshot(&self) -> Vec<i32> {
        self.items.clone()
    }
}

#[test]
fn stateful_logic_lifecycle_items_discard_and_eof_in_key_order() {
    let built = Arc::new(AtomicUsize::new(0));
    let b = built.clone();
    let input = vec![("k", 1), ("b", 5), ("k", 2), ("k", -1), ("k", 3), ("z", -2)];
    let got = run_through(input, move |s| {
        s.stateful("rec", move |resume: Option<Vec<i32>>| {
            assert!(resume.is_none(), "no resume state in a fresh run");
            b.fetch_add(1, Ordering::SeqCst);
            Recorder::default()
        })
    });
    assert_eq!(
        got,
        vec![
            ("k", Rec::Item(1, 0)),
            ("b", Rec::Item(5, 0)),
            ("k", Rec::Item(2, 1)),
            ("k", Rec::Item(-1, 2)),
            // Discarded: a fresh logic for "k".
            ("k", Rec::Item(3, 0)),
            ("z", Rec::Item(-2, 0)),
            // At EOF, the live keys in key order; "z" was discarded.
            ("b", Rec::Eof(vec![5])),
            ("k", Rec::Eof(vec![3])),
        ]
    );
    // k, b, k again after the discard, z.
    assert_eq!(built.load(Ordering::SeqCst), 4);
}

/// Emits what happened; asks to be notified `delay` after its first item, once.
struct Timer {
    delay: Duration,
    /// How many more notifications to re-arm after one fires.
    rearm: u32,
    due: Option<Instant>,
    seen: Vec<i32>,
    notified: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Item(i32),
    Notify(Vec<i32>),
    Eof(u32),
}

impl Timer {
    fn new(delay_ms: u64, rearm: u32) -> Timer {
        Timer {
            delay: Duration::from_millis(delay_ms),
            rearm,
            due: None,
            seen: Vec::new(),
            notified: 0,
        }
    }
}

impl StatefulLogic<i32> for Timer {
    type Out = Ev;
    type State = ();
    fn on_item(&mut self, value: i32, emit: &mut Vec<Ev>) -> Retention {
        if self.seen.is_empty() {
            self.due = Some(Instant::now() + self.delay);
        }
        self.seen.push(value);
        emit.push(Ev::Item(value));
        Retention::Retain
    }
    fn notify_at(&self) -> Option<Instant> {
        self.due
    }
    fn on_notify(&mut self, emit: &mut Vec<Ev>) -> Retention {
        self.notified += 1;
        emit.push(Ev::Notify(self.seen.clone()));
        self.due = if self.rearm > 0 {
            self.rearm -= 1;
            Some(Instant::now() + self.delay)
        } else {
            None
        };
        Retention::Retain
    }
    fn on_eof(&mut self, emit: &mut Vec<Ev>) -> Retention {
        emit.push(Ev::Eof(self.notified));
        Retention::Discard
    }
    fn snapshot(&self) {}
}

#[test]
fn notify_at_fires_on_notify_without_new_data_and_only_once() {
    let events = vec![
        TestEvent::Item(("k", 1)),
        // No input for a while: the timer must still fire.
        TestEvent::Pause(Duration::from_millis(250)),
        TestEvent::Item(("k", 2)),
        // The notification does not fire again (notify_at now returns None).
        TestEvent::Pause(Duration::from_millis(150)),
    ];
    let flow = Dataflow::new("f");
    let out = collect(
        &flow
            .input("inp", TestingSource::events(events))
            .stateful("timer", |_| Timer::new(50, 0)),
        "out",
    );
    run_main(&flow).unwrap();
    assert_eq!(
        out.take(),
        vec![
            ("k", Ev::Item(1)),
            ("k", Ev::Notify(vec![1])),
            ("k", Ev::Item(2)),
            ("k", Ev::Eof(1)),
        ]
    );
}

#[test]
fn notify_at_rearmed_from_on_notify_fires_again() {
    let events = vec![
        TestEvent::Item(("k", 7)),
        TestEvent::Pause(Duration::from_millis(400)),
    ];
    let flow = Dataflow::new("f");
    let out = collect(
        &flow
            .input("inp", TestingSource::events(events))
            .stateful("timer", |_| Timer::new(30, 2)),
        "out",
    );
    run_main(&flow).unwrap();
    assert_eq!(
        out.take(),
        vec![
            ("k", Ev::Item(7)),
            ("k", Ev::Notify(vec![7])),
            ("k", Ev::Notify(vec![7])),
            ("k", Ev::Notify(vec![7])),
            ("k", Ev::Eof(3)),
        ]
    );
}

#[test]
fn notifications_of_different_keys_fire_in_time_order() {
    struct Delay(Option<Instant>);
    impl StatefulLogic<u64> for Delay {
        type Out = &'static str;
        type State = ();
        fn on_item(&mut self, ms: u64, _: &mut Vec<&'static str>) -> Retention {
            self.0 = Some(Instant::now() + Duration::from_millis(ms));
            Retention::Retain
        }
        fn notify_at(&self) -> Option<Instant> {
            self.0
        }
        fn on_notify(&mut self, emit: &mut Vec<&'static str>) -> Retention {
            emit.push("notify");
            Retention::Discard
        }
        fn on_eof(&mut self, emit: &mut Vec<&'static str>) -> Retention {
            emit.push("eof");
            Retention::Discard
        }
        fn snapshot(&self) {}
    }
    let events = vec![
        TestEvent::Item(("a", 200)),
        TestEvent::Item(("b", 40)),
        TestEvent::Item(("c", 100_000)),
        TestEvent::Pause(Duration::from_millis(350)),
    ];
    let flow = Dataflow::new("f");
    let out = collect(
        &flow
            .input("inp", TestingSource::events(events))
            .stateful("delay", |_| Delay(None)),
        "out",
    );
    run_main(&flow).unwrap();
    // "a" and "b" fire during the pause (b first); "c" never fires and is live at EOF;
    // "a" and "b" were discarded by on_notify so get no on_eof.
    assert_eq!(
        out.take(),
        vec![("b", "notify"), ("a", "notify"), ("c", "eof")]
    );
}

#[test]
fn discarding_a_key_cancels_its_notification() {
    struct Once(Option<Instant>);
    impl StatefulLogic<i32> for Once {
        type Out = String;
        type State = ();
        fn on_item(&mut self, v: i32, emit: &mut Vec<String>) -> Retention {
            self.0 = Some(Instant::now() + Duration::from_millis(30));
            emit.push(format!("item {v}"));
            if v < 0 {
                Retention::Discard
            } else {
                Retention::Retain
            }
        }
        fn notify_at(&self) -> Option<Instant> {
            self.0
        }
        fn on_notify(&mut self, emit: &mut Vec<String>) -> Retention {
            emit.push("notify".into());
            self.0 = None;
            Retention::Retain
        }
        fn snapshot(&self) {}
    }
    let events = vec![
        TestEvent::Item(("x", 1)),
        TestEvent::Item(("x", -1)),
        TestEvent::Pause(Duration::from_millis(150)),
    ];
    let flow = Dataflow::new("f");
    let out = collect(
        &flow
            .input("inp", TestingSource::events(events))
            .stateful("once", |_| Once(None)),
        "out",
    );
    run_main(&flow).unwrap();
    assert_eq!(out.take(), vec![("x", s("item 1")), ("x", s("item -1"))]);
}

/// A notify_at that keeps returning the (past) time that already fired must not stall the
/// flow: the notification fires (once, or at most once per scheduling round as in
/// Bytewax) and the input keeps being read until EOF.
#[test]
fn a_stale_notify_time_does_not_stall_the_flow() {
    struct Stale {
        due: Option<Instant>,
        calls: Arc<AtomicUsize>,
    }
    impl StatefulLogic<i32> for Stale {
        type Out = i32;
        type State = ();
        fn on_item(&mut self, v: i32, emit: &mut Vec<i32>) -> Retention {
            // 0 asks for a notification now; anything else cancels it.
            self.due = (v == 0).then(Instant::now);
            emit.push(v);
            Retention::Retain
        }
        fn notify_at(&self) -> Option<Instant> {
            self.due
        }
        fn on_notify(&mut self, _: &mut Vec<i32>) -> Retention {
            // Leaves `due` as it is (does not re-arm to a new time).
            self.calls.fetch_add(1, Ordering::SeqCst);
            Retention::Retain
        }
        fn on_eof(&mut self, emit: &mut Vec<i32>) -> Retention {
            emit.push(-1);
            Retention::Discard
        }
        fn snapshot(&self) {}
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let events = vec![
        TestEvent::Item(("k", 0)),
        TestEvent::Pause(Duration::from_millis(50)),
        TestEvent::Item(("k", 1)),
    ];
    let flow = Dataflow::new("f");
    let out = collect(
        &flow
            .input("inp", TestingSource::events(events))
            .stateful("stale", move |_| Stale {
                due: None,
                calls: c.clone(),
            }),
        "out",
    );
    let result = run_within(&flow, Duration::from_secs(3));
    assert!(
        result.is_some(),
        "run did not finish within 3 s (on_notify called {} times so far)",
        calls.load(Ordering::SeqCst)
    );
    result.unwrap().unwrap();
    assert_eq!(out.take(), vec![("k", 0), ("k", 1), ("k", -1)]);
    assert!(calls.load(Ordering::SeqCst) >= 1);
}

/// Reference `stateful_logic_demo.py`, the `Debounce` part: emits a key's buffer 0.3 s
/// after its last item, or at EOF.
#[test]
fn reference_stateful_logic_debounce() {
    struct Debounce {
        buf: Vec<i32>,
        due: Option<Instant>,
    }
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Out {
        Timer(Vec<i32>),
        Eof(Vec<i32>),
    }
    impl StatefulLogic<i32> for Debounce {
        type Out = Out;
        // The deadline as wall-clock time: an `Instant` cannot be saved.
        type State = (Vec<i32>, Option<SystemTime>);
        fn on_item(&mut self, value: i32, _emit: &mut Vec<Out>) -> Retention {
            self.buf.push(value);
            self.due = Some(Instant::now() + Duration::from_millis(300));
            Retention::Retain
        }
        fn notify_at(&self) -> Option<Instant> {
            self.due
        }
        fn on_notify(&mut self, emit: &mut Vec<Out>) -> Retention {
            emit.push(Out::Timer(std::mem::take(&mut self.buf)));
            Retention::Discard
        }
        fn on_eof(&mut self, emit: &mut Vec<Out>) -> Retention {
            emit.push(Out::Eof(std::mem::take(&mut self.buf)));
            Retention::Discard
        }
        fn snapshot(&self) -> (Vec<i32>, Option<SystemTime>) {
            let wall = |d: Instant| SystemTime::now() + d.saturating_duration_since(Instant::now());
            (self.buf.clone(), self.due.map(wall))
        }
    }
    let flow = Dataflow::new("stateful_logic_demo");
    let inp = flow.input(
        "inp",
        TestingSource::events(vec![
            TestEvent::Item(("k", 1)),
            TestEvent::Item(("k", 2)),
            TestEvent::Pause(Duration::from_secs(1)),
            TestEvent::Item(("k", 3)),
            TestEvent::Item(("j", 9)),
        ]),
    );
    let out = collect(
        &inp.stateful(
            "debounce",
            |state: Option<(Vec<i32>, Option<SystemTime>)>| {
                let (buf, due) = state.unwrap_or_default();
                let due = due.map(|t| {
                    Instant::now() + t.duration_since(SystemTime::now()).unwrap_or_default()
                });
                Debounce { buf, due }
            },
        ),
        "out",
    );
    let start = Instant::now();
    run_main(&flow).unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "the pause is honoured"
    );
    assert_eq!(
        out.take(),
        vec![
            ("k", Out::Timer(vec![1, 2])),
            ("j", Out::Eof(vec![9])),
            ("k", Out::Eof(vec![3])),
        ]
    );
}

// ---- step ids and validation -----------------------------------------------------------

#[test]
fn duplicate_step_id_is_reported_by_validate_and_run_main_before_running() {
    let flow = Dataflow::new("flow");
    let inp = flow.input("inp", TestingSource::new(vec![1, 2]));
    let (sink, out) = TestingSink::new();
    inp.map("x", |v: i32| v + 1)
        .map("x", |v| v * 2)
        .output("out", sink);
    assert!(
        matches!(flow.validate(), Err(Error::DuplicateStepId(ref id)) if id == "flow.x"),
        "{:?}",
        flow.validate()
    );
    let err = run_main(&flow).unwrap_err();
    assert!(
        matches!(err, Error::DuplicateStepId(ref id) if id == "flow.x"),
        "{err:?}"
    );
    assert!(err.to_string().contains("flow.x"));
    assert!(out.is_empty(), "an invalid flow does not run");
}

#[test]
fn duplicate_composite_step_id_is_reported() {
    let flow = Dataflow::new("flow");
    let inp = flow.input("inp", TestingSource::new(vec!["a"]));
    let c1 = inp.count_final("step", |w: &str| w);
    let c2 = inp.count_final("step", |w: &str| w.len());
    collect(&c1, "o1");
    collect(&c2, "o2");
    let err = flow.validate().unwrap_err();
    assert!(
        matches!(err, Error::DuplicateStepId(ref id) if id == "flow.step"),
        "{err:?}"
    );
    assert!(matches!(
        run_main(&flow),
        Err(Error::DuplicateStepId(ref id)) if id == "flow.step"
    ));

    // A plain step clashing with a composite's name is a duplicate too.
    let flow = Dataflow::new("flow");
    let inp = flow.input("inp", TestingSource::new(vec!["a"]));
    let c = inp.count_final("step", |w: &str| w);
    collect(&c.map("step", |kv| kv), "out");
    assert!(matches!(
        flow.validate(),
        Err(Error::DuplicateStepId(ref id)) if id == "flow.step"
    ));
}

#[test]
fn same_inner_names_in_different_scopes_are_fine() {
    let flow = Dataflow::new("f");
    let inp = flow.input("inp", TestingSource::new(vec!["a", "b", "a"]));
    // Top-level steps named like count_final's inner steps, and two composites that both
    // have inner steps "key" and "count".
    let keyed = inp.key_on("key", |w: &&str| *w);
    let counted = keyed.map("count", |kv| kv.1);
    let c1 = collect(&counted.count_final("c1", |w: &str| w), "o1");
    let c2 = collect(&inp.count_final("c2", |w: &str| w.len()), "o2");
    flow.validate().unwrap();
    run_main(&flow).unwrap();
    assert_eq!(c1.take(), vec![("a", 2), ("b", 1)]);
    assert_eq!(c2.take(), vec![(1, 3)]);
}

#[test]
fn invalid_step_ids_are_reported() {
    let flow = Dataflow::new("f");
    let inp = flow.input("in.p", TestingSource::new(vec![1]));
    collect(&inp, "out");
    assert!(
        matches!(flow.validate(), Err(Error::InvalidStepId(ref id)) if id.contains("in.p")),
        "{:?}",
        flow.validate()
    );
    assert!(matches!(run_main(&flow), Err(Error::InvalidStepId(_))));

    let flow = Dataflow::new("f");
    let inp = flow.input("inp", TestingSource::new(vec![1]));
    collect(&inp.map("", |x: i32| x), "out");
    assert!(matches!(flow.validate(), Err(Error::InvalidStepId(_))));

    let flow = Dataflow::new("f");
    let inp = flow.input("inp", TestingSource::new(vec![1]));
    collect(&inp.count_final("a.b", |x: i32| x), "out");
    assert!(
        matches!(flow.validate(), Err(Error::InvalidStepId(ref id)) if id == "f.a.b"),
        "{:?}",
        flow.validate()
    );

    let flow = Dataflow::new("my.flow");
    let inp = flow.input("inp", TestingSource::new(vec![1]));
    collect(&inp, "out");
    assert!(
        matches!(flow.validate(), Err(Error::InvalidStepId(ref id)) if id == "my.flow"),
        "{:?}",
        flow.validate()
    );
}

#[test]
fn a_flow_without_input_or_output_is_refused() {
    let flow = Dataflow::new("empty");
    assert!(matches!(flow.validate(), Err(Error::NoInput(ref n)) if n == "empty"));
    assert!(matches!(run_main(&flow), Err(Error::NoInput(ref n)) if n == "empty"));

    let flow = Dataflow::new("dangling");
    flow.input("inp", TestingSource::new(vec![1]))
        .map("m", |x: i32| x);
    assert!(matches!(flow.validate(), Err(Error::NoOutput(ref n)) if n == "dangling"));
    let err = run_main(&flow).unwrap_err();
    assert!(
        matches!(err, Error::NoOutput(ref n) if n == "dangling"),
        "{err:?}"
    );
    assert!(err.to_string().contains("dangling"));
}

#[test]
fn step_ids_are_dotted_and_include_composites_inner_steps() {
    let flow = Dataflow::new("f");
    let words = flow
        .input("inp", TestingSource::new(vec!["a b"]))
        .flat_map("split", |l: &str| l.split(' ').collect::<Vec<_>>());
    let counts = words.count_final("count", |w: &str| w);
    collect(&counts.map("fmt", |(w, c)| format!("{w}={c}")), "out");
    assert_eq!(
        flow.step_ids(),
        vec![
            "f.inp",
            "f.split",
            "f.count.key",
            "f.count.count",
            "f.fmt",
            "f.out"
        ]
    );
    assert_eq!(flow.name(), "f");
}

// ---- failures --------------------------------------------------------------------------

/// Reference `error_demo.py`: `10 // x` over [1, 2, 0, 4].
#[test]
fn reference_error_demo_names_the_failing_step() {
    let flow = Dataflow::new("error_demo");
    let (sink, out) = TestingSink::new();
    flow.input("inp", TestingSource::new(vec![1, 2, 0, 4]))
        .map("invert", |x: i32| 10 / x)
        .output("out", sink);
    let err = run_main(&flow).unwrap_err();
    match &err {
        Error::StepPanicked { step_id, message } => {
            assert_eq!(step_id, "error_demo.invert");
            assert!(message.contains("divide by zero"), "{message}");
        }
        other => panic!("expected StepPanicked, got {other:?}"),
    }
    assert!(err.to_string().contains("error_demo.invert"));
    assert_eq!(
        out.take(),
        vec![10, 5],
        "items before the failure reached the sink"
    );
}

#[test]
fn a_panic_is_attributed_to_the_innermost_step() {
    fn panicked_step(flow: &Dataflow) -> (String, String) {
        match run_main(flow) {
            Err(Error::StepPanicked { step_id, message }) => (step_id, message),
            other => panic!("expected StepPanicked, got {other:?}"),
        }
    }

    // A downstream map, called synchronously from the upstream one.
    let flow = Dataflow::new("f");
    let (sink, out) = TestingSink::new();
    flow.input("inp", TestingSource::new(vec![1, 2, 3]))
        .map("a", |x: i32| x)
        .map(
            "b",
            |x: i32| if x == 2 { panic!("b broke on {x}") } else { x },
        )
        .output("out", sink);
    let (id, msg) = panicked_step(&flow);
    assert_eq!(id, "f.b");
    assert!(msg.contains("b broke on 2"), "{msg}");
    assert_eq!(out.take(), vec![1]);

    // A predicate.
    let flow = Dataflow::new("f");
    flow.input("inp", TestingSource::new(vec![1]))
        .filter("pred", |_: &i32| panic!("no"))
        .inspect_with("look", |_, _| {});
    assert_eq!(panicked_step(&flow).0, "f.pred");

    // An inspector.
    let flow = Dataflow::new("f");
    flow.input("inp", TestingSource::new(vec![1]))
        .inspect_with("look", |_, _: &i32| panic!("seen"));
    assert_eq!(panicked_step(&flow), (s("f.look"), s("seen")));

    // The key function of a composite step.
    let flow = Dataflow::new("f");
    let c = flow
        .input("inp", TestingSource::new(vec![1, 0]))
        .count_final("c", |x: i32| 1 / x);
    collect(&c, "out");
    assert_eq!(panicked_step(&flow).0, "f.c.key");

    // The folder of a keyed step.
    let flow = Dataflow::new("f");
    let folded = flow
        .input("inp", TestingSource::new(vec![("k", 1)]))
        .fold_final("fold", || 0, |_, _: i32| panic!("fold"));
    collect(&folded, "out");
    assert_eq!(panicked_step(&flow).0, "f.fold");

    // `key_on` -> `stateful_map` -> `key_rm` -> `map`, which the engine fuses: each
    // step's own panic still names it.
    let chain = |key_at: i32, map_at: i32, after_at: i32| {
        let flow = Dataflow::new("f");
        let out = flow
            .input("inp", TestingSource::new(vec![1, 2, 3]))
            .key_on("key", move |&x: &i32| {
                assert_ne!(x, key_at, "key broke");
                x % 2
            })
            .stateful_map("sm", move |s: Option<i32>, x: i32| {
                assert_ne!(x, map_at, "mapper broke");
                (Some(s.unwrap_or(0) + x), x)
            })
            .key_rm("unkey")
            .map("after", move |x: i32| {
                assert_ne!(x, after_at, "after broke");
                x
            });
        collect(&out, "out");
        panicked_step(&flow)
    };
    let (id, msg) = chain(2, 0, 0);
    assert_eq!(id, "f.key");
    assert!(msg.contains("key broke"), "{msg}");
    let (id, msg) = chain(0, 2, 0);
    assert_eq!(id, "f.sm");
    assert!(msg.contains("mapper broke"), "{msg}");
    let (id, msg) = chain(0, 0, 2);
    assert_eq!(id, "f.after");
    assert!(msg.contains("after broke"), "{msg}");
}

#[test]
fn panics_in_stateful_callbacks_name_the_step() {
    struct Boom {
        on: &'static str,
        due: Option<Instant>,
    }
    impl StatefulLogic<i32> for Boom {
        type Out = i32;
        type State = ();
        fn on_item(&mut self, v: i32, emit: &mut Vec<i32>) -> Retention {
            if self.on == "item" {
                panic!("boom in on_item");
            }
            self.due = Some(Instant::now() + Duration::from_millis(10));
            emit.push(v);
            Retention::Retain
        }
        fn notify_at(&self) -> Option<Instant> {
            (self.on == "notify").then_some(self.due).flatten()
        }
        fn on_notify(&mut self, _: &mut Vec<i32>) -> Retention {
            panic!("boom in on_notify");
        }
        fn on_eof(&mut self, _: &mut Vec<i32>) -> Retention {
            if self.on == "eof" {
                panic!("boom in on_eof");
            }
            Retention::Discard
        }
        fn snapshot(&self) {}
    }
    for on in ["item", "notify", "eof"] {
        let flow = Dataflow::new("f");
        let events = vec![
            TestEvent::Item(("k", 1)),
            TestEvent::Pause(Duration::from_millis(100)),
        ];
        let st = flow
            .input("inp", TestingSource::events(events))
            .stateful("logic", move |_| Boom { on, due: None })
            .map("after", |kv| kv);
        collect(&st, "out");
        match run_main(&flow) {
            Err(Error::StepPanicked { step_id, message }) => {
                assert_eq!(step_id, "f.logic", "panic in on_{on}");
                assert_eq!(message, format!("boom in on_{on}"));
            }
            other => panic!("panic in on_{on}: expected StepPanicked, got {other:?}"),
        }
    }
}

/// Reference `abort_cli.py`, except that waxfast reports the abort as an error.
#[test]
fn reference_abort_fails_the_run_naming_the_input_and_a_rerun_passes_over_it() {
    let flow = Dataflow::new("abort_cli");
    let (sink, out) = TestingSink::new();
    flow.input(
        "inp",
        TestingSource::events(vec![
            TestEvent::Item(1),
            TestEvent::Item(2),
            TestEvent::Abort,
            TestEvent::Item(3),
        ]),
    )
    .output("out", sink);
    let err = run_main(&flow).unwrap_err();
    match &err {
        Error::Step { step_id, source } => {
            assert_eq!(step_id, "abort_cli.inp");
            assert!(source.to_string().contains("ABORT"), "{source}");
        }
        other => panic!("expected Error::Step, got {other:?}"),
    }
    assert!(err.to_string().contains("abort_cli.inp"));
    assert_eq!(out.take(), vec![1, 2], "items before ABORT were written");

    // The same flow object again: the marker has fired, the run completes.
    run_main(&flow).expect("second run passes over the fired ABORT");
    assert_eq!(out.take(), vec![1, 2, 3]);
}

#[test]
fn abort_in_a_batch_delivers_the_items_before_it() {
    let flow = Dataflow::new("f");
    let events = vec![
        TestEvent::Item(("a", 1)),
        TestEvent::Item(("b", 2)),
        TestEvent::Abort,
        TestEvent::Item(("a", 3)),
    ];
    let inp = flow.input("src", TestingSource::events(events).batch_size(10));
    let raw = collect(&inp, "raw");
    let sums = collect(&inp.reduce_final("sum", |a, b| a + b), "sums");
    let err = run_main(&flow).unwrap_err();
    assert!(
        matches!(err, Error::Step { ref step_id, .. } if step_id == "f.src"),
        "{err:?}"
    );
    assert_eq!(raw.take(), vec![("a", 1), ("b", 2)]);
    assert!(sums.is_empty(), "a failed run does not reach end of stream");
    run_main(&flow).unwrap();
    assert_eq!(raw.take(), vec![("a", 1), ("b", 2), ("a", 3)]);
    assert_eq!(sums.take(), vec![("a", 4), ("b", 2)]);
}

#[test]
fn eof_marker_ends_the_run_early() {
    let flow = Dataflow::new("f");
    let events = vec![
        TestEvent::Item("x"),
        TestEvent::Item("y"),
        TestEvent::Item("x"),
        TestEvent::Eof,
        TestEvent::Item("z"),
        TestEvent::Item("x"),
    ];
    let inp = flow.input("inp", TestingSource::events(events));
    let raw = collect(&inp, "raw");
    let counts = collect(&inp.count_final("count", |w: &str| w), "counts");
    run_main(&flow).unwrap();
    assert_eq!(raw.take(), vec!["x", "y", "x"]);
    assert_eq!(counts.take(), vec![("x", 2), ("y", 1)]);
}

// ---- epochs ----------------------------------------------------------------------------
// Epochs are only observable through `inspect_debug`'s stdout. `inspect_debug_passes_items_on`
// checks the items (in process); `inspect_debug_shows_epochs` runs it again in a child
// process and reads the lines it printed.

/// Reference `wordcount.py` with its `inspect_debug("where")`, and a paced flow whose
/// epochs advance every 50 ms across a 200 ms pause.
#[test]
fn inspect_debug_passes_items_on() {
    let flow = Dataflow::new("wordcount");
    let lines = vec![
        "the quick brown fox",
        "jumps over the lazy dog",
        "The dog barks",
        "the end",
    ];
    let counts = flow
        .input("inp", TestingSource::new(lines))
        .flat_map("split", |line: &str| {
            line.to_lowercase()
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .count_final("count", |w: String| w)
        .inspect_debug("where");
    let out = collect(&counts.map("fmt", |(w, c)| format!("{w}={c}")), "out");
    run_main(&flow).unwrap();
    assert_eq!(out.len(), 10);
    assert_eq!(out.get()[9], "the=4");

    let flow = Dataflow::new("paced");
    let events = vec![
        TestEvent::Item(1u32),
        TestEvent::Pause(Duration::from_millis(200)),
        TestEvent::Item(2),
    ];
    let finals = flow
        .input("inp", TestingSource::events(events))
        .inspect_debug("seen")
        .count_final("count", |x: u32| x % 2)
        .inspect_debug("final");
    let out = collect(&finals, "out");
    let config = RunConfig::default().epoch_interval(Duration::from_millis(50));
    run_main_with(&flow, &config).unwrap();
    assert_eq!(out.take(), vec![(0, 1), (1, 1)]);
}

#[test]
fn inspect_debug_shows_epochs() {
    let exe = std::env::current_exe().expect("test binary path");
    let output = util::run_with_timeout(std::process::Command::new(exe).args([
        "inspect_debug_passes_items_on",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ]));
    let stdout = util::stdout(&output);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        util::stderr(&output)
    );
    // libtest may print "test NAME ... " on the same line as the first output line.
    let lines_of = |prefix: &str| -> Vec<String> {
        stdout
            .lines()
            .filter_map(|l| l.find(prefix).map(|i| l[i..].to_string()))
            .collect()
    };
    let epoch_of = |line: &str| -> u64 {
        let rest = &line[line.find(" @").expect("has @epoch") + 2..];
        rest[..rest.find(':').expect("has colon")]
            .parse()
            .expect("epoch is a number")
    };

    // Default 10 s interval: everything of a short run is in epoch 1 on worker 0, as in
    // the reference output wordcount_w1.txt.
    let expected: Vec<String> = [
        ("barks", 1),
        ("brown", 1),
        ("dog", 2),
        ("end", 1),
        ("fox", 1),
        ("jumps", 1),
        ("lazy", 1),
        ("over", 1),
        ("quick", 1),
        ("the", 4),
    ]
    .iter()
    .map(|(w, c)| format!("wordcount.where W0 @1: ({w:?}, {c})"))
    .collect();
    assert_eq!(lines_of("wordcount.where"), expected);

    // 50 ms interval: the item after the 200 ms pause is in a later epoch; the finals
    // emitted at EOF carry the last finite epoch, not earlier than the last item's.
    let seen = lines_of("paced.seen");
    assert_eq!(seen.len(), 2, "{stdout}");
    assert!(seen[0].starts_with("paced.seen W0 @1: 1"), "{seen:?}");
    assert!(seen[1].ends_with(": 2"), "{seen:?}");
    let e2 = epoch_of(&seen[1]);
    assert!(e2 >= 2, "200 ms at 50 ms per epoch, got epoch {e2}");
    let finals = lines_of("paced.final");
    assert_eq!(finals.len(), 2, "{stdout}");
    for line in &finals {
        let e = epoch_of(line);
        assert!(e >= e2 && e < u64::MAX, "{line} (last item in epoch {e2})");
    }
    assert!(finals[0].ends_with(": (0, 1)") && finals[1].ends_with(": (1, 1)"));
}

// The epoch interval never changes results.

#[test]
fn results_do_not_depend_on_the_epoch_interval() {
    type Sums = TestingOutput<(&'static str, i64)>;
    type Timers = TestingOutput<(&'static str, Ev)>;
    fn build() -> (Dataflow, Sums, Timers) {
        let flow = Dataflow::new("f");
        let events = vec![
            TestEvent::Item(("a", 1i64)),
            TestEvent::Item(("b", 2)),
            TestEvent::Pause(Duration::from_millis(120)),
            TestEvent::Item(("a", 3)),
            TestEvent::Item(("c", 0)),
        ];
        let inp = flow.input("inp", TestingSource::events(events));
        let sums = collect(
            &inp.stateful_map("sum", |s: Option<i64>, v: i64| {
                let t = s.unwrap_or(0) + v;
                (Some(t), t)
            })
            .reduce_final("last", |_, b| b),
            "sums",
        );
        let timers = collect(
            &inp.map_value("narrow", |v: i64| v as i32)
                .stateful("timer", |_| Timer::new(20, 0)),
            "timers",
        );
        (flow, sums, timers)
    }
    let expected_sums = vec![("a", 4), ("b", 2), ("c", 0)];
    let expected_timers = vec![
        ("a", Ev::Item(1)),
        ("b", Ev::Item(2)),
        ("a", Ev::Notify(vec![1])),
        ("b", Ev::Notify(vec![2])),
        ("a", Ev::Item(3)),
        ("c", Ev::Item(0)),
        ("a", Ev::Eof(1)),
        ("b", Ev::Eof(1)),
        ("c", Ev::Eof(0)),
    ];
    for interval in [
        Duration::ZERO,
        Duration::from_millis(10),
        Duration::from_secs(10),
    ] {
        let (flow, sums, timers) = build();
        run_main_with(&flow, &RunConfig::default().epoch_interval(interval)).unwrap();
        assert_eq!(sums.take(), expected_sums, "interval {interval:?}");
        let mut got = timers.take();
        // The two notifications are due 20 ms apart at most; only their set matters.
        got[2..4].sort_by_key(|(k, _)| *k);
        assert_eq!(got, expected_timers, "interval {interval:?}");
    }
}

// ---- reference flows -------------------------------------------------------------------

/// Reference `wordcount.py` (its `inspect_debug` aside).
#[test]
fn reference_wordcount() {
    let lines = vec![
        "the quick brown fox",
        "jumps over the lazy dog",
        "The dog barks",
        "the end",
    ];
    let flow = Dataflow::new("wordcount");
    let counts = flow
        .input("inp", TestingSource::new(lines))
        .flat_map("split", |line: &str| {
            line.to_lowercase()
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .count_final("count", |w: String| w);
    let pairs = collect(&counts, "pairs");
    let lines = collect(&counts.map("fmt", |(w, c)| format!("{w}={c}")), "out");
    run_main(&flow).unwrap();
    let expected = [
        ("barks", 1),
        ("brown", 1),
        ("dog", 2),
        ("end", 1),
        ("fox", 1),
        ("jumps", 1),
        ("lazy", 1),
        ("over", 1),
        ("quick", 1),
        ("the", 4),
    ];
    assert_eq!(
        pairs.take(),
        expected.iter().map(|(w, c)| (s(w), *c)).collect::<Vec<_>>()
    );
    assert_eq!(
        lines.take(),
        expected
            .iter()
            .map(|(w, c)| format!("{w}={c}"))
            .collect::<Vec<_>>()
    );
}

// ---- collect, join, enrich_cached ------------------------------------------------------

/// join_modes.py, exactly as outputs/join_modes_w1.txt (per mode, in order).
#[test]
fn reference_join_modes() {
    use waxfast::operators::{JoinEmit, JoinInsert};
    // Values cross exchanges, so they are owned (`ExchangeData`); keys may be `&str`.
    type Joined = (&'static str, (Option<String>, Option<String>));
    let flow = Dataflow::new("join_modes");
    let owned = |(k, v): (&'static str, &'static str)| (k, v.to_string());
    let names = flow
        .input(
            "names",
            TestingSource::new(vec![("1", "alice"), ("2", "bob"), ("1", "alicia")]),
        )
        .map("names_owned", owned);
    let emails = flow
        .input(
            "emails",
            TestingSource::new(vec![("1", "a@x.io"), ("3", "c@x.io"), ("2", "b@x.io")]),
        )
        .map("emails_owned", owned);
    let mut outs = Vec::new();
    for (mode, insert, emit) in [
        ("complete", JoinInsert::Last, JoinEmit::Complete),
        ("running", JoinInsert::Last, JoinEmit::Running),
        ("final", JoinInsert::Last, JoinEmit::Final),
        ("product", JoinInsert::Product, JoinEmit::Final),
    ] {
        let (sink, out) = TestingSink::<Joined>::new();
        names
            .join(&format!("join_{mode}"), &emails, insert, emit)
            .output(&format!("out_{mode}"), sink);
        outs.push(out);
    }
    run_main(&flow).unwrap();
    let got: Vec<Vec<Joined>> = outs.iter().map(|o| o.take()).collect();
    assert_eq!(
        got[0],
        vec![
            ("1", (Some(s("alice")), Some(s("a@x.io")))),
            ("2", (Some(s("bob")), Some(s("b@x.io"))))
        ]
    );
    assert_eq!(
        got[1],
        vec![
            ("1", (Some(s("alice")), None)),
            ("1", (Some(s("alice")), Some(s("a@x.io")))),
            ("2", (Some(s("bob")), None)),
            ("3", (None, Some(s("c@x.io")))),
            ("1", (Some(s("alicia")), Some(s("a@x.io")))),
            ("2", (Some(s("bob")), Some(s("b@x.io")))),
        ]
    );
    assert_eq!(
        got[2],
        vec![
            ("1", (Some(s("alicia")), Some(s("a@x.io")))),
            ("2", (Some(s("bob")), Some(s("b@x.io")))),
            ("3", (None, Some(s("c@x.io")))),
        ]
    );
    assert_eq!(
        got[3],
        vec![
            ("1", (Some(s("alice")), Some(s("a@x.io")))),
            ("1", (Some(s("alicia")), Some(s("a@x.io")))),
            ("2", (Some(s("bob")), Some(s("b@x.io")))),
            ("3", (None, Some(s("c@x.io")))),
        ]
    );
}

#[test]
fn join_insert_first_keeps_the_first_value() {
    use waxfast::operators::{JoinEmit, JoinInsert};
    let flow = Dataflow::new("f");
    let l = flow.input("l", TestingSource::new(vec![("k", 1), ("k", 2)]));
    let r = flow.input("r", TestingSource::new(vec![("x", 'a')]));
    let (sink, out) = TestingSink::new();
    l.join("j", &r, JoinInsert::First, JoinEmit::Final)
        .output("out", sink);
    run_main(&flow).unwrap();
    assert_eq!(
        out.take(),
        vec![("k", (Some(1), None)), ("x", (None, Some('a')))]
    );
    assert!(flow.step_ids().contains(&"f.j.merge".to_string()));
}

/// The collect part of stateful_logic_demo.py: a list at max_size, the rest at EOF.
#[test]
fn reference_collect() {
    let flow = Dataflow::new("stateful_logic_demo");
    let inp = flow.input(
        "inp",
        TestingSource::events(vec![
            TestEvent::Item(("k", 1)),
            TestEvent::Item(("k", 2)),
            TestEvent::Pause(Duration::from_millis(50)),
            TestEvent::Item(("k", 3)),
            TestEvent::Item(("j", 9)),
        ]),
    );
    let (sink, out) = TestingSink::new();
    inp.collect("collect", Duration::from_secs(10), 2)
        .output("out", sink);
    run_main(&flow).unwrap();
    assert_eq!(
        out.take(),
        vec![("k", vec![1, 2]), ("j", vec![9]), ("k", vec![3])]
    );
}

#[test]
fn collect_times_out_in_system_time_without_new_data() {
    let flow = Dataflow::new("f");
    let inp = flow.input(
        "inp",
        TestingSource::events(vec![
            TestEvent::Item(("k", 1)),
            TestEvent::Pause(Duration::from_millis(300)),
            TestEvent::Item(("k", 2)),
        ]),
    );
    let (sink, out) = TestingSink::new();
    inp.collect("c", Duration::from_millis(50), 100)
        .output("out", sink);
    run_main(&flow).unwrap();
    assert_eq!(out.take(), vec![("k", vec![1]), ("k", vec![2])]);
}

#[test]
fn enrich_cached_calls_the_getter_once_per_key_within_ttl() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let flow = Dataflow::new("f");
    let (sink, out) = TestingSink::new();
    flow.input("inp", TestingSource::new(vec![1u32, 2, 1, 1, 2]))
        .enrich_cached(
            "e",
            move |k: &u32| {
                c.fetch_add(1, Ordering::SeqCst);
                k * 100
            },
            |cache, x: u32| x + cache.get(&x),
            Duration::from_secs(60),
        )
        .output("out", sink);
    run_main(&flow).unwrap();
    assert_eq!(out.take(), vec![101, 202, 101, 101, 202]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Runs `flow` on `workers` workers and expects it to fail with a "boom" panic in
/// `step`.
fn assert_boom_in(flow: &Dataflow, workers: usize, step: &str) {
    let config = RunConfig::default().pin(false);
    match waxfast::cluster_main_with(flow, &[], 0, workers, &config) {
        Err(Error::StepPanicked { step_id, message }) => {
            assert_eq!(step_id, step, "-w{workers}");
            assert_eq!(message, "boom");
        }
        other => panic!("-w{workers}: expected StepPanicked in {step}, got {other:?}"),
    }
}

/// A `key_on -> stateful_map -> key_rm` chain runs as one pass over each batch (the
/// one-to-one map, in place with one worker); a panic inside it still names the step
/// it came from, at one and at two workers, and the run stops with an error.
#[test]
fn panics_in_a_fused_one_to_one_chain_name_their_step() {
    for (bad_key, step) in [(false, "f.sum"), (true, "f.key")] {
        for workers in [1, 2] {
            let flow = Dataflow::new("f");
            let (sink, _out) = TestingSink::new();
            flow.input("inp", TestingSource::new(0u64..5000))
                .key_on("key", move |&x: &u64| {
                    if bad_key && x == 4321 {
                        panic!("boom");
                    }
                    x % 97
                })
                .stateful_map("sum", |s: Option<u64>, x: u64| {
                    if x == 4321 {
                        panic!("boom");
                    }
                    let t = s.unwrap_or(0) + x;
                    (Some(t), x)
                })
                .key_rm("unkey")
                .output("out", sink);
            assert_boom_in(&flow, workers, step);
        }
    }
}

/// The by-value steps (`stateful_map`, `stateful_flat_map`, `fold_final`,
/// `reduce_final`) move a key's state out of its slot for the callback. A callback
/// that panics while it owns a heap state (a `String`) fails the run with the step's
/// name, at one and at two workers, and the moved-out state is dropped
/// once: a second drop of the copy left in the slot would be a double free when the
/// worker's tables are dropped.
#[test]
fn panics_in_by_value_steps_with_heap_states_name_their_step() {
    type Build = fn(&Stream<(u64, u64)>, TestingSink<String>);
    let steps: [(&str, Build); 4] = [
        ("f.map", |s, sink| {
            s.stateful_map("map", |st: Option<String>, x: u64| {
                let st = st.unwrap_or_default() + "x";
                assert!(x != 4321, "boom");
                (Some(st.clone()), st)
            })
            .key_rm("unkey")
            .output("out", sink);
        }),
        ("f.flat", |s, sink| {
            s.stateful_flat_map("flat", |st: Option<String>, x: u64| {
                let st = st.unwrap_or_default() + "x";
                assert!(x != 4321, "boom");
                (Some(st.clone()), vec![st])
            })
            .key_rm("unkey")
            .output("out", sink);
        }),
        ("f.fold", |s, sink| {
            s.fold_final("fold", String::new, |st, x: u64| {
                assert!(x != 4321, "boom");
                st + "x"
            })
            .key_rm("unkey")
            .output("out", sink);
        }),
        ("f.reduce", |s, sink| {
            s.map_value("text", |x: u64| x.to_string())
                .reduce_final("reduce", |a, b: String| {
                    assert!(b != "4321", "boom");
                    a + &b
                })
                .key_rm("unkey")
                .output("out", sink);
        }),
    ];
    for (step, build) in steps {
        for workers in [1, 2] {
            let flow = Dataflow::new("f");
            let (sink, _out) = TestingSink::new();
            let keyed = flow
                .input("inp", TestingSource::new(0u64..5000))
                .key_on("key", |&x: &u64| x % 97);
            build(&keyed, sink);
            assert_boom_in(&flow, workers, step);
        }
    }
}

/// A value whose comparison panics with "boom" (a user `Ord` that fails).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Touchy(u32);
impl PartialEq for Touchy {
    fn eq(&self, _: &Self) -> bool {
        panic!("boom")
    }
}
impl Eq for Touchy {}
impl PartialOrd for Touchy {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Touchy {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        panic!("boom")
    }
}

/// `max_final` and `min_final` merge values before their exchange with several
/// workers, and the last partials of an epoch are applied when the worker announces
/// the epoch's end, outside any batch. A panic in the values' `Ord` there still names
/// the step. Each key's first comparison comes in the second epoch, when its two
/// values meet: in the combiner, on the owning worker as its own partial is applied,
/// or as a peer's partial arrives.
#[test]
fn panics_in_a_combining_steps_comparisons_name_the_step() {
    for (name, max) in [("max", true), ("min", false)] {
        for workers in [1, 2] {
            let flow = Dataflow::new("f");
            let (sink, _out) = TestingSink::new();
            let mut events: Vec<TestEvent<(u32, Touchy)>> =
                (0..8).map(|k| TestEvent::Item((k, Touchy(1)))).collect();
            events.push(TestEvent::Pause(Duration::from_millis(100)));
            events.extend((0..8).map(|k| TestEvent::Item((k, Touchy(2)))));
            let keyed = flow.input("inp", TestingSource::events(events));
            let s = if max {
                keyed.max_final(name)
            } else {
                keyed.min_final(name)
            };
            s.output("out", sink);
            let config = RunConfig::default()
                .pin(false)
                .epoch_interval(Duration::from_millis(10));
            match waxfast::cluster_main_with(&flow, &[], 0, workers, &config) {
                Err(Error::StepPanicked { step_id, message }) => {
                    assert_eq!(step_id, format!("f.{name}"), "-w{workers}");
                    assert_eq!(message, "boom");
                }
                other => panic!("-w{workers}: expected StepPanicked in {name}, got {other:?}"),
            }
        }
    }
}
