//! Windowers: which windows an item belongs to, and when each window closes.
//!
//! Window ids are `i64`, numbered as Bytewax numbers them: for tumbling and sliding
//! windows, id `n` opens at `align_to + n * offset` (negative before `align_to`); for
//! sessions, ids count up from 0 per key in order of creation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use super::clock::UTC_MAX;
use super::nanos::{delta_nanos, from_nanos, nanos, NANOS_MAX};
use super::{WindowConfigError, WindowMetadata};

/// The window id given to an item that is late for a session window (Bytewax's
/// `LATE_SESSION_ID`): which session it would have joined is unknowable.
pub const LATE_SESSION_ID: i64 = -1;

/// A kind of window: builds the per-key [`WindowerLogic`] of a window step.
///
/// Implement it (with a [`WindowerLogic`]) for windows of your own.
pub trait Windower: Send + Sync + 'static {
    /// The per-key logic.
    type Logic: WindowerLogic;

    /// Makes a key's logic when the key is first seen (with its saved state when
    /// resuming).
    fn build(&self, resume: Option<<Self::Logic as WindowerLogic>::State>) -> Self::Logic;

    /// Checks the configuration before the flow runs.
    fn validate(&self) -> Result<(), WindowConfigError> {
        Ok(())
    }
}

/// A key's windows: which are open, which an item falls in, which have closed.
///
/// The window step calls, per item that is not late, [`open_for`](Self::open_for);
/// then [`merged`](Self::merged) and [`close_for`](Self::close_for) with the current
/// watermark. Once every window is closed and [`is_empty`](Self::is_empty) says so, the
/// key's state is dropped.
///
/// ```
/// use chrono::{DateTime, Utc};
/// use waxfast::operators::window::{WindowMetadata, WindowerLogic};
///
/// /// One window per calendar day (UTC), id = days since 1970-01-01.
/// #[derive(Default)]
/// struct Daily(std::collections::BTreeSet<i64>);
///
/// fn bounds(id: i64) -> (DateTime<Utc>, DateTime<Utc>) {
///     let open = DateTime::from_timestamp(id * 86_400, 0).unwrap();
///     (open, open + chrono::TimeDelta::days(1))
/// }
///
/// impl WindowerLogic for Daily {
///     type State = std::collections::BTreeSet<i64>;
///     fn open_for(&mut self, ts: DateTime<Utc>, out: &mut Vec<i64>) {
///         let id = ts.timestamp().div_euclid(86_400);
///         self.0.insert(id);
///         out.push(id);
///     }
///     fn late_for(&self, ts: DateTime<Utc>, out: &mut Vec<i64>) {
///         out.push(ts.timestamp().div_euclid(86_400));
///     }
///     fn close_for(&mut self, watermark: DateTime<Utc>, out: &mut Vec<(i64, WindowMetadata)>) {
///         while let Some(&id) = self.0.first() {
///             let (open, close) = bounds(id);
///             if close > watermark { break; }
///             self.0.pop_first();
///             out.push((id, WindowMetadata::new(open, close)));
///         }
///     }
///     fn notify_at(&self) -> Option<DateTime<Utc>> {
///         self.0.first().map(|&id| bounds(id).1)
///     }
///     fn is_empty(&self) -> bool { self.0.is_empty() }
///     fn snapshot(&self) -> Self::State { self.0.clone() }
/// }
/// ```
pub trait WindowerLogic: Send + 'static {
    /// What [`snapshot`](Self::snapshot) returns.
    type State: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static;

    /// Pushes onto `out` the ids of the windows an on-time item with `timestamp` is in,
    /// opening them if needed.
    fn open_for(&mut self, timestamp: DateTime<Utc>, out: &mut Vec<i64>);

    /// Pushes onto `out` the ids of the windows a late item with `timestamp` would have
    /// been in (or a sentinel); must not open anything.
    fn late_for(&self, timestamp: DateTime<Utc>, out: &mut Vec<i64>);

    /// Pushes `(original, target)` for each window merged into another since the last
    /// call. A merged original is never reported as closed.
    fn merged(&mut self, _out: &mut Vec<(i64, i64)>) {}

    /// Closes the windows that the watermark has passed, pushing each with its final
    /// metadata. With the watermark at [`UTC_MAX`] (end of stream) every window must
    /// close.
    fn close_for(&mut self, watermark: DateTime<Utc>, out: &mut Vec<(i64, WindowMetadata)>);

    /// The watermark at which the next window would close; `None` with no open window.
    /// The window step calls [`close_for`](Self::close_for) only once the watermark has
    /// reached it (or at end of stream).
    fn notify_at(&self) -> Option<DateTime<Utc>>;

    /// True when no window is open and nothing else needs keeping for the key.
    fn is_empty(&self) -> bool;

    /// The state to save at the end of an epoch.
    fn snapshot(&self) -> Self::State;

    /// [`open_for`](Self::open_for) with the timestamp in nanoseconds since the Unix
    /// epoch: what the window engine calls. The default converts; the built-in
    /// tumbling and sliding windowers compute in integers and implement `open_for` by
    /// converting to this.
    fn open_for_nanos(&mut self, timestamp: i128, out: &mut Vec<i64>) {
        self.open_for(from_nanos(timestamp), out)
    }

    /// [`late_for`](Self::late_for) in nanoseconds (see
    /// [`open_for_nanos`](Self::open_for_nanos)).
    fn late_for_nanos(&self, timestamp: i128, out: &mut Vec<i64>) {
        self.late_for(from_nanos(timestamp), out)
    }

    /// [`close_for`](Self::close_for) in nanoseconds (see
    /// [`open_for_nanos`](Self::open_for_nanos)); [`NANOS_MAX`] is end of stream.
    fn close_for_nanos(&mut self, watermark: i128, out: &mut Vec<(i64, WindowMetadata)>) {
        self.close_for(from_nanos(watermark), out)
    }

    /// [`notify_at`](Self::notify_at) in nanoseconds (see
    /// [`open_for_nanos`](Self::open_for_nanos)).
    fn notify_at_nanos(&self) -> Option<i128> {
        self.notify_at().map(nanos)
    }
}

fn positive(
    what: &'static str,
    parameter: &'static str,
    value: TimeDelta,
) -> Result<(), WindowConfigError> {
    if value <= TimeDelta::zero() {
        return Err(WindowConfigError::NotPositive {
            what,
            parameter,
            value,
        });
    }
    Ok(())
}

// ---- tumbling and sliding -----------------------------------------------------------

/// Fixed windows of `length` that do not overlap; each item is in exactly one. Window
/// `n` covers `[align_to + n * length, align_to + (n + 1) * length)`.
///
/// ```
/// use chrono::{DateTime, TimeDelta};
/// use waxfast::operators::window::TumblingWindower;
/// let align = DateTime::from_timestamp(1_704_067_200, 0).unwrap(); // 2024-01-01
/// let windower = TumblingWindower::new(TimeDelta::seconds(10), align);
/// # let _ = windower;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TumblingWindower {
    /// Length of each window (must be positive).
    pub length: TimeDelta,
    /// An instant at which a window opens (window 0).
    pub align_to: DateTime<Utc>,
}

impl TumblingWindower {
    /// Windows of `length`, one opening at `align_to`.
    pub fn new(length: TimeDelta, align_to: DateTime<Utc>) -> TumblingWindower {
        TumblingWindower { length, align_to }
    }
}

impl Windower for TumblingWindower {
    type Logic = SlidingWindowerLogic;

    fn build(&self, resume: Option<BTreeSet<i64>>) -> SlidingWindowerLogic {
        SlidingWindowerLogic::new(self.length, self.length, self.align_to, resume)
    }

    fn validate(&self) -> Result<(), WindowConfigError> {
        positive("TumblingWindower", "length", self.length)
    }
}

/// Windows of `length` opening every `offset`: with `offset < length` they overlap and
/// an item can be in several; `offset == length` is a [`TumblingWindower`]. Window `n`
/// covers `[align_to + n * offset, align_to + n * offset + length)` (open inclusive,
/// close exclusive).
///
/// ```
/// use chrono::{DateTime, TimeDelta};
/// use waxfast::operators::window::SlidingWindower;
/// let align = DateTime::from_timestamp(1_704_067_200, 0).unwrap();
/// let windower = SlidingWindower::new(TimeDelta::seconds(20), TimeDelta::seconds(10), align);
/// # let _ = windower;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindower {
    /// Length of each window (must be positive).
    pub length: TimeDelta,
    /// Time between the opening of consecutive windows (positive, at most `length`:
    /// a longer offset would leave gaps that lose items).
    pub offset: TimeDelta,
    /// An instant at which a window opens (window 0).
    pub align_to: DateTime<Utc>,
}

impl SlidingWindower {
    /// Windows of `length` every `offset`, one opening at `align_to`.
    pub fn new(length: TimeDelta, offset: TimeDelta, align_to: DateTime<Utc>) -> SlidingWindower {
        SlidingWindower {
            length,
            offset,
            align_to,
        }
    }
}

impl Windower for SlidingWindower {
    type Logic = SlidingWindowerLogic;

    fn build(&self, resume: Option<BTreeSet<i64>>) -> SlidingWindowerLogic {
        SlidingWindowerLogic::new(self.length, self.offset, self.align_to, resume)
    }

    fn validate(&self) -> Result<(), WindowConfigError> {
        positive("SlidingWindower", "length", self.length)?;
        positive("SlidingWindower", "offset", self.offset)?;
        if self.offset > self.length {
            return Err(WindowConfigError::OffsetLongerThanLength {
                offset: self.offset,
                length: self.length,
            });
        }
        Ok(())
    }
}

/// The per-key logic of tumbling and sliding windows: the ids of the open windows.
/// Window bounds follow from the id, so nothing else is stored.
#[derive(Debug, Clone)]
pub struct SlidingWindowerLogic {
    length: i128,
    offset: i128,
    align: i128,
    /// `(length, offset)` when both fit in 64 bits (always, but for windows over 292
    /// years long): the window ids of most times are then found by 64-bit division.
    narrow: Option<(i64, i64)>,
    /// The open windows' ids, ascending (a new window is almost always the last).
    opened: VecDeque<i64>,
    /// When the first of `opened` closes (`i128::MAX` with none open): asked after
    /// every item, changed only when the first open window does.
    front_close: i128,
    /// The last item's windows and the span of times that are in exactly those:
    /// `[lo, hi)` -> `first..=last`. Items of a key mostly fall in the span of the
    /// previous one, which then costs two comparisons instead of two divisions.
    span: (i128, i128, i64, i64),
}

impl SlidingWindowerLogic {
    fn new(
        length: TimeDelta,
        offset: TimeDelta,
        align_to: DateTime<Utc>,
        resume: Option<BTreeSet<i64>>,
    ) -> Self {
        let (length, offset) = (delta_nanos(length), delta_nanos(offset));
        let mut logic = SlidingWindowerLogic {
            length,
            offset,
            align: nanos(align_to),
            narrow: i64::try_from(length).ok().zip(i64::try_from(offset).ok()),
            opened: resume.unwrap_or_default().into_iter().collect(),
            front_close: i128::MAX,
            span: (0, 0, 0, -1),
        };
        logic.refresh_front();
        logic
    }

    /// Recomputes [`front_close`](Self::front_close) after the first open window changed.
    #[inline]
    fn refresh_front(&mut self) {
        self.front_close = self
            .opened
            .front()
            .map_or(i128::MAX, |&id| self.open_nanos(id) + self.length);
    }

    /// [`intersects`](Self::intersects) through the cached span of the last item.
    #[inline]
    fn intersects_cached(&mut self, ts: i128) -> (i64, i64) {
        let (lo, hi, first, last) = self.span;
        if lo <= ts && ts < hi {
            return (first, last);
        }
        let (first, last) = self.intersects(ts);
        // `last` is constant while `ts - align` is in `[last, last + 1) * offset`, and
        // `first` while it is in `[first - 1, first) * offset + length`.
        let (f, l) = (i128::from(first), i128::from(last));
        let lo =
            (self.align + l * self.offset).max(self.align + (f - 1) * self.offset + self.length);
        let hi =
            (self.align + (l + 1) * self.offset).min(self.align + f * self.offset + self.length);
        self.span = (lo, hi, first, last);
        (first, last)
    }

    /// The ids of the windows containing `ts` (nanoseconds), as an inclusive range.
    #[inline]
    fn intersects(&self, ts: i128) -> (i64, i64) {
        let since = ts - self.align;
        // Times within about 292 years of the alignment fit in 64 bits, where a division
        // is one instruction instead of a call to the 128-bit routine.
        if let (Ok(since), Some((length, offset))) = (i64::try_from(since), self.narrow) {
            if length == offset {
                // Tumbling: exactly one window, one division.
                let id = since.div_euclid(offset);
                return (id, id);
            }
            if let Some(start) = since.checked_sub(length) {
                return (start.div_euclid(offset) + 1, since.div_euclid(offset));
            }
        }
        self.intersects_wide(since)
    }

    /// [`intersects`](Self::intersects) for any time: `since` is nanoseconds after the
    /// alignment.
    fn intersects_wide(&self, since: i128) -> (i64, i64) {
        let first = (since - self.length).div_euclid(self.offset) + 1;
        let last = since.div_euclid(self.offset);
        // Ids of representable instants fit in an i64 for any offset of 1 ns or more.
        (first as i64, last as i64)
    }

    fn open_nanos(&self, id: i64) -> i128 {
        self.align + self.offset * i128::from(id)
    }

    fn metadata(&self, id: i64) -> WindowMetadata {
        let open = self.open_nanos(id);
        WindowMetadata::new(from_nanos(open), from_nanos(open + self.length))
    }

    /// Adds `id` to the open windows, keeping them in order.
    #[inline]
    fn open(&mut self, id: i64) {
        match self.opened.back() {
            None => {
                self.opened.push_back(id);
                self.refresh_front();
            }
            Some(&last) if last < id => self.opened.push_back(id),
            Some(&last) if last == id => {}
            Some(_) => {
                if let Err(at) = self.opened.binary_search(&id) {
                    self.opened.insert(at, id);
                    if at == 0 {
                        self.refresh_front();
                    }
                }
            }
        }
    }
}

impl WindowerLogic for SlidingWindowerLogic {
    type State = BTreeSet<i64>;

    fn open_for(&mut self, timestamp: DateTime<Utc>, out: &mut Vec<i64>) {
        self.open_for_nanos(nanos(timestamp), out)
    }

    fn late_for(&self, timestamp: DateTime<Utc>, out: &mut Vec<i64>) {
        self.late_for_nanos(nanos(timestamp), out)
    }

    fn close_for(&mut self, watermark: DateTime<Utc>, out: &mut Vec<(i64, WindowMetadata)>) {
        let watermark = if watermark == UTC_MAX {
            NANOS_MAX
        } else {
            nanos(watermark)
        };
        self.close_for_nanos(watermark, out)
    }

    fn notify_at(&self) -> Option<DateTime<Utc>> {
        self.notify_at_nanos().map(from_nanos)
    }

    fn is_empty(&self) -> bool {
        self.opened.is_empty()
    }

    fn snapshot(&self) -> BTreeSet<i64> {
        self.opened.iter().copied().collect()
    }

    #[inline]
    fn open_for_nanos(&mut self, timestamp: i128, out: &mut Vec<i64>) {
        let (first, last) = self.intersects_cached(timestamp);
        for id in first..=last {
            self.open(id);
            out.push(id);
        }
    }

    #[inline]
    fn late_for_nanos(&self, timestamp: i128, out: &mut Vec<i64>) {
        let (first, last) = self.intersects(timestamp);
        out.extend(first..=last);
    }

    #[inline]
    fn close_for_nanos(&mut self, watermark: i128, out: &mut Vec<(i64, WindowMetadata)>) {
        let all = watermark >= NANOS_MAX;
        // Close times grow with the id: the open windows close in id order, and the
        // common case, nothing to close, is one comparison.
        while let Some(close) = self.notify_at_nanos() {
            if !all && close > watermark {
                break;
            }
            let id = self
                .opened
                .pop_front()
                .expect("notify_at found an open window");
            self.refresh_front();
            out.push((id, self.metadata(id)));
        }
    }

    #[inline]
    fn notify_at_nanos(&self) -> Option<i128> {
        (self.front_close != i128::MAX).then_some(self.front_close)
    }
}

// ---- sessions -----------------------------------------------------------------------

/// Sessions: items closer than `gap` to each other (in event time) share a window. A
/// session that an item bridges to another merges with it; the merged session keeps
/// the id of the one that opens first and lists the other in
/// [`WindowMetadata::merged_ids`]. A session closes once the watermark is more than
/// `gap` past its last item. `open_time` and `close_time` are its first and last
/// item's timestamps (both inclusive).
///
/// ```
/// use chrono::TimeDelta;
/// use waxfast::operators::window::SessionWindower;
/// let windower = SessionWindower::new(TimeDelta::minutes(5));
/// # let _ = windower;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindower {
    /// Inactivity that ends a session (must be positive).
    pub gap: TimeDelta,
}

impl SessionWindower {
    /// Sessions ended by `gap` of inactivity.
    pub fn new(gap: TimeDelta) -> SessionWindower {
        SessionWindower { gap }
    }
}

impl Windower for SessionWindower {
    type Logic = SessionWindowerLogic;

    fn build(&self, resume: Option<SessionWindowerState>) -> SessionWindowerLogic {
        SessionWindowerLogic {
            gap: self.gap,
            state: resume.unwrap_or_default(),
            merges: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), WindowConfigError> {
        positive("SessionWindower", "gap", self.gap)
    }
}

/// What a session windower keeps per key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionWindowerState {
    /// The last id given out ([`LATE_SESSION_ID`] before the first session).
    pub max_id: i64,
    /// Open sessions by id.
    pub sessions: BTreeMap<i64, WindowMetadata>,
}

impl Default for SessionWindowerState {
    fn default() -> Self {
        SessionWindowerState {
            max_id: LATE_SESSION_ID,
            sessions: BTreeMap::new(),
        }
    }
}

/// The per-key logic of [`SessionWindower`].
#[derive(Debug, Clone)]
pub struct SessionWindowerLogic {
    gap: TimeDelta,
    state: SessionWindowerState,
    /// `(original, target)` merges not yet reported.
    merges: Vec<(i64, i64)>,
}

impl SessionWindowerLogic {
    /// Merges sessions that are now within `gap` of each other (after a session grew).
    fn find_merges(&mut self) {
        let sessions = &mut self.state.sessions;
        if sessions.len() < 2 {
            return;
        }
        let mut by_open: Vec<(DateTime<Utc>, i64)> =
            sessions.iter().map(|(&id, m)| (m.open_time, id)).collect();
        // Stable on id order among equal open times, as Bytewax's sort over its dict.
        by_open.sort_by_key(|&(open, _)| open);
        let mut last = by_open[0].1;
        for &(_, this) in &by_open[1..] {
            let (last_close, this_open) = (sessions[&last].close_time, sessions[&this].open_time);
            if this_open.signed_duration_since(last_close) <= self.gap {
                let gone = sessions.remove(&this).expect("listed above");
                let target = sessions.get_mut(&last).expect("listed above");
                target.close_time = target.close_time.max(gone.close_time);
                target.merged_ids.insert(this);
                // Ids merged into the absorbed session were merged into this one too.
                target.merged_ids.extend(gone.merged_ids);
                self.merges.push((this, last));
            } else {
                last = this;
            }
        }
    }
}

impl WindowerLogic for SessionWindowerLogic {
    type State = SessionWindowerState;

    fn open_for(&mut self, timestamp: DateTime<Utc>, out: &mut Vec<i64>) {
        let gap = self.gap;
        let zero = TimeDelta::zero();
        // The first session (in id order) the item is in or within `gap` of.
        for (&id, meta) in self.state.sessions.iter_mut() {
            let until_open = meta.open_time.signed_duration_since(timestamp);
            let since_close = timestamp.signed_duration_since(meta.close_time);
            if until_open <= zero && since_close <= zero {
                out.push(id);
                return;
            } else if until_open > zero && until_open <= gap {
                meta.open_time = timestamp;
                self.find_merges();
                out.push(id);
                return;
            } else if since_close > zero && since_close <= gap {
                meta.close_time = timestamp;
                self.find_merges();
                out.push(id);
                return;
            }
        }
        self.state.max_id += 1;
        let id = self.state.max_id;
        self.state
            .sessions
            .insert(id, WindowMetadata::new(timestamp, timestamp));
        out.push(id);
    }

    fn late_for(&self, _timestamp: DateTime<Utc>, out: &mut Vec<i64>) {
        out.push(LATE_SESSION_ID);
    }

    fn merged(&mut self, out: &mut Vec<(i64, i64)>) {
        out.append(&mut self.merges);
    }

    fn close_for(&mut self, watermark: DateTime<Utc>, out: &mut Vec<(i64, WindowMetadata)>) {
        let close_after = if watermark == UTC_MAX {
            None
        } else {
            watermark.checked_sub_signed(self.gap)
        };
        let closed: Vec<i64> = self
            .state
            .sessions
            .iter()
            .filter(|(_, m)| match close_after {
                None => watermark == UTC_MAX,
                Some(after) => m.close_time < after,
            })
            .map(|(&id, _)| id)
            .collect();
        for id in closed {
            let meta = self.state.sessions.remove(&id).expect("listed above");
            out.push((id, meta));
        }
    }

    fn notify_at(&self) -> Option<DateTime<Utc>> {
        let min_close = self.state.sessions.values().map(|m| m.close_time).min()?;
        // A session closes once the watermark is strictly past `close + gap`.
        min_close
            .checked_add_signed(self.gap + TimeDelta::nanoseconds(1))
            .or(Some(UTC_MAX))
    }

    fn is_empty(&self) -> bool {
        // Unlike Bytewax (whose session state is never freed, their issue #577), a key
        // with no open session keeps nothing.
        self.state.sessions.is_empty() && self.merges.is_empty()
    }

    fn snapshot(&self) -> SessionWindowerState {
        self.state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_704_067_200 + s, 0).expect("in range")
    }

    proptest::proptest! {
        /// The 64-bit fast path of `intersects` gives the 128-bit formula's ids, for any
        /// representable time and window shape (including times far from the alignment,
        /// where the fast path does not apply).
        #[test]
        fn window_ids_match_the_wide_formula(
            // Mostly within the fast path's range (about 1822 to 2116), sometimes anywhere.
            ts_secs in proptest::prop_oneof![
                3 => -4_700_000_000i64..4_600_000_000,
                1 => -8_000_000_000_000i64..8_000_000_000_000,
            ],
            ts_nanos in 0u32..1_000_000_000,
            len_ms in 1i64..10_000_000_000,
            offset_permille in 1i64..=1000,
            align_secs in -100_000_000_000i64..100_000_000_000,
        ) {
            let (Some(ts), Some(align)) = (
                DateTime::from_timestamp(ts_secs, ts_nanos),
                DateTime::from_timestamp(align_secs, 0),
            ) else {
                return Ok(());
            };
            let length = TimeDelta::milliseconds(len_ms);
            let offset = TimeDelta::milliseconds((len_ms * offset_permille / 1000).max(1));
            let logic = SlidingWindowerLogic::new(length, offset, align, None);
            let wide = logic.intersects_wide(nanos(ts) - logic.align);
            proptest::prop_assert_eq!(logic.intersects(nanos(ts)), wide);
        }

        /// The span cache of `open_for` gives the formula's ids for any sequence of
        /// times, near each other (cache hits) or not (misses), at span edges too.
        #[test]
        fn cached_window_ids_match_the_formula(
            steps in proptest::collection::vec(-3_000i64..3_000, 1..200),
            len_ms in 1i64..5_000,
            offset_permille in 1i64..=1000,
        ) {
            let length = TimeDelta::milliseconds(len_ms);
            let offset = TimeDelta::milliseconds((len_ms * offset_permille / 1000).max(1));
            let mut logic = SlidingWindowerLogic::new(length, offset, t(0), None);
            let mut at = nanos(t(0));
            for step in steps {
                // Milliseconds, and now and then exactly on a window boundary.
                at += i128::from(step) * 1_000_000;
                if step % 7 == 0 {
                    at -= (at - logic.align).rem_euclid(logic.offset);
                }
                let mut ids = Vec::new();
                logic.open_for_nanos(at, &mut ids);
                let (first, last) = logic.intersects_wide(at - logic.align);
                proptest::prop_assert_eq!(ids, (first..=last).collect::<Vec<_>>());
            }
        }

        /// The cached close time of the first open window is the one its id gives,
        /// through items in any order (windows opening before the first), closings at
        /// any watermark and a resume.
        #[test]
        fn the_cached_first_close_is_the_first_open_windows_close(
            ops in proptest::collection::vec((proptest::prelude::any::<bool>(), -20_000i64..20_000), 1..120),
            len_ms in 1i64..5_000,
            offset_permille in 1i64..=1000,
        ) {
            let length = TimeDelta::milliseconds(len_ms);
            let offset = TimeDelta::milliseconds((len_ms * offset_permille / 1000).max(1));
            let mut logic = SlidingWindowerLogic::new(length, offset, t(0), None);
            let expect = |l: &SlidingWindowerLogic| {
                l.opened.front().map(|&id| l.open_nanos(id) + l.length)
            };
            for (i, (close, ms)) in ops.into_iter().enumerate() {
                let at = nanos(t(0)) + i128::from(ms) * 1_000_000;
                if close {
                    logic.close_for_nanos(at, &mut Vec::new());
                } else {
                    logic.open_for_nanos(at, &mut Vec::new());
                }
                proptest::prop_assert_eq!(logic.notify_at_nanos(), expect(&logic));
                if i % 10 == 9 {
                    let saved = logic.snapshot();
                    logic = SlidingWindowerLogic::new(length, offset, t(0), Some(saved));
                    proptest::prop_assert_eq!(logic.notify_at_nanos(), expect(&logic));
                }
            }
        }
    }

    fn secs(s: i64) -> TimeDelta {
        TimeDelta::seconds(s)
    }

    fn open(logic: &mut impl WindowerLogic, ts: DateTime<Utc>) -> Vec<i64> {
        let mut out = Vec::new();
        logic.open_for(ts, &mut out);
        out
    }

    fn close(logic: &mut impl WindowerLogic, wm: DateTime<Utc>) -> Vec<(i64, WindowMetadata)> {
        let mut out = Vec::new();
        logic.close_for(wm, &mut out);
        out
    }

    #[test]
    fn tumbling_ids_boundaries_and_negative_ids() {
        let mut w = TumblingWindower::new(secs(10), t(0)).build(None);
        assert_eq!(open(&mut w, t(0)), vec![0], "open time is inclusive");
        assert_eq!(open(&mut w, t(9)), vec![0]);
        assert_eq!(open(&mut w, t(10)), vec![1], "close time is exclusive");
        assert_eq!(open(&mut w, t(-1)), vec![-1]);
        assert_eq!(open(&mut w, t(-10)), vec![-1]);
        assert_eq!(open(&mut w, t(-11)), vec![-2]);
        let sub = t(-1) + TimeDelta::nanoseconds(999_999_999);
        assert_eq!(open(&mut w, sub), vec![-1]);
        assert_eq!(w.notify_at(), Some(t(-10)), "window -2 closes first");
        let closed = close(&mut w, t(0));
        assert_eq!(
            closed,
            vec![
                (-2, WindowMetadata::new(t(-20), t(-10))),
                (-1, WindowMetadata::new(t(-10), t(0)))
            ]
        );
        assert_eq!(close(&mut w, t(9)), vec![], "window 0 closes at 10");
        assert_eq!(close(&mut w, UTC_MAX).len(), 2);
        assert!(w.is_empty());
    }

    #[test]
    fn sliding_windows_overlap_and_late_lists_every_window() {
        let mut w = SlidingWindower::new(secs(20), secs(10), t(0)).build(None);
        assert_eq!(open(&mut w, t(0)), vec![-1, 0]);
        assert_eq!(open(&mut w, t(25)), vec![1, 2]);
        let mut late = Vec::new();
        w.late_for(t(12), &mut late);
        assert_eq!(late, vec![0, 1]);
        // Offset not dividing the length: 3 s windows every 2 s.
        let mut w = SlidingWindower::new(secs(3), secs(2), t(0)).build(None);
        assert_eq!(open(&mut w, t(2)), vec![0, 1]);
        assert_eq!(open(&mut w, t(3)), vec![1]);
        assert_eq!(open(&mut w, t(4)), vec![1, 2]);
    }

    #[test]
    fn session_merges_three_sessions_into_the_earliest() {
        let mut w = SessionWindower::new(secs(5)).build(None);
        assert_eq!(open(&mut w, t(0)), vec![0]);
        assert_eq!(open(&mut w, t(20)), vec![1]);
        assert_eq!(open(&mut w, t(10)), vec![2]);
        // 5 extends session 0 to [0, 5]; within the gap of session 2 [10, 10]: merge.
        assert_eq!(open(&mut w, t(5)), vec![0]);
        let mut merges = Vec::new();
        w.merged(&mut merges);
        assert_eq!(merges, vec![(2, 0)]);
        // 15 extends session 0 ([0, 10]) to 15, bridging to session 1 at 20.
        assert_eq!(open(&mut w, t(15)), vec![0]);
        merges.clear();
        w.merged(&mut merges);
        assert_eq!(merges, vec![(1, 0)]);
        let closed = close(&mut w, UTC_MAX);
        let mut meta = WindowMetadata::new(t(0), t(20));
        meta.merged_ids.extend([1, 2]);
        assert_eq!(closed, vec![(0, meta)]);
        assert!(w.is_empty(), "a key without sessions keeps nothing");
    }

    #[test]
    fn session_closes_strictly_after_the_gap() {
        let mut w = SessionWindower::new(secs(5)).build(None);
        open(&mut w, t(0));
        assert_eq!(close(&mut w, t(5)), vec![]);
        assert!(w.notify_at().expect("open session") > t(5));
        assert_eq!(close(&mut w, t(5) + TimeDelta::nanoseconds(1)).len(), 1);
    }

    #[test]
    fn zero_and_inverted_parameters_are_refused() {
        let z = TimeDelta::zero();
        let e = TumblingWindower::new(z, t(0)).validate().unwrap_err();
        assert!(e.to_string().contains("`length`"), "{e}");
        let e = SlidingWindower::new(secs(10), z, t(0))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("`offset`"), "{e}");
        let e = SlidingWindower::new(secs(10), secs(11), t(0))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("gaps"), "{e}");
        let e = SessionWindower::new(z).validate().unwrap_err();
        assert!(e.to_string().contains("`gap`"), "{e}");
        assert!(SlidingWindower::new(secs(10), secs(10), t(0))
            .validate()
            .is_ok());
    }
}
