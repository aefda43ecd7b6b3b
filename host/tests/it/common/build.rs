//! Building the real `.wasm` and laying out an app folder around it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds a workspace component for wasm32-wasip2 (profile `component`) once per test
/// binary and returns the path of the `.wasm`.
pub fn build_component(package: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some((_, path)) = built.iter().find(|(p, _)| p == package) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "component",
            "-p",
            package,
        ])
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building {package} for wasm32-wasip2 failed"
    );
    let path = target_dir()
        .join("wasm32-wasip2/component")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let size = std::fs::metadata(&path).expect("the .wasm exists").len();
    println!(
        "built {} (profile component): {size} bytes = {:.1} KiB (goal: <= 1024 KiB)",
        path.display(),
        size as f64 / 1024.0
    );
    built.push((package.to_string(), path.clone()));
    path
}

/// The repository's own spin.toml with `source` pointed at the built `.wasm`,
/// so tests run the real manifest wherever the target directory is.
pub fn app_manifest(dir: &Path) -> PathBuf {
    let wasm = build_component("vapi-edge");
    let text = std::fs::read_to_string(workspace_root().join("spin.toml")).unwrap();
    let text = text.replace(
        "source = \"target/wasm32-wasip2/component/vapi_edge.wasm\"",
        &format!("source = {:?}", wasm.display().to_string()),
    );
    assert!(
        text.contains(&wasm.display().to_string()),
        "spin.toml source line changed"
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vapi-edge-test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `work` to completion on a thread and runtime of its own: for `Drop`
/// impls, which may run inside a runtime (and must not block it) or outside any.
pub fn finish_on_own_thread<F>(work: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work)
    })
    .join();
}
