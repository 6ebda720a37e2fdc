//! What a key's slot keeps for snapshots: two flags with a recovery directory, nothing
//! without one.
//!
//! A keyed step's table holds one slot per key. With the flags in every slot, a
//! `(u64, u64)` key with an `Option<u64>` state took 40 bytes, and half the slots of a
//! table then straddle two cache lines; without them the slot is 32 bytes. The step's
//! type is chosen when it is built ([`NoMarks`] unless the run snapshots), so a run
//! without recovery carries no flags and tests none.

/// The flags of a slot.
pub(crate) trait SlotMarks: Copy + Default + Send + 'static {
    /// Changed since the last snapshot (and listed in `Snapshots::dirty`).
    fn dirty(&self) -> bool;
    fn set_dirty(&mut self, dirty: bool);
    /// Has a saved state (it was resumed, or a snapshot wrote it): a discard of a key
    /// that never had one needs no row.
    fn saved(&self) -> bool;
    fn set_saved(&mut self, saved: bool);
}

/// The flags of a step that snapshots.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Marks {
    dirty: bool,
    saved: bool,
}

impl SlotMarks for Marks {
    #[inline(always)]
    fn dirty(&self) -> bool {
        self.dirty
    }
    #[inline(always)]
    fn set_dirty(&mut self, dirty: bool) {
        self.dirty = dirty;
    }
    #[inline(always)]
    fn saved(&self) -> bool {
        self.saved
    }
    #[inline(always)]
    fn set_saved(&mut self, saved: bool) {
        self.saved = saved;
    }
}

/// No flags: a step without a recovery directory never asks for them.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct NoMarks;

impl SlotMarks for NoMarks {
    #[inline(always)]
    fn dirty(&self) -> bool {
        debug_assert!(false, "a step without recovery has no dirty keys");
        false
    }
    #[inline(always)]
    fn set_dirty(&mut self, _dirty: bool) {
        debug_assert!(false, "a step without recovery marks no keys dirty");
    }
    #[inline(always)]
    fn saved(&self) -> bool {
        debug_assert!(false, "a step without recovery saves no keys");
        false
    }
    #[inline(always)]
    fn set_saved(&mut self, _saved: bool) {
        debug_assert!(false, "a step without recovery saves no keys");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_keep_both_flags_and_no_marks_take_no_room() {
        let mut m = Marks::default();
        assert!(!m.dirty() && !m.saved());
        m.set_dirty(true);
        m.set_saved(true);
        assert!(m.dirty() && m.saved());
        m.set_dirty(false);
        assert!(!m.dirty() && m.saved());
        assert_eq!(std::mem::size_of::<NoMarks>(), 0);
    }

    #[test]
    fn a_slot_without_recovery_has_no_room_for_flags() {
        use super::super::table::Slot;
        use std::mem::size_of;
        type Fold<M> = Slot<(u64, u64), Option<u64>, M>;
        assert_eq!(size_of::<Fold<NoMarks>>(), 32);
        assert_eq!(size_of::<Fold<Marks>>(), 40);
        assert_eq!(size_of::<Slot<u64, u64, NoMarks>>(), 16);
    }
}
