"""Bytewax 0.21.1's DirSource: the default pattern "*" and a recursive "**/*.txt".
Builds its input tree under $DIRSOURCE_IN (the same tree tests/bytewax_parity.rs
builds), then `python -m bytewax.run dirsource_glob | sort` (dirsource_glob.txt)."""

import os
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import DirSource
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow

root = Path(os.environ["DIRSOURCE_IN"])
for rel, text in [
    ("flat/one.txt", "f1\nf2\n"),
    ("flat/two.log", "f3\n"),
    ("tree/a.txt", "a1\n"),
    ("tree/b.log", "b1\n"),
    ("tree/sub/c.txt", "c1\nc2\n"),
    ("tree/sub/deeper/d.txt", "d1\n"),
]:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)

flow = Dataflow("dirsource_glob")
flat = op.input("flat", flow, DirSource(root / "flat"))
deep = op.input("deep", flow, DirSource(root / "tree", glob_pat="**/*.txt"))
op.output("out_flat", op.map("tag_flat", flat, lambda x: ("flat", x)), StdOutSink())
op.output("out_deep", op.map("tag_deep", deep, lambda x: ("deep", x)), StdOutSink())
