#!/usr/bin/env python3
"""Nexmark on waxfast: every query at -w1 and -w2 next to its single-threaded COST loop
(benches/nexmark_cost.rs), in interleaved rounds; prints events/s per core (events /
wall time / workers) as medians with their spread, and each query's -w1 time over the
loop's. With --bytewax, also Bytewax 0.21.1 (benches/peers/bytewax/nexmark.py) over
the same events read from a file (fewer of them: compare rates).

Usage: scripts/bench_nexmark.py [--events N] [--rounds R] [--only q0,q5]
                                [--bytewax] [--bytewax-events N] [--smoke]
"""
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = sys.argv[1:]
SMOKE = "--smoke" in ARGS


def opt(name, default=None):
    return ARGS[ARGS.index(name) + 1] if name in ARGS else default


QUERIES = ["q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q14", "q21", "q22"]
EVENTS = int(opt("--events", "20000" if SMOKE else "2000000"))
ROUNDS = int(opt("--rounds", "1" if SMOKE else "3"))
ONLY = [q for q in (opt("--only", "") or "").split(",") if q] or QUERIES
BW_EVENTS = int(opt("--bytewax-events", "5000" if SMOKE else "200000"))
WAX = os.path.join(ROOT, "target", "release", "waxfast")
VENV = os.path.join(ROOT, ".venv-bench")
PY = os.path.join(VENV, "bin", "python")
RATE = re.compile(r"(\w+): .*?seconds=([0-9.]+)")


def say(msg):
    print(f"bench_nexmark: {msg}", file=sys.stderr, flush=True)


def seconds(text, what):
    m = RATE.search(text)
    if not m:
        raise SystemExit(f"bench_nexmark: no summary line from {what}:\n{text}")
    return float(m.group(2))


def waxfast(q, workers, events=EVENTS):
    r = subprocess.run([WAX, f"nexmark:{q},{events},null", f"-w{workers}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench_nexmark: waxfast {q} -w{workers} failed:\n{r.stderr}")
    return seconds(r.stderr, f"waxfast {q}")


def cost(q, events=EVENTS):
    r = subprocess.run(["cargo", "bench", "--quiet", "--bench", "nexmark_cost", "--",
                        "--bench", "--events", str(events), "--only", q],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench_nexmark: the COST loop of {q} failed:\n{r.stderr}")
    return seconds(r.stdout, f"cost {q}")


def setup_bytewax():
    if not os.path.exists(PY):
        r = subprocess.run([sys.executable, "-m", "venv", VENV])
        if r.returncode != 0:
            say("SKIPPING Bytewax: could not make a venv")
            return False
    r = subprocess.run([PY, "-m", "pip", "install", "--quiet", "bytewax==0.21.1"])
    if r.returncode != 0:
        say("SKIPPING Bytewax: pip install bytewax==0.21.1 failed")
        return False
    return True


def bytewax(q, path, workers):
    r = subprocess.run([PY, "-m", "bytewax.run",
                        f"nexmark:flow('{q}', '{path}', {BW_EVENTS})", "-w", str(workers)],
                       cwd=os.path.join(ROOT, "benches", "peers", "bytewax"),
                       capture_output=True, text=True)
    if r.returncode != 0:
        say(f"Bytewax {q} -w{workers} failed:\n{r.stderr[-2000:]}")
        return None
    return seconds(r.stderr, f"bytewax {q}")


def fmt_rate(r):
    return f"{r / 1e6:.2f} M" if r >= 1e6 else f"{r / 1e3:.0f} K"


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "waxfast"],
                   cwd=ROOT, check=True)
    subprocess.run(["cargo", "bench", "--quiet", "--bench", "nexmark_cost", "--no-run"],
                   cwd=ROOT, check=True)
    bw_path = None
    if "--bytewax" in ARGS and setup_bytewax():
        bw_path = os.path.join(ROOT, "target", "nexmark-events.jsonl")
        subprocess.run(["cargo", "bench", "--quiet", "--bench", "nexmark_cost", "--",
                        "--bench", "--events", str(BW_EVENTS), "--dump", bw_path],
                       cwd=ROOT, check=True)
    times = {(q, s): [] for q in ONLY for s in ("w1", "w2", "cost", "bw1", "bw2")}
    for r in range(ROUNDS):
        say(f"round {r + 1} of {ROUNDS}")
        for q in ONLY:
            times[(q, "w1")].append(waxfast(q, 1))
            times[(q, "w2")].append(waxfast(q, 2))
            times[(q, "cost")].append(cost(q))
            if bw_path and r == 0:
                for w in (1, 2):
                    t = bytewax(q, bw_path, w)
                    if t is not None:
                        times[(q, f"bw{w}")].append(t)
    print(f"Nexmark, {EVENTS} events (Bytewax: {BW_EVENTS}), medians of {ROUNDS} interleaved rounds "
          f"(min-max in brackets); events/s per core = events / wall time / workers\n")
    print("| query | waxfast -w1 | waxfast -w2 | COST loop | -w1 time / COST time | Bytewax -w1 | Bytewax -w2 |")
    print("|---|---|---|---|---|---|---|")
    for q in ONLY:
        def per_core(s, workers, events=EVENTS):
            ts = times[(q, s)]
            if not ts:
                return "-"
            rates = [events / t / workers for t in ts]
            med = statistics.median(rates)
            return f"{fmt_rate(med)}/s [{fmt_rate(min(rates))}-{fmt_rate(max(rates))}]"
        ratio = statistics.median([a / b for a, b in zip(times[(q, "w1")], times[(q, "cost")])])
        print(f"| {q} | {per_core('w1', 1)} | {per_core('w2', 2)} | {per_core('cost', 1)} | {ratio:.2f} "
              f"| {per_core('bw1', 1, BW_EVENTS)} | {per_core('bw2', 2, BW_EVENTS)} |")


main()
