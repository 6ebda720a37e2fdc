//! How long a run takes to resume from a snapshot of many keys.
//!
//! `cargo run --release --example resume_keys -- [KEYS] [WORKERS]` (defaults 1000000, 1):
//! the first execution builds a running sum for KEYS keys and stops at an EOF marker
//! (its snapshot holds every key); the second resumes from it and the example reports
//! the time from the start of the second run until its first item reaches the sink:
//! reading the partitions, routing the keys and rebuilding the state tables.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use waxfast::connectors::testing::{TestEvent, TestingSource};
use waxfast::io::{DynamicSink, Sink, SinkKind, StatelessSinkPartition};
use waxfast::recovery::{init, RecoveryConfig};
use waxfast::{cluster_main_with, BoxError, Dataflow, RunConfig};

/// Records when the first item arrives.
#[derive(Clone, Default)]
struct FirstItem(Arc<Mutex<Option<Instant>>>);

struct FirstItemPart(FirstItem);

impl StatelessSinkPartition for FirstItemPart {
    type Item = (u64, u64);
    fn write_batch(&mut self, items: &mut Vec<(u64, u64)>) -> Result<(), BoxError> {
        if !items.is_empty() {
            let mut first = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(Instant::now);
        }
        items.clear();
        Ok(())
    }
}

impl DynamicSink for FirstItem {
    type Item = (u64, u64);
    type Part = FirstItemPart;
    fn build(
        &self,
        _step: &str,
        _worker: usize,
        _workers: usize,
    ) -> Result<FirstItemPart, BoxError> {
        Ok(FirstItemPart(self.clone()))
    }
}

impl Sink<(u64, u64)> for FirstItem {
    fn into_kind(self) -> SinkKind<(u64, u64)> {
        SinkKind::dynamic(self)
    }
}

fn main() {
    // `WAXFAST_LOG=info` shows how long reading the partitions took.
    let filter = tracing_subscriber::EnvFilter::try_from_env("WAXFAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("KEYS"));
    let workers: usize = args.next().map_or(1, |a| a.parse().expect("WORKERS"));
    let dir = std::env::temp_dir().join(format!("waxfast-resume-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    init(&dir, 4).expect("init");

    let mut events: Vec<TestEvent<(u64, u64)>> =
        (0..keys).map(|k| TestEvent::Item((k, 1))).collect();
    events.push(TestEvent::Eof);
    events.push(TestEvent::Item((0, 1)));
    let first = FirstItem::default();
    let flow = Dataflow::new("resume_keys");
    flow.input("inp", TestingSource::events(events).batch_size(10_000))
        .stateful_map("sum", |s: Option<u64>, v: u64| {
            let t = s.unwrap_or(0) + v;
            (Some(t), t)
        })
        .output("out", first.clone());
    let config = RunConfig::default()
        .pin(false)
        .epoch_interval(Duration::from_secs(1))
        .recovery(RecoveryConfig::new(&dir));

    let t = Instant::now();
    cluster_main_with(&flow, &[], 0, workers, &config).expect("first execution");
    let snapshot_s = t.elapsed().as_secs_f64();
    *first.0.lock().unwrap() = None;
    let start = Instant::now();
    cluster_main_with(&flow, &[], 0, workers, &config).expect("resumed execution");
    let first_item = first
        .0
        .lock()
        .unwrap()
        .expect("the resumed run emitted its item");
    let resume_s = first_item.duration_since(start).as_secs_f64();
    let total_s = start.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "resume_keys: keys={keys} workers={workers} first_run_s={snapshot_s:.3} resume_to_first_item_s={resume_s:.3} second_run_total_s={total_s:.3} store_bytes={bytes}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
