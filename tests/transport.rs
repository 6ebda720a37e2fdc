//! Choosing and using a transport between real processes: shared memory between
//! processes of this host (the default), TCP when asked, and what happens when the
//! processes disagree. The cluster tests (`tests/cluster.rs`) run every shape over both.

use std::path::Path;
use std::time::Duration;

mod util;
use util::{
    assert_no_dead_segments, assert_no_segments_of, cli_process, finish, free_addresses,
    run_with_timeout, stderr, stdout, waxfast,
};

fn sorted_lines(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(String::from).collect();
    v.sort();
    v
}

/// Asserts that `got` equals `expected`, line for line, without printing lines that may
/// be kilobytes long.
fn assert_same_lines(got: &[String], expected: &[String], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}");
    let differ = got.iter().zip(expected).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{what}: {differ} lines differ from -w1");
}

fn words_file(dir: &Path, word_len: usize) -> std::path::PathBuf {
    let p = dir.join("words.txt");
    let mut text = String::new();
    for i in 0..6_000u64 {
        let a = format!("{:0>width$}", i % 997, width = word_len);
        text.push_str(&format!("{a} w{} the\n", (i * 7) % 1000));
    }
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn p2_w2_over_shared_memory_equals_w4_and_the_log_says_which_transport() {
    let dir = tempfile::tempdir().unwrap();
    let flow = format!("wordcount:{}", words_file(dir.path(), 4).display());
    let one = run_with_timeout(waxfast().args([flow.as_str(), "-w4", "--no-pin"]));
    assert!(one.status.success(), "{}", stderr(&one));
    let expected = sorted_lines(&stdout(&one));
    assert_eq!(expected.len(), 1998);
    for (mode, said) in [("shm", "transport=Shm"), ("tcp", "transport=Tcp")] {
        let o = run_with_timeout(
            waxfast()
                .args([flow.as_str(), "-p2", "-w2", "--no-pin", "--transport", mode])
                .env("WAXFAST_LOG", "waxfast::transport=debug"),
        );
        let err = stderr(&o);
        assert!(o.status.success(), "{mode}: {err}");
        assert!(sorted_lines(&stdout(&o)) == expected, "-p2 -w2 over {mode}");
        // Each of the two processes logs its one peer's transport.
        let n = err
            .lines()
            .filter(|l| l.contains("transport to peer") && l.contains(said))
            .count();
        assert_eq!(n, 2, "{mode}: {err}");
        assert_no_dead_segments();
    }
}

#[test]
fn frames_larger_than_a_ring_record_cross_whole() {
    // 3000-byte keys: a staged batch of them is a frame of megabytes, written as several
    // records of a ring.
    let dir = tempfile::tempdir().unwrap();
    let flow = format!("wordcount:{}", words_file(dir.path(), 3000).display());
    let one = run_with_timeout(waxfast().args([flow.as_str(), "-w1"]));
    assert!(one.status.success(), "{}", stderr(&one));
    let expected = sorted_lines(&stdout(&one));
    assert_eq!(expected.len(), 1998);
    let o = run_with_timeout(waxfast().args([
        flow.as_str(),
        "-p2",
        "-w1",
        "--no-pin",
        "--transport",
        "shm",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    // (Lines of 3 KB: compared without printing them.)
    assert_same_lines(&sorted_lines(&stdout(&o)), &expected, "-p2 -w1 over shm");
}

#[test]
fn a_batch_over_the_split_size_crosses_as_several_frames_whole() {
    // One line of 2000 distinct words of 10 KB, twice: the line is one batch, counted
    // into 2000 partials, and each process routes about 10 MB of them to its peer at
    // once, over the 8 MiB split size.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.txt");
    let mut line = String::new();
    for i in 0..2000 {
        line.push_str(&format!("{i:05}{}", "x".repeat(10_000)));
        line.push(' ');
    }
    std::fs::write(&path, format!("{line}\n{line}\n")).unwrap();
    let flow = format!("wordcount:{}", path.display());
    let one = run_with_timeout(waxfast().args([flow.as_str(), "-w1"]));
    assert!(one.status.success(), "{}", stderr(&one));
    let expected = sorted_lines(&stdout(&one));
    assert_eq!(expected.len(), 2000);
    assert!(expected.iter().all(|l| l.ends_with("=2")));
    for mode in ["shm", "tcp"] {
        let o = run_with_timeout(
            waxfast()
                .args([flow.as_str(), "-p2", "-w1", "--no-pin", "--transport", mode])
                .env("WAXFAST_LOG", "waxfast::exchange=debug"),
        );
        let err = stderr(&o);
        assert!(o.status.success(), "{mode}: {err}");
        assert_same_lines(&sorted_lines(&stdout(&o)), &expected, mode);
        let split: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("batch sent as several frames"))
            .collect();
        assert!(!split.is_empty(), "{mode}: no batch was split: {err}");
    }
}

#[test]
fn an_unknown_transport_is_a_usage_error_naming_the_flag_or_variable() {
    let o = run_with_timeout(waxfast().args(["simple", "--transport", "udp"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("--transport") && err.contains("\"udp\"") && err.contains("auto, tcp or shm"),
        "{err}"
    );
    let o = run_with_timeout(waxfast().arg("simple").env("WAXFAST_TRANSPORT", "fast"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("WAXFAST_TRANSPORT"), "{}", stderr(&o));
}

#[test]
fn processes_given_shm_and_tcp_refuse_each_other_naming_both() {
    let addrs = free_addresses(2);
    let flow = "bench_pipe:1000";
    let p0 = cli_process(flow, 0, &addrs, &["--transport", "shm"]);
    let p1 = cli_process(flow, 1, &addrs, &["--transport", "tcp"]);
    let (ok0, _, err0) = finish(p0, Duration::from_secs(20));
    let (ok1, _, err1) = finish(p1, Duration::from_secs(20));
    assert!(!ok0 && !ok1, "{err0}\n{err1}");
    for (err, peer) in [(&err0, 1), (&err1, 0)] {
        assert!(
            err.contains(&format!("process {peer} at {}", addrs[peer]))
                && err.contains("--transport tcp and the other --transport shm"),
            "{err}"
        );
    }
}

#[test]
fn a_process_given_tcp_makes_its_auto_peer_use_tcp() {
    let addrs = free_addresses(2);
    let flow = "bench_exchange:200000,16";
    let p0 = cli_process(flow, 0, &addrs, &["--transport", "tcp"]);
    let p1 = waxfast()
        .arg(flow)
        .args(["-i", "1", "-a", &addrs.join(";"), "--no-pin"])
        .env("WAXFAST_LOG", "waxfast::transport=debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pids = [p0.id(), p1.id()];
    let (ok0, _, err0) = finish(p0, Duration::from_secs(20));
    let (ok1, _, err1) = finish(p1, Duration::from_secs(20));
    assert!(ok0 && ok1, "{err0}\n{err1}");
    // The auto side logs what it chose.
    assert!(err1.contains("transport=Tcp"), "{err1}");
    assert_no_segments_of(&pids);
    let o = run_with_timeout(
        waxfast()
            .args([flow, "-p2", "--no-pin"])
            .env("WAXFAST_LOG", "waxfast::transport=debug"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("transport=Shm"),
        "-p without --transport uses shared memory: {}",
        stderr(&o)
    );
}
