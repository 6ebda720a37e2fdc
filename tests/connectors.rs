//! File and directory connectors with real files, at 1 and 3 workers.

mod util;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use waxfast::connectors::files::{DirSink, DirSource, FileSink, FileSource};
use waxfast::io::{DynamicSink, Sink, SinkKind, StatelessSinkPartition};
use waxfast::{cluster_main, BoxError, Dataflow, Key};

use util::{run_with_timeout, sorted, stderr, stdout, waxfast};

/// Records `(worker, item)` for every item it is given.
#[derive(Clone, Default)]
struct WorkerSink(Arc<Mutex<Vec<(usize, String)>>>);

struct WorkerPart(usize, Arc<Mutex<Vec<(usize, String)>>>);

impl StatelessSinkPartition for WorkerPart {
    type Item = String;
    fn write_batch(&mut self, items: &mut Vec<String>) -> Result<(), BoxError> {
        let mut v = self.1.lock().unwrap();
        v.extend(items.drain(..).map(|x| (self.0, x)));
        Ok(())
    }
}

impl DynamicSink for WorkerSink {
    type Item = String;
    type Part = WorkerPart;
    fn build(&self, _: &str, worker: usize, _: usize) -> Result<WorkerPart, BoxError> {
        Ok(WorkerPart(worker, self.0.clone()))
    }
}

impl Sink<String> for WorkerSink {
    fn into_kind(self) -> SinkKind<String> {
        SinkKind::dynamic(self)
    }
}

fn numbered_file(dir: &std::path::Path, lines: usize) -> std::path::PathBuf {
    let path = dir.join("in.txt");
    let text: String = (0..lines)
        .map(|i| format!("line {i} {}\n", "x".repeat(i % 17)))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn split_file_source_reads_every_line_once_on_all_workers() {
    let dir = tempfile::tempdir().unwrap();
    let path = numbered_file(dir.path(), 20_000);
    let expected: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    for workers in [1, 3] {
        let flow = Dataflow::new("f");
        let sink = WorkerSink::default();
        flow.input("inp", FileSource::new(&path).split_by(16 << 10))
            .output("out", sink.clone());
        cluster_main(&flow, &[], 0, workers).unwrap();
        let got = sink.0.lock().unwrap().clone();
        let lines: Vec<String> = got.iter().map(|(_, l)| l.clone()).collect();
        assert_eq!(sorted(&lines), sorted(&expected), "at {workers} workers");
        let used: std::collections::BTreeSet<usize> = got.iter().map(|(w, _)| *w).collect();
        assert_eq!(
            used.len(),
            workers,
            "every worker read a range at {workers} workers"
        );
    }
}

#[test]
fn dir_source_assigns_files_as_bytewax_assigns_partitions() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(dir.path().join(format!("p{i}.txt")), format!("from p{i}\n")).unwrap();
    }
    std::fs::write(dir.path().join("skip.log"), "not matched\n").unwrap();
    let flow = Dataflow::new("f");
    let sink = WorkerSink::default();
    flow.input("inp", DirSource::new(dir.path(), "*.txt"))
        .output("out", sink.clone());
    cluster_main(&flow, &[], 0, 3).unwrap();
    let got = sorted(&sink.0.lock().unwrap().clone());
    // outputs/partition_assign_demo_w3.txt: W0 p0,p3; W1 p1,p4; W2 p2.
    let expected: Vec<(usize, String)> = [(0, 0), (0, 3), (1, 1), (1, 4), (2, 2)]
        .iter()
        .map(|&(w, p)| (w, format!("from p{p}")))
        .collect();
    assert_eq!(got, sorted(&expected));
}

#[test]
fn file_sink_writes_every_value_once_in_key_order_at_3_workers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let flow = Dataflow::new("f");
    let items: Vec<(String, u32)> = (0..3000u32).map(|i| (format!("k{}", i % 37), i)).collect();
    flow.input(
        "inp",
        waxfast::connectors::testing::TestingSource::new(items.clone()).batch_size(64),
    )
    .map_value("fmt", |v| format!("v{v}"))
    .output("out", FileSink::new(&out));
    cluster_main(&flow, &[], 0, 3).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3000);
    // One partition: every line went through one worker; each key's values in order.
    let mut per_key: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for l in &lines {
        let v: u32 = l[1..].parse().unwrap();
        per_key.entry(v % 37).or_default().push(v);
    }
    for (k, vs) in per_key {
        assert!(vs.windows(2).all(|w| w[0] < w[1]), "key {k} out of order");
    }
    assert!(!dir.path().join("out.txt.partial").exists());
}

#[test]
fn dir_sink_puts_each_key_in_its_hash_file() {
    let dir = tempfile::tempdir().unwrap();
    let flow = Dataflow::new("f");
    let items: Vec<(String, String)> = (0..500)
        .map(|i| (format!("key{}", i % 23), format!("key{}", i % 23)))
        .collect();
    flow.input(
        "inp",
        waxfast::connectors::testing::TestingSource::new(items).batch_size(50),
    )
    .output("out", DirSink::new(dir.path(), 4));
    cluster_main(&flow, &[], 0, 3).unwrap();
    let mut total = 0;
    for i in 0..4u64 {
        let text = std::fs::read_to_string(dir.path().join(format!("part-{i}"))).unwrap();
        for line in text.lines() {
            assert_eq!(line.to_string().stable_hash() % 4, i, "{line} in part-{i}");
            total += 1;
        }
    }
    assert_eq!(total, 500);
}

#[test]
fn wordcount_over_a_directory_and_a_split_file_agree_at_1_and_3_workers() {
    let dir = tempfile::tempdir().unwrap();
    let words = ["alpha", "Beta", "gamma", "delta", "alpha"];
    let mut all = String::new();
    for f in 0..4 {
        let text: String = (0..2000)
            .map(|i| format!("{} {}\n", words[(i + f) % 5], words[i % 3]))
            .collect();
        std::fs::write(dir.path().join(format!("f{f}.txt")), &text).unwrap();
        all.push_str(&text);
    }
    let single = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(single.path(), &all).unwrap();
    let mut outputs = Vec::new();
    for target in [dir.path().to_path_buf(), single.path().to_path_buf()] {
        for w in ["1", "3"] {
            let o = run_with_timeout(
                waxfast()
                    .arg(format!("wordcount:{}", target.display()))
                    .args(["-w", w]),
            );
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            let mut lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
            lines.sort();
            outputs.push(lines);
        }
    }
    // The reference: count the same text directly.
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for w in all.to_lowercase().split_whitespace() {
        *counts.entry(w.to_string()).or_default() += 1;
    }
    let expected: Vec<String> = counts.iter().map(|(w, c)| format!("{w}={c}")).collect();
    assert_eq!(counts.values().sum::<u64>(), 16_000);
    assert_eq!(outputs[0], expected);
    assert!(outputs.iter().all(|o| *o == outputs[0]));
}

#[test]
fn missing_directory_is_an_error_naming_it_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let flow = Dataflow::new("f");
    let sink = WorkerSink::default();
    flow.input("inp", DirSource::new(&missing, "*"))
        .output("out", sink.clone());
    let err = cluster_main(&flow, &[], 0, 3).unwrap_err().to_string();
    assert!(err.contains("nothing-here"), "{err}");
    assert!(err.contains("f.inp"), "{err}");
    assert!(sink.0.lock().unwrap().is_empty());
}
