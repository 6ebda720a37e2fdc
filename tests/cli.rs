//! End-to-end tests of the `waxfast` command line: each test spawns the real built
//! binary (or the `custom_flow` example) and checks its exit code, stdout and stderr.

mod util;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use util::{run_with_timeout, stderr, stdout, waxfast};

/// Runs `waxfast ARGS`.
fn run(args: &[&str]) -> Output {
    run_with_timeout(waxfast().args(args))
}

/// Runs `waxfast ARGS` with extra environment variables.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = waxfast();
    cmd.args(args).envs(env.iter().copied());
    run_with_timeout(&mut cmd)
}

/// Asserts a clean success that printed exactly `expected` on stdout.
fn assert_success(o: &Output, expected: &str) {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    assert_eq!(stdout(o), expected, "stderr: {}", stderr(o));
}

/// Asserts a usage error: exit 2, nothing on stdout, and stderr containing each of
/// `needles` (the flag, variable or value at fault).
fn assert_usage_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(stdout(o), "", "a usage error prints nothing on stdout");
    assert!(
        !err.contains("panicked"),
        "a usage error must not panic: {err}"
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "stderr should mention {needle:?}: {err}"
        );
    }
}

/// Asserts a run failure: exit 1 and stderr containing each of `needles`.
fn assert_run_failure(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(
        !err.contains("panicked"),
        "a run failure must not panic: {err}"
    );
    for needle in needles {
        assert!(
            err.contains(needle),
            "stderr should mention {needle:?}: {err}"
        );
    }
}

/// A temporary file holding `bytes`.
fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(bytes).expect("write temp file");
    f.flush().expect("flush temp file");
    f
}

/// `waxfast wordcount:PATH`.
fn wordcount(path: &Path) -> Output {
    run(&[&format!("wordcount:{}", path.display())])
}

// ---------------------------------------------------------------------------------------
// Built-in flows.

#[test]
fn simple_prints_one_two_three() {
    assert_success(&run(&["simple"]), "1\n2\n3\n");
}

#[test]
fn simple_rejects_arguments() {
    assert_usage_error(&run(&["simple:x"]), &["simple", "\"x\""]);
}

/// The `LINES` of Bytewax's reference `flows/wordcount.py`.
const REFERENCE_LINES: [&str; 4] = [
    "the quick brown fox",
    "jumps over the lazy dog",
    "The dog barks",
    "the end",
];

const REFERENCE_COUNTS: &str =
    "barks=1\nbrown=1\ndog=2\nend=1\nfox=1\njumps=1\nlazy=1\nover=1\nquick=1\nthe=4\n";

#[test]
fn wordcount_counts_the_reference_lines() {
    let f = temp_file((REFERENCE_LINES.join("\n") + "\n").as_bytes());
    assert_success(&wordcount(f.path()), REFERENCE_COUNTS);
}

#[test]
fn wordcount_handles_crlf_and_a_last_line_without_newline() {
    let f = temp_file(REFERENCE_LINES.join("\r\n").as_bytes());
    assert_success(&wordcount(f.path()), REFERENCE_COUNTS);
}

#[test]
fn wordcount_of_an_empty_file_prints_nothing() {
    let f = temp_file(b"");
    let o = wordcount(f.path());
    assert_success(&o, "");
    assert_eq!(stderr(&o), "", "nothing to complain about");
}

#[test]
fn wordcount_of_a_large_file_counts_every_word() {
    // 200,000 words over 20,000 distinct ones (mixed case), in lines of 1 to 23 words,
    // blank lines and one very long line: about 1.5 MB in, 200 KB out, so both the file
    // reader and the stdout sink go through several buffers.
    const WORDS: usize = 200_000;
    const LONG_LINE_WORDS: usize = 50_000;
    let mut text = String::new();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut in_line = 0;
    for i in 0..WORDS {
        let k = (i * 7919) % 20_000;
        let word = if i % 3 == 0 {
            format!("Word{k}")
        } else {
            format!("word{k}")
        };
        *expected.entry(format!("word{k}")).or_default() += 1;
        text.push_str(&word);
        in_line += 1;
        let line_len = if i < LONG_LINE_WORDS {
            LONG_LINE_WORDS
        } else {
            i % 23 + 1
        };
        if in_line >= line_len {
            text.push_str(if i % 5 == 0 { "\n\n" } else { "\n" });
            in_line = 0;
        } else {
            text.push(if i % 2 == 0 { ' ' } else { '\t' });
        }
    }
    let f = temp_file(text.as_bytes());

    let o = wordcount(f.path());
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 20_000, "one line per distinct word");
    let mut total = 0;
    for line in &lines {
        let (_, count) = line.split_once('=').expect("word=count");
        total += count.parse::<u64>().expect("a count");
    }
    assert_eq!(total, WORDS as u64, "every word counted once");
    assert!(lines.contains(&"word0=10"), "{:?}", &lines[..3]);
    assert!(lines.contains(&"word19999=10"));
    let mut want = String::new();
    for (w, c) in &expected {
        writeln!(want, "{w}={c}").unwrap();
    }
    assert!(
        out == want,
        "output differs from the expected sorted word=count lines"
    );
}

// ---------------------------------------------------------------------------------------
// Built-in flow errors.

#[test]
fn wordcount_of_a_missing_file_is_a_run_failure_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-input.txt");
    let o = wordcount(&missing);
    assert_run_failure(&o, &[&missing.display().to_string()]);
    assert_eq!(stdout(&o), "");
}

#[test]
fn wordcount_of_a_directory_counts_its_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "the cat\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "The dog\n").unwrap();
    let o = wordcount(dir.path());
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "cat=1\ndog=1\nthe=2\n");
    // An empty directory is an empty input, not an error.
    let empty = tempfile::tempdir().unwrap();
    let o = wordcount(empty.path());
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(stdout(&o), "");
}

#[test]
fn wordcount_without_a_path_is_a_usage_error() {
    assert_usage_error(&run(&["wordcount"]), &["wordcount:PATH"]);
    assert_usage_error(&run(&["wordcount:"]), &["wordcount:PATH"]);
    assert_usage_error(&run(&["wordcount"]), &["file or directory"]);
}

#[test]
fn wordcount_of_invalid_utf8_names_the_path_and_byte_offset() {
    // The bad line starts at byte 20 (after "the quick brown fox\n").
    let f = temp_file(b"the quick brown fox\nbad \xff\xfe here\nthe end\n");
    let o = wordcount(f.path());
    assert_run_failure(
        &o,
        &[&f.path().display().to_string(), "UTF-8", "byte offset 20"],
    );
}

// ---------------------------------------------------------------------------------------
// --list and --help.

#[test]
fn list_prints_the_builtin_flows_with_descriptions() {
    let o = run(&["--list"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("--list should show {name}: {out}"))
    };
    assert!(line("simple").contains("print"), "{out}");
    assert!(line("wordcount").contains("wordcount:PATH"), "{out}");
    assert_eq!(stderr(&o), "");
}

#[test]
fn help_mentions_every_flag_and_environment_variable() {
    for flag in ["--help", "-h"] {
        let o = run(&[flag]);
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
        let out = stdout(&o);
        for needle in [
            "FLOW",
            "-w, --workers-per-process",
            "-i, --process-id",
            "-a, --addresses",
            "-r, --recovery-directory",
            "-s, --snapshot-interval",
            "-b, --backup-interval",
            "--list",
            "WAXFAST_WORKERS_PER_PROCESS",
            "WAXFAST_PROCESS_ID",
            "WAXFAST_ADDRESSES",
            "WAXFAST_RECOVERY_DIRECTORY",
            "WAXFAST_SNAPSHOT_INTERVAL",
            "WAXFAST_BACKUP_INTERVAL",
        ] {
            assert!(
                out.contains(needle),
                "{flag} should mention {needle:?}:\n{out}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Usage errors: exit 2, naming the flag or variable.

#[test]
fn unknown_flow_lists_the_known_ones() {
    assert_usage_error(
        &run(&["nosuchflow"]),
        &["nosuchflow", "simple", "wordcount"],
    );
}

#[test]
fn missing_flow_is_a_usage_error() {
    assert_usage_error(&run(&[]), &["FLOW"]);
    assert_usage_error(&run(&["-s", "1"]), &["FLOW"]);
}

#[test]
fn bad_workers_flag_is_named() {
    assert_usage_error(&run(&["-w", "0", "simple"]), &["-w/--workers-per-process"]);
    assert_usage_error(
        &run(&["-w", "x", "simple"]),
        &["-w/--workers-per-process", "\"x\""],
    );
    assert_usage_error(
        &run(&["--workers-per-process", "1.5", "simple"]),
        &["--workers-per-process", "\"1.5\""],
    );
}

#[test]
fn bad_workers_env_var_is_named() {
    for value in ["0", "abc"] {
        let o = run_env(&["simple"], &[("WAXFAST_WORKERS_PER_PROCESS", value)]);
        assert_usage_error(&o, &["WAXFAST_WORKERS_PER_PROCESS"]);
    }
}

#[test]
fn malformed_addresses_are_named() {
    for bad in [
        "localhost",
        "localhost:",
        ":2101",
        "localhost:0",
        "localhost:70000",
        "localhost:port",
        "a:2101;;b:2102",
    ] {
        let o = run(&["-a", bad, "simple"]);
        assert_usage_error(&o, &["-a/--addresses"]);
    }
    let o = run_env(&["simple"], &[("WAXFAST_ADDRESSES", "localhost")]);
    assert_usage_error(&o, &["WAXFAST_ADDRESSES", "\"localhost\""]);
}

#[test]
fn process_id_without_addresses_is_refused() {
    assert_usage_error(
        &run(&["-i", "0", "simple"]),
        &["-i/--process-id", "-a/--addresses"],
    );
}

#[test]
fn process_id_out_of_range_is_refused() {
    assert_usage_error(
        &run(&["-a", "localhost:2101", "-i", "1", "simple"]),
        &["-i/--process-id", "1"],
    );
}

#[test]
fn bad_process_id_env_var_is_named() {
    let o = run_env(
        &["-a", "localhost:2101", "simple"],
        &[("WAXFAST_PROCESS_ID", "x")],
    );
    assert_usage_error(&o, &["WAXFAST_PROCESS_ID", "\"x\""]);
}

#[test]
fn negative_snapshot_interval_is_named() {
    for args in [
        &["-s", "-1", "simple"][..],
        &["--snapshot-interval", "-1", "simple"],
        &["-s=-1", "simple"],
    ] {
        assert_usage_error(&run(args), &["snapshot-interval"]);
    }
    let o = run_env(&["simple"], &[("WAXFAST_SNAPSHOT_INTERVAL", "-1")]);
    assert_usage_error(&o, &["WAXFAST_SNAPSHOT_INTERVAL"]);
}

#[test]
fn non_numeric_snapshot_interval_is_named() {
    for bad in ["abc", "NaN", "inf", ""] {
        assert_usage_error(&run(&["-s", bad, "simple"]), &["-s/--snapshot-interval"]);
    }
}

#[test]
fn huge_snapshot_interval_is_a_usage_error_not_a_panic() {
    // Larger than any `Duration`.
    assert_usage_error(&run(&["-s", "1e30", "simple"]), &["-s/--snapshot-interval"]);
}

#[test]
fn backup_interval_without_recovery_is_refused() {
    assert_usage_error(
        &run(&["-b", "5", "simple"]),
        &["-b/--backup-interval", "-r/--recovery-directory"],
    );
    let o = run_env(&["simple"], &[("WAXFAST_BACKUP_INTERVAL", "5")]);
    assert_usage_error(&o, &["WAXFAST_BACKUP_INTERVAL"]);
}

#[test]
fn unknown_flag_is_named() {
    assert_usage_error(&run(&["--frobnicate", "simple"]), &["--frobnicate"]);
    assert_usage_error(&run(&["simple", "-z"]), &["-z"]);
}

// ---------------------------------------------------------------------------------------
// Options whose machinery is not built yet are refused, never ignored.

#[test]
fn recovery_init_then_a_run_snapshots_and_a_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state");
    let st = st.display().to_string();
    let o = run(&["recovery", "init", &st, "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for i in 0..3 {
        assert!(dir.path().join(format!("state/part-{i}.sqlite3")).is_file());
    }
    // A second init of the same directory is refused: it would hide the snapshots.
    let o = run(&["recovery", "init", &st, "2"]);
    assert_run_failure(&o, &[&st, "already holds recovery partitions"]);
    // `simple` has no stateful step; its input position is saved, so a rerun with the
    // same directory continues after the end and prints nothing.
    assert_success(&run(&["simple", "-r", &st, "-s", "0"]), "1\n2\n3\n");
    assert_success(&run(&["simple", "-r", &st, "-s", "0"]), "");
    // The environment variable works too.
    let o = run_env(&["simple"], &[("WAXFAST_RECOVERY_DIRECTORY", &st)]);
    assert_success(&o, "");
}

#[test]
fn recovery_usage_errors_exit_2() {
    assert_usage_error(&run(&["recovery"]), &["recovery init DIR COUNT"]);
    assert_usage_error(&run(&["recovery", "init", "x"]), &["DIR and COUNT"]);
    assert_usage_error(&run(&["recovery", "init", "x", "0"]), &["COUNT", "\"0\""]);
    assert_usage_error(&run(&["recovery", "init", "x", "many"]), &["COUNT"]);
    assert_usage_error(&run(&["recovery", "list"]), &["unknown recovery command"]);
    assert_usage_error(
        &run(&["simple", "-b", "5"]),
        &["-b/--backup-interval", "-r"],
    );
    assert_usage_error(&run(&["simple", "-r", " "]), &["-r/--recovery-directory"]);
    assert_usage_error(
        &run(&["simple", "-r", "/tmp", "-b", "soon"]),
        &["-b/--backup-interval", "soon"],
    );
}

#[test]
fn a_bad_recovery_directory_is_a_clear_error_never_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing").display().to_string();
    let o = run(&["simple", "-r", &missing]);
    assert_run_failure(&o, &[&missing, "recovery init"]);
    assert_eq!(stdout(&o), "", "nothing runs");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let empty = empty.display().to_string();
    assert_run_failure(
        &run(&["simple", "-r", &empty]),
        &[&empty, "not initialised"],
    );

    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let file = file.display().to_string();
    assert_run_failure(&run(&["simple", "-r", &file]), &[&file, "not a directory"]);

    // Partitions used by another flow.
    let st = dir.path().join("st").display().to_string();
    assert_eq!(run(&["recovery", "init", &st, "2"]).status.code(), Some(0));
    assert_success(&run(&["simple", "-r", &st]), "1\n2\n3\n");
    let words = dir.path().join("words.txt");
    std::fs::write(&words, "a b\n").unwrap();
    let o = run(&[
        "wordcount:".to_string() + &words.display().to_string(),
        "-r".into(),
        st.clone(),
    ]
    .iter()
    .map(String::as_str)
    .collect::<Vec<_>>());
    assert_run_failure(&o, &["part-", "\"simple\"", "\"wordcount\""]);

    // A missing partition.
    let p1 = dir.path().join("st/part-1.sqlite3");
    std::fs::rename(&p1, dir.path().join("aside")).unwrap();
    let o = run(&["simple", "-r", &st]);
    assert_run_failure(&o, &["partition 1 of 2 is missing", "part-1.sqlite3"]);

    // A corrupt partition.
    std::fs::write(
        &p1,
        b"this is not a database, just bytes that say so. ".repeat(100),
    )
    .unwrap();
    let o = run(&["simple", "-r", &st]);
    assert_run_failure(&o, &["part-1.sqlite3", "corrupt"]);
}

#[test]
fn a_local_cluster_from_the_environment_runs() {
    // WAXFAST_PROCESSES is -p: two processes on loopback (tests/cluster.rs covers more).
    let o = run_env(&["simple", "--no-pin"], &[("WAXFAST_PROCESSES", "2")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["1", "2", "3"]);
}

// ---------------------------------------------------------------------------------------
// Accepted options.

#[test]
fn snapshot_interval_sets_the_epoch_interval_and_runs() {
    assert_success(&run(&["simple", "-s", "0.5"]), "1\n2\n3\n");
    assert_success(&run(&["-s", "0", "simple"]), "1\n2\n3\n");
    let o = run_env(&["simple"], &[("WAXFAST_SNAPSHOT_INTERVAL", "0.5")]);
    assert_success(&o, "1\n2\n3\n");
}

#[test]
fn single_process_address_list_is_accepted() {
    assert_success(
        &run(&["-a", "localhost:2101", "-i", "0", "simple"]),
        "1\n2\n3\n",
    );
    let o = run_env(
        &["simple"],
        &[
            ("WAXFAST_ADDRESSES", "localhost:2101"),
            ("WAXFAST_PROCESS_ID", "0"),
        ],
    );
    assert_success(&o, "1\n2\n3\n");
}

#[test]
fn one_worker_is_accepted() {
    assert_success(&run(&["-w", "1", "simple"]), "1\n2\n3\n");
}

// ---------------------------------------------------------------------------------------
// examples/custom_flow.rs: a user's own binary with its own flows.

/// The built `custom_flow` example. `cargo test` builds examples, but `cargo test --test
/// cli` does not, so it is (re)built here with the profile `cargo test` uses, which is a
/// no-op when it is up to date.
fn custom_flow() -> Command {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        let profile = if cfg!(debug_assertions) {
            "test"
        } else {
            "bench"
        };
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--example",
                "custom_flow",
                "--profile",
                profile,
            ])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .status()
            .expect("run cargo build --example custom_flow");
        assert!(status.success(), "cargo build --example custom_flow failed");
        // This test binary is target/<profile>/deps/cli-<hash>.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let bin = profile_dir
            .join("examples")
            .join(format!("custom_flow{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    });
    let mut cmd = Command::new(bin);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("WAXFAST_") {
            cmd.env_remove(var);
        }
    }
    cmd
}

#[test]
fn example_runs_its_own_flow() {
    let o = run_with_timeout(custom_flow().arg("squares:4"));
    assert_success(&o, "0\n1\n4\n9\n");
    let o = run_with_timeout(custom_flow().arg("squares:0"));
    assert_success(&o, "");
}

#[test]
fn example_runs_its_keyed_flow() {
    // 0+2+4+6+8 = 20, 1+3+5+7+9 = 25.
    let o = run_with_timeout(custom_flow().arg("parity:10"));
    assert_success(&o, "even=20\nodd=25\n");
}

#[test]
fn example_bad_argument_is_a_usage_error_with_the_flows_message() {
    let o = run_with_timeout(custom_flow().arg("squares:many"));
    assert_usage_error(&o, &["squares", "\"many\""]);
    let o = run_with_timeout(custom_flow().arg("squares"));
    assert_usage_error(&o, &["squares", "NAME:N"]);
}

#[test]
fn example_keeps_the_builtins_and_the_command_line() {
    assert_success(&run_with_timeout(custom_flow().arg("simple")), "1\n2\n3\n");
    assert_success(
        &run_with_timeout(custom_flow().args(["-s", "0.5", "squares:3"])),
        "0\n1\n4\n",
    );
    let o = run_with_timeout(custom_flow().arg("--list"));
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let names: Vec<String> = stdout(&o)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        names,
        [
            "simple",
            "wordcount",
            "kafka_wordcount",
            "kafka_copy",
            "metrics_demo",
            "bench_pipe",
            "bench_wordcount",
            "bench_exchange",
            "bench_window",
            "bench_window_fold",
            "bench_fanout",
            "nexmark",
            "squares",
            "parity"
        ]
    );
    let o = run_with_timeout(custom_flow().arg("nosuchflow"));
    assert_usage_error(&o, &["nosuchflow", "squares", "parity", "simple"]);
}

// ---------------------------------------------------------------------------------------
// Input integrity and precise errors (issue 15).

/// `word=count` lines of `text` as wordcount prints them (lower-cased, sorted).
fn expected_counts(text: &str) -> String {
    let mut counts = BTreeMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w.to_lowercase()).or_insert(0u64) += 1;
    }
    counts.iter().fold(String::new(), |mut s, (w, c)| {
        let _ = writeln!(s, "{w}={c}");
        s
    })
}

/// A pipe on stdin, a FIFO and a `/proc` file were read as empty (exit 0, no output):
/// each is now one stream partition, read to its end.
#[test]
fn wordcount_of_a_pipe_a_fifo_and_a_proc_file_counts_what_they_give() {
    for workers in ["1", "2"] {
        let mut child = waxfast()
            .args(["wordcount:/dev/stdin", "-w", workers, "--no-pin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"a b\na\n").unwrap();
        let o = child.wait_with_output().unwrap();
        assert_success(&o, "a=2\nb=1\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let text: String = (0..50_000).map(|i| format!("w{} x\n", i % 7)).collect();
    let writer = {
        let (fifo, text) = (fifo.clone(), text.clone());
        std::thread::spawn(move || std::fs::write(fifo, text).unwrap())
    };
    let o = wordcount(&fifo);
    writer.join().unwrap();
    assert_success(&o, &expected_counts(&text));
    let proc_text = std::fs::read_to_string("/proc/version").unwrap();
    assert!(!proc_text.is_empty());
    assert_success(
        &wordcount(Path::new("/proc/version")),
        &expected_counts(&proc_text),
    );
}

/// Issue 15, case 4: a file truncated while it is read fails the run naming the path
/// (it gave partial counts with exit 0). Forced deterministically by the test hook
/// `WAXFAST_FAULT_TRUNCATE_INPUT`, which truncates the file after the first batch. The
/// failed run leaves no `.partial` output behind.
#[test]
fn wordcount_of_a_file_truncated_while_read_fails_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let text: String = (0..400_000)
        .map(|i| format!("word{} other\n", i % 1000))
        .collect();
    std::fs::write(&input, &text).unwrap();
    let out = dir.path().join("out.txt");
    for workers in ["1", "2"] {
        std::fs::write(&input, &text).unwrap();
        let flow = format!("wordcount:{},{}", input.display(), out.display());
        let o = run_env(
            &[&flow, "-w", workers, "--no-pin"],
            &[("WAXFAST_FAULT_TRUNCATE_INPUT", "100")],
        );
        assert_run_failure(
            &o,
            &[&input.display().to_string(), "shrank while it was read"],
        );
        assert!(stdout(&o).is_empty());
        assert!(!out.exists());
        assert!(
            !dir.path().join("out.txt.partial").exists(),
            "a failed run without -r removes its partial output"
        );
    }
    // A failure later in the run (invalid UTF-8 in the last range, after other ranges
    // were counted) also removes the partial file.
    let mut bad = text.clone().into_bytes();
    bad.extend_from_slice(b"bad \xff\n");
    std::fs::write(&input, &bad).unwrap();
    let flow = format!("wordcount:{},{}", input.display(), out.display());
    let o = run(&[&flow, "--no-pin"]);
    assert_run_failure(&o, &["invalid UTF-8"]);
    assert!(!dir.path().join("out.txt.partial").exists());
}

/// Issue 15, case 5: a long line cost quadratic time (each 4 MiB range read on to the
/// end of the line it started in). The debug log's `bytes_read` per partition shows
/// the total is linear in the file's size.
#[test]
fn wordcount_of_a_file_without_newlines_reads_each_byte_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.txt");
    // 40 MiB without a newline: ten 4 MiB ranges, one line.
    let mut text = Vec::with_capacity(40 << 20);
    while text.len() < (40 << 20) {
        text.extend_from_slice(b"abc ");
    }
    std::fs::write(&input, &text).unwrap();
    let o = run_env(
        &[
            &format!("wordcount:{}", input.display()),
            "-w",
            "2",
            "--no-pin",
        ],
        &[("WAXFAST_LOG", "waxfast::connectors=debug")],
    );
    assert_success(&o, &format!("abc={}\n", text.len() / 4));
    let log = stderr(&o);
    let mut total = 0u64;
    let mut parts = 0;
    for line in log.lines().filter(|l| l.contains("file partition done")) {
        let plain: String = {
            // Drop ANSI colour sequences.
            let mut s = String::new();
            let mut esc = false;
            for ch in line.chars() {
                match (esc, ch) {
                    (false, '\x1b') => esc = true,
                    (true, 'm') => esc = false,
                    (false, c) => s.push(c),
                    _ => {}
                }
            }
            s
        };
        let n: u64 = plain
            .split("bytes_read=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no bytes_read in {plain:?}"));
        total += n;
        parts += 1;
    }
    assert_eq!(parts, 10, "{log}");
    let len = text.len() as u64;
    // The first range reads the line once (the file), each range scans itself for a
    // line start (the file again): twice the file, plus a buffer per range. The old
    // code read 5.5 times the file here (range i read on to the end of the file).
    assert!(
        total <= 2 * len + parts * (128 << 10),
        "{total} bytes read for a {len}-byte file"
    );
}

/// Issue 15, case 6: environment variables that were taken as true, or ignored.
#[test]
fn bad_no_pin_and_log_env_vars_are_usage_errors() {
    assert_usage_error(
        &run_env(&["simple"], &[("WAXFAST_NO_PIN", "maybe")]),
        &["WAXFAST_NO_PIN", "maybe"],
    );
    assert_usage_error(
        &run_env(&["simple"], &[("WAXFAST_LOG", "garbage")]),
        &["WAXFAST_LOG", "garbage"],
    );
    assert_usage_error(
        &run_env(&["simple"], &[("WAXFAST_LOG", "waxfast=loud")]),
        &["WAXFAST_LOG"],
    );
    for ok in ["1", "0", "", "true", "off"] {
        assert_success(
            &run_env(&["simple"], &[("WAXFAST_NO_PIN", ok)]),
            "1\n2\n3\n",
        );
    }
    assert_success(
        &run_env(&["simple"], &[("WAXFAST_LOG", "warn,waxfast=error")]),
        "1\n2\n3\n",
    );
}

/// Issue 15, case 6: a recovery directory the user may not write was reported as
/// "corrupt". Run as an unprivileged user (the tests run as root here, for whom
/// permissions deny nothing).
#[test]
fn a_read_only_recovery_directory_is_named_as_such_not_corrupt() {
    use std::os::unix::fs::PermissionsExt;
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("skipped: no setpriv to run as an unprivileged user");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let st = dir.path().join("st");
    assert_eq!(
        run(&["recovery", "init", &st.display().to_string(), "2"])
            .status
            .code(),
        Some(0)
    );
    for entry in std::fs::read_dir(&st).unwrap() {
        std::fs::set_permissions(
            entry.unwrap().path(),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
    }
    std::fs::set_permissions(&st, std::fs::Permissions::from_mode(0o555)).unwrap();
    let unprivileged = |args: &[&str]| {
        let mut cmd = Command::new(setpriv);
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(waxfast().get_program())
            .args(args);
        for (k, v) in waxfast().get_envs() {
            if v.is_none() {
                cmd.env_remove(k);
            }
        }
        run_with_timeout(&mut cmd)
    };
    let o = unprivileged(&["simple", "-r", &st.display().to_string()]);
    assert_run_failure(&o, &["lock-0", "Permission denied", "must be writable"]);
    assert!(!stderr(&o).contains("corrupt"), "{}", stderr(&o));
    // A writable directory whose partitions are read-only.
    std::fs::set_permissions(&st, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = unprivileged(&["simple", "-r", &st.display().to_string()]);
    assert_run_failure(&o, &["part-0.sqlite3", "for writing", "Permission denied"]);
    assert!(!stderr(&o).contains("corrupt"), "{}", stderr(&o));
}

/// Issue 15, case 7: `waxfast-latency` flags that exhausted memory, panicked or never
/// ended are usage errors before anything runs, naming the flag and its range.
#[test]
fn latency_tool_flags_out_of_range_are_usage_errors_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &[&str]); 9] = [
        (&["--hops", "1000000"], &["--hops", "0 to 1000"]),
        (&["--duration", "nan"], &["--duration", "(0, 3600]"]),
        (&["--duration", "1e20"], &["--duration", "(0, 3600]"]),
        (&["--warmup=-1"], &["--warmup", "[0, 3600]"]),
        (&["--rate", "1e9"], &["--rate", "50000000"]),
        (
            &["--sweep", "--sweep-factor", "1"],
            &["--sweep-factor", "(1, 1000]"],
        ),
        (&["--sweep", "--sweep-factor", "0.5"], &["--sweep-factor"]),
        (
            &["-w", "64", "--hops", "100"],
            &["rings", "fewer workers or hops"],
        ),
        (
            &["--hgrm", "/nonexistent/dir/x.hgrm"],
            &["--hgrm", "/nonexistent/dir/x.hgrm"],
        ),
    ];
    for (args, needles) in cases {
        let start = std::time::Instant::now();
        let o = run_with_timeout(Command::new(env!("CARGO_BIN_EXE_waxfast-latency")).args(args));
        assert_usage_error(&o, needles);
        // Up front: no measurement ran (it would take its --duration, 5 s by default).
        assert!(
            start.elapsed() < std::time::Duration::from_secs(4),
            "{args:?}"
        );
    }
    let svg = dir.path().display().to_string();
    let o =
        run_with_timeout(Command::new(env!("CARGO_BIN_EXE_waxfast-latency")).args(["--svg", &svg]));
    assert_usage_error(&o, &["--svg", "is a directory"]);
}
