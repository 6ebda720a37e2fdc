//! `-p N`: run a cluster of N processes on this machine (Bytewax's
//! `python -m bytewax.testing -p N`).
//!
//! Picks N free loopback ports, starts this executable N times with `-i K -a ADDRS`
//! and the same flow and settings, and exits with the first failing child's status (1
//! if any failed).
//!
//! * **Output.** Each child's stdout and stderr are pipes that the launcher relays
//!   whole lines at a time, under one lock per stream: lines of different processes
//!   never splice (N processes writing large buffers into one shared pipe would, past
//!   `PIPE_BUF`), and the lines of one process keep their order.
//! * **Children never outlive the launcher.** Each child asks the kernel for SIGTERM
//!   when the launcher dies (`PR_SET_PDEATHSIG`, checked against a launcher that died
//!   before that call), so even a SIGKILL of the launcher stops them; SIGINT and
//!   SIGTERM to the launcher are forwarded to every child, and the launcher exits with
//!   128 + the signal once they stopped.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::args::Settings;

/// After one child fails, how long the others get to notice and exit by themselves.
const GRACE: Duration = Duration::from_secs(10);
/// A line longer than this is relayed while holding the output lock, in pieces.
const LONG_LINE: usize = 1 << 20;

pub(crate) fn launch(n: usize, s: &Settings, prog: &str) -> u8 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: -p/--processes: cannot find this executable to start it again: {e}");
            return 1;
        }
    };
    let addresses = match free_ports(n) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: -p/--processes: cannot find {n} free ports on 127.0.0.1: {e}");
            return 1;
        }
    };
    let signal = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register_usize(sig, signal.clone(), sig as usize) {
            eprintln!("error: -p/--processes: cannot handle signal {sig}: {e}");
            return 1;
        }
    }
    let joined = addresses.join(";");
    let flow = s.flow.clone().unwrap_or_default();
    let me = std::process::id();
    let stdout = Arc::new(Mutex::new(()));
    let stderr = Arc::new(Mutex::new(()));
    let mut children: Vec<(usize, Child)> = Vec::new();
    let mut relays: Vec<JoinHandle<()>> = Vec::new();
    for i in 0..n {
        let mut cmd = Command::new(&exe);
        cmd.arg(&flow)
            .arg("-w")
            .arg(s.workers.to_string())
            .arg("-i")
            .arg(i.to_string())
            .arg("-a")
            .arg(&joined)
            .arg("-s")
            .arg(s.epoch_interval.as_secs_f64().to_string())
            .arg("--connect-timeout")
            .arg(s.connect_timeout.as_secs_f64().to_string())
            .arg("--peer-timeout")
            .arg(s.peer_timeout.as_secs_f64().to_string())
            .arg("--transport")
            .arg(s.transport.to_string())
            .env_remove("WAXFAST_PROCESSES")
            .env_remove("WAXFAST_PROCESS_ID")
            .env_remove("WAXFAST_ADDRESSES")
            .env_remove("WAXFAST_RECOVERY_DIRECTORY")
            .env_remove("WAXFAST_BACKUP_INTERVAL")
            .env_remove("WAXFAST_SNAPSHOT_INTERVAL")
            .env_remove("WAXFAST_PEER_TIMEOUT")
            .env_remove("WAXFAST_TRANSPORT")
            .env_remove("WAXFAST_CLUSTER_SECRET_FILE")
            .env_remove("WAXFAST_DATAFLOW_API_ENABLED")
            .env_remove("WAXFAST_DATAFLOW_API_PORT")
            .env_remove("WAXFAST_DATAFLOW_API_BIND")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !s.pin {
            cmd.arg("--no-pin");
        }
        // One API server per process: process i serves on the given port + i.
        if let Some(api) = s.api {
            let port = api.port().saturating_add(i as u16);
            cmd.arg("--api-bind").arg(api.ip().to_string());
            cmd.arg("--api-port").arg(port.to_string());
        }
        if let Some(file) = &s.cluster_secret_file {
            cmd.arg("--cluster-secret-file").arg(file);
        }
        if let Some(dir) = &s.recovery_directory {
            cmd.arg("-r")
                .arg(dir)
                .arg("-b")
                .arg(s.backup_interval.as_secs_f64().to_string());
        }
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: prctl, getppid and _exit are. It touches
        // no memory of the parent but the copied `me`.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The launcher may have died before the call: then no signal comes.
                if libc::getppid() as u32 != me {
                    libc::_exit(143);
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut c) => {
                if let Some(out) = c.stdout.take() {
                    relays.push(relay(out, std::io::stdout(), stdout.clone()));
                }
                if let Some(err) = c.stderr.take() {
                    relays.push(relay(err, std::io::stderr(), stderr.clone()));
                }
                children.push((i, c));
            }
            Err(e) => {
                eprintln!("error: -p/--processes: cannot start process {i}: {e}");
                for (_, c) in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return 1;
            }
        }
    }
    tracing::info!(processes = n, addresses = %joined, "launched");
    let mut status: u8 = 0;
    let mut failed_at: Option<Instant> = None;
    let mut forwarded = 0usize;
    while !children.is_empty() {
        let sig = signal.load(Ordering::Acquire);
        if sig != 0 && forwarded == 0 {
            forwarded = sig;
            for (_, c) in &children {
                // SAFETY: kill(2) with a pid of a child we have not reaped yet (so it
                // cannot have been reused) and a valid signal number.
                unsafe {
                    libc::kill(c.id() as libc::pid_t, sig as libc::c_int);
                }
            }
            failed_at.get_or_insert_with(Instant::now);
        }
        let mut k = 0;
        while k < children.len() {
            match children[k].1.try_wait() {
                Ok(Some(st)) => {
                    let (i, _) = children.remove(k);
                    if !st.success() && forwarded == 0 {
                        let code = st
                            .code()
                            .map_or("a signal".to_string(), |c| format!("code {c}"));
                        eprintln!("{prog}: process {i} of {n} exited with {code}");
                        if status == 0 {
                            status = st
                                .code()
                                .and_then(|c| u8::try_from(c).ok())
                                .filter(|&c| c != 0)
                                .unwrap_or(1);
                            failed_at = Some(Instant::now());
                        }
                    }
                }
                Ok(None) => k += 1,
                Err(_) => k += 1,
            }
        }
        if failed_at.is_some_and(|t| t.elapsed() > GRACE) {
            for (i, c) in &mut children {
                eprintln!(
                    "{prog}: process {i} did not stop {GRACE:?} after a peer failed; killing it"
                );
                let _ = c.kill();
                let _ = c.wait();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The children are gone, so their pipes end: the relays finish what they read.
    for r in relays {
        let _ = r.join();
    }
    if forwarded != 0 {
        return u8::try_from(128 + forwarded).unwrap_or(1);
    }
    status
}

/// Relays `from` to `to` whole lines at a time, each write made under `lock`.
fn relay(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    lock: Arc<Mutex<()>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut have = 0;
        // Held while a line longer than LONG_LINE is relayed in pieces.
        let mut held: Option<std::sync::MutexGuard<'_, ()>> = None;
        loop {
            if have == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            let n = match from.read(&mut buf[have..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            have += n;
            let cut = match buf[..have].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None if have >= LONG_LINE => have,
                None => continue,
            };
            {
                let _g = match held.take() {
                    Some(g) => g,
                    None => lock.lock().unwrap_or_else(|p| p.into_inner()),
                };
                let _ = to.write_all(&buf[..cut]).and_then(|()| to.flush());
                if cut == have && buf[cut - 1] != b'\n' {
                    // The middle of a long line: keep the lock until its end.
                    held = Some(_g);
                }
            }
            // At most LONG_LINE bytes stay behind, so the buffer stays below twice that.
            buf.copy_within(cut..have, 0);
            have -= cut;
        }
        if have > 0 {
            let _g = held
                .take()
                .unwrap_or_else(|| lock.lock().unwrap_or_else(|p| p.into_inner()));
            let _ = to.write_all(&buf[..have]).and_then(|()| to.flush());
        }
    })
}

/// `n` loopback addresses whose ports were free a moment ago.
fn free_ports(n: usize) -> std::io::Result<Vec<String>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect()
}
