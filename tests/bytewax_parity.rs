//! Bytewax parity for migrating users (issue 20): programs ported from Bytewax 0.21.1's
//! examples and docs, compared with what Bytewax printed.
//!
//! Bytewax is not needed at test time: each expected file under
//! `tests/bytewax_outputs/` was produced by running the Python program beside it with
//! Bytewax 0.21.1 (`python -m bytewax.run NAME`), as the file's program says.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use waxfast::connectors::repr::to_repr;
use waxfast::connectors::testing::{TestingSink, TestingSource};
use waxfast::operators::{JoinEmit, JoinInsert, Retention, StatefulBatchLogic};
use waxfast::{cluster_main, run_main, Dataflow, Error, Stream};

use util::{run_with_timeout, stderr, stdout};

/// What Bytewax printed for `name` (a file in `tests/bytewax_outputs/`).
fn bytewax_output(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bytewax_outputs")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The built example `name`: `cargo test --test bytewax_parity` does not build
/// examples, so it is built here with the profile of this test (a no-op when fresh).
fn example(name: &'static str) -> Command {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let profile = if cfg!(debug_assertions) {
            "test"
        } else {
            "bench"
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--examples", "--profile", profile])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
        let exe = std::env::current_exe().expect("current_exe");
        exe.parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .join("examples")
    });
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "{} was not built", bin.display());
    Command::new(bin)
}

fn assert_prints(name: &'static str, expected_file: &str) {
    let o = run_with_timeout(&mut example(name));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), bytewax_output(expected_file), "example {name}");
}

#[test]
fn example_join_prints_what_bytewax_prints() {
    assert_prints("join", "join_w1.txt");
}

/// `join_nway.py`: four sides, every insert mode with emit `final`, and `complete`.
fn join_nway(workers: usize) -> Vec<String> {
    let flow = Dataflow::new("join_nway");
    let s = |x: &str| x.to_string();
    let a = flow.input(
        "a",
        TestingSource::new(vec![(s("k"), 1), (s("k"), 2), (s("j"), 3)]),
    );
    let b = flow.input(
        "b",
        TestingSource::new(vec![(s("k"), s("x")), (s("k"), s("y"))]),
    );
    let c = flow.input("c", TestingSource::new(vec![(s("k"), 1.5), (s("m"), 2.5)]));
    let d = flow.input("d", TestingSource::new(vec![(s("k"), true)]));
    let (sink, out) = TestingSink::new();
    let mut tagged = Vec::new();
    for (mode, insert) in [
        ("first", JoinInsert::First),
        ("last", JoinInsert::Last),
        ("product", JoinInsert::Product),
    ] {
        let j = a.join(
            &format!("final_{mode}"),
            (&b, &c, &d),
            insert,
            JoinEmit::Final,
        );
        tagged.push(j.map(&format!("tag_{mode}"), move |kv| {
            to_repr(&("final", mode, kv))
        }));
    }
    let one_a = flow.input("one_a", TestingSource::new(vec![(s("k"), 1), (s("j"), 3)]));
    let one_b = flow.input(
        "one_b",
        TestingSource::new(vec![(s("k"), s("x")), (s("j"), s("z"))]),
    );
    let one_c = flow.input(
        "one_c",
        TestingSource::new(vec![(s("k"), 1.5), (s("m"), 2.5)]),
    );
    let one_d = flow.input(
        "one_d",
        TestingSource::new(vec![(s("k"), false), (s("j"), true)]),
    );
    let complete = one_a
        .join_complete("complete", (&one_b, &one_c, &one_d), JoinInsert::Last)
        .map("tag_complete", |kv| to_repr(&("complete", "last", kv)));
    let first = tagged.remove(0);
    first
        .merge("all", tagged.iter().chain([&complete]))
        .output("out", sink);
    if workers == 1 {
        run_main(&flow).unwrap();
    } else {
        cluster_main(&flow, &[], 0, workers).unwrap();
    }
    let mut lines = out.take();
    lines.sort();
    lines
}

#[test]
fn four_way_join_matches_bytewax_in_every_insert_mode() {
    let expected: Vec<String> = bytewax_output("join_nway.txt")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(join_nway(1), expected);
    assert_eq!(join_nway(2), expected);
}

/// Takes 5 s (the program's own pace: 20 items 0.25 s apart). Its output depends on
/// timing only through margins of 0.25 s against a 1 s timeout.
#[test]
fn example_batch_operator_prints_what_bytewax_prints() {
    assert_prints("batch_operator", "batch_operator_w1.txt");
}

// ---- composite operators, stateful_batch, raises, fallible steps ----------------------

struct Sum(i64);

impl StatefulBatchLogic<i64> for Sum {
    type Out = i64;
    type State = i64;
    fn on_batch(&mut self, values: Vec<i64>, _emit: &mut Vec<i64>) -> Retention {
        assert!(
            !values.is_empty(),
            "on_batch is never called with no values"
        );
        self.0 += values.iter().sum::<i64>();
        Retention::Retain
    }
    fn on_eof(&mut self, emit: &mut Vec<i64>) -> Retention {
        emit.push(self.0);
        Retention::Discard
    }
    fn snapshot(&self) -> i64 {
        self.0
    }
}

/// Bytewax's `@operator def double_and_sum(step_id, up)`, as a user writes it here.
fn double_and_sum(
    up: &Stream<(String, i64)>,
    step: &str,
    looked: Arc<Mutex<Vec<String>>>,
) -> Stream<(String, i64)> {
    let inner = up.enter(step);
    let doubled = inner.map("double", |(k, v)| (k, v * 2));
    doubled.inspect_with("look", move |id, item| {
        looked
            .lock()
            .unwrap()
            .push(format!("{id}: {}", to_repr(item)))
    });
    doubled
        .stateful_batch("sum", |resume: Option<i64>| Sum(resume.unwrap_or(0)))
        .rescope(up)
}

#[test]
fn composite_operator_and_stateful_batch_match_bytewax() {
    let expected = bytewax_output("composite_batch.txt");
    for workers in [1, 2] {
        let flow = Dataflow::new("composite_batch");
        let s = |k: &str, v| (k.to_string(), v);
        let inp = flow.input(
            "inp",
            TestingSource::new(vec![s("a", 1), s("b", 2), s("a", 3), s("c", 4), s("a", 5)]),
        );
        let looked = Arc::new(Mutex::new(Vec::new()));
        let (sink, out) = TestingSink::new();
        double_and_sum(&inp, "ds", looked.clone()).output("out", sink);
        let ids = flow.step_ids();
        for id in ["composite_batch.ds.double", "composite_batch.ds.sum.logic"] {
            assert!(ids.contains(&id.to_string()), "{id} in {ids:?}");
        }
        cluster_main(&flow, &[], 0, workers).unwrap();
        let mut lines = looked.lock().unwrap().clone();
        let mut outs: Vec<String> = out.take().iter().map(to_repr).collect();
        outs.sort();
        if workers > 1 {
            lines.sort();
        }
        lines.extend(outs);
        let mut want: Vec<String> = expected.lines().map(String::from).collect();
        if workers > 1 {
            want[..5].sort();
        }
        assert_eq!(lines, want, "-w{workers}");
    }
}

#[test]
fn raises_fails_the_run_with_bytewaxs_message() {
    let flow = Dataflow::new("raises_demo");
    flow.input("inp", TestingSource::new(vec![5, 6]))
        .raises("boom");
    match run_main(&flow) {
        Err(Error::Step { step_id, source }) => {
            assert_eq!(step_id, "raises_demo.boom");
            assert_eq!(
                format!("{source}\n"),
                bytewax_output("raises_demo.txt"),
                "Bytewax's RuntimeError text"
            );
        }
        other => panic!("expected a step error, got {other:?}"),
    }
    // No item, no error.
    let flow = Dataflow::new("raises_demo");
    flow.input("inp", TestingSource::new(Vec::<u8>::new()))
        .raises("boom");
    run_main(&flow).unwrap();
}

#[test]
fn try_map_err_fails_the_run_naming_the_step_on_every_worker_count() {
    for workers in [1, 3] {
        let flow = Dataflow::new("f");
        let (sink, out) = TestingSink::new();
        flow.input("inp", TestingSource::new(0..100u32))
            .try_map("check", |x| {
                if x == 57 {
                    Err(format!("bad record {x}"))
                } else {
                    Ok(x)
                }
            })
            .output("out", sink);
        match cluster_main(&flow, &[], 0, workers) {
            Err(Error::Step { step_id, source }) => {
                assert_eq!(step_id, "f.check");
                assert_eq!(source.to_string(), "bad record 57");
            }
            other => panic!("-w{workers}: expected a step error, got {other:?}"),
        }
        assert!(!out.take().contains(&57));
    }
}

#[test]
fn try_map_ok_passes_everything_on() {
    let flow = Dataflow::new("f");
    let (sink, out) = TestingSink::new();
    flow.input("inp", TestingSource::new(vec!["1", "22"]))
        .try_map("parse", str::parse::<u32>)
        .try_flat_map("digits", |n: u32| -> Result<Vec<u32>, std::fmt::Error> {
            Ok(n.to_string().bytes().map(|b| u32::from(b - b'0')).collect())
        })
        .output("out", sink);
    run_main(&flow).unwrap();
    assert_eq!(out.take(), vec![1, 2, 2]);
}

// ---- max/min by ------------------------------------------------------------------------

#[test]
fn max_and_min_final_by_match_bytewax_on_floats_ties_and_nan() {
    let flow = Dataflow::new("minmax_by");
    let s = |k: &str, id: u32, t: f64| (k.to_string(), (id, t));
    let inp = flow.input(
        "inp",
        TestingSource::new(vec![
            s("a", 1, 1.5),
            s("a", 2, -2.0),
            s("b", 3, 0.5),
            s("a", 4, 3.25),
            s("b", 5, f64::NAN),
            s("c", 6, 2.0),
            s("c", 7, 2.0),
        ]),
    );
    let (sink, out) = TestingSink::new();
    let mx = inp
        .max_final_by("max", |r: &(u32, f64)| r.1)
        .map("tag_max", |kv| to_repr(&("max", kv)));
    let mn = inp
        .min_final_by("min", |r: &(u32, f64)| r.1)
        .map("tag_min", |kv| to_repr(&("min", kv)));
    mx.merge("both", [&mn]).output("out", sink);
    cluster_main(&flow, &[], 0, 2).unwrap();
    let mut got = out.take();
    got.sort();
    let want: Vec<String> = bytewax_output("minmax_by.txt")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(got, want);
}

// ---- a custom binary's own name and version -------------------------------------------

/// `examples/custom_flow.rs` names itself with `FlowRegistry::named`.
#[test]
fn custom_binary_uses_its_own_name_and_version() {
    let o = run_with_timeout(example("custom_flow").arg("--version"));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "custom_flow 1.0.0\n");
    let o = run_with_timeout(example("custom_flow").arg("--help"));
    let help = stdout(&o);
    assert!(help.contains("Usage: custom_flow"), "{help}");
    assert!(help.contains("Squares and parities"), "{help}");
    assert!(!help.contains("waxfast"), "{help}");
    let o = run_with_timeout(example("custom_flow").arg("nosuchflow"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("(see `custom_flow --list`)"),
        "{}",
        stderr(&o)
    );
    let o = run_with_timeout(example("custom_flow").arg("recovery"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("usage: custom_flow recovery init DIR COUNT"));
}

#[test]
fn a_process_id_past_a_single_address_names_the_only_valid_id() {
    let o = run_with_timeout(util::waxfast().args(["simple", "-i", "1", "-a", "127.0.0.1:1"]));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("the only valid id is 0"), "{err}");
    assert!(!err.contains("0..0"), "{err}");
}

// ---- sinks and sources -------------------------------------------------------------------

/// `name: line` for every line of every file of `dir`, files in sorted order.
fn listing(dir: &Path, sep: Option<char>) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = String::new();
    for n in names {
        let text = std::fs::read_to_string(dir.join(&n)).unwrap();
        match sep {
            None => text
                .lines()
                .for_each(|l| out.push_str(&format!("{n}: {l}\n"))),
            Some(_) => out.push_str(&format!("{n}: {text}\n")),
        }
    }
    out
}

#[test]
fn dir_sink_bytewax_names_files_and_assigns_keys_as_bytewax() {
    use waxfast::connectors::files::DirSink;
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("end")).unwrap();
        let flow = Dataflow::new("dirsink_assign");
        let mut items: Vec<(String, String)> = (0..30)
            .map(|i| (format!("key{i}"), format!("v{i}")))
            .collect();
        items.push(("key3".into(), "again".into()));
        let inp = flow.input("inp", TestingSource::new(items));
        inp.output("out", DirSink::bytewax(dir.path(), 12));
        inp.output(
            "out_end",
            DirSink::bytewax(dir.path().join("end"), 2)
                .file_namer(|i, n| format!("f{i}of{n}.txt"))
                .end(";"),
        );
        cluster_main(&flow, &[], 0, workers).unwrap();
        assert_eq!(
            listing(dir.path(), None),
            bytewax_output("dirsink_assign.txt"),
            "-w{workers}"
        );
        assert_eq!(
            listing(&dir.path().join("end"), Some(';')),
            bytewax_output("dirsink_end.txt"),
            "-w{workers}"
        );
    }
}

#[test]
fn dir_source_default_glob_and_recursive_glob_read_what_bytewax_reads() {
    use waxfast::connectors::files::DirSource;
    let root = tempfile::tempdir().unwrap();
    for (rel, text) in [
        ("flat/one.txt", "f1\nf2\n"),
        ("flat/two.log", "f3\n"),
        ("tree/a.txt", "a1\n"),
        ("tree/b.log", "b1\n"),
        ("tree/sub/c.txt", "c1\nc2\n"),
        ("tree/sub/deeper/d.txt", "d1\n"),
    ] {
        let p = root.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    for workers in [1, 2] {
        let flow = Dataflow::new("dirsource_glob");
        let (sink, out) = TestingSink::new();
        let flat = flow
            .input("flat", DirSource::all(root.path().join("flat")))
            .map("tag_flat", |x| to_repr(&("flat", x)));
        let deep = flow
            .input("deep", DirSource::new(root.path().join("tree"), "**/*.txt"))
            .map("tag_deep", |x| to_repr(&("deep", x)));
        flat.merge("both", [&deep]).output("out", sink);
        cluster_main(&flow, &[], 0, workers).unwrap();
        let mut got = out.take();
        got.sort();
        let want: Vec<String> = bytewax_output("dirsource_glob.txt")
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(got, want, "-w{workers}");
    }
}

/// A `CsvRow` as Python prints the dict `DictReader` makes of it.
fn dict_repr(row: &waxfast::connectors::csv::CsvRow) -> String {
    let mut parts: Vec<String> = row
        .headers()
        .enumerate()
        .map(|(i, h)| format!("{}: {}", to_repr(h), to_repr(&row.get_index(i))))
        .collect();
    let extra: Vec<&str> = row.extra().collect();
    if !extra.is_empty() {
        parts.push(format!("None: {}", to_repr(&extra)));
    }
    format!("{{{}}}", parts.join(", "))
}

#[test]
fn csv_source_dialect_and_ragged_rows_read_as_bytewax_reads_them() {
    use waxfast::connectors::csv::CsvSource;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.csv");
    std::fs::write(
        &path,
        "name;note;n\nada;'semi;colon';1\nbob;short\ncy;x;3;extra;more\n\ndee;'it''s';4\n",
    )
    .unwrap();
    let flow = Dataflow::new("csv_dialect");
    let (sink, out) = TestingSink::new();
    flow.input(
        "inp",
        CsvSource::new(&path)
            .delimiter(b';')
            .quote(b'\'')
            .flexible(),
    )
    .map("repr", |row| dict_repr(&row))
    .output("out", sink);
    run_main(&flow).unwrap();
    let got: String = out.take().iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(got, bytewax_output("csv_dialect.txt"));

    // Typed rows: a missing column is a `None` field.
    #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
    struct Row {
        name: String,
        n: Option<u32>,
    }
    let flow = Dataflow::new("csv_typed");
    let (sink, out) = TestingSink::new();
    flow.input(
        "inp",
        CsvSource::typed::<Row>(&path)
            .delimiter(b';')
            .quote(b'\'')
            .flexible(),
    )
    .output("out", sink);
    run_main(&flow).unwrap();
    let names: Vec<(String, Option<u32>)> = out.take().into_iter().map(|r| (r.name, r.n)).collect();
    let s = String::from;
    assert_eq!(
        names,
        vec![
            (s("ada"), Some(1)),
            (s("bob"), None),
            (s("cy"), Some(3)),
            (s("dee"), Some(4))
        ]
    );

    // Without `flexible` the short row fails the run, naming the file and line.
    let flow = Dataflow::new("csv_strict");
    let (sink, _out) = TestingSink::new();
    flow.input("inp", CsvSource::new(&path).delimiter(b';').quote(b'\''))
        .output("out", sink);
    let err = run_main(&flow).unwrap_err().to_string();
    assert!(
        err.contains("d.csv: line 3: the row has 2 fields, but the header has 3"),
        "{err}"
    );
}

#[test]
fn three_way_join_window_matches_bytewax() {
    use chrono::{DateTime, TimeDelta, Utc};
    use waxfast::operators::window::{EventClock, TumblingWindower};
    use waxfast::operators::JoinSide3;
    type Tagged = (DateTime<Utc>, String);
    type Reading = (DateTime<Utc>, f64);
    let t0 = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let at = move |s| t0 + TimeDelta::seconds(s);
    for workers in [1, 2] {
        let flow = Dataflow::new("join_window3");
        let k = || "k".to_string();
        let s = String::from;
        let a = flow.input(
            "a",
            TestingSource::new(vec![(k(), (at(1), s("a1"))), (k(), (at(12), s("a2")))]),
        );
        let b = flow.input(
            "b",
            TestingSource::new(vec![(k(), (at(2), s("b1"))), (k(), (at(3), s("b2")))]),
        );
        let c = flow.input(
            "c",
            TestingSource::new(vec![(k(), (at(4), 1.5)), (k(), (at(15), 2.5))]),
        );
        let ts = |v: &JoinSide3<Tagged, Tagged, Reading>| match v {
            JoinSide3::A(x) | JoinSide3::B(x) => x.0,
            JoinSide3::C(x) => x.0,
        };
        let (sink, out) = TestingSink::new();
        let mut rows = Vec::new();
        for (mode, insert, emit) in [
            ("final", JoinInsert::Product, JoinEmit::Final),
            ("complete", JoinInsert::Last, JoinEmit::Complete),
        ] {
            let j = a.join_window(
                &format!("j_{mode}"),
                (&b, &c),
                EventClock::new(ts, TimeDelta::seconds(60)),
                TumblingWindower::new(TimeDelta::seconds(10), t0),
                insert,
                emit,
                true,
            );
            rows.push(
                j.down
                    .map(&format!("names_{mode}"), move |(key, (w, (x, y, z)))| {
                        let row = (x.map(|v| v.1), y.map(|v| v.1), z.map(|v| v.1));
                        to_repr(&(mode, key, w, row))
                    }),
            );
        }
        rows[0].merge("both", [&rows[1]]).output("out", sink);
        cluster_main(&flow, &[], 0, workers).unwrap();
        let mut got = out.take();
        got.sort();
        let want: Vec<String> = bytewax_output("join_window3.txt")
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(got, want, "-w{workers}");
    }
}

// ---- polling sources: end, resume ----------------------------------------------------------

/// Bytewax's `SimplePollingSource.snapshot` / `resume`: a run that fails after item 10
/// resumes the getter's saved state, and the exactly-once `FileSink` ends up holding
/// every item once, whichever epoch the last snapshot was taken in.
#[test]
fn polling_source_state_resumes_after_a_failure_exactly_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use waxfast::connectors::files::FileSink;
    use waxfast::connectors::polling::{Polled, SimplePollingSource};
    use waxfast::recovery::{init, RecoveryConfig};
    use waxfast::{run_main_with, RunConfig};

    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    init(&state_dir, 1).unwrap();
    let out_path = dir.path().join("out.txt");
    let failed_once = Arc::new(AtomicBool::new(false));
    let flag = failed_once.clone();
    let source = SimplePollingSource::with_state(Duration::ZERO, 0u32, move |next: &mut u32| {
        if *next == 10 && !flag.swap(true, Ordering::SeqCst) {
            return Err("the endpoint went away".into());
        }
        if *next == 20 {
            return Ok(Polled::End);
        }
        *next += 1;
        Ok(Polled::Item(*next - 1))
    });
    let flow = Dataflow::new("poll_resume");
    flow.input("inp", source)
        .key_on("key", |_| "all")
        .output("out", FileSink::new(&out_path));
    let config = RunConfig::default()
        .epoch_interval(Duration::ZERO)
        .recovery(RecoveryConfig::new(&state_dir));
    let err = run_main_with(&flow, &config).unwrap_err();
    assert!(err.to_string().contains("the endpoint went away"), "{err}");
    assert!(failed_once.load(Ordering::SeqCst));
    run_main_with(&flow, &config).unwrap();
    let text = std::fs::read_to_string(&out_path).unwrap();
    let want: String = (0..20).map(|i| format!("{i}\n")).collect();
    assert_eq!(text, want);
}

#[test]
fn example_wordcount_prints_what_bytewax_prints() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bytewax_outputs/examples/sample_data/wordcount.txt");
    let o = run_with_timeout(example("wordcount").arg(sample));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), bytewax_output("wordcount_w1.txt"));
}
