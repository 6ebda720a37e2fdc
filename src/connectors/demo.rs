//! Demo sources: input for examples and try-outs, with no setup.
//!
//! [`RandomMetricSource`] is Bytewax's `RandomMetricSource`: a metric name with a
//! pseudo-random reading, one per interval.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::connectors::polling::next_tick;
use crate::error::BoxError;
use crate::io::{
    FixedPartitionedSource, Source, SourceKind, SourceStatus, StatefulSourcePartition,
};

/// Emits `(metric_name, value)` once per interval, `value` a pseudo-random `f64` in
/// `[0, 10)` (Bytewax's default range), in one partition named by the metric.
///
/// The first item comes at once, then one per `interval`; with `count` set, the
/// partition reports EOF with the `count`-th item. Values come from a small PRNG
/// (SplitMix64): seeded with [`seed`](Self::seed) the sequence is the same on every run;
/// otherwise the seed comes from the clock. The resume state ([`RandomMetricState`])
/// holds the items emitted and the PRNG state, so a resumed run continues the sequence.
///
/// ```
/// use std::time::Duration;
/// use waxfast::{Dataflow, run_main};
/// use waxfast::connectors::{demo::RandomMetricSource, testing::TestingSink};
///
/// let flow = Dataflow::new("metrics");
/// let (sink, out) = TestingSink::new();
/// flow.input("inp", RandomMetricSource::new("cpu", Duration::from_millis(1), Some(3)).seed(7))
///     .output("out", sink);
/// run_main(&flow).unwrap();
/// let readings = out.take();
/// assert_eq!(readings.len(), 3);
/// assert!(readings.iter().all(|(name, v)| name == "cpu" && (0.0..10.0).contains(v)));
/// ```
#[derive(Debug, Clone)]
pub struct RandomMetricSource {
    metric_name: String,
    interval: Duration,
    count: Option<u64>,
    seed: u64,
}

impl RandomMetricSource {
    /// `count` items of `metric_name` (or endless with `None`), one per `interval`.
    pub fn new(metric_name: &str, interval: Duration, count: Option<u64>) -> Self {
        let clock = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RandomMetricSource {
            metric_name: metric_name.to_string(),
            interval,
            count,
            seed: clock ^ u64::from(std::process::id()).rotate_left(32),
        }
    }

    /// Seeds the PRNG, for the same values on every run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// The resume state of a [`RandomMetricSource`] partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomMetricState {
    /// Items emitted so far.
    pub emitted: u64,
    /// The PRNG state after the last item.
    pub rng: u64,
}

/// SplitMix64's next output; advances `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform value in `[0, 10)`: the top 53 bits as a fraction of 2^53.
fn next_value(state: &mut u64) -> f64 {
    (splitmix64(state) >> 11) as f64 / (1u64 << 53) as f64 * 10.0
}

/// The partition of a [`RandomMetricSource`].
#[derive(Debug)]
pub struct RandomMetricPartition {
    metric_name: String,
    interval: Duration,
    count: Option<u64>,
    state: RandomMetricState,
    next_awake: Instant,
}

impl RandomMetricPartition {
    fn done(&self) -> bool {
        self.count.is_some_and(|c| self.state.emitted >= c)
    }
}

impl StatefulSourcePartition for RandomMetricPartition {
    type Item = (String, f64);
    type State = RandomMetricState;

    fn next_batch(&mut self, batch: &mut Vec<(String, f64)>) -> Result<SourceStatus, BoxError> {
        if self.done() {
            return Ok(SourceStatus::Eof);
        }
        let now = Instant::now();
        if now < self.next_awake {
            return Ok(SourceStatus::Active);
        }
        let value = next_value(&mut self.state.rng);
        self.state.emitted += 1;
        batch.push((self.metric_name.clone(), value));
        self.next_awake = next_tick(self.next_awake, self.interval, now);
        Ok(if self.done() {
            SourceStatus::Eof
        } else {
            SourceStatus::Active
        })
    }

    fn next_awake(&self) -> Option<Instant> {
        Some(self.next_awake)
    }

    fn snapshot(&self) -> RandomMetricState {
        self.state
    }
}

impl FixedPartitionedSource for RandomMetricSource {
    type Item = (String, f64);
    type Part = RandomMetricPartition;

    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        Ok(vec![self.metric_name.clone()])
    }

    fn build_part(
        &self,
        _step_id: &str,
        _for_part: &str,
        resume_state: Option<RandomMetricState>,
    ) -> Result<RandomMetricPartition, BoxError> {
        Ok(RandomMetricPartition {
            metric_name: self.metric_name.clone(),
            interval: self.interval,
            count: self.count,
            state: resume_state.unwrap_or(RandomMetricState {
                emitted: 0,
                rng: self.seed,
            }),
            next_awake: Instant::now(),
        })
    }
}

impl Source<(String, f64)> for RandomMetricSource {
    fn into_kind(self) -> SourceKind<(String, f64)> {
        SourceKind::fixed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls like the worker loop: sleeping until each wake time, until EOF.
    fn run(p: &mut RandomMetricPartition) -> Vec<(Instant, (String, f64))> {
        let mut out = Vec::new();
        loop {
            let wake = p.next_awake().unwrap();
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
            let mut b = Vec::new();
            let status = p.next_batch(&mut b).unwrap();
            let at = Instant::now();
            out.extend(b.into_iter().map(|x| (at, x)));
            if status == SourceStatus::Eof {
                return out;
            }
        }
    }

    #[test]
    fn count_items_spaced_by_the_interval_then_eof() {
        let iv = Duration::from_millis(10);
        let src = RandomMetricSource::new("cpu", iv, Some(4)).seed(1);
        assert_eq!(src.list_parts().unwrap(), vec!["cpu"]);
        let mut p = src.build_part("s", "cpu", None).unwrap();
        let t0 = p.next_awake().unwrap();
        let items = run(&mut p);
        assert_eq!(items.len(), 4);
        for (k, (at, _)) in items.iter().enumerate() {
            assert!(
                *at >= t0 + iv * k as u32,
                "item {k} came before its interval"
            );
        }
        assert!(items
            .iter()
            .all(|(_, (n, v))| n == "cpu" && (0.0..10.0).contains(v)));
        assert_eq!(p.next_batch(&mut Vec::new()).unwrap(), SourceStatus::Eof);
        let mut none = RandomMetricSource::new("cpu", iv, Some(0))
            .build_part("s", "cpu", None)
            .unwrap();
        assert_eq!(none.next_batch(&mut Vec::new()).unwrap(), SourceStatus::Eof);
    }

    #[test]
    fn not_due_yet_emits_nothing() {
        let src = RandomMetricSource::new("m", Duration::from_secs(3600), None);
        let mut p = src.build_part("s", "m", None).unwrap();
        let mut b = Vec::new();
        assert_eq!(p.next_batch(&mut b).unwrap(), SourceStatus::Active);
        assert_eq!(b.len(), 1, "the first item comes at once");
        assert_eq!(p.next_batch(&mut b).unwrap(), SourceStatus::Active);
        assert_eq!(b.len(), 1, "the next one only after the interval");
        assert!(p.next_awake().unwrap() > Instant::now() + Duration::from_secs(3000));
    }

    fn values(seed: u64, resume: Option<RandomMetricState>, n: u64) -> Vec<f64> {
        let src = RandomMetricSource::new("m", Duration::ZERO, Some(n)).seed(seed);
        let mut p = src.build_part("s", "m", resume).unwrap();
        run(&mut p).into_iter().map(|(_, (_, v))| v).collect()
    }

    #[test]
    fn seeded_values_repeat_and_resume_continues_the_sequence() {
        let a = values(42, None, 6);
        assert_eq!(a, values(42, None, 6));
        assert_ne!(a, values(43, None, 6));
        let distinct: std::collections::HashSet<u64> = a.iter().map(|v| v.to_bits()).collect();
        assert_eq!(distinct.len(), 6);
        // Stop after 2, resume from the snapshot: the same 6 values in all.
        let src = RandomMetricSource::new("m", Duration::ZERO, Some(2)).seed(42);
        let mut p = src.build_part("s", "m", None).unwrap();
        run(&mut p);
        let state = p.snapshot();
        assert_eq!(state.emitted, 2);
        assert_eq!(values(42, Some(state), 6), a[2..].to_vec());
    }

    #[test]
    fn values_spread_over_the_range() {
        let mut rng = 9;
        let v: Vec<f64> = (0..10_000).map(|_| next_value(&mut rng)).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((4.8..5.2).contains(&mean), "mean {mean}");
        assert!(v.iter().all(|x| (0.0..10.0).contains(x)));
        assert!(v.iter().any(|&x| x < 0.1) && v.iter().any(|&x| x > 9.9));
    }
}
