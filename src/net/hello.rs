//! The handshake: what two processes tell each other before any frame.
//!
//! Each side writes a [`Hello`]: a fixed 16-byte little-endian header (magic, protocol
//! version, body length), then the body, postcard-encoded. The body carries everything
//! the processes of one cluster must agree on: the flow's name, its arguments and the
//! fingerprint of its step graph, the partitions every fixed-partitioned input and
//! output lists, the epoch interval, worker and process counts, the recovery resume
//! token, and a fresh random nonce.
//!
//! With a cluster secret, each side then proves it holds the secret: it sends
//! HMAC-SHA256(secret, "waxfast-proof" | its own hello | the peer's hello) and checks
//! the peer's proof over the two hellos in the other order. Both hellos carry fresh
//! nonces, so a recorded proof is worth nothing in another handshake, and the order
//! makes a proof reflected back to its sender fail.
//!
//! A connection whose first bytes are not waxfast's magic, or (with a secret) that does
//! not prove the secret, is a stranger and is dropped; a waxfast peer that proved it
//! belongs but disagrees on anything stops the cluster with an error naming both values.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The first bytes of every connection.
pub const MAGIC: [u8; 8] = *b"WAXFAST\0";
/// The protocol version; peers must agree exactly.
pub const PROTOCOL_VERSION: u32 = 3;
/// The largest hello body accepted (a flow with thousands of inputs fits easily).
pub const MAX_BODY: usize = 1 << 20;
/// The length of a proof (HMAC-SHA256).
pub const PROOF_LEN: usize = 32;

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct HelloHeader {
    magic: [u8; 8],
    version: U32,
    body_len: U32,
}

const HEADER_LEN: usize = std::mem::size_of::<HelloHeader>();

/// One fixed-partitioned step's partitions, as a process lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSummary {
    /// The step's full id.
    pub step: String,
    /// How many partitions it lists.
    pub count: u64,
    /// XXH3 of the partition names, in order.
    pub digest: u64,
    /// The first partition's name (shortened), to say what differs.
    pub first: String,
}

/// What a process says about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender (in the header, not the body).
    #[serde(skip)]
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
    /// The flow's arguments (the CLI's text after `NAME:`), empty if none.
    pub flow_args: String,
    /// The epoch (and snapshot) interval, in nanoseconds.
    pub epoch_interval_ns: u64,
    /// With recovery, a hash of where this process resumes (execution number, resume
    /// epoch, first epoch): processes that read different snapshots must not run
    /// together. 0 without recovery.
    pub recovery: u64,
    /// The partitions of every fixed-partitioned step, or why this process could not
    /// list them (it fails the run, and tells its peers why).
    pub inputs: Result<Vec<PartSummary>, String>,
    /// True if the sender holds a cluster secret and will send a proof.
    pub authenticated: bool,
    /// Fresh random bytes, so every handshake's proofs are different.
    pub nonce: [u8; 32],
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The bytes are not a waxfast hello (a stranger, or garbage), or the sender did
    /// not prove it holds the cluster secret.
    #[error("not a waxfast peer of this cluster: {0}")]
    Stranger(String),
    /// A waxfast peer of another protocol version.
    #[error("protocol version {theirs} but this process speaks {ours}")]
    Version {
        /// The peer's version.
        theirs: u32,
        /// Ours.
        ours: u32,
    },
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The deadline passed before the peer said everything.
    #[error("timed out waiting for the handshake")]
    TimedOut,
}

/// Fresh random bytes for a nonce.
pub fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    // The OS generator does not fail on Linux once booted; if it ever did, a fixed
    // nonce only weakens replay protection, never correctness, so fall back to time.
    if getrandom::fill(&mut n).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        n[..16].copy_from_slice(&t.to_le_bytes());
        n[16..24].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    }
    n
}

impl Hello {
    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = postcard::to_stdvec(self).expect("a hello always encodes");
        let h = HelloHeader {
            magic: MAGIC,
            version: self.version.into(),
            body_len: (body.len() as u32).into(),
        };
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// Parses a hello from its bytes (header and body).
    pub fn from_bytes(bytes: &[u8]) -> Result<Hello, HelloError> {
        let (head, body) = split_header(bytes)?;
        let mut h: Hello = postcard::from_bytes(body)
            .map_err(|e| HelloError::Stranger(format!("the hello does not decode: {e}")))?;
        h.version = head.version.get();
        Ok(h)
    }

    /// Reads a hello from `s` by `deadline`, returning it with its raw bytes (which the
    /// proofs cover).
    pub fn read_from(s: &mut TcpStream, deadline: Instant) -> Result<(Hello, Vec<u8>), HelloError> {
        let mut bytes = vec![0u8; HEADER_LEN];
        read_exact_by(s, &mut bytes, deadline)?;
        let head = HelloHeader::read_from_bytes(&bytes).expect("sized to the header");
        if head.magic != MAGIC {
            return Err(HelloError::Stranger(format!("bad magic {:?}", &head.magic)));
        }
        if head.version.get() != PROTOCOL_VERSION {
            return Err(HelloError::Version {
                theirs: head.version.get(),
                ours: PROTOCOL_VERSION,
            });
        }
        let n = head.body_len.get() as usize;
        if n > MAX_BODY {
            return Err(HelloError::Stranger(format!("a hello body of {n} bytes")));
        }
        bytes.resize(HEADER_LEN + n, 0);
        read_exact_by(s, &mut bytes[HEADER_LEN..], deadline)?;
        let h = Hello::from_bytes(&bytes)?;
        Ok((h, bytes))
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
        if theirs.flow_args != self.flow_args {
            return differ(
                "flow arguments",
                format!("{:?}", self.flow_args),
                format!("{:?}", theirs.flow_args),
            );
        }
        if theirs.fingerprint != self.fingerprint {
            return differ(
                "a different step graph for the flow (fingerprint",
                format!("{:016x})", self.fingerprint),
                format!("{:016x})", theirs.fingerprint),
            );
        }
        match (&self.inputs, &theirs.inputs) {
            (_, Err(e)) => return Err(format!("{peer} cannot list its partitions: {e}")),
            // Our own failure is reported by this process itself, after formation.
            (Err(_), Ok(_)) => {}
            (Ok(ours), Ok(their)) => {
                if let Some(m) = partitions_differ(ours, their, peer) {
                    return Err(m);
                }
            }
        }
        if theirs.epoch_interval_ns != self.epoch_interval_ns {
            return differ(
                "epoch interval (-s)",
                format_secs(self.epoch_interval_ns),
                format_secs(theirs.epoch_interval_ns),
            );
        }
        if theirs.recovery != self.recovery {
            return differ(
                "read other recovery snapshots (resume token",
                format!("{:016x}; did a process of an earlier run still write to the recovery directory?)", self.recovery),
                format!("{:016x})", theirs.recovery),
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

fn format_secs(ns: u64) -> String {
    format!("{}s", Duration::from_nanos(ns).as_secs_f64())
}

/// Says how two processes' partition lists differ, if they do.
fn partitions_differ(ours: &[PartSummary], theirs: &[PartSummary], peer: &str) -> Option<String> {
    for (o, t) in ours.iter().zip(theirs) {
        if o != t {
            return Some(format!(
                "{peer} lists {} partition(s) for step {:?} (first {:?}, digest {:016x}) but this process lists {} (first {:?}, digest {:016x}): every process must see the same inputs (the same files, of the same sizes)",
                t.count, t.step, t.first, t.digest, o.count, o.first, o.digest
            ));
        }
    }
    if ours.len() != theirs.len() {
        return Some(format!(
            "{peer} has {} fixed-partitioned step(s) but this process has {}",
            theirs.len(),
            ours.len()
        ));
    }
    None
}

fn split_header(bytes: &[u8]) -> Result<(HelloHeader, &[u8]), HelloError> {
    if bytes.len() < HEADER_LEN {
        return Err(HelloError::Stranger(
            "a hello shorter than its header".into(),
        ));
    }
    let head = HelloHeader::read_from_bytes(&bytes[..HEADER_LEN]).expect("sized to the header");
    if head.magic != MAGIC {
        return Err(HelloError::Stranger(format!("bad magic {:?}", &head.magic)));
    }
    let n = head.body_len.get() as usize;
    if bytes.len() != HEADER_LEN + n {
        return Err(HelloError::Stranger("a hello of the wrong length".into()));
    }
    Ok((head, &bytes[HEADER_LEN..]))
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], first: &[u8], second: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(b"waxfast-proof\0");
    m.update(&(first.len() as u64).to_le_bytes());
    m.update(first);
    m.update(second);
    m
}

/// This side's proof that it holds `secret`: a MAC over its own hello, then the peer's.
pub fn proof(secret: &[u8], own: &[u8], theirs: &[u8]) -> [u8; PROOF_LEN] {
    mac(secret, own, theirs).finalize().into_bytes().into()
}

/// Checks the peer's proof (a MAC over its hello, then ours) in constant time.
pub fn verify(secret: &[u8], own: &[u8], theirs: &[u8], their_proof: &[u8]) -> bool {
    mac(secret, theirs, own).verify_slice(their_proof).is_ok()
}

/// `read_exact` bounded by a deadline for the whole buffer, however slowly the bytes
/// arrive (a per-read timeout would let a peer that sends one byte a second hold the
/// handshake forever).
pub fn read_exact_by(
    s: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<(), HelloError> {
    let mut at = 0;
    while at < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HelloError::TimedOut);
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf[at..]) {
            Ok(0) => return Err(HelloError::Stranger("closed during the handshake".into())),
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(HelloError::Io(e)),
        }
    }
    Ok(())
}

/// Writes `bytes` and flushes.
pub(crate) fn write_all(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes)?;
    s.flush()
}

/// How long an accepted connection may take to say hello.
pub(crate) const ACCEPT_HELLO_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn hello() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            processes: 2,
            workers_per_proc: 2,
            process: 1,
            fingerprint: 0xabcd,
            flow: "wordcount".into(),
            flow_args: "in.txt".into(),
            epoch_interval_ns: 10_000_000_000,
            recovery: 7,
            inputs: Ok(vec![PartSummary {
                step: "wordcount.inp".into(),
                count: 4,
                digest: 1,
                first: "in.txt@0-100".into(),
            }]),
            authenticated: false,
            nonce: [3; 32],
        }
    }

    #[test]
    fn hello_round_trips_and_mismatches_name_both_values() {
        let h = hello();
        let back = Hello::from_bytes(&h.to_bytes()).unwrap();
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
        other.flow_args = "other.txt".into();
        let e = h.check(&other, "p").unwrap_err();
        assert!(
            e.contains("\"other.txt\"") && e.contains("\"in.txt\""),
            "{e}"
        );
        let mut other = h.clone();
        other.recovery = 8;
        let e = h.check(&other, "p").unwrap_err();
        assert!(
            e.contains("recovery")
                && e.contains("0000000000000008")
                && e.contains("0000000000000007"),
            "{e}"
        );
        let mut other = h.clone();
        other.epoch_interval_ns = 500_000_000;
        let e = h.check(&other, "p").unwrap_err();
        assert!(e.contains("0.5s") && e.contains("10s"), "{e}");
        let mut other = h.clone();
        if let Ok(parts) = &mut other.inputs {
            parts[0].count = 1;
            parts[0].first = "in.txt".into();
        }
        let e = h.check(&other, "p").unwrap_err();
        assert!(
            e.contains("lists 1 partition") && e.contains("this process lists 4"),
            "{e}"
        );
        let mut other = h.clone();
        other.inputs = Err("cannot read in.txt: No such file".into());
        let e = h.check(&other, "p").unwrap_err();
        assert!(e.contains("cannot read in.txt"), "{e}");
        assert_eq!(h.check(&h.clone(), "p"), Ok(()));
    }

    #[test]
    fn garbage_is_a_stranger() {
        let e =
            Hello::from_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdef").unwrap_err();
        assert!(matches!(e, HelloError::Stranger(_)), "{e}");
        let e = Hello::from_bytes(b"WAX").unwrap_err();
        assert!(matches!(e, HelloError::Stranger(_)), "{e}");
        let mut bytes = hello().to_bytes();
        bytes.truncate(bytes.len() - 1);
        assert!(Hello::from_bytes(&bytes).is_err());
    }

    #[test]
    fn proofs_need_the_secret_and_the_order() {
        let a = hello().to_bytes();
        let mut hb = hello();
        hb.nonce = [9; 32];
        let b = hb.to_bytes();
        let p = proof(b"secret", &a, &b);
        assert!(verify(b"secret", &b, &a, &p), "the peer accepts a's proof");
        assert!(!verify(b"other", &b, &a, &p), "a wrong secret fails");
        assert!(!verify(b"secret", &a, &b, &p), "a reflected proof fails");
        let mut hc = hello();
        hc.nonce = [10; 32];
        assert!(
            !verify(b"secret", &hc.to_bytes(), &a, &p),
            "a replayed proof fails against a fresh nonce"
        );
    }
}
