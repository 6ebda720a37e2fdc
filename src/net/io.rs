//! The network thread: one mio poll loop per process moves frames between this
//! process's workers and the sockets to every other process.
//!
//! Workers encode batches into frames themselves and hand them over through one SPSC
//! ring per worker ([`NetPort`]); the network thread only writes and reads bytes, so its
//! load does not grow with the cost of encoding. Received frames are checked (kind,
//! length, worker and channel indices) and handed to the target worker through that
//! worker's inbound ring.
//!
//! **Bounded memory.** Every frame a worker hands over is counted in the bytes queued
//! for its peer process until the network thread has written it to the socket; while
//! a peer's count is at [`OUT_BUDGET`] the workers stop polling their sources (they
//! keep draining their inbound rings), exactly as a full ring stops them within a
//! process. On the receiving side, frames handed to a worker count until the worker
//! takes them; while a worker holds [`IN_BUDGET`] the network thread stops reading
//! sockets, and TCP's own flow control stops the sender.
//!
//! **Liveness.** Every connection carries a heartbeat whenever nothing else was sent
//! for a fifth of the peer timeout; a peer from which nothing at all arrives for the
//! peer timeout (stopped, hung, or cut off) is lost. While this process is not reading
//! (its workers are behind) the clocks of its peers are not running.

use std::collections::VecDeque;
use std::io::{IoSlice, Write};
use std::net::Shutdown;
use std::ops::Range;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use rtrb::{Consumer, Producer, RingBuffer};

use crate::base::frame::{
    finish_frame, start_frame, Frame, FrameHeader, FrameKind, FrameReader, HEADER_LEN,
};
use crate::base::park::{PeerCause, Shared};
use crate::base::queue::Outbox;
use crate::error::Error;

/// Frames a worker may have queued for the network thread, and the network thread for
/// a worker, before the overflow queues take over.
const PORT_CAPACITY: usize = 1024;
/// Bytes of frames to one peer process that may wait (in the workers' rings and in
/// the network thread's queue) before the workers stop polling their sources.
pub(crate) const OUT_BUDGET: usize = 4 << 20;
/// Bytes of received frames one worker may hold before reading from sockets pauses.
pub(crate) const IN_BUDGET: usize = 4 << 20;
const WAKER: Token = Token(usize::MAX);
/// How long a failing process keeps trying to deliver its abort frames.
const ABORT_FLUSH: Duration = Duration::from_secs(1);

/// What the workers and the network thread of a process share.
#[derive(Debug)]
pub(crate) struct NetSignal {
    waker: Waker,
    sleeping: AtomicBool,
    /// Workers that finished without error.
    finished: AtomicUsize,
    /// Bytes of frames queued for each process (by process id), not yet written.
    out_bytes: Vec<AtomicUsize>,
    /// Bytes of frames handed to each local worker, not yet taken.
    in_bytes: Vec<AtomicUsize>,
    /// Workers per process, to find a frame's target process.
    workers_per_proc: usize,
    /// What crossed each peer's connection (by process id), for the metrics.
    pub(crate) traffic: Vec<PeerTraffic>,
}

/// Bytes and frames sent to and received from one peer process; written by the
/// network thread only (so a relaxed add on a line no worker writes), read by the
/// metrics server.
#[derive(Debug, Default)]
pub(crate) struct PeerTraffic {
    pub(crate) sent_bytes: AtomicU64,
    pub(crate) sent_frames: AtomicU64,
    pub(crate) recv_bytes: AtomicU64,
    pub(crate) recv_frames: AtomicU64,
}

impl NetSignal {
    /// Bytes of frames waiting to be written to process `p` (the outbound budget's
    /// count).
    pub(crate) fn queued_bytes(&self, p: usize) -> u64 {
        self.out_bytes
            .get(p)
            .map_or(0, |b| b.load(Ordering::Relaxed) as u64)
    }
}

impl NetSignal {
    /// Wakes the network thread if it sleeps (after a worker queued a frame).
    #[inline]
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            let _ = self.waker.wake();
        }
    }

    /// A worker finished cleanly.
    pub(crate) fn worker_finished(&self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// A worker's end of the network: frames out, frames in.
pub(crate) struct NetPort {
    /// Global index of this process's first worker, and of one past its last.
    pub(crate) local: Range<usize>,
    /// This worker's index within its process.
    me: usize,
    out: Outbox<Producer<Vec<u8>>>,
    inbox: Consumer<Frame>,
    signal: Arc<NetSignal>,
    /// Emptied frame buffers, reused for the next frames.
    spare: Vec<Vec<u8>>,
}

impl std::fmt::Debug for NetPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetPort")
            .field("local", &self.local)
            .finish()
    }
}

impl NetPort {
    /// This worker finished cleanly.
    pub(crate) fn finished(&self) {
        self.signal.worker_finished();
    }

    /// A buffer for the next frame, if one was recycled.
    pub(crate) fn spare(&mut self) -> Option<Vec<u8>> {
        self.spare.pop()
    }

    /// Queues a finished frame for worker `to` (of another process) for the network
    /// thread.
    pub(crate) fn send(&mut self, to: usize, frame: Vec<u8>) {
        let process = to / self.signal.workers_per_proc;
        self.signal.out_bytes[process].fetch_add(frame.len(), Ordering::Relaxed);
        if self.out.send(frame) {
            self.signal.notify();
        }
    }

    /// Retries overflow; true if anything moved.
    pub(crate) fn flush(&mut self) -> bool {
        let moved = self.out.queued() > 0 && self.out.retry();
        if moved {
            self.signal.notify();
        }
        moved
    }

    pub(crate) fn has_overflow(&self) -> bool {
        self.out.queued() > 0
    }

    /// True while some peer has [`OUT_BUDGET`] bytes waiting: the worker stops
    /// polling its sources until the network thread has written them.
    pub(crate) fn is_backlogged(&self) -> bool {
        self.out.queued() >= PORT_CAPACITY
            || self
                .signal
                .out_bytes
                .iter()
                .any(|b| b.load(Ordering::Relaxed) >= OUT_BUDGET)
    }

    pub(crate) fn has_inbound(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// The next received frame.
    pub(crate) fn recv(&mut self) -> Option<Frame> {
        let f = self.inbox.pop().ok()?;
        let before = self.signal.in_bytes[self.me].fetch_sub(f.payload.len(), Ordering::AcqRel);
        if before >= IN_BUDGET && before - f.payload.len() < IN_BUDGET {
            // The network thread may have paused reading for us.
            let _ = self.signal.waker.wake();
        }
        Some(f)
    }

    /// Returns a received frame's buffer for reuse by outbound frames.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < 16 {
            buf.clear();
            self.spare.push(buf);
        }
    }
}

/// One peer process as the network thread sees it.
struct Peer {
    process: usize,
    address: String,
    stream: TcpStream,
    reader: FrameReader,
    out: VecDeque<Vec<u8>>,
    /// Bytes of `out[0]` already written.
    written: usize,
    readable: bool,
    writable: bool,
    sent_shutdown: bool,
    got_shutdown: bool,
    closed: bool,
    /// When bytes last came from this peer, and when we last wrote to it.
    heard: Instant,
    said: Instant,
    /// EOF frames received from this peer, per (its worker, our worker, channel):
    /// its Shutdown must come after all of them.
    eofs: usize,
    /// The peer's data goes through shared memory: this connection carries only
    /// heartbeats, shutdown and abort.
    control_only: bool,
}

/// The network thread's state.
pub(crate) struct NetThread {
    poll: Poll,
    signal: Arc<NetSignal>,
    shared: Arc<Shared>,
    me: usize,
    workers_per_proc: usize,
    channels: usize,
    peers: Vec<Peer>,
    /// Index into `peers` of each process id.
    peer_of: Vec<Option<usize>>,
    from_workers: Vec<Consumer<Vec<u8>>>,
    /// Frames for each local worker, behind what waits for room in its ring.
    to_workers: Vec<Outbox<Producer<Frame>>>,
    addresses: Vec<String>,
    peer_timeout: Duration,
    heartbeat: Duration,
}

/// Wires the network thread to `workers_per_proc` ports over already-formed
/// connections (`streams[p]` for every process `p` but `me`); `control_only[p]` says
/// that process `p`'s data goes through shared memory instead.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    streams: Vec<Option<std::net::TcpStream>>,
    control_only: &[bool],
    addresses: &[String],
    me: usize,
    workers_per_proc: usize,
    channels: usize,
    shared: Arc<Shared>,
    peer_timeout: Duration,
) -> std::io::Result<(NetThread, Vec<NetPort>)> {
    let poll = Poll::new()?;
    let signal = Arc::new(NetSignal {
        waker: Waker::new(poll.registry(), WAKER)?,
        sleeping: AtomicBool::new(false),
        finished: AtomicUsize::new(0),
        out_bytes: (0..addresses.len()).map(|_| AtomicUsize::new(0)).collect(),
        in_bytes: (0..workers_per_proc).map(|_| AtomicUsize::new(0)).collect(),
        workers_per_proc,
        traffic: (0..addresses.len())
            .map(|_| PeerTraffic::default())
            .collect(),
    });
    let now = Instant::now();
    let mut peers = Vec::new();
    let mut peer_of = vec![None; addresses.len()];
    for (p, s) in streams.into_iter().enumerate() {
        let Some(s) = s else { continue };
        s.set_read_timeout(None)?;
        s.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(s);
        poll.registry().register(
            &mut stream,
            Token(peers.len()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        peer_of[p] = Some(peers.len());
        peers.push(Peer {
            process: p,
            address: addresses[p].clone(),
            stream,
            reader: FrameReader::new(),
            out: VecDeque::new(),
            written: 0,
            readable: true,
            writable: true,
            sent_shutdown: false,
            got_shutdown: false,
            closed: false,
            heard: now,
            said: now,
            eofs: 0,
            control_only: control_only.get(p).copied().unwrap_or(false),
        });
    }
    let base = me * workers_per_proc;
    let mut ports = Vec::new();
    let mut from_workers = Vec::new();
    let mut to_workers = Vec::new();
    for me in 0..workers_per_proc {
        let (out, from_w) = RingBuffer::new(PORT_CAPACITY);
        let (to_w, inbox) = RingBuffer::new(PORT_CAPACITY);
        from_workers.push(from_w);
        to_workers.push(Outbox::new(to_w));
        ports.push(NetPort {
            local: base..base + workers_per_proc,
            me,
            out: Outbox::new(out),
            inbox,
            signal: signal.clone(),
            spare: Vec::new(),
        });
    }
    let net = NetThread {
        poll,
        signal,
        shared,
        me,
        workers_per_proc,
        channels,
        peers,
        peer_of,
        from_workers,
        to_workers,
        addresses: addresses.to_vec(),
        peer_timeout,
        heartbeat: (peer_timeout / 5).clamp(Duration::from_millis(10), Duration::from_secs(1)),
    };
    Ok((net, ports))
}

/// Why the loop stopped early.
enum Stop {
    /// A peer failed or vanished: this process reports it.
    Peer(Error),
}

impl NetThread {
    /// The signal workers use to wake this thread and report that they finished.
    pub(crate) fn signal(&self) -> Arc<NetSignal> {
        self.signal.clone()
    }

    /// Runs until every worker of this process finished and every peer said it has
    /// too (clean shutdown), or until something failed: a peer lost or failed (the
    /// error goes to the shared slot, which stops the workers) or a local worker failed
    /// (peers get an abort frame).
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            if self.shared.aborted() {
                // A local worker failed (or we recorded a peer's failure): tell the
                // peers that are still there, then stop.
                self.broadcast_abort();
                return;
            }
            let mut busy = self.collect_outbound();
            match self.write_all().and_then(|w| {
                busy |= w;
                self.read_all()
            }) {
                Ok(r) => busy |= r,
                Err(Stop::Peer(e)) => {
                    self.shared.fail(usize::MAX, e);
                    continue;
                }
            }
            busy |= self.deliver_pending();
            if let Err(Stop::Peer(e)) = self.keep_alive() {
                self.shared.fail(usize::MAX, e);
                continue;
            }
            if self.finished_locally() && !self.peers.iter().all(|p| p.sent_shutdown) {
                for i in 0..self.peers.len() {
                    let mut f = Vec::new();
                    start_frame(&mut f, FrameKind::Shutdown, 0, self.base() as u32, 0, 0);
                    finish_frame(&mut f).expect("empty payload");
                    self.peers[i].out.push_back(f);
                    self.peers[i].sent_shutdown = true;
                }
                continue;
            }
            if self
                .peers
                .iter()
                .all(|p| p.sent_shutdown && p.got_shutdown && p.out.is_empty())
            {
                for p in &mut self.peers {
                    let _ = p.stream.shutdown(Shutdown::Write);
                }
                // Every process finished: the run may commit.
                self.shared.peers_finished();
                return;
            }
            let paused = self.reading_paused();
            let timeout = if busy {
                Some(Duration::ZERO)
            } else if paused {
                Some(Duration::from_micros(200))
            } else {
                Some(Duration::from_millis(100).min(self.heartbeat))
            };
            self.signal.sleeping.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let ready = self.from_workers.iter().any(|c| !c.is_empty());
            let t = if ready { Some(Duration::ZERO) } else { timeout };
            if let Err(e) = self.poll.poll(&mut events, t) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    self.shared.fail(
                        usize::MAX,
                        Error::Cluster(format!("network poll failed: {e}")),
                    );
                }
            }
            self.signal.sleeping.store(false, Ordering::Relaxed);
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                let p = &mut self.peers[ev.token().0];
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    p.readable = true;
                }
                if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                    p.writable = true;
                }
            }
        }
    }

    fn base(&self) -> usize {
        self.me * self.workers_per_proc
    }

    fn finished_locally(&self) -> bool {
        self.signal.finished.load(Ordering::SeqCst) == self.workers_per_proc
            && self.from_workers.iter().all(|c| c.is_empty())
    }

    /// True while some local worker holds its budget of received frames (or frames
    /// wait for room in its ring): sockets are not read until it catches up.
    fn reading_paused(&self) -> bool {
        self.to_workers.iter().any(|q| q.queued() > 0)
            || self
                .signal
                .in_bytes
                .iter()
                .any(|b| b.load(Ordering::Acquire) >= IN_BUDGET)
    }

    /// Sends a heartbeat to every peer we have not written to for a while, and loses
    /// every peer we have heard nothing from for the peer timeout.
    fn keep_alive(&mut self) -> Result<(), Stop> {
        let now = Instant::now();
        let paused = self.reading_paused();
        for p in &mut self.peers {
            if p.closed {
                continue;
            }
            if paused {
                // We are not listening: silence is ours, not the peer's.
                p.heard = now;
            }
            if p.out.is_empty() && now.duration_since(p.said) >= self.heartbeat {
                let mut f = Vec::with_capacity(HEADER_LEN);
                start_frame(
                    &mut f,
                    FrameKind::Heartbeat,
                    0,
                    (self.me * self.workers_per_proc) as u32,
                    0,
                    0,
                );
                finish_frame(&mut f).expect("empty payload");
                p.out.push_back(f);
                p.writable = true;
                p.said = now;
            }
            let silent = now.duration_since(p.heard);
            if silent > self.peer_timeout {
                return Err(lost(
                    p,
                    &format!(
                        "nothing arrived from it for {:.1} s (data or heartbeat; --peer-timeout is {:?}): it is stopped, hung, or cut off",
                        silent.as_secs_f64(),
                        self.peer_timeout
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Moves frames from the workers' rings to the peers' write queues.
    fn collect_outbound(&mut self) -> bool {
        let mut any = false;
        for c in &mut self.from_workers {
            while let Ok(f) = c.pop() {
                any = true;
                let to = FrameHeader::parse(&f)
                    .ok()
                    .flatten()
                    .map_or(usize::MAX, |h| h.to.get() as usize);
                let proc = to / self.workers_per_proc;
                match self.peer_of.get(proc).copied().flatten() {
                    Some(i) => self.peers[i].out.push_back(f),
                    None => unreachable!("workers only send frames to remote workers"),
                }
            }
        }
        any
    }

    /// Writes queued frames until the sockets would block; true if anything was written.
    fn write_all(&mut self) -> Result<bool, Stop> {
        let mut any = false;
        let mut unblocked = false;
        for p in &mut self.peers {
            let queued = &self.signal.out_bytes[p.process];
            while p.writable && !p.out.is_empty() && !p.closed {
                let mut slices = Vec::with_capacity(64);
                slices.push(IoSlice::new(&p.out[0][p.written..]));
                slices.extend(p.out.iter().skip(1).take(63).map(|f| IoSlice::new(f)));
                match p.stream.write_vectored(&slices) {
                    Ok(0) => return Err(lost(p, "the connection closed")),
                    Ok(mut n) => {
                        any = true;
                        p.said = Instant::now();
                        let mut done = 0;
                        let mut frames = 0;
                        let wrote = n;
                        while n > 0 {
                            let left = p.out[0].len() - p.written;
                            if n >= left {
                                n -= left;
                                let f = p.out.pop_front().expect("written from it");
                                done += f.len();
                                frames += 1;
                                p.written = 0;
                            } else {
                                p.written += n;
                                n = 0;
                            }
                        }
                        let t = &self.signal.traffic[p.process];
                        t.sent_bytes.fetch_add(wrote as u64, Ordering::Relaxed);
                        t.sent_frames.fetch_add(frames, Ordering::Relaxed);
                        // Frames the network thread made itself (heartbeats, shutdown)
                        // were never counted; saturate rather than wrap.
                        let before = queued
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                                Some(b.saturating_sub(done))
                            })
                            .unwrap_or(0);
                        if before >= OUT_BUDGET && before.saturating_sub(done) < OUT_BUDGET {
                            // The workers stopped their sources for this peer and may
                            // have parked: there is room again.
                            unblocked = true;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => p.writable = false,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(lost(p, &e.to_string())),
                }
            }
        }
        if unblocked {
            for w in 0..self.workers_per_proc {
                self.shared.wake(w);
            }
        }
        Ok(any)
    }

    /// Reads every readable socket until it would block (unless a worker's inbound
    /// budget is full); true if anything was read.
    fn read_all(&mut self) -> Result<bool, Stop> {
        let mut any = false;
        for i in 0..self.peers.len() {
            loop {
                if self.reading_paused() {
                    return Ok(any);
                }
                let p = &mut self.peers[i];
                if !p.readable || p.closed {
                    break;
                }
                match p.reader.read_from(&mut p.stream) {
                    Ok(0) => {
                        p.closed = true;
                        if !p.got_shutdown {
                            let why = if p.reader.pending() > 0 {
                                "the connection closed in the middle of a frame"
                            } else {
                                "the connection closed before the run ended"
                            };
                            return Err(lost(p, why));
                        }
                    }
                    Ok(n) => {
                        any = true;
                        p.heard = Instant::now();
                        self.signal.traffic[p.process]
                            .recv_bytes
                            .fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => p.readable = false,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if !p.got_shutdown {
                            return Err(lost(p, &e.to_string()));
                        }
                        p.closed = true;
                    }
                }
                self.route_frames(i)?;
            }
        }
        Ok(any)
    }

    /// Checks and routes the complete frames read from peer `i`.
    fn route_frames(&mut self, i: usize) -> Result<(), Stop> {
        let base = self.base();
        let n = self.workers_per_proc;
        loop {
            let p = &mut self.peers[i];
            let frame = match p.reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(protocol(p, &e.to_string())),
            };
            let h = frame.header;
            let kind = h.kind().expect("checked by the reader");
            self.signal.traffic[p.process]
                .recv_frames
                .fetch_add(1, Ordering::Relaxed);
            match kind {
                FrameKind::Heartbeat => continue,
                FrameKind::Shutdown => {
                    // Every worker of the peer sends EOF to each of ours on every
                    // channel before its process may say it is done.
                    // (Through shared memory, those go beside this connection.)
                    let expected = if p.control_only {
                        0
                    } else {
                        n * n * self.channels
                    };
                    if p.eofs < expected {
                        return Err(protocol(
                            p,
                            &format!(
                                "it said it finished after closing {} of its {expected} channel ends",
                                p.eofs
                            ),
                        ));
                    }
                    p.got_shutdown = true;
                    continue;
                }
                FrameKind::Abort => {
                    let message = escape_controls(&String::from_utf8_lossy(&frame.payload));
                    let relayed = h.epoch.get();
                    if relayed > 0 && (relayed - 1) as usize != self.me {
                        let lost_p = (relayed - 1) as usize;
                        if let Some(address) = self.addresses.get(lost_p) {
                            return Err(Stop::Peer(Error::PeerLost {
                                process: lost_p,
                                address: address.clone(),
                                reason: format!("{message} (reported by process {})", p.process),
                            }));
                        }
                    }
                    return Err(Stop::Peer(Error::PeerFailed {
                        process: p.process,
                        message,
                    }));
                }
                FrameKind::Data | FrameKind::Progress | FrameKind::Eof if p.control_only => {
                    return Err(protocol(
                        p,
                        "a data frame on the control connection of a peer reached through shared memory",
                    ));
                }
                FrameKind::Eof => p.eofs += 1,
                FrameKind::Data | FrameKind::Progress => {}
            }
            let from = h.from.get() as usize;
            let to = h.to.get() as usize;
            let theirs = p.process * n..(p.process + 1) * n;
            if !theirs.contains(&from)
                || !(base..base + n).contains(&to)
                || h.channel.get() as usize >= self.channels
            {
                return Err(protocol(
                    p,
                    &format!(
                        "frame from worker {from} to worker {to} on channel {} is out of range",
                        h.channel.get()
                    ),
                ));
            }
            let w = to - base;
            self.signal.in_bytes[w].fetch_add(frame.payload.len(), Ordering::AcqRel);
            if self.to_workers[w].send(frame) {
                self.shared.wake(w);
            }
        }
    }

    /// Moves held frames into worker rings that have room.
    fn deliver_pending(&mut self) -> bool {
        let mut any = false;
        for (w, out) in self.to_workers.iter_mut().enumerate() {
            if out.queued() > 0 && out.retry() {
                self.shared.wake(w);
                any = true;
            }
        }
        any
    }

    /// Tells every connected peer why this process stops, best effort within a bound:
    /// its own failure, or (when it stops because a peer was lost) which peer, so that
    /// every survivor names the process that died.
    fn broadcast_abort(&mut self) {
        let (message, relay) = match self.shared.peer_cause() {
            // The failing process told every peer itself.
            Some(PeerCause::Failed) => return self.close_all(),
            Some(PeerCause::Lost(p)) => (
                self.shared
                    .error_message()
                    .unwrap_or_else(|| "connection lost".to_string()),
                p as u64 + 1,
            ),
            None => (
                self.shared
                    .error_message()
                    .unwrap_or_else(|| "a worker failed".to_string()),
                0,
            ),
        };
        for p in &mut self.peers {
            if relay > 0 && p.process as u64 + 1 == relay {
                // The lost peer gets nothing more: waiting to write to it would only
                // delay telling the others.
                p.out.clear();
                p.closed = true;
                continue;
            }
            if p.closed {
                continue;
            }
            let mut f = Vec::new();
            start_frame(
                &mut f,
                FrameKind::Abort,
                0,
                (self.me * self.workers_per_proc) as u32,
                0,
                relay,
            );
            f.extend_from_slice(message.as_bytes());
            if finish_frame(&mut f).is_ok() {
                // Drop what was queued (the run is over, only the reason matters), but
                // finish a frame already half written, or the stream would not parse.
                let partial = if p.written > 0 {
                    p.out.pop_front()
                } else {
                    None
                };
                p.out.clear();
                p.out.extend(partial);
                p.out.push_back(f);
            }
        }
        let deadline = Instant::now() + ABORT_FLUSH;
        while Instant::now() < deadline && self.peers.iter().any(|p| !p.out.is_empty() && !p.closed)
        {
            for p in &mut self.peers {
                p.writable = true;
            }
            if self.write_all().is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.close_all();
    }

    /// Closes every connection: our side first (so what we wrote arrives before the
    /// FIN), then, briefly, reads what the peer still sends, so that closing with unread
    /// bytes does not make the kernel reset the connection and discard what we wrote.
    fn close_all(&mut self) {
        for p in &mut self.peers {
            let _ = p.stream.shutdown(Shutdown::Write);
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        let mut sink = [0u8; 16 << 10];
        while Instant::now() < deadline {
            let mut open = false;
            for p in &mut self.peers {
                if p.closed {
                    continue;
                }
                match std::io::Read::read(&mut p.stream, &mut sink) {
                    Ok(0) => p.closed = true,
                    Ok(_) => open = true,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open = true,
                    Err(_) => p.closed = true,
                }
            }
            if !open {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A peer's text with control characters (terminal escapes, newlines) escaped, so a
/// message from another process cannot redraw this one's terminal.
pub(crate) fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn lost(p: &Peer, reason: &str) -> Stop {
    Stop::Peer(Error::PeerLost {
        process: p.process,
        address: p.address.clone(),
        reason: reason.to_string(),
    })
}

fn protocol(p: &Peer, what: &str) -> Stop {
    Stop::Peer(Error::PeerLost {
        process: p.process,
        address: p.address.clone(),
        reason: format!("protocol error: {what}"),
    })
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_controls("red \u{1b}[31mX\u{1b}[0m\nnext"),
            "red \\u{1b}[31mX\\u{1b}[0m\\nnext"
        );
        assert_eq!(escape_controls("plain: ok"), "plain: ok");
    }
}
