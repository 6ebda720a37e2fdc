"""exchange: N fixed-size records (16 or 64 bytes) through redistribute (bench_exchange).

python -m bytewax.run "benches/peers/bytewax/exchange.py:flow(1000000, 16)" -w2
"""

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from _bench import Counting, Generator, Stats


def flow(n=1_000_000, size=16):
    if size not in (16, 64):
        raise ValueError(f"size must be 16 or 64, got {size}")
    stats = Stats("bytewax_exchange", n)
    f = Dataflow("bench_exchange")
    s = op.input(
        "inp", f, Generator(stats, lambda lo, hi: [i.to_bytes(size, "little") for i in range(lo, hi)])
    )
    s = op.redistribute("exchange", s)
    op.output("out", s, Counting(stats))
    return f
