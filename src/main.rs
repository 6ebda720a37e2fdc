//! The `waxfast` command: runs a registered flow, like `python -m bytewax.run`.

/// mimalloc: glibc's malloc serialises frees of memory allocated on another thread
/// (measured in ARCHITECTURE.md, "Why pointers for batches, bytes for heap keys").
/// Built with `no_thp`: with transparent huge pages every worker's arena commit faulted
/// in and zeroed 2 MiB pages, tripling peak RSS and costing ~8% of CPU at `-w2`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let flows = waxfast::cli::FlowRegistry::with_builtins()
        .named("waxfast", env!("CARGO_PKG_VERSION"))
        .about("Runs a waxfast dataflow, like `python -m bytewax.run`.");
    waxfast::cli::main(flows)
}
