#!/usr/bin/env python3
"""What the dataflow API costs the flow: bench_pipe and bench_wordcount with the API
off and on (--api-port, a free loopback port), interleaved round by round, at -w1 and
-w2. With the API on, every worker counts into its cells and the sampler and server
threads run; nothing scrapes it (a scrape is one read of the cells per second).

Prints, per workload and shape, the median of each side's own `seconds=` line, and
the median, min and max of the per-round ratios on/off.

    python3 scripts/bench_api.py [--rounds 7] [--smoke]
"""
import argparse
import re
import socket
import statistics
import subprocess
import sys

BIN = "target/release/waxfast"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(flow, shape, api):
    args = [BIN, flow, *shape.split()]
    if api:
        args += ["--api-port", str(free_port())]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {out.stderr}")
    return max(float(x) for x in re.findall(r"seconds=([0-9.]+)", out.stderr))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], check=True)
    n = 100_000 if a.smoke else 100_000_000
    w = 100_000 if a.smoke else 5_000_000
    rounds = 1 if a.smoke else a.rounds
    for flow in [f"bench_pipe:{n}", f"bench_wordcount:{w},10000"]:
        for shape in ["-w1", "-w2"]:
            off, on = [], []
            for r in range(rounds):
                # Alternate which side goes first, so drift does not favour one.
                order = [False, True] if r % 2 == 0 else [True, False]
                for api in order:
                    (on if api else off).append(run(flow, shape, api))
            ratios = [b / a for a, b in zip(off, on)]
            print(
                f"{flow} {shape}: off median {statistics.median(off):.3f} s, "
                f"on median {statistics.median(on):.3f} s, per-round on/off median "
                f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}), "
                f"rounds={rounds}",
                flush=True,
            )


if __name__ == "__main__":
    main()
