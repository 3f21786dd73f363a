//! README.md's Rust code, compiled: each block of README.md is here word for word, and a test
//! fails when a block of README.md is found nowhere here (the guide's blocks are doctests of
//! `auth_layer::guide`). Also: the guide's metrics table against what auth-layer records, and
//! README's version and feature list against `auth-layer/Cargo.toml`.
//!
//! Not formatted by rustfmt (`lib.rs` skips it), so that the blocks stay as README.md shows them.
#![allow(unused_variables, unused_must_use, dead_code, unused_imports, clippy::all)]

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// "A first app".
pub mod first_app {
use auth_layer::{AuthLayer, User};
use axum::{Router, routing::get};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // AUTH_ISSUER, AUTH_CLIENT_ID, AUTH_CLIENT_SECRET, AUTH_SECRET (32+ bytes), APP_BASE_URL
    let auth = AuthLayer::from_env().await?;
    let app = Router::new()
        .route("/", get(|user: Option<User>| async move {
            user.map_or("hello stranger: /auth/login".to_owned(), |u| format!("hello {}", u.sub()))
        }))
        .route("/private", get(|user: User| async move { format!("your id: {}", user.sub()) }))
        .layer(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
}

#[cfg(test)]
mod metrics_table {
    /// Every metric auth-layer records is a row of the guide's table (chapter "Operating it"),
    /// with its kind and unit, and the table has no row of a metric it does not record.
    #[test]
    fn the_guide_lists_every_metric_and_no_other() {
        let readme = include_str!("../auth-layer/guide/operating.md");
        for m in auth_layer::METRICS {
            let kind = format!("{:?}", m.kind).to_lowercase();
            let row = format!("| `{}` | {kind} | {} |", m.name, m.unit);
            assert!(readme.contains(&row), "the guide lacks the row `{row}`");
        }
        let rows = readme.lines().filter(|l| l.starts_with("| `auth_layer.")).count();
        assert_eq!(rows, auth_layer::METRICS.len(), "the guide lists a metric auth-layer does not record");
        let mut names: Vec<&str> = auth_layer::METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), auth_layer::METRICS.len(), "two metrics of one name");
        assert!(names.iter().all(|n| n.starts_with("auth_layer.")));
    }
}

#[cfg(test)]
mod tests {
    /// The Rust blocks of `markdown`, each as its lines without leading and trailing blanks.
    fn rust_blocks(markdown: &str) -> Vec<Vec<&str>> {
        let mut blocks = Vec::new();
        let mut current: Option<Vec<&str>> = None;
        for line in markdown.lines() {
            match (&mut current, line.trim_start()) {
                (None, fence) if fence.starts_with("```rust") => current = Some(Vec::new()),
                (Some(_), "```") => blocks.push(current.take().unwrap_or_default()),
                (Some(block), text) => block.push(line.trim()),
                (None, _) => {}
            }
        }
        blocks.into_iter().map(|b| b.into_iter().filter(|l| !l.is_empty()).collect()).collect()
    }

    #[test]
    fn every_rust_block_of_the_readme_is_compiled_here() {
        let readme = include_str!("../README.md");
        let here: Vec<&str> = include_str!("readme.rs").lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let blocks = rust_blocks(readme);
        assert!(!blocks.is_empty(), "the README's Rust blocks were not found");
        for block in blocks {
            assert!(
                here.windows(block.len()).any(|window| window == block.as_slice()),
                "this README block is compiled nowhere (copy it into tests/readme.rs word for word):\n{}",
                block.join("\n")
            );
        }
    }
}

#[cfg(test)]
mod version_and_features {
    /// README's version, minimum Rust and feature table say what the manifests say.
    #[test]
    fn the_readme_names_the_version_rust_and_features_of_the_manifests() {
        let readme = include_str!("../README.md");
        let workspace = include_str!("../Cargo.toml");
        let manifest = include_str!("../auth-layer/Cargo.toml");
        let value = |text: &str, key: &str| -> String {
            let line = text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("{key}"));
            line.split('"').nth(1).unwrap().to_owned()
        };
        let (version, rust) = (value(workspace, "version"), value(workspace, "rust-version"));
        assert!(readme.contains(&format!("`auth-layer` {version}, Rust {rust} or later")), "README names {version} and {rust}");
        let section = manifest.split("[features]").nth(1).unwrap();
        let section = section.split("\n[").next().unwrap();
        let mut expected: Vec<&str> = section
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim()))
            .filter(|name| *name != "default")
            .collect();
        let table = readme.split("## Features and version").nth(1).unwrap();
        let table = table.split("\n## ").next().unwrap();
        let mut got: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `").and_then(|rest| rest.split('`').next()))
            .collect();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected, "README's feature table and auth-layer's [features]");
    }
}
