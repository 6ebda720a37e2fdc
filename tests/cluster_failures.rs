//! The cluster tier under an adversary: processes that disagree, peers that stop, hang,
//! lie or die, launchers that are killed, strangers on the port. Every test runs real
//! `waxfast` processes over real TCP on 127.0.0.1 (some play one side of the protocol
//! by hand); none mocks the network.

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use waxfast::base::frame::{finish_frame, start_frame, FrameKind};
use waxfast::net::hello::{Hello, MAGIC, PROTOCOL_VERSION};

use util::{
    cli_process, cli_process_in, finish, finish_status, free_addresses, run_with_timeout, stderr,
    stdout, waxfast,
};

// ---- helpers -----------------------------------------------------------------------------

/// A text file of `lines` lines over `distinct` distinct words.
fn words_file(dir: &Path, name: &str, distinct: u64, lines: u64) -> PathBuf {
    let p = dir.join(name);
    let mut text = String::new();
    for i in 0..lines {
        text.push_str(&format!(
            "word{}x{} other{} the\n",
            i % distinct,
            (i * 7919) % distinct,
            i % 97
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// Connects to `addr`, retrying until it listens (at most 10 s).
fn connect_when_listening(addr: &str) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("{addr} never listened: {e}"),
        }
    }
}

/// Plays process 0 of a two-process cluster by hand: accepts process 1's connection,
/// answers its hello with a copy that says it is process 0, then runs `after` on the
/// connection.
fn fake_process_0(
    listener: TcpListener,
    after: impl FnOnce(&mut TcpStream) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let (mut theirs, _) =
            Hello::read_from(&mut s, Instant::now() + Duration::from_secs(10)).unwrap();
        theirs.process = 0;
        s.write_all(&theirs.to_bytes()).unwrap();
        util::offer_tcp(&mut s);
        after(&mut s);
    })
}

/// A listener for a fake process 0 and the addresses of a two-process cluster.
fn fake_cluster() -> (TcpListener, Vec<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = vec![
        listener.local_addr().unwrap().to_string(),
        free_addresses(1).remove(0),
    ];
    (listener, addrs)
}

/// Reads from `s` until the peer closes it.
fn drain(s: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
}

/// Runs process 1 of a long exchange flow against a fake process 0 that does `after`
/// once the handshake is done; returns process 1's (success, stderr).
fn against_fake_peer(
    extra: &[&str],
    after: impl FnOnce(&mut TcpStream) + Send + 'static,
) -> (bool, String) {
    let (listener, addrs) = fake_cluster();
    let fake = fake_process_0(listener, after);
    let (ok, _, err) = finish(
        cli_process("bench_exchange:10000000000,16", 1, &addrs, extra),
        Duration::from_secs(20),
    );
    fake.join().unwrap();
    (ok, err)
}

fn frame(kind: FrameKind, epoch: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    start_frame(&mut f, kind, 0, 0, 0, epoch);
    f.extend_from_slice(payload);
    finish_frame(&mut f).unwrap();
    f
}

/// The children of process `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// Resident set of `pid` in KiB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started and has not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

// ---- processes must agree on their inputs --------------------------------------------

#[test]
fn a_process_that_cannot_read_its_input_fails_and_its_peer_says_why() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    words_file(a.path(), "in.txt", 100, 2000);
    let addrs = free_addresses(2);
    let p0 = cli_process_in(a.path(), "wordcount:in.txt", 0, &addrs, &[]);
    let p1 = cli_process_in(b.path(), "wordcount:in.txt", 1, &addrs, &[]);
    let (ok1, out1, err1) = finish(p1, Duration::from_secs(20));
    let (ok0, out0, err0) = finish(p0, Duration::from_secs(20));
    assert!(!ok0 && !ok1, "both fail:\n{err0}\n{err1}");
    assert!(
        out0.is_empty() && out1.is_empty(),
        "no partial counts: {out0}{out1}"
    );
    assert!(
        err1.contains("in.txt") && err1.contains("cannot read"),
        "{err1}"
    );
    assert!(
        err0.contains("process 1")
            && err0.contains("cannot list its partitions")
            && err0.contains("in.txt"),
        "{err0}"
    );
}

#[test]
fn processes_with_different_files_arguments_or_intervals_refuse_each_other() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    words_file(a.path(), "in.txt", 100, 2000);
    words_file(b.path(), "in.txt", 100, 3000);
    words_file(a.path(), "other.txt", 100, 2000);
    // (process 0's flow, process 1's, their extra flags, what both errors name)
    type Case<'a> = (&'a str, &'a str, Vec<&'a str>, Vec<&'a str>, [&'a str; 2]);
    let cases: [Case; 3] = [
        // The same name, another file (of another size) on each host.
        (
            "wordcount:in.txt",
            "wordcount:in.txt",
            vec![],
            vec![],
            [
                "partition(s) for step",
                "every process must see the same inputs",
            ],
        ),
        // The same step graph, other arguments.
        (
            "wordcount:in.txt",
            "wordcount:other.txt",
            vec![],
            vec![],
            ["\"in.txt\"", "\"other.txt\""],
        ),
        // Another epoch interval.
        (
            "wordcount:in.txt",
            "wordcount:in.txt",
            vec!["-s", "1"],
            vec!["-s", "2"],
            ["epoch interval (-s) 2s", "has 1s"],
        ),
    ];
    for (flow0, flow1, extra0, extra1, needles) in cases {
        let addrs = free_addresses(2);
        let dir1 = if extra0.is_empty() && flow0 == flow1 {
            b.path()
        } else {
            a.path()
        };
        let p0 = cli_process_in(a.path(), flow0, 0, &addrs, &extra0);
        let p1 = cli_process_in(dir1, flow1, 1, &addrs, &extra1);
        let (ok0, out0, err0) = finish(p0, Duration::from_secs(20));
        let (ok1, out1, err1) = finish(p1, Duration::from_secs(20));
        assert!(
            !ok0 && !ok1,
            "{flow0} vs {flow1}: both refuse:\n{err0}\n{err1}"
        );
        assert!(out0.is_empty() && out1.is_empty());
        // Each side names the other's value and its own.
        for err in [&err0, &err1] {
            let both = needles.iter().all(|n| err.contains(n))
                || (needles[0].starts_with("epoch")
                    && err.contains("epoch interval (-s)")
                    && err.contains("1s")
                    && err.contains("2s"));
            assert!(both, "{flow0} vs {flow1}: {needles:?} in\n{err}");
        }
    }
}

// ---- the launcher --------------------------------------------------------------------------

#[test]
fn launcher_output_to_a_pipe_has_whole_lines_equal_to_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let file = words_file(dir.path(), "in.txt", 40_000, 120_000);
    let flow = format!("wordcount:{}", file.display());
    let one = run_with_timeout(waxfast().args([flow.as_str(), "-w4", "--no-pin"]));
    assert!(one.status.success(), "{}", stderr(&one));
    let mut expected: Vec<String> = stdout(&one).lines().map(String::from).collect();
    expected.sort();
    assert!(expected.len() > 40_000);
    // One process's lines keep their order through the relay.
    let o = run_with_timeout(waxfast().args(["simple", "-p2", "--no-pin"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1\n2\n3\n");
    // Twice: the splicing it guards against depended on timing.
    for _ in 0..2 {
        let o = run_with_timeout(waxfast().args([flow.as_str(), "-p2", "-w2", "--no-pin"]));
        assert!(o.status.success(), "{}", stderr(&o));
        let mut got: Vec<String> = stdout(&o).lines().map(String::from).collect();
        got.sort();
        assert_eq!(got.len(), expected.len());
        assert!(
            got == expected,
            "-p2 -w2 output through a pipe differs from -w4"
        );
    }
}

/// Starts a `-p 2` launcher of a long flow and waits until both children run; the
/// caller waits for the launcher.
#[allow(clippy::zombie_processes)]
fn long_launcher() -> (Child, Vec<u32>) {
    let launcher = waxfast()
        .args(["bench_wordcount:2000000000,1000", "-p2", "--no-pin"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let kids = children_of(launcher.id());
        if kids.len() == 2 {
            // Let the cluster form and run.
            std::thread::sleep(Duration::from_millis(700));
            return (launcher, kids);
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the launcher never started two processes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn children_never_outlive_the_launcher() {
    for (sig, code) in [
        (libc::SIGINT, Some(130)),
        (libc::SIGTERM, Some(143)),
        (libc::SIGKILL, None),
    ] {
        let (mut launcher, kids) = long_launcher();
        assert!(kids.iter().all(|&k| alive(k)));
        signal(launcher.id(), sig);
        let (status, _, err) = finish_status(&mut launcher, Duration::from_secs(10));
        if let Some(code) = code {
            assert_eq!(
                status.code(),
                Some(code),
                "launcher after signal {sig}: {err}"
            );
        }
        let start = Instant::now();
        while kids.iter().any(|&k| alive(k)) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left: Vec<u32> = kids.iter().copied().filter(|&k| alive(k)).collect();
        for &k in &left {
            signal(k, libc::SIGKILL);
        }
        assert!(
            left.is_empty(),
            "signal {sig}: children {left:?} outlived the launcher by 5 s"
        );
        // The children shared memory: whatever killed them, nothing is left of it.
        util::assert_no_dead_segments();
    }
}

// ---- bounded memory and liveness -------------------------------------------------------------

#[test]
fn memory_between_processes_stays_bounded() {
    // Each process prints its peak RSS in its summary line. Before the bound, -p 2
    // peaked at 200-290 MB here; -w 2 at 12 MB.
    let o = run_with_timeout(waxfast().args(["bench_exchange:10000000,64", "-p2", "--no-pin"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let peaks: Vec<u64> = err
        .lines()
        .filter_map(|l| l.split("peak_rss_kb=").nth(1))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    assert_eq!(peaks.len(), 2, "{err}");
    for kb in peaks {
        assert!(kb < 48 * 1024, "a process peaked at {kb} KiB: {err}");
    }
}

#[test]
fn a_stopped_peer_is_lost_within_the_timeout_and_the_sender_does_not_grow() {
    // The same bound over either transport: shared memory keeps the TCP connection for
    // heartbeats.
    for transport in ["tcp", "shm"] {
        stopped_peer_is_lost(transport);
    }
}

fn stopped_peer_is_lost(transport: &str) {
    let addrs = free_addresses(2);
    let flow = "bench_exchange:20000000000,64";
    let timeout = ["--peer-timeout", "2", "--transport", transport];
    let p0 = cli_process(flow, 0, &addrs, &timeout);
    let mut p1 = cli_process(flow, 1, &addrs, &timeout);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(p1.try_wait().unwrap().is_none(), "still running");
    signal(p1.id(), libc::SIGSTOP);
    let stopped = Instant::now();
    let pid0 = p0.id();
    let at_stop = rss_kb(pid0);
    let mut peak = at_stop;
    while stopped.elapsed() < Duration::from_millis(1500) {
        peak = peak.max(rss_kb(pid0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, _, err) = finish(p0, Duration::from_secs(10));
    let took = stopped.elapsed();
    eprintln!("a stopped peer was lost after {took:?} over {transport}");
    signal(p1.id(), libc::SIGCONT);
    let _ = p1.kill();
    let _ = p1.wait();
    assert!(!ok);
    assert!(
        err.contains(&format!("lost process 1 ({})", addrs[1])),
        "{err}"
    );
    assert!(err.contains("nothing arrived from it"), "{err}");
    // The timeout plus a second.
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} over {transport}: {err}"
    );
    // Before the bound the sender grew by ~380 MB/s.
    assert!(
        peak < at_stop + 32 * 1024,
        "grew from {at_stop} to {peak} KiB over {transport}"
    );
    util::assert_no_dead_segments();
}

#[test]
fn a_truncated_frame_then_silence_is_a_lost_peer() {
    let start = Instant::now();
    let (ok, err) = against_fake_peer(&["--peer-timeout", "1"], |s| {
        let f = frame(FrameKind::Progress, 2, b"");
        s.write_all(&f[..10]).unwrap();
        // Silence, with the connection open, until the peer gives up.
        drain(s);
    });
    assert!(!ok);
    assert!(
        err.contains("lost process 0") && err.contains("nothing arrived"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_shutdown_with_channels_still_open_is_a_protocol_error() {
    let (ok, err) = against_fake_peer(&[], |s| {
        s.write_all(&frame(FrameKind::Shutdown, 0, b"")).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        drain(s);
    });
    assert!(!ok);
    assert!(
        err.contains("lost process 0")
            && err.contains("protocol error")
            && err.contains("channel ends"),
        "{err}"
    );
}

#[test]
fn the_process_blamed_for_a_loss_is_the_one_that_died() {
    for victim in 0..3 {
        let addrs = free_addresses(3);
        let flow = "bench_wordcount:2000000000,1000";
        let mut ps: Vec<Child> = (0..3).map(|i| cli_process(flow, i, &addrs, &[])).collect();
        std::thread::sleep(Duration::from_millis(1500));
        for p in &mut ps {
            assert!(p.try_wait().unwrap().is_none(), "still running");
        }
        ps[victim].kill().unwrap();
        let _ = ps[victim].wait();
        for (i, p) in ps.into_iter().enumerate() {
            if i == victim {
                continue;
            }
            let (ok, _, err) = finish(p, Duration::from_secs(5));
            assert!(!ok);
            assert!(
                err.contains(&format!("lost process {victim} ({})", addrs[victim])),
                "process {i} after killing {victim}: {err}"
            );
        }
    }
}

#[test]
fn a_peers_abort_message_is_printed_with_control_characters_escaped() {
    let (ok, err) = against_fake_peer(&[], |s| {
        s.write_all(&frame(
            FrameKind::Abort,
            0,
            b"boom \x1b[31mred\x1b[0m\nsecond line",
        ))
        .unwrap();
        drain(s);
    });
    assert!(!ok);
    assert!(
        err.contains("stopped because process 0 failed: boom \\u{1b}[31mred"),
        "{err}"
    );
    assert!(err.contains("\\nsecond line"), "{err}");
    assert!(!err.contains('\x1b'), "raw escape in {err:?}");
}

// ---- formation -------------------------------------------------------------------------------

/// A client that sends process 0 one byte of a hello every 1.5 s for `secs` seconds.
fn slow_client(addr: String, secs: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut s = connect_when_listening(&addr);
        let start = Instant::now();
        for b in MAGIC.iter().cycle() {
            if start.elapsed() > Duration::from_secs(secs) || s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
    })
}

#[test]
fn a_slow_stranger_does_not_delay_the_cluster_and_formation_keeps_its_deadline() {
    // With the real peer: the cluster forms at once and the run succeeds.
    let addrs = free_addresses(2);
    let start = Instant::now();
    let p0 = cli_process("simple", 0, &addrs, &["--connect-timeout", "5"]);
    let slow = slow_client(addrs[0].clone(), 8);
    std::thread::sleep(Duration::from_millis(300));
    let p1 = cli_process("simple", 1, &addrs, &["--connect-timeout", "5"]);
    let (ok0, _, err0) = finish(p0, Duration::from_secs(20));
    let (ok1, _, err1) = finish(p1, Duration::from_secs(20));
    assert!(ok0 && ok1, "{err0}\n{err1}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    // Without it: the deadline holds as a whole, and the error says what was dropped.
    let addrs = free_addresses(2);
    let start = Instant::now();
    let p0 = cli_process("simple", 0, &addrs, &["--connect-timeout", "3"]);
    let slow2 = slow_client(addrs[0].clone(), 8);
    let (ok, _, err) = finish(p0, Duration::from_secs(20));
    assert!(!ok);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(err.contains("did not form within 3s"), "{err}");
    assert!(err.contains("dropped a connection from"), "{err}");
    slow.join().unwrap();
    slow2.join().unwrap();
}

#[test]
fn duplicate_addresses_are_a_usage_error_naming_the_duplicate() {
    let o = run_with_timeout(waxfast().args([
        "simple",
        "-i0",
        "-a",
        "127.0.0.1:2101;127.0.0.1:2102;127.0.0.1:2101",
    ]));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("\"127.0.0.1:2101\" appears twice") && err.contains("processes 0 and 2"),
        "{err}"
    );
}

// ---- the cluster secret ---------------------------------------------------------------------

fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn with_a_secret_only_processes_that_hold_it_join() {
    let dir = tempfile::tempdir().unwrap();
    let good = secret_file(dir.path(), "good", "0123456789abcdef-the-secret\n");
    let bad = secret_file(dir.path(), "bad", "0123456789abcdef-another-one\n");
    let with = |f: &str| -> Vec<String> {
        ["--cluster-secret-file", f, "--connect-timeout", "4"]
            .map(String::from)
            .to_vec()
    };
    let strs = |v: &[String]| -> Vec<String> { v.to_vec() };

    // Strangers first: a forged hello of another version, and a well-formed hello that
    // claims the secret but sends a wrong proof. Neither disturbs the formation.
    let addrs = free_addresses(2);
    let g = with(&good);
    let g: Vec<&str> = g.iter().map(String::as_str).collect();
    let p0 = cli_process("simple", 0, &addrs, &g);
    let mut forged = connect_when_listening(&addrs[0]);
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&99u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    forged.write_all(&bytes).unwrap();
    let mut liar = connect_when_listening(&addrs[0]);
    let mut h = Hello::from_bytes(&simple_hello()).unwrap();
    h.authenticated = true;
    liar.write_all(&h.to_bytes()).unwrap();
    liar.write_all(&[0u8; 32]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let p1 = cli_process("simple", 1, &addrs, &g);
    let (ok0, _, err0) = finish(p0, Duration::from_secs(20));
    let (ok1, _, err1) = finish(p1, Duration::from_secs(20));
    assert!(ok0 && ok1, "{err0}\n{err1}");
    drop((forged, liar));

    // A process with another secret is refused; one without a secret too.
    for (p1_args, needle) in [
        (with(&bad), "does not match the cluster secret"),
        (
            strs(&["--connect-timeout".into(), "4".into()]),
            "holds a cluster secret but this process has none",
        ),
    ] {
        let addrs = free_addresses(2);
        let p0 = cli_process("simple", 0, &addrs, &g);
        let a1: Vec<&str> = p1_args.iter().map(String::as_str).collect();
        let p1 = cli_process("simple", 1, &addrs, &a1);
        let (ok1, _, err1) = finish(p1, Duration::from_secs(20));
        let (ok0, _, err0) = finish(p0, Duration::from_secs(20));
        assert!(!ok0 && !ok1);
        assert!(err1.contains(needle), "{err1}");
        assert!(
            err0.contains("did not form") && err0.contains("dropped a connection"),
            "{err0}"
        );
    }
}

/// The hello process 1 of a two-process `simple` cluster sends (the CLI's `simple`).
fn simple_hello() -> Vec<u8> {
    let flow = waxfast::Dataflow::new("simple");
    flow.input(
        "inp",
        waxfast::connectors::testing::TestingSource::new(0..3u32),
    )
    .map("plus_one", |x| x + 1)
    .output("out", waxfast::connectors::stdio::StdOutSink::new());
    let h =
        waxfast::runtime::handshake_hello(&flow, 2, 1, 1, &waxfast::RunConfig::default()).unwrap();
    assert_eq!(h.version, PROTOCOL_VERSION);
    h.to_bytes()
}

#[test]
fn a_cluster_secret_file_that_is_missing_or_short_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let short = secret_file(dir.path(), "short", "abc\n");
    for (file, needle) in [
        (
            "/nonexistent/secret".to_string(),
            "cannot read the cluster secret file",
        ),
        (short, "at least 16"),
    ] {
        let o = run_with_timeout(waxfast().args(["simple", "--cluster-secret-file", &file]));
        assert_eq!(o.status.code(), Some(2));
        let err = stderr(&o);
        assert!(
            err.contains("--cluster-secret-file") && err.contains(needle),
            "{err}"
        );
    }
    let o = run_with_timeout(waxfast().args(["simple", "--peer-timeout", "0"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--peer-timeout"), "{}", stderr(&o));
}

// ---- signals to a single process ------------------------------------------------------------

#[test]
fn sigint_and_sigterm_stop_a_single_process_within_a_second() {
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let mut p = waxfast()
            .args(["bench_wordcount:2000000000,1000", "-w2", "--no-pin"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        signal(p.id(), sig);
        let at = Instant::now();
        let (status, _, err) = finish_status(&mut p, Duration::from_secs(10));
        assert!(
            at.elapsed() < Duration::from_secs(1),
            "took {:?}",
            at.elapsed()
        );
        assert_eq!(status.code(), Some(code), "{err}");
        assert!(err.contains("interrupted by SIG"), "{err}");
    }
}

#[test]
fn a_signalled_run_without_recovery_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("counts.txt");
    // Large enough to be still running when the signal comes; doubled if it was not
    // (a run that ended before the signal landed exits 0, and is tried again bigger).
    let mut lines = 1_600_000;
    for _ in 0..4 {
        let input = words_file(dir.path(), "in.txt", 50_000, lines);
        let flow = format!("wordcount:{},{}", input.display(), out.display());
        let mut p = waxfast()
            .args([flow.as_str(), "-w2", "--no-pin"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        if p.try_wait().unwrap().is_some() {
            let _ = finish_status(&mut p, Duration::from_secs(10));
            let _ = std::fs::remove_file(&out);
            lines *= 2;
            continue;
        }
        signal(p.id(), libc::SIGTERM);
        let (status, _, err) = finish_status(&mut p, Duration::from_secs(10));
        if status.success() {
            let _ = std::fs::remove_file(&out);
            lines *= 2;
            continue;
        }
        assert_eq!(status.code(), Some(143), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("counts"))
            .collect();
        assert!(left.is_empty(), "a signalled run left {left:?}: {err}");
        return;
    }
    panic!("wordcount of 25 M lines finished before a signal 150 ms in: the test cannot signal it mid-run");
}

#[test]
fn a_run_waiting_on_a_silent_pipe_stops_at_once_on_a_signal() {
    // A worker reading a stream must not be stuck in a read when the run is stopped.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("counts.txt");
    let flow = format!("wordcount:/dev/stdin,{}", out.display());
    let mut p = waxfast()
        .args([flow.as_str(), "-w2", "--no-pin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    stdin.write_all(b"some words then silence\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal(p.id(), libc::SIGINT);
    let at = Instant::now();
    let (status, _, err) = finish_status(&mut p, Duration::from_secs(10));
    assert!(
        at.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        at.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(!dir.path().join("counts.txt.partial").exists(), "{err}");
    assert!(!out.exists());
    drop(stdin);
}
