//! Multi-process clusters over real TCP on 127.0.0.1: every test starts real processes.
//!
//! Flows defined here run in child processes of this test binary: a test re-runs its
//! own executable (only the `child` test, with `WAXFAST_TEST_CHILD` describing the flow,
//! the process id, the addresses and the worker count), each child runs its process of
//! the cluster with `cluster_main` and prints its sink's items, and the parent compares
//! the union of their output with a one-worker run. The CLI tests run the `waxfast`
//! binary itself (`-p`, `-i/-a`), including the failure cases.

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use waxfast::base::frame::{FrameHeader, FrameKind, HEADER_LEN, MAX_FRAME};
use waxfast::connectors::files::DirSink;
use waxfast::connectors::testing::{TestingOutput, TestingSink, TestingSource};
use waxfast::net::hello::Hello;
use waxfast::operators::{JoinEmit, JoinInsert};
use waxfast::transport::Mode;
use waxfast::{cluster_main_with, Dataflow, Error, RunConfig};

use util::{cli_process, finish, free_addresses, run_with_timeout, stderr, stdout, waxfast};

const CHILD_ENV: &str = "WAXFAST_TEST_CHILD";

// ---- flows -------------------------------------------------------------------------------

const LINES: [&str; 4] = [
    "the quick brown fox",
    "jumps over the lazy dog",
    "The dog barks",
    "the end",
];

/// Builds flow `name`; its output items are collected as their `Debug` text.
fn build(name: &str, arg: &str) -> (Dataflow, Option<TestingOutput<String>>) {
    let flow = Dataflow::new(name);
    let out = match name {
        "wordcount" => {
            let words =
                flow.input("inp", TestingSource::new(LINES))
                    .flat_map("split", |l: &str| {
                        l.to_lowercase()
                            .split_whitespace()
                            .map(String::from)
                            .collect::<Vec<_>>()
                    });
            debug(&words.count_final("count", |w: String| w), "out")
        }
        "stateful_map_sum" => {
            let events = vec![("a", 1), ("b", 10), ("a", 2), ("a", -3), ("a", 5), ("b", 1)];
            let sums = flow.input("inp", TestingSource::new(events)).stateful_map(
                "sum",
                |state: Option<i64>, value: i64| {
                    let total = state.unwrap_or(0) + value;
                    ((total != 0).then_some(total), total)
                },
            );
            debug(&sums, "out")
        }
        "join_modes" => {
            let owned = |(k, v): (&'static str, &'static str)| (k, v.to_string());
            let names = flow
                .input(
                    "names",
                    TestingSource::new(vec![("1", "alice"), ("2", "bob"), ("1", "alicia")]),
                )
                .map("names_owned", owned);
            let emails = flow
                .input(
                    "emails",
                    TestingSource::new(vec![("1", "a@x.io"), ("3", "c@x.io"), ("2", "b@x.io")]),
                )
                .map("emails_owned", owned);
            let mut all = Vec::new();
            for (mode, insert, emit) in [
                ("complete", JoinInsert::Last, JoinEmit::Complete),
                ("running", JoinInsert::Last, JoinEmit::Running),
                ("final", JoinInsert::Last, JoinEmit::Final),
                ("product", JoinInsert::Product, JoinEmit::Final),
            ] {
                let m = mode.to_string();
                all.push(
                    names
                        .join(&format!("join_{mode}"), &emails, insert, emit)
                        .map(&format!("tag_{mode}"), move |x| format!("{m} {x:?}")),
                );
            }
            let merged = all[0].merge("all", all[1..].iter().collect::<Vec<_>>());
            debug(&merged, "out")
        }
        // Every record crosses exchanges several times: redistribute, a keyed running
        // sum, a keyed count with string keys, and a fixed-partitioned sink.
        "mixed" => {
            let n: u64 = 30_000;
            let keyed = flow
                .input(
                    "inp",
                    TestingSource::new((0..n).collect::<Vec<_>>()).batch_size(97),
                )
                .redistribute("spread")
                .key_on("key", |x| format!("k{}", x % 101));
            let sums = keyed.fold_final("sum", || 0u64, |acc, x| acc + x);
            let counts = keyed
                .map("val", |(k, _)| k)
                .count_final("count", |k: String| k)
                .map("fmt", |(k, c)| (k, c.to_string()));
            let maxes = keyed.max_final("max");
            if !arg.is_empty() {
                counts.output("files", DirSink::new(arg, 3));
            }
            debug(&sums.merge("m", [&maxes]), "out")
        }
        // window_count.py: a tumbling event-time count with one late item, on a system
        // clock that stands still.
        "window_count" => {
            use waxfast::operators::window::chrono::{DateTime, TimeDelta, Utc};
            use waxfast::operators::window::{EventClock, TestingClock, TumblingWindower};
            type Event = (String, DateTime<Utc>);
            let t = |s: i64| DateTime::from_timestamp(1_704_067_200 + s, 0).unwrap();
            let events: Vec<Event> = [
                ("a", 1),
                ("b", 2),
                ("a", 4),
                ("a", 11),
                ("b", 13),
                ("a", 25),
                ("b", 5),
                ("b", 26),
            ]
            .into_iter()
            .map(|(k, s)| (k.to_string(), t(s)))
            .collect();
            let frozen = TestingClock::new(DateTime::from_timestamp(1_900_000_000, 0).unwrap());
            let wo = flow.input("inp", TestingSource::new(events)).count_window(
                "count",
                EventClock::new(|e: &Event| e.1, TimeDelta::seconds(2)).with_time(frozen),
                TumblingWindower::new(TimeDelta::seconds(10), t(0)),
                |e: &Event| e.0.clone(),
            );
            let down = wo.down.map("d", |x| format!("DOWN {x:?}"));
            let late = wo.late.map("l", |x| format!("LATE {x:?}"));
            let meta = wo.meta.map("m", |x| format!("META {x:?}"));
            debug(&down.merge("all", [&late, &meta]), "out")
        }
        // Fails on the zero: `10 / x` (Bytewax's error_demo).
        "error_demo" => debug(
            &flow
                .input("inp", TestingSource::new(vec![1i64, 2, 0, 4]))
                .map("invert", |x| 10 / x),
            "out",
        ),
        other => panic!("unknown test flow {other}"),
    };
    (flow, out)
}

fn debug<T: waxfast::Data + std::fmt::Debug>(
    s: &waxfast::Stream<T>,
    step: &str,
) -> Option<TestingOutput<String>> {
    let (sink, out) = TestingSink::new();
    s.map(&format!("{step}_fmt"), |x| format!("{x:?}"))
        .output(step, sink);
    Some(out)
}

/// In a child: runs its process of the cluster, prints each output item on a line
/// starting `OUT ` and exits 0, or prints the error and exits 1.
#[test]
fn child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // an ordinary test run: nothing to do
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let (name, proc_id, addrs, workers, arg, transport) = (
        parts[0],
        parts[1].parse::<usize>().unwrap(),
        parts[2],
        parts[3].parse::<usize>().unwrap(),
        parts[4],
        parts[5].parse::<Mode>().unwrap(),
    );
    let addresses: Vec<String> = addrs.split(';').map(String::from).collect();
    let (flow, out) = build(name, arg);
    let config = RunConfig::default()
        .pin(false)
        .transport(transport)
        .connect_timeout(Duration::from_secs(20));
    let result = cluster_main_with(&flow, &addresses, proc_id, workers, &config);
    let mut o = std::io::stdout().lock();
    for item in out.map(|o| o.take()).unwrap_or_default() {
        writeln!(o, "OUT {item}").unwrap();
    }
    o.flush().unwrap();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("CHILD-ERROR {e}");
            std::process::exit(1)
        }
    }
}

fn spawn_child(name: &str, proc_id: usize, addrs: &[String], workers: usize, arg: &str) -> Child {
    spawn_child_over(name, proc_id, addrs, workers, arg, Mode::Auto)
}

fn spawn_child_over(
    name: &str,
    proc_id: usize,
    addrs: &[String],
    workers: usize,
    arg: &str,
    transport: Mode,
) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(
            CHILD_ENV,
            format!(
                "{name}|{proc_id}|{}|{workers}|{arg}|{transport}",
                addrs.join(";")
            ),
        )
        .env_remove("WAXFAST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs flow `name` as `procs` processes of `workers` workers; returns every process's
/// (success, output lines, stderr).
fn run_cluster(
    name: &str,
    procs: usize,
    workers: usize,
    arg: &str,
) -> Vec<(bool, Vec<String>, String)> {
    run_cluster_over(name, procs, workers, arg, Mode::Auto)
}

/// [`run_cluster`] over one transport; checks that no process left a shared-memory
/// segment behind.
fn run_cluster_over(
    name: &str,
    procs: usize,
    workers: usize,
    arg: &str,
    transport: Mode,
) -> Vec<(bool, Vec<String>, String)> {
    let addrs = free_addresses(procs);
    let children: Vec<Child> = (0..procs)
        .map(|i| spawn_child_over(name, i, &addrs, workers, arg, transport))
        .collect();
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    let results = children
        .into_iter()
        .map(|c| {
            let (ok, out, err) = finish(c, Duration::from_secs(60));
            let lines = out
                .lines()
                .filter_map(|l| l.strip_prefix("OUT "))
                .map(String::from)
                .collect();
            (ok, lines, err)
        })
        .collect();
    util::assert_no_segments_of(&pids);
    results
}

/// The flow's output on one worker, in this process.
fn one_worker(name: &str, arg: &str) -> Vec<String> {
    let (flow, out) = build(name, arg);
    waxfast::run_main(&flow).unwrap();
    let mut v = out.unwrap().take();
    v.sort();
    v
}

fn dir_lines(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        assert!(
            !p.to_string_lossy().ends_with(".partial"),
            "a finished run leaves no partial file: {p:?}"
        );
        v.extend(
            std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .map(String::from),
        );
    }
    v.sort();
    v
}

const SHAPES: [(usize, usize); 3] = [(2, 1), (2, 2), (3, 1)];
/// Every cluster shape runs over both transports.
const TRANSPORTS: [Mode; 2] = [Mode::Tcp, Mode::Shm];

fn assert_cluster_matches_one_worker(name: &str) {
    let expected = one_worker(name, "");
    assert!(!expected.is_empty());
    for (p, w) in SHAPES {
        for t in TRANSPORTS {
            let results = run_cluster_over(name, p, w, "", t);
            let mut got = Vec::new();
            for (i, (ok, lines, err)) in results.into_iter().enumerate() {
                assert!(ok, "{name} -p{p} -w{w} over {t}: process {i} failed: {err}");
                got.extend(lines);
            }
            got.sort();
            assert_eq!(got, expected, "{name} at -p{p} -w{w} over {t}");
        }
    }
}

// ---- reference flows across processes ---------------------------------------------------

#[test]
fn reference_wordcount_across_processes() {
    assert_cluster_matches_one_worker("wordcount");
}

#[test]
fn reference_stateful_map_sum_across_processes() {
    assert_cluster_matches_one_worker("stateful_map_sum");
}

#[test]
fn reference_join_modes_across_processes() {
    assert_cluster_matches_one_worker("join_modes");
}

#[test]
fn reference_window_count_across_processes() {
    let expected = one_worker("window_count", "");
    assert_eq!(expected.iter().filter(|l| l.contains("LATE")).count(), 1);
    assert_cluster_matches_one_worker("window_count");
}

#[test]
fn mixed_exchanges_and_a_dir_sink_across_processes() {
    let base = tempfile::tempdir().unwrap();
    let one = base.path().join("one");
    std::fs::create_dir(&one).unwrap();
    let expected = one_worker("mixed", one.to_str().unwrap());
    let expected_files = dir_lines(&one);
    assert_eq!(expected_files.len(), 101);
    for ((p, w), t) in SHAPES.into_iter().flat_map(|s| TRANSPORTS.map(|t| (s, t))) {
        let dir = base.path().join(format!("p{p}w{w}{t}"));
        std::fs::create_dir(&dir).unwrap();
        let results = run_cluster_over("mixed", p, w, dir.to_str().unwrap(), t);
        let mut got = Vec::new();
        for (i, (ok, lines, err)) in results.into_iter().enumerate() {
            assert!(ok, "-p{p} -w{w}: process {i} failed: {err}");
            got.extend(lines);
        }
        got.sort();
        assert_eq!(got, expected, "-p{p} -w{w}");
        assert_eq!(
            dir_lines(&dir),
            expected_files,
            "DirSink files at -p{p} -w{w}"
        );
    }
}

#[test]
fn a_failing_step_stops_every_process_and_each_says_why() {
    let results = run_cluster("error_demo", 2, 1, "");
    // The input is one partition, on worker 0: process 0 fails first.
    let (ok0, _, err0) = &results[0];
    let (ok1, _, err1) = &results[1];
    assert!(!ok0 && !ok1);
    assert!(
        err0.contains("CHILD-ERROR step \"error_demo.invert\" panicked"),
        "{err0}"
    );
    assert!(
        err1.contains(
            "CHILD-ERROR stopped because process 0 failed: step \"error_demo.invert\" panicked"
        ),
        "{err1}"
    );
}

#[test]
fn library_errors_name_the_problem() {
    let (flow, _) = build("wordcount", "");
    let addrs = vec!["127.0.0.1:1".to_string(), "not-an-address".to_string()];
    let start = Instant::now();
    let e = cluster_main_with(&flow, &addrs, 0, 1, &RunConfig::default()).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "refused before waiting"
    );
    assert!(
        matches!(&e, Error::Cluster(m) if m.contains("not-an-address") && m.contains("process 1")),
        "{e}"
    );
}

// ---- the CLI: -p, -i/-a ---------------------------------------------------------------

fn words_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("words.txt");
    let mut text = String::new();
    for i in 0..20_000u64 {
        text.push_str(&format!("w{} W{} the\n", i % 313, (i * 7) % 1000));
    }
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn cli_launcher_matches_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let file = words_file(dir.path());
    let flow = format!("wordcount:{}", file.display());
    let one = run_with_timeout(waxfast().args([flow.as_str(), "-w1"]));
    assert!(one.status.success(), "{}", stderr(&one));
    let mut expected: Vec<String> = stdout(&one).lines().map(String::from).collect();
    expected.sort();
    assert_eq!(expected.len(), 1001);
    for ((p, w), t) in SHAPES.into_iter().flat_map(|s| TRANSPORTS.map(|t| (s, t))) {
        let o = run_with_timeout(waxfast().args([
            flow.as_str(),
            "-p",
            &p.to_string(),
            "-w",
            &w.to_string(),
            "--no-pin",
            "--transport",
            &t.to_string(),
        ]));
        assert!(o.status.success(), "-p{p} -w{w} over {t}: {}", stderr(&o));
        let mut got: Vec<String> = stdout(&o).lines().map(String::from).collect();
        got.sort();
        assert_eq!(got, expected, "-p{p} -w{w} over {t}");
        util::assert_no_dead_segments();
    }
}

#[test]
fn cli_launcher_fails_when_a_process_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "fine words\n".repeat(1000)).unwrap();
    std::fs::write(dir.path().join("b.txt"), b"ok\n\xff\xfe bad\n").unwrap();
    let flow = format!("wordcount:{}", dir.path().display());
    let o = run_with_timeout(waxfast().args([flow.as_str(), "-p2", "-w1", "--no-pin"]));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("invalid UTF-8"), "{err}");
    assert!(err.contains("exited with code 1"), "{err}");
}

#[test]
fn cli_flags_of_the_launcher_are_checked() {
    let o = run_with_timeout(waxfast().args(["simple", "-p2", "-i0", "-a", "h:1;h:2"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("-p/--processes"), "{}", stderr(&o));
    let o = run_with_timeout(waxfast().args(["simple", "-p0"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("-p/--processes"), "{}", stderr(&o));
    let o = run_with_timeout(waxfast().args(["simple", "--connect-timeout", "x"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--connect-timeout"), "{}", stderr(&o));
}

#[test]
fn kill_9_of_one_process_stops_the_other_within_5_s() {
    for t in TRANSPORTS {
        let addrs = free_addresses(2);
        let flow = "bench_wordcount:2000000000,1000";
        let args = ["--transport", &t.to_string()];
        let p0 = cli_process(flow, 0, &addrs, &args);
        let mut p1 = cli_process(flow, 1, &addrs, &args);
        let pids = [p0.id(), p1.id()];
        // Let the cluster form and run.
        std::thread::sleep(Duration::from_millis(1500));
        assert!(p1.try_wait().unwrap().is_none(), "still running over {t}");
        p1.kill().unwrap(); // SIGKILL
        let killed = Instant::now();
        let (ok, _, err) = finish(p0, Duration::from_secs(5));
        assert!(killed.elapsed() < Duration::from_secs(5));
        assert!(!ok);
        assert!(
            err.contains(&format!("lost process 1 ({})", addrs[1])),
            "over {t}: {err}"
        );
        let _ = p1.wait();
        util::assert_no_segments_of(&pids);
    }
}

#[test]
fn a_peer_that_never_starts_fails_the_run_naming_it() {
    let addrs = free_addresses(3);
    let start = Instant::now();
    let o = run_with_timeout(waxfast().args([
        "simple",
        "-i",
        "1",
        "-a",
        &addrs.join(";"),
        "--connect-timeout",
        "1",
    ]));
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("did not form within 1s"), "{err}");
    assert!(err.contains(&format!("process 0 at {}", addrs[0])), "{err}");
    assert!(err.contains(&format!("process 2 at {}", addrs[2])), "{err}");
}

#[test]
fn mismatched_flow_or_worker_count_is_refused_by_both_sides() {
    for (flow1, extra1, both) in [
        ("bench_pipe:10", vec![], ["\"simple\"", "\"bench_pipe\""]),
        (
            "simple",
            vec!["-w", "2"],
            ["workers per process (-w) ", "but this process has "],
        ),
    ] {
        let addrs = free_addresses(2);
        let p0 = cli_process("simple", 0, &addrs, &["--connect-timeout", "10"]);
        let mut extra = extra1.clone();
        extra.extend(["--connect-timeout", "10"]);
        let p1 = cli_process(flow1, 1, &addrs, &extra);
        for p in [p0, p1] {
            let (ok, _, err) = finish(p, Duration::from_secs(20));
            assert!(!ok);
            for b in both {
                assert!(err.contains(b), "{err}");
            }
        }
    }
}

/// Plays process 0 of a two-process cluster by hand: accepts process 1's connection,
/// answers its hello with `answer(theirs)`, then sends `after`.
fn fake_process_0(
    listener: TcpListener,
    answer: impl FnOnce(Hello) -> Hello + Send + 'static,
    after: Vec<u8>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let (theirs, _) =
            Hello::read_from(&mut s, Instant::now() + Duration::from_secs(10)).unwrap();
        s.write_all(&answer(theirs).to_bytes()).unwrap();
        util::offer_tcp(&mut s);
        let _ = s.write_all(&after);
        // Keep the connection open until the peer hangs up.
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    })
}

fn as_process_0(mut h: Hello) -> Hello {
    h.process = 0;
    h
}

#[test]
fn a_duplicate_process_id_is_refused() {
    let addrs = free_addresses(3);
    let p0 = spawn_child("wordcount", 0, &addrs, 1, "");
    let (flow, _) = build("wordcount", "");
    let hello = waxfast::runtime::handshake_hello(&flow, 3, 1, 1, &RunConfig::default()).unwrap();
    // Two connections that both say they are process 1.
    let connect = || {
        let start = Instant::now();
        loop {
            match TcpStream::connect(&addrs[0]) {
                Ok(mut s) => {
                    s.write_all(&hello.to_bytes()).unwrap();
                    break s;
                }
                Err(_) if start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("process 0 never listened: {e}"),
            }
        }
    };
    let (a, b) = (connect(), connect());
    let (ok, _, err) = finish(p0, Duration::from_secs(20));
    assert!(!ok);
    assert!(err.contains("duplicate process id 1"), "{err}");
    drop((a, b));
}

#[test]
fn a_different_protocol_version_is_refused_naming_both() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![
        listener.local_addr().unwrap().to_string(),
        free_addresses(1).remove(0),
    ];
    let fake = fake_process_0(
        listener,
        |h| Hello {
            version: 99,
            ..as_process_0(h)
        },
        vec![],
    );
    let (ok, _, err) = finish(
        cli_process("simple", 1, &addrs, &[]),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "protocol version 99 but this process has {}",
            waxfast::net::hello::PROTOCOL_VERSION
        )),
        "{err}"
    );
    fake.join().unwrap();
}

#[test]
fn an_oversized_frame_is_refused_without_a_panic() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![
        listener.local_addr().unwrap().to_string(),
        free_addresses(1).remove(0),
    ];
    let mut h = FrameHeader::new(FrameKind::Data, 0, 0, 1, 1, 0);
    h.len = ((MAX_FRAME + 1) as u32).into();
    let bytes = zerocopy::IntoBytes::as_bytes(&h).to_vec();
    assert_eq!(bytes.len(), HEADER_LEN);
    let fake = fake_process_0(listener, as_process_0, bytes);
    let (ok, _, err) = finish(
        cli_process("bench_pipe:100000000", 1, &addrs, &[]),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(err.contains("lost process 0"), "{err}");
    assert!(err.contains("exceeds the"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    fake.join().unwrap();
}

#[test]
fn garbage_after_the_handshake_is_a_protocol_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![
        listener.local_addr().unwrap().to_string(),
        free_addresses(1).remove(0),
    ];
    // A valid header for a worker that process 0 does not have.
    let h = FrameHeader::new(FrameKind::Progress, 0, 7, 1, 2, 0);
    let fake = fake_process_0(
        listener,
        as_process_0,
        zerocopy::IntoBytes::as_bytes(&h).to_vec(),
    );
    let (ok, _, err) = finish(
        cli_process("bench_pipe:100000000", 1, &addrs, &[]),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(err.contains("protocol error"), "{err}");
    assert!(err.contains("out of range"), "{err}");
    fake.join().unwrap();
}

#[test]
fn a_stranger_sending_garbage_is_rejected_and_the_cluster_still_forms() {
    let addrs = free_addresses(2);
    let p0 = cli_process("simple", 0, &addrs, &[]);
    // Connect to process 0 as a stranger (retrying until it listens) and send garbage.
    let start = Instant::now();
    let mut s = loop {
        match TcpStream::connect(&addrs[0]) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("process 0 never listened: {e}"),
        }
    };
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdef0123456789")
        .unwrap();
    let p1 = cli_process("simple", 1, &addrs, &[]);
    let (ok1, _, err1) = finish(p1, Duration::from_secs(20));
    let (ok0, out0, err0) = finish(p0, Duration::from_secs(20));
    assert!(ok0 && ok1, "{err0}\n{err1}");
    assert!(!out0.is_empty());
    drop(s);
}
