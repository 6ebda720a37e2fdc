//! The window engine's time: nanoseconds since the Unix epoch, as `i128`.
//!
//! Every `DateTime<Utc>` fits (chrono's range is about ±262 000 years), so the engine
//! computes watermarks, window bounds and timers exactly, with integer comparisons and
//! additions, and converts to chrono only at the API's edge: a clock's timestamp
//! getter, window metadata, snapshots and a user's own clock or windower.

use chrono::{DateTime, TimeDelta, Utc};

use super::clock::{UTC_MAX, UTC_MIN};

/// [`UTC_MIN`] in nanoseconds: the watermark of a clock that has seen nothing.
pub const NANOS_MIN: i128 = -8_334_601_228_800_000_000_000;

/// [`UTC_MAX`] in nanoseconds: the watermark at end of stream.
pub const NANOS_MAX: i128 = 8_210_266_876_799_999_999_999;

/// Nanoseconds since the Unix epoch of `t`.
#[inline]
pub fn nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

/// The instant `n` nanoseconds after the Unix epoch, clamped to the representable range.
pub fn from_nanos(n: i128) -> DateTime<Utc> {
    let secs = n.div_euclid(1_000_000_000);
    let sub = n.rem_euclid(1_000_000_000) as u32;
    i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, sub))
        .unwrap_or(if n < 0 { UTC_MIN } else { UTC_MAX })
}

/// A duration in nanoseconds.
#[inline]
pub(crate) fn delta_nanos(d: TimeDelta) -> i128 {
    i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())
}

/// The system time now, in nanoseconds since the Unix epoch.
#[inline]
pub(crate) fn system_now() -> i128 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_are_chronos_bounds() {
        assert_eq!(nanos(UTC_MIN), NANOS_MIN);
        assert_eq!(nanos(UTC_MAX), NANOS_MAX);
        assert_eq!(from_nanos(NANOS_MIN), UTC_MIN);
        assert_eq!(from_nanos(NANOS_MAX), UTC_MAX);
        assert_eq!(from_nanos(NANOS_MAX + 1), UTC_MAX);
        assert_eq!(from_nanos(NANOS_MIN - 1), UTC_MIN);
    }

    #[test]
    fn system_now_is_chronos_now() {
        let (a, n, b) = (nanos(Utc::now()), system_now(), nanos(Utc::now()));
        assert!(a <= n && n <= b, "{a} <= {n} <= {b}");
    }

    proptest::proptest! {
        #[test]
        fn nanos_round_trips(secs in -8_000_000_000_000i64..8_000_000_000_000, sub in 0u32..1_000_000_000) {
            let t = DateTime::from_timestamp(secs, sub).expect("in range");
            proptest::prop_assert_eq!(from_nanos(nanos(t)), t);
        }
    }
}
