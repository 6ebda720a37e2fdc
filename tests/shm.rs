//! The shared-memory ring between two real processes, through a real segment under
//! `/dev/shm`: this test binary re-runs itself as the consumer (the `child` test, with
//! `WAXFAST_SHM_CHILD` naming the segment and the record count).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use std::sync::Arc;
use waxfast::shm::ring::{Consumer, Producer};
use waxfast::shm::segment::{sweep_stale, Layout, Segment, DIR, PREFIX};

const CHILD_ENV: &str = "WAXFAST_SHM_CHILD";

/// The consumer: maps the segment, says so, then checks every record in order.
#[test]
fn child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, n) = spec.split_once('|').unwrap();
    let n: u64 = n.parse().unwrap();
    let seg = Arc::new(Segment::open(Path::new(path), Duration::from_secs(5)).unwrap());
    println!("mapped");
    let mut c = Consumer::new(seg.ring(0));
    let mut out = Vec::new();
    for i in 0..n {
        while !c.pop(&mut out) {
            std::hint::spin_loop();
        }
        let got = u64::from_le_bytes(out[..8].try_into().unwrap());
        assert_eq!(got, i, "record {i} arrived as {got}");
        assert_eq!(out.len(), 8 + (i % 16) as usize);
        assert!(out[8..].iter().all(|&b| b == i as u8));
    }
    assert!(!c.pop(&mut out), "nothing after the last record");
    println!("ok {n}");
}

fn one_ring(capacity: u64) -> Layout {
    Layout {
        bells: 1,
        rings: 1,
        capacity,
    }
}

fn ours_left() -> Vec<String> {
    let me = format!("{PREFIX}{}-", std::process::id());
    std::fs::read_dir(DIR)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&me))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the child's stdout up to its "mapped" line (libtest prints a header first).
fn wait_mapped(lines: &mut impl Iterator<Item = std::io::Result<String>>) {
    for l in lines.by_ref() {
        if l.unwrap() == "mapped" {
            return;
        }
    }
    panic!("the consumer ended before it mapped the segment");
}

/// Kills the child if the test fails before it ends.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_consumer(seg: &Segment, n: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_ENV, format!("{}|{n}", seg.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_million_numbered_records_cross_two_processes_in_order_and_nothing_is_left() {
    let n: u64 = std::env::var("WAXFAST_SHM_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seg = Arc::new(Segment::create("stress", one_ring(1 << 16)).unwrap());
    let mut child = Reap(spawn_consumer(&seg, n));
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_mapped(&mut lines)));
    // Both sides mapped it: the name goes, so however either ends, nothing is left.
    seg.unlink().unwrap();
    mapped.unwrap();
    assert!(!seg.path().exists(), "{:?}", ours_left());
    let mut p = Producer::new(seg.ring(0));
    let mut rec = Vec::new();
    for i in 0..n {
        rec.clear();
        rec.extend_from_slice(&i.to_le_bytes());
        rec.resize(8 + (i % 16) as usize, i as u8);
        while !p.push(&rec) {
            std::hint::spin_loop();
        }
    }
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(
        rest.iter().any(|l| l == &format!("ok {n}")),
        "{rest:?} {err}"
    );
}

#[test]
fn a_consumer_killed_with_sigkill_leaves_nothing_and_a_dead_owners_segment_is_swept() {
    let seg = Segment::create("kill", one_ring(1 << 12)).unwrap();
    let mut child = Reap(spawn_consumer(&seg, 1_000_000_000));
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_mapped(&mut lines)));
    seg.unlink().unwrap();
    mapped.unwrap();
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(!seg.path().exists(), "{:?}", ours_left());
    // A segment whose owner died before unlinking it: swept by the next run.
    let stale = Path::new(DIR).join(format!("{PREFIX}999999999-00-stale"));
    std::fs::write(&stale, b"").unwrap();
    assert!(sweep_stale(Path::new(DIR)) >= 1);
    assert!(!stale.exists());
}
