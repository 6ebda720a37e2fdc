//! Where a keyed step's emissions go: beside their key into the step's own stream, or,
//! when the step's only consumer is a `key_rm`, as bare values straight into the
//! `key_rm`'s output (the two steps fused: no key clone, no second buffer).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::observe::metrics::StepCells;
use crate::runtime::progress::Epoch;
use crate::runtime::push::{Data, Tee};

/// A keyed step's output, chosen when the step is built.
pub(crate) trait KeyedOut<K, W>: 'static {
    /// Emits `w` for `key`.
    fn emit(&mut self, key: &K, w: W);
    /// Emits `w` for `key`, which the caller no longer needs (no clone).
    #[inline(always)]
    fn emit_owned(&mut self, key: K, w: W) {
        self.emit(&key, w);
    }
    /// Items emitted since the last [`flush`](Self::flush).
    fn pending(&self) -> usize;
    /// Pushes what was emitted downstream, tagged `epoch`.
    fn flush(&mut self, epoch: Epoch);
    /// True if [`push_values`](Self::push_values) takes a batch of outputs whole: the
    /// output is bare values (a fused `key_rm`).
    const TAKES_VALUES: bool = false;
    /// Pushes `values`, the outputs of the items just applied in their order, downstream
    /// as they are, after anything emitted before; leaves `values` empty. Only called
    /// when [`TAKES_VALUES`](Self::TAKES_VALUES).
    fn push_values(&mut self, epoch: Epoch, values: &mut Vec<W>) {
        let _ = (epoch, values);
        unreachable!("push_values on an output that does not take values");
    }
}

/// Emissions beside a clone of their key, into the step's own stream.
pub(crate) struct WithKeys<K, W> {
    pub(crate) tee: Tee<(K, W)>,
    pub(crate) buf: Vec<(K, W)>,
}

impl<K: Data, W: Data> KeyedOut<K, W> for WithKeys<K, W> {
    #[inline(always)]
    fn emit(&mut self, key: &K, w: W) {
        self.buf.push((key.clone(), w));
    }
    #[inline(always)]
    fn emit_owned(&mut self, key: K, w: W) {
        self.buf.push((key, w));
    }
    #[inline(always)]
    fn pending(&self) -> usize {
        self.buf.len()
    }
    #[inline]
    fn flush(&mut self, epoch: Epoch) {
        self.tee.push(epoch, &mut self.buf);
    }
}

/// What a `key_rm` step offers the keyed step before it: its own output stream, so the
/// keyed step can emit bare values into it. `cells` are the `key_rm`'s (with the
/// dataflow API on), which then count the items it takes in.
pub(crate) struct Unkeyed<W> {
    pub(crate) tee: Rc<RefCell<Tee<W>>>,
    pub(crate) cells: Option<Arc<StepCells>>,
}

/// Emissions as bare values into a fused `key_rm`'s output.
pub(crate) struct ValuesOnly<W> {
    pub(crate) into: Unkeyed<W>,
    /// The keyed step's own cells: what it emits is counted as its items out.
    pub(crate) own: Option<Arc<StepCells>>,
    pub(crate) buf: Vec<W>,
}

impl<K, W: Data> KeyedOut<K, W> for ValuesOnly<W> {
    #[inline(always)]
    fn emit(&mut self, _key: &K, w: W) {
        self.buf.push(w);
    }
    #[inline(always)]
    fn pending(&self) -> usize {
        self.buf.len()
    }
    #[inline]
    fn flush(&mut self, epoch: Epoch) {
        send(&self.into, self.own.as_deref(), epoch, &mut self.buf);
    }
    const TAKES_VALUES: bool = true;
    #[inline]
    fn push_values(&mut self, epoch: Epoch, values: &mut Vec<W>) {
        send(&self.into, self.own.as_deref(), epoch, &mut self.buf);
        send(&self.into, self.own.as_deref(), epoch, values);
    }
}

/// Pushes `batch` into the fused `key_rm`'s output, counted as the keyed step's items
/// out (`own`) and the `key_rm`'s items in.
#[inline]
fn send<W: Data>(into: &Unkeyed<W>, own: Option<&StepCells>, epoch: Epoch, batch: &mut Vec<W>) {
    if batch.is_empty() {
        return;
    }
    StepCells::hand_off(own, into.cells.as_deref(), batch.len() as u64);
    into.tee.borrow_mut().push(epoch, batch);
}
