//! Windowing: Bytewax's time windows over keyed streams.
//!
//! A window step groups each key's items by time. Three parts decide how:
//!
//! * a [`Clock`] gives each item a timestamp and keeps the key's *watermark*, the time
//!   before which no more items are expected ([`SystemClock`]: processing time;
//!   [`EventClock`]: a timestamp inside the item);
//! * a [`Windower`] says which windows an item falls in and when a window closes
//!   ([`TumblingWindower`], [`SlidingWindower`], [`SessionWindower`]);
//! * a window logic says what to compute per window (`fold_window`, `count_window`,
//!   `collect_window`, ..., or your own [`WindowLogic`] with
//!   [`window`](crate::Stream::window)).
//!
//! Clocks and windows exist per key, as in Bytewax. An item whose timestamp is before
//! its key's watermark is *late*: it goes to the `late` stream, in no window. A window
//! closes when the watermark passes its end: on an item, on system time passing (the
//! step asks the runtime to wake it, so a key that sees no more items still closes its
//! windows), and at end of stream, where the watermark is [`UTC_MAX`] and every window
//! closes. Every window operator returns a [`WindowOut`]: `down` (what the logic
//! emits, `(key, (window_id, value))`), `late` (`(key, (window_id, item))`) and `meta`
//! (`(key, (window_id, WindowMetadata))`, once per window when it closes).
//!
//! Each operator is a composite step: `step.window` (the keyed window step) and
//! `step.split` (into the three streams); `count_window` keys the items first
//! (`step.key`), `join_window` tags and merges its two inputs (`step.left`,
//! `step.right`, `step.merge`). A configuration that cannot work (a zero window length
//! or gap, say) fails the run before any item, with an error naming `step` and the
//! parameter ([`WindowConfigError`]).
//!
//! Unlike Bytewax, a window's state is freed when it closes for every windower
//! (Bytewax keeps session state forever, their issue #577), and a key with no open
//! window and nothing buffered keeps no state at all. [`WindowOut::stats`] counts the
//! live state.
//!
//! Timestamps are [`chrono::DateTime<Utc>`](chrono::DateTime) and durations
//! [`chrono::TimeDelta`]; the crate is re-exported as [`chrono`] here.
//!
//! ```
//! use chrono::{DateTime, TimeDelta, Utc};
//! use waxfast::{Dataflow, run_main};
//! use waxfast::connectors::testing::{TestingSink, TestingSource};
//! use waxfast::operators::window::{EventClock, TumblingWindower};
//!
//! let t0 = DateTime::from_timestamp(1_704_067_200, 0).unwrap(); // 2024-01-01T00:00:00Z
//! let at = move |s: i64| t0 + TimeDelta::seconds(s);
//! let flow = Dataflow::new("clicks");
//! let (sink, out) = TestingSink::new();
//! // Items cross exchanges, so they are owned (`ExchangeData`).
//! type Click = (String, DateTime<Utc>);
//! let click = |s| ("ann".to_string(), at(s));
//! let clicks = flow.input("inp", TestingSource::new(vec![click(1), click(4), click(12)]));
//! let counts = clicks.count_window(
//!     "per_10s",
//!     EventClock::new(|c: &Click| c.1, TimeDelta::zero()),
//!     TumblingWindower::new(TimeDelta::seconds(10), t0),
//!     |c: &Click| c.0.clone(),
//! );
//! counts.down.output("out", sink);
//! run_main(&flow).unwrap();
//! assert_eq!(out.take(), vec![("ann".to_string(), (0, 2)), ("ann".to_string(), (1, 1))]);
//! ```

mod clock;
mod engine;
mod nanos;
mod ops;
mod windower;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub use chrono;
use chrono::{DateTime, TimeDelta, Utc};

use crate::dataflow::Stream;

pub use clock::{
    Clock, ClockLogic, EventClock, EventClockLogic, EventClockState, SystemClock, SystemClockLogic,
    TestingClock, TimeSource, WallClock, UTC_MAX, UTC_MIN,
};
pub use engine::WindowLogic;
pub use nanos::{from_nanos, nanos, NANOS_MAX, NANOS_MIN};
pub use ops::JoinSide;
pub use windower::{
    SessionWindower, SessionWindowerLogic, SessionWindowerState, SlidingWindower,
    SlidingWindowerLogic, TumblingWindower, Windower, WindowerLogic, LATE_SESSION_ID,
};

/// What is known of a window when it closes.
///
/// For tumbling and sliding windows `close_time` is exclusive; for sessions both times
/// are the first and last item's timestamps.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct WindowMetadata {
    /// When the window opened.
    pub open_time: DateTime<Utc>,
    /// When the window closed.
    pub close_time: DateTime<Utc>,
    /// Ids of windows merged into this one before it closed (sessions only), including
    /// windows merged into those.
    pub merged_ids: BTreeSet<i64>,
}

impl WindowMetadata {
    /// A window from `open_time` to `close_time` with nothing merged into it.
    pub fn new(open_time: DateTime<Utc>, close_time: DateTime<Utc>) -> WindowMetadata {
        WindowMetadata {
            open_time,
            close_time,
            merged_ids: BTreeSet::new(),
        }
    }
}

/// A window configuration that cannot work. A window step with one fails its run
/// before any item is processed, with [`Error::Step`](crate::Error::Step) naming the
/// step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowConfigError {
    /// A duration that must be positive is zero or negative.
    #[error("{what}: `{parameter}` must be positive, got {value}")]
    NotPositive {
        /// The windower or clock.
        what: &'static str,
        /// The parameter.
        parameter: &'static str,
        /// The value given.
        value: TimeDelta,
    },
    /// A duration that must not be negative is.
    #[error("{what}: `{parameter}` must not be negative, got {value}")]
    Negative {
        /// The windower or clock.
        what: &'static str,
        /// The parameter.
        parameter: &'static str,
        /// The value given.
        value: TimeDelta,
    },
    /// A sliding window's `offset` is longer than its `length`.
    #[error("SlidingWindower: `offset` ({offset}) is longer than `length` ({length}); there would be gaps between windows where items are lost")]
    OffsetLongerThanLength {
        /// The offset given.
        offset: TimeDelta,
        /// The length given.
        length: TimeDelta,
    },
}

/// The streams a window operator returns.
#[derive(Debug, Clone)]
pub struct WindowOut<K, V, W> {
    /// What the window logic emits (for the built-in operators, one value per window
    /// when it closes): `(key, (window_id, value))`.
    pub down: Stream<(K, (i64, W))>,
    /// Items that were late: `(key, (window_id, item))`, once per window the item would
    /// have been in ([`LATE_SESSION_ID`] for sessions).
    pub late: Stream<(K, (i64, V))>,
    /// Each window's metadata, once, when it closes: `(key, (window_id, metadata))`.
    /// Windows merged into another are not reported; the target lists them.
    pub meta: Stream<(K, (i64, WindowMetadata))>,
    /// Live state of this step, summed over the workers of this process.
    pub stats: WindowStats,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Counter {
    now: AtomicI64,
    peak: AtomicI64,
}

impl Counter {
    fn add(&self, n: i64) {
        let now = self.now.fetch_add(n, Ordering::Relaxed) + n;
        if n > 0 {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
    }
    fn get(&self) -> usize {
        self.now.load(Ordering::Relaxed).max(0) as usize
    }
    fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed).max(0) as usize
    }
}

#[derive(Debug, Default)]
struct Counts {
    keys: Counter,
    windows: Counter,
    queued: Counter,
}

/// Counts of a window step's live state (over all workers of this process): keys that
/// hold state, open windows, and items buffered until the watermark passes them
/// (`ordered` operators). Read it while a flow runs or after; every count is back to 0
/// once a run ends.
///
/// ```
/// # use chrono::{DateTime, TimeDelta, Utc};
/// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSink, TestingSource}};
/// # use waxfast::operators::window::{EventClock, SessionWindower};
/// let flow = Dataflow::new("f");
/// let t0 = DateTime::from_timestamp(0, 0).unwrap();
/// let inp = flow.input("inp", TestingSource::new(vec![("k", t0)]));
/// let out = inp.collect_window(
///     "sessions",
///     EventClock::new(|t: &DateTime<Utc>| *t, TimeDelta::zero()),
///     SessionWindower::new(TimeDelta::seconds(5)),
///     true,
/// );
/// let (sink, _got) = TestingSink::new();
/// out.down.output("out", sink);
/// run_main(&flow).unwrap();
/// assert_eq!((out.stats.keys(), out.stats.windows()), (0, 0));
/// assert_eq!((out.stats.peak_keys(), out.stats.peak_windows()), (1, 1));
/// ```
#[derive(Debug, Clone, Default)]
pub struct WindowStats(Arc<Counts>);

impl WindowStats {
    /// Keys holding state now.
    pub fn keys(&self) -> usize {
        self.0.keys.get()
    }
    /// Open windows now.
    pub fn windows(&self) -> usize {
        self.0.windows.get()
    }
    /// Items buffered now, waiting for the watermark.
    pub fn queued(&self) -> usize {
        self.0.queued.get()
    }
    /// The most keys that held state at once.
    pub fn peak_keys(&self) -> usize {
        self.0.keys.peak()
    }
    /// The most windows open at once.
    pub fn peak_windows(&self) -> usize {
        self.0.windows.peak()
    }
    /// The most items buffered at once.
    pub fn peak_queued(&self) -> usize {
        self.0.queued.peak()
    }
}
