//! The Nexmark event source: the `nexmark` crate's generator (RisingWave's port of the
//! benchmark's own), run inside the flow and split over the workers.
//!
//! Event `i` of the sequence depends only on `i` (the crate seeds each event's random
//! numbers with its id), so worker `w` of `W` generates events `w, w + W, w + 2W, ...`
//! (`EventGenerator::with_offset(w).with_step(W)`): every worker moves through event time
//! at the same pace, and the union of the shares is the same sequence of events at any
//! `-w` and `-p`.

use std::sync::Arc;

use nexmark::config::NexmarkConfig;
use nexmark::event::Event;
use nexmark::EventGenerator;

use crate::error::BoxError;
use crate::flows::bench::Stats;
use crate::io::{DynamicSource, Source, SourceKind, SourceStatus, StatelessSourcePartition};

/// Events a partition emits per batch.
const BATCH: usize = 1024;

/// The first event's time (ms since the Unix epoch): 2024-01-01T00:00:00Z.
///
/// The crate's default is the time the generator is made, which would give every run
/// (and every process of a cluster) different timestamps; everything else is the
/// crate's default.
pub const BASE_TIME_MS: u64 = 1_704_067_200_000;

/// The generator's configuration: the crate's defaults (10 000 events/s of event time,
/// 1 person : 3 auctions : 46 bids, 1000 active people, 100 auctions in flight, 5
/// categories) with the fixed [`BASE_TIME_MS`].
pub fn config() -> NexmarkConfig {
    NexmarkConfig {
        base_time: BASE_TIME_MS,
        ..NexmarkConfig::default()
    }
}

/// The first `events` events of the sequence, in order, on one thread (for reference
/// computations and the single-thread loops).
pub fn events(events: u64) -> impl Iterator<Item = Event> {
    EventGenerator::new(config()).take(events as usize)
}

/// The share of the first `events` events that worker `worker` of `workers` generates.
pub fn share(events: u64, worker: usize, workers: usize) -> impl Iterator<Item = Event> {
    let generator = EventGenerator::new(config())
        .with_offset(worker as u64)
        .with_step(workers as u64);
    let n = events
        .saturating_sub(worker as u64)
        .div_ceil(workers as u64);
    generator.take(n as usize)
}

/// A source of the first `events` Nexmark events, each worker generating its own share.
#[derive(Debug, Clone)]
pub struct NexmarkSource {
    events: u64,
    config: Arc<NexmarkConfig>,
    stats: Option<Arc<Stats>>,
}

impl NexmarkSource {
    /// The first `events` events of [`config`]'s sequence.
    pub fn new(events: u64) -> NexmarkSource {
        NexmarkSource {
            events,
            config: Arc::new(config()),
            stats: None,
        }
    }

    /// Starts `stats`' clock when the first partition is built (benchmark summaries).
    pub(in crate::flows) fn timed(mut self, stats: Arc<Stats>) -> Self {
        self.stats = Some(stats);
        self
    }
}

/// One worker's share of a [`NexmarkSource`].
#[derive(Debug)]
pub struct NexmarkPartition {
    generator: EventGenerator,
    /// The generator's step (the worker count).
    step: u64,
    end: u64,
}

impl DynamicSource for NexmarkSource {
    type Item = Event;
    type Part = NexmarkPartition;
    fn build(
        &self,
        _step_id: &str,
        worker: usize,
        workers: usize,
    ) -> Result<NexmarkPartition, BoxError> {
        if let Some(stats) = &self.stats {
            stats.started.get_or_init(std::time::Instant::now);
        }
        Ok(NexmarkPartition {
            generator: EventGenerator::new((*self.config).clone())
                .with_offset(worker as u64)
                .with_step(workers as u64),
            step: workers as u64,
            end: self.events,
        })
    }
}

impl StatelessSourcePartition for NexmarkPartition {
    type Item = Event;
    fn next_batch(&mut self, batch: &mut Vec<Event>) -> Result<SourceStatus, BoxError> {
        let stop = self
            .end
            .min(self.generator.offset() + (BATCH as u64) * self.step);
        while self.generator.offset() < stop {
            batch.extend(self.generator.next());
        }
        Ok(if self.generator.offset() >= self.end {
            SourceStatus::Eof
        } else {
            SourceStatus::Active
        })
    }
}

impl Source<Event> for NexmarkSource {
    fn into_kind(self) -> SourceKind<Event> {
        SourceKind::dynamic(self)
    }
}

/// A [`NexmarkSource`] whose events carry the index of the worker that generated them:
/// keyed by it, a step sees each key's events from one worker, in sequence order.
#[derive(Debug, Clone)]
pub struct TaggedNexmarkSource(pub NexmarkSource);

/// One worker's share of a [`TaggedNexmarkSource`].
#[derive(Debug)]
pub struct TaggedPartition {
    worker: u32,
    events: Vec<Event>,
    part: NexmarkPartition,
}

impl DynamicSource for TaggedNexmarkSource {
    type Item = (u32, Event);
    type Part = TaggedPartition;
    fn build(
        &self,
        step_id: &str,
        worker: usize,
        workers: usize,
    ) -> Result<TaggedPartition, BoxError> {
        Ok(TaggedPartition {
            worker: worker as u32,
            events: Vec::with_capacity(BATCH),
            part: self.0.build(step_id, worker, workers)?,
        })
    }
}

impl StatelessSourcePartition for TaggedPartition {
    type Item = (u32, Event);
    fn next_batch(&mut self, batch: &mut Vec<(u32, Event)>) -> Result<SourceStatus, BoxError> {
        let status = self.part.next_batch(&mut self.events)?;
        batch.extend(self.events.drain(..).map(|e| (self.worker, e)));
        Ok(status)
    }
}

impl Source<(u32, Event)> for TaggedNexmarkSource {
    fn into_kind(self) -> SourceKind<(u32, Event)> {
        SourceKind::dynamic(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every worker's share, drained through the partition as the runtime would.
    fn shares(events: u64, workers: usize) -> Vec<Vec<Event>> {
        let source = NexmarkSource::new(events);
        (0..workers)
            .map(|w| {
                let mut part = source.build("nexmark", w, workers).unwrap();
                let mut got = Vec::new();
                loop {
                    let status = part.next_batch(&mut got).unwrap();
                    if status == SourceStatus::Eof {
                        break got;
                    }
                }
            })
            .collect()
    }

    #[test]
    fn the_shares_interleave_into_the_same_sequence_at_any_worker_count() {
        let n = 5_003;
        let whole: Vec<Event> = events(n).collect();
        assert_eq!(whole.len() as u64, n);
        for workers in [1, 2, 3, 8] {
            let shares = shares(n, workers);
            let mut union = vec![None; n as usize];
            for (w, got) in shares.iter().enumerate() {
                assert_eq!(
                    got.len(),
                    share_len(n, w, workers),
                    "worker {w} of {workers}"
                );
                for (j, e) in got.iter().enumerate() {
                    union[w + j * workers] = Some(e.clone());
                }
                let direct: Vec<Event> = share(n, w, workers).collect();
                assert_eq!(&direct, got, "share() of worker {w} of {workers}");
            }
            let union: Vec<Event> = union.into_iter().map(|e| e.expect("a gap")).collect();
            assert_eq!(union, whole, "{workers} workers");
        }
    }

    fn share_len(n: u64, w: usize, workers: usize) -> usize {
        (w..n as usize).step_by(workers).count()
    }

    #[test]
    fn timestamps_start_at_the_fixed_base_time_and_advance_at_10k_events_per_second() {
        let e: Vec<Event> = events(20_001).collect();
        assert_eq!(e[0].timestamp(), BASE_TIME_MS);
        assert_eq!(e[20_000].timestamp(), BASE_TIME_MS + 2_000);
    }
}
