//! State shared by the workers of one process: how to wake a parked worker, and how a
//! failure on one worker stops the others.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use crate::error::Error;
use crate::shm::segment::Segment;

#[derive(Debug, Default)]
struct Waker {
    thread: OnceLock<Thread>,
    sleeping: AtomicBool,
}

/// How another process caused this one's first error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerCause {
    /// Process `0` was lost (died, hung, or cut off).
    Lost(usize),
    /// A process failed and said so.
    Failed,
}

/// Shared by all workers of a process.
#[derive(Debug)]
pub(crate) struct Shared {
    wakers: Vec<Waker>,
    /// With peers through shared memory, the workers park on the doorbells of this
    /// process's segment instead (peer processes ring them; thread parking cannot
    /// cross a process boundary), and local wake-ups ring them too.
    bells: OnceLock<Arc<Segment>>,
    abort: AtomicBool,
    first_error: Mutex<Option<(usize, Error)>>,
}

impl Shared {
    pub(crate) fn new(workers: usize) -> Self {
        Shared {
            wakers: (0..workers).map(|_| Waker::default()).collect(),
            bells: OnceLock::new(),
            abort: AtomicBool::new(false),
            first_error: Mutex::new(None),
        }
    }

    /// Records the calling thread as worker `me`'s, so peers can unpark it.
    pub(crate) fn register(&self, me: usize) {
        let _ = self.wakers[me].thread.set(std::thread::current());
    }

    /// Parks the workers on the doorbells of `segment` (one per worker) from now on;
    /// called before any worker starts.
    pub(crate) fn use_bells(&self, segment: Arc<Segment>) {
        let _ = self.bells.set(segment);
    }

    /// Called by a sender after it pushed into a ring of worker `to`.
    #[inline]
    pub(crate) fn wake(&self, to: usize) {
        if let Some(seg) = self.bells.get() {
            return seg.bell(to).ring();
        }
        // Pairs with the fence in `park`: either the receiver sees our message when it
        // re-checks its rings, or we see its `sleeping` flag and unpark it.
        fence(Ordering::SeqCst);
        let w = &self.wakers[to];
        if w.sleeping.load(Ordering::Relaxed) {
            if let Some(t) = w.thread.get() {
                t.unpark();
            }
        }
    }

    /// Parks worker `me` until woken or `timeout` passes, unless `has_work` (checked
    /// after announcing the sleep) says a message already arrived.
    pub(crate) fn park(
        &self,
        me: usize,
        timeout: std::time::Duration,
        has_work: impl FnOnce() -> bool,
    ) {
        if let Some(seg) = self.bells.get() {
            return seg.bell(me).wait(timeout, || has_work() || self.aborted());
        }
        let w = &self.wakers[me];
        w.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !has_work() && !self.aborted() {
            std::thread::park_timeout(timeout);
        }
        w.sleeping.store(false, Ordering::Relaxed);
    }

    /// True once any worker failed.
    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }

    /// Worker `me` failed with `err`: keep the first error, stop and wake everyone.
    pub(crate) fn fail(&self, me: usize, err: Error) {
        {
            let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some((me, err));
            }
        }
        self.abort.store(true, Ordering::Release);
        if let Some(seg) = self.bells.get() {
            for i in 0..self.wakers.len() {
                seg.bell(i).ring_now();
            }
        }
        for w in &self.wakers {
            if let Some(t) = w.thread.get() {
                t.unpark();
            }
        }
    }

    /// The first error's message, leaving it in place.
    pub(crate) fn error_message(&self) -> Option<String> {
        let first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.as_ref().map(|(_, e)| e.to_string())
    }

    /// Whether the first error came from another process, and how.
    pub(crate) fn peer_cause(&self) -> Option<PeerCause> {
        let first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        match first.as_ref() {
            Some((_, Error::PeerLost { process, .. })) => Some(PeerCause::Lost(*process)),
            Some((_, Error::PeerFailed { .. })) => Some(PeerCause::Failed),
            _ => None,
        }
    }

    /// The first error recorded, if any.
    pub(crate) fn take_error(&self) -> Option<(usize, Error)> {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}
