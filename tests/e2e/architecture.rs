//! The crate edges that make the architecture's invariants hold, read from the workspace's
//! manifests: a test fails when a forbidden edge is added (see ARCHITECTURE.md).
//!
//! - Only `ctstats-dp` depends on `opendp`: every noise draw and privacy map is in one crate.
//! - Neither the engine (`ctstats-query`) nor the HTTP crate (`ctstats-server`) depends on
//!   `ctstats-ingest`: they never hold the pseudonymisation key.
//! - The HTTP crate reaches the data only through the engine: no DataFusion, Arrow, Parquet or
//!   SQLite of its own.

use std::path::Path;

/// Every dependency a manifest names, in any section (normal, dev, build, target-specific).
fn dependencies(manifest: &toml::Table) -> Vec<String> {
    let mut names = Vec::new();
    let mut sections: Vec<&toml::Table> = Vec::new();
    for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(t) = manifest.get(key).and_then(|v| v.as_table()) {
            sections.push(t);
        }
    }
    if let Some(targets) = manifest.get("target").and_then(|v| v.as_table()) {
        for target in targets.values().filter_map(|v| v.as_table()) {
            for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
                if let Some(t) = target.get(key).and_then(|v| v.as_table()) {
                    sections.push(t);
                }
            }
        }
    }
    for section in sections {
        for (name, spec) in section {
            // `foo = { package = "bar" }` depends on bar.
            let package = spec
                .as_table()
                .and_then(|t| t.get("package"))
                .and_then(|p| p.as_str())
                .unwrap_or(name);
            names.push(package.to_string());
        }
    }
    names
}

/// The rules, as (crate, dependency) edges that must not exist; `"*"` is every crate but the
/// one allowed.
fn violations(manifests: &[(String, toml::Table)]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, manifest) in manifests {
        let deps = dependencies(manifest);
        let has = |d: &str| deps.iter().any(|x| x == d);
        if has("opendp") && name != "ctstats-dp" {
            found.push(format!("{name} depends on opendp: only ctstats-dp may"));
        }
        if (name == "ctstats-query" || name == "ctstats-server") && has("ctstats-ingest") {
            found.push(format!(
                "{name} depends on ctstats-ingest: the engine and HTTP never hold the key"
            ));
        }
        if name == "ctstats-server" {
            for d in ["datafusion", "arrow", "parquet", "rusqlite", "ctstats-dp"] {
                if has(d) {
                    found.push(format!(
                        "ctstats-server depends on {d}: HTTP reaches data only through the engine"
                    ));
                }
            }
        }
    }
    found
}

fn package_name(manifest: &toml::Table) -> String {
    manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string()
}

fn workspace_manifests() -> Vec<(String, toml::Table)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &Path| -> toml::Table {
        toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let top = read(&root.join("Cargo.toml"));
    let members: Vec<String> = top["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let mut out = vec![(package_name(&top), top)];
    for member in members {
        let manifest = read(&root.join(&member).join("Cargo.toml"));
        out.push((package_name(&manifest), manifest));
    }
    out
}

#[test]
fn crate_edges_keep_the_architecture() {
    let manifests = workspace_manifests();
    let names: Vec<&str> = manifests.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["ctstats", "ctstats-dp", "ctstats-query", "ctstats-server"] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    let found = violations(&manifests);
    assert!(found.is_empty(), "forbidden crate edges: {found:?}");
}

/// The check itself can fail: each forbidden edge, added to a copy of the real manifests, is
/// found (in whichever section it is added).
#[test]
fn each_forbidden_edge_is_found() {
    let edges = [
        ("ctstats-server", "dependencies", "opendp"),
        ("ctstats-query", "dependencies", "opendp"),
        ("ctstats", "dev-dependencies", "opendp"),
        ("ctstats-query", "dependencies", "ctstats-ingest"),
        ("ctstats-server", "dev-dependencies", "ctstats-ingest"),
        ("ctstats-server", "dependencies", "datafusion"),
    ];
    for (krate, section, dep) in edges {
        let mut manifests = workspace_manifests();
        let (_, manifest) = manifests.iter_mut().find(|(n, _)| n == krate).unwrap();
        manifest
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap()
            .insert(dep.to_string(), toml::Value::String("1".into()));
        let found = violations(&manifests);
        assert!(
            found
                .iter()
                .any(|v| v.starts_with(krate) && v.contains(dep)),
            "{krate} -> {dep} in {section} was not found: {found:?}"
        );
    }
}
