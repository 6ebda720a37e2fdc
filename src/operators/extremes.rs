//! The largest or smallest value per key (or per window) by a key function, as
//! Bytewax's `max_final(.., by=)`, `min_final`, `max_window` and `min_window` take one.
//!
//! `by` returns anything `PartialOrd`, so floats work (`|v: &f64| *v`, or a field of
//! a record). The rule is Python's `max(acc, v, key=by)`: a later value replaces the
//! current one only if it compares strictly greater (strictly less for the minimum),
//! so of equal values the first wins, and a value whose key is unordered against the
//! current one (a NaN) does not replace it. A NaN that comes first stays, as in Python.

use crate::dataflow::{Key, Stream};
use crate::operators::window::{Clock, WindowOut, Windower};
use crate::runtime::push::ExchangeData;

fn keep_max<V, B: PartialOrd>(
    by: impl Fn(&V) -> B + Send + Sync,
) -> impl Fn(V, V) -> V + Send + Sync {
    move |acc, v| if by(&v) > by(&acc) { v } else { acc }
}

fn keep_min<V, B: PartialOrd>(
    by: impl Fn(&V) -> B + Send + Sync,
) -> impl Fn(V, V) -> V + Send + Sync {
    move |acc, v| if by(&v) < by(&acc) { v } else { acc }
}

impl<K: Key, V: ExchangeData> Stream<(K, V)> {
    /// The value per key with the largest `by(value)`, at end of stream (Bytewax's
    /// `max_final(step, up, by)`); see the [module docs](self) for ties and NaN.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec![("a", 1.5), ("a", -2.0), ("a", 3.25)]))
    ///     .max_final_by("max", |v: &f64| *v)
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("a", 3.25)]);
    /// ```
    pub fn max_final_by<B: PartialOrd + 'static>(
        &self,
        step: &str,
        by: impl Fn(&V) -> B + Send + Sync + 'static,
    ) -> Stream<(K, V)> {
        self.reduce_final(step, keep_max(by))
    }

    /// The value per key with the smallest `by(value)`, at end of stream (Bytewax's
    /// `min_final(step, up, by)`).
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let reading = |s: &str, t: f32| (s.to_string(), t);
    /// flow.input("inp", TestingSource::new(vec![("k", reading("x", 2.5)), ("k", reading("y", 0.5))]))
    ///     .min_final_by("coldest", |r: &(String, f32)| r.1)
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("k", reading("y", 0.5))]);
    /// ```
    pub fn min_final_by<B: PartialOrd + 'static>(
        &self,
        step: &str,
        by: impl Fn(&V) -> B + Send + Sync + 'static,
    ) -> Stream<(K, V)> {
        self.reduce_final(step, keep_min(by))
    }

    /// The value of each window with the largest `by(value)`, when the window closes
    /// (Bytewax's `max_window(.., by=)`).
    ///
    /// ```
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::window::{EventClock, TumblingWindower};
    ///
    /// type Reading = (f64, DateTime<Utc>);
    /// let t0 = DateTime::from_timestamp(0, 0).unwrap();
    /// let at = move |s| t0 + TimeDelta::seconds(s);
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let inp = flow.input("inp", TestingSource::new(vec![("k", (0.5, at(1))), ("k", (9.5, at(2)))]));
    /// inp.max_window_by(
    ///     "max",
    ///     EventClock::new(|v: &Reading| v.1, TimeDelta::zero()),
    ///     TumblingWindower::new(TimeDelta::seconds(10), t0),
    ///     |v: &Reading| v.0,
    /// )
    /// .down
    /// .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("k", (0, (9.5, at(2))))]);
    /// ```
    pub fn max_window_by<C: Clock<V>, Wr: Windower, B: PartialOrd + 'static>(
        &self,
        step: &str,
        clock: C,
        windower: Wr,
        by: impl Fn(&V) -> B + Send + Sync + 'static,
    ) -> WindowOut<K, V, V> {
        self.reduce_window(step, clock, windower, keep_max(by))
    }

    /// The value of each window with the smallest `by(value)`, when the window closes
    /// (Bytewax's `min_window(.., by=)`).
    ///
    /// ```
    /// use chrono::{DateTime, TimeDelta, Utc};
    /// use waxfast::{Dataflow, run_main};
    /// use waxfast::connectors::testing::{TestingSink, TestingSource};
    /// use waxfast::operators::window::{EventClock, TumblingWindower};
    ///
    /// type Reading = (f64, DateTime<Utc>);
    /// let t0 = DateTime::from_timestamp(0, 0).unwrap();
    /// let at = move |s| t0 + TimeDelta::seconds(s);
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// let inp = flow.input("inp", TestingSource::new(vec![("k", (0.5, at(1))), ("k", (9.5, at(2)))]));
    /// inp.min_window_by(
    ///     "min",
    ///     EventClock::new(|v: &Reading| v.1, TimeDelta::zero()),
    ///     TumblingWindower::new(TimeDelta::seconds(10), t0),
    ///     |v: &Reading| v.0,
    /// )
    /// .down
    /// .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("k", (0, (0.5, at(1))))]);
    /// ```
    pub fn min_window_by<C: Clock<V>, Wr: Windower, B: PartialOrd + 'static>(
        &self,
        step: &str,
        clock: C,
        windower: Wr,
        by: impl Fn(&V) -> B + Send + Sync + 'static,
    ) -> WindowOut<K, V, V> {
        self.reduce_window(step, clock, windower, keep_min(by))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_keep_the_first_and_nan_never_replaces() {
        let max = keep_max(|v: &(f64, char)| v.0);
        assert_eq!(max((1.0, 'a'), (1.0, 'b')), (1.0, 'a'));
        assert_eq!(max((1.0, 'a'), (f64::NAN, 'b')), (1.0, 'a'));
        assert_eq!(max((1.0, 'a'), (2.0, 'b')), (2.0, 'b'));
        let min = keep_min(|v: &(f64, char)| v.0);
        assert_eq!(min((1.0, 'a'), (1.0, 'b')), (1.0, 'a'));
        assert_eq!(min((1.0, 'a'), (-0.5, 'b')), (-0.5, 'b'));
        assert!(
            min((f64::NAN, 'a'), (0.0, 'b')).0.is_nan(),
            "Python keeps a NaN that came first"
        );
    }
}
