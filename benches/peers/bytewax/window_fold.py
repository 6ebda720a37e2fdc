"""window (issue 6's figure): the input of waxfast's bench_window:N,K counted per key in
1 s event-time tumbling windows with Bytewax's own fold_window. Record i has key
(i * 7919) % K and event time 2024-01-01 + i * 100 us; the clock waits 60 s of event time.

python -m bytewax.run "benches/peers/bytewax/window_fold.py:flow(1000000, 1000)" -w1
"""

from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower

from _bench import Counting, Generator, Stats

ORIGIN = datetime(2024, 1, 1, tzinfo=timezone.utc)


def flow(n=1_000_000, k=1000):
    stats = Stats("bytewax_window_fold", n)
    f = Dataflow("bench_window")
    events = op.input(
        "inp",
        f,
        Generator(
            stats,
            lambda lo, hi: [
                ((i * 7919) % k, ORIGIN + timedelta(microseconds=100 * i)) for i in range(lo, hi)
            ],
        ),
    )
    keyed = op.key_on("key", events, lambda e: str(e[0]))
    out = win.fold_window(
        "count",
        keyed,
        EventClock(lambda e: e[1], wait_for_system_duration=timedelta(seconds=60)),
        TumblingWindower(length=timedelta(seconds=1), align_to=ORIGIN),
        lambda: 0,
        lambda n, _e: n + 1,
        lambda a, b: a + b,
    )
    op.output("out", out.down, Counting(stats))
    return f
