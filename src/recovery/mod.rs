//! Recovery: snapshots into SQLite partitions, and resuming from them.
//!
//! The protocol (what is written when, how the resume epoch is found, rescaling, garbage
//! collection) is described in ARCHITECTURE.md, "Recovery". This module holds the
//! store (`store.rs`), the directory lock (`lock.rs`), the rows that workers hand over,
//! the writer thread that commits them, and the loader that reads the latest consistent
//! cut at start-up and checks the inputs' saved positions against the inputs. The hooks in
//! the runtime, the keyed engine and the io adapters only produce and consume encoded
//! rows.
//!
//! ```no_run
//! use std::time::Duration;
//! use waxfast::recovery::{init, RecoveryConfig};
//! use waxfast::RunConfig;
//! init("state".as_ref(), 2).unwrap();
//! let config = RunConfig::default()
//!     .epoch_interval(Duration::from_secs(1))
//!     .recovery(RecoveryConfig::new("state").backup_interval(Duration::from_secs(60)));
//! # let _ = config;
//! ```

mod lock;
pub(crate) mod store;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::base::epoch::{Epoch, EOF_EPOCH};
use crate::base::park::Shared;
use crate::dataflow::Plan;
use crate::error::{Error, Result};
use store::{Execution, Partition};

pub use store::init;

/// Where a run keeps its snapshots, and for how long old ones are kept.
#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    pub(crate) dir: PathBuf,
    pub(crate) backup_interval: Duration,
}

impl RecoveryConfig {
    /// Snapshots go to the partitions in `dir`, made by [`init`] (`waxfast recovery
    /// init DIR COUNT`).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        RecoveryConfig {
            dir: dir.as_ref().to_path_buf(),
            backup_interval: Duration::ZERO,
        }
    }

    /// How long superseded snapshots are kept (default 0: only the latest), so that a
    /// backup of the partitions taken within this interval can still be resumed.
    pub fn backup_interval(mut self, interval: Duration) -> Self {
        self.backup_interval = interval;
        self
    }
}

/// What a snapshot row is the state of.
pub(crate) mod kind {
    /// A key of a stateful step (the key's canonical bytes).
    pub(crate) const KEY: u8 = 0;
    /// A partition of a fixed-partitioned source (its name).
    pub(crate) const SOURCE: u8 = 1;
    /// A partition of a fixed-partitioned sink (its name).
    pub(crate) const SINK: u8 = 2;
}

/// The partition that holds the rows of `key` of step `step`: fixed by the key, never
/// by the worker, so a rescaled run keeps writing a key where its older rows are (and
/// garbage collection of one partition sees all of a key's rows).
pub(crate) fn partition_of(step: &str, key: &[u8], partitions: usize) -> usize {
    let seed = xxhash_rust::xxh3::xxh3_64(step.as_bytes());
    (xxhash_rust::xxh3::xxh3_64_with_seed(key, seed) % partitions as u64) as usize
}

pub(crate) use crate::base::codec::{decode, encode_into};

struct RowMeta {
    step: Arc<str>,
    kind: u8,
    epoch: Epoch,
    key_len: u32,
    /// `u32::MAX`: a discard.
    state_len: u32,
}

/// Snapshot rows of one worker, encoded into one buffer.
#[derive(Default)]
pub(crate) struct Rows {
    bytes: Vec<u8>,
    metas: Vec<RowMeta>,
}

impl Rows {
    /// Bytes of the rows' keys and states.
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rows({})", self.metas.len())
    }
}

/// One row of [`Rows`].
pub(crate) struct RowRef<'a> {
    pub(crate) step: &'a Arc<str>,
    pub(crate) kind: u8,
    pub(crate) epoch: Epoch,
    pub(crate) key: &'a [u8],
    pub(crate) state: Option<&'a [u8]>,
}

impl Rows {
    /// Appends a row: `key` writes the state key, `state` the encoded state and says
    /// whether there is one (false: a discard).
    pub(crate) fn push(
        &mut self,
        step: &Arc<str>,
        kind: u8,
        epoch: Epoch,
        key: impl FnOnce(&mut Vec<u8>),
        state: impl FnOnce(&mut Vec<u8>) -> Result<bool, String>,
    ) -> Result<(), String> {
        let start = self.bytes.len();
        key(&mut self.bytes);
        let key_end = self.bytes.len();
        let has = match state(&mut self.bytes) {
            Ok(h) => h,
            Err(e) => {
                self.bytes.truncate(start);
                return Err(e);
            }
        };
        let state_len = if has {
            (self.bytes.len() - key_end) as u32
        } else {
            self.bytes.truncate(key_end);
            u32::MAX
        };
        self.metas.push(RowMeta {
            step: step.clone(),
            kind,
            epoch,
            key_len: (key_end - start) as u32,
            state_len,
        });
        Ok(())
    }

    pub(crate) fn bytes_len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = RowRef<'_>> {
        let mut at = 0usize;
        self.metas.iter().map(move |m| {
            let key = &self.bytes[at..at + m.key_len as usize];
            at += m.key_len as usize;
            let state = (m.state_len != u32::MAX).then(|| {
                let s = &self.bytes[at..at + m.state_len as usize];
                at += m.state_len as usize;
                s
            });
            RowRef {
                step: &m.step,
                kind: m.kind,
                epoch: m.epoch,
                key,
                state,
            }
        })
    }
}

/// A worker's message to the writer: rows, then (optionally) its new front.
pub(crate) struct Msg {
    pub(crate) worker: usize,
    pub(crate) rows: Rows,
    pub(crate) front: Option<Epoch>,
}

/// The saved keys of one stateful step for one worker: (key bytes, state bytes).
#[derive(Debug, Default)]
pub(crate) struct KeyRows {
    bytes: Vec<u8>,
    ends: Vec<(u32, u32)>,
}

impl KeyRows {
    fn push(&mut self, key: &[u8], state: &[u8]) {
        self.bytes.extend_from_slice(key);
        let k = self.bytes.len() as u32;
        self.bytes.extend_from_slice(state);
        self.ends.push((k, self.bytes.len() as u32));
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut at = 0usize;
        self.ends.iter().map(move |&(k, s)| {
            let (k, s) = (k as usize, s as usize);
            let r = (&self.bytes[at..k], &self.bytes[k..s]);
            at = s;
            r
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }
}

/// What this process resumes from: its workers' keys and every partition's state.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// Per step id, per local worker.
    keyed: HashMap<String, Vec<KeyRows>>,
    /// Per (step id, partition name).
    parts: HashMap<(String, String), Vec<u8>>,
    /// The last run completed (the resume epoch is the end of stream).
    completed: bool,
}

impl Resume {
    pub(crate) fn take_keyed(&mut self, step: &str, local: usize) -> Option<KeyRows> {
        self.keyed
            .get_mut(step)
            .and_then(|v| v.get_mut(local))
            .map(std::mem::take)
    }

    pub(crate) fn part(&self, step: &str, part: &str) -> Option<Vec<u8>> {
        self.parts
            .get(&(step.to_string(), part.to_string()))
            .cloned()
    }

    /// The partitions of `step` that have a saved state, sorted by name.
    fn saved_parts(&self, step: &str) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = self
            .parts
            .iter()
            .filter(|((s, _), _)| s == step)
            .map(|((_, name), state)| (name.clone(), state.clone()))
            .collect();
        v.sort();
        v
    }
}

/// The recovery state of a process between reading the store and starting workers.
pub(crate) struct Prepared {
    lock: lock::DirLock,
    parts: Vec<Partition>,
    pub(crate) exec: Execution,
    pub(crate) resume: Resume,
    flow: String,
    fingerprint: u64,
    backup: Duration,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("exec", &self.exec)
            .finish()
    }
}

/// Reads the store: checks it belongs to this flow, finds the resume epoch, and loads
/// the state of this process's workers (global indices `base..base + local` of
/// `total`). Writes nothing.
pub(crate) fn prepare(
    config: &RecoveryConfig,
    plan: &Plan,
    base: usize,
    local: usize,
    total: usize,
) -> Result<Prepared> {
    let started = Instant::now();
    store::check_dir(&config.dir, "recovery directory")?;
    // Before anything is read: a second run on the directory stops here.
    let (proc_id, processes) = (base / local.max(1), total / local.max(1));
    let lock = lock::acquire(&config.dir, proc_id, processes)?;
    let mut parts = store::open_all(&config.dir, "recovery directory")?;
    let fingerprint = plan.fingerprint();
    for p in &parts {
        if let Some((name, fp)) = p.flow()? {
            if name != plan.name {
                return Err(Error::Recovery(format!(
                    "{} holds snapshots of flow {name:?}, not of {:?}: use another recovery directory for this flow",
                    p.path.display(),
                    plan.name
                )));
            }
            if fp != fingerprint {
                return Err(Error::Recovery(format!(
                    "{} holds snapshots of another version of flow {name:?} (its steps differ): use a new recovery directory",
                    p.path.display()
                )));
            }
        }
    }
    let mut execs: Vec<Execution> = Vec::new();
    let mut first_epoch = 0;
    for p in &parts {
        execs.extend(p.executions()?);
        first_epoch = first_epoch.max(p.max_epoch()?);
    }
    execs.sort_by_key(|e| e.ex);
    execs.dedup_by_key(|e| e.ex);
    let (ex, resume_from) = match execs.last() {
        None => (0, 0),
        Some(last) => (last.ex + 1, fronts_min(&parts, last)?),
    };
    let mut resume = Resume::default();
    let mut keys = 0usize;
    {
        store::load_latest(&mut parts, resume_from, |step, kind, key, state| {
            if kind == kind::KEY {
                let w = (xxhash_rust::xxh3::xxh3_64(key) % total as u64) as usize;
                if (base..base + local).contains(&w) {
                    let per = resume
                        .keyed
                        .entry(step.to_string())
                        .or_insert_with(|| (0..local).map(|_| KeyRows::default()).collect());
                    per[w - base].push(key, state);
                    keys += 1;
                }
            } else {
                let name = String::from_utf8_lossy(key).into_owned();
                resume
                    .parts
                    .insert((step.to_string(), name), state.to_vec());
            }
        })?;
    }
    resume.completed = resume_from == EOF_EPOCH;
    check_inputs(config, plan, &resume)?;
    let exec = Execution {
        ex,
        worker_count: total,
        resume_from,
        first_epoch: first_epoch.saturating_add(1).max(1),
    };
    tracing::info!(
        dir = %config.dir.display(),
        execution = ex,
        resume_from = if resume_from == EOF_EPOCH { "end of stream".to_string() } else { resume_from.to_string() },
        first_epoch = exec.first_epoch,
        keys,
        partitions = resume.parts.len(),
        ms = started.elapsed().as_millis() as u64,
        "recovery: loaded"
    );
    Ok(Prepared {
        lock,
        parts,
        exec,
        resume,
        flow: plan.name.clone(),
        fingerprint,
        backup: config.backup_interval,
    })
}

/// Checks every input's saved positions against the input as it is now (its step's
/// `check_resume`), in every process, before any worker starts: an input that changed
/// since the snapshot is an error before anything is written.
fn check_inputs(config: &RecoveryConfig, plan: &Plan, resume: &Resume) -> Result<()> {
    let started = Instant::now();
    let mut checked = 0usize;
    for step in &plan.steps {
        let Some(check) = &step.resume_check else {
            continue;
        };
        let saved = resume.saved_parts(&step.id);
        if saved.is_empty() {
            continue;
        }
        checked += saved.len();
        check(&step.id, &saved).map_err(|e| {
            Error::Recovery(format!(
                "input {} cannot resume from {}: {e}. The saved state was computed from the input as it was: restore it, or start afresh with a new recovery directory (`waxfast recovery init NEW_DIR COUNT`, or delete {} and init it again)",
                step.id,
                config.dir.display(),
                config.dir.display()
            ))
        })?;
    }
    tracing::info!(
        partitions = checked,
        ms = started.elapsed().as_millis() as u64,
        "recovery: inputs checked"
    );
    Ok(())
}

/// The rows of `batch` per partition, each partition's in key order (SQLite then fills
/// its B-tree pages in sequence). The sort is stable: a key may have two rows for one
/// epoch (its state, then its end-of-stream discard), and the later one must be
/// written last.
fn route(batch: &[Msg], partitions: usize) -> Vec<Vec<RowRef<'_>>> {
    let mut routed: Vec<Vec<RowRef<'_>>> = (0..partitions).map(|_| Vec::new()).collect();
    for m in batch {
        for r in m.rows.iter() {
            routed[partition_of(r.step, r.key, partitions)].push(r);
        }
    }
    for rows in &mut routed {
        rows.sort_by(|a, b| (a.step, a.key, a.epoch).cmp(&(b.step, b.key, b.epoch)));
    }
    routed
}

/// The last epoch every worker of execution `exec` completed: the minimum of every
/// worker's front over every partition (each partition holds a worker's rows up to the
/// front it holds for that worker). A missing front is the execution's `resume_from`:
/// that worker had committed nothing there.
fn fronts_min(parts: &[Partition], exec: &Execution) -> Result<Epoch> {
    let mut min = EOF_EPOCH;
    for p in parts {
        let fronts: HashMap<usize, Epoch> = p.fronts(exec.ex)?.into_iter().collect();
        for w in 0..exec.worker_count {
            min = min.min(fronts.get(&w).copied().unwrap_or(exec.resume_from));
        }
    }
    Ok(min)
}

/// How many batches workers may queue for the writer before they wait for it.
const QUEUE: usize = 64;

/// What the workers of a process share of the recovery tier.
#[derive(Clone)]
pub(crate) struct Handle {
    sender: SyncSender<Msg>,
    resume: Arc<Mutex<Resume>>,
    pub(crate) first_epoch: Epoch,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("first_epoch", &self.first_epoch)
            .finish()
    }
}

/// Upper bounds (seconds) of the commit-duration buckets.
pub(crate) const COMMIT_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// What the snapshot writer has done, for the metrics: written by the writer thread
/// only, read by the API server.
#[derive(Debug, Default)]
pub(crate) struct CommitStats {
    /// Commits (one per batch of the workers' messages, all partitions).
    pub(crate) commits: AtomicU64,
    /// Rows and their encoded bytes (keys and states).
    pub(crate) rows: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Total commit time, in nanoseconds, and per bucket of [`COMMIT_BUCKETS`] (plus
    /// one for longer ones).
    pub(crate) nanos: AtomicU64,
    pub(crate) buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    /// The epoch every worker of this execution has committed, as last read.
    pub(crate) committed_epoch: AtomicU64,
}

impl CommitStats {
    fn record(&self, rows: u64, bytes: u64, took: Duration) {
        let r = Ordering::Relaxed;
        self.commits.fetch_add(1, r);
        self.rows.fetch_add(rows, r);
        self.bytes.fetch_add(bytes, r);
        self.nanos.fetch_add(took.as_nanos() as u64, r);
        let secs = took.as_secs_f64();
        let b = COMMIT_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.buckets[b].fetch_add(1, r);
    }
}

/// The running recovery tier of a process: the writer thread and the workers' handle.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) handle: Handle,
    /// What the writer has committed, for the metrics.
    pub(crate) stats: Arc<CommitStats>,
    writer: std::thread::JoinHandle<()>,
    /// Held until the writer has stopped.
    lock: lock::DirLock,
}

impl Prepared {
    /// A hash of where this process resumes, for the cluster handshake (never 0).
    pub(crate) fn token(&self) -> u32 {
        let e = &self.exec;
        let text = format!("{}:{}:{}", e.ex, e.resume_from, e.first_epoch);
        (xxhash_rust::xxh3::xxh3_64(text.as_bytes()) as u32).max(1)
    }

    /// Records the new execution (in every partition, before any worker writes) and
    /// starts the writer thread. Process `proc_id` of `processes` collects the garbage
    /// of the partitions `i` with `i % processes == proc_id`.
    pub(crate) fn begin(
        mut self,
        proc_id: usize,
        processes: usize,
        shared: Arc<Shared>,
    ) -> Result<Running> {
        for p in &mut self.parts {
            p.begin(&self.exec, &self.flow, self.fingerprint)?;
            p.tune_for_writing()?;
        }
        let (sender, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let partitions = self.parts.len();
        let stats = Arc::new(CommitStats::default());
        let writer = Writer {
            stats: stats.clone(),
            gc_parts: (0..partitions)
                .filter(|i| i % processes.max(1) == proc_id)
                .collect(),
            parts: self.parts,
            exec: self.exec,
            backup: self.backup,
            seen: VecDeque::new(),
            last_gc: Instant::now(),
            last_pass: Some(Instant::now()),
            collected: 0,
            committed: self.exec.resume_from,
            shared,
            abort_after: std::env::var("WAXFAST_FAULT_ABORT_AFTER_COMMITS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &u64| n > 0),
        };
        let writer = std::thread::Builder::new()
            .name("waxfast-snapshots".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Config(format!("cannot start the snapshot writer thread: {e}")))?;
        Ok(Running {
            stats,
            handle: Handle {
                sender,
                resume: Arc::new(Mutex::new(self.resume)),
                first_epoch: self.exec.first_epoch,
            },
            writer,
            lock: self.lock,
        })
    }
}

impl Running {
    /// Waits for the writer to commit everything the workers sent (they must have
    /// dropped their senders).
    pub(crate) fn finish(self) -> std::thread::Result<()> {
        drop(self.handle);
        let r = self.writer.join();
        tracing::debug!(lock = %self.lock.path().display(), "recovery: releasing the lock");
        drop(self.lock);
        r
    }
}

/// How often the writer reads the committed epoch (for garbage collection).
const GC_EVERY: Duration = Duration::from_secs(1);
/// How often, at most, it collects garbage while the run goes on (a pass reads the
/// whole partition; the last one comes when the run ends).
const GC_PASS_EVERY: Duration = Duration::from_secs(10);

struct Writer {
    parts: Vec<Partition>,
    gc_parts: Vec<usize>,
    exec: Execution,
    backup: Duration,
    /// Values of the committed epoch, with when each was first seen.
    seen: VecDeque<(Epoch, Instant)>,
    last_gc: Instant,
    /// When the last garbage collection pass ran.
    last_pass: Option<Instant>,
    /// Garbage is collected up to this epoch.
    collected: Epoch,
    committed: Epoch,
    shared: Arc<Shared>,
    /// Test hook (`WAXFAST_FAULT_ABORT_AFTER_COMMITS=N`): abort the process after N
    /// partition commits, to crash in the middle of writing a snapshot.
    abort_after: Option<u64>,
    stats: Arc<CommitStats>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        if let Err(e) = self.serve(&rx) {
            self.shared.fail(usize::MAX, e);
            // Keep draining, so that no worker waits on a full queue.
            while rx.recv().is_ok() {}
        }
    }

    fn serve(&mut self, rx: &Receiver<Msg>) -> Result<()> {
        loop {
            let first = match rx.recv_timeout(GC_EVERY) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.maybe_collect()?;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.last_pass = None;
                    self.maybe_collect()?;
                    return Ok(());
                }
            };
            let mut batch = vec![first];
            while batch.len() < 4 * QUEUE {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            self.commit(&batch)?;
            if self.last_gc.elapsed() >= GC_EVERY {
                self.maybe_collect()?;
            }
        }
    }

    /// Writes a batch of messages: into each partition, in one transaction, the rows of
    /// the (step, key)s that live there and the fronts of every worker of the batch. A
    /// partition thus never holds a worker's front without that worker's rows up to it,
    /// whatever happens to the other files (see `fronts_min`).
    fn commit(&mut self, batch: &[Msg]) -> Result<()> {
        let routed = route(batch, self.parts.len());
        let mut fronts: Vec<(usize, Epoch)> = Vec::new();
        for m in batch {
            if let Some(f) = m.front {
                match fronts.iter_mut().find(|(w, _)| *w == m.worker) {
                    Some(slot) => slot.1 = slot.1.max(f),
                    None => fronts.push((m.worker, f)),
                }
            }
        }
        let started = Instant::now();
        for (part, rows) in self.parts.iter_mut().zip(&routed) {
            if !rows.is_empty() || !fronts.is_empty() {
                part.write(self.exec.ex, rows, &fronts)?;
                if let Some(left) = &mut self.abort_after {
                    // Fault injection for tests: die between two partitions' commits.
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        std::process::abort();
                    }
                }
            }
        }
        let took = started.elapsed();
        let rows: usize = routed.iter().map(Vec::len).sum();
        let bytes: usize = batch.iter().map(|m| m.rows.byte_len()).sum();
        self.stats.record(rows as u64, bytes as u64, took);
        tracing::debug!(
            rows,
            fronts = fronts.len(),
            us = took.as_micros() as u64,
            "recovery: committed"
        );
        Ok(())
    }

    /// The epoch every worker of this execution has committed.
    fn committed(&self) -> Result<Epoch> {
        fronts_min(&self.parts, &self.exec)
    }

    fn maybe_collect(&mut self) -> Result<()> {
        self.last_gc = Instant::now();
        let c = self.committed()?;
        self.stats.committed_epoch.store(c, Ordering::Relaxed);
        let now = Instant::now();
        if c > self.committed {
            self.committed = c;
            self.seen.push_back((c, now));
        }
        if self.last_pass.is_some_and(|t| t.elapsed() < GC_PASS_EVERY) {
            return Ok(());
        }
        // The newest committed epoch that has been committed for the backup interval.
        let old_enough = self
            .seen
            .iter()
            .take_while(|(_, t)| now.duration_since(*t) >= self.backup)
            .count();
        let Some(&(upto, _)) = old_enough.checked_sub(1).and_then(|i| self.seen.get(i)) else {
            return Ok(());
        };
        self.seen.drain(..old_enough - 1);
        if upto > self.collected {
            self.last_pass = Some(now);
            for &i in &self.gc_parts {
                let n = self.parts[i].collect_garbage(upto)?;
                tracing::debug!(
                    partition = i,
                    upto,
                    deleted = n,
                    "recovery: garbage collected"
                );
            }
            self.collected = upto;
        }
        Ok(())
    }
}

/// Worker `me`'s view of the recovery tier.
pub(crate) struct WorkerRecovery {
    pub(crate) worker: usize,
    pub(crate) local: usize,
    pub(crate) sender: SyncSender<Msg>,
    pub(crate) resume: Arc<Mutex<Resume>>,
    /// Rows produced by this worker's steps since the last hand-over.
    pub(crate) rows: std::rc::Rc<std::cell::RefCell<Rows>>,
    sent_front: std::cell::Cell<Epoch>,
}

impl std::fmt::Debug for WorkerRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkerRecovery(worker {})", self.worker)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Rows are handed over at the latest when they hold this many bytes.
const HAND_OVER_BYTES: usize = 8 << 20;

impl WorkerRecovery {
    pub(crate) fn new(handle: &Handle, worker: usize, local: usize) -> Self {
        WorkerRecovery {
            worker,
            local,
            sender: handle.sender.clone(),
            resume: handle.resume.clone(),
            rows: Default::default(),
            sent_front: std::cell::Cell::new(0),
        }
    }

    /// The saved keys of `step` for this worker (taken: each step asks once).
    pub(crate) fn take_keyed(&self, step: &str) -> Option<KeyRows> {
        lock(&self.resume).take_keyed(step, self.local)
    }

    /// The saved state of partition `part` of `step`.
    pub(crate) fn part(&self, step: &str, part: &str) -> Option<Vec<u8>> {
        lock(&self.resume).part(step, part)
    }

    /// If the last run completed: the names of `step`'s partitions it saved.
    pub(crate) fn completed_parts(&self, step: &str) -> Option<Vec<String>> {
        let resume = lock(&self.resume);
        resume.completed.then(|| {
            resume
                .saved_parts(step)
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        })
    }

    /// Hands the rows over to the writer, with `front` if it advanced (or when the rows
    /// grow large). Returns false if the writer is gone (it failed: the run is ending).
    pub(crate) fn hand_over(&self, front: Epoch) -> bool {
        let advanced = front > self.sent_front.get();
        let big = self.rows.borrow().bytes_len() >= HAND_OVER_BYTES;
        if !advanced && !big {
            return true;
        }
        let rows = std::mem::take(&mut *self.rows.borrow_mut());
        let msg = Msg {
            worker: self.worker,
            rows,
            front: advanced.then_some(front),
        };
        if advanced {
            self.sent_front.set(front);
        }
        self.sender.send(msg).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: rows were sorted with an unstable sort, so a key's end-of-stream
    /// discard could be written before its state of the same epoch, and the state won:
    /// a rerun after the end emitted the key's count again.
    #[test]
    fn a_later_row_of_the_same_key_and_epoch_is_written_last() {
        let step: Arc<str> = "f.count".into();
        let mut rows = Rows::default();
        for i in 0..200u32 {
            let key = format!("k{}", i % 50);
            let state = i < 100;
            rows.push(
                &step,
                kind::KEY,
                7,
                |b| b.extend_from_slice(key.as_bytes()),
                |b| {
                    if state {
                        b.push(1);
                    }
                    Ok(state)
                },
            )
            .unwrap();
        }
        let batch = [Msg {
            worker: 0,
            rows,
            front: None,
        }];
        for part in route(&batch, 3) {
            for pair in part.windows(2) {
                if pair[0].key == pair[1].key {
                    // Every state row (the first 100 pushed) precedes the discards.
                    assert!(pair[0].state.is_some() || pair[1].state.is_none());
                }
            }
            // The last row of each key is a discard.
            for (i, r) in part.iter().enumerate() {
                if part.get(i + 1).is_none_or(|n| n.key != r.key) {
                    assert!(r.state.is_none());
                }
            }
        }
    }
}
