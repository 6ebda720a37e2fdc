//! A shared-memory segment holding one ring: a file under `/dev/shm` (the practice of
//! iceoryx2 and Aeron), mapped by the two processes it connects.
//!
//! * Created exclusively (`O_CREAT | O_EXCL`) with mode 0600 under a name unique to
//!   the run (`waxfast-{owner pid}-{nonce}-{label}`), and its whole size reserved up
//!   front with `posix_fallocate`, so a full `/dev/shm` is an error when the segment is
//!   made, never a SIGBUS when a page is first touched.
//! * A header (magic, layout version, data size, owner pid) on the first 128-byte line,
//!   then the ring's `head` and `tail` cursors on lines of their own (no false sharing),
//!   then the data region. The creator writes the header, then sets the `ready` word
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
use std::time::{Duration, Instant};

use memmap2::MmapMut;

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
const HEAD_AT: usize = LINE;
const TAIL_AT: usize = 2 * LINE;
const DATA_AT: usize = 3 * LINE;

/// The header, at offset 0 of the mapping.
#[repr(C)]
struct Header {
    magic: [u8; 8],
    version: u32,
    owner: u32,
    capacity: u64,
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

/// A mapped segment holding one ring of `capacity` data bytes.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    map: MmapMut,
    capacity: usize,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> SegmentError {
    SegmentError::Io(format!(
        "cannot {what} the shared-memory segment {}: {e}",
        path.display()
    ))
}

impl Segment {
    /// Creates a new segment for a ring of `capacity` bytes (a power of two, at least
    /// 64) under [`DIR`], named for this process and `label`.
    pub fn create(label: &str, capacity: usize) -> Result<Segment, SegmentError> {
        Self::create_in(Path::new(DIR), label, capacity)
    }

    /// [`create`](Self::create) in another directory (tests).
    pub fn create_in(dir: &Path, label: &str, capacity: usize) -> Result<Segment, SegmentError> {
        assert!(
            capacity.is_power_of_two() && capacity >= 64,
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
        let len = DATA_AT + capacity;
        // SAFETY: posix_fallocate on a file descriptor we own, with a valid range.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
        if rc != 0 {
            let _ = std::fs::remove_file(&path);
            return Err(io(
                "reserve space for",
                &path,
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        let mut seg = Self::map(file, &path, capacity)?;
        // SAFETY: the mapping is at least `DATA_AT` bytes, page-aligned (so `Header` is
        // aligned), and nobody else has opened the file yet (created exclusively, not
        // ready), so this is the only access.
        let header = unsafe { &mut *(seg.map.as_mut_ptr() as *mut Header) };
        header.magic = MAGIC;
        header.version = LAYOUT_VERSION;
        header.owner = std::process::id();
        header.capacity = capacity as u64;
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
        if len < DATA_AT + 64 {
            return Err(invalid(format!("{len} bytes is too small for a segment")));
        }
        let seg = Self::map(file, path, len - DATA_AT)?;
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
        let cap = header.capacity as usize;
        if cap != len - DATA_AT || !cap.is_power_of_two() {
            return Err(invalid(format!(
                "the header says {cap} data bytes but the file has {}",
                len - DATA_AT
            )));
        }
        Ok(seg)
    }

    fn map(file: File, path: &Path, capacity: usize) -> Result<Segment, SegmentError> {
        // SAFETY: the file is a segment only waxfast processes of this run open (mode
        // 0600, a unique name); its length is fixed (reserved up front and never
        // truncated), so the mapping stays valid while `Segment` lives. Concurrent access
        // by the other process goes through the ring's atomics and its protocol.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io("map", path, e))?;
        if map.len() < DATA_AT + capacity {
            return Err(SegmentError::Invalid {
                path: path.to_path_buf(),
                why: format!("mapped {} bytes, need {}", map.len(), DATA_AT + capacity),
            });
        }
        Ok(Segment {
            path: path.to_path_buf(),
            map,
            capacity,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is page-aligned and at least `DATA_AT` bytes; the header's
        // plain fields are written once before `ready` and only read after it.
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

    /// Removes the segment's name: call once both sides have mapped it. The mapping
    /// stays valid; nothing is left behind when the processes end, however they end.
    pub fn unlink(&self) -> Result<(), SegmentError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("unlink", &self.path, e)),
        }
    }

    fn cursor(&self, at: usize) -> &AtomicU64 {
        // SAFETY: `at` is `HEAD_AT` or `TAIL_AT`: within the mapping, 128-aligned (so
        // 8-aligned), and only ever accessed as this atomic by both processes.
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().add(at) as *mut u64) }
    }
}

// SAFETY: the data region is `capacity` bytes at `DATA_AT` of a mapping that lives as
// long as the segment; the cursors are the segment's own, and each segment is given to
// one producer and one consumer (one per process).
unsafe impl RingMemory for &Segment {
    type Cursor = AtomicU64;
    fn head(&self) -> &AtomicU64 {
        self.cursor(HEAD_AT)
    }
    fn tail(&self) -> &AtomicU64 {
        self.cursor(TAIL_AT)
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
    unsafe fn write(&self, at: usize, bytes: &[u8]) {
        // SAFETY: the caller owns `at..at + len` of the data region (the ring's
        // contract), which lies within the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (self.map.as_ptr() as *mut u8).add(DATA_AT + at),
                bytes.len(),
            )
        }
    }
    unsafe fn read(&self, at: usize, out: &mut [u8]) {
        // SAFETY: as for `write`, for the consumer's published range.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(DATA_AT + at),
                out.as_mut_ptr(),
                out.len(),
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

    #[test]
    fn two_mappings_of_one_segment_are_one_ring() {
        let dir = tempfile::tempdir().unwrap();
        let a = Segment::create_in(dir.path(), "t", 1024).unwrap();
        let meta = std::fs::metadata(a.path()).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        let b = Segment::open(a.path(), Duration::from_secs(1)).unwrap();
        assert_eq!(b.owner(), std::process::id());
        a.unlink().unwrap();
        assert!(!a.path().exists(), "unlinked once both sides mapped it");
        let (mut p, mut c): (Producer<&Segment>, Consumer<&Segment>) = split(&a, &b);
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
    fn a_file_that_is_not_a_segment_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("waxfast-1-x-bad");
        std::fs::write(&p, vec![0u8; DATA_AT + 1024]).unwrap();
        let e = Segment::open(&p, Duration::from_millis(20))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("waxfast-1-x-bad") && e.contains("not ready"),
            "{e}"
        );
        let mut bytes = vec![0u8; DATA_AT + 1024];
        bytes[..8].copy_from_slice(b"NOTWAX\0\0");
        bytes[24] = 1; // ready
        std::fs::write(&p, bytes).unwrap();
        let e = Segment::open(&p, Duration::from_millis(20))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad magic"), "{e}");
    }

    #[test]
    fn stale_segments_of_dead_owners_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        // A pid far above pid_max is never alive.
        std::fs::write(dir.path().join("waxfast-999999999-ab-x"), b"").unwrap();
        let live = Segment::create_in(dir.path(), "live", 64).unwrap();
        std::fs::write(dir.path().join("unrelated"), b"").unwrap();
        assert_eq!(sweep_stale(dir.path()), 1);
        assert!(live.path().exists());
        assert!(dir.path().join("unrelated").exists());
    }
}
