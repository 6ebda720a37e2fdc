//! Running a flow: workers, scheduling, progress, failure capture.
//!
//! [`run_main`] runs one worker on the calling thread; [`cluster_main`] runs
//! `workers_per_proc` core-pinned worker threads in this process, exchanging records
//! through SPSC rings.

pub(crate) mod build;
pub(crate) mod park;
pub(crate) mod progress;
pub(crate) mod push;
pub(crate) mod step_guard;
mod worker;

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::dataflow::{Dataflow, Plan};
use crate::error::{Error, Result};
use park::Shared;

pub use build::BuildCtx;
pub use progress::{Epoch, EOF_EPOCH, FIRST_EPOCH};
pub use push::Data;

/// How to run a flow. Built with by-value setters:
///
/// ```
/// use std::time::Duration;
/// use waxfast::RunConfig;
/// let config = RunConfig::default().epoch_interval(Duration::from_secs(1)).pin(false);
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub(crate) epoch_interval: Duration,
    pub(crate) pin: bool,
    pub(crate) spin: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            epoch_interval: Duration::from_secs(10),
            pin: true,
            spin: false,
        }
    }
}

impl RunConfig {
    /// How long each epoch lasts (default 10 s). Zero starts a new epoch after every
    /// scheduling round in which an input produced items.
    pub fn epoch_interval(mut self, interval: Duration) -> Self {
        self.epoch_interval = interval;
        self
    }

    /// Pin worker threads to cores, round robin (default true; only applies with more
    /// than one worker).
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// Idle workers spin instead of parking (default false). Lowest latency, but burns
    /// a core per worker: only for benchmarks on dedicated cores.
    pub fn spin(mut self, spin: bool) -> Self {
        self.spin = spin;
        self
    }
}

/// Runs `flow` on one worker on the calling thread until every input is exhausted.
///
/// Returns an error naming the step if user code panics or a source or sink fails.
pub fn run_main(flow: &Dataflow) -> Result<()> {
    run_main_with(flow, &RunConfig::default())
}

/// [`run_main`] with a configuration.
pub fn run_main_with(flow: &Dataflow, config: &RunConfig) -> Result<()> {
    let plan = Arc::new(flow.plan()?);
    let shared = Arc::new(Shared::new(1));
    let endpoints = make_endpoints(&plan, 1).pop().expect("one worker");
    run_worker(plan, 0, 1, endpoints, &shared, config).map_err(|e| match shared.take_error() {
        Some((_, first)) => first,
        None => e,
    })
}

/// Runs one process of a cluster: `workers_per_proc` worker threads. `addresses` lists
/// every process (`"host:port"`); empty or a single address means this process is the
/// whole cluster.
///
/// ```
/// use waxfast::{cluster_main, Dataflow};
/// use waxfast::connectors::testing::{TestingSink, TestingSource};
/// let flow = Dataflow::new("f");
/// let (sink, out) = TestingSink::new();
/// flow.input("inp", TestingSource::new(0..100u32))
///     .key_on("k", |x| x % 7)
///     .count_final("n", |(k, _): (u32, u32)| k)
///     .output("out", sink);
/// cluster_main(&flow, &[], 0, 4).unwrap();
/// assert_eq!(out.take().len(), 7);
/// ```
pub fn cluster_main(
    flow: &Dataflow,
    addresses: &[String],
    proc_id: usize,
    workers_per_proc: usize,
) -> Result<()> {
    cluster_main_with(
        flow,
        addresses,
        proc_id,
        workers_per_proc,
        &RunConfig::default(),
    )
}

/// [`cluster_main`] with a configuration.
pub fn cluster_main_with(
    flow: &Dataflow,
    addresses: &[String],
    proc_id: usize,
    workers_per_proc: usize,
    config: &RunConfig,
) -> Result<()> {
    if workers_per_proc == 0 {
        return Err(Error::Config("workers_per_proc must be at least 1".into()));
    }
    if addresses.len() > 1 {
        return Err(Error::Config(format!(
            "{} addresses given: multi-process clusters are not available in this version of waxfast yet",
            addresses.len()
        )));
    }
    if proc_id >= addresses.len().max(1) {
        return Err(Error::Config(format!(
            "proc_id {proc_id} is out of range for {} process(es)",
            addresses.len().max(1)
        )));
    }
    let plan = Arc::new(flow.plan()?);
    let n = workers_per_proc;
    if n == 1 {
        return run_main_with(flow, config);
    }
    let shared = Arc::new(Shared::new(n));
    let cores = if config.pin {
        core_affinity::get_core_ids()
    } else {
        None
    };
    tracing::debug!(
        workers = n,
        pinned = cores.is_some(),
        cores = cores.as_ref().map_or(0, |c| c.len()),
        "starting workers"
    );
    let mut handles = Vec::new();
    for (i, endpoints) in make_endpoints(&plan, n).into_iter().enumerate() {
        let (plan, shared, config) = (plan.clone(), shared.clone(), config.clone());
        let core = cores
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|c| c[i % c.len()]);
        let handle = std::thread::Builder::new()
            .name(format!("waxfast-w{i}"))
            .spawn(move || {
                if let Some(core) = core {
                    let ok = core_affinity::set_for_current(core);
                    tracing::debug!(worker = i, core = core.id, ok, "pinned worker to core");
                } else {
                    tracing::debug!(worker = i, "worker not pinned");
                }
                run_worker(plan, i, n, endpoints, &shared, &config)
            })
            .map_err(|e| Error::Config(format!("cannot start worker thread {i}: {e}")))?;
        handles.push(handle);
    }
    let mut unexpected = None;
    for (i, h) in handles.into_iter().enumerate() {
        if let Err(payload) = h.join() {
            unexpected.get_or_insert(Error::Worker {
                worker: i,
                message: panic_message(payload.as_ref()),
            });
        }
    }
    match shared.take_error() {
        Some((_, e)) => Err(e),
        None => unexpected.map_or(Ok(()), Err),
    }
}

/// Builds every channel's rings and deals out one endpoint per channel to each worker.
fn make_endpoints(plan: &Plan, workers: usize) -> Vec<Vec<Box<dyn Any + Send>>> {
    let mut per_worker: Vec<Vec<Box<dyn Any + Send>>> = (0..workers).map(|_| Vec::new()).collect();
    for make in &plan.channels {
        for (w, ep) in (make.0)(workers).into_iter().enumerate() {
            per_worker[w].push(ep);
        }
    }
    per_worker
}

/// Builds and runs worker `index` of `count`, turning a panic into an [`Error`] and
/// reporting a failure to the other workers.
fn run_worker(
    plan: Arc<Plan>,
    index: usize,
    count: usize,
    endpoints: Vec<Box<dyn Any + Send>>,
    shared: &Arc<Shared>,
    config: &RunConfig,
) -> Result<()> {
    step_guard::reset();
    shared.register(index);
    tracing::debug!(flow = %plan.name, worker = index, workers = count, "worker starting");
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut worker = worker::Worker::build(
            plan.clone(),
            index,
            count,
            endpoints,
            shared.clone(),
            config,
        )?;
        worker.run()
    }));
    let outcome = match result {
        Ok(r) => r,
        Err(payload) => Err(panic_to_error(payload, &plan, index)),
    };
    step_guard::reset();
    match outcome {
        Err(e) if !matches!(e, Error::Aborted) => {
            tracing::debug!(worker = index, error = %e, "worker failed");
            // The first cause goes to the shared slot, where the entry point reports it
            // exactly once; this worker's own result is just "aborted".
            shared.fail(index, e);
            Err(Error::Aborted)
        }
        other => other,
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

fn panic_to_error(payload: Box<dyn Any + Send>, plan: &Plan, worker: usize) -> Error {
    let payload = match payload.downcast::<Error>() {
        Ok(e) => return *e,
        Err(p) => p,
    };
    let message = panic_message(payload.as_ref());
    match step_guard::current().and_then(|i| plan.steps.get(i)) {
        Some(step) => Error::StepPanicked {
            step_id: step.id.to_string(),
            message,
        },
        None => Error::Worker { worker, message },
    }
}
