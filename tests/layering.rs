//! The layering rule, checked: a lower layer never imports a higher one.
//!
//! Layers, bottom to top (see `docs/architecture.md`):
//!
//! 1. foundations — `config`, `positions`, `readiness`, `metrics`,
//!    `placement`, `store::entry`, `store::value`, `http`
//! 2. stores — the rest of `store` (the `Store` interface, memory, Redis)
//! 3. ingest — `kafka`
//! 4. shards — `runtime`
//! 5. api — `api`
//! 6. service — `service`, and the tools beside it (`registry`, `bin/`)
//!
//! Every `crate::…` path in a file under `src/` is looked up in that table;
//! a path that names a module of a higher layer than the file's own fails
//! the test with the file, the line and the rule. Within a layer anything
//! goes. The check reads the source as text, so it also sees paths written
//! out in full in the middle of code, not only `use` lines. A file's unit
//! tests (from its `#[cfg(test)]` line on) may use anything.

use std::path::{Path, PathBuf};

/// Module path prefixes and their layer; the longest matching prefix wins.
const LAYERS: &[(&str, u8, &str)] = &[
    ("config", 1, "foundations"),
    ("positions", 1, "foundations"),
    ("readiness", 1, "foundations"),
    ("metrics", 1, "foundations"),
    ("placement", 1, "foundations"),
    ("store::entry", 1, "foundations"),
    ("store::value", 1, "foundations"),
    ("store::projection", 1, "foundations"),
    ("http", 1, "foundations"),
    ("store", 2, "stores"),
    ("kafka", 3, "ingest"),
    ("runtime", 4, "shards"),
    ("api", 5, "api"),
    ("service", 6, "service"),
    ("registry", 6, "tools"),
    ("bin", 6, "tools"),
    ("sample", 6, "tools"),
    ("main", 6, "service"),
    ("lib", 6, "service"),
];

fn layer_of(module: &str) -> Option<(u8, &'static str)> {
    LAYERS
        .iter()
        .filter(|(prefix, _, _)| module == *prefix || module.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|(_, rank, name)| (*rank, *name))
}

/// `src/store/redis/feed.rs` -> `store::redis::feed`; `mod.rs` names its folder.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every module path named after `crate::` on `line`, expanding `{a, b::c}` groups.
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        if tail.starts_with('{') {
            let end = tail.find('}').unwrap_or(tail.len());
            for item in tail[1..end].split(',') {
                found.push(path_head(item.trim()));
            }
        } else {
            found.push(path_head(tail));
        }
        rest = tail;
    }
    found.retain(|p| !p.is_empty());
    found
}

/// The module part of a path: identifiers joined by `::`, up to anything else.
fn path_head(text: &str) -> String {
    let mut parts = Vec::new();
    for part in text.split("::") {
        let ident: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if ident.is_empty() || ident.len() != part.len() && !part.starts_with(&ident) {
            break;
        }
        parts.push(ident.clone());
        if ident.len() != part.len() {
            break;
        }
    }
    parts.join("::")
}

/// Violations in the tree under `src`, as readable lines.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let module = module_of(src, &file);
        let Some((own, own_name)) = layer_of(&module) else {
            found.push(format!("{}: module `{module}` has no layer in tests/layering.rs", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests at the bottom of a file may use anything.
        let code_lines = text.lines().take_while(|l| l.trim() != "#[cfg(test)]");
        for (n, line) in code_lines.enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for path in crate_paths(code) {
                if let Some((rank, name)) = layer_of(&path) {
                    if rank > own {
                        found.push(format!(
                            "{}:{}: `{module}` ({own_name}, layer {own}) imports `crate::{path}` ({name}, layer {rank})",
                            file.display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn no_lower_layer_imports_a_higher_one() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "layering violations (a lower layer must not import a higher one):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_catches_a_wrong_import() {
    let dir = std::env::temp_dir().join(format!("layering-check-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("http")).unwrap();
    std::fs::write(dir.join("http/connection.rs"), "use crate::api::Api;\nuse crate::{config::Limits, runtime::x};\n")
        .unwrap();
    std::fs::write(dir.join("api.rs"), "use crate::http::connection;\n").unwrap();
    let found = violations(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("`crate::api::Api`") && found[1].contains("`crate::runtime::x`"), "{found:#?}");
}

#[test]
fn paths_are_read_from_use_groups_and_code() {
    assert_eq!(crate_paths("use crate::{a::B, c};"), vec!["a::B".to_string(), "c".to_string()]);
    assert_eq!(crate_paths("let x = crate::kafka::stats::f(crate::api::y);"), vec!["kafka::stats::f", "api::y"]);
    assert_eq!(layer_of("store::entry::Entry"), Some((1, "foundations")));
    assert_eq!(layer_of("store::memory"), Some((2, "stores")));
}
