"""Reading a benchmark run's rate, and the VM's parallel ceiling: shared by the scripts
that compare -w2 with two independent -w1 copies (bench_keyed.py, bench_route_floor.py).
"""
import re
import subprocess
import sys


def rate_of(text, cmd):
    """The `records_per_sec=` figure a run printed."""
    m = re.search(r"records_per_sec=([0-9.e+]+)", text)
    if not m:
        sys.exit(f"{' '.join(cmd)}: no records_per_sec in its output: {text}")
    return float(m.group(1))


def rate(cmd):
    """Runs `cmd` and returns its rate; a failing run stops the script."""
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr}")
    return rate_of(out.stderr + out.stdout, cmd)


def pair_rate(cmd):
    """Two copies at once, pinned to cores 0 and 1: their summed rate."""
    procs = [subprocess.Popen(["taskset", "-c", str(c)] + cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in (0, 1)]
    total = 0.0
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {err}")
        total += rate_of(err + out, cmd)
    return total
