//! Stopping runs on SIGINT / SIGTERM.
//!
//! The CLI installs the handlers ([`install`]); a signal then fails every run of this
//! process with [`Error::Interrupted`] through the same path as a failing step: the
//! workers stop within a scheduling round, sinks are told the run failed, and the peers
//! of a cluster are told why. A run past its commit point (every worker finished, its
//! sinks publishing their output: see [`crate::base::park`]) completes instead. If the process has not exited two seconds after the
//! signal (a user closure that never returns, say), it exits anyway with 128 + the
//! signal's number, as a shell reports a process killed by it.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::base::park::Shared;
use crate::error::Error;

/// The runs in progress in this process.
static RUNS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
/// How long after a signal the process may take to stop by itself.
const GRACE: Duration = Duration::from_secs(2);

pub(crate) use crate::base::signal::interrupted;

/// Registers a run, so that a signal stops it; fails it at once if a signal came
/// already.
pub(crate) fn register(shared: &Arc<Shared>) {
    let mut runs = RUNS.lock().unwrap_or_else(|p| p.into_inner());
    runs.retain(|w| w.strong_count() > 0);
    runs.push(Arc::downgrade(shared));
    drop(runs);
    if let Some(signal) = interrupted() {
        shared.interrupt(Error::Interrupted { signal });
    }
}

fn interrupt(signal: i32) {
    crate::base::signal::note(signal);
    let runs = RUNS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for shared in runs.iter().filter_map(Weak::upgrade) {
        if !shared.interrupt(Error::Interrupted { signal }) {
            tracing::debug!(signal, "the run is past its commit point: it completes");
        }
    }
}

/// Installs SIGINT and SIGTERM handlers for the rest of the process's life: the first
/// signal stops the runs in progress, and ends the process if they have not stopped
/// within two seconds.
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("waxfast-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::debug!(signal, "interrupted");
                interrupt(signal);
                std::thread::sleep(GRACE);
                eprintln!(
                    "error: {}; the run did not stop within {GRACE:?}, exiting",
                    Error::Interrupted { signal }
                );
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}
