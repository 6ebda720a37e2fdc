//! What flows on streams, and what consumes it: the data traits and the `Push`
//! interface every step input implements (the push chain itself is `runtime::push`).

use crate::base::epoch::Epoch;

/// Items that can flow on a stream: cloned when a stream fans out to several steps, and
/// sent between worker threads at exchanges.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// Items that can cross an exchange: [`Data`] that serde can encode, because an exchange
/// may lead to a worker in another process (timely calls this `ExchangeData`). Values
/// of keyed steps, `redistribute`d items and items of fixed-partitioned sinks are
/// exchanged; derive `serde::Serialize` and `serde::Deserialize` for your own types.
pub trait ExchangeData: Data + serde::Serialize + serde::de::DeserializeOwned {}
impl<T: Data + serde::Serialize + serde::de::DeserializeOwned> ExchangeData for T {}

/// A consumer of batches. The callee must consume the batch's contents; the caller clears
/// whatever is left and reuses the allocation.
pub trait Push<T> {
    /// Delivers `batch`, produced at `epoch`.
    fn push(&mut self, epoch: Epoch, batch: &mut Vec<T>);
}

/// A consumer made from a closure.
pub(crate) struct PushFn<F>(pub(crate) F);

impl<T, F: FnMut(Epoch, &mut Vec<T>)> Push<T> for PushFn<F> {
    #[inline]
    fn push(&mut self, epoch: Epoch, batch: &mut Vec<T>) {
        (self.0)(epoch, batch)
    }
}
