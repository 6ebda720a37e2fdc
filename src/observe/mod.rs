//! Observability: per-step and per-worker metrics, the flow's graph, and the dataflow
//! API server that serves them (Bytewax's `BYTEWAX_DATAFLOW_API_ENABLED`).
//!
//! * [`metrics`](self) cells: each worker counts into its own cache-aligned atomics,
//!   once per batch, with no locked instruction; the server thread only reads them.
//! * [`render`](RenderedDataflow): the graph as Bytewax's `RenderedDataflow` JSON,
//!   Mermaid (`python -m bytewax.visualize`) and dot.
//! * [`server`](ApiConfig): a small blocking HTTP server on its own thread, never on a
//!   worker: `/metrics` (Prometheus text), `/dataflow` (the graph), `/status` (the
//!   dashboard's JSON) and `/` (the dashboard).
//!
//! Turn it on with [`RunConfig::api`](crate::RunConfig::api), or from the command line
//! with `WAXFAST_DATAFLOW_API_ENABLED=1` or `--api-port PORT`.

mod expose;
pub(crate) mod metrics;
mod render;
mod server;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use render::{RenderedDataflow, RenderedOperator, RenderedPort};
pub use server::ApiConfig;
pub(crate) use server::ApiServer;

use crate::dataflow::Plan;
use metrics::{WorkerCells, NO_STEP};

/// How often the sampler looks at which step each worker is running.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Which step each worker was seen running, by the sampler.
#[derive(Debug, Default, Clone)]
pub(crate) struct Samples {
    /// Per worker (by position in [`Observer::workers`]): samples taken.
    pub(crate) total: Vec<u64>,
    /// Per worker, per step: samples that found the worker in that step.
    pub(crate) in_step: Vec<Vec<u64>>,
}

/// Everything the API server reads for one run of one process.
#[derive(Debug)]
pub(crate) struct Observer {
    pub(crate) graph: RenderedDataflow,
    pub(crate) step_ids: Vec<Arc<str>>,
    pub(crate) step_kinds: Vec<&'static str>,
    /// The cells of this process's workers, registered as each one builds.
    pub(crate) workers: Mutex<Vec<Arc<WorkerCells>>>,
    pub(crate) started: Instant,
    pub(crate) samples: Mutex<Samples>,
    pub(crate) stop: AtomicBool,
    /// The network thread's per-peer counters, every process's address and this
    /// process's id (clusters only), set once the cluster formed.
    pub(crate) net: std::sync::OnceLock<(Arc<crate::net::io::NetSignal>, Vec<String>, usize)>,
    /// The snapshot writer's counters (with a recovery directory only).
    pub(crate) snapshots: std::sync::OnceLock<Arc<crate::recovery::CommitStats>>,
}

impl Observer {
    pub(crate) fn new(plan: &Plan) -> Observer {
        Observer {
            graph: RenderedDataflow::of_plan(plan),
            step_ids: plan.steps.iter().map(|s| s.id.clone()).collect(),
            step_kinds: plan.steps.iter().map(|s| s.kind).collect(),
            workers: Mutex::default(),
            started: Instant::now(),
            samples: Mutex::default(),
            stop: AtomicBool::new(false),
            net: std::sync::OnceLock::new(),
            snapshots: std::sync::OnceLock::new(),
        }
    }

    /// Makes and registers the cells of worker `index` (global).
    pub(crate) fn add_worker(&self, index: usize) -> Arc<WorkerCells> {
        let cells = Arc::new(WorkerCells::new(index, self.step_ids.len()));
        let mut w = lock(&self.workers);
        w.push(cells.clone());
        w.sort_by_key(|c| c.index);
        cells
    }

    pub(crate) fn workers(&self) -> Vec<Arc<WorkerCells>> {
        lock(&self.workers).clone()
    }

    /// One sampling pass: which step each worker is in now.
    fn sample(&self) {
        let workers = self.workers();
        let mut s = lock(&self.samples);
        let steps = self.step_ids.len();
        s.total.resize(workers.len(), 0);
        s.in_step.resize(workers.len(), vec![0; steps]);
        for (w, cells) in workers.iter().enumerate() {
            s.total[w] += 1;
            let cur = cells.current.0.load(Ordering::Relaxed);
            if cur != NO_STEP && cur < steps {
                s.in_step[w][cur] += 1;
            }
        }
    }

    /// Samples every [`SAMPLE_EVERY`] until [`Observer::stop`] is set.
    pub(crate) fn run_sampler(&self) {
        let mut next = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            self.sample();
            next += SAMPLE_EVERY;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only plain data behind these locks: still consistent after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    /// The running worker's cells, while the API is on.
    static CELLS: RefCell<Option<Arc<WorkerCells>>> = const { RefCell::new(None) };
    /// Whether `CELLS` is set: a plain flag (no destructor, so no lazy registration
    /// check), which is all a step switch reads when the API is off.
    static OBSERVED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes `cells` the calling worker thread's (or forgets them, with `None`).
pub(crate) fn set_thread_cells(cells: Option<Arc<WorkerCells>>) {
    OBSERVED.with(|o| o.set(cells.is_some()));
    CELLS.with(|c| *c.borrow_mut() = cells);
}

/// Publishes the step the calling worker now runs, for the sampler.
#[inline]
pub(crate) fn publish_step(step: usize) {
    if OBSERVED.with(|o| o.get()) {
        publish_slow(step);
    }
}

#[inline]
fn publish_slow(step: usize) {
    CELLS.with(|c| {
        if let Ok(c) = c.try_borrow() {
            if let Some(cells) = &*c {
                cells.current.0.store(step, Ordering::Relaxed);
            }
        }
    });
}
