//! A shared-memory segment holding doorbells and rings: a file under `/dev/shm` (the practice of
//! iceoryx2 and Aeron), mapped by the two processes it connects.
//!
//! * Created exclusively (`O_CREAT | O_EXCL`) with mode 0600 under a name unique to
//!   the run (`waxfast-{owner pid}-{nonce}-{label}`), and its whole size reserved up
//!   front with `posix_fallocate`, so a full `/dev/shm` is an error when the segment is
//!   made, never a SIGBUS when a page is first touched.
//! * A header (magic, layout version, owner pid, bell and ring counts, ring size) on the
//!   first 128-byte line; then one doorbell line per worker of the creating process
//!   ([`Bell`]: how a peer wakes a parked worker); then each ring: its `head` and
//!   `tail` cursors on lines of their own (no false sharing), then its data region. The creator writes the header, then sets the `ready` word
//!   with `Release`; [`Segment::open`] waits for it with `Acquire`, under a timeout, and
//!   checks every header field before using anything else.
//! * Offsets, never pointers: each process maps the file at its own address.
//! * [`Segment::unlink`] removes the name once both sides have mapped it, so a SIGKILL of
//!   either leaves nothing behind; [`sweep_stale`] removes the segments of owners that
//!   died before that point.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memmap2::MmapMut;

use super::bell::Bell;
use super::ring::RingMemory;

/// The first bytes of every segment.
pub const MAGIC: [u8; 8] = *b"WAXSHM\0\0";
/// The layout version; both sides must agree exactly.
pub const LAYOUT_VERSION: u32 = 1;
/// Where segments live.
pub const DIR: &str = "/dev/shm";
/// The prefix of every segment's name.
pub const PREFIX: &str = "waxfast-";

const LINE: usize = 128;

/// What a segment holds: `bells` doorbells (one per worker of the creating process),
/// then `rings` rings of `capacity` data bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Doorbells, one 128-byte line each.
    pub bells: u32,
    /// Rings, each a `head` line, a `tail` line and `capacity` bytes of data.
    pub rings: u32,
    /// Data bytes of each ring (a power of two, at least 64).
    pub capacity: u64,
}

impl Layout {
    fn bell_at(&self, i: usize) -> usize {
        LINE + i * LINE
    }
    fn ring_at(&self, i: usize) -> usize {
        LINE + self.bells as usize * LINE + i * (2 * LINE + self.capacity as usize)
    }
    /// Bytes of the whole mapping.
    pub fn len(&self) -> usize {
        self.ring_at(self.rings as usize)
    }
    /// True for a layout with neither bells nor rings.
    pub fn is_empty(&self) -> bool {
        self.bells == 0 && self.rings == 0
    }
}

/// The header, at offset 0 of the mapping.
#[repr(C)]
struct Header {
    magic: [u8; 8],
    version: u32,
    owner: u32,
    capacity: u64,
    bells: u32,
    rings: u32,
    /// 1 once the creator has written everything above (`Release`).
    ready: AtomicU32,
}

/// Why a segment cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A system call failed (the message names the path).
    #[error("{0}")]
    Io(String),
    /// The file is not a waxfast segment of this layout, or does not say ready in time.
    #[error("{path}: {why}")]
    Invalid {
        /// The segment's path.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
}

/// A mapped segment: doorbells and rings at fixed offsets of one mapping.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    map: MmapMut,
    layout: Layout,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> SegmentError {
    SegmentError::Io(format!(
        "cannot {what} the shared-memory segment {}: {e}",
        path.display()
    ))
}

impl Segment {
    /// Creates a new segment of `layout` under [`DIR`], named for this process and
    /// `label`.
    pub fn create(label: &str, layout: Layout) -> Result<Segment, SegmentError> {
        Self::create_in(Path::new(DIR), label, layout)
    }

    /// [`create`](Self::create) in another directory (tests).
    pub fn create_in(dir: &Path, label: &str, layout: Layout) -> Result<Segment, SegmentError> {
        assert!(
            layout.capacity.is_power_of_two() && layout.capacity >= 64,
            "a ring's capacity must be a power of two of at least 64 bytes"
        );
        let mut nonce = [0u8; 6];
        getrandom::fill(&mut nonce).map_err(|e| {
            SegmentError::Io(format!(
                "cannot name a shared-memory segment: no randomness: {e}"
            ))
        })?;
        let tag: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("{PREFIX}{}-{tag}-{label}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("create", &path, e))?;
        let len = layout.len();
        // SAFETY: posix_fallocate on a file descriptor we own, with a valid range.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
        if rc != 0 {
            let _ = std::fs::remove_file(&path);
            return Err(io(
                &format!("reserve {len} bytes for"),
                &path,
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        let mut seg = match Self::map(file, &path, layout) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        // SAFETY: the mapping is at least one line, page-aligned (so `Header` is
        // aligned), and nobody else has opened the file yet (created exclusively, not
        // ready), so this is the only access.
        let header = unsafe { &mut *(seg.map.as_mut_ptr() as *mut Header) };
        header.magic = MAGIC;
        header.version = LAYOUT_VERSION;
        header.owner = std::process::id();
        header.capacity = layout.capacity;
        header.bells = layout.bells;
        header.rings = layout.rings;
        // Release: everything above is visible to whoever sees `ready`.
        header.ready.store(1, Ordering::Release);
        Ok(seg)
    }

    /// Opens and maps a segment another process created, waiting up to `timeout` for it
    /// to be ready, and checks its header.
    pub fn open(path: &Path, timeout: Duration) -> Result<Segment, SegmentError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io("open", path, e))?;
        let len = file.metadata().map_err(|e| io("stat", path, e))?.len() as usize;
        let invalid = |why: String| SegmentError::Invalid {
            path: path.to_path_buf(),
            why,
        };
        if len < LINE {
            return Err(invalid(format!("{len} bytes is too small for a segment")));
        }
        let whole = Layout {
            bells: 0,
            rings: 0,
            capacity: 64,
        };
        let mut seg = Self::map(file, path, whole)?;
        let header = seg.header();
        let deadline = Instant::now() + timeout;
        // Acquire: pairs with the creator's Release of `ready`.
        while header.ready.load(Ordering::Acquire) != 1 {
            if Instant::now() >= deadline {
                return Err(invalid(format!("not ready within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if header.magic != MAGIC {
            return Err(invalid(format!(
                "bad magic {:?}: not a waxfast segment",
                header.magic
            )));
        }
        if header.version != LAYOUT_VERSION {
            return Err(invalid(format!(
                "layout version {} but this process uses {LAYOUT_VERSION}",
                header.version
            )));
        }
        let layout = Layout {
            bells: header.bells,
            rings: header.rings,
            capacity: header.capacity,
        };
        if !layout.capacity.is_power_of_two() || layout.capacity < 64 || layout.len() != len {
            return Err(invalid(format!(
                "the header says {} bells and {} rings of {} bytes ({} bytes in all) but the file has {len}",
                layout.bells,
                layout.rings,
                layout.capacity,
                layout.len()
            )));
        }
        seg.layout = layout;
        Ok(seg)
    }

    fn map(file: File, path: &Path, layout: Layout) -> Result<Segment, SegmentError> {
        // The pages are mapped in now (`populate`), not at the first touch of each one
        // in the middle of a run.
        // SAFETY: the file is a segment only waxfast processes of this run open (mode
        // 0600, a unique name); its length is fixed (reserved up front and never
        // truncated), so the mapping stays valid while `Segment` lives. Concurrent access
        // by the other process goes through atomics (cursors, doorbells) and the ring's
        // protocol.
        let map = unsafe { memmap2::MmapOptions::new().populate().map_mut(&file) }
            .map_err(|e| io("map", path, e))?;
        let need = if layout.is_empty() {
            LINE
        } else {
            layout.len()
        };
        if map.len() < need {
            return Err(SegmentError::Invalid {
                path: path.to_path_buf(),
                why: format!("mapped {} bytes, need {need}", map.len()),
            });
        }
        Ok(Segment {
            path: path.to_path_buf(),
            map,
            layout,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is page-aligned and at least one line; the header's plain
        // fields are written once before `ready` and only read after it.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    /// The segment's path (to hand to the other process).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid of the process that created it.
    pub fn owner(&self) -> u32 {
        self.header().owner
    }

    /// Its bells and rings.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Removes the segment's name: call once both sides have mapped it. The mapping
    /// stays valid; nothing is left behind when the processes end, however they end.
    pub fn unlink(&self) -> Result<(), SegmentError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("unlink", &self.path, e)),
        }
    }

    /// Doorbell `i`.
    ///
    /// # Panics
    ///
    /// If the segment has no bell `i`.
    pub fn bell(&self, i: usize) -> &Bell {
        assert!(i < self.layout.bells as usize, "no doorbell {i}");
        // SAFETY: bell `i` is a 128-aligned line within the mapping, only ever accessed
        // as this `Bell` (two atomics) by every process that maps the segment.
        unsafe { &*(self.map.as_ptr().add(self.layout.bell_at(i)) as *const Bell) }
    }

    /// Ring `i`, as memory for one end of it.
    ///
    /// # Panics
    ///
    /// If the segment has no ring `i`.
    pub fn ring(self: &Arc<Self>, i: usize) -> SegRing {
        assert!(i < self.layout.rings as usize, "no ring {i}");
        SegRing {
            at: self.layout.ring_at(i),
            seg: self.clone(),
        }
    }

    fn cursor(&self, at: usize) -> &AtomicU64 {
        // SAFETY: `at` is a ring's `head` or `tail` line: within the mapping,
        // 128-aligned (so 8-aligned), and only ever accessed as this atomic by both
        // processes.
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(at) as *mut u64) }
    }
}

/// One ring of a segment (the segment stays mapped while it is in use).
#[derive(Debug, Clone)]
pub struct SegRing {
    seg: Arc<Segment>,
    /// Offset of the ring's `head` line.
    at: usize,
}

// SAFETY: the data region is `capacity` bytes two lines after the ring's offset, within
// a mapping that lives as long as `seg`; the cursors are the ring's own lines, and each
// ring of a segment is given to one producer and one consumer.
unsafe impl RingMemory for SegRing {
    type Cursor = AtomicU64;
    fn head(&self) -> &AtomicU64 {
        self.seg.cursor(self.at)
    }
    fn tail(&self) -> &AtomicU64 {
        self.seg.cursor(self.at + LINE)
    }
    fn capacity(&self) -> usize {
        self.seg.layout.capacity as usize
    }
    // SAFETY: the caller upholds `RingMemory::write`'s contract (see the block below).
    unsafe fn write(&self, at: usize, bytes: &[u8]) {
        // SAFETY: the caller owns `at..at + len` of the data region (the ring's
        // contract), which lies within the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (self.seg.map.as_ptr() as *mut u8).add(self.at + 2 * LINE + at),
                bytes.len(),
            )
        }
    }
    // SAFETY: the caller upholds `RingMemory::read`'s contract (see the block below).
    unsafe fn read(&self, at: usize, out: *mut u8, len: usize) {
        // SAFETY: as for `write`, for the consumer's published range; `out` is valid
        // for `len` bytes (the caller's contract).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.seg.map.as_ptr().add(self.at + 2 * LINE + at),
                out,
                len,
            )
        }
    }
}

// SAFETY: the data region is mapped memory: plain bytes, the ones `read` copies.
unsafe impl crate::shm::ring::SliceMemory for SegRing {
    unsafe fn slice(&self, at: usize, len: usize) -> &[u8] {
        // SAFETY: the range lies within the data region, within the mapping that `seg`
        // keeps alive as long as `self`; the caller keeps it unwritten while it lives.
        unsafe {
            std::slice::from_raw_parts(self.seg.map.as_ptr().add(self.at + 2 * LINE + at), len)
        }
    }
    // SAFETY: the caller upholds `SliceMemory::slice_mut`'s contract (see below).
    unsafe fn slice_mut(&self, at: usize, len: usize) -> &mut [u8] {
        // SAFETY: as for `slice`; the range is the producer's alone while the slice
        // lives (the caller's contract), and the mapping is writable (`write` writes
        // through the same pointer).
        unsafe {
            std::slice::from_raw_parts_mut(
                (self.seg.map.as_ptr() as *mut u8).add(self.at + 2 * LINE + at),
                len,
            )
        }
    }
}

/// Removes segments under `dir` whose owner (the pid in their name) is no longer
/// alive: what a process killed between creating a segment and unlinking it left.
/// Returns how many it removed.
pub fn sweep_stale(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::super::ring::{split, Consumer, Producer};
    use super::*;

    fn one_ring(capacity: u64) -> Layout {
        Layout {
            bells: 1,
            rings: 1,
            capacity,
        }
    }

    #[test]
    fn two_mappings_of_one_segment_are_one_ring() {
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(Segment::create_in(dir.path(), "t", one_ring(1024)).unwrap());
        let meta = std::fs::metadata(a.path()).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        let b = Arc::new(Segment::open(a.path(), Duration::from_secs(1)).unwrap());
        assert_eq!(b.owner(), std::process::id());
        assert_eq!(b.layout(), one_ring(1024));
        a.unlink().unwrap();
        assert!(!a.path().exists(), "unlinked once both sides mapped it");
        let (mut p, mut c): (Producer<SegRing>, Consumer<SegRing>) = split(a.ring(0), b.ring(0));
        for i in 0..1000u32 {
            while !p.push(&i.to_le_bytes()) {
                let mut out = Vec::new();
                assert!(c.pop(&mut out));
            }
        }
        let mut out = Vec::new();
        let mut last = None;
        while c.pop(&mut out) {
            last = Some(u32::from_le_bytes(out[..4].try_into().unwrap()));
        }
        assert_eq!(last, Some(999));
    }

    #[test]
    fn rings_of_one_segment_do_not_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            bells: 3,
            rings: 4,
            capacity: 256,
        };
        let a = Arc::new(Segment::create_in(dir.path(), "m", layout).unwrap());
        let b = Arc::new(Segment::open(a.path(), Duration::from_secs(1)).unwrap());
        a.unlink().unwrap();
        let mut ends: Vec<_> = (0..4).map(|i| split(a.ring(i), b.ring(i))).collect();
        for round in 0..100u32 {
            for (i, (p, _)) in ends.iter_mut().enumerate() {
                assert!(p.push(&[i as u8; 40]));
            }
            for (i, (_, c)) in ends.iter_mut().enumerate() {
                let mut out = Vec::new();
                assert!(c.pop(&mut out), "ring {i} round {round}");
                assert_eq!(out, vec![i as u8; 40]);
            }
        }
        // The bells are lines of their own, beside the rings.
        a.bell(2).ring_now();
        assert_eq!(b.bell(2).rung(), 1);
        assert_eq!(b.bell(0).rung(), 0);
    }

    #[test]
    fn a_file_that_is_not_a_segment_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("waxfast-1-x-bad");
        let len = one_ring(1024).len();
        std::fs::write(&p, vec![0u8; len]).unwrap();
        let e = Segment::open(&p, Duration::from_millis(20))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("waxfast-1-x-bad") && e.contains("not ready"),
            "{e}"
        );
        let mut bytes = vec![0u8; len];
        bytes[..8].copy_from_slice(b"NOTWAX\0\0");
        bytes[32] = 1; // ready
        std::fs::write(&p, bytes).unwrap();
        let e = Segment::open(&p, Duration::from_millis(20))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad magic"), "{e}");
    }

    #[test]
    fn a_header_that_disagrees_with_the_file_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Segment::create_in(dir.path(), "len", one_ring(1024)).unwrap();
        let f = OpenOptions::new().write(true).open(a.path()).unwrap();
        f.set_len(one_ring(1024).len() as u64 - 128).unwrap();
        let e = Segment::open(a.path(), Duration::from_millis(20))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 rings of 1024 bytes"), "{e}");
    }

    #[test]
    fn stale_segments_of_dead_owners_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        // A pid far above pid_max is never alive.
        std::fs::write(dir.path().join("waxfast-999999999-ab-x"), b"").unwrap();
        let live = Segment::create_in(dir.path(), "live", one_ring(64)).unwrap();
        std::fs::write(dir.path().join("unrelated"), b"").unwrap();
        assert_eq!(sweep_stale(dir.path()), 1);
        assert!(live.path().exists());
        assert!(dir.path().join("unrelated").exists());
    }
}
