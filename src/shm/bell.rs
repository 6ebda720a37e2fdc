//! A doorbell: how a worker of one process wakes a parked worker of another. Thread
//! parking cannot cross a process boundary, but a futex on a word of a shared mapping
//! can (Linux's `FUTEX_WAIT` / `FUTEX_WAKE` without the private flag key the word by
//! its physical page, so both processes wait and wake on the same word).
//!
//! The protocol is the one of the runtime's thread parking (ARCHITECTURE.md,
//! "Scheduling, parking and wake-ups"), with the futex word as the "unpark token":
//! * the sleeper reads `seq`, sets `sleeping`, issues a SeqCst fence, re-checks its
//!   rings, and only then waits on `seq` still holding the value it read;
//! * a waker publishes its record (the ring's Release store), issues a SeqCst fence,
//!   and, if it sees `sleeping`, bumps `seq` and wakes the word.
//!
//! Either the sleeper's re-check sees the record, or the waker sees `sleeping`; if the
//! bump lands between the sleeper's read of `seq` and its wait, the wait returns at
//! once (the word no longer holds the value). So no wake-up is lost.

use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::time::Duration;

/// One worker's doorbell: a 128-byte line of a segment (see [`super::segment`]).
#[derive(Debug)]
#[repr(C, align(128))]
pub struct Bell {
    sleeping: AtomicU32,
    seq: AtomicU32,
}

impl Default for Bell {
    fn default() -> Self {
        Bell {
            sleeping: AtomicU32::new(0),
            seq: AtomicU32::new(0),
        }
    }
}

impl Bell {
    /// Called by a waker after it published a record for the bell's worker: wakes the
    /// worker if it sleeps (a fence and a load otherwise).
    #[inline]
    pub fn ring(&self) {
        // Pairs with the fence in `wait`: either the sleeper's re-check sees our record,
        // or we see its `sleeping` flag.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) != 0 {
            self.ring_now();
        }
    }

    /// Wakes the worker whether it sleeps or not (a failure stops every worker).
    pub fn ring_now(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&self.seq);
    }

    /// How many times the bell was rung (tests).
    pub fn rung(&self) -> u32 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Sleeps until the bell rings or `timeout` passes, unless `has_work` (checked
    /// after announcing the sleep) says a record already arrived.
    pub fn wait(&self, timeout: Duration, has_work: impl FnOnce() -> bool) {
        let seen = self.seq.load(Ordering::SeqCst);
        self.sleeping.store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !has_work() {
            futex_wait(&self.seq, seen, timeout);
        }
        self.sleeping.store(0, Ordering::Relaxed);
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the aligned u32 at `word` (valid for the call: it is
    // borrowed) and the timespec we pass; it writes nothing. A spurious or early return
    // (EAGAIN when the word changed, EINTR, ETIMEDOUT) is fine: the caller re-checks.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key (the aligned u32 is valid: it
    // is borrowed) and wakes up to one waiter; no memory is read or written.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_ring_wakes_a_sleeper_long_before_its_timeout() {
        let bell = Arc::new(Bell::default());
        let flag = Arc::new(AtomicBool::new(false));
        let (b, f) = (bell.clone(), flag.clone());
        let sleeper = std::thread::spawn(move || {
            let t = Instant::now();
            while !f.load(Ordering::Acquire) {
                b.wait(Duration::from_secs(30), || f.load(Ordering::Acquire));
            }
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        flag.store(true, Ordering::Release);
        bell.ring();
        let slept = sleeper.join().unwrap();
        assert!(slept < Duration::from_secs(30), "woken, not timed out");
    }

    #[test]
    fn work_seen_after_announcing_sleep_skips_the_wait() {
        let bell = Bell::default();
        let t = Instant::now();
        bell.wait(Duration::from_secs(30), || true);
        assert!(t.elapsed() < Duration::from_secs(30));
        assert_eq!(bell.rung(), 0, "nobody rang");
    }
}
