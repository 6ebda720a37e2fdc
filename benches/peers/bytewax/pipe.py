"""pipe: map + filter over N generated ints (waxfast's bench_pipe).

python -m bytewax.run "benches/peers/bytewax/pipe.py:flow(10000000)" -w2
"""

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from _bench import Counting, Generator, Stats


def flow(n=10_000_000):
    stats = Stats("bytewax_pipe", n)
    f = Dataflow("bench_pipe")
    s = op.input("inp", f, Generator(stats, lambda lo, hi: list(range(lo, hi))))
    s = op.map("map", s, lambda x: (x * 3 + 1) & 0xFFFFFFFFFFFFFFFF)
    s = op.filter("filter", s, lambda x: x % 7 != 0)
    op.output("out", s, Counting(stats))
    return f
