//! Benchmark flows: each generates its input inside a source partitioned over the
//! workers (so no load generator steals a core), ends in a counting sink, and prints one
//! summary line on stderr when the last worker finishes:
//!
//! `bench_wordcount: records=5000000 workers=2 seconds=0.412 records_per_sec=12131000 peak_rss_kb=9120`

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::dataflow::Dataflow;
use crate::error::BoxError;
use crate::io::{
    DynamicSink, DynamicSource, Sink, SinkKind, Source, SourceKind, SourceStatus,
    StatelessSinkPartition, StatelessSourcePartition,
};
use crate::runtime::push::Data;

/// Items a generator partition emits per batch.
pub(super) const GEN_BATCH: usize = 1024;

/// Shared by a benchmark's source and sink: when it started and how much arrived.
#[derive(Debug)]
pub(super) struct Stats {
    name: &'static str,
    records: u64,
    pub(super) started: OnceLock<Instant>,
    received: AtomicU64,
    /// Sink partitions built and closed in this process: the last to close reports
    /// (every local partition is built before any closes, since closing needs every
    /// worker's end of stream).
    built: AtomicUsize,
    closed: AtomicUsize,
}

impl Stats {
    pub(super) fn new(name: &'static str, records: u64) -> Arc<Stats> {
        Arc::new(Stats {
            name,
            records,
            started: OnceLock::new(),
            received: AtomicU64::new(0),
            built: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
        })
    }

    fn report(&self, workers: usize) {
        let secs = self
            .started
            .get()
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        let rate = if secs > 0.0 {
            self.records as f64 / secs
        } else {
            0.0
        };
        eprintln!(
            "{}: records={} workers={} seconds={:.4} records_per_sec={:.0} outputs={} peak_rss_kb={}",
            self.name,
            self.records,
            workers,
            secs,
            rate,
            self.received.load(Ordering::Relaxed),
            peak_rss_kb().map_or("unknown".to_string(), |k| k.to_string())
        );
    }
}

/// This process's peak resident set size (Linux `VmHWM`).
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A source whose worker `w` of `n` emits `make(i)` for `i` in its share of `0..records`.
struct Generator<F> {
    stats: Arc<Stats>,
    make: Arc<F>,
}

struct GenPart<F> {
    next: u64,
    end: u64,
    make: Arc<F>,
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> DynamicSource for Generator<F> {
    type Item = T;
    type Part = GenPart<F>;
    fn build(&self, _step_id: &str, worker: usize, workers: usize) -> Result<GenPart<F>, BoxError> {
        self.stats.started.get_or_init(Instant::now);
        let n = self.stats.records;
        let share = |w: usize| n * w as u64 / workers as u64;
        Ok(GenPart {
            next: share(worker),
            end: share(worker + 1),
            make: self.make.clone(),
        })
    }
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> StatelessSourcePartition for GenPart<F> {
    type Item = T;
    fn next_batch(&mut self, batch: &mut Vec<T>) -> Result<SourceStatus, BoxError> {
        let stop = (self.next + GEN_BATCH as u64).min(self.end);
        batch.extend((self.next..stop).map(|i| (self.make)(i)));
        self.next = stop;
        Ok(if stop == self.end {
            SourceStatus::Eof
        } else {
            SourceStatus::Active
        })
    }
}

impl<T: Data, F: Fn(u64) -> T + Send + Sync + 'static> Source<T> for Generator<F> {
    fn into_kind(self) -> SourceKind<T> {
        SourceKind::dynamic(self)
    }
}

/// Counts what reaches it; the last worker to close prints the summary.
struct CountingSink<T> {
    stats: Arc<Stats>,
    _t: std::marker::PhantomData<fn(T)>,
}

struct CountingPart<T> {
    stats: Arc<Stats>,
    workers: usize,
    count: u64,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Data> DynamicSink for CountingSink<T> {
    type Item = T;
    type Part = CountingPart<T>;
    fn build(
        &self,
        _step_id: &str,
        _worker: usize,
        workers: usize,
    ) -> Result<CountingPart<T>, BoxError> {
        self.stats.built.fetch_add(1, Ordering::AcqRel);
        Ok(CountingPart {
            stats: self.stats.clone(),
            workers,
            count: 0,
            _t: std::marker::PhantomData,
        })
    }
}

impl<T: Data> StatelessSinkPartition for CountingPart<T> {
    type Item = T;
    fn write_batch(&mut self, items: &mut Vec<T>) -> Result<(), BoxError> {
        self.count += items.len() as u64;
        items.clear();
        Ok(())
    }
    fn close(&mut self) -> Result<(), BoxError> {
        self.stats.received.fetch_add(self.count, Ordering::Relaxed);
        if self.stats.closed.fetch_add(1, Ordering::AcqRel) + 1
            == self.stats.built.load(Ordering::Acquire)
        {
            self.stats.report(self.workers);
        }
        Ok(())
    }
}

impl<T: Data> Sink<T> for CountingSink<T> {
    fn into_kind(self) -> SinkKind<T> {
        SinkKind::dynamic(self)
    }
}

pub(super) fn counting<T: Data>(stats: &Arc<Stats>) -> impl Sink<T> {
    CountingSink {
        stats: stats.clone(),
        _t: std::marker::PhantomData,
    }
}

fn generator<T, F: Fn(u64) -> T>(stats: &Arc<Stats>, make: F) -> Generator<F> {
    Generator {
        stats: stats.clone(),
        make: Arc::new(make),
    }
}

pub(super) fn parse_args(
    args: Option<&str>,
    usage: &str,
    defaults: &[u64],
) -> Result<Vec<u64>, String> {
    let mut vals = defaults.to_vec();
    if let Some(a) = args.filter(|a| !a.is_empty()) {
        for (i, part) in a.split(',').enumerate() {
            let slot = vals
                .get_mut(i)
                .ok_or_else(|| format!("too many arguments; usage: {usage}"))?;
            *slot = part
                .trim()
                .parse()
                .map_err(|_| format!("{part:?} is not a whole number; usage: {usage}"))?;
        }
    }
    Ok(vals)
}

/// `bench_pipe:N`: map + filter over N generated u64 (operator overhead per record).
pub fn bench_pipe(args: Option<&str>) -> Result<Dataflow, String> {
    let v = parse_args(args, "bench_pipe:N", &[100_000_000])?;
    let stats = Stats::new("bench_pipe", v[0]);
    let flow = Dataflow::new("bench_pipe");
    flow.input("inp", generator(&stats, |i| i))
        .map("map", |x: u64| x.wrapping_mul(3).wrapping_add(1))
        .filter("filter", |x| x % 7 != 0)
        .output("out", counting(&stats));
    Ok(flow)
}

/// `bench_wordcount:N,K`: N words `w{(i*7919) % K}` counted with `count_final` (string
/// keys through the exchange).
pub fn bench_wordcount(args: Option<&str>) -> Result<Dataflow, String> {
    let v = parse_args(args, "bench_wordcount:N,K", &[5_000_000, 10_000])?;
    let (n, k) = (v[0], v[1].max(1));
    let stats = Stats::new("bench_wordcount", n);
    let flow = Dataflow::new("bench_wordcount");
    flow.input(
        "inp",
        generator(&stats, move |i| format!("w{}", (i * 7919) % k)),
    )
    .count_final("count", |w: String| w)
    .output("out", counting(&stats));
    Ok(flow)
}

/// A fixed-layout record of `N` bytes for the exchange benchmark: plain data
/// ([`crate::register_plain`]), so a batch crosses processes as one block of bytes.
#[derive(
    Debug,
    Clone,
    Copy,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(transparent)]
pub struct Record<const N: usize>(pub [u8; N]);

// Where a record goes through serde (a sink's, or without `register_plain`), it is its
// raw bytes (serde's derive does not cover arrays of any length).
impl<const N: usize> serde::Serialize for Record<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de, const N: usize> serde::Deserialize<'de> for Record<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes<const N: usize>;
        impl<const N: usize> serde::de::Visitor<'_> for Bytes<N> {
            type Value = Record<N>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{N} bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Record<N>, E> {
                v.try_into()
                    .map(Record)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(Bytes::<N>)
    }
}

/// `bench_exchange:N,BYTES[,READ]`: N fixed-layout (plain) records of 16 or 64 bytes
/// through `redistribute` (round robin: with W workers, (W-1)/W of them cross to another
/// worker). With `READ` 1, a step after the exchange reads every byte of every record
/// (the counting sink alone reads none: between threads a batch then crosses without
/// its bytes ever moving to the receiver's core).
pub fn bench_exchange(args: Option<&str>) -> Result<Dataflow, String> {
    let v = parse_args(args, "bench_exchange:N,BYTES[,READ]", &[50_000_000, 16, 0])?;
    let flow = Dataflow::new("bench_exchange");
    let stats = Stats::new("bench_exchange", v[0]);
    let read = match v[2] {
        0 => false,
        1 => true,
        r => return Err(format!("READ must be 0 or 1, got {r}")),
    };
    match v[1] {
        16 => exchange_records::<16>(&flow, &stats, read),
        64 => exchange_records::<64>(&flow, &stats, read),
        b => return Err(format!("BYTES must be 16 or 64, got {b}")),
    }
    Ok(flow)
}

/// `bench_exchange`'s steps for records of `N` bytes (the first 8 the record's number).
fn exchange_records<const N: usize>(flow: &Dataflow, stats: &Arc<Stats>, read: bool) {
    crate::register_plain::<Record<N>>();
    let exchanged = flow
        .input(
            "inp",
            generator(stats, |i| {
                let mut r = [0u8; N];
                r[..8].copy_from_slice(&i.to_le_bytes());
                Record::<N>(r)
            }),
        )
        .redistribute("exchange");
    let exchanged = if read {
        exchanged.filter("read", |r: &Record<N>| {
            std::hint::black_box(r.0.iter().fold(0u8, |a, &b| a.wrapping_add(b)));
            true
        })
    } else {
        exchanged
    };
    exchanged.output("out", counting(stats));
}

/// Events per tumbling window in [`bench_window_fold`].
pub const WINDOW_FOLD_EVENTS: u64 = 1_000_000;

/// `bench_window_fold:N,K`: N events over K keys (`(i*7919) % K`), event time `i`,
/// counted per key and tumbling window of [`WINDOW_FOLD_EVENTS`] event-time units with
/// `fold_final` keyed on `(key, window)`.
///
/// A stand-in for a real event-time window (`bench_window`, which closes windows as the
/// watermark passes them): it does the same per-record work (key, assign a window,
/// count) but emits every window at end of stream. The suite and `scripts/compare` run
/// it as their `window` row because timely and Bytewax run the same fold; the suite
/// runs `bench_window` as its own `event_window` row.
pub fn bench_window_fold(args: Option<&str>) -> Result<Dataflow, String> {
    let v = parse_args(args, "bench_window_fold:N,K", &[5_000_000, 10_000])?;
    let (n, k) = (v[0], v[1].max(1));
    let stats = Stats::new("bench_window_fold", n);
    let flow = Dataflow::new("bench_window_fold");
    flow.input("inp", generator(&stats, move |i| ((i * 7919) % k, i)))
        .key_on("window", |&(key, time): &(u64, u64)| {
            (key, time / WINDOW_FOLD_EVENTS)
        })
        .fold_final("count", || 0u64, |n, _| n + 1)
        .output("out", counting(&stats));
    Ok(flow)
}

/// Keys per step in [`bench_fanout`].
pub const FANOUT_KEYS: u64 = 1024;

/// The key of item `x` at step `s` of [`bench_fanout`]: a different key (and so, mostly,
/// a different worker) at every step.
pub fn fanout_key(x: u64, s: u64) -> u64 {
    (x ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 54
}

/// `bench_fanout:N,STEPS`: N u64 through STEPS chained keyed steps. Each step keys the
/// item anew ([`fanout_key`], [`FANOUT_KEYS`] keys), counts it in its key's state with
/// `stateful_map` and passes it on: with W workers, (W-1)/W of the items cross to
/// another worker at every step.
pub fn bench_fanout(args: Option<&str>) -> Result<Dataflow, String> {
    let v = parse_args(args, "bench_fanout:N,STEPS", &[5_000_000, 4])?;
    let (n, steps) = (v[0], v[1]);
    let stats = Stats::new("bench_fanout", n);
    let flow = Dataflow::new("bench_fanout");
    let mut s = flow.input("inp", generator(&stats, |i| i));
    for step in 0..steps {
        s = s
            .key_on(&format!("key{step}"), move |&x: &u64| fanout_key(x, step))
            .stateful_map(&format!("step{step}"), |seen: Option<u64>, x: u64| {
                (Some(seen.unwrap_or(0) + 1), x)
            })
            .key_rm(&format!("unkey{step}"));
    }
    s.output("out", counting(&stats));
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{cluster_main_with, RunConfig};

    #[test]
    fn bench_flows_run_on_one_and_several_workers() {
        let config = RunConfig::default().pin(false);
        for w in [1, 3] {
            for flow in [
                bench_pipe(Some("1000")),
                bench_wordcount(Some("1000,10")),
                bench_exchange(Some("1000,64")),
                bench_window_fold(Some("1000,10")),
                bench_fanout(Some("1000,3")),
            ] {
                cluster_main_with(&flow.unwrap(), &[], 0, w, &config).unwrap();
            }
        }
    }

    #[test]
    fn fanout_keys_spread_over_the_key_space() {
        let keys: std::collections::HashSet<u64> = (0..100_000).map(|x| fanout_key(x, 1)).collect();
        assert_eq!(keys.len() as u64, FANOUT_KEYS);
        assert_ne!(fanout_key(5, 0), fanout_key(5, 1));
    }
}
