//! A keyed step's part in recovery: the keys changed since the last snapshot, the rows
//! they are written to, and the [`EpochGate`] that holds items of epochs after the
//! step's input frontier.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::marks::SlotMarks;
use super::out::KeyedOut;
use super::table::{hash_of, KeyedOp, RECOVERY_SITE};
use super::KeyedLogic;
use crate::dataflow::Key;
use crate::error::Error;
use crate::recovery::{kind, Rows};
use crate::runtime::build::fail;
use crate::runtime::gate::EpochGate;
use crate::runtime::progress::{Epoch, EOF_EPOCH};
use crate::runtime::push::ExchangeData;

/// A keyed step's part in recovery: the epoch gate and the keys to snapshot.
pub(super) struct Snapshots<K, V> {
    pub(super) step_id: Arc<str>,
    pub(super) rows: Rc<RefCell<Rows>>,
    /// Items of epochs after the step's input frontier, waiting for it.
    pub(super) gate: EpochGate<(u64, K, V)>,
    /// Keys changed since the last snapshot (a key may appear twice).
    pub(super) dirty: Vec<K>,
}

impl<K: Key, V: ExchangeData, L: KeyedLogic<V>, O: KeyedOut<K, L::Out>, M: SlotMarks>
    KeyedOp<K, V, L, O, M>
{
    /// Writes the keys changed since the last snapshot, tagged `epoch`.
    pub(super) fn snapshot(&mut self, epoch: Epoch) {
        let Some(snaps) = &mut self.snaps else {
            return;
        };
        let dirty = std::mem::take(&mut snaps.dirty);
        for k in &dirty {
            let h = hash_of(k, self.alone);
            match self.table.find_mut(h, |s| s.key == *k) {
                Some(slot) => {
                    slot.marks.set_dirty(false);
                    slot.marks.set_saved(true);
                    snaps.write(&*self.logic, epoch, k, Some(&slot.state));
                }
                None => snaps.write::<L>(&*self.logic, epoch, k, None),
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        snaps.dirty = dirty;
    }

    /// Applies the items that waited for epoch `e`.
    pub(super) fn apply_pending(&mut self, e: Epoch, items: Vec<(u64, K, V)>) {
        self.begin_batch();
        for (h, k, v) in items {
            self.apply::<true, RECOVERY_SITE>(e, h, k, v);
        }
        self.end_batch(e);
    }

    /// True if an item of `epoch` must wait for the frontier (recovery only).
    #[inline]
    pub(super) fn gated(&self, epoch: Epoch) -> bool {
        self.snaps.as_ref().is_some_and(|s| s.gate.holds(epoch))
    }

    pub(super) fn hold(&mut self, epoch: Epoch) -> &mut Vec<(u64, K, V)> {
        let snaps = self.snaps.as_mut().expect("gated only with recovery");
        snaps.gate.hold(epoch)
    }

    /// The input frontier moved from `old` to `new` with recovery on: snapshot what
    /// epoch `old` changed, then apply and snapshot the epochs that waited, in order.
    pub(super) fn advance(&mut self, old: Epoch, new: Epoch) {
        let snaps = self.snaps.as_mut().expect("advance only with recovery");
        if new == EOF_EPOCH && snaps.gate.is_empty() && !L::EOF_KEEPS_STATE {
            // End of stream right after `old`: `eof` writes every live key, tagged `old`
            // too; only the keys discarded during `old` need rows here.
            let dirty = std::mem::take(&mut snaps.dirty);
            for k in &dirty {
                let h = hash_of(k, self.alone);
                if self.table.find(h, |s| s.key == *k).is_none() {
                    snaps.write::<L>(&*self.logic, old, k, None);
                }
            }
            snaps.gate.open(new);
            self.eof(old);
            return;
        }
        self.snapshot(old);
        let mut last = old;
        loop {
            let snaps = self.snaps.as_mut().expect("advance only with recovery");
            let Some((e, items)) = snaps.gate.release_before(new) else {
                break;
            };
            self.apply_pending(e, items);
            self.snapshot(e);
            last = e;
        }
        let snaps = self.snaps.as_mut().expect("advance only with recovery");
        let opened = snaps.gate.open(new);
        if new == EOF_EPOCH {
            // Nothing is ever held for the end-of-stream epoch.
            self.eof(last);
        } else if let Some(items) = opened {
            self.apply_pending(new, items);
        }
    }
}

impl<K: Key, V> Snapshots<K, V> {
    pub(super) fn write<L: KeyedLogic<V>>(
        &self,
        logic: &L,
        epoch: Epoch,
        key: &K,
        state: Option<&L::State>,
    ) {
        let r = self.rows.borrow_mut().push(
            &self.step_id,
            kind::KEY,
            epoch,
            |b| key.encode(b),
            |b| match state {
                Some(s) => logic.encode(s, b).map(|()| true),
                None => Ok(false),
            },
        );
        if let Err(e) = r {
            fail(Error::in_step(
                self.step_id.to_string(),
                format!("cannot snapshot key {key:?}: {e}"),
            ));
        }
    }
}
