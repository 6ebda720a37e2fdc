//! Exchanging whole items: `redistribute` and fixed-partitioned sinks.

use std::cell::RefCell;
use std::rc::Rc;

use super::Channel;
use crate::base::epoch::Epoch;
use crate::base::push::{Data, Push};

/// Routes the items it is pushed to worker `route(item)`: the local share straight to
/// `target`, the rest staged in the channel (whose inbound batches also go to `target`).
pub(crate) struct ItemRouter<T, R> {
    channel: Rc<RefCell<Channel<Vec<T>>>>,
    route: R,
    target: Rc<RefCell<dyn Push<T>>>,
    local: Vec<T>,
}

impl<T: Data, R: FnMut(&T) -> usize> ItemRouter<T, R> {
    /// The router, and the channel the worker loop drives.
    pub(crate) fn new(
        links: super::Links<Vec<T>>,
        route: R,
        target: Rc<RefCell<dyn Push<T>>>,
    ) -> (Self, Rc<RefCell<Channel<Vec<T>>>>) {
        let inbound = target.clone();
        let channel = Rc::new(RefCell::new(Channel::new(
            links,
            Box::new(move |epoch, items: &mut Vec<T>| inbound.borrow_mut().push(epoch, items)),
        )));
        let router = ItemRouter {
            channel: channel.clone(),
            route,
            target,
            local: Vec::new(),
        };
        (router, channel)
    }
}

impl<T: Data, R: FnMut(&T) -> usize> Push<T> for ItemRouter<T, R> {
    fn push(&mut self, epoch: Epoch, batch: &mut Vec<T>) {
        {
            let mut ch = self.channel.borrow_mut();
            let me = ch.me();
            // Every peer's batch at this epoch, checked once here rather than per item.
            ch.open(epoch);
            for item in batch.drain(..) {
                let to = (self.route)(&item);
                if to == me {
                    self.local.push(item);
                } else {
                    ch.opened(to).push(item);
                    ch.staged(to);
                }
            }
        }
        if !self.local.is_empty() {
            self.target.borrow_mut().push(epoch, &mut self.local);
            self.local.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::epoch::EOF_EPOCH;
    use crate::base::park::Shared;
    use crate::base::push::PushFn;
    use crate::exchange::{ChannelIo, Links};
    use crate::transport::threads::mesh;
    use std::sync::Arc;

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

    type Side = (
        ItemRouter<u64, fn(&u64) -> usize>,
        Rc<RefCell<Channel<Vec<u64>>>>,
        Got,
    );

    /// Two workers' routers over rings of `capacity` messages, each with a recording sink.
    fn pair(capacity: usize, route: fn(&u64) -> usize) -> (Side, Side) {
        let shared = Arc::new(Shared::new(2));
        let mut eps = mesh::<Vec<u64>>(2, capacity);
        let ep1 = eps.pop().unwrap();
        let ep0 = eps.pop().unwrap();
        let (g0, t0) = sink();
        let (g1, t1) = sink();
        let (r0, c0) = ItemRouter::new(Links::new(0, ep0, shared.clone()), route, t0);
        let (r1, c1) = ItemRouter::new(Links::new(1, ep1, shared), route, t1);
        ((r0, c0, g0), (r1, c1, g1))
    }

    fn items(got: &Got) -> Vec<u64> {
        got.borrow()
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    }

    #[test]
    fn routes_stages_and_keeps_data_before_progress() {
        let ((mut r0, c0, got0), (_r1, c1, got1)) = pair(4, |x| (*x % 2) as usize);
        let mut batch: Vec<u64> = (0..10).collect();
        r0.push(1, &mut batch);
        // Evens stayed local at once; odds are staged until a flush or marker.
        assert_eq!(items(&got0), vec![0, 2, 4, 6, 8]);
        assert!(!c1.borrow_mut().drain());
        c0.borrow_mut().advance_local(3);
        assert!(c1.borrow_mut().drain());
        assert_eq!(items(&got1), vec![1, 3, 5, 7, 9]);
        assert_eq!(got1.borrow()[0].0, 1, "items keep their epoch");
        assert_eq!(c1.borrow().remote_frontier(), 3);
        c0.borrow_mut().advance_local(EOF_EPOCH);
        c1.borrow_mut().drain();
        assert_eq!(c1.borrow().remote_frontier(), EOF_EPOCH);
    }

    #[test]
    fn full_ring_overflows_instead_of_blocking_and_keeps_order() {
        let ((mut r0, c0, _g0), (_r1, c1, got1)) = pair(2, |_: &u64| 1);
        for i in 0..10u64 {
            r0.push(1, &mut vec![i]);
            c0.borrow_mut().flush(false);
        }
        assert!(
            c0.borrow().has_overflow(),
            "a 2-slot ring cannot take 10 batches"
        );
        c0.borrow_mut().advance_local(EOF_EPOCH);
        let mut rounds = 0;
        while c1.borrow().remote_frontier() != EOF_EPOCH {
            c1.borrow_mut().drain();
            c0.borrow_mut().flush(false);
            rounds += 1;
            assert!(rounds < 100);
        }
        assert_eq!(items(&got1), (0..10).collect::<Vec<_>>());
        assert!(!c0.borrow().has_overflow());
    }

    #[test]
    fn a_busy_round_holds_a_short_batch_for_a_few_rounds_only() {
        use crate::exchange::{BATCH, HOLD_ROUNDS};
        let ((mut r0, c0, _g0), (_r1, c1, got1)) = pair(64, |_: &u64| 1);
        r0.push(1, &mut vec![1, 2, 3]);
        for round in 0..HOLD_ROUNDS {
            assert!(!c0.borrow_mut().flush(true), "held in busy round {round}");
            assert!(!c1.borrow_mut().drain());
        }
        assert!(
            c0.borrow_mut().flush(true),
            "held HOLD_ROUNDS rounds, then sent"
        );
        assert!(c1.borrow_mut().drain());
        assert_eq!(items(&got1), vec![1, 2, 3]);

        // A quiet round sends whatever is staged, however new.
        r0.push(1, &mut vec![4]);
        assert!(!c0.borrow_mut().flush(true));
        assert!(c0.borrow_mut().flush(false));
        assert!(c1.borrow_mut().drain());
        assert_eq!(items(&got1), vec![1, 2, 3, 4]);

        // A full batch goes as soon as it fills, busy or not.
        let mut full: Vec<u64> = (0..BATCH as u64).collect();
        r0.push(1, &mut full);
        c0.borrow_mut().flush(true);
        assert!(c1.borrow_mut().drain());
        assert_eq!(got1.borrow().len(), 3);
        assert_eq!(got1.borrow()[2].1.len(), BATCH);

        // A held batch still goes before the frontier passes its epoch.
        r0.push(1, &mut vec![9]);
        assert!(!c0.borrow_mut().flush(true));
        c0.borrow_mut().advance_local(2);
        assert!(c1.borrow_mut().drain());
        assert_eq!(items(&got1).last(), Some(&9));
        assert_eq!(c1.borrow().remote_frontier(), 2);
    }

    #[test]
    fn epoch_change_sends_the_staged_batch_first() {
        let ((mut r0, c0, _g0), (_r1, c1, got1)) = pair(8, |_: &u64| 1);
        r0.push(1, &mut vec![1, 2]);
        r0.push(2, &mut vec![3]);
        c0.borrow_mut().flush(false);
        c1.borrow_mut().drain();
        assert_eq!(*got1.borrow(), vec![(1, vec![1, 2]), (2, vec![3])]);
    }
}
