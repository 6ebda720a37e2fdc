//! `-p N`: run a cluster of N processes on this machine (Bytewax's
//! `python -m bytewax.testing -p N`).
//!
//! Picks N free loopback ports, starts this executable N times with `-i K -a ADDRS`
//! and the same flow and settings, lets their output through, and exits with the first
//! failing child's status (1 if any failed).

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::args::Settings;

/// After one child fails, how long the others get to notice and exit by themselves.
const GRACE: Duration = Duration::from_secs(10);

pub(crate) fn launch(n: usize, s: &Settings) -> u8 {
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
    let joined = addresses.join(";");
    let flow = s.flow.clone().unwrap_or_default();
    let mut children: Vec<(usize, Child)> = Vec::new();
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
            .env_remove("WAXFAST_PROCESSES")
            .env_remove("WAXFAST_PROCESS_ID")
            .env_remove("WAXFAST_ADDRESSES")
            .env_remove("WAXFAST_RECOVERY_DIRECTORY")
            .env_remove("WAXFAST_BACKUP_INTERVAL")
            .env_remove("WAXFAST_SNAPSHOT_INTERVAL");
        if !s.pin {
            cmd.arg("--no-pin");
        }
        if let Some(dir) = &s.recovery_directory {
            cmd.arg("-r")
                .arg(dir)
                .arg("-b")
                .arg(s.backup_interval.as_secs_f64().to_string());
        }
        match cmd.spawn() {
            Ok(c) => children.push((i, c)),
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
    while !children.is_empty() {
        let mut k = 0;
        while k < children.len() {
            match children[k].1.try_wait() {
                Ok(Some(st)) => {
                    let (i, _) = children.remove(k);
                    if !st.success() {
                        let code = st
                            .code()
                            .map_or("a signal".to_string(), |c| format!("code {c}"));
                        eprintln!("waxfast: process {i} of {n} exited with {code}");
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
                    "waxfast: process {i} did not stop {GRACE:?} after a peer failed; killing it"
                );
                let _ = c.kill();
                let _ = c.wait();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    status
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
