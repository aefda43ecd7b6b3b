//! The host's modules form layers, each using only those before it (see the
//! comment at the top of `host/src/main.rs`): no module imports a later one,
//! so no two import each other, directly or around a circle. And the
//! backends, which the benchmark's native baseline shares, know nothing of
//! wasmtime or WIT.
//!
//! Read from the source: every `crate::<module>` a file names is an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, first to last. A module may use its own layer and earlier ones.
const LAYERS: &[&[&str]] = &[
    &["bindings"],
    &["outbound", "state"],
    &["interfaces"],
    &["manifest", "runtime_config"],
    &["server"],
    &["instantiate_bench", "mapping", "migrate", "prune", "seed"],
    &["main"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to LAYERS"))
}

/// The top-level module a file belongs to (`interfaces/postgres.rs` → `interfaces`).
fn module_of(path: &Path, src: &Path) -> String {
    let relative = path.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap();
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// `crate::x` names in `text`, outside comments.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `use crate::{a, b}` names several.
            if name.is_empty() && rest.starts_with('{') {
                let inside = rest[1..].split('}').next().unwrap_or_default();
                for item in inside.split(',') {
                    let item: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !item.is_empty() {
                        found.insert(item);
                    }
                }
            } else if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn host_modules_only_use_earlier_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let module = module_of(&file, &src);
        let text = std::fs::read_to_string(&file).unwrap();
        let uses = crate_references(&text)
            .into_iter()
            .filter(|used| *used != module)
            .collect::<BTreeSet<_>>();
        edges.entry(module).or_default().extend(uses);
    }
    let mut upward = Vec::new();
    for (module, uses) in &edges {
        for used in uses {
            if layer_of(used) > layer_of(module) {
                upward.push(format!("{module} uses {used}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layers: {upward:?}\n(all edges: {edges:?})"
    );
    // Within a layer, no two modules use each other.
    for (module, uses) in &edges {
        for used in uses {
            assert!(
                !edges.get(used).is_some_and(|back| back.contains(module)),
                "{module} and {used} import each other"
            );
        }
    }
    println!("host modules and what they use: {edges:?}");
}

#[test]
fn the_backends_know_nothing_of_wasmtime_or_wit() {
    let backends = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/backends");
    let manifest = std::fs::read_to_string(backends.join("Cargo.toml")).unwrap();
    assert!(
        !manifest.contains("wasmtime"),
        "backends depend on wasmtime"
    );
    for file in rust_files(&backends.join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        // Code only: a comment may say what the backends are not.
        let code: String = text
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for word in ["wasmtime", "bindgen", "bindings::"] {
            assert!(!code.contains(word), "{} mentions {word}", file.display());
        }
    }
}

#[test]
fn the_reader_sees_every_kind_of_use() {
    let text = "use crate::state::RequestState;\n\
                use crate::{outbound, bindings::x};\n\
                // crate::server is only mentioned here\n\
                let x = crate::manifest::load();";
    let found: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(found, ["bindings", "manifest", "outbound", "state"]);
}
