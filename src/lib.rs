//! # waxfast
//!
//! A Rust re-implementation of Bytewax's execution model: a dataflow of named steps over
//! typed streams, run by identical workers.
//!
//! ```
//! use waxfast::{Dataflow, run_main};
//! use waxfast::connectors::testing::{TestingSink, TestingSource};
//!
//! let flow = Dataflow::new("wordcount");
//! let (sink, out) = TestingSink::new();
//! flow.input("inp", TestingSource::new(vec!["the cat", "the dog"]))
//!     .flat_map("split", |line: &str| line.split_whitespace().map(String::from).collect::<Vec<_>>())
//!     .count_final("count", |w: String| w)
//!     .output("out", sink);
//! run_main(&flow).unwrap();
//! assert_eq!(out.take(), vec![("cat".into(), 1), ("dog".into(), 1), ("the".into(), 2)]);
//! ```
//!
//! The layers, from the top: [`cli`] (the `waxfast` command and flow registry),
//! [`flows`] (built-in flows), [`connectors`] (sources and sinks), [`operators`] (methods
//! on [`Stream`]), [`dataflow`] (the blueprint), [`io`] (source and sink traits), and
//! the runtime ([`run_main`]). See `ARCHITECTURE.md` for the path a record takes.
//!
//! Calls that return `Result` never panic on user input; a panic in user code inside a
//! step is caught and returned as [`Error::StepPanicked`] naming the step.

pub mod base;
pub mod cli;
pub mod connectors;
pub mod dataflow;
mod error;
mod exchange;
pub mod flows;
pub mod io;
pub mod net;
pub mod observe;
pub mod operators;
pub mod recovery;
pub mod runtime;
pub mod shm;
pub mod transport;

pub use base::plain::register_plain;
pub use dataflow::{Dataflow, Key, Stream};
pub use error::{BoxError, Error, Result};
pub use runtime::{
    cluster_main, cluster_main_with, run_main, run_main_with, Data, Epoch, ExchangeData, RunConfig,
};
