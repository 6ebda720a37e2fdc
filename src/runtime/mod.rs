//! Running a flow: workers, scheduling, progress, failure capture.
//!
//! [`run_main`] runs one worker on the calling thread; [`cluster_main`] runs
//! `workers_per_proc` core-pinned worker threads in this process, exchanging records
//! through SPSC rings.

pub(crate) mod build;
pub(crate) mod fuse;
pub(crate) mod gate;
pub(crate) mod interrupt;
pub(crate) mod listing;
pub(crate) mod progress;
pub(crate) mod push;
pub(crate) mod step_guard;
mod worker;

use crate::transport::threads::Allocator;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::base::park::Shared;
use crate::dataflow::{Dataflow, Plan};
use crate::error::{Error, Result};
use crate::recovery::RecoveryConfig;

pub use build::BuildCtx;
pub use interrupt::install as install_signal_handlers;
pub use progress::{Epoch, EOF_EPOCH, FIRST_EPOCH};
pub use push::{Data, ExchangeData};

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
    pub(crate) fuse: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) peer_timeout: Duration,
    pub(crate) recovery: Option<RecoveryConfig>,
    pub(crate) flow_args: String,
    pub(crate) cluster_secret: Option<Arc<[u8]>>,
    pub(crate) api: Option<crate::observe::ApiConfig>,
    pub(crate) transport: crate::transport::Mode,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            epoch_interval: Duration::from_secs(10),
            pin: true,
            spin: false,
            fuse: true,
            connect_timeout: Duration::from_secs(30),
            peer_timeout: DEFAULT_PEER_TIMEOUT,
            recovery: None,
            flow_args: String::new(),
            cluster_secret: None,
            api: None,
            transport: crate::transport::Mode::Auto,
        }
    }
}

/// How long a cluster waits to hear from a silent peer before it is lost, by default.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// What every worker of a process shares at start: the epoch grid's origin, the
/// recovery tier, and the partitions of the fixed-partitioned steps.
#[derive(Debug, Clone)]
pub(crate) struct RunEnv {
    pub(crate) start: std::time::Instant,
    pub(crate) recovery: Option<crate::recovery::Handle>,
    pub(crate) listing: Arc<listing::Listing>,
    /// The dataflow API's view of this run, when it is on.
    pub(crate) observer: Option<Arc<crate::observe::Observer>>,
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

    /// Fuse adjacent steps where one is the other's only consumer (default true):
    /// `key_on` into the keyed step after it, a keyed step into the `key_rm` after it
    /// (`runtime::fuse`). The steps stay in the dataflow either way; `false` runs every
    /// step on its own, for telling a fusion's effect apart.
    pub fn fuse(mut self, fuse: bool) -> Self {
        self.fuse = fuse;
        self
    }

    /// How long the processes of a cluster keep trying to reach each other before the
    /// run fails, naming the ones that never answered (default 30 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How the processes of a cluster exchange data: shared memory to processes of
    /// this host and TCP to the others (`Auto`, the default), or one of them for every
    /// peer (`Tcp`; `Shm`, which refuses a peer on another host). The connection to
    /// each peer is TCP in every case: it forms the cluster and carries heartbeats.
    pub fn transport(mut self, mode: crate::transport::Mode) -> Self {
        self.transport = mode;
        self
    }

    /// How long the processes of a cluster wait to hear anything (data or a
    /// heartbeat) from a peer before they stop, naming it as lost (default
    /// [`DEFAULT_PEER_TIMEOUT`]). A stopped or hung process is detected within this
    /// bound plus about a second. Must be more than zero.
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.peer_timeout = timeout;
        self
    }

    /// Text every process of a cluster must agree on besides the flow's step graph:
    /// the CLI passes the flow's arguments (`NAME:ARGS`), so two processes started with
    /// different inputs refuse each other instead of computing a mix.
    pub fn flow_args(mut self, args: impl Into<String>) -> Self {
        self.flow_args = args.into();
        self
    }

    /// A shared secret every process of a cluster must prove it holds (HMAC-SHA256
    /// challenge-response over fresh nonces in the handshake); connections that do
    /// not are dropped without disturbing the formation. Without one, the cluster's
    /// ports must be on a trusted network.
    pub fn cluster_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.cluster_secret = Some(secret.into().into());
        self
    }

    /// Serves the dataflow API for this run (off by default): Prometheus metrics at
    /// `/metrics`, the graph at `/dataflow`, a live dashboard at `/`. The server runs
    /// on its own threads from before the workers start until they stop; a port that
    /// cannot be bound fails the run, naming the address.
    pub fn api(mut self, api: crate::observe::ApiConfig) -> Self {
        self.api = Some(api);
        self
    }

    /// Snapshots into recovery partitions, and resumes from them: at the end of every
    /// epoch (so the epoch interval is the snapshot interval), stateful steps save the
    /// keys they changed, inputs their positions, fixed-partitioned sinks their state.
    /// A run with the same directory continues from the latest snapshot every worker
    /// completed. See [`crate::recovery`].
    pub fn recovery(mut self, recovery: RecoveryConfig) -> Self {
        self.recovery = Some(recovery);
        self
    }
}

/// Starts the recovery tier, if configured: reads the store (before a cluster forms),
/// then `begin` records the execution and starts the writer (after it formed).
fn prepare_recovery(
    config: &RunConfig,
    plan: &Plan,
    base: usize,
    local: usize,
    total: usize,
) -> Result<Option<crate::recovery::Prepared>> {
    config
        .recovery
        .as_ref()
        .map(|rc| crate::recovery::prepare(rc, plan, base, local, total))
        .transpose()
}

/// Waits for the snapshot writer after the workers stopped, reporting its failure.
fn finish_recovery(running: Option<crate::recovery::Running>, shared: &Shared) {
    if let Some(r) = running {
        if let Err(payload) = r.finish() {
            shared.fail(
                usize::MAX,
                Error::Recovery(format!(
                    "the snapshot writer stopped unexpectedly: {}",
                    panic_message(payload.as_ref())
                )),
            );
        }
    }
}

/// What this process says in the handshake; `shape` is (processes, workers per
/// process, this process's id).
fn make_hello(
    plan: &Plan,
    listed: &Result<listing::Listing>,
    (processes, workers, process): (usize, usize, usize),
    config: &RunConfig,
    recovery: u64,
) -> crate::net::hello::Hello {
    crate::net::hello::Hello {
        version: crate::net::hello::PROTOCOL_VERSION,
        processes: processes as u32,
        workers_per_proc: workers as u32,
        process: process as u32,
        fingerprint: plan.fingerprint(),
        flow: plan.name.clone(),
        flow_args: config.flow_args.clone(),
        epoch_interval_ns: u64::try_from(config.epoch_interval.as_nanos()).unwrap_or(u64::MAX),
        recovery,
        inputs: listed
            .as_ref()
            .map(|l| l.summary())
            .map_err(|e| e.to_string()),
        authenticated: config.cluster_secret.is_some(),
        nonce: crate::net::hello::nonce(),
    }
}

/// The hello process `process` of a cluster of `processes` processes of
/// `workers_per_proc` workers would send for `flow` (without recovery): for tests that
/// play a process of a cluster by hand.
#[doc(hidden)]
pub fn handshake_hello(
    flow: &Dataflow,
    processes: usize,
    workers_per_proc: usize,
    process: usize,
    config: &RunConfig,
) -> Result<crate::net::hello::Hello> {
    let plan = flow.plan()?;
    let listed = listing::Listing::of(&plan);
    Ok(make_hello(
        &plan,
        &listed,
        (processes, workers_per_proc, process),
        config,
        0,
    ))
}

/// Hands the snapshot writer's counters to the dataflow API, if both are on.
fn observe_snapshots(env: &RunEnv, running: &Option<crate::recovery::Running>) {
    if let (Some(obs), Some(r)) = (&env.observer, running) {
        let _ = obs.snapshots.set(r.stats.clone());
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
    let listing = Arc::new(listing::Listing::of(&plan)?);
    let (observer, _api) = start_api(config, &plan)?;
    let shared = Arc::new(Shared::new(1));
    interrupt::register(&shared);
    let running = match prepare_recovery(config, &plan, 0, 1, 1)? {
        Some(p) => Some(p.begin(0, 1, shared.clone())?),
        None => None,
    };
    let env = RunEnv {
        start: std::time::Instant::now(),
        recovery: running.as_ref().map(|r| r.handle.clone()),
        listing,
        observer,
    };
    observe_snapshots(&env, &running);
    let endpoints = (allocator(&plan, 1, 0, 1), 0);
    let me = WorkerId {
        local: 0,
        global: 0,
        count: 1,
    };
    let r = run_worker(plan, me, endpoints, None, &shared, config, env);
    finish_recovery(running, &shared);
    match (r, shared.take_error()) {
        (_, Some((_, first))) => Err(first),
        (r, None) => r,
    }
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
    if proc_id >= addresses.len().max(1) {
        return Err(Error::Config(format!(
            "proc_id {proc_id} is out of range for {} process(es)",
            addresses.len().max(1)
        )));
    }
    let plan = Arc::new(flow.plan()?);
    let n = workers_per_proc;
    let processes = addresses.len().max(1);
    if n == 1 && processes == 1 {
        return run_main_with(flow, config);
    }
    let base = proc_id * n;
    let total = processes * n;
    // Every process reads the store before the cluster forms and writes only after:
    // they all see the same snapshots and agree on where to resume.
    // A process that cannot list its partitions still forms the cluster, to tell its
    // peers why it fails (they would otherwise wait out the connect timeout).
    let listed = listing::Listing::of(&plan);
    let (observer, _api) = start_api(config, &plan)?;
    let prepared = prepare_recovery(config, &plan, base, n, total)?;
    let shared = Arc::new(Shared::new(n));
    if processes > 1 {
        shared.expect_peers();
    }
    interrupt::register(&shared);
    let (net, ports, listing) = if processes > 1 {
        if config.peer_timeout.is_zero() {
            return Err(Error::Config(
                "the peer timeout must be more than zero".into(),
            ));
        }
        let hello = make_hello(
            &plan,
            &listed,
            (processes, n, proc_id),
            config,
            prepared.as_ref().map_or(0, |p| u64::from(p.token())),
        );
        let formed = crate::net::form::form(
            addresses,
            proc_id,
            &hello,
            config.cluster_secret.clone(),
            config.connect_timeout,
        );
        // Our own listing error is the cause, whatever formation said.
        let listing = listed?;
        let mut streams = formed?;
        tracing::debug!(process = proc_id, processes, "cluster formed");
        let agreed = crate::transport::agree::agree(
            &mut streams,
            addresses,
            proc_id,
            n,
            config.transport,
            std::time::Instant::now() + config.connect_timeout,
        )?;
        let net_data = agreed
            .links
            .iter()
            .enumerate()
            .any(|(p, l)| p != proc_id && *l != Some(crate::transport::agree::Link::Shm));
        let control_only: Vec<bool> = agreed
            .links
            .iter()
            .map(|l| *l == Some(crate::transport::agree::Link::Shm))
            .collect();
        let (net, ports) = crate::net::io::start(
            streams,
            &control_only,
            addresses,
            proc_id,
            n,
            plan.channels.len(),
            shared.clone(),
            config.peer_timeout,
        )
        .map_err(|e| Error::Cluster(format!("cannot start the network thread: {e}")))?;
        if let Some(links) = &agreed.shm {
            shared.use_bells(links.own.clone());
        }
        let remotes = ports
            .into_iter()
            .enumerate()
            .map(|(i, tcp)| {
                let shm = agreed.shm.as_ref().map(|l| l.port(i));
                Some(crate::transport::Remote::new(n, Some(tcp), shm, net_data))
            })
            .collect();
        (Some(net), remotes, listing)
    } else {
        (None, (0..n).map(|_| None).collect::<Vec<_>>(), listed?)
    };
    let running = match prepared {
        Some(p) => Some(p.begin(proc_id, processes, shared.clone())?),
        None => None,
    };
    let env = RunEnv {
        start: std::time::Instant::now(),
        recovery: running.as_ref().map(|r| r.handle.clone()),
        listing: Arc::new(listing),
        observer,
    };
    observe_snapshots(&env, &running);
    let signal = net.as_ref().map(|n| n.signal());
    if let (Some(obs), Some(sig)) = (&env.observer, &signal) {
        let _ = obs.net.set((sig.clone(), addresses.to_vec(), proc_id));
    }
    let net_handle = match net {
        Some(net) => Some(
            std::thread::Builder::new()
                .name("waxfast-net".into())
                .spawn(move || net.run())
                .map_err(|e| Error::Config(format!("cannot start the network thread: {e}")))?,
        ),
        None => None,
    };
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
    let alloc = allocator(&plan, n, base, total);
    for (i, port) in ports.into_iter().enumerate() {
        let endpoints = (alloc.clone(), i);
        let (plan, shared, config) = (plan.clone(), shared.clone(), config.clone());
        let env = env.clone();
        let core = cores
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|c| c[(base + i) % c.len()]);
        let handle = std::thread::Builder::new()
            .name(format!("waxfast-w{i}"))
            .spawn(move || {
                if let Some(core) = core {
                    let ok = core_affinity::set_for_current(core);
                    tracing::debug!(worker = i, core = core.id, ok, "pinned worker to core");
                } else {
                    tracing::debug!(worker = i, "worker not pinned");
                }
                let me = WorkerId {
                    local: i,
                    global: base + i,
                    count: total,
                };
                run_worker(plan, me, endpoints, port, &shared, &config, env)
            })
            .map_err(|e| Error::Config(format!("cannot start worker thread {i}: {e}")))?;
        handles.push(handle);
    }
    let mut unexpected = None;
    for (i, h) in handles.into_iter().enumerate() {
        if let Err(payload) = h.join() {
            unexpected.get_or_insert(Error::Worker {
                worker: base + i,
                message: panic_message(payload.as_ref()),
            });
            if let Some(e) = unexpected.take() {
                shared.fail(i, e);
            }
        }
    }
    drop(env);
    finish_recovery(running, &shared);
    if let Some(h) = net_handle {
        if let Err(payload) = h.join() {
            shared.fail(
                usize::MAX,
                Error::Cluster(format!(
                    "the network thread stopped unexpectedly: {}",
                    panic_message(payload.as_ref())
                )),
            );
        }
    }
    match shared.take_error() {
        Some((_, e)) => Err(e),
        None => unexpected.map_or(Ok(()), Err),
    }
}

/// Starts the dataflow API server if the run asks for it; it stops when the returned
/// server is dropped, at the end of the run.
#[allow(clippy::type_complexity)]
fn start_api(
    config: &RunConfig,
    plan: &Plan,
) -> Result<(
    Option<Arc<crate::observe::Observer>>,
    Option<crate::observe::ApiServer>,
)> {
    let Some(api) = &config.api else {
        return Ok((None, None));
    };
    let obs = Arc::new(crate::observe::Observer::new(plan));
    let server = crate::observe::ApiServer::start(api, obs.clone())?;
    tracing::debug!(addr = %server.addr(), "dataflow API started");
    Ok((Some(obs), Some(server)))
}

/// The threads transport of this process's `workers` (global indices from `base`, of
/// `total`): each channel's rings are made when a worker first asks for its end.
fn allocator(plan: &Plan, workers: usize, base: usize, total: usize) -> Arc<Allocator> {
    Arc::new(Allocator::new(plan.channels.clone(), workers, base, total))
}

/// Which worker a thread runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerId {
    /// Index within this process.
    pub(crate) local: usize,
    /// Index within the cluster.
    pub(crate) global: usize,
    /// Workers in the cluster.
    pub(crate) count: usize,
}

/// Builds and runs a worker, turning a panic into an [`Error`] and reporting a failure
/// to the other workers.
fn run_worker(
    plan: Arc<Plan>,
    me: WorkerId,
    endpoints: (Arc<Allocator>, usize),
    port: Option<crate::transport::Remote>,
    shared: &Arc<Shared>,
    config: &RunConfig,
    env: RunEnv,
) -> Result<()> {
    step_guard::reset();
    shared.register(me.local);
    tighten_timer_slack();
    let index = me.global;
    // Every event of this worker carries its index (a field of JSON logs).
    let _span = tracing::info_span!("worker", worker_index = index).entered();
    tracing::debug!(flow = %plan.name, worker = index, workers = me.count, "worker starting");
    let mut built: Option<worker::Worker> = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let worker = built.insert(worker::Worker::build(
            plan.clone(),
            me,
            endpoints,
            port,
            shared.clone(),
            config,
            &env,
        )?);
        drop(env);
        worker.run()
    }));
    let outcome = match result {
        Ok(r) => r,
        Err(payload) => Err(panic_to_error(payload, &plan, index)),
    };
    if let (Err(_), Some(worker)) = (&outcome, &built) {
        // Any failure, this worker's or another's (`Aborted`): partial output goes.
        let _ = catch_unwind(AssertUnwindSafe(|| worker.abort()));
    }
    drop(built);
    step_guard::reset();
    crate::observe::set_thread_cells(None);
    match outcome {
        Err(e) if !matches!(e, Error::Aborted) => {
            tracing::debug!(worker = index, step_id = e.step_id(), error = %e, "worker failed");
            // The first cause goes to the shared slot, where the entry point reports it
            // exactly once; this worker's own result is just "aborted".
            shared.fail(me.local, e);
            Err(Error::Aborted)
        }
        other => other,
    }
}

/// Asks the kernel to wake this thread within 1 µs of a timed park instead of Linux's
/// default 50 µs of timer slack: a parked worker's timeout is a scheduled wake-up (a
/// source's next poll, a timer, the epoch end), and slack delays it.
fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only changes the
        // calling thread's timer slack; no memory is passed.
        let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
        if rc != 0 {
            tracing::debug!("PR_SET_TIMERSLACK failed; keeping the default timer slack");
        }
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
