//! Standard output.

use std::fmt::Display;
use std::io::Write;
use std::marker::PhantomData;

use crate::error::BoxError;
use crate::io::{DynamicSink, Sink, SinkKind, StatelessSinkPartition};
use crate::runtime::push::Data;

/// Writes each item's `Display` form as one line on standard output.
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
#[derive(Debug)]
pub struct StdOutSink<T> {
    _item: PhantomData<fn(T)>,
}

impl<T> Default for StdOutSink<T> {
    fn default() -> Self {
        StdOutSink { _item: PhantomData }
    }
}

impl<T> StdOutSink<T> {
    /// A stdout sink.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Buffer size at which a partition writes out.
const FLUSH_AT: usize = 64 * 1024;

/// A [`StdOutSink`] partition on one worker.
#[derive(Debug)]
pub struct StdOutPartition<T> {
    buf: Vec<u8>,
    _item: PhantomData<fn(T)>,
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

impl<T: Display + Data> StatelessSinkPartition for StdOutPartition<T> {
    type Item = T;

    fn write_batch(&mut self, items: &mut Vec<T>) -> Result<(), BoxError> {
        for item in items.drain(..) {
            writeln!(self.buf, "{item}")?;
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

impl<T: Display + Data> DynamicSink for StdOutSink<T> {
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
            _item: PhantomData,
        })
    }
}

impl<T: Display + Data> Sink<T> for StdOutSink<T> {
    fn into_kind(self) -> SinkKind<T> {
        SinkKind::dynamic(self)
    }
}
