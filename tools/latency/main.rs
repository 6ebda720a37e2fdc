//! `waxfast-latency`: round-trip latency through H exchange hops under open-loop load.
//!
//! A source on every worker sends probes at a fixed offered rate (split over the
//! workers), each stamped with the time it was due; every probe goes through `--hops`
//! exchange steps (hop k to worker `origin + k`) and back to its origin worker, where
//! `arrival - due` goes into an HdrHistogram (coordinated omission corrected by the due
//! stamp). See `waxfast::flows::latency` to measure your own steps the same way.
//!
//! ```sh
//! waxfast-latency -w2 --hops 1 --rate 100000 --spin --hgrm out.hgrm --svg out.svg
//! waxfast-latency -w2 --sweep --p99-bound-us 50           # highest sustainable rate
//! waxfast-latency --plot waxfast=a.hgrm timely=b.hgrm --svg both.svg
//! waxfast-latency -w2 --rate 10000 --floor        # the machine's own floor, no engine
//! ```

mod plot;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use waxfast::flows::latency::{
    hops, machine_floor, measure_in, ring_floor, LatencyReport, LoadConfig, PERCENTILES,
};
use waxfast::RunConfig;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Round-trip latency of waxfast's exchange under a fixed offered load.
#[derive(Debug, Parser)]
#[command(name = "waxfast-latency", version, about)]
struct Args {
    /// Worker threads.
    #[arg(short = 'w', long, default_value_t = 2)]
    workers: usize,
    /// Exchange hops before the probe returns to its origin worker.
    #[arg(long, default_value_t = 1)]
    hops: usize,
    /// Offered probes per second, all workers together (the first rate of a sweep).
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
    /// Seconds measured (per rate when sweeping).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Idle workers spin instead of parking (lowest latency; burns every worker's core).
    #[arg(long)]
    spin: bool,
    /// Do not pin worker threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// This process's index in the cluster of `-a` (each process reports the round
    /// trips of the probes its own workers sent).
    #[arg(
        short = 'i',
        long = "process-id",
        default_value_t = 0,
        requires = "addresses"
    )]
    process_id: usize,
    /// The cluster's processes, `host:port;host:port;...`, as for `waxfast`.
    #[arg(short = 'a', long = "addresses")]
    addresses: Option<String>,
    /// How processes exchange: auto, tcp or shm (as for `waxfast`).
    #[arg(long, default_value = "auto")]
    transport: String,
    /// Measure this machine's floor instead of waxfast: the same number of threads,
    /// pinned the same way, spinning on the clock, with the same probe schedule and
    /// coordinated-omission correction (`waxfast::flows::latency::machine_floor`). No
    /// engine can beat its percentiles here. With -w2 --hops 1, also the round trip
    /// through a bare rtrb ring between the two threads (`ring_floor`).
    #[arg(long, conflicts_with = "sweep")]
    floor: bool,
    /// Write the percentile distribution (.hgrm text, microseconds) here.
    #[arg(long, value_name = "PATH")]
    hgrm: Option<PathBuf>,
    /// Draw the percentile plot (SVG) here.
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    /// Step the offered rate up (x --sweep-factor) and report the highest rate whose p99
    /// stays below --p99-bound-us and whose achieved rate keeps up with the offered one.
    #[arg(long)]
    sweep: bool,
    /// The sweep's p99 bound in microseconds.
    #[arg(long, default_value_t = 100.0)]
    p99_bound_us: f64,
    /// The sweep's rate multiplier per step.
    #[arg(long, default_value_t = 2.0)]
    sweep_factor: f64,
    /// The sweep's highest rate.
    #[arg(long, default_value_t = 50_000_000.0)]
    sweep_max: f64,
    /// Do not run anything: plot these .hgrm files (`LABEL=PATH` or `PATH`) into --svg.
    #[arg(long, num_args = 1.., value_name = "HGRM")]
    plot: Vec<String>,
    /// The plot's title.
    #[arg(long)]
    title: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = validate(&args) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Most workers: each pair of workers has a ring per hop.
const MAX_WORKERS: usize = 64;
/// Most hops (each an exchange step with a ring per pair of workers).
const MAX_HOPS: usize = 1000;
/// Most rings (`workers^2 * (hops + 1)`): about 9 KiB each, so at most about 600 MB.
const MAX_RINGS: usize = 1 << 16;
/// The highest offered rate (the default top of a sweep): the source sends every probe
/// that falls due, so a rate far above what the flow can carry only makes a run that
/// does not end.
const MAX_RATE: f64 = 50_000_000.0;
/// The longest measurement or warm-up, in seconds.
const MAX_SECS: f64 = 3600.0;

/// Checks every flag before anything runs: a usage error (exit 2) names the flag and
/// its allowed range.
fn validate(args: &Args) -> Result<(), String> {
    let range = |flag: &str, v: f64, lo: f64, lo_open: bool, hi: f64| {
        let ok = v.is_finite() && (if lo_open { v > lo } else { v >= lo }) && v <= hi;
        if ok {
            Ok(())
        } else {
            let open = if lo_open { "(" } else { "[" };
            Err(format!(
                "invalid value {v} for {flag}: expected a number in {open}{lo}, {hi}]"
            ))
        }
    };
    if !args.plot.is_empty() {
        if args.svg.is_none() {
            return Err("--plot needs --svg PATH".into());
        }
    } else {
        if !(1..=MAX_WORKERS).contains(&args.workers) {
            return Err(format!(
                "invalid value {} for -w/--workers: expected 1 to {MAX_WORKERS}",
                args.workers
            ));
        }
        if args.hops > MAX_HOPS {
            return Err(format!(
                "invalid value {} for --hops: expected 0 to {MAX_HOPS}",
                args.hops
            ));
        }
        let rings = args.workers * args.workers * (args.hops + 1);
        if rings > MAX_RINGS {
            return Err(format!(
                "-w {} with --hops {} needs {rings} rings (workers^2 * (hops + 1), about {} MB): at most {MAX_RINGS}; use fewer workers or hops",
                args.workers,
                args.hops,
                rings * 9 / 1024
            ));
        }
        range("--rate", args.rate, 0.0, true, MAX_RATE)?;
        range("--duration", args.duration, 0.0, true, MAX_SECS)?;
        range("--warmup", args.warmup, 0.0, false, MAX_SECS)?;
        if args.sweep {
            range("--p99-bound-us", args.p99_bound_us, 0.0, true, 60e6)?;
            // A factor of 1 or less never reaches --sweep-max.
            range("--sweep-factor", args.sweep_factor, 1.0, true, 1000.0)?;
            range("--sweep-max", args.sweep_max, args.rate, false, MAX_RATE)?;
        }
    }
    for (flag, path) in [("--hgrm", &args.hgrm), ("--svg", &args.svg)] {
        if let Some(path) = path {
            check_writable(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// Whether `path` can be written, without truncating it or leaving a new file behind
/// (the measurement writes it at the end).
fn check_writable(path: &std::path::Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory".into());
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("cannot be written: {e}"))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    if !args.plot.is_empty() {
        return plot_files(args);
    }
    let transport: waxfast::transport::Mode = args
        .transport
        .parse()
        .map_err(|e| format!("invalid value for --transport: {e}"))?;
    let config = RunConfig::default()
        .pin(!args.no_pin)
        .spin(args.spin)
        .transport(transport);
    let mode = format!(
        "hops={} spin={} pinned={}",
        args.hops, args.spin, !args.no_pin
    );
    if args.floor {
        let load = LoadConfig::new(args.rate)
            .duration(Duration::from_secs_f64(args.duration))
            .warmup(Duration::from_secs_f64(args.warmup));
        let report = machine_floor(args.workers, &load, !args.no_pin);
        print_report(&report, &format!("machine_floor pinned={}", !args.no_pin));
        if let Some(path) = &args.hgrm {
            write_hgrm(&report, path)?;
        }
        if args.workers == 2 && args.hops == 1 {
            let ring = ring_floor(&load, !args.no_pin);
            print_report(&ring, &format!("ring_floor hops=1 pinned={}", !args.no_pin));
        }
        return Ok(());
    }
    if !args.sweep {
        let report = once(args, args.rate, &config)?;
        print_report(&report, &mode);
        if let Some(path) = &args.hgrm {
            write_hgrm(&report, path)?;
        }
        if let Some(path) = &args.svg {
            let label = format!("waxfast -w{} {} ({} /s)", args.workers, mode, args.rate);
            let series = plot::parse_hgrm(&label, &hgrm_text(&report)?)?;
            write_svg(args, &[series], path)?;
        }
        return Ok(());
    }
    // Sweep: step the rate up until the p99 bound or the rate itself breaks.
    let mut rate = args.rate;
    let mut best: Option<f64> = None;
    let mut series = Vec::new();
    while rate <= args.sweep_max {
        let report = once(args, rate, &config)?;
        let p99_us = report.quantile(0.99).as_secs_f64() * 1e6;
        let keeps_up = report.achieved_rate() >= 0.95 * rate;
        let ok = p99_us <= args.p99_bound_us && keeps_up;
        let _ = writeln!(
            std::io::stdout(),
            "waxfast_latency_sweep: {mode} {} sustainable={ok}",
            report.summary_line()
        );
        series.push(plot::parse_hgrm(
            &format!("{rate:.0} /s"),
            &hgrm_text(&report)?,
        )?);
        if !ok {
            break;
        }
        best = Some(rate);
        rate *= args.sweep_factor;
    }
    let best = best.map_or_else(
        || "none (the first rate already broke the bound)".to_string(),
        |r| format!("{r:.0}"),
    );
    let _ = writeln!(
        std::io::stdout(),
        "waxfast_latency_sweep_result: {mode} workers={} highest_sustainable_per_sec={best} p99_bound_us={}",
        args.workers, args.p99_bound_us
    );
    if let Some(path) = &args.svg {
        write_svg(args, &series, path)?;
    }
    Ok(())
}

fn once(args: &Args, rate: f64, config: &RunConfig) -> Result<LatencyReport, String> {
    let load = LoadConfig::new(rate)
        .duration(Duration::from_secs_f64(args.duration))
        .warmup(Duration::from_secs_f64(args.warmup));
    let addresses: Vec<String> = args
        .addresses
        .as_deref()
        .map(|a| a.split(';').map(String::from).collect())
        .unwrap_or_default();
    measure_in(
        "latency",
        &load,
        (&addresses, args.process_id),
        args.workers,
        config,
        |i| i,
        hops::<u64>(args.hops),
    )
    .map_err(|e| e.to_string())
}

fn print_report(r: &LatencyReport, mode: &str) {
    // A closed stdout (`| head -1`) is not an error of the measurement.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "waxfast_latency: {mode} {}", r.summary_line());
    let _ = writeln!(
        out,
        "round trips through {mode}: {} recorded at {:.0}/s offered",
        r.count(),
        r.offered_rate
    );
    for p in PERCENTILES {
        let us = r.quantile(p / 100.0).as_secs_f64() * 1e6;
        let _ = writeln!(out, "  p{p:<6} {us:>10.3} us");
    }
    let _ = writeln!(out, "  max     {:>10.3} us", r.max().as_secs_f64() * 1e6);
}

fn hgrm_text(r: &LatencyReport) -> Result<String, String> {
    let mut buf = Vec::new();
    r.write_hgrm(&mut buf).map_err(|e| e.to_string())?;
    String::from_utf8(buf).map_err(|e| e.to_string())
}

fn write_hgrm(r: &LatencyReport, path: &PathBuf) -> Result<(), String> {
    std::fs::write(path, hgrm_text(r)?).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_svg(args: &Args, series: &[plot::Series], path: &PathBuf) -> Result<(), String> {
    let title = args.title.clone().unwrap_or_else(|| {
        format!(
            "round trip through {} hop(s), {} workers",
            args.hops, args.workers
        )
    });
    std::fs::write(path, plot::svg(&title, series)).map_err(|e| format!("{}: {e}", path.display()))
}

fn plot_files(args: &Args) -> Result<(), String> {
    let path = args.svg.as_ref().ok_or("--plot needs --svg PATH")?;
    let mut series = Vec::new();
    for spec in &args.plot {
        let (label, file) = spec.split_once('=').unwrap_or((spec, spec));
        let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        series.push(plot::parse_hgrm(label, &text)?);
    }
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| "round-trip latency".to_string());
    std::fs::write(path, plot::svg(&title, &series)).map_err(|e| format!("{}: {e}", path.display()))
}
