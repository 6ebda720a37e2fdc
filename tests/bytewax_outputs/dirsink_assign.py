"""Bytewax 0.21.1's DirSink file names and key-to-file assignment (adler32 of the key,
indexing the sorted file names: with 12 files `part_10` sorts before `part_2`).

Run: `DIRSINK_OUT=/tmp/d python -m bytewax.run dirsink_assign`, then list every file:
`for f in $(ls /tmp/d | sort); do sed "s/^/$f: /" /tmp/d/$f; done` (dirsink_assign.txt).
Also writes `end=";"` files into $DIRSINK_OUT/end (dirsink_end.txt: `cat` of each)."""

import os
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import DirSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

out = Path(os.environ["DIRSINK_OUT"])
(out / "end").mkdir(parents=True, exist_ok=True)
flow = Dataflow("dirsink_assign")
items = [(f"key{i}", f"v{i}") for i in range(30)] + [("key3", "again")]
inp = op.input("inp", flow, TestingSource(items))
op.output("out", inp, DirSink(out, 12))
op.output(
    "out_end",
    inp,
    DirSink(out / "end", 2, file_namer=lambda i, n: f"f{i}of{n}.txt", end=";"),
)
