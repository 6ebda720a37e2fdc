//! The layer table of ARCHITECTURE.md, kept true: every `crate::` path in a module's
//! code (comments aside) names its own layer or one below it. A module that reaches up
//! fails this test, naming the file, the line and the path.

use std::path::Path;

/// The layers, top first (ARCHITECTURE.md, "Layers"). Modules on one line are one layer
/// and may use each other.
const LAYERS: &[&[&str]] = &[
    // The CLI's flow registry and the built-in flows that register into it.
    &["cli", "main", "flows"],
    &["connectors"],
    &["operators"],
    &["runtime", "lib"],
    &["observe"],
    &["recovery"],
    &["dataflow", "io"],
    &["exchange"],
    &["transport"],
    &["net"],
    // The shared vocabulary, with the crate's error type.
    &["base", "error"],
    &["shm"],
];

/// Paths that reach up on purpose, each with its reason (also in ARCHITECTURE.md).
const ALLOWED: &[(&str, &str, &str)] = &[(
    "dataflow",
    "crate::runtime::build::BuildCtx",
    "a step's build closure takes the worker's build context",
)];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::a::b` paths of one line of code, as `(a, "crate::a::b...")`.
fn paths(line: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let path = &tail[..end];
        let module = path.split("::").next().unwrap_or("").to_string();
        found.push((module, format!("crate::{path}")));
        rest = &tail[end..];
    }
    found
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let own = first.trim_end_matches(".rs").to_string();
        let Some(mine) = layer_of(&own) else {
            wrong.push(format!(
                "{}: module {own} is in no layer of the table",
                rel.display()
            ));
            continue;
        };
        for (n, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (module, path) in paths(code) {
                let Some(theirs) = layer_of(&module) else {
                    continue; // a re-exported item at the crate root, or a macro path
                };
                let allowed = ALLOWED
                    .iter()
                    .any(|(m, p, _)| *m == own && path.starts_with(p));
                if theirs < mine && !allowed {
                    wrong.push(format!(
                        "{}:{}: {own} uses {path}, a layer above it",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that break the layer table:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_path() {
    assert_eq!(
        paths("use crate::runtime::park::Shared; crate::net::io::x()"),
        vec![
            (
                "runtime".to_string(),
                "crate::runtime::park::Shared".to_string()
            ),
            ("net".to_string(), "crate::net::io::x".to_string()),
        ]
    );
    assert!(layer_of("runtime") < layer_of("exchange"));
    assert!(layer_of("dataflow") == layer_of("io"));
}
