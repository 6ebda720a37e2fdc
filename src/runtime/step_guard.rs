//! Which step is running on this thread, so that a panic can be attributed to it.

use std::cell::Cell;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Marks a step as running for the guard's lifetime; restores the previous one on drop
/// (steps nest: a map pushes into the next step synchronously).
#[derive(Debug)]
pub(crate) struct StepGuard {
    prev: usize,
}

impl StepGuard {
    #[inline]
    pub(crate) fn enter(step: usize) -> StepGuard {
        crate::observe::publish_step(step);
        StepGuard {
            prev: CURRENT.with(|c| c.replace(step)),
        }
    }
}

impl Drop for StepGuard {
    #[inline]
    fn drop(&mut self) {
        // Not restored while unwinding, so the culprit stays visible to the catcher.
        if !std::thread::panicking() {
            CURRENT.with(|c| c.set(self.prev));
            // Back in the worker loop: tell the sampler. A return into an enclosing
            // step is not published (it would double the cost of sampling); the
            // sampler may then credit the inner step with the outer one's last moments.
            if self.prev == usize::MAX {
                crate::observe::publish_step(self.prev);
            }
        }
    }
}

/// The innermost running step, if any.
pub(crate) fn current() -> Option<usize> {
    let v = CURRENT.with(|c| c.get());
    (v != usize::MAX).then_some(v)
}

/// Forgets the current step (at the start of a worker).
pub(crate) fn reset() {
    CURRENT.with(|c| c.set(usize::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_restores() {
        reset();
        {
            let _a = StepGuard::enter(1);
            {
                let _b = StepGuard::enter(2);
                assert_eq!(current(), Some(2));
            }
            assert_eq!(current(), Some(1));
        }
        assert_eq!(current(), None);
    }

    #[test]
    fn panic_keeps_the_culprit() {
        reset();
        let r = std::panic::catch_unwind(|| {
            let _a = StepGuard::enter(1);
            let _b = StepGuard::enter(2);
            panic!("boom");
        });
        assert!(r.is_err());
        assert_eq!(current(), Some(2));
        reset();
    }
}
