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

type Getter<T, S> = Box<dyn FnMut(&mut S) -> Result<Polled<T>, BoxError> + Send>;

/// What a polling getter returns: Bytewax's `next_item` results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled<T> {
    /// Emit this item; the next call is at the next interval.
    Item(T),
    /// Nothing this time (Bytewax's `None`); the next call is at the next interval.
    Nothing,
    /// Nothing could be fetched: call again after this long rather than at the next
    /// interval (Bytewax's `raise SimplePollingSource.Retry(timeout)`). The schedule
    /// then continues from that call.
    Retry(Duration),
    /// The source is done: its partition reaches end of stream (Bytewax's
    /// `StopIteration`), so downstream steps see end of stream and emit what they
    /// hold (a pending `collect` list, `*_final` results) and the run can complete.
    End,
}

/// Calls a getter every `interval` and emits what it returns, in one partition
/// (`"singleton"`), so exactly one worker polls whatever the worker count.
///
/// [`new`](Self::new) takes a getter returning `Ok(Some(item))` to emit an item and
/// `Ok(None)` when there is nothing this time; such a source never ends by itself.
/// [`polled`](Self::polled) takes a getter returning a [`Polled`], which can also ask
/// for a [retry](Polled::Retry) sooner than the interval or [end](Polled::End) the
/// source, and [`with_state`](Self::with_state) adds a state that is saved in
/// snapshots and given back to the getter on resume (Bytewax's `snapshot` and
/// `resume`). A getter's `Err(e)` ends the run with `e`, reported for the input step.
///
/// The first call is at once, or, with [`align_to`](Self::align_to), at the first
/// instant that is a whole number of intervals from the given time. Calls keep to that
/// schedule; if the worker was busy past a due time, the missed calls are skipped rather
/// than made in a burst (Bytewax makes them in a burst). A retry waits its timeout from
/// the moment the getter returned (Bytewax adds it to the time the call was due, so a
/// slow getter's retry comes early).
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
pub struct SimplePollingSource<T, S = ()> {
    interval: Duration,
    align_to: Option<SystemTime>,
    getter: Arc<Mutex<Getter<T, S>>>,
    initial: S,
}

impl<T, S> std::fmt::Debug for SimplePollingSource<T, S> {
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
        mut getter: impl FnMut() -> Result<Option<T>, BoxError> + Send + 'static,
    ) -> Self {
        Self::polled(interval, move || {
            Ok(getter()?.map_or(Polled::Nothing, Polled::Item))
        })
    }

    /// Calls `getter` every `interval`; it says what it got with a [`Polled`], so it
    /// can retry sooner or end the source.
    ///
    /// ```
    /// use std::time::Duration;
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::{polling::{Polled, SimplePollingSource}, testing::TestingSink};
    ///
    /// let mut calls = 0;
    /// let source = SimplePollingSource::polled(Duration::from_millis(1), move || {
    ///     calls += 1;
    ///     Ok(match calls {
    ///         1 => Polled::Retry(Duration::from_millis(1)), // the endpoint was busy
    ///         2..=4 => Polled::Item(calls),
    ///         _ => Polled::End,
    ///     })
    /// });
    /// let flow = Dataflow::new("poll");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", source).output("out", sink);
    /// run_main(&flow).unwrap(); // completes: the source ended
    /// assert_eq!(out.take(), vec![2, 3, 4]);
    /// ```
    pub fn polled(
        interval: Duration,
        mut getter: impl FnMut() -> Result<Polled<T>, BoxError> + Send + 'static,
    ) -> Self {
        Self::with_state(interval, (), move |_| getter())
    }
}

impl<T, S> SimplePollingSource<T, S> {
    /// Calls `getter` every `interval` with a state (`initial` at first), which a run
    /// with recovery saves at every snapshot and gives back on resume: keep in it the
    /// position of the next read ("after the last item returned"), and the getter
    /// carries on from there (Bytewax's `snapshot` / `resume`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::{polling::{Polled, SimplePollingSource}, testing::TestingSink};
    ///
    /// // Reads rows 0..5 of a table, one per poll; the state is the next row.
    /// let source = SimplePollingSource::with_state(Duration::ZERO, 0u64, |next: &mut u64| {
    ///     if *next == 5 {
    ///         return Ok(Polled::End);
    ///     }
    ///     *next += 1;
    ///     Ok(Polled::Item(*next - 1))
    /// });
    /// let flow = Dataflow::new("poll");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", source).output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![0, 1, 2, 3, 4]);
    /// ```
    pub fn with_state(
        interval: Duration,
        initial: S,
        getter: impl FnMut(&mut S) -> Result<Polled<T>, BoxError> + Send + 'static,
    ) -> Self {
        SimplePollingSource {
            interval,
            align_to: None,
            getter: Arc::new(Mutex::new(Box::new(getter))),
            initial,
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
pub struct PollingPartition<T, S = ()> {
    interval: Duration,
    getter: Arc<Mutex<Getter<T, S>>>,
    state: S,
    next_awake: Instant,
    ended: bool,
}

impl<T, S> std::fmt::Debug for PollingPartition<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollingPartition")
            .field("interval", &self.interval)
            .field("next_awake", &self.next_awake)
            .field("ended", &self.ended)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a polling source's state must be: saved with serde in snapshots.
pub trait PollState:
    Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static
{
}
impl<S: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static> PollState
    for S
{
}

impl<T: Send + 'static, S: PollState> StatefulSourcePartition for PollingPartition<T, S> {
    type Item = T;
    type State = S;

    fn next_batch(&mut self, batch: &mut Vec<T>) -> Result<SourceStatus, BoxError> {
        if self.ended {
            return Ok(SourceStatus::Eof);
        }
        let now = Instant::now();
        if now < self.next_awake {
            return Ok(SourceStatus::Active);
        }
        let got = (lock(&self.getter))(&mut self.state)?;
        let now = Instant::now();
        match got {
            Polled::Item(x) => batch.push(x),
            Polled::Nothing => {}
            Polled::Retry(wait) => {
                self.next_awake = now + wait;
                return Ok(SourceStatus::Active);
            }
            Polled::End => {
                self.ended = true;
                return Ok(SourceStatus::Eof);
            }
        }
        self.next_awake = next_tick(self.next_awake, self.interval, now);
        Ok(SourceStatus::Active)
    }

    fn next_awake(&self) -> Option<Instant> {
        Some(self.next_awake)
    }

    fn snapshot(&self) -> S {
        self.state.clone()
    }
}

impl<T: Send + 'static, S: PollState> FixedPartitionedSource for SimplePollingSource<T, S> {
    type Item = T;
    type Part = PollingPartition<T, S>;

    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        Ok(vec!["singleton".to_string()])
    }

    fn build_part(
        &self,
        _step_id: &str,
        _for_part: &str,
        resume_state: Option<S>,
    ) -> Result<PollingPartition<T, S>, BoxError> {
        let now = Instant::now();
        let wait = self.align_to.map_or(Duration::ZERO, |a| {
            until_aligned(SystemTime::now(), a, self.interval)
        });
        Ok(PollingPartition {
            interval: self.interval,
            getter: self.getter.clone(),
            state: resume_state.unwrap_or_else(|| self.initial.clone()),
            next_awake: now + wait,
            ended: false,
        })
    }
}

impl<T: Data, S: PollState> Source<T> for SimplePollingSource<T, S> {
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
    fn retry_calls_again_after_its_timeout_and_end_is_eof() {
        let mut n = 0u32;
        let src = SimplePollingSource::polled(Duration::from_secs(3600), move || {
            n += 1;
            Ok(match n {
                1 => Polled::Retry(Duration::ZERO),
                2 => Polled::Item(n),
                _ => Polled::End,
            })
        });
        let mut p = src.build_part("s", "singleton", None).unwrap();
        let mut b = Vec::new();
        assert_eq!(p.next_batch(&mut b).unwrap(), SourceStatus::Active);
        assert!(b.is_empty());
        // A zero retry is due at once, not after the hour-long interval.
        assert!(p.next_awake().unwrap() <= Instant::now());
        assert_eq!(p.next_batch(&mut b).unwrap(), SourceStatus::Active);
        assert_eq!(b, vec![2]);
        assert!(p.next_awake().unwrap() > Instant::now() + Duration::from_secs(3000));
    }

    #[test]
    fn state_is_snapshotted_and_resumed() {
        let src = SimplePollingSource::with_state(Duration::ZERO, 10u32, |s: &mut u32| {
            *s += 1;
            Ok(if *s > 12 {
                Polled::End
            } else {
                Polled::Item(*s)
            })
        });
        let mut p = src.build_part("s", "singleton", None).unwrap();
        let mut b = Vec::new();
        p.next_batch(&mut b).unwrap();
        assert_eq!((b.clone(), p.snapshot()), (vec![11], 11));
        let mut resumed = src
            .build_part("s", "singleton", Some(p.snapshot()))
            .unwrap();
        let mut b = Vec::new();
        assert_eq!(resumed.next_batch(&mut b).unwrap(), SourceStatus::Active);
        assert_eq!(resumed.next_batch(&mut b).unwrap(), SourceStatus::Eof);
        assert_eq!(b, vec![12], "the resumed getter carried on from 11");
        assert_eq!(resumed.next_batch(&mut b).unwrap(), SourceStatus::Eof);
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
