//! [`KafkaSource`]: one fixed partition per topic-partition, resumable by offset.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::Client;
use rskafka::record::RecordAndOffset;
use tokio::sync::mpsc;

use super::fetch::{self, FetchPlan, Fetched, StartingOffset};
use super::message::{KafkaError, KafkaSourceMessage};
use super::{runtime, KafkaConfig};
use crate::error::BoxError;
use crate::io::gauge::Gauge;
use crate::io::{
    FixedPartitionedSource, Source, SourceKind, SourceStatus, StatefulSourcePartition,
};

/// Reads Kafka topics (Bytewax's `KafkaSource`).
///
/// Every partition of every topic is one fixed partition of the source, named
/// `"{partition}-{topic}"` as in Bytewax, read by exactly one worker. The client is
/// *assigned* its partitions (no consumer group, nothing committed to the broker): the
/// offsets are the partitions' resume state, so a run with a recovery directory
/// resumes each partition after the last message the snapshot covers, and its
/// input is exactly once.
///
/// Partitions are listed when the run starts; one added later is read from the next
/// run on (from [`starting_offset`](Self::starting_offset), like any partition without a
/// resume position).
///
/// By default ([`tail`](Self::tail) true) a partition waits for new messages forever;
/// with `tail(false)` the run is bounded: each partition stops at the end (the high
/// watermark) it saw when it started.
///
/// Messages the source cannot deliver (larger than
/// [`max_message_bytes`](Self::max_message_bytes)) fail the run, naming topic, partition
/// and offset; [`errors_as_items`](Self::errors_as_items) makes them items instead (use
/// [`input`](super::input) for two streams, as Bytewax's `kafka.operators.input`). A
/// partition that cannot be read at all (broker unreachable past the
/// [timeout](KafkaConfig::timeout), topic deleted, messages lost) always fails the run.
///
/// ```no_run
/// use waxfast::{Dataflow, run_main};
/// use waxfast::connectors::kafka::{KafkaConfig, KafkaSource, StartingOffset};
/// use waxfast::connectors::stdio::StdOutSink;
///
/// let flow = Dataflow::new("kafka_in");
/// let source = KafkaSource::new(KafkaConfig::new(["127.0.0.1:9092"]), ["events"])
///     .starting_offset(StartingOffset::Beginning)
///     .tail(false);
/// flow.input("inp", source)
///     .map("value", |m| String::from_utf8_lossy(&m.value.unwrap_or_default()).into_owned())
///     .output("out", StdOutSink::new());
/// run_main(&flow)?;
/// # Ok::<(), waxfast::Error>(())
/// ```
pub struct KafkaSource<M: ErrorMode = RaiseOnErrors> {
    config: KafkaConfig,
    topics: Vec<String>,
    starting_offset: StartingOffset,
    tail: bool,
    batch_size: usize,
    poll_timeout: Duration,
    fetch_max_bytes: i32,
    max_message_bytes: usize,
    /// Connected once per process by `list_parts`, shared by its partitions.
    client: Arc<Mutex<Option<Arc<Client>>>>,
    mode: PhantomData<fn() -> M>,
}

impl<M: ErrorMode> std::fmt::Debug for KafkaSource<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("config", &self.config)
            .field("topics", &self.topics)
            .field("starting_offset", &self.starting_offset)
            .field("tail", &self.tail)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl KafkaSource<RaiseOnErrors> {
    /// Reads every partition of `topics`, from the beginning, forever.
    pub fn new<S: Into<String>>(config: KafkaConfig, topics: impl IntoIterator<Item = S>) -> Self {
        KafkaSource {
            config,
            topics: topics.into_iter().map(Into::into).collect(),
            starting_offset: StartingOffset::Beginning,
            tail: true,
            batch_size: 1000,
            poll_timeout: Duration::from_millis(100),
            fetch_max_bytes: 4 << 20,
            max_message_bytes: 16 << 20,
            client: Arc::default(),
            mode: PhantomData,
        }
    }

    /// Makes undeliverable messages items (`Err(KafkaError)`) instead of failing the
    /// run (Bytewax's `raise_on_errors=False`).
    pub fn errors_as_items(self) -> KafkaSource<ErrorsAsItems> {
        KafkaSource {
            config: self.config,
            topics: self.topics,
            starting_offset: self.starting_offset,
            tail: self.tail,
            batch_size: self.batch_size,
            poll_timeout: self.poll_timeout,
            fetch_max_bytes: self.fetch_max_bytes,
            max_message_bytes: self.max_message_bytes,
            client: self.client,
            mode: PhantomData,
        }
    }
}

impl<M: ErrorMode> KafkaSource<M> {
    /// Where partitions without a resume position start (default
    /// [`StartingOffset::Beginning`]).
    pub fn starting_offset(mut self, at: StartingOffset) -> Self {
        self.starting_offset = at;
        self
    }

    /// Whether to wait for new messages forever (true, the default) or stop each
    /// partition at the end it saw when it started.
    pub fn tail(mut self, tail: bool) -> Self {
        self.tail = tail;
        self
    }

    /// Messages per batch at most (default 1000, Bytewax's).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// How long the broker may hold a fetch open when a tailing partition has nothing
    /// new (default 100 ms). The worker never waits for it: fetches run ahead of it
    /// in the background.
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Bytes a partition asks for per fetch (default 4 MiB; the broker returns at least
    /// one record batch even if it is larger).
    pub fn fetch_max_bytes(mut self, bytes: usize) -> Self {
        self.fetch_max_bytes = bytes.clamp(1, i32::MAX as usize - 1) as i32;
        self
    }

    /// Messages larger than this (key, value and headers) are errors (default 16 MiB).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    fn client(&self) -> Result<Arc<Client>, BoxError> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let c = self.config.connect()?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

impl<M: ErrorMode> FixedPartitionedSource for KafkaSource<M> {
    type Item = M::Item;
    type Part = KafkaPartition<M>;

    fn list_parts(&self) -> Result<Vec<String>, BoxError> {
        if self.topics.is_empty() {
            return Err("KafkaSource: no topic given".into());
        }
        let client = self.client()?;
        let timeout = self.config.timeout;
        let listed =
            runtime::block_on(
                async move { tokio::time::timeout(timeout, client.list_topics()).await },
            )
            .map_err(|_| self.config.unreachable("listing topics timed out"))?
            .map_err(|e| {
                self.config
                    .unreachable(&format!("listing topics failed: {e}"))
            })?;
        let mut parts = Vec::new();
        for topic in &self.topics {
            let Some(t) = listed.iter().find(|t| &t.name == topic) else {
                let mut known: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
                known.sort_unstable();
                return Err(format!(
                    "Kafka topic {topic:?} does not exist on {} (topics there: {}); create it first",
                    self.config.brokers_str(),
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )
                .into());
            };
            parts.extend(t.partitions.iter().map(|p| format!("{p}-{topic}")));
        }
        Ok(parts)
    }

    fn build_part(
        &self,
        step_id: &str,
        for_part: &str,
        resume_state: Option<Option<i64>>,
    ) -> Result<KafkaPartition<M>, BoxError> {
        // `Some(None)`: a snapshot taken before the partition knew where it starts.
        let resume_state = resume_state.flatten();
        let (partition, topic) = for_part
            .split_once('-')
            .and_then(|(p, t)| Some((p.parse::<i32>().ok()?, t.to_string())))
            .ok_or_else(|| {
                format!("{for_part:?} is not a Kafka partition name (PARTITION-TOPIC)")
            })?;
        let client = self.client()?;
        let (tx, rx) = mpsc::channel(2);
        let plan = FetchPlan {
            topic: topic.clone(),
            partition,
            from: resume_state.ok_or(self.starting_offset),
            bounded: !self.tail,
            max_wait: self.poll_timeout,
            max_bytes: self.fetch_max_bytes,
            brokers: self.config.brokers_str(),
            timeout: self.config.timeout,
        };
        let task = runtime::spawn(fetch::run(client, plan, tx));
        let lag = Gauge::register(
            "waxfast_kafka_consumer_lag",
            "messages between the offset a Kafka source partition has delivered and the partition's high watermark, as of its last fetch",
            vec![
                ("step_id".into(), step_id.to_string()),
                ("topic".into(), topic.clone()),
                ("partition".into(), partition.to_string()),
            ],
        );
        Ok(KafkaPartition {
            topic,
            partition,
            rx,
            task,
            pending: VecDeque::new(),
            high_watermark: None,
            next_offset: resume_state,
            batch_size: self.batch_size,
            max_message_bytes: self.max_message_bytes,
            lag,
            done: false,
            mode: PhantomData,
        })
    }
}

impl<M: ErrorMode> Source<M::Item> for KafkaSource<M> {
    fn into_kind(self) -> SourceKind<M::Item> {
        SourceKind::fixed(self)
    }
}

/// One topic-partition on its worker.
pub struct KafkaPartition<M: ErrorMode> {
    topic: String,
    partition: i32,
    rx: mpsc::Receiver<Fetched>,
    task: tokio::task::JoinHandle<()>,
    pending: VecDeque<RecordAndOffset>,
    high_watermark: Option<i64>,
    /// The offset after the last message handed on: the resume position (`None`
    /// until the fetch loop has said where it starts).
    next_offset: Option<i64>,
    batch_size: usize,
    max_message_bytes: usize,
    lag: Arc<Gauge>,
    done: bool,
    mode: PhantomData<fn() -> M>,
}

impl<M: ErrorMode> std::fmt::Debug for KafkaPartition<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPartition")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("next_offset", &self.next_offset)
            .finish_non_exhaustive()
    }
}

impl<M: ErrorMode> KafkaPartition<M> {
    fn convert(&self, r: RecordAndOffset) -> Result<KafkaSourceMessage, KafkaError> {
        let size = r.record.approximate_size();
        if size > self.max_message_bytes {
            return Err(KafkaError {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: r.offset,
                error: format!(
                    "the message is {size} bytes, more than max_message_bytes ({})",
                    self.max_message_bytes
                ),
            });
        }
        Ok(KafkaSourceMessage {
            key: r.record.key,
            value: r.record.value,
            topic: self.topic.clone(),
            partition: self.partition,
            offset: r.offset,
            timestamp_ms: r.record.timestamp.timestamp_millis(),
            headers: r.record.headers.into_iter().collect(),
        })
    }

    fn publish_lag(&self) {
        if let (Some(hw), Some(next)) = (self.high_watermark, self.next_offset) {
            self.lag.set((hw - next).max(0));
        }
    }
}

impl<M: ErrorMode> StatefulSourcePartition for KafkaPartition<M> {
    type Item = M::Item;
    type State = Option<i64>;

    fn next_batch(&mut self, batch: &mut Vec<M::Item>) -> Result<SourceStatus, BoxError> {
        if self.done {
            return Ok(SourceStatus::Eof);
        }
        while self.pending.is_empty() {
            match self.rx.try_recv() {
                Ok(Fetched::Start { offset }) => {
                    self.next_offset = Some(offset);
                }
                Ok(Fetched::Records(records, hw)) => {
                    self.pending.extend(records);
                    self.high_watermark = Some(hw);
                }
                Ok(Fetched::End { end }) => {
                    self.done = true;
                    self.high_watermark = Some(end);
                    self.next_offset = Some(self.next_offset.unwrap_or(end).max(end));
                    self.publish_lag();
                    return Ok(SourceStatus::Eof);
                }
                Ok(Fetched::Failed(why)) => return Err(why.into()),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(SourceStatus::Active),
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(format!(
                        "Kafka topic {:?} partition {}: the fetch loop stopped unexpectedly",
                        self.topic, self.partition
                    )
                    .into())
                }
            }
        }
        let n = self.pending.len().min(self.batch_size);
        for r in self.pending.drain(..n).collect::<Vec<_>>() {
            let offset = r.offset;
            let item = match self.convert(r) {
                Ok(m) => M::message(m),
                Err(e) => M::error(e)?,
            };
            batch.push(item);
            self.next_offset = Some(offset + 1);
        }
        self.publish_lag();
        Ok(SourceStatus::Active)
    }

    fn snapshot(&self) -> Option<i64> {
        self.next_offset
    }

    fn close(&mut self) -> Result<(), BoxError> {
        self.task.abort();
        Ok(())
    }
}

impl<M: ErrorMode> Drop for KafkaPartition<M> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a [`KafkaSource`] does with a message it cannot deliver.
pub trait ErrorMode: Send + Sync + 'static {
    /// The source's items.
    type Item: crate::runtime::push::Data;
    /// A message, as an item.
    fn message(m: KafkaSourceMessage) -> Self::Item;
    /// An undeliverable message: an item, or the run's error.
    fn error(e: KafkaError) -> Result<Self::Item, BoxError>;
}

/// Undeliverable messages fail the run (the default; Bytewax's `raise_on_errors=True`).
#[derive(Debug)]
pub struct RaiseOnErrors;

impl ErrorMode for RaiseOnErrors {
    type Item = KafkaSourceMessage;
    fn message(m: KafkaSourceMessage) -> KafkaSourceMessage {
        m
    }
    fn error(e: KafkaError) -> Result<KafkaSourceMessage, BoxError> {
        Err(format!("Kafka {e}").into())
    }
}

/// Undeliverable messages are `Err` items ([`KafkaSource::errors_as_items`]).
#[derive(Debug)]
pub struct ErrorsAsItems;

impl ErrorMode for ErrorsAsItems {
    type Item = Result<KafkaSourceMessage, KafkaError>;
    fn message(m: KafkaSourceMessage) -> Self::Item {
        Ok(m)
    }
    fn error(e: KafkaError) -> Result<Self::Item, BoxError> {
        Ok(Err(e))
    }
}
