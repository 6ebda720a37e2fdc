//! Sources and sinks for tests and examples.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::BoxError;
use crate::io::{
    DynamicSink, FixedPartitionedSource, Sink, SinkKind, Source, SourceKind, SourceStatus,
    StatefulSourcePartition, StatelessSinkPartition,
};
use crate::runtime::push::Data;

/// One element of a [`TestingSource`]'s input: an item, or one of Bytewax's markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestEvent<T> {
    /// An item to emit.
    Item(T),
    /// Ends this run's input here (the partition reports EOF). A run resumed from a
    /// snapshot continues after the marker.
    Eof,
    /// Fails the run with an error the first time it is reached in this process; a later
    /// run of the same source object (e.g. a resumed one) passes over it.
    Abort,
    /// Emits nothing for this long (the flow keeps running: timers fire, epochs advance).
    Pause(Duration),
}

type EventIter<T> = Box<dyn Iterator<Item = TestEvent<T>> + Send>;

/// A source over any cloneable iterable, with one partition (`"iterable"`).
///
/// ```
/// use std::time::Duration;
/// use waxfast::connectors::testing::{TestEvent, TestingSource};
/// let plain = TestingSource::new(0..3).batch_size(2);
/// let with_markers = TestingSource::events(vec![
///     TestEvent::Item(1),
///     TestEvent::Pause(Duration::from_millis(10)),
///     TestEvent::Item(2),
/// ]);
/// # let _ = (plain, with_markers);
/// ```
pub struct TestingSource<T> {
    make_iter: Arc<dyn Fn() -> EventIter<T> + Send + Sync>,
    batch_size: usize,
    /// Positions of `Abort` markers that have already fired in this process.
    fired: Arc<Mutex<HashSet<u64>>>,
}

impl<T> std::fmt::Debug for TestingSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestingSource")
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl<T: Data> TestingSource<T> {
    /// Emits each item of `items` (batch size 1, as Bytewax's default).
    pub fn new<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T> + Clone + Send + Sync + 'static,
        I::IntoIter: Send + 'static,
    {
        Self::from_factory(move || Box::new(items.clone().into_iter().map(TestEvent::Item)))
    }

    /// Emits items and markers.
    pub fn events<I>(events: I) -> Self
    where
        I: IntoIterator<Item = TestEvent<T>> + Clone + Send + Sync + 'static,
        I::IntoIter: Send + 'static,
    {
        Self::from_factory(move || Box::new(events.clone().into_iter()))
    }

    fn from_factory(f: impl Fn() -> EventIter<T> + Send + Sync + 'static) -> Self {
        TestingSource {
            make_iter: Arc::new(f),
            batch_size: 1,
            fired: Arc::default(),
        }
    }

    /// Emits up to `n` items per batch (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

/// The partition of a [`TestingSource`].
pub struct TestingPartition<T> {
    iter: EventIter<T>,
    /// Events consumed so far: the resume position.
    pos: u64,
    batch_size: usize,
    pending: Option<TestEvent<T>>,
    pause_until: Option<Instant>,
    fired: Arc<Mutex<HashSet<u64>>>,
}

impl<T> std::fmt::Debug for TestingPartition<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestingPartition")
            .field("pos", &self.pos)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Data> StatefulSourcePartition for TestingPartition<T> {
    type Item = T;
    type State = u64;

    fn next_batch(&mut self, batch: &mut Vec<T>) -> Result<SourceStatus, BoxError> {
        if let Some(until) = self.pause_until {
            if Instant::now() < until {
                return Ok(SourceStatus::Active);
            }
            self.pause_until = None;
        }
        while batch.len() < self.batch_size {
            let Some(ev) = self.pending.take().or_else(|| self.iter.next()) else {
                return Ok(SourceStatus::Eof);
            };
            match ev {
                TestEvent::Item(x) => {
                    self.pos += 1;
                    batch.push(x);
                }
                TestEvent::Eof => {
                    self.pos += 1;
                    return Ok(SourceStatus::Eof);
                }
                TestEvent::Abort => {
                    let at = self.pos;
                    if lock(&self.fired).contains(&at) {
                        self.pos += 1;
                        continue;
                    }
                    if !batch.is_empty() {
                        // Deliver what came before the marker first.
                        self.pending = Some(TestEvent::Abort);
                        return Ok(SourceStatus::Active);
                    }
                    self.pos += 1;
                    lock(&self.fired).insert(at);
                    return Err("TestingSource reached an ABORT marker".into());
                }
                TestEvent::Pause(d) => {
                    self.pos += 1;
                    self.pause_until = Some(Instant::now() + d);
                    return Ok(SourceStatus::Active);
                }
            }
        }
        Ok(SourceStatus::Active)
    }

    fn next_awake(&self) -> Option<Instant> {
        self.pause_until
    }

    fn snapshot(&self) -> u64 {
        self.pos
    }
}

impl<T: Data> FixedPartitionedSource for TestingSource<T> {
    type Item = T;
    type Part = TestingPartition<T>;

    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        Ok(vec!["iterable".to_string()])
    }

    fn build_part(
        &self,
        _step_id: &str,
        _for_part: &str,
        resume_state: Option<u64>,
    ) -> Result<Self::Part, BoxError> {
        let pos = resume_state.unwrap_or(0);
        let mut iter = (self.make_iter)();
        for _ in 0..pos {
            iter.next();
        }
        Ok(TestingPartition {
            iter,
            pos,
            batch_size: self.batch_size,
            pending: None,
            pause_until: None,
            fired: self.fired.clone(),
        })
    }
}

impl<T: Data> Source<T> for TestingSource<T> {
    fn into_kind(self) -> SourceKind<T> {
        SourceKind::fixed(self)
    }
}

/// The shared buffer a [`TestingSink`] writes into; clone it freely.
#[derive(Debug)]
pub struct TestingOutput<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for TestingOutput<T> {
    fn clone(&self) -> Self {
        TestingOutput {
            items: self.items.clone(),
        }
    }
}

impl<T: Clone> TestingOutput<T> {
    /// Removes and returns everything written so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *lock(&self.items))
    }

    /// A copy of everything written so far.
    pub fn get(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// How many items were written so far.
    pub fn len(&self) -> usize {
        lock(&self.items).len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A sink that collects every item (from every worker) into a [`TestingOutput`].
///
/// ```
/// use waxfast::connectors::testing::TestingSink;
/// let (sink, out) = TestingSink::<u32>::new();
/// # let _ = (sink, out);
/// ```
#[derive(Debug)]
pub struct TestingSink<T> {
    out: TestingOutput<T>,
}

impl<T: Data> TestingSink<T> {
    /// A sink and the handle to read what it collects.
    pub fn new() -> (TestingSink<T>, TestingOutput<T>) {
        let out = TestingOutput {
            items: Arc::default(),
        };
        (TestingSink { out: out.clone() }, out)
    }

    /// A sink writing into an existing handle (to collect across runs).
    pub fn into_output(out: &TestingOutput<T>) -> TestingSink<T> {
        TestingSink { out: out.clone() }
    }
}

/// The partition of a [`TestingSink`] on one worker.
#[derive(Debug)]
pub struct TestingSinkPartition<T> {
    out: TestingOutput<T>,
}

impl<T: Data> StatelessSinkPartition for TestingSinkPartition<T> {
    type Item = T;
    fn write_batch(&mut self, items: &mut Vec<T>) -> Result<(), BoxError> {
        lock(&self.out.items).append(items);
        Ok(())
    }
}

impl<T: Data> DynamicSink for TestingSink<T> {
    type Item = T;
    type Part = TestingSinkPartition<T>;
    fn build(
        &self,
        _step_id: &str,
        _worker_index: usize,
        _worker_count: usize,
    ) -> Result<Self::Part, BoxError> {
        Ok(TestingSinkPartition {
            out: self.out.clone(),
        })
    }
}

impl<T: Data> Sink<T> for TestingSink<T> {
    fn into_kind(self) -> SinkKind<T> {
        SinkKind::dynamic(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(part: &mut TestingPartition<u32>) -> (Vec<Vec<u32>>, Result<SourceStatus, String>) {
        let mut batches = Vec::new();
        loop {
            let mut b = Vec::new();
            match part.next_batch(&mut b) {
                Ok(SourceStatus::Active) => batches.push(b),
                Ok(SourceStatus::Eof) => {
                    batches.push(b);
                    return (batches, Ok(SourceStatus::Eof));
                }
                Err(e) => return (batches, Err(e.to_string())),
            }
        }
    }

    #[test]
    fn batches_and_eof_marker_and_resume() {
        let src = TestingSource::events(vec![
            TestEvent::Item(1),
            TestEvent::Item(2),
            TestEvent::Item(3),
            TestEvent::Eof,
            TestEvent::Item(4),
        ])
        .batch_size(2);
        let mut p = src.build_part("s", "iterable", None).unwrap();
        let (batches, end) = drain(&mut p);
        assert_eq!(batches, vec![vec![1, 2], vec![3]]);
        assert_eq!(end, Ok(SourceStatus::Eof));
        let pos = p.snapshot();
        assert_eq!(pos, 4);
        let mut resumed = src.build_part("s", "iterable", Some(pos)).unwrap();
        assert_eq!(drain(&mut resumed).0, vec![vec![4]]);
    }

    #[test]
    fn abort_fires_once_per_source_after_earlier_items() {
        let src = TestingSource::events(vec![
            TestEvent::Item(1),
            TestEvent::Abort,
            TestEvent::Item(2),
        ])
        .batch_size(10);
        let mut p = src.build_part("s", "iterable", None).unwrap();
        let (batches, end) = drain(&mut p);
        assert_eq!(batches, vec![vec![1]]);
        assert!(end.unwrap_err().contains("ABORT"));
        // Same source object again: the marker has fired, so it is passed over.
        let mut again = src.build_part("s", "iterable", None).unwrap();
        let (batches, end) = drain(&mut again);
        assert_eq!(batches, vec![vec![1, 2]]);
        assert_eq!(end, Ok(SourceStatus::Eof));
    }

    #[test]
    fn pause_reports_next_awake() {
        let src = TestingSource::events(vec![
            TestEvent::Pause(Duration::from_millis(30)),
            TestEvent::Item(9),
        ]);
        let mut p = src.build_part("s", "iterable", None).unwrap();
        let mut b = Vec::new();
        assert_eq!(p.next_batch(&mut b).unwrap(), SourceStatus::Active);
        assert!(b.is_empty());
        let awake = p
            .next_awake()
            .expect("paused partition names its wake time");
        assert!(awake > Instant::now());
        assert_eq!(p.next_batch(&mut b).unwrap(), SourceStatus::Active);
        assert!(b.is_empty(), "still paused");
        std::thread::sleep(Duration::from_millis(35));
        p.next_batch(&mut b).unwrap();
        assert_eq!(b, vec![9]);
    }
}
