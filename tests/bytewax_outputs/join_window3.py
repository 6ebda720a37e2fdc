"""A 3-sided join_window in Bytewax 0.21.1: event-time tumbling windows of 10 s,
emit "final" with insert "product", and "complete". Run with
`python -m bytewax.run join_window3 | sort` (join_window3.txt)."""

from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower
from bytewax.testing import TestingSource

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def at(s):
    return T0 + timedelta(seconds=s)


flow = Dataflow("join_window3")
a = op.input("a", flow, TestingSource([("k", (at(1), "a1")), ("k", (at(12), "a2"))]))
b = op.input("b", flow, TestingSource([("k", (at(2), "b1")), ("k", (at(3), "b2"))]))
c = op.input("c", flow, TestingSource([("k", (at(4), 1.5)), ("k", (at(15), 2.5))]))
clock = EventClock(lambda v: v[0], wait_for_system_duration=timedelta(seconds=60))
windower = TumblingWindower(length=timedelta(seconds=10), align_to=T0)
for mode, insert in [("final", "product"), ("complete", "last")]:
    out = win.join_window(
        f"j_{mode}", clock, windower, a, b, c, insert_mode=insert, emit_mode=mode
    )
    rows = op.map(
        f"names_{mode}",
        out.down,
        lambda kv, mode=mode: (
            mode,
            kv[0],
            kv[1][0],
            tuple(None if v is None else v[1] for v in kv[1][1]),
        ),
    )
    op.output(f"out_{mode}", rows, StdOutSink())
