//! The push chain: how a batch moves from a producer to the steps that consume it.
//!
//! On each worker every stream is a [`Tee`]: the consumers built for it. A producer
//! hands the tee a `&mut Vec<T>`; consumers *drain* the buffer, so the producer can reuse
//! its allocation for the next batch. A stream with several consumers clones the batch
//! for all but the last one.

use std::sync::Arc;

use crate::base::epoch::Epoch;
use crate::observe::metrics::StepCells;
use crate::runtime::step_guard::StepGuard;

pub(crate) use crate::base::push::PushFn;
pub use crate::base::push::{Data, ExchangeData, Push};

/// The consumers of one stream on one worker.
pub struct Tee<T> {
    consumers: Vec<Box<dyn Push<T>>>,
    scratch: Vec<T>,
    /// The producing step's cells, with the dataflow API on: counts items out.
    cells: Option<Arc<StepCells>>,
}

impl<T> std::fmt::Debug for Tee<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("consumers", &self.consumers.len())
            .finish()
    }
}

impl<T: Data> Default for Tee<T> {
    fn default() -> Self {
        Tee {
            consumers: Vec::new(),
            scratch: Vec::new(),
            cells: None,
        }
    }
}

impl<T: Data> Tee<T> {
    pub(crate) fn add(&mut self, consumer: Box<dyn Push<T>>) {
        self.consumers.push(consumer);
    }

    /// Counts what is pushed here as items out of the step `cells` belong to.
    pub(crate) fn count_into(&mut self, cells: Option<Arc<StepCells>>) {
        self.cells = cells;
    }

    /// Pushes `batch` to every consumer and leaves it empty for reuse.
    #[inline]
    pub fn push(&mut self, epoch: Epoch, batch: &mut Vec<T>) {
        if batch.is_empty() {
            return;
        }
        if let Some(c) = &self.cells {
            c.items_out.add(batch.len() as u64);
        }
        if let Some((last, rest)) = self.consumers.split_last_mut() {
            for c in rest {
                self.scratch.extend_from_slice(batch);
                c.push(epoch, &mut self.scratch);
                self.scratch.clear();
            }
            last.push(epoch, batch);
        }
        batch.clear();
    }
}

/// Wraps a consumer so that a panic inside it is attributed to its step.
/// With the dataflow API on, it also counts the items in.
pub(crate) struct Guarded<P> {
    pub(crate) step: usize,
    pub(crate) inner: P,
    pub(crate) cells: Option<Arc<StepCells>>,
}

impl<T, P: Push<T>> Push<T> for Guarded<P> {
    #[inline]
    fn push(&mut self, epoch: Epoch, batch: &mut Vec<T>) {
        if let Some(c) = &self.cells {
            c.items_in.add(batch.len() as u64);
        }
        let _g = StepGuard::enter(self.step);
        self.inner.push(epoch, batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn fan_out_clones_for_all_but_last_and_empties_batch() {
        type Seen = Vec<(usize, Epoch, Vec<u32>)>;
        let seen: Rc<RefCell<Seen>> = Rc::default();
        let mut tee = Tee::<u32>::default();
        for i in 0..3 {
            let seen = seen.clone();
            tee.add(Box::new(PushFn(move |e, b: &mut Vec<u32>| {
                seen.borrow_mut().push((i, e, std::mem::take(b)))
            })));
        }
        let mut batch = vec![1, 2, 3];
        tee.push(7, &mut batch);
        assert!(batch.is_empty());
        let seen = seen.borrow();
        assert_eq!(seen.len(), 3);
        for (i, (who, e, items)) in seen.iter().enumerate() {
            assert_eq!((*who, *e, items.as_slice()), (i, 7, &[1, 2, 3][..]));
        }
    }

    #[test]
    fn no_consumer_drops_the_batch() {
        let mut tee = Tee::<u32>::default();
        let mut batch = vec![1];
        tee.push(1, &mut batch);
        assert!(batch.is_empty());
    }
}
