//! Instantiating a blueprint on one worker.
//!
//! Steps are built in reverse declaration order, so every consumer of a stream is built
//! (and registered in the stream's [`Tee`]) before its producer takes the finished tee.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::dataflow::Key;
use crate::dataflow::{ChannelId, StreamId};
use crate::error::{Error, Result};
use crate::exchange::items::ItemRouter;
use crate::exchange::keyed::{KeyBatch, KeyRouter, KeyedInput};
use crate::exchange::{ChannelIo, Endpoint, Links, StepChannel};
use crate::io::SourceStatus;
use crate::io::{assign_partitions, ErasedSinkPart, ErasedSourcePart, SinkKind, SourceKind};
use crate::runtime::park::Shared;
use crate::runtime::progress::Epoch;
use crate::runtime::push::{Data, Guarded, Push, PushFn, Tee};
use crate::runtime::step_guard::StepGuard;

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
}

/// An input step's partitions on this worker.
pub(crate) trait DriveSource {
    /// Polls every partition whose time has come; true if any produced items.
    fn poll(&mut self, now: Instant, epoch: Epoch) -> Result<bool, crate::error::BoxError>;
    /// When the next partition wants polling (`None` when all are at EOF).
    fn next_awake(&self) -> Option<Instant>;
    /// True once every partition on this worker is at EOF.
    fn is_eof(&self) -> bool;
}

/// An output step's partitions on this worker.
pub(crate) trait SinkHandle {
    fn flush(&mut self) -> Result<(), crate::error::BoxError>;
    fn close(&mut self) -> Result<(), crate::error::BoxError>;
}

/// What building a step may use: the worker's identity, the streams' tees, and the
/// registries of the worker loop.
pub struct BuildCtx {
    worker_index: usize,
    worker_count: usize,
    step: usize,
    step_id: Arc<str>,
    tees: Vec<Option<Box<dyn Any>>>,
    endpoints: Vec<Option<Box<dyn Any + Send>>>,
    shared: Arc<Shared>,
    pub(crate) channels: Vec<(usize, Rc<RefCell<dyn ChannelIo>>)>,
    pub(crate) channel_by_id: Vec<Option<StepChannel>>,
    net: Option<Rc<RefCell<crate::net::io::NetPort>>>,
    pub(crate) sources: Vec<(usize, Box<dyn DriveSource>)>,
    pub(crate) activations: Vec<(usize, Rc<RefCell<dyn Activation>>)>,
    pub(crate) sinks: Vec<(usize, Rc<RefCell<dyn SinkHandle>>)>,
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
        endpoints: Vec<Box<dyn Any + Send>>,
        net: Option<Rc<RefCell<crate::net::io::NetPort>>>,
        shared: Arc<Shared>,
    ) -> Self {
        let n_channels = endpoints.len();
        BuildCtx {
            worker_index,
            worker_count,
            step: 0,
            step_id: "".into(),
            tees: (0..streams).map(|_| None).collect(),
            endpoints: endpoints.into_iter().map(Some).collect(),
            shared,
            channels: Vec::new(),
            channel_by_id: (0..n_channels).map(|_| None).collect(),
            net,
            sources: Vec::new(),
            activations: Vec::new(),
            sinks: Vec::new(),
        }
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
        };
        let slot = self.tees[stream].get_or_insert_with(|| Box::new(Tee::<T>::default()));
        slot.downcast_mut::<Tee<T>>()
            .expect("stream item type is fixed by Stream<T>")
            .add(Box::new(guarded));
    }

    /// Takes the tee of `stream` (all its consumers are built by now).
    pub(crate) fn take_tee<T: Data>(&mut self, stream: StreamId) -> Tee<T> {
        match self.tees[stream].take() {
            Some(b) => *b
                .downcast::<Tee<T>>()
                .expect("stream item type is fixed by Stream<T>"),
            None => Tee::default(),
        }
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

    fn take_endpoint<B: 'static>(&mut self, chan: ChannelId) -> Endpoint<B> {
        *self.endpoints[chan]
            .take()
            .expect("each channel is taken by exactly one step")
            .downcast::<Endpoint<B>>()
            .expect("channel batch type is fixed by its step")
    }

    /// Connects keyed stream `inp` to `target` through keyed channel `chan`: each item
    /// goes to worker `stable_hash(key) % worker_count`, with its hash.
    pub(crate) fn keyed_exchange<K: Key, V: Data>(
        &mut self,
        inp: StreamId,
        chan: ChannelId,
        target: Rc<RefCell<dyn KeyedInput<K, V>>>,
    ) {
        let ep = self.take_endpoint::<KeyBatch<K, V>>(chan);
        if self.worker_count == 1 {
            let mut local: Vec<(u64, K, V)> = Vec::new();
            self.consume(
                inp,
                PushFn(move |epoch, batch: &mut Vec<(K, V)>| {
                    local.extend(batch.drain(..).map(|(k, v)| (k.stable_hash(), k, v)));
                    target.borrow_mut().push_local(epoch, &mut local);
                    local.clear();
                }),
            );
            return;
        }
        let links =
            Links::new(self.worker_index, ep, self.shared.clone()).with_net(self.net.clone());
        let (mut router, channel) = KeyRouter::new(links, target);
        self.consume(
            inp,
            PushFn(move |epoch, batch: &mut Vec<(K, V)>| router.push(epoch, batch)),
        );
        self.channel_by_id[chan] = Some((self.step, channel.clone()));
        self.channels.push((self.step, channel));
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
        let parts: Vec<Box<dyn ErasedSourcePart<T>>> = match kind {
            SourceKind::Fixed(src) => {
                let names = src.list_parts();
                let visible = vec![(0..self.worker_count).collect::<Vec<_>>(); names.len()];
                let owners = assign_partitions(&visible, self.worker_count);
                let mut parts = Vec::new();
                for (name, owner) in names.iter().zip(owners) {
                    if owner == self.worker_index {
                        parts.push(src.build_part(&step_id, name).map_err(wrap)?);
                    }
                }
                parts
            }
            SourceKind::Dynamic(src) => {
                vec![src
                    .build(&step_id, self.worker_index, self.worker_count)
                    .map_err(wrap)?]
            }
        };
        let now = Instant::now();
        let driver = InputDriver {
            step: self.step,
            parts: parts
                .into_iter()
                .map(|part| PartSlot {
                    part,
                    awake: now,
                    eof: false,
                })
                .collect(),
            next: 0,
            tee,
            batch: Vec::new(),
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
                    bufs: Vec::new(),
                }));
                let h = handle.clone();
                let id = step_id.clone();
                self.consume(
                    input,
                    PushFn(move |_e, batch: &mut Vec<T>| {
                        if let Err(e) = h.borrow_mut().parts[0].write_batch(batch) {
                            fail(Error::in_step(id.to_string(), e));
                        }
                    }),
                );
                self.sinks.push((self.step, handle));
            }
            SinkKind::Fixed(sink, _) => {
                let names = sink.list_parts();
                if names.is_empty() {
                    return Err(Error::in_step(
                        step_id.to_string(),
                        "the sink lists no partitions",
                    ));
                }
                // Each partition lives on one worker; items travel to the owner of
                // their partition.
                let visible = vec![(0..self.worker_count).collect::<Vec<_>>(); names.len()];
                let owner = assign_partitions(&visible, self.worker_count);
                let mut slot_of_part = vec![usize::MAX; names.len()];
                let mut parts = Vec::new();
                for (p, name) in names.iter().enumerate() {
                    if owner[p] == self.worker_index {
                        slot_of_part[p] = parts.len();
                        parts.push(sink.build_part(&step_id, name).map_err(wrap)?);
                    }
                }
                let n_local = parts.len();
                let handle = Rc::new(RefCell::new(SinkParts {
                    parts,
                    bufs: (0..n_local).map(|_| Vec::new()).collect(),
                }));
                let n_parts = names.len();
                let h = handle.clone();
                let id = step_id.clone();
                let part_sink = sink.clone();
                let writer: Rc<RefCell<dyn Push<T>>> =
                    Rc::new(RefCell::new(PushFn(move |_e, batch: &mut Vec<T>| {
                        let mut h = h.borrow_mut();
                        let h = &mut *h;
                        for item in batch.drain(..) {
                            let slot = slot_of_part[part_sink.part_of(&item, n_parts)];
                            h.bufs[slot].push(item);
                        }
                        for (part, buf) in h.parts.iter_mut().zip(h.bufs.iter_mut()) {
                            if !buf.is_empty() {
                                if let Err(e) = part.write_batch(buf) {
                                    fail(Error::in_step(id.to_string(), e));
                                }
                                buf.clear();
                            }
                        }
                    })));
                let route_sink = sink.clone();
                let chan = chan.expect("a fixed-partitioned sink has an exchange channel");
                self.exchange(
                    input,
                    chan,
                    move |item: &T| owner[route_sink.part_of(item, n_parts)],
                    writer,
                );
                self.sinks.push((self.step, handle));
            }
        }
        Ok(())
    }
}

/// Ends the run with `err`: unwinds to the worker's catcher without invoking the panic
/// hook (the error is reported once, by the entry point).
pub(crate) fn fail(err: Error) -> ! {
    std::panic::resume_unwind(Box::new(err))
}

struct PartSlot<T> {
    part: Box<dyn ErasedSourcePart<T>>,
    awake: Instant,
    eof: bool,
}

struct InputDriver<T: Data> {
    step: usize,
    parts: Vec<PartSlot<T>>,
    /// The partition to try first next time (round robin).
    next: usize,
    tee: Tee<T>,
    batch: Vec<T>,
}

impl<T: Data> DriveSource for InputDriver<T> {
    /// Polls one due partition (round robin), so a scheduling round carries one batch
    /// per input and the worker drains its inbound rings between batches: a worker
    /// owning many partitions does not flood its peers' rings in one burst.
    fn poll(&mut self, now: Instant, epoch: Epoch) -> Result<bool, crate::error::BoxError> {
        let _g = StepGuard::enter(self.step);
        let n = self.parts.len();
        let Some(i) = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| !self.parts[i].eof && self.parts[i].awake <= now)
        else {
            return Ok(false);
        };
        self.next = (i + 1) % n;
        let slot = &mut self.parts[i];
        let status = slot.part.next_batch(&mut self.batch)?;
        let had_items = !self.batch.is_empty();
        self.tee.push(epoch, &mut self.batch);
        if status == SourceStatus::Eof {
            slot.eof = true;
            slot.part.close()?;
            return Ok(true);
        }
        slot.awake = slot.part.next_awake().unwrap_or(if had_items {
            now
        } else {
            now + std::time::Duration::from_millis(1)
        });
        Ok(had_items)
    }

    fn next_awake(&self) -> Option<Instant> {
        self.parts.iter().filter(|s| !s.eof).map(|s| s.awake).min()
    }

    fn is_eof(&self) -> bool {
        self.parts.iter().all(|s| s.eof)
    }
}

struct SinkParts<T> {
    parts: Vec<Box<dyn ErasedSinkPart<T>>>,
    bufs: Vec<Vec<T>>,
}

impl<T> SinkHandle for SinkParts<T> {
    fn flush(&mut self) -> Result<(), crate::error::BoxError> {
        self.parts.iter_mut().try_for_each(|p| p.flush())
    }
    fn close(&mut self) -> Result<(), crate::error::BoxError> {
        self.parts.iter_mut().try_for_each(|p| p.close())
    }
}
