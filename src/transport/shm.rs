//! The shared-memory transport: frames between the workers of two processes of one
//! host, through SPSC rings in segments under `/dev/shm` (ARCHITECTURE.md,
//! "Transports").
//!
//! Every process that has peers on this host creates one segment: a doorbell per worker
//! of its own, then one ring per (own worker, worker of a peer on this host), written
//! by the own worker and read by the peer's. So a worker reads one ring per remote
//! worker and writes one per remote worker, each with exactly one producer and one
//! consumer, and no thread sits between a worker and the memory.
//!
//! A ring carries the same frames as TCP (`net::frame`: a 32-byte header, then the
//! payload). A frame larger than a ring's [`chunk`] goes as several records: the first
//! holds the header and the start of the payload, the next ones the rest, in order (a
//! ring has one producer, so nothing comes between them); the header's length says when
//! the frame is whole. A full ring is backpressure: what does not fit waits in the
//! lane's queue, retried every round, and a queue of [`QUEUE_FRAMES`] frames or
//! [`QUEUE_BYTES`] bytes stops the worker's sources, as a full queue to the network
//! thread does.

use std::sync::Arc;

use crate::base::frame::{FrameHeader, FrameKind, HEADER_LEN};
use crate::base::queue::{Lane, Outbox};
use crate::error::Error;
use crate::shm::ring::{max_payload, Consumer, Producer, RingMemory};
use crate::shm::segment::{SegRing, Segment};

/// Where a frame's number goes in its header (the `reserved` word).
const SEQ_AT: usize = HEADER_LEN - 4;
/// Data bytes of each ring.
pub(crate) const RING_BYTES: u64 = 4 << 20;
/// Frames waiting for room in one lane before the worker stops reading input.
const QUEUE_FRAMES: usize = 64;
/// Bytes waiting in one lane before the worker stops reading input.
const QUEUE_BYTES: usize = 4 << 20;

/// The largest record a ring of `capacity` bytes is given: a quarter of it, so a
/// frame split into records keeps the ring busy with the next one while the reader
/// takes the first.
fn chunk(capacity: usize) -> usize {
    (capacity / 4).min(max_payload(capacity))
}

/// One process's side of the shared-memory transport: its own segment (its workers'
/// doorbells and outbound rings) and the segments of its peers on this host.
#[derive(Debug)]
pub(crate) struct ShmLinks {
    /// This process's index.
    pub(crate) process: usize,
    /// Workers per process.
    pub(crate) workers: usize,
    pub(crate) own: Arc<Segment>,
    /// For each process on this host: its segment and the first of its rings to us.
    pub(crate) peers: Vec<Option<(Arc<Segment>, u32)>>,
    /// For each process on this host: the first of our rings to it.
    pub(crate) bases: Vec<Option<u32>>,
}

impl ShmLinks {
    /// Local worker `i`'s port: its outbound and inbound rings, and the doorbells of
    /// the workers at their other ends.
    pub(crate) fn port(&self, i: usize) -> ShmPort {
        let w = self.workers;
        let total = self.peers.len() * w;
        let mut outs: Vec<Option<OutLane>> = (0..total).map(|_| None).collect();
        let mut ins = Vec::new();
        for (q, peer) in self.peers.iter().enumerate() {
            let (Some((seg, their_base)), Some(our_base)) = (peer, self.bases[q]) else {
                continue;
            };
            for j in 0..w {
                let ring = self.own.ring(our_base as usize + i * w + j);
                outs[q * w + j] = Some(OutLane {
                    out: Outbox::new(FrameRing {
                        chunk: chunk(RingMemory::capacity(&ring)),
                        ring: Producer::new(ring),
                        sent: 0,
                        wrote: false,
                        written: None,
                    }),
                    bell: (seg.clone(), j),
                    seq: 0,
                });
                let ring = seg.ring(*their_base as usize + j * w + i);
                ins.push(InLane {
                    from: q * w + j,
                    ring: Consumer::new(ring),
                    bell: (seg.clone(), j),
                    partial: None,
                    seq: 0,
                });
            }
        }
        ShmPort {
            me: self.process * w + i,
            outs,
            ins,
            next: 0,
            spare: Vec::new(),
        }
    }
}

/// A ring of bytes to one remote worker, taking frames in records of at most `chunk`
/// bytes (a frame may take several offers; the ring keeps its place in it).
struct FrameRing {
    ring: Producer<SegRing>,
    chunk: usize,
    /// Bytes of the frame being written that are in the ring already.
    sent: usize,
    /// A record was written since the receiver was last rung.
    wrote: bool,
    /// The last frame written whole, for the port to reuse its buffer.
    written: Option<Vec<u8>>,
}

impl Lane for FrameRing {
    type Item = Vec<u8>;
    fn offer(&mut self, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        while self.sent < frame.len() {
            let end = (self.sent + self.chunk).min(frame.len());
            if !self.ring.push(&frame[self.sent..end]) {
                return Err(frame);
            }
            self.wrote = true;
            self.sent = end;
        }
        self.sent = 0;
        self.written = Some(frame);
        Ok(())
    }
    fn weight(frame: &Vec<u8>) -> usize {
        frame.len()
    }
}

/// Frames to one remote worker.
struct OutLane {
    out: Outbox<FrameRing>,
    /// The receiver's doorbell: its process's segment and its index there.
    bell: (Arc<Segment>, usize),
    /// The next frame's number on this ring (in the header's `reserved` word).
    seq: u32,
}

impl OutLane {
    /// Rings the receiver if a record went into its ring.
    fn rang(&mut self) -> bool {
        let ring = self.out.ring_mut();
        let wrote = std::mem::take(&mut ring.wrote);
        if wrote {
            self.bell.0.bell(self.bell.1).ring();
        }
        wrote
    }
}

/// Frames from one remote worker.
struct InLane {
    /// The sender's global index.
    from: usize,
    ring: Consumer<SegRing>,
    /// The sender's doorbell (it may wait for room).
    bell: (Arc<Segment>, usize),
    /// A frame whose payload is still arriving in records.
    partial: Option<(FrameHeader, Vec<u8>)>,
    /// The number the next frame must carry.
    seq: u32,
}

/// A worker's end of the shared-memory transport.
pub(crate) struct ShmPort {
    /// Our global index.
    me: usize,
    /// Indexed by global worker; `Some` for the workers reached through shared memory.
    outs: Vec<Option<OutLane>>,
    ins: Vec<InLane>,
    /// The inbound lane to read first next time (round robin).
    next: usize,
    spare: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ShmPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmPort")
            .field("me", &self.me)
            .field("inbound", &self.ins.len())
            .finish()
    }
}

impl ShmPort {
    /// True if worker `to` is reached through shared memory.
    pub(crate) fn reaches(&self, to: usize) -> bool {
        self.outs.get(to).is_some_and(|l| l.is_some())
    }

    /// A buffer for the next frame, if one was recycled.
    pub(crate) fn spare(&mut self) -> Option<Vec<u8>> {
        self.spare.pop()
    }

    /// Keeps an emptied buffer for the next frames.
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < 16 {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Sends a finished frame to worker `to` (see [`reaches`](Self::reaches)).
    pub(crate) fn send(&mut self, to: usize, mut frame: Vec<u8>) {
        let lane = self.outs[to]
            .as_mut()
            .expect("frames go through shared memory only to workers it reaches");
        frame[SEQ_AT..HEADER_LEN].copy_from_slice(&lane.seq.to_le_bytes());
        lane.seq = lane.seq.wrapping_add(1);
        lane.out.send(frame);
        lane.rang();
        self.reclaim(to);
    }

    /// Writes a frame to worker `to` straight into its ring: `header` (whose `len` is
    /// the payload's), then the payload, which `write` fills in place. False (and
    /// `write` not called) unless the frame fits one record, nothing waits in the
    /// lane's queue (frames keep their order) and the ring has room now: the caller
    /// then sends it the usual way.
    pub(crate) fn send_in_place(
        &mut self,
        to: usize,
        mut header: FrameHeader,
        write: impl FnOnce(&mut [u8]),
    ) -> bool {
        let Some(lane) = self.outs.get_mut(to).and_then(|l| l.as_mut()) else {
            return false;
        };
        let total = HEADER_LEN + header.len.get() as usize;
        if lane.out.queued() > 0 || total > lane.out.ring_mut().chunk {
            return false;
        }
        header.reserved = lane.seq.into();
        let ring = lane.out.ring_mut();
        let placed = ring.ring.push_with(total, |buf| {
            let (head, payload) = buf.split_at_mut(HEADER_LEN);
            head.copy_from_slice(zerocopy::IntoBytes::as_bytes(&header));
            write(payload);
        });
        if !placed {
            return false;
        }
        ring.wrote = true;
        lane.seq = lane.seq.wrapping_add(1);
        lane.rang();
        true
    }

    /// Keeps the buffer of the frame lane `to` last wrote whole, for the next frames
    /// (a frame's buffer has the room of a whole batch; reusing it saves growing a
    /// smaller one).
    fn reclaim(&mut self, to: usize) {
        if let Some(lane) = self.outs[to].as_mut() {
            if let Some(buf) = lane.out.ring_mut().written.take() {
                self.recycle(buf);
            }
        }
    }

    /// Retries queued frames; true if anything moved.
    pub(crate) fn flush(&mut self) -> bool {
        let mut moved = false;
        for to in 0..self.outs.len() {
            let Some(lane) = self.outs[to].as_mut() else {
                continue;
            };
            if lane.out.queued() > 0 {
                lane.out.retry();
                moved |= lane.rang();
                self.reclaim(to);
            }
        }
        moved
    }

    pub(crate) fn has_overflow(&self) -> bool {
        self.outs.iter().flatten().any(|l| l.out.queued() > 0)
    }

    pub(crate) fn is_backlogged(&self) -> bool {
        self.outs
            .iter()
            .flatten()
            .any(|l| l.out.queued() >= QUEUE_FRAMES || l.out.weight() >= QUEUE_BYTES)
    }

    pub(crate) fn has_inbound(&mut self) -> bool {
        self.ins.iter_mut().any(|l| !l.ring.is_empty())
    }

    /// Hands the next whole frame from any inbound ring (round robin over the senders)
    /// to `f`; false if none was whole. A frame that fits one record is read where it
    /// lies in the ring, uncopied.
    pub(crate) fn recv_with(&mut self, f: &mut FrameFn<'_>) -> Result<bool, Error> {
        let n = self.ins.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if self.take(i, f)? {
                self.next = (i + 1) % n;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The next whole frame, copied out (for tests).
    #[cfg(test)]
    pub(crate) fn recv(&mut self) -> Result<Option<crate::base::frame::Frame>, Error> {
        let mut got = None;
        self.recv_with(&mut |header, payload| {
            got = Some(crate::base::frame::Frame {
                header: *header,
                payload: payload.to_vec(),
            });
            Ok(())
        })?;
        Ok(got)
    }

    /// Reads lane `i` until a frame is whole (handing it to `f`: true) or the ring is
    /// empty (false).
    fn take(&mut self, i: usize, f: &mut FrameFn<'_>) -> Result<bool, Error> {
        let me = self.me;
        let spare = &mut self.spare;
        let lane = &mut self.ins[i];
        let mut took = false;
        let result = loop {
            match lane.partial.take() {
                None => {
                    let (from, seq) = (lane.from, &mut lane.seq);
                    let Some(r) = lane.ring.pop_with(|rec| {
                        let header = check(rec, rec.len(), from, me)?;
                        if header.reserved.get() != *seq {
                            return Err(corrupt(
                                from,
                                &format!(
                                    "frame {} arrived where frame {} was due",
                                    header.reserved.get(),
                                    *seq
                                ),
                            ));
                        }
                        *seq = seq.wrapping_add(1);
                        let body = &rec[HEADER_LEN..];
                        let want = header.len.get() as usize;
                        if body.len() > want {
                            return Err(too_long(from, body.len(), want));
                        }
                        if body.len() == want {
                            f(&header, body)?;
                            return Ok(None);
                        }
                        let mut payload = spare.pop().unwrap_or_default();
                        payload.clear();
                        payload.extend_from_slice(body);
                        Ok(Some((header, payload)))
                    }) else {
                        break Ok(false);
                    };
                    took = true;
                    match r {
                        Err(e) => break Err(e),
                        Ok(None) => break Ok(true),
                        Ok(Some(partial)) => lane.partial = Some(partial),
                    }
                }
                Some((header, mut payload)) => {
                    let want = header.len.get() as usize;
                    if payload.len() >= want {
                        if payload.len() > want {
                            break Err(too_long(lane.from, payload.len(), want));
                        }
                        let r = f(&header, &payload);
                        if spare.len() < 16 {
                            spare.push(payload);
                        }
                        break r.map(|()| true);
                    }
                    let more = lane.ring.pop_append(&mut payload);
                    lane.partial = Some((header, payload));
                    if !more {
                        break Ok(false);
                    }
                    took = true;
                }
            }
        };
        if took {
            // The sender may be waiting for room.
            lane.bell.0.bell(lane.bell.1).ring();
        }
        result
    }
}

/// What takes a received frame: its header and its payload.
pub(crate) type FrameFn<'a> = dyn FnMut(&FrameHeader, &[u8]) -> Result<(), Error> + 'a;

fn too_long(from: usize, got: usize, want: usize) -> Error {
    corrupt(from, &format!("{got} payload bytes for a frame of {want}"))
}

/// Checks a frame's header as it comes out of the ring from worker `from` to `me`.
fn check(head: &[u8], record: usize, from: usize, me: usize) -> Result<FrameHeader, Error> {
    if record < HEADER_LEN {
        return Err(corrupt(
            from,
            &format!("a record of {record} bytes has no frame header"),
        ));
    }
    let header = match FrameHeader::parse(head) {
        Ok(Some(h)) => h,
        Ok(None) => return Err(corrupt(from, "a short frame header")),
        Err(e) => return Err(corrupt(from, &e.to_string())),
    };
    let kind = header.kind().expect("checked by parse");
    if !matches!(kind, FrameKind::Data | FrameKind::Progress | FrameKind::Eof) {
        return Err(corrupt(from, &format!("a {kind:?} frame in a data ring")));
    }
    if header.from.get() as usize != from || header.to.get() as usize != me {
        return Err(corrupt(
            from,
            &format!(
                "a frame from worker {} to worker {} in the ring from worker {from} to worker {me}",
                header.from.get(),
                header.to.get()
            ),
        ));
    }
    Ok(header)
}

fn corrupt(from: usize, what: &str) -> Error {
    Error::Cluster(format!(
        "the shared-memory ring from worker {from} is corrupt: {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::frame::{finish_frame, start_frame};
    use crate::shm::segment::Layout;
    use std::time::Duration;

    /// Two processes' links, made in this one (the segments are real files).
    fn pair(dir: &std::path::Path, capacity: u64) -> (ShmLinks, ShmLinks) {
        let layout = Layout {
            bells: 1,
            rings: 1,
            capacity,
        };
        let a = Arc::new(Segment::create_in(dir, "a", layout).unwrap());
        let b = Arc::new(Segment::create_in(dir, "b", layout).unwrap());
        let a2 = Arc::new(Segment::open(a.path(), Duration::from_secs(1)).unwrap());
        let b2 = Arc::new(Segment::open(b.path(), Duration::from_secs(1)).unwrap());
        let links = |process: usize, own: Arc<Segment>, peer: Arc<Segment>| {
            let mut peers = vec![None, None];
            let mut bases = vec![None, None];
            peers[1 - process] = Some((peer, 0));
            bases[1 - process] = Some(0);
            ShmLinks {
                process,
                workers: 1,
                own,
                peers,
                bases,
            }
        };
        (links(0, a, b2), links(1, b, a2))
    }

    fn frame(n: u64, len: usize) -> Vec<u8> {
        let mut f = Vec::new();
        start_frame(&mut f, FrameKind::Data, 3, 0, 1, n);
        f.extend((0..len).map(|i| (i as u64 ^ n) as u8));
        finish_frame(&mut f).unwrap();
        f
    }

    #[test]
    fn frames_of_every_size_arrive_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 1 << 12;
        let (l0, l1) = pair(dir.path(), cap);
        let (mut tx, mut rx) = (l0.port(0), l1.port(0));
        assert!(tx.reaches(1) && !tx.reaches(0));
        // Up to three rings' worth: most frames take several records.
        let sizes = |n: u64| ((n * 977) % (3 * cap)) as usize;
        let (mut sent, mut got) = (0u64, 0u64);
        while got < 300 {
            if sent < 300 && !tx.is_backlogged() {
                tx.send(1, frame(sent, sizes(sent)));
                sent += 1;
            }
            tx.flush();
            got = take_in_order(&mut rx, got, sizes);
        }
        assert!(!tx.has_overflow() && !rx.has_inbound());
    }

    /// Takes every frame `rx` has, checking each is `frame(n, sizes(n))` for the next
    /// `n` from `got`; the new `got`.
    fn take_in_order(rx: &mut ShmPort, mut got: u64, sizes: impl Fn(u64) -> usize) -> u64 {
        while let Some(f) = rx.recv().unwrap() {
            assert_eq!(f.header.epoch.get(), got);
            assert_eq!(f.header.channel.get(), 3);
            assert!(
                f.payload == frame(got, sizes(got))[HEADER_LEN..],
                "frame {got}"
            );
            got += 1;
        }
        got
    }

    #[test]
    fn frames_written_in_place_keep_their_turn_among_queued_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 1 << 12;
        let (l0, l1) = pair(dir.path(), cap);
        let (mut tx, mut rx) = (l0.port(0), l1.port(0));
        let sizes = |n: u64| ((n * 389) % 1200) as usize; // some larger than a record
        let (mut sent, mut got, mut in_place) = (0u64, 0u64, 0);
        while got < 400 {
            if sent < 400 && !tx.is_backlogged() {
                let f = frame(sent, sizes(sent));
                let header = FrameHeader::parse(&f[..HEADER_LEN]).unwrap().unwrap();
                // Every other frame tries the in-place path; a refusal (no room, a
                // queue in front, or too large) falls back to the queue.
                let placed = sent % 2 == 0
                    && tx.send_in_place(1, header, |out| out.copy_from_slice(&f[HEADER_LEN..]));
                if placed {
                    in_place += 1;
                } else {
                    tx.send(1, f);
                }
                sent += 1;
            }
            tx.flush();
            got = take_in_order(&mut rx, got, sizes);
        }
        assert!(in_place > 20, "only {in_place} frames went in place");
        assert!(!tx.send_in_place(0, FrameHeader::new(FrameKind::Data, 0, 0, 0, 0, 0), |_| {}));
    }

    #[test]
    fn a_frame_for_another_worker_or_out_of_turn_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (l0, l1) = pair(dir.path(), 1 << 12);
        let (mut tx, mut rx) = (l0.port(0), l1.port(0));
        let mut wrong = frame(0, 8);
        wrong[16..20].copy_from_slice(&7u32.to_le_bytes()); // to: worker 7
        tx.send(1, wrong);
        let e = rx.recv().unwrap_err().to_string();
        assert!(e.contains("to worker 7"), "{e}");
        // A frame numbered out of turn (as a lost one would leave it).
        let (l0, l1) = pair(dir.path(), 1 << 12);
        let (mut tx, mut rx) = (l0.port(0), l1.port(0));
        tx.outs[1].as_mut().unwrap().seq = 5;
        tx.send(1, frame(0, 8));
        let e = rx.recv().unwrap_err().to_string();
        assert!(e.contains("frame 5 arrived where frame 0 was due"), "{e}");
    }
}
