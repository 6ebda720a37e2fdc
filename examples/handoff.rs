//! What a keyed exchange's hand-off between two cores costs per record, outside the
//! engine: worker A routes records `(hash, key, value)` into two columns by the hash's
//! low bit, keeps column 0 (it reads it back, as its own step would) and sends column 1
//! through an rtrb ring to worker B on the other core, which reads every record and
//! hands the emptied column back for reuse, as `exchange::Links` does. Half of the
//! records cross, as in `bench_fanout` at `-w2`.
//!
//! ```sh
//! cargo run --release --example handoff -- [ROUNDS]
//! ```
//!
//! Prints nanoseconds per routed record for records of 8 to 32 bytes and routed batches
//! of 256 to 16384 records, and for 24-byte records routed with nothing crossing (both
//! columns read back on the routing core): the difference is the hand-off
//! (BENCHMARKS.md, "Keyed engine, ninth round" and "tenth round").

use std::time::Instant;

use rtrb::{PushError, RingBuffer};

/// A record of some width, made from its hash and key.
trait Rec: Copy + Send + 'static {
    fn make(h: u64, k: u64) -> Self;
    fn fold(&self) -> u64;
}

impl Rec for u64 {
    fn make(h: u64, _k: u64) -> Self {
        h
    }
    fn fold(&self) -> u64 {
        *self
    }
}

impl Rec for (u64, u64) {
    fn make(h: u64, k: u64) -> Self {
        (h, k)
    }
    fn fold(&self) -> u64 {
        self.0 ^ self.1
    }
}

impl Rec for (u64, u64, u64) {
    fn make(h: u64, k: u64) -> Self {
        (h, k, k ^ 7)
    }
    fn fold(&self) -> u64 {
        self.0 ^ self.1 ^ self.2
    }
}

impl Rec for [u64; 4] {
    fn make(h: u64, k: u64) -> Self {
        [h, k, k ^ 7, 0]
    }
    fn fold(&self) -> u64 {
        self[0] ^ self[1] ^ self[2]
    }
}

fn mix(x: u64) -> u64 {
    (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (x >> 32)
}

/// Routes `n` records from key `base` on into `parts[hash & 1]`.
#[inline(never)]
fn route<T: Rec>(parts: &mut [Vec<T>; 2], base: u64, n: usize) {
    for i in 0..n as u64 {
        let k = base + i;
        let h = mix(k);
        parts[(h & 1) as usize].push(T::make(h, k));
    }
}

/// Nanoseconds per routed record when nothing crosses: both columns are read back on
/// this core, as `-w1` would apply them. The difference to [`run`] is the hand-off.
fn run_local<T: Rec>(batch: usize, records: usize, cores: &[core_affinity::CoreId]) -> f64 {
    core_affinity::set_for_current(cores[0]);
    let batches = records / batch;
    let start = Instant::now();
    let mut parts: [Vec<T>; 2] = [Vec::with_capacity(batch), Vec::with_capacity(batch)];
    let mut sum = 0u64;
    for i in 0..batches {
        route(&mut parts, (i * batch) as u64, batch);
        for p in parts.iter_mut() {
            sum = p.iter().fold(sum, |s, x| s.wrapping_add(x.fold()));
            p.clear();
        }
    }
    std::hint::black_box(sum);
    start.elapsed().as_nanos() as f64 / (batches * batch) as f64
}

/// Nanoseconds per routed record, `batch` records routed per message sent.
fn run<T: Rec>(batch: usize, records: usize, cores: &[core_affinity::CoreId]) -> f64 {
    let batches = records / batch;
    let (mut tx, mut rx) = RingBuffer::<Vec<T>>::new(64);
    let (mut back_tx, mut back_rx) = RingBuffer::<Vec<T>>::new(64);
    let other = cores[cores.len() - 1];
    let reader = std::thread::spawn(move || {
        core_affinity::set_for_current(other);
        let (mut got, mut sum) = (0usize, 0u64);
        while got < batches {
            match rx.pop() {
                Ok(mut b) => {
                    sum = b.iter().fold(sum, |s, r| s.wrapping_add(r.fold()));
                    b.clear();
                    got += 1;
                    let _ = back_tx.push(b);
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
        sum
    });
    core_affinity::set_for_current(cores[0]);
    let start = Instant::now();
    let mut local: Vec<T> = Vec::with_capacity(batch);
    let mut spare: Vec<Vec<T>> = Vec::new();
    let mut sum = 0u64;
    for i in 0..batches {
        let remote = back_rx
            .pop()
            .ok()
            .or_else(|| spare.pop())
            .unwrap_or_else(|| Vec::with_capacity(batch));
        let mut parts = [std::mem::take(&mut local), remote];
        route(&mut parts, (i * batch) as u64, batch);
        let [mut l, mut r] = parts;
        sum = l.iter().fold(sum, |s, x| s.wrapping_add(x.fold()));
        l.clear();
        local = l;
        loop {
            match tx.push(r) {
                Ok(()) => break,
                Err(PushError::Full(b)) => {
                    r = b;
                    while let Ok(b) = back_rx.pop() {
                        spare.push(b);
                    }
                    std::hint::spin_loop();
                }
            }
        }
    }
    std::hint::black_box(sum);
    std::hint::black_box(reader.join().expect("the reader finishes"));
    start.elapsed().as_nanos() as f64 / (batches * batch) as f64
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS is a whole number"))
        .unwrap_or(3);
    let cores = core_affinity::get_core_ids().expect("the cores");
    assert!(cores.len() >= 2, "the hand-off needs two cores");
    let records = 100_000 * 1024;
    println!("| round | batch | 8 B | 16 B | 24 B | 32 B | 24 B, nothing crosses |");
    println!("|---|---|---|---|---|---|---|");
    for round in 0..rounds {
        for batch in [256, 1024, 4096, 16384] {
            println!(
                "| {round} | {batch} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                run::<u64>(batch, records, &cores),
                run::<(u64, u64)>(batch, records, &cores),
                run::<(u64, u64, u64)>(batch, records, &cores),
                run::<[u64; 4]>(batch, records, &cores),
                run_local::<(u64, u64, u64)>(batch, records, &cores),
            );
        }
    }
}
