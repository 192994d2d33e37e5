//! The README's configuration table names every setting the server reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

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
