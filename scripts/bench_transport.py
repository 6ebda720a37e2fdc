#!/usr/bin/env python3
"""Threads, shared memory and TCP on the same workloads (issue 17's figures): `-w2`
(two threads of one process), `-p2 -w1 --transport shm` and `-p2 -w1 --transport tcp`,
interleaved round by round.

Per workload and shape: the median over rounds of the flow's own time (the slower
process's `seconds=`, without process start-up), and the median of per-round ratios
to `-w2`. With `--latency`, also the one-hop round trip across two processes with
waxfast-latency (spinning, pinned, one worker each) over shm and over TCP, next to two
threads of one process.

    python3 scripts/bench_transport.py [--bin target/release/waxfast] [--rounds 7]
        [--latency | --latency-only] [--smoke]
"""
import argparse
import os
import random
import re
import statistics
import subprocess
import sys


def run(binary, flow, shape):
    cmd = [binary, flow, "--no-pin", *shape]
    out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
    err = out.stderr.decode(errors="replace")
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {err[-2000:]}")
    secs = [float(x) for x in re.findall(r"seconds=([0-9.]+)", err)]
    if not secs:
        sys.exit(f"{' '.join(cmd)} printed no seconds=: {err[-2000:]}")
    return max(secs)


def timely_flow(flow):
    """The timely-bench arguments of a waxfast bench flow."""
    name, args = flow.split(":")
    nums = args.split(",")
    return [name.removeprefix("bench_"), *nums]


def run_timely(binary, flow, procs):
    """timely-bench's own time: one process of -w2, or two of -w1 (`-n 2 -p I -h`)."""
    args = timely_flow(flow)
    if procs == 1:
        cmds = [[binary, *args, "-w2"]]
    else:
        base = random.randint(20000, 50000)
        hosts = f"/tmp/waxfast-bench-hosts-{os.getpid()}"
        with open(hosts, "w") as f:
            f.write(f"127.0.0.1:{base}\n127.0.0.1:{base + 1}\n")
        cmds = [[binary, *args, "-w1", "-n2", f"-p{i}", "-h", hosts] for i in range(2)]
    ps = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
    errs = [p.communicate(timeout=900)[1].decode(errors="replace") for p in ps]
    if any(p.returncode != 0 for p in ps):
        sys.exit(f"timely {args} failed: {errs}")
    return max(float(x) for e in errs for x in re.findall(r"seconds=([0-9.]+)", e))


def latency(tool, transport, rate, duration):
    """p50/p99 (us) of process 0's probes, for -w1 x 2 processes (or -w2 in one)."""
    common = ["--hops", "1", "--rate", str(rate), "--duration", str(duration),
              "--warmup", "1", "--spin"]
    if transport is None:
        out = subprocess.run([tool, "-w2", *common], capture_output=True, timeout=300)
        text = out.stdout.decode()
    else:
        base = random.randint(20000, 50000)
        addrs = f"127.0.0.1:{base};127.0.0.1:{base + 1}"
        procs = [subprocess.Popen([tool, "-w1", *common, "-i", str(i), "-a", addrs,
                                   "--transport", transport],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for i in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        if any(p.returncode != 0 for p in procs):
            sys.exit(f"latency over {transport} failed: {outs[0][1][-1000:]} {outs[1][1][-1000:]}")
        text = outs[0][0].decode()
    m = re.search(r"p50_us=([0-9.]+).*p99_us=([0-9.]+)", text)
    if not m:
        sys.exit(f"no latency line: {text[-1000:]}")
    return float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/waxfast")
    ap.add_argument("--latency-bin", default="target/release/waxfast-latency")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--latency-only", action="store_true", help="the round trips alone")
    ap.add_argument("--timely", help="timely-bench (target/peers/release/timely-bench, "
                    "as scripts/compare builds it): adds timely -w2 and -n2 -w1 columns")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    a = ap.parse_args()
    n = 200_000 if a.smoke else 20_000_000
    w = 100_000 if a.smoke else 5_000_000
    rounds = 1 if a.smoke else a.rounds
    workloads = [
        f"bench_exchange:{n},16",
        f"bench_exchange:{n},64",
        # The same with a step that reads every byte after the exchange (the counting
        # sink reads none, so between threads the bytes never reach the receiver's core).
        f"bench_exchange:{n},16,1",
        f"bench_exchange:{n},64,1",
        f"bench_wordcount:{w},10000",
        f"bench_fanout:{w // 2},4",
    ]
    shapes = [
        ("-w2 (threads)", ["-w2"]),
        ("-p2 -w1 shm", ["-p2", "-w1", "--transport", "shm"]),
        ("-p2 -w1 tcp", ["-p2", "-w1", "--transport", "tcp"]),
    ]
    if a.timely:
        shapes += [("timely -w2", 1), ("timely -n2 -w1", 2)]
    if a.latency_only:
        a.latency = True
        workloads = []
    print(f"rounds={rounds}, interleaved; seconds = the slower process's own time; "
          f"ratios are per-round medians over waxfast -w2")
    print("| workload | " + " | ".join(f"{s} s" for s, _ in shapes)
          + " | shm / threads | tcp / threads |")
    print("|---|" + "---|" * len(shapes) + "---|---|")
    for flow in workloads:
        res = {s: [] for s, _ in shapes}
        for _ in range(rounds):
            for s, extra in shapes:
                if isinstance(extra, int):
                    if flow.count(",") > 1:
                        continue  # timely-bench has no READ variant
                    res[s].append(run_timely(a.timely, flow, extra))
                else:
                    res[s].append(run(a.bin, flow, extra))
        med = {s: statistics.median(r) if r else None for s, r in res.items()}
        base = res[shapes[0][0]]

        def ratio(s):
            rs = [x / b for x, b in zip(res[s], base)]
            return f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})"

        print(f"| `{flow}` | "
              + " | ".join("-" if med[s] is None else f"{med[s]:.3f}" for s, _ in shapes)
              + f" | {ratio(shapes[1][0])} | {ratio(shapes[2][0])} |", flush=True)
    if a.latency:
        rate = 10_000 if a.smoke else 100_000
        dur = 1 if a.smoke else 5
        print(f"\none-hop round trip, waxfast-latency --spin, pinned, {rate}/s, {dur} s "
              f"(process 0's probes), {rounds} interleaved rounds, medians")
        print("| transport | p50 us | p99 us |")
        print("|---|---|---|")
        res = {t: [] for t in ["threads (-w2)", "shm", "tcp"]}
        for _ in range(rounds):
            for t in res:
                res[t].append(latency(a.latency_bin, None if t.startswith("threads") else t,
                                      rate, dur))
        for t, r in res.items():
            print(f"| {t} | {statistics.median(x[0] for x in r):.2f} | "
                  f"{statistics.median(x[1] for x in r):.2f} |")


if __name__ == "__main__":
    os.environ.pop("WAXFAST_TRANSPORT", None)
    main()
