//! One partition's fetch loop, on the connectors' runtime: it reads ahead of the
//! worker into a small bounded channel, so `next_batch` never waits on the network.
//!
//! The loop owns no resume state: the worker's partition counts what it has handed
//! on, and that is what a snapshot saves. Whatever the loop had fetched beyond it is
//! fetched again by a resumed run.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::RecordAndOffset;
use tokio::sync::mpsc;

/// Where a partition starts when it has no resume position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StartingOffset {
    /// The oldest message the broker keeps (Bytewax's `OFFSET_BEGINNING`, its default).
    Beginning,
    /// After the last message at start: only messages produced from then on
    /// (Bytewax's `OFFSET_END`).
    End,
}

/// What the loop hands the worker.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// Where the partition starts (sent first): a resume position from the start, so
    /// that a partition that had nothing to read yet resumes where it began.
    Start { offset: i64 },
    /// Records in offset order, all at or past the offset asked for, and the
    /// partition's high watermark as the broker answered.
    Records(Vec<RecordAndOffset>, i64),
    /// A bounded partition reached the end it saw at start (`end`).
    End { end: i64 },
    /// The partition cannot be read; the message says why and where.
    Failed(String),
}

/// What a loop needs to know.
#[derive(Debug, Clone)]
pub(crate) struct FetchPlan {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The offset to read from (a resume position), else where to start.
    pub(crate) from: Result<i64, StartingOffset>,
    /// Stop at the end seen at start instead of waiting for more.
    pub(crate) bounded: bool,
    /// How long the broker may hold a fetch when nothing new is there (tail).
    pub(crate) max_wait: Duration,
    /// Bytes per fetch (the broker returns at least one batch even if larger).
    pub(crate) max_bytes: i32,
    /// For messages.
    pub(crate) brokers: String,
    pub(crate) timeout: Duration,
}

impl FetchPlan {
    fn place(&self) -> String {
        format!(
            "Kafka topic {:?} partition {} (brokers {})",
            self.topic, self.partition, self.brokers
        )
    }
}

/// Runs the loop until the partition ends, fails, or the receiver is dropped.
pub(crate) async fn run(client: Arc<Client>, plan: FetchPlan, tx: mpsc::Sender<Fetched>) {
    if let Err(e) = fetch_all(&client, &plan, &tx).await {
        let _ = tx
            .send(Fetched::Failed(format!("{}: {e}", plan.place())))
            .await;
    }
}

async fn fetch_all(
    client: &Client,
    plan: &FetchPlan,
    tx: &mpsc::Sender<Fetched>,
) -> Result<(), String> {
    let bounded_wait = |what: &str| {
        format!(
            "{what} did not succeed within {:?} (the connection timeout): is the broker up?",
            plan.timeout
        )
    };
    let pc = tokio::time::timeout(
        plan.timeout,
        client.partition_client(&plan.topic, plan.partition, UnknownTopicHandling::Retry),
    )
    .await
    .map_err(|_| bounded_wait("finding the partition's leader"))?
    .map_err(|e| format!("cannot find the partition's leader: {e}"))?;
    let call = |what: &'static str| move |_| bounded_wait(what);

    let mut offset = match plan.from {
        Ok(o) => o,
        Err(start) => {
            let earliest = tokio::time::timeout(plan.timeout, pc.get_offset(OffsetAt::Earliest))
                .await
                .map_err(call("asking for the earliest offset"))?
                .map_err(|e| format!("cannot get the earliest offset: {e}"))?;
            match start {
                StartingOffset::Beginning => earliest,
                // Not ListOffsets(LATEST): tansu answers it wrongly. The high watermark
                // of a fetch is the end on Kafka and on tansu alike.
                StartingOffset::End => high_watermark(&pc, plan, earliest).await?,
            }
        }
    };
    if tx.send(Fetched::Start { offset }).await.is_err() {
        return Ok(());
    }
    let end = if plan.bounded {
        Some(high_watermark(&pc, plan, offset).await?)
    } else {
        None
    };
    let mut empty_fetches = 0;
    let mut first_empty = None;
    loop {
        if let Some(end) = end {
            if offset >= end {
                let _ = tx.send(Fetched::End { end }).await;
                return Ok(());
            }
        }
        // A bounded run knows data is there: it hardly waits on the broker.
        let wait = if end.is_some() {
            NO_WAIT_MS
        } else {
            wait_ms(plan.max_wait).max(NO_WAIT_MS)
        };
        let (mut records, hw) = tokio::time::timeout(
            plan.timeout + plan.max_wait,
            pc.fetch_records(offset, 1..plan.max_bytes, wait),
        )
        .await
        .map_err(call("fetching"))?
        .map_err(|e| format!("fetch at offset {offset} failed: {e}"))?;
        if let Some(end) = end {
            records.retain(|r| r.offset < end);
            if records.is_empty() {
                // Below the end yet nothing came back. tansu under load answers a
                // fetch that waits 1 ms with nothing now and then: ask again, waiting
                // longer. Only several empty answers in a row mean that what is left
                // holds no data records (transaction markers, which the client hides,
                // or messages not yet committed).
                empty_fetches += 1;
                let since = *first_empty.get_or_insert_with(std::time::Instant::now);
                if empty_fetches < EMPTY_FETCHES_AT_END || since.elapsed() < EMPTY_FOR_AT_END {
                    continue;
                }
                tracing::warn!(
                    "{}: no data record between offset {offset} and the end {end} seen at start in {empty_fetches} fetches over {:?}; the partition ends at {offset} (transaction markers or uncommitted messages)",
                    plan.place(),
                    since.elapsed()
                );
                let _ = tx.send(Fetched::End { end: offset }).await;
                return Ok(());
            }
            empty_fetches = 0;
            first_empty = None;
        }
        if let Some(last) = records.last() {
            offset = last.offset + 1;
        } else if hw < offset {
            return Err(format!(
                "the broker's high watermark {hw} is below the offset {offset} to read: the partition lost messages (a broker that restarted empty?)"
            ));
        }
        if tx.send(Fetched::Records(records, hw)).await.is_err() {
            return Ok(()); // the partition was closed
        }
    }
}

/// The partition's high watermark (the offset after its last committed message),
/// from a fetch at `at` that does not wait.
async fn high_watermark(pc: &PartitionClient, plan: &FetchPlan, at: i64) -> Result<i64, String> {
    let (_, hw) = tokio::time::timeout(plan.timeout, pc.fetch_records(at, 1..2, NO_WAIT_MS))
        .await
        .map_err(|_| {
            format!(
                "reading the high watermark did not succeed within {:?}",
                plan.timeout
            )
        })?
        .map_err(|e| format!("cannot read the high watermark (fetch at offset {at}): {e}"))?;
    Ok(hw)
}

/// Empty answers in a row below a bounded partition's end, over at least
/// [`EMPTY_FOR_AT_END`], that end it there (seen here: tansu answers about one fetch in
/// 25 that waits 1 ms with nothing, though data is there; ending at the first such
/// answer lost messages in the kill/resume test).
const EMPTY_FETCHES_AT_END: u32 = 5;
const EMPTY_FOR_AT_END: Duration = Duration::from_secs(1);

/// The shortest wait a fetch asks for: tansu answers a fetch with `max_wait_ms` 0
/// with no topic at all (rskafka: "Expected a single topic in response, got 0"); 1 ms
/// works on it, and on Kafka it costs nothing when data is there.
const NO_WAIT_MS: i32 = 1;

fn wait_ms(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}
