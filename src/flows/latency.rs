//! Round-trip latency of a flow under open-loop load: the library side of the
//! `waxfast-latency` tool, usable on your own steps.
//!
//! A timed source on every worker emits [`Probe`]s at a fixed offered rate, each stamped
//! with the time it was *due* to be sent (not the time it was sent); your steps run on
//! them; the harness then routes every probe back to the worker that sent it, where a
//! sink records `arrival - due` in an HdrHistogram. Both timestamps are taken on the same
//! worker thread, so clock differences between cores never enter.
//!
//! Stamping the due time is what corrects for coordinated omission: when a worker stalls,
//! the source does not wait for it; the probes that fell due during the stall are sent
//! late, all at once, and each is charged the whole wait, as a real client's requests
//! would be. (The load generator runs inside the flow, so it takes no core of its own.)
//!
//! ```
//! use std::time::Duration;
//! use waxfast::RunConfig;
//! use waxfast::flows::latency::{measure, LoadConfig, Probe};
//!
//! // Your own steps between the timed source and the sink: here a keyed count.
//! let load = LoadConfig::new(20_000.0)
//!     .duration(Duration::from_millis(200))
//!     .warmup(Duration::from_millis(50));
//! let report = measure("mine", &load, 2, &RunConfig::default(), |i| i, |probes| {
//!     probes
//!         .key_on("key", |p: &Probe<u64>| p.payload % 16)
//!         .stateful_map("count", |n: Option<u64>, p: Probe<u64>| {
//!             let n = n.unwrap_or(0) + 1;
//!             (Some(n), p.map(|_| n))
//!         })
//!         .key_rm("unkey")
//! })
//! .unwrap();
//! assert!(report.count() > 0);
//! println!("p99 = {:?}", report.quantile(0.99));
//! ```
//!
//! The probes your steps return must be the ones they were given (with any payload):
//! the stamp and the origin worker travel in the probe. A step that drops probes (a
//! filter, a window that has not closed) simply records fewer; a step that holds them
//! (a window) records how long it held them.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::dataflow::{Dataflow, Stream};
use crate::error::{BoxError, Result};
use crate::io::{
    DynamicSink, DynamicSource, Sink, SinkKind, Source, SourceKind, SourceStatus,
    StatelessSinkPartition, StatelessSourcePartition,
};
use crate::runtime::push::{Data, Push, PushFn, Tee};
use crate::runtime::{cluster_main_with, RunConfig};

/// Most probes a source partition emits per batch (the rest wait for the next round).
const MAX_BATCH: usize = 1024;
/// Highest latency the histogram tracks; larger values are clamped to it.
const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// One timed record: the payload, when it was due to be sent, and which worker sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe<T> {
    /// Nanoseconds from the start of the run to the time this probe was due.
    pub due_ns: u64,
    /// The worker whose source sent it (and to which the harness returns it).
    pub origin: u32,
    /// Your data.
    pub payload: T,
}

impl<T> Probe<T> {
    /// The same probe (stamp and origin) with its payload mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Probe<U> {
        Probe {
            due_ns: self.due_ns,
            origin: self.origin,
            payload: f(self.payload),
        }
    }
}

/// The offered load: a fixed rate for a fixed time, after a warm-up whose probes are
/// not recorded.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    rate: f64,
    duration: Duration,
    warmup: Duration,
}

impl LoadConfig {
    /// `rate` probes per second in total, spread evenly over the workers (default 5 s
    /// measured after a 1 s warm-up).
    pub fn new(rate: f64) -> Self {
        LoadConfig {
            rate,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
        }
    }

    /// How long probes are recorded.
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = d;
        self
    }

    /// How long probes are sent, but not recorded, before the measured period.
    pub fn warmup(mut self, d: Duration) -> Self {
        self.warmup = d;
        self
    }

    /// The offered rate in probes per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// What the source and sink share, and the run's result once the sinks close.
#[derive(Debug)]
struct Shared {
    load: LoadConfig,
    start: OnceLock<Instant>,
    histogram: Mutex<Histogram<u64>>,
    sent: std::sync::atomic::AtomicU64,
    workers: std::sync::atomic::AtomicUsize,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).expect("valid fixed bounds")
}

/// Collects a latency flow's measurements; read it with [`report`](Self::report) after
/// the flow has run.
#[derive(Debug, Clone)]
pub struct Recorder(Arc<Shared>);

impl Recorder {
    /// The measurements of the completed run.
    pub fn report(&self) -> LatencyReport {
        let h = self
            .0
            .histogram
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        LatencyReport {
            workers: self.0.workers.load(std::sync::atomic::Ordering::Relaxed),
            offered_rate: self.0.load.rate,
            duration: self.0.load.duration,
            sent: self.0.sent.load(std::sync::atomic::Ordering::Relaxed),
            histogram: h,
        }
    }
}

/// Builds a latency flow around `body`: a timed source of `Probe { payload: make(i) }`
/// on every worker, `body`'s steps, a step returning every probe to its origin worker
/// (`return`), and the recording sink. Run the flow with any entry point, then read the
/// [`Recorder`].
pub fn latency_flow<T: crate::ExchangeData, U: crate::ExchangeData>(
    name: &str,
    load: &LoadConfig,
    make: impl Fn(u64) -> T + Send + Sync + 'static,
    body: impl FnOnce(Stream<Probe<T>>) -> Stream<Probe<U>>,
) -> (Dataflow, Recorder) {
    let shared = Arc::new(Shared {
        load: load.clone(),
        start: OnceLock::new(),
        histogram: Mutex::new(new_histogram()),
        sent: Default::default(),
        workers: Default::default(),
    });
    let flow = Dataflow::new(name);
    let probes = flow.input(
        "probes",
        TimedSource {
            shared: shared.clone(),
            make: Arc::new(make),
        },
    );
    route(&body(probes), "return", |p: &Probe<U>, _| p.origin as usize).output(
        "record",
        RecordingSink {
            shared: shared.clone(),
            _t: std::marker::PhantomData,
        },
    );
    (flow, Recorder(shared))
}

/// Builds a [`latency_flow`] and runs it on `workers` worker threads with `config`
/// (pinning, spinning), returning its report.
pub fn measure<T: crate::ExchangeData, U: crate::ExchangeData>(
    name: &str,
    load: &LoadConfig,
    workers: usize,
    config: &RunConfig,
    make: impl Fn(u64) -> T + Send + Sync + 'static,
    body: impl FnOnce(Stream<Probe<T>>) -> Stream<Probe<U>>,
) -> Result<LatencyReport> {
    measure_in(name, load, (&[], 0), workers, config, make, body)
}

/// [`measure`] as process `proc_id` of a cluster of `addresses` (each process runs
/// `workers` workers and reports the probes its own workers sent; `&[]` for one
/// process).
pub fn measure_in<T: crate::ExchangeData, U: crate::ExchangeData>(
    name: &str,
    load: &LoadConfig,
    (addresses, proc_id): (&[String], usize),
    workers: usize,
    config: &RunConfig,
    make: impl Fn(u64) -> T + Send + Sync + 'static,
    body: impl FnOnce(Stream<Probe<T>>) -> Stream<Probe<U>>,
) -> Result<LatencyReport> {
    let (flow, recorder) = latency_flow(name, load, make, body);
    cluster_main_with(&flow, addresses, proc_id, workers, config)?;
    Ok(recorder.report())
}

/// The built-in body of `waxfast-latency`: `hops` exchange steps, hop `k` sending each
/// probe to worker `(origin + k) % workers`. With 2 workers and 1 hop, a probe crosses
/// to the other worker and (through the harness's `return` step) back: one round trip.
pub fn hops<T: crate::ExchangeData>(
    hops: usize,
) -> impl FnOnce(Stream<Probe<T>>) -> Stream<Probe<T>> {
    move |mut s| {
        for k in 1..=hops {
            s = route(&s, &format!("hop{k}"), move |p: &Probe<T>, workers| {
                (p.origin as usize + k) % workers
            });
        }
        s
    }
}

/// Sends each item to worker `to(item, worker_count)` (which must be below the worker
/// count) through an exchange channel; with one worker it passes items through.
pub fn route<T: crate::ExchangeData>(
    stream: &Stream<T>,
    step: &str,
    to: impl Fn(&T, usize) -> usize + Send + Sync + 'static,
) -> Stream<T> {
    let chan = stream.new_channel::<Vec<T>>();
    let to = Arc::new(to);
    stream.unary(step, "route", move |ctx, inp, out| {
        let mut tee: Tee<T> = ctx.take_tee(out);
        let target: std::rc::Rc<std::cell::RefCell<dyn Push<T>>> =
            std::rc::Rc::new(std::cell::RefCell::new(PushFn(
                move |epoch, batch: &mut Vec<T>| tee.push(epoch, batch),
            )));
        let (to, n) = (to.clone(), ctx.worker_count());
        ctx.exchange(inp, chan, move |item: &T| to(item, n), target);
        Ok(())
    })
}

// ---- the timed source ----------------------------------------------------------------

struct TimedSource<F> {
    shared: Arc<Shared>,
    make: Arc<F>,
}

struct TimedPart<F> {
    start: Instant,
    /// Probes this worker sends, due every `interval_ns` from `offset_ns`.
    interval_ns: f64,
    offset_ns: f64,
    next: u64,
    end_ns: u64,
    origin: u32,
    shared: Arc<Shared>,
    make: Arc<F>,
}

impl<F> TimedPart<F> {
    fn due_ns(&self, i: u64) -> u64 {
        (self.offset_ns + i as f64 * self.interval_ns) as u64
    }
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> DynamicSource for TimedSource<F> {
    type Item = Probe<T>;
    type Part = TimedPart<F>;
    fn build(&self, _step_id: &str, worker: usize, workers: usize) -> Result<Self::Part, BoxError> {
        let load = &self.shared.load;
        if !(load.rate.is_finite() && load.rate > 0.0) {
            return Err(format!("the offered rate must be above 0, got {}", load.rate).into());
        }
        self.shared
            .workers
            .store(workers, std::sync::atomic::Ordering::Relaxed);
        // Each worker sends rate/W probes per second, the workers staggered evenly.
        let interval_ns = 1e9 * workers as f64 / load.rate;
        Ok(TimedPart {
            start: *self.shared.start.get_or_init(Instant::now),
            interval_ns,
            offset_ns: interval_ns * worker as f64 / workers as f64,
            next: 0,
            end_ns: (load.warmup + load.duration).as_nanos() as u64,
            origin: worker as u32,
            shared: self.shared.clone(),
            make: self.make.clone(),
        })
    }
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> StatelessSourcePartition for TimedPart<F> {
    type Item = Probe<T>;
    fn next_batch(&mut self, batch: &mut Vec<Probe<T>>) -> Result<SourceStatus, BoxError> {
        let now_ns = self.start.elapsed().as_nanos() as u64;
        let first = self.next;
        while batch.len() < MAX_BATCH {
            let due = self.due_ns(self.next);
            if due >= self.end_ns {
                self.count(first);
                return Ok(SourceStatus::Eof);
            }
            if due > now_ns {
                break;
            }
            batch.push(Probe {
                due_ns: due,
                origin: self.origin,
                payload: (self.make)(self.next),
            });
            self.next += 1;
        }
        self.count(first);
        Ok(SourceStatus::Active)
    }

    fn next_awake(&self) -> Option<Instant> {
        Some(self.start + Duration::from_nanos(self.due_ns(self.next)))
    }
}

impl<F> TimedPart<F> {
    fn count(&self, first: u64) {
        self.shared
            .sent
            .fetch_add(self.next - first, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> Source<Probe<T>> for TimedSource<F> {
    fn into_kind(self) -> SourceKind<Probe<T>> {
        SourceKind::dynamic(self)
    }
}

// ---- the recording sink --------------------------------------------------------------

struct RecordingSink<T> {
    shared: Arc<Shared>,
    _t: std::marker::PhantomData<fn(T)>,
}

struct RecordingPart<T> {
    shared: Arc<Shared>,
    worker: u32,
    start: Instant,
    warmup_ns: u64,
    histogram: Histogram<u64>,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Data> DynamicSink for RecordingSink<T> {
    type Item = Probe<T>;
    type Part = RecordingPart<T>;
    fn build(
        &self,
        _step_id: &str,
        worker: usize,
        _workers: usize,
    ) -> Result<Self::Part, BoxError> {
        Ok(RecordingPart {
            shared: self.shared.clone(),
            worker: worker as u32,
            start: *self.shared.start.get_or_init(Instant::now),
            warmup_ns: self.shared.load.warmup.as_nanos() as u64,
            histogram: new_histogram(),
            _t: std::marker::PhantomData,
        })
    }
}

impl<T: Data> StatelessSinkPartition for RecordingPart<T> {
    type Item = Probe<T>;
    fn write_batch(&mut self, items: &mut Vec<Probe<T>>) -> Result<(), BoxError> {
        // One clock read per batch: every probe in it arrived now.
        let now_ns = self.start.elapsed().as_nanos() as u64;
        for p in items.drain(..) {
            if p.origin != self.worker {
                return Err(format!(
                    "probe from worker {} arrived at worker {}: the harness's return step must route it home",
                    p.origin, self.worker
                )
                .into());
            }
            if p.due_ns >= self.warmup_ns {
                self.histogram
                    .saturating_record(now_ns.saturating_sub(p.due_ns).max(1));
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), BoxError> {
        let mut all = self
            .shared
            .histogram
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        all.add(&self.histogram)
            .map_err(|e| format!("merging histograms: {e:?}"))?;
        Ok(())
    }
}

impl<T: Data> Sink<Probe<T>> for RecordingSink<T> {
    fn into_kind(self) -> SinkKind<Probe<T>> {
        SinkKind::dynamic(self)
    }
}

// ---- the report ----------------------------------------------------------------------

/// The latency distribution of one run, in nanoseconds.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    /// Worker threads.
    pub workers: usize,
    /// Offered probes per second (all workers).
    pub offered_rate: f64,
    /// The measured period.
    pub duration: Duration,
    /// Probes sent, warm-up included.
    pub sent: u64,
    histogram: Histogram<u64>,
}

/// The percentiles every report prints.
pub const PERCENTILES: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 99.99];

/// This machine's latency floor under `load`, for comparison with [`measure`]: `workers`
/// threads (pinned to cores `0..workers` like the runtime's workers when `pin`), each
/// spinning on the clock, with its share of the probes due at fixed intervals. A probe
/// is "handled" at the first clock read at or after it is due, so the histogram is the
/// latency an engine that costs nothing would see on these cores, with coordinated
/// omission corrected the same way: a thread that the hypervisor or the kernel stops
/// for 2 ms charges every probe due in those 2 ms. No engine can beat its percentiles
/// on the same machine.
pub fn machine_floor(workers: usize, load: &LoadConfig, pin: bool) -> LatencyReport {
    let workers = workers.max(1);
    let interval = Duration::from_secs_f64(workers as f64 / load.rate);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let start = Instant::now() + Duration::from_millis(10);
    let (measured_from, end) = (start + load.warmup, start + load.warmup + load.duration);
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let core = cores.get(w % cores.len().max(1)).copied().filter(|_| pin);
            std::thread::spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let mut h = new_histogram();
                // Each thread's probes are offset by its share of the interval, as the
                // sources' are.
                let mut due = start + interval.mul_f64(w as f64 / workers as f64);
                let mut sent = 0u64;
                loop {
                    let now = Instant::now();
                    while due <= now && due < end {
                        if due >= measured_from {
                            let ns = now.duration_since(due).as_nanos() as u64;
                            h.saturating_record(ns.clamp(1, MAX_TRACKED_NS));
                        }
                        sent += 1;
                        due += interval;
                    }
                    if due >= end {
                        return (h, sent);
                    }
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut histogram = new_histogram();
    let mut sent = 0;
    for t in threads {
        let (h, n) = t.join().expect("a floor thread does not panic");
        histogram.add(h).expect("same bounds");
        sent += n;
    }
    LatencyReport {
        workers,
        offered_rate: load.rate,
        duration: load.duration,
        sent,
        histogram,
    }
}

/// The round-trip floor of one exchange hop between two threads on this machine, for
/// comparison with `measure(.., 2 workers, hops(1))`: two threads (pinned to cores 0
/// and 1 when `pin`) joined by two rtrb rings, each sending its half of the probes to
/// the other at their due times, echoing the other's probes straight back, and
/// recording `arrival - due` for its own: the same open-loop schedule and
/// coordinated-omission correction as [`measure`], with nothing but a ring in between.
pub fn ring_floor(load: &LoadConfig, pin: bool) -> LatencyReport {
    /// A probe's due time, going out (`false`) or echoed back (`true`).
    type Msg = (bool, Instant);
    let interval = Duration::from_secs_f64(2.0 / load.rate);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let start = Instant::now() + Duration::from_millis(10);
    let (measured_from, end) = (start + load.warmup, start + load.warmup + load.duration);
    // Threads whose own probes have all come back; each keeps echoing until both have.
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (a_tx, a_rx) = rtrb::RingBuffer::<Msg>::new(1024);
    let (b_tx, b_rx) = rtrb::RingBuffer::<Msg>::new(1024);
    let threads: Vec<_> = [(0usize, a_tx, b_rx), (1, b_tx, a_rx)]
        .into_iter()
        .map(|(w, mut tx, mut rx)| {
            let core = cores.get(w % cores.len().max(1)).copied().filter(|_| pin);
            let finished = finished.clone();
            std::thread::spawn(move || {
                use std::sync::atomic::Ordering::{AcqRel, Acquire};
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let mut h = new_histogram();
                let mut due = start + interval.mul_f64(w as f64 / 2.0);
                let (mut sent, mut back, mut done) = (0u64, 0u64, false);
                loop {
                    let now = Instant::now();
                    while due <= now && due < end {
                        // A full ring (1024 probes in flight) waits like a full exchange.
                        while tx.push((false, due)).is_err() {
                            std::hint::spin_loop();
                        }
                        sent += 1;
                        due += interval;
                    }
                    while let Ok((echo, d)) = rx.pop() {
                        if echo {
                            back += 1;
                            if d >= measured_from {
                                let ns = Instant::now().duration_since(d).as_nanos() as u64;
                                h.saturating_record(ns.clamp(1, MAX_TRACKED_NS));
                            }
                        } else {
                            while tx.push((true, d)).is_err() {
                                std::hint::spin_loop();
                            }
                        }
                    }
                    if !done && due >= end && back == sent {
                        done = true;
                        finished.fetch_add(1, AcqRel);
                    }
                    if done && finished.load(Acquire) == 2 {
                        return (h, sent);
                    }
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut histogram = new_histogram();
    let mut sent = 0;
    for t in threads {
        let (h, n) = t.join().expect("a floor thread does not panic");
        histogram.add(h).expect("same bounds");
        sent += n;
    }
    LatencyReport {
        workers: 2,
        offered_rate: load.rate,
        duration: load.duration,
        sent,
        histogram,
    }
}

impl LatencyReport {
    /// The recorded round trips, in nanoseconds.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// Probes recorded (sent after the warm-up and returned).
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at quantile `q` (0.0 ..= 1.0).
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.histogram.value_at_quantile(q))
    }

    /// The largest latency recorded.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.histogram.max())
    }

    /// Probes recorded per second of the measured period.
    pub fn achieved_rate(&self) -> f64 {
        self.count() as f64 / self.duration.as_secs_f64()
    }

    /// One `key=value` line: rate, count, p50 .. p99.99 and max in microseconds.
    pub fn summary_line(&self) -> String {
        let mut s = format!(
            "workers={} offered_per_sec={:.0} achieved_per_sec={:.0} count={}",
            self.workers,
            self.offered_rate,
            self.achieved_rate(),
            self.count()
        );
        for p in PERCENTILES {
            s.push_str(&format!(
                " p{}_us={:.3}",
                p,
                self.histogram.value_at_percentile(p) as f64 / 1e3
            ));
        }
        s.push_str(&format!(" max_us={:.3}", self.histogram.max() as f64 / 1e3));
        s
    }

    /// Writes the distribution in HdrHistogram's percentile-distribution text format
    /// (`.hgrm`, as `outputPercentileDistribution` prints it), values in microseconds.
    pub fn write_hgrm(&self, out: &mut impl Write) -> std::io::Result<()> {
        write_hgrm(&self.histogram, 1e3, out)
    }
}

/// Writes `h` in `.hgrm` text format, values divided by `scale` (1e3: ns to us), with 5
/// percentile ticks per half distance, as HdrHistogram's Java and C versions do.
pub fn write_hgrm(h: &Histogram<u64>, scale: f64, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = h.highest_equivalent(v.value_iterated_to()) as f64 / scale;
        if q < 1.0 {
            writeln!(
                out,
                "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(out, "{value:>12.3} {q:>2.12} {total:>10}")?;
        }
    }
    writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / scale,
        h.stdev() / scale
    )?;
    writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / scale,
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        // The sub-bucket count HdrHistogram derives from the significant digits.
        (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> LoadConfig {
        LoadConfig::new(20_000.0)
            .duration(Duration::from_millis(100))
            .warmup(Duration::from_millis(20))
    }

    #[test]
    fn probes_return_to_their_origin_through_every_hop() {
        // The recording sink fails the run if a probe reaches the wrong worker.
        for workers in [1, 2, 3] {
            let r = measure(
                "t",
                &quick(),
                workers,
                &RunConfig::default().pin(false),
                |i| i,
                hops::<u64>(2),
            )
            .unwrap();
            assert_eq!(r.workers, workers);
            assert!(r.count() > 0 && r.count() <= r.sent, "{r:?}");
        }
    }

    #[test]
    fn floors_record_every_probe_due_in_the_measured_period() {
        // 20 000/s for 100 ms after a 20 ms warm-up: 2 000 probes over all threads, one
        // more or less per thread at the period's edges, however slowly the threads run.
        let load = quick();
        for r in [machine_floor(2, &load, false), ring_floor(&load, false)] {
            assert!((1998..=2002).contains(&r.count()), "{}", r.summary_line());
            assert!((2398..=2402).contains(&r.sent), "{}", r.summary_line());
            assert!(r.histogram().min() >= 1);
        }
        assert_eq!(machine_floor(3, &load, false).workers, 3);
    }

    #[test]
    fn hgrm_has_the_header_rows_and_footer_of_the_format() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let mut out = Vec::new();
        write_hgrm(&h, 1e3, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert!(lines[2].starts_with("       1.000 0.000000000000          1"));
        let last_row = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        assert!(last_row.contains("1.000000000000       1000"), "{last_row}");
        assert!(text.contains("#[Max     =     1000.447, Total count    =         1000]"));
        assert!(text.ends_with("SubBuckets     =         2048]\n"));
    }
}
