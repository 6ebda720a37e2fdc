//! [`KafkaSink`]: produces messages to a topic, or to the topic each message names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rskafka::client::partition::{
    Compression as RsCompression, PartitionClient, UnknownTopicHandling,
};
use rskafka::client::Client;
use rskafka::record::Record;
use tokio::sync::{mpsc, oneshot};

use super::message::KafkaSinkMessage;
use super::{runtime, KafkaConfig};
use crate::error::BoxError;
use crate::io::{DynamicSink, Sink, SinkKind, StatelessSinkPartition};

/// How a [`KafkaSink`] compresses its record batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// None (the default).
    #[default]
    None,
    /// gzip.
    Gzip,
    /// LZ4.
    Lz4,
    /// Snappy.
    Snappy,
    /// Zstandard.
    Zstd,
}

impl Compression {
    fn rs(self) -> RsCompression {
        match self {
            Compression::None => RsCompression::NoCompression,
            Compression::Gzip => RsCompression::Gzip,
            Compression::Lz4 => RsCompression::Lz4,
            Compression::Snappy => RsCompression::Snappy,
            Compression::Zstd => RsCompression::Zstd,
        }
    }
}

/// Produces [`KafkaSinkMessage`]s (Bytewax's `KafkaSink`): to the sink's topic, or to
/// the message's own `topic` when it has one.
///
/// The partition is picked from the key as librdkafka's default partitioner does
/// (CRC32 of the key modulo the topic's partitions), so keys land where a Bytewax flow
/// puts them; messages without a key go to one partition per batch, round robin. Every worker produces its own
/// messages (a dynamic sink), in order per partition, with one request in flight per
/// worker; requests are acknowledged by all in-sync replicas (`acks=all`: the client
/// offers no other setting, and no idempotent producer). A record batch is at most
/// 1 MiB, the broker's default `message.max.bytes`.
///
/// Delivery is at least once: after a crash, a resumed run produces again what the
/// epochs after its snapshot produced. A produce that fails past the
/// [timeout](KafkaConfig::timeout) fails the run, naming the topic and partition.
///
/// ```no_run
/// use waxfast::{Dataflow, run_main};
/// use waxfast::connectors::kafka::{Compression, KafkaConfig, KafkaSink, KafkaSinkMessage};
/// use waxfast::connectors::testing::TestingSource;
///
/// let flow = Dataflow::new("kafka_out");
/// flow.input("inp", TestingSource::new(vec!["a", "b"]))
///     .map("msg", |s| KafkaSinkMessage::keyed(s, s.to_uppercase()))
///     .output("out", KafkaSink::new(KafkaConfig::new(["127.0.0.1:9092"]), "letters").compression(Compression::Lz4));
/// run_main(&flow)?;
/// # Ok::<(), waxfast::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct KafkaSink {
    config: KafkaConfig,
    topic: Option<String>,
    compression: Compression,
}

impl KafkaSink {
    /// Produces to `topic` (unless a message names its own).
    pub fn new(config: KafkaConfig, topic: impl Into<String>) -> Self {
        KafkaSink {
            config,
            topic: Some(topic.into()),
            compression: Compression::None,
        }
    }

    /// Produces every message to the topic it names (a message without one is an
    /// error naming the step).
    pub fn per_message_topic(config: KafkaConfig) -> Self {
        KafkaSink {
            config,
            topic: None,
            compression: Compression::None,
        }
    }

    /// Compresses record batches (default none).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }
}

impl DynamicSink for KafkaSink {
    type Item = KafkaSinkMessage;
    type Part = KafkaSinkPartition;

    fn build(
        &self,
        step_id: &str,
        worker_index: usize,
        _: usize,
    ) -> Result<KafkaSinkPartition, BoxError> {
        let client = self.config.connect()?;
        let mut producer = Producer {
            client,
            config: self.config.clone(),
            topic: self.topic.clone(),
            compression: self.compression.rs(),
            partitions: HashMap::new(),
            round_robin: worker_index,
            step_id: step_id.to_string(),
        };
        if let Some(t) = self.topic.clone() {
            // An unknown topic is an error now, not after the first batch.
            runtime::block_on(async { producer.partition_count(&t).await })?;
        }
        let (tx, rx) = mpsc::channel(2);
        let failed = Arc::new(Mutex::new(None));
        runtime::spawn(producer.run(rx, failed.clone()));
        Ok(KafkaSinkPartition { tx, failed })
    }
}

impl Sink<KafkaSinkMessage> for KafkaSink {
    fn into_kind(self) -> SinkKind<KafkaSinkMessage> {
        SinkKind::dynamic(self)
    }
}

/// What the worker hands the producer task.
enum Command {
    Produce(Vec<KafkaSinkMessage>),
    /// Answered once everything before it is acknowledged (or has failed).
    Barrier(oneshot::Sender<()>),
}

/// A worker's producer: batches go to a task on the connectors' runtime through a
/// channel of two, so the worker waits only when the broker is slower than the flow.
pub struct KafkaSinkPartition {
    tx: mpsc::Sender<Command>,
    failed: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for KafkaSinkPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KafkaSinkPartition")
    }
}

impl KafkaSinkPartition {
    fn check(&self) -> Result<(), BoxError> {
        match &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e.clone().into()),
            None => Ok(()),
        }
    }

    fn send(&self, c: Command) -> Result<(), BoxError> {
        if self.tx.blocking_send(c).is_err() {
            self.check()?;
            return Err("the Kafka producer task stopped unexpectedly".into());
        }
        Ok(())
    }
}

impl StatelessSinkPartition for KafkaSinkPartition {
    type Item = KafkaSinkMessage;

    fn write_batch(&mut self, items: &mut Vec<KafkaSinkMessage>) -> Result<(), BoxError> {
        self.check()?;
        if items.is_empty() {
            return Ok(());
        }
        self.send(Command::Produce(std::mem::take(items)))
    }

    fn close(&mut self) -> Result<(), BoxError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Barrier(tx))?;
        let _ = rx.blocking_recv();
        self.check()
    }
}

/// The largest record batch a produce request carries (Kafka's default
/// `message.max.bytes` is 1 MiB plus a little). Larger requests are also faster here:
/// rskafka does not set `TCP_NODELAY` and writes a request's 4-byte length apart from
/// a body over 8 KiB, so a body that fits in one segment after it waits for the
/// broker's delayed ACK (seen: 55 KB produce requests took 48 ms each on loopback,
/// 550 KB ones about 1 ms).
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Messages queued behind a batch that the producer adds to its requests.
const COALESCE_MESSAGES: usize = 100_000;

struct Producer {
    client: Arc<Client>,
    config: KafkaConfig,
    topic: Option<String>,
    compression: RsCompression,
    /// Per topic: its partitions' clients, by partition index (made on first use).
    partitions: HashMap<String, Vec<Option<Arc<PartitionClient>>>>,
    round_robin: usize,
    step_id: String,
}

impl Producer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, failed: Arc<Mutex<Option<String>>>) {
        let mut next = None;
        loop {
            let c = match next.take() {
                Some(c) => c,
                None => match rx.recv().await {
                    Some(c) => c,
                    None => return,
                },
            };
            match c {
                Command::Produce(mut batch) => {
                    // Take whatever else is queued into the same requests: fewer,
                    // larger produce requests (see MAX_BATCH_BYTES on why size matters).
                    while batch.len() < COALESCE_MESSAGES {
                        match rx.try_recv() {
                            Ok(Command::Produce(more)) => batch.extend(more),
                            Ok(barrier) => {
                                next = Some(barrier);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = self.produce(batch).await {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return; // drops rx: the worker sees the error
                    }
                }
                Command::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn partition_count(&mut self, topic: &str) -> Result<usize, String> {
        if let Some(p) = self.partitions.get(topic) {
            return Ok(p.len());
        }
        let timeout = self.config.timeout;
        let topics = tokio::time::timeout(timeout, self.client.list_topics())
            .await
            .map_err(|_| self.config.unreachable("listing topics timed out"))?
            .map_err(|e| {
                self.config
                    .unreachable(&format!("listing topics failed: {e}"))
            })?;
        let n = topics
            .iter()
            .find(|t| t.name == topic)
            .map(|t| t.partitions.len())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                format!(
                    "Kafka topic {topic:?} does not exist on {}; create it first",
                    self.config.brokers_str()
                )
            })?;
        self.partitions.insert(topic.to_string(), vec![None; n]);
        Ok(n)
    }

    async fn client_for(&mut self, topic: &str, p: usize) -> Result<Arc<PartitionClient>, String> {
        if let Some(Some(c)) = self.partitions.get(topic).and_then(|v| v.get(p)) {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(
            self.config.timeout,
            self.client
                .partition_client(topic, p as i32, UnknownTopicHandling::Retry),
        )
        .await
        .map_err(|_| {
            format!(
                "Kafka topic {topic:?} partition {p}: no leader found within {:?}",
                self.config.timeout
            )
        })?
        .map_err(|e| format!("Kafka topic {topic:?} partition {p}: {e}"))?;
        let c = Arc::new(c);
        self.partitions.get_mut(topic).expect("counted first")[p] = Some(c.clone());
        Ok(c)
    }

    async fn produce(&mut self, batch: Vec<KafkaSinkMessage>) -> Result<(), String> {
        // Group by (topic, partition), keeping each group's order.
        let mut groups: Vec<((String, usize), Vec<Record>)> = Vec::new();
        for m in batch {
            let topic = match m.topic.as_ref().or(self.topic.as_ref()) {
                Some(t) => t.clone(),
                None => {
                    return Err(format!(
                        "a message to the Kafka sink of step {:?} names no topic, and the sink has none (KafkaSink::per_message_topic)",
                        self.step_id
                    ))
                }
            };
            let n = self.partition_count(&topic).await?;
            // Without a key: one partition per batch, the next one for the next batch
            // (librdkafka's sticky partitioning), so requests stay large.
            let p = match &m.key {
                Some(k) => crc32fast::hash(k) as usize % n,
                None => self.round_robin % n,
            };
            let record = Record {
                key: m.key,
                value: m.value,
                headers: m.headers.into_iter().collect(),
                timestamp: m
                    .timestamp_ms
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .unwrap_or_else(chrono::Utc::now),
            };
            match groups.iter_mut().find(|(k, _)| k.0 == topic && k.1 == p) {
                Some((_, v)) => v.push(record),
                None => groups.push(((topic, p), vec![record])),
            }
        }
        self.round_robin = self.round_robin.wrapping_add(1);
        for ((topic, p), records) in groups {
            let client = self.client_for(&topic, p).await?;
            let mut chunk = Vec::new();
            let mut bytes = 0;
            let mut it = records.into_iter().peekable();
            while let Some(r) = it.next() {
                bytes += r.approximate_size() + 32;
                chunk.push(r);
                let full = it
                    .peek()
                    .is_none_or(|n| bytes + n.approximate_size() + 32 > MAX_BATCH_BYTES);
                if full {
                    let sent = std::mem::take(&mut chunk);
                    bytes = 0;
                    tokio::time::timeout(self.config.timeout, client.produce(sent, self.compression))
                        .await
                        .map_err(|_| format!("producing to Kafka topic {topic:?} partition {p} did not succeed within {:?} (brokers {})", self.config.timeout, self.config.brokers_str()))?
                        .map_err(|e| format!("producing to Kafka topic {topic:?} partition {p} failed (brokers {}): {e}", self.config.brokers_str()))?;
                }
            }
        }
        Ok(())
    }
}
