//! The threads transport: the workers of one process exchange batches through rtrb
//! rings, by pointer, allocated per channel id when a worker first asks for its end of
//! a channel (in the spirit of timely's `Allocate`). The blueprint (`dataflow`) keeps
//! only channel ids and each channel's codec; which rings exist is decided here.

use std::any::Any;
use std::sync::{Arc, Mutex};

use rtrb::{Consumer, Producer, RingBuffer};

use crate::base::codec::Codec;
use crate::base::epoch::Epoch;

/// Messages per ring. With a full batch per message this bounds what one sender can
/// have in flight to one receiver on one channel.
pub(crate) const RING_CAPACITY: usize = 64;

/// What travels through a ring: batches of type `B`, and progress.
#[derive(Debug)]
pub(crate) enum Msg<B> {
    /// A batch produced at an epoch.
    Data(Epoch, B),
    /// The sender's frontier on this channel advanced: it will send nothing below it.
    Progress(Epoch),
}

/// One worker's ends of one channel's rings, indexed by local peer worker (`None` for
/// itself); workers of other processes are reached through the network (see `Links`).
/// Beside each data ring runs a return ring: the receiver hands every emptied batch back
/// to its sender, which refills it instead of allocating, so the same warm buffers
/// circulate and no batch is allocated on one thread and freed on another.
#[derive(Debug)]
pub(crate) struct Endpoint<B> {
    pub(crate) outs: Vec<Option<Producer<Msg<B>>>>,
    pub(crate) ins: Vec<Option<Consumer<Msg<B>>>>,
    /// Emptied batches back to the peer that sent them.
    pub(crate) give_back: Vec<Option<Producer<B>>>,
    /// Our own batches, emptied by the peer we sent them to.
    pub(crate) reuse: Vec<Option<Consumer<B>>>,
    /// Global index of this process's first worker, and the cluster's worker count.
    pub(crate) base: usize,
    pub(crate) total: usize,
    /// The channel's index in the flow (frames name it).
    pub(crate) channel: u32,
    /// How a batch crosses a process boundary (absent only in unit tests).
    pub(crate) codec: Option<Codec<B>>,
}

/// Makes the rings of one channel for `workers` workers of a one-process run.
#[cfg(test)]
pub(crate) fn mesh<B: Send>(workers: usize, capacity: usize) -> Vec<Endpoint<B>> {
    mesh_in(workers, 0, workers, capacity, 0, None)
}

/// Makes the rings of channel `channel` for the `workers` workers of one process, whose
/// first worker has global index `base` in a cluster of `total`: one endpoint per worker.
pub(crate) fn mesh_in<B: Send>(
    workers: usize,
    base: usize,
    total: usize,
    capacity: usize,
    channel: u32,
    codec: Option<Codec<B>>,
) -> Vec<Endpoint<B>> {
    let mut eps: Vec<Endpoint<B>> = (0..workers)
        .map(|_| Endpoint {
            outs: (0..workers).map(|_| None).collect(),
            ins: (0..workers).map(|_| None).collect(),
            give_back: (0..workers).map(|_| None).collect(),
            reuse: (0..workers).map(|_| None).collect(),
            base,
            total,
            channel,
            codec,
        })
        .collect();
    for s in 0..workers {
        for r in 0..workers {
            if s != r {
                let (p, c) = RingBuffer::new(capacity);
                eps[s].outs[r] = Some(p);
                eps[r].ins[s] = Some(c);
                let (p, c) = RingBuffer::new(capacity);
                eps[r].give_back[s] = Some(p);
                eps[s].reuse[r] = Some(c);
            }
        }
    }
    eps
}

/// A worker's end of a channel, its batch type erased.
type ErasedEnd = Box<dyn Any + Send>;

/// Every channel's rings among the workers of one process, made when the first worker
/// asks for its end of a channel; shared by the process's workers.
pub(crate) struct Allocator {
    workers: usize,
    base: usize,
    total: usize,
    /// Each channel's codec, type-erased (`Codec<B>` for the channel's batch type).
    codecs: Vec<Arc<dyn Any + Send + Sync>>,
    /// Each channel's endpoints not yet taken, by local worker (`None` until a worker
    /// first asks for the channel).
    made: Mutex<Vec<Option<Vec<Option<ErasedEnd>>>>>,
}

impl std::fmt::Debug for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocator")
            .field("workers", &self.workers)
            .field("channels", &self.codecs.len())
            .finish()
    }
}

impl Allocator {
    /// The rings of channels with these codecs (indexed by channel id) among
    /// `workers` workers of a process whose first worker is global `base`, of `total`.
    pub(crate) fn new(
        codecs: Vec<Arc<dyn Any + Send + Sync>>,
        workers: usize,
        base: usize,
        total: usize,
    ) -> Self {
        let made = Mutex::new((0..codecs.len()).map(|_| None).collect());
        Allocator {
            workers,
            base,
            total,
            codecs,
            made,
        }
    }

    /// How many channels the flow has.
    pub(crate) fn channels(&self) -> usize {
        self.codecs.len()
    }

    /// Local worker `local`'s end of channel `chan`, whose batches are `B`.
    ///
    /// # Panics
    ///
    /// If the channel's batch type is not `B`, or the worker already took its end:
    /// both are bugs of the step that declared the channel.
    pub(crate) fn endpoint<B: Send + 'static>(&self, chan: usize, local: usize) -> Endpoint<B> {
        let codec = *self.codecs[chan]
            .downcast_ref::<Codec<B>>()
            .expect("a channel's batch type is fixed by its step");
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        let ends = made[chan].get_or_insert_with(|| {
            mesh_in::<B>(
                self.workers,
                self.base,
                self.total,
                RING_CAPACITY,
                chan as u32,
                Some(codec),
            )
            .into_iter()
            .map(|ep| Some(Box::new(ep) as ErasedEnd))
            .collect()
        });
        *ends[local]
            .take()
            .expect("each worker takes its end of a channel once")
            .downcast::<Endpoint<B>>()
            .expect("a channel's batch type is fixed by its step")
    }
}
