//! Kafka: [`KafkaSource`] and [`KafkaSink`], with Bytewax's semantics
//! (`bytewax.connectors.kafka`).
//!
//! * [`KafkaSource`] is fixed-partitioned: one partition per topic-partition, assigned
//!   to workers like any fixed partition, the client *assigned* (no consumer group,
//!   nothing committed to the broker). Offsets are the partitions' resume state, so with
//!   `-r` the input is exactly once. Bounded runs (`tail(false)`) stop each partition at
//!   the end it saw when it started.
//! * [`KafkaSink`] produces to a topic or to each message's own topic; at least once.
//! * [`input`] splits a source's undeliverable messages into their own stream
//!   (Bytewax's `kafka.operators.input`).
//!
//! The client is rskafka, a pure-Rust Kafka client (ARCHITECTURE.md, "Kafka", says why
//! and what was measured). Its tokio runtime lives on one background thread of this
//! module (`runtime.rs`); the engine's workers never run async code. A source partition's
//! fetches run ahead of its worker; `next_batch` takes what has arrived.
//!
//! End offsets come from the high watermark of Fetch responses, not from ListOffsets
//! (`LATEST`): that is the end on Apache Kafka by the protocol, and on tansu (the broker
//! the tests run against) whose ListOffsets `LATEST` answer is wrong.
//!
//! Each source partition publishes its consumer lag (high watermark minus the next
//! offset to deliver) as the gauge `waxfast_kafka_consumer_lag{step_id,topic,partition}`
//! in the dataflow API's `/metrics`.

mod config;
mod fetch;
mod message;
mod runtime;
mod sink;
mod source;

pub use config::{KafkaConfig, DEFAULT_TIMEOUT};
pub use fetch::StartingOffset;
pub use message::{KafkaError, KafkaSinkMessage, KafkaSourceMessage};
pub use sink::{Compression, KafkaSink, KafkaSinkPartition};
pub use source::{ErrorMode, ErrorsAsItems, KafkaPartition, KafkaSource, RaiseOnErrors};

use crate::dataflow::{Dataflow, Stream};

/// The two streams of [`input`]: messages and undeliverable messages.
#[derive(Debug)]
pub struct KafkaSourceOut {
    /// The messages.
    pub oks: Stream<KafkaSourceMessage>,
    /// What could not be delivered (with topic, partition and offset).
    pub errs: Stream<KafkaError>,
}

/// Reads `source` with its undeliverable messages on a stream of their own (Bytewax's
/// `kafka.operators.input`): steps `{step}` (the input), `{step}_oks` and `{step}_errs`.
///
/// ```no_run
/// use waxfast::Dataflow;
/// use waxfast::connectors::kafka::{input, KafkaConfig, KafkaSource};
/// use waxfast::connectors::stdio::StdOutSink;
/// let flow = Dataflow::new("f");
/// let out = input(&flow, "kafka", KafkaSource::new(KafkaConfig::new(["127.0.0.1:9092"]), ["t"]));
/// out.errs.map("show", |e| e.to_string()).output("errors", StdOutSink::new());
/// # out.oks.map("v", |m| m.offset).output("o", StdOutSink::new());
/// ```
pub fn input(flow: &Dataflow, step: &str, source: KafkaSource) -> KafkaSourceOut {
    let all = flow.input(step, source.errors_as_items());
    KafkaSourceOut {
        oks: all.filter_map(&format!("{step}_oks"), |r| r.ok()),
        errs: all.filter_map(&format!("{step}_errs"), |r| r.err()),
    }
}
