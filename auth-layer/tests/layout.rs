//! The crate's dependency rule, checked on its source: a module uses only the modules below it,
//! never one above nor one beside it on the same level, and never a name through the crate root
//! (the root only re-exports). The order, top to bottom:
//!
//! ```text
//! guide                     the guide's chapters (documentation only: may name anything)
//! http | testing           the Tower layer, routes, the per-request session, the axum extractors |
//!                           the conformance kit and `TestSession` (which writes through an AuthClient)
//! client                    AuthClient: one login, session and token policy
//! oidc | store              the relying party | the session and transaction stores
//! model                     SessionData, TransactionData, User, TokenSet and the session codec
//! record                    typed records over a backend (generic: names no auth type)
//! backend                   bytes by key
//! config | endpoint | seal | return_to  configuration, the endpoint policy, sealing, return-path checks
//! error                     every error type
//! ```
//!
//! Unit tests at the end of a file (`#[cfg(test)] mod tests`), the fuzz entry points and the
//! unit tests' counting allocator (`alloc_count`) may compose any layers; they are not part of
//! the graph.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Each module's level: higher uses lower.
const LEVELS: &[(&str, u8)] = &[
    ("guide", 8),
    ("http", 7),
    ("client", 6),
    ("testing", 7),
    ("oidc", 5),
    ("store", 5),
    ("model", 4),
    ("record", 3),
    ("backend", 2),
    ("egress", 2),
    ("config", 1),
    ("endpoint", 1),
    ("seal", 1),
    ("return_to", 1),
    ("error", 0),
    ("dpop", 0),
    ("forwarded", 0),
    ("telemetry", 0),
];

/// Paths under `crate::` that are not modules of the graph but the crate's own plumbing.
const PLUMBING: &[&str] = &["__private"];

fn level(module: &str) -> Option<u8> {
    LEVELS.iter().find(|(name, _)| *name == module).map(|(_, level)| *level)
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/http/routes.rs` → `http`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The first segment of every `crate::...` path in `code` (`crate::{a::B, c}` gives a and c).
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `auth_layer_crate::` or `$crate::`-like text: not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            found.push(first_segment(&item));
        } else {
            found.push(first_segment(rest));
        }
    }
    found.retain(|s| !s.is_empty() && s != "self");
    found
}

fn first_segment(path: &str) -> String {
    path.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// The file's code that belongs to the graph: no comments, nothing from its unit tests on.
fn graph_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    code.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Every use of a module above or beside the user's own, and every name reached through the
/// crate root, as `file: uses target`.
fn violations(src: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    source_files(src, &mut files);
    let mut found = BTreeSet::new();
    for file in files {
        let module = module_of(src, &file);
        if module == "lib" || module == "fuzz_entry" || module == "alloc_count" {
            continue;
        }
        let own = level(&module).unwrap_or_else(|| panic!("{}: module `{module}` has no level", file.display()));
        let text = fs::read_to_string(&file).unwrap();
        for target in crate_paths(&graph_code(&text)) {
            let name = file.strip_prefix(src).unwrap().display().to_string();
            if target == module || PLUMBING.contains(&target.as_str()) {
                continue;
            }
            match level(&target) {
                Some(theirs) if theirs < own => {}
                Some(_) => {
                    found.insert(format!("{name}: uses `{target}`, which is not below `{module}`"));
                }
                None => {
                    found.insert(format!("{name}: reaches `{target}` through the crate root"));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_uses_one_above_or_beside_it_nor_a_name_through_the_crate_root() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(found.is_empty(), "the dependency rule is broken:\n{}", found.into_iter().collect::<Vec<_>>().join("\n"));
}

#[test]
fn the_checker_sees_grouped_imports_and_root_reaches() {
    assert_eq!(crate_paths("use crate::{client::AuthClient, error::{AuthError, Chain}};"), ["client", "error"]);
    assert_eq!(crate_paths("let x = crate::AuthConfig::builder(); use super::x;"), ["AuthConfig"]);
    assert_eq!(crate_paths("use crate::http::{self};"), ["http"]);
    assert!(
        graph_code("use crate::a;\n// use crate::b;\n#[cfg(test)]\nmod tests { use crate::c; }").contains("crate::a")
    );
    assert!(
        !graph_code("use crate::a;\n// use crate::b;\n#[cfg(test)]\nmod tests { use crate::c; }").contains("crate::b")
    );

    // A module that imports upward is caught: a store that names the client.
    let dir = std::env::temp_dir().join(format!("layout-check-{}", std::process::id()));
    fs::create_dir_all(dir.join("store")).unwrap();
    fs::write(dir.join("store/mod.rs"), "use crate::client::AuthClient;\nuse crate::model::User;\n").unwrap();
    fs::write(dir.join("record.rs"), "use crate::AuthConfig;\n").unwrap();
    let found = violations(&dir);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        [
            "record.rs: reaches `AuthConfig` through the crate root",
            "store/mod.rs: uses `client`, which is not below `store`",
        ]
    );
}

/// The single-provider service's files, which must not know about tenants: several providers
/// are a service of their own (`http/tenancy.rs`) in front of it.
const SINGLE_PROVIDER: &[&str] = &["http/service.rs", "http/future.rs", "http/routes.rs", "http/session.rs"];

/// Every line of the single-provider service's code that names tenants, as `file: line`.
fn tenant_code(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for name in SINGLE_PROVIDER {
        let text = fs::read_to_string(src.join(name)).unwrap();
        for line in graph_code(&text).lines() {
            if line.contains("tenants") || line.contains("Tenant") {
                found.push(format!("{name}: {}", line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_single_provider_service_knows_nothing_of_tenants() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = tenant_code(&src);
    assert!(found.is_empty(), "tenant code in the single-provider service:\n{}", found.join("\n"));
    // The check sees what it looks for: the tenancy service itself is full of it.
    assert!(fs::read_to_string(src.join("http/tenancy.rs")).unwrap().contains("Tenants"));
}
