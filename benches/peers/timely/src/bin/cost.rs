//! The COST floor: the wordcount workload as a single-threaded loop with no dataflow
//! engine at all. Each word is formatted into a new `String` (as the flows' sources do)
//! and counted in a hash map. Same allocator as waxfast (mimalloc).
//!
//! ```sh
//! cost wordcount N K          # FxHashMap (rustc-hash), the fast floor
//! cost wordcount-std N K      # std HashMap (SipHash), what a first draft would use
//! ```

use std::collections::HashMap;
use std::time::Instant;

use rustc_hash::FxHashMap;
use waxfast_peers::summary;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("wordcount");
    let n: u64 = args.get(1).map_or(5_000_000, |a| a.parse().expect("N"));
    let k: u64 = args.get(2).map_or(10_000, |a| a.parse().expect("K")).max(1);
    let start = Instant::now();
    let keys = match what {
        "wordcount" => {
            let mut counts: FxHashMap<String, u64> = FxHashMap::default();
            for i in 0..n {
                *counts.entry(format!("w{}", (i * 7919) % k)).or_insert(0) += 1;
            }
            // Emitted in key order, as count_final does.
            let mut all: Vec<_> = counts.into_iter().collect();
            all.sort_unstable();
            std::hint::black_box(&all);
            all.len()
        }
        "wordcount-std" => {
            let mut counts: HashMap<String, u64> = HashMap::new();
            for i in 0..n {
                *counts.entry(format!("w{}", (i * 7919) % k)).or_insert(0) += 1;
            }
            let mut all: Vec<_> = counts.into_iter().collect();
            all.sort_unstable();
            std::hint::black_box(&all);
            all.len()
        }
        other => panic!("unknown workload {other:?}: wordcount, wordcount-std"),
    };
    summary(
        &format!("cost_{}", what.replace('-', "_")),
        n,
        1,
        start.elapsed().as_secs_f64(),
        keys as u64,
    );
}
