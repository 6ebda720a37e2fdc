#!/usr/bin/env python3
"""The price of the cluster tier's bounds and liveness: two waxfast binaries (say, one
built before a change and one after) on the same `-p 2 -w 1` workloads, interleaved
round by round.

Per workload and binary: the median of the slower process's own `seconds=` (the flow's
time, without process start-up), the median wall time of the whole launcher run, the
largest peak RSS of a process, and the median of per-round ratios after/before.
`--heartbeat-probe` adds a third column: the after binary with `--peer-timeout 0.5`
(a heartbeat every 100 ms on each idle connection, 10x the default rate), to show what heartbeats cost.

    python3 scripts/bench_cluster.py --before OLD_BINARY [--after target/release/waxfast]
        [--rounds 7] [--heartbeat-probe] [--smoke]

The `wordcount:FILE` row prints 60 k distinct words through a pipe, the case where the
launcher relays its children's output whole lines at a time.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def run(binary, flow, extra):
    cmd = [binary, flow, "-p2", "-w1", "--no-pin", *extra]
    start = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
    wall = time.perf_counter() - start
    err = out.stderr.decode(errors="replace")
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {err[-2000:]}")
    secs = [float(x) for x in re.findall(r"seconds=([0-9.]+)", err)]
    rss = [int(x) for x in re.findall(r"peak_rss_kb=([0-9]+)", err)]
    return (max(secs) if secs else wall), wall, (max(rss) if rss else None), len(out.stdout)


def words_file(path, distinct, lines):
    with open(path, "w") as f:
        for i in range(lines):
            f.write(f"word{i % distinct}x{(i * 7919) % distinct} other{i % 97} the\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="the binary to compare against")
    ap.add_argument("--after", default="target/release/waxfast")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--heartbeat-probe", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    a = ap.parse_args()
    n = 200_000 if a.smoke else 20_000_000
    w = 100_000 if a.smoke else 5_000_000
    rounds = 1 if a.smoke else a.rounds
    tmp = tempfile.mkdtemp(prefix="waxfast-bench-cluster-")
    words = os.path.join(tmp, "words.txt")
    words_file(words, 60_000, 20_000 if a.smoke else 600_000)
    workloads = [
        f"bench_exchange:{n},16",
        f"bench_exchange:{n},64",
        f"bench_wordcount:{w},10000",
        f"wordcount:{words}",
    ]
    shapes = [("before", a.before, []), ("after", a.after, [])]
    if a.heartbeat_probe:
        shapes.append(("after, heartbeat 100 ms", a.after, ["--peer-timeout", "0.5"]))
    print(f"rounds={rounds}, -p2 -w1, interleaved; seconds = the slower process's own time")
    print("| workload | " + " | ".join(f"{s} s (wall)" for s, _, _ in shapes)
          + " | after/before, median of rounds (min-max) | peak RSS before / after |")
    print("|---|" + "---|" * len(shapes) + "---|---|")
    for flow in workloads:
        res = {s: [] for s, _, _ in shapes}
        for _ in range(rounds):
            for s, binary, extra in shapes:
                res[s].append(run(binary, flow, extra))
        med = {s: statistics.median(r[0] for r in res[s]) for s in res}
        wall = {s: statistics.median(r[1] for r in res[s]) for s in res}
        ratios = [x[0] / y[0] for x, y in zip(res["after"], res["before"])]
        rss = {s: max((r[2] or 0) for r in res[s]) for s in ("before", "after")}
        name = flow if not flow.startswith("wordcount:") else "wordcount:FILE (60 k words to a pipe)"
        cells = " | ".join(f"{med[s]:.3f} ({wall[s]:.3f})" for s, _, _ in shapes)
        print(f"| `{name}` | {cells} | {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{rss['before'] // 1024 if rss['before'] else '-'} MB / "
              f"{rss['after'] // 1024 if rss['after'] else '-'} MB |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
