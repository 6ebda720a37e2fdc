//! The network thread: one mio poll loop per process moves frames between this
//! process's workers and the sockets to every other process.
//!
//! Workers encode batches into frames themselves and hand them over through one SPSC
//! ring per worker ([`NetPort`]); the network thread only writes and reads bytes, so its
//! load does not grow with the cost of encoding. Received frames are checked (kind,
//! length, worker and channel indices) and handed to the target worker through that
//! worker's inbound ring.

use std::collections::VecDeque;
use std::io::{IoSlice, Write};
use std::net::Shutdown;
use std::ops::Range;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use rtrb::{Consumer, Producer, RingBuffer};

use super::frame::{finish_frame, start_frame, Frame, FrameHeader, FrameKind, FrameReader};
use crate::error::Error;
use crate::runtime::park::Shared;

/// Frames a worker may have queued for the network thread, and the network thread for
/// a worker, before the overflow queues take over.
const PORT_CAPACITY: usize = 1024;
/// Inbound frames held for a full worker ring before reading from sockets pauses.
const PENDING_LIMIT: usize = 256;
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
    out: Producer<Vec<u8>>,
    overflow: VecDeque<Vec<u8>>,
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
    /// A buffer for the next frame.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Queues a finished frame for the network thread.
    pub(crate) fn send(&mut self, frame: Vec<u8>) {
        if self.overflow.is_empty() {
            match self.out.push(frame) {
                Ok(()) => self.signal.notify(),
                Err(rtrb::PushError::Full(f)) => self.overflow.push_back(f),
            }
        } else {
            self.overflow.push_back(frame);
        }
    }

    /// Sends a progress (or EOF) frame.
    pub(crate) fn send_progress(&mut self, channel: u32, from: usize, to: usize, epoch: u64) {
        let kind = if epoch == crate::runtime::progress::EOF_EPOCH {
            FrameKind::Eof
        } else {
            FrameKind::Progress
        };
        let mut f = self.buffer();
        start_frame(&mut f, kind, channel, from as u32, to as u32, epoch);
        finish_frame(&mut f).expect("empty payload");
        self.send(f);
    }

    /// Retries overflow; true if anything moved.
    pub(crate) fn flush(&mut self) -> bool {
        let mut moved = false;
        while let Some(f) = self.overflow.pop_front() {
            match self.out.push(f) {
                Ok(()) => moved = true,
                Err(rtrb::PushError::Full(f)) => {
                    self.overflow.push_front(f);
                    break;
                }
            }
        }
        if moved {
            self.signal.notify();
        }
        moved
    }

    pub(crate) fn has_overflow(&self) -> bool {
        !self.overflow.is_empty()
    }

    pub(crate) fn is_backlogged(&self) -> bool {
        self.overflow.len() >= PORT_CAPACITY
    }

    pub(crate) fn has_inbound(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// The next received frame.
    pub(crate) fn recv(&mut self) -> Option<Frame> {
        self.inbox.pop().ok()
    }

    /// Returns a received frame's buffer for reuse by outbound frames.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < 64 {
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
    to_workers: Vec<Producer<Frame>>,
    pending: Vec<VecDeque<Frame>>,
}

/// Wires the network thread to `workers_per_proc` ports over already-formed
/// connections (`streams[p]` for every process `p` but `me`).
pub(crate) fn start(
    streams: Vec<Option<std::net::TcpStream>>,
    addresses: &[String],
    me: usize,
    workers_per_proc: usize,
    channels: usize,
    shared: Arc<Shared>,
) -> std::io::Result<(NetThread, Vec<NetPort>)> {
    let poll = Poll::new()?;
    let signal = Arc::new(NetSignal {
        waker: Waker::new(poll.registry(), WAKER)?,
        sleeping: AtomicBool::new(false),
        finished: AtomicUsize::new(0),
    });
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
        });
    }
    let base = me * workers_per_proc;
    let mut ports = Vec::new();
    let mut from_workers = Vec::new();
    let mut to_workers = Vec::new();
    for _ in 0..workers_per_proc {
        let (out, from_w) = RingBuffer::new(PORT_CAPACITY);
        let (to_w, inbox) = RingBuffer::new(PORT_CAPACITY);
        from_workers.push(from_w);
        to_workers.push(to_w);
        ports.push(NetPort {
            local: base..base + workers_per_proc,
            out,
            overflow: VecDeque::new(),
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
        pending: (0..workers_per_proc).map(|_| VecDeque::new()).collect(),
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
                return;
            }
            let paused = self.pending.iter().any(|q| !q.is_empty());
            let timeout = if busy {
                Some(Duration::ZERO)
            } else if paused {
                Some(Duration::from_micros(200))
            } else {
                Some(Duration::from_millis(100))
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
        for p in &mut self.peers {
            while p.writable && !p.out.is_empty() && !p.closed {
                let mut slices = Vec::with_capacity(64);
                slices.push(IoSlice::new(&p.out[0][p.written..]));
                slices.extend(p.out.iter().skip(1).take(63).map(|f| IoSlice::new(f)));
                match p.stream.write_vectored(&slices) {
                    Ok(0) => return Err(lost(p, "the connection closed")),
                    Ok(mut n) => {
                        any = true;
                        while n > 0 {
                            let left = p.out[0].len() - p.written;
                            if n >= left {
                                n -= left;
                                p.out.pop_front();
                                p.written = 0;
                            } else {
                                p.written += n;
                                n = 0;
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => p.writable = false,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(lost(p, &e.to_string())),
                }
            }
        }
        Ok(any)
    }

    /// Reads every readable socket until it would block (unless a worker's inbound
    /// queue is full); true if anything was read.
    fn read_all(&mut self) -> Result<bool, Stop> {
        let mut any = false;
        for i in 0..self.peers.len() {
            loop {
                if self.pending.iter().any(|q| q.len() >= PENDING_LIMIT) {
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
                            return Err(lost(p, "the connection closed before the run ended"));
                        }
                    }
                    Ok(_) => any = true,
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
            match kind {
                FrameKind::Shutdown => {
                    p.got_shutdown = true;
                    continue;
                }
                FrameKind::Abort => {
                    let message = String::from_utf8_lossy(&frame.payload).into_owned();
                    return Err(Stop::Peer(Error::PeerFailed {
                        process: p.process,
                        message,
                    }));
                }
                FrameKind::Data | FrameKind::Progress | FrameKind::Eof => {}
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
            if self.pending[w].is_empty() {
                if let Err(rtrb::PushError::Full(f)) = self.to_workers[w].push(frame) {
                    self.pending[w].push_back(f);
                } else {
                    self.shared.wake(w);
                }
            } else {
                self.pending[w].push_back(frame);
            }
        }
    }

    /// Moves held frames into worker rings that have room.
    fn deliver_pending(&mut self) -> bool {
        let mut any = false;
        for w in 0..self.pending.len() {
            let mut moved = false;
            while let Some(f) = self.pending[w].pop_front() {
                match self.to_workers[w].push(f) {
                    Ok(()) => moved = true,
                    Err(rtrb::PushError::Full(f)) => {
                        self.pending[w].push_front(f);
                        break;
                    }
                }
            }
            if moved {
                self.shared.wake(w);
                any = true;
            }
        }
        any
    }

    /// Tells every connected peer this process failed, best effort within a bound.
    fn broadcast_abort(&mut self) {
        let message = self
            .shared
            .error_message()
            .unwrap_or_else(|| "a worker failed".to_string());
        if self.shared.error_is_from_peer() {
            // The failure came from another process; it has been told already, and the
            // others learn of it from their own connections.
            return;
        }
        for p in &mut self.peers {
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
                0,
            );
            f.extend_from_slice(message.as_bytes());
            if finish_frame(&mut f).is_ok() {
                // Drop what was queued: the run is over, only the reason matters.
                p.out.clear();
                p.written = 0;
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
        for p in &mut self.peers {
            let _ = p.stream.shutdown(Shutdown::Both);
        }
    }
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
