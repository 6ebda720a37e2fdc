//! The rtrb floor, shared by `benches/floor.rs` and `benches/suite.rs`: one ring between
//! two pinned threads, throughput of 16-byte records one at a time, and round trip.

use std::time::{Duration, Instant};

use rtrb::RingBuffer;

/// A 16-byte record.
#[derive(Clone, Copy)]
pub struct Rec16(u64, u64);

/// The cores this process may use, read once at start: `get_core_ids` reads the calling
/// thread's affinity mask, so asking again from a pinned thread (or a thread spawned by
/// one, which inherits the mask) would return only that thread's core.
pub static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();

fn pin(i: usize) {
    let cores = CORES.get().expect("read at start");
    if !cores.is_empty() {
        core_affinity::set_for_current(cores[i % cores.len()]);
    }
}

/// Records per second through one ring, one record at a time.
pub fn throughput(n: u64) -> f64 {
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
pub fn round_trip(n: u64) -> Duration {
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

// Used by floor.rs; suite.rs has its own statistics.
#[allow(dead_code)]
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Reads the cores this process may use; call once at start, before pinning.
pub fn init() {
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
}
