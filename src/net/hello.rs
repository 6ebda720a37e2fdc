//! The handshake: what two processes tell each other before any frame.
//!
//! Each side writes a [`Hello`] (a fixed 40-byte little-endian header, then the flow
//! name) and reads the other's under a timeout. A connection whose first bytes are not
//! waxfast's magic is a stranger and is dropped; a waxfast peer that disagrees on
//! anything (protocol version, flow name, the fingerprint of the flow's step graph,
//! process count, workers per process, or which process it is) stops the cluster with
//! an error naming both values.

use std::io::{Read, Write};
use std::time::Duration;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The first bytes of every connection.
pub const MAGIC: [u8; 8] = *b"WAXFAST\0";
/// The protocol version; peers must agree exactly.
pub const PROTOCOL_VERSION: u32 = 1;
/// The longest flow name a hello may carry.
pub const MAX_NAME: usize = 4096;

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct HelloHeader {
    magic: [u8; 8],
    version: U32,
    processes: U32,
    workers_per_proc: U32,
    process: U32,
    fingerprint: U64,
    name_len: U32,
    reserved: U32,
}

/// What a process says about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// Processes in the cluster.
    pub processes: u32,
    /// Worker threads per process.
    pub workers_per_proc: u32,
    /// The sender's process id.
    pub process: u32,
    /// A hash of the flow's step graph (ids, kinds, wiring, channels).
    pub fingerprint: u64,
    /// The flow's name.
    pub flow: String,
    /// With recovery, a hash of where this process resumes (execution number, resume
    /// epoch, first epoch): processes that read different snapshots must not run
    /// together. 0 without recovery.
    pub recovery: u32,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The bytes are not a waxfast hello (a stranger, or garbage).
    #[error("not a waxfast peer: {0}")]
    Stranger(String),
    /// Reading or writing failed (including a timeout).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Hello {
    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let h = HelloHeader {
            magic: MAGIC,
            version: self.version.into(),
            processes: self.processes.into(),
            workers_per_proc: self.workers_per_proc.into(),
            process: self.process.into(),
            fingerprint: self.fingerprint.into(),
            name_len: (self.flow.len() as u32).into(),
            reserved: self.recovery.into(),
        };
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(self.flow.as_bytes());
        out
    }

    /// Writes this hello to `s`.
    pub fn write_to(&self, s: &mut impl Write) -> std::io::Result<()> {
        s.write_all(&self.to_bytes())?;
        s.flush()
    }

    /// Reads a hello from `s`, which should have a read timeout set.
    pub fn read_from(s: &mut impl Read) -> Result<Hello, HelloError> {
        let mut head = [0u8; std::mem::size_of::<HelloHeader>()];
        read_exact(s, &mut head)?;
        let h = HelloHeader::read_from_bytes(&head).expect("sized to the header");
        if h.magic != MAGIC {
            return Err(HelloError::Stranger(format!("bad magic {:?}", &h.magic)));
        }
        let n = h.name_len.get() as usize;
        if n > MAX_NAME {
            return Err(HelloError::Stranger(format!("flow name of {n} bytes")));
        }
        let mut name = vec![0u8; n];
        read_exact(s, &mut name)?;
        let flow = String::from_utf8(name)
            .map_err(|_| HelloError::Stranger("flow name is not UTF-8".into()))?;
        Ok(Hello {
            version: h.version.get(),
            processes: h.processes.get(),
            workers_per_proc: h.workers_per_proc.get(),
            process: h.process.get(),
            fingerprint: h.fingerprint.get(),
            flow,
            recovery: h.reserved.get(),
        })
    }

    /// Compares a peer's hello with ours; the error names both values.
    pub fn check(&self, theirs: &Hello, peer: &str) -> Result<(), String> {
        let differ = |what: &str, ours: String, their: String| {
            Err(format!(
                "{peer} has {what} {their} but this process has {ours}"
            ))
        };
        if theirs.version != self.version {
            return differ(
                "protocol version",
                self.version.to_string(),
                theirs.version.to_string(),
            );
        }
        if theirs.flow != self.flow {
            return differ(
                "flow",
                format!("{:?}", self.flow),
                format!("{:?}", theirs.flow),
            );
        }
        if theirs.fingerprint != self.fingerprint {
            return differ(
                "a different step graph for the flow (fingerprint",
                format!("{:016x})", self.fingerprint),
                format!("{:016x})", theirs.fingerprint),
            );
        }
        if theirs.recovery != self.recovery {
            return differ(
                "read other recovery snapshots (resume token",
                format!("{:08x}; did a process of an earlier run still write to the recovery directory?)", self.recovery),
                format!("{:08x})", theirs.recovery),
            );
        }
        if theirs.processes != self.processes {
            return differ(
                "process count",
                self.processes.to_string(),
                theirs.processes.to_string(),
            );
        }
        if theirs.workers_per_proc != self.workers_per_proc {
            return differ(
                "workers per process (-w)",
                self.workers_per_proc.to_string(),
                theirs.workers_per_proc.to_string(),
            );
        }
        Ok(())
    }
}

/// `read_exact` that reports a timeout as such.
fn read_exact(s: &mut impl Read, buf: &mut [u8]) -> Result<(), HelloError> {
    s.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            HelloError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out waiting for the handshake",
            ))
        }
        std::io::ErrorKind::UnexpectedEof => {
            HelloError::Stranger("closed during the handshake".into())
        }
        _ => HelloError::Io(e),
    })
}

/// How long an accepted connection may take to say hello.
pub(crate) const ACCEPT_HELLO_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            processes: 2,
            workers_per_proc: 2,
            process: 1,
            fingerprint: 0xabcd,
            flow: "wordcount".into(),
            recovery: 7,
        }
    }

    #[test]
    fn hello_round_trips_and_mismatches_name_both_values() {
        let h = hello();
        let back = Hello::read_from(&mut &h.to_bytes()[..]).unwrap();
        assert_eq!(back, h);
        let mut other = h.clone();
        other.workers_per_proc = 3;
        let e = h.check(&other, "process 1 (127.0.0.1:9)").unwrap_err();
        assert!(
            e.contains("workers per process (-w) 3") && e.contains("has 2"),
            "{e}"
        );
        let mut other = h.clone();
        other.flow = "simple".into();
        let e = h.check(&other, "p").unwrap_err();
        assert!(
            e.contains("\"simple\"") && e.contains("\"wordcount\""),
            "{e}"
        );
        let mut other = h.clone();
        other.recovery = 8;
        let e = h.check(&other, "p").unwrap_err();
        assert!(
            e.contains("recovery") && e.contains("00000008") && e.contains("00000007"),
            "{e}"
        );
    }

    #[test]
    fn garbage_is_a_stranger() {
        let e = Hello::read_from(&mut &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdef"[..])
            .unwrap_err();
        assert!(matches!(e, HelloError::Stranger(_)), "{e}");
        let e = Hello::read_from(&mut &b"WAX"[..]).unwrap_err();
        assert!(matches!(e, HelloError::Stranger(_)), "{e}");
    }
}
