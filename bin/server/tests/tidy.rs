//! Tidy checks over the source tree: the README's configuration table names every setting
//! the server reads, and every Rust module opens with a `//!` line saying what it is for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every `"UPPER_CASE"` string literal passed to the settings reader in `config.rs`.
fn variables_read_by_config() -> BTreeSet<String> {
    let source = include_str!("../src/config.rs");
    let mut vars = BTreeSet::new();
    for piece in source.split('"').skip(1).step_by(2) {
        let looks_like_var = piece.len() >= 4
            && piece
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
            && piece.contains('_')
            || matches!(piece, "HOST" | "PORT" | "DEBUG");
        if looks_like_var && source.contains(&format!("(\"{piece}\"")) {
            vars.insert(piece.to_owned());
        }
    }
    vars
}

#[test]
fn readme_documents_every_setting() {
    let readme = include_str!("../../../README.md");
    let vars = variables_read_by_config();
    assert!(vars.len() > 40, "found only {vars:?}");
    for must in [
        "BOT_TOKEN",
        "SECRET_KEY",
        "CORS_ALLOW_ORIGINS",
        "TELCALL_CONFIG",
    ] {
        assert!(vars.contains(must), "{must} not found in config.rs");
    }
    let missing: Vec<_> = vars
        .iter()
        .filter(|v| !readme.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README configuration table lacks {missing:?}"
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n != "target" && n != ".git")
            {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_opens_with_a_doc_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["crates", "bin", "migration"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a `//!` line: {missing:?}"
    );
}
