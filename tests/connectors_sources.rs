//! Integration tests of the CSV, stdin, polling and demo sources, through the public API:
//! each flow runs under `cluster_main` at 1 and at 3 workers, and the outputs must agree.

mod util;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use waxfast::connectors::csv::{CsvRow, CsvSource};
use waxfast::connectors::demo::RandomMetricSource;
use waxfast::connectors::polling::SimplePollingSource;
use waxfast::connectors::stdio::StdInSource;
use waxfast::connectors::testing::{TestingOutput, TestingSink};
use waxfast::io::{FixedPartitionedSource, SourceStatus, StatefulSourcePartition};
use waxfast::{cluster_main, Data, Dataflow, Error};

use util::sorted;

/// Builds a fresh flow with `build` (which returns its output handle), runs it on
/// `workers` worker threads, and returns the run's result with what reached the sink.
fn run_at<T: Data>(
    workers: usize,
    build: impl Fn(&Dataflow) -> TestingOutput<T>,
) -> (waxfast::Result<()>, Vec<T>) {
    let flow = Dataflow::new("f");
    let out = build(&flow);
    let result = cluster_main(&flow, &[], 0, workers);
    (result, out.take())
}

/// [`run_at`] at 1 and at 3 workers; both runs must succeed and produce the same output,
/// which is returned.
fn same_at_1_and_3<T: Data + PartialEq + std::fmt::Debug>(
    build: impl Fn(&Dataflow) -> TestingOutput<T>,
) -> Vec<T> {
    let (r1, one) = run_at(1, &build);
    r1.expect("runs at -w1");
    let (r3, three) = run_at(3, &build);
    r3.expect("runs at -w3");
    assert_eq!(one, three, "-w1 and -w3 differ");
    one
}

/// [`same_at_1_and_3`] for outputs whose order depends on the worker count (after a
/// keyed step): compared, and returned, sorted.
fn same_sorted_at_1_and_3<T: Data + Ord + std::fmt::Debug>(
    build: impl Fn(&Dataflow) -> TestingOutput<T>,
) -> Vec<T> {
    let (r1, one) = run_at(1, &build);
    r1.expect("runs at -w1");
    let (r3, three) = run_at(3, &build);
    r3.expect("runs at -w3");
    assert_eq!(sorted(&one), sorted(&three), "-w1 and -w3 differ");
    sorted(&one)
}

/// The error message of a run that must fail, checked to come from step `f.inp`.
fn input_error(result: waxfast::Result<()>) -> String {
    match result {
        Err(Error::Step { step_id, source }) => {
            assert_eq!(step_id, "f.inp");
            source.to_string()
        }
        other => panic!("expected an error from the input step, got {other:?}"),
    }
}

fn sink<T: Data>() -> (TestingSink<T>, TestingOutput<T>) {
    TestingSink::new()
}

// ---- CSV -------------------------------------------------------------------------------

const CITIES: [&str; 4] = ["Lisbon", "Oslo", "Quito", "Hanoi, VN"];

/// A CSV of 250 sales `id,city,amount` (one city needs quoting) and its per-city totals.
fn sales_csv(dir: &Path) -> (PathBuf, Vec<(String, u64)>) {
    let path = dir.join("sales.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "id,city,amount").unwrap();
    let mut totals = vec![0u64; CITIES.len()];
    for id in 0..250u64 {
        let c = (id * 7 % 4) as usize;
        let amount = id * 3 % 17;
        totals[c] += amount;
        writeln!(f, "{id},\"{}\",{amount}", CITIES[c]).unwrap();
    }
    let totals = CITIES.iter().map(|c| c.to_string()).zip(totals).collect();
    (path, totals)
}

fn row_pairs(r: &CsvRow) -> Vec<(String, String)> {
    r.iter()
        .map(|(h, v)| (h.to_string(), v.to_string()))
        .collect()
}

#[test]
fn csv_rows_and_keyed_totals_agree_across_worker_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (path, totals) = sales_csv(dir.path());
    let rows = same_at_1_and_3(|flow| {
        let (sink, out) = sink();
        flow.input("inp", CsvSource::new(&path).batch_size(16))
            .map("pairs", |r: CsvRow| row_pairs(&r))
            .output("out", sink);
        out
    });
    assert_eq!(rows.len(), 250, "every row once, in file order");
    assert_eq!(
        rows[3],
        vec![
            ("id".to_string(), "3".to_string()),
            ("city".to_string(), "Oslo".to_string()),
            ("amount".to_string(), "9".to_string()),
        ]
    );
    let summed = same_sorted_at_1_and_3(|flow| {
        let (sink, out) = sink();
        flow.input("inp", CsvSource::new(&path))
            .filter_map("amounts", |r: CsvRow| {
                Some((
                    r.get("city")?.to_string(),
                    r.get("amount")?.parse::<u64>().ok()?,
                ))
            })
            .reduce_final("sum", |a, b| a + b)
            .output("out", sink);
        out
    });
    assert_eq!(summed, sorted(&totals));
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Sale {
    city: String,
    amount: u64,
    id: u32,
}

#[test]
fn csv_typed_rows_agree_across_worker_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (path, totals) = sales_csv(dir.path());
    let sales = same_at_1_and_3(|flow| {
        let (sink, out) = sink();
        flow.input("inp", CsvSource::typed::<Sale>(&path))
            .output("out", sink);
        out
    });
    assert_eq!(sales.len(), 250);
    assert_eq!(
        sales[1],
        Sale {
            city: "Hanoi, VN".into(),
            amount: 3,
            id: 1
        }
    );
    assert!(sales.iter().enumerate().all(|(i, s)| s.id as usize == i));
    let oslo: u64 = sales
        .iter()
        .filter(|s| s.city == "Oslo")
        .map(|s| s.amount)
        .sum();
    assert_eq!(("Oslo".to_string(), oslo), totals[1]);
}

#[test]
fn csv_resumes_from_a_snapshot_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sales_csv(dir.path());
    let (r, all) = run_at(1, |flow| {
        let (sink, out) = sink();
        flow.input("inp", CsvSource::typed::<Sale>(&path))
            .output("out", sink);
        out
    });
    r.unwrap();
    let src = CsvSource::typed::<Sale>(&path).batch_size(100);
    let part_name = &src.list_parts().unwrap()[0];
    let mut part = src.build_part("inp", part_name, None).unwrap();
    let mut first = Vec::new();
    assert_eq!(part.next_batch(&mut first).unwrap(), SourceStatus::Active);
    let offset = part.snapshot();
    drop(part);
    let mut resumed = src.build_part("inp", part_name, Some(offset)).unwrap();
    let mut rest = Vec::new();
    while resumed.next_batch(&mut rest).unwrap() == SourceStatus::Active {}
    assert_eq!(first.len(), 100);
    assert_eq!(rest.len(), 150);
    first.extend(rest);
    assert_eq!(first, all, "first batch + resumed rest = one whole run");
}

#[test]
fn csv_malformed_row_fails_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.csv");
    std::fs::write(&path, "id,city,amount\n1,Oslo,4\n2,Oslo\n3,Oslo,5\n").unwrap();
    for workers in [1, 3] {
        let (r, out) = run_at(workers, |flow| {
            let (sink, out) = sink();
            flow.input("inp", CsvSource::new(&path)).output("out", sink);
            out
        });
        let msg = input_error(r);
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("line 3:"), "{msg}");
        assert!(msg.contains("2 fields, but the header has 3"), "{msg}");
        let got: Vec<_> = out.iter().map(row_pairs).collect();
        assert_eq!(got.len(), 1, "the row before the bad one, nothing after");
        assert_eq!(got[0][1], ("city".to_string(), "Oslo".to_string()));
    }
    let typed_path = dir.path().join("typed.csv");
    std::fs::write(&typed_path, "id,city,amount\n1,Oslo,4\n2,Oslo,-3\n").unwrap();
    let (r, typed_out) = run_at(3, |flow| {
        let (sink, out) = sink();
        flow.input("inp", CsvSource::typed::<Sale>(&typed_path))
            .output("out", sink);
        out
    });
    let msg = input_error(r);
    assert!(msg.contains("typed.csv: line 3:"), "{msg}");
    assert!(msg.contains("\"amount\""), "{msg}");
    assert_eq!(
        typed_out.len(),
        1,
        "the row before the bad one, nothing after"
    );
}

#[test]
fn csv_missing_file_fails_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.csv");
    for workers in [1, 3] {
        let (r, out) = run_at(workers, |flow| {
            let (sink, out) = sink::<CsvRow>();
            flow.input("inp", CsvSource::new(&missing))
                .output("out", sink);
            out
        });
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains("cannot open") && msg.contains("absent.csv"),
            "{msg}"
        );
        assert!(out.is_empty());
    }
}

// ---- stdin -----------------------------------------------------------------------------

#[test]
fn stdin_lines_agree_across_worker_counts_and_bad_utf8_fails() {
    let text: String = (0..500).map(|i| format!("line {i}\r\n")).collect();
    let lines = same_at_1_and_3(|flow| {
        let (sink, out) = sink();
        flow.input(
            "inp",
            StdInSource::from_reader(std::io::Cursor::new(text.clone())),
        )
        .output("out", sink);
        out
    });
    assert_eq!(lines.len(), 500);
    assert_eq!(lines[499], "line 499");
    for workers in [1, 3] {
        let (r, out) = run_at(workers, |flow| {
            let (sink, out) = sink();
            flow.input("inp", StdInSource::from_reader(&b"fine\n\xc3\x28\n"[..]))
                .output("out", sink);
            out
        });
        let msg = input_error(r);
        assert!(msg.contains("stdin: invalid UTF-8 on line 2"), "{msg}");
        assert_eq!(
            out,
            vec!["fine"],
            "the line before the bad one is delivered"
        );
    }
}

// ---- polling ---------------------------------------------------------------------------

#[test]
fn polling_calls_at_the_interval_and_stops_on_error() {
    let interval = Duration::from_millis(15);
    for workers in [1, 3] {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let (r, out) = run_at(workers, |flow| {
            let calls = calls.clone();
            let getter = move || {
                let mut calls = calls.lock().unwrap();
                calls.push(Instant::now());
                match calls.len() {
                    3 => Ok(None),
                    n @ 1..=5 => Ok(Some(n)),
                    _ => Err("upstream went away".into()),
                }
            };
            let (sink, out) = sink();
            flow.input("inp", SimplePollingSource::new(interval, getter))
                .output("out", sink);
            out
        });
        let msg = input_error(r);
        assert_eq!(msg, "upstream went away");
        assert_eq!(out, vec![1, 2, 4, 5], "at -w{workers}");
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 6, "no call after the error");
        for (k, at) in calls.iter().enumerate() {
            assert!(
                *at >= start + interval * k as u32,
                "call {k} came early at -w{workers}"
            );
        }
    }
}

// ---- demo ------------------------------------------------------------------------------

#[test]
fn random_metric_emits_count_items_at_the_interval_deterministically() {
    let interval = Duration::from_millis(10);
    let start = Instant::now();
    let readings = same_at_1_and_3(|flow| {
        let (sink, out) = sink();
        flow.input(
            "inp",
            RandomMetricSource::new("cpu", interval, Some(5)).seed(2024),
        )
        .output("out", sink);
        out
    });
    // Two runs of 5 items, 4 intervals apart each.
    assert!(start.elapsed() >= interval * 8);
    assert_eq!(readings.len(), 5);
    assert!(readings
        .iter()
        .all(|(name, v)| name == "cpu" && (0.0..10.0).contains(v)));
    let (r, other_seed) = run_at(1, |flow| {
        let (sink, out) = sink();
        flow.input(
            "inp",
            RandomMetricSource::new("cpu", Duration::ZERO, Some(5)).seed(2025),
        )
        .output("out", sink);
        out
    });
    r.unwrap();
    assert_ne!(readings, other_seed);
}

/// Runs the waxfast binary as an unprivileged user when the tests run as root (where
/// `chmod 000` denies nothing), directly otherwise; `None` if neither is possible here.
fn unprivileged_waxfast() -> Option<std::process::Command> {
    let uid = std::process::Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some(util::waxfast());
    }
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let plain = util::waxfast();
    let mut cmd = std::process::Command::new(setpriv);
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(plain.get_program());
    for (k, v) in plain.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    Some(cmd)
}

#[test]
fn permission_denied_on_a_file_or_a_directory_names_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let Some(_) = unprivileged_waxfast() else {
        eprintln!("skipped: running as root without setpriv, so permissions deny nothing");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The unprivileged user must reach the directory, not the file.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "a b c\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let o = util::run_with_timeout(
        unprivileged_waxfast()
            .unwrap()
            .arg(format!("wordcount:{}", secret.display())),
    );
    assert_eq!(o.status.code(), Some(1), "{}", util::stderr(&o));
    let err = util::stderr(&o);
    assert!(err.contains(&secret.display().to_string()), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(util::stdout(&o).is_empty(), "no output before the error");
    // A directory the user may read but not list.
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join("a.txt"), "x\n").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o311)).unwrap();
    let o = util::run_with_timeout(
        unprivileged_waxfast()
            .unwrap()
            .arg(format!("wordcount:{}", locked.display())),
    );
    assert_eq!(o.status.code(), Some(1), "{}", util::stderr(&o));
    let err = util::stderr(&o);
    assert!(err.contains(&locked.display().to_string()), "{err}");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}
