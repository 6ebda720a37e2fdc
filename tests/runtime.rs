//! Integration tests of the multi-worker runtime (`cluster_main`), through the public API
//! only: every operator gives the same output at 1, 2 and 8 workers and keeps per-key
//! (and per-partition) order; reference flows; a stress test of the exchange; deadlock,
//! failure and progress edge cases; fixed-partitioned sink routing; key placement.
//!
//! The machine that runs these has few cores: workers are not pinned (except where a
//! test says so) and every run has a deadline, so a hang is a test failure, never a
//! stuck suite.

mod util;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use waxfast::connectors::testing::{TestEvent, TestingOutput, TestingSink, TestingSource};
use waxfast::io::{
    DynamicSink, DynamicSource, FixedPartitionedSink, FixedPartitionedSource, Sink, SinkKind,
    Source, SourceKind, SourceStatus, StatefulSinkPartition, StatefulSourcePartition,
    StatelessSinkPartition, StatelessSourcePartition,
};
use waxfast::operators::{Retention, StatefulLogic};
use waxfast::{cluster_main_with, BoxError, Data, Dataflow, Error, Key, RunConfig, Stream};

use util::sorted;

// ---- running flows ---------------------------------------------------------------------

/// The worker counts every operator is checked at.
const WORKER_COUNTS: [usize; 3] = [1, 2, 8];

/// No run of this file may take longer than this (a hang becomes a failure).
const DEADLINE: Duration = Duration::from_secs(30);

/// Workers are not pinned: 8 workers share 2 cores, and tests run in parallel.
fn config() -> RunConfig {
    RunConfig::default().pin(false)
}

/// Starts `flow` at `workers` workers on another thread; the result arrives on the
/// returned channel.
fn spawn_run(
    flow: &Dataflow,
    workers: usize,
    config: RunConfig,
) -> mpsc::Receiver<waxfast::Result<()>> {
    let (tx, rx) = mpsc::channel();
    let flow = flow.clone();
    std::thread::spawn(move || {
        let _ = tx.send(cluster_main_with(&flow, &[], 0, workers, &config));
    });
    rx
}

/// Runs `flow` at `workers` workers on another thread; `None` if it has not finished
/// within `limit`.
fn run_within(
    flow: &Dataflow,
    workers: usize,
    config: RunConfig,
    limit: Duration,
) -> Option<waxfast::Result<()>> {
    spawn_run(flow, workers, config).recv_timeout(limit).ok()
}

/// Per-key logic of [`watchdog`]: wakes every 20 ms and panics once the flag is set.
struct Watchdog {
    stop: Arc<AtomicBool>,
    due: Option<Instant>,
}

impl StatefulLogic<()> for Watchdog {
    type Out = ();
    type State = ();
    fn on_item(&mut self, _: (), _: &mut Vec<()>) -> Retention {
        self.due
            .get_or_insert_with(|| Instant::now() + Duration::from_millis(20));
        Retention::Retain
    }
    fn notify_at(&self) -> Option<Instant> {
        self.due
    }
    fn on_notify(&mut self, _: &mut Vec<()>) -> Retention {
        assert!(
            !self.stop.load(Ordering::SeqCst),
            "watchdog: the test stopped this run after its deadline"
        );
        self.due = Some(Instant::now() + Duration::from_millis(20));
        Retention::Retain
    }
    fn on_eof(&mut self, _: &mut Vec<()>) -> Retention {
        Retention::Discard
    }
    fn snapshot(&self) {}
}

/// Adds a kill switch to a flow that may hang in a busy loop: a keyed step whose timer
/// panics once `stop` is set, which stops every worker (a hung run would otherwise keep
/// spinning, and growing, until the test binary exits). Ends with its input.
fn watchdog<T: Data>(stream: &Stream<T>, stop: &Arc<AtomicBool>) {
    let stop = stop.clone();
    let _ = stream
        .map("watchdog_key", |_| (0u8, ()))
        .stateful("watchdog", move |_| Watchdog {
            stop: stop.clone(),
            due: None,
        });
}

/// Runs a flow that has a [`watchdog`]; on a hang, trips the watchdog (so the run's
/// threads stop) and fails.
fn run_guarded(
    flow: &Dataflow,
    workers: usize,
    config: RunConfig,
    limit: Duration,
    stop: &Arc<AtomicBool>,
) {
    let rx = spawn_run(flow, workers, config);
    match rx.recv_timeout(limit) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("flow {:?} at {workers} workers failed: {e}", flow.name()),
        Err(_) => {
            stop.store(true, Ordering::SeqCst);
            let stopped = rx.recv_timeout(Duration::from_secs(10));
            panic!(
                "flow {:?} at {workers} workers did not finish within {limit:?} (hang); \
                 after tripping its watchdog it returned {stopped:?}",
                flow.name()
            );
        }
    }
}

/// Runs `flow` at `workers` workers with `config`; panics on an error or a hang.
fn run_cfg(flow: &Dataflow, workers: usize, config: RunConfig) {
    match run_within(flow, workers, config, DEADLINE) {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("flow {:?} at {workers} workers failed: {e}", flow.name()),
        None => panic!(
            "flow {:?} at {workers} workers did not finish within {DEADLINE:?} (hang)",
            flow.name()
        ),
    }
}

/// Runs `flow` at `workers` unpinned workers; panics on an error or a hang.
fn run(flow: &Dataflow, workers: usize) {
    run_cfg(flow, workers, config())
}

/// Adds a `TestingSink` output named `step` to `stream` and returns its handle.
fn collect<T: Data>(stream: &Stream<T>, step: &str) -> TestingOutput<T> {
    let (sink, out) = TestingSink::new();
    stream.output(step, sink);
    out
}

/// Asserts two multisets are equal, reporting sizes and the first difference rather
/// than printing thousands of items.
fn assert_same_multiset<T: Ord + Clone + Debug>(got: &[T], expected: &[T], what: &str) {
    let (g, e) = (sorted(got), sorted(expected));
    if g != e {
        let first = g.iter().zip(&e).position(|(a, b)| a != b);
        let at = first.unwrap_or(g.len().min(e.len()));
        panic!(
            "{what}: multisets differ: got {} items, expected {}; first difference at sorted \
             index {at}: got {:?}, expected {:?}",
            g.len(),
            e.len(),
            g.get(at),
            e.get(at)
        );
    }
}

/// Builds a fresh flow with `build` and runs it at 1, 2 and 8 workers; `check` sees each
/// run's output (in sink order); asserts every run gives the same multiset and returns it
/// (sorted).
fn same_at_all_counts<T: Data + Ord + Debug>(
    name: &str,
    build: impl Fn(&Dataflow) -> TestingOutput<T>,
    check: impl Fn(usize, &[T]),
) -> Vec<T> {
    let mut first: Option<Vec<T>> = None;
    for w in WORKER_COUNTS {
        let flow = Dataflow::new(name);
        let out = build(&flow);
        run(&flow, w);
        let got = out.take();
        check(w, &got);
        match &first {
            None => first = Some(sorted(&got)),
            Some(f) => assert_same_multiset(&got, f, &format!("{name} at {w} workers vs 1")),
        }
    }
    first.expect("at least one worker count")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- test connectors -------------------------------------------------------------------

/// A fixed-partitioned source: partition `p{i}` plays `parts[i]` (items and `Pause`,
/// `Eof`, `Abort` markers), up to `batch` items per batch. Several partitions spread the
/// reading over several workers (a `TestingSource` has one partition, read by worker 0).
struct Parts<T> {
    parts: Arc<Vec<Vec<TestEvent<T>>>>,
    batch: usize,
}

impl<T: Data + Sync> Parts<T> {
    fn items(parts: Vec<Vec<T>>, batch: usize) -> Self {
        Self::events(
            parts
                .into_iter()
                .map(|p| p.into_iter().map(TestEvent::Item).collect())
                .collect(),
            batch,
        )
    }

    fn events(parts: Vec<Vec<TestEvent<T>>>, batch: usize) -> Self {
        Parts {
            parts: Arc::new(parts),
            batch: batch.max(1),
        }
    }
}

struct PartsReader<T> {
    events: Arc<Vec<Vec<TestEvent<T>>>>,
    part: usize,
    pos: usize,
    batch: usize,
    pause_until: Option<Instant>,
}

impl<T: Data + Sync> StatefulSourcePartition for PartsReader<T> {
    type Item = T;
    type State = usize;

    fn next_batch(&mut self, batch: &mut Vec<T>) -> Result<SourceStatus, BoxError> {
        if let Some(until) = self.pause_until {
            if Instant::now() < until {
                return Ok(SourceStatus::Active);
            }
            self.pause_until = None;
        }
        let events = &self.events[self.part];
        while batch.len() < self.batch {
            match events.get(self.pos) {
                None => return Ok(SourceStatus::Eof),
                Some(TestEvent::Item(x)) => {
                    batch.push(x.clone());
                    self.pos += 1;
                }
                Some(TestEvent::Eof) => {
                    self.pos += 1;
                    return Ok(SourceStatus::Eof);
                }
                Some(TestEvent::Abort) => {
                    if !batch.is_empty() {
                        return Ok(SourceStatus::Active);
                    }
                    self.pos += 1;
                    return Err(format!("partition p{} aborted", self.part).into());
                }
                Some(TestEvent::Pause(d)) => {
                    self.pos += 1;
                    self.pause_until = Some(Instant::now() + *d);
                    return Ok(SourceStatus::Active);
                }
            }
        }
        // The last items and the end come together when the partition is exhausted.
        Ok(if self.pos >= events.len() {
            SourceStatus::Eof
        } else {
            SourceStatus::Active
        })
    }

    fn next_awake(&self) -> Option<Instant> {
        self.pause_until
    }

    fn snapshot(&self) -> usize {
        self.pos
    }
}

impl<T: Data + Sync> FixedPartitionedSource for Parts<T> {
    type Item = T;
    type Part = PartsReader<T>;

    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        Ok((0..self.parts.len()).map(|i| format!("p{i}")).collect())
    }

    fn build_part(
        &self,
        _step_id: &str,
        for_part: &str,
        resume_state: Option<usize>,
    ) -> Result<PartsReader<T>, BoxError> {
        let part: usize = for_part[1..].parse()?;
        Ok(PartsReader {
            events: self.parts.clone(),
            part,
            pos: resume_state.unwrap_or(0),
            batch: self.batch,
            pause_until: None,
        })
    }
}

impl<T: Data + Sync> Source<T> for Parts<T> {
    fn into_kind(self) -> SourceKind<T> {
        SourceKind::fixed(self)
    }
}

/// A dynamic source whose partitions never end and never emit: the only way a flow
/// reading it finishes is a failure elsewhere.
struct Forever<T>(PhantomData<fn() -> T>);

impl<T> Forever<T> {
    fn new() -> Self {
        Forever(PhantomData)
    }
}

struct ForeverPart<T>(PhantomData<fn() -> T>);

impl<T: Data> StatelessSourcePartition for ForeverPart<T> {
    type Item = T;
    fn next_batch(&mut self, _batch: &mut Vec<T>) -> Result<SourceStatus, BoxError> {
        Ok(SourceStatus::Active)
    }
}

impl<T: Data> DynamicSource for Forever<T> {
    type Item = T;
    type Part = ForeverPart<T>;
    fn build(&self, _: &str, _: usize, _: usize) -> Result<ForeverPart<T>, BoxError> {
        Ok(ForeverPart(PhantomData))
    }
}

impl<T: Data> Source<T> for Forever<T> {
    fn into_kind(self) -> SourceKind<T> {
        SourceKind::dynamic(self)
    }
}

/// A dynamic source whose partition on worker `i` of `n` emits `dyn-from-w{i}/{n}` once.
struct PerWorker;

struct PerWorkerPart(Option<String>);

impl StatelessSourcePartition for PerWorkerPart {
    type Item = String;
    fn next_batch(&mut self, batch: &mut Vec<String>) -> Result<SourceStatus, BoxError> {
        batch.extend(self.0.take());
        Ok(SourceStatus::Eof)
    }
}

impl DynamicSource for PerWorker {
    type Item = String;
    type Part = PerWorkerPart;
    fn build(&self, _: &str, index: usize, count: usize) -> Result<PerWorkerPart, BoxError> {
        Ok(PerWorkerPart(Some(format!("dyn-from-w{index}/{count}"))))
    }
}

impl Source<String> for PerWorker {
    fn into_kind(self) -> SourceKind<String> {
        SourceKind::dynamic(self)
    }
}

/// A dynamic sink recording `(worker_index, item)`: shows where each item ended up.
struct WorkerSink<T> {
    got: Arc<Mutex<Vec<(usize, T)>>>,
    built: Arc<Mutex<Vec<(usize, usize)>>>,
}

type WorkerLog<T> = Arc<Mutex<Vec<(usize, T)>>>;

impl<T: Data> WorkerSink<T> {
    fn new() -> (Self, WorkerLog<T>) {
        let got: WorkerLog<T> = Arc::default();
        (
            WorkerSink {
                got: got.clone(),
                built: Arc::default(),
            },
            got,
        )
    }
}

struct WorkerSinkPart<T> {
    worker: usize,
    got: Arc<Mutex<Vec<(usize, T)>>>,
}

impl<T: Data> StatelessSinkPartition for WorkerSinkPart<T> {
    type Item = T;
    fn write_batch(&mut self, items: &mut Vec<T>) -> Result<(), BoxError> {
        let w = self.worker;
        lock(&self.got).extend(items.drain(..).map(|x| (w, x)));
        Ok(())
    }
}

impl<T: Data> DynamicSink for WorkerSink<T> {
    type Item = T;
    type Part = WorkerSinkPart<T>;
    fn build(&self, _: &str, index: usize, count: usize) -> Result<WorkerSinkPart<T>, BoxError> {
        lock(&self.built).push((index, count));
        Ok(WorkerSinkPart {
            worker: index,
            got: self.got.clone(),
        })
    }
}

impl<T: Data> Sink<T> for WorkerSink<T> {
    fn into_kind(self) -> SinkKind<T> {
        SinkKind::dynamic(self)
    }
}

// ---- the shared input of the operator tests ----------------------------------------------

/// `(partition, sequence number)`.
type Rec = (u32, u32);

const PARTS: u32 = 6;
const PER_PART: u32 = 1000;

fn part_items(offset: u32) -> Vec<Vec<Rec>> {
    (0..PARTS)
        .map(|p| (0..PER_PART).map(|s| (p + offset, s)).collect())
        .collect()
}

fn all_recs() -> Vec<Rec> {
    part_items(0).concat()
}

/// 6 partitions of 1000 records in batches of 50: read by 6 workers at 8 workers, by 2 at
/// 2 (3 partitions each).
fn recs(flow: &Dataflow, step: &str) -> Stream<Rec> {
    flow.input(step, Parts::items(part_items(0), 50))
}

/// Asserts that, per partition, the sequence numbers of `recs` strictly increase.
fn assert_part_order(recs: impl IntoIterator<Item = Rec>, what: &str) {
    let mut last: HashMap<u32, u32> = HashMap::new();
    for (p, s) in recs {
        if let Some(prev) = last.insert(p, s) {
            assert!(
                prev < s,
                "{what}: partition {p}: seq {s} came after {prev} (order lost)"
            );
        }
    }
}

/// A key whose records all come from one partition, so its value order is defined.
fn local_key((p, s): Rec) -> String {
    format!("k{p}-{}", s % 8)
}

/// The expected values per key, in arrival order, for `key` over all records.
fn per_key<K: Ord, V>(
    recs: &[Rec],
    key: impl Fn(Rec) -> K,
    val: impl Fn(Rec) -> V,
) -> BTreeMap<K, Vec<V>> {
    let mut m: BTreeMap<K, Vec<V>> = BTreeMap::new();
    for &r in recs {
        m.entry(key(r)).or_default().push(val(r));
    }
    m
}

/// Groups keyed output by key, keeping each key's order.
fn group<K: Ord + Clone, V: Clone>(items: &[(K, V)]) -> BTreeMap<K, Vec<V>> {
    let mut m: BTreeMap<K, Vec<V>> = BTreeMap::new();
    for (k, v) in items {
        m.entry(k.clone()).or_default().push(v.clone());
    }
    m
}

// ---- 1. every operator: same output at 1, 2 and 8 workers, order kept -------------------

#[test]
fn map_at_1_2_8_workers() {
    let got = same_at_all_counts(
        "map",
        |flow| {
            collect(
                &recs(flow, "inp").map("m", |(p, s)| (p, s, s * 3 + 1)),
                "out",
            )
        },
        |w, out| assert_part_order(out.iter().map(|&(p, s, _)| (p, s)), &format!("map w{w}")),
    );
    let expected: Vec<_> = all_recs()
        .into_iter()
        .map(|(p, s)| (p, s, s * 3 + 1))
        .collect();
    assert_same_multiset(&got, &expected, "map");
}

#[test]
fn filter_at_1_2_8_workers() {
    let got = same_at_all_counts(
        "filter",
        |flow| collect(&recs(flow, "inp").filter("f", |&(_, s)| s % 3 == 0), "out"),
        |w, out| assert_part_order(out.iter().copied(), &format!("filter w{w}")),
    );
    let expected: Vec<_> = all_recs()
        .into_iter()
        .filter(|&(_, s)| s % 3 == 0)
        .collect();
    assert_same_multiset(&got, &expected, "filter");
}

#[test]
fn filter_map_at_1_2_8_workers() {
    let f = |(p, s): Rec| (s % 4 != 1).then_some((p, s, u64::from(s) * 2));
    let got = same_at_all_counts(
        "filter_map",
        move |flow| collect(&recs(flow, "inp").filter_map("fm", f), "out"),
        |w, out| assert_part_order(out.iter().map(|&(p, s, _)| (p, s)), &format!("fm w{w}")),
    );
    let expected: Vec<_> = all_recs().into_iter().filter_map(f).collect();
    assert_same_multiset(&got, &expected, "filter_map");
}

#[test]
fn flat_map_at_1_2_8_workers() {
    let f = |(p, s): Rec| (0..s % 4).map(move |j| (p, s, j)).collect::<Vec<_>>();
    let got = same_at_all_counts(
        "flat_map",
        move |flow| collect(&recs(flow, "inp").flat_map("fm", f), "out"),
        |w, out| {
            // Per partition the (seq, j) pairs come in order.
            let mut last: HashMap<u32, (u32, u32)> = HashMap::new();
            for &(p, s, j) in out {
                if let Some(prev) = last.insert(p, (s, j)) {
                    assert!(prev < (s, j), "flat_map w{w}: order lost in partition {p}");
                }
            }
        },
    );
    let expected: Vec<_> = all_recs().into_iter().flat_map(f).collect();
    assert_same_multiset(&got, &expected, "flat_map");
}

#[test]
fn flat_map_batch_at_1_2_8_workers() {
    // Each call gets one upstream batch: emit the batch itself to inspect it.
    let got = same_at_all_counts(
        "flat_map_batch",
        |flow| {
            collect(
                &recs(flow, "inp").flat_map_batch("fmb", |b: Vec<Rec>| vec![b]),
                "out",
            )
        },
        |w, batches| {
            for b in batches {
                assert!(
                    !b.is_empty() && b.len() <= 50,
                    "flat_map_batch w{w}: batch of {}",
                    b.len()
                );
                let p = b[0].0;
                for (i, &(q, s)) in b.iter().enumerate() {
                    assert_eq!(
                        (q, s),
                        (p, b[0].1 + i as u32),
                        "flat_map_batch w{w}: a batch is a contiguous run of one partition"
                    );
                }
            }
            assert_part_order(batches.iter().flatten().copied(), &format!("fmb w{w}"));
        },
    );
    let flat: Vec<Rec> = got.concat();
    assert_same_multiset(&flat, &all_recs(), "flat_map_batch items");
}

#[test]
fn flatten_at_1_2_8_workers() {
    let f = |(p, s): Rec| vec![(p, s); (s % 3) as usize];
    let got = same_at_all_counts(
        "flatten",
        move |flow| collect(&recs(flow, "inp").map("vec", f).flatten("flat"), "out"),
        |w, out| {
            let mut last: HashMap<u32, u32> = HashMap::new();
            for &(p, s) in out {
                if let Some(prev) = last.insert(p, s) {
                    assert!(prev <= s, "flatten w{w}: order lost in partition {p}");
                }
            }
        },
    );
    let expected: Vec<_> = all_recs().into_iter().flat_map(f).collect();
    assert_same_multiset(&got, &expected, "flatten");
}

#[test]
fn inspect_with_at_1_2_8_workers() {
    for w in WORKER_COUNTS {
        let seen: Arc<Mutex<Vec<(String, Rec)>>> = Arc::default();
        let flow = Dataflow::new("insp");
        let s2 = seen.clone();
        let out = collect(
            &recs(&flow, "inp").inspect_with("look", move |id: &str, x: &Rec| {
                lock(&s2).push((id.to_string(), *x))
            }),
            "out",
        );
        run(&flow, w);
        let seen = std::mem::take(&mut *lock(&seen));
        assert!(
            seen.iter().all(|(id, _)| id == "insp.look"),
            "w{w}: step id"
        );
        let seen: Vec<Rec> = seen.into_iter().map(|(_, x)| x).collect();
        assert_same_multiset(&seen, &all_recs(), &format!("inspected at w{w}"));
        let passed = out.take();
        assert_same_multiset(&passed, &all_recs(), &format!("passed on at w{w}"));
        assert_part_order(passed, &format!("inspect_with w{w}"));
    }
}

#[test]
fn branch_at_1_2_8_workers() {
    let mut firsts: Option<(Vec<Rec>, Vec<Rec>)> = None;
    for w in WORKER_COUNTS {
        let flow = Dataflow::new("branch");
        let b = recs(&flow, "inp").branch("b", |&(p, s)| (s + p) % 3 == 0);
        let (t, f) = (collect(&b.trues, "t"), collect(&b.falses, "f"));
        run(&flow, w);
        let (t, f) = (t.take(), f.take());
        assert_part_order(t.iter().copied(), &format!("trues w{w}"));
        assert_part_order(f.iter().copied(), &format!("falses w{w}"));
        assert!(t.iter().all(|&(p, s)| (s + p) % 3 == 0));
        assert!(f.iter().all(|&(p, s)| (s + p) % 3 != 0));
        let both: Vec<Rec> = t.iter().chain(&f).copied().collect();
        assert_same_multiset(&both, &all_recs(), &format!("branch w{w}"));
        match &firsts {
            None => firsts = Some((sorted(&t), sorted(&f))),
            Some((t1, f1)) => {
                assert_same_multiset(&t, t1, "trues vs w1");
                assert_same_multiset(&f, f1, "falses vs w1");
            }
        }
    }
}

#[test]
fn merge_at_1_2_8_workers() {
    let got = same_at_all_counts(
        "merge",
        |flow| {
            let a = recs(flow, "a");
            // The second input's partitions are numbered 100.. to tell them apart.
            let b = flow.input("b", Parts::items(part_items(100), 37));
            let c = flow.input(
                "c",
                TestingSource::new((0..500).map(|s| (200, s))).batch_size(9),
            );
            collect(&a.merge("m", [&b, &c]), "out")
        },
        |w, out| assert_part_order(out.iter().copied(), &format!("merge w{w}")),
    );
    let mut expected = all_recs();
    expected.extend(part_items(100).concat());
    expected.extend((0..500).map(|s| (200, s)));
    assert_same_multiset(&got, &expected, "merge");
}

#[test]
fn redistribute_at_1_2_8_workers_spreads_and_keeps_per_sender_order() {
    for w in WORKER_COUNTS {
        let flow = Dataflow::new("redis");
        let (sink, got) = WorkerSink::new();
        let built = sink.built.clone();
        recs(&flow, "inp")
            .redistribute("spread")
            .output("out", sink);
        run(&flow, w);
        let got = std::mem::take(&mut *lock(&got));
        let items: Vec<Rec> = got.iter().map(|&(_, r)| r).collect();
        assert_same_multiset(&items, &all_recs(), &format!("redistribute w{w}"));
        // A dynamic sink is built once on every worker.
        let mut b = lock(&built).clone();
        b.sort();
        assert_eq!(b, (0..w).map(|i| (i, w)).collect::<Vec<_>>());
        // Per receiving worker, each partition's items (one sender) keep their order.
        for r in 0..w {
            assert_part_order(
                got.iter().filter(|(x, _)| *x == r).map(|&(_, rec)| rec),
                &format!("redistribute w{w}, receiver {r}"),
            );
        }
        // Round robin: every worker gets a fair share.
        let total = all_recs().len();
        for r in 0..w {
            let n = got.iter().filter(|(x, _)| *x == r).count();
            assert!(
                n >= total / w / 2,
                "redistribute w{w}: worker {r} got only {n} of {total} items"
            );
        }
    }
}

#[test]
fn key_value_operators_at_1_2_8_workers() {
    // key_on -> map_value -> filter_value -> flat_map_value -> filter_map_value -> key_rm.
    type Keyed = (u32, (u32, u32));
    let outs = |flow: &Dataflow| {
        let keyed = recs(flow, "inp")
            .key_on("key", |&(p, s)| p * 10 + s % 10)
            .map_value("mv", |(p, s)| (p, s * 2))
            .filter_value("fv", |&(_, v)| v % 3 != 0)
            .flat_map_value("fmv", |(p, v)| [(p, v), (p, v + 1)])
            .filter_map_value("fmv2", |(p, v)| (v % 5 != 0).then_some((p, v * 10)));
        (
            collect(&keyed, "keyed"),
            collect(&keyed.key_rm("rm"), "values"),
        )
    };
    let expected_keyed: Vec<Keyed> = all_recs()
        .into_iter()
        .map(|(p, s)| (p * 10 + s % 10, (p, s * 2)))
        .filter(|(_, (_, v))| v % 3 != 0)
        .flat_map(|(k, (p, v))| [(k, (p, v)), (k, (p, v + 1))])
        .filter_map(|(k, (p, v))| (v % 5 != 0).then_some((k, (p, v * 10))))
        .collect();
    let expected_values: Vec<(u32, u32)> = expected_keyed.iter().map(|&(_, v)| v).collect();
    for w in WORKER_COUNTS {
        let flow = Dataflow::new("kv");
        let (keyed, values) = outs(&flow);
        run(&flow, w);
        let (keyed, values) = (keyed.take(), values.take());
        assert_same_multiset(&keyed, &expected_keyed, &format!("keyed w{w}"));
        assert_same_multiset(&values, &expected_values, &format!("key_rm w{w}"));
        // Stateless: per key (within one partition) the order is the input order.
        assert_eq!(
            group(&keyed),
            group(&expected_keyed),
            "per-key order at w{w}"
        );
        assert_part_order(values, &format!("key_rm w{w}"));
    }
}

#[test]
fn stateful_map_at_1_2_8_workers_keeps_per_key_order() {
    // Running sum per key, discarded (restarting) once it passes 20_000.
    let sum = |state: Option<u64>, v: u32| {
        let t = state.unwrap_or(0) + u64::from(v);
        ((t <= 20_000).then_some(t), t)
    };
    let got = same_at_all_counts(
        "smap",
        move |flow| {
            collect(
                &recs(flow, "inp")
                    .key_on("key", |&r| local_key(r))
                    .map_value("v", |(_, s)| s)
                    .stateful_map("sum", sum),
                "out",
            )
        },
        |w, out| {
            let mut expected = BTreeMap::new();
            for (k, vs) in per_key(&all_recs(), local_key, |(_, s)| s) {
                let mut st = None;
                let sums: Vec<u64> = vs
                    .into_iter()
                    .map(|v| {
                        let (n, t) = sum(st, v);
                        st = n;
                        t
                    })
                    .collect();
                expected.insert(k, sums);
            }
            assert_eq!(
                group(out),
                expected,
                "running sums per key, in order, at w{w}"
            );
        },
    );
    assert_eq!(got.len(), all_recs().len());
}

#[test]
fn stateful_flat_map_at_1_2_8_workers_keeps_per_key_order() {
    // Per key: count items; emit the count s % 3 times; discard every 7th item.
    let f = |state: Option<u32>, (_, s): Rec| {
        let n = state.unwrap_or(0) + 1;
        (
            (n < 7).then_some(n),
            std::iter::repeat_n((n, s), (s % 3) as usize),
        )
    };
    same_at_all_counts(
        "sfm",
        move |flow| {
            collect(
                &recs(flow, "inp")
                    .key_on("key", |&r| local_key(r))
                    .stateful_flat_map("sfm", f),
                "out",
            )
        },
        |w, out| {
            let mut expected = BTreeMap::new();
            for (k, rs) in per_key(&all_recs(), local_key, |r| r) {
                let mut st = None;
                let mut emitted = Vec::new();
                for r in rs {
                    let (n, items) = f(st, r);
                    st = n;
                    emitted.extend(items);
                }
                // A key whose items emit nothing never shows up in the output.
                if !emitted.is_empty() {
                    expected.insert(k, emitted);
                }
            }
            assert_eq!(group(out), expected, "stateful_flat_map per key at w{w}");
        },
    );
}

/// Collects values and flushes them when notified `DELAY` after the last one; at EOF
/// flushes the rest and emits how many values it saw.
struct Batcher {
    pending: Vec<u32>,
    seen: usize,
    due: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Flush {
    Notified(Vec<u32>),
    AtEof(Vec<u32>),
    Seen(usize),
}

impl Batcher {
    const DELAY: Duration = Duration::from_millis(20);
}

impl StatefulLogic<u32> for Batcher {
    type Out = Flush;
    type State = ();
    fn on_item(&mut self, v: u32, _emit: &mut Vec<Flush>) -> Retention {
        self.pending.push(v);
        self.seen += 1;
        self.due = Some(Instant::now() + Self::DELAY);
        Retention::Retain
    }
    fn notify_at(&self) -> Option<Instant> {
        self.due
    }
    fn on_notify(&mut self, emit: &mut Vec<Flush>) -> Retention {
        self.due = None;
        emit.push(Flush::Notified(std::mem::take(&mut self.pending)));
        Retention::Retain
    }
    fn on_eof(&mut self, emit: &mut Vec<Flush>) -> Retention {
        if !self.pending.is_empty() {
            emit.push(Flush::AtEof(std::mem::take(&mut self.pending)));
        }
        emit.push(Flush::Seen(self.seen));
        Retention::Discard
    }
    fn snapshot(&self) {}
}

#[test]
fn stateful_with_notifications_at_1_2_8_workers() {
    // 4 partitions; each sends a burst, pauses 200 ms (the 20 ms notifications fire with
    // no data arriving), sends a second burst, pauses again, and ends.
    const BURST: u32 = 40;
    let key = |p: u32, i: u32| format!("k{p}-{}", i % 4);
    let parts: Vec<Vec<TestEvent<(String, u32)>>> = (0..4)
        .map(|p| {
            let mut ev: Vec<_> = (0..BURST)
                .map(|i| TestEvent::Item((key(p, i), i)))
                .collect();
            ev.push(TestEvent::Pause(Duration::from_millis(200)));
            ev.extend((BURST..2 * BURST).map(|i| TestEvent::Item((key(p, i), i))));
            ev.push(TestEvent::Pause(Duration::from_millis(200)));
            ev
        })
        .collect();
    for w in WORKER_COUNTS {
        let flow = Dataflow::new("timers");
        let out = collect(
            &flow
                .input("inp", Parts::events(parts.clone(), 8))
                .stateful("batch", |_| Batcher {
                    pending: Vec::new(),
                    seen: 0,
                    due: None,
                }),
            "out",
        );
        run(&flow, w);
        let got = group(&out.take());
        assert_eq!(got.len(), 16, "w{w}: every key reports");
        for (k, evs) in got {
            // Notifications may split a burst (a slow machine), but never merge the two
            // bursts: each burst was flushed by a notification during its pause.
            let burst_of = |v: u32| v / BURST;
            let mut flushed: Vec<Vec<u32>> = vec![Vec::new(), Vec::new()];
            let (last, flushes) = evs.split_last().expect("at least the count");
            assert_eq!(
                *last,
                Flush::Seen(20),
                "w{w}: key {k} saw all its values, last"
            );
            for f in flushes {
                let Flush::Notified(vs) = f else {
                    panic!("w{w}: key {k}: {f:?}: values left for EOF, a notification did not fire")
                };
                assert!(!vs.is_empty(), "w{w}: key {k}: empty flush");
                let b = burst_of(vs[0]);
                assert!(
                    vs.iter().all(|&v| burst_of(v) == b),
                    "w{w}: key {k}: {vs:?} mixes bursts"
                );
                flushed[b as usize].extend(vs);
            }
            let p: u32 = k[1..2].parse().unwrap();
            let mine = |r: std::ops::Range<u32>| r.filter(|&i| key(p, i) == k).collect::<Vec<_>>();
            assert_eq!(
                flushed[0],
                mine(0..BURST),
                "w{w}: key {k}: first burst, in order"
            );
            assert_eq!(
                flushed[1],
                mine(BURST..2 * BURST),
                "w{w}: key {k}: second burst"
            );
        }
    }
}

#[test]
fn fold_final_at_1_2_8_workers() {
    // Keys spanning partitions (values meet on the key's worker from several senders),
    // with a commutative fold; and partition-local keys, folded into a list (order).
    let got = same_at_all_counts(
        "fold",
        |flow| {
            let inp = recs(flow, "inp");
            let sums = inp
                .key_on("k1", |&(_, s)| format!("m{}", s % 37))
                .fold_final(
                    "sum",
                    || (0u64, 0u64),
                    |(n, t), (p, s)| (n + 1, t + u64::from(s * 7 + p)),
                )
                .map("tag", |(k, (n, t))| (k, n, t, Vec::new()));
            let lists = inp
                .key_on("k2", |&r| local_key(r))
                .fold_final("list", Vec::new, |mut l: Vec<u32>, (_, s)| {
                    l.push(s);
                    l
                })
                .map("tag2", |(k, l)| (k, 0, 0, l));
            collect(&sums.merge("both", [&lists]), "out")
        },
        |w, out| {
            let keys: BTreeSet<&String> = out.iter().map(|(k, ..)| k).collect();
            assert_eq!(keys.len(), out.len(), "w{w}: one result per key");
        },
    );
    let mut expected = Vec::new();
    for (k, vs) in per_key(
        &all_recs(),
        |(_, s)| format!("m{}", s % 37),
        |(p, s)| u64::from(s * 7 + p),
    ) {
        expected.push((k, vs.len() as u64, vs.iter().sum::<u64>(), Vec::new()));
    }
    for (k, vs) in per_key(&all_recs(), local_key, |(_, s)| s) {
        expected.push((k, 0, 0, vs));
    }
    assert_same_multiset(&got, &expected, "fold_final");
}

#[test]
fn reduce_final_at_1_2_8_workers() {
    // (first, last, count, in order so far) per partition-local key: a reducer that sees
    // the values out of order records it.
    type Span = (u32, u32, u32, bool);
    let got = same_at_all_counts(
        "reduce",
        |flow| {
            let inp = recs(flow, "inp");
            let spans = inp
                .key_on("k1", |&r| local_key(r))
                .map_value("span", |(_, s)| (s, s, 1u32, true))
                .reduce_final("order", |a: Span, b: Span| {
                    (a.0, b.1, a.2 + b.2, a.3 && b.3 && a.1 < b.0)
                })
                .map("tag", |(k, v)| (k, v, 0));
            let sums = inp
                .key_on("k2", |&(p, s)| format!("m{}", (s + p) % 29))
                .map_value("v", |(_, s)| u64::from(s))
                .reduce_final("sum", |a, b| a + b)
                .map("tag2", |(k, t)| (k, (0, 0, 0, true), t));
            collect(&spans.merge("both", [&sums]), "out")
        },
        |_, _| {},
    );
    let mut expected = Vec::new();
    for (k, vs) in per_key(&all_recs(), local_key, |(_, s)| s) {
        expected.push((k, (vs[0], *vs.last().unwrap(), vs.len() as u32, true), 0));
    }
    for (k, vs) in per_key(
        &all_recs(),
        |(p, s)| format!("m{}", (s + p) % 29),
        |(_, s)| u64::from(s),
    ) {
        expected.push((k, (0, 0, 0, true), vs.iter().sum()));
    }
    assert_same_multiset(&got, &expected, "reduce_final");
}

#[test]
fn count_final_at_1_2_8_workers() {
    let word = |(p, s): Rec| format!("w{}", (s * 7 + p) % 41);
    let got = same_at_all_counts(
        "count",
        move |flow| {
            let words = recs(flow, "inp").map("word", word);
            collect(&words.count_final("c", |w: String| w), "out")
        },
        |_, _| {},
    );
    let expected: Vec<(String, u64)> = per_key(&all_recs(), word, |_| ())
        .into_iter()
        .map(|(k, v)| (k, v.len() as u64))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        got.iter().map(|(_, n)| n).sum::<u64>(),
        u64::from(PARTS * PER_PART)
    );
}

#[test]
fn max_final_and_min_final_at_1_2_8_workers() {
    let val = |(p, s): Rec| (s * 7919 + p * 13) % 10007;
    let got = same_at_all_counts(
        "maxmin",
        move |flow| {
            let keyed = recs(flow, "inp")
                .key_on("key", |&(_, s)| s % 23)
                .map_value("v", val);
            let max = keyed.max_final("max").map("tmax", |(k, v)| (k, "max", v));
            let min = keyed.min_final("min").map("tmin", |(k, v)| (k, "min", v));
            collect(&max.merge("both", [&min]), "out")
        },
        |_, _| {},
    );
    let mut expected = Vec::new();
    for (k, vs) in per_key(&all_recs(), |(_, s)| s % 23, val) {
        expected.push((k, "max", *vs.iter().max().unwrap()));
        expected.push((k, "min", *vs.iter().min().unwrap()));
    }
    assert_same_multiset(&got, &expected, "max/min_final");
}

// ---- 2. reference flows ------------------------------------------------------------------

#[test]
fn reference_wordcount_at_1_2_8_workers() {
    const LINES: [&str; 4] = [
        "the quick brown fox",
        "jumps over the lazy dog",
        "The dog barks",
        "the end",
    ];
    let expected: Vec<(String, u64)> = [
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
    .into_iter()
    .map(|(w, n)| (w.to_string(), n))
    .collect();
    let build = |flow: &Dataflow| {
        let split = |line: &str| {
            line.to_lowercase()
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let words = flow
            .input("inp", TestingSource::new(LINES))
            .flat_map("split", split);
        collect(&words.count_final("count", |w: String| w), "out")
    };
    let got = same_at_all_counts("wordcount", build, |_, _| {});
    assert_eq!(got, expected);
    // Also with the default configuration (workers pinned to the cores, round robin).
    let flow = Dataflow::new("wordcount");
    let out = build(&flow);
    run_cfg(&flow, 8, RunConfig::default());
    assert_eq!(sorted(&out.take()), expected, "pinned, 8 workers");
}

#[test]
fn reference_stateful_map_sum_at_1_2_8_workers() {
    let events = vec![("a", 1), ("b", 10), ("a", 2), ("a", -3), ("a", 5), ("b", 1)];
    for w in WORKER_COUNTS {
        let flow = Dataflow::new("stateful_map_sum");
        let out = collect(
            &flow
                .input("inp", TestingSource::new(events.clone()))
                .stateful_map("sum", |state: Option<i64>, value: i64| {
                    let total = state.unwrap_or(0) + value;
                    ((total != 0).then_some(total), total)
                }),
            "out",
        );
        run(&flow, w);
        let got = group(&out.take());
        let expected: BTreeMap<&str, Vec<i64>> = [("a", vec![1, 3, 0, 5]), ("b", vec![10, 11])]
            .into_iter()
            .collect();
        assert_eq!(got, expected, "w{w}");
    }
}

/// Reference `partition_assign_demo.py`: five fixed partitions, a dynamic source and a
/// dynamic sink; items stay on the worker that read them.
fn partition_assign_demo(workers: usize) -> BTreeSet<(usize, String)> {
    let flow = Dataflow::new("partition_assign_demo");
    let five: Vec<Vec<String>> = (0..5).map(|i| vec![format!("p{i}")]).collect();
    let fixed = flow.input("fixed", Parts::items(five, 1));
    let dynamic = flow.input("dyn", PerWorker);
    let (sink, got) = WorkerSink::new();
    fixed.merge("m", [&dynamic]).output("out", sink);
    run(&flow, workers);
    let got = std::mem::take(&mut *lock(&got));
    let set: BTreeSet<(usize, String)> = got.iter().cloned().collect();
    assert_eq!(set.len(), got.len(), "no item twice");
    set
}

#[test]
fn reference_partition_assign_demo_at_3_workers() {
    // outputs/partition_assign_demo_w3.txt
    let expected: BTreeSet<(usize, String)> = [
        (1, "dyn-from-w1/3"),
        (2, "dyn-from-w2/3"),
        (0, "dyn-from-w0/3"),
        (0, "p0"),
        (0, "p3"),
        (1, "p1"),
        (1, "p4"),
        (2, "p2"),
    ]
    .into_iter()
    .map(|(w, s)| (w, s.to_string()))
    .collect();
    assert_eq!(partition_assign_demo(3), expected);
    // The same rule at 2 workers: p0, p2, p4 on worker 0; p1, p3 on worker 1.
    let expected2: BTreeSet<(usize, String)> = [
        (0, "dyn-from-w0/2"),
        (1, "dyn-from-w1/2"),
        (0, "p0"),
        (1, "p1"),
        (0, "p2"),
        (1, "p3"),
        (0, "p4"),
    ]
    .into_iter()
    .map(|(w, s)| (w, s.to_string()))
    .collect();
    assert_eq!(partition_assign_demo(2), expected2);
}

// ---- 3. stress: every record exactly once, per-sender FIFO ---------------------------------

/// Records per partition in the stress test (4 partitions).
const STRESS_PER_PART: u64 = 4_000_000;

/// Partition `i` of `parts` emits `(i, seq)` for `seq` in `0..n`, `batch` per batch.
struct SeqSource {
    parts: u32,
    n: u64,
    batch: u64,
}

struct SeqPart {
    part: u32,
    next: u64,
    n: u64,
    batch: u64,
}

impl StatefulSourcePartition for SeqPart {
    type Item = (u32, u64);
    type State = u64;
    fn next_batch(&mut self, batch: &mut Vec<(u32, u64)>) -> Result<SourceStatus, BoxError> {
        let end = (self.next + self.batch).min(self.n);
        batch.extend((self.next..end).map(|s| (self.part, s)));
        self.next = end;
        Ok(if end == self.n {
            SourceStatus::Eof
        } else {
            SourceStatus::Active
        })
    }
    fn snapshot(&self) -> u64 {
        self.next
    }
}

impl FixedPartitionedSource for SeqSource {
    type Item = (u32, u64);
    type Part = SeqPart;
    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        Ok((0..self.parts).map(|i| format!("s{i}")).collect())
    }
    fn build_part(&self, _: &str, part: &str, resume: Option<u64>) -> Result<SeqPart, BoxError> {
        Ok(SeqPart {
            part: part[1..].parse()?,
            next: resume.unwrap_or(0),
            n: self.n,
            batch: self.batch,
        })
    }
}

impl Source<(u32, u64)> for SeqSource {
    fn into_kind(self) -> SourceKind<(u32, u64)> {
        SourceKind::fixed(self)
    }
}

/// What the FIFO-checking sink found, over all workers.
#[derive(Debug, Default)]
struct FifoReport {
    /// Per partition, one bit per sequence number received (any worker).
    bits: Vec<Vec<u64>>,
    count: u64,
    /// Records received by more than one worker.
    dup_across_workers: u64,
    /// Records out of order (or repeated) within one (receiver, partition) stream.
    order_violations: u64,
    first_violation: Option<String>,
    received_per_worker: Vec<(usize, u64)>,
}

/// A dynamic sink checking, on each worker, that each partition's sequence numbers
/// strictly increase; merges what it saw into a [`FifoReport`] at close.
struct FifoSink {
    parts: usize,
    n: u64,
    report: Arc<Mutex<FifoReport>>,
}

struct FifoPart {
    worker: usize,
    last: Vec<Option<u64>>,
    bits: Vec<Vec<u64>>,
    count: u64,
    violations: u64,
    first_violation: Option<String>,
    report: Arc<Mutex<FifoReport>>,
}

impl StatelessSinkPartition for FifoPart {
    type Item = (u32, u64);
    fn write_batch(&mut self, items: &mut Vec<(u32, u64)>) -> Result<(), BoxError> {
        for (p, s) in items.drain(..) {
            let p = p as usize;
            if self.last[p].is_some_and(|l| l >= s) {
                self.violations += 1;
                if self.first_violation.is_none() {
                    self.first_violation = Some(format!(
                        "worker {}: partition {p}: seq {s} after {:?}",
                        self.worker, self.last[p]
                    ));
                }
            }
            self.last[p] = Some(s);
            self.bits[p][(s / 64) as usize] |= 1 << (s % 64);
            self.count += 1;
        }
        Ok(())
    }
    fn close(&mut self) -> Result<(), BoxError> {
        let mut r = lock(&self.report);
        if r.bits.is_empty() {
            r.bits = self.bits.iter().map(|b| vec![0; b.len()]).collect();
        }
        let mut dups = 0;
        for (all, mine) in r.bits.iter_mut().zip(&self.bits) {
            for (a, m) in all.iter_mut().zip(mine) {
                dups += u64::from((*a & *m).count_ones());
                *a |= *m;
            }
        }
        r.dup_across_workers += dups;
        r.count += self.count;
        r.order_violations += self.violations;
        if r.first_violation.is_none() {
            r.first_violation = self.first_violation.take();
        }
        r.received_per_worker.push((self.worker, self.count));
        Ok(())
    }
}

impl DynamicSink for FifoSink {
    type Item = (u32, u64);
    type Part = FifoPart;
    fn build(&self, _: &str, worker: usize, _: usize) -> Result<FifoPart, BoxError> {
        let words = self.n.div_ceil(64) as usize;
        Ok(FifoPart {
            worker,
            last: vec![None; self.parts],
            bits: vec![vec![0; words]; self.parts],
            count: 0,
            violations: 0,
            first_violation: None,
            report: self.report.clone(),
        })
    }
}

impl Sink<(u32, u64)> for FifoSink {
    fn into_kind(self) -> SinkKind<(u32, u64)> {
        SinkKind::dynamic(self)
    }
}

/// Per key: per partition, sequence numbers must strictly increase (they come from one
/// sender each); emits `(count, sum, violations)` at EOF.
#[derive(Default)]
struct OrderCheck {
    next: [u64; 4],
    count: u64,
    sum: u64,
    violations: u64,
}

impl StatefulLogic<(u32, u64)> for OrderCheck {
    type Out = (u64, u64, u64);
    type State = ();
    fn on_item(&mut self, (p, s): (u32, u64), _emit: &mut Vec<(u64, u64, u64)>) -> Retention {
        let next = &mut self.next[p as usize];
        if s < *next {
            self.violations += 1;
        }
        *next = s + 1;
        self.count += 1;
        self.sum += s;
        Retention::Retain
    }
    fn on_eof(&mut self, emit: &mut Vec<(u64, u64, u64)>) -> Retention {
        emit.push((self.count, self.sum, self.violations));
        Retention::Discard
    }
    fn snapshot(&self) {}
}

#[test]
fn stress_4_workers_every_record_once_and_per_sender_fifo() {
    const PARTS4: u32 = 4;
    const KEYS: u64 = 512;
    let n = STRESS_PER_PART;
    let flow = Dataflow::new("stress");
    let inp = flow.input(
        "inp",
        SeqSource {
            parts: PARTS4,
            n,
            batch: 1000,
        },
    );
    // Branch 1: round robin over the workers; checked where it lands.
    let report: Arc<Mutex<FifoReport>> = Arc::default();
    inp.redistribute("spread").output(
        "fifo",
        FifoSink {
            parts: PARTS4 as usize,
            n,
            report: report.clone(),
        },
    );
    // Branch 2: by key; each key's state checks per-partition order.
    let per_key = collect(
        &inp.key_on("key", |&(_, s)| s % KEYS)
            .stateful("order", |_| OrderCheck::default()),
        "keyed",
    );
    let start = Instant::now();
    run(&flow, 4);
    let took = start.elapsed();
    eprintln!(
        "stress: {} records through redistribute and a keyed step at 4 workers in {took:?}",
        u64::from(PARTS4) * n
    );

    let r = lock(&report);
    assert_eq!(
        r.order_violations, 0,
        "redistribute FIFO: {:?}",
        r.first_violation
    );
    assert_eq!(r.dup_across_workers, 0, "records delivered to two workers");
    assert_eq!(
        r.count,
        u64::from(PARTS4) * n,
        "records received after redistribute"
    );
    let received: u64 = r
        .bits
        .iter()
        .flatten()
        .map(|w| u64::from(w.count_ones()))
        .sum();
    assert_eq!(
        received,
        u64::from(PARTS4) * n,
        "distinct records after redistribute"
    );
    assert_eq!(
        r.received_per_worker.len(),
        4,
        "a sink partition closed on every worker"
    );
    for &(w, c) in &r.received_per_worker {
        assert!(
            c >= n / 2,
            "worker {w} received only {c} records from redistribute"
        );
    }
    drop(r);

    let got = per_key.take();
    assert_eq!(got.len(), KEYS as usize, "one result per key");
    for (k, (count, sum, violations)) in got {
        assert_eq!(
            violations, 0,
            "key {k}: per-partition order lost through the exchange"
        );
        let seqs = (k..n).step_by(KEYS as usize);
        let (c, s) = (seqs.clone().count() as u64, seqs.sum::<u64>());
        assert_eq!(
            (count, sum),
            (4 * c, 4 * s),
            "key {k}: count and sum of seqs"
        );
    }
}

// ---- 4. no deadlock at 8 workers on 2 cores ------------------------------------------------

#[test]
fn chained_keyed_steps_at_8_workers_do_not_deadlock() {
    const N_PER_PART: u64 = 125_000; // x 8 partitions = 1M items
    const STAGES: u64 = 5;
    let key_of =
        |stage: u64, x: u64| (x.wrapping_mul(2 * stage + 0x9E37_79B9) >> 7) % 1000 + stage * 1000;
    let flow = Dataflow::new("chain");
    let mut s: Stream<(u64, u64)> = flow
        .input(
            "inp",
            SeqSource {
                parts: 8,
                n: N_PER_PART,
                batch: 500,
            },
        )
        .map("id", |(p, s)| (u64::from(p) * N_PER_PART + s, 0));
    for stage in 0..STAGES {
        // Re-key, count per key, add the running count to the item's accumulator.
        s = s
            .key_on(&format!("key{stage}"), move |&(x, _)| key_of(stage, x))
            .stateful_map(
                &format!("count{stage}"),
                |c: Option<u64>, (x, acc): (u64, u64)| {
                    let c = c.unwrap_or(0) + 1;
                    (Some(c), (x, acc + c))
                },
            )
            .key_rm(&format!("rm{stage}"));
    }
    let out = collect(
        &s.key_on("final", |&(x, _)| x % 101).fold_final(
            "fold",
            || (0u64, 0u64, 0u64),
            |(n, sx, sa), (x, acc)| (n + 1, sx + x, sa + acc),
        ),
        "out",
    );
    let start = Instant::now();
    run(&flow, 8);
    eprintln!(
        "chain: 1M items through 5 keyed steps at 8 workers in {:?}",
        start.elapsed()
    );

    let total = 8 * N_PER_PART;
    let mut expected_acc = 0u64;
    for stage in 0..STAGES {
        let mut per: HashMap<u64, u64> = HashMap::new();
        for x in 0..total {
            *per.entry(key_of(stage, x)).or_default() += 1;
        }
        expected_acc += per.values().map(|&m| m * (m + 1) / 2).sum::<u64>();
    }
    let got = out.take();
    assert_eq!(got.len(), 101);
    for &(k, (n, sx, _)) in &got {
        let xs = (k..total).step_by(101);
        assert_eq!(
            (n, sx),
            (xs.clone().count() as u64, xs.sum::<u64>()),
            "final key {k}"
        );
    }
    let acc: u64 = got.iter().map(|(_, (_, _, a))| a).sum();
    assert_eq!(
        acc, expected_acc,
        "sum of the running counts of every stage"
    );
}

/// Running sums of `vals`, in order.
fn running_sums<V: Copy + std::ops::Add<Output = V> + Default>(vals: &[V]) -> Vec<V> {
    let mut t = V::default();
    vals.iter()
        .map(|&v| {
            t = t + v;
            t
        })
        .collect()
}

/// 8 partitions of 300 records in batches of 1 at 8 workers, through a keyed step and
/// through redistribute then a keyed step; results exact.
fn tiny_batches_at_8_workers(name: &str, interval: Duration) {
    let parts: Vec<Vec<Rec>> = (0..8).map(|p| (0..300).map(|s| (p, s)).collect()).collect();
    let all: Vec<Rec> = parts.concat();
    let flow = Dataflow::new(name);
    let inp = flow.input("inp", Parts::items(parts, 1));
    let sums = collect(
        &inp.key_on("key", |&r| local_key(r)).stateful_map(
            "sum",
            |st: Option<u64>, (_, s): Rec| {
                let t = st.unwrap_or(0) + u64::from(s);
                (Some(t), t)
            },
        ),
        "sums",
    );
    let counts = collect(
        &inp.redistribute("spread")
            .count_final("count", |(p, s): Rec| (s + p) % 17),
        "counts",
    );
    let stop = Arc::default();
    watchdog(&inp, &stop);
    let start = Instant::now();
    let config = config().epoch_interval(interval);
    run_guarded(&flow, 8, config, Duration::from_secs(5), &stop);
    eprintln!(
        "{name}: batches of 1 at 8 workers, epoch interval {interval:?}: {:?}",
        start.elapsed()
    );
    let expected_sums: BTreeMap<String, Vec<u64>> = per_key(&all, local_key, |(_, s)| u64::from(s))
        .into_iter()
        .map(|(k, vs)| (k, running_sums(&vs)))
        .collect();
    assert_eq!(group(&sums.take()), expected_sums);
    let expected_counts: Vec<(u32, u64)> = per_key(&all, |(p, s)| (s + p) % 17, |_| ())
        .into_iter()
        .map(|(k, v)| (k, v.len() as u64))
        .collect();
    assert_eq!(sorted(&counts.take()), expected_counts);
}

#[test]
fn tiny_batches_and_an_epoch_every_round_at_8_workers() {
    tiny_batches_at_8_workers("tiny0", Duration::ZERO);
}

#[test]
fn tiny_batches_and_1ms_epochs_at_8_workers() {
    tiny_batches_at_8_workers("tiny1", Duration::from_millis(1));
}

// ---- 5. failures -------------------------------------------------------------------------

/// Runs a flow that can only end by failing; returns its error and how long it took.
fn expect_failure(flow: &Dataflow, workers: usize) -> (Error, Duration) {
    let start = Instant::now();
    match run_within(flow, workers, config(), Duration::from_secs(20)) {
        None => panic!(
            "flow {:?}: the failure did not stop the run within 20 s (hang)",
            flow.name()
        ),
        Some(Ok(())) => panic!("flow {:?} succeeded but must fail", flow.name()),
        Some(Err(e)) => (e, start.elapsed()),
    }
}

/// 4 partitions of `u32`s `p * 1000 + s`, merged with a never-ending input.
fn endless_numbers(flow: &Dataflow) -> Stream<u32> {
    let parts: Vec<Vec<u32>> = (0..4)
        .map(|p| (0..1000).map(|s| p * 1000 + s).collect())
        .collect();
    let numbers = flow.input("inp", Parts::items(parts, 10));
    let forever = flow.input("forever", Forever::new());
    numbers.merge("m", [&forever])
}

#[test]
fn a_panic_in_a_map_on_one_worker_stops_the_run_and_names_the_step() {
    let flow = Dataflow::new("fail");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let out = collect(
        &endless_numbers(&flow)
            .redistribute("spread")
            .map("boom", move |x: u32| {
                c.fetch_add(1, Ordering::Relaxed);
                if x == 2777 {
                    panic!("poison item {x}");
                }
                x
            }),
        "out",
    );
    let (err, took) = expect_failure(&flow, 4);
    match &err {
        Error::StepPanicked { step_id, message } => {
            assert_eq!(step_id, "fail.boom");
            assert!(message.contains("poison item 2777"), "message: {message}");
        }
        other => panic!("expected StepPanicked naming fail.boom, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(5),
        "failure took {took:?} to stop the run"
    );
    assert!(calls.load(Ordering::Relaxed) > 0);
    assert!(
        !out.get().contains(&2777),
        "the poison item never reached the sink"
    );
}

#[test]
fn a_panic_in_a_keyed_step_at_4_workers_names_the_step() {
    let flow = Dataflow::new("fail2");
    collect(
        &endless_numbers(&flow)
            .key_on("key", |x| x % 10)
            .stateful_map("sum", |st: Option<u32>, x: u32| {
                assert!(x != 1234, "bad value {x}");
                let t = st.unwrap_or(0).wrapping_add(x);
                (Some(t), t)
            }),
        "out",
    );
    let (err, took) = expect_failure(&flow, 4);
    match &err {
        Error::StepPanicked { step_id, message } => {
            assert_eq!(step_id, "fail2.sum");
            assert!(message.contains("bad value 1234"), "message: {message}");
        }
        other => panic!("expected StepPanicked naming fail2.sum, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(5),
        "failure took {took:?} to stop the run"
    );
}

#[test]
fn a_testing_source_abort_at_4_workers_names_the_input_step() {
    let flow = Dataflow::new("abort");
    let mut events: Vec<TestEvent<u32>> = (0..100).map(TestEvent::Item).collect();
    events.push(TestEvent::Abort);
    events.extend((100..200).map(TestEvent::Item));
    let inp = flow.input("inp", TestingSource::events(events).batch_size(10));
    let forever = flow.input("forever", Forever::new());
    collect(
        &inp.merge("m", [&forever])
            .redistribute("spread")
            .count_final("count", |x: u32| x % 7),
        "out",
    );
    let (err, took) = expect_failure(&flow, 4);
    match &err {
        Error::Step { step_id, source } => {
            assert_eq!(step_id, "abort.inp");
            assert!(source.to_string().contains("ABORT"), "source: {source}");
        }
        other => panic!("expected Error::Step naming abort.inp, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(5),
        "failure took {took:?} to stop the run"
    );
}

#[test]
fn a_source_error_on_a_worker_other_than_0_names_the_input_step() {
    // Partition p2 (read by worker 2 of 4) fails after some items.
    let flow = Dataflow::new("abort2");
    let parts: Vec<Vec<TestEvent<u32>>> = (0..4)
        .map(|p| {
            let mut ev: Vec<_> = (0..50).map(TestEvent::Item).collect();
            if p == 2 {
                ev.push(TestEvent::Abort);
            }
            ev
        })
        .collect();
    let inp = flow.input("inp", Parts::events(parts, 5));
    let forever = flow.input("forever", Forever::new());
    collect(
        &inp.merge("m", [&forever])
            .key_on("k", |x| *x)
            .count_final("c", |(k, _): (u32, u32)| k),
        "out",
    );
    let (err, _) = expect_failure(&flow, 4);
    match &err {
        Error::Step { step_id, source } => {
            assert_eq!(step_id, "abort2.inp");
            assert!(
                source.to_string().contains("partition p2 aborted"),
                "source: {source}"
            );
        }
        other => panic!("expected Error::Step naming abort2.inp, got {other:?}"),
    }
}

/// [`Parts`] whose partition `bad` cannot be built.
struct FailingBuild {
    inner: Parts<u32>,
    bad: &'static str,
}

impl FixedPartitionedSource for FailingBuild {
    type Item = u32;
    type Part = PartsReader<u32>;
    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        self.inner.list_parts()
    }
    fn build_part(
        &self,
        step_id: &str,
        part: &str,
        resume: Option<usize>,
    ) -> Result<PartsReader<u32>, BoxError> {
        if part == self.bad {
            return Err(format!("cannot build {part}").into());
        }
        self.inner.build_part(step_id, part, resume)
    }
}

impl Source<u32> for FailingBuild {
    fn into_kind(self) -> SourceKind<u32> {
        SourceKind::fixed(self)
    }
}

#[test]
fn a_partition_build_error_on_one_worker_stops_the_others() {
    // p3 belongs to worker 3 of 4; the others build fine and would run forever.
    let flow = Dataflow::new("buildfail");
    let parts: Vec<Vec<u32>> = (0..4)
        .map(|p| (0..100).map(|s| p * 100 + s).collect())
        .collect();
    let inp = flow.input(
        "inp",
        FailingBuild {
            inner: Parts::items(parts, 10),
            bad: "p3",
        },
    );
    let forever = flow.input("forever", Forever::new());
    collect(&inp.merge("m", [&forever]).redistribute("spread"), "out");
    let (err, took) = expect_failure(&flow, 4);
    match &err {
        Error::Step { step_id, source } => {
            assert_eq!(step_id, "buildfail.inp");
            assert!(
                source.to_string().contains("cannot build p3"),
                "source: {source}"
            );
        }
        other => panic!("expected Error::Step naming buildfail.inp, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(5),
        "failure took {took:?} to stop the run"
    );
}

/// Panics in `on_notify`, `DELAY` after its first item.
struct PanicLater(Option<Instant>);

impl PanicLater {
    const DELAY: Duration = Duration::from_millis(200);
}

impl StatefulLogic<u32> for PanicLater {
    type Out = u32;
    type State = ();
    fn on_item(&mut self, v: u32, emit: &mut Vec<u32>) -> Retention {
        self.0.get_or_insert_with(|| Instant::now() + Self::DELAY);
        emit.push(v);
        Retention::Retain
    }
    fn notify_at(&self) -> Option<Instant> {
        self.0
    }
    fn on_notify(&mut self, _: &mut Vec<u32>) -> Retention {
        panic!("late failure");
    }
    fn snapshot(&self) {}
}

#[test]
fn a_failure_wakes_a_worker_parked_on_a_long_pause() {
    // Worker 0 reads one item for a key of worker 1, then pauses for a minute (it
    // parks; its epoch lasts 10 s). Worker 1 fails 200 ms later, from a timer: worker 0
    // must be woken to stop, not found at its next deadline.
    let key = (0u32..)
        .find(|k| k.stable_hash() % 2 == 1)
        .expect("a key of worker 1");
    let flow = Dataflow::new("parked");
    let events = vec![
        TestEvent::Item((key, 1u32)),
        TestEvent::Pause(Duration::from_secs(60)),
    ];
    collect(
        &flow
            .input("inp", TestingSource::events(events))
            .stateful("late", |_| PanicLater(None)),
        "out",
    );
    let (err, took) = expect_failure(&flow, 2);
    match &err {
        Error::StepPanicked { step_id, message } => {
            assert_eq!(step_id, "parked.late");
            assert!(message.contains("late failure"), "message: {message}");
        }
        other => panic!("expected StepPanicked naming parked.late, got {other:?}"),
    }
    assert!(
        took >= PanicLater::DELAY && took < Duration::from_secs(3),
        "the run stopped after {took:?}"
    );
}

/// A dynamic sink that fails when it is given `bad`.
struct FailingSink(u32);

struct FailingPart(u32);

impl StatelessSinkPartition for FailingPart {
    type Item = u32;
    fn write_batch(&mut self, items: &mut Vec<u32>) -> Result<(), BoxError> {
        if items.contains(&self.0) {
            return Err(format!("cannot write {}", self.0).into());
        }
        items.clear();
        Ok(())
    }
}

impl DynamicSink for FailingSink {
    type Item = u32;
    type Part = FailingPart;
    fn build(&self, _: &str, _: usize, _: usize) -> Result<FailingPart, BoxError> {
        Ok(FailingPart(self.0))
    }
}

impl Sink<u32> for FailingSink {
    fn into_kind(self) -> SinkKind<u32> {
        SinkKind::dynamic(self)
    }
}

#[test]
fn a_sink_error_at_4_workers_names_the_output_step() {
    let flow = Dataflow::new("sinkfail");
    endless_numbers(&flow)
        .redistribute("spread")
        .output("out", FailingSink(3500));
    let (err, took) = expect_failure(&flow, 4);
    match &err {
        Error::Step { step_id, source } => {
            assert_eq!(step_id, "sinkfail.out");
            assert!(
                source.to_string().contains("cannot write 3500"),
                "source: {source}"
            );
        }
        other => panic!("expected Error::Step naming sinkfail.out, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(5),
        "failure took {took:?} to stop the run"
    );
}

// ---- 6. progress edge cases ----------------------------------------------------------------

#[test]
fn workers_without_partitions_take_part_and_the_run_ends() {
    // One partition at 4 workers: workers 1..3 read nothing but own keys.
    let flow = Dataflow::new("onepart");
    let inp = flow.input("inp", TestingSource::new(0..5000u32).batch_size(100));
    let keyed = inp.key_on("key", |x| x % 50);
    let sums = collect(
        &keyed.stateful_map("sum", |st: Option<u32>, x: u32| {
            let t = st.unwrap_or(0) + x;
            (Some(t), t)
        }),
        "sums",
    );
    let counts = collect(
        &inp.redistribute("spread")
            .count_final("count", |x: u32| x % 3),
        "counts",
    );
    run(&flow, 4);
    let expected: BTreeMap<u32, Vec<u32>> = (0..50)
        .map(|k| (k, running_sums(&(k..5000).step_by(50).collect::<Vec<_>>())))
        .collect();
    assert_eq!(group(&sums.take()), expected);
    assert_eq!(
        sorted(&counts.take()),
        vec![(0, 1667), (1, 1667), (2, 1666)]
    );

    // No partition at all: every worker is at EOF from the start.
    let flow = Dataflow::new("noparts");
    let none = collect(
        &flow
            .input("inp", Parts::<u32>::items(Vec::new(), 10))
            .key_on("key", |x| *x)
            .count_final("count", |(k, _): (u32, u32)| k),
        "out",
    );
    run(&flow, 4);
    assert!(none.is_empty());
}

#[test]
fn empty_input_at_8_workers_every_final_emits_nothing_and_the_run_ends() {
    let flow = Dataflow::new("empty");
    let a = flow.input("a", TestingSource::new(Vec::<u32>::new()));
    let b = flow.input("b", Parts::<u32>::items(vec![Vec::new(); 8], 10));
    let keyed = a.merge("m", [&b]).key_on("key", |x| x % 5);
    let outs = [
        collect(&keyed.fold_final("fold", || 0, |a, x| a + x), "o1"),
        collect(&keyed.reduce_final("reduce", |a, b| a + b), "o2"),
        collect(&keyed.max_final("max"), "o3"),
        collect(&keyed.min_final("min"), "o4"),
        collect(
            &keyed
                .count_final("count", |(k, _): (u32, u32)| k)
                .map_value("c", |c| c as u32),
            "o5",
        ),
        collect(
            &keyed
                .stateful("batch", |_| Batcher {
                    pending: Vec::new(),
                    seen: 0,
                    due: None,
                })
                .map_value("n", |_| 0u32),
            "o6",
        ),
        collect(&keyed.redistribute("spread").map_value("id", |x| x), "o7"),
    ];
    let start = Instant::now();
    run(&flow, 8);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "an empty run took {:?}",
        start.elapsed()
    );
    for (i, o) in outs.iter().enumerate() {
        assert!(o.is_empty(), "output o{} got {:?}", i + 1, o.get());
    }
}

#[test]
fn eof_racing_an_epoch_boundary_gives_exact_results() {
    // A small input, so the end of the stream lands at any point of an epoch; epochs of
    // zero (one per scheduling round) and 1 ms; 2, 4 and 8 workers; 40 runs.
    let parts: Vec<Vec<Rec>> = (0..4).map(|p| (0..60).map(|s| (p, s)).collect()).collect();
    let all: Vec<Rec> = parts.concat();
    let expected_sums: BTreeMap<String, Vec<u32>> = per_key(&all, local_key, |(_, s)| s)
        .into_iter()
        .map(|(k, vs)| (k, running_sums(&vs)))
        .collect();
    // The second keyed step counts the running sums by value mod 13.
    let all_sums: Vec<Rec> = expected_sums.values().flatten().map(|&t| (0, t)).collect();
    let expected_counts: Vec<(u32, u64)> = per_key(&all_sums, |(_, t)| t % 13, |_| ())
        .into_iter()
        .map(|(k, v)| (k, v.len() as u64))
        .collect();
    assert_eq!(expected_counts.len(), 13);
    let start = Instant::now();
    for round in 0..20 {
        for interval in [Duration::ZERO, Duration::from_millis(1)] {
            let workers = [2, 4, 8][round % 3];
            let flow = Dataflow::new("race");
            let sums = flow
                .input("inp", Parts::items(parts.clone(), 7))
                .key_on("key", |&r| local_key(r))
                .stateful_map("sum", |st: Option<u32>, (_, s): Rec| {
                    let t = st.unwrap_or(0) + s;
                    (Some(t), t)
                });
            let sums_out = collect(&sums, "sums");
            let counts = collect(
                &sums
                    .key_rm("rm")
                    .redistribute("spread")
                    .count_final("count", |t: u32| t % 13),
                "counts",
            );
            let stop = Arc::default();
            watchdog(&sums, &stop);
            let config = config().epoch_interval(interval);
            run_guarded(&flow, workers, config, Duration::from_secs(5), &stop);
            let what = format!("round {round}, epoch interval {interval:?}, {workers} workers");
            assert_eq!(group(&sums_out.take()), expected_sums, "sums, {what}");
            assert_eq!(sorted(&counts.take()), expected_counts, "counts, {what}");
        }
    }
    eprintln!("40 racing runs in {:?}", start.elapsed());
}

/// Notifies once, `DELAY` after its first item; reports the items, the notification
/// and the end.
struct Pinger {
    first: Option<Instant>,
    notified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ping {
    Item(u32),
    /// Milliseconds from the first item to the notification.
    Notified(u64),
    Eof,
}

impl Pinger {
    const DELAY: Duration = Duration::from_millis(30);
}

impl StatefulLogic<u32> for Pinger {
    type Out = Ping;
    type State = ();
    fn on_item(&mut self, v: u32, emit: &mut Vec<Ping>) -> Retention {
        self.first.get_or_insert_with(Instant::now);
        emit.push(Ping::Item(v));
        Retention::Retain
    }
    fn notify_at(&self) -> Option<Instant> {
        match (self.first, self.notified) {
            (Some(t), false) => Some(t + Self::DELAY),
            _ => None,
        }
    }
    fn on_notify(&mut self, emit: &mut Vec<Ping>) -> Retention {
        self.notified = true;
        let ms = self.first.map_or(0, |t| t.elapsed().as_millis() as u64);
        emit.push(Ping::Notified(ms));
        Retention::Retain
    }
    fn on_eof(&mut self, emit: &mut Vec<Ping>) -> Retention {
        emit.push(Ping::Eof);
        Retention::Discard
    }
    fn snapshot(&self) {}
}

#[test]
fn notifications_fire_at_2_workers_while_no_data_arrives() {
    // One partition (worker 0) sends a few items, then nothing for 400 ms: keys owned by
    // worker 1 only have their timers to wake them.
    let keys: Vec<u32> = (0..20).collect();
    assert!(
        keys.iter().any(|k| k.stable_hash() % 2 == 1)
            && keys.iter().any(|k| k.stable_hash() % 2 == 0),
        "the keys must live on both workers"
    );
    let mut events: Vec<TestEvent<(u32, u32)>> =
        keys.iter().map(|&k| TestEvent::Item((k, k * 10))).collect();
    events.push(TestEvent::Pause(Duration::from_millis(400)));
    let flow = Dataflow::new("pings");
    let out = collect(
        &flow
            .input("inp", TestingSource::events(events).batch_size(4))
            .stateful("ping", |_| Pinger {
                first: None,
                notified: false,
            }),
        "out",
    );
    let start = Instant::now();
    run(&flow, 2);
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "the pause is part of the run"
    );
    let got = group(&out.take());
    assert_eq!(got.len(), keys.len());
    for (k, evs) in got {
        assert_eq!(evs.len(), 3, "key {k}: {evs:?}");
        assert_eq!(evs[0], Ping::Item(k * 10));
        let Ping::Notified(ms) = evs[1] else {
            panic!("key {k}: no notification before EOF: {evs:?}")
        };
        assert!(
            (30..400).contains(&ms),
            "key {k}: notified {ms} ms after its item (due after 30 ms, before the pause ended)"
        );
        assert_eq!(evs[2], Ping::Eof);
    }
}

// ---- 7. fixed-partitioned sink routing -----------------------------------------------------

type FixedItem = (String, u32);

#[derive(Debug, Default)]
struct FixedLog {
    builds: Vec<(String, std::thread::ThreadId)>,
    writes: Vec<(String, std::thread::ThreadId, FixedItem)>,
}

/// Partitions `part0..`, each recording where it was built and what it wrote.
#[derive(Clone)]
struct RecordingSink {
    parts: usize,
    log: Arc<Mutex<FixedLog>>,
}

/// The same, with a `part_fn` that never picks partition 3 (of 4).
struct CustomRoutedSink(RecordingSink);

fn custom_part_fn(hash: u64) -> usize {
    ((hash >> 32) % 3) as usize
}

struct RecordingPart {
    name: String,
    log: Arc<Mutex<FixedLog>>,
}

impl StatefulSinkPartition for RecordingPart {
    type Item = FixedItem;
    type State = ();
    fn write_batch(&mut self, items: &mut Vec<FixedItem>) -> Result<(), BoxError> {
        let me = std::thread::current().id();
        let mut log = lock(&self.log);
        log.writes
            .extend(items.drain(..).map(|x| (self.name.clone(), me, x)));
        Ok(())
    }
    fn snapshot(&self) {}
}

impl RecordingSink {
    fn names(&self) -> Vec<String> {
        (0..self.parts).map(|i| format!("part{i}")).collect()
    }
    fn build(&self, part: &str) -> RecordingPart {
        lock(&self.log)
            .builds
            .push((part.to_string(), std::thread::current().id()));
        RecordingPart {
            name: part.to_string(),
            log: self.log.clone(),
        }
    }
}

impl FixedPartitionedSink for RecordingSink {
    type Item = FixedItem;
    type Part = RecordingPart;
    fn list_parts(&self) -> Vec<String> {
        self.names()
    }
    fn build_part(&self, _: &str, part: &str, _: Option<()>) -> Result<RecordingPart, BoxError> {
        Ok(self.build(part))
    }
}

impl FixedPartitionedSink for CustomRoutedSink {
    type Item = FixedItem;
    type Part = RecordingPart;
    fn list_parts(&self) -> Vec<String> {
        self.0.names()
    }
    fn part_fn(&self, key_hash: u64) -> usize {
        custom_part_fn(key_hash)
    }
    fn build_part(&self, _: &str, part: &str, _: Option<()>) -> Result<RecordingPart, BoxError> {
        Ok(self.0.build(part))
    }
}

impl Sink<(String, FixedItem)> for RecordingSink {
    fn into_kind(self) -> SinkKind<(String, FixedItem)> {
        SinkKind::fixed(self)
    }
}

impl Sink<(String, FixedItem)> for CustomRoutedSink {
    fn into_kind(self) -> SinkKind<(String, FixedItem)> {
        SinkKind::fixed(self)
    }
}

/// Runs `recs -> (local_key, (local_key, seq)) -> sink` at `workers` with a sink of
/// `parts` partitions; returns the log.
fn run_fixed_sink(workers: usize, parts: usize, custom: bool) -> FixedLog {
    let log: Arc<Mutex<FixedLog>> = Arc::default();
    let sink = RecordingSink {
        parts,
        log: log.clone(),
    };
    let flow = Dataflow::new("fixedsink");
    let keyed = recs(&flow, "inp").map("kv", |r| (local_key(r), (local_key(r), r.1)));
    if custom {
        keyed.output("out", CustomRoutedSink(sink));
    } else {
        keyed.output("out", sink);
    }
    run(&flow, workers);
    let taken = std::mem::take(&mut *lock(&log));
    taken
}

fn check_fixed_sink(log: &FixedLog, parts: usize, part_fn: fn(u64) -> usize, what: &str) {
    // Each partition built exactly once.
    let mut names: Vec<String> = log.builds.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    let expected: Vec<String> = (0..parts).map(|i| format!("part{i}")).collect();
    assert_eq!(names, expected, "{what}: builds");
    let home: HashMap<&str, std::thread::ThreadId> =
        log.builds.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    // Every value in the partition its key picks, written on the partition's worker.
    for (part, thread, (key, seq)) in &log.writes {
        let want = format!("part{}", part_fn(key.stable_hash()) % parts);
        assert_eq!(part, &want, "{what}: ({key}, {seq}) went to {part}");
        assert_eq!(
            home[part.as_str()],
            *thread,
            "{what}: {part} written off its worker"
        );
    }
    let values: Vec<Rec> = log
        .writes
        .iter()
        .map(|(_, _, (k, s))| (k[1..k.find('-').unwrap()].parse().unwrap(), *s))
        .collect();
    assert_same_multiset(&values, &all_recs(), what);
    // Per key, values arrive in order.
    let by_key = group(
        &log.writes
            .iter()
            .map(|(_, _, (k, s))| (k.clone(), *s))
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        by_key,
        per_key(&all_recs(), local_key, |(_, s)| s),
        "{what}: per-key order"
    );
}

#[test]
fn fixed_partitioned_sink_routes_by_key_hash_at_3_workers() {
    let default_fn: fn(u64) -> usize = |h| h as usize;
    for custom in [false, true] {
        let part_fn = if custom { custom_part_fn } else { default_fn };
        let at3 = run_fixed_sink(3, 4, custom);
        let what = format!("3 workers, custom part_fn: {custom}");
        check_fixed_sink(&at3, 4, part_fn, &what);
        // Bytewax's assignment of 4 partitions to 3 workers: part0 and part3 together on
        // one worker, part1 and part2 on one each.
        let home: HashMap<&str, std::thread::ThreadId> =
            at3.builds.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        assert_eq!(home["part0"], home["part3"], "{what}");
        let distinct: BTreeSet<String> = ["part0", "part1", "part2"]
            .iter()
            .map(|p| format!("{:?}", home[p]))
            .collect();
        assert_eq!(distinct.len(), 3, "{what}: part0..2 on three workers");
        // The same content per partition as with one worker.
        let at1 = run_fixed_sink(1, 4, custom);
        check_fixed_sink(
            &at1,
            4,
            part_fn,
            &format!("1 worker, custom part_fn: {custom}"),
        );
        let content = |log: &FixedLog| {
            let mut v: Vec<(String, FixedItem)> = log
                .writes
                .iter()
                .map(|(p, _, x)| (p.clone(), x.clone()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            content(&at3),
            content(&at1),
            "{what}: partition contents vs 1 worker"
        );
        if custom {
            assert!(
                at3.writes.iter().all(|(p, ..)| p != "part3"),
                "custom part_fn never picks part3"
            );
        }
    }
}

#[test]
fn fixed_partitioned_sink_with_fewer_partitions_than_workers() {
    let default_fn: fn(u64) -> usize = |h| h as usize;
    for parts in [1, 2] {
        let log = run_fixed_sink(4, parts, false);
        check_fixed_sink(
            &log,
            parts,
            default_fn,
            &format!("{parts} partition(s) at 4 workers"),
        );
        let threads: BTreeSet<String> = log.builds.iter().map(|(_, t)| format!("{t:?}")).collect();
        assert_eq!(
            threads.len(),
            parts,
            "one partition per worker while workers remain"
        );
    }
}

// ---- 8. deterministic key placement ------------------------------------------------------

/// Runs a keyed step at `workers` and returns, per key, the workers that emitted it (a
/// step after a keyed step runs where the key lives, so the sink partition's worker is
/// the key's worker).
fn placement(workers: usize) -> BTreeMap<u32, BTreeSet<usize>> {
    let flow = Dataflow::new("place");
    let (sink, got) = WorkerSink::new();
    recs(&flow, "inp")
        .key_on("key", |&(_, s)| s % 97)
        .stateful_map("count", |c: Option<u32>, _: Rec| {
            let c = c.unwrap_or(0) + 1;
            (Some(c), c)
        })
        .output("out", sink);
    run(&flow, workers);
    let got = std::mem::take(&mut *lock(&got));
    assert_eq!(got.len(), all_recs().len());
    let mut m: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    for (w, (k, _)) in got {
        m.entry(k).or_default().insert(w);
    }
    m
}

#[test]
fn keyed_placement_is_stable_hash_mod_workers_and_the_same_every_run() {
    for workers in [3, 4] {
        let first = placement(workers);
        assert_eq!(first.len(), 97);
        for (k, ws) in &first {
            let want = (k.stable_hash() % workers as u64) as usize;
            assert_eq!(
                ws,
                &BTreeSet::from([want]),
                "key {k} at {workers} workers: emitted on {ws:?}, its worker is {want}"
            );
        }
        let used: BTreeSet<usize> = first.values().flatten().copied().collect();
        assert_eq!(used.len(), workers, "97 keys spread over every worker");
        assert_eq!(placement(workers), first, "placement changed between runs");
    }
}

/// The keyed router reserves every worker's column for a chunk of at most one exchange
/// batch (1024 items) of its input at a time. Input batches several times that size,
/// of plain keys, fused (`key_on` columns) and as pairs, give the same per-key results
/// at 1, 2 and 8 workers as a sequential count.
#[test]
fn plain_keys_in_input_batches_larger_than_a_router_chunk() {
    let n = 20_000u64;
    let mut want: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for x in 0..n {
        let e = want.entry(x % 613).or_insert((0, 0));
        e.0 += 1;
        e.1 += x;
    }
    let want: Vec<(u64, (u64, u64))> = want.into_iter().collect();
    for workers in [1, 2, 8] {
        for batch in [3000, 9000] {
            let flow = Dataflow::new("big");
            let (fused, fused_out) = TestingSink::new();
            let (pairs, pairs_out) = TestingSink::new();
            let inp = flow.input("inp", TestingSource::new(0..n).batch_size(batch));
            inp.key_on("key", |&x: &u64| x % 613)
                .stateful_map("running", |s: Option<(u64, u64)>, x: u64| {
                    let (c, t) = s.unwrap_or((0, 0));
                    (Some((c + 1, t + x)), (x % 613, (c + 1, t + x)))
                })
                .key_rm("unkey")
                .output("fused", fused);
            inp.map("pair", |x: u64| (x % 613, x))
                .fold_final("sum", || (0u64, 0u64), |(c, t), x| (c + 1, t + x))
                .output("pairs", pairs);
            let config = RunConfig::default().pin(false);
            cluster_main_with(&flow, &[], 0, workers, &config).unwrap();
            // The running state's last value per key is its total.
            let mut last: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
            for (k, ct) in fused_out.take() {
                let e = last.entry(k).or_insert((0, 0));
                *e = (*e).max(ct);
            }
            let last: Vec<(u64, (u64, u64))> = last.into_iter().collect();
            assert_eq!(last, want, "stateful_map, -w{workers}, batches of {batch}");
            let mut folds = pairs_out.take();
            folds.sort();
            assert_eq!(folds, want, "fold_final, -w{workers}, batches of {batch}");
        }
    }
}

/// `count_final` combines counts per key before its exchange with several workers
/// (ARCHITECTURE.md, "Combining before the exchange"). In four phases: 20 000 keys
/// three times each in a row (more keys than a combiner holds, 16 384: its table fills
/// and is routed while it combines well), 5 000 keys twelve times, 300 000 keys seen
/// once (combining turns itself off, then on, then off again), and 1 000 keys 300 times
/// (combining comes back on, and the last partials leave at end of stream). Fused and
/// unfused, every count is a sequential count's, at 1, 2 and 8 workers.
#[test]
fn count_final_over_more_keys_than_a_combiner_holds() {
    let in_a_row = (0..60_000u64).map(|i| i / 3);
    let repeated = (0..60_000u64).map(|i| 1_000_000 + (i * 7919) % 5_000);
    let once = 2_000_000..2_300_000u64;
    let last = (0..300_000u64).map(|i| 3_000_000 + i % 1_000);
    let words: Vec<u64> = in_a_row.chain(repeated).chain(once).chain(last).collect();
    let mut want: BTreeMap<u64, u64> = BTreeMap::new();
    for &w in &words {
        *want.entry(w).or_default() += 1;
    }
    let want: Vec<(u64, u64)> = want.into_iter().collect();
    for workers in [1, 2, 8] {
        for fuse in [true, false] {
            let flow = Dataflow::new("many");
            let (sink, out) = TestingSink::new();
            flow.input("inp", TestingSource::new(words.clone()).batch_size(5000))
                .count_final("count", |w: u64| w)
                .output("out", sink);
            let config = RunConfig::default().pin(false).fuse(fuse);
            cluster_main_with(&flow, &[], 0, workers, &config).unwrap();
            let mut got = out.take();
            got.sort();
            // (The lists are long: name the first difference, not both lists.)
            let first = got.iter().zip(&want).find(|(g, w)| g != w);
            assert!(
                got.len() == want.len() && first.is_none(),
                "-w{workers}, fused {fuse}: {} counts where {} were due, first difference \
                 (got, wanted) {first:?}",
                got.len(),
                want.len()
            );
        }
    }
}
