//! Round-trip latency in timely-dataflow 0.12, measured exactly as `waxfast-latency`
//! measures waxfast: every worker's input sends probes at a fixed offered rate (split
//! over the workers), each stamped with the time it was *due*; `--hops` exchanges send
//! probe hop k to worker `origin + k`, a last exchange returns it to its origin worker,
//! where `arrival - due` goes into an HdrHistogram. This is timely's `pingpong` shape
//! under open-loop load (its `openloop` example's method, with per-record stamps).
//!
//! ```sh
//! timely-latency -w2 --hops 1 --rate 100000 --duration 5 --warmup 1 [--spin] [--hgrm PATH]
//! ```
//!
//! Probes enter with `send_batch` and `advance_to` (which flushes timely's exchange
//! buffers: without it a probe waits for 1024 more). `--spin` steps the worker in a busy
//! loop; without it the worker parks (`step_or_park`) until the next probe is due.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use waxfast_peers::{cores, flag, pin, workers, write_hgrm};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let w = workers(&args);
    let hops: u64 = flag(&args, "--hops", 1);
    let rate: f64 = flag(&args, "--rate", 100_000.0);
    let duration: f64 = flag(&args, "--duration", 5.0);
    let warmup: f64 = flag(&args, "--warmup", 1.0);
    let spin = args.iter().any(|a| a == "--spin");
    let hgrm: Option<String> = args
        .iter()
        .position(|a| a == "--hgrm")
        .map(|i| args[i + 1].clone());
    let cores = cores();
    let config = if w == 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(w)
    };
    let guards = timely::execute(config, move |worker| {
        pin(&cores, worker.index());
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        let hist = Rc::new(RefCell::new(
            Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds"),
        ));
        let mut input = InputHandle::new();
        let mut probe = ProbeHandle::new();
        let start = Instant::now();
        let warmup_ns = (warmup * 1e9) as u64;
        let h = hist.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            // (due_ns, origin, payload)
            let mut s = scope.input_from(&mut input);
            for k in 1..=hops {
                s = s.exchange(move |p: &(u64, u64, u64)| (p.1 + k) % peers);
            }
            s.exchange(|p: &(u64, u64, u64)| p.1)
                .inspect_batch(move |_, batch| {
                    let now_ns = start.elapsed().as_nanos() as u64;
                    let mut h = h.borrow_mut();
                    for p in batch {
                        assert_eq!(p.1, index, "probe returned to its origin");
                        if p.0 >= warmup_ns {
                            h.saturating_record(now_ns.saturating_sub(p.0).max(1));
                        }
                    }
                })
                .probe_with(&mut probe);
        });
        // This worker's share: rate / W, staggered like waxfast's sources.
        let interval = 1e9 * peers as f64 / rate;
        let offset = interval * index as f64 / peers as f64;
        let end_ns = ((warmup + duration) * 1e9) as u64;
        let due = |i: u64| (offset + i as f64 * interval) as u64;
        let (mut next, mut epoch) = (0u64, 0u64);
        let mut batch = Vec::new();
        loop {
            let now_ns = start.elapsed().as_nanos() as u64;
            while due(next) <= now_ns && due(next) < end_ns && batch.len() < 1024 {
                batch.push((due(next), index, next));
                next += 1;
            }
            if !batch.is_empty() {
                input.send_batch(&mut batch);
                epoch += 1;
                input.advance_to(epoch);
            }
            if due(next) >= end_ns {
                break;
            }
            if spin {
                worker.step();
            } else {
                let wait = due(next).saturating_sub(start.elapsed().as_nanos() as u64);
                worker.step_or_park(Some(Duration::from_nanos(wait)));
            }
        }
        drop(input);
        while !probe.done() {
            worker.step();
        }
        let h = hist.borrow().clone();
        h
    })
    .expect("timely runs");
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    for r in guards.join() {
        all.add(r.expect("worker")).expect("same bounds");
    }
    let q = |p: f64| all.value_at_percentile(p) as f64 / 1e3;
    println!(
        "timely_latency: hops={hops} spin={spin} pinned=true workers={w} offered_per_sec={rate:.0} achieved_per_sec={:.0} count={} p50_us={:.3} p90_us={:.3} p99_us={:.3} p99.9_us={:.3} p99.99_us={:.3} max_us={:.3}",
        all.len() as f64 / duration,
        all.len(),
        q(50.0),
        q(90.0),
        q(99.0),
        q(99.9),
        q(99.99),
        all.max() as f64 / 1e3
    );
    if let Some(path) = hgrm {
        let mut f = std::fs::File::create(&path).expect("create the .hgrm file");
        write_hgrm(&all, &mut f).expect("write the .hgrm file");
    }
}
