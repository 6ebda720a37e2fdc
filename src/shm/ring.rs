//! A lock-free single-producer single-consumer ring of variable-length records over a
//! region of memory it does not own: the building block of the shared-memory transport
//! (ARCHITECTURE.md, "Shared-memory rings"). The ring takes its memory as a parameter
//! ([`RingMemory`]), so the same code runs on a mapping shared by two processes (the
//! segments of the shared-memory transport, `transport::shm`), on heap memory in plain tests,
//! and on loom's instrumented atomics and cells in the model tests that check its
//! memory ordering.
//!
//! Layout and protocol:
//! * `head` (written only by the producer) and `tail` (written only by the consumer) are
//!   monotonically increasing byte positions (`u64`, never wrapping in practice); a
//!   position's place in the data region is `position & (capacity - 1)`, the capacity
//!   being a power of two. `head - tail` bytes are in use.
//! * A record is an 8-byte header (its payload length as a little-endian `u32`, and four
//!   zero bytes) followed by its payload, padded to a multiple of 8 bytes. A record never
//!   wraps: when it does not fit before the end of the region, the producer writes a
//!   header with [`WRAP`] there and starts the record at the region's start.
//! * The producer writes the record's bytes, then publishes them by storing the new
//!   `head` with `Release`; the consumer loads `head` with `Acquire` before reading them.
//!   The consumer frees bytes by storing the new `tail` with `Release`; the producer
//!   loads `tail` with `Acquire` before writing over them. Each side keeps a copy of the
//!   other's position and reloads it only when the copy says the ring is full (or
//!   empty), so a push or pop touches the other side's cache line only then.
//! * A full ring is backpressure: [`Producer::push`] returns `false` and writes nothing.
//!   Nothing is ever overwritten.

use std::sync::atomic::Ordering;

use super::annotate;

/// Bytes of a record's header.
pub const HEADER: usize = 8;
/// The length a header holds for "the rest of the region is padding: continue at its
/// start".
pub const WRAP: u32 = u32::MAX;

/// An atomic `u64` position (std's in a mapping, loom's in model tests).
pub trait Cursor {
    /// Loads the position.
    fn load(&self, order: Ordering) -> u64;
    /// Stores the position.
    fn store(&self, value: u64, order: Ordering);
}

impl Cursor for std::sync::atomic::AtomicU64 {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        std::sync::atomic::AtomicU64::load(self, order)
    }
    #[inline]
    fn store(&self, value: u64, order: Ordering) {
        std::sync::atomic::AtomicU64::store(self, value, order)
    }
}

/// The memory a ring runs on: two positions and a data region of `capacity` bytes.
///
/// # Safety
///
/// An implementation must give a data region of exactly `capacity()` bytes (a power of
/// two, at least 64) that stays valid and is not accessed by anything but this ring's
/// producer and consumer for as long as they exist, and `head` / `tail` cursors that
/// are shared by exactly one producer and one consumer.
pub unsafe trait RingMemory {
    /// The cursor type.
    type Cursor: Cursor;
    /// The producer's position.
    fn head(&self) -> &Self::Cursor;
    /// The consumer's position.
    fn tail(&self) -> &Self::Cursor;
    /// Bytes of the data region.
    fn capacity(&self) -> usize;
    /// Copies `bytes` into the data region at offset `at`.
    ///
    /// # Safety
    ///
    /// `at + bytes.len() <= capacity()`, and the range is owned by the caller: the
    /// producer, writing bytes that are not in use (between `head` and `tail + capacity`).
    unsafe fn write(&self, at: usize, bytes: &[u8]);
    /// Copies `len` bytes of the data region at offset `at` to `out`.
    ///
    /// # Safety
    ///
    /// `at + len <= capacity()`, and the range is owned by the caller: the consumer,
    /// reading bytes the producer published (between `tail` and `head`). `out` is valid
    /// for writes of `len` bytes (it may be uninitialised) and does not overlap the
    /// region.
    unsafe fn read(&self, at: usize, out: *mut u8, len: usize);
}

/// Ring memory whose data region is plain addressable bytes, so the consumer may read
/// a record where it lies ([`Consumer::pop_with`]) instead of copying it out.
///
/// # Safety
///
/// As [`RingMemory`]; `slice` must return exactly the bytes `read` would copy.
pub unsafe trait SliceMemory: RingMemory {
    /// The `len` bytes of the data region at offset `at`.
    ///
    /// # Safety
    ///
    /// As for [`RingMemory::read`]; the bytes must not be written (the range stays the
    /// consumer's) while the returned slice lives.
    unsafe fn slice(&self, at: usize, len: usize) -> &[u8];
    /// The `len` bytes of the data region at offset `at`, to write.
    ///
    /// # Safety
    ///
    /// As for [`RingMemory::write`]; nothing else reads or writes the range while the
    /// returned slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, at: usize, len: usize) -> &mut [u8];
}

/// Bytes a record of `len` payload bytes takes in the ring.
#[inline]
pub const fn footprint(len: usize) -> usize {
    HEADER + ((len + 7) & !7)
}

/// The largest payload a ring of `capacity` bytes accepts: a record may need the room
/// of a wrap marker on top of its own, so it takes at most half the ring.
#[inline]
pub const fn max_payload(capacity: usize) -> usize {
    capacity / 2 - HEADER
}

fn header(len: u32) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h
}

/// The writing end.
#[derive(Debug)]
pub struct Producer<M: RingMemory> {
    mem: M,
    mask: u64,
    head: u64,
    /// The consumer's position as last seen.
    tail: u64,
}

/// The reading end.
#[derive(Debug)]
pub struct Consumer<M: RingMemory> {
    mem: M,
    mask: u64,
    tail: u64,
    /// The producer's position as last seen.
    head: u64,
}

/// The two ends of a ring over `producer_mem` and `consumer_mem`: two handles on the
/// same memory (two references, two `Arc`s, or the two processes' mappings), whose
/// positions must start equal (both zero for a new ring).
///
/// # Panics
///
/// If the capacity is not a power of two of at least 64 bytes, or the two handles
/// disagree on it.
pub fn split<M: RingMemory>(producer_mem: M, consumer_mem: M) -> (Producer<M>, Consumer<M>) {
    let cap = producer_mem.capacity();
    assert!(
        cap.is_power_of_two() && cap >= 64 && consumer_mem.capacity() == cap,
        "a ring's capacity must be a power of two of at least 64 bytes, the same on both ends"
    );
    (Producer::new(producer_mem), Consumer::new(consumer_mem))
}

impl<M: RingMemory> Producer<M> {
    /// The producer of a ring over `mem`, continuing from its current positions.
    pub fn new(mem: M) -> Self {
        annotate::atomic_word(mem.head());
        annotate::atomic_word(mem.tail());
        let head = mem.head().load(Ordering::Relaxed);
        let tail = mem.tail().load(Ordering::Acquire);
        let mask = mem.capacity() as u64 - 1;
        Producer {
            mem,
            mask,
            head,
            tail,
        }
    }

    /// Appends one record; `false` (and nothing written) if the ring has no room now.
    ///
    /// # Panics
    ///
    /// If `payload` is longer than [`max_payload`] of the capacity.
    pub fn push(&mut self, payload: &[u8]) -> bool {
        let Some((at, total)) = self.claim(payload.len()) else {
            return false;
        };
        // SAFETY: `claim` gave the `footprint(len)` free bytes at `at`, within the region.
        unsafe {
            self.mem.write(at, &header(payload.len() as u32));
            self.mem.write(at + HEADER, payload);
        }
        self.publish(total);
        true
    }

    /// Appends a record of `len` bytes that `write` fills where it lies in the ring
    /// (it is handed them zeroed or stale, never the consumer's); `false` (and `write`
    /// not called) if there is no room now.
    ///
    /// # Panics
    ///
    /// If `len` is more than [`max_payload`] of the capacity.
    pub fn push_with(&mut self, len: usize, write: impl FnOnce(&mut [u8])) -> bool
    where
        M: SliceMemory,
    {
        let Some((at, total)) = self.claim(len) else {
            return false;
        };
        // SAFETY: `claim` gave the `footprint(len)` free bytes at `at`, within the region;
        // only this producer writes them, and the consumer reads them only after
        // `publish`, when the slice is gone.
        unsafe {
            self.mem.write(at, &header(len as u32));
            write(self.mem.slice_mut(at + HEADER, len));
        }
        self.publish(total);
        true
    }

    /// Finds room for a record of `len` payload bytes (writing a wrap marker if it goes
    /// at the region's start): where its header goes, and the bytes it takes from
    /// `head`; `None` if the ring has no room now.
    fn claim(&mut self, len: usize) -> Option<(usize, u64)> {
        let cap = self.mem.capacity();
        assert!(
            len <= max_payload(cap),
            "a record of {len} bytes does not fit a ring of {cap} bytes"
        );
        let need = footprint(len) as u64;
        let at = (self.head & self.mask) as usize;
        let to_end = (cap - at) as u64;
        let total = if need > to_end { to_end + need } else { need };
        if self.head + total - self.tail > cap as u64 {
            // Acquire: the consumer's reads of the bytes it freed happened before.
            let tail = self.mem.tail().load(Ordering::Acquire);
            if tail != self.tail {
                annotate::happens_after(self.mem.tail());
                self.tail = tail;
            }
            if self.head + total - self.tail > cap as u64 {
                return None;
            }
        }
        if need > to_end {
            // SAFETY: `at + HEADER <= cap` (records are 8-aligned and `at < cap`), and the
            // bytes from `head` up to `tail + cap` are free: only this producer writes them.
            unsafe { self.mem.write(at, &header(WRAP)) };
            return Some((0, total));
        }
        // The record fits before the end, and those bytes are free (checked against
        // `tail` above).
        Some((at, total))
    }

    /// Publishes the record `claim` made room for (`total` bytes from `head`).
    fn publish(&mut self, total: u64) {
        self.head += total;
        // Release: the record's bytes are visible to the consumer before the new head.
        annotate::happens_before(self.mem.head());
        self.mem.head().store(self.head, Ordering::Release);
    }

    /// Bytes the consumer has not taken yet, as last seen.
    pub fn in_use(&self) -> u64 {
        self.head - self.tail
    }
}

impl<M: RingMemory> Consumer<M> {
    /// The consumer of a ring over `mem`, continuing from its current positions.
    pub fn new(mem: M) -> Self {
        annotate::atomic_word(mem.head());
        annotate::atomic_word(mem.tail());
        let tail = mem.tail().load(Ordering::Relaxed);
        let head = mem.head().load(Ordering::Acquire);
        let mask = mem.capacity() as u64 - 1;
        Consumer {
            mem,
            mask,
            tail,
            head,
        }
    }

    /// Takes the next record into `out` (replacing its contents); `false` if the ring
    /// is empty now.
    pub fn pop(&mut self, out: &mut Vec<u8>) -> bool {
        out.clear();
        self.pop_append(out)
    }

    /// Takes the next record and appends it to `out`; `false` if the ring is empty now.
    pub fn pop_append(&mut self, out: &mut Vec<u8>) -> bool {
        self.take(|mem, at, len| read_append(mem, at, len, out))
            .is_some()
    }

    /// Takes the next record: its first `prefix.len()` bytes (or all of it, if it is
    /// shorter) into `prefix`, the rest into `out` (replacing its contents). The
    /// record's length, or `None` if the ring is empty now.
    pub fn pop_split(&mut self, prefix: &mut [u8], out: &mut Vec<u8>) -> Option<usize> {
        self.take(|mem, at, len| {
            let head = len.min(prefix.len());
            // SAFETY: the range lies within the record, which lies within the region
            // and was published (`take`); `prefix` has room for `head` bytes.
            unsafe { mem.read(at, prefix.as_mut_ptr(), head) };
            out.clear();
            read_append(mem, at + head, len - head, out);
            len
        })
    }

    /// Hands the next record, where it lies in the ring, to `f`, then frees it;
    /// `None` if the ring is empty now.
    pub fn pop_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R>
    where
        M: SliceMemory,
    {
        self.take(|mem, at, len| {
            // SAFETY: the record lies within the region and was published (`take`); the
            // producer does not write it before `take` frees it, after `f` returned and
            // the slice is gone.
            f(unsafe { mem.slice(at, len) })
        })
    }

    /// Finds the next record and hands `(memory, offset, length)` of its payload to
    /// `read`, then frees it; what `read` returned, or `None` if the ring is empty.
    fn take<R>(&mut self, read: impl FnOnce(&M, usize, usize) -> R) -> Option<R> {
        loop {
            if self.tail == self.head {
                // Acquire: the producer's writes of the records up to `head` are visible.
                self.head = self.mem.head().load(Ordering::Acquire);
                if self.tail == self.head {
                    return None;
                }
                annotate::happens_after(self.mem.head());
            }
            let at = (self.tail & self.mask) as usize;
            let mut h = [0u8; HEADER];
            // SAFETY: `at + HEADER <= cap` (8-aligned), and the bytes between `tail` and
            // `head` were published by the producer and are not written until freed.
            unsafe { self.mem.read(at, h.as_mut_ptr(), HEADER) };
            let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
            if len == WRAP {
                self.tail += (self.mem.capacity() - at) as u64;
                continue;
            }
            let len = len as usize;
            assert!(
                at + footprint(len) <= self.mem.capacity(),
                "corrupt ring: a record of {len} bytes at offset {at} runs past the end"
            );
            // The payload `at + HEADER .. at + HEADER + len` lies within the region
            // (asserted) and was published: `read` may copy out of it.
            let r = read(&self.mem, at + HEADER, len);
            self.tail += footprint(len) as u64;
            // Release: our reads of the record happen before the producer reuses it.
            annotate::happens_before(self.mem.tail());
            self.mem.tail().store(self.tail, Ordering::Release);
            return Some(r);
        }
    }

    /// True if no record is waiting (reloads the producer's position).
    pub fn is_empty(&mut self) -> bool {
        self.head = self.mem.head().load(Ordering::Acquire);
        self.tail == self.head
    }
}

/// Appends `len` bytes of `mem` at `at` (a published range of the record `take` found)
/// to `out`, without zeroing them first.
fn read_append<M: RingMemory>(mem: &M, at: usize, len: usize, out: &mut Vec<u8>) {
    if out.is_empty() && out.capacity() < len {
        // Growing would copy the old buffer's stale bytes along.
        *out = Vec::with_capacity(len);
    }
    out.reserve(len);
    let start = out.len();
    // SAFETY: the range lies within the record, which lies within the region and was
    // published (`take`); `reserve` made `len` bytes of room after `start`, which the
    // copy fills before `set_len` counts them.
    unsafe {
        mem.read(at, out.as_mut_ptr().add(start), len);
        out.set_len(start + len);
    }
}

/// A ring's memory on the heap: for tests, and for rings between threads.
#[derive(Debug)]
pub struct HeapMemory {
    head: std::sync::atomic::AtomicU64,
    tail: std::sync::atomic::AtomicU64,
    data: Box<[std::cell::UnsafeCell<u8>]>,
}

// SAFETY: the data region is only accessed through `RingMemory::write`/`read`, whose
// contracts give each byte range to one side at a time, ordered by the cursors.
unsafe impl Sync for HeapMemory {}

impl HeapMemory {
    /// `capacity` bytes (a power of two, at least 64), positions at zero.
    pub fn new(capacity: usize) -> Self {
        HeapMemory {
            head: 0.into(),
            tail: 0.into(),
            data: (0..capacity)
                .map(|_| std::cell::UnsafeCell::new(0))
                .collect(),
        }
    }
}

// SAFETY: `data` has exactly `capacity()` bytes for the memory's life; the cursors are
// the memory's own.
unsafe impl RingMemory for &HeapMemory {
    type Cursor = std::sync::atomic::AtomicU64;
    fn head(&self) -> &Self::Cursor {
        &self.head
    }
    fn tail(&self) -> &Self::Cursor {
        &self.tail
    }
    fn capacity(&self) -> usize {
        self.data.len()
    }
    // SAFETY: the caller upholds `RingMemory::write`'s contract (see the block below).
    unsafe fn write(&self, at: usize, bytes: &[u8]) {
        // SAFETY: the caller owns `at..at + len` (within the region); `UnsafeCell<u8>`
        // has the layout of `u8`, so the cells are contiguous bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.data[at..at + bytes.len()].as_ptr() as *mut u8,
                bytes.len(),
            )
        }
    }
    // SAFETY: the caller upholds `RingMemory::read`'s contract (see the block below).
    unsafe fn read(&self, at: usize, out: *mut u8, len: usize) {
        // SAFETY: as for `write`, for the consumer's published range; `out` is valid
        // for `len` bytes (the caller's contract).
        unsafe {
            std::ptr::copy_nonoverlapping(self.data[at..at + len].as_ptr() as *const u8, out, len)
        }
    }
}

// SAFETY: the cells are contiguous bytes (`UnsafeCell<u8>` has the layout of `u8`), the
// very ones `read` copies.
unsafe impl SliceMemory for &HeapMemory {
    unsafe fn slice(&self, at: usize, len: usize) -> &[u8] {
        // SAFETY: the range lies within the region (the caller's contract) and is not
        // written while the slice lives.
        unsafe { std::slice::from_raw_parts(self.data[at..at + len].as_ptr() as *const u8, len) }
    }
    unsafe fn slice_mut(&self, at: usize, len: usize) -> &mut [u8] {
        // SAFETY: the range lies within the region and is the producer's alone while
        // the slice lives (the caller's contract); the cells allow writes through `&`.
        unsafe { std::slice::from_raw_parts_mut(self.data[at..at + len].as_ptr() as *mut u8, len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_every_size_come_out_whole_and_in_order_across_wraps() {
        let mem = HeapMemory::new(256);
        let (mut p, mut c) = split(&mem, &mem);
        let mut out = Vec::new();
        let mut next_out = 0u32;
        let mut sent = 0u32;
        for round in 0..2000u32 {
            let len = (round as usize * 7) % (max_payload(256) + 1);
            let rec: Vec<u8> = (0..len).map(|i| (i as u32 ^ sent) as u8).collect();
            while !p.push(&rec) {
                assert!(c.pop(&mut out), "a full ring has a record to pop");
                let want = (next_out as usize * 7) % (max_payload(256) + 1);
                assert_eq!(out.len(), want);
                assert!(out
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == (i as u32 ^ next_out) as u8));
                next_out += 1;
            }
            sent += 1;
        }
        while c.pop(&mut out) {
            next_out += 1;
        }
        assert_eq!(next_out, sent);
        assert!(c.is_empty());
    }

    #[test]
    fn records_read_in_place_equal_the_pushed_ones_across_wraps() {
        let mem = HeapMemory::new(256);
        let (mut p, mut c) = split(&mem, &mem);
        let (mut sent, mut got) = (0u32, 0u32);
        let record = |n: u32| -> Vec<u8> {
            let len = (n as usize * 13) % (max_payload(256) + 1);
            (0..len).map(|i| (i as u32 ^ n) as u8).collect()
        };
        while sent < 3000 {
            if p.push(&record(sent)) {
                sent += 1;
                continue;
            }
            let same = c.pop_with(|r| r == record(got).as_slice());
            assert_eq!(same, Some(true), "record {got}");
            got += 1;
        }
        while let Some(same) = c.pop_with(|r| r == record(got).as_slice()) {
            assert!(same, "record {got}");
            got += 1;
        }
        assert_eq!(got, sent);
        assert_eq!(c.pop_with(|_| ()), None);
    }

    #[test]
    fn a_full_ring_refuses_and_overwrites_nothing() {
        let mem = HeapMemory::new(64);
        let (mut p, mut c) = split(&mem, &mem);
        assert!(p.push(&[1; 8]));
        assert!(p.push(&[2; 8]));
        assert!(p.push(&[3; 8]));
        assert!(p.push(&[4; 8]));
        assert!(!p.push(&[5; 8]), "64 bytes hold four 16-byte records");
        let mut out = Vec::new();
        for b in 1..=4u8 {
            assert!(c.pop(&mut out));
            assert_eq!(out, vec![b; 8]);
        }
        assert!(!c.pop(&mut out));
    }

    #[test]
    fn a_record_splits_into_a_prefix_and_the_rest_or_appends() {
        let mem = HeapMemory::new(256);
        let (mut p, mut c) = split(&mem, &mem);
        assert!(p.push(&[1, 2, 3, 4, 5, 6]));
        assert!(p.push(&[7, 8]));
        assert!(p.push(&[9]));
        let mut prefix = [0u8; 4];
        let mut out = vec![42];
        assert_eq!(c.pop_split(&mut prefix, &mut out), Some(6));
        assert_eq!((prefix, out.as_slice()), ([1, 2, 3, 4], &[5, 6][..]));
        let mut prefix = [0u8; 4];
        assert_eq!(
            c.pop_split(&mut prefix, &mut out),
            Some(2),
            "shorter than the prefix"
        );
        assert_eq!((&prefix[..2], out.len()), (&[7, 8][..], 0));
        let mut acc = vec![0];
        assert!(c.pop_append(&mut acc));
        assert_eq!(acc, vec![0, 9]);
        assert!(!c.pop_append(&mut acc));
        assert_eq!(c.pop_split(&mut prefix, &mut out), None);
    }

    #[test]
    fn records_of_a_quarter_ring_and_odd_sizes_wrap_whole() {
        let cap = 1 << 16;
        let mem = HeapMemory::new(cap);
        let (mut p, mut c) = split(&mem, &mem);
        let sizes = [cap / 4, cap / 4, cap / 40, cap / 4 - 3, 17, cap / 4];
        let mut out = Vec::new();
        let (mut sent, mut got) = (0usize, 0usize);
        let check = |out: &Vec<u8>, n: usize| {
            assert_eq!(out.len(), sizes[n % sizes.len()], "record {n}");
            assert!(out.iter().all(|&b| b == n as u8), "record {n}");
        };
        while sent < 500 {
            let rec = vec![sent as u8; sizes[sent % sizes.len()]];
            if p.push(&rec) {
                sent += 1;
            } else {
                assert!(c.pop(&mut out), "a full ring has a record");
                check(&out, got);
                got += 1;
            }
        }
        while c.pop(&mut out) {
            check(&out, got);
            got += 1;
        }
        assert_eq!(got, sent);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_record_over_half_the_ring_is_refused_loudly() {
        let mem = HeapMemory::new(64);
        let (mut p, _c) = split(&mem, &mem);
        p.push(&[0; 25]);
    }

    #[test]
    fn two_threads_move_a_million_numbered_records_in_order() {
        let mem = HeapMemory::new(4096);
        // scripts/test runs this under valgrind's DRD with fewer records.
        let n: u64 = std::env::var("WAXFAST_RING_STRESS_RECORDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        std::thread::scope(|s| {
            let (mut p, mut c) = split(&mem, &mem);
            s.spawn(move || {
                for i in 0..n {
                    let len = (i % 24) as usize;
                    let mut rec = i.to_le_bytes().to_vec();
                    rec.resize(8 + len, i as u8);
                    while !p.push(&rec) {
                        std::hint::spin_loop();
                    }
                }
            });
            let mut out = Vec::new();
            for i in 0..n {
                while !c.pop(&mut out) {
                    std::hint::spin_loop();
                }
                assert_eq!(u64::from_le_bytes(out[..8].try_into().unwrap()), i);
                assert_eq!(out.len(), 8 + (i % 24) as usize);
                assert!(out[8..].iter().all(|&b| b == i as u8));
            }
            assert!(!c.pop(&mut out));
        });
    }

    /// loom explores every interleaving of a producer and a consumer on a 64-byte ring
    /// (three 12-byte records: the third wraps behind a marker), checking that every
    /// access to the data region is ordered by the cursors (loom's cells report any
    /// unsynchronised access) and that the records arrive whole and in order.
    mod model {
        use super::super::*;
        use loom::cell::UnsafeCell;
        use loom::sync::atomic::AtomicU64;
        use loom::sync::Arc;

        struct LoomMemory {
            head: AtomicU64,
            tail: AtomicU64,
            data: Vec<UnsafeCell<u8>>,
        }

        impl Cursor for AtomicU64 {
            fn load(&self, order: Ordering) -> u64 {
                AtomicU64::load(self, order)
            }
            fn store(&self, value: u64, order: Ordering) {
                AtomicU64::store(self, value, order)
            }
        }

        // SAFETY: `data` has `capacity()` cells for the memory's life.
        unsafe impl RingMemory for Arc<LoomMemory> {
            type Cursor = AtomicU64;
            fn head(&self) -> &AtomicU64 {
                &self.head
            }
            fn tail(&self) -> &AtomicU64 {
                &self.tail
            }
            fn capacity(&self) -> usize {
                self.data.len()
            }
            unsafe fn write(&self, at: usize, bytes: &[u8]) {
                for (i, &b) in bytes.iter().enumerate() {
                    // SAFETY: loom checks that no other access to the cell is unordered
                    // with this one.
                    self.data[at + i].with_mut(|p| unsafe { *p = b });
                }
            }
            unsafe fn read(&self, at: usize, out: *mut u8, len: usize) {
                for i in 0..len {
                    // SAFETY: as for `write`; `out` is valid for `len` bytes.
                    unsafe { *out.add(i) = self.data[at + i].with(|p| *p) };
                }
            }
        }

        #[test]
        fn every_interleaving_of_push_pop_and_wrap_is_ordered() {
            loom::model(|| {
                let mem = Arc::new(LoomMemory {
                    head: AtomicU64::new(0),
                    tail: AtomicU64::new(0),
                    data: (0..64).map(|_| UnsafeCell::new(0)).collect(),
                });
                let (mut p, mut c) = split(mem.clone(), mem);
                let t = loom::thread::spawn(move || {
                    for i in 1..=3u8 {
                        while !p.push(&[i; 12]) {
                            loom::thread::yield_now();
                        }
                    }
                });
                let mut out = Vec::new();
                for i in 1..=3u8 {
                    while !c.pop(&mut out) {
                        loom::thread::yield_now();
                    }
                    assert_eq!(out, vec![i; 12]);
                }
                t.join().unwrap();
                assert!(!c.pop(&mut out));
            });
        }
    }
}
