//! State shared by the workers of one process: how to wake a parked worker, how a
//! failure on one worker stops the others, and the commit point after which a run's
//! output stands.
//!
//! # The commit point
//!
//! A worker that finished its work does not close its sinks (which publishes their
//! output: a file sink renames `<path>.partial` to `<path>`) until every worker of the
//! process has finished, and, in a cluster, every peer process has said it finished
//! too. The run commits then, under the lock that records the first error, so the two
//! exclude each other: a failure (or a signal) before the commit point fails the run
//! and every sink drops its partial output; a signal after it is too late to stop the
//! run, which completes. Without the point, a worker could publish its files while
//! another one was still running, and a signal then left complete-looking output of a
//! failed run.

use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
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
    /// Workers that reached the commit point (written under `first_error`'s lock).
    arrived: AtomicUsize,
    /// Whether every peer process finished; true without peers.
    peers_finished: AtomicBool,
    /// Past the commit point: the sinks may publish their output.
    committed: AtomicBool,
}

impl Shared {
    pub(crate) fn new(workers: usize) -> Self {
        Shared {
            wakers: (0..workers).map(|_| Waker::default()).collect(),
            bells: OnceLock::new(),
            abort: AtomicBool::new(false),
            first_error: Mutex::new(None),
            arrived: AtomicUsize::new(0),
            peers_finished: AtomicBool::new(true),
            committed: AtomicBool::new(false),
        }
    }

    /// The run has peer processes: it commits only once they all finished
    /// ([`peers_finished`](Self::peers_finished)). Called before any worker starts.
    pub(crate) fn expect_peers(&self) {
        self.peers_finished.store(false, Ordering::Release);
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
        self.wake_all();
    }

    /// Fails the run with `err` (a signal's), unless it is past its commit point;
    /// true if it failed it.
    pub(crate) fn interrupt(&self, err: Error) -> bool {
        {
            let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            if self.committed.load(Ordering::Acquire) {
                return false;
            }
            if first.is_none() {
                *first = Some((usize::MAX, err));
            }
        }
        self.abort.store(true, Ordering::Release);
        self.wake_all();
        true
    }

    /// Every peer process said it finished (the network thread, at the end of a clean
    /// run).
    pub(crate) fn peers_finished(&self) {
        let first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        self.peers_finished.store(true, Ordering::Release);
        self.try_commit(first.is_none());
    }

    /// Worker `me` finished its work: waits until the run commits (true: close the
    /// sinks) or fails (false).
    pub(crate) fn await_commit(&self, me: usize) -> bool {
        {
            let first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            self.arrived.fetch_add(1, Ordering::AcqRel);
            self.try_commit(first.is_none());
        }
        loop {
            if self.committed.load(Ordering::Acquire) {
                return true;
            }
            if self.aborted() {
                return false;
            }
            self.park(me, std::time::Duration::from_millis(100), || {
                self.committed.load(Ordering::Acquire)
            });
        }
    }

    /// Commits if nothing failed (`clean`, read under the error lock the caller holds),
    /// every worker arrived and every peer finished.
    fn try_commit(&self, clean: bool) {
        if clean
            && self.arrived.load(Ordering::Acquire) == self.wakers.len()
            && self.peers_finished.load(Ordering::Acquire)
            && !self.committed.swap(true, Ordering::AcqRel)
        {
            self.wake_all();
        }
    }

    /// Wakes every worker, parked or not.
    fn wake_all(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn interrupted() -> Error {
        Error::Interrupted {
            signal: libc::SIGTERM,
        }
    }

    /// Runs `await_commit` for worker `me` on its own thread.
    fn arrive(shared: &Arc<Shared>, me: usize) -> std::thread::JoinHandle<bool> {
        let shared = shared.clone();
        std::thread::spawn(move || {
            shared.register(me);
            shared.await_commit(me)
        })
    }

    #[test]
    fn a_signal_before_every_worker_finished_fails_the_run_and_no_one_commits() {
        let shared = Arc::new(Shared::new(2));
        let early = arrive(&shared, 0);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!early.is_finished(), "worker 0 committed alone");
        assert!(shared.interrupt(interrupted()));
        assert!(!early.join().unwrap());
        // The late worker finds the run failed, too.
        assert!(!arrive(&shared, 1).join().unwrap());
        assert!(matches!(
            shared.take_error(),
            Some((_, Error::Interrupted { .. }))
        ));
    }

    #[test]
    fn a_signal_after_the_commit_point_is_too_late_to_fail_the_run() {
        let shared = Arc::new(Shared::new(2));
        let (a, b) = (arrive(&shared, 0), arrive(&shared, 1));
        assert!(a.join().unwrap() && b.join().unwrap());
        assert!(!shared.interrupt(interrupted()));
        assert!(!shared.aborted());
        assert!(shared.take_error().is_none());
    }

    #[test]
    fn with_peers_the_run_commits_only_once_they_finished() {
        let shared = Arc::new(Shared::new(1));
        shared.expect_peers();
        let only = arrive(&shared, 0);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!only.is_finished(), "committed before the peers finished");
        shared.peers_finished();
        assert!(only.join().unwrap());
    }

    #[test]
    fn a_failure_before_the_peers_finished_means_no_commit() {
        let shared = Arc::new(Shared::new(1));
        shared.expect_peers();
        let only = arrive(&shared, 0);
        shared.fail(usize::MAX, Error::Cluster("peer lost".into()));
        shared.peers_finished();
        assert!(!only.join().unwrap());
    }
}
