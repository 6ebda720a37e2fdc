"""kafka_copy: Bytewax 0.21.1's Kafka connector copying one topic to another, what is
there at start (waxfast's `kafka_copy:BROKER,IN,OUT`): KafkaSource(tail=False) -> map
to KafkaSinkMessage -> KafkaSink. Needs `bytewax[kafka]==0.21.1`.

python -m bytewax.run "benches/peers/bytewax/kafka_copy.py:flow('127.0.0.1:9092', 'in', 'out')" -w2
"""

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow


def flow(brokers, inp, out):
    f = Dataflow("kafka_copy")
    s = op.input("inp", f, KafkaSource([brokers], [inp], tail=False))
    s = op.map("to_sink", s, lambda m: KafkaSinkMessage(m.key, m.value))
    op.output("out", s, KafkaSink([brokers], out))
    return f
