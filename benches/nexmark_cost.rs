//! The COST baseline for the Nexmark flows: each query's single-threaded loop
//! (`waxfast::flows::nexmark::reference`, plain Rust collections) over the same
//! generated events, timed from the first event's generation to the last row.
//!
//! `cargo bench --bench nexmark_cost -- [--events N] [--only q0,q5]` prints one line per
//! query: `nexmark_cost_q5: events=N seconds=S events_per_sec=R rows=M`
//! (`scripts/bench_nexmark.py` reads them). Under `cargo test --benches` (no `--bench`
//! argument) it runs every query over 10 000 events as a smoke test. `--dump PATH`
//! writes the events as JSON lines instead (for the Bytewax peer).

use std::time::Instant;

use waxfast::flows::nexmark::{reference, source, QUERIES};

fn run(query: &str, events: u64) -> u64 {
    let mut rows = 0u64;
    let e = source::events(events);
    macro_rules! count {
        ($q:ident) => {
            reference::$q(e, |_| rows += 1)
        };
    }
    match query {
        "q0" => count!(q0),
        "q1" => count!(q1),
        "q2" => count!(q2),
        "q3" => count!(q3),
        "q4" => count!(q4),
        "q5" => count!(q5),
        "q6" => count!(q6),
        "q7" => count!(q7),
        "q8" => count!(q8),
        "q14" => count!(q14),
        "q21" => count!(q21),
        "q22" => count!(q22),
        q => panic!("unknown query {q:?}; one of {QUERIES:?}"),
    }
    rows
}

/// Writes the first `events` events to `path`, one JSON object per line (the crate's
/// serde form, as its own `nexmark` binary prints them), for the Bytewax peer.
fn dump(path: &str, events: u64) {
    use std::io::Write;
    let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = std::io::BufWriter::new(file);
    for e in source::events(events) {
        serde_json::to_writer(&mut out, &e).expect("an event as JSON");
        out.write_all(b"\n").expect("write");
    }
    out.flush().unwrap_or_else(|e| panic!("{path}: {e}"));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let smoke = !args.iter().any(|a| a == "--bench");
    let events: u64 = value("--events").map_or(if smoke { 10_000 } else { 10_000_000 }, |v| {
        v.parse().expect("--events N: a whole number")
    });
    if let Some(path) = value("--dump") {
        dump(&path, events);
        return;
    }
    let only: Vec<String> = value("--only").map_or_else(
        || QUERIES.iter().map(|q| q.to_string()).collect(),
        |v| v.split(',').map(str::to_string).collect(),
    );
    for q in &only {
        let t = Instant::now();
        let rows = run(q, events);
        let secs = t.elapsed().as_secs_f64();
        println!(
            "nexmark_cost_{q}: events={events} seconds={secs:.4} events_per_sec={:.0} rows={rows}",
            events as f64 / secs
        );
        assert!(rows > 0 || smoke, "{q} gave no rows over {events} events");
    }
}
