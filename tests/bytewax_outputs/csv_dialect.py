"""Bytewax 0.21.1's CSVSource with dialect options (delimiter ";", quotechar "'") and
ragged rows: DictReader fills a missing column with None and puts extra values under
the key None. Writes its input to $CSV_IN, then `python -m bytewax.run csv_dialect`
(csv_dialect.txt)."""

import os
from pathlib import Path

import bytewax.operators as op
from bytewax.connectors.files import CSVSource
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow

path = Path(os.environ["CSV_IN"])
path.write_text("name;note;n\nada;'semi;colon';1\nbob;short\ncy;x;3;extra;more\n\ndee;'it''s';4\n")

flow = Dataflow("csv_dialect")
rows = op.input("inp", flow, CSVSource(path, delimiter=";", quotechar="'"))
op.output("out", rows, StdOutSink())
