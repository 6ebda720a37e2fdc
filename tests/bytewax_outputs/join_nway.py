"""n-way joins in Bytewax 0.21.1: four sides, every insert mode with emit "final",
and emit "complete" where each side has one value per key (so the result does not
depend on the order in which the inputs' items meet). Run with
`python -m bytewax.run join_nway` and sort the output (join_nway.txt)."""

from bytewax import operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("join_nway")
a = op.input("a", flow, TestingSource([("k", 1), ("k", 2), ("j", 3)]))
b = op.input("b", flow, TestingSource([("k", "x"), ("k", "y")]))
c = op.input("c", flow, TestingSource([("k", 1.5), ("m", 2.5)]))
d = op.input("d", flow, TestingSource([("k", True)]))
for mode in ["first", "last", "product"]:
    j = op.join(f"final_{mode}", a, b, c, d, insert_mode=mode, emit_mode="final")
    j = op.map(f"tag_{mode}", j, lambda kv, mode=mode: ("final", mode, kv))
    op.output(f"out_{mode}", j, StdOutSink())

one_a = op.input("one_a", flow, TestingSource([("k", 1), ("j", 3)]))
one_b = op.input("one_b", flow, TestingSource([("k", "x"), ("j", "z")]))
one_c = op.input("one_c", flow, TestingSource([("k", 1.5), ("m", 2.5)]))
one_d = op.input("one_d", flow, TestingSource([("k", False), ("j", True)]))
j = op.join("complete", one_a, one_b, one_c, one_d)
j = op.map("tag_complete", j, lambda kv: ("complete", "last", kv))
op.output("out_complete", j, StdOutSink())
