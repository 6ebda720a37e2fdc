use std::sync::Arc;
use std::time::Instant;

use crate::error::BoxError;

/// What a partition says after `next_batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// More items may come (the batch may still have been empty).
    Active,
    /// The partition is exhausted; any items in this last batch are still delivered.
    Eof,
}

/// One partition of a [`FixedPartitionedSource`], read by exactly one worker.
pub trait StatefulSourcePartition: Send + 'static {
    /// The items this partition produces.
    type Item;
    /// Its resume position (what [`snapshot`](Self::snapshot) returns). Saved with
    /// serde (postcard) when the run has a recovery directory.
    type State: serde::Serialize + serde::de::DeserializeOwned + Send + 'static;

    /// Appends the next items to `batch`. Must not block: return an empty batch if
    /// nothing is ready yet (and say when to ask again with
    /// [`next_awake`](Self::next_awake)). Return [`SourceStatus::Eof`] once exhausted.
    fn next_batch(&mut self, batch: &mut Vec<Self::Item>) -> Result<SourceStatus, BoxError>;

    /// When to call `next_batch` again. `None` means at once if the last batch had
    /// items, and after 1 ms otherwise (Bytewax's rule).
    fn next_awake(&self) -> Option<Instant> {
        None
    }

    /// The position a resumed run should continue from.
    fn snapshot(&self) -> Self::State;

    /// Releases resources at the end of the run.
    fn close(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A source with a fixed set of named partitions, each read by one worker.
///
/// ```
/// use waxfast::io::{FixedPartitionedSource, StatefulSourcePartition, SourceStatus, Source, SourceKind};
/// use waxfast::BoxError;
///
/// /// Counts from 0 to `n` in each of two partitions.
/// struct Counter { n: u64 }
/// struct CounterPart { next: u64, n: u64 }
///
/// impl StatefulSourcePartition for CounterPart {
///     type Item = u64;
///     type State = u64;
///     fn next_batch(&mut self, batch: &mut Vec<u64>) -> Result<SourceStatus, BoxError> {
///         if self.next == self.n { return Ok(SourceStatus::Eof); }
///         batch.push(self.next);
///         self.next += 1;
///         Ok(SourceStatus::Active)
///     }
///     fn snapshot(&self) -> u64 { self.next }
/// }
///
/// impl FixedPartitionedSource for Counter {
///     type Item = u64;
///     type Part = CounterPart;
///     fn list_parts(&self) -> Result<Vec<String>, BoxError> { Ok(vec!["a".into(), "b".into()]) }
///     fn build_part(&self, _step_id: &str, _part: &str, resume: Option<u64>) -> Result<CounterPart, BoxError> {
///         Ok(CounterPart { next: resume.unwrap_or(0), n: self.n })
///     }
/// }
///
/// impl Source<u64> for Counter {
///     fn into_kind(self) -> SourceKind<u64> { SourceKind::fixed(self) }
/// }
/// ```
pub trait FixedPartitionedSource: Send + Sync + 'static {
    /// The items every partition produces.
    type Item;
    /// The partition type.
    type Part: StatefulSourcePartition<Item = Self::Item>;

    /// The names of all partitions. Every process of a cluster must see the same list
    /// (the handshake compares them); an input that cannot be listed (a missing file, an
    /// unreadable directory) is an error naming it, never an empty or made-up list.
    /// Called once per process, before the workers start.
    fn list_parts(&self) -> Result<Vec<String>, BoxError>;

    /// Builds partition `for_part` on the worker that owns it, resuming from
    /// `resume_state` when the run resumes from a snapshot.
    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<<Self::Part as StatefulSourcePartition>::State>,
    ) -> Result<Self::Part, BoxError>;

    /// Checks, when a run resumes, that the positions a snapshot saved (`saved`: every
    /// partition of this step that has one, by name) still describe the input, so that
    /// a changed input is an error before the run starts rather than a wrong result.
    /// Called once per process, before any worker starts. The default accepts them;
    /// `FileSource` compares each file's length and a checksum of the bytes read.
    fn check_resume(
        &self,
        step_id: &str,
        saved: &[(String, <Self::Part as StatefulSourcePartition>::State)],
    ) -> Result<(), BoxError> {
        let _ = (step_id, saved);
        Ok(())
    }
}

/// The partition a [`DynamicSource`] builds on each worker. It has no resume state.
pub trait StatelessSourcePartition: Send + 'static {
    /// The items this partition produces.
    type Item;

    /// Appends the next items to `batch`; see
    /// [`StatefulSourcePartition::next_batch`].
    fn next_batch(&mut self, batch: &mut Vec<Self::Item>) -> Result<SourceStatus, BoxError>;

    /// When to call `next_batch` again; see [`StatefulSourcePartition::next_awake`].
    fn next_awake(&self) -> Option<Instant> {
        None
    }

    /// Releases resources at the end of the run.
    fn close(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A source that builds one partition on every worker.
pub trait DynamicSource: Send + Sync + 'static {
    /// The items every partition produces.
    type Item;
    /// The partition type.
    type Part: StatelessSourcePartition<Item = Self::Item>;

    /// Builds this worker's partition.
    fn build(
        &self,
        step_id: &str,
        worker_index: usize,
        worker_count: usize,
    ) -> Result<Self::Part, BoxError>;
}

/// Anything `Dataflow::input` accepts. Implement it with one line:
/// `SourceKind::fixed(self)` or `SourceKind::dynamic(self)`.
pub trait Source<T>: Send + Sync + 'static {
    /// Says which kind of source this is.
    fn into_kind(self) -> SourceKind<T>;
}

/// A source, type-erased for the runtime.
pub enum SourceKind<T> {
    /// Fixed partitions, each on one worker.
    Fixed(Arc<dyn ErasedFixedSource<T>>),
    /// One partition per worker.
    Dynamic(Arc<dyn ErasedDynamicSource<T>>),
}

impl<T> std::fmt::Debug for SourceKind<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKind::Fixed(_) => f.write_str("SourceKind::Fixed"),
            SourceKind::Dynamic(_) => f.write_str("SourceKind::Dynamic"),
        }
    }
}

impl<T: 'static> SourceKind<T> {
    /// Wraps a fixed-partitioned source.
    pub fn fixed<S: FixedPartitionedSource<Item = T>>(source: S) -> Self {
        SourceKind::Fixed(Arc::new(FixedAdapter(source)))
    }

    /// Wraps a dynamic source.
    pub fn dynamic<S: DynamicSource<Item = T>>(source: S) -> Self {
        SourceKind::Dynamic(Arc::new(DynamicAdapter(source)))
    }
}

/// A fixed-partitioned source seen by the runtime (no associated types).
#[doc(hidden)]
pub trait ErasedFixedSource<T>: Send + Sync {
    fn list_parts(&self) -> Result<Vec<String>, BoxError>;
    /// `resume` is the partition's saved state, encoded.
    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume: Option<&[u8]>,
    ) -> Result<Box<dyn ErasedSourcePart<T>>, BoxError>;
    /// `saved` are the encoded states of the partitions a snapshot saved.
    fn check_resume(&self, step_id: &str, saved: &[(String, Vec<u8>)]) -> Result<(), BoxError>;
}

/// A dynamic source seen by the runtime.
#[doc(hidden)]
pub trait ErasedDynamicSource<T>: Send + Sync {
    fn build(
        &self,
        step_id: &str,
        worker_index: usize,
        worker_count: usize,
    ) -> Result<Box<dyn ErasedSourcePart<T>>, BoxError>;
}

/// A source partition seen by the runtime.
#[doc(hidden)]
pub trait ErasedSourcePart<T> {
    fn next_batch(&mut self, batch: &mut Vec<T>) -> Result<SourceStatus, BoxError>;
    fn next_awake(&self) -> Option<Instant>;
    fn close(&mut self) -> Result<(), BoxError>;
    /// Appends the encoded resume state; false for a partition without one.
    fn snapshot(&self, out: &mut Vec<u8>) -> Result<bool, String>;
}

struct FixedAdapter<S>(S);
struct DynamicAdapter<S>(S);
struct StatefulPart<P>(P);
struct StatelessPart<P>(P);

impl<T: 'static, S: FixedPartitionedSource<Item = T>> ErasedFixedSource<T> for FixedAdapter<S> {
    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        self.0.list_parts()
    }
    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume: Option<&[u8]>,
    ) -> Result<Box<dyn ErasedSourcePart<T>>, BoxError> {
        let resume = resume
            .map(crate::base::codec::decode)
            .transpose()
            .map_err(|e| format!("cannot resume partition {for_part:?}: {e}"))?;
        let part = self.0.build_part(step_id, for_part, resume)?;
        Ok(Box::new(StatefulPart(part)))
    }
    fn check_resume(&self, step_id: &str, saved: &[(String, Vec<u8>)]) -> Result<(), BoxError> {
        let decoded = saved
            .iter()
            .map(|(name, state)| {
                crate::base::codec::decode(state)
                    .map(|s| (name.clone(), s))
                    .map_err(|e| format!("cannot resume partition {name:?}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        self.0.check_resume(step_id, &decoded)
    }
}

impl<T: 'static, S: DynamicSource<Item = T>> ErasedDynamicSource<T> for DynamicAdapter<S> {
    fn build(
        &self,
        step_id: &str,
        worker_index: usize,
        worker_count: usize,
    ) -> Result<Box<dyn ErasedSourcePart<T>>, BoxError> {
        let part = self.0.build(step_id, worker_index, worker_count)?;
        Ok(Box::new(StatelessPart(part)))
    }
}

impl<T, P: StatefulSourcePartition<Item = T>> ErasedSourcePart<T> for StatefulPart<P> {
    fn next_batch(&mut self, batch: &mut Vec<T>) -> Result<SourceStatus, BoxError> {
        self.0.next_batch(batch)
    }
    fn next_awake(&self) -> Option<Instant> {
        self.0.next_awake()
    }
    fn close(&mut self) -> Result<(), BoxError> {
        self.0.close()
    }
    fn snapshot(&self, out: &mut Vec<u8>) -> Result<bool, String> {
        crate::base::codec::encode_into(&self.0.snapshot(), out).map(|()| true)
    }
}

impl<T, P: StatelessSourcePartition<Item = T>> ErasedSourcePart<T> for StatelessPart<P> {
    fn next_batch(&mut self, batch: &mut Vec<T>) -> Result<SourceStatus, BoxError> {
        self.0.next_batch(batch)
    }
    fn next_awake(&self) -> Option<Instant> {
        self.0.next_awake()
    }
    fn close(&mut self) -> Result<(), BoxError> {
        self.0.close()
    }
    fn snapshot(&self, _out: &mut Vec<u8>) -> Result<bool, String> {
        Ok(false)
    }
}
