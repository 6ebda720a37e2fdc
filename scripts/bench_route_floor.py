#!/usr/bin/env python3
"""What routing alone lets -w2 reach: the keyed workloads at -w2 with main's build and
with a build whose keyed router keeps every record on the worker that routed it (all the
router's work, nothing crossing, no worker waiting on the other), each over the VM's own
parallel ceiling (two independent -w1 copies pinned to the two cores with taskset),
measured in the same interleaved rounds (BENCHMARKS.md, "Keyed engine, thirteenth
round").

    WAXFAST_EXPERIMENT_ROUTE_LOCAL=1 cargo build --release --target-dir target/route-local
    python3 scripts/bench_route_floor.py --local target/route-local/release/waxfast \
        [--rounds 11] [--n 5000000]

The experiment build gives wrong answers by design (each worker keeps its own state for
every key): it is a measuring instrument, never a release.
"""
import argparse
import os
import statistics
import sys

from rates import pair_rate, rate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(ROOT, "target", "release", "waxfast")
FLOWS = ["bench_fanout:{n},4", "bench_window_fold:{n},10000"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--local", required=True,
                    help="a build made with WAXFAST_EXPERIMENT_ROUTE_LOCAL=1")
    ap.add_argument("--main", default=MAIN)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--n", type=int, default=5_000_000)
    args = ap.parse_args()
    for path in (args.main, args.local):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path}: no such binary (see this script's header for the builds)")
    print("| workload | main `-w1` | ceiling (pair/`-w1`) | main `-w2` over ceiling "
          "| all-local `-w2` over ceiling | all-local/main `-w2` |")
    print("|---|---|---|---|---|---|")
    for flow in FLOWS:
        flow = flow.format(n=args.n)
        rows = []
        for r in range(args.rounds):
            w1 = rate([args.main, flow, "-w1"])
            ceiling = pair_rate([args.main, flow, "-w1", "--no-pin"]) / w1
            # Alternate which -w2 build goes first.
            if r % 2:
                local = rate([args.local, flow, "-w2"])
                main_w2 = rate([args.main, flow, "-w2"])
            else:
                main_w2 = rate([args.main, flow, "-w2"])
                local = rate([args.local, flow, "-w2"])
            rows.append((w1, ceiling, main_w2 / w1 / ceiling, local / w1 / ceiling,
                         local / main_w2))

        def col(i):
            xs = [row[i] for row in rows]
            return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"

        print(f"| `{flow}` | {statistics.median(r[0] for r in rows) / 1e6:.2f} M/s "
              f"| {col(1)} | {col(2)} | {col(3)} | {col(4)} |")
    print(f"\n_{args.rounds} interleaved round(s), N = {args.n}; medians of per-round "
          "ratios (min-max)._")


if __name__ == "__main__":
    main()
