//! `wit/world.wit` is the contract with every host that is not Spin: the built
//! `vapi_edge.wasm` must import nothing outside world `component` and must
//! export the wasi:http incoming handler.

use crate::common::*;
use wit_parser::{Resolve, WorldItem, WorldKey};

/// `ns:pkg/iface@1.2.3` → (`ns:pkg/iface`, `1.2.3`).
fn split_version(name: &str) -> (&str, &str) {
    name.rsplit_once('@').unwrap_or((name, ""))
}

/// A host that offers interface version `offered` satisfies an import of
/// `wanted` when both are the same pre-release, or the same 0.minor series
/// (or major) with `offered` at least as new: wasmtime links them that way.
fn satisfies(offered: &str, wanted: &str) -> bool {
    if offered == wanted {
        return true;
    }
    if offered.contains('-') || wanted.contains('-') {
        return false;
    }
    let parse = |v: &str| -> Vec<u64> { v.split('.').filter_map(|p| p.parse().ok()).collect() };
    let (offered, wanted) = (parse(offered), parse(wanted));
    if offered.len() != 3 || wanted.len() != 3 {
        return false;
    }
    let series = |v: &[u64]| {
        if v[0] == 0 {
            (v[0], v[1])
        } else {
            (v[0], u64::MAX)
        }
    };
    series(&offered) == series(&wanted) && offered >= wanted
}

fn world_interfaces(world: &str) -> (Vec<String>, Vec<String>) {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(workspace_root().join("wit"))
        .expect("wit/ parses");
    let world = resolve
        .select_world(&[package], Some(world))
        .expect("world exists");
    let names = |items: &wit_parser::IndexMap<WorldKey, WorldItem>| -> Vec<String> {
        items
            .iter()
            .filter_map(|(key, item)| match (key, item) {
                (WorldKey::Interface(id), WorldItem::Interface { .. }) => resolve.id_of(*id),
                _ => None,
            })
            .collect()
    };
    let world = &resolve.worlds[world];
    (names(&world.imports), names(&world.exports))
}

#[test]
fn the_built_component_imports_only_what_world_component_declares() {
    let wasm = build_component("vapi-edge");
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, &wasm).expect("a component");
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let (declared_imports, declared_exports) = world_interfaces("component");

    let undeclared: Vec<&String> = imports
        .iter()
        .filter(|import| {
            let (name, version) = split_version(import);
            !declared_imports.iter().any(|declared| {
                let (declared_name, declared_version) = split_version(declared);
                declared_name == name && satisfies(declared_version, version)
            })
        })
        .collect();
    println!("component imports: {imports:?}");
    assert!(
        undeclared.is_empty(),
        "imports outside wit/world.wit: {undeclared:?}"
    );

    // The services that make it a vapi-edge component are really used.
    for needed in [
        "fermyon:spin/variables",
        "wasi:keyvalue/atomics",
        "spin:postgres/postgres",
        "wasi:http/outgoing-handler",
    ] {
        assert!(
            imports.iter().any(|i| i.starts_with(needed)),
            "{needed} is not imported"
        );
    }
    assert!(
        exports
            .iter()
            .any(|e| split_version(e).0 == "wasi:http/incoming-handler"),
        "exports: {exports:?}"
    );
    assert!(declared_exports
        .iter()
        .any(|e| split_version(e).0 == "wasi:http/incoming-handler"));
}

#[test]
fn versions_are_matched_the_way_wasmtime_links_them() {
    assert!(satisfies("0.2.6", "0.2.0"));
    assert!(!satisfies("0.2.0", "0.2.6"));
    assert!(!satisfies("0.3.0", "0.2.6"));
    assert!(satisfies("0.2.0-draft2", "0.2.0-draft2"));
    assert!(!satisfies("0.2.0-draft2", "0.2.0"));
    assert!(satisfies("2.0.0", "2.0.0"));
}
