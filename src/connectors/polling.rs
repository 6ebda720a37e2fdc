//! Polling: call a function on a schedule.
//!
//! [`SimplePollingSource`] is Bytewax's `SimplePollingSource`: for an input that is not a
//! stream but a value to fetch now and then (an HTTP endpoint, a gauge, a directory
//! listing), it calls your getter once per interval and emits what it returns.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::error::BoxError;
use crate::io::{
    FixedPartitionedSource, Source, SourceKind, SourceStatus, StatefulSourcePartition,
};
use crate::runtime::push::Data;

type Getter<T> = Box<dyn FnMut() -> Result<Option<T>, BoxError> + Send>;

/// Calls a getter every `interval` and emits what it returns, in one partition
/// (`"singleton"`), so exactly one worker polls whatever the worker count.
///
/// The getter returns `Ok(Some(item))` to emit an item, `Ok(None)` when there is
/// nothing this time, and `Err(e)` to end the run with `e` (reported for the input
/// step). The source never reaches EOF by itself: a flow that reads it runs until it
/// fails or is stopped.
///
/// The first call is at once, or, with [`align_to`](Self::align_to), at the first
/// instant that is a whole number of intervals from the given time. Calls keep to that
/// schedule; if the worker was busy past a due time, the missed calls are skipped rather
/// than made in a burst. There is no resume state (the getter has none to give).
///
/// The getter runs on the worker thread that owns the partition, like every source's
/// `next_batch`: a slow getter (a network call) delays that worker's other steps for as
/// long as it takes, so give it a timeout shorter than the interval.
///
/// ```
/// use std::time::Duration;
/// use waxfast::{Dataflow, run_main};
/// use waxfast::connectors::{polling::SimplePollingSource, testing::TestingSink};
///
/// let mut n = 0;
/// let source = SimplePollingSource::new(Duration::from_millis(1), move || {
///     n += 1;
///     match n {
///         1..=3 => Ok(Some(n)),             // an item
///         4 => Ok(None),                    // nothing this time
///         _ => Err("no more readings".into()), // ends the run
///     }
/// });
/// let flow = Dataflow::new("poll");
/// let (sink, out) = TestingSink::new();
/// flow.input("inp", source).output("out", sink);
/// let err = run_main(&flow).unwrap_err();
/// assert!(err.to_string().contains("no more readings"));
/// assert_eq!(out.take(), vec![1, 2, 3]);
/// ```
pub struct SimplePollingSource<T> {
    interval: Duration,
    align_to: Option<SystemTime>,
    getter: Arc<Mutex<Getter<T>>>,
}

impl<T> std::fmt::Debug for SimplePollingSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimplePollingSource")
            .field("interval", &self.interval)
            .field("align_to", &self.align_to)
            .finish()
    }
}

impl<T> SimplePollingSource<T> {
    /// Calls `getter` every `interval` (a zero interval calls it on every poll).
    pub fn new(
        interval: Duration,
        getter: impl FnMut() -> Result<Option<T>, BoxError> + Send + 'static,
    ) -> Self {
        SimplePollingSource {
            interval,
            align_to: None,
            getter: Arc::new(Mutex::new(Box::new(getter))),
        }
    }

    /// Makes the calls fall on `align_to` plus whole intervals (`align_to` may be in the
    /// past or the future); the first call waits for the next such instant.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// use waxfast::connectors::polling::SimplePollingSource;
    /// // On the minute, every minute.
    /// let s = SimplePollingSource::new(Duration::from_secs(60), || Ok(Some(SystemTime::now())))
    ///     .align_to(UNIX_EPOCH);
    /// # let _ = s;
    /// ```
    pub fn align_to(mut self, align_to: SystemTime) -> Self {
        self.align_to = Some(align_to);
        self
    }
}

/// How long after `now` the next instant `align_to + k * interval` (k any integer) is;
/// zero when `now` is on one.
fn until_aligned(now: SystemTime, align_to: SystemTime, interval: Duration) -> Duration {
    let iv = interval.as_nanos();
    if iv == 0 {
        return Duration::ZERO;
    }
    let since_mark = match now.duration_since(align_to) {
        Ok(after) => after.as_nanos() % iv,
        Err(before) => (iv - before.duration().as_nanos() % iv) % iv,
    };
    if since_mark == 0 {
        Duration::ZERO
    } else {
        // Less than one interval, which is a Duration, so it fits.
        let wait = iv - since_mark;
        Duration::new((wait / 1_000_000_000) as u64, (wait % 1_000_000_000) as u32)
    }
}

/// The first tick of the schedule `prev + k * interval` (k >= 1) that is after `now`:
/// a tick missed while the worker was busy is skipped, not made up in a burst.
pub(crate) fn next_tick(prev: Instant, interval: Duration, now: Instant) -> Instant {
    let next = prev + interval;
    if next > now || interval.is_zero() {
        return next.max(prev);
    }
    let iv = interval.as_nanos();
    let missed = (now - next).as_nanos() / iv + 1;
    let skip = interval
        .checked_mul(u32::try_from(missed).unwrap_or(u32::MAX))
        .unwrap_or(now - prev);
    (next + skip).max(now)
}

/// The partition of a [`SimplePollingSource`].
pub struct PollingPartition<T> {
    interval: Duration,
    getter: Arc<Mutex<Getter<T>>>,
    next_awake: Instant,
}

impl<T> std::fmt::Debug for PollingPartition<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollingPartition")
            .field("interval", &self.interval)
            .field("next_awake", &self.next_awake)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Send + 'static> StatefulSourcePartition for PollingPartition<T> {
    type Item = T;
    type State = ();

    fn next_batch(&mut self, batch: &mut Vec<T>) -> Result<SourceStatus, BoxError> {
        let now = Instant::now();
        if now < self.next_awake {
            return Ok(SourceStatus::Active);
        }
        let got = (lock(&self.getter))()?;
        self.next_awake = next_tick(self.next_awake, self.interval, Instant::now());
        batch.extend(got);
        Ok(SourceStatus::Active)
    }

    fn next_awake(&self) -> Option<Instant> {
        Some(self.next_awake)
    }

    fn snapshot(&self) {}
}

impl<T: Send + 'static> FixedPartitionedSource for SimplePollingSource<T> {
    type Item = T;
    type Part = PollingPartition<T>;

    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        Ok(vec!["singleton".to_string()])
    }

    fn build_part(
        &self,
        _step_id: &str,
        _for_part: &str,
        _resume_state: Option<()>,
    ) -> Result<PollingPartition<T>, BoxError> {
        let now = Instant::now();
        let wait = self.align_to.map_or(Duration::ZERO, |a| {
            until_aligned(SystemTime::now(), a, self.interval)
        });
        Ok(PollingPartition {
            interval: self.interval,
            getter: self.getter.clone(),
            next_awake: now + wait,
        })
    }
}

impl<T: Data> Source<T> for SimplePollingSource<T> {
    fn into_kind(self) -> SourceKind<T> {
        SourceKind::fixed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn alignment_waits_for_the_next_mark() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let iv = Duration::from_secs(10);
        assert_eq!(until_aligned(t0, t0, iv), Duration::ZERO);
        assert_eq!(until_aligned(t0 + iv * 3, t0, iv), Duration::ZERO);
        assert_eq!(
            until_aligned(t0 + Duration::from_secs(23), t0, iv),
            Duration::from_secs(7)
        );
        // align_to in the future: marks also lie before it.
        assert_eq!(
            until_aligned(t0, t0 + Duration::from_secs(23), iv),
            Duration::from_secs(3)
        );
        assert_eq!(
            until_aligned(t0, t0 + Duration::from_millis(20_001), iv),
            MS
        );
        assert_eq!(until_aligned(t0, t0 + MS, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn ticks_keep_the_schedule_and_skip_missed_ones() {
        let t = Instant::now();
        let iv = 10 * MS;
        assert_eq!(next_tick(t, iv, t), t + iv);
        assert_eq!(next_tick(t, iv, t + 3 * MS), t + iv);
        // Busy until 35 ms past t: the ticks at 10, 20 and 30 ms are gone.
        assert_eq!(next_tick(t, iv, t + 35 * MS), t + 40 * MS);
        assert_eq!(next_tick(t, iv, t + 40 * MS), t + 50 * MS);
        assert_eq!(next_tick(t, Duration::ZERO, t + 5 * MS), t);
    }

    #[test]
    fn polls_on_schedule_and_skips_empty_results() {
        let mut n = 0u32;
        let src = SimplePollingSource::new(20 * MS, move || {
            n += 1;
            Ok((n % 2 == 1).then_some(n))
        });
        assert_eq!(src.list_parts().unwrap(), vec!["singleton"]);
        let start = Instant::now();
        let mut p = src.build_part("s", "singleton", None).unwrap();
        let mut b = Vec::new();
        p.next_batch(&mut b).unwrap();
        assert_eq!(b, vec![1], "the first call is at once");
        let first_awake = p.next_awake().unwrap();
        assert!(first_awake >= start + 20 * MS);
        p.next_batch(&mut b).unwrap();
        assert_eq!(b, vec![1], "not due yet: no call");
        std::thread::sleep(first_awake.saturating_duration_since(Instant::now()));
        p.next_batch(&mut b).unwrap();
        assert_eq!(b, vec![1], "second call returned None");
        let since_first = p.next_awake().unwrap() - first_awake;
        assert!(since_first >= 20 * MS && since_first.as_nanos() % (20 * MS).as_nanos() == 0);
        std::thread::sleep(
            p.next_awake()
                .unwrap()
                .saturating_duration_since(Instant::now()),
        );
        p.next_batch(&mut b).unwrap();
        assert_eq!(b, vec![1, 3]);
        assert!(start.elapsed() >= 40 * MS);
    }

    #[test]
    fn getter_error_is_returned_and_future_alignment_delays_the_first_call() {
        let src = SimplePollingSource::<u8>::new(MS, || Err("sensor offline".into()));
        let mut p = src.build_part("s", "singleton", None).unwrap();
        let err = p.next_batch(&mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "sensor offline");

        let aligned = SimplePollingSource::<u8>::new(Duration::from_secs(3600), || Ok(None))
            .align_to(SystemTime::now() + Duration::from_secs(60));
        let p = aligned.build_part("s", "singleton", None).unwrap();
        let wait = p.next_awake().unwrap() - Instant::now();
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60));
    }
}
