//! Built-in Kafka flows: `kafka_wordcount` and `kafka_copy`, so a user can try the
//! connectors without writing Rust.
//!
//! `BROKERS` is `host:port`, several separated by `;`. How long a broker may stay
//! unreachable before the run fails naming it is `WAXFAST_KAFKA_TIMEOUT` (seconds,
//! default 30).

use std::time::Duration;

use crate::connectors::kafka::{KafkaConfig, KafkaSink, KafkaSource, DEFAULT_TIMEOUT};
use crate::dataflow::Dataflow;

/// The variable that sets the built-in flows' Kafka timeout.
pub const TIMEOUT_VAR: &str = "WAXFAST_KAFKA_TIMEOUT";

/// The brokers of a built-in flow's arguments, with the timeout of
/// [`TIMEOUT_VAR`].
fn config(brokers: &str) -> Result<KafkaConfig, String> {
    let timeout = match std::env::var(TIMEOUT_VAR) {
        Ok(v) if !v.trim().is_empty() => {
            let secs: f64 = v.trim().parse().map_err(|_| {
                format!("invalid value {v:?} for {TIMEOUT_VAR}: expected a number of seconds > 0")
            })?;
            if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
                return Err(format!(
                    "invalid value {v:?} for {TIMEOUT_VAR}: expected a number of seconds > 0"
                ));
            }
            Duration::from_secs_f64(secs)
        }
        _ => DEFAULT_TIMEOUT,
    };
    Ok(KafkaConfig::parse(brokers)?.timeout(timeout))
}

/// Counts the words of every message of `topic` present when the run starts (a bounded
/// run: each partition stops at the end it saw at start). Each message's value is a
/// line, counted exactly as the built-in `wordcount` counts a line of a file, and the
/// `word=count` lines go to stdout or, through [`FileSink`](crate::connectors::files::FileSink), to the file `out` (exactly
/// once with recovery). A value that is not UTF-8 fails the run, naming its topic,
/// partition and offset.
pub fn kafka_wordcount(config: KafkaConfig, topic: &str, out: Option<&str>) -> Dataflow {
    let flow = Dataflow::new("kafka_wordcount");
    let lines = flow
        .input("inp", KafkaSource::new(config, [topic]).tail(false))
        .try_map("value", |m| m.value_str().map(str::to_owned));
    super::count_and_write(&lines, out);
    flow
}

/// Copies the messages of `in_topic` to `out_topic` (key, value, headers and timestamp;
/// the partition picked from the key). Bounded (what is there at start) unless `tail`.
pub fn kafka_copy(config: KafkaConfig, in_topic: &str, out_topic: &str, tail: bool) -> Dataflow {
    let flow = Dataflow::new("kafka_copy");
    flow.input(
        "inp",
        KafkaSource::new(config.clone(), [in_topic]).tail(tail),
    )
    .map("to_sink", |m| m.to_sink())
    .output("out", KafkaSink::new(config, out_topic));
    flow
}

/// `kafka_wordcount:BROKERS,TOPIC[,OUT]`.
pub(crate) fn kafka_wordcount_args(args: Option<&str>) -> Result<Dataflow, String> {
    const USAGE: &str = "kafka_wordcount:BROKERS,TOPIC[,OUT] (brokers separated by ';')";
    let a: Vec<&str> = args.unwrap_or_default().splitn(3, ',').collect();
    match a.as_slice() {
        [brokers, topic, rest @ ..] if !topic.trim().is_empty() => {
            let out = rest.first().map(|o| o.trim()).filter(|o| !o.is_empty());
            Ok(kafka_wordcount(config(brokers)?, topic.trim(), out))
        }
        _ => Err(format!("needs brokers and a topic: {USAGE}")),
    }
}

/// `kafka_copy:BROKERS,IN_TOPIC,OUT_TOPIC[,tail]`.
pub(crate) fn kafka_copy_args(args: Option<&str>) -> Result<Dataflow, String> {
    const USAGE: &str = "kafka_copy:BROKERS,IN_TOPIC,OUT_TOPIC[,tail] (brokers separated by ';')";
    let a: Vec<&str> = args.unwrap_or_default().split(',').map(str::trim).collect();
    let (brokers, inp, out, tail) = match a.as_slice() {
        [b, i, o] => (b, i, o, false),
        [b, i, o, "tail"] => (b, i, o, true),
        _ => return Err(format!("needs brokers and two topics: {USAGE}")),
    };
    if inp.is_empty() || out.is_empty() {
        return Err(format!("needs brokers and two topics: {USAGE}"));
    }
    if inp == out {
        return Err(format!(
            "IN_TOPIC and OUT_TOPIC are both {inp:?}: the copy would read its own output forever"
        ));
    }
    Ok(kafka_copy(config(brokers)?, inp, out, tail))
}
