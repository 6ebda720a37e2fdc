//! Built-in sources and sinks.
//!
//! - The `testing` module: `TestingSource` (any cloneable iterable, with EOF / ABORT /
//!   PAUSE markers) and `TestingSink` (collects into a handle a test can read).
//! - The `stdio` module: `StdOutSink`.
//! - The `files` module: `FileSource` (lines of a file, resumable by byte offset).

pub mod files;
pub mod stdio;
pub mod testing;
