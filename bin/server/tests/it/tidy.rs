//! Tidy checks over the source tree: the README's configuration table names every setting
//! the server reads, every Rust module opens with a `//!` line saying what it is for, and no
//! file reaches for a path outside the repository (a stranger's clone has nothing beside it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every `"UPPER_CASE"` string literal passed to the settings reader in `config.rs`.
fn variables_read_by_config() -> BTreeSet<String> {
    let source = include_str!("../../src/config.rs");
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
    let readme = include_str!("../../../../README.md");
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

#[test]
fn every_module_opens_with_a_doc_line() {
    let mut files = Vec::new();
    repository_text_files(&repository_root(), &mut files);
    files.retain(|f| f.extension().is_some_and(|e| e == "rs"));
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

/// The repository root (two levels above this crate).
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The repository's text files, minus build output and hidden folders other than `.ci`.
fn repository_text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let hidden = name.starts_with('.') && !matches!(name.as_str(), ".ci" | ".github");
            if !hidden && !matches!(name.as_str(), "target" | "node_modules") {
                repository_text_files(&path, out);
            }
        } else if name != "Cargo.lock" && std::fs::read_to_string(&path).is_ok() {
            out.push(path);
        }
    }
}

/// Resolves `relative` against `base` lexically; `None` when it climbs above `root`.
fn resolve(root: &Path, base: &Path, relative: &str) -> Option<PathBuf> {
    let mut inside: Vec<&str> = base
        .strip_prefix(root)
        .unwrap()
        .components()
        .map(|c| c.as_os_str().to_str().unwrap())
        .collect();
    for segment in relative.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                inside.pop()?;
            }
            other => inside.push(other),
        }
    }
    Some(inside.iter().fold(root.to_path_buf(), |p, s| p.join(s)))
}

/// The relative paths with a `..` segment that `text` mentions: maximal runs of path
/// characters, so `include_str!("../x")`, `fs::read("../x")`, `[doc](../x)`,
/// `path = "../x"`, `cat ../x` and `"/../x"` appended to a crate directory are all found.
fn parent_relative_paths(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "_.-/".contains(c)))
        // `concat!(env!("CARGO_MANIFEST_DIR"), "/../x")` is relative to the crate.
        .map(|token| token.strip_prefix("/..").map_or(token, |_| &token[1..]))
        .filter(|token| !token.starts_with('/'))
        .filter(|token| token.split('/').any(|segment| segment == ".."))
        .collect()
}

/// The directories a relative path in `file` may be meant from: for Rust sources the file's
/// own directory (`include_str!`) and the enclosing crate (`CARGO_MANIFEST_DIR`, the working
/// directory of tests); for scripts the repository root (they `cd` there first) and their own
/// directory (`$(dirname "$0")/..`); for
/// everything else (documents, manifests) the file's directory.
fn resolution_bases(root: &Path, file: &Path) -> Vec<PathBuf> {
    let dir = file.parent().unwrap().to_path_buf();
    let name = file.file_name().unwrap().to_string_lossy();
    if dir == root.join(".ci") || name == "justfile" || name.ends_with(".sh") {
        return vec![root.to_path_buf(), dir];
    }
    let mut bases = vec![dir.clone()];
    if name.ends_with(".rs") {
        let mut up = Some(dir.as_path());
        while let Some(d) = up.filter(|d| d.starts_with(root)) {
            if d.join("Cargo.toml").is_file() {
                bases.push(d.to_path_buf());
                break;
            }
            up = d.parent();
        }
    }
    bases
}

/// Whether `path`, mentioned in `file`, is fine: it names something inside the repository
/// from one of its bases, or it never leaves the repository whatever it is meant from (a test
/// string such as `"../etc"`).
fn stays_inside(root: &Path, file: &Path, path: &str) -> bool {
    let bases = resolution_bases(root, file);
    let resolved: Vec<_> = bases.iter().map(|b| resolve(root, b, path)).collect();
    resolved.iter().flatten().any(|p| p.exists()) || resolved.iter().all(Option::is_some)
}

/// Which `(file, path)` pairs reach outside the repository.
fn paths_leaving(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut leaving = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for path in paths_leaving_in(root, file, &text) {
            leaving.push(format!(
                "{}: {path}",
                file.strip_prefix(root).unwrap().display()
            ));
        }
    }
    leaving
}

#[test]
fn no_file_reaches_outside_the_repository() {
    let root = repository_root();
    let mut files = Vec::new();
    repository_text_files(&root, &mut files);
    assert!(files.len() > 80, "found only {} files", files.len());
    let leaving = paths_leaving(&root, &files);
    assert!(
        leaving.is_empty(),
        "these paths leave the repository, which a fresh clone does not have: {leaving:#?}"
    );
}

/// `n` parent steps: the examples below are built at run time, so this file itself holds
/// no path that leaves the repository and the scan above needs no exception for it.
fn up(n: usize) -> String {
    "../".repeat(n)
}

#[test]
fn a_path_to_a_folder_beside_the_repository_is_caught() {
    let root = repository_root();
    let leaves = |file: &str, text: &str| -> Vec<String> {
        paths_leaving_in(&root, &root.join(file), text)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let beside = |n: usize, name: &str| format!("{}shared/{name}", up(n));
    let test = "crates/auth/tests/initdata_vectors.rs";
    assert_eq!(
        leaves(
            test,
            &format!(
                r#"include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/{}"))"#,
                beside(3, "v.json")
            )
        ),
        [beside(3, "v.json")]
    );
    assert_eq!(
        leaves(test, &format!(r#"fs::read("{}")"#, beside(4, "v.json"))).len(),
        1
    );
    assert!(leaves(test, r#"include_str!("data/initdata-vectors.json")"#).is_empty());
    assert!(leaves(test, &format!(r#"include_str!("{}README.md")"#, up(3))).is_empty());
    assert!(
        leaves(
            "crates/telegram/src/bot.rs",
            &format!(r#"call_code("{}etc")"#, up(1))
        )
        .is_empty()
    );
    let manifest = "tools/loadgen/Cargo.toml";
    assert!(
        leaves(
            manifest,
            &format!(r#"x = {{ path = "{}bin/server" }}"#, up(2))
        )
        .is_empty()
    );
    assert_eq!(
        leaves(manifest, &format!(r#"x = {{ path = "{}other" }}"#, up(3))).len(),
        1
    );
    let contract = format!("cat {}", beside(1, "CONTRACT.md"));
    assert_eq!(leaves(".ci/run", &contract).len(), 1);
    assert_eq!(leaves("justfile", &contract).len(), 1);
    assert!(
        leaves(
            "docs/API.md",
            &format!("see [the README]({}README.md)", up(1))
        )
        .is_empty()
    );
    assert_eq!(
        leaves(
            "docs/API.md",
            &format!("see [the contract]({}CONTRACT.md)", up(2))
        )
        .len(),
        1
    );
}

/// The paths of `text`, as if it were the content of `file`, that reach outside.
fn paths_leaving_in<'t>(root: &Path, file: &Path, text: &'t str) -> Vec<&'t str> {
    parent_relative_paths(text)
        .into_iter()
        .filter(|path| !stays_inside(root, file, path))
        .collect()
}
