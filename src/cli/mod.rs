//! The `waxfast` command line, shaped like `python -m bytewax.run`.
//!
//! `waxfast [OPTIONS] <FLOW>` runs a registered flow. `FLOW` is `NAME` or `NAME:ARGS`;
//! `ARGS` is handed to the flow's factory as a string. Users register their own flows
//! and call [`main`] from their own binary:
//!
//! ```no_run
//! use waxfast::cli::{main as waxfast_main, FlowRegistry};
//! use waxfast::connectors::{stdio::StdOutSink, testing::TestingSource};
//! use waxfast::Dataflow;
//!
//! fn main() -> std::process::ExitCode {
//!     let flows = FlowRegistry::with_builtins().register("squares", "print n*n for n in 0..N", |args| {
//!         let n: u64 = args.unwrap_or("5").parse().map_err(|e| format!("N: {e}"))?;
//!         let flow = Dataflow::new("squares");
//!         flow.input("inp", TestingSource::new(0..n)).map("sq", |x| x * x).output("out", StdOutSink::new());
//!         Ok(flow)
//!     });
//!     waxfast_main(flows)
//! }
//! ```
//!
//! Exit codes: 0 on success, 1 when the run fails (the message names the step), 2 for a
//! usage error (the message names the flag or environment variable).

mod args;
mod launch;

use std::ffi::OsString;
use std::process::ExitCode;

use crate::dataflow::Dataflow;
use crate::runtime::{cluster_main_with, RunConfig};

pub use args::Settings;

type Factory = Box<dyn Fn(Option<&str>) -> Result<Dataflow, String> + Send + Sync>;

struct FlowEntry {
    name: String,
    description: String,
    factory: Factory,
}

/// The flows a `waxfast` binary can run, by name, and the name, version and about
/// text that binary gives in `--help`, `--version` and its messages.
#[derive(Default)]
pub struct FlowRegistry {
    entries: Vec<FlowEntry>,
    name: Option<String>,
    version: Option<String>,
    about: Option<String>,
}

/// A binary's identity on its command line (strings leaked once per process: clap
/// takes `&'static str`).
pub(crate) struct Program {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) about: &'static str,
}

impl Program {
    /// `registry`'s identity; a binary that named none is called by its file name
    /// (`argv[0]`) and shows the waxfast version it was built with.
    fn of(registry: &FlowRegistry, argv0: Option<&OsString>) -> Program {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let name = registry.name.clone().unwrap_or_else(|| {
            argv0
                .and_then(|a| std::path::Path::new(a).file_stem())
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "waxfast".to_string())
        });
        let version = registry
            .version
            .clone()
            .unwrap_or_else(|| format!("(built with waxfast {})", env!("CARGO_PKG_VERSION")));
        let about = registry.about.clone().unwrap_or_else(|| {
            "Runs a dataflow (built with waxfast), like `python -m bytewax.run`.".to_string()
        });
        Program {
            name: leak(name),
            version: leak(version),
            about: leak(about),
        }
    }
}

impl std::fmt::Debug for FlowRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.name))
            .finish()
    }
}

impl FlowRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding the built-in flows (`simple`, `wordcount`).
    pub fn with_builtins() -> Self {
        crate::flows::register_builtins(Self::new())
    }

    /// Registers (or replaces) flow `name`. The factory gets the text after `NAME:` (if
    /// any) and returns the flow, or a message saying what the arguments should be.
    pub fn register(
        mut self,
        name: &str,
        description: &str,
        factory: impl Fn(Option<&str>) -> Result<Dataflow, String> + Send + Sync + 'static,
    ) -> Self {
        self.entries.retain(|e| e.name != name);
        self.entries.push(FlowEntry {
            name: name.to_string(),
            description: description.to_string(),
            factory: Box::new(factory),
        });
        self
    }

    /// Names the binary: `name` and `version` are what `--help`, `--version` and its
    /// messages (`see \`NAME --list\``) show. Without it a binary is called by its file
    /// name and shows the waxfast version it was built with.
    ///
    /// ```
    /// use waxfast::cli::FlowRegistry;
    /// let flows = FlowRegistry::with_builtins().named("mytool", env!("CARGO_PKG_VERSION"));
    /// // waxfast::cli::main(flows) would now print `mytool 0.1.0` for --version.
    /// # let _ = flows;
    /// ```
    pub fn named(mut self, name: &str, version: &str) -> Self {
        self.name = Some(name.to_string());
        self.version = Some(version.to_string());
        self
    }

    /// The one-line description `--help` shows (default: "Runs a dataflow (built with
    /// waxfast), like `python -m bytewax.run`.").
    pub fn about(mut self, about: &str) -> Self {
        self.about = Some(about.to_string());
        self
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    fn get(&self, name: &str) -> Option<&FlowEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Builds `NAME[:ARGS]`: its name, its arguments and the flow, or a usage message.
    fn make<'a>(
        &self,
        flow_arg: &'a str,
        prog: &str,
    ) -> Result<(&'a str, Option<&'a str>, Dataflow), String> {
        let (name, flow_args) = match flow_arg.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (flow_arg, None),
        };
        let Some(entry) = self.get(name) else {
            return Err(format!(
                "unknown flow {name:?}; known flows: {} (see `{prog} --list`)",
                self.names().join(", ")
            ));
        };
        let flow = (entry.factory)(flow_args).map_err(|msg| format!("flow {name:?}: {msg}"))?;
        Ok((name, flow_args, flow))
    }
}

/// Runs the command line of this process against `registry`.
///
/// SIGINT and SIGTERM stop the run (exit code 130 and 143) with the same clean-up as a
/// failing step: sinks of a run without `-r` remove their partial files, the peers of a
/// cluster are told, and a `-p` launcher forwards the signal to its processes.
pub fn main(registry: FlowRegistry) -> ExitCode {
    if let Err(e) = crate::runtime::install_signal_handlers() {
        eprintln!("error: cannot install the SIGINT/SIGTERM handlers: {e}");
        return ExitCode::from(1);
    }
    ExitCode::from(run(std::env::args_os(), &registry))
}

/// Runs a command line (the first element is the program name) and returns the exit
/// code: 0 success, 1 run failure, 2 usage error.
pub fn run<I, T>(args: I, registry: &FlowRegistry) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let program = Program::of(registry, args.first());
    let prog = program.name;
    if args.get(1).is_some_and(|a| a == "recovery") {
        return recovery_command(prog, &args[2..]);
    }
    if args.get(1).is_some_and(|a| a == "visualize") {
        return visualize_command(prog, &args[2..], registry);
    }
    let settings = match args::parse(args, &program) {
        Ok(Some(s)) => s,
        Ok(None) => return 0, // --help / --version printed
        Err(args::ArgsError::Clap(e)) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
        Err(args::ArgsError::Usage(msg)) => return usage_error(&msg),
    };
    if let Some(text) = std::env::var_os("WAXFAST_LOG") {
        let checked = match text.to_str() {
            Some(t) => args::check_log_filter(t),
            None => Err("environment variable WAXFAST_LOG is not valid UTF-8".to_string()),
        };
        if let Err(msg) = checked {
            return usage_error(&msg);
        }
    }
    init_logging(settings.log_json);
    if settings.list {
        for e in &registry.entries {
            println!("{:<12} {}", e.name, e.description);
        }
        return 0;
    }
    let Some(flow_arg) = settings.flow.as_deref() else {
        return usage_error(&format!(
            "missing FLOW: name the flow to run (see `{prog} --list`)"
        ));
    };
    let (name, flow_args, flow) = match registry.make(flow_arg, prog) {
        Ok(made) => made,
        Err(msg) => return usage_error(&msg),
    };
    if let Some(n) = settings.processes {
        return launch::launch(n, &settings, prog);
    }
    let mut config = RunConfig::default()
        .epoch_interval(settings.epoch_interval)
        .pin(settings.pin)
        .connect_timeout(settings.connect_timeout)
        .peer_timeout(settings.peer_timeout)
        .transport(settings.transport)
        .flow_args(flow_args.unwrap_or_default());
    if let Some(secret) = &settings.cluster_secret {
        config = config.cluster_secret(secret.clone());
    }
    if let Some(addr) = settings.api {
        config = config.api(crate::observe::ApiConfig::new(addr));
        eprintln!("waxfast: dataflow API on http://{addr}/ (dashboard), /metrics, /dataflow");
    }
    if let Some(dir) = &settings.recovery_directory {
        config = config.recovery(
            crate::recovery::RecoveryConfig::new(dir).backup_interval(settings.backup_interval),
        );
    }
    tracing::info!(flow = name, workers = settings.workers, "starting");
    match cluster_main_with(
        &flow,
        &settings.addresses,
        settings.process_id,
        settings.workers,
        &config,
    ) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                crate::error::Error::Interrupted { signal } => {
                    u8::try_from(128 + signal).unwrap_or(1)
                }
                _ => 1,
            }
        }
    }
}

const VISUALIZE_USAGE: &str = "usage: waxfast visualize FLOW[:ARGS] [--format mermaid|json|dot]";

/// `waxfast visualize FLOW[:ARGS]` (Bytewax: `python -m bytewax.visualize`): prints the
/// flow's graph as Mermaid, or as `RenderedDataflow` JSON or Graphviz dot.
fn visualize_command(prog: &str, args: &[OsString], registry: &FlowRegistry) -> u8 {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut flow = None;
    let mut format = "mermaid".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("Prints a flow's graph (Mermaid by default).\n\n{VISUALIZE_USAGE}");
                return 0;
            }
            "--format" | "-f" => match it.next() {
                Some(f) => format = f.clone(),
                None => return usage_error(&format!("--format needs a value; {VISUALIZE_USAGE}")),
            },
            f if f.starts_with("--format=") => format = f["--format=".len()..].to_string(),
            f if f.starts_with('-') => {
                return usage_error(&format!("unknown option {f:?}; {VISUALIZE_USAGE}"))
            }
            f if flow.is_none() => flow = Some(f.to_string()),
            f => return usage_error(&format!("unexpected argument {f:?}; {VISUALIZE_USAGE}")),
        }
    }
    let Some(flow_arg) = flow else {
        return usage_error(&format!("missing FLOW; {VISUALIZE_USAGE}"));
    };
    let flow = match registry.make(&flow_arg, prog) {
        Ok((_, _, flow)) => flow,
        Err(msg) => return usage_error(&msg),
    };
    let graph = match crate::observe::RenderedDataflow::of(&flow) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    match format.as_str() {
        "mermaid" => print!("{}", graph.to_mermaid()),
        "json" => println!("{}", graph.to_json()),
        "dot" => print!("{}", graph.to_dot()),
        other => {
            return usage_error(&format!(
                "invalid value {other:?} for --format: expected mermaid, json or dot"
            ))
        }
    }
    0
}

/// `PROG recovery init DIR COUNT` (Bytewax: `python -m bytewax.recovery DIR COUNT`).
fn recovery_command(prog: &str, args: &[OsString]) -> u8 {
    let usage = format!("usage: {prog} recovery init DIR COUNT");
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match args.first().map(String::as_str) {
        Some("-h" | "--help") => {
            println!("Creates COUNT empty recovery partitions in DIR, for `{prog} FLOW -r DIR`.\n\n{usage}");
            0
        }
        Some("init") => {
            let [_, dir, count] = args.as_slice() else {
                return usage_error(&format!("recovery init takes DIR and COUNT; {usage}"));
            };
            let count = match count.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return usage_error(&format!(
                        "invalid COUNT {count:?}: expected a whole number >= 1; {usage}"
                    ))
                }
            };
            match crate::recovery::init(std::path::Path::new(dir), count) {
                Ok(()) => {
                    println!("created {count} recovery partition(s) in {dir}");
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
        Some(other) => usage_error(&format!("unknown recovery command {other:?}; {usage}")),
        None => usage_error(&usage),
    }
}

fn usage_error(msg: &str) -> u8 {
    eprintln!("error: {msg}");
    2
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WAXFAST_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    // Colours only on a terminal: a log sent to a file or a pipe stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        // One object per line; the worker's span puts `worker_index` on each event.
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        fmt.try_init()
    };
}
