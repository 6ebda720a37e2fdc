//! Moving batches between the workers of one process.
//!
//! Every exchange channel (one per keyed step, `redistribute`, or fixed-partitioned sink)
//! has, between every ordered pair of workers, a lock-free SPSC ring ([`rtrb`]) of
//! [`Msg`]s: data batches tagged with their epoch, and progress markers. A batch moves
//! through the ring by pointer. [`Links`] is one worker's set of rings of a channel and
//! [`Channel`] adds per-target staging; an [`items::ItemRouter`] routes whole items
//! (`redistribute`, sinks) into it, a [`keyed::KeyRouter`] routes keyed items by their
//! stable hash and ships keys that own heap memory as bytes in a contiguous buffer (see
//! `Key::SHIP_BYTES`).
//!
//! The rules that make it correct (see ARCHITECTURE.md, "Progress protocol"):
//! * per (sender, channel) the order is FIFO, and a sender flushes its staged items
//!   before it sends a progress marker, so every item of epoch `e` arrives before the
//!   sender's marker saying its frontier passed `e`;
//! * a sender never blocks on a full ring: the message goes to an overflow queue that is
//!   retried every round, and the worker keeps draining its own inbound rings, so a
//!   bounded all-to-all exchange cannot deadlock. Sources are not polled while any
//!   overflow queue is non-empty, which bounds memory (backpressure).

use std::sync::Arc;

use rtrb::Producer;

use crate::base::epoch::{Epoch, EOF_EPOCH, FIRST_EPOCH};
use crate::base::park::Shared;

/// Items staged per target before a batch is sent. A batch is also sent at the end of
/// every scheduling round that did not read a full input batch, so a slow stream is
/// not held back; in a round that did, it waits up to [`HOLD_ROUNDS`] rounds to grow
/// (see [`ChannelIo::flush`]).
pub(crate) const BATCH: usize = 4096;

/// Rounds a staged batch short of [`BATCH`] may wait while the worker is busy with
/// input. A message costs much the same whatever its size (a ring slot, a wake, its
/// lines' round trip between the cores), and messages of a few hundred items, one
/// round's share, cost fanout at `-w2` 6-15% of its rate (BENCHMARKS.md, "Keyed
/// engine, ninth round"); the bound keeps a rare target's records from waiting on a
/// busy worker for long.
pub(crate) const HOLD_ROUNDS: u32 = 8;

/// Encoded bytes above which a batch for another process is sent as several frames
/// (pieces of equal item counts, about half this size each, a piece split again if need
/// be): a batch is bounded by its item count, and `BATCH` records of a few tens of
/// kilobytes would pass [`MAX_FRAME`].
const SPLIT_FRAME: usize = 8 << 20;

/// Messages a worker takes from one ring per round, so a busy channel cannot starve
/// the rest of the worker.
const DRAIN_BUDGET: usize = 32;

pub(crate) mod codec;
pub(crate) mod combine;
pub(crate) mod items;
pub(crate) mod keyed;

use crate::base::frame::{
    finish_frame, start_frame, FrameHeader, FrameKind, HEADER_LEN, MAX_FRAME,
};
use crate::base::queue::Outbox;
use crate::transport::threads::{Endpoint, Msg, RING_CAPACITY};
use crate::transport::Remote;
use codec::Codec;
use std::cell::RefCell;
use std::rc::Rc;

/// The worker loop's view of one channel on one worker.
pub(crate) trait ChannelIo {
    /// Delivers up to a budget of inbound messages to the step; true if any came.
    fn drain(&mut self) -> bool;
    /// Sends staged items and retries overflow; true if anything moved. With `hold`
    /// (the round read a full batch of input, so more is coming at once) a staged
    /// batch short of [`BATCH`] stays until it fills or has waited [`HOLD_ROUNDS`]
    /// rounds; without it, everything staged goes.
    fn flush(&mut self, hold: bool) -> bool;
    /// The local upstream frontier is now `f`: flush, then tell every peer.
    fn advance_local(&mut self, f: Epoch);
    /// The minimum over remote senders of the last frontier they announced.
    fn remote_frontier(&self) -> Epoch;
    /// True while messages wait in overflow queues (the run cannot end yet).
    fn has_overflow(&self) -> bool;
    /// True when overflow is long enough that the worker must stop reading input.
    fn is_backlogged(&self) -> bool;
    /// True if a ring from a peer holds a message (checked before parking).
    fn has_inbound(&self) -> bool;
    /// A frame from a worker in another process: a batch to decode (it waits for
    /// [`deliver_received`](Self::deliver_received); true) or progress (false). It runs
    /// while the port is borrowed (the payload may lie in its ring), so it runs no step.
    fn recv_frame(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<bool, String>;
    /// Hands the batch the last `recv_frame` decoded to the step.
    fn deliver_received(&mut self);
    /// Messages waiting in this worker's inbound rings, and in its overflow queues.
    fn backlog(&self) -> (usize, usize);
}

/// A channel as the worker loop holds it, with the index of the step it belongs to.
pub(crate) type StepChannel = (usize, Rc<RefCell<dyn ChannelIo>>);

/// One worker's rings of one channel, with the overflow queues and progress state that
/// every kind of exchange shares. Workers are named by global index; those of this
/// process are reached through rings (indexed by `global - base`), the others through
/// the network port, as encoded frames.
pub(crate) struct Links<B> {
    /// Our global index.
    me: usize,
    ep: Endpoint<B>,
    shared: Arc<Shared>,
    /// The rings to the other workers of this process, each behind its overflow queue;
    /// indexed by local worker (`None` for this one).
    outs: Vec<Option<Outbox<Producer<Msg<B>>>>>,
    sent_frontier: Epoch,
    /// Indexed by global worker.
    recv_frontier: Vec<Epoch>,
    net: Option<NetLink<B>>,
}

/// A channel's way to workers of other processes.
struct NetLink<B> {
    port: Rc<RefCell<Remote>>,
    codec: Codec<B>,
    /// Batches whose contents were encoded, ready for reuse.
    spare: Vec<B>,
}

impl<B: Batch> Links<B> {
    pub(crate) fn new(me: usize, mut ep: Endpoint<B>, shared: Arc<Shared>) -> Self {
        let outs = std::mem::take(&mut ep.outs)
            .into_iter()
            .map(|p| p.map(Outbox::new))
            .collect();
        let mut recv_frontier = vec![FIRST_EPOCH; ep.total];
        recv_frontier[me] = EOF_EPOCH; // the local share does not travel through a ring
        Links {
            me,
            ep,
            shared,
            outs,
            sent_frontier: FIRST_EPOCH,
            recv_frontier,
            net: None,
        }
    }

    /// Connects the links to workers of other processes through `port`.
    pub(crate) fn with_net(mut self, port: Option<Rc<RefCell<Remote>>>) -> Self {
        if let Some(port) = port {
            let codec = self
                .ep
                .codec
                .expect("channels of a cluster run have a codec");
            self.net = Some(NetLink {
                port,
                codec,
                spare: Vec::new(),
            });
        }
        self
    }

    /// The number of workers in the cluster.
    pub(crate) fn workers(&self) -> usize {
        self.ep.total
    }

    /// The local index of global worker `to`, if it is in this process.
    #[inline]
    fn local(&self, to: usize) -> Option<usize> {
        to.checked_sub(self.ep.base)
            .filter(|&l| l < self.outs.len())
    }

    /// Sends to a peer without blocking: a full ring queues the message in overflow.
    /// Progress markers only ever advance, so a newer one replaces a marker still
    /// waiting at the end of the queue: overflow holds at most one marker per peer.
    pub(crate) fn send(&mut self, to: usize, msg: Msg<B>) {
        let Some(to) = self.local(to) else {
            return self.send_remote(to, msg);
        };
        let out = self.outs[to].as_mut().expect("a ring to every peer");
        if let (Msg::Progress(_), Some(last @ Msg::Progress(_))) = (&msg, out.last_queued_mut()) {
            *last = msg;
            return;
        }
        if out.send(msg) {
            self.shared.wake(to);
        }
    }

    /// Moves overflow into rings that have room; true if anything moved.
    pub(crate) fn retry_overflow(&mut self) -> bool {
        let mut moved = false;
        for (to, out) in self.outs.iter_mut().enumerate() {
            if let Some(out) = out.as_mut().filter(|o| o.queued() > 0) {
                if out.retry() {
                    self.shared.wake(to);
                    moved = true;
                }
            }
        }
        moved
    }

    /// Encodes a message for worker `to` of another process and queues the frame.
    fn send_remote(&mut self, to: usize, msg: Msg<B>) {
        let channel = self.ep.channel;
        let me = self.me;
        let net = self
            .net
            .as_mut()
            .expect("a worker outside this process implies a network port");
        let mut port = net.port.borrow_mut();
        match msg {
            Msg::Progress(f) => port.send_progress(channel, me, to, f),
            Msg::Data(epoch, batch) => {
                if let Some(d) = net.codec.direct {
                    let len = (d.len)(&batch);
                    if let Some(big) = len.filter(|&l| l > SPLIT_FRAME && batch.len() > 1) {
                        drop(port);
                        return self.send_pieces(to, epoch, batch, big);
                    }
                    if let Some(len) = len.filter(|&l| l <= MAX_FRAME) {
                        let header = FrameHeader::new(
                            FrameKind::Data,
                            channel,
                            me as u32,
                            to as u32,
                            epoch,
                            len as u32,
                        );
                        if port.send_in_place(to, header, |out| (d.write)(&batch, out)) {
                            if net.spare.len() < 16 {
                                net.spare.push(batch);
                            }
                            return;
                        }
                    }
                }
                let mut frame = port.buffer();
                start_frame(
                    &mut frame,
                    FrameKind::Data,
                    channel,
                    me as u32,
                    to as u32,
                    epoch,
                );
                let encoded = (net.codec.encode)(&batch, &mut frame);
                let bytes = frame.len() - HEADER_LEN;
                if encoded.is_ok() && bytes > SPLIT_FRAME && batch.len() > 1 {
                    // The pieces' frames reuse this one's buffer.
                    port.recycle(frame);
                    drop(port);
                    return self.send_pieces(to, epoch, batch, bytes);
                }
                let encoded =
                    encoded.and_then(|()| finish_frame(&mut frame).map_err(|e| e.to_string()));
                if let Err(e) = encoded {
                    crate::error::fail(crate::error::Error::Cluster(format!(
                        "cannot encode a batch of channel {channel} for worker {to}: {e}"
                    )));
                }
                port.send(to, frame);
                if net.spare.len() < 16 {
                    net.spare.push(batch);
                }
            }
        }
    }

    /// Sends a batch that encodes to `bytes`, more than [`SPLIT_FRAME`], as pieces of
    /// equal item counts, in order, sized from `bytes` to about half of `SPLIT_FRAME`
    /// each: each piece is encoded once, and one whose records are bigger than the
    /// batch's average is split again, so no frame nears [`MAX_FRAME`] however many big
    /// records a batch holds.
    fn send_pieces(&mut self, to: usize, epoch: Epoch, mut batch: B, bytes: usize) {
        let pieces = piece_count(bytes, batch.len());
        tracing::debug!(
            channel = self.ep.channel,
            to,
            items = batch.len(),
            bytes,
            pieces,
            "batch sent as several frames"
        );
        // Split off from the back (each split moves only its piece), send from the front.
        let mut tails = Vec::with_capacity(pieces - 1);
        for i in (1..pieces).rev() {
            tails.push(batch.split_off(batch.len() * i / (i + 1)));
        }
        self.send_remote(to, Msg::Data(epoch, batch));
        for piece in tails.into_iter().rev() {
            self.send_remote(to, Msg::Data(epoch, piece));
        }
    }

    /// Tells every peer our frontier advanced to `f` (the caller flushed its staged
    /// batches first). False if it had not advanced.
    pub(crate) fn send_progress(&mut self, f: Epoch) -> bool {
        if f <= self.sent_frontier {
            return false;
        }
        for to in 0..self.ep.total {
            if to != self.me {
                self.send(to, Msg::Progress(f));
            }
        }
        self.sent_frontier = f;
        true
    }

    /// An emptied batch that peer `to` handed back, if any.
    pub(crate) fn reusable(&mut self, to: usize) -> Option<B> {
        match self.local(to) {
            Some(l) => self.ep.reuse[l].as_mut()?.pop().ok(),
            None => self.net.as_mut()?.spare.pop(),
        }
    }

    /// Takes up to a budget of messages from every inbound ring, handing batches to
    /// `on_data` (which must leave them empty) and then back to their sender; true if
    /// anything came.
    pub(crate) fn drain(&mut self, mut on_data: impl FnMut(Epoch, &mut B)) -> bool {
        let mut got = false;
        for from in 0..self.ep.ins.len() {
            let Some(ring) = self.ep.ins[from].as_mut() else {
                continue;
            };
            let mut took = false;
            for _ in 0..DRAIN_BUDGET {
                match ring.pop() {
                    Ok(Msg::Data(epoch, mut batch)) => {
                        took = true;
                        on_data(epoch, &mut batch);
                        if let Some(back) = self.ep.give_back[from].as_mut() {
                            // A full return ring just means the sender allocates.
                            let _ = back.push(batch);
                        }
                    }
                    Ok(Msg::Progress(f)) => {
                        took = true;
                        self.recv_frontier[self.ep.base + from] = f;
                    }
                    Err(_) => break,
                }
            }
            if took {
                // The sender may be parked waiting for room in this ring.
                self.shared.wake(from);
                got = true;
            }
        }
        got
    }

    pub(crate) fn remote_frontier(&self) -> Epoch {
        self.recv_frontier
            .iter()
            .copied()
            .min()
            .unwrap_or(EOF_EPOCH)
    }

    pub(crate) fn has_overflow(&self) -> bool {
        self.outs.iter().flatten().any(|o| o.queued() > 0)
    }

    /// True when some peer's overflow holds a full ring's worth of messages: the worker
    /// stops reading input until it drains. A shorter queue is a transient imbalance,
    /// and stalling input for it would make the workers take turns.
    pub(crate) fn is_backlogged(&self) -> bool {
        self.outs
            .iter()
            .flatten()
            .any(|o| o.queued() >= RING_CAPACITY)
    }

    pub(crate) fn has_inbound(&self) -> bool {
        self.ep.ins.iter().flatten().any(|c| !c.is_empty())
    }

    /// Messages waiting in inbound rings, and in overflow queues.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        let rings = self.ep.ins.iter().flatten().map(|c| c.slots()).sum();
        (rings, self.outs.iter().flatten().map(|o| o.queued()).sum())
    }
}

/// A batch type that can be staged per target worker.
pub(crate) trait Batch: Send + 'static {
    /// An empty batch, sized for a full [`BATCH`].
    fn fresh() -> Self;
    fn len(&self) -> usize;
    /// Empties the batch, keeping its allocations.
    fn clear(&mut self);
    /// Moves the items from index `at` on (in order) into a batch of their own.
    fn split_off(&mut self, at: usize) -> Self;
}

impl<T: Send + 'static> Batch for Vec<T> {
    fn fresh() -> Self {
        Vec::with_capacity(BATCH)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn clear(&mut self) {
        Vec::clear(self)
    }
    fn split_off(&mut self, at: usize) -> Self {
        Vec::split_off(self, at)
    }
}

/// A per-target staging buffer of one epoch.
#[derive(Debug)]
struct Staged<B> {
    batch: B,
    epoch: Epoch,
    /// Rounds the batch has been held by [`ChannelIo::flush`] since it was last sent.
    held: u32,
}

/// One worker's side of a channel: its rings, its staged outbound batches, and where
/// inbound batches go. Routers ([`items::ItemRouter`], [`keyed::KeyRouter`]) stage into
/// it; the worker loop drives it through [`ChannelIo`].
pub(crate) struct Channel<B> {
    links: Links<B>,
    staged: Vec<Staged<B>>,
    deliver: Deliver<B>,
    /// A batch from another process, decoded and not yet delivered.
    received: Option<(Epoch, B)>,
}

/// Where a channel's inbound batches go; it must leave each batch empty.
pub(crate) type Deliver<B> = Box<dyn FnMut(Epoch, &mut B)>;

impl<B: Batch> Channel<B> {
    pub(crate) fn new(links: Links<B>, deliver: Deliver<B>) -> Self {
        let staged = (0..links.workers())
            .map(|_| Staged {
                batch: B::fresh(),
                epoch: FIRST_EPOCH,
                held: 0,
            })
            .collect();
        Channel {
            links,
            staged,
            deliver,
            received: None,
        }
    }

    pub(crate) fn me(&self) -> usize {
        self.links.me
    }

    pub(crate) fn workers(&self) -> usize {
        self.links.workers()
    }

    /// Opens every peer's staged batch at `epoch` (sending what was staged at another
    /// epoch first), once per inbound batch: a router then reaches a peer's batch with
    /// [`opened`](Self::opened), with no epoch check per item.
    #[inline]
    pub(crate) fn open(&mut self, epoch: Epoch) {
        for to in 0..self.staged.len() {
            if self.staged[to].epoch != epoch {
                self.send_staged(to);
                self.staged[to].epoch = epoch;
            }
        }
    }

    /// The batch staged for worker `to`, opened by [`open`](Self::open) at the epoch
    /// being routed. Call [`staged`](Self::staged) after adding to it.
    #[inline]
    pub(crate) fn opened(&mut self, to: usize) -> &mut B {
        &mut self.staged[to].batch
    }

    /// Sends worker `to`'s batch if it is full.
    #[inline]
    pub(crate) fn staged(&mut self, to: usize) {
        if self.staged[to].batch.len() >= BATCH {
            self.send_staged(to);
        }
    }

    fn send_staged(&mut self, to: usize) {
        if self.staged[to].batch.len() == 0 {
            return;
        }
        let next = match self.links.reusable(to) {
            Some(mut b) => {
                b.clear();
                b
            }
            None => B::fresh(),
        };
        let batch = std::mem::replace(&mut self.staged[to].batch, next);
        self.staged[to].held = 0;
        let epoch = self.staged[to].epoch;
        self.links.send(to, Msg::Data(epoch, batch));
    }
}

impl<B: Batch> ChannelIo for Channel<B> {
    fn drain(&mut self) -> bool {
        let deliver = &mut self.deliver;
        self.links.drain(|epoch, batch| {
            deliver(epoch, batch);
            batch.clear();
        })
    }

    fn flush(&mut self, hold: bool) -> bool {
        let mut moved = self.links.retry_overflow();
        for to in 0..self.staged.len() {
            let staged = &mut self.staged[to];
            if staged.batch.len() == 0 {
                continue;
            }
            if hold && staged.batch.len() < BATCH && staged.held < HOLD_ROUNDS {
                staged.held += 1;
                continue;
            }
            self.send_staged(to);
            moved = true;
        }
        moved
    }

    fn advance_local(&mut self, f: Epoch) {
        if f > self.links.sent_frontier {
            for to in 0..self.staged.len() {
                self.send_staged(to);
            }
            self.links.send_progress(f);
        }
    }

    fn remote_frontier(&self) -> Epoch {
        self.links.remote_frontier()
    }

    fn has_overflow(&self) -> bool {
        self.links.has_overflow()
    }

    fn is_backlogged(&self) -> bool {
        self.links.is_backlogged()
    }

    fn has_inbound(&self) -> bool {
        self.links.has_inbound()
    }

    fn backlog(&self) -> (usize, usize) {
        self.links.backlog()
    }

    fn recv_frame(&mut self, h: &FrameHeader, payload: &[u8]) -> Result<bool, String> {
        let from = h.from.get() as usize;
        match h.kind().map_err(|e| e.to_string())? {
            FrameKind::Data => {
                let net = self.links.net.as_mut().ok_or("no network port")?;
                let mut batch = net.spare.pop().unwrap_or_else(B::fresh);
                batch.clear();
                let decoded = (net.codec.decode)(payload, &mut batch);
                self.received = Some((h.epoch.get(), batch));
                decoded?;
                return Ok(true);
            }
            FrameKind::Progress | FrameKind::Eof => {
                let f = h.epoch.get();
                let slot = self
                    .links
                    .recv_frontier
                    .get_mut(from)
                    .ok_or_else(|| format!("no worker {from}"))?;
                *slot = (*slot).max(f);
            }
            FrameKind::Shutdown | FrameKind::Abort | FrameKind::Heartbeat => {
                return Err("a process-level frame reached a channel".into())
            }
        }
        Ok(false)
    }

    fn deliver_received(&mut self) {
        let Some((epoch, mut batch)) = self.received.take() else {
            return;
        };
        (self.deliver)(epoch, &mut batch);
        batch.clear();
        if let Some(net) = self.links.net.as_mut() {
            if net.spare.len() < 16 {
                net.spare.push(batch);
            }
        }
    }
}

/// The pieces a batch of `items` (at least two) that encodes to `bytes` (over
/// [`SPLIT_FRAME`]) is sent as: at most half of `SPLIT_FRAME` each if its records are of
/// one size, and at most one per item.
fn piece_count(bytes: usize, items: usize) -> usize {
    debug_assert!(items >= 2 && bytes > SPLIT_FRAME);
    bytes.div_ceil(SPLIT_FRAME / 2).min(items)
}

/// Routes a key to its worker: `stable_hash(key) % workers` (ARCHITECTURE.md, "Keys").
/// For a power-of-two count that is the low bits, taken with a mask instead of a 64-bit
/// division per record and keyed step (the same result, so the same routing).
#[inline]
pub(crate) fn worker_of(hash: u64, workers: usize) -> usize {
    let n = workers as u64;
    if n.is_power_of_two() {
        (hash & (n - 1)) as usize
    } else {
        (hash % n) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_batch_goes_as_pieces_of_about_half_the_split_size() {
        let half = SPLIT_FRAME / 2;
        // Just over the split size: three pieces, each under half of it.
        assert_eq!(piece_count(SPLIT_FRAME + 1, 4096), 3);
        assert!((SPLIT_FRAME + 1) / 3 < half);
        // 100 MiB: 25 pieces of 4 MiB, not log2 rounds of halving.
        assert_eq!(piece_count(100 << 20, 4096), 25);
        // Never more pieces than items.
        assert_eq!(piece_count(100 << 20, 3), 3);
        assert_eq!(piece_count(100 << 20, 2), 2);
    }
}
