#!/usr/bin/env python3
"""Round trip through one exchange hop next to this machine's floors (issue 5), for
BENCHMARKS.md: prints a markdown section.

Usage: scripts/bench_latency_floor.py [--rate R] [--rounds N] [--duration S] [--smoke]

Interleaves, round by round, at the same offered rate (default 10 000 probes/s, -w2,
pinned, spinning):
  waxfast-latency --floor   the machine floor (two threads spinning on the clock) and the
                            round trip through a bare rtrb ring between two threads;
  waxfast-latency --spin    waxfast, one hop;
  timely-latency --spin     timely-dataflow 0.12's equivalent (benches/peers/timely),
                            skipped with a message when it cannot be built.
Every percentile is the median over rounds, with the spread (max - min).
"""
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = sys.argv[1:]


def opt(name, default):
    return ARGS[ARGS.index(name) + 1] if name in ARGS else default


SMOKE = "--smoke" in ARGS
RATE = opt("--rate", "10000")
ROUNDS = 1 if SMOKE else int(opt("--rounds", "5"))
DURATION = "0.2" if SMOKE else opt("--duration", "3")
LAT = os.path.join(ROOT, "target", "release", "waxfast-latency")
TIMELY = os.path.join(ROOT, "target", "peers", "release", "timely-latency")
KEYS = ["p50_us", "p90_us", "p99_us", "p99.9_us", "p99.99_us", "max_us"]


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), "unknown CPU")
    return f"{os.cpu_count()} cores, {model}"


def lines(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        if "p50_us=" in line:
            found.append(dict(re.findall(r"(\S+)=(\S+)", line)))
    return found


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "waxfast-latency"], cwd=ROOT, check=True)
    common = ["-w2", "--hops", "1", "--rate", RATE, "--duration", DURATION, "--warmup", "0.1" if SMOKE else "1"]
    timely = True
    try:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "timely-latency"],
                       cwd=os.path.join(ROOT, "benches", "peers", "timely"), check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "peers")))
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"skipping timely: cannot build it ({e})", file=sys.stderr)
        timely = False
    rows = {"machine floor (2 threads spinning on the clock)": [], "bare rtrb ring round trip": [],
            "waxfast, spinning": [], "timely, spinning": []}
    load = os.getloadavg()
    for _ in range(ROUNDS):
        floor, ring = lines([LAT, *common, "--floor"])
        rows["machine floor (2 threads spinning on the clock)"].append(floor)
        rows["bare rtrb ring round trip"].append(ring)
        rows["waxfast, spinning"].append(lines([LAT, *common, "--spin"])[0])
        if timely:
            rows["timely, spinning"].append(lines([TIMELY, *common, "--spin"])[0])
    print(f"_`scripts/bench_latency_floor.py --rate {RATE} --rounds {ROUNDS} --duration {DURATION}` on "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {machine()}; -w2, one hop, "
          f"{RATE} probes/s offered, pinned, spinning; load average {load[0]:.2f} before; median over "
          f"{ROUNDS} interleaved rounds (± spread)._\n")
    print("| what | " + " | ".join(k.replace("_us", "") for k in KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for name, runs in rows.items():
        if not runs:
            continue
        cells = []
        for k in KEYS:
            v = [float(r[k]) for r in runs]
            cells.append(f"{statistics.median(v):.2f} us (±{max(v) - min(v):.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
