//! Nexmark, the standard streaming benchmark (an online auction: people, auctions and
//! bids), as built-in flows: `waxfast nexmark:QUERY[,EVENTS[,SINK]]`.
//!
//! Events come from the `nexmark` crate's generator ([`source`]) with its default
//! configuration (10 M events unless `EVENTS` says otherwise), generated inside the
//! flow and split over the workers. The queries follow the Nexmark SQL of the
//! `nexmark/nexmark` repository (the one Flink's published figures ran):
//!
//! | query | what | how |
//! |---|---|---|
//! | q0 | pass-through | `filter_map` |
//! | q1 | currency conversion | `filter_map` |
//! | q2 | selection | `filter_map` |
//! | q3 | local item suggestion | `branch`, `join` (`Product`, `Final`) |
//! | q4 | average price per category | `stateful` (winning bid per auction), `fold_final` |
//! | q5 | hot items | `count_window` (sliding, per auction and worker), `fold_final` (top per window) |
//! | q6 | average selling price by seller | `stateful` (winning bid), `fold_final`, `flat_map` |
//! | q7 | highest bid | `flat_map_batch` (partial per window), `reduce_window` (tumbling, keyed by window) |
//! | q8 | monitor new users | `branch`, `join_window` (tumbling, `First`, `Complete`) |
//! | q14 | calculation | `filter_map` |
//! | q21 | add channel id | `filter_map` |
//! | q22 | url directories | `filter_map` |
//!
//! Where the SQL keeps a result up to date with retractions (q3's, q4's and q6's joins
//! and aggregates), the flows emit the final result, what the SQL view holds after the
//! last event. The rows ([`rows`]) print as comma-separated columns; `SINK` `null`
//! counts them instead and prints a summary line on stderr like the `bench_*` flows.
//! [`reference`](mod@reference) computes each query in one plain loop, for the tests and as the COST
//! baseline.

mod filters;
mod joins;
pub mod reference;
pub mod rows;
pub mod source;
mod windows;

use std::fmt::Display;

use crate::connectors::stdio::StdOutSink;
use crate::dataflow::{Dataflow, Stream};
use crate::runtime::push::Data;

use super::bench::{counting, Stats};
pub use source::NexmarkSource;
pub use source::TaggedNexmarkSource;
pub use windows::{Q5_WAIT, Q7_WAIT, Q8_WAIT};

/// q5's window length (ms).
pub const Q5_LENGTH_MS: u64 = 10_000;
/// q5's window slide (ms).
pub const Q5_SLIDE_MS: u64 = 2_000;
/// q7's tumbling window (ms).
pub const Q7_LENGTH_MS: u64 = 10_000;
/// q8's tumbling window (ms).
pub const Q8_LENGTH_MS: u64 = 10_000;

/// Events when `EVENTS` is not given: the generator's default.
pub const DEFAULT_EVENTS: u64 = 10_000_000;

/// The queries there are flows for.
pub const QUERIES: [&str; 12] = [
    "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q14", "q21", "q22",
];

const USAGE: &str = "nexmark:QUERY[,EVENTS[,SINK]] with QUERY one of q0..q8, q14, q21, q22, \
                     EVENTS a whole number (default 10000000) and SINK print (default) or null";

/// Where a query's rows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// One line per row on stdout.
    Print,
    /// Counted; a summary line on stderr when the last worker is done.
    Null,
}

/// The flow of `query` over the first `events` events.
pub fn nexmark(query: &str, events: u64, output: Output) -> Result<Dataflow, String> {
    let name: &'static str = Box::leak(format!("nexmark_{query}").into_boxed_str());
    let stats = Stats::new(name, events);
    let flow = Dataflow::new(name);
    let source = NexmarkSource::new(events).timed(stats.clone());
    if query == "q5" {
        let tagged = flow.input("events", TaggedNexmarkSource(source));
        out(windows::q5(&tagged), output, &stats);
        return Ok(flow);
    }
    let inp = flow.input("events", source);
    fn out<T: Data + Display>(rows: Stream<T>, output: Output, stats: &std::sync::Arc<Stats>) {
        match output {
            Output::Print => rows.output("out", StdOutSink::new()),
            Output::Null => rows.output("out", counting(stats)),
        }
    }
    match query {
        "q0" => out(filters::q0(&inp), output, &stats),
        "q1" => out(filters::q1(&inp), output, &stats),
        "q2" => out(filters::q2(&inp), output, &stats),
        "q3" => out(joins::q3(&inp), output, &stats),
        "q4" => out(joins::q4(&inp), output, &stats),
        "q6" => out(joins::q6(&inp), output, &stats),
        "q7" => out(windows::q7(&inp), output, &stats),
        "q8" => out(windows::q8(&inp), output, &stats),
        "q14" => out(filters::q14(&inp), output, &stats),
        "q21" => out(filters::q21(&inp), output, &stats),
        "q22" => out(filters::q22(&inp), output, &stats),
        q => return Err(format!("unknown query {q:?}; usage: {USAGE}")),
    }
    Ok(flow)
}

/// The registry's parser: `QUERY[,EVENTS[,SINK]]`.
pub fn nexmark_args(args: Option<&str>) -> Result<Dataflow, String> {
    let args = args.ok_or_else(|| format!("needs a query; usage: {USAGE}"))?;
    let mut parts = args.split(',').map(str::trim);
    let query = parts.next().unwrap_or_default();
    let events = match parts.next() {
        None | Some("") => DEFAULT_EVENTS,
        Some(n) => n
            .replace('_', "")
            .parse()
            .map_err(|_| format!("EVENTS {n:?} is not a whole number; usage: {USAGE}"))?,
    };
    let output = match parts.next() {
        None | Some("") | Some("print") => Output::Print,
        Some("null") => Output::Null,
        Some(s) => {
            return Err(format!(
                "SINK {s:?} is neither print nor null; usage: {USAGE}"
            ))
        }
    };
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected argument {extra:?}; usage: {USAGE}"));
    }
    nexmark(query, events, output)
}
