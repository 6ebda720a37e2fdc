//! Recovery: snapshots, crashes (SIGKILL at random moments) and resumes, rescaling,
//! garbage collection, and Bytewax's `recovery_demo`.

mod util;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use util::{run_with_timeout, stderr, waxfast};
use waxfast::connectors::testing::{TestEvent, TestingSink, TestingSource};
use waxfast::recovery::{init, RecoveryConfig};
use waxfast::{cluster_main_with, run_main_with, Dataflow, Error, RunConfig};

/// A small deterministic generator (tests must be reproducible).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// A text of `lines` lines of 4 words over `vocabulary` words.
fn write_words(path: &Path, lines: usize, vocabulary: u64, seed: u64) {
    let mut rng = Lcg(seed);
    let mut text = String::new();
    for _ in 0..lines {
        let words: Vec<String> = (0..4)
            .map(|_| format!("w{}", rng.next() % vocabulary))
            .collect();
        text.push_str(&words.join(" "));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn recovery_demo_flow(sink: TestingSink<(&'static str, i32)>) -> Dataflow {
    let inp = vec![
        TestEvent::Item(("a", 1)),
        TestEvent::Item(("b", 2)),
        TestEvent::Item(("a", 3)),
        TestEvent::Abort,
        TestEvent::Item(("b", 4)),
        TestEvent::Item(("a", 5)),
    ];
    let flow = Dataflow::new("recovery_demo");
    flow.input("inp", TestingSource::events(inp))
        .stateful_map("sum", |st: Option<i32>, v: i32| {
            let t = st.unwrap_or(0) + v;
            (Some(t), t)
        })
        .output("out", sink);
    flow
}

/// Reference `recovery_demo.py` (outputs/recovery_demo.txt): a running sum aborted
/// mid-stream by the source, resumed from the snapshots with the same flow object (so
/// the ABORT marker does not fire again).
#[test]
fn reference_recovery_demo() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 2).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["part-0.sqlite3", "part-1.sqlite3"]);

    let (sink, out) = TestingSink::new();
    let flow = recovery_demo_flow(sink);
    let config = RunConfig::default()
        .epoch_interval(Duration::ZERO)
        .recovery(RecoveryConfig::new(dir.path()));
    let err = run_main_with(&flow, &config).unwrap_err();
    assert!(
        matches!(&err, Error::Step { step_id, .. } if step_id == "recovery_demo.inp"),
        "{err}"
    );
    assert_eq!(
        out.take(),
        vec![("a", 1), ("b", 2), ("a", 4)],
        "execution 1"
    );
    run_main_with(&flow, &config).unwrap();
    assert_eq!(
        out.take(),
        vec![("b", 6), ("a", 9)],
        "execution 2 (resumed)"
    );
    // Bytewax prints [('a', 14)] here: it replays the last item into a state that
    // already holds it (9 + 5). The input was complete; waxfast resumes after it.
    run_main_with(&flow, &config).unwrap();
    assert_eq!(out.take(), vec![], "execution 3 (after the end)");
}

/// The same scenario where the abort comes in the very first epoch (Bytewax's #181 lost
/// data here): nothing was committed, so the resumed run starts from the beginning.
#[test]
fn a_failure_in_the_first_epoch_resumes_without_skipping_data() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 1).unwrap();
    let (sink, out) = TestingSink::new();
    let flow = recovery_demo_flow(sink);
    // One long epoch: the abort happens before any epoch ends.
    let config = RunConfig::default()
        .epoch_interval(Duration::from_secs(3600))
        .recovery(RecoveryConfig::new(dir.path()));
    assert!(run_main_with(&flow, &config).is_err());
    assert_eq!(out.take(), vec![("a", 1), ("b", 2), ("a", 4)]);
    run_main_with(&flow, &config).unwrap();
    // At least once for a dynamic sink: the first epoch is replayed in full.
    assert_eq!(
        out.take(),
        vec![("a", 1), ("b", 2), ("a", 4), ("b", 6), ("a", 9)]
    );
}

/// A running sum per key over `items`, with EOF markers at `stops` (each execution
/// stops cleanly at the next one; a resumed run continues after it).
fn sums_flow(
    items: &[(String, u64)],
    stops: &[usize],
    sink: TestingSink<(String, u64)>,
) -> Dataflow {
    let mut events = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if stops.contains(&i) {
            events.push(TestEvent::Eof);
        }
        events.push(TestEvent::Item(it.clone()));
    }
    let flow = Dataflow::new("sums");
    flow.input("inp", TestingSource::events(events).batch_size(7))
        .stateful_map("sum", |st: Option<u64>, v: u64| {
            let t = st.unwrap_or(0) + v;
            (Some(t), t)
        })
        .output("out", sink);
    flow
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Rescaling: state snapshotted by 4 workers is resumed by 2, then by 1; every key's
/// state follows it to its new worker, and the output equals one uninterrupted run's.
#[test]
fn state_saved_by_four_workers_resumes_on_two_then_one() {
    let mut rng = Lcg(7);
    let items: Vec<(String, u64)> = (0..3000)
        .map(|_| (format!("k{}", rng.next() % 97), rng.next() % 1000))
        .collect();
    let (sink, out) = TestingSink::new();
    let reference = sums_flow(&items, &[], sink);
    run_main_with(&reference, &RunConfig::default().pin(false)).unwrap();
    let expected = sorted(out.take());

    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 3).unwrap();
    let (sink, out) = TestingSink::new();
    let flow = sums_flow(&items, &[1000, 2000], sink);
    let config = RunConfig::default()
        .pin(false)
        .epoch_interval(Duration::from_millis(1))
        .recovery(RecoveryConfig::new(dir.path()));
    let mut got = Vec::new();
    for workers in [4, 2, 1] {
        cluster_main_with(&flow, &[], 0, workers, &config).unwrap();
        let part = out.take();
        assert!(!part.is_empty(), "each execution continues the stream");
        got.extend(part);
    }
    assert_eq!(sorted(got), expected);
}

/// Garbage collection: with a backup interval of 0 only the latest snapshot of each key
/// is kept; a key's discard is dropped once nothing is left for it to hide.
fn rows_per_key_after_a_run(backup: Duration) -> std::collections::BTreeMap<String, i64> {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 2).unwrap();
    let events: Vec<TestEvent<(&'static str, u32)>> = (0..40)
        .flat_map(|i| {
            [
                TestEvent::Item(("kept", i)),
                TestEvent::Item(("dropped", 1000 + i)),
                TestEvent::Pause(Duration::from_millis(30)),
            ]
        })
        .collect();
    let flow = Dataflow::new("gc");
    let (sink, _out) = TestingSink::new();
    flow.input("inp", TestingSource::events(events))
        .stateful_map("last", |_st: Option<u32>, v: u32| {
            // "dropped" is discarded at its last value.
            (if v == 1039 { None } else { Some(v) }, v)
        })
        .output("out", sink);
    let config = RunConfig::default()
        .epoch_interval(Duration::from_millis(10))
        .recovery(RecoveryConfig::new(dir.path()).backup_interval(backup));
    run_main_with(&flow, &config).unwrap();
    let mut per_key = std::collections::BTreeMap::new();
    for i in 0..2 {
        let conn =
            rusqlite::Connection::open(dir.path().join(format!("part-{i}.sqlite3"))).unwrap();
        let mut st = conn
            .prepare("SELECT step_id, state_key, count(*) FROM snaps WHERE kind = 0 GROUP BY 1, 2")
            .unwrap();
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    String::from_utf8(r.get::<_, Vec<u8>>(1)?).unwrap(),
                    r.get::<_, i64>(2)?,
                ))
            })
            .unwrap();
        for r in rows {
            let (step, key, n) = r.unwrap();
            assert_eq!(step, "gc.last");
            per_key.insert(key, n);
        }
    }
    per_key
}

#[test]
fn garbage_collection_keeps_only_the_latest_snapshots() {
    let per_key = rows_per_key_after_a_run(Duration::ZERO);
    // 40 epochs changed each key; one row each is left.
    assert_eq!(per_key.get("kept"), Some(&1), "{per_key:?}");
    assert_eq!(per_key.get("dropped"), None, "{per_key:?}");
}

/// With a backup interval, superseded snapshots younger than it are kept, so a backup
/// of the partitions taken meanwhile can still be resumed.
#[test]
fn a_backup_interval_keeps_superseded_snapshots() {
    let per_key = rows_per_key_after_a_run(Duration::from_secs(3600));
    assert!(per_key.get("kept").is_some_and(|&n| n > 1), "{per_key:?}");
    assert!(
        per_key.get("dropped").is_some_and(|&n| n > 1),
        "{per_key:?}"
    );
}

fn window_flow(abort: bool, sink: TestingSink<(String, (i64, u64))>) -> Dataflow {
    use waxfast::operators::window::{chrono, EventClock, TumblingWindower};
    let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let at = |s: i64| t0 + chrono::TimeDelta::seconds(s);
    let mut events: Vec<TestEvent<(String, chrono::DateTime<chrono::Utc>)>> = Vec::new();
    for s in [1, 2, 11, 3, 12, 25] {
        events.push(TestEvent::Item(("k".to_string(), at(s))));
        events.push(TestEvent::Item(("j".to_string(), at(s + 1))));
        if s == 11 && abort {
            events.push(TestEvent::Abort);
        }
    }
    let flow = Dataflow::new("win");
    flow.input("inp", TestingSource::events(events))
        .count_window(
            "count",
            EventClock::new(
                |e: &(String, chrono::DateTime<chrono::Utc>)| e.1,
                chrono::TimeDelta::seconds(10),
            ),
            TumblingWindower::new(chrono::TimeDelta::seconds(10), t0),
            |e| e.0.clone(),
        )
        .down
        .output("out", sink);
    flow
}

/// A window step's state (clock, windower, open windows' accumulators) is snapshotted
/// and resumed: windows open when the run failed are counted in full by the resumed run.
#[test]
fn windows_open_at_a_failure_are_completed_by_the_resumed_run() {
    let (sink, out) = TestingSink::new();
    run_main_with(&window_flow(false, sink), &RunConfig::default()).unwrap();
    let expected = sorted(out.take());
    assert!(
        expected.contains(&("k".to_string(), (0, 3))),
        "{expected:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), 2).unwrap();
    let (sink, out) = TestingSink::new();
    let flow = window_flow(true, sink);
    let config = RunConfig::default()
        .pin(false)
        .epoch_interval(Duration::ZERO)
        .recovery(RecoveryConfig::new(dir.path()));
    assert!(cluster_main_with(&flow, &[], 0, 2, &config).is_err());
    let mut got = out.take();
    assert!(
        !got.contains(&("k".to_string(), (0, 3))),
        "window 0 of k was still open at the failure"
    );
    // Resumed with another worker count: the keys' windows move with them.
    run_main_with(&flow, &config).unwrap();
    got.extend(out.take());
    assert_eq!(sorted(got), expected);
}

// ---- crashes of the CLI -----------------------------------------------------------

/// Runs `waxfast ARGS` in its own process group (so a kill reaches the children of
/// `-p`).
fn spawn(args: &[String]) -> Child {
    let mut cmd = waxfast();
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    cmd.spawn().expect("spawn waxfast")
}

fn kill_group(child: &mut Child) {
    // Kills exactly the process group this test started.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
    // The launcher's children (`-p`) are not ours to wait for, and a killed process
    // holds its recovery lock until its exit has closed its files: the next run starts
    // only once none of the group is alive (a zombie has closed them).
    let deadline = Instant::now() + Duration::from_secs(10);
    while group_alive(child.id()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether a process of group `pgid` is alive (not a zombie).
fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
            pgrp == Some(pgid) && state != Some("Z") && state != Some("X")
        })
}

/// Waits up to `delay` for `child`; true if it finished by itself (it must succeed).
fn wait_or_kill(child: &mut Child, delay: Duration) -> bool {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            assert!(status.success(), "the run failed: {err}");
            return true;
        }
        if start.elapsed() >= delay {
            kill_group(child);
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Case {
    _dir: tempfile::TempDir,
    input: PathBuf,
    output: PathBuf,
    state: PathBuf,
    reference: Vec<u8>,
}

/// A word file, its uninterrupted wordcount (written through FileSink without
/// recovery), and an initialised recovery directory.
fn case(lines: usize, partitions: usize) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    write_words(&input, lines, 3000, 11);
    let reference_path = dir.path().join("reference.txt");
    let flow = format!("wordcount:{},{}", input.display(), reference_path.display());
    let o = run_with_timeout(waxfast().args([&flow, "--no-pin"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let state = dir.path().join("state");
    init(&state, partitions).unwrap();
    Case {
        input,
        output: dir.path().join("out.txt"),
        state,
        reference: std::fs::read(&reference_path).unwrap(),
        _dir: dir,
    }
}

impl Case {
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut v = vec![
            format!(
                "wordcount:{},{}",
                self.input.display(),
                self.output.display()
            ),
            "-r".into(),
            self.state.display().to_string(),
            "--no-pin".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    /// Kills runs with `args_of(attempt)` after the delays given by `delay_of(attempt)`
    /// until one finishes; returns the number of kills.
    fn crash_until_done(
        &self,
        args_of: impl Fn(usize) -> Vec<String>,
        delay_of: impl Fn(usize) -> Duration,
    ) -> usize {
        for attempt in 0.. {
            // Bounded: after 60 kills, let the run finish.
            let delay = if attempt < 60 {
                delay_of(attempt)
            } else {
                Duration::from_secs(60)
            };
            let mut child = spawn(&args_of(attempt));
            if wait_or_kill(&mut child, delay) {
                return attempt;
            }
            eprintln!("killed run {attempt} after {delay:?}");
        }
        unreachable!()
    }

    fn assert_same_lines(&self, exact_order: bool) {
        let got = std::fs::read(&self.output).expect("the output file exists once done");
        assert!(
            !PathBuf::from(format!("{}.partial", self.output.display())).exists(),
            "the partial file was renamed"
        );
        if exact_order {
            assert!(
                got == self.reference,
                "the output differs from the reference"
            );
        } else {
            let lines = |b: &[u8]| {
                sorted(
                    String::from_utf8_lossy(b)
                        .lines()
                        .map(String::from)
                        .collect(),
                )
            };
            assert_eq!(lines(&got), lines(&self.reference));
        }
    }
}

fn random_delays(seed: u64) -> impl Fn(usize) -> Duration {
    move |attempt| {
        let mut rng = Lcg(seed ^ (attempt as u64).wrapping_mul(0x9e37_79b9));
        rng.next();
        // The first kill comes almost at once (in the first epoch); later ones anywhere
        // in a run, including while snapshots are being written (every 20 ms).
        let ms = if attempt == 0 {
            15
        } else {
            10 + rng.next() % 150
        };
        Duration::from_millis(ms)
    }
}

#[test]
fn wordcount_killed_at_random_moments_writes_the_exact_file_w1() {
    let c = case(400_000, 2);
    let kills = c.crash_until_done(|_| c.args(&["-s", "0.02"]), random_delays(1));
    assert!(kills >= 1);
    c.assert_same_lines(true);
}

#[test]
fn wordcount_killed_at_random_moments_writes_the_same_lines_w2() {
    let c = case(400_000, 3);
    let kills = c.crash_until_done(|_| c.args(&["-s", "0.02", "-w", "2"]), random_delays(2));
    assert!(kills >= 1);
    c.assert_same_lines(false);
}

#[test]
fn wordcount_killed_at_random_moments_writes_the_same_lines_p2() {
    let c = case(400_000, 3);
    let kills = c.crash_until_done(
        |_| c.args(&["-s", "0.02", "-p", "2", "-w", "1"]),
        random_delays(3),
    );
    assert!(kills >= 1);
    c.assert_same_lines(false);
}

/// Killed at random moments while the worker and process counts change from run to
/// run (4, 2, 1 workers; 2 processes): every resumed run loads the keys that route
/// to its workers.
#[test]
fn wordcount_killed_and_rescaled_writes_the_same_lines() {
    let c = case(400_000, 3);
    let shapes: [&[&str]; 4] = [&["-w", "4"], &["-w", "2"], &["-w", "1"], &["-p", "2"]];
    let kills = c.crash_until_done(
        |attempt| {
            let mut extra = vec!["-s", "0.02"];
            extra.extend_from_slice(shapes[attempt % shapes.len()]);
            c.args(&extra)
        },
        random_delays(4),
    );
    assert!(kills >= 1);
    c.assert_same_lines(false);
}

/// A crash in the first (long) epoch: nothing was committed but the execution itself;
/// the resumed run reads everything again and loses nothing (Bytewax's #181).
#[test]
fn wordcount_killed_in_the_first_epoch_resumes_from_the_start() {
    let c = case(400_000, 2);
    let mut child = spawn(&c.args(&["-s", "3600"]));
    assert!(!wait_or_kill(&mut child, Duration::from_millis(40)));
    let mut child = spawn(&c.args(&["-s", "3600"]));
    assert!(wait_or_kill(&mut child, Duration::from_secs(60)));
    c.assert_same_lines(true);
    // A rerun after the end reads nothing and leaves the file as it was.
    let o = run_with_timeout(waxfast().args(c.args(&["-s", "0.02", "-w", "2"])));
    assert!(o.status.success(), "{}", stderr(&o));
    c.assert_same_lines(true);
}

/// Crashes in the middle of writing a snapshot, deterministically: the snapshot writer
/// aborts the process after N partition commits (a test hook), so some partitions hold
/// the new rows and fronts and the others do not. Every resume must still agree.
#[test]
fn wordcount_aborted_between_the_partitions_of_a_snapshot_writes_the_same_lines() {
    let c = case(200_000, 3);
    let mut aborted = 0;
    for n in [2u64, 4, 5, 7, 8, 10, 11, 13] {
        let mut cmd = waxfast();
        cmd.args(c.args(&["-s", "0.01", "-w", "2"]))
            .env("WAXFAST_FAULT_ABORT_AFTER_COMMITS", n.to_string());
        let o = run_with_timeout(&mut cmd);
        if !o.status.success() {
            aborted += 1;
        }
    }
    eprintln!("{aborted} of 8 runs aborted mid-snapshot");
    assert!(aborted >= 1, "the hook aborted at least one run");
    let o = run_with_timeout(waxfast().args(c.args(&["-s", "0.01", "-w", "3"])));
    assert!(o.status.success(), "{}", stderr(&o));
    c.assert_same_lines(false);
}

// ---- input integrity (issue 15) ----------------------------------------------------

fn run_case(c: &Case, extra: &[&str]) -> std::process::Output {
    run_with_timeout(waxfast().args(c.args(extra)))
}

fn assert_refused(o: &std::process::Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(o.stdout.is_empty(), "nothing is written before the check");
    for n in needles {
        assert!(err.contains(n), "stderr should mention {n:?}: {err}");
    }
}

/// The positions of execution `ex`'s committed cut exist: every partition holds a front
/// of worker 0 (`-w1`), and some input position is tagged at or below the smallest.
fn cut_has_positions(state: &Path, partitions: usize) -> bool {
    let mut fronts = Vec::new();
    let mut positions = Vec::new();
    for i in 0..partitions {
        let conn = rusqlite::Connection::open(state.join(format!("part-{i}.sqlite3"))).unwrap();
        let ex: Option<i64> = conn
            .query_row("SELECT max(ex) FROM execs", [], |r| r.get(0))
            .unwrap();
        let front: Option<i64> = conn
            .query_row(
                "SELECT epoch FROM fronts WHERE ex = ?1 AND worker = 0",
                [ex.unwrap_or(0)],
                |r| r.get(0),
            )
            .ok();
        fronts.push(front);
        let mut st = conn
            .prepare("SELECT epoch FROM snaps WHERE kind = 1")
            .unwrap();
        positions.extend(
            st.query_map([], |r| r.get::<_, i64>(0))
                .unwrap()
                .map(Result::unwrap),
        );
    }
    let Some(min) = fronts
        .iter()
        .copied()
        .collect::<Option<Vec<i64>>>()
        .and_then(|f| f.into_iter().min())
    else {
        return false;
    };
    positions.iter().any(|&e| e <= min)
}

/// Issue 15, case 1: killed after a snapshot, the input appended to, rerun: the saved
/// positions no longer describe the file (its byte ranges moved), so the run is refused
/// before it writes anything, naming the path and both lengths. Put back, it resumes
/// and writes the exact reference.
#[test]
fn a_resume_over_an_appended_input_is_refused_then_resumes_once_restored() {
    let c = case(400_000, 2);
    let original = std::fs::read(&c.input).unwrap();
    let mut killed = false;
    for attempt in 0..40u64 {
        let mut child = spawn(&c.args(&["-s", "0.005"]));
        if wait_or_kill(&mut child, Duration::from_millis(20 + attempt * 3)) {
            // Completed: start again from an empty directory.
            std::fs::remove_dir_all(&c.state).unwrap();
            init(&c.state, 2).unwrap();
            let _ = std::fs::remove_file(&c.output);
            continue;
        }
        if cut_has_positions(&c.state, 2) {
            killed = true;
            break;
        }
    }
    assert!(killed, "a kill left a snapshot holding input positions");
    let mut appended = original.clone();
    appended.extend_from_slice(b"x\n");
    std::fs::write(&c.input, &appended).unwrap();
    let o = run_case(&c, &["-s", "0.005"]);
    assert_refused(
        &o,
        &[
            &c.input.display().to_string(),
            "changed since the snapshot",
            &format!(
                "it had {} bytes then, it has {} now",
                original.len(),
                appended.len()
            ),
            "recovery init",
        ],
    );
    assert!(!c.output.exists());
    std::fs::write(&c.input, &original).unwrap();
    let o = run_case(&c, &["-s", "0.005"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.assert_same_lines(true);
}

/// The same check against a completed run (its positions are at the ends of the
/// ranges), deterministically: a same-length rewrite of bytes already read, another
/// file of the same name, and a file that became a FIFO are refused; the unchanged
/// file is accepted.
#[test]
fn a_resume_over_a_rewritten_or_replaced_input_is_refused_naming_what_changed() {
    let c = case(100_000, 2);
    let o = run_case(&c, &["-s", "0.01"]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.assert_same_lines(true);
    let original = std::fs::read(&c.input).unwrap();
    // Same length, other content.
    let mut rewritten = original.clone();
    rewritten[100] = if rewritten[100] == b'9' { b'8' } else { b'9' };
    std::fs::write(&c.input, &rewritten).unwrap();
    let o = run_case(&c, &[]);
    assert_refused(&o, &[&c.input.display().to_string(), "are not the same"]);
    // Another file of the same name.
    write_words(&c.input, 50_000, 10, 99);
    let o = run_case(&c, &[]);
    assert_refused(
        &o,
        &[&c.input.display().to_string(), "changed since the snapshot"],
    );
    // Not a regular file any more.
    std::fs::remove_file(&c.input).unwrap();
    let made = Command::new("mkfifo").arg(&c.input).status().unwrap();
    assert!(made.success());
    let o = run_case(&c, &[]);
    assert_refused(&o, &["is not one now"]);
    std::fs::remove_file(&c.input).unwrap();
    // Unchanged: the completed run reads nothing and leaves its file as it was.
    std::fs::write(&c.input, &original).unwrap();
    let o = run_case(&c, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.assert_same_lines(true);
}

/// Issue 15, case 2: a second run on a directory in use is refused at once, naming the
/// lock file and the pid holding it; once the first run is killed (SIGKILL: no cleanup
/// of any kind) the directory is free again.
#[test]
fn a_second_run_on_a_recovery_directory_in_use_is_refused_naming_the_holder() {
    let c = case(1000, 2);
    // The first run blocks opening a FIFO nobody writes: it holds the lock meanwhile.
    let fifo = c.state.parent().unwrap().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let flow = format!("wordcount:{},{}", fifo.display(), c.output.display());
    let st = c.state.display().to_string();
    let mut first = spawn(&[flow.clone(), "-r".into(), st.clone(), "--no-pin".into()]);
    let lock = c.state.join("lock-0");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != first.id().to_string() {
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = run_with_timeout(waxfast().args([&flow, "-r", &st, "--no-pin"]));
    assert_refused(
        &o,
        &[
            &lock.display().to_string(),
            &format!("locked by process {}", first.id()),
            "in use",
        ],
    );
    // A two-process run needs lock-0 as well.
    let o = run_with_timeout(waxfast().args([&flow, "-r", &st, "-p", "2"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("lock-0"), "{}", stderr(&o));
    kill_group(&mut first);
    let o = run_case(&c, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    c.assert_same_lines(true);
}

/// Issue 15, case 6: a completed job rerun with another output file would write an
/// empty file with exit 0; it is refused, saying why and what to do.
#[test]
fn a_completed_job_rerun_with_a_new_output_is_refused_saying_why() {
    let c = case(1000, 2);
    assert!(run_case(&c, &[]).status.success());
    let other = c.state.parent().unwrap().join("other.txt");
    let flow = format!("wordcount:{},{}", c.input.display(), other.display());
    let o = run_with_timeout(waxfast().args([&flow, "-r", &c.state.display().to_string()]));
    assert_refused(
        &o,
        &["completed", &other.display().to_string(), "without -r"],
    );
    assert!(!other.exists());
    assert!(!PathBuf::from(format!("{}.partial", other.display())).exists());
}
