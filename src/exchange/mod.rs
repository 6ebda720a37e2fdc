//! Moving batches between the workers of one process.
//!
//! Every exchange channel (one per keyed step, `redistribute`, or fixed-partitioned sink)
//! has, between every ordered pair of workers, a lock-free SPSC ring ([`rtrb`]) of
//! [`Msg`]s: data batches tagged with their epoch, and progress markers. A batch is a
//! `Vec<T>` moved through the ring by pointer, so records are never copied or
//! serialised between threads.
//!
//! The rules that make it correct (see ARCHITECTURE.md, "Progress protocol"):
//! * per (sender, channel) the order is FIFO, and a sender flushes its staged items
//!   before it sends a progress marker, so every item of epoch `e` arrives before the
//!   sender's marker saying its frontier passed `e`;
//! * a sender never blocks on a full ring: the message goes to an overflow queue that is
//!   retried every round, and the worker keeps draining its own inbound rings, so a
//!   bounded all-to-all exchange cannot deadlock. Sources are not polled while any
//!   overflow queue is non-empty, which bounds memory (backpressure).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use rtrb::{Consumer, Producer, PushError, RingBuffer};

use crate::runtime::park::Shared;
use crate::runtime::progress::{Epoch, EOF_EPOCH, FIRST_EPOCH};
use crate::runtime::push::{Data, Push};

/// Messages per ring. With [`BATCH`] items per message this bounds what one sender can
/// have in flight to one receiver on one channel.
pub(crate) const RING_CAPACITY: usize = 64;

/// Items staged per target before a batch is sent (a batch is also sent at the end of
/// every scheduling round, so a slow stream is not held back).
pub(crate) const BATCH: usize = 1024;

/// Messages a worker takes from one ring per round, so a busy channel cannot starve
/// the rest of the worker.
const DRAIN_BUDGET: usize = 32;

/// What travels through a ring.
#[derive(Debug)]
pub(crate) enum Msg<T> {
    /// Items produced at an epoch.
    Data(Epoch, Vec<T>),
    /// The sender's frontier on this channel advanced: it will send nothing below it.
    Progress(Epoch),
}

/// One worker's ends of one channel's rings, indexed by peer worker (`None` for itself).
#[derive(Debug)]
pub(crate) struct Endpoint<T> {
    outs: Vec<Option<Producer<Msg<T>>>>,
    ins: Vec<Option<Consumer<Msg<T>>>>,
}

/// Makes the rings of one channel for `workers` workers: one endpoint per worker.
pub(crate) fn mesh<T: Send>(workers: usize, capacity: usize) -> Vec<Endpoint<T>> {
    let mut eps: Vec<Endpoint<T>> = (0..workers)
        .map(|_| Endpoint {
            outs: (0..workers).map(|_| None).collect(),
            ins: (0..workers).map(|_| None).collect(),
        })
        .collect();
    for s in 0..workers {
        for r in 0..workers {
            if s != r {
                let (p, c) = RingBuffer::new(capacity);
                eps[s].outs[r] = Some(p);
                eps[r].ins[s] = Some(c);
            }
        }
    }
    eps
}

/// The worker loop's view of one channel on one worker.
pub(crate) trait ChannelIo {
    /// Delivers up to a budget of inbound messages to the step; true if any came.
    fn drain(&mut self) -> bool;
    /// Sends staged items and retries overflow; true if anything moved.
    fn flush(&mut self) -> bool;
    /// The local upstream frontier is now `f`: flush, then tell every peer.
    fn advance_local(&mut self, f: Epoch);
    /// The minimum over remote senders of the last frontier they announced.
    fn remote_frontier(&self) -> Epoch;
    /// True while messages wait in overflow queues (the worker applies backpressure).
    fn has_overflow(&self) -> bool;
    /// True if a ring from a peer holds a message (checked before parking).
    fn has_inbound(&self) -> bool;
}

/// One worker's side of an exchange channel: routes items it is pushed, and receives
/// what peers route to it; both go to `target`.
pub(crate) struct Exchange<T, R> {
    me: usize,
    ep: Endpoint<T>,
    route: R,
    target: Rc<RefCell<dyn Push<T>>>,
    shared: Arc<Shared>,
    staged: Vec<Vec<T>>,
    staged_epoch: Vec<Epoch>,
    overflow: Vec<VecDeque<Msg<T>>>,
    local: Vec<T>,
    sent_frontier: Epoch,
    recv_frontier: Vec<Epoch>,
}

impl<T: Data, R: FnMut(&T) -> usize> Exchange<T, R> {
    pub(crate) fn new(
        me: usize,
        ep: Endpoint<T>,
        route: R,
        target: Rc<RefCell<dyn Push<T>>>,
        shared: Arc<Shared>,
    ) -> Self {
        let n = ep.outs.len();
        let mut recv_frontier = vec![FIRST_EPOCH; n];
        recv_frontier[me] = EOF_EPOCH; // the local share is not a ring
        Exchange {
            me,
            ep,
            route,
            target,
            shared,
            staged: (0..n).map(|_| Vec::new()).collect(),
            staged_epoch: vec![FIRST_EPOCH; n],
            overflow: (0..n).map(|_| VecDeque::new()).collect(),
            local: Vec::new(),
            sent_frontier: FIRST_EPOCH,
            recv_frontier,
        }
    }

    fn send(&mut self, to: usize, msg: Msg<T>) {
        let q = &mut self.overflow[to];
        if q.is_empty() {
            let ring = self.ep.outs[to].as_mut().expect("a ring to every peer");
            match ring.push(msg) {
                Ok(()) => self.shared.wake(to),
                Err(PushError::Full(m)) => q.push_back(m),
            }
        } else {
            q.push_back(msg);
        }
    }

    fn flush_target(&mut self, to: usize) {
        if self.staged[to].is_empty() {
            return;
        }
        let items = std::mem::replace(&mut self.staged[to], Vec::with_capacity(BATCH));
        let epoch = self.staged_epoch[to];
        self.send(to, Msg::Data(epoch, items));
    }

    fn retry_overflow(&mut self) -> bool {
        let mut moved = false;
        for to in 0..self.overflow.len() {
            let mut pushed = false;
            while let Some(m) = self.overflow[to].pop_front() {
                let ring = self.ep.outs[to].as_mut().expect("a ring to every peer");
                match ring.push(m) {
                    Ok(()) => pushed = true,
                    Err(PushError::Full(m)) => {
                        self.overflow[to].push_front(m);
                        break;
                    }
                }
            }
            if pushed {
                self.shared.wake(to);
                moved = true;
            }
        }
        moved
    }
}

impl<T: Data, R: FnMut(&T) -> usize> Push<T> for Exchange<T, R> {
    fn push(&mut self, epoch: Epoch, batch: &mut Vec<T>) {
        for item in batch.drain(..) {
            let to = (self.route)(&item);
            if to == self.me {
                self.local.push(item);
            } else {
                if self.staged_epoch[to] != epoch && !self.staged[to].is_empty() {
                    self.flush_target(to);
                }
                self.staged_epoch[to] = epoch;
                self.staged[to].push(item);
                if self.staged[to].len() >= BATCH {
                    self.flush_target(to);
                }
            }
        }
        if !self.local.is_empty() {
            self.target.borrow_mut().push(epoch, &mut self.local);
            self.local.clear();
        }
    }
}

impl<T: Data, R: FnMut(&T) -> usize> ChannelIo for Exchange<T, R> {
    fn drain(&mut self) -> bool {
        let mut got = false;
        for from in 0..self.ep.ins.len() {
            let Some(ring) = self.ep.ins[from].as_mut() else {
                continue;
            };
            for _ in 0..DRAIN_BUDGET {
                match ring.pop() {
                    Ok(Msg::Data(epoch, mut items)) => {
                        got = true;
                        self.target.borrow_mut().push(epoch, &mut items);
                    }
                    Ok(Msg::Progress(f)) => {
                        got = true;
                        self.recv_frontier[from] = f;
                    }
                    Err(_) => break,
                }
            }
        }
        got
    }

    fn flush(&mut self) -> bool {
        let mut moved = self.retry_overflow();
        for to in 0..self.staged.len() {
            if !self.staged[to].is_empty() {
                self.flush_target(to);
                moved = true;
            }
        }
        moved
    }

    fn advance_local(&mut self, f: Epoch) {
        if f <= self.sent_frontier {
            return;
        }
        for to in 0..self.staged.len() {
            self.flush_target(to);
        }
        for to in 0..self.ep.outs.len() {
            if to != self.me {
                self.send(to, Msg::Progress(f));
            }
        }
        self.sent_frontier = f;
    }

    fn remote_frontier(&self) -> Epoch {
        self.recv_frontier
            .iter()
            .copied()
            .min()
            .unwrap_or(EOF_EPOCH)
    }

    fn has_overflow(&self) -> bool {
        self.overflow.iter().any(|q| !q.is_empty())
    }

    fn has_inbound(&self) -> bool {
        self.ep.ins.iter().flatten().any(|c| !c.is_empty())
    }
}

/// Routes a key to its worker: `stable_hash(key) % workers` (ARCHITECTURE.md, "Keys").
#[inline]
pub(crate) fn worker_of(hash: u64, workers: usize) -> usize {
    (hash % workers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::push::PushFn;

    type Got = Rc<RefCell<Vec<(Epoch, Vec<u64>)>>>;

    fn sink() -> (Got, Rc<RefCell<dyn Push<u64>>>) {
        let got: Got = Rc::default();
        let g = got.clone();
        let p: Rc<RefCell<dyn Push<u64>>> =
            Rc::new(RefCell::new(PushFn(move |e, b: &mut Vec<u64>| {
                g.borrow_mut().push((e, std::mem::take(b)))
            })));
        (got, p)
    }

    #[test]
    fn routes_stages_and_keeps_data_before_progress() {
        let shared = Arc::new(Shared::new(2));
        let mut eps = mesh::<u64>(2, 4);
        let ep1 = eps.pop().unwrap();
        let ep0 = eps.pop().unwrap();
        let (got0, t0) = sink();
        let (got1, t1) = sink();
        let mut w0 = Exchange::new(0, ep0, |x: &u64| (*x % 2) as usize, t0, shared.clone());
        let mut w1 = Exchange::new(1, ep1, |x: &u64| (*x % 2) as usize, t1, shared);
        let mut batch: Vec<u64> = (0..10).collect();
        w0.push(1, &mut batch);
        // Evens stayed local at once; odds are staged until a flush or marker.
        assert_eq!(got0.borrow().concat_items(), vec![0, 2, 4, 6, 8]);
        assert!(!w1.drain());
        w0.advance_local(3);
        assert!(w1.drain());
        assert_eq!(got1.borrow().concat_items(), vec![1, 3, 5, 7, 9]);
        assert_eq!(got1.borrow()[0].0, 1, "items keep their epoch");
        assert_eq!(w1.remote_frontier(), 3);
        w0.advance_local(EOF_EPOCH);
        w1.drain();
        assert_eq!(w1.remote_frontier(), EOF_EPOCH);
    }

    #[test]
    fn full_ring_overflows_instead_of_blocking_and_keeps_order() {
        let shared = Arc::new(Shared::new(2));
        let mut eps = mesh::<u64>(2, 2);
        let ep1 = eps.pop().unwrap();
        let ep0 = eps.pop().unwrap();
        let (_g0, t0) = sink();
        let (got1, t1) = sink();
        let mut w0 = Exchange::new(0, ep0, |_: &u64| 1, t0, shared.clone());
        let mut w1 = Exchange::new(1, ep1, |_: &u64| 1, t1, shared);
        for i in 0..10u64 {
            let mut b = vec![i];
            w0.push(1, &mut b);
            w0.flush();
        }
        assert!(w0.has_overflow(), "a 2-slot ring cannot take 10 batches");
        w0.advance_local(EOF_EPOCH);
        let mut rounds = 0;
        while w1.remote_frontier() != EOF_EPOCH {
            w1.drain();
            w0.flush();
            rounds += 1;
            assert!(rounds < 100);
        }
        assert_eq!(got1.borrow().concat_items(), (0..10).collect::<Vec<_>>());
        assert!(!w0.has_overflow());
    }

    trait Concat {
        fn concat_items(&self) -> Vec<u64>;
    }
    impl Concat for Vec<(Epoch, Vec<u64>)> {
        fn concat_items(&self) -> Vec<u64> {
            self.iter().flat_map(|(_, v)| v.iter().copied()).collect()
        }
    }
}
