//! Choosing the transport to each peer, once the cluster has formed over TCP.
//!
//! Every process sends every peer an [`Offer`]: the `--transport` it was given, and
//! what identifies its host's shared memory (the kernel's boot id, and the device and
//! inode of `/dev/shm`, which differ across machines and across containers with their
//! own `/dev/shm`). Both ends then apply the same rule, so they agree without another
//! round: shared memory when neither asked for `tcp` and both see the same shared
//! memory; TCP otherwise. A process given `--transport shm` refuses a peer that cannot
//! share memory with it, and one given `tcp` refuses a peer given `shm`, naming both.
//!
//! Then each process with peers on this host creates its segment, sends each such peer
//! its path (and where that peer's rings start in it), maps theirs, checks it (the
//! owner is the pid the peer announced, the layout is what this run needs), says so,
//! and unlinks its own segment once every such peer has said so: from then on a
//! SIGKILL of any process leaves nothing in `/dev/shm`.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::shm::{ShmLinks, RING_BYTES};
use super::Mode;
use crate::error::{Error, Result};
use crate::net::hello::read_exact_by;
use crate::shm::segment::{sweep_stale, Layout, Segment, DIR};

/// What one process tells each peer about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Offer {
    mode: Mode,
    /// The host's shared memory, as this process sees it; `None` if it has none.
    host: Option<HostShm>,
    pid: u32,
}

/// What identifies the shared memory of a host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct HostShm {
    boot_id: String,
    dev: u64,
    ino: u64,
}

impl Offer {
    /// What this process offers when given `mode`.
    fn local(mode: Mode) -> Offer {
        Offer {
            mode,
            host: HostShm::here(),
            pid: std::process::id(),
        }
    }
}

impl HostShm {
    fn here() -> Option<HostShm> {
        use std::os::unix::fs::MetadataExt;
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let meta = std::fs::metadata(DIR).ok()?;
        meta.is_dir().then(|| HostShm {
            boot_id: boot_id.trim().to_string(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// Where a process's rings to one peer are.
#[derive(Debug, Serialize, Deserialize)]
struct Rings {
    path: PathBuf,
    /// The first ring, in that segment, from the sender's workers to the peer's.
    base: u32,
}

/// The transport chosen for one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Over the peer's TCP connection.
    Tcp,
    /// Through shared-memory rings (the TCP connection carries only control frames:
    /// heartbeats, shutdown, abort).
    Shm,
}

/// What the processes agreed on: a link per process (`None` for this one), and the
/// segments when some link is shared memory.
#[derive(Debug)]
pub(crate) struct Agreed {
    pub(crate) links: Vec<Option<Link>>,
    pub(crate) shm: Option<ShmLinks>,
}

/// The rule both ends apply to their two offers.
fn choose(ours: &Offer, theirs: &Offer) -> std::result::Result<Link, String> {
    let same_host = matches!((&ours.host, &theirs.host), (Some(a), Some(b)) if a == b);
    match (ours.mode, theirs.mode) {
        (Mode::Tcp, Mode::Shm) | (Mode::Shm, Mode::Tcp) => Err(format!(
            "one process was given --transport tcp and the other --transport shm (this one: {}, the peer: {}); give every process the same --transport",
            ours.mode, theirs.mode
        )),
        (Mode::Tcp, _) | (_, Mode::Tcp) => Ok(Link::Tcp),
        (Mode::Shm, _) | (_, Mode::Shm) if !same_host => Err(format!(
            "--transport shm, but it does not share this host's memory (another host, or another /dev/shm: boot id and /dev/shm {:?} here, {:?} there)",
            ours.host, theirs.host
        )),
        _ if same_host => Ok(Link::Shm),
        _ => Ok(Link::Tcp),
    }
}

/// A message as it goes on the wire: its length (`u32`, little-endian), then its
/// postcard encoding.
fn message(value: &impl Serialize) -> std::io::Result<Vec<u8>> {
    let body = postcard::to_stdvec(value).map_err(std::io::Error::other)?;
    let mut msg = (body.len() as u32).to_le_bytes().to_vec();
    msg.extend_from_slice(&body);
    Ok(msg)
}

fn send(s: &mut TcpStream, value: &impl Serialize) -> std::io::Result<()> {
    s.write_all(&message(value)?)?;
    s.flush()
}

/// The offer a process given `mode` sends on each connection right after the hello,
/// framed as on the wire: for tools and tests that speak the cluster protocol
/// themselves (a peer that offers `Tcp` gets every frame over its connection).
pub fn offer_message(mode: Mode) -> Vec<u8> {
    message(&Offer::local(mode)).expect("an offer always encodes")
}

fn recv<T: for<'de> Deserialize<'de>>(
    s: &mut TcpStream,
    deadline: Instant,
) -> std::result::Result<T, String> {
    let mut len = [0u8; 4];
    read_exact_by(s, &mut len, deadline).map_err(|e| e.to_string())?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 1 << 16 {
        return Err(format!("a transport message of {len} bytes"));
    }
    let mut body = vec![0u8; len];
    read_exact_by(s, &mut body, deadline).map_err(|e| e.to_string())?;
    postcard::from_bytes(&body).map_err(|e| format!("a transport message does not decode: {e}"))
}

/// Agrees with every peer on its transport and sets up the shared memory (see the
/// module's documentation). `streams[p]` is the formed connection to process `p`.
pub(crate) fn agree(
    streams: &mut [Option<TcpStream>],
    addresses: &[String],
    me: usize,
    workers: usize,
    mode: Mode,
    deadline: Instant,
) -> Result<Agreed> {
    let peer_err = |p: usize, what: String| {
        Error::Cluster(format!(
            "process {p} at {}: while agreeing on the transport: {what}",
            addresses[p]
        ))
    };
    let ours = Offer::local(mode);
    for (p, s) in streams.iter_mut().enumerate() {
        if let Some(s) = s {
            send(s, &ours).map_err(|e| peer_err(p, e.to_string()))?;
        }
    }
    let mut links: Vec<Option<Link>> = vec![None; streams.len()];
    let mut pids = vec![0u32; streams.len()];
    for (p, s) in streams.iter_mut().enumerate() {
        if let Some(s) = s {
            let theirs: Offer = recv(s, deadline).map_err(|e| peer_err(p, e))?;
            let link = choose(&ours, &theirs).map_err(|e| peer_err(p, e))?;
            tracing::debug!(process = p, address = %addresses[p], transport = ?link, "transport to peer");
            links[p] = Some(link);
            pids[p] = theirs.pid;
        }
    }
    let shm_peers: Vec<usize> = (0..links.len())
        .filter(|&p| links[p] == Some(Link::Shm))
        .collect();
    if shm_peers.is_empty() {
        return Ok(Agreed { links, shm: None });
    }
    let swept = sweep_stale(Path::new(DIR));
    if swept > 0 {
        tracing::debug!(swept, "removed shared-memory segments of dead processes");
    }
    let w = workers as u32;
    let layout = Layout {
        bells: w,
        rings: w * w * shm_peers.len() as u32,
        capacity: RING_BYTES,
    };
    let own = Arc::new(
        Segment::create(&format!("p{me}"), layout)
            .map_err(|e| {
                Error::Cluster(format!(
                    "cannot set up shared memory for {} peer(s) on this host ({} bytes): {e}; make {DIR} larger, or run with --transport tcp",
                    shm_peers.len(),
                    layout.len()
                ))
            })?,
    );
    let result = exchange_segments(streams, &own, &shm_peers, &pids, workers, deadline)
        .map_err(|(p, e)| peer_err(p, e));
    // Mapped by every peer (or failed): either way the name goes now.
    let unlinked = own.unlink();
    let (peers, bases) = result?;
    unlinked.map_err(|e| Error::Cluster(e.to_string()))?;
    Ok(Agreed {
        links,
        shm: Some(ShmLinks {
            process: me,
            workers,
            own,
            peers,
            bases,
        }),
    })
}

/// The peers' segments (with where their rings to us start), and where ours to each
/// start in our own segment.
type Mapped = (Vec<Option<(Arc<Segment>, u32)>>, Vec<Option<u32>>);

fn exchange_segments(
    streams: &mut [Option<TcpStream>],
    own: &Arc<Segment>,
    shm_peers: &[usize],
    pids: &[u32],
    workers: usize,
    deadline: Instant,
) -> std::result::Result<Mapped, (usize, String)> {
    let n = streams.len();
    let per_peer = (workers * workers) as u32;
    let mut bases = vec![None; n];
    for (rank, &p) in shm_peers.iter().enumerate() {
        let base = rank as u32 * per_peer;
        bases[p] = Some(base);
        let s = streams[p].as_mut().expect("a peer's stream");
        let rings = Rings {
            path: own.path().to_path_buf(),
            base,
        };
        send(s, &rings).map_err(|e| (p, e.to_string()))?;
    }
    let mut peers = vec![None; n];
    for &p in shm_peers {
        let s = streams[p].as_mut().expect("a peer's stream");
        let theirs: Rings = recv(s, deadline).map_err(|e| (p, e))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let seg = Segment::open(&theirs.path, left).map_err(|e| (p, e.to_string()))?;
        let layout = seg.layout();
        if seg.owner() != pids[p] {
            return Err((
                p,
                format!(
                    "its segment {} belongs to pid {}, not to the peer's pid {}",
                    theirs.path.display(),
                    seg.owner(),
                    pids[p]
                ),
            ));
        }
        if layout.bells as usize != workers
            || theirs
                .base
                .checked_add(per_peer)
                .is_none_or(|end| end > layout.rings)
        {
            return Err((
                p,
                format!(
                    "its segment {} has {} doorbells and {} rings, but {workers} workers per process need {workers} and rings {}..{}",
                    theirs.path.display(),
                    layout.bells,
                    layout.rings,
                    theirs.base,
                    theirs.base as u64 + per_peer as u64
                ),
            ));
        }
        peers[p] = Some((Arc::new(seg), theirs.base));
    }
    // Tell each peer we mapped its segment, then wait until each mapped ours.
    for &p in shm_peers {
        let s = streams[p].as_mut().expect("a peer's stream");
        send(s, &true).map_err(|e| (p, e.to_string()))?;
    }
    for &p in shm_peers {
        let s = streams[p].as_mut().expect("a peer's stream");
        let mapped: bool = recv(s, deadline).map_err(|e| (p, e))?;
        if !mapped {
            return Err((p, "it could not map this process's segment".into()));
        }
    }
    Ok((peers, bases))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(mode: Mode, host: u64) -> Offer {
        Offer {
            mode,
            host: Some(HostShm {
                boot_id: "b".into(),
                dev: host,
                ino: 1,
            }),
            pid: 1,
        }
    }

    #[test]
    fn both_ends_choose_the_same_link() {
        let modes = [Mode::Auto, Mode::Tcp, Mode::Shm];
        for a in modes {
            for b in modes {
                for (ha, hb) in [(1, 1), (1, 2)] {
                    let (x, y) = (offer(a, ha), offer(b, hb));
                    assert_eq!(
                        choose(&x, &y).ok(),
                        choose(&y, &x).ok(),
                        "{a} {b} {ha} {hb}"
                    );
                }
            }
        }
        assert_eq!(
            choose(&offer(Mode::Auto, 1), &offer(Mode::Auto, 1)),
            Ok(Link::Shm)
        );
        assert_eq!(
            choose(&offer(Mode::Auto, 1), &offer(Mode::Auto, 2)),
            Ok(Link::Tcp)
        );
        assert_eq!(
            choose(&offer(Mode::Tcp, 1), &offer(Mode::Auto, 1)),
            Ok(Link::Tcp)
        );
        assert_eq!(
            choose(&offer(Mode::Shm, 1), &offer(Mode::Auto, 1)),
            Ok(Link::Shm)
        );
        let e = choose(&offer(Mode::Shm, 1), &offer(Mode::Auto, 2)).unwrap_err();
        assert!(e.contains("does not share this host's memory"), "{e}");
        let e = choose(&offer(Mode::Shm, 1), &offer(Mode::Tcp, 1)).unwrap_err();
        assert!(
            e.contains("--transport tcp and the other --transport shm"),
            "{e}"
        );
    }
}
