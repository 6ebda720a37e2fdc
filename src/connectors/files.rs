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
//! Resume states are byte offsets. Sinks write to `<path>.partial` and rename it to
//! `<path>` (after an fsync) only when the run completes, so a failed run never leaves a
//! file that looks complete; a resumed run truncates the partial file to its snapshot.

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
        let len = file_len(&self.path)?;
        let Some(chunk) = self.split_bytes else {
            return Ok(vec![(0, u64::MAX)]);
        };
        let n = len.div_ceil(chunk).clamp(1, 4096);
        Ok((0..n).map(|i| (len * i / n, len * (i + 1) / n)).collect())
    }
}

fn file_len(path: &Path) -> Result<u64, BoxError> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!("{} is a directory, expected a file", path.display()).into());
    }
    Ok(meta.len())
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

/// A byte range of a file (or the whole file), read line by line.
#[derive(Debug)]
pub struct FilePartition {
    path: PathBuf,
    reader: BufReader<File>,
    /// Offset of the next line to read.
    offset: u64,
    /// Lines starting at or after this offset belong to the next partition.
    end: u64,
    batch_size: usize,
    line: Vec<u8>,
    bar: Option<indicatif::ProgressBar>,
    /// An error met after earlier lines of the same batch: reported on the next call,
    /// once those lines are delivered.
    pending_error: Option<BoxError>,
}

impl FilePartition {
    /// Opens `path` for the lines starting in `[start, end)`, resuming at `resume` if
    /// given (an offset of a line start inside the range).
    fn open(
        path: &Path,
        start: u64,
        end: u64,
        resume: Option<u64>,
        batch_size: usize,
    ) -> Result<Self, BoxError> {
        file_len(path)?;
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // 64 KiB: a worker rotates over many partitions; their buffers must stay in cache.
        let mut reader = BufReader::with_capacity(64 << 10, file);
        let seek = |r: &mut BufReader<File>, at: u64| {
            r.seek(SeekFrom::Start(at))
                .map_err(|e| format!("cannot seek in {}: {e}", path.display()))
        };
        let offset = match resume {
            Some(at) => {
                seek(&mut reader, at)?;
                at
            }
            None if start == 0 => 0,
            None => {
                // The line running over `start - 1` belongs to the previous range: skip
                // to the first line that starts at or after `start`.
                seek(&mut reader, start - 1)?;
                let mut skipped = Vec::new();
                let n = reader
                    .read_until(b'\n', &mut skipped)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                start - 1 + n as u64
            }
        };
        Ok(FilePartition {
            path: path.to_path_buf(),
            reader,
            offset,
            end,
            batch_size,
            line: Vec::new(),
            bar: None,
            pending_error: None,
        })
    }

    fn with_bar(mut self, bar: Option<indicatif::ProgressBar>) -> Self {
        self.bar = bar;
        self
    }
}

impl StatefulSourcePartition for FilePartition {
    type Item = String;
    type State = u64;

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
        status
    }

    fn snapshot(&self) -> u64 {
        self.offset
    }

    fn close(&mut self) -> Result<(), BoxError> {
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
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
            if n == 0 {
                return Ok(SourceStatus::Eof);
            }
            let start = self.offset;
            self.offset += n as u64;
            let mut bytes = &self.line[..];
            if let Some(b) = bytes.strip_suffix(b"\n") {
                bytes = b.strip_suffix(b"\r").unwrap_or(b);
            }
            let text = std::str::from_utf8(bytes).map_err(|e| {
                format!(
                    "{}: invalid UTF-8 in the line at byte offset {} (at byte {} of that line)",
                    self.path.display(),
                    start,
                    e.valid_up_to()
                )
            })?;
            batch.push(text.to_owned());
        }
        Ok(SourceStatus::Active)
    }
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
        resume_state: Option<u64>,
    ) -> Result<FilePartition, BoxError> {
        // An unreadable path lists one whole-file partition: name the real problem.
        file_len(&self.path)?;
        let (start, end) = match self.split_bytes {
            Some(_) => parse_part_name(for_part).ok_or_else(|| {
                format!("{for_part:?} is not a partition of {}", self.path.display())
            })?,
            None => (0, u64::MAX),
        };
        let resumed = resume_state.map_or(0, |at| at.saturating_sub(start));
        let bar = self
            .progress
            .attach(|| file_len(&self.path).unwrap_or(0), resumed);
        Ok(
            FilePartition::open(&self.path, start, end, resume_state, self.batch_size)?
                .with_bar(bar),
        )
    }
}

impl Source<String> for FileSource {
    fn into_kind(self) -> SourceKind<String> {
        SourceKind::fixed(self)
    }
}

/// Reads the lines of every file in a directory whose name matches a glob pattern, one
/// partition per file (named by its file name), assigned to workers as Bytewax assigns
/// partitions.
///
/// ```no_run
/// use waxfast::connectors::files::DirSource;
/// let logs = DirSource::new("logs/", "*.log");
/// # let _ = logs;
/// ```
#[derive(Debug, Clone)]
pub struct DirSource {
    dir: PathBuf,
    pattern: String,
    batch_size: usize,
    progress: Progress,
}

impl DirSource {
    /// Every file of `dir` whose name matches `glob` (e.g. `"*.txt"`).
    pub fn new(dir: impl AsRef<Path>, glob: &str) -> Self {
        DirSource {
            dir: dir.as_ref().to_path_buf(),
            pattern: glob.to_string(),
            batch_size: 1000,
            progress: Progress::default(),
        }
    }

    /// Lines per batch (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The matching file names, sorted.
    fn files(&self) -> Result<Vec<String>, BoxError> {
        let pattern = glob::Pattern::new(&self.pattern)
            .map_err(|e| format!("invalid glob {:?}: {e}", self.pattern))?;
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| format!("cannot read directory {}: {e}", self.dir.display()))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| format!("cannot read directory {}: {e}", self.dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_file() && pattern.matches(&name) {
                names.push(name);
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
        resume_state: Option<u64>,
    ) -> Result<FilePartition, BoxError> {
        let total = || {
            let files = self.files().unwrap_or_default();
            files
                .iter()
                .map(|f| file_len(&self.dir.join(f)).unwrap_or(0))
                .sum()
        };
        let bar = self.progress.attach(total, resume_state.unwrap_or(0));
        Ok(FilePartition::open(
            &self.dir.join(for_part),
            0,
            u64::MAX,
            resume_state,
            self.batch_size,
        )?
        .with_bar(bar))
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
    _v: PhantomData<fn(V)>,
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

impl<V> LinePartition<V> {
    fn open(path: &Path, resume: Option<u64>) -> Result<Self, BoxError> {
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
            let _ = writeln!(line, "{v}");
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
        Ok(())
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
    _v: PhantomData<fn(V)>,
}

impl<V> FileSink<V> {
    /// Writes to `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileSink {
            path: path.as_ref().to_path_buf(),
            _v: PhantomData,
        }
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
        LinePartition::open(&self.path, resume_state)
    }
}

impl<K: Key, V: std::fmt::Display + crate::ExchangeData> Sink<(K, V)> for FileSink<V> {
    fn into_kind(self) -> SinkKind<(K, V)> {
        SinkKind::fixed(self)
    }
}

/// Writes the values of a keyed stream as lines to `file_count` files `part-0` ...
/// `part-{n-1}` in a directory, each key's values to the file `stable_hash(key) % n`
/// (so one key's lines stay together, in order). Each file is a partition with
/// [`FileSink`]'s guarantees.
#[derive(Debug)]
pub struct DirSink<V> {
    dir: PathBuf,
    file_count: usize,
    _v: PhantomData<fn(V)>,
}

impl<V> DirSink<V> {
    /// `file_count` files (at least 1) in `dir`, which must exist.
    pub fn new(dir: impl AsRef<Path>, file_count: usize) -> Self {
        DirSink {
            dir: dir.as_ref().to_path_buf(),
            file_count: file_count.max(1),
            _v: PhantomData,
        }
    }
}

impl<V: std::fmt::Display + Data> FixedPartitionedSink for DirSink<V> {
    type Item = V;
    type Part = LinePartition<V>;

    fn list_parts(&self) -> Vec<String> {
        (0..self.file_count).map(|i| format!("part-{i}")).collect()
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
        LinePartition::open(&self.dir.join(for_part), resume_state)
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
        assert_eq!(pos, 9);
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
}
