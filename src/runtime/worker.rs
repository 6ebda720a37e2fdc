//! The worker loop: poll inputs, fire timers, propagate frontiers, sleep when idle.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::dataflow::{Plan, Role};
use crate::error::{Error, Result};
use crate::runtime::build::{Activation, BuildCtx, DriveSource, SinkHandle};
use crate::runtime::progress::{Epoch, EpochClock, EOF_EPOCH, FIRST_EPOCH};
use crate::runtime::step_guard::StepGuard;
use crate::runtime::RunConfig;

/// One worker's instance of a flow.
pub(crate) struct Worker {
    plan: Arc<Plan>,
    sources: Vec<(usize, Box<dyn DriveSource>)>,
    /// Index into `sources` for each input step.
    source_of_step: Vec<Option<usize>>,
    activations: Vec<(usize, Rc<RefCell<dyn Activation>>)>,
    activation_of_step: Vec<Option<usize>>,
    sinks: Vec<(usize, Rc<RefCell<dyn SinkHandle>>)>,
    stream_frontier: Vec<Epoch>,
    step_frontier: Vec<Epoch>,
    clock: EpochClock,
    zero_interval: bool,
}

impl Worker {
    /// Builds every step of `plan` for worker `index` of `count`.
    pub(crate) fn build(
        plan: Arc<Plan>,
        index: usize,
        count: usize,
        config: &RunConfig,
    ) -> Result<Worker> {
        let mut ctx = BuildCtx::new(index, count, plan.streams);
        for (i, step) in plan.steps.iter().enumerate().rev() {
            ctx.set_step(i, step.id.clone());
            let _g = StepGuard::enter(i);
            (step.build)(&mut ctx)?;
        }
        let n = plan.steps.len();
        let mut source_of_step = vec![None; n];
        for (k, (step, _)) in ctx.sources.iter().enumerate() {
            source_of_step[*step] = Some(k);
        }
        let mut activation_of_step = vec![None; n];
        for (k, (step, _)) in ctx.activations.iter().enumerate() {
            activation_of_step[*step] = Some(k);
        }
        Ok(Worker {
            stream_frontier: vec![FIRST_EPOCH; plan.streams],
            step_frontier: vec![FIRST_EPOCH; n],
            plan,
            sources: ctx.sources,
            source_of_step,
            activations: ctx.activations,
            activation_of_step,
            sinks: ctx.sinks,
            clock: EpochClock::new(config.epoch_interval, Instant::now()),
            zero_interval: config.epoch_interval.is_zero(),
        })
    }

    /// Runs until every step's frontier is at end of stream, then closes the sinks.
    pub(crate) fn run(&mut self) -> Result<()> {
        loop {
            let now = Instant::now();
            self.clock.tick(now);
            let epoch = self.clock.epoch();
            let mut progressed = false;
            for (step, src) in self.sources.iter_mut() {
                if !src.is_eof() {
                    progressed |= src
                        .poll(now, epoch)
                        .map_err(|e| Error::in_step(self.plan.steps[*step].id.to_string(), e))?;
                }
            }
            for (step, act) in &self.activations {
                let f = self.step_frontier[*step];
                if f == EOF_EPOCH {
                    continue;
                }
                let due = act.borrow().next_wake().is_some_and(|t| t <= now);
                if due {
                    let _g = StepGuard::enter(*step);
                    act.borrow_mut().on_wake(now, f);
                    progressed = true;
                }
            }
            self.propagate();
            if self.step_frontier.iter().all(|&f| f == EOF_EPOCH) {
                break;
            }
            if !progressed {
                self.flush_sinks()?;
                self.sleep_until_work(now);
            }
        }
        for (step, sink) in &self.sinks {
            let _g = StepGuard::enter(*step);
            sink.borrow_mut()
                .close()
                .map_err(|e| Error::in_step(self.plan.steps[*step].id.to_string(), e))?;
        }
        Ok(())
    }

    /// Recomputes every stream's frontier in step (topological) order and tells steps
    /// whose input frontier advanced.
    fn propagate(&mut self) {
        let plan = self.plan.clone();
        for (i, step) in plan.steps.iter().enumerate() {
            let f = if step.role == Role::Input {
                let src = self.source_of_step[i].map(|k| &self.sources[k].1);
                if src.is_none_or(|s| s.is_eof()) {
                    EOF_EPOCH
                } else {
                    self.clock.epoch()
                }
            } else {
                step.inputs
                    .iter()
                    .map(|&s| self.stream_frontier[s])
                    .min()
                    .unwrap_or(EOF_EPOCH)
            };
            let old = self.step_frontier[i];
            if f > old {
                self.step_frontier[i] = f;
                if let Some(k) = self.activation_of_step[i] {
                    let _g = StepGuard::enter(i);
                    self.activations[k].1.borrow_mut().on_frontier(old, f);
                }
            }
            for &o in &step.outputs {
                self.stream_frontier[o] = f;
            }
        }
    }

    fn flush_sinks(&mut self) -> Result<()> {
        for (step, sink) in &self.sinks {
            let _g = StepGuard::enter(*step);
            sink.borrow_mut()
                .flush()
                .map_err(|e| Error::in_step(self.plan.steps[*step].id.to_string(), e))?;
        }
        Ok(())
    }

    fn sleep_until_work(&self, now: Instant) {
        let mut wake: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        for (_, s) in &self.sources {
            if !s.is_eof() {
                consider(s.next_awake());
            }
        }
        for (step, a) in &self.activations {
            if self.step_frontier[*step] != EOF_EPOCH {
                consider(a.borrow().next_wake());
            }
        }
        if !self.zero_interval {
            consider(Some(self.clock.deadline()));
        }
        // Nothing scheduled means nothing can happen without new input; poll again soon
        // rather than trusting that forever.
        let wake = wake.unwrap_or(now + std::time::Duration::from_millis(1));
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
    }
}
