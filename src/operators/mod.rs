//! The user's vocabulary: every operator is a method on [`Stream`](crate::Stream).
//!
//! * [`stateless`]: `map`, `filter`, `filter_map`, `flat_map`, `flat_map_batch`,
//!   `flatten`, `inspect`, `inspect_debug`, `branch`, `merge`, `redistribute`, and the
//!   keyed helpers `key_on`, `key_rm`, `map_value`, `filter_value`, `flat_map_value`,
//!   `filter_map_value`. They run in place on the worker that holds the item.
//! * [`stateful`]: per-key state on the worker that owns the key: `stateful`,
//!   `stateful_map`, `stateful_flat_map`, `fold_final`, `reduce_final`, `count_final`,
//!   `max_final`, `min_final`, `collect`.
//! * [`join`]: `join` and `join_complete` over any number of keyed streams.
//! * [`stateful_batch`]: `stateful_batch`, per-key logic over batches of values.
//! * [`fallible`]: `try_map`, `try_flat_map` (an `Err` fails the run naming the step)
//!   and `raises`.
//! * [`extremes`]: `max_final_by`, `min_final_by`, `max_window_by`, `min_window_by`
//!   (Bytewax's `by=`, for floats and records).
//! * [`enrich`]: `enrich_cached`, a per-worker TTL cache in front of a lookup.
//! * [`window`]: time windows per key (Bytewax's windowing): `window`, `fold_window`,
//!   `collect_window`, `count_window`, `reduce_window`, `max_window`, `min_window`,
//!   `join_window`, with clocks (system or event time) and windowers (tumbling,
//!   sliding, session).
//! * [`output`](crate::Stream::output): writes a stream to a sink.

pub mod enrich;
pub mod extremes;
pub mod fallible;
pub mod join;
pub(crate) mod keyed;
pub mod stateful;
pub mod stateful_batch;
pub mod stateless;
pub mod window;

pub use enrich::TtlCache;
pub use join::{
    JoinEmit, JoinInsert, JoinSide, JoinSide3, JoinSide4, JoinSide5, JoinSide6, Joined,
};
pub use stateful::{Retention, StatefulLogic};
pub use stateful_batch::StatefulBatchLogic;
pub use stateless::Branch;
