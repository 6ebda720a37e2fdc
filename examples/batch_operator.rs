//! A port of Bytewax's `examples/batch_operator.py`: `collect` by size and by timeout.
//!
//! ```sh
//! cargo run --example batch_operator    # takes 5 s: 20 items, one every 0.25 s
//! ```
//!
//! The first `collect` emits at its size limit (3 items arrive faster than its 1 s
//! timeout); the second one never times out, since each average arrives within 1 s of
//! the previous one and every item restarts the timeout (Bytewax's rule), so it emits
//! one list at end of stream. Bytewax's output is
//! `tests/bytewax_outputs/batch_operator_w1.txt`; `tests/bytewax_parity.rs` runs this
//! program and compares.

use std::time::Duration;

use waxfast::connectors::polling::{Polled, SimplePollingSource};
use waxfast::connectors::stdio::StdOutSink;
use waxfast::{run_main, Dataflow};

fn main() -> Result<(), waxfast::Error> {
    // Bytewax's CounterSource: `next(iter(range(20)))` every 0.25 s; the
    // `StopIteration` after the last item ends the source.
    let mut it = 0..20u32;
    let counter = SimplePollingSource::polled(Duration::from_millis(250), move || {
        Ok(it.next().map_or(Polled::End, Polled::Item))
    });

    let flow = Dataflow::new("batch");
    let stream = flow.input("in", counter);
    let keyed_stream = stream.key_on("key", |_| "ALL");
    let batched_stream = keyed_stream.collect("batch_3_items", Duration::from_secs(1), 3);
    stream.inspect("ins_batch");

    let avg_stream = batched_stream.map("calc_avg", |(_key, batch)| {
        batch.iter().sum::<u32>() as f64 / batch.len() as f64
    });
    avg_stream.inspect("ins_avg");

    let same_key_stream = avg_stream.key_on("same_key", |_| "ALL");
    let batch_avg_stream = same_key_stream.collect("batch_avgs", Duration::from_secs(1), 10);
    let formatted_stream =
        batch_avg_stream.map("convert_to_string", |x| format!("Avg batch:\t{:?}", x.1));
    formatted_stream.output("out", StdOutSink::new());
    run_main(&flow)
}
