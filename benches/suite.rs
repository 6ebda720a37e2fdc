//! The throughput suite: every benchmark flow of `waxfast` at `-w1` and `-w2` (and
//! wordcount at `-w8`, oversubscribed), next to the rtrb floor measured in the same run.
//!
//! ```sh
//! cargo bench --bench suite                      # 5 interleaved rounds, prints markdown
//! scripts/bench --runs 7 --write                 # ... and replaces the suite section of BENCHMARKS.md
//! cargo bench --bench suite -- --smoke           # tiny sizes, one round
//! cargo bench --bench suite -- --only wordcount,fanout
//! ```
//!
//! Every configuration runs once per round, in the same order, so drift of a noisy
//! machine hits all of them alike; ratios are medians of per-round ratios. Each run is a
//! fresh `waxfast` process: wall and CPU time come from `wait4`, records/s and peak RSS
//! from the flow's own summary line (time from the source's build to the last sink's
//! close; peak RSS is the process's `VmHWM`). Under `cargo test --benches` it runs the
//! smoke sizes only. Benchmarks are not tests: nothing here asserts a timing.

#[path = "common/floor.rs"]
mod floor;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One run of one configuration.
#[derive(Debug, Clone, Copy)]
struct Run {
    flow_secs: f64,
    wall: f64,
    cpu: f64,
    rss_kb: f64,
    records: f64,
}

/// A workload at one worker count.
#[derive(Debug, Clone)]
struct Config {
    workload: &'static str,
    flow: String,
    workers: usize,
}

const BIN: &str = env!("CARGO_BIN_EXE_waxfast");

fn main() {
    floor::init();
    let args: Vec<String> = std::env::args().collect();
    let has = |f: &str| args.iter().any(|a| a == f);
    let value = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let smoke = has("--smoke") || !has("--bench");
    let runs: usize =
        value("--runs").map_or(if smoke { 1 } else { 5 }, |v| v.parse().expect("--runs N"));
    let only: Option<Vec<String>> =
        value("--only").map(|v| v.split(',').map(str::to_string).collect());
    let note = value("--note");

    let scale = |full: u64, tiny: u64| if smoke { tiny } else { full };
    let (n_pipe, n_wc, n_ex, n_win, n_fan) = (
        scale(100_000_000, 100_000),
        scale(5_000_000, 20_000),
        scale(50_000_000, 100_000),
        scale(5_000_000, 20_000),
        scale(5_000_000, 20_000),
    );
    let mut configs = Vec::new();
    let mut add = |workload: &'static str, flow: String, workers: &[usize]| {
        if only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == workload))
        {
            for &w in workers {
                configs.push(Config {
                    workload,
                    flow: flow.clone(),
                    workers: w,
                });
            }
        }
    };
    add("pipe", format!("bench_pipe:{n_pipe}"), &[1, 2]);
    add(
        "wordcount",
        format!("bench_wordcount:{n_wc},10000"),
        &[1, 2, 8],
    );
    add("exchange16", format!("bench_exchange:{n_ex},16"), &[1, 2]);
    add("exchange64", format!("bench_exchange:{n_ex},64"), &[1, 2]);
    // The peers' window workload is a count keyed on (key, window) with 1 M-event windows,
    // emitted at the end: `bench_window_fold` does exactly that. Event-time windowing
    // with a clock and watermarks (`bench_window`) has no peer here; scripts/bench_window.py
    // compares it with Bytewax's own windowing.
    add(
        "window",
        format!("bench_window_fold:{n_win},10000"),
        &[1, 2],
    );
    add(
        "event_window",
        format!("bench_window:{},1000", n_win / 5),
        &[1, 2],
    );
    add("fanout", format!("bench_fanout:{n_fan},4"), &[1, 2]);

    let load_before = loadavg();
    let machine = machine();
    let (floor_n, rt_n) = if smoke {
        (100_000, 1_000)
    } else {
        (50_000_000, 20_000)
    };
    let mut rows: Vec<Vec<Run>> = vec![Vec::new(); configs.len()];
    let mut floor_rate = Vec::new();
    let mut floor_rt = Vec::new();
    let started = Instant::now();
    for round in 0..runs {
        for (i, c) in configs.iter().enumerate() {
            rows[i].push(run(c));
        }
        // On threads of their own: the floor pins the thread that calls it, and a pinned
        // main thread would hand its one-core mask to every waxfast process after it.
        let (rate, rt) = std::thread::spawn(move || {
            (
                floor::throughput(floor_n),
                floor::round_trip(rt_n).as_nanos() as f64,
            )
        })
        .join()
        .expect("floor");
        floor_rate.push(rate);
        floor_rt.push(rt);
        eprintln!(
            "suite: round {}/{runs} done ({:.0} s)",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    let report = markdown(
        &configs,
        &rows,
        &floor_rate,
        &floor_rt,
        runs,
        smoke,
        &machine,
        &format!("load average {} before, {} after", load_before, loadavg()),
        note.as_deref(),
    );
    println!("{report}");
    if smoke {
        latency_tool_smoke();
    }
    if has("--write") {
        write_section(&report);
    }
}

/// Checks that `waxfast-latency` still runs, writes its `.hgrm` and plots it (latency
/// figures themselves come from `scripts/compare`).
fn latency_tool_smoke() {
    let dir = env!("CARGO_TARGET_TMPDIR");
    let (hgrm, svg) = (format!("{dir}/smoke.hgrm"), format!("{dir}/smoke.svg"));
    let tool = env!("CARGO_BIN_EXE_waxfast-latency");
    for args in [
        vec![
            "-w2",
            "--rate",
            "20000",
            "--duration",
            "0.1",
            "--warmup",
            "0.05",
            "--hgrm",
            &hgrm,
        ],
        vec!["--plot", &hgrm, "--svg", &svg],
    ] {
        let out = Command::new(tool)
            .args(&args)
            .output()
            .expect("run waxfast-latency");
        assert!(
            out.status.success(),
            "waxfast-latency {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    let text = std::fs::read_to_string(&svg).expect("the plot was written");
    assert!(text.starts_with("<svg"), "an SVG document");
}

/// Runs one configuration in a fresh process.
// The child is reaped by `wait4` in `wait_with_cpu`, which std's `wait` cannot replace
// (it returns no CPU time).
#[allow(clippy::zombie_processes)]
fn run(c: &Config) -> Run {
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .arg(&c.flow)
        .arg("-w")
        .arg(c.workers.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start waxfast");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut err)
        .expect("read stderr");
    let (status, cpu) = wait_with_cpu(child.id());
    let wall = t0.elapsed().as_secs_f64();
    assert!(status == 0, "{} -w{} failed: {err}", c.flow, c.workers);
    let summary = parse_summary(&err);
    let get = |k: &str| {
        summary
            .get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Run {
        flow_secs: get("seconds"),
        wall,
        cpu,
        rss_kb: get("peak_rss_kb"),
        records: get("records"),
    }
}

/// Reaps child `pid`; returns its exit status and CPU time (user + system, seconds).
fn wait_with_cpu(pid: u32) -> (i32, f64) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own un-reaped child (std's `Child` is never waited on after
    // this), and both pointers are to live locals of the right types.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(r, pid as libc::pid_t, "wait4 failed");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, secs(usage.ru_utime) + secs(usage.ru_stime))
}

fn parse_summary(err: &str) -> BTreeMap<String, String> {
    err.lines()
        .find(|l| l.starts_with("bench_"))
        .and_then(|l| l.split_once(": "))
        .map(|(_, kv)| {
            kv.split_whitespace()
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {model}")
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown date".into())
}

/// Median and spread (max - min).
fn stat(v: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let mut v: Vec<f64> = v.into_iter().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (med, v[n - 1] - v[0])
}

fn fmt_secs((m, s): (f64, f64)) -> String {
    if m < 1.0 {
        format!("{:.1} ms (±{:.1})", m * 1e3, s * 1e3)
    } else {
        format!("{m:.2} s (±{s:.2})")
    }
}

fn fmt_rate((m, s): (f64, f64)) -> String {
    format!("{:.1} M/s (±{:.1})", m / 1e6, s / 1e6)
}

/// Median over rounds of `f(round)`.
fn per_round(rounds: usize, f: impl Fn(usize) -> f64) -> f64 {
    stat((0..rounds).map(f)).0
}

#[allow(clippy::too_many_arguments)]
fn markdown(
    configs: &[Config],
    rows: &[Vec<Run>],
    floor_rate: &[f64],
    floor_rt: &[f64],
    runs: usize,
    smoke: bool,
    machine: &str,
    load: &str,
    note: Option<&str>,
) -> String {
    let mut out = Vec::new();
    out.push(format!(
        "_`scripts/bench{}` (`cargo bench --bench suite`) on {}; machine: {}; {} interleaved round(s), median (± spread = max - min); {load}{}. Workers pinned to cores (round robin), parking when idle (the CLI's defaults)._\n",
        if smoke { " --smoke" } else { "" },
        today(),
        machine,
        runs,
        note.map(|n| format!("; {n}")).unwrap_or_default()
    ));
    out.push(
        "| workload | command | records/s | ns/record | flow time | wall | CPU | peak RSS |".into(),
    );
    out.push("|---|---|---|---|---|---|---|---|".into());
    for (c, r) in configs.iter().zip(rows) {
        let rate = stat(r.iter().map(|x| x.records / x.flow_secs));
        out.push(format!(
            "| {} | `waxfast {} -w{}` | {} | {:.1} | {} | {} | {} | {:.1} MiB |",
            c.workload,
            c.flow,
            c.workers,
            fmt_rate(rate),
            1e9 / rate.0,
            fmt_secs(stat(r.iter().map(|x| x.flow_secs))),
            fmt_secs(stat(r.iter().map(|x| x.wall))),
            fmt_secs(stat(r.iter().map(|x| x.cpu))),
            stat(r.iter().map(|x| x.rss_kb)).0 / 1024.0
        ));
    }
    let f = stat(floor_rate.iter().copied());
    out.push(format!(
        "| floor | rtrb ring, 16-byte records one at a time, 2 pinned threads | {} | {:.1} | | | | |",
        fmt_rate(f),
        1e9 / f.0
    ));
    out.push(String::new());
    let find = |w: &str, n: usize| {
        configs
            .iter()
            .position(|c| c.workload == w && c.workers == n)
    };
    let mut ratios = Vec::new();
    for w in [
        "pipe",
        "wordcount",
        "exchange16",
        "exchange64",
        "window",
        "event_window",
        "fanout",
    ] {
        if let (Some(a), Some(b)) = (find(w, 1), find(w, 2)) {
            let s = per_round(runs, |i| rows[a][i].flow_secs / rows[b][i].flow_secs);
            ratios.push(format!("{w} {s:.2}x"));
        }
    }
    if !ratios.is_empty() {
        out.push(format!(
            "Speed-up `-w2` over `-w1` (flow time, median of per-round ratios): {}.\n",
            ratios.join(", ")
        ));
    }
    if let Some(b) = find("exchange16", 2) {
        // Round robin over 2 workers: half the records cross to the other worker.
        let share = per_round(runs, |i| {
            rows[b][i].records / rows[b][i].flow_secs / 2.0 / floor_rate[i]
        });
        out.push(format!(
            "Exchange, 16-byte records at `-w2`: the records crossing between the two pinned workers move at **{:.0}%** of the rtrb floor measured in the same round (median of per-round ratios; waxfast moves 1024-record batches per ring slot, the floor one record per slot).\n",
            share * 100.0
        ));
    }
    if let (Some(b2), Some(b8)) = (find("wordcount", 2), find("wordcount", 8)) {
        let wall = per_round(runs, |i| rows[b8][i].wall / rows[b2][i].wall);
        let cpu = per_round(runs, |i| rows[b8][i].cpu / rows[b2][i].cpu);
        out.push(format!(
            "Oversubscription, wordcount `-w8` on this machine vs `-w2`: wall **{wall:.2}x**, CPU **{cpu:.2}x** (medians of per-round ratios).\n"
        ));
    }
    let rt = stat(floor_rt.iter().copied());
    out.push(format!(
        "rtrb round trip between the two pinned threads (floor): {:.0} ns median (± {:.0} over rounds).",
        rt.0, rt.1
    ));
    out.join("\n")
}

const BEGIN: &str = "<!-- suite:begin (written by scripts/bench --write) -->";
const END: &str = "<!-- suite:end -->";

/// Replaces the suite's section of BENCHMARKS.md with `report`.
fn write_section(report: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md");
    let text = std::fs::read_to_string(path).expect("read BENCHMARKS.md");
    let (Some(a), Some(b)) = (text.find(BEGIN), text.find(END)) else {
        panic!("BENCHMARKS.md has no {BEGIN} ... {END} markers");
    };
    let new = format!("{}{BEGIN}\n{report}\n{}", &text[..a], &text[b..]);
    std::fs::write(path, new).expect("write BENCHMARKS.md");
    eprintln!("suite: wrote the section of {path}");
}
