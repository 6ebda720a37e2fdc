//! Files and directories: line sources and line sinks.
//!
//! * [`FileSource`] reads the lines of one file. By default it is one partition; with
//!   [`FileSource::split_by`] a large file is cut into byte ranges, each a partition that
//!   owns the lines *starting* inside it, so all workers read in parallel (Bytewax reads a
//!   file on one worker). The number of partitions depends only on the file size, never
//!   on the worker count, so resume positions stay valid when a run is rescaled.
//! * [`DirSource`] reads every file of a directory matching a glob, one partition each.
//! * [`FileSink`] writes the values of a keyed stream as lines to one file; [`DirSink`]
//!   spreads them over `file_count` files by key.
//!
//! A path that is not a regular file (a pipe, FIFO, device, or a `/proc` file, which
//! reports 0 bytes) is read as one stream partition, without a resume position.
//!
//! Resume states are byte offsets; a source's also carries the file's length and a
//! checksum of the bytes read, which a resumed run checks before it starts
//! ([`FileSource`]'s `check_resume`), so a changed input is an error, not a wrong count.
//! Sinks write to `<path>.partial` and rename it to `<path>` (after an fsync) only when
//! the run completes, so a failed run never leaves a file that looks complete (without
//! recovery it removes the partial file); a resumed run truncates the partial file to its
//! snapshot.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};

use crate::error::BoxError;
use crate::io::{
    FixedPartitionedSink, FixedPartitionedSource, Sink, SinkKind, Source, SourceKind, SourceStatus,
    StatefulSinkPartition, StatefulSourcePartition,
};
use crate::runtime::push::Data;
use crate::Key;

/// Reads the lines of a text file (without their line endings).
///
/// A missing or unreadable file, or a directory, is an error naming the path when the
/// flow starts (before any output); a line that is not valid UTF-8 is an error naming
/// the path and the line's byte offset.
///
/// ```no_run
/// use waxfast::connectors::files::FileSource;
/// // One partition, like Bytewax:
/// let lines = FileSource::new("input.txt");
/// // Byte ranges of about 64 MiB each, read by all workers in parallel:
/// let parallel = FileSource::new("big.txt").split_by(64 << 20);
/// # let _ = (lines, parallel);
/// ```
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    batch_size: usize,
    split_bytes: Option<u64>,
    progress: Progress,
}

/// One progress bar shared by every partition of a file source, on every worker of the
/// process: bytes read of the total, rate and ETA, on stderr. Only shown when stderr is
/// a terminal, so logs and pipes stay clean.
#[derive(Debug, Clone, Default)]
struct Progress(Arc<OnceLock<Option<indicatif::ProgressBar>>>);

impl Progress {
    /// The shared bar (made on first use, with `total` bytes), advanced by the
    /// `resumed` bytes a resumed partition will not read again.
    fn attach(&self, total: impl FnOnce() -> u64, resumed: u64) -> Option<indicatif::ProgressBar> {
        let bar = self.bar(total);
        if let Some(bar) = &bar {
            bar.inc(resumed);
        }
        bar
    }

    fn bar(&self, total: impl FnOnce() -> u64) -> Option<indicatif::ProgressBar> {
        self.0
            .get_or_init(|| {
                std::io::stderr().is_terminal().then(|| {
                    let bar = indicatif::ProgressBar::new(total());
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bytes}/{total_bytes} {wide_bar} {binary_bytes_per_sec} eta {eta}",
                        )
                        .expect("a valid template"),
                    );
                    bar
                })
            })
            .clone()
    }
}

impl FileSource {
    /// Reads `path` in one partition, 1000 lines per batch (Bytewax's default).
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileSource {
            path: path.as_ref().to_path_buf(),
            batch_size: 1000,
            split_bytes: None,
            progress: Progress::default(),
        }
    }

    /// Lines per batch (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Cuts the file into partitions of about `bytes` bytes each (at most 4096), each
    /// owning the lines that start inside its range. Partition names are
    /// `PATH@START-END`.
    pub fn split_by(mut self, bytes: u64) -> Self {
        self.split_bytes = Some(bytes.max(1));
        self
    }

    fn ranges(&self) -> Result<Vec<(u64, u64)>, BoxError> {
        let len = match InputKind::of(&self.path)? {
            // A stream cannot be split (nor seeked): one partition reads it all.
            InputKind::Stream => return Ok(vec![(0, u64::MAX)]),
            InputKind::Regular(len) => len,
        };
        let Some(chunk) = self.split_bytes else {
            return Ok(vec![(0, u64::MAX)]);
        };
        let n = len.div_ceil(chunk).clamp(1, 4096);
        Ok((0..n).map(|i| (len * i / n, len * (i + 1) / n)).collect())
    }
}

/// What a path is, for reading: a regular file of known length, or a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputKind {
    /// A regular file and its length.
    Regular(u64),
    /// A pipe, FIFO, character device or socket, or a regular file that reports 0
    /// bytes (`/proc` and `/sys` files do, whatever they hold; a truly empty file reads
    /// the same either way): read front to back, once, in one partition.
    Stream,
}

impl InputKind {
    fn of(path: &Path) -> Result<InputKind, BoxError> {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.is_dir() {
            return Err(format!("{} is a directory, expected a file", path.display()).into());
        }
        Ok(if meta.is_file() && meta.len() > 0 {
            InputKind::Regular(meta.len())
        } else {
            InputKind::Stream
        })
    }
}

fn file_len(path: &Path) -> Result<u64, BoxError> {
    Ok(match InputKind::of(path)? {
        InputKind::Regular(len) => len,
        InputKind::Stream => 0,
    })
}

fn part_name(path: &Path, (start, end): (u64, u64)) -> String {
    if end == u64::MAX {
        path.display().to_string()
    } else {
        format!("{}@{start}-{end}", path.display())
    }
}

fn parse_part_name(name: &str) -> Option<(u64, u64)> {
    let (_, range) = name.rsplit_once('@')?;
    let (s, e) = range.split_once('-')?;
    Some((s.parse().ok()?, e.parse().ok()?))
}

/// The resume state of a file partition: where to continue, and what the position was
/// read from, which a resumed run checks before it starts (ARCHITECTURE.md, "Files").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilePosition {
    /// Offset of the next line to read (for a stream: the bytes read, for messages).
    pub offset: u64,
    /// `None` for a stream, which has no position a resumed run could seek to.
    pub file: Option<FileIdentity>,
}

/// The identity of a regular file as a snapshot saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    /// The file's length when the partition was opened (its byte ranges derive from it).
    pub len: u64,
    /// Where the checksummed bytes start: the partition's start, less one byte (the
    /// byte that decides where its first line starts).
    pub origin: u64,
    /// The checksum of bytes `origin..offset` ([`checksum`]); `None` if they could not
    /// be read back when the snapshot was taken.
    pub checksum: Option<(u64, u64)>,
}

/// Bytes per checksum block.
const BLOCK: u64 = 256 << 10;

/// Running checksum of a partition's bytes from `origin`: the wrapping sum of the XXH3
/// of every whole block (seeded with its index, so blocks cannot trade places) up to
/// `upto`. With the XXH3 of the partial block after it, this is the checksum of the
/// bytes up to a position; a resumed partition continues from the sum of whole blocks
/// its snapshot saved, re-reading at most one block.
#[derive(Debug, Clone, Copy)]
struct Digest {
    origin: u64,
    upto: u64,
    blocks: u64,
}

impl Digest {
    fn new(origin: u64) -> Self {
        Digest {
            origin,
            upto: origin,
            blocks: 0,
        }
    }

    /// Continues a saved checksum `(blocks, _)` of `origin..offset`.
    fn resumed(origin: u64, offset: u64, blocks: u64) -> Self {
        Digest {
            origin,
            upto: origin + (offset.saturating_sub(origin) / BLOCK) * BLOCK,
            blocks,
        }
    }

    /// The checksum of `origin..offset`, reading the bytes not yet summed with `pread`
    /// (the partition's own read position does not move).
    fn up_to(&mut self, file: &File, offset: u64) -> std::io::Result<(u64, u64)> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; BLOCK.min(offset.saturating_sub(self.upto)) as usize];
        while self.upto + BLOCK <= offset {
            file.read_exact_at(&mut buf, self.upto)?;
            let index = (self.upto - self.origin) / BLOCK;
            self.blocks = self
                .blocks
                .wrapping_add(xxhash_rust::xxh3::xxh3_64_with_seed(&buf, index));
            self.upto += BLOCK;
        }
        let tail = &mut buf[..(offset - self.upto) as usize];
        file.read_exact_at(tail, self.upto)?;
        Ok((self.blocks, xxhash_rust::xxh3::xxh3_64(tail)))
    }
}

/// The checksum of bytes `origin..offset` of `path` (what a resumed run compares with
/// the snapshot's). Reads those bytes once.
pub fn checksum(path: &Path, origin: u64, offset: u64) -> Result<(u64, u64), BoxError> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Digest::new(origin)
        .up_to(&file, offset)
        .map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

/// Checks that the file partitions saved in a snapshot still describe their files:
/// the same kind (file or stream), the same length, and the same bytes up to each saved
/// position. `saved` holds `(path, partition name, position)`; `listed` says whether a
/// partition name is one of the source's partitions now. The checksums are computed in
/// parallel (they read every byte the snapshot had read).
fn check_saved(
    saved: &[(PathBuf, &str, &FilePosition)],
    listed: impl Fn(&Path, &str) -> bool,
) -> Result<(), BoxError> {
    let mut to_verify = Vec::new();
    for (path, name, pos) in saved {
        let now = InputKind::of(path)?;
        match (&pos.file, now) {
            (None, InputKind::Stream) => {
                tracing::warn!(
                    path = %path.display(),
                    bytes_read_before = pos.offset,
                    "{} is a stream (not a regular file, or one that reports 0 bytes): it has no resume position; the resumed run reads what it gives now",
                    path.display()
                );
            }
            (None, InputKind::Regular(len)) => {
                return Err(format!(
                    "{} changed since the snapshot: it was read as a stream then (a pipe, FIFO, device or a file reporting 0 bytes), and is a regular file of {len} bytes now",
                    path.display()
                )
                .into())
            }
            (Some(id), InputKind::Stream) => {
                return Err(format!(
                    "{} changed since the snapshot: it was a regular file of {} bytes then, and is not one now (a pipe, FIFO, device, or a file of 0 bytes)",
                    path.display(),
                    id.len
                )
                .into())
            }
            (Some(id), InputKind::Regular(len)) => {
                if id.len != len {
                    return Err(length_changed(path, id.len, len));
                }
                if !listed(path, name) {
                    return Err(format!(
                        "{}: the snapshot holds a position for partition {name:?}, which is not one of its partitions now (was the split size changed?)",
                        path.display()
                    )
                    .into());
                }
                to_verify.push((path.as_path(), id, pos.offset));
            }
        }
    }
    let started = std::time::Instant::now();
    let bytes: u64 = to_verify
        .iter()
        .map(|(_, id, offset)| offset.saturating_sub(id.origin))
        .sum();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(to_verify.len());
    let verify = || -> Result<(), BoxError> {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&(path, id, offset)) = to_verify.get(i) else {
                return Ok(());
            };
            let Some(saved) = id.checksum else {
                return Err(format!(
                    "{}: the snapshot has no checksum of bytes {}..{offset} (they could not be read back when it was taken), so it cannot be checked",
                    path.display(),
                    id.origin
                )
                .into());
            };
            if checksum(path, id.origin, offset)? != saved {
                return Err(format!(
                    "{} changed since the snapshot: bytes {}..{offset}, from which the saved state was computed, are not the same (same length, other content)",
                    path.display(),
                    id.origin
                )
                .into());
            }
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(verify)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<()>, BoxError>>()
    })?;
    tracing::info!(
        partitions = to_verify.len(),
        bytes,
        threads,
        ms = started.elapsed().as_millis() as u64,
        "files: checksums of the bytes read match the snapshot"
    );
    Ok(())
}

/// A `File` that counts the bytes it returns: how much a partition read.
#[derive(Debug)]
struct Counted {
    file: File,
    read: u64,
    /// For a stream: its bytes, read by a thread of its own.
    feed: Option<StreamFeed>,
}

impl std::io::Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match &mut self.feed {
            Some(feed) => feed.read(buf)?,
            None => self.file.read(buf)?,
        };
        self.read += n as u64;
        Ok(n)
    }
}

/// Chunks of a stream waiting for the worker.
const FEED_CHUNKS: usize = 16;

/// A stream (pipe, FIFO, terminal, `/proc` file) read by a thread of its own, so that
/// a stream with nothing to say never blocks the worker: it keeps draining its rings,
/// and stops within a round when the run is aborted (a signal, a failing peer), where a
/// blocking `read` would hold it until the writer writes. [`Read`] gives what has
/// arrived, `WouldBlock` while nothing has, and the end once the stream ended. At most
/// [`FEED_CHUNKS`] chunks of 64 KiB wait, so memory stays bounded.
#[derive(Debug)]
struct StreamFeed {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    ended: bool,
}

impl StreamFeed {
    fn start(mut file: File, path: &Path) -> std::io::Result<StreamFeed> {
        let (tx, rx) = std::sync::mpsc::sync_channel(FEED_CHUNKS);
        std::thread::Builder::new()
            .name(format!("waxfast-read {}", path.display()))
            .spawn(move || loop {
                let mut chunk = vec![0u8; 64 << 10];
                match std::io::Read::read(&mut file, &mut chunk) {
                    Ok(0) => return,
                    Ok(n) => {
                        chunk.truncate(n);
                        if tx.send(Ok(chunk)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            })?;
        Ok(StreamFeed {
            rx,
            chunk: Vec::new(),
            at: 0,
            ended: false,
        })
    }
}

impl std::io::Read for StreamFeed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.try_recv() {
                Ok(chunk) => {
                    self.chunk = chunk?;
                    self.at = 0;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    return Err(std::io::ErrorKind::WouldBlock.into())
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.ended = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Seek for Counted {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

/// Lines longer than this are moved into their `String` instead of copied.
const LONG_LINE: usize = 64 << 10;

/// A byte range of a file (or the whole file, or a stream), read line by line.
#[derive(Debug)]
pub struct FilePartition {
    path: PathBuf,
    reader: BufReader<Counted>,
    /// Offset of the next line to read.
    offset: u64,
    /// Lines starting at or after this offset belong to the next partition.
    end: u64,
    /// The file's length when opened; `None` for a stream.
    len: Option<u64>,
    /// The checksum of the bytes read, advanced when a snapshot asks for it (only runs
    /// with recovery pay for it).
    digest: std::cell::RefCell<Digest>,
    batch_size: usize,
    line: Vec<u8>,
    /// `line` holds the start of a line whose end has not arrived (streams only).
    partial_line: bool,
    /// The bytes before this offset hold no `\r` (checked once per buffer fill, so
    /// files without one pay no per-line search for it).
    cr_free_until: u64,
    bar: Option<indicatif::ProgressBar>,
    /// An error met after earlier lines of the same batch: reported on the next call,
    /// once those lines are delivered.
    pending_error: Option<BoxError>,
    /// Test hook `WAXFAST_FAULT_TRUNCATE_INPUT=N`: truncate the file to N bytes after
    /// the first batch, to fail deterministically on a file that shrinks while read.
    truncate_after_first_batch: Option<u64>,
}

/// Reads from `reader` until just past the first `\n` among the next `limit` bytes, or
/// through those `limit` bytes if there is none. Returns the bytes consumed and whether
/// a newline ended them. Never reads more than `limit` bytes plus one buffer.
fn skip_line(reader: &mut impl BufRead, limit: u64) -> std::io::Result<(u64, bool)> {
    let mut done = 0u64;
    while done < limit {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let window = &buf[..buf.len().min((limit - done) as usize)];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok((done + i as u64 + 1, true));
            }
            None => {
                let n = window.len();
                reader.consume(n);
                done += n as u64;
            }
        }
    }
    Ok((done, false))
}

impl FilePartition {
    /// Opens `path` for the lines starting in `[start, end)`, resuming at `resume` if
    /// given (an offset of a line start inside the range).
    fn open(
        path: &Path,
        start: u64,
        end: u64,
        resume: Option<FilePosition>,
        batch_size: usize,
    ) -> Result<Self, BoxError> {
        let kind = InputKind::of(path)?;
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // 64 KiB: a worker rotates over many partitions; their buffers must stay in cache.
        let named = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
        let len = match kind {
            InputKind::Regular(len) => len,
            InputKind::Stream => {
                // A stream is read from where it is: a saved position means nothing.
                let feed = file
                    .try_clone()
                    .and_then(|f| StreamFeed::start(f, path))
                    .map_err(named)?;
                let counted = Counted {
                    file,
                    read: 0,
                    feed: Some(feed),
                };
                let reader = BufReader::with_capacity(64 << 10, counted);
                return Ok(Self::new(path, reader, 0, u64::MAX, None, 0, batch_size));
            }
        };
        let counted = Counted {
            file,
            read: 0,
            feed: None,
        };
        let mut reader = BufReader::with_capacity(64 << 10, counted);
        let origin = start.saturating_sub(1);
        let (offset, digest) = match resume {
            Some(FilePosition {
                offset,
                file: Some(id),
            }) => {
                // `check_resume` compared length and checksum before the run started;
                // the length is checked again here (cheap) in case it changed since.
                if id.len != len {
                    return Err(length_changed(path, id.len, len));
                }
                reader
                    .seek(SeekFrom::Start(offset))
                    .map_err(|e| format!("cannot seek in {}: {e}", path.display()))?;
                let blocks = id.checksum.map_or(0, |c| c.0);
                (offset, Digest::resumed(id.origin, offset, blocks))
            }
            Some(FilePosition { file: None, .. }) => {
                return Err(format!(
                    "{} changed since the snapshot: it was read as a stream then, and is a regular file of {len} bytes now",
                    path.display()
                )
                .into())
            }
            None if start == 0 => (0, Digest::new(0)),
            None => {
                // The line running over `start - 1` belongs to the previous range: skip
                // to the first line that starts in `[start, end)`, looking no further
                // than the range (a long line is read once, by the range it starts in).
                if end > len {
                    return Err(format!(
                        "{} shrank while it was read: it has {len} bytes, fewer than the end of its partition {start}-{end}",
                        path.display()
                    )
                    .into());
                }
                reader
                    .seek(SeekFrom::Start(origin))
                    .map_err(|e| format!("cannot seek in {}: {e}", path.display()))?;
                let limit = end - origin - 1;
                let (n, found) = skip_line(&mut reader, limit).map_err(named)?;
                if !found && n < limit {
                    return Err(shrank(path, len, origin + n));
                }
                let offset = if found { origin + n } else { end };
                (offset, Digest::new(origin))
            }
        };
        Ok(Self::new(
            path,
            reader,
            offset,
            end,
            Some(len),
            digest.origin,
            batch_size,
        )
        .with_digest(digest))
    }

    fn new(
        path: &Path,
        reader: BufReader<Counted>,
        offset: u64,
        end: u64,
        len: Option<u64>,
        origin: u64,
        batch_size: usize,
    ) -> Self {
        let truncate_after_first_batch = len.and_then(|_| {
            std::env::var("WAXFAST_FAULT_TRUNCATE_INPUT")
                .ok()
                .and_then(|v| v.parse().ok())
        });
        FilePartition {
            path: path.to_path_buf(),
            reader,
            offset,
            end,
            len,
            digest: std::cell::RefCell::new(Digest::new(origin)),
            batch_size,
            line: Vec::new(),
            partial_line: false,
            cr_free_until: 0,
            bar: None,
            pending_error: None,
            truncate_after_first_batch,
        }
    }

    fn with_digest(self, digest: Digest) -> Self {
        *self.digest.borrow_mut() = digest;
        self
    }

    fn with_bar(mut self, bar: Option<indicatif::ProgressBar>) -> Self {
        self.bar = bar;
        self
    }

    /// Bytes read from the file so far (by this partition's reader; not the checksum's
    /// re-reads).
    pub(crate) fn bytes_read(&self) -> u64 {
        self.reader.get_ref().read
    }
}

/// A saved position's file no longer has the length it had at the snapshot.
fn length_changed(path: &Path, then: u64, now: u64) -> BoxError {
    format!(
        "{} changed since the snapshot: it had {then} bytes then, it has {now} now",
        path.display()
    )
    .into()
}

fn shrank(path: &Path, len: u64, at: u64) -> BoxError {
    format!(
        "{} shrank while it was read: it had {len} bytes when the partition was opened, and ended at byte {at}",
        path.display()
    )
    .into()
}

impl StatefulSourcePartition for FilePartition {
    type Item = String;
    type State = FilePosition;

    fn next_batch(&mut self, batch: &mut Vec<String>) -> Result<SourceStatus, BoxError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let before = self.offset;
        let status = match self.read_lines(batch) {
            Err(e) if !batch.is_empty() => {
                self.pending_error = Some(e);
                Ok(SourceStatus::Active)
            }
            other => other,
        };
        if let Some(bar) = &self.bar {
            bar.inc(self.offset - before);
        }
        if let Some(to) = self.truncate_after_first_batch.take() {
            // Test hook only (see the field).
            OpenOptions::new()
                .write(true)
                .open(&self.path)
                .and_then(|f| f.set_len(to))
                .map_err(|e| format!("WAXFAST_FAULT_TRUNCATE_INPUT: {e}"))?;
        }
        status
    }

    fn snapshot(&self) -> FilePosition {
        let Some(len) = self.len else {
            return FilePosition {
                offset: self.offset,
                file: None,
            };
        };
        let mut digest = self.digest.borrow_mut();
        let checksum = match digest.up_to(&self.reader.get_ref().file, self.offset) {
            Ok(c) => Some(c),
            Err(e) => {
                // The resume will refuse this position rather than trust it.
                tracing::warn!(path = %self.path.display(), error = %e, "cannot checksum the bytes read for the snapshot");
                *digest = Digest::new(digest.origin);
                None
            }
        };
        FilePosition {
            offset: self.offset,
            file: Some(FileIdentity {
                len,
                origin: digest.origin,
                checksum,
            }),
        }
    }

    fn close(&mut self) -> Result<(), BoxError> {
        tracing::debug!(path = %self.path.display(), bytes_read = self.bytes_read(), "file partition done");
        if let Some(bar) = &self.bar {
            if bar.position() >= bar.length().unwrap_or(0) {
                bar.finish();
            }
        }
        Ok(())
    }
}

impl FilePartition {
    fn read_lines(&mut self, batch: &mut Vec<String>) -> Result<SourceStatus, BoxError> {
        for _ in 0..self.batch_size {
            if self.offset >= self.end {
                return Ok(SourceStatus::Eof);
            }
            // A stream that has nothing yet leaves a partial line for the next call.
            if !self.partial_line {
                self.line.clear();
            }
            if self.offset >= self.cr_free_until {
                match self.reader.fill_buf() {
                    Ok(buf) => {
                        let clean = memchr::memchr(b'\r', buf).unwrap_or(buf.len());
                        self.cr_free_until = self.offset + clean as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        return Ok(SourceStatus::Active)
                    }
                    Err(e) => {
                        return Err(format!("cannot read {}: {e}", self.path.display()).into())
                    }
                }
            }
            let had = self.line.len();
            let read = self.reader.read_until(b'\n', &mut self.line);
            let start = self.offset - had as u64;
            self.offset += (self.line.len() - had) as u64;
            match read {
                Ok(_) => self.partial_line = false,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.partial_line = true;
                    return Ok(SourceStatus::Active);
                }
                Err(e) => return Err(format!("cannot read {}: {e}", self.path.display()).into()),
            }
            let n = self.line.len();
            if self.line.last() != Some(&b'\n') {
                // The end of the file: before its length, if it shrank meanwhile.
                if let Some(len) = self.len.filter(|&len| self.offset < len) {
                    return Err(shrank(&self.path, len, self.offset));
                }
                if n == 0 {
                    return Ok(SourceStatus::Eof);
                }
            }
            let mut keep = self.line.len();
            if self.line[..keep].ends_with(b"\n") {
                keep -= 1;
                if self.line[..keep].ends_with(b"\r") {
                    keep -= 1;
                }
            }
            let bad_utf8 = |e: std::str::Utf8Error| -> BoxError {
                format!(
                    "{}: invalid UTF-8 in the line at byte offset {} (at byte {} of that line)",
                    self.path.display(),
                    start,
                    e.valid_up_to()
                )
                .into()
            };
            let past_clean = start + keep as u64 > self.cr_free_until;
            if past_clean && memchr::memchr(b'\r', &self.line[..keep]).is_some() {
                // A lone `\r` ends a line too, as in Python's universal newlines (so
                // in Bytewax): the pieces all belong to this `\n` line's position.
                let text = std::str::from_utf8(&self.line[..keep]).map_err(bad_utf8)?;
                push_cr_lines(text, keep < self.line.len(), batch);
            } else if keep > LONG_LINE {
                // Moved, not copied: a line of hundreds of MB is held once.
                let mut bytes = std::mem::take(&mut self.line);
                bytes.truncate(keep);
                batch.push(String::from_utf8(bytes).map_err(|e| bad_utf8(e.utf8_error()))?);
            } else {
                let text = std::str::from_utf8(&self.line[..keep]).map_err(bad_utf8)?;
                batch.push(text.to_owned());
            }
        }
        Ok(SourceStatus::Active)
    }
}

/// Pushes the lines of `text` (a line without its `\n` or `\r\n`) split at each `\r`.
/// At the end of a file without a final `\n` (`!ended`), a last `\r` ends the last line
/// and starts no empty one: `"a\r"` is one line, `"a\r\r\n"` two (`"a"`, `""`), as
/// Python reads them.
fn push_cr_lines(text: &str, ended: bool, batch: &mut Vec<String>) {
    let text = match ended {
        true => text,
        false => text.strip_suffix('\r').unwrap_or(text),
    };
    batch.extend(text.split('\r').map(str::to_owned));
}

impl FixedPartitionedSource for FileSource {
    type Item = String;
    type Part = FilePartition;

    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        // An unreadable file fails the listing, naming the path: a process that lists a
        // partition it cannot read would hand it to a worker elsewhere in the cluster
        // that never opens it.
        Ok(self
            .ranges()?
            .into_iter()
            .map(|r| part_name(&self.path, r))
            .collect())
    }

    fn build_part(
        &self,
        _step_id: &str,
        for_part: &str,
        resume_state: Option<FilePosition>,
    ) -> Result<FilePartition, BoxError> {
        // An unreadable path lists one whole-file partition: name the real problem.
        let kind = InputKind::of(&self.path)?;
        let (start, end) = match (self.split_bytes, kind) {
            (Some(_), InputKind::Regular(_)) => parse_part_name(for_part).ok_or_else(|| {
                format!("{for_part:?} is not a partition of {}", self.path.display())
            })?,
            _ => (0, u64::MAX),
        };
        let resumed = resume_state
            .as_ref()
            .map_or(0, |p| p.offset.saturating_sub(start));
        let bar = self
            .progress
            .attach(|| file_len(&self.path).unwrap_or(0), resumed);
        Ok(
            FilePartition::open(&self.path, start, end, resume_state, self.batch_size)?
                .with_bar(bar),
        )
    }

    fn check_resume(
        &self,
        _step_id: &str,
        saved: &[(String, FilePosition)],
    ) -> Result<(), BoxError> {
        let parts = self.list_parts()?;
        let saved: Vec<_> = saved
            .iter()
            .map(|(name, pos)| (self.path.clone(), name.as_str(), pos))
            .collect();
        check_saved(&saved, |_, name| parts.iter().any(|p| p == name))
    }
}

impl Source<String> for FileSource {
    fn into_kind(self) -> SourceKind<String> {
        SourceKind::fixed(self)
    }
}

/// Reads the lines of every file in a directory whose path (relative to the directory)
/// matches a glob pattern, one partition per file (named by that relative path),
/// assigned to workers as Bytewax assigns partitions.
///
/// A pattern without `/` matches the file names of the directory itself (`"*.log"`);
/// one with `/` matches relative paths through subdirectories, `**` standing for any
/// number of directories, zero included, as in Bytewax (Python's `Path.glob`):
/// `"**/*.txt"` reads `a.txt` and `logs/2024/b.txt`. `*` and `?` never match `/`.
/// Only regular files are read (Bytewax also lists directories, and then fails to
/// read them), and symbolic links to directories are not followed (no loops).
///
/// ```no_run
/// use waxfast::connectors::files::DirSource;
/// let logs = DirSource::new("logs/", "**/*.log");
/// let everything = DirSource::all("inbox/"); // Bytewax's default pattern, "*"
/// # let _ = (logs, everything);
/// ```
#[derive(Debug, Clone)]
pub struct DirSource {
    dir: PathBuf,
    pattern: String,
    batch_size: usize,
    progress: Progress,
}

impl DirSource {
    /// Every file of `dir` whose relative path matches `glob` (e.g. `"*.txt"`,
    /// `"**/*.txt"`).
    pub fn new(dir: impl AsRef<Path>, glob: &str) -> Self {
        DirSource {
            dir: dir.as_ref().to_path_buf(),
            pattern: glob.to_string(),
            batch_size: 1000,
            progress: Progress::default(),
        }
    }

    /// Every file directly in `dir`: Bytewax's default pattern `"*"`.
    pub fn all(dir: impl AsRef<Path>) -> Self {
        Self::new(dir, "*")
    }

    /// Lines per batch (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The matching files' relative paths, sorted.
    fn files(&self) -> Result<Vec<String>, BoxError> {
        let pattern = glob::Pattern::new(&self.pattern)
            .map_err(|e| format!("invalid glob {:?}: {e}", self.pattern))?;
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        let deep = self.pattern.contains('/');
        let mut names = Vec::new();
        let mut dirs = vec![PathBuf::new()];
        while let Some(rel_dir) = dirs.pop() {
            let at = self.dir.join(&rel_dir);
            let entries = std::fs::read_dir(&at)
                .map_err(|e| format!("cannot read directory {}: {e}", at.display()))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| format!("cannot read directory {}: {e}", at.display()))?;
                let rel = rel_dir.join(entry.file_name());
                let kind = entry
                    .file_type()
                    .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
                if deep && kind.is_dir() {
                    dirs.push(rel);
                } else if entry.path().is_file() && pattern.matches_path_with(&rel, options) {
                    names.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }
}

impl FixedPartitionedSource for DirSource {
    type Item = String;
    type Part = FilePartition;

    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        // A directory that cannot be listed is an error naming it, not an empty input.
        self.files()
    }

    fn build_part(
        &self,
        _step_id: &str,
        for_part: &str,
        resume_state: Option<FilePosition>,
    ) -> Result<FilePartition, BoxError> {
        let total = || {
            let files = self.files().unwrap_or_default();
            files
                .iter()
                .map(|f| file_len(&self.dir.join(f)).unwrap_or(0))
                .sum()
        };
        let resumed = resume_state.as_ref().map_or(0, |p| p.offset);
        let bar = self.progress.attach(total, resumed);
        Ok(FilePartition::open(
            &self.dir.join(for_part),
            0,
            u64::MAX,
            resume_state,
            self.batch_size,
        )?
        .with_bar(bar))
    }

    /// A file of the snapshot must still be there, unchanged; files added since are
    /// read from their start (nothing of them is in the saved state).
    fn check_resume(
        &self,
        _step_id: &str,
        saved: &[(String, FilePosition)],
    ) -> Result<(), BoxError> {
        let saved: Vec<_> = saved
            .iter()
            .map(|(name, pos)| (self.dir.join(name), name.as_str(), pos))
            .collect();
        check_saved(&saved, |_, _| true)
    }
}

impl Source<String> for DirSource {
    fn into_kind(self) -> SourceKind<String> {
        SourceKind::fixed(self)
    }
}

/// Writes lines to `<path>.partial`, renamed to `path` when closed.
#[derive(Debug)]
pub struct LinePartition<V> {
    path: PathBuf,
    partial: PathBuf,
    out: BufWriter<File>,
    written: u64,
    /// Renamed to `path`: the run completed.
    closed: bool,
    /// Written after each value (Bytewax's `end`).
    end: Arc<str>,
    _v: PhantomData<fn(V)>,
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

impl<V> LinePartition<V> {
    fn open(path: &Path, resume: Option<u64>, end: Arc<str>) -> Result<Self, BoxError> {
        let partial = partial_path(path);
        let named = |e: std::io::Error| format!("cannot write {}: {e}", partial.display());
        if let Some(at) = resume {
            if !partial.exists() {
                if path.exists() {
                    // The run that wrote it completed: continue it (a rerun after the
                    // end leaves the file as it was).
                    std::fs::rename(path, &partial).map_err(|e| {
                        format!(
                            "cannot resume {}: cannot rename it to {}: {e}",
                            path.display(),
                            partial.display()
                        )
                    })?;
                } else if at > 0 {
                    return Err(format!(
                        "cannot resume {}: the snapshot says {at} bytes were written, but neither it nor {} exists",
                        path.display(),
                        partial.display()
                    )
                    .into());
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(resume.is_none())
            .open(&partial)
            .map_err(named)?;
        let written = match resume {
            Some(at) => {
                let len = file.metadata().map_err(named)?.len();
                if len < at {
                    return Err(format!(
                        "cannot resume {}: it holds {len} bytes, fewer than the {at} its snapshot recorded (was it changed since?)",
                        partial.display()
                    )
                    .into());
                }
                // Exactly once: drop whatever was written after the snapshot.
                file.set_len(at).map_err(named)?;
                at
            }
            None => 0,
        };
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.seek(SeekFrom::Start(written)).map_err(named)?;
        Ok(LinePartition {
            path: path.to_path_buf(),
            partial,
            out,
            written,
            closed: false,
            end,
            _v: PhantomData,
        })
    }
}

impl<V: std::fmt::Display + Send + 'static> StatefulSinkPartition for LinePartition<V> {
    type Item = V;
    type State = u64;

    fn write_batch(&mut self, items: &mut Vec<V>) -> Result<(), BoxError> {
        let named = |e: std::io::Error| format!("cannot write {}: {e}", self.partial.display());
        let mut line = String::new();
        for v in items.drain(..) {
            line.clear();
            use std::fmt::Write as _;
            let _ = write!(line, "{v}{}", self.end);
            self.out.write_all(line.as_bytes()).map_err(named)?;
            self.written += line.len() as u64;
        }
        Ok(())
    }

    fn snapshot(&self) -> u64 {
        self.written
    }

    fn sync(&mut self) -> Result<(), BoxError> {
        let named = |e: std::io::Error| format!("cannot write {}: {e}", self.partial.display());
        self.out.flush().map_err(named)?;
        self.out.get_ref().sync_data().map_err(named)?;
        Ok(())
    }

    fn close(&mut self) -> Result<(), BoxError> {
        let named = |what: &str, e: std::io::Error| {
            format!("cannot {what} {}: {e}", self.partial.display())
        };
        self.out.flush().map_err(|e| named("write", e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| named("sync", e))?;
        std::fs::rename(&self.partial, &self.path).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                self.partial.display(),
                self.path.display()
            )
        })?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.closed = true;
        Ok(())
    }

    /// A failed run without recovery: nothing will resume the partial file.
    fn abort(&mut self) {
        if !self.closed {
            if let Err(e) = std::fs::remove_file(&self.partial) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.partial.display(), error = %e, "cannot remove the partial output of a failed run");
                }
            }
        }
    }
}

/// Writes the values of a keyed stream as lines (`Display`) to one file, in one
/// partition. The file appears at `path` only once the run completes: until then it is
/// `<path>.partial`. Resuming truncates the partial file to the snapshot, so a resumed
/// bounded job writes every line exactly once.
///
/// An unwritable path is an error naming it, before any output.
///
/// ```no_run
/// use waxfast::connectors::files::FileSink;
/// let sink = FileSink::<String>::new("out.txt");
/// # let _ = sink;
/// ```
#[derive(Debug)]
pub struct FileSink<V> {
    path: PathBuf,
    end: Arc<str>,
    _v: PhantomData<fn(V)>,
}

impl<V> FileSink<V> {
    /// Writes to `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileSink {
            path: path.as_ref().to_path_buf(),
            end: "\n".into(),
            _v: PhantomData,
        }
    }

    /// Writes `end` after each value instead of a newline (Bytewax's `end`).
    ///
    /// ```no_run
    /// use waxfast::connectors::files::FileSink;
    /// let sink = FileSink::<String>::new("out.csv").end("\r\n");
    /// # let _ = sink;
    /// ```
    pub fn end(mut self, end: &str) -> Self {
        self.end = end.into();
        self
    }
}

impl<V: std::fmt::Display + Data> FixedPartitionedSink for FileSink<V> {
    type Item = V;
    type Part = LinePartition<V>;

    fn list_parts(&self) -> Vec<String> {
        vec![self.path.display().to_string()]
    }

    fn part_fn(&self, _key_hash: u64) -> usize {
        0
    }

    fn build_part(
        &self,
        _step_id: &str,
        _for_part: &str,
        resume_state: Option<u64>,
    ) -> Result<LinePartition<V>, BoxError> {
        LinePartition::open(&self.path, resume_state, self.end.clone())
    }
}

impl<K: Key, V: std::fmt::Display + crate::ExchangeData> Sink<(K, V)> for FileSink<V> {
    fn into_kind(self) -> SinkKind<(K, V)> {
        SinkKind::fixed(self)
    }
}

/// Zlib's Adler-32 checksum (RFC 1950), which Bytewax's `DirSink` assigns files by.
pub fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that cannot overflow `b` before the reduction (zlib's NMAX).
    for chunk in bytes.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

type FileNamer = Arc<dyn Fn(usize, usize) -> String + Send + Sync>;
type AssignFile = Arc<dyn Fn(&[u8]) -> usize + Send + Sync>;

/// Writes the values of a keyed stream as lines to `file_count` files in a directory,
/// one key's values all to one file (so they stay together, in order). Each file is a
/// partition with [`FileSink`]'s guarantees.
///
/// [`new`](Self::new) names the files `part-0` ... `part-{n-1}` and puts a key in the
/// file `stable_hash(key) % n`. [`bytewax`](Self::bytewax) does what Bytewax's
/// `DirSink` does, so the same keys land in the same files: files `part_0` ...
/// `part_{n-1}`, a key in the file `adler32(key) % n` of the file names in sorted
/// order (Bytewax's rule: with more than ten files `part_10` sorts before `part_2`).
/// [`file_namer`](Self::file_namer), [`assign_file`](Self::assign_file) and
/// [`end`](Self::end) are Bytewax's options of the same names.
///
/// ```no_run
/// use waxfast::connectors::files::DirSink;
/// let sink = DirSink::<String>::bytewax("out/", 4)
///     .file_namer(|i, n| format!("counts-{i}-of-{n}.txt"));
/// # let _ = sink;
/// ```
pub struct DirSink<V> {
    dir: PathBuf,
    file_count: usize,
    namer: FileNamer,
    /// `None`: by the key's stable hash, into the files in listed order.
    assign: Option<AssignFile>,
    /// Position `j` holds the index of the `j`-th file name in sorted order.
    by_sorted_name: Vec<usize>,
    end: Arc<str>,
    _v: PhantomData<fn(V)>,
}

impl<V> std::fmt::Debug for DirSink<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirSink")
            .field("dir", &self.dir)
            .field("files", &self.names())
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl<V> DirSink<V> {
    /// `file_count` files (at least 1) `part-{i}` in `dir`, which must exist; a key's
    /// values go to file `stable_hash(key) % file_count`.
    pub fn new(dir: impl AsRef<Path>, file_count: usize) -> Self {
        DirSink {
            dir: dir.as_ref().to_path_buf(),
            file_count: file_count.max(1),
            namer: Arc::new(|i, _| format!("part-{i}")),
            assign: None,
            by_sorted_name: Vec::new(),
            end: "\n".into(),
            _v: PhantomData,
        }
        .sort_names()
    }

    fn sort_names(mut self) -> Self {
        let names = self.names();
        let mut sorted: Vec<usize> = (0..names.len()).collect();
        sorted.sort_by(|&a, &b| names[a].cmp(&names[b]));
        self.by_sorted_name = sorted;
        self
    }

    /// Bytewax's `DirSink(dir, file_count)`: files `part_{i}`, a key's values in the
    /// file `adler32(key bytes) % file_count` of the sorted file names.
    ///
    /// ```
    /// use waxfast::connectors::files::{adler32, DirSink};
    /// let sink = DirSink::<String>::bytewax("out/", 3);
    /// // Key "a" (adler32 6422626 % 3 == 1) goes to part_1, as in Bytewax.
    /// assert_eq!(adler32(b"a") % 3, 1);
    /// # let _ = sink;
    /// ```
    pub fn bytewax(dir: impl AsRef<Path>, file_count: usize) -> Self {
        Self::new(dir, file_count)
            .file_namer(|i, _| format!("part_{i}"))
            .assign_file(|key| adler32(key) as usize)
    }

    /// Names file `i` of `n` `namer(i, n)` (Bytewax's `file_namer`). The names must
    /// differ from each other.
    pub fn file_namer(
        mut self,
        namer: impl Fn(usize, usize) -> String + Send + Sync + 'static,
    ) -> Self {
        self.namer = Arc::new(namer);
        self.sort_names()
    }

    /// Puts a key's values in the file `assign(key) % file_count` of the file names
    /// in sorted order, as Bytewax's `assign_file` does. `assign` is given the key's
    /// canonical bytes: the UTF-8 of a string key (Bytewax's keys are strings), the
    /// little-endian bytes of an integer.
    pub fn assign_file(mut self, assign: impl Fn(&[u8]) -> usize + Send + Sync + 'static) -> Self {
        self.assign = Some(Arc::new(assign));
        self
    }

    /// Writes `end` after each value instead of a newline (Bytewax's `end`).
    pub fn end(mut self, end: &str) -> Self {
        self.end = end.into();
        self
    }

    fn names(&self) -> Vec<String> {
        (0..self.file_count)
            .map(|i| (self.namer)(i, self.file_count))
            .collect()
    }
}

impl<V: std::fmt::Display + Data> FixedPartitionedSink for DirSink<V> {
    type Item = V;
    type Part = LinePartition<V>;

    fn list_parts(&self) -> Vec<String> {
        self.names()
    }

    fn picks_by_key_bytes(&self) -> bool {
        self.assign.is_some()
    }

    fn part_fn_bytes(&self, key: &[u8], key_hash: u64) -> usize {
        let Some(assign) = &self.assign else {
            return self.part_fn(key_hash);
        };
        // Bytewax indexes the sorted names; the runtime indexes `list_parts`.
        self.by_sorted_name[assign(key) % self.by_sorted_name.len()]
    }

    fn build_part(
        &self,
        _step_id: &str,
        for_part: &str,
        resume_state: Option<u64>,
    ) -> Result<LinePartition<V>, BoxError> {
        if !self.dir.is_dir() {
            return Err(format!("{} is not a directory", self.dir.display()).into());
        }
        LinePartition::open(&self.dir.join(for_part), resume_state, self.end.clone())
    }
}

impl<K: Key, V: std::fmt::Display + crate::ExchangeData> Sink<(K, V)> for DirSink<V> {
    fn into_kind(self) -> SinkKind<(K, V)> {
        SinkKind::fixed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_cr_is_a_line_break_as_in_pythons_universal_newlines() {
        // Python: open(p, newline=None).read().splitlines() for each input.
        let cases: [(&[u8], &[&str]); 6] = [
            (b"a\rb\nc", &["a", "b", "c"]),
            (b"a\r\r\nb\r\n", &["a", "", "b"]),
            (b"a\r", &["a"]),
            (b"a\r\rb", &["a", "", "b"]),
            (b"\r\n\r", &["", ""]),
            (b"x\r\ny\n", &["x", "y"]),
        ];
        for (bytes, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("in.txt");
            std::fs::write(&path, bytes).unwrap();
            let src = FileSource::new(&path);
            let parts = src.list_parts().unwrap();
            let mut got = Vec::new();
            for name in parts {
                let mut p = src.build_part("s", &name, None).unwrap();
                while p.next_batch(&mut got).unwrap() == SourceStatus::Active {}
            }
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn adler32_matches_pythons_zlib() {
        // zlib.adler32(...) in Python 3.11.
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"a"), 6_422_626);
        assert_eq!(adler32(b"abc"), 38_600_999);
        assert_eq!(adler32(b"Wikipedia"), 300_286_872);
        assert_eq!(adler32(b"hello world"), 436_929_629);
        let long: Vec<u8> = (0..40).flat_map(|_| 0..=255u8).collect();
        assert_eq!(adler32(&long), 4_101_369_118, "past one 5552-byte chunk");
    }
    use proptest::prelude::*;

    fn read_all(p: &mut FilePartition) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let mut b = Vec::new();
            let s = p.next_batch(&mut b).unwrap();
            out.extend(b);
            if s == SourceStatus::Eof {
                return out;
            }
        }
    }

    fn read_source(src: &FileSource) -> Vec<String> {
        src.list_parts()
            .unwrap()
            .iter()
            .flat_map(|p| read_all(&mut src.build_part("s", p, None).unwrap()))
            .collect()
    }

    #[test]
    fn lines_crlf_last_line_without_newline_and_resume() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"one\r\ntwo\n\nthree").unwrap();
        let src = FileSource::new(f.path()).batch_size(2);
        let part = &src.list_parts().unwrap()[0];
        let mut p = src.build_part("s", part, None).unwrap();
        let mut first = Vec::new();
        p.next_batch(&mut first).unwrap();
        assert_eq!(first, vec!["one", "two"]);
        let pos = p.snapshot();
        assert_eq!(pos.offset, 9);
        assert_eq!(read_all(&mut p), vec!["", "three"]);
        let mut resumed = src.build_part("s", part, Some(pos)).unwrap();
        assert_eq!(read_all(&mut resumed), vec!["", "three"]);
    }

    #[test]
    fn invalid_utf8_names_path_and_offset() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"ok\nbad \xff here\n").unwrap();
        let src = FileSource::new(f.path());
        let mut p = src
            .build_part("s", &src.list_parts().unwrap()[0], None)
            .unwrap();
        let mut b = Vec::new();
        // The good line before the bad one is delivered first.
        assert_eq!(p.next_batch(&mut b).unwrap(), SourceStatus::Active);
        assert_eq!(b, vec!["ok"]);
        let err = p.next_batch(&mut b).unwrap_err().to_string();
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        assert!(err.contains("byte offset 3"), "{err}");
    }

    #[test]
    fn missing_file_and_directory_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.txt");
        // Listing fails, naming the path: a process must not advertise a partition it
        // cannot read.
        let src = FileSource::new(&missing);
        let err = src.list_parts().unwrap_err().to_string();
        assert!(err.contains("nope.txt"), "{err}");
        let err = src
            .build_part("s", "nope.txt", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.txt"), "{err}");
        let src = FileSource::new(dir.path()).split_by(10);
        let err = src.list_parts().unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let src = DirSource::new(&missing, "*");
        let err = src.list_parts().unwrap_err().to_string();
        assert!(err.contains("nope.txt"), "{err}");
    }

    #[test]
    fn a_path_that_looks_like_a_range_is_still_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a@1-2");
        std::fs::write(&path, "x\ny\n").unwrap();
        assert_eq!(read_source(&FileSource::new(&path)), vec!["x", "y"]);
    }

    proptest! {
        /// Split partitions own every line exactly once, in order, wherever the
        /// boundaries fall (inside lines, on newlines, in runs of empty lines).
        #[test]
        fn split_partitions_cover_every_line_once(
            lines in proptest::collection::vec("[a-z]{0,12}", 0..60),
            chunk in 1u64..40,
            trailing_newline in any::<bool>(),
        ) {
            let mut text = lines.join("\n");
            if trailing_newline && !lines.is_empty() {
                text.push('\n');
            }
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(text.as_bytes()).unwrap();
            let whole = read_source(&FileSource::new(f.path()));
            let split = read_source(&FileSource::new(f.path()).split_by(chunk).batch_size(3));
            prop_assert_eq!(&split, &whole);
        }
    }

    #[test]
    fn split_resume_continues_inside_its_range() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let text: String = (0..100).map(|i| format!("line{i}\n")).collect();
        f.write_all(text.as_bytes()).unwrap();
        let src = FileSource::new(f.path()).split_by(200).batch_size(5);
        let parts = src.list_parts().unwrap();
        assert!(parts.len() > 2, "{parts:?}");
        let mut p = src.build_part("s", &parts[1], None).unwrap();
        let mut first = Vec::new();
        p.next_batch(&mut first).unwrap();
        let rest_expected =
            read_all(&mut src.build_part("s", &parts[1], None).unwrap())[5..].to_vec();
        let mut resumed = src.build_part("s", &parts[1], Some(p.snapshot())).unwrap();
        assert_eq!(read_all(&mut resumed), rest_expected);
    }

    #[test]
    fn sink_writes_partial_then_renames_and_resume_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let sink = FileSink::<String>::new(&path);
        let mut p = sink.build_part("s", &sink.list_parts()[0], None).unwrap();
        p.write_batch(&mut vec!["a".into(), "b".into()]).unwrap();
        let snap = p.snapshot();
        p.write_batch(&mut vec!["lost".into()]).unwrap();
        p.out.flush().unwrap();
        assert!(!path.exists(), "no complete-looking file before close");
        drop(p); // a crash after the snapshot
        let mut p = sink.build_part("s", "x", Some(snap)).unwrap();
        p.write_batch(&mut vec!["c".into()]).unwrap();
        p.close().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
        assert!(!partial_path(&path).exists());
    }

    #[test]
    fn unwritable_sink_path_is_named_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/out.txt");
        let err = FileSink::<String>::new(&path)
            .build_part("s", "x", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no/such/dir/out.txt.partial"), "{err}");
        let err = DirSink::<String>::new(dir.path().join("missing"), 2)
            .build_part("s", "part-0", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing") && err.contains("not a directory"),
            "{err}"
        );
    }

    #[test]
    fn dir_source_lists_matching_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in [("b.txt", "2\n"), ("a.txt", "1\n"), ("c.log", "x\n")] {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        std::fs::create_dir(dir.path().join("d.txt")).unwrap();
        let src = DirSource::new(dir.path(), "*.txt");
        assert_eq!(src.list_parts().unwrap(), vec!["a.txt", "b.txt"]);
        let mut p = src.build_part("s", "b.txt", None).unwrap();
        assert_eq!(read_all(&mut p), vec!["2"]);
    }

    /// Every partition of `src`, read to the end: (lines, bytes read from the file).
    fn read_counting(src: &FileSource) -> (Vec<String>, u64) {
        let mut lines = Vec::new();
        let mut bytes = 0;
        for name in src.list_parts().unwrap() {
            let mut p = src.build_part("s", &name, None).unwrap();
            lines.extend(read_all(&mut p));
            bytes += p.bytes_read();
        }
        (lines, bytes)
    }

    /// Regression (issue 15): a range whose start fell inside a long line read on to
    /// that line's end, so a file without newlines cost a quadratic number of bytes
    /// read (every 4 MiB range re-read the rest of the file). Now a range looks for its
    /// first line start only inside itself, and a long line is read once, by the range
    /// it starts in: the bytes read stay within the file plus a buffer per range.
    #[test]
    fn long_lines_are_read_in_linear_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.txt");
        // 8 MiB: one line of 6 MiB between short lines, then a last line without a
        // newline.
        let mut text = b"a b\nc\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 6 << 20));
        text.extend(b"\nd e\n");
        text.extend(std::iter::repeat_n(b'y', (8 << 20) - text.len()));
        std::fs::write(&path, &text).unwrap();
        let len = text.len() as u64;
        let ranges = 128u64;
        let src = FileSource::new(&path).split_by(len / ranges);
        assert_eq!(src.list_parts().unwrap().len() as u64, ranges);
        let (lines, bytes) = read_counting(&src);
        let expected: Vec<String> = std::str::from_utf8(&text)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(lines, expected);
        // Each range scans at most itself plus one 64 KiB buffer; the long lines are
        // read once. The old code read about ranges/2 = 64 times the file here.
        let bound = 2 * len + ranges * (64 << 10);
        assert!(bytes <= bound, "read {bytes} bytes of a {len}-byte file");
        // Normal lines: about the file once.
        let short: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &short).unwrap();
        let src = FileSource::new(&path).split_by(64 << 10);
        let n = src.list_parts().unwrap().len() as u64;
        let (lines, bytes) = read_counting(&src);
        assert_eq!(lines.len(), 200_000);
        assert!(bytes <= short.len() as u64 + n * (64 << 10), "{bytes}");
    }

    #[test]
    fn a_file_that_shrinks_while_read_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shrinks.txt");
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let src = FileSource::new(&path).batch_size(10);
        let mut p = src
            .build_part("s", &src.list_parts().unwrap()[0], None)
            .unwrap();
        let mut b = Vec::new();
        assert_eq!(p.next_batch(&mut b).unwrap(), SourceStatus::Active);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(200_000)
            .unwrap();
        let err = loop {
            b.clear();
            match p.next_batch(&mut b) {
                Ok(SourceStatus::Active) => {}
                Ok(SourceStatus::Eof) => panic!("a shrunk file must not end quietly"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(err.contains("shrank while it was read"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(&text.len().to_string()), "{err}");
    }

    /// The checksum a resumed partition goes on with is the one an uninterrupted
    /// partition has at the same position; a change of the bytes read, or of the
    /// length, is refused by `check_resume`.
    #[test]
    fn snapshots_carry_a_checksum_that_resume_continues_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        let text: String = (0..300_000).map(|i| format!("l{i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let src = FileSource::new(&path).split_by(1 << 20).batch_size(50_000);
        let parts = src.list_parts().unwrap();
        let name = &parts[1];
        let mut whole = src.build_part("s", name, None).unwrap();
        let mut b = Vec::new();
        whole.next_batch(&mut b).unwrap();
        let first = whole.snapshot();
        let mut resumed = src.build_part("s", name, Some(first.clone())).unwrap();
        whole.next_batch(&mut b).unwrap();
        resumed.next_batch(&mut b).unwrap();
        let (a, r) = (whole.snapshot(), resumed.snapshot());
        assert_eq!(a, r);
        assert!(a.offset - first.offset > BLOCK, "crosses a checksum block");
        let id = a.file.clone().unwrap();
        assert_eq!(
            Some(checksum(&path, id.origin, a.offset).unwrap()),
            id.checksum
        );
        let saved = vec![(name.clone(), a.clone())];
        src.check_resume("s", &saved).unwrap();
        // Same length, one byte changed inside the bytes read.
        let mut changed = text.clone().into_bytes();
        changed[(a.offset - 10) as usize] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        let e = src.check_resume("s", &saved).unwrap_err().to_string();
        assert!(e.contains("are not the same"), "{e}");
        // A change after the position is not in the state: accepted.
        std::fs::write(&path, &text).unwrap();
        let mut later = text.clone().into_bytes();
        later[(a.offset + 10) as usize] = b'z';
        std::fs::write(&path, &later).unwrap();
        src.check_resume("s", &saved).unwrap();
        // Another length: the ranges moved; named with both lengths.
        std::fs::write(&path, format!("{text}x\n")).unwrap();
        let e = src.check_resume("s", &saved).unwrap_err().to_string();
        assert!(e.contains(&format!("it had {} bytes", text.len())), "{e}");
    }
}
