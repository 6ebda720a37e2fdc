#!/usr/bin/env python3
"""Issue 16's wall-time figures: waxfast (this build, and optionally an older binary)
next to timely-dataflow on the keyed workloads, interleaved round by round, as medians
of per-round ratios; and the scaling question: -w2 over -w1 against the VM's own
parallel ceiling, two independent -w1 copies pinned to the two cores with taskset,
measured in the same rounds.

    python3 scripts/bench_keyed.py [--rounds 7] [--n 5000000] [--old PATH] [--smoke]

timely comes from target/peers (scripts/compare builds it); without it, its columns are
skipped with a message.
"""
import argparse
import os
import statistics
import sys

from rates import pair_rate, rate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAX = os.path.join(ROOT, "target", "release", "waxfast")
TIMELY = os.path.join(ROOT, "target", "peers", "release", "timely-bench")

WORKLOADS = {
    # name: (waxfast flow, timely args)
    "pipe": ("bench_pipe:{n}", ["pipe", "{n}"]),
    "exchange16": ("bench_exchange:{n},16", ["exchange", "{n}", "16"]),
    "wordcount": ("bench_wordcount:{n},10000", ["wordcount", "{n}", "10000"]),
    "window": ("bench_window_fold:{n},10000", ["window", "{n}", "10000"]),
    "fanout": ("bench_fanout:{n},4", ["fanout", "{n}", "4"]),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=5_000_000)
    ap.add_argument("--old", help="an older waxfast binary to compare with")
    ap.add_argument("--only", default="", help="comma-separated workloads")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    n, rounds = (20_000, 1) if a.smoke else (a.n, a.rounds)
    names = [w for w in WORKLOADS if not a.only or w in a.only.split(",")]
    have_timely = os.path.exists(TIMELY)
    if not have_timely:
        print(f"skipping timely: {TIMELY} is missing (scripts/compare builds it)", file=sys.stderr)
    systems = [("new", WAX)] + ([("old", a.old)] if a.old else [])
    rates = {}

    def add(key, r):
        rates.setdefault(key, []).append(r)

    for _ in range(rounds):
        for wl in names:
            flow, targs = WORKLOADS[wl]
            flow = flow.format(n=n)
            for w in (1, 2):
                for name, binary in systems:
                    add((wl, name, w), rate([binary, flow, "-w", str(w)]))
                if have_timely:
                    add((wl, "timely", w), rate([TIMELY] + [x.format(n=n) for x in targs] + [f"-w{w}"]))
            # The ceiling: two unpinned-by-waxfast -w1 copies, each pinned by taskset.
            add((wl, "pair", 1), pair_rate([WAX, flow, "-w", "1", "--no-pin"]))

    def ratio(num, den):
        rs = [x / y for x, y in zip(rates[num], rates[den])]
        return statistics.median(rs), min(rs), max(rs)

    med = lambda k: statistics.median(rates[k])
    print(f"| workload | new -w1 | new -w2 | "
          + ("new/old -w1 | new/old -w2 | " if a.old else "")
          + ("new/timely -w1 | new/timely -w2 | " if have_timely else "")
          + "-w2/-w1 | ceiling (pair/-w1) | -w2/-w1 over ceiling |"
          + (" timely's -w2/-w1 over ceiling |" if have_timely else ""))
    cols = 6 + (2 if a.old else 0) + (3 if have_timely else 0)
    print("|" + "---|" * cols)
    for wl in names:
        row = [wl, f"{med((wl, 'new', 1)) / 1e6:.2f} M/s", f"{med((wl, 'new', 2)) / 1e6:.2f} M/s"]
        fmt = lambda t: f"{t[0]:.2f} ({t[1]:.2f}-{t[2]:.2f})"
        if a.old:
            # Time ratio old/new = rate ratio new/old.
            row += [fmt(ratio((wl, "new", w), (wl, "old", w))) for w in (1, 2)]
        if have_timely:
            row += [fmt(ratio((wl, "new", w), (wl, "timely", w))) for w in (1, 2)]
        scale = ratio((wl, "new", 2), (wl, "new", 1))
        ceil = ratio((wl, "pair", 1), (wl, "new", 1))
        eff = [s / c for s, c in zip([x / y for x, y in zip(rates[(wl, "new", 2)], rates[(wl, "new", 1)])],
                                    [x / y for x, y in zip(rates[(wl, "pair", 1)], rates[(wl, "new", 1)])])]
        row += [fmt(scale), fmt(ceil), f"{statistics.median(eff):.2f}"]
        if have_timely:
            # timely's own scaling against the same rounds' ceiling.
            t_eff = [(t2 / t1) / (p / w1) for t2, t1, p, w1 in
                     zip(rates[(wl, "timely", 2)], rates[(wl, "timely", 1)],
                         rates[(wl, "pair", 1)], rates[(wl, "new", 1)])]
            row.append(f"{statistics.median(t_eff):.2f}")
        print("| " + " | ".join(row) + " |")
    print(f"\n_{rounds} interleaved round(s), N = {n}; ratios are medians of per-round ratios "
          f"(min-max); a rate ratio above 1 means the first system is faster._")


if __name__ == "__main__":
    main()
