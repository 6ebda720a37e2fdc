//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The built `waxfast` binary.
pub fn waxfast() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waxfast"));
    // Tests must not inherit a developer's settings.
    for var in [
        "WAXFAST_WORKERS_PER_PROCESS",
        "WAXFAST_PROCESS_ID",
        "WAXFAST_ADDRESSES",
        "WAXFAST_RECOVERY_DIRECTORY",
        "WAXFAST_SNAPSHOT_INTERVAL",
        "WAXFAST_BACKUP_INTERVAL",
        "WAXFAST_NO_PIN",
        "WAXFAST_PROCESSES",
        "WAXFAST_CONNECT_TIMEOUT",
        "WAXFAST_PEER_TIMEOUT",
        "WAXFAST_CLUSTER_SECRET_FILE",
        "WAXFAST_LOG",
        "WAXFAST_FAULT_ABORT_AFTER_COMMITS",
        "WAXFAST_FAULT_TRUNCATE_INPUT",
        "WAXFAST_DATAFLOW_API_ENABLED",
        "WAXFAST_DATAFLOW_API_PORT",
        "WAXFAST_DATAFLOW_API_BIND",
        "WAXFAST_LOG_FORMAT",
        "WAXFAST_KAFKA_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command with a timeout of 60 s (no test may hang) and returns its output.
/// Output is read while the child runs, so a chatty child cannot block on a full pipe.
pub fn run_with_timeout(cmd: &mut Command) -> Output {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("command did not finish within 60 s: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    }
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The directory of Bytewax's reference flows and outputs (`../shared/reference/bytewax`
/// next to the repository), if present.
pub fn reference_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/bytewax");
    p.is_dir().then_some(p)
}

/// Sorted copy, for multiset comparisons.
pub fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// `n` loopback addresses with ports that were free a moment ago.
pub fn free_addresses(n: usize) -> Vec<String> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

/// Starts process `i` of a `waxfast` cluster over `addrs`, its output piped.
pub fn cli_process(flow: &str, i: usize, addrs: &[String], extra: &[&str]) -> std::process::Child {
    cli_process_in(std::path::Path::new("."), flow, i, addrs, extra)
}

/// [`cli_process`], started in directory `dir`.
pub fn cli_process_in(
    dir: &std::path::Path,
    flow: &str,
    i: usize,
    addrs: &[String],
    extra: &[&str],
) -> std::process::Child {
    use std::process::Stdio;
    waxfast()
        .current_dir(dir)
        .arg(flow)
        .args(["-i", &i.to_string(), "-a", &addrs.join(";"), "--no-pin"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child (at most `limit`, else it is killed and the test fails),
/// returning (success, stdout, stderr).
pub fn finish(mut c: std::process::Child, limit: std::time::Duration) -> (bool, String, String) {
    let (status, out, err) = finish_status(&mut c, limit);
    (status.success(), out, err)
}

/// [`finish`], returning the exit status itself.
pub fn finish_status(
    c: &mut std::process::Child,
    limit: std::time::Duration,
) -> (std::process::ExitStatus, String, String) {
    use std::io::Read;
    let mut out = c.stdout.take().unwrap();
    let mut err = c.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = c.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = c.kill();
            panic!("a process did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    (status, t_out.join().unwrap(), t_err.join().unwrap())
}

/// The shared-memory segments under `/dev/shm` whose owner (the pid in their name) is
/// one of `pids`, or, with `pids` empty, is no longer alive.
#[allow(dead_code)]
pub fn segments_left(pids: &[u32]) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            let Some(pid) = n
                .strip_prefix("waxfast-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                return false;
            };
            if pids.is_empty() {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
            } else {
                pids.contains(&pid)
            }
        })
        .collect()
}

/// Fails if a segment of one of `pids` (finished processes) is still in `/dev/shm`.
#[allow(dead_code)]
pub fn assert_no_segments_of(pids: &[u32]) {
    let left = segments_left(pids);
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

/// Fails if a segment of a dead process is in `/dev/shm` (the processes of a run
/// this test started and waited for are dead).
#[allow(dead_code)]
pub fn assert_no_dead_segments() {
    let left = segments_left(&[]);
    assert!(
        left.is_empty(),
        "left in /dev/shm by dead processes: {left:?}"
    );
}

/// For a fake peer speaking the cluster protocol on `s` after the hello: offers TCP
/// (so every frame comes over this connection) and reads the real process's offer.
#[allow(dead_code)]
pub fn offer_tcp(s: &mut std::net::TcpStream) {
    use std::io::{Read, Write};
    // The real process may have refused the hello and closed: then there is nothing to
    // agree on, and the test checks what it said.
    if s.write_all(&waxfast::transport::offer_message(
        waxfast::transport::Mode::Tcp,
    ))
    .is_err()
    {
        return;
    }
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_ok() {
        let mut offer = vec![0u8; u32::from_le_bytes(len) as usize];
        let _ = s.read_exact(&mut offer);
    }
}
