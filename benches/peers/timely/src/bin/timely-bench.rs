//! The throughput workloads of waxfast's suite, written for timely-dataflow 0.12 the way a
//! timely user would write them (its best idioms: `to_stream` generation inside the
//! dataflow, `Exchange` pacts into the stateful operator, `map_in_place`, FxHashMap
//! state). Workers are pinned like waxfast's and use the same allocator (mimalloc).
//!
//! ```sh
//! timely-bench pipe N -wW
//! timely-bench wordcount N K -wW
//! timely-bench exchange N BYTES -wW      # BYTES = 16 or 64
//! timely-bench exchange N BYTES -w1 -n2 -pI [-h HOSTFILE]   # process I of two
//! timely-bench window N K -wW
//! timely-bench fanout N STEPS -wW
//! ```

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::{FxHashMap, FxHasher};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Exchange as _, Filter, Inspect, Map, Operator, ToStream};
use timely::dataflow::{Scope, Stream};
use timely::Data;
use waxfast_peers::{cores, fanout_key, pin, summary, workers, WINDOW_EVENTS};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fx<T: Hash>(x: &T) -> u64 {
    let mut h = FxHasher::default();
    x.hash(&mut h);
    h.finish()
}

/// Counts what reaches it (a discarding sink).
fn count<G: Scope, D: Data>(s: &Stream<G, D>, out: &Arc<AtomicU64>) {
    let out = out.clone();
    s.inspect_batch(move |_, batch| {
        out.fetch_add(batch.len() as u64, Ordering::Relaxed);
    });
}

/// Counts values per key, emitting `(key, count)` at end of stream in key order.
fn count_final<G: Scope, K: timely::ExchangeData + Hash + Eq + Ord>(
    s: &Stream<G, K>,
) -> Stream<G, (K, u64)> {
    s.unary_frontier(Exchange::new(|k: &K| fx(k)), "count", |cap, _| {
        let mut cap = Some(cap);
        let mut counts: FxHashMap<K, u64> = FxHashMap::default();
        let mut buf = Vec::new();
        move |input, output| {
            input.for_each(|_, data| {
                data.swap(&mut buf);
                for k in buf.drain(..) {
                    *counts.entry(k).or_insert(0) += 1;
                }
            });
            if input.frontier().is_empty() {
                if let Some(cap) = cap.take() {
                    let mut all: Vec<(K, u64)> = counts.drain().collect();
                    all.sort_unstable();
                    output.session(&cap).give_iterator(all.into_iter());
                }
            }
        }
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let w = workers(&args);
    let pos: Vec<u64> = args
        .iter()
        .skip(1)
        .take_while(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("sizes are whole numbers"))
        .collect();
    let what = args.first().cloned().unwrap_or_default();
    let n = *pos.first().expect("N");
    let arg2 = pos.get(1).copied();
    let cores = cores();
    let out = Arc::new(AtomicU64::new(0));
    // Several processes, as timely runs them: `-n PROCESSES -p INDEX [-h HOSTFILE]`
    // (with `-w` threads each); otherwise one process of `-w` threads.
    let config = if args.iter().any(|a| a.starts_with("-n")) {
        timely::Config::from_args(args.iter().skip(1).cloned()).expect("timely's -w -n -p -h")
    } else if w == 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(w)
    };
    // From when the first worker starts: a cluster's connection set-up (with its
    // retries while the other process starts) is not the workload's time.
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    let started = start.clone();
    let o = out.clone();
    let name = what.clone();
    timely::execute(config, move |worker| {
        started.get_or_init(Instant::now);
        pin(&cores, worker.index());
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        if index == 0 && std::env::var_os("TIMELY_BENCH_DEBUG").is_some() {
            eprintln!("timely-bench: {peers} workers in all");
        }
        let (lo, hi) = (n * index / peers, n * (index + 1) / peers);
        let out = o.clone();
        worker.dataflow::<u64, _, _>(|scope| match name.as_str() {
            "pipe" => {
                let s = (lo..hi)
                    .to_stream(scope)
                    .map_in_place(|x| *x = x.wrapping_mul(3).wrapping_add(1))
                    .filter(|x| x % 7 != 0);
                count(&s, &out);
            }
            "wordcount" => {
                let k = arg2.unwrap_or(10_000).max(1);
                let words = (lo..hi)
                    .map(move |i| format!("w{}", (i * 7919) % k))
                    .to_stream(scope);
                count(&count_final(&words), &out);
            }
            "exchange" => match arg2.unwrap_or(16) {
                16 => {
                    let s = (lo..hi).map(|i| (i, i)).to_stream(scope).exchange(|r| r.0);
                    count(&s, &out);
                }
                64 => {
                    let s = (lo..hi)
                        .map(|i| [i, 0, 0, 0, 0, 0, 0, 0])
                        .to_stream(scope)
                        .exchange(|r| r[0]);
                    count(&s, &out);
                }
                b => panic!("BYTES must be 16 or 64, got {b}"),
            },
            "window" => {
                let k = arg2.unwrap_or(10_000).max(1);
                let keys = (lo..hi)
                    .map(move |i| ((i * 7919) % k, i / WINDOW_EVENTS))
                    .to_stream(scope);
                count(&count_final(&keys), &out);
            }
            "fanout" => {
                let mut s = (lo..hi).to_stream(scope);
                for step in 0..arg2.unwrap_or(4) {
                    s = s.unary(
                        Exchange::new(move |x: &u64| fanout_key(*x, step)),
                        "step",
                        move |_, _| {
                            let mut seen: FxHashMap<u64, u64> = FxHashMap::default();
                            let mut buf = Vec::new();
                            move |input, output| {
                                input.for_each(|t, data| {
                                    data.swap(&mut buf);
                                    for &x in &buf {
                                        *seen.entry(fanout_key(x, step)).or_insert(0) += 1;
                                    }
                                    output.session(&t).give_vec(&mut buf);
                                });
                            }
                        },
                    );
                }
                count(&s, &out);
            }
            other => {
                panic!("unknown workload {other:?}: pipe, wordcount, exchange, window, fanout")
            }
        });
    })
    .expect("timely runs");
    let secs = start.get().expect("a worker ran").elapsed().as_secs_f64();
    summary(
        &format!("timely_{what}"),
        n,
        w,
        secs,
        out.load(Ordering::Relaxed),
    );
}
