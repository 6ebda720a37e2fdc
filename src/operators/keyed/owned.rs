//! A by-value logic's state, moved out of its slot for the callback and back in
//! ([`KeyedLogic::BY_VALUE`](super::KeyedLogic::BY_VALUE)).
//!
//! `stateful_map`, `stateful_flat_map` and the folds take a key's state by value and
//! give back the next one, `None` to discard the key. Kept as `Option<S>` in the slot,
//! the state would cost a tag in every slot (a `u64` state and key take 24 bytes, not
//! 16) and a tag test and store per record. So the slot keeps the bare `S`: the state
//! is read out of the slot, the callback consumes it, and what it returns is written
//! back, or the slot is removed without dropping its (moved-out) state.
//!
//! Between the read and the write the slot holds a bitwise copy of a value the callback
//! owns. If the callback panics, [`Hole`] removes that slot as the panic unwinds, so
//! the copy is never dropped (the callback's unwinding drops the value itself). This
//! is the only `unsafe` of the keyed engine.

use hashbrown::hash_table::OccupiedEntry;

use super::table::Slot;

/// Runs `f` on the state of `entry`'s slot, moved out, with the slot's key. What `f`
/// returns as the next state is stored in the slot, which is returned; `None` removes
/// the slot from its table. `f`'s other result is passed on.
#[inline(always)]
pub(super) fn update<'t, K, S, M, R>(
    entry: OccupiedEntry<'t, Slot<K, S, M>>,
    f: impl FnOnce(&K, S) -> (Option<S>, R),
) -> (Option<&'t mut Slot<K, S, M>>, R) {
    let mut hole = Hole(Some(entry));
    let slot = hole.0.as_mut().expect("just set").get_mut();
    // SAFETY: `slot.state` is a live `S` (every slot in a table holds one: `insert`
    // below and the table's other writers only store live states). Reading it leaves
    // a copy in the slot that must not be used or dropped until it is overwritten:
    // from here until the write below nothing reads the slot's state, `f` cannot
    // reach the table, and if `f` unwinds, `hole` removes the slot without dropping
    // the copy.
    let state = unsafe { std::ptr::read(&slot.state) };
    let (next, r) = f(&slot.key, state);
    let entry = hole.0.take().expect("the hole is filled only on unwind");
    match next {
        Some(next) => {
            let slot = entry.into_mut();
            // SAFETY: the slot's state is the copy read above, whose value `f`
            // consumed: overwriting it without a drop is what ends the copy.
            unsafe { std::ptr::write(&mut slot.state, next) };
            (Some(slot), r)
        }
        None => {
            remove_moved(entry);
            (None, r)
        }
    }
}

/// Removes a slot whose state was moved out: its key (and flags) are dropped, the
/// copy of the state is not.
fn remove_moved<K, S, M>(entry: OccupiedEntry<'_, Slot<K, S, M>>) {
    let (slot, _) = entry.remove();
    let Slot { key, state, marks } = slot;
    drop((key, marks));
    // The copy of a value the callback consumed.
    std::mem::forget(state);
}

/// Holds the entry whose state is moved out; dropped while it still holds it (only
/// when the callback unwinds), it removes the slot.
struct Hole<'t, K, S, M>(Option<OccupiedEntry<'t, Slot<K, S, M>>>);

impl<K, S, M> Drop for Hole<'_, K, S, M> {
    fn drop(&mut self) {
        if let Some(entry) = self.0.take() {
            remove_moved(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashbrown::HashTable;
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::rc::Rc;

    /// A state that counts how many of it are alive.
    struct Counted(Rc<Cell<i64>>, u64);

    impl Counted {
        fn new(live: &Rc<Cell<i64>>, n: u64) -> Self {
            live.set(live.get() + 1);
            Counted(live.clone(), n)
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }

    type Table = HashTable<Slot<String, Counted, ()>>;

    fn table(live: &Rc<Cell<i64>>, keys: u64) -> Table {
        let mut t = Table::new();
        for k in 0..keys {
            let slot = Slot {
                key: k.to_string(),
                state: Counted::new(live, k),
                marks: (),
            };
            t.insert_unique(k, slot, |s| s.key.parse().unwrap());
        }
        t
    }

    fn entry(t: &mut Table, k: u64) -> OccupiedEntry<'_, Slot<String, Counted, ()>> {
        let key = k.to_string();
        t.find_entry(k, |s| s.key == key)
            .ok()
            .expect("the key is in the table")
    }

    #[test]
    fn a_kept_state_is_replaced_and_the_old_one_dropped_once() {
        let live = Rc::new(Cell::new(0));
        let mut t = table(&live, 4);
        let l = live.clone();
        let (slot, r) = update(entry(&mut t, 2), |k, s: Counted| {
            assert_eq!(k, "2");
            (Some(Counted::new(&l, s.1 * 10)), s.1)
        });
        assert_eq!(r, 2);
        assert_eq!(slot.expect("kept").state.1, 20);
        assert_eq!(live.get(), 4, "the old state dropped, the new one alive");
        assert_eq!(t.len(), 4);
        drop(t);
        assert_eq!(live.get(), 0, "every state dropped exactly once");
    }

    #[test]
    fn a_discarded_state_removes_its_slot_without_a_second_drop() {
        let live = Rc::new(Cell::new(0));
        let mut t = table(&live, 4);
        let (slot, ()) = update(entry(&mut t, 1), |_, s: Counted| {
            drop(s);
            (None, ())
        });
        assert!(slot.is_none());
        assert_eq!(t.len(), 3);
        assert_eq!(live.get(), 3);
        assert!(t.find(1, |s| s.key == "1").is_none());
        drop(t);
        assert_eq!(live.get(), 0);
    }

    #[test]
    fn a_panicking_callback_leaves_no_copy_behind() {
        let live = Rc::new(Cell::new(0));
        let mut t = table(&live, 4);
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            update(entry(&mut t, 3), |_, s: Counted| -> (Option<Counted>, ()) {
                let _owned = s;
                panic!("the user's mapper panics")
            });
        }));
        assert!(panicked.is_err());
        // The state the callback owned was dropped by its unwinding; its slot is gone,
        // so the table does not drop the copy again.
        assert_eq!(live.get(), 3);
        assert_eq!(t.len(), 3);
        assert!(t.find(3, |s| s.key == "3").is_none());
        // The table still works and drops the rest once.
        let (slot, ()) = update(entry(&mut t, 0), |_, s| (Some(s), ()));
        assert!(slot.is_some());
        drop(t);
        assert_eq!(live.get(), 0);
    }
}
