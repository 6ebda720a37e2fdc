//! The `waxfast` command: runs a registered flow, like `python -m bytewax.run`.

/// mimalloc: batches are allocated on one worker and freed on another; glibc's malloc
/// serialises those cross-thread frees (measured in BENCHMARKS.md), mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    waxfast::cli::main(waxfast::cli::FlowRegistry::with_builtins())
}
