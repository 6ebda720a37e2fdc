//! How frames reach the workers of other processes: the seam between the exchange and
//! the transports (ARCHITECTURE.md, "Transports").
//!
//! Three transports, one seam:
//! * `threads`: within a process, exchange channels move batches between worker
//!   threads through rtrb rings, by pointer, allocated per channel id;
//! * `shm`: between processes of this host, frames ([`crate::base::frame`]) through
//!   SPSC rings in shared-memory segments, written and read by the workers themselves;
//! * TCP (`net`): between hosts, frames through the process's network thread.
//!
//! A channel encodes a batch bound for another process into a frame and hands it to
//! the worker's `Remote`, which picks shared memory or TCP by the target's process;
//! which one each peer gets is agreed when the cluster forms (`agree`), under
//! `--transport auto|tcp|shm` ([`Mode`]).

pub(crate) mod agree;
pub(crate) mod shm;
pub(crate) mod threads;

pub use agree::offer_message;

use serde::{Deserialize, Serialize};

use crate::base::epoch::EOF_EPOCH;
use crate::base::frame::{finish_frame, start_frame, FrameHeader, FrameKind};
use crate::error::Result;
use crate::net::io::NetPort;
pub(crate) use shm::FrameFn;
use shm::ShmPort;

/// Which transport processes use between them (`--transport`, `WAXFAST_TRANSPORT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Shared memory to processes of this host, TCP to the others.
    #[default]
    Auto,
    /// TCP to every process.
    Tcp,
    /// Shared memory to every process; a process on another host is an error.
    Shm,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Tcp => "tcp",
            Mode::Shm => "shm",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Mode, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "tcp" => Ok(Mode::Tcp),
            "shm" => Ok(Mode::Shm),
            other => Err(format!(
                "unknown transport {other:?}: expected auto, tcp or shm"
            )),
        }
    }
}

/// A worker's way to the workers of other processes: shared memory to those of this
/// host, the network thread to the rest.
#[derive(Debug)]
pub(crate) struct Remote {
    workers_per_proc: usize,
    tcp: Option<NetPort>,
    shm: Option<ShmPort>,
    /// Which of the two `recv` asks first (alternating, so neither starves).
    shm_first: bool,
    /// Some data goes through the network thread (a peer on another host, or TCP
    /// chosen): a spinning worker must leave it the core now and then.
    net_data: bool,
}

impl Remote {
    /// `net_data`: whether any peer's data goes through the network thread.
    pub(crate) fn new(
        workers_per_proc: usize,
        tcp: Option<NetPort>,
        shm: Option<ShmPort>,
        net_data: bool,
    ) -> Self {
        let net_data = net_data && tcp.is_some();
        Remote {
            workers_per_proc,
            tcp,
            shm,
            shm_first: true,
            net_data,
        }
    }

    /// Whether frames to or from some peer go through the network thread.
    pub(crate) fn uses_net_thread(&self) -> bool {
        self.net_data
    }

    /// A buffer for the next frame.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        let reused = match (&mut self.shm, &mut self.tcp) {
            (Some(s), _) => s.spare(),
            (None, Some(t)) => t.spare(),
            (None, None) => None,
        };
        reused.unwrap_or_default()
    }

    /// This worker finished its work (and handed every frame over): the network thread
    /// may tell the peers once every local worker has.
    pub(crate) fn finished(&self) {
        if let Some(t) = &self.tcp {
            t.finished();
        }
    }

    /// Writes a frame to worker `to` in place, if shared memory reaches it and has room
    /// now (see [`ShmPort::send_in_place`]); false if the caller must
    /// [`send`](Self::send) it.
    pub(crate) fn send_in_place(
        &mut self,
        to: usize,
        header: FrameHeader,
        write: impl FnOnce(&mut [u8]),
    ) -> bool {
        match &mut self.shm {
            Some(s) => s.send_in_place(to, header, write),
            None => false,
        }
    }

    /// Queues a finished frame for worker `to` of another process.
    pub(crate) fn send(&mut self, to: usize, frame: Vec<u8>) {
        match &mut self.shm {
            Some(s) if s.reaches(to) => s.send(to, frame),
            _ => self
                .tcp
                .as_mut()
                .unwrap_or_else(|| {
                    panic!(
                        "no transport to worker {to} (process {})",
                        to / self.workers_per_proc
                    )
                })
                .send(to, frame),
        }
    }

    /// Sends a progress (or EOF) frame.
    pub(crate) fn send_progress(&mut self, channel: u32, from: usize, to: usize, epoch: u64) {
        let kind = if epoch == EOF_EPOCH {
            FrameKind::Eof
        } else {
            FrameKind::Progress
        };
        let mut f = self.buffer();
        start_frame(&mut f, kind, channel, from as u32, to as u32, epoch);
        finish_frame(&mut f).expect("empty payload");
        self.send(to, f);
    }

    /// Hands the next received frame, from either transport, to `f`; false if none
    /// came. `f` runs while this port is borrowed (a shared-memory frame is read where
    /// it lies in its ring).
    pub(crate) fn recv_with(&mut self, f: &mut FrameFn<'_>) -> Result<bool> {
        self.shm_first = !self.shm_first;
        if self.shm_first {
            if self.recv_shm(f)? {
                return Ok(true);
            }
            self.recv_tcp(f)
        } else {
            if self.recv_tcp(f)? {
                return Ok(true);
            }
            self.recv_shm(f)
        }
    }

    fn recv_shm(&mut self, f: &mut FrameFn<'_>) -> Result<bool> {
        match &mut self.shm {
            Some(s) => s.recv_with(f),
            None => Ok(false),
        }
    }

    fn recv_tcp(&mut self, f: &mut FrameFn<'_>) -> Result<bool> {
        let Some(frame) = self.tcp.as_mut().and_then(|t| t.recv()) else {
            return Ok(false);
        };
        let r = f(&frame.header, &frame.payload);
        self.recycle(frame.payload);
        r.map(|()| true)
    }

    /// Returns a received frame's buffer for reuse by outbound frames.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        match (&mut self.shm, &mut self.tcp) {
            (Some(s), _) => s.recycle(buf),
            (None, Some(t)) => t.recycle(buf),
            (None, None) => {}
        }
    }

    /// Retries queued frames; true if anything moved.
    pub(crate) fn flush(&mut self) -> bool {
        let a = self.shm.as_mut().is_some_and(|s| s.flush());
        let b = self.tcp.as_mut().is_some_and(|t| t.flush());
        a || b
    }

    pub(crate) fn has_overflow(&self) -> bool {
        self.shm.as_ref().is_some_and(|s| s.has_overflow())
            || self.tcp.as_ref().is_some_and(|t| t.has_overflow())
    }

    /// True while frames to some peer wait beyond its budget: the worker stops
    /// polling its sources.
    pub(crate) fn is_backlogged(&self) -> bool {
        self.shm.as_ref().is_some_and(|s| s.is_backlogged())
            || self.tcp.as_ref().is_some_and(|t| t.is_backlogged())
    }

    /// True if a frame is waiting (checked before parking).
    pub(crate) fn has_inbound(&mut self) -> bool {
        self.shm.as_mut().is_some_and(|s| s.has_inbound())
            || self.tcp.as_ref().is_some_and(|t| t.has_inbound())
    }
}
