"""window: N events over K keys, counted per key and 1M-event tumbling window with
fold_final keyed on (key, window) (waxfast's bench_window_fold stand-in). Bytewax keys
are strings, so the (key, window) pair is formatted.

python -m bytewax.run "benches/peers/bytewax/window.py:flow(1000000, 10000)" -w2
"""

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from _bench import Counting, Generator, Stats

WINDOW_EVENTS = 1_000_000


def flow(n=5_000_000, k=10_000):
    stats = Stats("bytewax_window", n)
    f = Dataflow("bench_window_fold")
    s = op.input("inp", f, Generator(stats, lambda lo, hi: [((i * 7919) % k, i) for i in range(lo, hi)]))
    keyed = op.key_on("window", s, lambda e: f"{e[0]}:{e[1] // WINDOW_EVENTS}")
    counts = op.fold_final("count", keyed, lambda: 0, lambda n, _e: n + 1)
    op.output("out", counts, Counting(stats))
    return f
