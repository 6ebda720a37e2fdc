//! The records that come out of a [`KafkaSource`](super::KafkaSource) and go into a
//! [`KafkaSink`](super::KafkaSink), and the per-message error.

use serde::{Deserialize, Serialize};

/// A message read from Kafka (Bytewax's `KafkaSourceMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSourceMessage {
    /// The message key, if it has one.
    pub key: Option<Vec<u8>>,
    /// The message value, if it has one (`None` is a tombstone).
    pub value: Option<Vec<u8>>,
    /// The topic it was read from.
    pub topic: String,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the Unix epoch (create or log-append time,
    /// whichever the topic records).
    pub timestamp_ms: i64,
    /// Its headers, by name (Kafka allows a name twice; the client keeps the last).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl KafkaSourceMessage {
    /// The same message as one to produce: key, value and headers kept, no topic
    /// (the sink's), the timestamp kept (Bytewax's `to_sink`).
    pub fn to_sink(self) -> KafkaSinkMessage {
        KafkaSinkMessage {
            key: self.key,
            value: self.value,
            topic: None,
            headers: self.headers,
            timestamp_ms: Some(self.timestamp_ms),
        }
    }

    /// The value as UTF-8 text; the error names the topic, partition and offset.
    pub fn value_str(&self) -> Result<&str, String> {
        std::str::from_utf8(self.value.as_deref().unwrap_or_default()).map_err(|e| {
            format!(
                "the value of the message at offset {} of {}[{}] is not UTF-8 text ({e})",
                self.offset, self.topic, self.partition
            )
        })
    }
}

/// A message to produce (Bytewax's `KafkaSinkMessage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSinkMessage {
    /// The key; it picks the partition (CRC32 of the key, librdkafka's default, so
    /// the same key lands where a Bytewax flow would put it). No key: one partition
    /// per batch, round robin.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Option<Vec<u8>>,
    /// The topic; `None` is the sink's topic.
    pub topic: Option<String>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The timestamp in milliseconds since the Unix epoch; `None` is the time of
    /// producing.
    pub timestamp_ms: Option<i64>,
}

impl KafkaSinkMessage {
    /// A message with only a value.
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        KafkaSinkMessage {
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// A message with a key and a value.
    pub fn keyed(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        KafkaSinkMessage {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Default::default()
        }
    }
}

/// A message the source could not deliver (Bytewax's `KafkaError` on the `errs`
/// stream), with where it was. Its offset is consumed: the source moves past it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaError {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the message.
    pub offset: i64,
    /// What was wrong.
    pub error: String,
}

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message at offset {} of {}[{}]: {}",
            self.offset, self.topic, self.partition, self.error
        )
    }
}

impl std::error::Error for KafkaError {}
