//! Built-in sources and sinks.
//!
//! - The `testing` module: `TestingSource` (any cloneable iterable, with EOF / ABORT /
//!   PAUSE markers) and `TestingSink` (collects into a handle a test can read).
//! - The `stdio` module: `StdOutSink`, and `StdInSource` (lines of standard input).
//! - The `files` module: `FileSource` (lines of a file, optionally split into byte
//!   ranges read in parallel), `DirSource`, `FileSink` and `DirSink`.
//! - The `csv` module: `CsvSource` (rows of a CSV file as `CsvRow`s or serde types,
//!   resumable by byte offset).
//! - The `polling` module: `SimplePollingSource` (calls a function every interval).
//! - The `kafka` module: `KafkaSource` (one partition per topic-partition, resumable by
//!   offset) and `KafkaSink`, with Bytewax's semantics.
//! - The `demo` module: `RandomMetricSource` (pseudo-random metric values, one per
//!   interval).

pub mod csv;
pub mod demo;
pub mod files;
pub mod kafka;
pub mod polling;
pub mod repr;
pub mod stdio;
pub mod testing;
