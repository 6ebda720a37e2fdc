#!/usr/bin/env python3
"""Issue 6's figure: tumbling event-time window count per key, waxfast's count_window
(`bench_window:N,K`) at -w1 and -w2 next to Bytewax 0.21.1's fold_window on the same
input (benches/peers/bytewax/window_fold.py), interleaved round by round. Prints records/s
and records/s per worker (medians). Bytewax comes from `.venv-bench` (scripts/compare
creates it); without it, its rows are skipped with a message.

    python3 scripts/bench_window.py [--n 200000] [--keys 1000] [--rounds 3] [--smoke]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "waxfast")
PY = os.path.join(ROOT, ".venv-bench", "bin", "python")


def rate(cmd, cwd=ROOT):
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=3600)
    if out.returncode != 0:
        sys.exit(f"{cmd} failed: {out.stderr}")
    m = re.search(r"records_per_sec=([0-9.]+) outputs=(\d+)", out.stderr)
    return float(m.group(1)), int(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    n, rounds = (2000, 1) if a.smoke else (a.n, a.rounds)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    configs = [
        ("waxfast count_window -w1", 1, [BIN, f"bench_window:{n},{a.keys}", "-w", "1"], ROOT),
        ("waxfast count_window -w2", 2, [BIN, f"bench_window:{n},{a.keys}", "-w", "2"], ROOT),
    ]
    if os.path.exists(PY):
        flow = f"window_fold.py:flow({n}, {a.keys})"
        cwd = os.path.join(ROOT, "benches", "peers", "bytewax")
        for w in (1, 2):
            configs.append((f"bytewax fold_window -w{w}", w, [PY, "-m", "bytewax.run", flow, "-w", str(w)], cwd))
    else:
        print(f"skipping Bytewax: {PY} is missing (scripts/compare creates it)", file=sys.stderr)
    rates = {c[0]: [] for c in configs}
    outputs = {}
    for _ in range(rounds):
        for name, _w, cmd, cwd in configs:
            r, o = rate(cmd, cwd)
            rates[name].append(r)
            outputs[name] = o
    print(f"| system | records/s (median of {rounds}) | per worker | outputs |\n|---|---|---|---|")
    for name, w, _, _ in configs:
        med = statistics.median(rates[name])
        print(f"| {name} | {med:,.0f} | {med / w:,.0f} | {outputs[name]} |")
    if len(set(outputs.values())) != 1:
        sys.exit(f"the systems disagree on the number of windows: {outputs}")
    by = {name: statistics.median(v) / w for (name, w, _, _), v in zip(configs, rates.values())}
    bw = [v for k, v in by.items() if k.startswith("bytewax")]
    if bw:
        print(f"\nwaxfast per worker (best) over Bytewax per worker (best): "
              f"**{max(v for k, v in by.items() if k.startswith('waxfast')) / max(bw):.0f}x**")


if __name__ == "__main__":
    main()
