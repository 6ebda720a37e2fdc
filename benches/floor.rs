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

use std::time::{Duration, Instant};

use rtrb::RingBuffer;

#[derive(Clone, Copy)]
struct Rec16(u64, u64);

/// The cores this process may use, read once at start: `get_core_ids` reads the calling
/// thread's affinity mask, so asking again from a pinned thread (or a thread spawned by
/// one, which inherits the mask) would return only that thread's core.
static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();

fn pin(i: usize) {
    let cores = CORES.get().expect("read at start");
    if !cores.is_empty() {
        core_affinity::set_for_current(cores[i % cores.len()]);
    }
}

/// Records per second through one ring, one record at a time.
fn throughput(n: u64) -> f64 {
    let (mut p, mut c) = RingBuffer::<Rec16>::new(4096);
    let consumer = std::thread::spawn(move || {
        pin(1);
        let mut sum = 0u64;
        let mut got = 0u64;
        while got < n {
            if let Ok(r) = c.pop() {
                sum = sum.wrapping_add(r.0 ^ r.1 ^ r.1);
                got += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        sum
    });
    pin(0);
    let start = Instant::now();
    let mut i = 0u64;
    while i < n {
        if p.push(Rec16(i, i)).is_ok() {
            i += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    let sum = consumer.join().expect("consumer");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(sum, n * (n - 1) / 2, "every record arrived once");
    n as f64 / secs
}

/// Median round-trip time of one record through two rings between pinned threads.
fn round_trip(n: u64) -> Duration {
    let (mut ping_p, mut ping_c) = RingBuffer::<Rec16>::new(16);
    let (mut pong_p, mut pong_c) = RingBuffer::<Rec16>::new(16);
    let echo = std::thread::spawn(move || {
        pin(1);
        for _ in 0..n {
            let r = loop {
                if let Ok(r) = ping_c.pop() {
                    break r;
                }
                std::hint::spin_loop();
            };
            while pong_p.push(r).is_err() {}
        }
    });
    pin(0);
    let mut samples = Vec::with_capacity(n as usize);
    let deadline = Instant::now() + Duration::from_secs(2);
    for i in 0..n {
        if Instant::now() > deadline {
            // Tell the echo thread to stop: it expects n records.
            for j in i..n {
                while ping_p.push(Rec16(j, j)).is_err() {
                    let _ = pong_c.pop();
                }
            }
            break;
        }
        let t = Instant::now();
        while ping_p.push(Rec16(i, i)).is_err() {}
        loop {
            if pong_c.pop().is_ok() {
                break;
            }
            std::hint::spin_loop();
        }
        samples.push(t.elapsed());
    }
    while !echo.is_finished() {
        while pong_c.pop().is_ok() {}
        std::hint::spin_loop();
    }
    echo.join().expect("echo");
    samples.sort();
    samples[samples.len() / 2]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
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
