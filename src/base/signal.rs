//! Whether SIGINT or SIGTERM arrived (the handlers that stop runs are
//! `runtime::interrupt`): a flag every layer may poll, such as cluster formation.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that interrupted this process, or 0.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Records that `signal` interrupted this process.
pub(crate) fn note(signal: i32) {
    SIGNAL.store(signal, Ordering::Release);
}

/// The signal this process was interrupted by, if any.
pub(crate) fn interrupted() -> Option<i32> {
    match SIGNAL.load(Ordering::Acquire) {
        0 => None,
        s => Some(s),
    }
}

/// The name of a signal number, for messages.
pub(crate) fn signal_name(signal: i32) -> String {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT".into(),
        signal_hook::consts::SIGTERM => "SIGTERM".into(),
        s => format!("signal {s}"),
    }
}
