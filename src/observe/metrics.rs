//! The cells the workers write and the API server reads.
//!
//! Every worker owns its cells: one [`StepCells`] per step, one [`PartCells`] per
//! partition it polls or writes, and one [`WorkerCells`] for the loop itself. Only that
//! worker writes them (a Relaxed load and store, no locked instruction), each block is
//! aligned to its own cache lines, and the server thread only reads them, so the hot
//! path shares no cache line with another writer. Counts are added once per batch,
//! never per item.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A counter with a single writer: the owning worker adds with a plain load and store.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`; only the owning thread may call this.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Sets a gauge.
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current value (any thread).
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Marks a gauge that does not apply to a step (no channel, not keyed).
pub(crate) const ABSENT: u64 = u64::MAX;

/// What one worker counts for one step.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct StepCells {
    /// Items delivered to the step (Bytewax's `item_inp_count`).
    pub(crate) items_in: Counter,
    /// Items the step emitted (Bytewax's `item_out_count`).
    pub(crate) items_out: Counter,
    /// Nanoseconds this step's exchange held the worker's inputs back (a full ring's
    /// worth of overflow to some peer), or, for an input, that it was not polled
    /// because of that.
    pub(crate) backpressured_ns: Counter,
    /// The step's input frontier (epoch), published every [`PUBLISH_EVERY`].
    pub(crate) frontier: Counter,
    /// Keys holding state on this worker (keyed steps; else [`ABSENT`]).
    pub(crate) live_keys: Counter,
    /// Messages waiting in this worker's inbound rings of the step's channel.
    pub(crate) ring_backlog: Counter,
    /// Messages in this worker's overflow queues of the step's channel.
    pub(crate) overflow_backlog: Counter,
    /// Window steps: open windows on this worker, and the furthest watermark of its
    /// keys (nanoseconds since the Unix epoch, as the bits of an `i64`).
    pub(crate) open_windows: Counter,
    pub(crate) watermark_ns: Counter,
}

impl Default for StepCells {
    fn default() -> Self {
        StepCells {
            items_in: Counter::default(),
            items_out: Counter::default(),
            backpressured_ns: Counter::default(),
            frontier: Counter::default(),
            live_keys: Counter(AtomicU64::new(ABSENT)),
            ring_backlog: Counter(AtomicU64::new(ABSENT)),
            overflow_backlog: Counter(AtomicU64::new(ABSENT)),
            open_windows: Counter(AtomicU64::new(ABSENT)),
            watermark_ns: Counter(AtomicU64::new(ABSENT)),
        }
    }
}

impl StepCells {
    /// Counts `n` items handed from one step straight into the next (fused steps,
    /// no batch between them): `from`'s items out, `to`'s items in.
    #[inline]
    pub(crate) fn hand_off(from: Option<&StepCells>, to: Option<&StepCells>, n: u64) {
        if let Some(c) = from {
            c.items_out.add(n);
        }
        if let Some(c) = to {
            c.items_in.add(n);
        }
    }
}

/// How often a worker publishes its gauges (frontiers, backlogs, keys).
pub(crate) const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// What a worker's scheduling rounds were doing, in nanoseconds (Flink's busy, idle
/// and backpressured time, plus parked: asleep until woken or a deadline).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LoopTime {
    /// Rounds that moved data.
    pub(crate) busy_ns: Counter,
    /// Rounds that found nothing to do (spinning or yielding).
    pub(crate) idle_ns: Counter,
    /// Time parked, and the idle round before it.
    pub(crate) parked_ns: Counter,
    /// Rounds in which inputs were held back by a backlogged exchange.
    pub(crate) backpressured_ns: Counter,
    /// Scheduling rounds.
    pub(crate) rounds: Counter,
    /// The worker's epoch.
    pub(crate) epoch: Counter,
}

/// The step a worker is running now, for the sampler (its own cache line: written on
/// every step switch).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Current(pub(crate) AtomicUsize);

/// Not in any step (the worker loop itself, or parked).
pub(crate) const NO_STEP: usize = usize::MAX;

/// One worker's cells.
#[derive(Debug)]
pub(crate) struct WorkerCells {
    /// The worker's global index.
    pub(crate) index: usize,
    /// One per step of the flow, by step index; each its own allocation.
    pub(crate) steps: Vec<Arc<StepCells>>,
    pub(crate) time: LoopTime,
    pub(crate) current: Current,
    /// The partitions this worker polls or writes (registered while it builds).
    pub(crate) parts: Mutex<Vec<Arc<PartCells>>>,
}

impl WorkerCells {
    pub(crate) fn new(index: usize, steps: usize) -> Self {
        WorkerCells {
            index,
            steps: (0..steps).map(|_| Arc::default()).collect(),
            time: LoopTime::default(),
            current: Current(AtomicUsize::new(NO_STEP)),
            parts: Mutex::default(),
        }
    }

    /// Registers a partition of step `step`; its cells are returned to the builder.
    pub(crate) fn add_part(&self, step: usize, part: &str, input: bool) -> Arc<PartCells> {
        let cells = Arc::new(PartCells {
            step,
            part: part.to_string(),
            input,
            duration: Histogram::new(DURATION_BOUNDS_NS),
            size: Histogram::new(SIZE_BOUNDS),
        });
        self.parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(cells.clone());
        cells
    }
}

/// Upper bounds of the duration buckets, in nanoseconds: Bytewax's (OpenTelemetry's
/// defaults, 0.5 ms to 10 s) below which come 1 µs, 10 µs and 100 µs, since a batch
/// here usually takes microseconds.
pub(crate) const DURATION_BOUNDS_NS: &[u64] = &[
    0,
    1_000,
    10_000,
    100_000,
    500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    75_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    750_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    7_500_000_000,
    10_000_000_000,
];

/// Upper bounds of the batch size buckets (Bytewax's).
pub(crate) const SIZE_BOUNDS: &[u64] = &[
    0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000,
];

/// A histogram with fixed buckets and a single writer, as Prometheus expects one:
/// per-bucket counts (made cumulative when rendered), a sum and a count.
#[derive(Debug)]
pub(crate) struct Histogram {
    pub(crate) bounds: &'static [u64],
    /// One per bound, then `+Inf`.
    pub(crate) buckets: Vec<Counter>,
    pub(crate) sum: Counter,
    pub(crate) count: Counter,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| Counter::default()).collect(),
            sum: Counter::default(),
            count: Counter::default(),
        }
    }

    /// Records `v`; only the owning worker may call this.
    #[inline]
    pub(crate) fn record(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.buckets[i].add(1);
        self.sum.add(v);
        self.count.add(1);
    }
}

/// One partition's histograms: `next_batch` durations and sizes for an input,
/// `write_batch` durations for an output.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct PartCells {
    pub(crate) step: usize,
    pub(crate) part: String,
    pub(crate) input: bool,
    pub(crate) duration: Histogram,
    pub(crate) size: Histogram,
}

/// The worker's clock as of the start of its current round (set by the loop; free to
/// read), for deciding which batches to time.
pub(crate) type RoundClock = std::rc::Rc<std::cell::Cell<std::time::Instant>>;

/// Times at most one batch per [`TIME_EVERY`] per partition: two clock reads per batch
/// would cost `bench_pipe` about 12% (its batches take about 1 µs), one per
/// millisecond costs nothing measurable. A partition that polls or writes less often
/// has every batch timed, as Bytewax does.
pub(crate) const TIME_EVERY: std::time::Duration = std::time::Duration::from_millis(1);

/// A partition's cells on its worker, with when it may next time a batch.
#[derive(Debug)]
pub(crate) struct PartTimer {
    pub(crate) cells: Arc<PartCells>,
    clock: RoundClock,
    next: std::cell::Cell<std::time::Instant>,
}

impl PartTimer {
    pub(crate) fn new(cells: Arc<PartCells>, clock: RoundClock) -> Self {
        let next = std::cell::Cell::new(clock.get());
        PartTimer { cells, clock, next }
    }

    /// Whether to time this batch.
    #[inline]
    pub(crate) fn due(&self) -> bool {
        let now = self.clock.get();
        if now < self.next.get() {
            return false;
        }
        self.next.set(now + TIME_EVERY);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::new(SIZE_BOUNDS);
        for v in [0, 1, 5, 6, 10_000, 10_001] {
            h.record(v);
        }
        let counts: Vec<u64> = h.buckets.iter().map(Counter::get).collect();
        assert_eq!(counts[0], 1, "0 is in le=0");
        assert_eq!(counts[1], 2, "1 and 5 are in le=5");
        assert_eq!(counts[2], 1, "6 is in le=10");
        assert_eq!(counts[SIZE_BOUNDS.len() - 1], 1, "10000 is in le=10000");
        assert_eq!(counts[SIZE_BOUNDS.len()], 1, "10001 is in +Inf");
        assert_eq!((h.count.get(), h.sum.get()), (6, 20_013));
    }
}
