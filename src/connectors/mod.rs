//! Built-in sources and sinks.
//!
//! * [`testing`]: `TestingSource` (any cloneable iterable, with EOF / ABORT / PAUSE
//!   markers) and `TestingSink` (collects into a handle a test can read).
//! * [`stdio`]: `StdOutSink`.
//! * [`files`]: `FileSource` (lines of a file, resumable by byte offset).

pub mod files;
pub mod stdio;
pub mod testing;
