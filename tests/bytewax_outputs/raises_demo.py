"""`raises` in Bytewax 0.21.1: the first item fails the run, naming the step.
Run with `python -m bytewax.run raises_demo`: exit code 1, and stderr's
RuntimeError line is raises_demo.txt."""

from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("raises_demo")
s = op.input("inp", flow, TestingSource([5, 6]))
op.raises("boom", s)
