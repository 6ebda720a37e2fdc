//! The one tokio runtime of the Kafka connectors: a single background thread per
//! process, started on first use, so the engine's workers stay synchronous.
//!
//! Source partitions spawn their fetch loops on it and take what those fetched without
//! blocking; sinks hand it batches to produce. A worker only ever waits on it when it
//! must: while connecting and listing partitions (before the run starts), and in a
//! sink's `sync`/`close`, for the produce acknowledgements.

use std::future::Future;
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("waxfast-kafka")
            .enable_time()
            .enable_io()
            .build()
            .expect("the Kafka connectors' tokio runtime starts (a thread and an epoll fd)")
    })
}

/// Runs `f` on the runtime and waits for it (not from inside the runtime).
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Runs `f` on the runtime in the background.
pub(crate) fn spawn<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(f)
}
