//! Running a flow: workers, scheduling, progress, failure capture.
//!
//! [`run_main`] runs one worker on the calling thread. The multi-worker runtime
//! (`cluster_main`, `-w N`) arrives with the exchange fabric.

pub(crate) mod build;
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

pub use build::BuildCtx;
pub use progress::{Epoch, EOF_EPOCH, FIRST_EPOCH};
pub use push::Data;

/// How to run a flow. Built with by-value setters:
///
/// ```
/// use std::time::Duration;
/// use waxfast::RunConfig;
/// let config = RunConfig::default().epoch_interval(Duration::from_secs(1));
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub(crate) epoch_interval: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            epoch_interval: Duration::from_secs(10),
        }
    }
}

impl RunConfig {
    /// How long each epoch lasts (default 10 s). Zero advances the epoch on every
    /// scheduling round.
    pub fn epoch_interval(mut self, interval: Duration) -> Self {
        self.epoch_interval = interval;
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
    run_worker(plan, 0, 1, config)
}

/// Builds and runs worker `index` of `count`, turning a panic into an [`Error`].
pub(crate) fn run_worker(
    plan: Arc<Plan>,
    index: usize,
    count: usize,
    config: &RunConfig,
) -> Result<()> {
    step_guard::reset();
    tracing::debug!(flow = %plan.name, worker = index, workers = count, "worker starting");
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut worker = worker::Worker::build(plan.clone(), index, count, config)?;
        worker.run()
    }));
    let outcome = match result {
        Ok(r) => r,
        Err(payload) => Err(panic_to_error(payload, &plan, index)),
    };
    step_guard::reset();
    outcome
}

fn panic_to_error(payload: Box<dyn Any + Send>, plan: &Plan, worker: usize) -> Error {
    let payload = match payload.downcast::<Error>() {
        Ok(e) => return *e,
        Err(p) => p,
    };
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    };
    match step_guard::current().and_then(|i| plan.steps.get(i)) {
        Some(step) => Error::StepPanicked {
            step_id: step.id.to_string(),
            message,
        },
        None => Error::Worker { worker, message },
    }
}
