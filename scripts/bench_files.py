#!/usr/bin/env python3
"""File wordcount figures (issue 7) for BENCHMARKS.md: prints a markdown section.

Usage: scripts/bench_files.py [--smoke] [--runs N]

Generates a text file (1 GiB; 4 MiB with --smoke) of words drawn from 10 000 keys
(`w{(i*7919) % 10000}`, 10 per line) once under target/bench-data, then runs, interleaved
round by round so drift of the machine hits all alike:
  waxfast wordcount:FILE -w1, -w2;  wc -w FILE;  tr -s ' ' '\\n' < FILE | sort | uniq -c
and the peers (skipped with a message when unavailable): the same program in
timely-dataflow 0.12 (benches/peers/timely, `timely-wordcount-file FILE -wW`) on the same
file, and Bytewax 0.21.1's wordcount (benches/peers/bytewax/wordcount_file.py, from the
`.venv-bench` that scripts/compare creates) on the file's first 64 MiB (4 MiB with
--smoke), since it reads about 1.5 MB/s here. Reports the median wall time and MB/s (file
bytes / wall) with the spread.
"""
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "waxfast")
SMOKE = "--smoke" in sys.argv
RUNS = 1 if SMOKE else int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
SIZE = (4 << 20) if SMOKE else (1 << 30)


def make_file():
    d = os.path.join(ROOT, "target", "bench-data")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"words-{SIZE}.txt")
    if os.path.exists(path) and os.path.getsize(path) >= SIZE:
        return path
    line_words = 10
    with open(path + ".tmp", "w") as f:
        i, written = 0, 0
        chunk = []
        while written < SIZE:
            line = " ".join(f"w{((i + j) * 7919) % 10000}" for j in range(line_words)) + "\n"
            i += line_words
            chunk.append(line)
            written += len(line)
            if len(chunk) >= 10000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))
    os.rename(path + ".tmp", path)
    return path


PEERS_TARGET = os.path.join(ROOT, "target", "peers")
TIMELY = os.path.join(PEERS_TARGET, "release", "timely-wordcount-file")
BYTEWAX_PY = os.path.join(ROOT, ".venv-bench", "bin", "python")


def build_timely():
    try:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "timely-wordcount-file"],
                       cwd=os.path.join(ROOT, "benches", "peers", "timely"), check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=PEERS_TARGET))
        return True
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"skipping timely: cannot build it ({e})", file=sys.stderr)
        return False


def head_file(path, size):
    small = f"{path}.head{size}"
    if not os.path.exists(small):
        with open(path, "rb") as f, open(small + ".tmp", "wb") as out:
            data = f.read(size)
            out.write(data[: data.rfind(b"\n") + 1])
        os.rename(small + ".tmp", small)
    return small


def timed(cmd, shell=False):
    t0 = time.monotonic()
    subprocess.run(cmd, shell=shell, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def machine():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return f"{os.cpu_count()} cores, {line.split(':', 1)[1].strip()}"
    return f"{os.cpu_count()} cores"


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    path = make_file()
    size = os.path.getsize(path)
    # Warm the page cache, so every command reads from memory.
    timed(["cat", path], shell=False)
    configs = [
        ("waxfast wordcount -w1", [BIN, f"wordcount:{path}", "-w", "1"], False),
        ("waxfast wordcount -w2", [BIN, f"wordcount:{path}", "-w", "2"], False),
        ("wc -w (counts words only)", ["wc", "-w", path], False),
        ("tr -s ' ' '\\n' | sort | uniq -c", f"tr -s ' ' '\\n' < {path} | LC_ALL=C sort | uniq -c", True),
    ]
    if build_timely():
        configs += [
            ("timely wordcount -w1", [TIMELY, path, "-w1"], False),
            ("timely wordcount -w2", [TIMELY, path, "-w2"], False),
        ]
    sizes = {name: size for name, _, _ in configs}
    if os.path.exists(BYTEWAX_PY):
        small = head_file(path, (4 << 20) if SMOKE else (64 << 20))
        flow = f"{ROOT}/benches/peers/bytewax/wordcount_file.py:flow('{small}')"
        for w in (1, 2):
            name = f"bytewax wordcount -w{w} (first {os.path.getsize(small) >> 20} MiB)"
            configs.append((name, [BYTEWAX_PY, "-m", "bytewax.run", flow, "-w", str(w)], False))
            sizes[name] = os.path.getsize(small)
    else:
        print(f"skipping Bytewax: {BYTEWAX_PY} is missing (scripts/compare creates it)", file=sys.stderr)
    times = {name: [] for name, _, _ in configs}
    for _ in range(RUNS):
        for name, cmd, shell in configs:
            times[name].append(timed(cmd, shell))
    print(f"_Generated by `scripts/bench_files.py` on {time.strftime('%Y-%m-%d')}; machine: {machine()}; "
          f"file: {size/2**30:.2f} GiB of generated words (10 000 keys), in the page cache; median of "
          f"{RUNS} interleaved rounds (± spread). waxfast workers pinned, parking when idle; the file is "
          "read as 4 MiB byte-range partitions._\n")
    print("| command | wall | MB/s |\n|---|---|---|")
    for name, _, _ in configs:
        t = times[name]
        med = statistics.median(t)
        cell = name.replace("|", "\\|")
        print(f"| `{cell}` | {med:.2f} s (±{max(t)-min(t):.2f}) | {sizes[name]/med/1e6:.1f} |")
    w1 = times["waxfast wordcount -w1"]
    w2 = times["waxfast wordcount -w2"]
    wc = times["wc -w (counts words only)"]
    ratio = statistics.median(a / b for a, b in zip(w1, w2))
    vs_wc = statistics.median(c / b for c, b in zip(wc, w2))
    print(f"\n`-w2` over `-w1`: **{ratio:.2f}x**; `-w2` vs `wc -w`: **{vs_wc:.2f}x** of its speed "
          "(medians of per-round ratios).")
    rate = lambda name: sizes[name] / statistics.median(times[name])
    best = max(rate("waxfast wordcount -w1"), rate("waxfast wordcount -w2"))
    for peer in ("timely", "bytewax"):
        rows = [n for n in times if n.startswith(peer)]
        if rows:
            print(f"waxfast's best rate over {peer}'s best: **{best / max(rate(n) for n in rows):.2f}x**.")


if __name__ == "__main__":
    main()
