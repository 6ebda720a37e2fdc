//! Instantiating a blueprint on one worker.
//!
//! Steps are built in reverse declaration order, so every consumer of a stream is built
//! (and registered in the stream's [`Tee`]) before its producer takes the finished tee.

use crate::transport::threads::Allocator;
use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::base::park::Shared;
use crate::dataflow::Key;
use crate::dataflow::{ChannelId, StreamId};
use crate::error::{Error, Result};
use crate::exchange::combine::{CombinedChannel, Precombine};
use crate::exchange::items::ItemRouter;
use crate::exchange::keyed::{KeyBatch, KeyRouter, KeyedEntry, KeyedInput};
use crate::exchange::{ChannelIo, Links, StepChannel};
use crate::io::SourceStatus;
use crate::io::{assign_partitions, ErasedSinkPart, ErasedSourcePart, SinkKind, SourceKind};
use crate::observe::metrics::{PartTimer, RoundClock, StepCells, WorkerCells};
use crate::recovery::{kind, KeyRows, Rows, WorkerRecovery};
use crate::runtime::fuse::FusedKeys;
use crate::runtime::gate::EpochGate;
use crate::runtime::listing::Listing;
use crate::runtime::progress::Epoch;
use crate::runtime::push::{Data, Guarded, Push, PushFn, Tee};
use crate::runtime::step_guard::StepGuard;
use crate::transport::threads::Endpoint;

/// A step's hooks into the worker loop besides receiving batches: told when its input
/// frontier advances (an epoch is complete, or the stream ended), and woken at times it
/// asked for (system-time notifications).
pub(crate) trait Activation {
    /// The input frontier advanced from `old` to `new` (`new` may be
    /// [`EOF_EPOCH`](crate::runtime::progress::EOF_EPOCH)).
    fn on_frontier(&mut self, old: Epoch, new: Epoch);
    /// The earliest time this step wants to be woken.
    fn next_wake(&self) -> Option<Instant> {
        None
    }
    /// Called once `next_wake` has passed; `epoch` tags what it emits.
    fn on_wake(&mut self, _now: Instant, _epoch: Epoch) {}
    /// Keys holding state on this worker, for a keyed step (the dataflow API).
    fn live_keys(&self) -> Option<usize> {
        None
    }
    /// For a window step on this worker: its open windows, and the furthest watermark
    /// of its keys (nanoseconds since the Unix epoch; `None` before any), for the
    /// dataflow API.
    fn windows(&self) -> Option<(u64, Option<i64>)> {
        None
    }
}

/// An input step's partitions on this worker.
pub(crate) trait DriveSource {
    /// Polls a partition whose time has come.
    fn poll(&mut self, now: Instant, epoch: Epoch) -> Result<Polled, crate::error::BoxError>;
    /// When the next partition wants polling (`None` when all are at EOF).
    fn next_awake(&self) -> Option<Instant>;
    /// True once every partition on this worker is at EOF.
    fn is_eof(&self) -> bool;
    /// With recovery: saves the position of every partition polled since the last
    /// call, tagged `epoch` (the epoch that just ended).
    fn snapshot(&mut self, epoch: Epoch) -> Result<(), crate::error::BoxError>;
}

/// What one [`DriveSource::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Polled {
    /// Whether anything happened: items came, or a partition reached its end.
    pub(crate) progressed: bool,
    /// How many items came.
    pub(crate) items: usize,
}

/// An output step's partitions on this worker.
pub(crate) trait SinkHandle {
    fn flush(&mut self) -> Result<(), crate::error::BoxError>;
    /// Makes what was written durable (before the commit point).
    fn sync(&mut self) -> Result<(), crate::error::BoxError>;
    fn close(&mut self) -> Result<(), crate::error::BoxError>;
    /// The run failed without recovery: every partition drops its partial output.
    fn abort(&mut self);
}

/// What building a step may use: the worker's identity, the streams' tees, and the
/// registries of the worker loop.
pub struct BuildCtx {
    worker_index: usize,
    worker_count: usize,
    step: usize,
    step_id: Arc<str>,
    tees: Vec<Option<Box<dyn Any>>>,
    /// Consumers registered per stream so far.
    consumers: Vec<usize>,
    /// Per stream, what its consumer offers the stream's producer for fusing the two
    /// steps (taken only if that consumer is the stream's only one).
    offers: Vec<Option<Box<dyn Any>>>,
    /// Whether producers may take offers (`RunConfig::fuse`).
    fuse: bool,
    /// Where this worker's ends of the exchange channels come from.
    channels_of: Arc<Allocator>,
    /// This worker's index within its process.
    local: usize,
    shared: Arc<Shared>,
    pub(crate) channels: Vec<(usize, Rc<RefCell<dyn ChannelIo>>)>,
    pub(crate) channel_by_id: Vec<Option<StepChannel>>,
    net: Option<Rc<RefCell<crate::transport::Remote>>>,
    pub(crate) sources: Vec<(usize, Box<dyn DriveSource>)>,
    pub(crate) activations: Vec<(usize, Rc<RefCell<dyn Activation>>)>,
    pub(crate) sinks: Vec<(usize, Rc<RefCell<dyn SinkHandle>>)>,
    recovery: Option<Rc<WorkerRecovery>>,
    first_epoch: Epoch,
    listing: Arc<Listing>,
    /// This worker's metrics cells and round clock, with the dataflow API on.
    cells: Option<(Arc<WorkerCells>, RoundClock)>,
}

impl std::fmt::Debug for BuildCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildCtx")
            .field("worker_index", &self.worker_index)
            .field("worker_count", &self.worker_count)
            .field("step_id", &self.step_id)
            .finish()
    }
}

impl BuildCtx {
    pub(crate) fn new(
        worker_index: usize,
        worker_count: usize,
        streams: usize,
        (channels_of, local): (Arc<Allocator>, usize),
        net: Option<Rc<RefCell<crate::transport::Remote>>>,
        shared: Arc<Shared>,
    ) -> Self {
        let n_channels = channels_of.channels();
        BuildCtx {
            worker_index,
            worker_count,
            step: 0,
            step_id: "".into(),
            tees: (0..streams).map(|_| None).collect(),
            consumers: vec![0; streams],
            offers: (0..streams).map(|_| None).collect(),
            fuse: true,
            channels_of,
            local,
            shared,
            channels: Vec::new(),
            channel_by_id: (0..n_channels).map(|_| None).collect(),
            net,
            sources: Vec::new(),
            activations: Vec::new(),
            sinks: Vec::new(),
            recovery: None,
            first_epoch: crate::runtime::progress::FIRST_EPOCH,
            listing: Arc::default(),
            cells: None,
        }
    }

    /// Counts into `cells` (the dataflow API is on).
    pub(crate) fn with_cells(mut self, cells: Option<(Arc<WorkerCells>, RoundClock)>) -> Self {
        self.cells = cells;
        self
    }

    /// Lets producers take their consumers' offers, or not (`RunConfig::fuse`).
    pub(crate) fn with_fusion(mut self, fuse: bool) -> Self {
        self.fuse = fuse;
        self
    }

    /// The cells of the step being built, with the dataflow API on.
    pub(crate) fn step_cells(&self) -> Option<Arc<StepCells>> {
        self.cells.as_ref().map(|(c, _)| c.steps[self.step].clone())
    }

    /// Registers partition `part` of the step being built, with the dataflow API on.
    fn part_cells(&self, part: &str, input: bool) -> Option<PartTimer> {
        self.cells
            .as_ref()
            .map(|(c, clock)| PartTimer::new(c.add_part(self.step, part, input), clock.clone()))
    }

    /// The partitions listed for this process before its workers started.
    pub(crate) fn with_listing(mut self, listing: Arc<Listing>) -> Self {
        self.listing = listing;
        self
    }

    /// The partitions of the step being built, from the process's listing (every
    /// fixed-partitioned input and output registers its lister when declared).
    fn partitions(&self) -> Result<Arc<Vec<String>>> {
        self.listing.parts(&self.step_id).ok_or_else(|| {
            Error::in_step(
                self.step_id.to_string(),
                "the step's partitions were not listed before the run started",
            )
        })
    }

    pub(crate) fn with_recovery(
        mut self,
        rec: Option<Rc<WorkerRecovery>>,
        first_epoch: Epoch,
    ) -> Self {
        self.recovery = rec;
        self.first_epoch = first_epoch;
        self
    }

    /// The first epoch of this run (above every epoch of earlier runs when resuming).
    pub(crate) fn first_epoch(&self) -> Epoch {
        self.first_epoch
    }

    /// Where the step being built writes its snapshot rows; `None` without recovery.
    pub(crate) fn snapshot_rows(&self) -> Option<Rc<RefCell<Rows>>> {
        self.recovery.as_ref().map(|r| r.rows.clone())
    }

    pub(crate) fn step_id_arc(&self) -> Arc<str> {
        self.step_id.clone()
    }

    /// The keys this worker resumes with for the step being built.
    pub(crate) fn resume_keys(&self) -> Option<KeyRows> {
        self.recovery
            .as_ref()
            .and_then(|r| r.take_keyed(&self.step_id))
    }

    /// The saved state of partition `part` of the step being built.
    fn resume_part(&self, part: &str) -> Option<Vec<u8>> {
        self.recovery
            .as_ref()
            .and_then(|r| r.part(&self.step_id, part))
    }

    pub(crate) fn set_step(&mut self, step: usize, id: Arc<str>) {
        self.step = step;
        self.step_id = id;
    }

    /// This worker's global index.
    pub fn worker_index(&self) -> usize {
        self.worker_index
    }

    /// The number of workers in the run.
    pub fn worker_count(&self) -> usize {
        self.worker_count
    }

    /// The full id of the step being built.
    pub fn step_id(&self) -> &str {
        &self.step_id
    }

    /// Registers `consumer` as a reader of `stream`, attributing its panics to the step
    /// being built.
    pub(crate) fn consume<T: Data>(&mut self, stream: StreamId, consumer: impl Push<T> + 'static) {
        let guarded = Guarded {
            step: self.step,
            inner: consumer,
            cells: self.step_cells(),
        };
        self.consumers[stream] += 1;
        let slot = self.tees[stream].get_or_insert_with(|| Box::new(Tee::<T>::default()));
        slot.downcast_mut::<Tee<T>>()
            .expect("stream item type is fixed by Stream<T>")
            .add(Box::new(guarded));
    }

    /// Offers the producer of `stream` a way to fuse with the step being built (its
    /// consumer, which also registers an ordinary consumer: the producer chooses).
    pub(crate) fn offer<O: 'static>(&mut self, stream: StreamId, offer: O) {
        self.offers[stream] = Some(Box::new(offer));
    }

    /// For the producer of `stream`: the fusion its consumer offered, if the stream has
    /// that one consumer only and the offer is an `O`. Taking it drops the stream's
    /// tee (the consumer's ordinary path): the producer feeds the offer instead.
    pub(crate) fn take_fused<O: 'static>(&mut self, stream: StreamId) -> Option<O> {
        if !self.fuse || self.consumers[stream] != 1 || !self.offers[stream].as_ref()?.is::<O>() {
            return None;
        }
        self.tees[stream] = None;
        let offer = self.offers[stream].take()?;
        Some(*offer.downcast::<O>().expect("checked above"))
    }

    /// Takes the tee of `stream` (all its consumers are built by now).
    pub(crate) fn take_tee<T: Data>(&mut self, stream: StreamId) -> Tee<T> {
        let mut tee = match self.tees[stream].take() {
            Some(b) => *b
                .downcast::<Tee<T>>()
                .expect("stream item type is fixed by Stream<T>"),
            None => Tee::default(),
        };
        tee.count_into(self.step_cells());
        tee
    }

    pub(crate) fn add_activation(&mut self, a: Rc<RefCell<dyn Activation>>) {
        self.activations.push((self.step, a));
    }

    /// Connects `inp` to `target` through exchange channel `chan`: each item goes to
    /// worker `route(item)` (which must be `< worker_count`). With one worker this is a
    /// direct connection and `route` is never called.
    pub(crate) fn exchange<T: Data>(
        &mut self,
        inp: StreamId,
        chan: ChannelId,
        route: impl FnMut(&T) -> usize + 'static,
        target: Rc<RefCell<dyn Push<T>>>,
    ) {
        let ep = self.take_endpoint::<Vec<T>>(chan);
        if self.worker_count == 1 {
            self.consume(
                inp,
                PushFn(move |epoch, batch: &mut Vec<T>| target.borrow_mut().push(epoch, batch)),
            );
            return;
        }
        let links =
            Links::new(self.worker_index, ep, self.shared.clone()).with_net(self.net.clone());
        let (mut router, channel) = ItemRouter::new(links, route, target);
        self.consume(
            inp,
            PushFn(move |epoch, batch: &mut Vec<T>| router.push(epoch, batch)),
        );
        self.channel_by_id[chan] = Some((self.step, channel.clone()));
        self.channels.push((self.step, channel));
    }

    fn take_endpoint<B: Send + 'static>(&mut self, chan: ChannelId) -> Endpoint<B> {
        self.channels_of.endpoint::<B>(chan, self.local)
    }

    /// Connects keyed stream `inp` to `target` through keyed channel `chan`: each item
    /// goes to worker `stable_hash(key) % worker_count`, with its hash.
    /// With several workers, `combiner` (for a step whose values merge) takes the items
    /// before the router, and the worker loop drives the channel through it.
    pub(crate) fn keyed_exchange<K: Key, V: Data>(
        &mut self,
        inp: StreamId,
        chan: ChannelId,
        target: Rc<RefCell<dyn KeyedInput<K, V>>>,
        combiner: Option<Box<dyn Precombine<K, V>>>,
    ) {
        let ep = self.take_endpoint::<KeyBatch<K, V>>(chan);
        let routed = (self.worker_count > 1).then(|| {
            let links =
                Links::new(self.worker_index, ep, self.shared.clone()).with_net(self.net.clone());
            KeyRouter::new(links, target.clone())
        });
        let (router, channel) = routed.unzip();
        let entry = Rc::new(RefCell::new(KeyedEntry::new(target, router, combiner)));
        if let Some(channel) = channel {
            let driven: Rc<RefCell<dyn ChannelIo>> = if entry.borrow().combines() {
                Rc::new(RefCell::new(CombinedChannel {
                    entry: entry.clone(),
                    channel,
                }))
            } else {
                channel
            };
            self.channel_by_id[chan] = Some((self.step, driven.clone()));
            self.channels.push((self.step, driven));
        }
        let pairs = entry.clone();
        self.consume(
            inp,
            PushFn(move |epoch, batch: &mut Vec<(K, V)>| {
                pairs.borrow_mut().push_pairs(epoch, batch)
            }),
        );
        let fused = FusedKeys::new(entry, self.step, self.step_cells());
        self.offer(inp, fused);
    }

    /// Builds this worker's partitions of an input step.
    pub(crate) fn build_source<T: Data>(
        &mut self,
        kind: &SourceKind<T>,
        out: StreamId,
    ) -> Result<()> {
        let tee = self.take_tee::<T>(out);
        let step_id = self.step_id.clone();
        let wrap = |e| Error::in_step(step_id.to_string(), e);
        let parts: Vec<(String, Box<dyn ErasedSourcePart<T>>)> = match kind {
            SourceKind::Fixed(src) => {
                let names = self.partitions()?;
                let visible = vec![(0..self.worker_count).collect::<Vec<_>>(); names.len()];
                let owners = assign_partitions(&visible, self.worker_count);
                let mut parts = Vec::new();
                for (name, owner) in names.iter().zip(owners) {
                    if owner == self.worker_index {
                        let resume = self.resume_part(name);
                        let part = src
                            .build_part(&step_id, name, resume.as_deref())
                            .map_err(wrap)?;
                        parts.push((name.clone(), part));
                    }
                }
                parts
            }
            SourceKind::Dynamic(src) => {
                vec![(
                    String::new(),
                    src.build(&step_id, self.worker_index, self.worker_count)
                        .map_err(wrap)?,
                )]
            }
        };
        let now = Instant::now();
        let driver = InputDriver {
            step: self.step,
            parts: parts
                .into_iter()
                .map(|(name, part)| PartSlot {
                    cells: self.part_cells(&name, true),
                    name,
                    part,
                    awake: now,
                    eof: false,
                    dirty: false,
                })
                .collect(),
            next: 0,
            tee,
            batch: Vec::new(),
            // A dynamic source has no position to save: it starts over on resume.
            snaps: self
                .snapshot_rows()
                .filter(|_| matches!(kind, SourceKind::Fixed(_)))
                .map(|rows| (step_id.clone(), rows)),
        };
        self.sources.push((self.step, Box::new(driver)));
        Ok(())
    }

    /// Builds this worker's partitions of an output step reading `input`.
    pub(crate) fn build_sink<T: Data>(
        &mut self,
        kind: &SinkKind<T>,
        input: StreamId,
        chan: Option<ChannelId>,
    ) -> Result<()> {
        let step_id = self.step_id.clone();
        let wrap = |e| Error::in_step(step_id.to_string(), e);
        match kind {
            SinkKind::Dynamic(sink) => {
                let part = sink
                    .build(&step_id, self.worker_index, self.worker_count)
                    .map_err(wrap)?;
                let handle = Rc::new(RefCell::new(SinkParts {
                    parts: vec![part],
                    cells: vec![self.part_cells("", false)],
                    bufs: Vec::new(),
                    gate: None,
                }));
                let h = handle.clone();
                let id = step_id.clone();
                self.consume(
                    input,
                    PushFn(move |_e, batch: &mut Vec<T>| {
                        let h = &mut *h.borrow_mut();
                        let r = timed_write(&mut h.parts[0], h.cells[0].as_mut(), batch);
                        if let Err(e) = r {
                            fail(Error::in_step(id.to_string(), e));
                        }
                    }),
                );
                self.sinks.push((self.step, handle));
            }
            SinkKind::Fixed(sink, _) => {
                let names = self.partitions()?;
                if names.is_empty() {
                    return Err(Error::in_step(
                        step_id.to_string(),
                        "the sink lists no partitions",
                    ));
                }
                if let Some(saved) = self
                    .recovery
                    .as_ref()
                    .and_then(|r| r.completed_parts(&step_id))
                {
                    let missing: Vec<&String> =
                        names.iter().filter(|n| !saved.contains(n)).collect();
                    if !missing.is_empty() {
                        return Err(Error::in_step(
                            step_id.to_string(),
                            format!(
                                "the run recorded in the recovery directory completed, so a rerun reads no input and would write nothing to {missing:?} (its output went to {saved:?}). To compute the output again, run without -r or with a new recovery directory (`waxfast recovery init`)"
                            ),
                        ));
                    }
                }
                // Each partition lives on one worker; items travel to the owner of
                // their partition.
                let visible = vec![(0..self.worker_count).collect::<Vec<_>>(); names.len()];
                let owner = assign_partitions(&visible, self.worker_count);
                let mut slot_of_part = vec![usize::MAX; names.len()];
                let mut parts = Vec::new();
                let mut cells = Vec::new();
                let mut local_names = Vec::new();
                for (p, name) in names.iter().enumerate() {
                    if owner[p] == self.worker_index {
                        slot_of_part[p] = parts.len();
                        let resume = self.resume_part(name);
                        parts.push(
                            sink.build_part(&step_id, name, resume.as_deref())
                                .map_err(wrap)?,
                        );
                        local_names.push(name.clone());
                        cells.push(self.part_cells(name, false));
                    }
                }
                let n_local = parts.len();
                let handle = Rc::new(RefCell::new(SinkParts {
                    parts,
                    cells,
                    bufs: (0..n_local).map(|_| Vec::new()).collect(),
                    gate: self.snapshot_rows().map(|rows| SinkGate {
                        step_id: step_id.clone(),
                        rows,
                        names: local_names,
                        held: EpochGate::new(self.first_epoch),
                        slot_of_part: slot_of_part.clone(),
                        part_of: {
                            let (s, n) = (sink.clone(), names.len());
                            Box::new(move |item: &T| s.part_of(item, n))
                        },
                    }),
                }));
                let n_parts = names.len();
                let h = handle.clone();
                let id = step_id.clone();
                let part_sink = sink.clone();
                let writer: Rc<RefCell<dyn Push<T>>> =
                    Rc::new(RefCell::new(PushFn(move |epoch, batch: &mut Vec<T>| {
                        let mut h = h.borrow_mut();
                        if let Some(gate) = h.gate.as_mut().filter(|g| g.held.holds(epoch)) {
                            gate.held.hold(epoch).append(batch);
                            return;
                        }
                        let h = &mut *h;
                        for item in batch.drain(..) {
                            let slot = slot_of_part[part_sink.part_of(&item, n_parts)];
                            h.bufs[slot].push(item);
                        }
                        h.write_bufs(&id);
                    })));
                let route_sink = sink.clone();
                let chan = chan.expect("a fixed-partitioned sink has an exchange channel");
                self.exchange(
                    input,
                    chan,
                    move |item: &T| owner[route_sink.part_of(item, n_parts)],
                    writer,
                );
                if handle.borrow().gate.is_some() {
                    self.add_activation(handle.clone());
                }
                self.sinks.push((self.step, handle));
            }
        }
        Ok(())
    }
}

pub(crate) use crate::error::fail;

/// Calls `write_batch`, timing it when the dataflow API is on and a timing is due.
fn timed_write<T>(
    part: &mut Box<dyn ErasedSinkPart<T>>,
    timer: Option<&mut PartTimer>,
    batch: &mut Vec<T>,
) -> Result<(), crate::error::BoxError> {
    match timer.filter(|t| t.due()) {
        Some(t) => {
            let t0 = Instant::now();
            let r = part.write_batch(batch);
            t.cells.duration.record(t0.elapsed().as_nanos() as u64);
            r
        }
        None => part.write_batch(batch),
    }
}

struct PartSlot<T> {
    /// `next_batch` durations and sizes, with the dataflow API on.
    cells: Option<PartTimer>,
    name: String,
    part: Box<dyn ErasedSourcePart<T>>,
    awake: Instant,
    eof: bool,
    /// Polled since its position was last saved.
    dirty: bool,
}

struct InputDriver<T: Data> {
    step: usize,
    parts: Vec<PartSlot<T>>,
    /// The partition to try first next time (round robin).
    next: usize,
    tee: Tee<T>,
    batch: Vec<T>,
    /// With recovery: the step id and where positions are written.
    snaps: Option<(Arc<str>, Rc<RefCell<Rows>>)>,
}

impl<T: Data> InputDriver<T> {
    fn save(&self, i: usize, epoch: Epoch) -> Result<(), crate::error::BoxError> {
        let Some((step_id, rows)) = &self.snaps else {
            return Ok(());
        };
        let slot = &self.parts[i];
        rows.borrow_mut()
            .push(
                step_id,
                kind::SOURCE,
                epoch,
                |b| b.extend_from_slice(slot.name.as_bytes()),
                |b| slot.part.snapshot(b),
            )
            .map_err(|e| format!("cannot snapshot partition {:?}: {e}", slot.name).into())
    }
}

impl<T: Data> DriveSource for InputDriver<T> {
    /// Polls one due partition (round robin), so a scheduling round carries one batch
    /// per input and the worker drains its inbound rings between batches: a worker
    /// owning many partitions does not flood its peers' rings in one burst.
    fn poll(&mut self, now: Instant, epoch: Epoch) -> Result<Polled, crate::error::BoxError> {
        let _g = StepGuard::enter(self.step);
        let n = self.parts.len();
        let Some(i) = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| !self.parts[i].eof && self.parts[i].awake <= now)
        else {
            return Ok(Polled::default());
        };
        self.next = (i + 1) % n;
        let slot = &mut self.parts[i];
        let status = match &mut slot.cells {
            None => slot.part.next_batch(&mut self.batch)?,
            Some(t) => {
                let r = if t.due() {
                    let t0 = Instant::now();
                    let r = slot.part.next_batch(&mut self.batch);
                    t.cells.duration.record(t0.elapsed().as_nanos() as u64);
                    r
                } else {
                    slot.part.next_batch(&mut self.batch)
                };
                t.cells.size.record(self.batch.len() as u64);
                r?
            }
        };
        slot.dirty = true;
        let items = self.batch.len();
        let had_items = items > 0;
        self.tee.push(epoch, &mut self.batch);
        if status == SourceStatus::Eof {
            self.parts[i].eof = true;
            // The final position, at once: the worker may finish before the next tick.
            self.save(i, epoch)?;
            let slot = &mut self.parts[i];
            slot.dirty = false;
            slot.part.close()?;
            return Ok(Polled {
                progressed: true,
                items,
            });
        }
        slot.awake = slot.part.next_awake().unwrap_or(if had_items {
            now
        } else {
            now + std::time::Duration::from_millis(1)
        });
        Ok(Polled {
            progressed: had_items,
            items,
        })
    }

    fn next_awake(&self) -> Option<Instant> {
        self.parts.iter().filter(|s| !s.eof).map(|s| s.awake).min()
    }

    fn is_eof(&self) -> bool {
        self.parts.iter().all(|s| s.eof)
    }

    fn snapshot(&mut self, epoch: Epoch) -> Result<(), crate::error::BoxError> {
        if self.snaps.is_none() {
            return Ok(());
        }
        let _g = StepGuard::enter(self.step);
        for i in 0..self.parts.len() {
            if self.parts[i].dirty {
                self.save(i, epoch)?;
                self.parts[i].dirty = false;
            }
        }
        Ok(())
    }
}

struct SinkParts<T> {
    parts: Vec<Box<dyn ErasedSinkPart<T>>>,
    /// Per partition: `write_batch` durations, with the dataflow API on.
    cells: Vec<Option<PartTimer>>,
    bufs: Vec<Vec<T>>,
    /// Fixed-partitioned sinks with recovery.
    gate: Option<SinkGate<T>>,
}

/// A fixed sink's part in recovery: its [`EpochGate`], so a partition's snapshot after
/// epoch `e` covers exactly the items of epochs <= `e`, and where its rows go.
struct SinkGate<T> {
    step_id: Arc<str>,
    rows: Rc<RefCell<Rows>>,
    /// The names of this worker's partitions.
    names: Vec<String>,
    held: EpochGate<T>,
    slot_of_part: Vec<usize>,
    #[allow(clippy::type_complexity)]
    part_of: Box<dyn Fn(&T) -> usize>,
}

impl<T> SinkParts<T> {
    fn write_bufs(&mut self, step_id: &str) {
        let parts = self.parts.iter_mut().zip(&mut self.cells);
        for ((part, timer), buf) in parts.zip(self.bufs.iter_mut()) {
            if !buf.is_empty() {
                if let Err(e) = timed_write(part, timer.as_mut(), buf) {
                    fail(Error::in_step(step_id.to_string(), e));
                }
                buf.clear();
            }
        }
    }

    /// Writes items that waited for their epoch.
    fn write_held(&mut self, items: Vec<T>) {
        let gate = self.gate.as_ref().expect("held only with a gate");
        for item in items {
            let slot = gate.slot_of_part[(gate.part_of)(&item)];
            self.bufs[slot].push(item);
        }
        let id = gate.step_id.clone();
        self.write_bufs(&id);
    }

    /// Saves every local partition's state, tagged `epoch`.
    fn save(&mut self, epoch: Epoch) {
        let gate = self.gate.as_ref().expect("saved only with a gate");
        for (part, name) in self.parts.iter_mut().zip(&gate.names) {
            if let Err(e) = part.flush() {
                fail(Error::in_step(gate.step_id.to_string(), e));
            }
            let r = gate.rows.borrow_mut().push(
                &gate.step_id,
                kind::SINK,
                epoch,
                |b| b.extend_from_slice(name.as_bytes()),
                |b| part.snapshot(b),
            );
            if let Err(e) = r {
                fail(Error::in_step(
                    gate.step_id.to_string(),
                    format!("cannot snapshot partition {name:?}: {e}"),
                ));
            }
        }
    }
}

impl<T> Activation for SinkParts<T> {
    fn on_frontier(&mut self, old: Epoch, new: Epoch) {
        self.save(old);
        loop {
            let gate = self.gate.as_mut().expect("an activation only with a gate");
            let Some((e, items)) = gate.held.release_before(new) else {
                break;
            };
            self.write_held(items);
            self.save(e);
        }
        let gate = self.gate.as_mut().expect("an activation only with a gate");
        let id = gate.step_id.clone();
        if let Some(items) = gate.held.open(new) {
            self.write_held(items);
        }
        // What the rows just written record must be durable before they are committed.
        for part in &mut self.parts {
            if let Err(e) = part.sync() {
                fail(Error::in_step(id.to_string(), e));
            }
        }
    }
}

impl<T> SinkHandle for SinkParts<T> {
    fn flush(&mut self) -> Result<(), crate::error::BoxError> {
        self.parts.iter_mut().try_for_each(|p| p.flush())
    }
    fn sync(&mut self) -> Result<(), crate::error::BoxError> {
        self.parts.iter_mut().try_for_each(|p| p.sync())
    }
    fn close(&mut self) -> Result<(), crate::error::BoxError> {
        self.parts.iter_mut().try_for_each(|p| p.close())
    }
    fn abort(&mut self) {
        self.parts.iter_mut().for_each(|p| p.abort())
    }
}
