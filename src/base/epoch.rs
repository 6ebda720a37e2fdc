//! Epochs: spans of input time between snapshots, and the frontier of a finished
//! stream (the progress protocol is `runtime::progress`).

/// A span of input time between snapshots. Epochs start at 1.
pub type Epoch = u64;

/// The frontier of a finished stream: no epoch can appear on it any more.
pub const EOF_EPOCH: Epoch = Epoch::MAX;

/// The first epoch of a run.
pub const FIRST_EPOCH: Epoch = 1;
