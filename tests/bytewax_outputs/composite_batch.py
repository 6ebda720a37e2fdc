"""A user's composite operator (`@operator`) around `stateful_batch`, in Bytewax
0.21.1. Run with `python -m bytewax.run composite_batch` (composite_batch.txt):
the inner steps' ids are `composite_batch.ds.*`."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow, operator
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSource


class Sum(StatefulBatchLogic):
    def __init__(self, resume):
        self.total = resume or 0

    def on_batch(self, values):
        self.total += sum(values)
        return ([], StatefulBatchLogic.RETAIN)

    def on_eof(self):
        return ([self.total], StatefulBatchLogic.DISCARD)

    def snapshot(self):
        return self.total


@operator
def double_and_sum(step_id, up):
    doubled = op.map("double", up, lambda kv: (kv[0], kv[1] * 2))
    op.inspect("look", doubled)
    return op.stateful_batch("sum", doubled, Sum)


flow = Dataflow("composite_batch")
inp = op.input(
    "inp", flow, TestingSource([("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5)])
)
out = double_and_sum("ds", inp)
op.output("out", out, StdOutSink())
