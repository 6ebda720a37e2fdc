#!/usr/bin/env python3
"""What routing alone lets -w2 reach: the keyed workloads at -w2 with main's build and
with a build whose keyed router keeps every record on the worker that routed it (all the
router's work, nothing crossing, no worker waiting on the other), each over the VM's own
parallel ceiling (two independent -w1 copies pinned to the two cores with taskset),
measured in the same interleaved rounds (BENCHMARKS.md, "Keyed engine, thirteenth
round" and "fourteenth round").

    WAXFAST_EXPERIMENT_ROUTE_LOCAL=1 cargo build --release --target-dir target/route-local
    python3 scripts/bench_route_floor.py --local target/route-local/release/waxfast \
        [--rounds 11] [--n 5000000] [--build NAME=BINARY ...]

`--callgrind` prints instruction counts instead (valgrind's callgrind, 500 k records by
default, main at `-w1` and every build at `-w2`): repeatable where wall time is not.

`--build` adds more `-w2` builds to the same interleaved rounds (a design branch, and
its own all-local build), each over the same ceiling (main's `-w1`, two copies pinned).

The experiment build gives wrong answers by design (each worker keeps its own state for
every key): it is a measuring instrument, never a release.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

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
    ap.add_argument("--n", type=int, default=None,
                    help="records (default 5 M, or 500 k with --callgrind)")
    ap.add_argument("--build", action="append", default=[], metavar="NAME=BINARY",
                    help="another -w2 build measured in the same rounds")
    ap.add_argument("--callgrind", action="store_true",
                    help="instruction counts under valgrind instead of rates")
    args = ap.parse_args()
    extra = []
    for spec in args.build:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            sys.exit(f"--build {spec!r}: expected NAME=BINARY")
        extra.append((name, path))
    for path in [args.main, args.local] + [p for _, p in extra]:
        if not os.access(path, os.X_OK):
            sys.exit(f"{path}: no such binary (see this script's header for the builds)")
    if args.callgrind:
        return instructions(args.n or 500_000, args, extra)
    args.n = args.n or 5_000_000
    print("| workload | main `-w1` | ceiling (pair/`-w1`) | main `-w2` over ceiling "
          "| all-local `-w2` over ceiling | all-local/main `-w2` |"
          + "".join(f" {name} `-w2` over ceiling |" for name, _ in extra))
    print("|---|---|---|---|---|---|" + "---|" * len(extra))
    for flow in FLOWS:
        flow = flow.format(n=args.n)
        rows = []
        for r in range(args.rounds):
            w1 = rate([args.main, flow, "-w1"])
            ceiling = pair_rate([args.main, flow, "-w1", "--no-pin"]) / w1
            # Every -w2 build once a round, in an order that rotates from round to round.
            builds = [args.main, args.local] + [p for _, p in extra]
            shift = r % len(builds)
            w2 = {}
            for i in list(range(shift, len(builds))) + list(range(shift)):
                w2[i] = rate([builds[i], flow, "-w2"])
            over = [w2[i] / w1 / ceiling for i in range(len(builds))]
            rows.append((w1, ceiling, over[0], over[1], w2[1] / w2[0], *over[2:]))

        def col(i):
            xs = [row[i] for row in rows]
            return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"

        print(f"| `{flow}` | {statistics.median(r[0] for r in rows) / 1e6:.2f} M/s "
              f"| {col(1)} | {col(2)} | {col(3)} | {col(4)} |"
              + "".join(f" {col(5 + i)} |" for i in range(len(extra))))
    print(f"\n_{args.rounds} interleaved round(s), N = {args.n}; medians of per-round "
          "ratios (min-max)._")


def instructions_of(cmd):
    """Instructions the whole process ran under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["valgrind", "--tool=callgrind", "--dump-instr=no",
                              f"--callgrind-out-file={tmp}/cg.out"] + cmd,
                             capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"valgrind {' '.join(cmd)} failed ({out.returncode}): {out.stderr}")
    m = re.search(r"Collected : ([0-9]+)", out.stderr)
    if not m:
        sys.exit(f"valgrind {' '.join(cmd)}: no instruction count in: {out.stderr}")
    return int(m.group(1))


def instructions(n, args, extra):
    """The callgrind table: per record (per record-step for fanout's 4 steps)."""
    builds = [("main", args.main, 1), ("main", args.main, 2), ("all-local", args.local, 2)]
    builds += [(name, path, 2) for name, path in extra]
    print("| build | " + " | ".join(f"`{f.format(n=n)}` (per record-step)" for f in FLOWS)
          + " |")
    print("|---|" + "---|" * len(FLOWS))
    for name, path, w in builds:
        cells = []
        for flow in FLOWS:
            steps = 4 if flow.startswith("bench_fanout") else 1
            count = instructions_of([path, flow.format(n=n), f"-w{w}"])
            cells.append(f"{count / 1e6:.2f} M ({count / (n * steps):.1f})")
        print(f"| {name} `-w{w}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
