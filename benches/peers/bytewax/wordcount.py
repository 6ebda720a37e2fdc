"""wordcount: N words w{(i*7919) % K}, count_final, discarding sink (bench_wordcount).

python -m bytewax.run "benches/peers/bytewax/wordcount.py:flow(1000000, 10000)" -w2
"""

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from _bench import Counting, Generator, Stats


def flow(n=5_000_000, k=10_000):
    stats = Stats("bytewax_wordcount", n)
    f = Dataflow("bench_wordcount")
    words = op.input(
        "inp", f, Generator(stats, lambda lo, hi: [f"w{(i * 7919) % k}" for i in range(lo, hi)])
    )
    counts = op.count_final("count", words, lambda w: w)
    op.output("out", counts, Counting(stats))
    return f
