//! The one bounded-ring-with-overflow type of every transport ([`Outbox`]): a sender
//! never blocks on a full ring; what does not fit waits, in order, in an overflow queue
//! that the sender retries every round, and the length of that queue is what stops the
//! sender's sources (backpressure). Within a process the ring is an rtrb ring of
//! batches or frames; through shared memory it is a ring of bytes that may take a frame
//! in several goes ([`Lane::offer`] keeps its place in the frame at the front).

use std::collections::VecDeque;

/// A bounded ring's writing end, as an [`Outbox`] uses it.
pub(crate) trait Lane {
    /// What the ring carries.
    type Item;
    /// Puts `item` in the ring, or gives it back if the ring has no room now. A lane
    /// may take part of an item and keep its place: it is offered the same item again
    /// (the queue's front) until it takes the rest.
    fn offer(&mut self, item: Self::Item) -> Result<(), Self::Item>;
    /// What an item counts for in [`Outbox::weight`] (bytes, for frames).
    fn weight(_item: &Self::Item) -> usize {
        1
    }
}

impl<T> Lane for rtrb::Producer<T> {
    type Item = T;
    #[inline]
    fn offer(&mut self, item: T) -> Result<(), T> {
        self.push(item).map_err(|rtrb::PushError::Full(t)| t)
    }
}

/// A ring and the overflow queue in front of it.
#[derive(Debug)]
pub(crate) struct Outbox<L: Lane> {
    ring: L,
    overflow: VecDeque<L::Item>,
    /// The summed weight of the overflow.
    weight: usize,
}

impl<L: Lane> Outbox<L> {
    pub(crate) fn new(ring: L) -> Self {
        Outbox {
            ring,
            overflow: VecDeque::new(),
            weight: 0,
        }
    }

    /// Sends `item` behind everything queued; true if it went into the ring now (the
    /// caller wakes the receiver).
    #[inline]
    pub(crate) fn send(&mut self, item: L::Item) -> bool {
        if self.overflow.is_empty() {
            match self.ring.offer(item) {
                Ok(()) => return true,
                Err(item) => self.queue(item),
            }
        } else {
            self.queue(item);
        }
        false
    }

    fn queue(&mut self, item: L::Item) {
        self.weight += L::weight(&item);
        self.overflow.push_back(item);
    }

    /// Moves queued items into the ring while it has room; true if any moved.
    pub(crate) fn retry(&mut self) -> bool {
        let mut moved = false;
        while let Some(item) = self.overflow.pop_front() {
            let w = L::weight(&item);
            match self.ring.offer(item) {
                Ok(()) => {
                    self.weight -= w;
                    moved = true;
                }
                Err(item) => {
                    self.overflow.push_front(item);
                    break;
                }
            }
        }
        moved
    }

    /// Items waiting in the overflow queue.
    pub(crate) fn queued(&self) -> usize {
        self.overflow.len()
    }

    /// Their summed [`Lane::weight`].
    pub(crate) fn weight(&self) -> usize {
        self.weight
    }

    /// The last item waiting, to replace it by a newer one of the same kind (progress
    /// markers only ever advance, so a newer one supersedes one still queued).
    pub(crate) fn last_queued_mut(&mut self) -> Option<&mut L::Item> {
        self.overflow.back_mut()
    }

    /// The ring, to change.
    pub(crate) fn ring_mut(&mut self) -> &mut L {
        &mut self.ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_keep_their_order_through_a_full_ring() {
        let (p, mut c) = rtrb::RingBuffer::new(2);
        let mut out = Outbox::new(p);
        assert!(out.send(1) && out.send(2));
        assert!(!out.send(3) && !out.send(4), "full: queued");
        assert_eq!((out.queued(), out.weight()), (2, 2));
        assert!(!out.retry(), "still full");
        assert_eq!(c.pop(), Ok(1));
        assert!(!out.send(5), "behind the queue, not into the free slot");
        assert!(out.retry());
        assert_eq!(out.queued(), 2);
        let mut got = vec![c.pop().unwrap()];
        while out.queued() > 0 || !c.is_empty() {
            out.retry();
            if let Ok(v) = c.pop() {
                got.push(v);
            }
        }
        assert_eq!(got, vec![2, 3, 4, 5]);
        assert_eq!(out.weight(), 0);
    }

    /// A lane that takes two bytes of an item per offer.
    struct Slow {
        taken: Vec<u8>,
        at: usize,
        room: usize,
    }

    impl Lane for Slow {
        type Item = Vec<u8>;
        fn offer(&mut self, item: Vec<u8>) -> Result<(), Vec<u8>> {
            while self.at < item.len() {
                if self.room == 0 {
                    return Err(item);
                }
                self.taken.push(item[self.at]);
                self.at += 1;
                self.room -= 1;
            }
            self.at = 0;
            Ok(())
        }
        fn weight(item: &Vec<u8>) -> usize {
            item.len()
        }
    }

    #[test]
    fn an_item_taken_in_parts_is_finished_before_the_next() {
        let mut out = Outbox::new(Slow {
            taken: Vec::new(),
            at: 0,
            room: 2,
        });
        assert!(!out.send(vec![1, 2, 3]));
        assert!(!out.send(vec![4, 5]));
        assert_eq!(out.weight(), 5);
        while out.queued() > 0 {
            out.ring.room = 2;
            out.retry();
        }
        assert_eq!(out.ring.taken, vec![1, 2, 3, 4, 5]);
    }
}
