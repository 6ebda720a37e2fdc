//! `bench_window:N,K`: a tumbling event-time window count per key over N generated
//! records with K keys, in the style of the other benchmark flows (generator source on
//! every worker, counting sink, one summary line on stderr).
//!
//! Record `i` has key `(i * 7919) % K` and event time 2024-01-01 plus `i` * 100 µs;
//! worker `w` of `W` generates `i = w, w + W, ...`, so every worker moves through event
//! time at the same pace. Windows are 1 s long (10 000 records) and the clock waits
//! 60 s of event time, far more than workers drift apart: no record is late, and the
//! output is one count per key and window.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};

use super::bench::{counting, parse_args, Stats, GEN_BATCH};
use crate::dataflow::Dataflow;
use crate::error::BoxError;
use crate::io::{DynamicSource, Source, SourceKind, SourceStatus, StatelessSourcePartition};
use crate::operators::window::{EventClock, TumblingWindower};

/// 2024-01-01T00:00:00Z, the first record's time and the windows' alignment.
const ORIGIN_SECS: i64 = 1_704_067_200;

type Event = (u64, DateTime<Utc>);

struct Events {
    stats: Arc<Stats>,
    records: u64,
    keys: u64,
}

struct EventsPart {
    next: u64,
    stride: u64,
    end: u64,
    keys: u64,
}

fn event_time(i: u64) -> DateTime<Utc> {
    let secs = ORIGIN_SECS + (i / 10_000) as i64;
    let nanos = (i % 10_000) as u32 * 100_000;
    DateTime::from_timestamp(secs, nanos).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl DynamicSource for Events {
    type Item = Event;
    type Part = EventsPart;
    fn build(&self, _step_id: &str, worker: usize, workers: usize) -> Result<EventsPart, BoxError> {
        self.stats.started.get_or_init(Instant::now);
        Ok(EventsPart {
            next: worker as u64,
            stride: workers as u64,
            end: self.records,
            keys: self.keys,
        })
    }
}

impl StatelessSourcePartition for EventsPart {
    type Item = Event;
    fn next_batch(&mut self, batch: &mut Vec<Event>) -> Result<SourceStatus, BoxError> {
        while batch.len() < GEN_BATCH && self.next < self.end {
            let i = self.next;
            batch.push(((i * 7919) % self.keys, event_time(i)));
            self.next += self.stride;
        }
        Ok(if self.next >= self.end {
            SourceStatus::Eof
        } else {
            SourceStatus::Active
        })
    }
}

impl Source<Event> for Events {
    fn into_kind(self) -> SourceKind<Event> {
        SourceKind::dynamic(self)
    }
}

/// `bench_window:N,K` (default 5000000,1000).
pub fn bench_window(args: Option<&str>) -> Result<Dataflow, String> {
    let v = parse_args(args, "bench_window:N,K", &[5_000_000, 1000])?;
    let (n, keys) = (v[0], v[1].max(1));
    let stats = Stats::new("bench_window", n);
    let origin = event_time(0);
    let flow = Dataflow::new("bench_window");
    flow.input(
        "inp",
        Events {
            stats: stats.clone(),
            records: n,
            keys,
        },
    )
    .count_window(
        "count",
        EventClock::new(|e: &Event| e.1, TimeDelta::seconds(60)),
        TumblingWindower::new(TimeDelta::seconds(1), origin),
        |e: &Event| e.0,
    )
    .down
    .output("out", counting(&stats));
    Ok(flow)
}
