//! Clocks: what time an item has, and how far the watermark has come.
//!
//! A clock is built per key (so watermarks are per key, as in Bytewax). Its logic gives
//! each item a timestamp and reports the watermark: the time before which no more items
//! are expected. Items older than the watermark are late; windows that end before it
//! close. Both clocks read the current system time through a [`TimeSource`], so a test
//! can swap the real time for a [`TestingClock`] it advances by hand.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};

use super::nanos::{delta_nanos, from_nanos, nanos, system_now, NANOS_MAX, NANOS_MIN};
use super::WindowConfigError;
use crate::operators::keyed::timers::deadline_of;

/// The earliest representable UTC instant: the watermark of a clock that has seen nothing.
pub const UTC_MIN: DateTime<Utc> = DateTime::<Utc>::MIN_UTC;

/// The latest representable UTC instant: the watermark at end of stream.
pub const UTC_MAX: DateTime<Utc> = DateTime::<Utc>::MAX_UTC;

/// Where a clock reads the current system time, and how a system time becomes a
/// runtime timer.
///
/// [`WallClock`] is the real time; [`TestingClock`] is a time a test sets and advances.
pub trait TimeSource: Clone + Send + Sync + 'static {
    /// The current system time.
    fn now(&self) -> DateTime<Utc>;

    /// When (as a monotonic [`Instant`]) the system time `at` will have come: the
    /// runtime wakes the window step then. `None` for never.
    fn instant_at(&self, at: DateTime<Utc>) -> Option<Instant>;

    /// [`now`](Self::now) in nanoseconds since the Unix epoch (what the window engine
    /// reads; the default converts).
    fn now_nanos(&self) -> i128 {
        nanos(self.now())
    }

    /// [`instant_at`](Self::instant_at) for a time in nanoseconds since the Unix epoch
    /// (what the window engine asks; the default converts).
    fn instant_at_nanos(&self, at: i128) -> Option<Instant> {
        self.instant_at(from_nanos(at))
    }

    /// [`instant_at_nanos`](Self::instant_at_nanos) as the keyed engine's timer
    /// deadline (the default converts the `Instant`).
    #[doc(hidden)]
    fn deadline_at_nanos(&self, at: i128) -> Option<u64> {
        self.instant_at_nanos(at).map(deadline_of)
    }
}

/// The real system time, in UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

thread_local! {
    /// The system time a window step holds while it applies one batch ([`hold_time`]).
    static HELD: std::cell::Cell<Option<(i128, Instant, u64)>> =
        const { std::cell::Cell::new(None) };
}

/// Reads the system time once for a whole batch: until [`release_time`], [`WallClock`]
/// on this thread answers with it. A batch's items are applied within microseconds of
/// each other, and reading the clock up to three times per item was a fifth of an
/// event-time window step's time.
pub(crate) fn hold_time() {
    let mono = Instant::now();
    HELD.set(Some((system_now(), mono, deadline_of(mono))));
}

/// Ends [`hold_time`]: the wall clock is read afresh again.
pub(crate) fn release_time() {
    HELD.set(None);
}

/// The system time and the monotonic time, read now or held for the batch.
#[inline(always)]
fn wall_now() -> (i128, Instant, u64) {
    HELD.get().unwrap_or_else(|| {
        let mono = Instant::now();
        (system_now(), mono, deadline_of(mono))
    })
}

impl TimeSource for WallClock {
    fn now(&self) -> DateTime<Utc> {
        from_nanos(self.now_nanos())
    }

    fn instant_at(&self, at: DateTime<Utc>) -> Option<Instant> {
        self.instant_at_nanos(nanos(at))
    }

    #[inline]
    fn now_nanos(&self) -> i128 {
        HELD.get().map_or_else(system_now, |(now, _, _)| now)
    }

    #[inline]
    fn instant_at_nanos(&self, at: i128) -> Option<Instant> {
        let (now, mono, _) = wall_now();
        let ahead = at - now;
        if ahead <= 0 {
            // Already past.
            return Some(mono);
        }
        let ahead = u64::try_from(ahead).ok()?;
        mono.checked_add(std::time::Duration::from_nanos(ahead))
    }

    #[inline(always)]
    fn deadline_at_nanos(&self, at: i128) -> Option<u64> {
        let (now, _, mono) = wall_now();
        let ahead = at - now;
        if ahead <= 0 {
            return Some(mono);
        }
        mono.checked_add(u64::try_from(ahead).ok()?)
    }
}

/// A system time that only moves when told to: share it between a test and the
/// clocks of its flow ([`SystemClock::with_time`], [`EventClock::with_time`]).
///
/// While a window waits for a time this clock has not reached, the window step looks at
/// the clock again every scheduling round, so advancing it closes windows at once, even
/// for keys that see no more items (and deterministically: a test that advances it
/// between two items sees the windows close before the second item). A flow using it
/// keeps its worker busy while windows are open: it is for tests.
///
/// ```
/// use chrono::{DateTime, TimeDelta};
/// use waxfast::operators::window::{TestingClock, TimeSource};
/// let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
/// let clock = TestingClock::new(t0);
/// clock.advance(TimeDelta::seconds(5));
/// assert_eq!(clock.now(), t0 + TimeDelta::seconds(5));
/// ```
#[derive(Debug, Clone)]
pub struct TestingClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl TestingClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> TestingClock {
        TestingClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, DateTime<Utc>> {
        self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the time forward by `by` (a negative `by` is ignored: time never goes back).
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.lock();
        if by > TimeDelta::zero() {
            *now = now.checked_add_signed(by).unwrap_or(UTC_MAX);
        }
    }

    /// Sets the time to `at` if that is later than the current time.
    pub fn set(&self, at: DateTime<Utc>) {
        let mut now = self.lock();
        *now = (*now).max(at);
    }
}

impl TimeSource for TestingClock {
    fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }

    fn instant_at(&self, _at: DateTime<Utc>) -> Option<Instant> {
        // Due or not, the test may advance the time at any moment: look again now.
        Some(Instant::now())
    }
}

/// A kind of clock: builds the per-key [`ClockLogic`] of a window step.
///
/// Implement it (with a [`ClockLogic`]) for a sense of time of your own.
pub trait Clock<V>: Send + Sync + 'static {
    /// The per-key logic.
    type Logic: ClockLogic<V>;

    /// Makes a key's logic when the key is first seen (with its saved state when
    /// resuming).
    fn build(&self, resume: Option<<Self::Logic as ClockLogic<V>>::State>) -> Self::Logic;

    /// Checks the configuration before the flow runs.
    fn validate(&self) -> Result<(), WindowConfigError> {
        Ok(())
    }
}

/// A key's sense of time.
pub trait ClockLogic<V>: Send + 'static {
    /// What [`snapshot`](Self::snapshot) returns.
    type State: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static;

    /// The item's timestamp and the watermark after seeing it. The watermark must never
    /// go back.
    fn on_item(&mut self, value: &V) -> (DateTime<Utc>, DateTime<Utc>);

    /// The watermark now, when no item arrived (a notification).
    fn on_notify(&mut self) -> DateTime<Utc>;

    /// The watermark at end of stream: [`UTC_MAX`] closes every window.
    fn on_eof(&mut self) -> DateTime<Utc> {
        UTC_MAX
    }

    /// The system time at which the watermark will have reached `watermark` without new
    /// items (Bytewax's `to_system_utc`); `None` if it never will by itself.
    fn to_system_utc(&self, watermark: DateTime<Utc>) -> Option<DateTime<Utc>>;

    /// The runtime timer for system time `at` (the window step is woken then). The
    /// default reads the real clock; clocks with a [`TimeSource`] ask it.
    fn instant_at(&self, at: DateTime<Utc>) -> Option<Instant> {
        WallClock.instant_at(at)
    }

    /// The state to save at the end of an epoch.
    fn snapshot(&self) -> Self::State;

    /// [`on_item`](Self::on_item) in nanoseconds since the Unix epoch: what the window
    /// engine calls. The default converts; the built-in clocks compute in integers and
    /// implement `on_item` by converting from this.
    fn on_item_nanos(&mut self, value: &V) -> (i128, i128) {
        let (ts, watermark) = self.on_item(value);
        (nanos(ts), nanos(watermark))
    }

    /// [`on_notify`](Self::on_notify) in nanoseconds (see
    /// [`on_item_nanos`](Self::on_item_nanos)).
    fn on_notify_nanos(&mut self) -> i128 {
        nanos(self.on_notify())
    }

    /// [`on_eof`](Self::on_eof) in nanoseconds (see [`on_item_nanos`](Self::on_item_nanos)).
    fn on_eof_nanos(&mut self) -> i128 {
        nanos(self.on_eof())
    }

    /// [`to_system_utc`](Self::to_system_utc) in nanoseconds (see
    /// [`on_item_nanos`](Self::on_item_nanos)).
    fn to_system_nanos(&self, watermark: i128) -> Option<i128> {
        self.to_system_utc(from_nanos(watermark)).map(nanos)
    }

    /// [`instant_at`](Self::instant_at) for a time in nanoseconds (see
    /// [`on_item_nanos`](Self::on_item_nanos)).
    fn instant_at_nanos(&self, at: i128) -> Option<Instant> {
        self.instant_at(from_nanos(at))
    }

    /// [`instant_at_nanos`](Self::instant_at_nanos) as the keyed engine's timer
    /// deadline (the default converts the `Instant`).
    #[doc(hidden)]
    fn deadline_at_nanos(&self, at: i128) -> Option<u64> {
        self.instant_at_nanos(at).map(deadline_of)
    }
}

// ---- SystemClock --------------------------------------------------------------------

/// Processing time: an item's timestamp is the system time when it arrives, and the
/// watermark is the system time.
///
/// ```
/// use waxfast::operators::window::SystemClock;
/// let clock = SystemClock::new();
/// # let _ = clock;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock<S = WallClock> {
    time: S,
}

impl SystemClock {
    /// The real system time.
    pub fn new() -> SystemClock {
        SystemClock { time: WallClock }
    }
}

impl<S> SystemClock<S> {
    /// This clock reading the time from `time` (e.g. a [`TestingClock`]).
    pub fn with_time<T: TimeSource>(self, time: T) -> SystemClock<T> {
        SystemClock { time }
    }
}

/// The per-key logic of a [`SystemClock`].
#[derive(Debug)]
pub struct SystemClockLogic<S> {
    time: S,
    /// The latest reading, in nanoseconds.
    last: i128,
}

impl<S: TimeSource> SystemClockLogic<S> {
    /// The system time, never earlier than the last reading.
    #[inline]
    fn now(&mut self) -> i128 {
        self.last = self.last.max(self.time.now_nanos());
        self.last
    }
}

impl<V, S: TimeSource> Clock<V> for SystemClock<S> {
    type Logic = SystemClockLogic<S>;

    fn build(&self, _resume: Option<()>) -> SystemClockLogic<S> {
        SystemClockLogic {
            time: self.time.clone(),
            last: NANOS_MIN,
        }
    }
}

impl<V, S: TimeSource> ClockLogic<V> for SystemClockLogic<S> {
    type State = ();

    fn on_item(&mut self, value: &V) -> (DateTime<Utc>, DateTime<Utc>) {
        let (ts, watermark) = self.on_item_nanos(value);
        (from_nanos(ts), from_nanos(watermark))
    }

    fn on_notify(&mut self) -> DateTime<Utc> {
        from_nanos(self.now())
    }

    fn to_system_utc(&self, watermark: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(watermark)
    }

    fn instant_at(&self, at: DateTime<Utc>) -> Option<Instant> {
        self.time.instant_at(at)
    }

    fn snapshot(&self) {}

    #[inline]
    fn on_item_nanos(&mut self, _value: &V) -> (i128, i128) {
        let now = self.now();
        (now, now)
    }

    #[inline]
    fn on_notify_nanos(&mut self) -> i128 {
        self.now()
    }

    #[inline]
    fn to_system_nanos(&self, watermark: i128) -> Option<i128> {
        Some(watermark)
    }

    #[inline]
    fn instant_at_nanos(&self, at: i128) -> Option<Instant> {
        self.time.instant_at_nanos(at)
    }

    #[inline]
    fn deadline_at_nanos(&self, at: i128) -> Option<u64> {
        self.time.deadline_at_nanos(at)
    }
}

// ---- EventClock ---------------------------------------------------------------------

/// Event time: an item's timestamp is read from the item by `ts_getter`.
///
/// Bytewax's watermark rule, per key: the watermark is the largest timestamp seen minus
/// `wait_for_system_duration`, plus the system time that has passed since that
/// timestamp was seen; so a key whose items stop still has its windows closed once the
/// wait has passed. At end of stream the watermark is [`UTC_MAX`].
///
/// ```
/// use chrono::{DateTime, TimeDelta, Utc};
/// use waxfast::operators::window::EventClock;
/// let clock = EventClock::new(|e: &(String, DateTime<Utc>)| e.1, TimeDelta::seconds(2));
/// # let _ = clock;
/// ```
pub struct EventClock<F, S = WallClock> {
    ts_getter: Arc<F>,
    wait: TimeDelta,
    time: S,
}

impl<F, S: Clone> Clone for EventClock<F, S> {
    fn clone(&self) -> Self {
        EventClock {
            ts_getter: self.ts_getter.clone(),
            wait: self.wait,
            time: self.time.clone(),
        }
    }
}

impl<F, S: std::fmt::Debug> std::fmt::Debug for EventClock<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventClock")
            .field("wait_for_system_duration", &self.wait)
            .field("time", &self.time)
            .finish()
    }
}

impl<F> EventClock<F> {
    /// Timestamps from `ts_getter`; the watermark trails the largest timestamp by
    /// `wait_for_system_duration` (which must not be negative).
    pub fn new(ts_getter: F, wait_for_system_duration: TimeDelta) -> EventClock<F> {
        EventClock {
            ts_getter: Arc::new(ts_getter),
            wait: wait_for_system_duration,
            time: WallClock,
        }
    }
}

impl<F, S> EventClock<F, S> {
    /// This clock measuring elapsed system time with `time` (e.g. a [`TestingClock`]).
    pub fn with_time<T: TimeSource>(self, time: T) -> EventClock<F, T> {
        EventClock {
            ts_getter: self.ts_getter,
            wait: self.wait,
            time,
        }
    }

    /// The wait this clock was made with.
    pub fn wait_for_system_duration(&self) -> TimeDelta {
        self.wait
    }
}

/// What an [`EventClock`] remembers per key (Bytewax's `_EventClockState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventClockState {
    /// System time when the watermark last jumped forward on an item.
    pub system_time_of_max_event: DateTime<Utc>,
    /// The watermark at that moment (largest timestamp minus the wait).
    pub watermark_base: DateTime<Utc>,
}

/// The per-key logic of an [`EventClock`].
///
/// Its times are nanoseconds since the Unix epoch inside; [`EventClockState`] is the
/// same state in chrono's types.
pub struct EventClockLogic<F, S> {
    ts_getter: Arc<F>,
    /// `wait_for_system_duration`, in nanoseconds.
    wait: i128,
    time: S,
    /// [`EventClockState::system_time_of_max_event`].
    system_of_max: i128,
    /// [`EventClockState::watermark_base`].
    base: i128,
    /// The latest system time read (system time never goes back for a clock).
    now: i128,
}

impl<F, S: std::fmt::Debug> std::fmt::Debug for EventClockLogic<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventClockLogic")
            .field("state", &self.state())
            .field("now", &from_nanos(self.now))
            .finish()
    }
}

impl<F, S> EventClockLogic<F, S> {
    fn state(&self) -> EventClockState {
        EventClockState {
            system_time_of_max_event: from_nanos(self.system_of_max),
            watermark_base: from_nanos(self.base),
        }
    }
}

impl<F, S: TimeSource> EventClockLogic<F, S> {
    #[inline]
    fn read_now(&mut self) {
        // A system clock can step back (NTP, a manual change); the watermark then holds
        // until it catches up.
        self.now = self.now.max(self.time.now_nanos());
    }

    /// The watermark base plus the system time since the max event, within chrono's
    /// range.
    #[inline]
    fn watermark(&self) -> i128 {
        (self.base + (self.now - self.system_of_max)).clamp(NANOS_MIN, NANOS_MAX)
    }
}

impl<V, F, S> Clock<V> for EventClock<F, S>
where
    F: Fn(&V) -> DateTime<Utc> + Send + Sync + 'static,
    S: TimeSource,
{
    type Logic = EventClockLogic<F, S>;

    fn build(&self, resume: Option<EventClockState>) -> EventClockLogic<F, S> {
        let now = self.time.now_nanos();
        let (system_of_max, base) = match resume {
            Some(s) => (nanos(s.system_time_of_max_event), nanos(s.watermark_base)),
            None => (now, NANOS_MIN),
        };
        EventClockLogic {
            ts_getter: self.ts_getter.clone(),
            wait: delta_nanos(self.wait),
            time: self.time.clone(),
            system_of_max,
            base,
            now,
        }
    }

    fn validate(&self) -> Result<(), WindowConfigError> {
        if self.wait < TimeDelta::zero() {
            return Err(WindowConfigError::Negative {
                what: "EventClock",
                parameter: "wait_for_system_duration",
                value: self.wait,
            });
        }
        Ok(())
    }
}

impl<V, F, S> ClockLogic<V> for EventClockLogic<F, S>
where
    F: Fn(&V) -> DateTime<Utc> + Send + Sync + 'static,
    S: TimeSource,
{
    type State = EventClockState;

    fn on_item(&mut self, value: &V) -> (DateTime<Utc>, DateTime<Utc>) {
        let (ts, watermark) = self.on_item_nanos(value);
        (from_nanos(ts), from_nanos(watermark))
    }

    fn on_notify(&mut self) -> DateTime<Utc> {
        from_nanos(self.on_notify_nanos())
    }

    fn to_system_utc(&self, watermark: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.to_system_nanos(nanos(watermark)).map(from_nanos)
    }

    fn instant_at(&self, at: DateTime<Utc>) -> Option<Instant> {
        self.time.instant_at(at)
    }

    fn snapshot(&self) -> EventClockState {
        self.state()
    }

    #[inline]
    fn on_item_nanos(&mut self, value: &V) -> (i128, i128) {
        let ts = nanos((self.ts_getter)(value));
        self.read_now();
        let watermark = self.watermark();
        // A timestamp so early that `ts - wait` is before chrono's range cannot move
        // the watermark.
        let base = ts - self.wait;
        if base >= NANOS_MIN && base > watermark {
            self.system_of_max = self.now;
            self.base = base;
            return (ts, base);
        }
        (ts, watermark)
    }

    #[inline]
    fn on_notify_nanos(&mut self) -> i128 {
        self.read_now();
        self.watermark()
    }

    #[inline]
    fn to_system_nanos(&self, watermark: i128) -> Option<i128> {
        // The watermark grows with system time from `watermark_base` at
        // `system_time_of_max_event`. (Bytewax's default passes the event time through
        // unchanged, which wakes at the wrong time unless event time is system time.)
        let at = self.system_of_max + (watermark - self.base);
        (NANOS_MIN..=NANOS_MAX).contains(&at).then_some(at)
    }

    #[inline]
    fn instant_at_nanos(&self, at: i128) -> Option<Instant> {
        self.time.instant_at_nanos(at)
    }

    #[inline]
    fn deadline_at_nanos(&self, at: i128) -> Option<u64> {
        self.time.deadline_at_nanos(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_704_067_200 + s, 0).expect("in range")
    }

    #[test]
    fn event_clock_watermark_trails_the_max_and_advances_with_system_time() {
        let sys = TestingClock::new(t(1000));
        let clock =
            EventClock::new(|x: &DateTime<Utc>| *x, TimeDelta::seconds(2)).with_time(sys.clone());
        let mut logic = Clock::<DateTime<Utc>>::build(&clock, None);
        assert_eq!(logic.on_item(&t(10)), (t(10), t(8)));
        // An older item does not move it back.
        assert_eq!(logic.on_item(&t(5)), (t(5), t(8)));
        sys.advance(TimeDelta::seconds(3));
        assert_eq!(ClockLogic::<DateTime<Utc>>::on_notify(&mut logic), t(11));
        // A newer item only moves it when it is ahead of the elapsed-time watermark.
        assert_eq!(logic.on_item(&t(12)), (t(12), t(11)));
        assert_eq!(logic.on_item(&t(20)), (t(20), t(18)));
        assert_eq!(ClockLogic::<DateTime<Utc>>::on_eof(&mut logic), UTC_MAX);
    }

    #[test]
    fn event_clock_maps_a_watermark_to_the_system_time_it_is_reached() {
        let sys = TestingClock::new(t(1000));
        let clock =
            EventClock::new(|x: &DateTime<Utc>| *x, TimeDelta::seconds(2)).with_time(sys.clone());
        let mut logic = Clock::<DateTime<Utc>>::build(&clock, None);
        logic.on_item(&t(10));
        // Watermark 8 reaches 9 one second of system time after the item was seen.
        let sys_at = ClockLogic::<DateTime<Utc>>::to_system_utc(&logic, t(9)).expect("a time");
        assert_eq!(sys_at, t(1001));
        // A testing clock asks to be looked at again at once, due or not.
        let due = ClockLogic::<DateTime<Utc>>::instant_at(&logic, sys_at).expect("a time");
        assert!(due <= Instant::now());
        // The wall clock: a second from now is about a second from now.
        let before = Instant::now();
        let at = WallClock
            .instant_at(Utc::now() + TimeDelta::seconds(1))
            .expect("a time");
        assert!(at > before + std::time::Duration::from_millis(500));
        assert!(at < Instant::now() + std::time::Duration::from_secs(2));
    }

    #[test]
    fn negative_wait_is_refused() {
        let clock = EventClock::new(|x: &DateTime<Utc>| *x, TimeDelta::seconds(-1));
        let err = Clock::<DateTime<Utc>>::validate(&clock).unwrap_err();
        assert!(
            err.to_string().contains("wait_for_system_duration"),
            "{err}"
        );
    }

    #[test]
    fn testing_clock_never_goes_back() {
        let c = TestingClock::new(t(10));
        c.set(t(5));
        c.advance(TimeDelta::seconds(-3));
        assert_eq!(c.now(), t(10));
        c.set(t(12));
        assert_eq!(c.now(), t(12));
    }
}
