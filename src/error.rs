//! The errors a dataflow build or run can end with.
//!
//! Every variant names what was wrong (the step id, the flow) and how to fix it. Entry
//! points ([`crate::run_main`]) return [`Error`]; nothing in the runtime panics on a
//! condition a user can cause.

/// A boxed error from user code (a source, a sink, or an operator's fallible logic).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a dataflow could not be built or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two steps in the same scope were given the same id.
    #[error("duplicate step id {0:?}: step ids must be unique within their parent; rename one of the steps")]
    DuplicateStepId(String),
    /// A step id that cannot be used (empty, or containing a `.`).
    #[error("invalid step id {0:?}: a step id must be non-empty and must not contain '.'")]
    InvalidStepId(String),
    /// The flow has no input step.
    #[error("dataflow {0:?} has no input step: add one with `Dataflow::input`")]
    NoInput(String),
    /// The flow has no output step.
    #[error("dataflow {0:?} has no output step: add one with `Stream::output` (or `inspect`)")]
    NoOutput(String),
    /// User code panicked inside a step.
    #[error("step {step_id:?} panicked: {message}")]
    StepPanicked {
        /// Full dotted id of the step whose code panicked.
        step_id: String,
        /// The panic message.
        message: String,
    },
    /// A source, sink or operator returned an error.
    #[error("error in step {step_id:?}: {source}")]
    Step {
        /// Full dotted id of the failing step.
        step_id: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The run configuration is invalid (for example zero workers).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// This worker stopped because another worker failed (the run reports that
    /// worker's error, not this one).
    #[error("stopped because another worker failed")]
    Aborted,
    /// The cluster could not form: a peer never answered, refused the handshake, or
    /// sent something that is not the waxfast protocol.
    #[error("cluster: {0}")]
    Cluster(String),
    /// A connection to another process of the cluster was lost before the run ended
    /// (the process died, or the network failed).
    #[error("lost process {process} ({address}): {reason}; the cluster cannot finish without it")]
    PeerLost {
        /// The lost process's id.
        process: usize,
        /// Its address from `-a`.
        address: String,
        /// What the connection reported.
        reason: String,
    },
    /// Another process of the cluster failed and told this one to stop.
    #[error("stopped because process {process} failed: {message}")]
    PeerFailed {
        /// The failing process's id.
        process: usize,
        /// Its error.
        message: String,
    },
    /// The recovery directory or one of its partitions cannot be used: missing, not
    /// initialised, corrupt, or made for another flow. The message names the path.
    #[error("recovery: {0}")]
    Recovery(String),
    /// The process received SIGINT or SIGTERM (see [`crate::runtime::install_signal_handlers`]).
    #[error("interrupted by {}: the run stopped before it finished", crate::base::signal::signal_name(*signal))]
    Interrupted {
        /// The signal's number.
        signal: i32,
    },
    /// A worker thread died without reporting an error of its own.
    #[error("worker {worker} stopped unexpectedly: {message}")]
    Worker {
        /// Global index of the worker.
        worker: usize,
        /// What is known of the cause.
        message: String,
    },
}

impl Error {
    /// The id of the step this error names, if it names one.
    pub fn step_id(&self) -> Option<&str> {
        match self {
            Error::StepPanicked { step_id, .. } | Error::Step { step_id, .. } => Some(step_id),
            _ => None,
        }
    }

    /// Wraps a user error with the id of the step it came from.
    pub fn in_step(step_id: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Step {
            step_id: step_id.into(),
            source: source.into(),
        }
    }
}

/// Short for `std::result::Result<T, waxfast::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Ends the run with `err`: unwinds to the worker's catcher without invoking the panic
/// hook (the error is reported once, by the entry point).
pub(crate) fn fail(err: Error) -> ! {
    std::panic::resume_unwind(Box::new(err))
}
