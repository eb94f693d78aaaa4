//! Tidy checks over the whole workspace: crates depend only in the directions the design
//! allows, every Rust file opens with a `//!` doc, and no file grows into a god module.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("server/ is inside the workspace").to_owned()
}

/// Names of the packages `manifest` depends on, in any dependency section.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line.ends_with("dependencies]");
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once('=') {
            out.push(name.trim().trim_matches('"').to_owned());
        }
    }
    out
}

/// (crate directory, dependencies it must never have)
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("storage", &["datafusion", "isobar-query", "isobar-ingest", "isobar-server", "pgwire", "datafusion-postgres", "arrow-flight"]),
    ("ingest", &["isobar-query", "isobar-server", "datafusion", "pgwire", "datafusion-postgres"]),
    ("query", &["isobar-ingest", "isobar-server", "pgwire", "datafusion-postgres", "arrow-flight"]),
];

fn check_direction(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for (krate, forbidden) in FORBIDDEN {
        let path = root.join(krate).join("Cargo.toml");
        let manifest = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for dep in dependencies(&manifest) {
            if forbidden.contains(&dep.as_str()) {
                problems.push(format!("{krate} depends on {dep}, against the design's dependency direction"));
            }
        }
    }
    problems
}

#[test]
fn crates_depend_only_downward() {
    let problems = check_direction(&workspace_root());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_direction_check_catches_a_wrong_edge() {
    let dir = tempfile::tempdir().expect("tempdir");
    for krate in ["storage", "ingest", "query"] {
        std::fs::create_dir_all(dir.path().join(krate)).expect("mkdir");
        let deps = if krate == "ingest" { "isobar-query = { path = \"../query\" }" } else { "" };
        std::fs::write(dir.path().join(krate).join("Cargo.toml"), format!("[package]\nname = \"x\"\n\n[dependencies]\n{deps}\n"))
            .expect("write");
    }
    assert_eq!(check_direction(dir.path()), ["ingest depends on isobar-query, against the design's dependency direction"]);
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("list").map(|e| e.expect("entry").path()) {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if entry.is_dir() && name != "target" && !name.starts_with('.') {
            rust_files(&entry, out);
        } else if entry.extension().is_some_and(|e| e == "rs") {
            out.push(entry);
        }
    }
}

#[test]
fn every_module_is_documented_and_small() {
    let root = workspace_root();
    let mut files = Vec::new();
    for krate in ["storage", "ingest", "query", "server", "benches", "fuzz"] {
        rust_files(&root.join(krate), &mut files);
    }
    assert!(files.len() > 10);
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{}: no `//!` module doc", file.display()));
        }
        let lines = text.lines().count();
        if lines > 1000 {
            problems.push(format!("{}: {lines} lines; split it by purpose", file.display()));
        }
        if text.contains(concat!("#[", "should_panic")) {
            problems.push(format!("{}: a should_panic test; test the error instead", file.display()));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
