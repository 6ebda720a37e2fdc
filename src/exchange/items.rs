//! Exchanging whole items: `redistribute` and fixed-partitioned sinks.

use std::cell::RefCell;
use std::rc::Rc;

use super::{ChannelIo, Links, Msg, Staged, BATCH};
use crate::runtime::progress::{Epoch, FIRST_EPOCH};
use crate::runtime::push::{Data, Push};

/// One worker's side of an item channel: routes what it is pushed to `route(item)`, and
/// hands what peers send it to `target`, as does the local share.
pub(crate) struct Exchange<T, R> {
    links: Links<Vec<T>>,
    route: R,
    target: Rc<RefCell<dyn Push<T>>>,
    staged: Vec<Staged<Vec<T>>>,
    local: Vec<T>,
}

impl<T: Data, R: FnMut(&T) -> usize> Exchange<T, R> {
    pub(crate) fn new(links: Links<Vec<T>>, route: R, target: Rc<RefCell<dyn Push<T>>>) -> Self {
        let staged = (0..links.workers())
            .map(|_| Staged {
                batch: Vec::new(),
                epoch: FIRST_EPOCH,
            })
            .collect();
        Exchange {
            links,
            route,
            target,
            staged,
            local: Vec::new(),
        }
    }

    fn flush_target(&mut self, to: usize) {
        let s = &mut self.staged[to];
        if s.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut s.batch, Vec::with_capacity(BATCH));
        let epoch = s.epoch;
        self.links.send(to, Msg::Data(epoch, batch));
    }
}

impl<T: Data, R: FnMut(&T) -> usize> Push<T> for Exchange<T, R> {
    fn push(&mut self, epoch: Epoch, batch: &mut Vec<T>) {
        let me = self.links.me;
        for item in batch.drain(..) {
            let to = (self.route)(&item);
            if to == me {
                self.local.push(item);
                continue;
            }
            if self.staged[to].epoch != epoch && !self.staged[to].batch.is_empty() {
                self.flush_target(to);
            }
            let s = &mut self.staged[to];
            s.epoch = epoch;
            s.batch.push(item);
            if s.batch.len() >= BATCH {
                self.flush_target(to);
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
        let target = &self.target;
        self.links
            .drain(|epoch, mut items| target.borrow_mut().push(epoch, &mut items))
    }

    fn flush(&mut self) -> bool {
        let mut moved = self.links.retry_overflow();
        for to in 0..self.staged.len() {
            if !self.staged[to].batch.is_empty() {
                self.flush_target(to);
                moved = true;
            }
        }
        moved
    }

    fn advance_local(&mut self, f: Epoch) {
        if f > self.links.sent_frontier {
            for to in 0..self.staged.len() {
                self.flush_target(to);
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

    fn has_inbound(&self) -> bool {
        self.links.has_inbound()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::mesh;
    use crate::runtime::park::Shared;
    use crate::runtime::progress::EOF_EPOCH;
    use crate::runtime::push::PushFn;
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

    #[test]
    fn routes_stages_and_keeps_data_before_progress() {
        let shared = Arc::new(Shared::new(2));
        let mut eps = mesh::<Vec<u64>>(2, 4);
        let ep1 = eps.pop().unwrap();
        let ep0 = eps.pop().unwrap();
        let (got0, t0) = sink();
        let (got1, t1) = sink();
        let mut w0 = Exchange::new(
            Links::new(0, ep0, shared.clone()),
            |x: &u64| (*x % 2) as usize,
            t0,
        );
        let mut w1 = Exchange::new(Links::new(1, ep1, shared), |x: &u64| (*x % 2) as usize, t1);
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
        let mut eps = mesh::<Vec<u64>>(2, 2);
        let ep1 = eps.pop().unwrap();
        let ep0 = eps.pop().unwrap();
        let (_g0, t0) = sink();
        let (got1, t1) = sink();
        let mut w0 = Exchange::new(Links::new(0, ep0, shared.clone()), |_: &u64| 1, t0);
        let mut w1 = Exchange::new(Links::new(1, ep1, shared), |_: &u64| 1, t1);
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
