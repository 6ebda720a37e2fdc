//! Frames: what travels on a connection between two processes.
//!
//! Every frame is a fixed-layout 32-byte [`FrameHeader`] (little-endian, read and written
//! in place with zerocopy) followed by `len` payload bytes. A data frame's payload is
//! one encoded batch (see `exchange::codec`); progress and EOF frames carry only the
//! epoch; an abort frame carries the failing process's error message as UTF-8; a
//! heartbeat carries nothing.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The largest payload a frame may announce. A batch is at most
/// 1024 items, so only a corrupt or hostile peer comes near it.
pub const MAX_FRAME: usize = 64 << 20;

/// Bytes in a [`FrameHeader`].
pub const HEADER_LEN: usize = std::mem::size_of::<FrameHeader>();

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A batch of channel `channel` from worker `from` to worker `to`, at `epoch`.
    Data = 1,
    /// Worker `from`'s frontier on `channel` advanced to `epoch`.
    Progress = 2,
    /// Worker `from` will send nothing more on `channel` (its frontier is EOF).
    Eof = 3,
    /// The sending process finished cleanly: it will send nothing more.
    Shutdown = 4,
    /// The sending process failed; the payload is its error message. With a non-zero
    /// `epoch`, it relays that process `epoch - 1` was lost (the payload says why), so
    /// that every survivor names the process that died, not the one that told it.
    Abort = 5,
    /// Nothing to send: the sender is alive (see `net::io`, liveness).
    Heartbeat = 6,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Data,
            2 => FrameKind::Progress,
            3 => FrameKind::Eof,
            4 => FrameKind::Shutdown,
            5 => FrameKind::Abort,
            6 => FrameKind::Heartbeat,
            _ => return None,
        })
    }
}

/// The fixed-layout header of every frame.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FrameHeader {
    /// Payload bytes after the header.
    pub len: U32,
    /// A [`FrameKind`] as a byte.
    pub kind: u8,
    /// Zero.
    pub pad: [u8; 3],
    /// The exchange channel (its index in the flow).
    pub channel: U32,
    /// Global index of the sending worker.
    pub from: U32,
    /// Global index of the receiving worker.
    pub to: U32,
    /// The epoch of a batch, or the frontier of a progress frame.
    pub epoch: U64,
    /// Zero on TCP; through shared memory, the frame's number on its ring (from 0,
    /// wrapping), which the receiver checks, so a frame lost or repeated by the
    /// transport is an error rather than a wrong result.
    pub reserved: U32,
}

/// Why bytes on a connection are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The kind byte is not a [`FrameKind`].
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// The announced payload is larger than [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte cap")]
    TooLarge(usize),
    /// A field is out of range for this cluster.
    #[error("{0}")]
    OutOfRange(String),
}

impl FrameHeader {
    /// A header for a frame of `kind`.
    pub fn new(kind: FrameKind, channel: u32, from: u32, to: u32, epoch: u64, len: u32) -> Self {
        FrameHeader {
            len: len.into(),
            kind: kind as u8,
            pad: [0; 3],
            channel: channel.into(),
            from: from.into(),
            to: to.into(),
            epoch: epoch.into(),
            reserved: 0.into(),
        }
    }

    /// The kind, checked.
    pub fn kind(&self) -> Result<FrameKind, FrameError> {
        FrameKind::from_u8(self.kind).ok_or(FrameError::Kind(self.kind))
    }

    /// Reads and checks a header from the start of `bytes`: `Ok(None)` if fewer than
    /// [`HEADER_LEN`] bytes are there yet.
    pub fn parse(bytes: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        let Ok((h, _)) = FrameHeader::read_from_prefix(bytes) else {
            return Ok(None);
        };
        h.kind()?;
        let len = h.len.get() as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        Ok(Some(h))
    }
}

/// Starts a frame in `out` (cleared): the header with a zero length, to be finished by
/// [`finish_frame`] once the payload is appended.
pub fn start_frame(
    out: &mut Vec<u8>,
    kind: FrameKind,
    channel: u32,
    from: u32,
    to: u32,
    epoch: u64,
) {
    out.clear();
    out.extend_from_slice(FrameHeader::new(kind, channel, from, to, epoch, 0).as_bytes());
}

/// Writes the payload length into a frame begun with [`start_frame`].
pub fn finish_frame(out: &mut [u8]) -> Result<(), FrameError> {
    let len = out.len() - HEADER_LEN;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// A received frame: its header and payload.
#[derive(Debug)]
pub struct Frame {
    /// The checked header.
    pub header: FrameHeader,
    /// `header.len` bytes.
    pub payload: Vec<u8>,
}

/// Splits a byte stream into frames. Bytes are read from a connection into one buffer
/// (allocated once, grown only for a frame larger than it); complete frames come out of
/// [`next_frame`](Self::next_frame).
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Room kept free for one read.
const READ_CHUNK: usize = 256 << 10;

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        FrameReader::default()
    }

    /// Makes at least `READ_CHUNK` (or what the next frame needs) free after `end`.
    fn make_room(&mut self) {
        let want = match FrameHeader::parse(&self.buf[self.start..self.end]) {
            Ok(Some(h)) => HEADER_LEN + h.len.get() as usize,
            _ => 0,
        };
        if self.buf.len() - self.end >= READ_CHUNK.max(want.saturating_sub(self.end - self.start)) {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let need = self.end + READ_CHUNK.max(want.saturating_sub(self.end));
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
    }

    /// Appends bytes (tests and fuzzing; the network thread reads in place through
    /// [`read_from`](Self::read_from)).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.truncate(self.end);
        self.buf.extend_from_slice(bytes);
        self.end = self.buf.len();
    }

    /// Reads once from `r` into the buffer.
    pub fn read_from(&mut self, r: &mut impl std::io::Read) -> std::io::Result<usize> {
        self.make_room();
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let rest = &self.buf[self.start..self.end];
        let Some(header) = FrameHeader::parse(rest)? else {
            return Ok(None);
        };
        let end = HEADER_LEN + header.len.get() as usize;
        if rest.len() < end {
            return Ok(None);
        }
        let payload = rest[HEADER_LEN..end].to_vec();
        self.start += end;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(Frame { header, payload }))
    }

    /// Bytes received but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind_strategy() -> impl Strategy<Value = FrameKind> {
        prop_oneof![
            Just(FrameKind::Data),
            Just(FrameKind::Progress),
            Just(FrameKind::Eof),
            Just(FrameKind::Shutdown),
            Just(FrameKind::Abort),
        ]
    }

    proptest! {
        /// Any sequence of frames, cut into arbitrary chunks, comes out whole and in order.
        #[test]
        fn frames_round_trip(
            frames in prop::collection::vec(
                (kind_strategy(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>(),
                 prop::collection::vec(any::<u8>(), 0..300)),
                0..20),
            cuts in prop::collection::vec(1usize..97, 1..50),
        ) {
            let mut wire = Vec::new();
            for (kind, ch, from, to, epoch, payload) in &frames {
                let mut f = Vec::new();
                start_frame(&mut f, *kind, *ch, *from, *to, *epoch);
                f.extend_from_slice(payload);
                finish_frame(&mut f).unwrap();
                wire.extend_from_slice(&f);
            }
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < wire.len() {
                let n = (*cut.next().unwrap()).min(wire.len() - at);
                reader.extend(&wire[at..at + n]);
                at += n;
                while let Some(f) = reader.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got.len(), frames.len());
            prop_assert_eq!(reader.pending(), 0);
            for (f, (kind, ch, from, to, epoch, payload)) in got.iter().zip(&frames) {
                prop_assert_eq!(f.header.kind().unwrap(), *kind);
                prop_assert_eq!(f.header.channel.get(), *ch);
                prop_assert_eq!(f.header.from.get(), *from);
                prop_assert_eq!(f.header.to.get(), *to);
                prop_assert_eq!(f.header.epoch.get(), *epoch);
                prop_assert_eq!(&f.payload, payload);
            }
        }

        /// Arbitrary bytes never panic the reader.
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let mut reader = FrameReader::new();
            reader.extend(&bytes);
            while let Ok(Some(_)) = reader.next_frame() {}
        }
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused() {
        let mut h = FrameHeader::new(FrameKind::Data, 0, 0, 1, 1, 0);
        h.len = ((MAX_FRAME + 1) as u32).into();
        assert_eq!(
            FrameHeader::parse(h.as_bytes()).unwrap_err(),
            FrameError::TooLarge(MAX_FRAME + 1)
        );
        h.len = 0.into();
        h.kind = 9;
        assert_eq!(
            FrameHeader::parse(h.as_bytes()).unwrap_err(),
            FrameError::Kind(9)
        );
        assert_eq!(HEADER_LEN, 32);
    }
}
