//! Parsing and validating the command line and its `WAXFAST_*` environment variables.

use std::ffi::OsString;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

/// Runs a waxfast dataflow, like `python -m bytewax.run`.
#[derive(Debug, Parser)]
#[command(name = "waxfast", version, about, long_about = None)]
struct Cli {
    /// The flow to run: NAME or NAME:ARGS (see --list).
    flow: Option<String>,

    /// Number of worker threads in this process.
    #[arg(
        short = 'w',
        long = "workers-per-process",
        env = "WAXFAST_WORKERS_PER_PROCESS",
        default_value = "1",
        value_name = "N",
        allow_negative_numbers = true
    )]
    workers_per_process: String,

    /// This process's index in --addresses (starting at 0).
    #[arg(
        short = 'i',
        long = "process-id",
        env = "WAXFAST_PROCESS_ID",
        value_name = "ID",
        allow_negative_numbers = true
    )]
    process_id: Option<String>,

    /// Addresses of all processes of the cluster, "host:port;host:port".
    #[arg(
        short = 'a',
        long = "addresses",
        env = "WAXFAST_ADDRESSES",
        value_name = "ADDRS"
    )]
    addresses: Option<String>,

    /// Start N processes of this machine as one cluster (free loopback ports; -i and
    /// -a are filled in for each), like `python -m bytewax.testing -p N`.
    #[arg(
        short = 'p',
        long = "processes",
        env = "WAXFAST_PROCESSES",
        value_name = "N",
        allow_negative_numbers = true
    )]
    processes: Option<String>,

    /// Seconds the processes of a cluster keep trying to reach each other (default 30).
    #[arg(
        long = "connect-timeout",
        env = "WAXFAST_CONNECT_TIMEOUT",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    connect_timeout: Option<String>,

    /// Seconds a cluster waits to hear anything (data or heartbeat) from a peer before
    /// it stops, naming the peer as lost (default 10).
    #[arg(
        long = "peer-timeout",
        env = "WAXFAST_PEER_TIMEOUT",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    peer_timeout: Option<String>,

    /// How processes exchange data: auto (shared memory to processes of this host, TCP
    /// to others; the default), tcp, or shm (shared memory only; a process on another
    /// host is an error).
    #[arg(long = "transport", env = "WAXFAST_TRANSPORT", value_name = "MODE")]
    transport: Option<String>,

    /// A file holding the cluster's shared secret: every connection must prove it
    /// holds it (HMAC challenge-response), others are dropped. Give every process the
    /// same file. Without it, the cluster's ports must be on a trusted network.
    #[arg(
        long = "cluster-secret-file",
        env = "WAXFAST_CLUSTER_SECRET_FILE",
        value_name = "PATH"
    )]
    cluster_secret_file: Option<String>,

    /// Directory of recovery partitions (enables snapshots and resume).
    #[arg(
        short = 'r',
        long = "recovery-directory",
        env = "WAXFAST_RECOVERY_DIRECTORY",
        value_name = "DIR"
    )]
    recovery_directory: Option<String>,

    /// Seconds between snapshots, which is the epoch interval (default 10).
    #[arg(
        short = 's',
        long = "snapshot-interval",
        env = "WAXFAST_SNAPSHOT_INTERVAL",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    snapshot_interval: Option<String>,

    /// Seconds to keep superseded snapshots, for backups of the partitions (needs -r;
    /// default 0).
    #[arg(
        short = 'b',
        long = "backup-interval",
        env = "WAXFAST_BACKUP_INTERVAL",
        value_name = "SECS",
        allow_negative_numbers = true
    )]
    backup_interval: Option<String>,

    /// Do not pin worker threads to cores.
    #[arg(long = "no-pin", env = "WAXFAST_NO_PIN", value_parser = parse_no_pin)]
    no_pin: bool,

    /// List the registered flows and exit.
    #[arg(long)]
    list: bool,

    #[command(flatten)]
    observe: ObserveArgs,
}

/// The dataflow API and log options (src/observe).
#[derive(Debug, clap::Args)]
struct ObserveArgs {
    /// Serve the dataflow API (/metrics, /dataflow, the dashboard at /) on port 3030.
    #[arg(long = "api", env = "WAXFAST_DATAFLOW_API_ENABLED", value_parser = clap::builder::FalseyValueParser::new())]
    api_enabled: bool,
    /// Serve the dataflow API on PORT (turns it on; default 3030).
    #[arg(
        long = "api-port",
        env = "WAXFAST_DATAFLOW_API_PORT",
        value_name = "PORT",
        allow_negative_numbers = true
    )]
    api_port: Option<String>,
    /// The address the dataflow API binds (turns it on; default 127.0.0.1).
    #[arg(
        long = "api-bind",
        env = "WAXFAST_DATAFLOW_API_BIND",
        value_name = "IP"
    )]
    api_bind: Option<String>,
    /// Log format on stderr: text (default) or json (one object per line, with the
    /// worker index and step id as fields). The level is WAXFAST_LOG's.
    #[arg(long = "log-format", env = "WAXFAST_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
}

/// The validated settings of one invocation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The FLOW argument, if given.
    pub flow: Option<String>,
    /// Worker threads in this process.
    pub workers: usize,
    /// This process's index.
    pub process_id: usize,
    /// All processes' addresses (empty: a single process).
    pub addresses: Vec<String>,
    /// The epoch interval.
    pub epoch_interval: Duration,
    /// `--list` was given.
    pub list: bool,
    /// Pin workers to cores.
    pub pin: bool,
    /// `-p N`: launch N local processes.
    pub processes: Option<usize>,
    /// How long cluster formation may take.
    pub connect_timeout: Duration,
    /// How long a silent peer may stay silent.
    pub peer_timeout: Duration,
    /// `--transport`.
    pub transport: crate::transport::Mode,
    /// The cluster secret, read from `--cluster-secret-file`.
    pub cluster_secret: Option<Vec<u8>>,
    /// Where the secret came from (the file given), for the launcher's children.
    pub cluster_secret_file: Option<std::path::PathBuf>,
    /// `-r`: the recovery directory.
    pub recovery_directory: Option<std::path::PathBuf>,
    /// `-b`: how long superseded snapshots are kept.
    pub backup_interval: Duration,
    /// Where the dataflow API listens, if it is on.
    pub api: Option<std::net::SocketAddr>,
    /// `--log-format json`.
    pub log_json: bool,
}

pub(crate) enum ArgsError {
    Clap(clap::Error),
    Usage(String),
}

/// Parses `args` for the program `program` (its name, version and about text in
/// `--help` and `--version`); `Ok(None)` when clap printed help or version.
pub(crate) fn parse<I, T>(args: I, program: &super::Program) -> Result<Option<Settings>, ArgsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let command = Cli::command()
        .name(program.name)
        .bin_name(program.name)
        .version(program.version)
        .about(program.about);
    let matches = match command.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    Ok(None)
                }
                _ => Err(ArgsError::Clap(e)),
            }
        }
    };
    let cli = Cli::from_arg_matches(&matches).map_err(ArgsError::Clap)?;
    validate(cli, &matches).map(Some).map_err(ArgsError::Usage)
}

/// How to name an option in a message: the env var when that is where it came from.
fn origin(m: &ArgMatches, id: &str, flag: &str, env: &str) -> String {
    match m.value_source(id) {
        Some(ValueSource::EnvVariable) => format!("environment variable {env}"),
        _ => flag.to_string(),
    }
}

/// `WAXFAST_NO_PIN`: a boolean, or empty (false). Anything else is a usage error
/// rather than a guess (`maybe` used to mean true).
fn parse_no_pin(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "n" | "f" | "off" => Ok(false),
        "1" | "true" | "yes" | "y" | "t" | "on" => Ok(true),
        _ => Err(
            "WAXFAST_NO_PIN must be 1, true, yes or on (do not pin), 0, false, no, off or empty (pin)"
                .to_string(),
        ),
    }
}

/// Checks `WAXFAST_LOG`: comma-separated directives, each a level (`error`, `warn`,
/// `info`, `debug`, `trace`, `off`) or `TARGET=LEVEL`. tracing's own parser takes a
/// misspelt level for a target name and logs nothing; this names the mistake.
pub(crate) fn check_log_filter(text: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let ok = match directive.rsplit_once('=') {
            Some((target, level)) => !target.trim().is_empty() && is_level(level),
            None => is_level(directive),
        };
        if !ok {
            return Err(format!(
                "invalid value {text:?} for environment variable WAXFAST_LOG: {directive:?} is not a level ({}) nor TARGET=LEVEL",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| ())
        .map_err(|e| format!("invalid value {text:?} for environment variable WAXFAST_LOG: {e}"))
}

fn parse_secs(text: &str, what: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid value {text:?} for {what}: expected a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "invalid value {text:?} for {what}: expected a number of seconds >= 0"
        ));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("invalid value {text:?} for {what}: too large a number of seconds"))
}

/// Parses `"host:port;host:port"`.
pub(crate) fn parse_addresses(text: &str, what: &str) -> Result<Vec<String>, String> {
    let entries: Vec<&str> = text
        .trim()
        .trim_end_matches(';')
        .split(';')
        .map(str::trim)
        .collect();
    let mut out = Vec::new();
    for e in entries {
        let bad = |why: &str| {
            format!("invalid address {e:?} in {what}: {why}; expected \"host:port;host:port\"")
        };
        let (host, port) = e.rsplit_once(':').ok_or_else(|| bad("missing ':port'"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        port.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
        if let Some(q) = out.iter().position(|o| o == e) {
            return Err(format!(
                "address {e:?} appears twice in {what} (processes {q} and {}): give every process its own host:port",
                out.len()
            ));
        }
        out.push(e.to_string());
    }
    Ok(out)
}

/// The shortest cluster secret accepted.
const MIN_SECRET: usize = 16;

/// Reads a cluster secret file: its bytes, less a trailing newline.
fn read_secret(path: &str, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = std::fs::read(path)
        .map_err(|e| format!("{what}: cannot read the cluster secret file {path:?}: {e}"))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < MIN_SECRET {
        return Err(format!(
            "{what}: the cluster secret in {path:?} is {} bytes; use at least {MIN_SECRET} (for example `head -c 32 /dev/urandom > {path}`)",
            bytes.len()
        ));
    }
    Ok(bytes)
}

fn validate(cli: Cli, m: &ArgMatches) -> Result<Settings, String> {
    let w_name = origin(
        m,
        "workers_per_process",
        "-w/--workers-per-process",
        "WAXFAST_WORKERS_PER_PROCESS",
    );
    let workers: usize = cli.workers_per_process.trim().parse().map_err(|_| {
        format!(
            "invalid value {:?} for {w_name}: expected a whole number >= 1",
            cli.workers_per_process
        )
    })?;
    if workers == 0 {
        return Err(format!("{w_name} must be at least 1"));
    }

    let a_name = origin(m, "addresses", "-a/--addresses", "WAXFAST_ADDRESSES");
    let addresses = match &cli.addresses {
        Some(text) => parse_addresses(text, &a_name)?,
        None => Vec::new(),
    };
    let i_name = origin(m, "process_id", "-i/--process-id", "WAXFAST_PROCESS_ID");
    let process_id = match &cli.process_id {
        None => {
            if addresses.len() > 1 {
                return Err(format!(
                    "{a_name} lists {} processes: say which one this is with -i/--process-id",
                    addresses.len()
                ));
            }
            0
        }
        Some(text) => {
            let id: usize = text.trim().parse().map_err(|_| {
                format!("invalid value {text:?} for {i_name}: expected a whole number >= 0")
            })?;
            if addresses.is_empty() {
                return Err(format!(
                    "{i_name} needs -a/--addresses: the process id is a position in that list"
                ));
            }
            if id >= addresses.len() {
                let valid = match addresses.len() {
                    1 => "the only valid id is 0".to_string(),
                    n => format!("valid ids: 0 to {}", n - 1),
                };
                return Err(format!(
                    "{i_name} is {id}, but {a_name} lists only {} process(es) ({valid})",
                    addresses.len()
                ));
            }
            id
        }
    };

    let r_name = origin(
        m,
        "recovery_directory",
        "-r/--recovery-directory",
        "WAXFAST_RECOVERY_DIRECTORY",
    );
    let s_name = origin(
        m,
        "snapshot_interval",
        "-s/--snapshot-interval",
        "WAXFAST_SNAPSHOT_INTERVAL",
    );
    let b_name = origin(
        m,
        "backup_interval",
        "-b/--backup-interval",
        "WAXFAST_BACKUP_INTERVAL",
    );
    let epoch_interval = match &cli.snapshot_interval {
        Some(text) => parse_secs(text, &s_name)?,
        None => Duration::from_secs(10),
    };
    let backup_interval = match &cli.backup_interval {
        Some(text) => {
            let b = parse_secs(text, &b_name)?;
            if cli.recovery_directory.is_none() {
                return Err(format!("{b_name} needs -r/--recovery-directory"));
            }
            b
        }
        None => Duration::ZERO,
    };
    let recovery_directory = match &cli.recovery_directory {
        Some(dir) if dir.trim().is_empty() => {
            return Err(format!("{r_name} is empty: name the recovery directory"))
        }
        Some(dir) => Some(std::path::PathBuf::from(dir)),
        None => None,
    };
    let p_name = origin(m, "processes", "-p/--processes", "WAXFAST_PROCESSES");
    let processes = match &cli.processes {
        None => None,
        Some(text) => {
            let n: usize = text
                .trim()
                .parse()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    format!("invalid value {text:?} for {p_name}: expected a whole number >= 1")
                })?;
            if cli.addresses.is_some() || cli.process_id.is_some() {
                return Err(format!(
                    "{p_name} starts its own processes and fills in -i and -a: do not give {a_name} or {i_name} with it"
                ));
            }
            Some(n)
        }
    };
    let t_name = origin(
        m,
        "connect_timeout",
        "--connect-timeout",
        "WAXFAST_CONNECT_TIMEOUT",
    );
    let connect_timeout = match &cli.connect_timeout {
        Some(text) => parse_secs(text, &t_name)?,
        None => Duration::from_secs(30),
    };

    let pt_name = origin(m, "peer_timeout", "--peer-timeout", "WAXFAST_PEER_TIMEOUT");
    let peer_timeout = match &cli.peer_timeout {
        Some(text) => {
            let t = parse_secs(text, &pt_name)?;
            if t.is_zero() {
                return Err(format!(
                    "invalid value {text:?} for {pt_name}: expected a number of seconds > 0"
                ));
            }
            t
        }
        None => crate::runtime::DEFAULT_PEER_TIMEOUT,
    };
    let tr_name = origin(m, "transport", "--transport", "WAXFAST_TRANSPORT");
    let transport = match &cli.transport {
        Some(text) => text
            .parse::<crate::transport::Mode>()
            .map_err(|e| format!("invalid value for {tr_name}: {e}"))?,
        None => crate::transport::Mode::Auto,
    };
    let cs_name = origin(
        m,
        "cluster_secret_file",
        "--cluster-secret-file",
        "WAXFAST_CLUSTER_SECRET_FILE",
    );
    let cluster_secret = match &cli.cluster_secret_file {
        Some(path) => Some(read_secret(path, &cs_name)?),
        None => None,
    };

    let (api, log_json) = observe_settings(&cli.observe, m)?;
    Ok(Settings {
        api,
        log_json,
        flow: cli.flow,
        peer_timeout,
        transport,
        cluster_secret,
        cluster_secret_file: cli.cluster_secret_file.map(std::path::PathBuf::from),
        workers,
        process_id,
        addresses,
        epoch_interval,
        list: cli.list,
        pin: !cli.no_pin,
        processes,
        connect_timeout,
        recovery_directory,
        backup_interval,
    })
}

/// The dataflow API's address (if on) and whether logs are JSON.
fn observe_settings(
    o: &ObserveArgs,
    m: &ArgMatches,
) -> Result<(Option<std::net::SocketAddr>, bool), String> {
    let log_json = match o.log_format.as_deref().map(str::trim) {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            let name = origin(m, "log_format", "--log-format", "WAXFAST_LOG_FORMAT");
            return Err(format!(
                "invalid value {other:?} for {name}: expected text or json"
            ));
        }
    };
    if !o.api_enabled && o.api_port.is_none() && o.api_bind.is_none() {
        return Ok((None, log_json));
    }
    let port = match &o.api_port {
        None => crate::observe::ApiConfig::DEFAULT_PORT,
        Some(text) => text
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| {
                let name = origin(m, "api_port", "--api-port", "WAXFAST_DATAFLOW_API_PORT");
                format!("invalid value {text:?} for {name}: expected a port from 1 to 65535")
            })?,
    };
    let ip = match &o.api_bind {
        None => std::net::IpAddr::from([127, 0, 0, 1]),
        Some(text) => text.trim().parse().map_err(|_| {
            let name = origin(m, "api_bind", "--api-bind", "WAXFAST_DATAFLOW_API_BIND");
            format!("invalid value {text:?} for {name}: expected an IP address such as 127.0.0.1 or 0.0.0.0")
        })?,
    };
    Ok((Some(std::net::SocketAddr::new(ip, port)), log_json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_reject() {
        assert_eq!(
            parse_addresses("a:1;b:2", "-a").unwrap(),
            vec!["a:1", "b:2"]
        );
        assert_eq!(parse_addresses("a:1;", "-a").unwrap(), vec!["a:1"]);
        assert_eq!(parse_addresses("[::1]:7", "-a").unwrap(), vec!["[::1]:7"]);
        for bad in [
            "a",
            "a:",
            ":1",
            "a:0",
            "a:70000",
            "a:1;;b:2",
            "a:x",
            "a:1;b:2;a:1",
        ] {
            let e = parse_addresses(bad, "-a/--addresses").unwrap_err();
            assert!(e.contains("-a/--addresses"), "{bad}: {e}");
        }
    }

    #[test]
    fn log_filters_and_no_pin_values_parse_and_reject() {
        for ok in [
            "debug",
            "warn,waxfast=debug",
            "waxfast::recovery=info",
            "OFF",
            "",
        ] {
            check_log_filter(ok).unwrap();
        }
        for bad in ["garbage", "debug,verbose", "waxfast=loud", "=debug"] {
            let e = check_log_filter(bad).unwrap_err();
            assert!(e.contains("WAXFAST_LOG"), "{bad}: {e}");
        }
        assert!(!parse_no_pin("").unwrap());
        assert!(parse_no_pin("Yes").unwrap());
        assert!(!parse_no_pin("0").unwrap());
        assert!(parse_no_pin("maybe")
            .unwrap_err()
            .contains("WAXFAST_NO_PIN"));
    }

    #[test]
    fn seconds_parse_and_reject() {
        assert_eq!(
            parse_secs("1.5", "-s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_secs("0", "-s").unwrap(), Duration::ZERO);
        assert!(parse_secs("-1", "-s").is_err());
        assert!(parse_secs("soon", "-s").is_err());
        assert!(parse_secs("inf", "-s").is_err());
        assert!(
            parse_secs("1e30", "-s").is_err(),
            "too large for a Duration: an error, not a panic"
        );
    }
}
