//! The hardware floor for the exchange: an rtrb ring between two pinned threads.
//!
//! * throughput: 16-byte records pushed one at a time, producer and consumer pinned to
//!   different cores;
//! * round trip: one record there and back through two rings (ping-pong).
//!
//! `cargo bench --bench floor` measures (median of 5); under `cargo test --benches`, or
//! with `-- --smoke`, it runs a tiny size only, to check it still works. The round trip
//! stops after 2 s of samples whatever the count (spinning pinned threads on a loaded
//! machine can be slow). Prints one line per figure:
//! `floor_rtrb_16B: records=... records_per_sec=...`.

#[path = "common/floor.rs"]
mod floor;

use floor::{median, round_trip, throughput};

fn main() {
    floor::init();
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--smoke");
    let (n, rt, runs) = if full {
        (100_000_000, 200_000, 5)
    } else {
        (100_000, 1_000, 1)
    };
    let rates: Vec<f64> = (0..runs).map(|_| throughput(n)).collect();
    let spread = rates.iter().cloned().fold(f64::MIN, f64::max)
        - rates.iter().cloned().fold(f64::MAX, f64::min);
    let best = rates.iter().cloned().fold(f64::MIN, f64::max);
    let rate = median(rates);
    println!(
        "floor_rtrb_16B: records={n} runs={runs} records_per_sec={rate:.0} best={best:.0} spread={spread:.0}"
    );
    let rts: Vec<f64> = (0..runs)
        .map(|_| round_trip(rt).as_nanos() as f64)
        .collect();
    println!(
        "floor_rtrb_round_trip: samples={rt} runs={runs} median_ns={:.0}",
        median(rts)
    );
}
