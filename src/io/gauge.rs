//! Gauges a connector publishes about its partitions (a Kafka partition's consumer
//! lag), rendered by the dataflow API's `/metrics` beside the engine's own.
//!
//! A connector registers a gauge when it builds a partition and sets it from that
//! partition's worker; the registry holds it weakly, so a gauge disappears from
//! `/metrics` when its partition is dropped at the end of the run.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// One labelled gauge sample.
#[derive(Debug)]
pub struct Gauge {
    name: &'static str,
    help: &'static str,
    labels: Vec<(String, String)>,
    value: AtomicI64,
}

static GAUGES: Mutex<Vec<Weak<Gauge>>> = Mutex::new(Vec::new());

impl Gauge {
    /// Registers a gauge sample `name{labels}` (0 until set). `name` must be a valid
    /// Prometheus metric name; samples of one name share `help`.
    ///
    /// ```
    /// use waxfast::io::gauge::Gauge;
    /// let lag = Gauge::register("my_source_lag", "messages behind", vec![("part".into(), "0".into())]);
    /// lag.set(42);
    /// assert_eq!(lag.get(), 42);
    /// ```
    pub fn register(
        name: &'static str,
        help: &'static str,
        labels: Vec<(String, String)>,
    ) -> Arc<Gauge> {
        let g = Arc::new(Gauge {
            name,
            help,
            labels,
            value: AtomicI64::new(0),
        });
        let mut all = GAUGES.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&g));
        g
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }

    /// The metric name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The help text.
    pub fn help(&self) -> &'static str {
        self.help
    }

    /// The labels.
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }
}

/// Every live gauge, grouped by name (in the order names were first registered).
pub(crate) fn live() -> Vec<Arc<Gauge>> {
    let all = GAUGES.lock().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<Arc<Gauge>> = all.iter().filter_map(Weak::upgrade).collect();
    let order: Vec<&'static str> = {
        let mut names = Vec::new();
        for g in &v {
            if !names.contains(&g.name) {
                names.push(g.name);
            }
        }
        names
    };
    v.sort_by_key(|g| order.iter().position(|n| *n == g.name));
    v
}
