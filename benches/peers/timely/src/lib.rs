//! Shared by the peer programs: argument parsing, pinning, the summary line, `.hgrm`.
//!
//! Every program prints the same summary line as waxfast's benchmark flows, so
//! `scripts/compare` reads them all alike:
//! `timely_wordcount: records=5000000 workers=2 seconds=0.41 records_per_sec=... peak_rss_kb=...`

use std::io::Write;

use hdrhistogram::Histogram;

/// The value of `--name V` in `args`, parsed, or `default`.
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a valid value")),
        None => default,
    }
}

/// The worker count from `-w N` / `-wN` (default 1).
pub fn workers(args: &[String]) -> usize {
    for (i, a) in args.iter().enumerate() {
        if a == "-w" {
            return args[i + 1].parse().expect("-w N");
        }
        if let Some(n) = a.strip_prefix("-w") {
            if let Ok(n) = n.parse() {
                return n;
            }
        }
    }
    1
}

/// The cores this process may use, read once before any thread is pinned.
pub fn cores() -> Vec<core_affinity::CoreId> {
    core_affinity::get_core_ids().unwrap_or_default()
}

/// Pins the calling thread to `cores[index % len]`, as waxfast pins its workers.
pub fn pin(cores: &[core_affinity::CoreId], index: usize) {
    if !cores.is_empty() {
        core_affinity::set_for_current(cores[index % cores.len()]);
    }
}

/// This process's peak resident set size (Linux `VmHWM`).
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Prints the summary line every benchmark program prints.
pub fn summary(name: &str, records: u64, workers: usize, seconds: f64, outputs: u64) {
    eprintln!(
        "{name}: records={records} workers={workers} seconds={seconds:.4} records_per_sec={:.0} outputs={outputs} peak_rss_kb={}",
        records as f64 / seconds,
        peak_rss_kb()
    );
}

/// Writes `h` (nanoseconds) in HdrHistogram's `.hgrm` text format, in microseconds; the
/// same writer as `waxfast::flows::latency::write_hgrm`.
pub fn write_hgrm(h: &Histogram<u64>, out: &mut impl Write) -> std::io::Result<()> {
    let scale = 1e3;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = h.highest_equivalent(v.value_iterated_to()) as f64 / scale;
        if q < 1.0 {
            writeln!(
                out,
                "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(out, "{value:>12.3} {q:>2.12} {total:>10}")?;
        }
    }
    writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / scale,
        h.stdev() / scale
    )?;
    writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / scale,
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
    )
}

/// The key of item `x` at step `s` of the fanout workload (same as waxfast's
/// `flows::bench::fanout_key`).
pub fn fanout_key(x: u64, s: u64) -> u64 {
    (x ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 54
}

/// Events per tumbling window in the window workload.
pub const WINDOW_EVENTS: u64 = 1_000_000;
