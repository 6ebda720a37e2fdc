"""File wordcount, Bytewax's own way (its wordcount example reading a file): lines from
FileSource, lower-cased and split, count_final, `word=count` lines to stdout.

python -m bytewax.run "benches/peers/bytewax/wordcount_file.py:flow('FILE')" -w1
"""

import bytewax.operators as op
from bytewax.connectors.files import FileSource
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow


def flow(path):
    f = Dataflow("wordcount")
    lines = op.input("inp", f, FileSource(path))
    words = op.flat_map("split", lines, lambda line: line.lower().split())
    counts = op.count_final("count", words, lambda w: w)
    op.output("out", op.map("fmt", counts, lambda kv: f"{kv[0]}={kv[1]}"), StdOutSink())
    return f
