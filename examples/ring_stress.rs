//! Stress of the shared-memory ring (`waxfast::shm::ring`): a producer thread pushes N
//! sequence-numbered records of varying length through a 4 KiB ring to a consumer
//! thread, which checks every record's number, length and bytes, in order, none lost.
//!
//! `scripts/test` runs it under valgrind's DRD race detector, built with the `valgrind`
//! feature (the ring's happens-before annotations), and fails on any report:
//!
//! ```sh
//! cargo build --example ring_stress --features valgrind
//! valgrind --tool=drd --error-exitcode=1 target/debug/examples/ring_stress 200000
//! ```

use waxfast::shm::ring::{split, HeapMemory};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a whole number of records"))
        .unwrap_or(1_000_000);
    let mem: &'static HeapMemory = Box::leak(Box::new(HeapMemory::new(4096)));
    let (mut p, mut c) = split(mem, mem);
    let producer = std::thread::spawn(move || {
        let mut rec = Vec::new();
        for i in 0..n {
            rec.clear();
            rec.extend_from_slice(&i.to_le_bytes());
            rec.resize(8 + (i % 40) as usize, i as u8);
            while !p.push(&rec) {
                std::thread::yield_now();
            }
        }
    });
    let mut out = Vec::new();
    for i in 0..n {
        while !c.pop(&mut out) {
            std::thread::yield_now();
        }
        let got = u64::from_le_bytes(out[..8].try_into().expect("8 bytes"));
        assert_eq!(got, i, "record {i} arrived as {got}");
        assert_eq!(out.len(), 8 + (i % 40) as usize, "record {i}'s length");
        assert!(out[8..].iter().all(|&b| b == i as u8), "record {i}'s bytes");
    }
    producer.join().expect("the producer finished");
    assert!(!c.pop(&mut out), "nothing after the last record");
    println!("ring_stress: {n} records in order, none lost");
}
