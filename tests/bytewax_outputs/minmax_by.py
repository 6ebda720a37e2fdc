"""`max_final` / `min_final` with `by=` on floats and records in Bytewax 0.21.1:
ties keep the first value, a NaN after a number does not replace it. Run with
`python -m bytewax.run minmax_by` and sort the output (minmax_by.txt)."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("minmax_by")
inp = op.input(
    "inp",
    flow,
    TestingSource(
        [
            ("a", (1, 1.5)),
            ("a", (2, -2.0)),
            ("b", (3, 0.5)),
            ("a", (4, 3.25)),
            ("b", (5, float("nan"))),
            ("c", (6, 2.0)),
            ("c", (7, 2.0)),
        ]
    ),
)
mx = op.max_final("max", inp, by=lambda r: r[1])
mn = op.min_final("min", inp, by=lambda r: r[1])
op.output("out_max", op.map("tag_max", mx, lambda kv: ("max", kv)), StdOutSink())
op.output("out_min", op.map("tag_min", mn, lambda kv: ("min", kv)), StdOutSink())
