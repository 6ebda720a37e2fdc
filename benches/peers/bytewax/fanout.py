"""fanout: N ints through STEPS chained keyed steps, each keying the item anew and
counting it per key with stateful_map (waxfast's bench_fanout).

python -m bytewax.run "benches/peers/bytewax/fanout.py:flow(1000000, 4)" -w2
"""

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from _bench import Counting, Generator, Stats

M64 = 0xFFFFFFFFFFFFFFFF


def fanout_key(x, s):
    """Same as waxfast's flows::bench::fanout_key (1024 keys)."""
    return (((x ^ ((s * 0x9E3779B97F4A7C15) & M64)) * 0xBF58476D1CE4E5B9) & M64) >> 54


def _count(seen, x):
    return (seen or 0) + 1, x


def flow(n=5_000_000, steps=4):
    stats = Stats("bytewax_fanout", n)
    f = Dataflow("bench_fanout")
    s = op.input("inp", f, Generator(stats, lambda lo, hi: list(range(lo, hi))))
    for step in range(steps):
        keyed = op.key_on(f"key{step}", s, lambda x, step=step: str(fanout_key(x, step)))
        counted = op.stateful_map(f"step{step}", keyed, _count)
        s = op.key_rm(f"unkey{step}", counted)
    op.output("out", s, Counting(stats))
    return f
