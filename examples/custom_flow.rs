//! Your own `waxfast` binary: register your flows next to the built-in ones and get the
//! whole `waxfast` command line (`--list`, `-s`, the `WAXFAST_*` variables, exit codes)
//! for free.
//!
//! ```sh
//! cargo run --example custom_flow -- squares:4     # 0 1 4 9
//! cargo run --example custom_flow -- parity:10     # even=20 odd=25
//! cargo run --example custom_flow -- simple        # the built-ins are still there
//! cargo run --example custom_flow -- --list
//! ```

use std::process::ExitCode;

use waxfast::cli::FlowRegistry;
use waxfast::connectors::{stdio::StdOutSink, testing::TestingSource};
use waxfast::Dataflow;

/// Parses the `N` of `NAME:N`; the error becomes a usage error (exit 2).
fn parse_n(args: Option<&str>) -> Result<u64, String> {
    let text = args.ok_or("needs a count: NAME:N")?;
    text.parse()
        .map_err(|_| format!("N must be a whole number >= 0, got {text:?}"))
}

/// Prints `n * n` for `n` in `0..N`.
fn squares(n: u64) -> Dataflow {
    let flow = Dataflow::new("squares");
    flow.input("inp", TestingSource::new(0..n))
        .map("square", |x| x * x)
        .output("out", StdOutSink::new());
    flow
}

/// Sums the even and the odd numbers of `0..N` separately: a keyed flow.
fn parity(n: u64) -> Dataflow {
    let flow = Dataflow::new("parity");
    flow.input("inp", TestingSource::new(0..n))
        .key_on("key", |x| {
            if x % 2 == 0 { "even" } else { "odd" }.to_string()
        })
        .reduce_final("sum", |a, b| a + b)
        .map("fmt", |(k, sum)| format!("{k}={sum}"))
        .output("out", StdOutSink::new());
    flow
}

fn main() -> ExitCode {
    // `named`: `--version` prints `custom_flow 1.0.0`, `--help` and the messages say
    // `custom_flow`, not `waxfast`.
    let flows = FlowRegistry::with_builtins()
        .named("custom_flow", "1.0.0")
        .about("Squares and parities: a custom dataflow binary.")
        .register("squares", "squares:N  print n*n for n in 0..N", |args| {
            parse_n(args).map(squares)
        })
        .register(
            "parity",
            "parity:N  sum the even and the odd n in 0..N",
            |args| parse_n(args).map(parity),
        );
    waxfast::cli::main(flows)
}
