//! Fusing adjacent steps on one worker.
//!
//! A step may offer the step that feeds it a cheaper way in than its ordinary input
//! ([`BuildCtx::offer`]); the producer, built after it, takes the offer only if that
//! step is the stream's one consumer ([`BuildCtx::take_fused`]) and otherwise pushes
//! batches as usual. The dataflow keeps every step (listings, metrics and panics still
//! name them); only the buffers between them go. Two fusions exist:
//!
//! * `key_on` (and `count_final`'s key step) into a keyed step: the keys are made as a
//!   column beside the batch, which itself becomes the column of values, instead of a
//!   batch of `(key, value)` pairs ([`FusedKeys`]);
//! * a keyed step into a `key_rm`: the keyed step emits bare values into the
//!   `key_rm`'s output (`operators::keyed::out`).
//!
//! [`BuildCtx::offer`]: crate::runtime::build::BuildCtx::offer
//! [`BuildCtx::take_fused`]: crate::runtime::build::BuildCtx::take_fused

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::base::epoch::Epoch;
use crate::base::key::Key;
use crate::base::push::Data;
use crate::exchange::keyed::KeyedEntry;
use crate::observe::metrics::StepCells;
use crate::runtime::step_guard::StepGuard;

/// What a keyed step offers the step that makes its keys: its entry, taking a column of
/// keys beside a column of values.
pub(crate) struct FusedKeys<K, V> {
    entry: Rc<RefCell<KeyedEntry<K, V>>>,
    /// The keyed step: its panics are its own, and it counts what comes in.
    step: usize,
    cells: Option<Arc<StepCells>>,
}

impl<K: Key, V: Data> FusedKeys<K, V> {
    pub(crate) fn new(
        entry: Rc<RefCell<KeyedEntry<K, V>>>,
        step: usize,
        cells: Option<Arc<StepCells>>,
    ) -> Self {
        FusedKeys { entry, step, cells }
    }

    /// Hands the keyed step `values`, `keys[i]` being the key of `values[i]`; both are
    /// left empty. `made_by` are the cells of the step that made the keys, which count
    /// them as its items out.
    #[inline]
    pub(crate) fn push(
        &self,
        epoch: Epoch,
        keys: &mut Vec<K>,
        values: &mut Vec<V>,
        made_by: Option<&StepCells>,
    ) {
        if keys.is_empty() {
            return;
        }
        StepCells::hand_off(made_by, self.cells.as_deref(), keys.len() as u64);
        let _g = StepGuard::enter(self.step);
        self.entry.borrow_mut().push_columns(epoch, keys, values);
    }
}
