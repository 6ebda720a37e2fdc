//! Standard output and standard input.

use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::BoxError;
use crate::io::{
    DynamicSink, FixedPartitionedSource, Sink, SinkKind, Source, SourceKind, SourceStatus,
    StatefulSourcePartition, StatelessSinkPartition,
};
use crate::runtime::push::Data;

/// Writes each item as one line on standard output: its `Display` form
/// ([`new`](Self::new)), its `Debug` form ([`debug`](Self::debug)), its Python `repr`
/// as Bytewax prints it ([`repr`](Self::repr), any serde item), or what a function of
/// yours writes ([`with_format`](Self::with_format)).
///
/// Each worker formats lines into its own buffer and writes whole buffers under the
/// stdout lock, so lines from different workers never tear or interleave mid-line (a
/// Bytewax defect). Output is written when the buffer fills, when the worker goes idle,
/// and at the end of the run. Delivery is at least once under recovery.
///
/// ```
/// use waxfast::{Dataflow, run_main};
/// use waxfast::connectors::{stdio::StdOutSink, testing::TestingSource};
/// let flow = Dataflow::new("simple");
/// flow.input("inp", TestingSource::new(0..3)).map("plus_one", |x| x + 1).output("out", StdOutSink::new());
/// run_main(&flow).unwrap(); // prints 1, 2, 3
/// ```
pub struct StdOutSink<T> {
    format: Format<T>,
}

/// Writes one item's text (without the newline) to a buffer.
type Format<T> = fn(&T, &mut Vec<u8>) -> std::io::Result<()>;

impl<T> std::fmt::Debug for StdOutSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdOutSink").finish_non_exhaustive()
    }
}

impl<T: Display> Default for StdOutSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Display> StdOutSink<T> {
    /// A stdout sink printing each item's `Display` form.
    pub fn new() -> Self {
        StdOutSink {
            format: |item, buf| write!(buf, "{item}"),
        }
    }
}

impl<T: std::fmt::Debug> StdOutSink<T> {
    /// A stdout sink printing each item's `Debug` form (`{:?}`), so a flow needs no
    /// format step.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::{stdio::StdOutSink, testing::TestingSource}};
    /// let flow = Dataflow::new("f");
    /// flow.input("inp", TestingSource::new(vec![("a", Some(1.5))])).output("out", StdOutSink::debug());
    /// run_main(&flow).unwrap(); // prints ("a", Some(1.5))
    /// ```
    pub fn debug() -> Self {
        StdOutSink {
            format: |item, buf| write!(buf, "{item:?}"),
        }
    }
}

impl<T: serde::Serialize> StdOutSink<T> {
    /// A stdout sink printing each item as Python's `repr` would
    /// ([`repr::to_repr`](crate::connectors::repr::to_repr)): what Bytewax's
    /// `StdOutSink` prints for the same data, so a ported flow's output compares
    /// equal to Bytewax's.
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::{stdio::StdOutSink, testing::TestingSource}};
    /// let flow = Dataflow::new("f");
    /// flow.input("inp", TestingSource::new(vec![("a".to_string(), (1.0, None::<u8>))]))
    ///     .output("out", StdOutSink::repr());
    /// run_main(&flow).unwrap(); // prints ('a', (1.0, None))
    /// ```
    pub fn repr() -> Self {
        StdOutSink {
            format: |item, buf| {
                let mut s = String::new();
                crate::connectors::repr::write_repr(item, &mut s);
                buf.extend_from_slice(s.as_bytes());
                Ok(())
            },
        }
    }
}

impl<T> StdOutSink<T> {
    /// A stdout sink printing what `format` writes for each item (a newline follows).
    ///
    /// ```
    /// # use waxfast::{Dataflow, run_main, connectors::{stdio::StdOutSink, testing::TestingSource}};
    /// use std::io::Write;
    /// let flow = Dataflow::new("f");
    /// let sink = StdOutSink::with_format(|x: &u8, buf| write!(buf, "{x:#04x}"));
    /// flow.input("inp", TestingSource::new(vec![10u8])).output("out", sink);
    /// run_main(&flow).unwrap(); // prints 0x0a
    /// ```
    pub fn with_format(format: fn(&T, &mut Vec<u8>) -> std::io::Result<()>) -> Self {
        StdOutSink { format }
    }
}

/// Buffer size at which a partition writes out.
const FLUSH_AT: usize = 64 * 1024;

/// A [`StdOutSink`] partition on one worker.
pub struct StdOutPartition<T> {
    buf: Vec<u8>,
    format: Format<T>,
}

impl<T> std::fmt::Debug for StdOutPartition<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdOutPartition")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl<T> StdOutPartition<T> {
    fn write_out(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let mut out = std::io::stdout().lock();
            out.write_all(&self.buf)?;
            out.flush()?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<T: Data> StatelessSinkPartition for StdOutPartition<T> {
    type Item = T;

    fn write_batch(&mut self, items: &mut Vec<T>) -> Result<(), BoxError> {
        for item in items.drain(..) {
            (self.format)(&item, &mut self.buf)?;
            self.buf.push(b'\n');
        }
        if self.buf.len() >= FLUSH_AT {
            self.write_out()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        Ok(self.write_out()?)
    }

    fn close(&mut self) -> Result<(), BoxError> {
        Ok(self.write_out()?)
    }
}

impl<T> Drop for StdOutPartition<T> {
    /// Lines produced before a failure elsewhere are still shown.
    fn drop(&mut self) {
        let _ = self.write_out();
    }
}

impl<T: Data> DynamicSink for StdOutSink<T> {
    type Item = T;
    type Part = StdOutPartition<T>;

    fn build(
        &self,
        _step_id: &str,
        _worker_index: usize,
        _worker_count: usize,
    ) -> Result<Self::Part, BoxError> {
        Ok(StdOutPartition {
            buf: Vec::with_capacity(FLUSH_AT),
            format: self.format,
        })
    }
}

impl<T: Data> Sink<T> for StdOutSink<T> {
    fn into_kind(self) -> SinkKind<T> {
        SinkKind::dynamic(self)
    }
}

/// Lines the reader thread may read ahead of the partition; past this it waits, so a
/// slow flow holds back standard input instead of buffering it all.
const STDIN_READ_AHEAD: usize = 1024;
/// How soon a partition that found no line asks again.
const STDIN_POLL: Duration = Duration::from_millis(1);

enum Input {
    Stdin,
    Reader(Mutex<Option<Box<dyn Read + Send>>>),
}

/// Reads the lines of standard input (without their line endings), in one partition
/// named `"stdin"`, so exactly one worker reads it whatever the worker count.
///
/// Reading never blocks the worker: a background thread reads standard input and hands
/// lines over through a bounded channel (it waits when the flow falls 1024 lines
/// behind), and the partition takes whatever has arrived, or reports an empty batch and
/// asks again after 1 ms. The partition reports EOF when standard input closes.
///
/// The resume state is the number of lines consumed; a resumed run skips that many
/// lines of its standard input (useful when the same input is fed again). A line that
/// is not valid UTF-8 fails the run with an error naming stdin and the line number.
///
/// The reader thread may outlive the run if it is blocked reading a standard input that
/// never closes; it ends at the next line or at EOF.
///
/// ```no_run
/// use waxfast::{Dataflow, run_main};
/// use waxfast::connectors::stdio::{StdInSource, StdOutSink};
/// let flow = Dataflow::new("shout");
/// flow.input("inp", StdInSource::new())
///     .map("upper", |line: String| line.to_uppercase())
///     .output("out", StdOutSink::new());
/// run_main(&flow).unwrap(); // echoes standard input in capitals
/// ```
pub struct StdInSource {
    input: Input,
    batch_size: usize,
}

impl std::fmt::Debug for StdInSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let input = match self.input {
            Input::Stdin => "stdin",
            Input::Reader(_) => "reader",
        };
        f.debug_struct("StdInSource")
            .field("input", &input)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl Default for StdInSource {
    fn default() -> Self {
        StdInSource {
            input: Input::Stdin,
            batch_size: 1000,
        }
    }
}

impl StdInSource {
    /// Reads standard input, up to 1000 lines per batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `reader` instead of standard input, as if it were standard input (errors
    /// still say "stdin"). It is read by the first partition built from this source; a
    /// second build fails. For tests.
    #[doc(hidden)]
    pub fn from_reader(reader: impl Read + Send + 'static) -> Self {
        StdInSource {
            input: Input::Reader(Mutex::new(Some(Box::new(reader)))),
            batch_size: 1000,
        }
    }

    /// Lines per batch at most (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

/// What the reader thread sends.
enum StdInMsg {
    Line(Vec<u8>),
    Failed(std::io::Error),
}

/// The partition of a [`StdInSource`].
pub struct StdInPartition {
    lines: Receiver<StdInMsg>,
    /// Lines consumed so far, including those skipped on resume: the resume state.
    consumed: u64,
    batch_size: usize,
    awake: Option<Instant>,
    /// A failure found after lines of the same batch, reported on the next call.
    failed: Option<BoxError>,
}

impl std::fmt::Debug for StdInPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdInPartition")
            .field("consumed", &self.consumed)
            .finish()
    }
}

/// Reads lines on a background thread, skipping the first `skip`, until EOF, a read
/// error, or the partition is dropped (the next send then fails).
fn spawn_line_reader(
    reader: Box<dyn Read + Send>,
    skip: u64,
    tx: SyncSender<StdInMsg>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("waxfast-stdin".into())
        .spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut skipped = 0u64;
            let mut line = Vec::new();
            loop {
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => return, // EOF: the dropped sender tells the partition.
                    Ok(_) if skipped < skip => {
                        skipped += 1;
                        line.clear();
                    }
                    Ok(_) => {
                        if tx.send(StdInMsg::Line(std::mem::take(&mut line))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(StdInMsg::Failed(e));
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// The line without its `\n` or `\r\n`, or the byte offset of its first invalid UTF-8.
fn line_text(mut bytes: Vec<u8>) -> Result<String, usize> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    String::from_utf8(bytes).map_err(|e| e.utf8_error().valid_up_to())
}

impl StatefulSourcePartition for StdInPartition {
    type Item = String;
    type State = u64;

    fn next_batch(&mut self, batch: &mut Vec<String>) -> Result<SourceStatus, BoxError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut status = SourceStatus::Active;
        let mut taken = 0;
        while taken < self.batch_size {
            let failure: BoxError = match self.lines.try_recv() {
                Ok(StdInMsg::Line(bytes)) => {
                    self.consumed += 1;
                    match line_text(bytes) {
                        Ok(text) => {
                            batch.push(text);
                            taken += 1;
                            continue;
                        }
                        Err(at) => format!(
                            "stdin: invalid UTF-8 on line {} (at byte {at} of that line)",
                            self.consumed
                        )
                        .into(),
                    }
                }
                Ok(StdInMsg::Failed(e)) => {
                    format!("cannot read stdin after line {}: {e}", self.consumed).into()
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    status = SourceStatus::Eof;
                    break;
                }
            };
            if taken == 0 {
                return Err(failure);
            }
            // Deliver the lines before the failure first; fail on the next call.
            self.failed = Some(failure);
            break;
        }
        self.awake = (taken == 0).then(|| Instant::now() + STDIN_POLL);
        Ok(status)
    }

    fn next_awake(&self) -> Option<Instant> {
        self.awake
    }

    fn snapshot(&self) -> u64 {
        self.consumed
    }
}

impl FixedPartitionedSource for StdInSource {
    type Item = String;
    type Part = StdInPartition;

    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        Ok(vec!["stdin".to_string()])
    }

    fn build_part(
        &self,
        _step_id: &str,
        _for_part: &str,
        resume_state: Option<u64>,
    ) -> Result<StdInPartition, BoxError> {
        let reader: Box<dyn Read + Send> =
            match &self.input {
                Input::Stdin => Box::new(std::io::stdin()),
                Input::Reader(r) => r.lock().unwrap_or_else(|p| p.into_inner()).take().ok_or(
                    "StdInSource::from_reader: the reader was already read by an earlier run",
                )?,
            };
        let skip = resume_state.unwrap_or(0);
        let (tx, lines) = sync_channel(STDIN_READ_AHEAD);
        spawn_line_reader(reader, skip, tx)
            .map_err(|e| format!("cannot start the thread that reads stdin: {e}"))?;
        Ok(StdInPartition {
            lines,
            consumed: skip,
            batch_size: self.batch_size,
            awake: None,
            failed: None,
        })
    }
}

impl Source<String> for StdInSource {
    fn into_kind(self) -> SourceKind<String> {
        SourceKind::fixed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Arc;

    /// Polls until EOF or an error (at most 5 s), sleeping until each `next_awake`.
    fn read_all(p: &mut StdInPartition) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = Vec::new();
        while Instant::now() < deadline {
            match p.next_batch(&mut out) {
                Ok(SourceStatus::Eof) => return Ok(out),
                Ok(SourceStatus::Active) => {
                    if let Some(t) = p.next_awake() {
                        std::thread::sleep(t.saturating_duration_since(Instant::now()));
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        panic!("no EOF within 5 s; read {out:?}");
    }

    fn part_of(data: &'static [u8], resume: Option<u64>) -> StdInPartition {
        StdInSource::from_reader(data)
            .build_part("s", "stdin", resume)
            .unwrap()
    }

    #[test]
    fn lines_without_endings_then_eof() {
        let mut p = part_of(b"one\r\ntwo\n\nthree", None);
        assert_eq!(read_all(&mut p).unwrap(), vec!["one", "two", "", "three"]);
        assert_eq!(p.snapshot(), 4);
    }

    #[test]
    fn resume_skips_consumed_lines() {
        let mut p = part_of(b"a\nb\nc\n", Some(2));
        assert_eq!(read_all(&mut p).unwrap(), vec!["c"]);
        assert_eq!(p.snapshot(), 3);
        let mut past_end = part_of(b"a\n", Some(5));
        assert_eq!(read_all(&mut past_end).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn invalid_utf8_names_stdin_and_line() {
        let mut p = part_of(b"ok\nalso ok\nbad \xff\nnever\n", None);
        // Wait for all four lines, so the first batch meets the bad one.
        std::thread::sleep(Duration::from_millis(20));
        let mut b = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = loop {
            match p.next_batch(&mut b) {
                Ok(SourceStatus::Active) if Instant::now() < deadline => {}
                Ok(status) => panic!("no error, {status:?}"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(err.contains("stdin: invalid UTF-8 on line 3"), "{err}");
        assert_eq!(
            b,
            vec!["ok", "also ok"],
            "lines before the bad one are delivered"
        );
    }

    #[test]
    fn a_reader_is_read_by_one_build_only() {
        let src = StdInSource::from_reader(&b"x\n"[..]);
        src.build_part("s", "stdin", None).unwrap();
        let err = src.build_part("s", "stdin", None).unwrap_err().to_string();
        assert!(err.contains("already read"), "{err}");
    }

    /// A reader that blocks until the test sends it bytes, and ends when the sender goes.
    struct ChanReader(std::sync::mpsc::Receiver<Vec<u8>>, Vec<u8>);

    impl Read for ChanReader {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(bytes) => self.1 = bytes,
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    fn chan_part() -> (Sender<Vec<u8>>, StdInPartition) {
        let (tx, rx) = channel();
        let p = StdInSource::from_reader(ChanReader(rx, Vec::new()))
            .build_part("s", "stdin", None)
            .unwrap();
        (tx, p)
    }

    #[test]
    fn no_data_yet_returns_at_once_with_a_wake_time() {
        let (tx, mut p) = chan_part();
        let mut b = Vec::new();
        let start = Instant::now();
        assert_eq!(p.next_batch(&mut b).unwrap(), SourceStatus::Active);
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "next_batch blocked"
        );
        assert!(b.is_empty());
        let awake = p
            .next_awake()
            .expect("an idle partition names its wake time");
        assert!(awake > start && awake <= Instant::now() + STDIN_POLL);
        tx.send(b"late\npartial".to_vec()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.is_empty() && Instant::now() < deadline {
            p.next_batch(&mut b).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(b, vec!["late"]);
        assert_eq!(p.next_awake(), None, "had items: ask again at once");
        tx.send(b" line\n".to_vec()).unwrap();
        drop(tx);
        assert_eq!(read_all(&mut p).unwrap(), vec!["partial line"]);
    }

    /// Yields `x\n` forever, one line per read; counts lines and notes when dropped.
    struct Endless(Arc<AtomicUsize>, Arc<AtomicBool>);

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.fetch_add(1, Ordering::SeqCst);
            buf[..2].copy_from_slice(b"x\n");
            Ok(2)
        }
    }

    impl Drop for Endless {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn read_ahead_is_bounded_and_ends_with_the_partition() {
        let (lines, dropped) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let mut p = StdInSource::from_reader(Endless(lines.clone(), dropped.clone()))
            .batch_size(10)
            .build_part("s", "stdin", None)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while lines.load(Ordering::SeqCst) < STDIN_READ_AHEAD && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        let read = lines.load(Ordering::SeqCst);
        // The queue, the line being sent, and the one being read.
        assert!(
            (STDIN_READ_AHEAD..=STDIN_READ_AHEAD + 2).contains(&read),
            "read {read} lines ahead"
        );
        let mut b = Vec::new();
        p.next_batch(&mut b).unwrap();
        assert_eq!(b.len(), 10, "batch_size caps a batch");
        drop(p);
        while !dropped.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            dropped.load(Ordering::SeqCst),
            "the reader thread did not end"
        );
    }
}
