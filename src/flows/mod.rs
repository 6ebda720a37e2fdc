//! Built-in flows, runnable as `waxfast NAME[:ARGS]`, and [`latency`], the harness that
//! measures round trips through your own steps.

pub mod bench;
pub mod bench_window;
pub mod kafka;
pub mod latency;
pub mod nexmark;

use crate::cli::FlowRegistry;
use crate::connectors::files::{DirSource, FileSink, FileSource};
use crate::connectors::stdio::StdOutSink;
use crate::connectors::testing::TestingSource;
use crate::dataflow::Dataflow;

/// The seeds' first flow: input 0..3, `plus_one`, stdout. Prints 1, 2, 3.
pub fn simple() -> Dataflow {
    let flow = Dataflow::new("simple");
    flow.input("inp", TestingSource::new(0..3u64))
        .map("plus_one", |x| x + 1)
        .output("out", StdOutSink::new());
    flow
}

/// Counts the words of a text file, or of every file in a directory: lower-cases each
/// line, splits on whitespace, counts per word and prints `word=count` lines (words in
/// order). Not Bytewax's `examples/wordcount.py`, which tokenizes with a regex and prints
/// `('word', count)` tuples. A file is read in byte ranges of about 4 MiB, so every worker reads.
pub fn wordcount(path: &str) -> Dataflow {
    wordcount_to(path, None)
}

/// [`wordcount`] writing its `word=count` lines to the file `out` (through
/// [`FileSink`], exactly once with recovery) instead of stdout.
pub fn wordcount_to(path: &str, out: Option<&str>) -> Dataflow {
    let flow = Dataflow::new("wordcount");
    let lines = if std::path::Path::new(path).is_dir() {
        flow.input("inp", DirSource::new(path, "*").batch_size(WORDCOUNT_BATCH))
    } else {
        let file = FileSource::new(path).split_by(4 << 20);
        flow.input("inp", file.batch_size(WORDCOUNT_BATCH))
    };
    count_and_write(&lines, out);
    flow
}

/// Wordcount's steps after its input (`split`, `count`, `fmt`, `out`): each line's words
/// counted, printed as `word=count`, or written to the file `out` partitioned by word.
/// The Kafka wordcount shares them, so both give the same lines.
pub(crate) fn count_and_write(lines: &crate::Stream<String>, out: Option<&str>) {
    let counts = lines
        .flat_map_batch("split", count_words)
        .reduce_final("count", |a, b| a + b);
    match out {
        None => counts
            .map("fmt", |(w, c)| format!("{w}={c}"))
            .output("out", StdOutSink::new()),
        Some(out) => counts
            .map("fmt", |(w, c)| (w.clone(), format!("{w}={c}")))
            .output("out", FileSink::new(out)),
    }
}

/// Lines per batch for `wordcount`: more than a 4 MiB byte range holds at typical line
/// lengths, so a range is counted as one batch and the per-batch count combines as many
/// repeats of a word as it can before the keyed step (a batch job: latency does not
/// matter; memory is a range's lines). 8192 lines took 1.3x as long at `-w1`.
const WORDCOUNT_BATCH: usize = 1 << 17;

/// Counts the lower-cased words of a batch of lines: a combiner before the keyed step, so
/// a word becomes an owned `String` (and crosses to its worker) once per batch instead of
/// once per occurrence. A `HashTable` rather than a map, so that the lookup compares
/// short words inline (`bytes_eq`).
pub(crate) fn count_words(lines: Vec<String>) -> hashbrown::HashTable<(String, u64)> {
    use std::hash::BuildHasher;
    thread_local! {
        /// Distinct words in this worker's previous batch: the next table starts that
        /// large instead of growing (and rehashing) its way there.
        static DISTINCT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    let hasher = rustc_hash::FxBuildHasher;
    let mut counts = hashbrown::HashTable::with_capacity(DISTINCT.get());
    let mut lower = String::new();
    let mut add = |w: &str| {
        let h = hasher.hash_one(w.as_bytes());
        match counts.find_mut(h, |(k, _): &(String, u64)| {
            crate::dataflow::bytes_eq(k.as_bytes(), w.as_bytes())
        }) {
            Some((_, c)) => *c += 1,
            None => {
                counts.insert_unique(h, (w.to_owned(), 1), |(k, _)| hasher.hash_one(k.as_bytes()));
            }
        }
    };
    for line in &lines {
        if line.is_ascii() {
            // Same result as the Unicode path on ASCII text, without per-char decoding.
            lower.clear();
            lower.push_str(line);
            lower.make_ascii_lowercase();
            lower.split_ascii_whitespace().for_each(&mut add);
        } else {
            line.to_lowercase().split_whitespace().for_each(&mut add);
        }
    }
    DISTINCT.set(counts.len());
    counts
}

/// Bytewax's `metrics_demo` with a `fmt` step before stdout: `count` readings of
/// `cpu`, one per `interval`, through a running maximum (`stateful_map`), printed as
/// `cpu=max` lines. A slow flow to watch through the dataflow API.
pub fn metrics_demo(count: u64, interval: std::time::Duration) -> Dataflow {
    let flow = Dataflow::new("metrics_demo");
    flow.input(
        "inp",
        crate::connectors::demo::RandomMetricSource::new("cpu", interval, Some(count)),
    )
    .stateful_map("running_max", |st: Option<f64>, v: f64| {
        let m = st.map_or(v, |s| s.max(v));
        (Some(m), m)
    })
    .map("fmt", |(k, v)| format!("{k}={v:.3}"))
    .output("out", StdOutSink::new());
    flow
}

fn metrics_demo_args(args: Option<&str>) -> Result<Dataflow, String> {
    let (count, ms) = match args {
        None => ("40", "100"),
        Some(a) => a.split_once(',').unwrap_or((a, "100")),
    };
    let count: u64 = count
        .trim()
        .parse()
        .map_err(|_| format!("COUNT {count:?} is not a whole number"))?;
    let ms: u64 = ms
        .trim()
        .parse()
        .map_err(|_| format!("INTERVAL_MS {ms:?} is not a whole number"))?;
    Ok(metrics_demo(count, std::time::Duration::from_millis(ms)))
}

/// Adds the built-in flows to `registry`.
pub fn register_builtins(registry: FlowRegistry) -> FlowRegistry {
    registry
        .register(
            "simple",
            "input 0..3, add one, print each (this project's first flow)",
            |args| match args {
                None => Ok(simple()),
                Some(a) => Err(format!("takes no arguments, got {a:?}")),
            },
        )
        .register(
            "wordcount",
            "wordcount:PATH[,OUT]  count the words of a text file (or of every file in a directory), print word=count lines (or write them to the file OUT)",
            |args| match args.map(|a| a.split_once(',').unwrap_or((a, ""))) {
                Some((path, out)) if !path.is_empty() => {
                    Ok(wordcount_to(path, Some(out).filter(|o| !o.is_empty())))
                }
                _ => Err("needs the path of a text file or directory: wordcount:PATH[,OUT]".to_string()),
            },
        )
        .register(
            "kafka_wordcount",
            "kafka_wordcount:BROKERS,TOPIC[,OUT]  count the words of the messages of a Kafka topic present at start (each value a line), print word=count lines (or write them to the file OUT); brokers separated by ';', WAXFAST_KAFKA_TIMEOUT bounds an unreachable broker (default 30 s)",
            kafka::kafka_wordcount_args,
        )
        .register(
            "kafka_copy",
            "kafka_copy:BROKERS,IN_TOPIC,OUT_TOPIC[,tail]  copy the messages of a Kafka topic present at start (or, with tail, forever) to another topic",
            kafka::kafka_copy_args,
        )
        .register(
            "metrics_demo",
            "metrics_demo[:COUNT,INTERVAL_MS]  COUNT random cpu readings, one per INTERVAL_MS, through a running max (default 40,100)",
            metrics_demo_args,
        )
        .register(
            "bench_pipe",
            "bench_pipe:N  map + filter over N generated u64 (default 100000000)",
            bench::bench_pipe,
        )
        .register(
            "bench_wordcount",
            "bench_wordcount:N,K  count N generated words over K keys (default 5000000,10000)",
            bench::bench_wordcount,
        )
        .register(
            "bench_exchange",
            "bench_exchange:N,BYTES[,READ]  redistribute N records of 16 or 64 bytes (default 50000000,16); READ=1 reads them after",
            bench::bench_exchange,
        )
        .register("bench_window", "bench_window:N,K  count N generated events per key (K keys) in 1 s event-time tumbling windows (default 5000000,1000)", bench_window::bench_window)
        .register(
            "bench_window_fold",
            "bench_window_fold:N,K  count N events per key and 1M-event tumbling window with fold_final (stand-in for bench_window; default 5000000,10000)",
            bench::bench_window_fold,
        )
        .register(
            "bench_fanout",
            "bench_fanout:N,STEPS  N u64 through STEPS chained keyed steps, an exchange at each (default 5000000,4)",
            bench::bench_fanout,
        )
        .register(
            "nexmark",
            "nexmark:QUERY[,EVENTS[,SINK]]  Nexmark query q0..q8, q14, q21 or q22 over EVENTS generated events (default 10000000); SINK print (default) or null (count, summary on stderr)",
            nexmark::nexmark_args,
        )
}
