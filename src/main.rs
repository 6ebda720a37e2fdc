//! The `waxfast` command: runs a registered flow, like `python -m bytewax.run`.

fn main() -> std::process::ExitCode {
    waxfast::cli::main(waxfast::cli::FlowRegistry::with_builtins())
}
