use std::sync::Arc;

use crate::base::key::Key;
use crate::error::BoxError;

/// The partition a [`DynamicSink`] builds on each worker.
pub trait StatelessSinkPartition: Send + 'static {
    /// The items this partition writes.
    type Item;

    /// Writes (drains) a batch of items.
    fn write_batch(&mut self, items: &mut Vec<Self::Item>) -> Result<(), BoxError>;

    /// Pushes buffered output out; called when the worker goes idle, so output of a
    /// slow stream is not held back. The default does nothing.
    fn flush(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Flushes and releases resources at the end of the run.
    fn close(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called instead of [`close`](Self::close) when the run fails (an error, a panic, a
    /// peer's failure, an interrupt) and it has no recovery directory: remove partial
    /// output here, since nothing will resume it. With recovery it is not called: what
    /// was written is what a resumed run continues from. The default does nothing.
    fn abort(&mut self) {}
}

/// A sink that builds one partition on every worker.
pub trait DynamicSink: Send + Sync + 'static {
    /// The items it writes.
    type Item;
    /// The partition type.
    type Part: StatelessSinkPartition<Item = Self::Item>;

    /// Builds this worker's partition.
    fn build(
        &self,
        step_id: &str,
        worker_index: usize,
        worker_count: usize,
    ) -> Result<Self::Part, BoxError>;
}

/// One partition of a [`FixedPartitionedSink`], written by exactly one worker.
pub trait StatefulSinkPartition: Send + 'static {
    /// The values it writes (the keys only route).
    type Item;
    /// Its resume state (what [`snapshot`](Self::snapshot) returns). Saved with serde
    /// (postcard) when the run has a recovery directory.
    type State: serde::Serialize + serde::de::DeserializeOwned + Send + 'static;

    /// Writes (drains) a batch of values.
    fn write_batch(&mut self, items: &mut Vec<Self::Item>) -> Result<(), BoxError>;

    /// The state a resumed run should continue from. With recovery, called at the end
    /// of each epoch right after [`sync`](Self::sync).
    fn snapshot(&self) -> Self::State;

    /// Makes everything written so far durable, before a snapshot records it (only
    /// with recovery). The default calls [`flush`](Self::flush); a sink writing files
    /// should also fsync them.
    fn sync(&mut self) -> Result<(), BoxError> {
        self.flush()
    }

    /// Pushes buffered output out; called when the worker goes idle, so output of a
    /// slow stream is not held back. The default does nothing.
    fn flush(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Flushes and releases resources at the end of the run.
    fn close(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called instead of [`close`](Self::close) when the run fails (an error, a panic, a
    /// peer's failure, an interrupt) and it has no recovery directory: remove partial
    /// output here, since nothing will resume it. With recovery it is not called: what
    /// was written is what a resumed run continues from. The default does nothing.
    fn abort(&mut self) {}
}

/// A sink with a fixed set of named partitions. It consumes keyed items `(K, V)`: the
/// key's stable hash picks the partition ([`part_fn`](Self::part_fn)), and the partition
/// is handed the values.
pub trait FixedPartitionedSink: Send + Sync + 'static {
    /// The values it writes.
    type Item;
    /// The partition type.
    type Part: StatefulSinkPartition<Item = Self::Item>;

    /// The names of all partitions.
    fn list_parts(&self) -> Vec<String>;

    /// Which partition (an index into `list_parts`) a key goes to, given the key's
    /// [`Key::stable_hash`]. The default spreads keys by hash.
    fn part_fn(&self, key_hash: u64) -> usize {
        key_hash as usize
    }

    /// True if partitions are picked from the key's canonical bytes
    /// ([`part_fn_bytes`](Self::part_fn_bytes)) rather than its hash: Bytewax's
    /// `DirSink` assigns files by `adler32` of the key.
    fn picks_by_key_bytes(&self) -> bool {
        false
    }

    /// Which partition a key goes to, given its canonical bytes (UTF-8 for a string
    /// key) and its stable hash; called instead of [`part_fn`](Self::part_fn) when
    /// [`picks_by_key_bytes`](Self::picks_by_key_bytes) is true.
    fn part_fn_bytes(&self, _key: &[u8], key_hash: u64) -> usize {
        self.part_fn(key_hash)
    }

    /// Builds partition `for_part` on the worker that owns it.
    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<<Self::Part as StatefulSinkPartition>::State>,
    ) -> Result<Self::Part, BoxError>;
}

/// Anything `Stream::output` accepts. Implement it with one line:
/// `SinkKind::dynamic(self)` or `SinkKind::fixed(self)`.
pub trait Sink<T>: Send + Sync + 'static {
    /// Says which kind of sink this is.
    fn into_kind(self) -> SinkKind<T>;
}

/// A sink, type-erased for the runtime.
pub enum SinkKind<T> {
    /// One partition per worker.
    Dynamic(Arc<dyn ErasedDynamicSink<T>>),
    /// Fixed partitions, each on one worker, chosen by key; items travel to their
    /// partition's worker, possibly in another process.
    Fixed(Arc<dyn ErasedFixedSink<T>>, SinkWire<T>),
}

/// How a fixed-partitioned sink's items cross processes (made by [`SinkKind::fixed`]).
pub struct SinkWire<T>(pub(crate) crate::base::codec::Codec<Vec<T>>);

impl<T> std::fmt::Debug for SinkWire<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkWire")
    }
}

impl<T> std::fmt::Debug for SinkKind<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkKind::Fixed(..) => f.write_str("SinkKind::Fixed"),
            SinkKind::Dynamic(_) => f.write_str("SinkKind::Dynamic"),
        }
    }
}

impl<T: 'static> SinkKind<T> {
    /// Wraps a dynamic sink.
    pub fn dynamic<S: DynamicSink<Item = T>>(sink: S) -> Self {
        SinkKind::Dynamic(Arc::new(DynamicAdapter(sink)))
    }
}

impl<K: Key, V: crate::ExchangeData> SinkKind<(K, V)> {
    /// Wraps a fixed-partitioned sink of values `V`, keyed by `K`.
    pub fn fixed<S: FixedPartitionedSink<Item = V>>(sink: S) -> Self {
        SinkKind::Fixed(
            Arc::new(FixedAdapter(sink)),
            SinkWire(crate::exchange::codec::keyed_items::<K, V>()),
        )
    }
}

/// A dynamic sink seen by the runtime.
#[doc(hidden)]
pub trait ErasedDynamicSink<T>: Send + Sync {
    fn build(
        &self,
        step_id: &str,
        worker_index: usize,
        worker_count: usize,
    ) -> Result<Box<dyn ErasedSinkPart<T>>, BoxError>;
}

/// A fixed-partitioned sink seen by the runtime.
#[doc(hidden)]
pub trait ErasedFixedSink<T>: Send + Sync {
    fn list_parts(&self) -> Vec<String>;
    /// The partition index (< `parts`) of an item.
    fn part_of(&self, item: &T, parts: usize) -> usize;
    /// `resume` is the partition's saved state, encoded.
    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume: Option<&[u8]>,
    ) -> Result<Box<dyn ErasedSinkPart<T>>, BoxError>;
}

/// A sink partition seen by the runtime.
#[doc(hidden)]
pub trait ErasedSinkPart<T> {
    fn write_batch(&mut self, items: &mut Vec<T>) -> Result<(), BoxError>;
    fn flush(&mut self) -> Result<(), BoxError>;
    fn close(&mut self) -> Result<(), BoxError>;
    /// The run failed (and has no recovery): drop partial output.
    fn abort(&mut self) {}
    /// Makes what was written durable (before a snapshot).
    fn sync(&mut self) -> Result<(), BoxError> {
        self.flush()
    }
    /// Appends the encoded resume state; false for a partition without one.
    fn snapshot(&self, _out: &mut Vec<u8>) -> Result<bool, String> {
        Ok(false)
    }
}

struct DynamicAdapter<S>(S);
struct FixedAdapter<S>(S);
struct StatelessPart<P>(P);
struct KeyedPart<P: StatefulSinkPartition> {
    part: P,
    values: Vec<P::Item>,
}

impl<T: 'static, S: DynamicSink<Item = T>> ErasedDynamicSink<T> for DynamicAdapter<S> {
    fn build(
        &self,
        step_id: &str,
        worker_index: usize,
        worker_count: usize,
    ) -> Result<Box<dyn ErasedSinkPart<T>>, BoxError> {
        Ok(Box::new(StatelessPart(self.0.build(
            step_id,
            worker_index,
            worker_count,
        )?)))
    }
}

impl<T, P: StatelessSinkPartition<Item = T>> ErasedSinkPart<T> for StatelessPart<P> {
    fn write_batch(&mut self, items: &mut Vec<T>) -> Result<(), BoxError> {
        self.0.write_batch(items)
    }
    fn flush(&mut self) -> Result<(), BoxError> {
        self.0.flush()
    }
    fn close(&mut self) -> Result<(), BoxError> {
        self.0.close()
    }
    fn abort(&mut self) {
        self.0.abort()
    }
}

impl<K: Key, V: 'static, S: FixedPartitionedSink<Item = V>> ErasedFixedSink<(K, V)>
    for FixedAdapter<S>
{
    fn list_parts(&self) -> Vec<String> {
        self.0.list_parts()
    }
    fn part_of(&self, item: &(K, V), parts: usize) -> usize {
        let hash = item.0.stable_hash();
        let part = if self.0.picks_by_key_bytes() {
            let mut bytes = Vec::new();
            item.0.encode(&mut bytes);
            self.0.part_fn_bytes(&bytes, hash)
        } else {
            self.0.part_fn(hash)
        };
        part % parts.max(1)
    }
    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume: Option<&[u8]>,
    ) -> Result<Box<dyn ErasedSinkPart<(K, V)>>, BoxError> {
        let resume = resume
            .map(crate::base::codec::decode)
            .transpose()
            .map_err(|e| format!("cannot resume partition {for_part:?}: {e}"))?;
        let part = self.0.build_part(step_id, for_part, resume)?;
        Ok(Box::new(KeyedPart {
            part,
            values: Vec::new(),
        }))
    }
}

impl<K, V, P: StatefulSinkPartition<Item = V>> ErasedSinkPart<(K, V)> for KeyedPart<P> {
    fn write_batch(&mut self, items: &mut Vec<(K, V)>) -> Result<(), BoxError> {
        self.values.extend(items.drain(..).map(|(_, v)| v));
        let r = self.part.write_batch(&mut self.values);
        self.values.clear();
        r
    }
    fn flush(&mut self) -> Result<(), BoxError> {
        self.part.flush()
    }
    fn close(&mut self) -> Result<(), BoxError> {
        self.part.close()
    }
    fn abort(&mut self) {
        self.part.abort()
    }
    fn sync(&mut self) -> Result<(), BoxError> {
        self.part.sync()
    }
    fn snapshot(&self, out: &mut Vec<u8>) -> Result<bool, String> {
        crate::base::codec::encode_into(&self.part.snapshot(), out).map(|()| true)
    }
}
