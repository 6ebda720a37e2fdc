//! The worker loop: drain inbound rings, poll inputs, fire timers, propagate frontiers,
//! flush outbound batches; spin, then yield, then park when idle.

use crate::transport::threads::Allocator;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::base::park::Shared;
use crate::dataflow::{Plan, Role};
use crate::error::{Error, Result};
use crate::exchange::{ChannelIo, StepChannel};
use crate::observe::metrics::{RoundClock, WorkerCells, PUBLISH_EVERY};
use crate::recovery::WorkerRecovery;
use crate::runtime::build::{Activation, BuildCtx, DriveSource, SinkHandle};
use crate::runtime::progress::{Epoch, EpochClock, EOF_EPOCH, FIRST_EPOCH};
use crate::runtime::step_guard::StepGuard;
use crate::runtime::{RunConfig, RunEnv, WorkerId};
use crate::transport::Remote;

/// Frames taken from the network port per round.
const NET_BUDGET: usize = 64;

/// Idle rounds spent spinning before yielding, and yielding before parking.
const SPIN_ROUNDS: u32 = 64;
const YIELD_ROUNDS: u32 = 16;
/// A spinning worker whose frames go through the network thread yields every this many
/// idle rounds.
const YIELD_EVERY: u32 = 16;
/// Longest park while overflow waits on a peer (peers do not wake us when they drain).
const OVERFLOW_PARK: Duration = Duration::from_micros(200);
/// Items a round's sources must give for the round to count as busy with input, when
/// staged exchange batches may wait to grow (`exchange::HOLD_ROUNDS`). At rates where
/// a poll finds a few records, rounds stay below it and every batch goes at once.
const FULL_INPUT: usize = 512;

/// One worker's instance of a flow.
pub(crate) struct Worker {
    plan: Arc<Plan>,
    index: usize,
    shared: Arc<Shared>,
    sources: Vec<(usize, Box<dyn DriveSource>)>,
    /// Index into `sources` for each input step.
    source_of_step: Vec<Option<usize>>,
    activations: Vec<(usize, Rc<RefCell<dyn Activation>>)>,
    activation_of_step: Vec<Option<usize>>,
    channels: Vec<(usize, Rc<RefCell<dyn ChannelIo>>)>,
    channel_of_step: Vec<Option<usize>>,
    /// Each exchange channel by its index in the flow, with its step (for frames).
    channel_by_id: Vec<Option<StepChannel>>,
    net: Option<Rc<RefCell<Remote>>>,
    sinks: Vec<(usize, Rc<RefCell<dyn SinkHandle>>)>,
    stream_frontier: Vec<Epoch>,
    step_frontier: Vec<Epoch>,
    clock: EpochClock,
    zero_interval: bool,
    spin: bool,
    /// Some of this worker's frames go through the network thread.
    net_thread: bool,
    recovery: Option<Rc<WorkerRecovery>>,
    /// With the dataflow API on: this worker's cells and what its last round did.
    obs: Option<LoopObs>,
}

/// What the last scheduling round did, for the dataflow API's loop times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoundKind {
    Busy,
    Idle,
    Parked,
    Backpressured,
}

/// The worker loop's metrics: each round's time goes to the kind of the round.
struct LoopObs {
    cells: Arc<WorkerCells>,
    /// The start of the current round, for partitions deciding what to time.
    clock: RoundClock,
    last: Instant,
    kind: RoundKind,
    next_publish: Instant,
}

fn index_by_step<T>(n: usize, items: &[(usize, T)]) -> Vec<Option<usize>> {
    let mut v = vec![None; n];
    for (k, (step, _)) in items.iter().enumerate() {
        v[*step] = Some(k);
    }
    v
}

impl Worker {
    /// Builds every step of `plan` for worker `me`.
    pub(crate) fn build(
        plan: Arc<Plan>,
        me: WorkerId,
        channels_of: (Arc<Allocator>, usize),
        port: Option<Remote>,
        shared: Arc<Shared>,
        config: &RunConfig,
        env: &RunEnv,
    ) -> Result<Worker> {
        let net_thread = port.as_ref().is_some_and(|p| p.uses_net_thread());
        let net = port.map(|p| Rc::new(RefCell::new(p)));
        let recovery = env
            .recovery
            .as_ref()
            .map(|h| Rc::new(WorkerRecovery::new(h, me.global, me.local)));
        let first_epoch = env.recovery.as_ref().map_or(FIRST_EPOCH, |h| h.first_epoch);
        let cells = env.observer.as_ref().map(|o| {
            let clock: RoundClock = Rc::new(std::cell::Cell::new(Instant::now()));
            (o.add_worker(me.global), clock)
        });
        crate::observe::set_thread_cells(cells.as_ref().map(|(c, _)| c.clone()));
        let mut ctx = BuildCtx::new(
            me.global,
            me.count,
            plan.streams,
            channels_of,
            net.clone(),
            shared.clone(),
        )
        .with_recovery(recovery.clone(), first_epoch)
        .with_listing(env.listing.clone())
        .with_cells(cells.clone())
        .with_fusion(config.fuse);
        for (i, step) in plan.steps.iter().enumerate().rev() {
            ctx.set_step(i, step.id.clone());
            let _g = StepGuard::enter(i);
            if let Err(e) = (step.build)(&mut ctx) {
                // Sinks are built first (in reverse order): those built so far may
                // have created partial files.
                if recovery.is_none() {
                    abort_sinks(&ctx.sinks);
                }
                return Err(e);
            }
        }
        // Built in reverse; run in declaration order (inputs are polled in the order
        // the flow declares them, as Bytewax does).
        ctx.sources.sort_by_key(|(step, _)| *step);
        ctx.activations.sort_by_key(|(step, _)| *step);
        ctx.channels.sort_by_key(|(step, _)| *step);
        ctx.sinks.sort_by_key(|(step, _)| *step);
        let n = plan.steps.len();
        Ok(Worker {
            stream_frontier: vec![first_epoch; plan.streams],
            step_frontier: vec![first_epoch; n],
            source_of_step: index_by_step(n, &ctx.sources),
            activation_of_step: index_by_step(n, &ctx.activations),
            channel_of_step: index_by_step(n, &ctx.channels),
            channel_by_id: std::mem::take(&mut ctx.channel_by_id),
            net,
            plan,
            index: me.local,
            shared,
            sources: ctx.sources,
            activations: ctx.activations,
            channels: ctx.channels,
            sinks: ctx.sinks,
            clock: EpochClock::new(config.epoch_interval, env.start, first_epoch),
            zero_interval: config.epoch_interval.is_zero(),
            spin: config.spin,
            net_thread,
            recovery,
            obs: cells.map(|(cells, clock)| LoopObs {
                cells,
                clock,
                last: Instant::now(),
                kind: RoundKind::Idle,
                next_publish: Instant::now(),
            }),
        })
    }

    /// The run failed: without recovery, every sink partition of this worker that was
    /// not closed drops its partial output (with recovery it is what a resume continues).
    pub(crate) fn abort(&self) {
        if self.recovery.is_none() {
            abort_sinks(&self.sinks);
        }
    }

    /// Charges the time since the last round began to what that round did, and
    /// publishes the gauges every [`PUBLISH_EVERY`]. Only with the dataflow API on.
    fn observe_round(&mut self, now: Instant) {
        let Some(o) = &mut self.obs else {
            return;
        };
        let dt = now.saturating_duration_since(o.last).as_nanos() as u64;
        o.last = now;
        o.clock.set(now);
        let t = &o.cells.time;
        t.rounds.add(1);
        match o.kind {
            RoundKind::Busy => t.busy_ns.add(dt),
            RoundKind::Idle => t.idle_ns.add(dt),
            RoundKind::Parked => t.parked_ns.add(dt),
            RoundKind::Backpressured => {
                t.backpressured_ns.add(dt);
                for (step, ch) in &self.channels {
                    if ch.borrow().is_backlogged() {
                        o.cells.steps[*step].backpressured_ns.add(dt);
                    }
                }
                for (step, _) in &self.sources {
                    o.cells.steps[*step].backpressured_ns.add(dt);
                }
            }
        }
        if now < o.next_publish {
            return;
        }
        o.next_publish = now + PUBLISH_EVERY;
        t.epoch.set(self.clock.epoch());
        for (i, f) in self.step_frontier.iter().enumerate() {
            o.cells.steps[i].frontier.set(*f);
        }
        for (step, ch) in &self.channels {
            let (rings, overflow) = ch.borrow().backlog();
            o.cells.steps[*step].ring_backlog.set(rings as u64);
            o.cells.steps[*step].overflow_backlog.set(overflow as u64);
        }
        for (step, a) in &self.activations {
            if let Some(n) = a.borrow().live_keys() {
                o.cells.steps[*step].live_keys.set(n as u64);
            }
            if let Some((open, watermark)) = a.borrow().windows() {
                let cells = &o.cells.steps[*step];
                cells.open_windows.set(open);
                if let Some(wm) = watermark {
                    cells.watermark_ns.set(wm as u64);
                }
            }
        }
    }

    fn set_round_kind(&mut self, kind: RoundKind) {
        if let Some(o) = &mut self.obs {
            o.kind = kind;
        }
    }

    /// Moves the epoch clock to `now`; true if the epoch advanced. When it moves, the
    /// inputs save their positions as of the end of the epoch that closed.
    fn tick(&mut self, now: Instant) -> Result<bool> {
        let old = self.clock.epoch();
        let advanced = self.clock.tick(now);
        if advanced && self.recovery.is_some() {
            for (step, src) in self.sources.iter_mut() {
                src.snapshot(old)
                    .map_err(|e| Error::in_step(self.plan.steps[*step].id.to_string(), e))?;
            }
        }
        Ok(advanced)
    }

    /// Hands this round's snapshot rows to the writer, with the worker's front: the
    /// last epoch every one of its steps has passed (and so written).
    fn hand_over(&self) -> Result<()> {
        let Some(rec) = &self.recovery else {
            return Ok(());
        };
        let min = self
            .step_frontier
            .iter()
            .copied()
            .min()
            .unwrap_or(EOF_EPOCH);
        let front = if min == EOF_EPOCH { EOF_EPOCH } else { min - 1 };
        if rec.hand_over(front) {
            Ok(())
        } else {
            // The writer stopped after an error it reported; the run is ending.
            Err(Error::Aborted)
        }
    }

    fn step_error(&self, step: usize, e: crate::error::BoxError) -> Error {
        Error::in_step(self.plan.steps[step].id.to_string(), e)
    }

    /// Runs until every step's frontier is at end of stream and nothing waits to be
    /// sent, then, once the run commits (every worker of the cluster finished: see
    /// [`crate::base::park`]), closes the sinks.
    pub(crate) fn run(&mut self) -> Result<()> {
        let mut idle_rounds: u32 = 0;
        // Whether anything `propagate` reads may have changed since it last ran: the
        // epoch, a source's end, a peer's progress marker (which arrives by `drain`).
        // An idle round skips it: it walks every step, and at low rates the worker
        // loop's cost per round is what a record waits for at each hop.
        let mut frontiers_stale = true;
        loop {
            if self.shared.aborted() {
                return Err(Error::Aborted);
            }
            let now = Instant::now();
            self.observe_round(now);
            // A zero interval means an epoch per round that read input (it ends right
            // after the input was read, below); idle rounds do not advance it (each
            // advance sends a progress marker to every peer).
            if !self.zero_interval {
                frontiers_stale |= self.tick(now)?;
            }
            let epoch = self.clock.epoch();
            let mut progressed = false;

            for (step, ch) in &self.channels {
                let _g = StepGuard::enter(*step);
                progressed |= ch.borrow_mut().drain();
            }
            progressed |= self.drain_net()?;
            frontiers_stale |= progressed;

            let backpressured = self
                .channels
                .iter()
                .any(|(_, c)| c.borrow().is_backlogged())
                || self
                    .net
                    .as_ref()
                    .is_some_and(|p| p.borrow().is_backlogged());
            let mut read_input = false;
            let mut input_items = 0;
            if !backpressured {
                for (step, src) in self.sources.iter_mut() {
                    if !src.is_eof() {
                        let step = *step;
                        let polled = src
                            .poll(now, epoch)
                            .map_err(|e| Error::in_step(self.plan.steps[step].id.to_string(), e))?;
                        read_input |= polled.progressed;
                        input_items += polled.items;
                        frontiers_stale |= src.is_eof();
                    }
                }
            }
            progressed |= read_input;
            if self.zero_interval && read_input {
                frontiers_stale |= self.tick(now)?;
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

            if frontiers_stale {
                frontiers_stale = false;
                progressed |= self.propagate();
            }
            self.hand_over()?;

            // A round that read a full batch of input has more waiting: staged batches
            // may wait a few rounds to grow (`ChannelIo::flush`).
            let hold = input_items >= FULL_INPUT;
            for (step, ch) in &self.channels {
                let _g = StepGuard::enter(*step);
                progressed |= ch.borrow_mut().flush(hold);
            }
            if let Some(port) = &self.net {
                progressed |= port.borrow_mut().flush();
            }

            let overflow = self.channels.iter().any(|(_, c)| c.borrow().has_overflow())
                || self.net.as_ref().is_some_and(|p| p.borrow().has_overflow());
            if !overflow && self.step_frontier.iter().all(|&f| f == EOF_EPOCH) {
                break;
            }
            if self.obs.is_some() {
                self.set_round_kind(if backpressured {
                    RoundKind::Backpressured
                } else if progressed {
                    RoundKind::Busy
                } else {
                    RoundKind::Idle
                });
            }
            if progressed {
                idle_rounds = 0;
                continue;
            }
            idle_rounds = idle_rounds.saturating_add(1);
            if idle_rounds == 1 {
                self.flush_sinks()?;
            }
            if self.spin && self.net_thread && idle_rounds.is_multiple_of(YIELD_EVERY) {
                // The network thread carries this worker's frames; spinning workers
                // on every core would leave it waiting for the scheduler to preempt
                // one (about a millisecond per hop on 2 cores).
                std::thread::yield_now();
            } else if self.spin || idle_rounds < SPIN_ROUNDS {
                std::hint::spin_loop();
            } else if idle_rounds < SPIN_ROUNDS + YIELD_ROUNDS {
                std::thread::yield_now();
            } else {
                self.set_round_kind(RoundKind::Parked);
                self.park(now, overflow);
            }
        }
        self.observe_round(Instant::now());
        // Everything written is made durable before the commit point, so that past it
        // only the (quick) publishing remains.
        for (step, sink) in &self.sinks {
            let _g = StepGuard::enter(*step);
            let r = sink.borrow_mut().sync();
            r.map_err(|e| self.step_error(*step, e))?;
        }
        if let Some(net) = &self.net {
            net.borrow().finished();
        }
        if !self.shared.await_commit(self.index) {
            return Err(Error::Aborted);
        }
        for (step, sink) in &self.sinks {
            let _g = StepGuard::enter(*step);
            let r = sink.borrow_mut().close();
            r.map_err(|e| self.step_error(*step, e))?;
        }
        Ok(())
    }

    /// Hands frames from other processes to their channels; true if any came.
    fn drain_net(&mut self) -> Result<bool> {
        let Some(port) = &self.net else {
            return Ok(false);
        };
        let mut got = false;
        for _ in 0..NET_BUDGET {
            // Decoded while the port is borrowed (the payload may lie in its ring),
            // delivered after: delivering runs steps, which may send.
            let mut received = None;
            let came = port.borrow_mut().recv_with(&mut |h, payload| {
                let id = h.channel.get() as usize;
                let Some((step, ch)) = self.channel_by_id.get(id).and_then(|c| c.as_ref()) else {
                    return Err(Error::Cluster(format!(
                        "worker {} sent a frame for channel {id}, which this worker does not have",
                        h.from.get()
                    )));
                };
                let _g = StepGuard::enter(*step);
                let data = ch.borrow_mut().recv_frame(h, payload).map_err(|e| {
                    Error::Cluster(format!(
                        "a frame from worker {} on channel {id} (step {:?}) is invalid: {e}",
                        h.from.get(),
                        self.plan.steps[*step].id
                    ))
                })?;
                if data {
                    received = Some((*step, ch.clone()));
                }
                Ok(())
            })?;
            if !came {
                break;
            }
            got = true;
            if let Some((step, ch)) = received {
                let _g = StepGuard::enter(step);
                ch.borrow_mut().deliver_received();
            }
        }
        Ok(got)
    }

    /// Recomputes every stream's frontier in step (topological) order, sends progress
    /// markers on exchange channels, and tells steps whose input frontier advanced.
    /// True if any frontier moved.
    fn propagate(&mut self) -> bool {
        let plan = self.plan.clone();
        let mut moved = false;
        for (i, step) in plan.steps.iter().enumerate() {
            let mut f = if step.role == Role::Input {
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
            if let Some(k) = self.channel_of_step[i] {
                let mut ch = self.channels[k].1.borrow_mut();
                // The step's own code may run here: a combining step applies its last
                // partials of the epochs `f` passes (`exchange/combine.rs`).
                let g = StepGuard::enter(i);
                ch.advance_local(f);
                drop(g);
                f = f.min(ch.remote_frontier());
            }
            let old = self.step_frontier[i];
            if f > old {
                moved = true;
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
        moved
    }

    fn flush_sinks(&mut self) -> Result<()> {
        for (step, sink) in &self.sinks {
            let _g = StepGuard::enter(*step);
            let r = sink.borrow_mut().flush();
            r.map_err(|e| self.step_error(*step, e))?;
        }
        Ok(())
    }

    /// Parks until a peer wakes us or the next scheduled thing (a source's wake time, a
    /// timer, the end of the epoch) is due.
    fn park(&self, now: Instant, overflow: bool) {
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
        if overflow {
            consider(Some(now + OVERFLOW_PARK));
        }
        // With nothing scheduled, only a peer's message can bring work, and peers wake
        // us; the cap is a safety net, not a poll.
        let mut wake = wake.unwrap_or(now + Duration::from_millis(100));
        if self.obs.is_some() {
            // With the dataflow API on, parked time and gauges stay at most this stale.
            wake = wake.min(now + PUBLISH_EVERY);
        }
        let now = Instant::now();
        if wake <= now {
            return;
        }
        let channels = &self.channels;
        let net = &self.net;
        self.shared.park(self.index, wake - now, || {
            channels.iter().any(|(_, c)| c.borrow().has_inbound())
                || net.as_ref().is_some_and(|p| p.borrow_mut().has_inbound())
        });
    }
}

/// Tells each sink the run failed. A sink that is borrowed (a panic unwound through
/// it) is skipped rather than risk a second panic.
fn abort_sinks(sinks: &[(usize, Rc<RefCell<dyn SinkHandle>>)]) {
    for (step, sink) in sinks {
        let _g = StepGuard::enter(*step);
        if let Ok(mut sink) = sink.try_borrow_mut() {
            sink.abort();
        }
    }
}
